//! The 2-process tunnel of the bench: this binary re-executed as the cloud and the edge
//! proxy (with the cloud's TCP relay standing in for the front side), and what is measured
//! of processes: RSS, and CPU per request from schedstat.

use super::*;

/// Set in a re-executed copy of this binary: `cloud` or `edge`.
pub const CHILD_ENV: &str = "RAVEN_PROXY_BENCH_CHILD";
pub const CHILD_NETNS: &str = "RAVEN_PROXY_BENCH_NETNS";
pub const CHILD_CERTS: &str = "RAVEN_PROXY_BENCH_CERTS";
pub const CHILD_GATEWAYS: &str = "RAVEN_PROXY_BENCH_GATEWAYS";
/// Tunnel port of the 2-process pair (the in-process server has 10262).
pub const CHILD_TUNNEL_PORT: u16 = 10362;

/// A child process, killed (by its pid) and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub _stdin: Option<ChildStdin>,
    pub what: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmRSS` and `VmHWM` of a process, MiB.
pub fn rss(pid: u32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// On-CPU time (ns, from `schedstat`) of the threads of process `pid`, only those named
/// `comm` when given: the CPU a path costs per request, which unlike latency does not depend
/// on what else the shared machine runs.
pub fn cpu_ns(pid: u32, comm: Option<&str>) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            comm.is_none_or(|c| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|n| n.trim() == c)
            })
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// CPU of the parts of a path: the in-process proxies (this process's `raven-proxy` threads,
/// cloud and edge together), the 2-process path's cloud process (with its TCP relay) and edge
/// process, and the rest of this process (the client and the stub, which every path has).
#[derive(Clone, Copy)]
pub struct PathCpu {
    in_process: u64,
    cloud: u64,
    edge: u64,
    rest: u64,
}

impl PathCpu {
    pub fn now(cpid: u32, epid: u32) -> Self {
        let in_process = cpu_ns(std::process::id(), Some("raven-proxy"));
        Self {
            in_process,
            cloud: cpu_ns(cpid, None),
            edge: cpu_ns(epid, None),
            rest: cpu_ns(std::process::id(), None).saturating_sub(in_process),
        }
    }

    /// µs per request since `before`.
    pub fn per_request(self, before: Self, requests: usize) -> [f64; 4] {
        let us = |a: u64, b: u64| a.saturating_sub(b) as f64 / 1e3 / requests as f64;
        [
            us(self.in_process, before.in_process),
            us(self.cloud, before.cloud),
            us(self.edge, before.edge),
            us(self.rest, before.rest),
        ]
    }
}

/// The lab's Gateways with the cloud's proxy endpoint on `CHILD_TUNNEL_PORT`.
pub fn child_gateways() -> Vec<Gateway> {
    let mut v = serde_json::to_value(gateways("edge-a-1")).expect("gateways serialize");
    for gw in v.as_array_mut().expect("array") {
        if gw["metadata"]["name"] == "gw-cloud" {
            gw["spec"]["endpoints"][0]["port"] = CHILD_TUNNEL_PORT.into();
            gw["status"]["activeEndpoints"][0]["port"] = CHILD_TUNNEL_PORT.into();
        }
    }
    serde_json::from_value(v).expect("gateways deserialize")
}

pub fn spawn_child(role: &str, ns: &Ns, certs: &Path, gateways: &Path) -> Proc {
    let exe = std::env::current_exe().expect("own executable");
    let mut child = Command::new(exe)
        .env(CHILD_ENV, role)
        .env(CHILD_NETNS, &ns.name)
        .env(CHILD_CERTS, certs)
        .env(CHILD_GATEWAYS, gateways)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("re-executing the bench as a proxy process");
    let stdin = child.stdin.take();
    Proc {
        child,
        _stdin: stdin,
        what: format!("{role} proxy"),
    }
}

pub fn wait_ready(p: &mut Proc) {
    let out = p.child.stdout.take().expect("stdout piped");
    let mut line = String::new();
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .expect("child output");
    assert_eq!(line.trim(), "ready", "{} did not start", p.what);
}

/// Body of a re-executed child: runs one proxy in a namespace until stdin closes.
pub fn child_main(role: &str) {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let ns = File::open(format!("/run/netns/{}", env(CHILD_NETNS))).expect("netns");
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    let gws: Vec<Gateway> =
        serde_json::from_slice(&std::fs::read(env(CHILD_GATEWAYS)).expect("gateways file"))
            .expect("gateways JSON");
    let node = if role == "cloud" {
        "cloud-1"
    } else {
        "edge-a-1"
    };
    let mut cfg = ProxyConfig::new(node, CertPaths::in_dir(Path::new(&env(CHILD_CERTS))));
    // Production timeouts (the lab's short test timings would fail dials that merely queue
    // behind 1,000 simultaneous opens on a loaded 2-vCPU machine).
    cfg.timing = raven_node::proxy::tunnel::Timing::default();
    cfg.listen = SocketAddr::new(SERVER_IP.parse().expect("server IP"), CHILD_TUNNEL_PORT);
    let proxy = Proxy::start(cfg, ProxyMetrics::default()).expect("proxy starts");
    proxy.update(&gws);
    if role == "cloud" {
        let deadline = Instant::now() + Duration::from_secs(20);
        while proxy.tunnels().snapshot().is_empty() {
            assert!(Instant::now() < deadline, "no tunnel within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        let handle = proxy.handle().expect("proxy runtime");
        let dialer = proxy.dialer();
        let listener = handle
            .block_on(tokio::net::TcpListener::bind(RELAY_ADDR))
            .expect("relay binds");
        handle.spawn(relay(listener, dialer));
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut s = String::new();
    let _ = std::io::stdin().read_line(&mut s);
    drop(proxy);
    std::process::exit(0);
}

/// The stand-in for the front side: each TCP connection becomes a tunnel stream to the stub,
/// relayed with the same copy loop the front side uses.
pub async fn relay(listener: tokio::net::TcpListener, dialer: Arc<TunnelDialer>) {
    loop {
        let Ok((mut c, _)) = listener.accept().await else {
            continue;
        };
        let _ = c.set_nodelay(true);
        let d = dialer.clone();
        tokio::spawn(async move {
            if let Ok(mut s) = d.dial("edge-a-1", STUB_PORT).await {
                let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
            }
        });
    }
}

/// Samples the peak RSS of the two proxy processes while `run` runs.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(f64, f64)>,
}

impl Sampler {
    pub fn start(cpid: u32, epid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut c, mut e) = (0f64, 0f64);
            while !s.load(Ordering::Relaxed) {
                c = c.max(rss(cpid).0);
                e = e.max(rss(epid).0);
                std::thread::sleep(Duration::from_millis(20));
            }
            (c, e)
        });
        Self { stop, thread }
    }

    pub fn stop(self) -> (f64, f64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler")
    }
}
