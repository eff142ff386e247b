//! Data-plane benchmark on the real kernel (root; runs in a private network namespace).
//!
//! `cargo bench -p raven-node --bench dataplane`
//!
//! - convergence per Gateway change: plan + reconcile after one realistic change (a remote
//!   node joins or leaves, a local member joins or leaves, the MTU changes, the gateway moves),
//!   p50/p99 and netlink ops per change;
//! - no-op resync: reconcile of an unchanged plan;
//! - 10k routes: first apply, no-op resync, and a change touching every route (MTU).
//!
//! Goals (issue 4): ≤ 20 ms p50 per change, ≤ 5 ms no-op, ≤ 300 ms for 10k routes.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use ipnetwork::{IpNetwork, Ipv4Network};
use raven_api::gateway::v1beta1::Gateway;
use raven_node::dataplane::Dataplane;
use raven_node::plan::{NextHop, Options, Route, TUNNEL_TABLE, TunnelDriver, plan};
use serde_json::json;

const REMOTE_DOMAINS: usize = 50;
const NODES_PER_DOMAIN: usize = 4;
const LOCAL_MEMBERS: usize = 10;
const CHANGES: usize = 200;
const NOOPS: usize = 200;
const BIG: usize = 10_000;

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("dataplane bench: needs root (private network namespace, netlink writes)");
        std::process::exit(1);
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    for args in [
        &["link", "set", "lo", "up"][..],
        &[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0-peer",
        ],
        &["addr", "add", "10.0.0.1/16", "dev", "eth0"],
        &["link", "set", "eth0", "up"],
        &["tuntap", "add", "mode", "tun", "name", "raven-wg0"],
        &["link", "set", "raven-wg0", "up"],
    ] {
        let ok = Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip {args:?} failed");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run());
}

async fn run() {
    let dp = Dataplane::connect().expect("netlink socket");
    let options = Options {
        driver: TunnelDriver::WireGuard,
        ..Options::default()
    };

    // Convergence per change, on the gateway of a domain with members, 50 remote domains.
    let mut world = World::new();
    let first = plan(&world.gateways(), "cloud-0", &options).expect("plan");
    let r = dp.reconcile(&first).await;
    assert!(r.is_ok(), "{r:#?}");
    println!(
        "initial apply: {} routes, {} ops, {:.2} ms",
        first.routes.len(),
        r.ops,
        ms(r.duration)
    );
    let mut times = Vec::new();
    let mut ops = Vec::new();
    let mut per_kind: Vec<(&str, Vec<usize>)> = Vec::new();
    for i in 0..CHANGES {
        let kind = world.change(i);
        let mut opts = options.clone();
        if kind == "mtu" {
            opts.underlay_mtu = if (i / 6) % 2 == 0 { 1400 } else { 1500 };
        } else {
            opts.underlay_mtu = world.mtu;
        }
        world.mtu = opts.underlay_mtu;
        let start = Instant::now();
        let p = plan(&world.gateways(), "cloud-0", &opts).expect("plan");
        let r = dp.reconcile(&p).await;
        times.push(start.elapsed());
        assert!(r.is_ok(), "{kind}: {r:#?}");
        ops.push(r.ops);
        match per_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, v)) => v.push(r.ops),
            None => per_kind.push((kind, vec![r.ops])),
        }
        let again = dp.reconcile(&p).await;
        assert_eq!(again.ops, 0, "{kind}: not idempotent");
    }
    let (p50, p99) = percentiles(&mut times);
    println!(
        "convergence per Gateway change ({CHANGES} changes, plan + observe + diff + apply): \
         p50 {:.2} ms, p99 {:.2} ms",
        ms(p50),
        ms(p99)
    );
    ops.sort_unstable();
    println!(
        "netlink ops per change: p50 {}, max {}",
        ops[ops.len() / 2],
        ops[ops.len() - 1]
    );
    for (k, v) in &per_kind {
        println!(
            "  {k}: {:.1} ops on average",
            v.iter().sum::<usize>() as f64 / v.len() as f64
        );
    }

    // No-op resync.
    let p = plan(&world.gateways(), "cloud-0", &options).expect("plan");
    let r = dp.reconcile(&p).await;
    assert!(r.is_ok());
    let mut noop = Vec::new();
    for _ in 0..NOOPS {
        let r = dp.reconcile(&p).await;
        assert_eq!(r.ops, 0);
        noop.push(r.duration);
    }
    let (p50, p99) = percentiles(&mut noop);
    println!(
        "no-op resync ({} routes, {NOOPS} runs): p50 {:.3} ms, p99 {:.3} ms",
        p.routes.len(),
        ms(p50),
        ms(p99)
    );

    // 10k routes into the tunnel.
    let mut big = p.clone();
    big.routes = (0..BIG)
        .map(|i| route(i, big.mtu))
        .chain(p.routes.iter().filter(|r| r.table != TUNNEL_TABLE).cloned())
        .collect();
    big.routes.sort();
    let r = dp.reconcile(&big).await;
    assert!(r.is_ok(), "{:?}", r.errors.first());
    println!(
        "10k routes, first apply: {} ops, {:.1} ms",
        r.ops,
        ms(r.duration)
    );
    let mut noop = Vec::new();
    for _ in 0..20 {
        let r = dp.reconcile(&big).await;
        assert_eq!(r.ops, 0);
        noop.push(r.duration);
    }
    let (p50, _) = percentiles(&mut noop);
    println!("10k routes, no-op resync: p50 {:.1} ms", ms(p50));
    let mut all = Vec::new();
    for round in 0..6 {
        let mut changed = big.clone();
        let mtu = if round % 2 == 0 { 1300 } else { big.mtu };
        for r in &mut changed.routes {
            r.mtu = mtu;
        }
        let r = dp.reconcile(&changed).await;
        assert!(r.is_ok());
        assert!(r.ops >= BIG, "{}", r.ops);
        all.push(r.duration);
    }
    let (p50, p99) = percentiles(&mut all);
    println!(
        "10k routes, every route changed (MTU): p50 {:.1} ms, max {:.1} ms",
        ms(p50),
        ms(p99)
    );
    let r = dp.cleanup().await;
    assert!(r.is_ok());
    println!(
        "cleanup of 10k routes: {} ops, {:.1} ms",
        r.ops,
        ms(r.duration)
    );
}

/// Non-adjacent /24s (never merged): 10.(100 + i / 128).(2 * (i % 128)).0/24.
fn route(i: usize, mtu: u32) -> Route {
    let a = u8::try_from(100 + i / 128).expect("fits");
    let b = u8::try_from(2 * (i % 128)).expect("fits");
    Route {
        table: TUNNEL_TABLE,
        destination: IpNetwork::V4(
            Ipv4Network::new(Ipv4Addr::new(10, a, b, 0), 24).expect("valid"),
        ),
        next_hop: NextHop::Device("raven-wg0".into()),
        mtu,
        source: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
    }
}

/// The Gateways, mutated one change at a time.
struct World {
    /// Local members (index, present).
    members: Vec<bool>,
    /// Remote domains: nodes present.
    remote: Vec<Vec<bool>>,
    /// Active endpoint of the first remote domain.
    remote_active: usize,
    mtu: u32,
}

impl World {
    fn new() -> Self {
        Self {
            members: vec![true; LOCAL_MEMBERS],
            remote: vec![vec![true; NODES_PER_DOMAIN]; REMOTE_DOMAINS],
            remote_active: 0,
            mtu: 1500,
        }
    }

    /// Applies change `i` and names it.
    fn change(&mut self, i: usize) -> &'static str {
        match i % 6 {
            0 | 1 => {
                let d = (i * 7) % REMOTE_DOMAINS;
                let n = 1 + (i % (NODES_PER_DOMAIN - 1));
                self.remote[d][n] = !self.remote[d][n];
                "remote node joins/leaves"
            }
            2 | 3 => {
                let m = 1 + (i % (LOCAL_MEMBERS - 1));
                self.members[m] = !self.members[m];
                "local member joins/leaves"
            }
            4 => "mtu",
            _ => {
                self.remote_active = (self.remote_active + 1) % 2;
                "remote gateway moves"
            }
        }
    }

    fn gateways(&self) -> Vec<Gateway> {
        let mut out = Vec::new();
        let key = "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=";
        let nodes: Vec<_> = self
            .members
            .iter()
            .enumerate()
            .filter(|(_, p)| **p)
            .map(|(m, _)| {
                json!({"nodeName": format!("cloud-{m}"), "privateIP": format!("10.0.0.{}", m + 1),
                       "subnets": [format!("10.1.{m}.0/24")]})
            })
            .collect();
        out.push(gateway("gw-cloud", "cloud-0", "1.0.0.1", nodes, key));
        for (d, present) in self.remote.iter().enumerate() {
            let active = if d == 0 { self.remote_active } else { 0 };
            let nodes: Vec<_> = present
                .iter()
                .enumerate()
                .filter(|(n, p)| **p || *n == active)
                .map(|(n, _)| {
                    json!({"nodeName": format!("r{d}-{n}"),
                           "privateIP": format!("192.168.{d}.{}", n + 1),
                           "subnets": [format!("10.{}.{}.0/24", 20 + d, 2 * n)]})
                })
                .collect();
            out.push(gateway(
                &format!("gw-r{d}"),
                &format!("r{d}-{active}"),
                &format!("2.0.{d}.{}", active + 1),
                nodes,
                key,
            ));
        }
        out
    }
}

fn gateway(
    name: &str,
    active: &str,
    public_ip: &str,
    nodes: Vec<serde_json::Value>,
    key: &str,
) -> Gateway {
    let ep = json!({"nodeName": active, "type": "tunnel", "port": 4500, "publicIP": public_ip,
                    "config": {"publicKey": key, "enable-l3-tunnel": "true"}});
    serde_json::from_value(json!({
        "apiVersion": "raven.openyurt.io/v1beta1",
        "kind": "Gateway",
        "metadata": {"name": name},
        "spec": {"endpoints": [ep.clone()], "tunnelConfig": {"Replicas": 1},
                 "proxyConfig": {"Replicas": 0}},
        "status": {"nodes": nodes, "activeEndpoints": [ep]},
    }))
    .expect("valid Gateway")
}

fn percentiles(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort_unstable();
    let p99 = ((v.len() * 99).div_ceil(100)).saturating_sub(1);
    (v[v.len() / 2], v[p99])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
