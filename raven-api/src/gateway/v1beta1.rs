//! `raven.openyurt.io/v1beta1` Gateway: the storage (hub) version.
//!
//! JSON keys and `omitempty` follow OpenYurt's Go types exactly, quirks included:
//! `proxyConfig`/`tunnelConfig` are always written and carry a capitalised `Replicas` key;
//! `status.nodes[].privateIP` and `.subnets` are always written, even when empty; endpoint
//! `type` and `nodeName` are always written; everything else is left out when zero.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::root::gateway_root;
use super::serde_util::{go_int, is_false, is_zero, null_as_default};
pub use super::{EndpointType, ExposeType};
use crate::wellknown::{API_VERSION_V1BETA1, VERSION_V1BETA1};

gateway_root!(VERSION_V1BETA1, API_VERSION_V1BETA1);

/// Desired state of a Gateway (v1beta1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Label query over the nodes of this gateway's network domain. Informational: membership
    /// is the node label raven.openyurt.io/gateway set to the gateway name, which defaulting
    /// also puts here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// Layer-7 proxy settings.
    // Always written: Go has no pointer here, so Go clients always send it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub proxy_config: ProxyConfiguration,
    /// Layer-3 tunnel settings.
    // Always written: Go has no pointer here, so Go clients always send it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tunnel_config: TunnelConfiguration,
    /// Candidate gateway endpoints; active ones are elected from this list.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub endpoints: Vec<Endpoint>,
    /// How the gateway is exposed to other network domains: "", LoadBalancer or PublicIP.
    #[serde(default, skip_serializing_if = "ExposeType::is_not_exposed")]
    pub expose_type: ExposeType,
}

/// Layer-7 proxy configuration of a Gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProxyConfiguration {
    /// How many proxy endpoints to elect active.
    // The JSON key is `Replicas`, capitalised, as in upstream's Go tag.
    #[serde(rename = "Replicas")]
    #[schemars(schema_with = "go_int")]
    pub replicas: i64,
    /// Comma-separated HTTP ports reachable across domains through the proxy.
    #[serde(
        rename = "proxyHTTPPort",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub proxy_http_port: String,
    /// Comma-separated HTTPS ports reachable across domains through the proxy.
    #[serde(
        rename = "proxyHTTPSPort",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub proxy_https_port: String,
}

/// Layer-3 tunnel configuration of a Gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TunnelConfiguration {
    /// How many tunnel endpoints to elect active: 0 or 1.
    // The JSON key is `Replicas`, capitalised, as in upstream's Go tag.
    #[serde(rename = "Replicas")]
    #[schemars(schema_with = "go_int")]
    pub replicas: i64,
}

/// A gateway endpoint: a node that can serve the proxy or the tunnel of its domain. Active
/// endpoints in status are copies of spec endpoints, with `config` extended by the controller.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Name of the node hosting the endpoint.
    pub node_name: String,
    /// Address other domains reach this endpoint at. Written by users or by the agent.
    #[serde(rename = "publicIP", default, skip_serializing_if = "String::is_empty")]
    pub public_ip: String,
    /// External port found by STUN for NAT traversal; written by the agent.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "go_int")]
    pub public_port: i64,
    /// Whether the node is behind NAT. All endpoints of a gateway share the value.
    #[serde(rename = "underNAT", default, skip_serializing_if = "is_false")]
    pub under_nat: bool,
    /// NAT type found by STUN (e.g. "Symmetric NAT"); written by the agent.
    #[serde(rename = "natType", default, skip_serializing_if = "String::is_empty")]
    pub nat_type: String,
    /// Service of the endpoint: proxy or tunnel.
    #[serde(rename = "type")]
    pub type_: EndpointType,
    /// Exposed port; defaulted to 10262 (proxy) or 4500 (tunnel) when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "go_int")]
    pub port: i64,
    /// Per-endpoint agent settings, e.g. publicKey (WireGuard) and, on active endpoints,
    /// enable-l7-proxy / enable-l3-tunnel.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub config: BTreeMap<String, String>,
}

/// Observed state of a Gateway (v1beta1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Every node labelled into the gateway, ready or not, sorted by name.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub nodes: Vec<NodeInfo>,
    /// Elected endpoints, sorted by node name; copies of spec endpoints.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub active_endpoints: Vec<Endpoint>,
}

/// A member node of a Gateway as published in status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// Node name.
    pub node_name: String,
    /// First InternalIP address of the node, or empty when it has none.
    // Always written, even empty: the CRD requires it.
    #[serde(rename = "privateIP")]
    pub private_ip: String,
    /// Pod CIDRs of the node, plus the extra allowed source CIDRs on the active tunnel node.
    /// Contains an empty string when the node has no pod CIDR.
    // Always written, even empty: the CRD requires it. `null` (Go's nil slice) reads as empty.
    #[serde(deserialize_with = "null_as_default")]
    pub subnets: Vec<String>,
}

impl GatewaySpec {
    /// Endpoints of one type, in spec order.
    pub fn endpoints_of(&self, t: EndpointType) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.iter().filter(move |e| e.type_ == t)
    }

    /// `Replicas` for one endpoint type; 0 for an unknown type.
    pub fn replicas(&self, t: &EndpointType) -> i64 {
        match t {
            EndpointType::Proxy => self.proxy_config.replicas,
            EndpointType::Tunnel => self.tunnel_config.replicas,
            EndpointType::Unknown(_) => 0,
        }
    }
}

impl GatewayStatus {
    /// Active endpoints of one type, in status order.
    pub fn active_endpoints_of(&self, t: EndpointType) -> impl Iterator<Item = &Endpoint> {
        self.active_endpoints.iter().filter(move |e| e.type_ == t)
    }

    /// The active tunnel endpoint as the upstream agent sees it: the first `activeEndpoints`
    /// entry of type tunnel.
    pub fn active_tunnel_endpoint(&self) -> Option<&Endpoint> {
        self.active_endpoints_of(EndpointType::Tunnel).next()
    }

    /// The member node with this name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.node_name == name)
    }
}

impl Gateway {
    /// Whether `node` is a proxy server by this Gateway: an active proxy endpoint of an exposed
    /// Gateway (the cloud side, where kube-apiserver's requests enter the proxy).
    pub fn proxy_server_on(&self, node: &str) -> bool {
        self.spec.expose_type.is_exposed()
            && self.status.as_ref().is_some_and(|s| {
                s.active_endpoints_of(EndpointType::Proxy)
                    .any(|e| e.node_name == node)
            })
    }

    /// The active tunnel endpoint (first tunnel entry of `status.activeEndpoints`), if any.
    pub fn active_tunnel_endpoint(&self) -> Option<&Endpoint> {
        self.status.as_ref()?.active_tunnel_endpoint()
    }

    /// Whether `node` is listed in `status.nodes` (how the upstream agent finds its gateway).
    pub fn has_member(&self, node: &str) -> bool {
        self.status.as_ref().is_some_and(|s| s.node(node).is_some())
    }
}

impl Endpoint {
    /// `publicIP` parsed; `None` when empty or malformed.
    pub fn public_ip_addr(&self) -> Option<IpAddr> {
        self.public_ip.parse().ok()
    }

    /// `port` as a usable port number; `None` for 0 or out of range.
    pub fn port_u16(&self) -> Option<u16> {
        u16::try_from(self.port).ok().filter(|p| *p != 0)
    }

    /// `port`, or the type's default when 0 (what defaulting would have written).
    pub fn effective_port(&self) -> Option<u16> {
        if self.port == 0 {
            self.type_.default_port()
        } else {
            self.port_u16()
        }
    }

    /// `publicPort` as a usable port number; `None` for 0 or out of range.
    pub fn public_port_u16(&self) -> Option<u16> {
        u16::try_from(self.public_port).ok().filter(|p| *p != 0)
    }

    /// The WireGuard public key the agent published, if any.
    pub fn public_key(&self) -> Option<&str> {
        self.config
            .get(crate::wellknown::CONFIG_PUBLIC_KEY)
            .map(String::as_str)
            .filter(|k| !k.is_empty())
    }

    /// The `(nodeName, type)` identity of an endpoint: at most one per gateway is valid.
    pub fn key(&self) -> (&str, &EndpointType) {
        (&self.node_name, &self.type_)
    }
}

impl NodeInfo {
    /// `privateIP` parsed; `None` when empty or malformed.
    pub fn private_ip_addr(&self) -> Option<IpAddr> {
        self.private_ip.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(node: &str, t: EndpointType) -> Endpoint {
        Endpoint {
            node_name: node.to_owned(),
            type_: t,
            ..Default::default()
        }
    }

    #[test]
    fn proxy_server_on_needs_an_exposed_gateway_and_an_active_proxy_endpoint() {
        let gw = |expose: ExposeType, active: Vec<Endpoint>| {
            let mut g = Gateway::new(
                "gw",
                GatewaySpec {
                    expose_type: expose,
                    ..Default::default()
                },
            );
            g.status = Some(GatewayStatus {
                active_endpoints: active,
                ..Default::default()
            });
            g
        };
        let proxy = |n| endpoint(n, EndpointType::Proxy);
        let tunnel = |n| endpoint(n, EndpointType::Tunnel);
        let cases = [
            (
                "exposed, active proxy",
                ExposeType::PublicIP,
                vec![proxy("a")],
                true,
            ),
            (
                "load balancer",
                ExposeType::LoadBalancer,
                vec![proxy("a")],
                true,
            ),
            (
                "not exposed",
                ExposeType::NotExposed,
                vec![proxy("a")],
                false,
            ),
            (
                "tunnel endpoint only",
                ExposeType::PublicIP,
                vec![tunnel("a")],
                false,
            ),
            (
                "another node's",
                ExposeType::PublicIP,
                vec![proxy("b")],
                false,
            ),
            ("none active", ExposeType::PublicIP, vec![], false),
        ];
        for (what, expose, active, want) in cases {
            assert_eq!(gw(expose, active).proxy_server_on("a"), want, "{what}");
        }
        let mut no_status = gw(ExposeType::PublicIP, vec![]);
        no_status.status = None;
        assert!(!no_status.proxy_server_on("a"), "no status");
    }
}
