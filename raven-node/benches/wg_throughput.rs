//! Throughput of the userspace WireGuard driver vs plain veth and (when installed) vs
//! `boringtun-cli`, with iperf3 between two network namespaces: the issue's benchmark.
//!
//! ```text
//! cargo bench -p raven-node --bench wg_throughput            # needs root, ip, iperf3
//! BORINGTUN_CLI=/path/to/boringtun-cli cargo bench -p raven-node --bench wg_throughput
//! WG_BENCH_SECONDS=10 WG_BENCH_STREAMS=1 ...
//! ```
//!
//! Topology: namespaces `a` (192.0.2.1, pods 10.1.0.1) and `b` (192.0.2.2, pods 10.2.0.1)
//! joined by a veth pair; each runs the driver in-process on a thread that entered its
//! namespace, the way the daemon does on a gateway. For boringtun-cli the same namespaces get
//! its TUN devices, configured with `wg` (wireguard-tools) and the same routes and MTU.

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use raven_node::plan::{
    LocalEndpoint, NatType, PeerMode, RemoteDomain, TunnelDriver as Family, TunnelPeer, TunnelPlan,
};
use raven_node::tunnel::userspace::UserspaceWireGuard;
use raven_node::tunnel::{DriverOptions, TunnelDriver};

const DEVICE: &str = "raven-wg0";
const PORT: u16 = 51820;

fn sh(ns: &str, script: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-ec", script])
        .output()
        .unwrap_or_else(|e| panic!("ip netns exec: {e}"));
    assert!(
        out.status.success(),
        "{ns}: {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// iperf3 from a to `dst` for the configured time; returns Gbit/s received.
fn iperf(a: &str, b: &str, dst: &str) -> f64 {
    let secs = env_num("WG_BENCH_SECONDS", 10);
    let streams = env_num("WG_BENCH_STREAMS", 1);
    let mut server = Command::new("ip")
        .args(["netns", "exec", b, "iperf3", "-s", "-1", "-B", dst])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    thread::sleep(Duration::from_millis(500));
    let out = sh(
        a,
        &format!("iperf3 -c {dst} -t {secs} -P {streams} --connect-timeout 5000 -J"),
    );
    let _ = server.kill();
    let _ = server.wait();
    let json: serde_json::Value = serde_json::from_str(&out).expect("iperf3 JSON");
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .expect("bits_per_second")
        / 1e9
}

fn plan(peer: &str, key: &str, endpoint: &str, prefix: &str) -> TunnelPlan {
    let endpoint: SocketAddr = endpoint.parse().expect("endpoint");
    TunnelPlan {
        driver: Family::WireGuard,
        device: DEVICE.into(),
        listen_port: PORT,
        local: LocalEndpoint {
            gateway: "local".into(),
            node: "local".into(),
            private_ip: "192.168.0.1".parse().expect("ip"),
            public_ip: None,
            under_nat: false,
            nat_type: NatType::Unknown,
            prefixes: vec![],
        },
        central: None,
        domains: vec![RemoteDomain {
            gateway: peer.into(),
            prefixes: vec![prefix.parse().expect("prefix")],
            via: 0,
            under_nat: false,
            hole_punching: None,
        }],
        peers: vec![TunnelPeer {
            gateway: peer.into(),
            node: peer.into(),
            private_ip: "192.168.0.2".parse().expect("ip"),
            public_ip: Some(endpoint.ip()),
            endpoint: Some(endpoint),
            mode: PeerMode::Direct,
            under_nat: false,
            nat_type: NatType::Unknown,
            initiator: true,
            public_key: Some(key.into()),
            domains: vec![0],
        }],
        relays: false,
    }
}

type Job = Box<dyn FnOnce(&mut Option<UserspaceWireGuard>) + Send>;

/// A thread in a namespace owning a driver.
fn gateway(ns: &str, state: PathBuf) -> (mpsc::Sender<Job>, thread::JoinHandle<()>, String) {
    let (tx, rx) = mpsc::channel::<Job>();
    let (ktx, krx) = mpsc::channel();
    let path = format!("/run/netns/{ns}");
    let h = thread::spawn(move || {
        let f = File::open(&path).expect("netns");
        // SAFETY: valid namespace fd, affects this thread only.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let d = UserspaceWireGuard::new(DriverOptions::new(state)).expect("driver");
        ktx.send(d.public_key().expect("key")).expect("send key");
        let mut d = Some(d);
        for job in rx {
            job(&mut d);
        }
        if let Some(mut d) = d {
            let _ = d.cleanup();
        }
    });
    let key = krx.recv().expect("key");
    (tx, h, key)
}

fn boringtun(cli: &Path, a: &str, b: &str, state: &Path) -> Option<f64> {
    let have_wg = Command::new("wg").arg("--version").output().is_ok();
    if !have_wg {
        eprintln!("boringtun-cli: skipped in this run: `wg` (wireguard-tools) not installed");
        return None;
    }
    let keys: Vec<(String, String)> = (0..2)
        .map(|_| {
            let private = sh(a, "wg genkey").trim().to_owned();
            let public = sh(a, &format!("echo {private} | wg pubkey"))
                .trim()
                .to_owned();
            (private, public)
        })
        .collect();
    let mut children = Vec::new();
    let names = [
        format!("bta{}", std::process::id()),
        format!("btb{}", std::process::id()),
    ];
    for (i, (ns, dev, peer_addr, peer_prefix, src)) in [
        (a, names[0].as_str(), "192.0.2.2", "10.2.0.0/16", "10.1.0.1"),
        (b, names[1].as_str(), "192.0.2.1", "10.1.0.0/16", "10.2.0.1"),
    ]
    .into_iter()
    .enumerate()
    {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(cli)
            .args([dev, "--foreground", "--disable-drop-privileges"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("boringtun-cli");
        children.push(child);
        let sock = PathBuf::from(format!("/var/run/wireguard/{dev}.sock"));
        let start = Instant::now();
        while !sock.exists() && start.elapsed() < Duration::from_secs(5) {
            thread::sleep(Duration::from_millis(50));
        }
        assert!(
            sock.exists(),
            "boringtun-cli did not create {}",
            sock.display()
        );
        thread::sleep(Duration::from_millis(200));
        let keyfile = state.join(format!("{dev}.key"));
        std::fs::write(&keyfile, format!("{}\n", keys[i].0)).expect("key file");
        sh(
            ns,
            &format!(
                "wg set {dev} private-key {} listen-port {} peer {} endpoint {peer_addr}:{} \
                 allowed-ips {peer_prefix} persistent-keepalive 5; \
                 ip link set {dev} mtu 1420 up; ip route replace {peer_prefix} dev {dev} src {src}",
                keyfile.display(),
                PORT + 1,
                keys[1 - i].1,
                PORT + 1
            ),
        );
    }
    thread::sleep(Duration::from_secs(1));
    let _ = iperf(a, b, "10.2.0.1");
    let gbps = iperf(a, b, "10.2.0.1");
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    Some(gbps)
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (cargo test --benches) only builds it.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "wg_throughput needs root");
    let a = format!("wgb-{}-a", std::process::id());
    let b = format!("wgb-{}-b", std::process::id());
    for ns in [&a, &b] {
        let _ = Command::new("ip").args(["netns", "add", ns]).status();
        sh(ns, "ip link set lo up");
    }
    let ok = Command::new("ip")
        .args([
            "link", "add", "wan-a", "netns", &a, "type", "veth", "peer", "wan-b", "netns", &b,
        ])
        .status()
        .expect("ip");
    assert!(ok.success());
    sh(
        &a,
        "ip addr add 192.0.2.1/24 dev wan-a; ip link set wan-a up; ip addr add 10.1.0.1/32 dev lo",
    );
    sh(
        &b,
        "ip addr add 192.0.2.2/24 dev wan-b; ip link set wan-b up; ip addr add 10.2.0.1/32 dev lo",
    );
    let state = tempfile::tempdir().expect("state");

    let veth = iperf(&a, &b, "192.0.2.2");
    println!("  plain veth                  {veth:7.2} Gbit/s");

    let (ta, ha, key_a) = gateway(&a, state.path().join("a"));
    let (tb, hb, key_b) = gateway(&b, state.path().join("b"));
    let apply = |tx: &mpsc::Sender<Job>, p: TunnelPlan| {
        let (rtx, rrx) = mpsc::channel();
        tx.send(Box::new(move |d| {
            let r = d.as_mut().expect("driver").apply(Some(&p)).map(|_| ());
            let _ = rtx.send(r.map_err(|e| e.to_string()));
        }))
        .expect("send");
        rrx.recv().expect("reply").expect("apply");
    };
    apply(&tb, plan("a", &key_a, "192.0.2.1:51820", "10.1.0.0/16"));
    apply(&ta, plan("b", &key_b, "192.0.2.2:51820", "10.2.0.0/16"));
    sh(
        &a,
        &format!("ip route replace 10.2.0.0/16 dev {DEVICE} src 10.1.0.1"),
    );
    sh(
        &b,
        &format!("ip route replace 10.1.0.0/16 dev {DEVICE} src 10.2.0.1"),
    );
    thread::sleep(Duration::from_secs(1));
    let ours = iperf(&a, &b, "10.2.0.1");
    println!("  raven userspace WireGuard   {ours:7.2} Gbit/s");
    drop((ta, tb));
    let _ = (ha.join(), hb.join());

    let cli = std::env::var("BORINGTUN_CLI").ok().map(PathBuf::from);
    let bt = match &cli {
        Some(path) if path.exists() => boringtun(path, &a, &b, state.path()),
        _ => {
            eprintln!("boringtun-cli: not run (set BORINGTUN_CLI=/path/to/boringtun-cli)");
            None
        }
    };

    println!(
        "summary (iperf3 TCP, {} s, {} stream(s), 2 namespaces on one host):",
        env_num("WG_BENCH_SECONDS", 10),
        env_num("WG_BENCH_STREAMS", 1)
    );
    println!("  plain veth                  {veth:7.2} Gbit/s");
    println!("  raven userspace WireGuard   {ours:7.2} Gbit/s");
    if let Some(bt) = bt {
        println!("  boringtun-cli 0.7.1         {bt:7.2} Gbit/s");
        println!("  ratio raven / boringtun-cli {:7.2}x", ours / bt);
    }
    for ns in [&a, &b] {
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
}
