//! Helpers shared by lab scenarios of every tunnel driver: convergence, TCP through iperf3,
//! captures on the "internet" segment, link lookups.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::error::{Context, Error, Result};
use crate::lab::{Lab, NODES};
use crate::netns::Netns;
use raven_api::nodestate::NodeState;

/// Pods that reach each other across all three domains (node IPs unique).
pub const PROBE_NODES: [&str; 3] = ["cloud-2", "edge-a-2", "edge-b-1"];

/// Waits until every node published its state and every probe pod pings every other one.
pub fn converge(lab: &Lab, timeout: Duration) -> Result<Duration> {
    let start = std::time::Instant::now();
    for (i, n) in NODES.iter().enumerate() {
        let file = lab.nodes[i].dir.join("node-state.json");
        lab.wait_for(
            &format!("{}: node state published", n.name),
            timeout,
            || matches!(NodeState::load(&file), Ok(Some(_))),
        )?;
    }
    for a in PROBE_NODES {
        for b in PROBE_NODES.iter().filter(|b| **b != a) {
            let from = lab.pod(a)?;
            let to = lab.pod(b)?.ip;
            lab.wait_for(&format!("ping {a} pod -> {b} pod ({to})"), timeout, || {
                lab.ping_from_pod(from, to)
            })?;
        }
    }
    Ok(start.elapsed())
}

/// A TCP transfer with iperf3 from pod on `from` to pod on `to` for `seconds`; bits/s.
pub fn tcp(lab: &Lab, from: &str, to: &str, seconds: u32, port: u16) -> Result<f64> {
    let server = lab.pod(to)?;
    let client = lab.pod(from)?;
    let port = port.to_string();
    let mut srv = server
        .pod
        .netns
        .command(&["iperf3", "-s", "-1", "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context(|| "iperf3 server".to_string())?;
    std::thread::sleep(Duration::from_millis(500));
    let out = lab.exec_in_pod(
        client,
        &[
            "iperf3",
            "-c",
            &server.ip.to_string(),
            "-p",
            &port,
            "-t",
            &seconds.to_string(),
            "-J",
        ],
    );
    let _ = srv.kill();
    let _ = srv.wait();
    let out = out?;
    if !out.success() {
        return Err(Error::new(format!(
            "TCP {from} -> {to} failed\n{}\n{}",
            out.describe_failure(),
            lab.logs()
        )));
    }
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).context(|| "iperf3 JSON".to_string())?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| Error::new("iperf3 reported no bits_per_second"))
}

/// A running tcpdump writing `file`.
#[derive(Debug)]
pub struct Capture {
    child: Child,
    /// The pcap file.
    pub file: PathBuf,
}

impl Capture {
    /// Starts tcpdump on `dev` in `ns` writing to `file` the packets matching `filter`
    /// (tcpdump syntax, may be empty).
    pub fn start(ns: &Netns, dev: &str, file: &Path, filter: &str) -> Result<Capture> {
        let file_arg = file.to_string_lossy().into_owned();
        let mut argv = vec!["tcpdump", "-i", dev, "-U", "-n", "-w", &file_arg];
        argv.extend(filter.split_whitespace());
        let child = ns
            .command(&argv)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(|| "starting tcpdump".to_string())?;
        // tcpdump needs a moment to attach (longer under TCG).
        std::thread::sleep(Duration::from_millis(1500));
        Ok(Capture {
            child,
            file: file.to_path_buf(),
        })
    }

    /// Stops it (SIGINT flushes the file).
    pub fn stop(mut self) -> Result<PathBuf> {
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: kill(2) on our own, not yet reaped child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        Ok(self.file.clone())
    }
}

/// Number of packets of `pcap` matching the tcpdump `filter`.
pub fn count(pcap: &Path, filter: &str) -> Result<usize> {
    let mut argv = vec!["tcpdump", "-n", "-r"];
    let file = pcap.to_string_lossy().into_owned();
    argv.push(&file);
    argv.extend(filter.split_whitespace());
    let out = crate::cmd::run_ok(&argv)?;
    Ok(out.lines().filter(|l| !l.trim().is_empty()).count())
}

/// Interface index and `ip -d link` text of `dev` in `ns`, or `None` when absent.
pub fn link(ns: &Netns, dev: &str) -> Option<(u32, String)> {
    let text = ns.ip(&["-d", "-o", "link", "show", dev]).ok()?;
    let index = text.split(':').next()?.trim().parse().ok()?;
    Some((index, text))
}
