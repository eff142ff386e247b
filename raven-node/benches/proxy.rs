//! Proxy tunnel benchmark in network namespaces (the `proxy_support` lab): single-stream
//! throughput and per-request latency through the tunnel (cloud-1 → mTLS/HTTP/2 tunnel →
//! edge-a-1 → stub on edge-a-1) against a direct TCP connection from cloud-1 to the same stub
//! over the same veth. A request opens a new connection (direct) or a new stream (tunnel),
//! sends `who`, reads the answer to EOF.
//!
//! Run as root: `cargo bench -p raven-node --bench proxy` (`-- --bytes N --requests N`).

#[path = "../tests/proxy_support/mod.rs"]
mod proxy_support;

use std::time::{Duration, Instant};

use proxy_support::*;
use raven_node::proxy::Dialer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

async fn get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    n: u64,
) -> (u64, u64) {
    s.write_all(format!("get {n}\n").as_bytes())
        .await
        .expect("write");
    hash_all(&mut s).await.expect("read")
}

async fn who<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    s.write_all(b"who\n").await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    assert_eq!(out, b"edge-a-1\n");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` discovery
    }
    let bytes = arg("--bytes", 1 << 30);
    let requests = arg("--requests", 2000) as usize;
    let lab = Lab::build();
    // A stub on edge-a-1 itself, reachable directly from the cloud on its uplink address and
    // through the tunnel as node edge-a-1 (its LAN address 192.168.1.10).
    stub(&lab.ea1, "0.0.0.0:10250", "edge-a-1");
    let d = lab.cloud_proxy.dialer();
    let rows = lab.cloud.block_on(move || async move {
        let direct_addr = "198.18.1.2:10250";
        let expected = expected_hash(bytes);
        let mut rows = Vec::new();
        for path in ["direct TCP", "raven tunnel"] {
            // Warm-up.
            for _ in 0..20 {
                if path == "direct TCP" {
                    who(tokio::net::TcpStream::connect(direct_addr)
                        .await
                        .expect("connect"))
                    .await;
                } else {
                    who(d.dial("edge-a-1", STUB_PORT).await.expect("dial")).await;
                }
            }
            let started = Instant::now();
            let (n, h) = if path == "direct TCP" {
                get(
                    tokio::net::TcpStream::connect(direct_addr)
                        .await
                        .expect("connect"),
                    bytes,
                )
                .await
            } else {
                get(d.dial("edge-a-1", STUB_PORT).await.expect("dial"), bytes).await
            };
            let secs = started.elapsed().as_secs_f64();
            assert_eq!((n, h), (bytes, expected), "{path}: transfer corrupted");
            let mut lat = Vec::with_capacity(requests);
            for _ in 0..requests {
                let t = Instant::now();
                if path == "direct TCP" {
                    who(tokio::net::TcpStream::connect(direct_addr)
                        .await
                        .expect("connect"))
                    .await;
                } else {
                    who(d.dial("edge-a-1", STUB_PORT).await.expect("dial")).await;
                }
                lat.push(t.elapsed());
            }
            lat.sort();
            rows.push((
                path,
                bytes as f64 * 8.0 / secs / 1e9,
                pct(&lat, 0.5),
                pct(&lat, 0.99),
            ));
        }
        rows
    });
    println!(
        "| path | single-stream Gbit/s ({} MiB) | request p50 ms | request p99 ms |",
        bytes >> 20
    );
    println!("|---|---:|---:|---:|");
    for (path, gbps, p50, p99) in &rows {
        println!("| {path} | {gbps:.2} | {p50:.3} | {p99:.3} |");
    }
    let ratio = rows[1].1 / rows[0].1;
    println!(
        "\ntunnel/direct throughput: {:.0} %; added latency p50 {:.3} ms, p99 {:.3} ms ({requests} requests)",
        ratio * 100.0,
        rows[1].2 - rows[0].2,
        rows[1].3 - rows[0].3
    );
}
