//! Acceptance of the tunnel mode in the multi-domain lab (`raven_tests::lab`): three domains
//! (cloud; edge-a and edge-b behind NAT with the same private addresses), the real CNI chain on
//! every node, one `raven-node` per node in standalone mode with the userspace WireGuard
//! driver and the netlink data plane.
//!
//! Needs root, nftables, curl, iperf3, the Debian CNI plugins, `raven-cnitool`, the release
//! `raven-cni` and a `raven-node` build; a missing piece fails the test with the fix.
//! The lab tests run one at a time (a process-wide lock): each lab runs five daemons and a
//! userspace tunnel on a small machine.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use raven_api::nodestate::NodeState;
use raven_tests::lab::{Lab, NODES};
use raven_tests::require::require_tool;

static SERIAL: Mutex<()> = Mutex::new(());

fn lab() -> Lab {
    raven_tests::require_root();
    for tool in ["curl", "iperf3", "nft", "ping"] {
        require_tool(tool);
    }
    Lab::build().unwrap_or_else(|e| panic!("building the lab: {e}"))
}

/// Starts the daemons and waits until every pod can ping a pod in every other domain.
fn converge(lab: &mut Lab) -> Duration {
    let start = Instant::now();
    lab.start_daemons().expect("starting raven-node");
    for (i, n) in NODES.iter().enumerate() {
        let file = lab.nodes[i].dir.join("node-state.json");
        lab.wait_for(
            &format!("{}: node state published", n.name),
            Duration::from_secs(20),
            || matches!(NodeState::load(&file), Ok(Some(_))),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    for a in ["cloud-2", "edge-a-2", "edge-b-1"] {
        for b in ["cloud-2", "edge-a-2", "edge-b-1"] {
            if a == b {
                continue;
            }
            let from = lab.pod(a).expect("pod");
            let to = lab.pod(b).expect("pod").ip;
            lab.wait_for(
                &format!("ping {a} pod -> {b} pod ({to})"),
                Duration::from_secs(30),
                || lab.ping_from_pod(from, to),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    start.elapsed()
}

fn domain_of(node: &str) -> &'static str {
    NODES
        .iter()
        .find(|n| n.name == node)
        .map(|n| n.domain)
        .unwrap_or("?")
}

/// TCP through iperf3: server in pod `to`, 1 s client in pod `from`; returns bits/s.
fn tcp(lab: &Lab, from: &str, to: &str, seconds: u32) -> f64 {
    let server = lab.pod(to).expect("pod");
    let client = lab.pod(from).expect("pod");
    let mut srv = server
        .pod
        .netns
        .command(&["iperf3", "-s", "-1", "-p", "5201"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(300));
    let out = lab
        .exec_in_pod(
            client,
            &[
                "iperf3",
                "-c",
                &server.ip.to_string(),
                "-p",
                "5201",
                "-t",
                &seconds.to_string(),
                "-J",
            ],
        )
        .expect("iperf3 client");
    let _ = srv.kill();
    let _ = srv.wait();
    assert!(
        out.success(),
        "TCP {from} -> {to} failed\n{}\n{}",
        out.describe_failure(),
        lab.logs()
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("iperf3 JSON");
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .expect("bits_per_second")
}

/// Raven-owned kernel state of node `i` as text: raven0 and the tunnel device, routes in our
/// tables, our rules.
fn owned_state(lab: &Lab, i: usize) -> String {
    let ns = &lab.nodes[i].netns;
    let mut out = String::new();
    for dev in ["raven0", "raven-wg0"] {
        let link = ns.ip(&["-o", "link", "show", dev]).unwrap_or_default();
        out.push_str(&format!("{dev}: {}\n", link.contains("UP")));
    }
    for table in ["9027", "9028"] {
        for l in ns
            .ip(&["route", "show", "table", table])
            .unwrap_or_default()
            .lines()
        {
            out.push_str(&format!("{} table {table}\n", l.trim()));
        }
    }
    for l in ns.ip(&["rule", "show"]).unwrap_or_default().lines() {
        if l.starts_with("9026") || l.starts_with("9027") {
            out.push_str(l.trim());
            out.push('\n');
        }
    }
    out
}

/// A transfer of `amount` (iperf3 `-n`) from pod `from` to pod `to`; returns bytes sent.
fn tcp_bytes(lab: &Lab, from: &str, to: &str, amount: &str) -> f64 {
    let server = lab.pod(to).expect("pod");
    let client = lab.pod(from).expect("pod");
    let mut srv = server
        .pod
        .netns
        .command(&["iperf3", "-s", "-1", "-p", "5203"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(300));
    let out = lab
        .exec_in_pod(
            client,
            &[
                "timeout",
                "60",
                "iperf3",
                "-c",
                &server.ip.to_string(),
                "-p",
                "5203",
                "-n",
                amount,
                "-J",
            ],
        )
        .expect("iperf3 client");
    let _ = srv.kill();
    let _ = srv.wait();
    assert!(
        out.success(),
        "transfer {from} -> {to} failed: {}",
        out.describe_failure()
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("iperf3 JSON");
    // iperf3 exits 0 only after the whole amount was sent and acknowledged.
    v["end"]["sum_sent"]["bytes"].as_f64().unwrap_or(0.0)
}

fn link_bytes(lab: &Lab, node: &str, dev: &str) -> (u64, u64) {
    let out = lab
        .node(node)
        .expect("node")
        .netns
        .exec(&["ip", "-s", "-j", "link", "show", dev])
        .unwrap_or_else(|e| panic!("{node}: {dev}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j");
    let stats = &v[0]["stats64"];
    (
        stats["rx"]["bytes"].as_u64().unwrap_or(0),
        stats["tx"]["bytes"].as_u64().unwrap_or(0),
    )
}

#[test]
fn lab_cross_domain_pod_to_pod_and_node_to_pod() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut lab = lab();
    let took = converge(&mut lab);
    eprintln!("lab converged (all domain pairs ping) in {took:?}");
    let counters_before = link_bytes(&lab, "edge-a-2", "raven0");
    let wg_before = link_bytes(&lab, "cloud-1", "raven-wg0");

    // ICMP between every pair of pods in different domains, both directions.
    let mut pairs = 0;
    for a in 0..lab.pods.len() {
        for b in 0..lab.pods.len() {
            let (na, nb) = (lab.pods[a].node, lab.pods[b].node);
            if NODES[na].domain == NODES[nb].domain {
                continue;
            }
            let to = lab.pods[b].ip;
            assert!(
                lab.ping_from_pod(&lab.pods[a], to) || lab.ping_from_pod(&lab.pods[a], to),
                "ping {} pod -> {} pod ({to}) failed\n{}",
                NODES[na].name,
                NODES[nb].name,
                lab.logs()
            );
            pairs += 1;
        }
    }
    assert_eq!(
        pairs, 16,
        "5 pods in 3 domains: 16 ordered cross-domain pairs"
    );

    // TCP between every pair of domains, both directions (edge-a <-> edge-b via cloud-1).
    for (a, b) in [
        ("cloud-2", "edge-a-2"),
        ("edge-a-2", "cloud-2"),
        ("cloud-1", "edge-b-1"),
        ("edge-b-1", "cloud-1"),
        ("edge-a-2", "edge-b-1"),
        ("edge-b-1", "edge-a-2"),
    ] {
        let bps = tcp(&lab, a, b, 1);
        eprintln!(
            "TCP {a} ({}) -> {b} ({}): {:.0} Mbit/s",
            domain_of(a),
            domain_of(b),
            bps / 1e6
        );
        assert!(bps > 0.0);
    }

    // Node -> remote pod: the node's own traffic takes the tunnel too (with --forward-node-ip,
    // for nodes whose addresses are unique across domains; a gateway whose private IP is its
    // public IP, like cloud-1 here, cannot have its address routed into its own tunnel).
    for (node, pod) in [
        ("edge-a-2", "cloud-2"),
        ("cloud-2", "edge-b-1"),
        ("cloud-2", "edge-a-1"),
        ("edge-a-2", "edge-b-1"),
    ] {
        let to = lab.pod(pod).expect("pod").ip.to_string();
        let out = lab
            .node(node)
            .expect("node")
            .netns
            .exec_output(&["ping", "-c", "2", "-W", "1", &to])
            .expect("ping");
        assert!(
            out.success(),
            "node {node} -> pod on {pod}: {}",
            out.describe_failure()
        );
    }
    // The overlapping edge addresses cannot both be routed: reported, not mis-routed.
    let c1 = lab.node_index("cloud-1").expect("node");
    let conflicts = lab
        .metric(c1, "raven_node_plan_warnings{kind=\"remote_conflict\"}")
        .expect("metrics")
        .unwrap_or(0.0);
    assert!(conflicts >= 1.0, "no remote_conflict warning on cloud-1");

    // Proof of path: raven0 on a member and the tunnel on the central gateway carried it.
    let counters_after = link_bytes(&lab, "edge-a-2", "raven0");
    let wg_after = link_bytes(&lab, "cloud-1", "raven-wg0");
    assert!(
        counters_after.1 > counters_before.1,
        "raven0 tx on edge-a-2 did not rise"
    );
    assert!(
        counters_after.0 > counters_before.0,
        "raven0 rx on edge-a-2 did not rise"
    );
    assert!(
        wg_after.0 > wg_before.0 && wg_after.1 > wg_before.1,
        "raven-wg0 on cloud-1 idle"
    );
    let rx = lab
        .metric(c1, "raven_node_peer_rx_bytes{peer=\"gw-edge-a\"}")
        .expect("metrics")
        .unwrap_or(0.0);
    assert!(rx > 0.0, "per-peer rx metric on cloud-1 is {rx}");

    // No plaintext on the "internet": a ping with a marker payload from edge-a to cloud is
    // visible on edge-a-2's cni0 (positive control) and absent from the internet capture.
    let marker = "5eedfacecafe";
    let marker_bytes = [0x5e_u8, 0xed, 0xfa, 0xce, 0xca, 0xfe];
    let cap_inet = lab.root().join("inet.pcap");
    let cap_cni = lab.root().join("cni0.pcap");
    // The cloud nodes share the internet segment in this lab, so their intra-domain VXLAN
    // (raven0, UDP 4472, plaintext by design like Flannel's) is filtered out of the capture.
    let spawn_capture = |ns: &raven_tests::Netns, dev: &str, file: &std::path::Path| {
        ns.command(&[
            "tcpdump",
            "-i",
            dev,
            "-U",
            "-n",
            "-w",
            &file.to_string_lossy(),
            "not",
            "udp",
            "port",
            "4472",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tcpdump")
    };
    let mut t1 = spawn_capture(&lab.internet, "br0", &cap_inet);
    let mut t2 = spawn_capture(&lab.node("edge-a-2").expect("node").netns, "cni0", &cap_cni);
    std::thread::sleep(Duration::from_millis(700));
    let target = lab.pod("cloud-2").expect("pod").ip.to_string();
    let out = lab
        .exec_in_pod(
            lab.pod("edge-a-2").expect("pod"),
            &[
                "ping", "-c", "3", "-i", "0.2", "-s", "300", "-p", marker, &target,
            ],
        )
        .expect("ping");
    assert!(out.success(), "{}", out.describe_failure());
    std::thread::sleep(Duration::from_millis(500));
    for t in [&mut t1, &mut t2] {
        // SAFETY: kill(2) on our own child; SIGINT makes tcpdump flush and exit.
        unsafe { libc::kill(t.id() as i32, libc::SIGINT) };
        let _ = t.wait();
    }
    let contains = |file: &std::path::Path| {
        let bytes = std::fs::read(file).expect("capture file");
        (bytes.len(), bytes.windows(6).any(|w| w == marker_bytes))
    };
    let (cni_len, cni_has) = contains(&cap_cni);
    assert!(
        cni_has,
        "positive control: marker not seen on cni0 ({cni_len} bytes captured)"
    );
    let (inet_len, inet_has) = contains(&cap_inet);
    assert!(
        inet_len > 1000,
        "internet capture is nearly empty ({inet_len} bytes)"
    );
    assert!(
        !inet_has,
        "plaintext pod payload seen on the internet segment"
    );

    // PMTU: ICMP "fragmentation needed" is dropped on every node and router; a 10 MB TCP
    // transfer across domains still completes (the per-pod route MTU sizes the flow).
    let drop_frag = "table inet raven_lab_pmtu {\n\
         chain f { type filter hook forward priority 0; icmp type destination-unreachable icmp code frag-needed drop; }\n\
         chain o { type filter hook output priority 0; icmp type destination-unreachable icmp code frag-needed drop; }\n\
         chain i { type filter hook input priority 0; icmp type destination-unreachable icmp code frag-needed drop; }\n\
         }\n";
    let all_ns: Vec<&raven_tests::Netns> = lab.nodes.iter().map(|n| &n.netns).collect();
    for ns in all_ns {
        let mut c = ns.command(&["nft", "-f", "-"]);
        c.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        raven_tests::cmd::run_command(c, Some(drop_frag.as_bytes()))
            .and_then(|o| o.into_ok())
            .expect("nft drop frag-needed");
    }
    for (a, b) in [("edge-b-1", "cloud-2"), ("cloud-2", "edge-a-2")] {
        let bytes = tcp_bytes(&lab, a, b, "10M");
        eprintln!("PMTU: {a} -> {b}: {bytes} bytes with frag-needed dropped");
        assert!(bytes >= 10_485_760.0, "{bytes}");
    }

    // Health reflects real state: every daemon ready (applied, peers handshaked).
    for (i, n) in NODES.iter().enumerate() {
        let (code, body) = lab.http_get(i, "/readyz").expect("readyz");
        assert_eq!(code, 200, "{} not ready: {body}", n.name);
        assert_eq!(lab.http_get(i, "/healthz").expect("healthz").0, 200);
    }

    // A bad Gateway file is reported (log line + metric) and the rest still applies.
    let ea2 = lab.node_index("edge-a-2").expect("node");
    std::fs::write(
        lab.nodes[ea2].dir.join("gateways/zz-broken.yaml"),
        "apiVersion: raven.openyurt.io/v1beta1\nkind: Gateway\nmetadata: {name: [\n",
    )
    .expect("write a broken file");
    lab.wait_for(
        "gateway_file_errors metric",
        Duration::from_secs(10),
        || {
            lab.metric(ea2, "raven_node_gateway_file_errors ")
                .ok()
                .flatten()
                == Some(1.0)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        lab.daemon_log(ea2).contains("zz-broken.yaml"),
        "no log line names the broken file"
    );
    let target = lab.pod("edge-b-1").expect("pod").ip;
    assert!(lab.ping_from_pod(lab.pod("edge-a-2").expect("pod"), target));
    assert_eq!(lab.http_get(ea2, "/readyz").expect("readyz").0, 200);

    // The pods got their routes from raven-cni through the published node state.
    let pod = lab.pod("edge-a-2").expect("pod");
    let routes = pod
        .pod
        .netns
        .exec(&["ip", "route", "show", "proto", "82"])
        .expect("routes");
    for n in NODES.iter().filter(|n| n.domain != "edge-a") {
        assert!(
            routes.contains(n.pod_subnet) || routes.contains("10.244.0.0/"),
            "pod route for {} missing in edge-a-2's pod:\n{routes}",
            n.pod_subnet
        );
    }
    assert!(routes.contains("mtu 1420"), "{routes}");
}

#[test]
fn lab_failover_restart_kill_and_cleanup() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut lab = lab();
    converge(&mut lab);
    let c1 = lab.node_index("cloud-1").expect("node");
    let a1 = lab.node_index("edge-a-1").expect("node");

    // Restart the edge-a gateway's daemon during a running TCP stream: the stream survives.
    {
        let server = lab.pod("cloud-2").expect("pod");
        let client = lab.pod("edge-a-2").expect("pod");
        let mut srv = server
            .pod
            .netns
            .command(&["iperf3", "-s", "-1", "-p", "5202"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("iperf3 server");
        std::thread::sleep(Duration::from_millis(300));
        let cli = client
            .pod
            .netns
            .command(&[
                "iperf3",
                "-c",
                &server.ip.to_string(),
                "-p",
                "5202",
                "-t",
                "8",
                "-J",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("iperf3 client");
        std::thread::sleep(Duration::from_secs(2));
        let status = lab.stop_daemon(a1, libc::SIGTERM).expect("stop");
        eprintln!("edge-a-1 raven-node stopped: {status}");
        assert!(
            lab.node("edge-a-1")
                .unwrap()
                .netns
                .ip(&["link", "show", "raven0"])
                .is_ok(),
            "graceful stop removed raven0"
        );
        lab.start_daemon(a1).expect("restart");
        let out = cli.wait_with_output().expect("iperf3 client");
        let _ = srv.kill();
        let _ = srv.wait();
        assert!(
            out.status.success(),
            "the TCP stream did not survive the restart: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            lab.logs()
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 JSON");
        let bytes = v["end"]["sum_received"]["bytes"].as_f64().unwrap_or(0.0);
        eprintln!("stream across the restart: {bytes} bytes received, exit ok");
        assert!(bytes > 0.0);
    }

    // Failover: cloud-1 fails (its link goes down) and the cloud's active endpoint moves to
    // cloud-2 by editing the Gateway files; measured until edge-a's pod reaches cloud-2's pod.
    let ea2 = lab.node_index("edge-a-2").expect("node");
    let from = lab.pods.iter().position(|p| p.node == ea2).expect("pod");
    let to = lab.pod("cloud-2").expect("pod").ip;
    assert!(
        lab.ping_from_pod(&lab.pods[from], to),
        "no traffic before failover"
    );
    lab.nodes[c1]
        .netns
        .ip(&["link", "set", "eth0", "down"])
        .expect("cloud-1 down");
    let start = Instant::now();
    lab.set_cloud_active("cloud-2").expect("rewrite Gateways");
    let quick_ping = |lab: &Lab| {
        lab.pods[from]
            .pod
            .netns
            .exec_output(&["ping", "-c", "1", "-W", "0.2", &to.to_string()])
            .map(|o| o.success())
            .unwrap_or(false)
    };
    lab.wait_for(
        "traffic after failover to cloud-2",
        Duration::from_secs(60),
        || quick_ping(&lab),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let took = start.elapsed();
    eprintln!(
        "failover cloud-1 -> cloud-2 (file edit): edge-a-2 pod -> cloud-2 pod resumed after \
         {took:?}"
    );
    // edge-a <-> edge-b now relays through cloud-2.
    let eb = lab.pod("edge-b-1").expect("pod").ip;
    lab.wait_for(
        "edge-a -> edge-b via cloud-2",
        Duration::from_secs(30),
        || lab.ping_from_pod(&lab.pods[from], eb),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // kill -9 at several points of a start (mid-apply) converges on the next start: the owned
    // kernel state and the node state come back exactly as before.
    let c2 = lab.node_index("cloud-2").expect("node");
    let before = owned_state(&lab, c2);
    for delay_ms in [5, 20, 40, 80, 150] {
        lab.stop_daemon(c2, libc::SIGKILL).expect("kill");
        lab.start_daemon(c2).expect("start");
        std::thread::sleep(Duration::from_millis(delay_ms));
        lab.stop_daemon(c2, libc::SIGKILL)
            .expect("kill -9 mid-apply");
    }
    // Leave half-applied state behind on purpose: drop an owned route, as an interrupted apply
    // would have.
    let first_owned = before
        .lines()
        .find(|l| l.contains("table 9028"))
        .and_then(|l| l.split_whitespace().next())
        .expect("an owned route in table 9028")
        .to_string();
    lab.nodes[c2]
        .netns
        .ip(&["route", "del", &first_owned, "table", "9028"])
        .expect("remove an owned route");
    lab.start_daemon(c2).expect("start again");
    let took = lab
        .wait_for(
            "kernel state after kill -9",
            Duration::from_secs(30),
            || owned_state(&lab, c2) == before,
        )
        .unwrap_or_else(|e| panic!("{e}\nwanted:\n{before}\nhave:\n{}", owned_state(&lab, c2)));
    eprintln!("owned kernel state converged {took:?} after the restart following kill -9");
    lab.nodes[c1]
        .netns
        .ip(&["link", "set", "eth0", "up"])
        .expect("cloud-1 up");

    // Cleanup: everything owned goes, seeded foreign routes and rules stay.
    let ns = &lab.nodes[c1].netns;
    ns.ip(&[
        "route",
        "add",
        "10.99.0.0/24",
        "dev",
        "eth0",
        "table",
        "9027",
        "proto",
        "static",
    ])
    .expect("seed foreign route");
    ns.ip(&[
        "rule",
        "add",
        "pref",
        "9027",
        "to",
        "10.98.0.0/24",
        "lookup",
        "9027",
        "proto",
        "static",
    ])
    .expect("seed foreign rule");
    ns.ip(&[
        "rule",
        "add",
        "pref",
        "500",
        "from",
        "10.97.0.0/24",
        "lookup",
        "main",
    ])
    .expect("seed foreign rule 2");
    lab.stop_daemon(c1, libc::SIGTERM).expect("stop");
    let out = lab.run_cleanup(c1).expect("cleanup");
    assert!(out.success(), "cleanup failed: {}", out.describe_failure());
    let ns = &lab.nodes[c1].netns;
    let links = ns.ip(&["-o", "link", "show"]).expect("links");
    assert!(!links.contains("raven0"), "raven0 left: {links}");
    assert!(!links.contains("raven-wg0"), "raven-wg0 left: {links}");
    let routes = ns.ip(&["route", "show", "table", "all"]).expect("routes");
    assert!(
        routes.contains("10.99.0.0/24"),
        "foreign route removed: {routes}"
    );
    assert!(
        !routes.contains("table 9028"),
        "owned routes left: {routes}"
    );
    let rules = ns.ip(&["rule", "show"]).expect("rules");
    assert!(
        rules.contains("10.98.0.0/24") && rules.contains("10.97.0.0/24"),
        "{rules}"
    );
    assert!(!rules.contains("lookup 9028"), "owned rule left: {rules}");
    assert!(
        !lab.nodes[c1].dir.join("node-state.json").exists(),
        "node state left"
    );
    let pod = lab.pod("cloud-1").expect("pod");
    let pod_routes = pod
        .pod
        .netns
        .exec(&["ip", "route", "show", "proto", "82"])
        .expect("routes");
    assert!(
        pod_routes.trim().is_empty(),
        "pod routes left: {pod_routes}"
    );
    // Idempotent.
    assert!(lab.run_cleanup(c1).expect("cleanup").success());
}

/// After the central gateway's daemon is killed with SIGKILL several times during start, traffic
/// through it resumes. The restarted userspace WireGuard driver has lost every session and cannot
/// reach the NATed edges first; the edges notice that their keepalives go unanswered and force a
/// new handshake after KEEPALIVE_TIMEOUT + REKEY_TIMEOUT (see the driver's `liveness` module).
/// Measured: about 20 s; without that probe the edges waited for session expiry (minutes).
#[test]
fn lab_traffic_resumes_after_gateway_kill9() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut lab = lab();
    converge(&mut lab);
    let c1 = lab.node_index("cloud-1").expect("node");
    let ea2 = lab.node_index("edge-a-2").expect("node");
    let from = lab.pods.iter().position(|p| p.node == ea2).expect("pod");
    let to = lab.pod("cloud-2").expect("pod").ip;
    let eb = lab.pod("edge-b-1").expect("pod").ip;
    for delay_ms in [5, 20, 40, 80, 150] {
        lab.stop_daemon(c1, libc::SIGKILL).expect("kill");
        lab.start_daemon(c1).expect("start");
        std::thread::sleep(Duration::from_millis(delay_ms));
        lab.stop_daemon(c1, libc::SIGKILL)
            .expect("kill -9 mid-apply");
    }
    lab.start_daemon(c1).expect("start again");
    let took = lab
        .wait_for("traffic after kill -9", Duration::from_secs(90), || {
            lab.ping_from_pod(&lab.pods[from], to) && lab.ping_from_pod(&lab.pods[from], eb)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("traffic resumed {took:?} after kill -9 of the central gateway");
}
