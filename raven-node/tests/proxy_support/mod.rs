//! A small proxy lab in network namespaces, shared by the proxy tests and the proxy bench.
//!
//! ```text
//!   cloud-1 (tunnel server, 198.18.0.11 on lo; stub kubelet on it)
//!     ├─ veth 198.18.1.1/24 ── 198.18.1.2 edge-a-1 (client) 192.168.1.10 ── 192.168.1.11 edge-a-2 (stub)
//!     └─ veth 198.18.2.1/24 ── 198.18.2.2 edge-b-1 (client) 192.168.1.10 ── 192.168.1.11 edge-b-2 (stub)
//! ```
//!
//! edge-a and edge-b use the same private addresses; cloud-1 has no route to 192.168.1.0/24,
//! so a byte that reaches a stub there came through the tunnel. Certificates are generated at
//! run time with rcgen (no key is committed). Stub "kubelets" speak a tiny line protocol:
//! `who` (answers the node name), `get N` (sends N pseudo-random bytes), `echo` (echoes until
//! EOF).
#![allow(dead_code)] // the test and the bench use different subsets

use std::fs::File;
use std::future::Future;
use std::hash::Hasher;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use raven_api::gateway::v1beta1::Gateway;
use raven_node::proxy::tunnel::certs::{CertPaths, write_files};
use raven_node::proxy::tunnel::metrics::ProxyMetrics;
use raven_node::proxy::tunnel::{Proxy, ProxyConfig, Timing};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Stub kubelet port (allowed by the cloud Gateway's proxyHTTPSPort).
pub const STUB_PORT: u16 = 10250;
/// Address of the tunnel server.
pub const SERVER_IP: &str = "198.18.0.11";

/// Fails with a clear message when the test cannot run here.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "proxy netns tests need root (network namespaces); run e.g. \
         `sudo -E cargo test -p raven-node --test proxy_netns`"
    );
    let ok = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "`ip` (iproute2) is required by the proxy netns tests");
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .expect("command runs");
    assert!(
        out.status.success(),
        "{argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named namespace, deleted on drop.
#[derive(Debug)]
pub struct Ns {
    pub name: String,
}

impl Ns {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("rvpx-{tag}-{}-{n}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn ip(&self, args: &[&str]) {
        let mut argv = vec!["ip", "-n", self.name.as_str()];
        argv.extend_from_slice(args);
        run(&argv);
    }

    /// Runs `f` on a new thread that entered this namespace (sockets and threads it creates
    /// live there).
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).expect("netns file opens");
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }

    /// Runs `f` in this namespace and waits for it.
    pub fn call<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f)
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Runs a future on a multi-thread runtime inside this namespace.
    pub fn block_on<F, T>(&self, fut: impl FnOnce() -> F + Send + 'static) -> T
    where
        F: Future<Output = T>,
        T: Send + 'static,
    {
        self.call(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(fut())
        })
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn veth(a: &Ns, a_if: &str, a_addr: &str, b: &Ns, b_if: &str, b_addr: &str) {
    run(&[
        "ip", "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    a.ip(&["addr", "add", a_addr, "dev", a_if]);
    b.ip(&["addr", "add", b_addr, "dev", b_if]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

/// Pseudo-random block the stubs cycle through (odd length, so reordered blocks never align).
pub fn block() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..(1 << 20) + 7)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The hash of the first `n` bytes of the cycled block (SipHash is chunking-invariant).
pub fn expected_hash(n: u64) -> u64 {
    let b = block();
    let mut h = std::hash::DefaultHasher::new();
    let mut left = n;
    while left > 0 {
        let take = left.min(b.len() as u64) as usize;
        h.write(&b[..take]);
        left -= take as u64;
    }
    h.finish()
}

/// Reads to EOF; returns (bytes, hash).
pub async fn hash_all<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> std::io::Result<(u64, u64)> {
    let mut h = std::hash::DefaultHasher::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok((total, h.finish()));
        }
        h.write(&buf[..n]);
        total += n as u64;
    }
}

async fn stub_conn(
    mut s: tokio::net::TcpStream,
    name: String,
    block: std::sync::Arc<Vec<u8>>,
) -> std::io::Result<()> {
    let _ = s.set_nodelay(true);
    let (r, mut w) = s.split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let cmd: Vec<&str> = line.split_whitespace().collect();
    match cmd.as_slice() {
        ["who"] => w.write_all(format!("{name}\n").as_bytes()).await?,
        ["get", n] => {
            let mut left: u64 = n.parse().unwrap_or(0);
            while left > 0 {
                let take = left.min(block.len() as u64) as usize;
                w.write_all(&block[..take]).await?;
                left -= take as u64;
            }
        }
        ["echo"] => {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = r.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                w.write_all(&buf[..n]).await?;
            }
        }
        _ => w.write_all(b"?\n").await?,
    }
    w.shutdown().await
}

/// Starts a stub kubelet on `addr` inside `ns` (runs until the process ends).
pub fn stub(ns: &Ns, addr: &str, name: &str) {
    let addr: SocketAddr = addr.parse().expect("stub address");
    let name = name.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    ns.spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .expect("stub binds");
            tx.send(()).expect("test waits");
            let block = std::sync::Arc::new(block());
            loop {
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                tokio::spawn(stub_conn(s, name.clone(), block.clone()));
            }
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("stub started");
}

/// Test PKI: a CA and certificates it signs.
pub struct Pki {
    pub issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub ca: rcgen::Certificate,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    pub fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::new()).expect("params");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "raven-proxy-test-ca");
        let ca = p.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(p, ca_key);
        Self { issuer, ca }
    }

    /// `(cert_pem, key_pem)` with this CN and IP SANs.
    pub fn issue(&self, cn: &str, ips: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::new()).expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.subject_alt_names = ips
            .iter()
            .map(|ip| rcgen::SanType::IpAddress(ip.parse().expect("ip")))
            .collect();
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &self.issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a certificate directory for `cn`.
    pub fn write_dir(&self, dir: &Path, cn: &str, ips: &[&str]) -> CertPaths {
        let paths = CertPaths::in_dir(dir);
        let (c, k) = self.issue(cn, ips);
        write_files(&paths, c.as_bytes(), k.as_bytes(), self.ca.pem().as_bytes())
            .expect("write certs");
        paths
    }
}

fn gw(
    name: &str,
    exposed: bool,
    ports: (&str, &str),
    nodes: &[(&str, &str)],
    active: (&str, &str),
) -> Gateway {
    let ep = json!({"nodeName": active.0, "type": "proxy", "port": 10262, "publicIP": active.1});
    serde_json::from_value(json!({
        "apiVersion": "raven.openyurt.io/v1beta1",
        "kind": "Gateway",
        "metadata": {"name": name},
        "spec": {
            "exposeType": if exposed { "PublicIP" } else { "" },
            "proxyConfig": {"Replicas": 1, "proxyHTTPPort": ports.0, "proxyHTTPSPort": ports.1},
            "tunnelConfig": {"Replicas": 1},
            "endpoints": [ep.clone()],
        },
        "status": {
            "nodes": nodes.iter().map(|(n, ip)| json!({"nodeName": n, "privateIP": ip, "subnets": []})).collect::<Vec<_>>(),
            "activeEndpoints": [ep],
        }
    }))
    .expect("valid Gateway")
}

/// The lab's Gateways; `edge_a_active` names gw-edge-a's active proxy endpoint.
pub fn gateways(edge_a_active: &str) -> Vec<Gateway> {
    vec![
        gw(
            "gw-cloud",
            true,
            ("10255", "10250"),
            &[("cloud-1", SERVER_IP), ("cloud-2", "198.18.0.12")],
            ("cloud-1", SERVER_IP),
        ),
        gw(
            "gw-edge-a",
            false,
            ("", ""),
            &[("edge-a-1", "192.168.1.10"), ("edge-a-2", "192.168.1.11")],
            (edge_a_active, ""),
        ),
        gw(
            "gw-edge-b",
            false,
            ("", ""),
            &[("edge-b-1", "192.168.1.10"), ("edge-b-2", "192.168.1.11")],
            ("edge-b-1", ""),
        ),
    ]
}

/// Short timings so failures are detected within seconds.
pub fn test_timing() -> Timing {
    Timing {
        dial_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(3),
        keepalive_interval: Duration::from_secs(1),
        keepalive_timeout: Duration::from_secs(1),
        backoff_initial: Duration::from_millis(200),
        backoff_cap: Duration::from_secs(2),
        cert_reload: Duration::from_millis(500),
    }
}

/// The running lab. Field order = drop order: proxies stop before namespaces go.
pub struct Lab {
    pub cloud_proxy: Proxy,
    pub edge_a_proxy: Proxy,
    pub edge_b_proxy: Proxy,
    pub cloud_metrics: ProxyMetrics,
    pub pki: Pki,
    pub dir: tempfile::TempDir,
    pub cloud: Ns,
    pub ea1: Ns,
    pub ea2: Ns,
    pub eb1: Ns,
    pub eb2: Ns,
}

pub fn start_proxy(
    ns: &Ns,
    node: &str,
    certs: CertPaths,
    metrics: ProxyMetrics,
    gws: Vec<Gateway>,
) -> Proxy {
    let mut cfg = ProxyConfig::new(node, certs);
    cfg.timing = test_timing();
    ns.call(move || {
        let p = Proxy::start(cfg, metrics).expect("proxy starts");
        p.update(&gws);
        p
    })
}

impl Lab {
    pub fn build() -> Self {
        require_root();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                std::env::var("RAVEN_LOG").unwrap_or_else(|_| "warn".to_owned()),
            ))
            .with_test_writer()
            .try_init();
        let (cloud, ea1, ea2, eb1, eb2) = (
            Ns::new("cloud"),
            Ns::new("ea1"),
            Ns::new("ea2"),
            Ns::new("eb1"),
            Ns::new("eb2"),
        );
        cloud.ip(&["addr", "add", "198.18.0.11/32", "dev", "lo"]);
        veth(
            &cloud,
            "to-a",
            "198.18.1.1/24",
            &ea1,
            "up0",
            "198.18.1.2/24",
        );
        veth(
            &cloud,
            "to-b",
            "198.18.2.1/24",
            &eb1,
            "up0",
            "198.18.2.2/24",
        );
        veth(
            &ea1,
            "lan0",
            "192.168.1.10/24",
            &ea2,
            "eth0",
            "192.168.1.11/24",
        );
        veth(
            &eb1,
            "lan0",
            "192.168.1.10/24",
            &eb2,
            "eth0",
            "192.168.1.11/24",
        );
        ea1.ip(&["route", "add", "default", "via", "198.18.1.1"]);
        eb1.ip(&["route", "add", "default", "via", "198.18.2.1"]);
        stub(&ea2, "192.168.1.11:10250", "edge-a-2");
        stub(&eb2, "192.168.1.11:10250", "edge-b-2");
        stub(&cloud, "198.18.0.11:10250", "cloud-1");
        let pki = Pki::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = |name: &str, ips: &[&str]| {
            pki.write_dir(&dir.path().join(name), &format!("system:node:{name}"), ips)
        };
        let cloud_metrics = ProxyMetrics::default();
        let cloud_proxy = start_proxy(
            &cloud,
            "cloud-1",
            certs("cloud-1", &[SERVER_IP]),
            cloud_metrics.clone(),
            gateways("edge-a-1"),
        );
        let edge_a_proxy = start_proxy(
            &ea1,
            "edge-a-1",
            certs("edge-a-1", &[]),
            ProxyMetrics::default(),
            gateways("edge-a-1"),
        );
        let edge_b_proxy = start_proxy(
            &eb1,
            "edge-b-1",
            certs("edge-b-1", &[]),
            ProxyMetrics::default(),
            gateways("edge-a-1"),
        );
        let lab = Self {
            cloud_proxy,
            edge_a_proxy,
            edge_b_proxy,
            cloud_metrics,
            pki,
            dir,
            cloud,
            ea1,
            ea2,
            eb1,
            eb2,
        };
        lab.wait_tunnels(2, Duration::from_secs(20));
        lab
    }

    /// Waits until the server holds `n` tunnels.
    pub fn wait_tunnels(&self, n: usize, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        loop {
            let snap = self.cloud_proxy.tunnels().snapshot();
            if snap.len() == n {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "expected {n} tunnels, have {snap:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where certificate directories go.
    pub fn cert_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}
