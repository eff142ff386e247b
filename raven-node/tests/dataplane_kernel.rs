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
            .node("edge-2", "192.168.1.11", &["10.244.3.0/24", "10.250.0.0/16"])
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
    ns.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer"]);
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

async fn reconcile(dp: &Dataplane, p: &NodePlan) -> Report {
    dp.reconcile(p).await
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

/// Reconciles each plan in order in the namespace, returning the reports.
fn reconcile_all(ns: &Ns, plans: Vec<NodePlan>) -> Vec<Report> {
    ns.block_on(move || async move {
        let dp = Dataplane::connect().expect("netlink socket");
        let mut out = Vec::new();
        for p in &plans {
            out.push(reconcile(&dp, p).await);
        }
        out
    })
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
            format!("{} lladdr {} {}", s(n, "dst"), s(n, "lladdr"), state.join(","))
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
        link["flags"].as_array().expect("flags").iter().any(|f| f == "UP"),
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
    assert_eq!(rule_summary(&ns), strs(&["9027: from all lookup 9027 proto 82"]));
}
