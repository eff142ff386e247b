//! A `raven-controller` process for the API-server tier: found in the target directory (or
//! `$RAVEN_CONTROLLER_BIN`), started against a kubeconfig with its own `/metrics` port, its
//! log, RSS and CPU time readable, killed on drop. Re-exported from [`crate::kube`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::kube::{KubeError, err, free_port};

/// A `raven-controller` process, killed on drop; its stderr goes to a log file.
#[derive(Debug)]
pub struct ControllerProcess {
    child: Option<Child>,
    /// The log file.
    pub log: PathBuf,
    /// Port of its `/metrics` server on 127.0.0.1 (chosen free at start, so replicas and
    /// parallel tests never collide), unless the caller passed `--metrics-addr` itself.
    pub metrics_port: Option<u16>,
}

/// The `raven-controller` binary: `$RAVEN_CONTROLLER_BIN`, else the newer of the debug and
/// release builds in the target directory.
pub fn find_controller() -> Result<PathBuf, KubeError> {
    if let Some(p) = std::env::var_os("RAVEN_CONTROLLER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let t = crate::paths::target_dir();
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = ["debug", "release"]
        .iter()
        .map(|p| t.join(p).join("raven-controller"))
        .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p).ok_or_else(|| {
        err("raven-controller is not built: run `cargo build -p raven-controller` first")
    })
}

impl ControllerProcess {
    /// Starts `raven-controller run --kubeconfig <kubeconfig> <args>`.
    pub fn start(kubeconfig: &Path, log: PathBuf, args: &[&str]) -> Result<Self, KubeError> {
        Self::start_bin(&find_controller()?, kubeconfig, log, args)
    }

    /// Starts the given `raven-controller` binary (e.g. the release build, for benchmarks).
    pub fn start_bin(
        bin: &Path,
        kubeconfig: &Path,
        log: PathBuf,
        args: &[&str],
    ) -> Result<Self, KubeError> {
        let file = fs::File::create(&log).map_err(|e| err(format!("log file: {e}")))?;
        let metrics_port = if args.contains(&"--metrics-addr") {
            None
        } else {
            Some(free_port()?)
        };
        let metrics_arg: Vec<String> = metrics_port
            .map(|p| vec!["--metrics-addr".to_owned(), format!("127.0.0.1:{p}")])
            .unwrap_or_default();
        let child = Command::new(bin)
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .args(&metrics_arg)
            .env("RUST_LOG", "info,raven_controller=debug")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| err(format!("spawn {}: {e}", bin.display())))?;
        Ok(ControllerProcess {
            child: Some(child),
            log,
            metrics_port,
        })
    }

    /// The text of its `/metrics` (via curl), if it serves one.
    pub fn metrics_text(&self) -> Result<String, KubeError> {
        let port = self
            .metrics_port
            .ok_or_else(|| err("this controller was started with its own --metrics-addr"))?;
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{port}/metrics"))
            .output()
            .map_err(|e| err(format!("curl: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "GET /metrics: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The value of an unlabelled metric sample `name`, if present.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics_text().ok()?;
        text.lines().find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse().ok())?
        })
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the process and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Resident set size in KiB (from /proc), while running.
    pub fn rss_kib(&self) -> Option<u64> {
        self.proc_status_kib("VmRSS:")
    }

    /// Peak resident set size in KiB (`VmHWM` from /proc), while running.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.proc_status_kib("VmHWM:")
    }

    /// CPU time (user + system) the process has used so far, in seconds.
    pub fn cpu_secs(&self) -> Option<f64> {
        proc_cpu_secs(self.child.as_ref()?.id())
    }

    fn proc_status_kib(&self, key: &str) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }
}

/// CPU time (user + system) of process `pid` in seconds, from `/proc/<pid>/stat` (clock
/// ticks of 1/100 s, the Linux `USER_HZ`).
pub fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at state (field 3);
    // utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
