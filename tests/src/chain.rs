//! The Flannel-equivalent conflist, built as JSON (pure, no I/O).
//!
//! Flannel's CNI plugin only generates a delegate config and prints the delegate's result, so
//! Debian's `bridge` + `host-local` fed exactly the delegate Flannel would generate reproduces
//! what a plugin after Flannel receives, without flanneld. Values mirror kube-flannel's defaults:
//! `cni0`, `isGateway`, `isDefaultGateway`, `hairpinMode`, `ipMasq: false` (flanneld masquerades
//! itself), MTU 1450 (VXLAN on a 1500 link), host-local over the node subnet with one route to
//! the cluster CIDR. Then `portmap` and, last, `raven-cni`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

/// Spec versions the conformance tests run at (kube-flannel 0.3.1, k3s 1.0.0, current 1.1.0).
pub const TEST_VERSIONS: [&str; 3] = ["0.3.1", "1.0.0", "1.1.0"];

/// Parameters of the generated chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainSpec {
    /// The list's `cniVersion`.
    pub cni_version: String,
    /// The network (list) name.
    pub network: String,
    /// Flannel's node subnet (network address form).
    pub node_subnet: String,
    /// Flannel's cluster CIDR (`FLANNEL_NETWORK`).
    pub cluster_cidr: String,
    /// Flannel's MTU for the delegate (`FLANNEL_MTU`).
    pub flannel_mtu: u32,
    /// host-local's reservation directory.
    pub ipam_data_dir: PathBuf,
    /// The raven-cni plugin object, or `None` for the chain without it.
    pub raven: Option<RavenPlugin>,
}

/// The `raven-cni` entry of the list.
#[derive(Debug, Clone, PartialEq)]
pub struct RavenPlugin {
    /// `nodeStateFile`.
    pub node_state_file: PathBuf,
    /// `dataDir`.
    pub data_dir: PathBuf,
    /// Further keys, verbatim (e.g. `requireNodeDaemon`, or an unknown key for error tests).
    pub extra: Map<String, Value>,
}

impl ChainSpec {
    /// kube-flannel defaults with a node subnet of 10.244.1.0/24 in 10.244.0.0/16.
    pub fn flannel_defaults(cni_version: &str, network: &str, ipam_data_dir: &Path) -> Self {
        Self {
            cni_version: cni_version.to_string(),
            network: network.to_string(),
            node_subnet: "10.244.1.0/24".to_string(),
            cluster_cidr: "10.244.0.0/16".to_string(),
            flannel_mtu: 1450,
            ipam_data_dir: ipam_data_dir.to_path_buf(),
            raven: None,
        }
    }

    /// The whole conflist.
    pub fn conflist(&self) -> Value {
        let mut plugins = vec![self.flannel_delegate(), portmap()];
        if let Some(raven) = &self.raven {
            plugins.push(raven.plugin_object());
        }
        json!({
            "cniVersion": self.cni_version,
            "name": self.network,
            "plugins": plugins,
        })
    }

    /// The bridge plugin object exactly as Flannel's delegate generation produces it.
    pub fn flannel_delegate(&self) -> Value {
        json!({
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "isDefaultGateway": true,
            "hairpinMode": true,
            "ipMasq": false,
            "mtu": self.flannel_mtu,
            "ipam": {
                "type": "host-local",
                "dataDir": self.ipam_data_dir,
                "ranges": [[{"subnet": self.node_subnet}]],
                "routes": [{"dst": self.cluster_cidr}],
            },
        })
    }

    /// The gateway host-local assigns: first address of the node subnet.
    pub fn gateway(&self) -> Option<String> {
        let net: ipnetwork::IpNetwork = self.node_subnet.parse().ok()?;
        match net {
            ipnetwork::IpNetwork::V4(v4) => {
                Some(std::net::Ipv4Addr::from(u32::from(v4.network()) + 1).to_string())
            }
            ipnetwork::IpNetwork::V6(v6) => {
                Some(std::net::Ipv6Addr::from(u128::from(v6.network()) + 1).to_string())
            }
        }
    }
}

/// The portmap object as kube-flannel lists it.
pub fn portmap() -> Value {
    json!({"type": "portmap", "capabilities": {"portMappings": true}})
}

impl RavenPlugin {
    /// The plugin object for the list.
    pub fn plugin_object(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("type".into(), json!("raven-cni"));
        obj.insert("nodeStateFile".into(), json!(self.node_state_file));
        obj.insert("dataDir".into(), json!(self.data_dir));
        for (k, v) in &self.extra {
            obj.insert(k.clone(), v.clone());
        }
        Value::Object(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ChainSpec {
        ChainSpec::flannel_defaults("0.3.1", "cbr0", Path::new("/t/ipam"))
    }

    #[test]
    fn delegate_matches_flannel_generation() {
        let expected = json!({
            "type": "bridge", "bridge": "cni0", "isGateway": true, "isDefaultGateway": true,
            "hairpinMode": true, "ipMasq": false, "mtu": 1450,
            "ipam": {"type": "host-local", "dataDir": "/t/ipam",
                     "ranges": [[{"subnet": "10.244.1.0/24"}]],
                     "routes": [{"dst": "10.244.0.0/16"}]}
        });
        assert_eq!(spec().flannel_delegate(), expected);
    }

    #[test]
    fn list_order_is_bridge_portmap_raven() {
        let mut s = spec();
        assert_eq!(s.conflist()["plugins"].as_array().unwrap().len(), 2);
        let mut extra = Map::new();
        extra.insert("requireNodeDaemon".into(), json!(true));
        s.raven = Some(RavenPlugin {
            node_state_file: "/t/state.json".into(),
            data_dir: "/t/raven".into(),
            extra,
        });
        let list = s.conflist();
        let types: Vec<_> = list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["bridge", "portmap", "raven-cni"]);
        assert_eq!(list["plugins"][2]["requireNodeDaemon"], json!(true));
        assert_eq!(list["plugins"][2]["nodeStateFile"], json!("/t/state.json"));
        assert_eq!(list["cniVersion"], json!("0.3.1"));
    }

    #[test]
    fn gateway_is_first_address() {
        assert_eq!(spec().gateway().as_deref(), Some("10.244.1.1"));
    }
}
