use serde_json::{Value, json};

use super::*;

const SA: &str = "system:serviceaccount:kube-system:raven-node";

fn gw(v: Value) -> Gateway {
    serde_json::from_value(v).expect("gateway")
}

fn base() -> Value {
    json!({"apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
        "metadata": {"name": "gw", "labels": {"team": "net"}},
        "spec": {"proxyConfig": {"Replicas": 1}, "tunnelConfig": {"Replicas": 1},
                 "endpoints": [
                     {"nodeName": "a", "type": "tunnel", "port": 4500, "config": {"publicKey": "A0"}},
                     {"nodeName": "b", "type": "tunnel", "port": 4500, "publicIP": "198.51.100.2"},
                     {"nodeName": "a", "type": "proxy", "port": 10262}]}})
}

fn changed(edit: impl FnOnce(&mut Value)) -> Gateway {
    let mut v = base();
    edit(&mut v);
    gw(v)
}

#[test]
fn writer_table() {
    let user = |name: &str, groups: &[&str]| UserInfo {
        username: name.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    };
    let cases = [
        (
            "kubelet identity",
            user("system:node:a", &["system:nodes"]),
            None,
            Writer::Node("a".into()),
        ),
        (
            "node name, no group",
            user("system:node:a", &[]),
            None,
            Writer::Other,
        ),
        (
            "pod-bound agent",
            user(SA, &["system:serviceaccounts"]),
            Some("a"),
            Writer::Node("a".into()),
        ),
        (
            "unbound agent",
            user(SA, &["system:serviceaccounts"]),
            None,
            Writer::UnboundAgent,
        ),
        (
            "empty pod node",
            user(SA, &[]),
            Some(""),
            Writer::UnboundAgent,
        ),
        (
            "administrator",
            user("admin", &["system:masters"]),
            Some("a"),
            Writer::Other,
        ),
        (
            "controller",
            user("system:serviceaccount:kube-system:raven-controller", &[]),
            None,
            Writer::Other,
        ),
    ];
    for (what, u, pod_node, want) in cases {
        assert_eq!(writer(&u, SA, pod_node), want, "{what}");
    }
}

#[test]
fn nodes_change_only_their_own_tunnel_endpoints() {
    let old = gw(base());
    let a = Writer::Node("a".into());
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(&str, Edit, Result<(), &str>)> = vec![
        ("no change", Box::new(|_| {}), Ok(())),
        (
            "own public key",
            Box::new(|v| v["spec"]["endpoints"][0]["config"]["publicKey"] = json!("A1")),
            Ok(()),
        ),
        (
            "own public IP",
            Box::new(|v| v["spec"]["endpoints"][0]["publicIP"] = json!("203.0.113.1")),
            Ok(()),
        ),
        (
            "both, as the agent's patch does",
            Box::new(|v| {
                v["spec"]["endpoints"][0]["publicIP"] = json!("203.0.113.1");
                v["spec"]["endpoints"][0]["config"]["publicKey"] = json!("A1");
            }),
            Ok(()),
        ),
        (
            "own key removed",
            Box::new(|v| v["spec"]["endpoints"][0]["config"] = json!({})),
            Ok(()),
        ),
        (
            "another node's public IP",
            Box::new(|v| v["spec"]["endpoints"][1]["publicIP"] = json!("203.0.113.1")),
            Err("spec.endpoints[1]"),
        ),
        (
            "own proxy endpoint",
            Box::new(|v| v["spec"]["endpoints"][2]["publicIP"] = json!("203.0.113.1")),
            Err("spec.endpoints[2]"),
        ),
        (
            "own tunnel port",
            Box::new(|v| v["spec"]["endpoints"][0]["port"] = json!(4501)),
            Err("only publicIP"),
        ),
        (
            "own other config key",
            Box::new(|v| v["spec"]["endpoints"][0]["config"]["enable-l7-proxy"] = json!("true")),
            Err("only publicIP"),
        ),
        (
            "own endpoint turned into a proxy",
            Box::new(|v| v["spec"]["endpoints"][0]["type"] = json!("proxy")),
            Err("spec.endpoints[0]"),
        ),
        (
            "another node's endpoint renamed to own",
            Box::new(|v| v["spec"]["endpoints"][1]["nodeName"] = json!("a")),
            Err("spec.endpoints[1]"),
        ),
        (
            "endpoint added",
            Box::new(|v| {
                v["spec"]["endpoints"]
                    .as_array_mut()
                    .expect("list")
                    .push(json!({"nodeName": "a", "type": "tunnel", "port": 4500}));
            }),
            Err("add or remove"),
        ),
        (
            "endpoint removed",
            Box::new(|v| {
                v["spec"]["endpoints"]
                    .as_array_mut()
                    .expect("list")
                    .remove(1);
            }),
            Err("add or remove"),
        ),
        (
            "exposed",
            Box::new(|v| v["spec"]["exposeType"] = json!("PublicIP")),
            Err("beyond its own"),
        ),
        (
            "proxy replicas",
            Box::new(|v| v["spec"]["proxyConfig"]["Replicas"] = json!(0)),
            Err("beyond its own"),
        ),
        (
            "labels",
            Box::new(|v| v["metadata"]["labels"]["team"] = json!("other")),
            Err("metadata.labels"),
        ),
        (
            "annotations",
            Box::new(|v| v["metadata"]["annotations"] = json!({"x": "y"})),
            Err("metadata.annotations"),
        ),
    ];
    for (what, edit, want) in cases {
        let new = changed(edit);
        let a_may = check(&a, Some(&old), &new);
        match (a_may.clone(), want) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(part)) => assert!(e.contains(part), "{what}: {e}"),
            (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
        }
        // What node a may change is its own: node b may not; nobody else is checked.
        if a_may.is_ok() && new.spec != old.spec {
            let b_may = check(&Writer::Node("b".into()), Some(&old), &new);
            assert!(b_may.is_err(), "{what}: node b changed node a's endpoint");
        }
        assert_eq!(check(&Writer::Other, Some(&old), &new), Ok(()), "{what}");
    }
}

#[test]
fn unbound_agents_and_creates_are_refused() {
    let old = gw(base());
    let e = check(&Writer::UnboundAgent, Some(&old), &old).expect_err("unbound");
    assert!(e.contains("pod-bound"), "{e}");
    let e = check(&Writer::Node("a".into()), None, &old).expect_err("create");
    assert!(e.contains("may not create"), "{e}");
    assert_eq!(check(&Writer::Other, None, &old), Ok(()));
}
