//! Fixture helpers shared by the planner tests: Gateway objects built as JSON shaped exactly
//! like the ones OpenYurt's controller writes (so the wire decoding is exercised too), and
//! short constructors for the expected plan objects.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;
use raven_api::gateway::v1beta1::Gateway;
use raven_node::plan::vxlan::{VxlanPeer, VxlanPlan};
use raven_node::plan::{NextHop, RAVEN0_TABLE, Route, Rule, Selector, TUNNEL_TABLE};
use serde_json::{Value, json};

/// A Gateway under construction.
#[derive(Clone, Debug)]
pub struct Gw {
    pub name: String,
    /// `(name, privateIP, subnets)`, in the order written to status.
    pub nodes: Vec<(String, String, Vec<String>)>,
    /// Active tunnel endpoint node.
    pub active: Option<String>,
    pub public_ip: String,
    pub under_nat: bool,
    pub nat_type: String,
    pub public_port: i64,
    pub port: i64,
    pub public_key: Option<String>,
    pub replicas: i64,
}

impl Gw {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            nodes: Vec::new(),
            active: None,
            public_ip: String::new(),
            under_nat: false,
            nat_type: String::new(),
            public_port: 0,
            port: 4500,
            public_key: None,
            replicas: 1,
        }
    }

    pub fn node(mut self, name: &str, ip: &str, subnets: &[&str]) -> Self {
        self.nodes.push((
            name.into(),
            ip.into(),
            subnets.iter().map(|s| (*s).to_owned()).collect(),
        ));
        self
    }

    pub fn active(mut self, node: &str, public_ip: &str) -> Self {
        self.active = Some(node.into());
        self.public_ip = public_ip.into();
        self
    }

    pub fn nat(mut self) -> Self {
        self.under_nat = true;
        self
    }

    pub fn stun(mut self, nat_type: &str, public_port: i64) -> Self {
        self.nat_type = nat_type.into();
        self.public_port = public_port;
        self
    }

    pub fn key(mut self, key: &str) -> Self {
        self.public_key = Some(key.into());
        self
    }

    pub fn replicas(mut self, n: i64) -> Self {
        self.replicas = n;
        self
    }

    fn endpoint_json(&self, node: &str, active: bool) -> Value {
        let mut ep = json!({"nodeName": node, "type": "tunnel", "port": self.port});
        if !self.public_ip.is_empty() {
            ep["publicIP"] = json!(self.public_ip);
        }
        if self.under_nat {
            ep["underNAT"] = json!(true);
        }
        if !self.nat_type.is_empty() {
            ep["natType"] = json!(self.nat_type);
        }
        if self.public_port != 0 {
            ep["publicPort"] = json!(self.public_port);
        }
        let mut config = serde_json::Map::new();
        if let Some(k) = &self.public_key {
            config.insert("publicKey".into(), json!(k));
        }
        if active {
            config.insert("enable-l3-tunnel".into(), json!("true"));
        }
        if !config.is_empty() {
            ep["config"] = Value::Object(config);
        }
        ep
    }

    /// The object as OpenYurt writes it.
    pub fn to_json(&self) -> Value {
        let endpoints: Vec<Value> = self
            .active
            .iter()
            .map(|n| self.endpoint_json(n, false))
            .collect();
        let nodes: Vec<Value> = self
            .nodes
            .iter()
            .map(|(n, ip, subnets)| json!({"nodeName": n, "privateIP": ip, "subnets": subnets}))
            .collect();
        let mut status = json!({"nodes": nodes});
        if let Some(n) = &self.active {
            status["activeEndpoints"] = json!([self.endpoint_json(n, true)]);
        }
        let mut spec = json!({
            "nodeSelector": {"matchLabels": {"raven.openyurt.io/gateway": self.name}},
            "proxyConfig": {"Replicas": 0},
            "tunnelConfig": {"Replicas": self.replicas},
        });
        if !endpoints.is_empty() {
            spec["endpoints"] = json!(endpoints);
        }
        json!({
            "apiVersion": "raven.openyurt.io/v1beta1",
            "kind": "Gateway",
            "metadata": {"name": self.name},
            "spec": spec,
            "status": status,
        })
    }

    pub fn build(&self) -> Gateway {
        serde_json::from_value(self.to_json()).expect("fixture decodes as a v1beta1 Gateway")
    }
}

pub fn build(gws: &[Gw]) -> Vec<Gateway> {
    gws.iter().map(Gw::build).collect()
}

/// Reads a GatewayList fixture file from `tests/fixtures`.
pub fn load_list(file: &str) -> Vec<Gateway> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("fixture file readable");
    let list: Value = serde_json::from_str(&text).expect("fixture is JSON");
    serde_json::from_value(list["items"].clone()).expect("items decode as v1beta1 Gateways")
}

pub fn net(s: &str) -> IpNetwork {
    s.parse().expect("test prefix")
}

pub fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

pub fn nets(list: &[&str]) -> Vec<IpNetwork> {
    list.iter().map(|s| net(s)).collect()
}

/// `<dst> via <vtep> dev raven0 onlink table 9027 mtu <mtu> [src <src>]`.
pub fn via_vtep(dst: &str, vtep: &str, mtu: u32, src: Option<&str>) -> Route {
    Route {
        table: RAVEN0_TABLE,
        destination: net(dst),
        next_hop: NextHop::Vtep(v4(vtep)),
        mtu,
        source: src.map(ip),
    }
}

/// `<dst> dev <device> table 9028 mtu <mtu> src <src>`.
pub fn via_tunnel(dst: &str, device: &str, mtu: u32, src: &str) -> Route {
    Route {
        table: TUNNEL_TABLE,
        destination: net(dst),
        next_hop: NextHop::Device(device.into()),
        mtu,
        source: Some(ip(src)),
    }
}

pub fn member_rules() -> Vec<Rule> {
    vec![Rule {
        priority: 9027,
        selector: Selector::All,
        table: 9027,
    }]
}

pub fn gateway_rules(device: &str) -> Vec<Rule> {
    vec![
        Rule {
            priority: 9026,
            selector: Selector::IncomingInterface(device.into()),
            table: 9027,
        },
        Rule {
            priority: 9027,
            selector: Selector::All,
            table: 9028,
        },
    ]
}

pub fn solo_rules() -> Vec<Rule> {
    vec![Rule {
        priority: 9027,
        selector: Selector::All,
        table: 9028,
    }]
}

/// raven0 of a node with `ip`, with `remote` (members) and peers `(name, ip)`.
pub fn raven0(ip: &str, mtu: u32, remote: Option<&str>, peers: &[(&str, &str)]) -> VxlanPlan {
    VxlanPlan::new(
        v4(ip),
        [0xaa, 0x0f],
        mtu,
        remote.map(v4),
        peers
            .iter()
            .map(|(n, p)| VxlanPeer::new(n, v4(p), [0xaa, 0x0f]))
            .collect(),
    )
}
