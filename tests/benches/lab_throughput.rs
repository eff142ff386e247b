//! raven-node in the multi-domain lab (issue 4), side by side in one run:
//!
//! 1. idle RSS and CPU of every release `raven-node` once the lab has converged, with the
//!    daemon's default poll (1 s) and resync (30 s) intervals, from `/proc/<pid>/status`
//!    (`VmRSS`, `VmHWM`) and `/proc/<pid>/stat` (`utime + stime`);
//! 2. the ceiling: pod → pod inside one domain (bridge, veth, Flannel-host-gw routing);
//! 3. raven0 overhead: node → node inside one domain through the VXLAN `raven0` the daemon
//!    built (VTEP address 240.x.y.z) vs the same two namespaces over their L2 segment;
//! 4. cross-domain pod → pod through our userspace WireGuard driver, then through
//!    `boringtun-cli` 0.7.1 in the same lab: the gateway daemons are stopped gracefully (the
//!    data plane stays: raven0, FDB, rules, pod routes, members' routes), each gateway's tunnel
//!    device is replaced by a boringtun-cli device configured with `wg` with the same private
//!    key, listen port, peers, allowed IPs (= the prefixes the daemon routed to each peer),
//!    endpoints, keepalive and MTU, and the daemon's routes are put back onto it; afterwards
//!    boringtun-cli is stopped and the daemons restarted (they rebuild their own device), so
//!    rounds alternate ours / boringtun-cli under the same machine load.
//!
//! Every iperf3 number is printed with the 1-minute load average at the time.
//!
//! ```text
//! cargo build --release -p raven-node -p raven-cni && tests/cnitool/build.sh
//! sudo -E cargo bench -p raven-tests --bench lab_throughput
//! ```
//!
//! Knobs: `LAB_BENCH_SECONDS` (iperf3 time, default 10), `LAB_BENCH_ROUNDS` (default 2),
//! `LAB_BENCH_IDLE_SECONDS` (default 60), `BORINGTUN_CLI` (default
//! `/opt/boringtun-cli/bin/boringtun-cli`), `RAVEN_NODE_BIN` (default: the release build in
//! the target directory). Needs root, iperf3, wg (wireguard-tools), ping, nft, the Debian CNI
//! plugins and raven-cnitool; a missing piece fails the run with the fix. `--list` (test
//! discovery) and runs without `--bench` return at once.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use raven_tests::error::{Context, Error, Result};
use raven_tests::lab::{Lab, LabOptions, NODES};
use raven_tests::{paths, require};
use serde_json::Value;

/// The tunnel device of our userspace driver (`raven_node::plan::options::WIREGUARD_DEVICE`).
const OUR_DEVICE: &str = "raven-wg0";
/// The lab's tunnel port (Gateway endpoints say 4500).
const TUNNEL_PORT: u16 = 4500;
/// Our driver's default persistent keepalive towards peers we initiate to.
const KEEPALIVE_SECS: u16 = 5;
/// The tunnel table the daemon routes remote prefixes into (`plan::routes::TUNNEL_TABLE`).
const TUNNEL_TABLE: &str = "9028";
/// Gateway nodes of the lab (active endpoints); cloud-1 is the central one.
const GATEWAYS: [&str; 3] = ["cloud-1", "edge-a-1", "edge-b-1"];
const DEFAULT_BORINGTUN: &str = "/opt/boringtun-cli/bin/boringtun-cli";

/// Cross-domain pod pairs measured through each tunnel implementation.
const CROSS: [(&str, &str, &str); 3] = [
    (
        "edge-a-1",
        "cloud-1",
        "gateway pod -> gateway pod (1 tunnel hop)",
    ),
    (
        "edge-a-2",
        "cloud-2",
        "member pod -> member pod (raven0 + tunnel + raven0)",
    ),
    (
        "edge-a-2",
        "edge-b-1",
        "edge-a -> edge-b via the cloud relay (2 tunnel hops)",
    ),
];
/// Pod pairs inside one domain (the ceiling: no tunnel, no raven0).
const CEILING: [(&str, &str); 2] = [("cloud-1", "cloud-2"), ("edge-a-1", "edge-a-2")];
/// (member, gateway) node pairs for raven0 vs the L2 segment.
const RAVEN0_PAIRS: [(&str, &str); 2] = [("edge-a-2", "edge-a-1"), ("cloud-2", "cloud-1")];

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// One iperf3 result.
#[derive(Clone, Debug)]
struct Sample {
    gbps: f64,
    /// iperf3's own CPU use (sender, receiver), percent of one core.
    cpu: (f64, f64),
    load: String,
}

/// Runs an iperf3 server in `server_ns` and a client in `client_ns` towards `dst`.
fn iperf(
    server_ns: &raven_tests::Netns,
    client_ns: &raven_tests::Netns,
    dst: Ipv4Addr,
) -> Result<Sample> {
    let secs = env_num("LAB_BENCH_SECONDS", 10).to_string();
    let mut server = server_ns
        .command(&["iperf3", "-s", "-1", "-p", "5299"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context(|| "starting the iperf3 server".to_string())?;
    std::thread::sleep(Duration::from_millis(400));
    let load = loadavg();
    let dst = dst.to_string();
    let out = client_ns.exec_output(&[
        "iperf3",
        "-c",
        &dst,
        "-p",
        "5299",
        "-t",
        &secs,
        "--connect-timeout",
        "5000",
        "-J",
    ]);
    let _ = server.kill();
    let _ = server.wait();
    let out = out?;
    if !out.success() {
        return Err(Error::new(format!(
            "iperf3 to {dst} failed: {}",
            out.describe_failure()
        )));
    }
    let v: Value =
        serde_json::from_str(&out.stdout).context(|| format!("iperf3 JSON: {}", out.stdout))?;
    let gbps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| Error::new(format!("no bits_per_second in {}", out.stdout)))?
        / 1e9;
    let cpu = &v["end"]["cpu_utilization_percent"];
    Ok(Sample {
        gbps,
        cpu: (
            cpu["host_total"].as_f64().unwrap_or(f64::NAN),
            cpu["remote_total"].as_f64().unwrap_or(f64::NAN),
        ),
        load,
    })
}

fn pod_iperf(lab: &Lab, from: &str, to: &str) -> Result<Sample> {
    let server = lab.pod(to)?;
    let client = lab.pod(from)?;
    iperf(&server.pod.netns, &client.pod.netns, server.ip)
        .map_err(|e| Error::new(format!("pod {from} -> pod {to}: {e}\n{}", lab.logs())))
}

/// Waits until every pod pair answers pings (ordered so NATed sides handshake first).
fn wait_connected(lab: &Lab, what: &str) -> Result<Duration> {
    let start = Instant::now();
    let pairs = [
        ("edge-a-1", "cloud-1"),
        ("edge-b-1", "cloud-1"),
        ("edge-a-2", "cloud-2"),
        ("edge-a-2", "edge-b-1"),
        ("cloud-2", "edge-a-2"),
        ("edge-b-1", "edge-a-2"),
    ];
    for (a, b) in pairs {
        let from = lab.pod(a)?;
        let to = lab.pod(b)?.ip;
        lab.wait_for(
            &format!("{what}: ping {a} pod -> {b} pod ({to})"),
            Duration::from_secs(40),
            || lab.ping_from_pod(from, to),
        )?;
    }
    Ok(start.elapsed())
}

/// Resident set and CPU ticks of one process.
#[derive(Clone, Copy, Debug)]
struct ProcSample {
    rss_kib: u64,
    hwm_kib: u64,
    ticks: u64,
}

fn proc_sample(pid: u32) -> Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::new(format!("no {name} in /proc/{pid}/status")))
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14,
    // stime 15, so they are the 12th and 13th after the closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| Error::new(format!("malformed /proc/{pid}/stat")))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> Result<u64> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::new(format!("malformed /proc/{pid}/stat")))
    };
    Ok(ProcSample {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        ticks: num(11)? + num(12)?,
    })
}

fn role(node: &str) -> &'static str {
    match node {
        "cloud-1" => "central gateway",
        "edge-a-1" => "gateway (NAT)",
        "edge-b-1" => "solo gateway (NAT)",
        _ => "member",
    }
}

/// Samples every daemon over `secs` of idle; prints and returns one line per node.
fn idle(lab: &Lab, secs: u64) -> Result<Vec<String>> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let pids: Vec<u32> = (0..lab.nodes.len())
        .map(|i| {
            lab.daemon_pid(i)
                .ok_or_else(|| Error::new(format!("{}: daemon not running", NODES[i].name)))
        })
        .collect::<Result<_>>()?;
    let load_start = loadavg();
    let start = Instant::now();
    let first: Vec<ProcSample> = pids
        .iter()
        .map(|&p| proc_sample(p))
        .collect::<Result<_>>()?;
    let mut max_rss = vec![0u64; pids.len()];
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        for (i, &p) in pids.iter().enumerate() {
            max_rss[i] = max_rss[i].max(proc_sample(p)?.rss_kib);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut lines = Vec::new();
    for (i, &p) in pids.iter().enumerate() {
        let last = proc_sample(p)?;
        let cpu = (last.ticks - first[i].ticks) as f64 / hz / elapsed * 100.0;
        let line = format!(
            "| {} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.3} % ({} ticks in {:.0} s) | {} → {} |",
            NODES[i].name,
            role(NODES[i].name),
            last.rss_kib as f64 / 1024.0,
            max_rss[i].max(last.rss_kib) as f64 / 1024.0,
            last.hwm_kib as f64 / 1024.0,
            cpu,
            last.ticks - first[i].ticks,
            elapsed,
            load_start,
            loadavg(),
        );
        println!("{line}");
        lines.push(line);
    }
    Ok(lines)
}

/// Routes the daemon put into the tunnel table on a gateway: (destination, the rest of the
/// `ip route` arguments without the device).
fn tunnel_routes(lab: &Lab, node: usize) -> Result<Vec<(String, Vec<String>)>> {
    let text = lab.nodes[node]
        .netns
        .ip(&["-4", "-o", "route", "show", "table", TUNNEL_TABLE])?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let dest = words
            .next()
            .ok_or_else(|| Error::new(format!("empty route line {line:?}")))?
            .to_string();
        let mut args = Vec::new();
        let mut skip_next = false;
        for w in words {
            if skip_next {
                skip_next = false;
                continue;
            }
            match w {
                // The device is replaced and the table given explicitly; kernel flags are
                // not arguments.
                "dev" | "table" => skip_next = true,
                "linkdown" | "dead" | "offload" | "trap" => {}
                _ => args.push(w.to_string()),
            }
        }
        if !line.contains(&format!("dev {OUR_DEVICE}")) {
            return Err(Error::new(format!(
                "{}: unexpected route in table {TUNNEL_TABLE}: {line}",
                NODES[node].name
            )));
        }
        out.push((dest, args));
    }
    if out.is_empty() {
        return Err(Error::new(format!(
            "{}: no route in table {TUNNEL_TABLE}",
            NODES[node].name
        )));
    }
    Ok(out)
}

/// The pod subnets of the domain of gateway node `gateway` (the daemon merges adjacent
/// prefixes of different domains into one route, so routes cannot tell peers apart).
fn domain_subnets(gateway: &str) -> Vec<String> {
    let domain = NODES.iter().find(|n| n.name == gateway).map(|n| n.domain);
    NODES
        .iter()
        .filter(|n| Some(n.domain) == domain)
        .map(|n| n.pod_subnet.to_string())
        .collect()
}

/// One gateway's tunnel as boringtun-cli runs it.
struct BoringGateway {
    node: usize,
    device: String,
    child: Child,
}

/// boringtun-cli on every gateway; stopping it removes its devices.
struct Boring {
    gateways: Vec<BoringGateway>,
}

impl Boring {
    fn stop(&mut self, lab: &Lab) {
        for mut g in self.gateways.drain(..) {
            let pid = g.child.id() as i32;
            // SAFETY: kill(2) on a child we spawned and have not reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(g.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = g.child.kill();
            let _ = g.child.wait();
            // Gone with its process; deleting is for the case it was not.
            let _ = lab.nodes[g.node].netns.ip(&["link", "del", &g.device]);
        }
    }
}

impl Drop for Boring {
    fn drop(&mut self) {
        for g in &mut self.gateways {
            let _ = g.child.kill();
            let _ = g.child.wait();
        }
    }
}

/// Replaces our tunnel on every gateway by boringtun-cli (see the module doc).
fn swap_to_boringtun(lab: &mut Lab, cli: &Path, boring: &mut Boring) -> Result<()> {
    let idx: Vec<usize> = GATEWAYS
        .iter()
        .map(|g| lab.node_index(g))
        .collect::<Result<_>>()?;
    // Observe what the daemons built before touching anything.
    let mut plans = Vec::new();
    for &i in &idx {
        let routes = tunnel_routes(lab, i)?;
        let link = lab.nodes[i].netns.ip(&["-o", "link", "show", OUR_DEVICE])?;
        let mtu = link
            .split_whitespace()
            .skip_while(|w| *w != "mtu")
            .nth(1)
            .ok_or_else(|| Error::new(format!("no mtu in {link}")))?
            .to_string();
        plans.push((i, routes, mtu));
    }
    for &i in &idx {
        let status = lab.stop_daemon(i, libc::SIGTERM)?;
        if !status.contains("exit status: 0") {
            return Err(Error::new(format!(
                "{}: raven-node did not stop cleanly: {status}",
                NODES[i].name
            )));
        }
        let ns = &lab.nodes[i].netns;
        if ns.ip(&["link", "del", OUR_DEVICE]).is_err() {
            ns.ip(&["tuntap", "del", "dev", OUR_DEVICE, "mode", "tun"])?;
        }
    }
    let central = lab.node_index("cloud-1")?;
    let central_ip = NODES[central].ip;
    for (i, routes, mtu) in plans {
        let name = NODES[i].name;
        // Unique host-wide: boringtun-cli's control socket lives in /var/run/wireguard,
        // which every namespace shares.
        let device = format!("bt-{name}");
        let ns = lab.nodes[i].netns.name().to_string();
        let sock = PathBuf::from(format!("/var/run/wireguard/{device}.sock"));
        // A socket left by an earlier, killed run would pass for this one's.
        let _ = std::fs::remove_file(&sock);
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(cli)
            .args([&device, "--foreground", "--disable-drop-privileges"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(|| format!("starting {}", cli.display()))?;
        boring.gateways.push(BoringGateway {
            node: i,
            device: device.clone(),
            child,
        });
        let start = Instant::now();
        while !sock.exists() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(Error::new(format!(
                    "boringtun-cli did not create {}",
                    sock.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Peers and their allowed IPs: an edge gateway sends everything the daemon routed
        // into the tunnel to the central gateway (which relays between edges); the central
        // one knows each edge gateway with its domain's pod subnets (the edges' node
        // addresses overlap, so the planner routes none of them).
        let mut peers: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        if name == "cloud-1" {
            for g in GATEWAYS.iter().filter(|g| **g != "cloud-1") {
                peers.insert(g, domain_subnets(g));
            }
        } else {
            peers.insert("cloud-1", routes.iter().map(|(d, _)| d.clone()).collect());
        }
        let key = lab.nodes[i].dir.join("state/wireguard.key");
        let mut wg: Vec<String> = vec![
            "wg".into(),
            "set".into(),
            device.clone(),
            "private-key".into(),
            key.to_string_lossy().into_owned(),
            "listen-port".into(),
            TUNNEL_PORT.to_string(),
        ];
        for (peer, allowed) in &peers {
            let public = lab
                .node(peer)?
                .public_key
                .clone()
                .ok_or_else(|| Error::new(format!("{peer}: no public key")))?;
            wg.extend([
                "peer".into(),
                public,
                "allowed-ips".into(),
                allowed.join(","),
            ]);
            if *peer == "cloud-1" {
                // Edges are NATed: they initiate and keep their mapping open, as ours do.
                wg.extend([
                    "endpoint".into(),
                    format!("{central_ip}:{TUNNEL_PORT}"),
                    "persistent-keepalive".into(),
                    KEEPALIVE_SECS.to_string(),
                ]);
            }
        }
        let argv: Vec<&str> = wg.iter().map(String::as_str).collect();
        let netns = &lab.nodes[i].netns;
        netns.exec(&argv).context(|| format!("{name}: wg set"))?;
        netns.ip(&["link", "set", &device, "mtu", &mtu, "up"])?;
        for (dest, args) in &routes {
            let mut a: Vec<&str> = vec![
                "route",
                "replace",
                dest.as_str(),
                "table",
                TUNNEL_TABLE,
                "dev",
                device.as_str(),
            ];
            a.extend(args.iter().map(String::as_str));
            netns.ip(&a)?;
        }
        println!(
            "  {name}: boringtun-cli {device} mtu {mtu}, peers {:?}",
            peers
        );
    }
    Ok(())
}

/// Stops boringtun-cli and restarts the gateway daemons (they rebuild their own device).
fn swap_back(lab: &mut Lab, boring: &mut Boring) -> Result<Duration> {
    boring.stop(lab);
    for g in GATEWAYS {
        let i = lab.node_index(g)?;
        lab.start_daemon(i)?;
    }
    wait_connected(lab, "raven-node restarted")
}

fn check_tools() -> Result<PathBuf> {
    require::check_root()?;
    for tool in ["iperf3", "wg", "ping", "nft", "curl"] {
        require::check_tool(tool)?;
    }
    let cli = std::env::var_os("BORINGTUN_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BORINGTUN));
    if !require::is_executable(&cli) {
        return Err(Error::new(format!(
            "boringtun-cli not found at {} (set BORINGTUN_CLI, or `cargo install boringtun-cli \
             --version 0.7.1 --root /opt/boringtun-cli`)",
            cli.display()
        )));
    }
    Ok(cli)
}

/// The release raven-node unless RAVEN_NODE_BIN says otherwise (passed to the lab in its options).
fn release_raven_node() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("RAVEN_NODE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let p = paths::target_dir().join("release/raven-node");
    if !require::is_executable(&p) {
        return Err(Error::new(format!(
            "{} is missing: `cargo build --release -p raven-node` (or set RAVEN_NODE_BIN)",
            p.display()
        )));
    }
    Ok(p)
}

#[derive(Default)]
struct Results {
    rows: BTreeMap<String, Vec<Sample>>,
    order: Vec<String>,
}

impl Results {
    fn add(&mut self, key: &str, s: Sample) {
        println!(
            "  {key:<62} {:6.2} Gbit/s  cpu snd {:5.1} % rcv {:5.1} %  load {}",
            s.gbps, s.cpu.0, s.cpu.1, s.load
        );
        if !self.rows.contains_key(key) {
            self.order.push(key.to_string());
        }
        self.rows.entry(key.to_string()).or_default().push(s);
    }

    fn gbps(&self, key: &str) -> Vec<f64> {
        self.rows
            .get(key)
            .map(|v| v.iter().map(|s| s.gbps).collect())
            .unwrap_or_default()
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn run() -> Result<()> {
    let cli = check_tools()?;
    let node_bin = release_raven_node()?;
    let cli_text = cli.to_string_lossy().into_owned();
    let version = raven_tests::cmd::run_ok(&[cli_text.as_str(), "--version"])
        .unwrap_or_else(|e| format!("? ({e})"));
    let rounds = env_num("LAB_BENCH_ROUNDS", 2).max(1);
    let secs = env_num("LAB_BENCH_SECONDS", 10);
    let idle_secs = env_num("LAB_BENCH_IDLE_SECONDS", 60);
    println!(
        "lab_throughput: raven-node {}, {}, iperf3 TCP 1 stream {secs} s, {rounds} rounds, load {}",
        node_bin.display(),
        version.trim(),
        loadavg()
    );
    let options = LabOptions {
        tunnel_driver: Some("wireguard-userspace".into()),
        // The daemon's default, so the idle numbers are the daemon's, not the tests'.
        poll_interval_ms: Some(1000),
        raven_node: Some(node_bin.clone()),
    };
    let mut lab = Lab::build_with(options)?;
    lab.start_daemons()?;
    let converged = wait_connected(&lab, "first convergence")?;
    println!("converged: every domain pair pings after {converged:?}");

    println!("\n## idle daemons ({idle_secs} s, default poll 1 s and resync 30 s)");
    println!("| node | role | RSS end | RSS max | VmHWM | CPU | load |");
    println!("|---|---|---|---|---|---|---|");
    std::thread::sleep(Duration::from_secs(5));
    let idle_lines = idle(&lab, idle_secs)?;

    let mut res = Results::default();
    let mut boring = Boring {
        gateways: Vec::new(),
    };
    let outcome = (|| -> Result<()> {
        for round in 1..=rounds {
            println!("\n## round {round}/{rounds}");
            for (a, b) in CEILING {
                res.add(
                    &format!("ceiling: pod {a} -> pod {b} (veth + host-gw)"),
                    pod_iperf(&lab, a, b)?,
                );
            }
            for (member, gw) in RAVEN0_PAIRS {
                let m = lab.node(member)?;
                let g = lab.node(gw)?;
                let o = g.spec.ip.octets();
                let vtep = Ipv4Addr::new(240, o[1], o[2], o[3]);
                res.add(
                    &format!("L2 segment: node {member} -> node {gw} ({})", g.spec.ip),
                    iperf(&g.netns, &m.netns, g.spec.ip)?,
                );
                res.add(
                    &format!("raven0: node {member} -> node {gw} ({vtep})"),
                    iperf(&g.netns, &m.netns, vtep)?,
                );
            }
            for (a, b, _) in CROSS {
                res.add(&format!("ours: pod {a} -> pod {b}"), pod_iperf(&lab, a, b)?);
            }
            let t = Instant::now();
            swap_to_boringtun(&mut lab, &cli, &mut boring)?;
            let up = wait_connected(&lab, "boringtun-cli")?;
            println!(
                "  boringtun-cli in place after {:?} (pings answered {up:?} after the swap)",
                t.elapsed()
            );
            for (a, b, _) in CROSS {
                res.add(
                    &format!("boringtun-cli: pod {a} -> pod {b}"),
                    pod_iperf(&lab, a, b)?,
                );
            }
            let back = swap_back(&mut lab, &mut boring)?;
            println!("  raven-node back on the gateways, all pairs ping after {back:?}");
        }
        Ok(())
    })();
    boring.stop(&lab);
    outcome?;

    println!("\n## daemons after the throughput runs");
    for (i, n) in NODES.iter().enumerate() {
        if let Some(pid) = lab.daemon_pid(i) {
            let s = proc_sample(pid)?;
            println!(
                "  {:<9} RSS {:.1} MiB, VmHWM {:.1} MiB",
                n.name,
                s.rss_kib as f64 / 1024.0,
                s.hwm_kib as f64 / 1024.0
            );
        }
    }

    println!("\n## summary ({rounds} rounds, Gbit/s per round, load average at each)");
    println!("| measure | per round | mean |");
    println!("|---|---|---|");
    for key in &res.order {
        let samples = &res.rows[key];
        let per: Vec<String> = samples
            .iter()
            .map(|s| format!("{:.2} (load {})", s.gbps, s.load))
            .collect();
        println!(
            "| {key} | {} | {:.2} |",
            per.join(", "),
            mean(&res.gbps(key))
        );
    }
    println!("\n| cross-domain pair | ours / boringtun-cli per round | mean |");
    println!("|---|---|---|");
    for (a, b, what) in CROSS {
        let ours = res.gbps(&format!("ours: pod {a} -> pod {b}"));
        let bt = res.gbps(&format!("boringtun-cli: pod {a} -> pod {b}"));
        let ratios: Vec<f64> = ours.iter().zip(&bt).map(|(o, b)| o / b).collect();
        let text: Vec<String> = ratios.iter().map(|r| format!("{r:.2}x")).collect();
        println!(
            "| {a} -> {b}: {what} | {} | {:.2}x |",
            text.join(", "),
            mean(&ratios)
        );
    }
    println!("\n| raven0 vs L2 segment | raven0 / L2 per round | overhead (mean) |");
    println!("|---|---|---|");
    for (member, gw) in RAVEN0_PAIRS {
        let g = lab.node(gw)?;
        let o = g.spec.ip.octets();
        let vtep = Ipv4Addr::new(240, o[1], o[2], o[3]);
        let l2 = res.gbps(&format!(
            "L2 segment: node {member} -> node {gw} ({})",
            g.spec.ip
        ));
        let r0 = res.gbps(&format!("raven0: node {member} -> node {gw} ({vtep})"));
        let ratios: Vec<f64> = r0.iter().zip(&l2).map(|(r, l)| r / l).collect();
        let text: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "| {member} -> {gw} | {} | {:.1} % |",
            text.join(", "),
            (1.0 - mean(&ratios)) * 100.0
        );
    }
    println!("\n| idle (from above) |");
    for l in idle_lines {
        println!("{l}");
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // `cargo test --benches` discovery
    }
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("lab_throughput: a benchmark; run it with `cargo bench` (see the file)");
        return;
    }
    if let Err(e) = run() {
        eprintln!("lab_throughput failed: {e}");
        std::process::exit(1);
    }
}
