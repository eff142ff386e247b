//! Planner benchmark: N Gateways × 10 nodes, planned from one node's point of view.
//!
//! `cargo bench -p raven-node --bench plan` (plain `main`, no harness). For each size it
//! prints median and p99 wall time over repeated runs, the peak extra heap while planning (a
//! counting global allocator), and the time per prefix, which must stay flat if the cost is
//! linear in the number of prefixes. Topology: `gw-0000` is a public cloud domain (the central
//! gateway); every other Gateway is a NATed edge domain whose nodes reuse the same LAN
//! addresses 192.168.1.1-10 (as real edge sites do); every node has its own /24 pod CIDR, and
//! no two are adjacent, so merging cannot shrink the route set.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use raven_api::gateway::EndpointType;
use raven_api::gateway::v1beta1::{
    Endpoint, Gateway, GatewaySpec, GatewayStatus, NodeInfo, TunnelConfiguration,
};
use raven_node::plan::{Options, TunnelDriver, plan};

/// Counts live heap bytes and their high-water mark.
#[derive(Debug)]
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grow(bytes: usize) {
    let now = CURRENT.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments and only adds
// bookkeeping on atomics; the allocator contract is `System`'s.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Relaxed);
            grow(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const NODES_PER_GATEWAY: usize = 10;
const RUNS: usize = 101;

fn gateways(count: usize) -> Vec<Gateway> {
    (0..count)
        .map(|g| {
            let name = format!("gw-{g:04}");
            let cloud = g == 0;
            let nodes: Vec<NodeInfo> = (0..NODES_PER_GATEWAY)
                .map(|n| {
                    let k = g * NODES_PER_GATEWAY + n;
                    NodeInfo {
                        node_name: format!("g{g:04}-n{n:02}"),
                        private_ip: if cloud {
                            format!("10.0.0.{}", n + 1)
                        } else {
                            format!("192.168.1.{}", n + 1)
                        },
                        // Every other /24, so nothing merges: one route per node (the
                        // expensive case; scattered Calico blocks look like this).
                        subnets: vec![format!("10.{}.{}.0/24", 1 + 2 * k / 256, (2 * k) % 256)],
                    }
                })
                .collect();
            let endpoint = Endpoint {
                node_name: nodes[0].node_name.clone(),
                public_ip: format!("{}.{}.{}.{}", 100 + g / 65536, (g / 256) % 256, g % 256, 1),
                under_nat: !cloud,
                type_: EndpointType::Tunnel,
                port: 4500,
                config: [(
                    "publicKey".to_owned(),
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned(),
                )]
                .into(),
                ..Endpoint::default()
            };
            let mut gw = Gateway::new(
                &name,
                GatewaySpec {
                    tunnel_config: TunnelConfiguration { replicas: 1 },
                    endpoints: vec![endpoint.clone()],
                    ..GatewaySpec::default()
                },
            );
            gw.status = Some(GatewayStatus {
                nodes,
                active_endpoints: vec![endpoint],
            });
            gw
        })
        .collect()
}

struct Sample {
    median: Duration,
    p99: Duration,
    peak: usize,
    retained: usize,
    routes: usize,
    warnings: usize,
}

fn measure(gws: &[Gateway], node: &str, options: &Options) -> Sample {
    for _ in 0..3 {
        black_box(plan(gws, node, options).expect("plan"));
    }
    let mut times = Vec::with_capacity(RUNS);
    let mut peak = 0;
    let mut retained = 0;
    let mut routes = 0;
    let mut warnings = 0;
    for _ in 0..RUNS {
        let before = CURRENT.load(Relaxed);
        PEAK.store(before, Relaxed);
        let start = Instant::now();
        let p = black_box(plan(gws, node, options).expect("plan"));
        times.push(start.elapsed());
        peak = peak.max(PEAK.load(Relaxed) - before);
        retained = CURRENT.load(Relaxed) - before;
        routes = p.routes.len();
        warnings = p.warnings.len();
        drop(p);
    }
    times.sort_unstable();
    Sample {
        median: times[RUNS / 2],
        p99: times[(RUNS * 99).div_ceil(100) - 1],
        peak,
        retained,
        routes,
        warnings,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let wireguard = Options {
        driver: TunnelDriver::WireGuard,
        ..Options::default()
    };
    let forwarding = Options {
        forward_node_ip: true,
        ..wireguard.clone()
    };
    let views: [(&str, &str, &Options); 4] = [
        ("edge member", "g0001-n05", &wireguard),
        ("edge gateway", "g0001-n00", &wireguard),
        ("central gateway", "g0000-n00", &wireguard),
        ("edge member, forward-node-ip", "g0001-n05", &forwarding),
    ];
    println!(
        "| gateways | prefixes | view | median ms | p99 ms | ns/prefix (median) | peak heap MiB | plan MiB | routes | warnings |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for count in [250, 500, 1000, 2000] {
        let input_before = CURRENT.load(Relaxed);
        let gws = gateways(count);
        let input = CURRENT.load(Relaxed) - input_before;
        let prefixes = count * NODES_PER_GATEWAY;
        for (label, node, options) in &views {
            let s = measure(&gws, node, options);
            println!(
                "| {count} | {prefixes} | {label} | {:.2} | {:.2} | {:.0} | {:.1} | {:.1} | {} | {} |",
                ms(s.median),
                ms(s.p99),
                s.median.as_secs_f64() * 1e9 / prefixes as f64,
                mib(s.peak),
                mib(s.retained),
                s.routes,
                s.warnings,
            );
        }
        eprintln!(
            "(input: {count} Gateway objects = {:.1} MiB of heap)",
            mib(input)
        );
    }
}
