//! Smoke test of the real-API-server tier: etcd + kube-apiserver 1.20.2 start, RBAC is on,
//! our Gateway CRD is served, and a Gateway (spec and status subresource) and a Node round-trip.
//!
//! Needs the binary cached by `tests/kube/build-apiserver.sh`; fails (with that hint) without it.

use std::path::PathBuf;

use raven_tests::kube::{KubeApiServer, TestUser};
use serde_json::json;

/// Our CRD manifests (`deploy/crds/*.yaml`), else OpenYurt's from the reference notes.
fn crd_manifests() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut ours: Vec<PathBuf> = std::fs::read_dir(root.join("deploy/crds"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                .filter(|p| p.file_name().is_none_or(|n| n != "kustomization.yaml"))
                .collect()
        })
        .unwrap_or_default();
    ours.sort();
    if ours.is_empty() {
        ours.push(raven_tests::paths::shared_reference(
            "openyurt-crds/raven.openyurt.io_gateways.yaml",
        ));
    }
    ours
}

#[test]
fn apiserver_serves_gateways_and_nodes() {
    let alice = TestUser {
        name: "alice".into(),
        token: "alice-token".into(),
        groups: vec!["devs".into()],
    };
    let api = KubeApiServer::start_with_users(std::slice::from_ref(&alice))
        .unwrap_or_else(|e| panic!("cannot start the test API server: {e}"));
    eprintln!("kube-apiserver ready in {:?} at {}", api.startup, api.url);

    // Token auth works and RBAC is enforced: alice is known (403, not 401) but may not list.
    let r = api
        .request(&alice.token, "GET", "/api/v1/nodes", None)
        .expect("request as alice");
    assert_eq!(r.status, 403, "{}", r.body);
    let r = api
        .request("wrong-token", "GET", "/api/v1/nodes", None)
        .expect("request with a bad token");
    assert_eq!(r.status, 401, "{}", r.body);

    let mut names = Vec::new();
    for path in crd_manifests() {
        let yaml = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        names.push(api.create_crd(&yaml).expect("create CRD"));
    }
    assert!(
        names.iter().any(|n| n == "gateways.raven.openyurt.io"),
        "{names:?}"
    );

    let gw = json!({
        "apiVersion": "raven.openyurt.io/v1beta1",
        "kind": "Gateway",
        "metadata": {"name": "gw-hz", "labels": {"app.kubernetes.io/managed-by": "raven-controller"}},
        "spec": {
            "proxyConfig": {"Replicas": 1, "proxyHTTPPort": "10255"},
            "tunnelConfig": {"Replicas": 1},
            "endpoints": [
                {"nodeName": "edge-1", "type": "tunnel", "port": 4500, "underNAT": true,
                 "config": {"publicKey": "k="}},
                {"nodeName": "edge-1", "type": "proxy", "port": 10262, "underNAT": true}
            ]
        }
    });
    let base = "/apis/raven.openyurt.io/v1beta1/gateways";
    api.admin("POST", base, Some(&gw.to_string()))
        .expect("create Gateway");
    let got = api
        .admin("GET", &format!("{base}/gw-hz"), None)
        .expect("get Gateway")
        .json()
        .expect("json");
    assert_eq!(got["spec"]["proxyConfig"]["Replicas"], 1);
    assert_eq!(got["spec"]["tunnelConfig"]["Replicas"], 1);
    assert_eq!(got["spec"]["proxyConfig"]["proxyHTTPPort"], "10255");
    assert_eq!(got["spec"]["endpoints"], gw["spec"]["endpoints"]);

    // Status goes through the status subresource, and a spec write there is ignored.
    let status = json!({
        "spec": {"exposeType": "PublicIP"},
        "status": {
            "nodes": [{"nodeName": "edge-1", "privateIP": "192.168.1.10",
                       "subnets": ["10.244.1.0/24", "fd00:10:244:1::/64"]}],
            "activeEndpoints": [{"nodeName": "edge-1", "type": "tunnel", "port": 4500,
                                 "underNAT": true,
                                 "config": {"enable-l3-tunnel": "true", "publicKey": "k="}}]
        }
    });
    api.admin(
        "PATCH",
        &format!("{base}/gw-hz/status"),
        Some(&status.to_string()),
    )
    .expect("patch status");
    let got = api
        .admin("GET", &format!("{base}/gw-hz"), None)
        .expect("get Gateway")
        .json()
        .expect("json");
    assert_eq!(got["status"], status["status"]);
    assert!(got["spec"].get("exposeType").is_none(), "{}", got["spec"]);

    // Nodes can be created and given a status (there is no kubelet).
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "edge-1", "labels": {"apps.openyurt.io/nodepool": "hz"}},
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"]}
    });
    api.admin("POST", "/api/v1/nodes", Some(&node.to_string()))
        .expect("create Node");
    let node_status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "Test",
                        "lastHeartbeatTime": "2025-01-01T00:00:00Z",
                        "lastTransitionTime": "2025-01-01T00:00:00Z"}],
        "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}]
    }});
    api.admin(
        "PATCH",
        "/api/v1/nodes/edge-1/status",
        Some(&node_status.to_string()),
    )
    .expect("patch Node status");
    let got = api
        .admin("GET", "/api/v1/nodes/edge-1", None)
        .expect("get Node")
        .json()
        .expect("json");
    assert_eq!(got["status"]["conditions"][0]["status"], "True");
    assert_eq!(got["status"]["addresses"][0]["address"], "192.168.1.10");
    assert_eq!(got["spec"]["podCIDRs"][1], "fd00:10:244:1::/64");

    // A kubeconfig for the controller binary can be written.
    let kc = api
        .kubeconfig("admin", raven_tests::kube::ADMIN_TOKEN)
        .expect("kubeconfig");
    assert!(kc.is_file());
}
