//! Proxy tunnel benchmark in network namespaces (the `proxy_support` lab), every path side by
//! side in one run, from cloud-1 to a stub server on edge-a-1 (`who`: a short answer, `get N`:
//! N bytes, `echo`):
//!
//! - **direct TCP**: a TCP connection from cloud-1 to the stub over the same veth;
//! - **raven, in-process dialer**: a stream over the mTLS/HTTP/2 tunnel opened by the cloud's
//!   [`Dialer`] in this process (what the front side does), edge-a-1 dials the stub;
//! - **raven, TCP entry (2 processes)**: the tunnel server and client each run in a process of
//!   their own (this binary re-executed, see `CHILD_ENV`); the cloud process accepts TCP on a
//!   relay port and relays it over a tunnel stream (a stand-in for the front side, same copy
//!   loop), so the path has the same shape as rathole's and the processes' RSS can be read;
//! - **rathole 0.5 (TLS)**: rathole's server on cloud-1, its client on edge-a-1, TLS transport,
//!   its visitor port on cloud-1 (needs the `rathole` binary: `RAVEN_RATHOLE_BIN`, default
//!   `/opt/rathole/bin/rathole`, and `openssl` for its PKCS#12 identity).
//!
//! Sections (`--only a,b`): `throughput` (one stream, `--bytes`, hash-checked), `latency`
//! (`--requests` sequential requests, each a new connection or stream), `rate` (requests at a
//! fixed rate of 1,000 and 4,000/s for `--rate-secs`, open loop), `stall` (1,000 concurrent
//! streams through the 2-process tunnel: 999 downloads of `--stall-size` bytes, with and
//! without one more stream whose reader never reads; plus the proxies' RSS idle, with 1,000
//! open streams and at the peak). Each measurement is repeated `--rounds` times.
//!
//! `--link-rate RATE` (tc syntax, e.g. `1gbit`, `100mbit`) shapes the cloud-1 ↔ edge-a-1 veth
//! with a token bucket each way, so every path crosses a link of a WAN's speed instead of a
//! memory-speed veth: what an edge cluster's operator sees when the link, not the CPU, is the
//! limit. Without it, all paths are CPU-bound on the same machine.
//!
//! `--no-relay` leaves the 2-process path out and `--rates 4000` picks the fixed rates (default
//! 1,000 and 4,000/s): narrower runs for profiling.
//!
//! Run as root: `cargo bench -p raven-node --bench proxy -- --bytes 1073741824 --requests 2000`.

#[path = "proxy/procs.rs"]
mod procs;
#[path = "../tests/proxy_support/mod.rs"]
mod proxy_support;
#[path = "proxy/rathole.rs"]
mod rathole;

use std::fs::File;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use procs::*;
use proxy_support::*;
use rathole::start_rathole;
use raven_api::gateway::v1beta1::Gateway;
use raven_node::proxy::tunnel::certs::CertPaths;
use raven_node::proxy::tunnel::metrics::ProxyMetrics;
use raven_node::proxy::tunnel::{Proxy, ProxyConfig, TunnelDialer};
use raven_node::proxy::{Dialer, ProxyIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RELAY_ADDR: &str = "198.18.0.11:10270";
const RATHOLE_CONTROL: &str = "198.18.0.11:2333";
const RATHOLE_VISITOR: &str = "198.18.0.11:10280";
const DIRECT_ADDR: &str = "198.18.1.2:10250";

type Io = Box<dyn ProxyIo>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Direct,
    Tunnel,
    Relay,
    Rathole,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Direct => "direct TCP",
            Via::Tunnel => "raven, in-process dialer",
            Via::Relay => "raven, TCP entry (2 processes)",
            Via::Rathole => "rathole 0.5 (TLS)",
        }
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn arg_str(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// Limits `dev`'s egress in `ns` to `rate` with a token bucket (tc's own rate syntax).
fn shape(ns: &Ns, dev: &str, rate: &str) {
    let st = Command::new("tc")
        .args([
            "-n", &ns.name, "qdisc", "replace", "dev", dev, "root", "tbf",
        ])
        .args(["rate", rate, "burst", "256kb", "latency", "20ms"])
        .status()
        .expect("running tc (iproute2)");
    assert!(
        st.success(),
        "tc could not shape {dev} in {} to {rate}",
        ns.name
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn fmt_all(v: &[f64], digits: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.digits$}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Requests before each measurement (connections, TLS sessions and caches warm).
const WARM_UP: usize = 20;

async fn open(via: Via, d: &TunnelDialer) -> Result<Io, String> {
    let addr = match via {
        Via::Tunnel => {
            return d
                .dial("edge-a-1", STUB_PORT)
                .await
                .map_err(|e| format!("dial: {e}"));
        }
        Via::Direct => DIRECT_ADDR,
        Via::Relay => RELAY_ADDR,
        Via::Rathole => RATHOLE_VISITOR,
    };
    let s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    Ok(Box::new(s))
}

async fn who(mut s: Io) -> Result<(), String> {
    s.write_all(b"who\n").await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
    if out != b"edge-a-1\n" {
        return Err(format!("unexpected answer {out:?}"));
    }
    Ok(())
}

async fn request(via: Via, d: &TunnelDialer) -> Result<(), String> {
    who(open(via, d).await?).await
}

async fn download(mut s: Io, n: u64, expected: u64) -> Result<(), String> {
    s.write_all(format!("get {n}\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let got = hash_all(&mut s).await.map_err(|e| e.to_string())?;
    if got != (n, expected) {
        return Err(format!("transfer corrupted: {got:?}"));
    }
    Ok(())
}

/// Gbit/s of one `get` of `bytes`.
async fn throughput(via: Via, d: &TunnelDialer, bytes: u64, expected: u64) -> f64 {
    for _ in 0..WARM_UP {
        request(via, d).await.expect("warm-up request");
    }
    let s = open(via, d).await.expect("open");
    let started = Instant::now();
    download(s, bytes, expected).await.expect("download");
    bytes as f64 * 8.0 / started.elapsed().as_secs_f64() / 1e9
}

async fn sequential(via: Via, d: &TunnelDialer, n: usize) -> Vec<Duration> {
    for _ in 0..WARM_UP {
        request(via, d).await.expect("warm-up request");
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        request(via, d).await.expect("request");
        lat.push(t.elapsed());
    }
    lat.sort();
    lat
}

/// Open loop: request `i` starts at `i / rate` whether or not earlier ones finished; the
/// latency of a request is from its start to its EOF. Returns (sorted latencies, errors,
/// achieved rate).
/// How long one request of the fixed-rate section may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

async fn at_rate(
    via: Via,
    d: Arc<TunnelDialer>,
    rate: u64,
    secs: u64,
) -> (Vec<Duration>, u64, f64) {
    for _ in 0..WARM_UP {
        request(via, &d).await.expect("warm-up request");
    }
    let n = rate * secs;
    let errors = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now() + Duration::from_millis(10);
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        tokio::time::sleep_until(start + Duration::from_nanos(i * 1_000_000_000 / rate)).await;
        let d = d.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            // A request that never completes (seen with rathole at 4,000/s) is an error, not
            // a hung bench.
            let done = tokio::time::timeout(REQUEST_TIMEOUT, request(via, &d))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_TIMEOUT:?}")));
            match done {
                Ok(()) => Some(t.elapsed()),
                Err(e) => {
                    if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("{}: first error at {rate}/s: {e}", via.name());
                    }
                    None
                }
            }
        }));
    }
    let sent = start.elapsed().as_secs_f64();
    let mut lat = Vec::with_capacity(n as usize);
    for t in tasks {
        if let Some(l) = t.await.expect("request task") {
            lat.push(l);
        }
    }
    lat.sort();
    (lat, errors.load(Ordering::Relaxed), n as f64 / sent)
}

// ---------------------------------------------------------------------------------------

struct Opts {
    bytes: u64,
    requests: usize,
    rounds: usize,
    rate_secs: u64,
    stall_size: u64,
    streams: usize,
    rathole: bool,
    /// Leave the 2-process "TCP entry" path out (`--no-relay`): a profile of the in-process
    /// path alone.
    relay: bool,
    /// The fixed rates of the `rate` section (`--rates 1000,4000`).
    rates: Vec<u64>,
    only: Vec<String>,
}

impl Opts {
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` discovery
    }
    // As raven-node's main does: the in-process dialer runs in this process.
    raven_node::memory::tune_allocator();
    if let Ok(role) = std::env::var(CHILD_ENV) {
        return child_main(&role);
    }
    let o = Opts {
        bytes: arg("--bytes", 1 << 30),
        requests: arg("--requests", 2000) as usize,
        rounds: arg("--rounds", 2).max(1) as usize,
        rate_secs: arg("--rate-secs", 3).max(1),
        stall_size: arg("--stall-size", 1 << 20),
        streams: arg("--streams", 1000).max(2) as usize,
        rathole: !std::env::args().any(|a| a == "--no-rathole"),
        relay: !std::env::args().any(|a| a == "--no-relay"),
        rates: arg_str("--rates")
            .map(|s| s.split(',').filter_map(|r| r.parse().ok()).collect())
            .unwrap_or_else(|| vec![1000, 4000]),
        only: arg_str("--only")
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
    };
    println!("load average at start: {}", loadavg());
    let lab = Lab::build();
    if let Some(rate) = arg_str("--link-rate") {
        for (ns, dev) in [(&lab.cloud, "to-a"), (&lab.ea1, "up0")] {
            shape(ns, dev, &rate);
        }
        println!("link cloud-1 ↔ edge-a-1 shaped to {rate} each way (tbf)");
    }
    stub(&lab.ea1, "0.0.0.0:10250", "edge-a-1");
    let work = tempfile::tempdir().expect("tempdir");
    let gw_file = work.path().join("gateways.json");
    std::fs::write(
        &gw_file,
        serde_json::to_vec(&child_gateways()).expect("gateways JSON"),
    )
    .expect("write gateways");
    let mut cloud = spawn_child("cloud", &lab.cloud, &lab.cert_dir("cloud-1"), &gw_file);
    let mut edge = spawn_child("edge", &lab.ea1, &lab.cert_dir("edge-a-1"), &gw_file);
    wait_ready(&mut edge);
    wait_ready(&mut cloud);
    let rathole = o.rathole.then(|| start_rathole(&lab, work.path()));
    if !o.rathole {
        println!("rathole: left out (--no-rathole)");
    }
    let mut paths = vec![Via::Direct, Via::Tunnel];
    if o.relay {
        paths.push(Via::Relay);
    }
    if rathole.is_some() {
        paths.push(Via::Rathole);
    }
    let d = lab.cloud_proxy.dialer();
    let (cpid, epid) = (cloud.pid(), edge.pid());
    let rathole_pids = rathole.as_ref().map(|(s, c)| (s.pid(), c.pid()));
    let o = Arc::new(o);
    let o2 = o.clone();
    lab.cloud.block_on(move || async move {
        let o = o2;
        if let Some((s, c)) = rathole_pids {
            // The client connects with its own retry; wait until a request goes through.
            let deadline = Instant::now() + Duration::from_secs(20);
            while let Err(e) = request(Via::Rathole, &d).await {
                assert!(Instant::now() < deadline, "rathole path not up: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let (sr, _) = rss(s);
            let (cr, _) = rss(c);
            println!(
                "rathole RSS idle (after one request): server {sr:.1} MiB, client {cr:.1} MiB"
            );
        }
        let (ci, _) = rss(cpid);
        let (ei, _) = rss(epid);
        println!(
            "\nraven RSS idle (tunnel up, no stream yet): cloud {ci:.1} MiB, edge {ei:.1} MiB"
        );
        if o.wants("throughput") {
            section_throughput(&o, &paths, &d).await;
        }
        if o.wants("latency") {
            section_latency(&o, &paths, &d, cpid, epid).await;
        }
        if o.wants("rate") {
            section_rate(&o, &paths, &d, cpid, epid).await;
        }
        if o.wants("stall") {
            section_stall(&o, &d, cpid, epid).await;
        }
    });
    drop(rathole);
    drop(cloud);
    drop(edge);
    println!("\nload average at end: {}", loadavg());
}

async fn section_throughput(o: &Opts, paths: &[Via], d: &TunnelDialer) {
    let expected = expected_hash(o.bytes);
    let mut res: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let mut loads = Vec::new();
    for _ in 0..o.rounds {
        for (i, via) in paths.iter().enumerate() {
            res[i].push(throughput(*via, d, o.bytes, expected).await);
        }
        loads.push(loadavg());
    }
    println!(
        "\n### Single-stream throughput ({} MiB, hash-checked, {} rounds; load after each round: {})\n",
        o.bytes >> 20,
        o.rounds,
        loads.join(" | ")
    );
    println!("| path | Gbit/s (each round) | median | vs direct |");
    println!("|---|---:|---:|---:|");
    let direct = median(&res[0]);
    for (i, via) in paths.iter().enumerate() {
        let m = median(&res[i]);
        println!(
            "| {} | {} | {m:.2} | {:.0} % |",
            via.name(),
            fmt_all(&res[i], 2),
            m / direct * 100.0
        );
    }
}

async fn section_latency(o: &Opts, paths: &[Via], d: &TunnelDialer, cpid: u32, epid: u32) {
    let mut p50: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let mut p99: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let mut cpu: Vec<Vec<[f64; 4]>> = vec![Vec::new(); paths.len()];
    let mut loads = Vec::new();
    for _ in 0..o.rounds {
        for (i, via) in paths.iter().enumerate() {
            let before = PathCpu::now(cpid, epid);
            let lat = sequential(*via, d, o.requests).await;
            cpu[i].push(PathCpu::now(cpid, epid).per_request(before, o.requests + WARM_UP));
            p50[i].push(pct(&lat, 0.5));
            p99[i].push(pct(&lat, 0.99));
        }
        loads.push(loadavg());
    }
    println!(
        "\n### Sequential requests ({} per round, new connection/stream each, {} rounds; load: {})\n",
        o.requests,
        o.rounds,
        loads.join(" | ")
    );
    println!("| path | p50 ms (each round) | p99 ms (each round) | added p50 / p99 ms (medians) |");
    println!("|---|---:|---:|---:|");
    let (d50, d99) = (median(&p50[0]), median(&p99[0]));
    for (i, via) in paths.iter().enumerate() {
        println!(
            "| {} | {} | {} | {:+.3} / {:+.3} |",
            via.name(),
            fmt_all(&p50[i], 3),
            fmt_all(&p99[i], 3),
            median(&p50[i]) - d50,
            median(&p99[i]) - d99
        );
    }
    print_cpu(paths, &cpu);
}

/// The CPU-per-request table of a section (`cpu[path][round]`, µs per part as in [`PathCpu`]).
fn print_cpu(paths: &[Via], cpu: &[Vec<[f64; 4]>]) {
    println!(
        "\nCPU per request (µs of on-CPU time from schedstat, median of the rounds, warm-up \
         included; kernel time counts where it runs, e.g. a veth receive in the sender's thread)\n"
    );
    println!(
        "| path | in-process proxies (cloud + edge) | cloud process (with its relay) | edge process | client + stub | total |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, via) in paths.iter().enumerate() {
        let m = |k: usize| median(&cpu[i].iter().map(|c| c[k]).collect::<Vec<_>>());
        let total: f64 = (0..4).map(m).sum();
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {total:.0} |",
            via.name(),
            m(0),
            m(1),
            m(2),
            m(3)
        );
    }
}

async fn section_rate(o: &Opts, paths: &[Via], d: &Arc<TunnelDialer>, cpid: u32, epid: u32) {
    for &rate in &o.rates {
        let mut p50: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
        let mut p99: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
        let mut errs: Vec<u64> = vec![0; paths.len()];
        let mut achieved: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
        let mut cpu: Vec<Vec<[f64; 4]>> = vec![Vec::new(); paths.len()];
        let mut loads = Vec::new();
        for _ in 0..o.rounds {
            for (i, via) in paths.iter().enumerate() {
                let before = PathCpu::now(cpid, epid);
                let (lat, e, r) = at_rate(*via, d.clone(), rate, o.rate_secs).await;
                let n = (rate * o.rate_secs) as usize + WARM_UP;
                cpu[i].push(PathCpu::now(cpid, epid).per_request(before, n));
                p50[i].push(pct(&lat, 0.5));
                p99[i].push(pct(&lat, 0.99));
                errs[i] += e;
                achieved[i].push(r);
            }
            loads.push(loadavg());
        }
        println!(
            "\n### {rate} requests/s, open loop, {} s × {} rounds (load: {})\n",
            o.rate_secs,
            o.rounds,
            loads.join(" | ")
        );
        println!(
            "| path | p50 ms (each round) | p99 ms (each round) | added p50 / p99 ms (medians) | errors | offered req/s |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        let (d50, d99) = (median(&p50[0]), median(&p99[0]));
        for (i, via) in paths.iter().enumerate() {
            println!(
                "| {} | {} | {} | {:+.3} / {:+.3} | {} | {} |",
                via.name(),
                fmt_all(&p50[i], 3),
                fmt_all(&p99[i], 3),
                median(&p50[i]) - d50,
                median(&p99[i]) - d99,
                errs[i],
                fmt_all(&achieved[i], 0)
            );
        }
        print_cpu(paths, &cpu);
    }
}

/// `n` concurrent downloads of `size` through the 2-process tunnel; returns (wall time,
/// sorted completion times of the streams that succeeded, failures).
async fn downloads(
    d: &Arc<TunnelDialer>,
    n: usize,
    size: u64,
    expected: u64,
) -> (Duration, Vec<Duration>, usize) {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = match open(Via::Relay, &d).await {
                Ok(s) => download(s, size, expected).await,
                Err(e) => Err(e),
            };
            r.map(|()| t.elapsed())
        }));
    }
    let mut each = Vec::with_capacity(n);
    let mut errors = 0;
    for t in tasks {
        match t.await.expect("download task") {
            Ok(l) => each.push(l),
            Err(e) => {
                if errors == 0 {
                    eprintln!("first failed download: {e}");
                }
                errors += 1;
            }
        }
    }
    let wall = started.elapsed();
    each.sort();
    (wall, each, errors)
}

async fn section_stall(o: &Opts, d: &Arc<TunnelDialer>, cpid: u32, epid: u32) {
    let active = o.streams - 1;
    let expected = expected_hash(o.stall_size);
    // 1,000 open, idle streams (each proven open by one echo).
    let mut open_streams = Vec::with_capacity(o.streams);
    for _ in 0..o.streams {
        let mut s = open(Via::Relay, d).await.expect("open");
        s.write_all(b"echo\nx").await.expect("write");
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.expect("echo");
        open_streams.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (c_open, _) = rss(cpid);
    let (e_open, _) = rss(epid);
    drop(open_streams);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut base = Vec::new();
    let mut stalled = Vec::new();
    let mut loads = Vec::new();
    let sampler = Sampler::start(cpid, epid);
    for _ in 0..o.rounds {
        base.push(downloads(d, active, o.stall_size, expected).await);
        // One stream asks for 1 GiB and is never read: its window fills and stays full.
        let mut s = open(Via::Relay, d).await.expect("open stalled");
        s.write_all(b"get 1073741824\n").await.expect("write");
        tokio::time::sleep(Duration::from_millis(500)).await;
        stalled.push(downloads(d, active, o.stall_size, expected).await);
        // The stalled stream is still intact: it reads on from where it stopped.
        let mut buf = vec![0u8; 1 << 20];
        s.read_exact(&mut buf)
            .await
            .expect("stalled stream resumes");
        drop(s);
        loads.push(loadavg());
    }
    let (c_peak, e_peak) = sampler.stop();
    // Long enough for the proxies' allocator trim tick to have run once.
    tokio::time::sleep(raven_node::memory::TRIM_INTERVAL + Duration::from_secs(1)).await;
    let (c_after, _) = rss(cpid);
    let (e_after, _) = rss(epid);
    let gbps = |r: &(Duration, Vec<Duration>, usize)| {
        r.1.len() as f64 * o.stall_size as f64 * 8.0 / r.0.as_secs_f64() / 1e9
    };
    println!(
        "\n### {} concurrent streams through the 2-process tunnel: {active} downloads of {} KiB, without / with one more stream never read ({} rounds; load: {})\n",
        o.streams,
        o.stall_size >> 10,
        o.rounds,
        loads.join(" | ")
    );
    println!(
        "| run | aggregate Gbit/s (each round) | per-stream p50 ms | per-stream p99 ms | failed |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, rs) in [
        ("no stalled stream", &base),
        ("one stalled stream", &stalled),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            fmt_all(&rs.iter().map(gbps).collect::<Vec<_>>(), 2),
            fmt_all(&rs.iter().map(|r| pct(&r.1, 0.5)).collect::<Vec<_>>(), 1),
            fmt_all(&rs.iter().map(|r| pct(&r.1, 0.99)).collect::<Vec<_>>(), 1),
            rs.iter().map(|r| r.2).sum::<usize>(),
        );
    }
    let b = median(&base.iter().map(gbps).collect::<Vec<_>>());
    let s = median(&stalled.iter().map(gbps).collect::<Vec<_>>());
    println!(
        "\nwith one stalled stream the others' aggregate throughput is {:+.1} % (medians)",
        (s / b - 1.0) * 100.0
    );
    println!("\n| RSS MiB | cloud process | edge process |");
    println!("|---|---:|---:|");
    println!(
        "| {} streams open (idle) | {c_open:.1} | {e_open:.1} |",
        o.streams
    );
    println!("| peak during the downloads | {c_peak:.1} | {e_peak:.1} |");
    println!(
        "| idle again, {} s after the downloads | {c_after:.1} | {e_after:.1} |",
        (raven_node::memory::TRIM_INTERVAL + Duration::from_secs(1)).as_secs()
    );
}
