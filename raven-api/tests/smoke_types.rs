//! Quick wire-shape checks of the v1beta1 types (full fixture tests live in `fixtures.rs`).
#![cfg(feature = "kube")]

use raven_api::gateway::v1beta1::{Gateway, NodeInfo};
use raven_api::gateway::{EndpointType, ExposeType};
use serde_json::json;

#[test]
fn go_object_reads_and_writes_back_with_go_keys() {
    let go = json!({
        "apiVersion": "raven.openyurt.io/v1beta1",
        "kind": "Gateway",
        "metadata": {"name": "gw-cloud"},
        "spec": {
            "proxyConfig": {"Replicas": 1, "proxyHTTPPort": "10255,9100"},
            "tunnelConfig": {"Replicas": 1},
            "endpoints": [{"nodeName": "n1", "type": "tunnel", "port": 4500, "publicIP": "1.2.3.4",
                           "config": {"publicKey": "k"}}],
            "exposeType": "PublicIP"
        },
        "status": {"nodes": [{"nodeName": "n1", "privateIP": "", "subnets": null}]}
    });
    let gw: Gateway = serde_json::from_value(go.clone()).expect("deserialize");
    assert_eq!(gw.spec.expose_type, ExposeType::PublicIP);
    assert_eq!(gw.spec.endpoints[0].type_, EndpointType::Tunnel);
    assert_eq!(gw.spec.endpoints[0].public_key(), Some("k"));
    let back = serde_json::to_value(&gw).expect("serialize");
    assert_eq!(back["spec"]["tunnelConfig"], json!({"Replicas": 1}));
    assert_eq!(
        back["status"]["nodes"][0],
        serde_json::to_value(NodeInfo {
            node_name: "n1".into(),
            ..Default::default()
        })
        .expect("ser")
    );
    assert_eq!(
        back["status"]["nodes"][0],
        json!({"nodeName": "n1", "privateIP": "", "subnets": []})
    );
    let no_spec: Gateway =
        serde_json::from_value(json!({"metadata": {"name": "x"}})).expect("missing spec");
    let written = serde_json::to_value(&no_spec).expect("ser");
    assert_eq!(
        written["spec"],
        json!({"proxyConfig": {"Replicas": 0}, "tunnelConfig": {"Replicas": 0}})
    );
}
