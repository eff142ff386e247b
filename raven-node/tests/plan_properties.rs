//! Property tests of the planner over random clusters: messy ones (overlapping edge LANs,
//! duplicate node IPs, bad strings, random NAT types, missing endpoints) for determinism and the
//! routing invariants, tidy ones for failover.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use common::Gw;
use ipnetwork::{IpNetwork, Ipv4Network};
use proptest::prelude::*;
use raven_node::plan::{NextHop, NodePlan, Options, Role, TunnelDriver, plan};

const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

#[derive(Clone, Debug)]
struct Cluster {
    gws: Vec<Gw>,
    options: Options,
}

impl Cluster {
    fn nodes(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .gws
            .iter()
            .flat_map(|g| g.nodes.iter().map(|n| n.0.clone()))
            .collect();
        names.push("stranger".into());
        names
    }

    fn plan(&self, node: &str) -> NodePlan {
        let gws: Vec<_> = self.gws.iter().map(Gw::build).collect();
        plan(&gws, node, &self.options).expect("valid options")
    }

    fn gw(&self, name: &str) -> &Gw {
        self.gws.iter().find(|g| g.name == name).expect("gateway")
    }
}

#[derive(Clone, Debug)]
struct DomainDraft {
    nodes: Vec<(String, Vec<String>)>,
    active: Option<usize>,
    public_ip: String,
    under_nat: bool,
    nat_type: &'static str,
    public_port: i64,
    replicas: i64,
    key: bool,
}

fn messy_ip() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (1u8..=2, 1u8..=4).prop_map(|(a, b)| format!("192.168.{a}.{b}")),
        3 => (0u8..=255, 1u8..=254).prop_map(|(a, b)| format!("10.0.{a}.{b}")),
        1 => Just(String::new()),
        1 => Just("fd00::1".to_owned()),
        1 => Just("bogus".to_owned()),
    ]
}

fn subnet() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => (0u8..24).prop_map(|k| format!("10.244.{k}.0/24")),
        3 => (0u8..12).prop_map(|k| format!("10.244.{}.0/23", k * 2)),
        1 => (0u8..3).prop_map(|k| format!("10.{}.0.0/16", 244 + k)),
        1 => Just("192.168.1.0/24".to_owned()),
        1 => Just(String::new()),
        1 => Just("garbage".to_owned()),
        1 => Just("10.244.1.7/24".to_owned()),
    ]
}

fn nat_type() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just(""),
        Just("Open Internet (no NAT)"),
        Just("Full cone NAT"),
        Just("Restricted cone NAT"),
        Just("Port Restricted cone NAT"),
        Just("Symmetric NAT"),
        Just("Undefined"),
    ]
}

fn domain(
    ip: BoxedStrategy<String>,
    public_ip: BoxedStrategy<String>,
) -> impl Strategy<Value = DomainDraft> {
    (
        prop::collection::vec((ip, prop::collection::vec(subnet(), 0..=2)), 1..=4),
        prop::option::weighted(0.85, 0usize..4),
        public_ip,
        any::<bool>(),
        nat_type(),
        prop_oneof![Just(0i64), 40000i64..40010],
        prop_oneof![9 => Just(1i64), 1 => Just(0i64)],
        any::<bool>(),
    )
        .prop_map(
            |(nodes, active, public_ip, under_nat, nat_type, public_port, replicas, key)| {
                let active = active.map(|a| a % nodes.len());
                DomainDraft {
                    nodes,
                    active,
                    public_ip,
                    under_nat,
                    nat_type,
                    public_port,
                    replicas,
                    key,
                }
            },
        )
}

fn assemble(drafts: Vec<DomainDraft>, options: Options) -> Cluster {
    let gws = drafts
        .into_iter()
        .enumerate()
        .map(|(d, draft)| {
            let mut gw = Gw::new(&format!("gw-{d}"));
            for (j, (ip, subnets)) in draft.nodes.iter().enumerate() {
                let subnets: Vec<&str> = subnets.iter().map(String::as_str).collect();
                gw = gw.node(&format!("g{d}-n{j}"), ip, &subnets);
            }
            if let Some(a) = draft.active {
                gw = gw.active(&format!("g{d}-n{a}"), &draft.public_ip);
            }
            gw.under_nat = draft.under_nat;
            gw.nat_type = draft.nat_type.into();
            gw.public_port = draft.public_port;
            gw.replicas = draft.replicas;
            if draft.key {
                gw = gw.key(KEY);
            }
            gw
        })
        .collect();
    Cluster { gws, options }
}

fn options() -> impl Strategy<Value = Options> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(traversal, forward, wg)| Options {
        nat_traversal: traversal,
        forward_node_ip: forward,
        driver: if wg {
            TunnelDriver::WireGuard
        } else {
            TunnelDriver::Ipsec
        },
        ..Options::default()
    })
}

/// Messy clusters: overlapping node IPs and subnets, bad strings, any NAT combination.
fn messy_cluster() -> impl Strategy<Value = Cluster> {
    let public = prop_oneof![
        6 => (1u8..=20).prop_map(|x| format!("{x}.{x}.{x}.{x}")),
        2 => Just(String::new()),
        1 => Just("1.2.3".to_owned()),
    ]
    .boxed();
    (
        prop::collection::vec(domain(messy_ip().boxed(), public), 1..=5),
        options(),
    )
        .prop_map(|(drafts, options)| assemble(drafts, options))
}

/// Tidy clusters for failover: unique node IPs, valid public IPs, every domain with an active
/// endpoint and its tunnel on.
fn tidy_cluster() -> impl Strategy<Value = Cluster> {
    let public = (1u8..=200).prop_map(|x| format!("{x}.1.1.{x}")).boxed();
    (
        prop::collection::vec(domain(Just(String::new()).boxed(), public), 1..=5),
        options(),
    )
        .prop_map(|(mut drafts, options)| {
            for (d, draft) in drafts.iter_mut().enumerate() {
                for (j, node) in draft.nodes.iter_mut().enumerate() {
                    node.0 = format!("10.{d}.0.{}", j + 1);
                }
                draft.active = Some(draft.active.unwrap_or(0));
                draft.replicas = 1;
            }
            assemble(drafts, options)
        })
}

/// Deterministic Fisher–Yates from a seed (xorshift64*).
fn shuffle<T>(items: &mut [T], seed: &mut u64) {
    for i in (1..items.len()).rev() {
        *seed ^= *seed >> 12;
        *seed ^= *seed << 25;
        *seed ^= *seed >> 27;
        let r = seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
        items.swap(i, (r % (i as u64 + 1)) as usize);
    }
}

fn shuffled(cluster: &Cluster, seed: u64) -> Cluster {
    let mut seed = seed | 1;
    let mut out = cluster.clone();
    shuffle(&mut out.gws, &mut seed);
    for gw in &mut out.gws {
        shuffle(&mut gw.nodes, &mut seed);
        for node in &mut gw.nodes {
            shuffle(&mut node.2, &mut seed);
        }
    }
    out
}

fn v4net(text: &str) -> Option<Ipv4Network> {
    let net: Ipv4Network = text.trim().parse().ok()?;
    (text.contains('/') && net.network() == net.ip()).then_some(net)
}

/// Everything local to `gw`, computed independently of the planner.
fn local_ranges(gw: &Gw) -> Vec<Ipv4Network> {
    let mut out = Vec::new();
    for (_, ip, subnets) in &gw.nodes {
        out.extend(subnets.iter().filter_map(|s| v4net(s)));
        if let Ok(addr) = ip.parse::<Ipv4Addr>() {
            out.push(Ipv4Network::new(addr, 32).expect("/32"));
        }
    }
    out.push("240.0.0.0/4".parse().expect("net"));
    out.push("127.0.0.0/8".parse().expect("net"));
    out
}

fn as_v4(net: &IpNetwork) -> Ipv4Network {
    match net {
        IpNetwork::V4(v4) => *v4,
        IpNetwork::V6(_) => panic!("the planner routes IPv4 only, got {net}"),
    }
}

fn gateway_of(role: &Role) -> Option<&str> {
    match role {
        Role::Gateway { gateway } | Role::Solo { gateway } | Role::Member { gateway, .. } => {
            Some(gateway)
        }
        Role::Inactive { .. } | Role::Unmanaged => None,
    }
}

fn vtep(ip: &str) -> Ipv4Addr {
    let o = ip.parse::<Ipv4Addr>().expect("gateway IPv4").octets();
    Ipv4Addr::new(240, o[1], o[2], o[3])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn deterministic_and_order_independent(cluster in messy_cluster(), seed in any::<u64>()) {
        let other = shuffled(&cluster, seed);
        for node in cluster.nodes() {
            let a = cluster.plan(&node);
            prop_assert_eq!(&a, &cluster.plan(&node), "not deterministic for {}", node);
            prop_assert_eq!(&a, &other.plan(&node), "input order changed the plan of {}", node);
        }
    }

    #[test]
    fn routing_invariants(cluster in messy_cluster()) {
        let mut per_domain: Vec<(String, NodePlan)> = Vec::new();
        for node in cluster.nodes() {
            let p = cluster.plan(&node);
            let Some(gw_name) = gateway_of(&p.role) else {
                prop_assert!(p.routes.is_empty() && p.rules.is_empty() && p.vxlan.is_none());
                prop_assert!(p.tunnel.is_none() && p.pod_routes.remote_prefixes.is_empty());
                continue;
            };
            let gw = cluster.gw(gw_name);
            let local = local_ranges(gw);
            // No prefix both local and routed remote.
            let remote_table = if matches!(p.role, Role::Member { .. }) { 9027 } else { 9028 };
            let routed: Vec<Ipv4Network> = p.routes.iter()
                .filter(|r| r.table == remote_table)
                .map(|r| as_v4(&r.destination))
                .collect();
            let pods: Vec<Ipv4Network> = p.pod_routes.remote_prefixes.iter().map(as_v4).collect();
            prop_assert_eq!(&routed, &pods, "tables and pod routes disagree on {}", node);
            for r in &routed {
                for l in &local {
                    prop_assert!(!r.overlaps(*l), "{} routes {} which overlaps local {}", node, r, l);
                }
            }
            // Every route carries the plan's MTU.
            prop_assert!(p.routes.iter().all(|r| r.mtu == p.mtu));
            prop_assert_eq!(p.pod_routes.mtu, p.mtu);
            match &p.role {
                Role::Member { gateway_node, .. } => {
                    // Every member route points at its own gateway's VTEP.
                    let gw_ip = &gw.nodes.iter().find(|n| &n.0 == gateway_node).expect("gw node").1;
                    let expected = NextHop::Vtep(vtep(gw_ip));
                    prop_assert!(p.routes.iter().all(|r| r.table == 9027 && r.next_hop == expected));
                    let link = p.vxlan.as_ref().expect("members have raven0");
                    prop_assert_eq!(link.remote, Some(gw_ip.parse::<Ipv4Addr>().expect("v4")));
                    prop_assert_eq!(link.peers.len(), 1);
                    prop_assert_eq!(link.peers[0].vtep, vtep(gw_ip));
                }
                Role::Gateway { .. } => {
                    // Return routes only for subnets of the gateway's own domain, via raven0 peers.
                    let link = p.vxlan.as_ref().expect("gateways have raven0");
                    let peers: BTreeSet<_> = link.peers.iter().map(|x| x.vtep).collect();
                    for r in p.routes.iter().filter(|r| r.table == 9027) {
                        let NextHop::Vtep(v) = r.next_hop else {
                            return Err(TestCaseError::fail("9027 route not via a VTEP"));
                        };
                        prop_assert!(peers.contains(&v));
                        let dst = as_v4(&r.destination);
                        prop_assert!(local.iter().any(|l| l.overlaps(dst)));
                    }
                    prop_assert!(p.tunnel.is_some());
                }
                Role::Solo { .. } => prop_assert!(p.vxlan.is_none() && p.tunnel.is_some()),
                _ => {}
            }
            per_domain.push((gw_name.to_owned(), p));
        }
        // One domain, one remote route set: every active node of a domain agrees.
        for (gw, p) in &per_domain {
            for (other_gw, q) in &per_domain {
                if gw == other_gw {
                    prop_assert_eq!(&p.pod_routes, &q.pod_routes, "{} vs {}", p.node, q.node);
                }
            }
        }
    }

    #[test]
    fn moving_the_active_endpoint_changes_only_what_must(
        cluster in tidy_cluster(),
        pick in any::<prop::sample::Index>(),
        target in any::<prop::sample::Index>(),
    ) {
        let movable: Vec<usize> = (0..cluster.gws.len())
            .filter(|&i| cluster.gws[i].nodes.len() >= 2)
            .collect();
        prop_assume!(!movable.is_empty());
        let moved_index = movable[pick.index(movable.len())];
        let mut after = cluster.clone();
        let gw = &mut after.gws[moved_index];
        let current = gw.active.clone().expect("tidy clusters have endpoints");
        let candidates: Vec<String> = gw.nodes.iter().map(|n| n.0.clone()).filter(|n| *n != current).collect();
        gw.active = Some(candidates[target.index(candidates.len())].clone());
        let moved = gw.name.clone();
        for node in cluster.nodes() {
            let (p, q) = (cluster.plan(&node), after.plan(&node));
            let in_moved = gateway_of(&p.role) == Some(moved.as_str());
            if !in_moved {
                // Other domains: nothing routed changes, only who carries the moved domain.
                prop_assert_eq!(&p.role, &q.role);
                prop_assert_eq!(&p.vxlan, &q.vxlan);
                prop_assert_eq!(&p.routes, &q.routes);
                prop_assert_eq!(&p.rules, &q.rules);
                prop_assert_eq!(&p.pod_routes, &q.pod_routes);
                if let (Some(a), Some(b)) = (&p.tunnel, &q.tunnel) {
                    let domains = |t: &raven_node::plan::TunnelPlan| -> Vec<_> {
                        t.domains.iter().map(|d| (d.gateway.clone(), d.prefixes.clone())).collect()
                    };
                    prop_assert_eq!(domains(a), domains(b));
                    prop_assert_eq!(&a.local, &b.local);
                }
                continue;
            }
            // The moved domain: the pods' routes stay (no pod refresh on failover), MTU too.
            prop_assert_eq!(&p.pod_routes, &q.pod_routes, "pod routes of {} changed", node);
            prop_assert_eq!(p.mtu, q.mtu);
            // A member that stays a member keeps its address and destinations; only the
            // gateway it points at changes.
            if let (Role::Member { .. }, Role::Member { gateway_node, .. }) = (&p.role, &q.role) {
                let (a, b) = (p.vxlan.as_ref().expect("raven0"), q.vxlan.as_ref().expect("raven0"));
                prop_assert_eq!((a.address, a.mac, a.mtu), (b.address, b.mac, b.mtu));
                prop_assert_eq!(&b.peers[0].node, gateway_node);
                let dst = |x: &NodePlan| x.routes.iter().map(|r| r.destination).collect::<Vec<_>>();
                prop_assert_eq!(dst(&p), dst(&q));
            }
        }
    }
}
