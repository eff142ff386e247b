//! The `raven-node` processes: their command lines, start and stop, cleanup, logs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{LAB_POLL_INTERVAL_MS, Lab, METRICS_ADDR, UNDERLAY_MTU};
use crate::cmd::{self, Output};
use crate::error::{Context, Error, Result};

/// `raven-node run` for node `name` in standalone mode with every path under `dir`
/// (`gateways`, `state`, `node-state.json`, and `cni_dir` for raven-cni's data): the arguments
/// every harness starting a daemon shares.
pub fn run_args(bin: &Path, name: &str, dir: &Path, cni_dir: &str) -> Vec<String> {
    let d = |sub: &str| dir.join(sub).to_string_lossy().into_owned();
    vec![
        bin.to_string_lossy().into_owned(),
        "run".into(),
        "--node-name".into(),
        name.into(),
        "--gateways-dir".into(),
        d("gateways"),
        "--state-dir".into(),
        d("state"),
        "--node-state-file".into(),
        d("node-state.json"),
        "--cni-data-dir".into(),
        d(cni_dir),
    ]
}

impl Lab {
    /// The `raven-node run` command line for node `i`.
    pub fn daemon_command(&self, i: usize) -> Command {
        let node = &self.nodes[i];
        let mtu = UNDERLAY_MTU.to_string();
        let poll = self
            .options
            .poll_interval_ms
            .unwrap_or(LAB_POLL_INTERVAL_MS)
            .to_string();
        let base = run_args(&self.raven_node, node.spec.name, &node.dir, "raven");
        let mut argv: Vec<&str> = base.iter().map(String::as_str).collect();
        argv.extend([
            "--metrics-addr",
            METRICS_ADDR,
            "--underlay-mtu",
            &mtu,
            "--poll-interval-ms",
            &poll,
            // Nodes reach remote pods with their private IP as source (the planner's route
            // `src`); replies find their way back only if node IPs are routed like pod
            // subnets. The overlapping edge addresses are excluded by the planner (reported
            // as conflicts), so only nodes with unique addresses reach remote pods.
            "--forward-node-ip",
            "--log",
            "info",
        ]);
        let mut c = node.netns.command(&argv);
        if let Some(driver) = &self.options.tunnel_driver {
            c.args(["--tunnel-driver", driver]);
        }
        c
    }

    /// Runs `raven-node cleanup` on node `i` (same paths as the daemon).
    pub fn run_cleanup(&self, i: usize) -> Result<Output> {
        let mut c = self.daemon_command(i);
        // Same flags as `run`, with the subcommand swapped.
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .map(|a| if a == "run" { "cleanup".to_string() } else { a })
            .collect();
        c = Command::new("ip");
        c.args(args);
        cmd::run_command(c, None)
    }

    /// Starts `raven-node` on node `i` (logs appended to `<node dir>/raven-node.log`).
    pub fn start_daemon(&mut self, i: usize) -> Result<()> {
        if self.nodes[i].daemon.is_some() {
            return Ok(());
        }
        let log_path = self.nodes[i].dir.join("raven-node.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .context(|| format!("opening {}", log_path.display()))?;
        let err = log
            .try_clone()
            .context(|| "cloning the log handle".to_string())?;
        let mut c = self.daemon_command(i);
        c.stdin(Stdio::null()).stdout(log).stderr(err);
        let child = c
            .spawn()
            .context(|| format!("starting raven-node on {}", self.nodes[i].spec.name))?;
        self.nodes[i].daemon = Some(child);
        Ok(())
    }

    /// Starts every daemon.
    pub fn start_daemons(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.start_daemon(i)?;
        }
        Ok(())
    }

    /// Stops node `i`'s daemon with `signal` (e.g. `libc::SIGTERM`, `libc::SIGKILL`) and
    /// waits for it; returns its exit status description.
    pub fn stop_daemon(&mut self, i: usize, signal: i32) -> Result<String> {
        let Some(mut child) = self.nodes[i].daemon.take() else {
            return Ok("not running".to_string());
        };
        // `ip netns exec` execs the daemon, so the child's pid is the daemon's.
        let pid = i32::try_from(child.id()).map_err(|_| Error::new("pid out of range"))?;
        // SAFETY: kill(2) on a pid we spawned and have not reaped yet.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child
                .try_wait()
                .context(|| "waiting for raven-node".to_string())?
            {
                return Ok(status.to_string());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::new(format!(
                    "raven-node on {} did not stop within 10 s",
                    self.nodes[i].spec.name
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pid of node `i`'s daemon, if running (`ip netns exec` execs it, so this is the
    /// daemon itself), e.g. to send SIGHUP for an immediate resync.
    pub fn daemon_pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].daemon.as_ref().map(Child::id)
    }

    /// Whether node `i`'s daemon is still running.
    pub fn daemon_running(&mut self, i: usize) -> bool {
        match self.nodes[i].daemon.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Node `i`'s daemon log.
    pub fn daemon_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].dir.join("raven-node.log")).unwrap_or_default()
    }

    /// Every daemon's log tail, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let log = self.daemon_log(i);
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            out.push_str(&format!("--- {} ---\n", n.spec.name));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}
