//! The lab's Gateway objects and the Gateway files every node's daemon reads.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::{Lab, NODES, ROUTERS};
use crate::error::{Context, Result};

impl Lab {
    /// The Gateway objects of the lab's topology with `cloud_active` as the cloud's active
    /// endpoint.
    pub fn gateways(&self) -> Vec<Value> {
        let key = |name: &str| {
            self.nodes
                .iter()
                .find(|n| n.spec.name == name)
                .and_then(|n| n.public_key.clone())
                .unwrap_or_default()
        };
        let endpoint = |node: &str, public_ip: Ipv4Addr, nat: bool| {
            json!({
                "nodeName": node, "type": "tunnel", "port": 4500, "publicIP": public_ip.to_string(),
                "underNAT": nat, "config": {"publicKey": key(node)},
            })
        };
        let nodes = |domain: &str| -> Vec<Value> {
            NODES
                .iter()
                .filter(|n| n.domain == domain)
                .map(|n| {
                    json!({"nodeName": n.name, "privateIP": n.ip.to_string(),
                           "subnets": [n.pod_subnet]})
                })
                .collect()
        };
        let gateway = |domain: &str, endpoints: Vec<Value>, active: Value| {
            json!({
                "apiVersion": "raven.openyurt.io/v1beta1",
                "kind": "Gateway",
                "metadata": {"name": format!("gw-{domain}")},
                "spec": {
                    "proxyConfig": {"Replicas": 0},
                    "tunnelConfig": {"Replicas": 1},
                    "endpoints": endpoints,
                },
                "status": {"nodes": nodes(domain), "activeEndpoints": [active]},
            })
        };
        let c1 = endpoint("cloud-1", NODES[0].ip, false);
        let c2 = endpoint("cloud-2", NODES[1].ip, false);
        let active = if self.cloud_active == "cloud-2" {
            c2.clone()
        } else {
            c1.clone()
        };
        let ea = endpoint("edge-a-1", ROUTERS[0].wan, true);
        let eb = endpoint("edge-b-1", ROUTERS[1].wan, true);
        vec![
            gateway("cloud", vec![c1, c2], active),
            gateway("edge-a", vec![ea.clone()], ea),
            gateway("edge-b", vec![eb.clone()], eb),
        ]
    }

    /// Writes the Gateway files (one per Gateway) into every node's directory, atomically.
    pub fn write_gateways(&self) -> Result<()> {
        for gw in self.gateways() {
            let name = gw["metadata"]["name"].as_str().unwrap_or("gw").to_string();
            let body =
                serde_json::to_vec_pretty(&gw).context(|| "encoding a Gateway".to_string())?;
            for node in &self.nodes {
                crate::nodestate::write_atomic(
                    &node.dir.join("gateways").join(format!("{name}.json")),
                    &body,
                )?;
            }
        }
        Ok(())
    }

    /// Moves the cloud's active endpoint to `node` ("cloud-1" or "cloud-2") by rewriting the
    /// Gateway files.
    pub fn set_cloud_active(&mut self, node: &'static str) -> Result<()> {
        self.cloud_active = node;
        self.write_gateways()
    }
}
