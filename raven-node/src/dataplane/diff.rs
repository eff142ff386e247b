//! The pure diff: plan + observed kernel state → the minimal ordered list of [`Op`]s.
//!
//! No I/O. The rules, each the fix of an upstream weakness (upstream-raven-tunnel.md §3.3–3.5):
//! - raven0 is created only when absent, re-created (delete + create) only when a parameter the
//!   kernel cannot change in place differs (kind, VNI, port, local, underlay device, learning),
//!   and otherwise changed in place: MTU, MAC, remote and up state never re-create it (upstream
//!   re-creates for MTU and remote, which flushes FDB, neighbours and routes).
//! - When raven0 is (re-)created or deleted, the diff knows the kernel flushed everything on it
//!   and neither deletes what is gone nor skips what must be re-added.
//! - Setting a remote makes the kernel add an all-zero FDB entry towards it; the diff predicts
//!   it and deletes it in the same pass, so a second pass finds nothing to do.
//! - Entries that are already right produce no op (upstream re-sets every FDB/ARP entry each
//!   sync); a route that differs is replaced by the planned one (upstream replaces it with the
//!   current object, so drift is never fixed).
//!
//! Ops come out in apply order: deletes of rules and routes first (stop steering into stale
//! state), then the link, addresses, FDB/neighbours, routes, and rules last (steer only once
//! the routes exist).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::{IpNetwork, Ipv4Network};

use crate::plan::{NextHop, NodePlan, Route, Rule, VxlanPlan};

use super::observed::{FdbEntry, Observed, ObservedLink, ObservedRoute, ZERO_MAC};
use super::op::{LinkChange, LinkSpec, Op};

/// The ops that turn `observed` into `plan` (only what differs; nothing for an unchanged plan).
pub fn diff(plan: &NodePlan, observed: &Observed) -> Vec<Op> {
    diff_state(plan.vxlan.as_ref(), &plan.routes, &plan.rules, observed)
}

/// The ops that remove everything we own (what `raven-node cleanup` and a node that lost its
/// tunnel role do).
pub fn diff_cleanup(observed: &Observed) -> Vec<Op> {
    diff_state(None, &[], &[], observed)
}

/// What happens to raven0 in this pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkFate {
    /// Absent and not wanted.
    None,
    /// Kept (possibly changed in place): state on it survives.
    Kept,
    /// Created or re-created: it starts empty.
    Fresh,
    /// Deleted: everything on it goes with it.
    Deleted,
}

fn diff_state(
    vxlan: Option<&VxlanPlan>,
    routes: &[Route],
    rules: &[Rule],
    observed: &Observed,
) -> Vec<Op> {
    let mut ops = Vec::new();
    let raven0_index = observed.raven0.as_ref().map(|l| l.index);

    // Rules no longer planned.
    let wanted_rules: BTreeSet<&Rule> = rules.iter().collect();
    let mut present_rules = BTreeSet::new();
    for r in &observed.rules {
        let as_rule = Rule {
            priority: r.priority,
            selector: r.selector.clone(),
            table: r.table,
        };
        if !r.exotic && wanted_rules.contains(&as_rule) && present_rules.insert(as_rule.clone()) {
            continue;
        }
        ops.push(Op::DeleteRule(r.clone()));
    }

    // The link decides what survives on it.
    let (link_ops, fate, remote_change) = link_ops(vxlan, observed.raven0.as_ref());
    let flushed = |oif: Option<u32>| {
        matches!(fate, LinkFate::Fresh | LinkFate::Deleted) && oif.is_some() && oif == raven0_index
    };

    // Routes: key = (table, destination); ours are metric 0, TOS 0.
    let wanted_routes: BTreeMap<(u32, Ipv4Network), &Route> = routes
        .iter()
        .filter_map(|r| match r.destination {
            IpNetwork::V4(d) => Some(((r.table, d), r)),
            IpNetwork::V6(_) => None,
        })
        .collect();
    let mut present_routes: BTreeMap<(u32, Ipv4Network), &ObservedRoute> = BTreeMap::new();
    for r in &observed.routes {
        let key = (r.table, r.destination);
        if r.metric == 0 && r.tos == 0 && wanted_routes.contains_key(&key) {
            present_routes.insert(key, r);
        } else if !flushed(r.oif) {
            ops.push(Op::DeleteRoute(r.clone()));
        }
    }

    ops.extend(link_ops);

    if let Some(plan) = vxlan {
        // Address.
        let want = Ipv4Network::new(plan.address, plan.prefix_len)
            .expect("VxlanPlan prefix_len is VTEP_PREFIX_LEN (8)");
        let current: &[Ipv4Network] = if fate == LinkFate::Kept {
            &observed.addresses
        } else {
            &[]
        };
        for a in current.iter().filter(|a| **a != want) {
            ops.push(Op::DeleteAddress(*a));
        }
        if !current.contains(&want) {
            ops.push(Op::ReplaceAddress(want));
        }

        // FDB, as the kernel will have it once the link op is done.
        let mut fdb: Vec<FdbEntry> = if fate == LinkFate::Kept {
            observed.fdb.clone()
        } else {
            Vec::new()
        };
        if let Some(new_remote) = remote_change {
            let old = observed
                .raven0
                .as_ref()
                .and_then(|l| l.vxlan.as_ref())
                .and_then(|v| v.remote);
            if fate == LinkFate::Kept {
                fdb.retain(|e| !(e.mac == ZERO_MAC && e.dst == old));
            }
            if let Some(r) = new_remote {
                fdb.push(FdbEntry {
                    mac: ZERO_MAC,
                    dst: Some(r),
                    permanent: true,
                });
            }
        }
        let wanted_fdb: BTreeSet<(_, _)> = plan
            .peers
            .iter()
            .map(|p| (p.mac, Some(p.underlay)))
            .collect();
        let mut have_fdb = BTreeSet::new();
        let mut fdb_ops = Vec::new();
        for e in &fdb {
            let key = (e.mac, e.dst);
            if e.permanent && wanted_fdb.contains(&key) {
                have_fdb.insert(key);
            } else {
                fdb_ops.push(Op::DeleteFdb(*e));
            }
        }
        // Neighbours.
        let neighbours = if fate == LinkFate::Kept {
            observed.neighbours.as_slice()
        } else {
            &[]
        };
        let wanted_neigh: BTreeMap<Ipv4Addr, _> =
            plan.peers.iter().map(|p| (p.vtep, p.mac)).collect();
        let mut have_neigh = BTreeSet::new();
        for n in neighbours {
            match wanted_neigh.get(&n.ip) {
                Some(mac) if n.permanent && n.mac == Some(*mac) => {
                    have_neigh.insert(n.ip);
                }
                Some(_) => {} // replaced below
                None if n.permanent => fdb_ops.push(Op::DeleteNeighbour(n.ip)),
                None => {} // the kernel's own cache entry: not ours
            }
        }
        ops.extend(fdb_ops);
        for p in &plan.peers {
            if !have_fdb.contains(&(p.mac, Some(p.underlay))) {
                ops.push(Op::ReplaceFdb {
                    mac: p.mac,
                    dst: p.underlay,
                });
            }
        }
        for p in &plan.peers {
            if !have_neigh.contains(&p.vtep) {
                ops.push(Op::ReplaceNeighbour {
                    ip: p.vtep,
                    mac: p.mac,
                });
            }
        }
    }

    // Routes to add or fix.
    for (key, want) in &wanted_routes {
        let current = present_routes.get(key).filter(|r| !flushed(r.oif)).copied();
        if current.is_none_or(|c| !route_matches(want, c, observed, raven0_index, fate)) {
            ops.push(Op::ReplaceRoute((*want).clone()));
        }
    }

    // Rules to add.
    for r in rules {
        if !present_rules.contains(r) {
            ops.push(Op::AddRule(r.clone()));
        }
    }
    ops
}

/// The link ops, what becomes of raven0, and the remote the link op sets (`Some(new)` when the
/// link is created with or changed to a new remote, which moves the kernel's all-zero entry).
fn link_ops(
    plan: Option<&VxlanPlan>,
    current: Option<&ObservedLink>,
) -> (Vec<Op>, LinkFate, Option<Option<Ipv4Addr>>) {
    match (plan, current) {
        (None, None) => (Vec::new(), LinkFate::None, None),
        (None, Some(_)) => (
            vec![Op::DeleteLink(super::RAVEN0.to_owned())],
            LinkFate::Deleted,
            None,
        ),
        (Some(p), None) => (
            vec![Op::CreateLink(spec(p))],
            LinkFate::Fresh,
            Some(p.remote),
        ),
        (Some(p), Some(c)) if needs_recreate(p, c) => (
            vec![
                Op::DeleteLink(super::RAVEN0.to_owned()),
                Op::CreateLink(spec(p)),
            ],
            LinkFate::Fresh,
            Some(p.remote),
        ),
        (Some(p), Some(c)) => {
            let params = c.vxlan.as_ref().expect("needs_recreate covers non-vxlan");
            let change = LinkChange {
                mtu: (c.mtu != p.mtu).then_some(p.mtu),
                mac: (c.mac != Some(p.mac)).then_some(p.mac),
                remote: (params.remote != p.remote).then_some(p.remote),
                up: !c.up,
            };
            let remote = change.remote;
            if change.is_empty() {
                (Vec::new(), LinkFate::Kept, None)
            } else {
                (
                    vec![Op::SetLink(super::RAVEN0.to_owned(), change)],
                    LinkFate::Kept,
                    remote,
                )
            }
        }
    }
}

/// Parameters the kernel refuses to change on a live VXLAN device, or a device that is not
/// VXLAN at all.
fn needs_recreate(plan: &VxlanPlan, current: &ObservedLink) -> bool {
    let Some(v) = &current.vxlan else {
        return true;
    };
    current.kind.as_deref() != Some("vxlan")
        || v.vni != plan.vni
        || v.port != plan.port
        || v.local.is_some()
        || v.underlay.is_some()
        || v.learning
}

fn spec(p: &VxlanPlan) -> LinkSpec {
    LinkSpec {
        name: p.name.to_owned(),
        vni: p.vni,
        port: p.port,
        remote: p.remote,
        mtu: p.mtu,
        mac: p.mac,
    }
}

/// Whether an existing route is exactly the planned one.
fn route_matches(
    want: &Route,
    have: &ObservedRoute,
    observed: &Observed,
    raven0_index: Option<u32>,
    fate: LinkFate,
) -> bool {
    let (gateway, oif, onlink) = match &want.next_hop {
        NextHop::Vtep(v) => {
            if fate != LinkFate::Kept {
                return false;
            }
            (Some(*v), raven0_index, true)
        }
        NextHop::Device(d) => (None, observed.devices.get(d).copied(), false),
    };
    let source = match want.source {
        Some(IpAddr::V4(s)) => Some(s),
        Some(IpAddr::V6(_)) | None => None,
    };
    oif.is_some()
        && have.oif == oif
        && have.gateway == gateway
        && have.onlink == onlink
        && have.mtu == Some(want.mtu)
        && have.source == source
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::observed::{NeighbourEntry, ObservedRule, VxlanParams};
    use crate::plan::vxlan::VxlanPeer;
    use crate::plan::{PodRoutes, RAVEN0_TABLE, Role, Selector, TUNNEL_TABLE};

    const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const RAVEN0_IDX: u32 = 7;
    const WG_IDX: u32 = 9;

    fn net(s: &str) -> Ipv4Network {
        s.parse().expect("test prefix")
    }

    fn member_plan(gw: Ipv4Addr, mtu: u32, remotes: &[&str]) -> NodePlan {
        let peer = VxlanPeer::new("gw", gw, [0xaa, 0x0f]);
        let routes = remotes
            .iter()
            .map(|r| Route {
                table: RAVEN0_TABLE,
                destination: IpNetwork::V4(net(r)),
                next_hop: NextHop::Vtep(peer.vtep),
                mtu,
                source: Some(IpAddr::V4(ME)),
            })
            .collect();
        NodePlan {
            node: "me".into(),
            role: Role::Member {
                gateway: "g".into(),
                gateway_node: "gw".into(),
            },
            mtu,
            vxlan: Some(VxlanPlan::new(ME, [0xaa, 0x0f], mtu, Some(gw), vec![peer])),
            routes,
            rules: vec![Rule {
                priority: 9027,
                selector: Selector::All,
                table: RAVEN0_TABLE,
            }],
            tunnel: None,
            pod_routes: PodRoutes::new(Vec::new(), mtu),
            warnings: Vec::new(),
        }
    }

    fn gateway_plan(members: &[(Ipv4Addr, &str)], remotes: &[&str]) -> NodePlan {
        let mut routes = Vec::new();
        let mut peers = Vec::new();
        for (ip, subnet) in members {
            let p = VxlanPeer::new("m", *ip, [0xaa, 0x0f]);
            routes.push(Route {
                table: RAVEN0_TABLE,
                destination: IpNetwork::V4(net(subnet)),
                next_hop: NextHop::Vtep(p.vtep),
                mtu: 1420,
                source: None,
            });
            peers.push(p);
        }
        for r in remotes {
            routes.push(Route {
                table: TUNNEL_TABLE,
                destination: IpNetwork::V4(net(r)),
                next_hop: NextHop::Device("raven-wg0".into()),
                mtu: 1420,
                source: Some(IpAddr::V4(GW)),
            });
        }
        routes.sort();
        NodePlan {
            node: "gw".into(),
            role: Role::Gateway {
                gateway: "g".into(),
            },
            mtu: 1420,
            vxlan: Some(VxlanPlan::new(GW, [0xaa, 0x0f], 1420, None, peers)),
            routes,
            rules: vec![
                Rule {
                    priority: 9026,
                    selector: Selector::IncomingInterface("raven-wg0".into()),
                    table: RAVEN0_TABLE,
                },
                Rule {
                    priority: 9027,
                    selector: Selector::All,
                    table: TUNNEL_TABLE,
                },
            ],
            tunnel: None,
            pod_routes: PodRoutes::new(Vec::new(), 1420),
            warnings: Vec::new(),
        }
    }

    /// The kernel state right after applying `plan` on an empty node (what apply produces).
    fn converged(plan: &NodePlan) -> Observed {
        let mut o = Observed::default();
        o.devices.insert("raven-wg0".into(), WG_IDX);
        if let Some(v) = &plan.vxlan {
            o.raven0 = Some(ObservedLink {
                index: RAVEN0_IDX,
                kind: Some("vxlan".into()),
                vxlan: Some(VxlanParams {
                    vni: v.vni,
                    port: v.port,
                    remote: v.remote,
                    ..VxlanParams::default()
                }),
                mtu: v.mtu,
                mac: Some(v.mac),
                up: true,
            });
            o.addresses = vec![Ipv4Network::new(v.address, v.prefix_len).expect("valid")];
            for p in &v.peers {
                o.fdb.push(FdbEntry {
                    mac: p.mac,
                    dst: Some(p.underlay),
                    permanent: true,
                });
                o.neighbours.push(NeighbourEntry {
                    ip: p.vtep,
                    mac: Some(p.mac),
                    permanent: true,
                });
            }
        }
        for r in &plan.routes {
            let IpNetwork::V4(d) = r.destination else {
                continue;
            };
            let (gateway, oif, onlink) = match &r.next_hop {
                NextHop::Vtep(v) => (Some(*v), Some(RAVEN0_IDX), true),
                NextHop::Device(_) => (None, Some(WG_IDX), false),
            };
            o.routes.push(ObservedRoute {
                table: r.table,
                destination: d,
                gateway,
                oif,
                onlink,
                mtu: Some(r.mtu),
                source: r.source.and_then(|s| match s {
                    IpAddr::V4(s) => Some(s),
                    IpAddr::V6(_) => None,
                }),
                metric: 0,
                tos: 0,
            });
        }
        for r in &plan.rules {
            o.rules.push(ObservedRule {
                priority: r.priority,
                selector: r.selector.clone(),
                table: r.table,
                exotic: false,
            });
        }
        o
    }

    fn count(ops: &[Op], f: impl Fn(&Op) -> bool) -> usize {
        ops.iter().filter(|o| f(o)).count()
    }

    #[test]
    fn empty_node_member_creates_everything_once() {
        let plan = member_plan(GW, 1420, &["10.245.0.0/16", "10.246.0.0/16"]);
        let ops = diff(&plan, &Observed::default());
        // link, address, fdb, neighbour, the predicted all-zero FDB delete, 2 routes, 1 rule.
        assert_eq!(ops.len(), 8, "{ops:#?}");
        assert!(matches!(ops[0], Op::CreateLink(ref s) if s.remote == Some(GW) && s.mtu == 1420));
        assert_eq!(ops[1], Op::ReplaceAddress(net("240.0.0.2/8")));
        assert_eq!(
            ops[2],
            Op::DeleteFdb(FdbEntry {
                mac: ZERO_MAC,
                dst: Some(GW),
                permanent: true
            })
        );
        assert!(matches!(ops.last(), Some(Op::AddRule(_))));
    }

    #[test]
    fn unchanged_plans_give_zero_ops() {
        for plan in [
            member_plan(GW, 1420, &["10.245.0.0/16"]),
            gateway_plan(
                &[
                    (ME, "10.244.1.0/24"),
                    (Ipv4Addr::new(10, 0, 0, 3), "10.244.2.0/24"),
                ],
                &["10.245.0.0/16", "10.246.0.0/16"],
            ),
        ] {
            let ops = diff(&plan, &converged(&plan));
            assert!(ops.is_empty(), "{ops:#?}");
        }
    }

    #[test]
    fn mtu_change_is_in_place() {
        let old = member_plan(GW, 1420, &["10.245.0.0/16", "10.246.0.0/16"]);
        let new = member_plan(GW, 1400, &["10.245.0.0/16", "10.246.0.0/16"]);
        let ops = diff(&new, &converged(&old));
        assert_eq!(
            count(&ops, |o| matches!(o, Op::DeleteLink(_) | Op::CreateLink(_))),
            0
        );
        assert_eq!(
            ops[0],
            Op::SetLink(
                "raven0".into(),
                LinkChange {
                    mtu: Some(1400),
                    ..LinkChange::default()
                }
            )
        );
        // The route MTUs follow; nothing else.
        assert_eq!(count(&ops, |o| matches!(o, Op::ReplaceRoute(_))), 2);
        assert_eq!(ops.len(), 3, "{ops:#?}");
    }

    #[test]
    fn gateway_move_on_member_is_minimal() {
        let new_gw = Ipv4Addr::new(10, 0, 0, 3);
        let old = member_plan(GW, 1420, &["10.245.0.0/16"]);
        let new = member_plan(new_gw, 1420, &["10.245.0.0/16"]);
        let ops = diff(&new, &converged(&old));
        let old_peer = VxlanPeer::new("gw", GW, [0xaa, 0x0f]);
        let new_peer = VxlanPeer::new("gw", new_gw, [0xaa, 0x0f]);
        assert_eq!(
            ops,
            vec![
                Op::SetLink(
                    "raven0".into(),
                    LinkChange {
                        remote: Some(Some(new_gw)),
                        ..LinkChange::default()
                    }
                ),
                Op::DeleteFdb(FdbEntry {
                    mac: old_peer.mac,
                    dst: Some(GW),
                    permanent: true
                }),
                Op::DeleteFdb(FdbEntry {
                    mac: ZERO_MAC,
                    dst: Some(new_gw),
                    permanent: true
                }),
                Op::DeleteNeighbour(old_peer.vtep),
                Op::ReplaceFdb {
                    mac: new_peer.mac,
                    dst: new_gw
                },
                Op::ReplaceNeighbour {
                    ip: new_peer.vtep,
                    mac: new_peer.mac
                },
                Op::ReplaceRoute(new.routes[0].clone()),
            ]
        );
    }

    #[test]
    fn wrong_parameters_recreate_and_readd_everything_on_the_link() {
        let plan = member_plan(GW, 1420, &["10.245.0.0/16"]);
        for (what, tweak) in [
            (
                "vni",
                (|p: &mut VxlanParams| p.vni = 1) as fn(&mut VxlanParams),
            ),
            ("port", |p| p.port = 8472),
            ("local", |p| p.local = Some(ME)),
            ("dev", |p| p.underlay = Some(2)),
            ("learning", |p| p.learning = true),
        ] {
            let mut o = converged(&plan);
            tweak(
                o.raven0
                    .as_mut()
                    .and_then(|l| l.vxlan.as_mut())
                    .expect("vxlan"),
            );
            let ops = diff(&plan, &o);
            assert_eq!(ops[0], Op::DeleteLink("raven0".into()), "{what}");
            assert!(matches!(ops[1], Op::CreateLink(_)), "{what}");
            // Address, FDB (+ all-zero delete), neighbour, route re-added; the rule survives.
            assert_eq!(ops.len(), 7, "{what}: {ops:#?}");
            assert_eq!(count(&ops, |o| matches!(o, Op::AddRule(_))), 0, "{what}");
        }
        let mut o = converged(&plan);
        if let Some(l) = o.raven0.as_mut() {
            l.kind = Some("dummy".into());
            l.vxlan = None;
        }
        assert_eq!(diff(&plan, &o)[0], Op::DeleteLink("raven0".into()));
    }

    #[test]
    fn link_down_or_wrong_mac_is_fixed_in_place() {
        let plan = member_plan(GW, 1420, &[]);
        let mut o = converged(&plan);
        if let Some(l) = o.raven0.as_mut() {
            l.up = false;
            l.mac = Some(crate::plan::MacAddr([2, 0, 0, 0, 0, 1]));
        }
        let ops = diff(&plan, &o);
        assert_eq!(ops.len(), 1, "{ops:#?}");
        assert!(matches!(&ops[0], Op::SetLink(_, c) if c.up && c.mac.is_some() && c.mtu.is_none()));
    }

    #[test]
    fn inactive_plan_and_cleanup_remove_only_ours_without_redundant_deletes() {
        let plan = gateway_plan(&[(ME, "10.244.1.0/24")], &["10.245.0.0/16"]);
        let o = converged(&plan);
        let ops = diff_cleanup(&o);
        // Two rules, the 9028 route (the 9027 one goes with raven0), the link.
        assert_eq!(ops.len(), 4, "{ops:#?}");
        assert_eq!(count(&ops, |o| matches!(o, Op::DeleteRule(_))), 2);
        assert_eq!(
            count(
                &ops,
                |o| matches!(o, Op::DeleteRoute(r) if r.table == TUNNEL_TABLE)
            ),
            1
        );
        assert_eq!(ops[3], Op::DeleteLink("raven0".into()));
        let mut inactive = plan.clone();
        inactive.vxlan = None;
        inactive.routes.clear();
        inactive.rules.clear();
        assert_eq!(diff(&inactive, &o), ops);
        assert!(diff_cleanup(&Observed::default()).is_empty());
    }

    #[test]
    fn gateway_member_changes_touch_only_that_member() {
        let m3 = Ipv4Addr::new(10, 0, 0, 3);
        let old = gateway_plan(&[(ME, "10.244.1.0/24")], &["10.245.0.0/16"]);
        let new = gateway_plan(
            &[(ME, "10.244.1.0/24"), (m3, "10.244.2.0/24")],
            &["10.245.0.0/16"],
        );
        let ops = diff(&new, &converged(&old));
        assert_eq!(ops.len(), 3, "{ops:#?}"); // fdb, neigh, route
        let back = diff(&old, &converged(&new));
        assert_eq!(back.len(), 3, "{back:#?}"); // fdb del, neigh del, route del
        assert!(back.iter().all(|o| matches!(
            o,
            Op::DeleteFdb(_) | Op::DeleteNeighbour(_) | Op::DeleteRoute(_)
        )));
    }

    #[test]
    fn route_drift_is_replaced_with_the_plan() {
        let plan = gateway_plan(&[], &["10.245.0.0/16", "10.246.0.0/16"]);
        let mut o = converged(&plan);
        o.routes[0].mtu = Some(1500);
        o.routes[1].oif = Some(99);
        // A stale route with a non-zero metric at a planned destination, and an unplanned one.
        let mut stale = o.routes[0].clone();
        stale.metric = 5;
        o.routes.push(stale.clone());
        let mut gone = o.routes[0].clone();
        gone.destination = net("10.99.0.0/16");
        o.routes.push(gone.clone());
        let ops = diff(&plan, &o);
        assert_eq!(
            ops,
            vec![
                Op::DeleteRoute(stale),
                Op::DeleteRoute(gone),
                Op::ReplaceRoute(plan.routes[0].clone()),
                Op::ReplaceRoute(plan.routes[1].clone()),
            ]
        );
    }

    #[test]
    fn missing_tunnel_device_still_plans_the_routes() {
        let plan = gateway_plan(&[], &["10.245.0.0/16"]);
        let mut o = converged(&plan);
        o.devices.clear();
        let ops = diff(&plan, &o);
        assert_eq!(ops, vec![Op::ReplaceRoute(plan.routes[0].clone())]);
    }

    #[test]
    fn rules_duplicates_and_exotic_ones_are_deleted() {
        let plan = member_plan(GW, 1420, &[]);
        let mut o = converged(&plan);
        let dup = o.rules[0].clone();
        o.rules.push(dup.clone());
        let mut exotic = dup.clone();
        exotic.exotic = true;
        o.rules.push(exotic.clone());
        let mut old_table = dup.clone();
        old_table.table = TUNNEL_TABLE;
        o.rules.push(old_table.clone());
        let ops = diff(&plan, &o);
        assert_eq!(
            ops,
            vec![
                Op::DeleteRule(dup),
                Op::DeleteRule(exotic),
                Op::DeleteRule(old_table)
            ]
        );
    }

    #[test]
    fn foreign_neighbour_cache_is_left_alone_but_planned_peers_are_fixed() {
        let plan = member_plan(GW, 1420, &[]);
        let mut o = converged(&plan);
        o.neighbours.push(NeighbourEntry {
            ip: Ipv4Addr::new(240, 0, 0, 9),
            mac: None,
            permanent: false,
        });
        assert!(diff(&plan, &o).is_empty());
        o.neighbours[0].permanent = false;
        o.neighbours.push(NeighbourEntry {
            ip: Ipv4Addr::new(240, 0, 0, 8),
            mac: None,
            permanent: true,
        });
        let ops = diff(&plan, &o);
        assert_eq!(ops.len(), 2, "{ops:#?}");
        assert_eq!(ops[0], Op::DeleteNeighbour(Ipv4Addr::new(240, 0, 0, 8)));
        assert!(
            matches!(ops[1], Op::ReplaceNeighbour { ip, .. } if ip == Ipv4Addr::new(240, 0, 0, 1))
        );
    }

    #[test]
    fn member_becoming_gateway_drops_remote_in_place() {
        let member = member_plan(GW, 1420, &["10.245.0.0/16"]);
        let gw = gateway_plan(&[(GW, "10.244.0.0/24")], &["10.245.0.0/16"]);
        let mut o = converged(&member);
        // The all-zero entry is normally deleted; if it is still there it goes with the remote.
        o.fdb.push(FdbEntry {
            mac: ZERO_MAC,
            dst: Some(GW),
            permanent: true,
        });
        let mut gw_me = gw.clone();
        // Same node identity as the member plan (address 240.0.0.2).
        gw_me.vxlan = Some(VxlanPlan::new(
            ME,
            [0xaa, 0x0f],
            1420,
            None,
            gw.vxlan
                .as_ref()
                .map(|v| v.peers.clone())
                .unwrap_or_default(),
        ));
        let ops = diff(&gw_me, &o);
        assert!(
            matches!(&ops[2], Op::SetLink(_, c) if c.remote == Some(None)),
            "{ops:#?}"
        );
        assert_eq!(
            count(&ops, |o| matches!(o, Op::DeleteFdb(e) if e.mac == ZERO_MAC)),
            0
        );
    }
}
