//! The data plane on a real kernel: each test gets a fresh network namespace, builds real
//! NodePlans with the planner from Gateway fixtures, reconciles through netlink and checks the
//! result with `ip -j -d` and `bridge -j` (never through the code under test).
//!
//! Must run as root; otherwise every test fails and says so.

#[path = "common/mod.rs"]
mod common;
mod dataplane_support;

use common::Gw;
use dataplane_support::{Ns, s};
use raven_node::dataplane::{self, Dataplane, Op, Report};
use raven_node::plan::{NodePlan, Options, Role, TunnelDriver, plan};
use serde_json::Value;

const KEY_CLOUD: &str = "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=";
const KEY_EDGE: &str = "YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmI=";

/// Domain `cloud` (three nodes, `active` is the gateway) and NATed domain `edge`.
fn gateways(active: &str) -> Vec<raven_api::gateway::v1beta1::Gateway> {
    common::build(&[
        Gw::new("gw-cloud")
            .node("cloud-1", "10.0.0.1", &["10.244.0.0/24"])
            .node("cloud-2", "10.0.0.2", &["10.244.1.0/24"])
            .node("cloud-3", "10.0.0.3", &["10.244.4.0/24"])
            .active(active, "1.2.3.4")
            .key(KEY_CLOUD),
        Gw::new("gw-edge")
            .node("edge-1", "192.168.1.10", &["10.244.2.0/24"])
            .node(
                "edge-2",
                "192.168.1.11",
                &["10.244.3.0/24", "10.250.0.0/16"],
            )
            .active("edge-1", "5.6.7.8")
            .nat()
            .key(KEY_EDGE),
    ])
}

fn options(underlay_mtu: u32) -> Options {
    Options {
        driver: TunnelDriver::WireGuard,
        underlay_mtu,
        ..Options::default()
    }
}

fn node_plan(active: &str, node: &str, underlay_mtu: u32) -> NodePlan {
    plan(&gateways(active), node, &options(underlay_mtu)).expect("valid options")
}

/// A namespace set up like node `node`: its private IP on an underlay dummy (route sources
/// must be local addresses) and, when `tunnel`, the tunnel driver's device.
fn node_ns(tag: &str, private_ip: &str, tunnel: bool) -> Ns {
    let ns = Ns::new(tag);
    // This kernel has no dummy driver: a veth pair stands in for the underlay NIC.
    ns.ip(&[
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0-peer",
    ]);
    ns.ip(&["addr", "add", &format!("{private_ip}/24"), "dev", "eth0"]);
    ns.ip(&["link", "set", "eth0", "up"]);
    if tunnel {
        add_tunnel_device(&ns);
    }
    ns
}

fn add_tunnel_device(ns: &Ns) {
    // The userspace WireGuard driver's device is a TUN device.
    ns.ip(&["tuntap", "add", "mode", "tun", "name", "raven-wg0"]);
    ns.ip(&["link", "set", "raven-wg0", "mtu", "1420", "up"]);
}

/// What a reconcile of `p` would still do (observe + diff, nothing applied).
async fn pending(dp: &Dataplane, p: &NodePlan) -> Vec<Op> {
    let observed = dp.observe(p).await.expect("observe");
    dataplane::diff(p, &observed)
}

/// Reconciles `p` and asserts it converged: no error, nothing left to do (the leftover ops are
/// in the message), and a second reconcile sends zero ops. Returns the first report.
fn converge(ns: &Ns, p: &NodePlan) -> Report {
    let p = p.clone();
    let (first, left, second) = ns.block_on(move || async move {
        let dp = Dataplane::connect().expect("netlink socket");
        let r = dp.reconcile(&p).await;
        let left = pending(&dp, &p).await;
        (r, left, dp.reconcile(&p).await)
    });
    assert_ok(&first, "reconcile");
    assert!(left.is_empty(), "left after a reconcile: {left:#?}");
    assert_ok(&second, "second reconcile");
    assert_eq!(second.ops, 0, "a second reconcile must send nothing");
    first
}

fn assert_ok(r: &Report, what: &str) {
    assert!(r.is_ok(), "{what}: {r:#?}");
}

fn ifindex(ns: &Ns, dev: &str) -> u64 {
    ns.link(dev).expect("link exists")["ifindex"]
        .as_u64()
        .expect("ifindex")
}

fn route_summary(ns: &Ns, table: &str) -> Vec<String> {
    let mut v: Vec<String> = ns
        .routes(table)
        .iter()
        .map(|r| {
            let mtu = r["metrics"]
                .as_array()
                .and_then(|m| m.iter().find_map(|x| x["mtu"].as_u64()))
                .unwrap_or(0);
            let onlink = r["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "onlink"));
            format!(
                "{} via {} dev {} src {} mtu {} proto {}{}",
                s(r, "dst"),
                s(r, "gateway"),
                s(r, "dev"),
                s(r, "prefsrc"),
                mtu,
                proto(r),
                if onlink { " onlink" } else { "" }
            )
        })
        .collect();
    v.sort();
    v
}

fn proto(v: &Value) -> String {
    match &v["protocol"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn rule_summary(ns: &Ns) -> Vec<String> {
    let mut v: Vec<String> = ns
        .rules()
        .iter()
        .filter(|r| r["priority"].as_u64().is_some_and(|p| p > 0 && p < 32766))
        .map(|r| {
            format!(
                "{}: from {}{} lookup {} proto {}",
                r["priority"],
                s(r, "src"),
                r["iif"]
                    .as_str()
                    .map(|i| format!(" iif {i}"))
                    .unwrap_or_default(),
                match &r["table"] {
                    Value::String(t) => t.clone(),
                    other => other.to_string(),
                },
                proto(r)
            )
        })
        .collect();
    v.sort();
    v
}

fn fdb_summary(ns: &Ns) -> Vec<String> {
    let mut v: Vec<String> = ns
        .fdb("raven0")
        .iter()
        .map(|e| {
            let flags: Vec<&str> = e["flags"]
                .as_array()
                .map(|f| f.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!(
                "{} dst {} {} {}",
                s(e, "mac"),
                s(e, "dst"),
                flags.join(","),
                s(e, "state")
            )
        })
        .collect();
    v.sort();
    v
}

fn neigh_summary(ns: &Ns) -> Vec<String> {
    let mut v: Vec<String> = ns
        .ip_json(&["-4", "neigh", "show", "dev", "raven0"])
        .iter()
        .map(|n| {
            let state: Vec<&str> = n["state"]
                .as_array()
                .map(|f| f.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!(
                "{} lladdr {} {}",
                s(n, "dst"),
                s(n, "lladdr"),
                state.join(",")
            )
        })
        .collect();
    v.sort();
    v
}

fn strs(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

#[test]
fn member_converges_with_upstream_addressing_and_second_pass_is_noop() {
    let ns = node_ns("member", "10.0.0.2", false);
    let p = node_plan("cloud-1", "cloud-2", 1500);
    assert!(matches!(p.role, Role::Member { .. }), "{:?}", p.role);
    let first = converge(&ns, &p);
    // link, address, FDB, predicted all-zero FDB delete, neighbour, 2 routes, rule.
    assert_eq!(first.ops, 8, "{first:#?}");

    let link = ns.link("raven0").expect("raven0 exists");
    let info = &link["linkinfo"]["info_data"];
    assert_eq!(link["linkinfo"]["info_kind"], "vxlan");
    assert_eq!(info["id"], 200);
    assert_eq!(info["port"], 4472);
    assert_eq!(info["remote"], "10.0.0.1");
    assert_eq!(info["learning"], false);
    assert_eq!(link["mtu"], 1420);
    assert_eq!(link["address"], "aa:0f:f0:00:00:02");
    assert!(
        link["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .any(|f| f == "UP"),
        "{link}"
    );
    let addrs = ns.ip_json(&["-4", "addr", "show", "dev", "raven0"]);
    let local: Vec<String> = addrs[0]["addr_info"]
        .as_array()
        .expect("addr_info")
        .iter()
        .map(|a| format!("{}/{}", s(a, "local"), a["prefixlen"]))
        .collect();
    assert_eq!(local, ["240.0.0.2/8"]);
    // Only the gateway's entry: the kernel's all-zero default entry is removed.
    assert_eq!(
        fdb_summary(&ns),
        strs(&["aa:0f:f0:00:00:01 dst 10.0.0.1 self permanent"])
    );
    assert_eq!(
        neigh_summary(&ns),
        strs(&["240.0.0.1 lladdr aa:0f:f0:00:00:01 PERMANENT"])
    );
    assert_eq!(
        route_summary(&ns, "9027"),
        strs(&[
            "10.244.2.0/23 via 240.0.0.1 dev raven0 src 10.0.0.2 mtu 1420 proto 82 onlink",
            "10.250.0.0/16 via 240.0.0.1 dev raven0 src 10.0.0.2 mtu 1420 proto 82 onlink",
        ])
    );
    assert_eq!(
        rule_summary(&ns),
        strs(&["9027: from all lookup 9027 proto 82"])
    );
}

#[test]
fn gateway_routes_into_the_tunnel_device_and_return_routes_over_raven0() {
    let ns = node_ns("gateway", "10.0.0.1", true);
    let p = node_plan("cloud-1", "cloud-1", 1500);
    assert!(matches!(p.role, Role::Gateway { .. }), "{:?}", p.role);
    converge(&ns, &p);
    let link = ns.link("raven0").expect("raven0");
    assert_eq!(link["linkinfo"]["info_data"]["remote"], Value::Null);
    assert_eq!(
        fdb_summary(&ns),
        strs(&[
            "aa:0f:f0:00:00:02 dst 10.0.0.2 self permanent",
            "aa:0f:f0:00:00:03 dst 10.0.0.3 self permanent",
        ])
    );
    assert_eq!(
        neigh_summary(&ns),
        strs(&[
            "240.0.0.2 lladdr aa:0f:f0:00:00:02 PERMANENT",
            "240.0.0.3 lladdr aa:0f:f0:00:00:03 PERMANENT",
        ])
    );
    assert_eq!(
        route_summary(&ns, "9027"),
        strs(&[
            "10.244.1.0/24 via 240.0.0.2 dev raven0 src  mtu 1420 proto 82 onlink",
            "10.244.4.0/24 via 240.0.0.3 dev raven0 src  mtu 1420 proto 82 onlink",
        ])
    );
    assert_eq!(
        route_summary(&ns, "9028"),
        strs(&[
            "10.244.2.0/23 via  dev raven-wg0 src 10.0.0.1 mtu 1420 proto 82",
            "10.250.0.0/16 via  dev raven-wg0 src 10.0.0.1 mtu 1420 proto 82",
        ])
    );
    assert_eq!(
        rule_summary(&ns),
        strs(&[
            "9026: from all iif raven-wg0 lookup 9027 proto 82",
            "9027: from all lookup 9028 proto 82",
        ])
    );
}

#[test]
fn missing_tunnel_device_fails_only_its_routes_then_converges_when_it_appears() {
    let ns = node_ns("notunnel", "10.0.0.1", false);
    let p = node_plan("cloud-1", "cloud-1", 1500);
    let pc = p.clone();
    let r = ns.block_on(move || async move {
        let dp = Dataplane::connect().expect("netlink socket");
        dp.reconcile(&pc).await
    });
    assert_eq!(r.errors.len(), 2, "{r:#?}");
    for e in &r.errors {
        assert!(
            matches!(&e.op, Op::ReplaceRoute(route) if route.table == 9028),
            "{e}"
        );
        assert!(
            e.error.to_string().contains("raven-wg0 does not exist"),
            "{e}"
        );
    }
    // Everything else is in place.
    assert_eq!(route_summary(&ns, "9027").len(), 2);
    assert_eq!(rule_summary(&ns).len(), 2);
    assert_eq!(fdb_summary(&ns).len(), 2);
    add_tunnel_device(&ns);
    let r = converge(&ns, &p);
    assert_eq!(r.ops, 2, "only the two tunnel routes: {r:#?}");
    assert_eq!(route_summary(&ns, "9028").len(), 2);
}

#[test]
fn solo_node_has_tunnel_routes_and_no_raven0() {
    let ns = node_ns("solo", "192.168.1.10", true);
    let gws = common::build(&[
        Gw::new("gw-cloud")
            .node("cloud-1", "10.0.0.1", &["10.244.0.0/24"])
            .active("cloud-1", "1.2.3.4")
            .key(KEY_CLOUD),
        Gw::new("gw-solo")
            .node("solo-1", "192.168.1.10", &["10.244.2.0/24"])
            .active("solo-1", "5.6.7.8")
            .nat()
            .key(KEY_EDGE),
    ]);
    let p = plan(&gws, "solo-1", &options(1500)).expect("plan");
    assert!(matches!(p.role, Role::Solo { .. }), "{:?}", p.role);
    converge(&ns, &p);
    assert!(ns.link("raven0").is_none());
    assert_eq!(
        route_summary(&ns, "9028"),
        strs(&["10.244.0.0/24 via  dev raven-wg0 src 192.168.1.10 mtu 1420 proto 82"])
    );
    assert_eq!(
        rule_summary(&ns),
        strs(&["9027: from all lookup 9028 proto 82"])
    );
}

#[test]
fn mtu_change_is_applied_in_place() {
    let ns = node_ns("mtu", "10.0.0.2", false);
    let before = node_plan("cloud-1", "cloud-2", 1500);
    let after = node_plan("cloud-1", "cloud-2", 1400);
    assert_eq!(after.mtu, 1320);
    converge(&ns, &before);
    let index = ifindex(&ns, "raven0");
    let r = converge(&ns, &after);
    // `ip link set mtu` plus the MTU of the two routes; no re-create.
    assert_eq!(r.ops, 3, "{r:#?}");
    assert_eq!(
        ifindex(&ns, "raven0"),
        index,
        "raven0 must not be re-created"
    );
    assert_eq!(ns.link("raven0").expect("raven0")["mtu"], 1320);
    assert!(
        route_summary(&ns, "9027")
            .iter()
            .all(|r| r.contains("mtu 1320")),
        "{:?}",
        route_summary(&ns, "9027")
    );
    // FDB and neighbours survived (a re-create would have flushed and re-added them).
    assert_eq!(fdb_summary(&ns).len(), 1);
    assert_eq!(neigh_summary(&ns).len(), 1);
}

#[test]
fn gateway_move_changes_only_what_depends_on_the_gateway() {
    let member = node_ns("move", "10.0.0.2", false);
    let before = node_plan("cloud-1", "cloud-2", 1500);
    let after = node_plan("cloud-3", "cloud-2", 1500);
    converge(&member, &before);
    let index = ifindex(&member, "raven0");
    let r = converge(&member, &after);
    // remote (in place), old FDB + all-zero FDB for the new remote + old neighbour deleted,
    // new FDB + neighbour, the two routes re-pointed.
    assert_eq!(r.ops, 8, "{r:#?}");
    assert_eq!(ifindex(&member, "raven0"), index);
    assert_eq!(
        member.link("raven0").expect("raven0")["linkinfo"]["info_data"]["remote"],
        "10.0.0.3"
    );
    assert_eq!(
        fdb_summary(&member),
        strs(&["aa:0f:f0:00:00:03 dst 10.0.0.3 self permanent"])
    );
    assert_eq!(
        neigh_summary(&member),
        strs(&["240.0.0.3 lladdr aa:0f:f0:00:00:03 PERMANENT"])
    );
    assert!(
        route_summary(&member, "9027")
            .iter()
            .all(|r| r.contains("via 240.0.0.3"))
    );

    // The old gateway becomes a member: raven0 gains a remote in place, routes move tables.
    let old_gw = node_ns("oldgw", "10.0.0.1", true);
    converge(&old_gw, &node_plan("cloud-1", "cloud-1", 1500));
    let index = ifindex(&old_gw, "raven0");
    let demoted = node_plan("cloud-3", "cloud-1", 1500);
    assert!(matches!(demoted.role, Role::Member { .. }));
    converge(&old_gw, &demoted);
    assert_eq!(ifindex(&old_gw, "raven0"), index);
    assert!(route_summary(&old_gw, "9028").is_empty());
    assert_eq!(
        rule_summary(&old_gw),
        strs(&["9027: from all lookup 9027 proto 82"])
    );
    assert_eq!(
        fdb_summary(&old_gw),
        strs(&["aa:0f:f0:00:00:03 dst 10.0.0.3 self permanent"])
    );
}

/// Foreign state a node may carry: routes in our table and in main, rules at and around our
/// priorities, another VXLAN device with its FDB.
fn seed_foreign(ns: &Ns) {
    ns.ip(&[
        "route",
        "add",
        "10.99.0.0/16",
        "dev",
        "eth0",
        "table",
        "9027",
    ]);
    ns.ip(&[
        "route",
        "add",
        "10.98.0.0/16",
        "dev",
        "eth0",
        "table",
        "9028",
        "proto",
        "static",
    ]);
    ns.ip(&["route", "add", "10.97.0.0/16", "dev", "eth0"]);
    ns.ip(&[
        "rule",
        "add",
        "pref",
        "9027",
        "from",
        "10.1.0.0/16",
        "lookup",
        "100",
    ]);
    ns.ip(&["rule", "add", "pref", "9026", "lookup", "9027"]);
    ns.ip(&[
        "rule", "add", "pref", "500", "fwmark", "0x40", "lookup", "9027",
    ]);
    ns.ip(&[
        "link",
        "add",
        "vx-foreign",
        "type",
        "vxlan",
        "id",
        "42",
        "dstport",
        "4789",
        "nolearning",
    ]);
    ns.ip(&["link", "set", "vx-foreign", "up"]);
    run_bridge(
        ns,
        &[
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            "vx-foreign",
            "dst",
            "10.0.0.9",
        ],
    );
}

fn run_bridge(ns: &Ns, args: &[&str]) {
    let mut argv = vec!["bridge", "-n", ns.name.as_str()];
    argv.extend_from_slice(args);
    dataplane_support::run(&argv);
}

/// Everything that is not ours, as the kernel reports it.
fn foreign_snapshot(ns: &Ns) -> Vec<String> {
    let mut v = Vec::new();
    for t in ["9027", "9028", "main"] {
        v.extend(
            route_summary(ns, t)
                .into_iter()
                // raven0's connected route is the kernel's consequence of our address.
                .filter(|r| !r.contains("proto 82") && !r.contains("dev raven0"))
                .map(|r| format!("{t}: {r}")),
        );
    }
    v.extend(
        rule_summary(ns)
            .into_iter()
            .filter(|r| !r.contains("proto 82")),
    );
    let full_rules: Vec<Value> = ns.rules();
    v.extend(
        full_rules
            .iter()
            .filter(|r| r["protocol"].as_str() != Some("82") && r["protocol"] != 82)
            .map(Value::to_string),
    );
    let link = ns.link("vx-foreign").expect("foreign vxlan survives");
    v.push(link["linkinfo"].to_string());
    v.extend(fdb_of(ns, "vx-foreign"));
    v
}

fn fdb_of(ns: &Ns, dev: &str) -> Vec<String> {
    ns.fdb(dev).iter().map(Value::to_string).collect()
}

#[test]
fn cleanup_removes_ours_and_nothing_else() {
    let ns = node_ns("cleanup", "10.0.0.1", true);
    seed_foreign(&ns);
    let foreign = foreign_snapshot(&ns);
    assert!(foreign.len() >= 8, "seeding worked: {foreign:#?}");
    let p = node_plan("cloud-1", "cloud-1", 1500);
    converge(&ns, &p);
    // Our reconcile did not touch foreign state either.
    assert_eq!(foreign_snapshot(&ns), foreign);
    let (r, again) = ns.block_on(|| async {
        let dp = Dataplane::connect().expect("netlink socket");
        (dp.cleanup().await, dp.cleanup().await)
    });
    assert_ok(&r, "cleanup");
    // 2 rules, 2 tunnel routes, raven0 (its routes, FDB and neighbours go with it).
    assert_eq!(r.ops, 5, "{r:#?}");
    assert_ok(&again, "second cleanup");
    assert_eq!(again.ops, 0);
    assert!(ns.link("raven0").is_none());
    assert!(
        ns.link("raven-wg0").is_some(),
        "the tunnel device is the driver's"
    );
    for t in ["9027", "9028"] {
        assert!(
            route_summary(&ns, t)
                .iter()
                .all(|r| !r.contains("proto 82")),
            "{:?}",
            route_summary(&ns, t)
        );
    }
    assert!(rule_summary(&ns).iter().all(|r| !r.contains("proto 82")));
    assert_eq!(foreign_snapshot(&ns), foreign);
}

#[test]
fn unmanaged_and_inactive_plans_remove_everything_like_cleanup() {
    let ns = node_ns("inactive", "10.0.0.2", false);
    seed_foreign(&ns);
    let foreign = foreign_snapshot(&ns);
    converge(&ns, &node_plan("cloud-1", "cloud-2", 1500));
    let unmanaged = plan(&gateways("cloud-1"), "not-listed", &options(1500)).expect("plan");
    assert_eq!(unmanaged.role, Role::Unmanaged);
    let r = converge(&ns, &unmanaged);
    assert_eq!(r.ops, 2, "rule + raven0: {r:#?}");
    assert!(ns.link("raven0").is_none());
    assert!(
        route_summary(&ns, "9027")
            .iter()
            .all(|r| !r.contains("proto 82"))
    );
    assert_eq!(foreign_snapshot(&ns), foreign);

    // Tunnel disabled on the node's Gateway (Replicas 0): inactive, same result.
    converge(&ns, &node_plan("cloud-1", "cloud-2", 1500));
    let gws = common::build(&[Gw::new("gw-cloud")
        .node("cloud-1", "10.0.0.1", &["10.244.0.0/24"])
        .node("cloud-2", "10.0.0.2", &["10.244.1.0/24"])
        .active("cloud-1", "1.2.3.4")
        .replicas(0)]);
    let inactive = plan(&gws, "cloud-2", &options(1500)).expect("plan");
    assert!(
        matches!(inactive.role, Role::Inactive { .. }),
        "{:?}",
        inactive.role
    );
    let r = converge(&ns, &inactive);
    assert_eq!(r.ops, 2, "rule + raven0: {r:#?}");
    assert!(ns.link("raven0").is_none());
    assert!(rule_summary(&ns).iter().all(|r| !r.contains("proto 82")));
    assert_eq!(foreign_snapshot(&ns), foreign);
}

#[test]
fn preexisting_raven0_with_wrong_parameters_is_replaced_not_eexist() {
    for (what, args) in [
        (
            "vni and port",
            vec!["type", "vxlan", "id", "1", "dstport", "8472", "nolearning"],
        ),
        (
            "learning and local",
            vec![
                "type", "vxlan", "id", "200", "dstport", "4472", "local", "10.0.0.2",
            ],
        ),
        ("not vxlan", vec!["type", "bridge"]),
    ] {
        let ns = node_ns("wrong", "10.0.0.2", false);
        let mut argv = vec!["link", "add", "raven0"];
        argv.extend(args);
        ns.ip(&argv);
        let r = converge(&ns, &node_plan("cloud-1", "cloud-2", 1500));
        assert!(
            matches!(r.ops, 9),
            "{what}: delete + the 8 ops of a fresh member: {r:#?}"
        );
        let link = ns.link("raven0").expect("raven0");
        assert_eq!(link["linkinfo"]["info_kind"], "vxlan", "{what}");
        assert_eq!(link["linkinfo"]["info_data"]["id"], 200, "{what}");
        assert_eq!(link["linkinfo"]["info_data"]["port"], 4472, "{what}");
        assert_eq!(link["linkinfo"]["info_data"]["learning"], false, "{what}");
        assert_eq!(
            link["linkinfo"]["info_data"]["local"],
            Value::Null,
            "{what}"
        );
    }
}

#[test]
fn correct_preexisting_raven0_is_adopted_without_recreate() {
    // What a restart (or an upstream agent before us) leaves: the right link, nothing else.
    let ns = node_ns("adopt", "10.0.0.2", false);
    ns.ip(&[
        "link",
        "add",
        "raven0",
        "address",
        "aa:0f:f0:00:00:02",
        "mtu",
        "1420",
        "type",
        "vxlan",
        "id",
        "200",
        "dstport",
        "4472",
        "remote",
        "10.0.0.1",
        "nolearning",
    ]);
    ns.ip(&["link", "set", "raven0", "up"]);
    let index = ifindex(&ns, "raven0");
    let r = converge(&ns, &node_plan("cloud-1", "cloud-2", 1500));
    // address, all-zero FDB delete, FDB, neighbour, 2 routes, rule.
    assert_eq!(r.ops, 7, "{r:#?}");
    assert_eq!(ifindex(&ns, "raven0"), index);
}

#[test]
fn killed_mid_apply_converges_on_the_next_reconcile() {
    let ns = node_ns("killed", "10.0.0.1", true);
    let p = node_plan("cloud-1", "cloud-1", 1500);
    let pc = p.clone();
    let (total, applied) = ns.block_on(move || async move {
        let dp = Dataplane::connect().expect("netlink socket");
        let observed = dp.observe(&pc).await.expect("observe");
        let ops = dataplane::diff(&pc, &observed);
        // "kill -9" after half the ops.
        let half = &ops[..ops.len() / 2];
        let r = dataplane::apply(dp.netlink(), half, &observed).await;
        (ops.len(), r)
    });
    assert!(applied.errors.is_empty(), "{applied:#?}");
    let r = converge(&ns, &p);
    assert_eq!(r.ops, total - total / 2, "exactly the rest: {r:#?}");
    // Kill again in the middle of a failover change, then converge to the new plan.
    let next = node_plan("cloud-3", "cloud-1", 1500);
    let nc = next.clone();
    ns.block_on(move || async move {
        let dp = Dataplane::connect().expect("netlink socket");
        let observed = dp.observe(&nc).await.expect("observe");
        let ops = dataplane::diff(&nc, &observed);
        dataplane::apply(dp.netlink(), &ops[..ops.len() / 3], &observed).await
    });
    converge(&ns, &next);
    assert_eq!(
        rule_summary(&ns),
        strs(&["9027: from all lookup 9027 proto 82"])
    );
}

#[test]
fn counters_count_requests_ops_and_errors() {
    let ns = node_ns("counters", "10.0.0.1", false);
    let p = node_plan("cloud-1", "cloud-1", 1500);
    let (c, r) = ns.block_on(move || async move {
        let dp = Dataplane::connect().expect("netlink socket");
        let r = dp.reconcile(&p).await;
        (dp.counters().clone(), r)
    });
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(c.ops.load(Relaxed), r.ops as u64);
    assert_eq!(
        c.op_errors.load(Relaxed),
        2,
        "the two routes into the missing tunnel"
    );
    assert_eq!(c.reconciles.load(Relaxed), 1);
    assert_eq!(c.failed_reconciles.load(Relaxed), 1);
    assert!(
        c.netlink_requests.load(Relaxed) > r.ops as u64,
        "observation counts too"
    );
    assert!(c.netlink_errors.load(Relaxed) >= 2);
}

#[test]
fn kernel_refusals_are_reported_per_op_and_the_rest_still_applies() {
    // The node's private IP is not configured here, so the kernel refuses every route whose
    // preferred source is that address (EINVAL); raven0, FDB, neighbours and the rule land.
    let ns = node_ns("refused", "10.0.0.9", false);
    let p = node_plan("cloud-1", "cloud-2", 1500);
    let pc = p.clone();
    let r = ns.block_on(move || async move {
        let dp = Dataplane::connect().expect("netlink socket");
        dp.reconcile(&pc).await
    });
    assert_eq!(r.ops, 8, "{r:#?}");
    assert_eq!(r.errors.len(), 2, "{r:#?}");
    for e in &r.errors {
        assert!(matches!(e.op, Op::ReplaceRoute(_)), "{e}");
        assert_eq!(e.error.errno, Some(22), "EINVAL: {e}");
    }
    assert!(ns.link("raven0").is_some());
    assert_eq!(fdb_summary(&ns).len(), 1);
    assert_eq!(
        rule_summary(&ns),
        strs(&["9027: from all lookup 9027 proto 82"])
    );
    assert!(route_summary(&ns, "9027").is_empty());
    // Once the address exists, the next reconcile adds exactly the two routes.
    ns.ip(&["addr", "add", "10.0.0.2/24", "dev", "eth0"]);
    let r = converge(&ns, &p);
    assert_eq!(r.ops, 2, "{r:#?}");
}
