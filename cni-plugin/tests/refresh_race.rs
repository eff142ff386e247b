//! Kernel test (root): a raven-node refresh racing a CNI ADD never loses the newer node state.
//!
//! Each round starts an ADD and, concurrently, publishes a new node state and refreshes every
//! record, exactly as raven-node does. Whatever the interleaving, the pod must end up with the
//! routes of the newest state.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use raven_api::nodestate::NodeState;
use raven_cni::env::Env;
use raven_cni::refresh::refresh_all;
use raven_cni::{Outcome, run};

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (network namespaces); run it as root"
    );
}

struct Netns(String);
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn publish(path: &Path, generation: u64, prefixes: &[String]) {
    let state = NodeState {
        schema: 1,
        generation,
        node_name: "race".into(),
        remote_prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
        mtu: 1400 - (generation % 10) as u32,
        updated_at: 0,
    };
    state.publish(path).unwrap();
}

fn routes_in(ns: &str) -> BTreeSet<(String, u64)> {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "-d", "route", "show", "proto", "82"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mtu = r["metrics"]
                .as_array()
                .and_then(|m| m.iter().find_map(|x| x["mtu"].as_u64()))
                .unwrap_or(0);
            (r["dst"].as_str().unwrap().to_string(), mtu)
        })
        .collect()
}

#[test]
fn refresh_racing_add_keeps_the_newest_state() {
    require_root();
    let tag = std::process::id();
    let (node, pod) = (
        Netns(format!("race-node-{tag}")),
        Netns(format!("race-pod-{tag}")),
    );
    sh(&["ip", "netns", "add", &node.0]);
    sh(&["ip", "netns", "add", &pod.0]);
    sh(&[
        "ip", "-n", &node.0, "link", "add", "veth0", "type", "veth", "peer", "name", "eth0",
        "netns", &pod.0,
    ]);
    sh(&[
        "ip",
        "-n",
        &pod.0,
        "addr",
        "add",
        "10.244.1.2/24",
        "dev",
        "eth0",
    ]);
    sh(&["ip", "-n", &pod.0, "link", "set", "eth0", "up"]);
    sh(&["ip", "-n", &node.0, "link", "set", "veth0", "up"]);
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let data_dir = dir.path().join("data");
    let netns_path = format!("/run/netns/{}", pod.0);
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "race", "type": "raven-cni",
        "nodeStateFile": state_file, "dataDir": data_dir,
        "prevResult": {"cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": netns_path}],
            "ips": [{"interface": 0, "address": "10.244.1.2/24", "gateway": "10.244.1.1"}]}
    })
    .to_string();

    for round in 0..40u64 {
        let old = vec![format!("10.{}.0.0/24", 100 + round % 50)];
        let new = vec![
            format!("10.{}.0.0/24", 200 + round % 50),
            "10.99.0.0/16".to_string(),
        ];
        publish(&state_file, round * 2 + 1, &old);
        let env = Env {
            command: Some("ADD".into()),
            container_id: Some(format!("c{round}")),
            netns: Some(netns_path.clone()),
            ifname: Some("eth0".into()),
            args: None,
        };
        let conf_add = conf.clone();
        let adder = std::thread::spawn(move || run(&env, conf_add.as_bytes()));
        if round % 2 == 0 {
            std::thread::yield_now();
        }
        publish(&state_file, round * 2 + 2, &new);
        let summary = refresh_all(&data_dir, &state_file).unwrap();
        assert!(
            summary.errors.is_empty(),
            "round {round}: {:?}",
            summary.errors
        );
        assert!(
            matches!(adder.join().unwrap(), Outcome::Success(_)),
            "round {round}: ADD failed"
        );
        let mtu = 1400 - ((round * 2 + 2) % 10);
        let want: BTreeSet<_> = new.iter().map(|p| (p.clone(), mtu)).collect();
        assert_eq!(routes_in(&pod.0), want, "round {round}: lost update");
        let del = Env {
            command: Some("DEL".into()),
            ..Default::default()
        };
        let del = Env {
            container_id: Some(format!("c{round}")),
            ifname: Some("eth0".into()),
            netns: Some(netns_path.clone()),
            ..del
        };
        assert!(matches!(run(&del, conf.as_bytes()), Outcome::Success(_)));
    }
    let leftovers: Vec<_> = std::fs::read_dir(data_dir.join("race"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}
