//! `cni-bench`: ADD/DEL latency, peak RSS and size of `raven-cni` next to Debian's `portmap`.
//!
//! Both plugins are exec'd directly (no libcni in the timed path) with the stdin a runtime
//! would send them in the Flannel-equivalent chain: the `prevResult` is the real result of
//! bridge + host-local for a real pod, and the process runs inside the lab's node netns (where
//! portmap keeps its rules). Iterations interleave the two plugins so that both see the same
//! machine conditions. Peak RSS is measured in a separate pass through GNU time, because
//! `ru_maxrss` of a child also counts the memory of the parent it was forked from.
//!
//! Usage: `cni-bench [--iterations N] [--cni-version V] [--port-mappings N]` (as root, after
//! `tests/cnitool/build.sh` and `cargo build --release -p raven-cni`; `tests/bench.sh` does all).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raven_tests::cmd;
use raven_tests::plugin::CniCall;
use raven_tests::require::{self, DEBIAN_CNI_DIR};
use raven_tests::stats::{self, Summary};
use raven_tests::{CniEnv, Error, Pod, Result, kernel, nodestate, paths};
use serde_json::{Value, json};

/// Command-line options.
#[derive(Debug, Clone)]
struct Options {
    iterations: usize,
    cni_version: String,
    port_mappings: usize,
}

/// Unmeasured iterations before the timed ones (page cache, dentries, lazy kernel state).
const WARMUP: usize = 10;
/// Iterations of the peak-RSS pass.
const RSS_RUNS: usize = 20;
/// Remote prefixes in the node state, as in the demo.
const PREFIXES: [&str; 2] = ["10.245.0.0/24", "10.246.0.0/16"];

/// One plugin under test: its binary and its ADD/DEL stdin.
#[derive(Debug)]
struct Subject {
    name: &'static str,
    bin: PathBuf,
    add_stdin: Vec<u8>,
    del_stdin: Vec<u8>,
}

/// The pod's CNI environment, shared by every invocation.
#[derive(Debug)]
struct Invoker {
    container_id: String,
    netns: String,
    ifname: String,
    args: String,
    path: String,
}

impl Invoker {
    fn call<'a>(&'a self, command: &'a str) -> CniCall<'a> {
        CniCall {
            command,
            container_id: &self.container_id,
            netns: &self.netns,
            ifname: &self.ifname,
            args: &self.args,
            path: &self.path,
        }
    }
}

/// Measurements of one subject.
#[derive(Debug, Default)]
struct Samples {
    add: Vec<Duration>,
    del: Vec<Duration>,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("cni-bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let opts = parse_args(std::env::args().skip(1))?;
    require::check_root()?;
    let time_bin = require::check_tool("time")?;
    let raven = paths::find_raven_cni()?;
    let env = CniEnv::builder(&opts.cni_version).without_raven().build()?;
    let pod = env.new_pod("bench")?;
    let prev = env.add(&pod)?.ok()?.json()?;
    let state = nodestate::state(1, &PREFIXES, 1400)?;
    env.publish_state(&state)?;

    let subjects = [
        raven_subject(&env, &opts, &raven, &prev)?,
        portmap_subject(&env, &opts, &prev)?,
        baseline_subject()?,
    ];
    let call = Invoker {
        container_id: pod.container_id.clone(),
        netns: pod.netns.path_str(),
        ifname: pod.ifname.clone(),
        args: pod.cni_args(),
        path: format!("{}:{DEBIAN_CNI_DIR}", dir_of(&raven).display()),
    };
    enter_netns(env.node().path().as_path())?;
    sanity_check(&subjects[0], &call, &pod, &prev)?;

    eprintln!(
        "cni-bench: {WARMUP} warm-up + {} timed iterations",
        opts.iterations
    );
    let samples = measure(&subjects, &call, opts.iterations)?;
    let rss = subjects
        .iter()
        .map(|s| peak_rss_kib(s, &call, &time_bin))
        .collect::<Result<Vec<_>>>()?;

    print_report(&opts, &subjects, &samples, &rss)?;
    env.del(&pod)?.ok()?;
    Ok(())
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut opts = Options {
        iterations: 200,
        cni_version: "1.0.0".to_string(),
        port_mappings: 0,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| Error::new(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--iterations" => opts.iterations = parse_num(&flag, &value)?,
            "--cni-version" => opts.cni_version = value,
            "--port-mappings" => opts.port_mappings = parse_num(&flag, &value)?,
            _ => {
                return Err(Error::new(format!(
                    "unknown flag {flag}; usage: cni-bench [--iterations N] [--cni-version V] \
                     [--port-mappings N]"
                )));
            }
        }
    }
    if opts.iterations < 100 {
        return Err(Error::new(
            "--iterations must be at least 100 (p99 needs them)",
        ));
    }
    Ok(opts)
}

fn parse_num(flag: &str, value: &str) -> Result<usize> {
    value
        .parse()
        .map_err(|e| Error::new(format!("{flag} {value}: {e}")))
}

fn dir_of(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("/"))
}

/// DEL carries the cached result only from 0.4.0 on, as libcni sends it.
fn del_has_prev_result(version: &str) -> bool {
    !version.starts_with("0.3.")
}

fn stdin_pair(mut conf: Value, prev: &Value, version: &str) -> Result<(Vec<u8>, Vec<u8>)> {
    let encode = |v: &Value| {
        serde_json::to_vec(v).map_err(|e| Error::new(format!("encoding plugin stdin: {e}")))
    };
    let del = if del_has_prev_result(version) {
        let mut d = conf.clone();
        d["prevResult"] = prev.clone();
        encode(&d)?
    } else {
        encode(&conf)?
    };
    conf["prevResult"] = prev.clone();
    Ok((encode(&conf)?, del))
}

fn raven_subject(env: &CniEnv, opts: &Options, bin: &Path, prev: &Value) -> Result<Subject> {
    let conf = json!({
        "cniVersion": opts.cni_version,
        "name": env.spec().network,
        "type": "raven-cni",
        "nodeStateFile": env.state_file(),
        "dataDir": env.data_dir(),
    });
    let (add_stdin, del_stdin) = stdin_pair(conf, prev, &opts.cni_version)?;
    Ok(Subject {
        name: "raven-cni",
        bin: bin.to_path_buf(),
        add_stdin,
        del_stdin,
    })
}

fn portmap_subject(env: &CniEnv, opts: &Options, prev: &Value) -> Result<Subject> {
    let mappings: Vec<Value> = (0..opts.port_mappings)
        .map(|i| json!({"hostPort": 18080 + i, "containerPort": 80 + i, "protocol": "tcp"}))
        .collect();
    let conf = json!({
        "cniVersion": opts.cni_version,
        "name": env.spec().network,
        "type": "portmap",
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": mappings},
    });
    let (add_stdin, del_stdin) = stdin_pair(conf, prev, &opts.cni_version)?;
    Ok(Subject {
        name: "portmap (Debian)",
        bin: Path::new(DEBIAN_CNI_DIR).join("portmap"),
        add_stdin,
        del_stdin,
    })
}

/// `/bin/true` with the same stdin handling: the cost of spawning any process here.
fn baseline_subject() -> Result<Subject> {
    let bin = require::check_tool("true")?;
    Ok(Subject {
        name: "spawn baseline (/bin/true)",
        bin,
        add_stdin: b"{}".to_vec(),
        del_stdin: b"{}".to_vec(),
    })
}

/// Moves this (single-threaded) process into the node netns, so that every plugin it spawns
/// starts there without an `ip netns exec` in the timed path.
fn enter_netns(path: &Path) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::new(format!("open {}: {e}", path.display())))?;
    // SAFETY: setns only reads the descriptor, which `file` keeps open for the call; it affects
    // the calling thread, and this program spawns no other threads.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(Error::new(format!(
            "setns({}): {}",
            path.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// One ADD of raven-cni must pass prevResult through and install the routes, or the numbers
/// would time an error path.
fn sanity_check(raven: &Subject, call: &Invoker, pod: &Pod, prev: &Value) -> Result<()> {
    let out = call
        .call("ADD")
        .run(&raven.bin, &raven.add_stdin)?
        .into_ok()?;
    let result: Value = serde_json::from_str(&out.stdout)
        .map_err(|e| Error::new(format!("raven-cni ADD output is not JSON: {e}")))?;
    if &result != prev {
        return Err(Error::new(format!(
            "raven-cni changed the result:\n{result:#}\nexpected:\n{prev:#}"
        )));
    }
    let ours = kernel::routes(&pod.netns, "-4")?
        .into_iter()
        .filter(|r| r.protocol_number() == Some(82))
        .count();
    if ours != PREFIXES.len() {
        return Err(Error::new(format!(
            "expected {} routes, found {ours}",
            PREFIXES.len()
        )));
    }
    call.call("DEL")
        .run(&raven.bin, &raven.del_stdin)?
        .into_ok()?;
    Ok(())
}

/// Times one exec (spawn to exit, stdout drained), requiring success.
fn timed(call: &CniCall<'_>, bin: &Path, stdin: &[u8]) -> Result<Duration> {
    let start = Instant::now();
    let out = cmd::run_command(call.command(bin), Some(stdin))?;
    let elapsed = start.elapsed();
    out.into_ok()?;
    Ok(elapsed)
}

fn measure(subjects: &[Subject], call: &Invoker, iterations: usize) -> Result<Vec<Samples>> {
    let mut samples: Vec<Samples> = subjects.iter().map(|_| Samples::default()).collect();
    for i in 0..WARMUP + iterations {
        for (s, acc) in subjects.iter().zip(samples.iter_mut()) {
            let add = timed(&call.call("ADD"), &s.bin, &s.add_stdin)?;
            let del = timed(&call.call("DEL"), &s.bin, &s.del_stdin)?;
            if i >= WARMUP {
                acc.add.push(add);
                acc.del.push(del);
            }
        }
    }
    Ok(samples)
}

/// Largest `%M` (max RSS, KiB) GNU time reports over ADD and DEL runs of the subject.
fn peak_rss_kib(s: &Subject, call: &Invoker, time_bin: &Path) -> Result<u64> {
    let report = tempfile::NamedTempFile::new()
        .map_err(|e| Error::new(format!("temp file for GNU time: {e}")))?;
    let mut peak = 0;
    for _ in 0..RSS_RUNS {
        for (command, stdin) in [("ADD", &s.add_stdin), ("DEL", &s.del_stdin)] {
            let mut c = call.call(command).command(time_bin);
            c.arg("-f")
                .arg("%M")
                .arg("-o")
                .arg(report.path())
                .arg(&s.bin);
            cmd::run_command(c, Some(stdin))?.into_ok()?;
            let text = std::fs::read_to_string(report.path())
                .map_err(|e| Error::new(format!("reading GNU time output: {e}")))?;
            let kib: u64 = text
                .lines()
                .last()
                .and_then(|l| l.trim().parse().ok())
                .ok_or_else(|| Error::new(format!("GNU time printed {text:?}")))?;
            peak = peak.max(kib);
        }
    }
    Ok(peak)
}

fn summary(samples: &[Duration]) -> Result<Summary> {
    stats::summarize(samples).ok_or_else(|| Error::new("no samples"))
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn print_report(
    opts: &Options,
    subjects: &[Subject],
    samples: &[Samples],
    rss_kib: &[u64],
) -> Result<()> {
    let kernel = cmd::run_ok(&["uname", "-r"])?;
    println!(
        "cniVersion {}, {} iterations (+{WARMUP} warm-up), {} remote prefixes, {} port \
         mappings, kernel {}, {} CPUs\n",
        opts.cni_version,
        opts.iterations,
        PREFIXES.len(),
        opts.port_mappings,
        kernel.trim(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
    );
    println!("| plugin | ADD p50 ms | ADD p99 ms | DEL p50 ms | DEL p99 ms | peak RSS | binary |");
    println!("|---|---|---|---|---|---|---|");
    let mut adds = Vec::new();
    for ((s, m), rss) in subjects.iter().zip(samples).zip(rss_kib) {
        let (add, del) = (summary(&m.add)?, summary(&m.del)?);
        let size = std::fs::metadata(&s.bin)
            .map_err(|e| Error::new(format!("{}: {e}", s.bin.display())))?
            .len();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            s.name,
            stats::ms(add.p50),
            stats::ms(add.p99),
            stats::ms(del.p50),
            stats::ms(del.p99),
            mib(rss * 1024),
            mib(size)
        );
        adds.push(add);
    }
    if let [raven, portmap, ..] = adds.as_slice() {
        println!(
            "\nraven-cni ADD p50 = {:.2} x portmap's; goals: ADD p50 <= 3 ms, p99 <= 8 ms, <= 0.1 x \
             portmap, peak RSS <= 4 MiB",
            raven.p50.as_secs_f64() / portmap.p50.as_secs_f64()
        );
    }
    Ok(())
}
