//! String enums of the Gateway API: endpoint type and expose type.
//!
//! Upstream declares both as free-form Go strings and only the webhook restricts them, so an
//! object stored before (or without) the webhook may hold any value. These enums therefore keep
//! unknown values verbatim (`Unknown`) instead of failing to deserialize: a controller listing
//! all Gateways must not stop at one bad object, and writing an object back must not change it.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::wellknown::{
    ENDPOINT_TYPE_PROXY, ENDPOINT_TYPE_TUNNEL, EXPOSE_TYPE_LOAD_BALANCER, EXPOSE_TYPE_PUBLIC_IP,
};

/// What an endpoint serves: `proxy` (L7) or `tunnel` (L3). JSON: a plain string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum EndpointType {
    /// `"proxy"`: an L7 proxy endpoint.
    Proxy,
    /// `"tunnel"`: an L3 tunnel endpoint.
    Tunnel,
    /// Any other string, kept verbatim (including `""`, Go's zero value). Never elected;
    /// rejected by validation.
    Unknown(String),
}

impl EndpointType {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            EndpointType::Proxy => ENDPOINT_TYPE_PROXY,
            EndpointType::Tunnel => ENDPOINT_TYPE_TUNNEL,
            EndpointType::Unknown(s) => s,
        }
    }

    /// The port an endpoint of this type gets when its `port` is 0 (upstream defaulting).
    pub fn default_port(&self) -> Option<u16> {
        match self {
            EndpointType::Proxy => Some(crate::wellknown::DEFAULT_PROXY_SERVER_EXPOSED_PORT),
            EndpointType::Tunnel => Some(crate::wellknown::DEFAULT_TUNNEL_SERVER_EXPOSED_PORT),
            EndpointType::Unknown(_) => None,
        }
    }
}

/// Go's zero value: the empty string.
impl Default for EndpointType {
    fn default() -> Self {
        EndpointType::Unknown(String::new())
    }
}

impl From<String> for EndpointType {
    fn from(s: String) -> Self {
        match s.as_str() {
            ENDPOINT_TYPE_PROXY => EndpointType::Proxy,
            ENDPOINT_TYPE_TUNNEL => EndpointType::Tunnel,
            _ => EndpointType::Unknown(s),
        }
    }
}

impl From<&str> for EndpointType {
    fn from(s: &str) -> Self {
        EndpointType::from(s.to_owned())
    }
}

impl From<EndpointType> for String {
    fn from(t: EndpointType) -> Self {
        match t {
            EndpointType::Unknown(s) => s,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Display for EndpointType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl JsonSchema for EndpointType {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("EndpointType")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string" })
    }
}

/// How a Gateway is reachable from other network domains. JSON: a plain string; the empty
/// string and an absent key both mean [`ExposeType::NotExposed`] (Go `omitempty`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ExposeType {
    /// `""` / absent: not exposed (typically an edge Gateway behind NAT).
    #[default]
    NotExposed,
    /// `"LoadBalancer"`: one LoadBalancer Service per active endpoint.
    LoadBalancer,
    /// `"PublicIP"`: the endpoints' own public IPs.
    PublicIP,
    /// Any other non-empty string, kept verbatim; rejected by validation.
    Unknown(String),
}

impl ExposeType {
    /// The wire string (`""` when not exposed).
    pub fn as_str(&self) -> &str {
        match self {
            ExposeType::NotExposed => "",
            ExposeType::LoadBalancer => EXPOSE_TYPE_LOAD_BALANCER,
            ExposeType::PublicIP => EXPOSE_TYPE_PUBLIC_IP,
            ExposeType::Unknown(s) => s,
        }
    }

    /// True for `""`: Go's `omitempty` leaves the key out.
    pub fn is_not_exposed(&self) -> bool {
        matches!(self, ExposeType::NotExposed)
    }

    /// True for the two valid exposed types. Upstream controllers treat exactly these as
    /// "exposed" (internal proxy Service, proxy server role).
    pub fn is_exposed(&self) -> bool {
        matches!(self, ExposeType::LoadBalancer | ExposeType::PublicIP)
    }
}

impl From<String> for ExposeType {
    fn from(s: String) -> Self {
        match s.as_str() {
            "" => ExposeType::NotExposed,
            EXPOSE_TYPE_LOAD_BALANCER => ExposeType::LoadBalancer,
            EXPOSE_TYPE_PUBLIC_IP => ExposeType::PublicIP,
            _ => ExposeType::Unknown(s),
        }
    }
}

impl From<&str> for ExposeType {
    fn from(s: &str) -> Self {
        ExposeType::from(s.to_owned())
    }
}

impl From<ExposeType> for String {
    fn from(t: ExposeType) -> Self {
        match t {
            ExposeType::Unknown(s) => s,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Display for ExposeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl JsonSchema for ExposeType {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("ExposeType")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_type_round_trips_every_string() {
        for s in ["proxy", "tunnel", "", "Tunnel", "vpn", " proxy"] {
            let t = EndpointType::from(s);
            assert_eq!(t.as_str(), s);
            let json = serde_json::to_string(&t).expect("serialize");
            assert_eq!(json, serde_json::to_string(s).expect("serialize str"));
            let back: EndpointType = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, t);
        }
        assert_eq!(EndpointType::from("proxy"), EndpointType::Proxy);
        assert_eq!(EndpointType::from("tunnel"), EndpointType::Tunnel);
        assert_eq!(
            EndpointType::from("Tunnel"),
            EndpointType::Unknown("Tunnel".into())
        );
    }

    #[test]
    fn endpoint_type_default_ports() {
        assert_eq!(EndpointType::Proxy.default_port(), Some(10262));
        assert_eq!(EndpointType::Tunnel.default_port(), Some(4500));
        assert_eq!(EndpointType::Unknown("x".into()).default_port(), None);
    }

    #[test]
    fn expose_type_round_trips_every_string() {
        let cases = [
            ("", ExposeType::NotExposed),
            ("LoadBalancer", ExposeType::LoadBalancer),
            ("PublicIP", ExposeType::PublicIP),
            ("loadbalancer", ExposeType::Unknown("loadbalancer".into())),
        ];
        for (s, want) in cases {
            let t = ExposeType::from(s);
            assert_eq!(t, want);
            assert_eq!(t.as_str(), s);
            let back: ExposeType =
                serde_json::from_str(&serde_json::to_string(&t).expect("ser")).expect("de");
            assert_eq!(back, t);
        }
        assert!(ExposeType::PublicIP.is_exposed());
        assert!(ExposeType::LoadBalancer.is_exposed());
        assert!(!ExposeType::NotExposed.is_exposed());
        assert!(!ExposeType::Unknown("x".into()).is_exposed());
    }
}
