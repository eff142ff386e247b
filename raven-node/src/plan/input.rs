//! Normalisation: Gateway objects → a sorted, parsed, de-duplicated view of the domains.
//!
//! Everything order-dependent in the input is made order-independent here (gateways sorted by
//! name, nodes by name, duplicates resolved by content), so every later step can iterate in
//! order and stay deterministic. Strings are borrowed from the objects; nothing is copied until
//! it lands in the output. Problems are recorded next to the data (not reported yet): only the
//! planner knows which of them concern this node.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use raven_api::gateway::EndpointType;
use raven_api::gateway::v1beta1::{Endpoint as ApiEndpoint, Gateway, NodeInfo};

use super::peers::NatType;
use super::prefix::{PrefixProblem, V4Prefix, parse_prefix};
use super::warnings::{AddressProblem, PlanWarning};

/// One member node of a domain.
#[derive(Debug)]
pub(crate) struct Node<'a> {
    pub name: &'a str,
    /// `privateIP` as written.
    pub raw_ip: &'a str,
    /// `privateIP` parsed.
    pub ip: Result<IpAddr, AddressProblem>,
    /// Usable subnets (plus the node's /32 with `forward_node_ip`), in status order.
    pub subnets: Vec<V4Prefix>,
    /// Subnet strings that were ignored, with the reason.
    pub bad_subnets: Vec<(&'a str, PrefixProblem)>,
}

impl Node<'_> {
    /// The IPv4 private address, if usable for raven0.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        match self.ip {
            Ok(IpAddr::V4(v4)) => Some(v4),
            _ => None,
        }
    }

    /// Why the address cannot carry raven0, if it cannot.
    pub fn ipv4_problem(&self) -> Option<AddressProblem> {
        match self.ip {
            Ok(IpAddr::V4(_)) => None,
            Ok(IpAddr::V6(_)) => Some(AddressProblem::NotIpv4),
            Err(problem) => Some(problem),
        }
    }
}

/// The active tunnel endpoint of a domain, resolved against its member list.
#[derive(Debug)]
pub(crate) struct Endpoint<'a> {
    pub node: &'a str,
    /// Index of the endpoint's node in [`Domain::nodes`].
    pub node_index: usize,
    pub raw_public_ip: &'a str,
    pub public_ip: Option<IpAddr>,
    /// Declared `port` (defaulted to 4500 when 0, as the webhook would).
    pub port: Option<u16>,
    pub public_port: Option<u16>,
    pub under_nat: bool,
    pub nat_type: NatType,
    pub public_key: Option<&'a str>,
}

/// What the domain's `status.activeEndpoints` says about its tunnel.
#[derive(Debug)]
pub(crate) enum EndpointState<'a> {
    /// No active endpoint of type tunnel.
    None,
    /// The active endpoint's node is not in `status.nodes`.
    NotMember(&'a str),
    /// Usable endpoint.
    Active(Endpoint<'a>),
}

/// One Gateway, normalised.
#[derive(Debug)]
pub(crate) struct Domain<'a> {
    pub name: &'a str,
    /// `spec.tunnelConfig.Replicas > 0` (upstream's `TunnelEngine.Status()`).
    pub tunnel_enabled: bool,
    /// Sorted by name, unique.
    pub nodes: Vec<Node<'a>>,
    pub endpoint: EndpointState<'a>,
}

impl<'a> Domain<'a> {
    /// The resolved endpoint, if any.
    pub fn active(&self) -> Option<&Endpoint<'a>> {
        match &self.endpoint {
            EndpointState::Active(ep) => Some(ep),
            _ => None,
        }
    }

    /// Index of a node by name.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.binary_search_by(|n| n.name.cmp(name)).ok()
    }
}

/// Normalises every Gateway. Gateway-level problems (duplicates) are reported right away;
/// node-level problems are kept in the nodes.
pub(crate) fn normalize<'a>(
    gateways: &'a [Gateway],
    forward_node_ip: bool,
    warnings: &mut Vec<PlanWarning>,
) -> Vec<Domain<'a>> {
    let mut by_name: BTreeMap<&str, Vec<&Gateway>> = BTreeMap::new();
    for gw in gateways {
        by_name.entry(gw.name()).or_default().push(gw);
    }
    let mut domains = Vec::with_capacity(by_name.len());
    for (name, copies) in by_name {
        if copies.len() > 1 {
            warnings.push(PlanWarning::DuplicateGateway {
                gateway: name.to_owned(),
            });
            continue;
        }
        if name.is_empty() {
            // An object without a name cannot be referred to by anyone; it only exists in broken
            // files. Dropped without a warning there is nothing to attach it to.
            continue;
        }
        domains.push(normalize_one(name, copies[0], forward_node_ip, warnings));
    }
    domains
}

fn normalize_one<'a>(
    name: &'a str,
    gw: &'a Gateway,
    forward_node_ip: bool,
    warnings: &mut Vec<PlanWarning>,
) -> Domain<'a> {
    let (infos, actives): (Vec<&NodeInfo>, Vec<&ApiEndpoint>) = match &gw.status {
        Some(status) => (
            status.nodes.iter().collect(),
            status
                .active_endpoints
                .iter()
                .filter(|e| e.type_ == EndpointType::Tunnel)
                .collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let nodes = normalize_nodes(name, infos, forward_node_ip, warnings);
    let endpoint = resolve_endpoint(name, actives, &nodes, warnings);
    Domain {
        name,
        tunnel_enabled: gw.spec.tunnel_config.replicas > 0,
        nodes,
        endpoint,
    }
}

fn normalize_nodes<'a>(
    gateway: &str,
    mut infos: Vec<&'a NodeInfo>,
    forward_node_ip: bool,
    warnings: &mut Vec<PlanWarning>,
) -> Vec<Node<'a>> {
    // Sorting by the whole content makes "the first duplicate" independent of input order.
    infos.sort_by(|a, b| {
        (&a.node_name, &a.private_ip, &a.subnets).cmp(&(&b.node_name, &b.private_ip, &b.subnets))
    });
    let mut nodes: Vec<Node<'a>> = Vec::with_capacity(infos.len());
    for info in infos {
        if nodes.last().is_some_and(|n| n.name == info.node_name) {
            warnings.push(PlanWarning::DuplicateNode {
                gateway: gateway.to_owned(),
                node: info.node_name.clone(),
            });
            continue;
        }
        if info.node_name.is_empty() {
            continue;
        }
        nodes.push(normalize_node(info, forward_node_ip));
    }
    nodes
}

fn normalize_node(info: &NodeInfo, forward_node_ip: bool) -> Node<'_> {
    let ip = parse_address(&info.private_ip);
    let mut subnets = Vec::with_capacity(info.subnets.len() + usize::from(forward_node_ip));
    let mut bad_subnets = Vec::new();
    for raw in &info.subnets {
        match parse_prefix(raw) {
            Ok(p) => subnets.push(p),
            Err(problem) => bad_subnets.push((raw.as_str(), problem)),
        }
    }
    if forward_node_ip && let Ok(IpAddr::V4(v4)) = ip {
        subnets.push(V4Prefix::host(v4));
    }
    Node {
        name: &info.node_name,
        raw_ip: &info.private_ip,
        ip,
        subnets,
        bad_subnets,
    }
}

fn parse_address(raw: &str) -> Result<IpAddr, AddressProblem> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(AddressProblem::Empty);
    }
    raw.parse().map_err(|_| AddressProblem::Unparsable)
}

fn resolve_endpoint<'a>(
    gateway: &str,
    mut actives: Vec<&'a ApiEndpoint>,
    nodes: &[Node<'a>],
    warnings: &mut Vec<PlanWarning>,
) -> EndpointState<'a> {
    // Upstream takes the first tunnel entry of a list the controller sorts by node name; we sort
    // ourselves so that a hand-written status in another order gives the same answer.
    actives.sort_by(|a, b| endpoint_order(a).cmp(&endpoint_order(b)));
    actives.dedup_by(|a, b| a == b);
    let Some(first) = actives.first() else {
        return EndpointState::None;
    };
    if actives.len() > 1 {
        warnings.push(PlanWarning::SeveralActiveEndpoints {
            gateway: gateway.to_owned(),
            used: first.node_name.clone(),
        });
    }
    let Ok(node_index) = nodes.binary_search_by(|n| n.name.cmp(first.node_name.as_str())) else {
        return EndpointState::NotMember(&first.node_name);
    };
    EndpointState::Active(Endpoint {
        node: &first.node_name,
        node_index,
        raw_public_ip: &first.public_ip,
        public_ip: first.public_ip.trim().parse().ok(),
        port: first.effective_port(),
        public_port: first.public_port_u16(),
        under_nat: first.under_nat,
        nat_type: NatType::parse(&first.nat_type),
        public_key: first.public_key(),
    })
}

/// Total order on endpoints: node name first (upstream's order), then the rest of the content.
fn endpoint_order(e: &ApiEndpoint) -> impl Ord + '_ {
    (
        &e.node_name,
        &e.public_ip,
        e.public_port,
        e.under_nat,
        &e.nat_type,
        e.port,
        &e.config,
    )
}
