//! `raven-node status` against running lab nodes: every field it reports is checked against
//! the kernel state of the node namespace (routes in our tables, our rules, the tunnel device
//! and its MTU, handshakes) and the pod records on disk; the exit code follows health.
//!
//! Needs root, nftables, curl, ping, the Debian CNI plugins, `raven-cnitool`, the release
//! `raven-cni` and a `raven-node` build; a missing piece fails the test with the fix.

use std::time::Duration;

use raven_tests::cmd::{self, Output};
use raven_tests::lab::{self, Lab, NODES};
use raven_tests::require::require_tool;
use serde_json::Value;

fn status(lab: &Lab, i: usize, json: bool) -> Output {
    let bin = lab::find_raven_node()
        .unwrap_or_else(|e| panic!("{e}"))
        .display()
        .to_string();
    let mut argv = vec![bin.as_str(), "status", "--addr", lab::METRICS_ADDR];
    if json {
        argv.extend(["--output", "json"]);
    }
    cmd::run_command(lab.nodes[i].netns.command(&argv), None).unwrap_or_else(|e| panic!("{e}"))
}

fn report(lab: &Lab, i: usize) -> (Output, Value) {
    let out = status(lab, i, true);
    let v = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("status JSON: {e}\n{}", out.describe_failure()));
    (out, v)
}

/// Routes per table and rule count of our tables, read from the kernel.
fn kernel_counts(lab: &Lab, i: usize) -> (usize, usize, usize) {
    let ns = &lab.nodes[i].netns;
    let count = |table: &str| {
        ns.ip(&["-4", "route", "show", "table", table])
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    };
    let rules = ns
        .ip(&["-4", "rule", "show"])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("lookup 9027") || l.contains("lookup 9028"))
        .count();
    (count("9027"), count("9028"), rules)
}

fn recorded_pods(lab: &Lab, i: usize) -> usize {
    raven_tests::cni_env::files_under(&lab.nodes[i].dir.join("raven"))
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .count()
}

fn link_mtu(lab: &Lab, i: usize, dev: &str) -> Option<u64> {
    let out = lab.nodes[i].netns.ip(&["-j", "link", "show", dev]).ok()?;
    let v: Value = serde_json::from_str(&out).ok()?;
    v[0]["mtu"].as_u64()
}

#[test]
fn status_matches_the_kernel_and_exits_by_health() {
    raven_tests::require_root();
    for tool in ["curl", "nft", "ping"] {
        require_tool(tool);
    }
    let mut lab = Lab::build().unwrap_or_else(|e| panic!("building the lab: {e}"));
    let cloud_gw = NODES
        .iter()
        .position(|n| n.name == "cloud-1")
        .expect("cloud-1");

    // Not running yet: exit 2, a clear message.
    let out = status(&lab, cloud_gw, false);
    assert_eq!(out.status.code(), Some(2), "{}", out.describe_failure());
    assert!(
        out.stderr.contains("cannot reach raven-node"),
        "{}",
        out.stderr
    );

    // Only the cloud gateway runs: applied, but its peers never handshake → unhealthy, exit 1.
    lab.start_daemon(cloud_gw).unwrap_or_else(|e| panic!("{e}"));
    lab.wait_for("cloud-1 applied", Duration::from_secs(20), || {
        serde_json::from_str::<Value>(&status(&lab, cloud_gw, true).stdout)
            .is_ok_and(|r| r["lastApply"]["ok"] == true)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let (out, r) = report(&lab, cloud_gw);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe_failure());
    assert_eq!(r["healthy"], false);
    assert!(
        r["readyError"]
            .as_str()
            .unwrap_or_default()
            .contains("no handshake"),
        "{r}"
    );
    let table = status(&lab, cloud_gw, false);
    assert!(table.stdout.contains("UNHEALTHY"), "{}", table.stdout);
    assert!(table.stdout.contains("never"), "{}", table.stdout);

    // Everyone runs: every node becomes healthy; compare each report with the kernel.
    lab.start_daemons().unwrap_or_else(|e| panic!("{e}"));
    for (i, n) in NODES.iter().enumerate() {
        lab.wait_for(
            &format!("{}: raven-node status exits 0", n.name),
            Duration::from_secs(60),
            || status(&lab, i, true).success(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut roles = Vec::new();
    for (i, n) in NODES.iter().enumerate() {
        let (out, r) = report(&lab, i);
        assert!(out.success(), "{}", out.describe_failure());
        assert_eq!(r["node"], n.name);
        assert_eq!(r["healthy"], true, "{r}");
        let (t27, t28, rules) = kernel_counts(&lab, i);
        assert_eq!(
            r["routes"].as_u64(),
            Some((t27 + t28) as u64),
            "{}: {r}",
            n.name
        );
        let by_table = |t: &str| r["routesByTable"][t].as_u64().unwrap_or(0) as usize;
        assert_eq!(
            (by_table("9027"), by_table("9028")),
            (t27, t28),
            "{}: {r}",
            n.name
        );
        assert!(t27 + t28 > 0, "{}: no routes in our tables", n.name);
        assert_eq!(r["rules"].as_u64(), Some(rules as u64), "{}: {r}", n.name);
        assert_eq!(
            r["recordedPods"].as_u64(),
            Some(recorded_pods(&lab, i) as u64),
            "{}: {r}",
            n.name
        );
        assert_eq!(r["proxyTunnels"], serde_json::json!([]));
        assert_eq!(r["lastApply"]["ok"], true);
        assert!(r["lastApply"]["durationSeconds"].as_f64().is_some());
        let role = r["role"].as_str().unwrap_or_default().to_owned();
        let mtu = r["tunnelMtu"].as_u64();
        match role.as_str() {
            "gateway" | "solo" => {
                assert_eq!(r["driver"], "wireguard", "{r}");
                let dev = r["tunnelDevice"].as_str().expect("tunnel device");
                assert!(
                    link_mtu(&lab, i, dev).is_some(),
                    "{}: {dev} missing",
                    n.name
                );
                let peers = r["peers"].as_array().expect("peers");
                assert!(!peers.is_empty(), "{}: no peers: {r}", n.name);
                for p in peers {
                    assert!(p["lastHandshake"].as_u64().is_some(), "{}: {p}", n.name);
                    assert!(
                        p["lastHandshakeAgeSeconds"]
                            .as_u64()
                            .is_some_and(|a| a < 180),
                        "{p}"
                    );
                }
                if role == "gateway" {
                    assert_eq!(link_mtu(&lab, i, "raven0"), mtu, "{}: {r}", n.name);
                }
            }
            "member" => {
                assert!(r["peers"].as_array().is_some_and(Vec::is_empty));
                assert_eq!(link_mtu(&lab, i, "raven0"), mtu, "{}: {r}", n.name);
                assert!(r["gatewayNode"].as_str().is_some(), "{r}");
            }
            other => panic!("{}: unexpected role {other}: {r}", n.name),
        }
        roles.push(role);
    }
    assert!(roles.iter().any(|r| r == "member"), "{roles:?}");
    assert!(roles.iter().any(|r| r == "gateway"), "{roles:?}");
    assert!(roles.iter().any(|r| r == "solo"), "{roles:?}");

    // Traffic shows up in the byte counters of the cloud gateway.
    let from = lab.pod("cloud-2").expect("pod");
    let to = lab.pod("edge-b-1").expect("pod").ip;
    lab.wait_for("ping cloud-2 -> edge-b-1", Duration::from_secs(30), || {
        lab.ping_from_pod(from, to)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let bytes = |r: &Value| -> u64 {
        r["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .map(|p| p["rxBytes"].as_u64().unwrap_or(0) + p["txBytes"].as_u64().unwrap_or(0))
            .sum()
    };
    let waited = lab.wait_for("tunnel bytes counted", Duration::from_secs(10), || {
        let _ = lab.ping_from_pod(from, to);
        bytes(&report(&lab, cloud_gw).1) > 0
    });
    let metrics = lab
        .http_get(cloud_gw, "/metrics")
        .map(|m| m.1)
        .unwrap_or_default();
    assert!(
        waited.is_ok(),
        "no tunnel bytes in the status of cloud-1: {}\nmetrics:\n{metrics}",
        report(&lab, cloud_gw).1
    );
}
