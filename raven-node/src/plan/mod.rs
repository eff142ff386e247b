//! The network planner: all Gateways + "I am node N" → the exact network state node N must have.
//!
//! [`plan`] is pure and deterministic: no I/O, no clock, no randomness, and the same answer for
//! any order of Gateways, nodes or endpoints in the input. The daemon observes the kernel,
//! calls [`plan`], diffs the [`NodePlan`] against what it owns and applies the difference; every
//! collection in the plan is sorted so that diff is a merge.
//!
//! # What a node gets
//!
//! | role ([`Role`]) | raven0 ([`VxlanPlan`])                 | routes ([`Route`])                                   | rules ([`Rule`])                         | tunnel ([`TunnelPlan`]) |
//! |-----------------|----------------------------------------|------------------------------------------------------|------------------------------------------|-------------------------|
//! | member          | remote = gateway, one peer: the gateway | 9027: each remote prefix via gateway VTEP            | 9027 `from all lookup 9027`              | –                       |
//! | gateway         | no remote, one peer per other member   | 9027: member subnets via member VTEP; 9028: remote prefixes dev tunnel | 9026 `iif tunnel lookup 9027`; 9027 `from all lookup 9028` | peers            |
//! | solo            | –                                      | 9028: remote prefixes dev tunnel                     | 9027 `from all lookup 9028`              | peers                   |
//! | inactive, unmanaged | –                                  | –                                                    | –                                        | –                       |
//!
//! plus the per-pod route set ([`PodRoutes`], published for `raven-cni`) and the
//! [`PlanWarning`]s. MTU (all routes, raven0, pod routes): upstream's rule,
//! `min(underlay − tunnel overhead, domain link − 50)` with 64 for IPsec and 80 for WireGuard,
//! so a Rust node and an upstream node in one domain use the same raven0 MTU (1436 / 1420 on a
//! 1500 underlay). raven0 addressing (VNI 200, UDP 4472, 240.x.y.z/8, MAC `aa:0f` + VTEP) is
//! upstream's too: peers derive each other's VTEP and MAC without talking ([`vxlan`]).
//!
//! # Steering without marks
//!
//! Upstream marks packets with iptables + ipset (`fwmark 0x40 → table 9027`). Calico's mangle
//! ACCEPT rules skip the mark for established flows (raven#136), the unmasked mark clobbers
//! other components' bits, and the mark survives VXLAN encapsulation, so upstream needs a tc
//! filter on raven0 to clear it or the VXLAN packet would loop. We use plain policy rules and
//! exact tables instead: a table lookup that finds no route falls through to the next rule, so
//! a table that holds *only* remote prefixes can be consulted for every packet.
//!
//! The planner establishes three invariants:
//! 1. Member table 9027 and gateway table 9028 hold only the routed remote prefixes `R`.
//! 2. `R` is disjoint from everything local: subnets and private IPs of the local domain's
//!    nodes, the reserved ranges (240.0.0.0/4 holds every raven0 address), the daemon's
//!    protected ranges, and the public IPs of the gateways we tunnel to ([`conflicts`]).
//! 3. Gateway table 9027 holds only member subnets and is consulted only for packets that came
//!    out of the tunnel device (`iif`).
//!
//! **Why it cannot loop.** On a member, a packet enters table 9027 only if its destination is
//! in `R`, and leaves on raven0 towards the gateway's VTEP. raven0 wraps it in a VXLAN packet
//! addressed to the gateway's private IP, a local node address, so not in `R` (2): the lookup
//! misses and main sends it to the underlay. One encapsulation, no mark to reset.
//! On the gateway, packets for `R` from members (arriving on raven0) or from the node itself
//! go through table 9028 into the tunnel device. The tunnel's own packets go to a peer's
//! public IP, not in `R` (2), and fall through to main. Decrypted packets come out of the
//! tunnel device: rule 9026 sends those for a member subnet over raven0 (the VXLAN packet to
//! the member's private IP is generated locally, so `iif` does not match, and it is not in
//! `R`: main); those for the gateway's own pods miss both tables and reach the CNI via main;
//! those for another remote domain (the central gateway relaying between two NATed domains)
//! go back into the tunnel towards the peer owning that prefix, never back to the sender,
//! which owns none of `R` from its own point of view (2, applied on its side). So packets only
//! move member → gateway → (central →) gateway → member: raven0 never forwards to raven0 (a
//! member receives on raven0 only for its own pods; gateway table 9027 is only for tunnel
//! traffic) and intra-domain traffic never matches (local subnets are not in `R`, and gateway
//! table 9027 is not consulted for it), so Flannel keeps carrying it unchanged.
//! A side effect worth knowing: the reverse-path lookup for a remote source resolves to
//! raven0 on a member and to the tunnel device on a gateway, the interfaces the packets arrive
//! on, so strict `rp_filter` should accept them (upstream needs loose mode); the data-plane
//! lab is where that gets proven.
//!
//! # Deliberate differences from upstream
//!
//! Each is also noted where it is decided.
//! - No iptables, ipset, tc or marks (above); tables hold exact prefixes (members: merged
//!   across domains) instead of `default via <gateway VTEP>`; our rule priorities are 9026/9027
//!   (upstream 100/101).
//! - The tunnel is a device for both drivers (IPsec on an `xfrm` interface, issue 7), routed
//!   through table 9028; upstream's IPsec is policy-based and has no routes.
//! - Routes a node's own traffic can take carry `src <private IP>`; upstream's leave such
//!   packets with the unroutable 240.x.y.z source.
//! - Remote subnets overlapping anything local, a tunnel endpoint or another domain are not
//!   routed and are reported ([`conflicts`]); upstream routes them and breaks the domain.
//! - Unusable input is reported and skipped piece by piece: a bad subnet loses that subnet, a
//!   bad node loses that node, VTEP collisions (nodes differing only in the first octet) lose
//!   the colliding member; upstream drops or mis-programs more.
//! - A gateway whose `publicIP` is not known yet keeps its domain's raven0 and routes in place
//!   (upstream tears every node of the domain down until it is), and a gateway with no remote
//!   domains keeps raven0 (upstream deletes it, then recreates it when one appears).
//! - Reachability and peers: see [`peers`] (NATed remotes without `publicIP`, unreachable
//!   domains, remote ports, edge-to-edge rule).
//! - Determinism: a node listed by several Gateways uses the first by name; duplicate nodes and
//!   several active endpoints resolve by content, not list order.
//! - IPv6 subnets are ignored with a warning (upstream has no IPv6 at all).

pub mod conflicts;
mod input;
pub mod options;
pub mod peers;
pub mod podroutes;
pub mod prefix;
pub mod role;
pub mod routes;
pub mod rules;
pub mod vxlan;
pub mod warnings;

use std::net::{IpAddr, Ipv4Addr};

use raven_api::gateway::v1beta1::Gateway;

use conflicts::{Entry, Owner};
pub use options::{Options, PlanError, TunnelDriver};
pub use peers::{LocalEndpoint, NatType, PeerMode, RemoteDomain, TunnelPeer, TunnelPlan};
pub use podroutes::PodRoutes;
use prefix::{V4Prefix, from_network, merge};
pub use role::{InactiveReason, Role};
pub use routes::{NextHop, RAVEN0_TABLE, Route, TUNNEL_TABLE};
pub use rules::{RULE_PRIORITY_FROM_TUNNEL, RULE_PRIORITY_TO_REMOTE, Rule, Selector};
pub use vxlan::{MacAddr, VxlanPeer, VxlanPlan};
pub use warnings::{AddressProblem, Counterpart, PlanWarning, PrefixProblem};

/// Ranges that are never another domain's: "this network", loopback, link-local, multicast and
/// class E (which holds 240.0.0.0/8, raven0's VTEP network, and the broadcast address).
pub const RESERVED_PREFIXES: [(Ipv4Addr, u8); 5] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// The desired network state of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePlan {
    /// The node planned for.
    pub node: String,
    /// Its role.
    pub role: Role,
    /// Tunnel MTU: raven0, every route, the pod routes.
    pub mtu: u32,
    /// raven0, on gateways and members.
    pub vxlan: Option<VxlanPlan>,
    /// Routes in tables 9027/9028, sorted.
    pub routes: Vec<Route>,
    /// Policy rules, sorted by priority.
    pub rules: Vec<Rule>,
    /// The tunnel, on gateways and solo nodes.
    pub tunnel: Option<TunnelPlan>,
    /// What `raven-cni` installs in every pod.
    pub pod_routes: PodRoutes,
    /// Everything skipped or excluded, sorted, de-duplicated.
    pub warnings: Vec<PlanWarning>,
}

/// Plans node `node` from all Gateways (v1beta1, as listed from the API or read from files).
///
/// Errors only for unusable options or an empty node name; every problem in the Gateways is a
/// [`PlanWarning`] and the rest of the plan is still computed.
pub fn plan(gateways: &[Gateway], node: &str, options: &Options) -> Result<NodePlan, PlanError> {
    options.validate()?;
    if node.is_empty() {
        return Err(PlanError::EmptyNodeName);
    }
    let mut warnings = Vec::new();
    let domains = input::normalize(gateways, options.forward_node_ip, &mut warnings);
    let plan = match role::find_local(&domains, node, &mut warnings) {
        None => empty(node, Role::Unmanaged, options),
        Some((domain, index)) => {
            let local = role::decide(&domains, domain, index, &mut warnings);
            if matches!(local.role, Role::Inactive { .. }) {
                empty(node, local.role, options)
            } else {
                active(&domains, local, node, options, &mut warnings)
            }
        }
    };
    warnings.sort_unstable();
    warnings.dedup();
    Ok(NodePlan { warnings, ..plan })
}

/// The plan of a node without a tunnel role: nothing to own.
fn empty(node: &str, role: Role, options: &Options) -> NodePlan {
    let mtu = options.mtu(false);
    NodePlan {
        node: node.to_owned(),
        role,
        mtu,
        vxlan: None,
        routes: Vec::new(),
        rules: Vec::new(),
        tunnel: None,
        pod_routes: PodRoutes::new(Vec::new(), mtu),
        warnings: Vec::new(),
    }
}

/// The plan of a gateway, member or solo node.
fn active(
    domains: &[input::Domain<'_>],
    local: role::Local,
    node: &str,
    options: &Options,
    warnings: &mut Vec<PlanWarning>,
) -> NodePlan {
    let topology = peers::classify(domains, local.domain, options, warnings);
    let excluded = Exclusions::compute(domains, &local, &topology, options, warnings);
    let mut routed: Vec<Vec<V4Prefix>> = vec![Vec::new(); domains.len()];
    for (i, prefixes) in excluded.routed.into_iter().enumerate() {
        routed[i] = merge(prefixes);
    }
    let all_routed = merge(routed.iter().flatten().copied().collect());
    let ld = &domains[local.domain];
    let me = &ld.nodes[local.node];
    let mtu = options.mtu(local.role.has_raven0());
    let source = me.ipv4().map(IpAddr::V4);
    let mut routes = Vec::new();
    let mut rules = Vec::new();
    let mut vxlan = None;
    match &local.role {
        Role::Member { .. } => {
            let gw = &ld.nodes[local.gateway_node.expect("members have a gateway node")];
            let gw_ip = gw
                .ipv4()
                .expect("decide() makes members only of IPv4 gateways");
            let gw_peer = VxlanPeer::new(gw.name, gw_ip, options.mac_prefix);
            routes.extend(all_routed.iter().map(|p| Route {
                table: RAVEN0_TABLE,
                destination: p.to_network(),
                next_hop: NextHop::Vtep(gw_peer.vtep),
                mtu,
                source,
            }));
            rules.push(Rule {
                priority: RULE_PRIORITY_TO_REMOTE,
                selector: Selector::All,
                table: RAVEN0_TABLE,
            });
            let own = me
                .ipv4()
                .expect("decide() makes members only of IPv4 nodes");
            vxlan = Some(VxlanPlan::new(
                own,
                options.mac_prefix,
                mtu,
                Some(gw_ip),
                vec![gw_peer],
            ));
        }
        Role::Gateway { .. } | Role::Solo { .. } => {
            let device = options.device();
            routes.extend(all_routed.iter().map(|p| Route {
                table: TUNNEL_TABLE,
                destination: p.to_network(),
                next_hop: NextHop::Device(device.to_owned()),
                mtu,
                source,
            }));
            rules.push(Rule {
                priority: RULE_PRIORITY_TO_REMOTE,
                selector: Selector::All,
                table: TUNNEL_TABLE,
            });
            if local.role.has_raven0() {
                let mut peers = Vec::with_capacity(local.raven0_members.len());
                for &m in &local.raven0_members {
                    let member = &ld.nodes[m];
                    let ip = member.ipv4().expect("raven0 members have IPv4 addresses");
                    let peer = VxlanPeer::new(member.name, ip, options.mac_prefix);
                    let subnets = member
                        .subnets
                        .iter()
                        .filter(|p| !excluded.local_overlaps.contains(&(m, **p)))
                        .copied()
                        .collect();
                    routes.extend(merge(subnets).into_iter().map(|p| Route {
                        table: RAVEN0_TABLE,
                        destination: p.to_network(),
                        next_hop: NextHop::Vtep(peer.vtep),
                        mtu,
                        source: None,
                    }));
                    peers.push(peer);
                }
                rules.push(Rule {
                    priority: RULE_PRIORITY_FROM_TUNNEL,
                    selector: Selector::IncomingInterface(device.to_owned()),
                    table: RAVEN0_TABLE,
                });
                let own = me
                    .ipv4()
                    .expect("decide() makes gateways with raven0 only of IPv4 nodes");
                vxlan = Some(VxlanPlan::new(own, options.mac_prefix, mtu, None, peers));
            }
        }
        Role::Unmanaged | Role::Inactive { .. } => {}
    }
    routes.sort_unstable();
    rules.sort_unstable();
    let tunnel = if local.role.runs_tunnel() {
        let local_prefixes = merge(
            ld.nodes
                .iter()
                .flat_map(|n| n.subnets.iter().copied())
                .collect(),
        );
        peers::tunnel_plan(
            domains,
            local.domain,
            &topology,
            &routed,
            &local_prefixes,
            options,
            warnings,
        )
    } else {
        None
    };
    NodePlan {
        node: node.to_owned(),
        role: local.role,
        mtu,
        vxlan,
        routes,
        rules,
        tunnel,
        pod_routes: PodRoutes::new(all_routed.iter().map(|p| p.to_network()).collect(), mtu),
        warnings: Vec::new(),
    }
}

/// Result of conflict resolution: what is routed per domain, and which local subnets overlap.
struct Exclusions {
    /// Per domain, its non-excluded remote subnets (unmerged); empty for unrouted domains.
    routed: Vec<Vec<V4Prefix>>,
    /// `(local node index, subnet)` pairs that overlap another local node's subnet, sorted.
    local_overlaps: SortedPairs,
}

/// A sorted list with binary-search membership (the typical list is empty).
struct SortedPairs(Vec<(usize, V4Prefix)>);

impl SortedPairs {
    fn contains(&self, pair: &(usize, V4Prefix)) -> bool {
        self.0.binary_search(pair).is_ok()
    }
}

impl Exclusions {
    fn compute(
        domains: &[input::Domain<'_>],
        local: &role::Local,
        topology: &peers::Topology,
        options: &Options,
        warnings: &mut Vec<PlanWarning>,
    ) -> Self {
        let ld = &domains[local.domain];
        let mut entries = Vec::new();
        for (n, node) in ld.nodes.iter().enumerate() {
            let n32 = index_u32(n);
            entries.extend(node.subnets.iter().map(|&prefix| Entry {
                prefix,
                owner: Owner::LocalSubnet { node: n32 },
            }));
            if let Some(ip) = node.ipv4() {
                entries.push(Entry {
                    prefix: V4Prefix::host(ip),
                    owner: Owner::LocalNode { node: n32 },
                });
            }
        }
        entries.extend(RESERVED_PREFIXES.iter().map(|&(addr, len)| Entry {
            prefix: V4Prefix::new(addr, len).expect("reserved ranges have no host bits"),
            owner: Owner::Reserved,
        }));
        entries.extend(
            options
                .protected_prefixes
                .iter()
                .filter_map(|&p| from_network(p))
                .map(|prefix| Entry {
                    prefix,
                    owner: Owner::Protected,
                }),
        );
        for (i, d) in domains.iter().enumerate() {
            if i != local.domain && !topology.reach[i].is_peer() {
                continue;
            }
            if let Some(IpAddr::V4(ip)) = d.active().and_then(|ep| ep.public_ip) {
                entries.push(Entry {
                    prefix: V4Prefix::host(ip),
                    owner: Owner::PublicIp {
                        domain: index_u32(i),
                    },
                });
            }
        }
        for (i, d) in domains.iter().enumerate() {
            if !topology.reach[i].routed() {
                continue;
            }
            role::subnet_warnings(d, warnings);
            for (n, node) in d.nodes.iter().enumerate() {
                if options.forward_node_ip
                    && let Some(problem) = node.ipv4_problem()
                {
                    warnings.push(PlanWarning::BadPrivateIp {
                        gateway: d.name.to_owned(),
                        node: node.name.to_owned(),
                        value: node.raw_ip.to_owned(),
                        problem,
                    });
                }
                entries.extend(node.subnets.iter().map(|&prefix| Entry {
                    prefix,
                    owner: Owner::Remote {
                        domain: index_u32(i),
                        node: index_u32(n),
                    },
                }));
            }
        }
        let hits = conflicts::resolve(&entries);
        let mut routed: Vec<Vec<V4Prefix>> = vec![Vec::new(); domains.len()];
        let mut local_overlaps = Vec::new();
        for (entry, hit) in entries.iter().zip(&hits) {
            match (entry.owner, hit) {
                (Owner::Remote { domain, .. }, None) => routed[domain as usize].push(entry.prefix),
                (Owner::Remote { domain, node }, Some(other)) => {
                    let d = &domains[domain as usize];
                    warnings.push(PlanWarning::RemoteConflict {
                        gateway: d.name.to_owned(),
                        node: d.nodes[node as usize].name.to_owned(),
                        prefix: entry.prefix.to_network(),
                        with: counterpart(domains, local.domain, &entries[*other]),
                    });
                }
                (Owner::LocalSubnet { node }, Some(other)) => {
                    let Owner::LocalSubnet { node: other_node } = entries[*other].owner else {
                        continue;
                    };
                    local_overlaps.push((node as usize, entry.prefix));
                    warnings.push(PlanWarning::LocalOverlap {
                        gateway: ld.name.to_owned(),
                        node: ld.nodes[node as usize].name.to_owned(),
                        prefix: entry.prefix.to_network(),
                        other_node: ld.nodes[other_node as usize].name.to_owned(),
                        other_prefix: entries[*other].prefix.to_network(),
                    });
                }
                _ => {}
            }
        }
        local_overlaps.sort_unstable();
        Self {
            routed,
            local_overlaps: SortedPairs(local_overlaps),
        }
    }
}

/// Describes the entry a remote subnet collided with.
fn counterpart(domains: &[input::Domain<'_>], local: usize, entry: &Entry) -> Counterpart {
    let prefix = entry.prefix.to_network();
    match entry.owner {
        Owner::LocalSubnet { node } => Counterpart::LocalSubnet {
            node: domains[local].nodes[node as usize].name.to_owned(),
            prefix,
        },
        Owner::LocalNode { node } => Counterpart::LocalNodeAddress {
            node: domains[local].nodes[node as usize].name.to_owned(),
            address: entry.prefix.addr(),
        },
        Owner::Protected => Counterpart::Protected { prefix },
        Owner::Reserved => Counterpart::Reserved { prefix },
        Owner::PublicIp { domain } => Counterpart::GatewayPublicIp {
            gateway: domains[domain as usize].name.to_owned(),
            address: IpAddr::V4(entry.prefix.addr()),
        },
        Owner::Remote { domain, node } => {
            let d = &domains[domain as usize];
            Counterpart::RemoteSubnet {
                gateway: d.name.to_owned(),
                node: d.nodes[node as usize].name.to_owned(),
                prefix,
            }
        }
    }
}

/// Indices fit in u32: the input would need four billion Gateways or nodes otherwise, far past
/// what an API server lists.
fn index_u32(i: usize) -> u32 {
    u32::try_from(i).expect("fewer than 2^32 gateways and nodes per gateway")
}
