//! The `kube-system/edge-tunnel-nodes` ConfigMap: a hosts file the `raven-proxy-dns` CoreDNS
//! serves, so `<nodeName>` resolves to the internal proxy Service (proxy mode) or to the node
//! itself (upstream's gatewaydns controller).
//!
//! Key `tunnel-nodes`, lines `"<ip>\t<nodeName>"`, sorted as strings, joined by `\n` without a
//! trailing newline. When proxy mode is on and `x-raven-proxy-internal-svc` has a ClusterIP,
//! every node maps to it; otherwise each node maps to its first InternalIP, else its last
//! ExternalIP, else it is left out (and reported).
//!
//! Fixes: a ConfigMap whose `data` is null is repaired instead of panicking; Node address
//! changes are picked up (upstream ignores Node updates); only the one key is written, by merge
//! patch, so other keys someone added survive.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use raven_api::wellknown::{EDGE_TUNNEL_NODES_CONFIG, EDGE_TUNNEL_NODES_KEY, WORKING_NAMESPACE};

use crate::model::NodeView;

/// The hosts text and the nodes left out of it.
pub fn hosts(nodes: &[NodeView], proxy_ip: Option<IpAddr>) -> (String, Vec<String>) {
    let mut skipped = Vec::new();
    let mut lines: Vec<String> = nodes
        .iter()
        .filter_map(|n| {
            let ip = proxy_ip.or(n.private_ip).or(n.external_ip);
            if ip.is_none() {
                skipped.push(n.name.clone());
            }
            ip.map(|ip| format!("{ip}\t{}", n.name))
        })
        .collect();
    lines.sort();
    skipped.sort();
    (lines.join("\n"), skipped)
}

/// The ClusterIP of the internal Service usable in DNS: parses as an IP (not `None`/empty).
pub fn proxy_ip(proxy_enabled: bool, cluster_ip: Option<&str>) -> Option<IpAddr> {
    if !proxy_enabled {
        return None;
    }
    cluster_ip.and_then(|c| c.parse().ok())
}

/// A write to the DNS ConfigMap.
#[derive(Clone, Debug, PartialEq)]
pub enum DnsAction {
    /// Create the ConfigMap.
    Create(Box<ConfigMap>),
    /// Merge-patch `data.tunnel-nodes` to this value.
    Patch(String),
}

/// The write needed, if any, to make `existing` hold `text`.
pub fn plan(existing: Option<&ConfigMap>, text: &str) -> Option<DnsAction> {
    match existing {
        None => Some(DnsAction::Create(Box::new(ConfigMap {
            metadata: ObjectMeta {
                name: Some(EDGE_TUNNEL_NODES_CONFIG.to_owned()),
                namespace: Some(WORKING_NAMESPACE.to_owned()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                EDGE_TUNNEL_NODES_KEY.to_owned(),
                text.to_owned(),
            )])),
            ..Default::default()
        }))),
        Some(cm) => {
            let current = cm.data.as_ref().and_then(|d| d.get(EDGE_TUNNEL_NODES_KEY));
            (current.map(String::as_str) != Some(text)).then(|| DnsAction::Patch(text.to_owned()))
        }
    }
}

/// The merge patch for [`DnsAction::Patch`].
pub fn patch_body(text: &str) -> serde_json::Value {
    serde_json::json!({"data": {EDGE_TUNNEL_NODES_KEY: text}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str, internal: Option<&str>, external: Option<&str>) -> NodeView {
        NodeView {
            name: name.into(),
            private_ip: internal.map(|s| s.parse().expect("ip")),
            external_ip: external.map(|s| s.parse().expect("ip")),
            ..Default::default()
        }
    }

    /// Acceptance case 39: no raven-cfg, so proxy is off and nodes map to their own IPs; plus
    /// the line format and sort order upstream never tests.
    #[test]
    fn hosts_without_proxy_map_nodes_to_their_addresses() {
        let nodes = [
            n("edge-b", Some("10.0.0.2"), None),
            n("edge-a", Some("10.0.0.10"), Some("1.1.1.1")),
            n("cloud", None, Some("203.0.113.7")),
            n("lost", None, None),
            n("v6", Some("fd00::1"), None),
        ];
        let (text, skipped) = hosts(&nodes, proxy_ip(false, Some("10.96.0.5")));
        assert_eq!(
            text,
            "10.0.0.10\tedge-a\n10.0.0.2\tedge-b\n203.0.113.7\tcloud\nfd00::1\tv6"
        );
        assert_eq!(skipped, vec!["lost".to_string()]);
    }

    /// Acceptance case 41: with proxy on, every node maps to the internal Service ClusterIP.
    #[test]
    fn hosts_with_proxy_map_every_node_to_the_cluster_ip() {
        let nodes = [n("b", Some("10.0.0.2"), None), n("a", None, None)];
        let ip = proxy_ip(true, Some("172.168.0.1"));
        assert_eq!(ip, Some("172.168.0.1".parse().expect("ip")));
        let (text, skipped) = hosts(&nodes, ip);
        assert_eq!(text, "172.168.0.1\ta\n172.168.0.1\tb");
        assert!(skipped.is_empty());
        // A headless or unallocated Service gives no proxy IP.
        assert_eq!(proxy_ip(true, Some("None")), None);
        assert_eq!(proxy_ip(true, Some("")), None);
        assert_eq!(proxy_ip(true, None), None);
    }

    #[test]
    fn no_nodes_give_an_empty_file() {
        assert_eq!(hosts(&[], None), (String::new(), vec![]));
    }

    /// Acceptance case 40 (created with the key) and the nil-data fix.
    #[test]
    fn plan_table() {
        let text = "10.0.0.1\ta";
        let Some(DnsAction::Create(cm)) = plan(None, "") else {
            panic!("absent ConfigMap must be created");
        };
        assert_eq!(cm.metadata.name.as_deref(), Some(EDGE_TUNNEL_NODES_CONFIG));
        assert_eq!(cm.metadata.namespace.as_deref(), Some(WORKING_NAMESPACE));
        assert_eq!(
            cm.data,
            Some(BTreeMap::from([(
                EDGE_TUNNEL_NODES_KEY.into(),
                String::new()
            )]))
        );

        let nil_data = ConfigMap::default();
        assert_eq!(
            plan(Some(&nil_data), text),
            Some(DnsAction::Patch(text.into()))
        );
        let same = ConfigMap {
            data: Some(BTreeMap::from([
                (EDGE_TUNNEL_NODES_KEY.into(), text.into()),
                ("other".into(), "kept".into()),
            ])),
            ..Default::default()
        };
        assert_eq!(plan(Some(&same), text), None);
        assert_eq!(
            plan(Some(&same), "10.0.0.2\ta"),
            Some(DnsAction::Patch("10.0.0.2\ta".into()))
        );
        assert_eq!(
            patch_body("x"),
            serde_json::json!({"data": {"tunnel-nodes": "x"}})
        );
    }
}
