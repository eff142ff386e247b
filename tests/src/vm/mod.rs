//! The kernel tier: boots Debian's `linux-image-amd64` under QEMU (TCG) with the host's root
//! shared read-only over 9p, runs kernel scenarios inside, and brings their results back.
//!
//! This machine's kernel has no WireGuard, no ESP and no loadable modules; edge nodes run
//! distribution kernels that have all of them. The tier proves the kernel tunnel drivers on
//! such a kernel without leaving the test process: one VM boot (~40 s under TCG) runs every
//! scenario, so the tier costs one boot plus the scenarios themselves.
//!
//! # Pieces
//! - `tests/vm/prepare-kernel.sh`: unpacks the kernel package into
//!   [`KERNEL_CACHE`]`/<version>/` (vmlinuz + `lib/modules` + depmod), once.
//! - `tests/vm/build-initramfs.sh`: static busybox, `/init` (`tests/vm/init.sh`), virtio + 9p
//!   modules in dependency order, a modprobe wrapper for on-demand modules (crypto, nft).
//! - [`boot`]: QEMU under `timeout`, three 9p shares (`hostroot` ro, `kernel` ro, `out` rw),
//!   serial console captured. The guest runs `out/job.sh` chrooted into the host root, with
//!   tmpfs over `/tmp` and `/run`, and powers off.
//! - [`run_scenarios`]: writes a job that runs `raven-kernel-scenarios run --out ...` and
//!   parses the result lines (see below).
//!
//! # Scenario contract (for everyone adding kernel scenarios)
//! 1. Write `tests/src/kernel_scenarios/<name>.rs` with
//!    `pub const SCENARIO: Scenario = Scenario { name: "<name>", about: "...", run };` and
//!    `fn run(ctx: &mut Ctx) -> raven_tests::Result<()>`; `Err` (or a panic) is a FAIL whose
//!    message is shown by the host test. The function runs as root inside the VM, in the host's
//!    filesystem (read-only except `/tmp`, `/run`), with every module of [`DEFAULT_MODULES`]
//!    loaded and the rest loadable on demand (`modprobe` works).
//! 2. Register it: `pub mod <name>;` and `<name>::SCENARIO` in [`crate::kernel_scenarios::ALL`]
//!    (one line each; scenarios run in that order).
//! 3. Use [`crate::kernel_scenarios::Ctx::lab`] to get the multi-domain lab with a tunnel
//!    driver: labs are built once per [`crate::lab::LabOptions`] and shared by the following
//!    scenarios, so leave the lab as you found it (daemons running, Gateways as built), or call
//!    [`crate::kernel_scenarios::Ctx::discard_lab`] when you broke it.
//!    [`crate::kernel_scenarios::common`] has convergence, iperf3 TCP, tcpdump capture and
//!    link helpers; `wg_kernel.rs` is a complete example (four scenarios on one lab).
//! 4. Nothing else: `tests/tests/kernel_tier.rs` boots one VM, runs every registered scenario
//!    (or those in `RAVEN_KERNEL_SCENARIOS=a,b`), and fails listing every scenario that failed
//!    or did not report.
//!
//! The guest runs the host's own binaries at their host paths: build what the scenarios use
//! first (`cargo build -p raven-node`, `tests/cnitool/build.sh`, the release `raven-cni`;
//! `tests/run.sh` does all three). `CARGO_TARGET_DIR`, `RAVEN_NODE_BIN`, `RAVEN_CNITOOL` and
//! `RUST_LOG` are passed into the guest.
//!
//! In the VM, `raven-kernel-scenarios` appends one line per scenario to `out/results.txt`:
//! `RAVEN-SCENARIO <name> PASS|FAIL <millis>` and writes the failure message to
//! `out/<name>.log`. Environment knobs: `RAVEN_VM_TIMEOUT_SECS` (default 900, whole boot),
//! `RAVEN_VM_MEMORY_MB` (2048), `RAVEN_VM_CPUS` (2), `RAVEN_VM_VERBOSE=1` (echo the console).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::{Context, Error, Result};
use crate::{cmd, paths, require};

/// Where the unpacked kernel lives between runs.
pub const KERNEL_CACHE: &str = "/var/cache/raven-rs/kernel";

/// Modules loaded before the job: the tunnel drivers, the lab's links and NAT, TUN.
pub const DEFAULT_MODULES: &[&str] = &[
    "wireguard",
    "esp4",
    "xfrm_user",
    "xfrm_interface",
    "vxlan",
    "veth",
    "bridge",
    "tun",
    "nf_tables",
    "nft_chain_nat",
    "nft_nat",
    "nft_masq",
    "nft_ct",
    "af_packet",
];

/// Prefix of the init script's own progress lines on the console.
const INIT_PREFIX: &str = "raven-vm: ";

/// What to run in the VM.
#[derive(Clone, Debug)]
pub struct VmJob {
    /// Shell script run by `/bin/sh` chrooted into the host root (cwd `/`).
    pub script: String,
    /// Environment exported before the script (`KEY=value`, values shell-quoted here).
    pub env: Vec<(String, String)>,
    /// Modules to load before the script ([`DEFAULT_MODULES`] by default).
    pub modules: Vec<String>,
    /// Whole-VM timeout (boot, job, power-off).
    pub timeout: Duration,
    /// Guest memory in MiB.
    pub memory_mb: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// Echo the console to stderr while it runs.
    pub verbose: bool,
}

impl VmJob {
    /// A job with the defaults (and the `RAVEN_VM_*` overrides) for `script`.
    pub fn new(script: impl Into<String>) -> Self {
        let num = |var: &str, default: u64| {
            std::env::var(var)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Self {
            script: script.into(),
            env: Vec::new(),
            modules: DEFAULT_MODULES.iter().map(|m| m.to_string()).collect(),
            timeout: Duration::from_secs(num("RAVEN_VM_TIMEOUT_SECS", 900)),
            memory_mb: u32::try_from(num("RAVEN_VM_MEMORY_MB", 2048)).unwrap_or(2048),
            cpus: u32::try_from(num("RAVEN_VM_CPUS", 2)).unwrap_or(2),
            verbose: std::env::var_os("RAVEN_VM_VERBOSE").is_some_and(|v| v == "1"),
        }
    }
}

/// The outcome of one boot.
#[derive(Debug)]
pub struct VmRun {
    /// The read-write share after power-off (results, logs).
    pub out: TempDir,
    /// The serial console.
    pub console: String,
    /// The job's exit status as reported by `/init`; `None` when it never finished.
    pub job_exit: Option<i32>,
    /// Time from start to the init's "booted" line.
    pub boot: Option<Duration>,
    /// Time from start to QEMU's exit.
    pub wall: Duration,
    /// Whether `timeout` killed QEMU.
    pub timed_out: bool,
}

impl VmRun {
    /// The last `n` console lines, for failure messages.
    pub fn console_tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.console.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// A failure line of the init script (`raven-vm: FATAL ...`), if any.
    pub fn fatal(&self) -> Option<&str> {
        self.console
            .lines()
            .find_map(|l| l.split_once(&format!("{INIT_PREFIX}FATAL ")).map(|x| x.1))
    }
}

/// The script directory `tests/vm/`.
pub fn script_dir() -> PathBuf {
    paths::repo_root().join("tests/vm")
}

/// Checks the host tools the tier needs; the error names the package and the fix.
pub fn check_tools() -> Result<()> {
    require::check_root()?;
    let tools = [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("cpio", "cpio"),
        ("depmod", "kmod"),
        ("modprobe", "kmod"),
        ("gzip", "gzip"),
        ("timeout", "coreutils"),
        ("apt-get", "apt"),
        ("dpkg", "dpkg"),
    ];
    for (tool, package) in tools {
        if require::find_tool(tool).is_none() {
            return Err(Error::new(format!(
                "the kernel tier needs `{tool}` (Debian package {package}): run \
                 tests/install-deps.sh as root"
            )));
        }
    }
    if !Path::new("/bin/busybox").exists() {
        return Err(Error::new(
            "the kernel tier needs /bin/busybox (Debian package busybox-static): run \
             tests/install-deps.sh as root",
        ));
    }
    Ok(())
}

/// Unpacks Debian's current `linux-image-amd64` kernel into [`KERNEL_CACHE`] (once) and
/// returns its directory (`vmlinuz`, `version`, `lib/modules/<version>`).
pub fn prepare_kernel() -> Result<PathBuf> {
    let script = script_dir().join("prepare-kernel.sh");
    let out = cmd::run_ok(&[&script.to_string_lossy(), KERNEL_CACHE])
        .context(|| "unpacking Debian's kernel for the VM".to_string())?;
    let dir = out
        .lines()
        .last()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| Error::new("prepare-kernel.sh printed no directory"))?;
    let dir = PathBuf::from(dir);
    if !dir.join("vmlinuz").is_file() {
        return Err(Error::new(format!(
            "{} has no vmlinuz: remove it and rerun",
            dir.display()
        )));
    }
    Ok(dir)
}

/// Builds the initramfs for the kernel in `kernel_dir` into `out`.
pub fn build_initramfs(kernel_dir: &Path, out: &Path) -> Result<()> {
    let script = script_dir().join("build-initramfs.sh");
    cmd::run_ok(&[
        &script.to_string_lossy(),
        &kernel_dir.to_string_lossy(),
        &out.to_string_lossy(),
    ])
    .context(|| "building the initramfs".to_string())
    .map(|_| ())
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Directories the guest's tmpfs mounts (`/tmp`, `/run`, `/var/tmp`) would hide, canonical,
/// without those inside another one of the list (pure).
pub fn masked_dirs(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let masked = |p: &Path| {
        ["/tmp", "/run", "/var/tmp"]
            .iter()
            .any(|m| p.starts_with(m))
    };
    let mut out: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.canonicalize().unwrap_or_else(|_| d.clone()))
        .filter(|d| masked(d))
        .collect();
    out.sort();
    out.dedup();
    let all = out.clone();
    out.retain(|d| !all.iter().any(|o| o != d && d.starts_with(o)));
    out
}

/// Boots the VM once and runs `job`. Fails only when the VM could not be started at all;
/// a VM that started but did not finish the job returns a [`VmRun`] with `job_exit: None`
/// (see [`VmRun::fatal`] and [`VmRun::console_tail`]).
pub fn boot(job: &VmJob) -> Result<VmRun> {
    check_tools()?;
    let kernel = prepare_kernel()?;
    let out = tempfile::Builder::new()
        .prefix("raven-vm-")
        .tempdir()
        .context(|| "creating the VM share".to_string())?;
    let initrd = out.path().join(".initrd.gz");
    build_initramfs(&kernel, &initrd)?;
    let write = |name: &str, body: String| {
        std::fs::write(out.path().join(name), body).context(|| format!("writing {name}"))
    };
    write("job.sh", job.script.clone())?;
    let mut env =
        String::from("export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
    for (k, v) in &job.env {
        env.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    write("env", env)?;
    write("modules", job.modules.join("\n") + "\n")?;
    // The guest mounts tmpfs over /tmp, /run and /var/tmp of the shared root, which would hide
    // a checkout or target directory that lives there (a CI clone in /tmp): share those again
    // and mount them at the same path (init.sh reads `mounts`).
    let extra = masked_dirs(&[crate::paths::repo_root(), crate::paths::target_dir()]);
    let mut mounts = String::new();
    for (i, dir) in extra.iter().enumerate() {
        mounts.push_str(&format!("extra{i} {}\n", dir.display()));
    }
    write("mounts", mounts)?;

    let share = |path: &Path, tag: &str, ro: bool| {
        format!(
            "local,path={},mount_tag={tag},security_model=none,multidevs=remap{}",
            path.display(),
            if ro { ",readonly=on" } else { "" }
        )
    };
    let mut c = Command::new("timeout");
    c.args(["-k", "10", &job.timeout.as_secs().to_string()])
        .arg("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-nographic", "-no-reboot"])
        .args(["-m", &job.memory_mb.to_string()])
        .args(["-smp", &job.cpus.to_string()])
        .args(["-net", "none"])
        .arg("-kernel")
        .arg(kernel.join("vmlinuz"))
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 quiet loglevel=3 panic=-1"])
        .args(["-virtfs", &share(Path::new("/"), "hostroot", true)])
        .args(["-virtfs", &share(&kernel, "kernel", true)])
        .args(["-virtfs", &share(out.path(), "out", false)])
        .args(
            extra
                .iter()
                .enumerate()
                .flat_map(|(i, d)| ["-virtfs".to_owned(), share(d, &format!("extra{i}"), true)]),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let argv = cmd::describe(&c);
    let start = Instant::now();
    let mut child = c.spawn().context(|| format!("starting QEMU: {argv}"))?;
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
        }
        s
    });
    let mut console = String::new();
    let mut boot = None;
    let mut job_exit = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            if job.verbose {
                eprintln!("vm| {line}");
            }
            if let Some(rest) = line.split_once(INIT_PREFIX).map(|x| x.1) {
                if rest.starts_with("booted ") {
                    boot = Some(start.elapsed());
                } else if let Some(code) = rest.strip_prefix("JOB-EXIT ") {
                    job_exit = code.trim().parse().ok();
                }
            }
            console.push_str(&line);
            console.push('\n');
        }
    }
    let status = child.wait().context(|| "waiting for QEMU".to_string())?;
    let wall = start.elapsed();
    let stderr = err_thread.join().unwrap_or_default();
    let stderr: String = stderr
        .lines()
        .filter(|l| !l.contains("Multiple devices detected"))
        .collect::<Vec<_>>()
        .join("\n");
    let timed_out = status.code() == Some(124) || status.code() == Some(137);
    if boot.is_none() && !timed_out && !status.success() {
        return Err(Error::new(format!(
            "QEMU failed before the guest booted ({status}): {argv}\n--- stderr ---\n{stderr}\n\
             --- console tail ---\n{}",
            tail(&console, 30)
        )));
    }
    Ok(VmRun {
        out,
        console,
        job_exit,
        boot,
        wall,
        timed_out,
    })
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One scenario's outcome as seen from the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioOutcome {
    /// Scenario name.
    pub name: String,
    /// Passed.
    pub passed: bool,
    /// Duration inside the VM (0 when it never reported).
    pub millis: u64,
    /// Failure message (empty on success).
    pub message: String,
}

/// The tier's report: the boot and every requested scenario.
#[derive(Debug)]
pub struct TierReport {
    /// The boot.
    pub run: VmRun,
    /// One entry per requested scenario, in order; scenarios that never reported are failures.
    pub outcomes: Vec<ScenarioOutcome>,
}

impl TierReport {
    /// Human-readable summary (one line per scenario, then the failures' messages).
    pub fn summary(&self) -> String {
        let mut s = format!(
            "kernel tier: wall {:.1} s, boot {}, job exit {:?}{}\n",
            self.run.wall.as_secs_f64(),
            self.run
                .boot
                .map_or("never".to_string(), |b| format!("{:.1} s", b.as_secs_f64())),
            self.run.job_exit,
            if self.run.timed_out {
                " (TIMED OUT)"
            } else {
                ""
            }
        );
        for o in &self.outcomes {
            s.push_str(&format!(
                "  {:<4} {:<40} {:>7.1} s\n",
                if o.passed { "PASS" } else { "FAIL" },
                o.name,
                o.millis as f64 / 1000.0
            ));
        }
        for o in self.outcomes.iter().filter(|o| !o.passed) {
            s.push_str(&format!("--- {} ---\n{}\n", o.name, o.message.trim_end()));
        }
        s
    }

    /// Whether every scenario passed.
    pub fn all_passed(&self) -> bool {
        self.outcomes.iter().all(|o| o.passed)
    }
}

/// Parses `RAVEN-SCENARIO <name> PASS|FAIL <millis>` lines.
pub fn parse_results(text: &str) -> Vec<(String, bool, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            if it.next()? != crate::kernel_scenarios::RESULT_TAG {
                return None;
            }
            let name = it.next()?.to_string();
            let passed = match it.next()? {
                "PASS" => true,
                "FAIL" => false,
                _ => return None,
            };
            let millis = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
            Some((name, passed, millis))
        })
        .collect()
}

/// Boots one VM that runs `scenarios` with the in-VM runner `runner`
/// (`raven-kernel-scenarios`), and collects one outcome per scenario.
pub fn run_scenarios(runner: &Path, scenarios: &[&str]) -> Result<TierReport> {
    let mut script = format!(
        "exec {} run --out /run/raven-vm/out",
        shell_quote(&runner.to_string_lossy())
    );
    for s in scenarios {
        script.push(' ');
        script.push_str(&shell_quote(s));
    }
    script.push('\n');
    let mut job = VmJob::new(script);
    job.env.push((
        "CARGO_TARGET_DIR".to_string(),
        paths::target_dir().to_string_lossy().into_owned(),
    ));
    job.env
        .push(("RUST_BACKTRACE".to_string(), "1".to_string()));
    for var in ["RAVEN_NODE_BIN", "RAVEN_CNITOOL", "RUST_LOG"] {
        if let Ok(v) = std::env::var(var) {
            job.env.push((var.to_string(), v));
        }
    }
    let run = boot(&job)?;
    let results = std::fs::read_to_string(run.out.path().join("results.txt")).unwrap_or_default();
    let parsed = parse_results(&results);
    let outcomes = scenarios
        .iter()
        .map(|name| match parsed.iter().find(|(n, _, _)| n == name) {
            Some((_, passed, millis)) => ScenarioOutcome {
                name: name.to_string(),
                passed: *passed,
                millis: *millis,
                message: if *passed {
                    String::new()
                } else {
                    std::fs::read_to_string(run.out.path().join(format!("{name}.log")))
                        .unwrap_or_else(|_| "(no log)".to_string())
                },
            },
            None => ScenarioOutcome {
                name: name.to_string(),
                passed: false,
                millis: 0,
                message: format!(
                    "did not report: the VM {} (init: {}); console tail:\n{}",
                    if run.timed_out {
                        format!("timed out after {:?}", job.timeout)
                    } else {
                        format!("ended with job exit {:?}", run.job_exit)
                    },
                    run.fatal().unwrap_or("no fatal error"),
                    run.console_tail(40)
                ),
            },
        })
        .collect();
    Ok(TierReport { run, outcomes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dirs_hidden_by_the_guest_tmpfs_are_shared_again() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            masked_dirs(&[p("/tmp/cc/repo"), p("/tmp/cc/repo/target")]),
            vec![p("/tmp/cc/repo")],
            "a target inside the checkout rides along"
        );
        assert_eq!(
            masked_dirs(&[p("/work/main"), p("/run/t"), p("/var/tmp/x")]),
            vec![p("/run/t"), p("/var/tmp/x")]
        );
        assert!(masked_dirs(&[p("/work/main"), p("/work/main/target")]).is_empty());
        assert!(
            masked_dirs(&[p("/tmpfoo/x")]).is_empty(),
            "a prefix of a name is not a parent"
        );
    }

    #[test]
    fn parses_result_lines_and_ignores_noise() {
        let text =
            "RAVEN-SCENARIO a PASS 120\nnoise\nRAVEN-SCENARIO b FAIL 7\nRAVEN-SCENARIO c MAYBE 1\n";
        assert_eq!(
            parse_results(text),
            vec![("a".to_string(), true, 120), ("b".to_string(), false, 7)]
        );
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
