//! The proxy's pure view of the Gateways: which node belongs to which Gateway (and its
//! InternalIP), which ports each node may be reached on, what role this node plays (tunnel
//! server, tunnel client, or none), which tunnels a server accepts, and how a dial is routed.
//!
//! No I/O: built from a Gateway snapshot, table-tested. Every decision of the tunnel (roles,
//! seats, routes, the edge's open-relay check) is a method here, so the network code only acts.
//!
//! Semantics follow upstream raven (reference §1.1, §1.3, §2.2):
//! - A node belongs to the Gateway whose `status.nodes` lists it (the first by Gateway name if
//!   several do; the others are reported as a warning).
//! - The proxy is on for a node when its Gateway has `proxyConfig.replicas > 0`; a node in no
//!   Gateway uses the first exposed Gateway (upstream `findCentreGateway`).
//! - Tunnel server: an active `proxy` endpoint of an exposed Gateway. Tunnel client: an active
//!   `proxy` endpoint of any Gateway (it dials the *other* exposed Gateways), or a solo node.
//! - Allowed ports: `proxyHTTPPort` ∪ `proxyHTTPSPort` of the node's Gateway. When that
//!   Gateway lists none, the exposed Gateways' lists apply (upstream's internal Service only
//!   carries those ports, so that is what upstream lets through); the same for solo nodes.
//! - HTTPS ports: the `proxyHTTPSPort` entries of the list that applies; the front side speaks
//!   TLS to them (upstream's internal Service sends them to its TLS listener).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use raven_api::gateway::{EndpointType, v1beta1::Gateway};

use crate::proxy::DialError;

/// Which tunnels a dial can use: the tunnels of a Gateway's active proxy endpoints, or the
/// tunnel a solo node holds for itself.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    /// A Gateway, by name.
    Gateway(String),
    /// A solo node (in no Gateway), by node name.
    Solo(String),
}

impl Domain {
    /// Metric label: the Gateway name, or `solo` (solo node names would be unbounded).
    pub fn label(&self) -> &str {
        match self {
            Domain::Gateway(g) => g,
            Domain::Solo(_) => "solo",
        }
    }
}

/// One node as the proxy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    /// Its Gateway.
    pub gateway: String,
    /// `privateIP` from `status.nodes` (the InternalIP the edge dials).
    pub ip: IpAddr,
}

/// One Gateway as the proxy sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayEntry {
    /// `spec.exposeType` is `PublicIP` or `LoadBalancer`.
    pub exposed: bool,
    /// `proxyConfig.replicas > 0`.
    pub proxy_enabled: bool,
    /// `proxyHTTPPort` ∪ `proxyHTTPSPort`.
    pub ports: BTreeSet<u16>,
    /// `proxyHTTPSPort`: the targets spoken to over TLS.
    pub https_ports: BTreeSet<u16>,
    /// Active `proxy` endpoints that are members (`status.nodes`), in status order.
    pub proxy_nodes: Vec<String>,
    /// The active proxy endpoints with a `publicIP:port` (tunnel server addresses when
    /// exposed): node name and address.
    pub servers: Vec<(String, SocketAddr)>,
}

/// What this node runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roles {
    /// Serve tunnels (cloud): the name of this node's (exposed) Gateway.
    pub server: Option<String>,
    /// Hold tunnels to these server replicas (sorted, de-duplicated). Empty: no client.
    pub client: Vec<SocketAddr>,
}

/// Why a server refuses a tunnel from a (certificate-authenticated) node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SeatRefusal {
    /// The node is a member of a Gateway but not one of its active proxy endpoints.
    #[error("node {node:?} is not an active proxy endpoint of its gateway {gateway:?}")]
    NotActiveEndpoint {
        /// The node.
        node: String,
        /// Its Gateway.
        gateway: String,
    },
    /// The node belongs to the server's own Gateway (reached directly, never by tunnel).
    #[error("node {0:?} is in the server's own gateway")]
    OwnDomain(String),
    /// The node's Gateway has the proxy disabled (`proxyConfig.replicas` 0).
    #[error("the proxy is disabled for node {0:?}")]
    Disabled(String),
}

/// How a server reaches `node:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Same domain as the server: dial this address directly.
    Direct(SocketAddr),
    /// Open a stream over a tunnel of this domain.
    Tunnel(Domain),
}

/// Why the edge refuses a stream the server asked for (never an open relay).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EdgeRefusal {
    /// The target is not a node of the edge's own domain.
    #[error("node {0:?} is not in this tunnel's domain")]
    ForeignNode(String),
    /// The port is not allowed for that node.
    #[error("port {port} is not allowed for node {node:?}")]
    PortNotAllowed {
        /// Node.
        node: String,
        /// Port.
        port: u16,
    },
}

/// The view; build with [`ProxyView::build`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyView {
    nodes: BTreeMap<String, NodeEntry>,
    gateways: BTreeMap<String, GatewayEntry>,
    /// Union of the exposed Gateways' ports (the fallback allowed list).
    exposed_ports: BTreeSet<u16>,
    /// Union of the exposed Gateways' HTTPS ports (goes with `exposed_ports`).
    exposed_https_ports: BTreeSet<u16>,
    /// Skipped input, for the log.
    pub warnings: Vec<String>,
}

/// Parses upstream's comma-separated port list; bad pieces become warnings.
fn parse_ports(gw: &str, field: &str, text: &str, out: &mut BTreeSet<u16>, warn: &mut Vec<String>) {
    for piece in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match piece.parse::<u16>() {
            Ok(p) if p != 0 => {
                out.insert(p);
            }
            _ => warn.push(format!(
                "gateway {gw}: {field} entry {piece:?} is not a port"
            )),
        }
    }
}

impl ProxyView {
    /// Builds the view from a Gateway snapshot (any order; sorted by name here).
    pub fn build(gateways: &[Gateway]) -> Self {
        let mut view = ProxyView::default();
        let mut sorted: Vec<&Gateway> = gateways.iter().collect();
        sorted.sort_by(|a, b| a.name().cmp(b.name()));
        for gw in sorted {
            let name = gw.name().to_owned();
            if name.is_empty() || view.gateways.contains_key(&name) {
                view.warnings.push(format!(
                    "gateway {name:?}: empty or duplicate name, ignored"
                ));
                continue;
            }
            let mut entry = GatewayEntry {
                exposed: gw.spec.expose_type.is_exposed(),
                proxy_enabled: gw.spec.proxy_config.replicas > 0,
                ..GatewayEntry::default()
            };
            let pc = &gw.spec.proxy_config;
            parse_ports(
                &name,
                "proxyHTTPPort",
                &pc.proxy_http_port,
                &mut entry.ports,
                &mut view.warnings,
            );
            parse_ports(
                &name,
                "proxyHTTPSPort",
                &pc.proxy_https_port,
                &mut entry.https_ports,
                &mut view.warnings,
            );
            entry.ports.extend(entry.https_ports.iter().copied());
            if let Some(status) = &gw.status {
                for n in &status.nodes {
                    let Some(ip) = n.private_ip_addr() else {
                        view.warnings.push(format!(
                            "gateway {name}: node {:?} has no valid privateIP {:?}",
                            n.node_name, n.private_ip
                        ));
                        continue;
                    };
                    if let Some(prev) = view.nodes.get(&n.node_name) {
                        view.warnings.push(format!(
                            "node {:?} is listed by gateways {:?} and {name:?}; using {:?}",
                            n.node_name, prev.gateway, prev.gateway
                        ));
                        continue;
                    }
                    view.nodes.insert(
                        n.node_name.clone(),
                        NodeEntry {
                            gateway: name.clone(),
                            ip,
                        },
                    );
                }
                for ep in status.active_endpoints_of(EndpointType::Proxy) {
                    if view.nodes.get(&ep.node_name).map(|n| n.gateway.as_str()) != Some(&name) {
                        view.warnings.push(format!(
                            "gateway {name}: active proxy endpoint {:?} is not a member, ignored",
                            ep.node_name
                        ));
                        continue;
                    }
                    if !entry.proxy_nodes.contains(&ep.node_name) {
                        entry.proxy_nodes.push(ep.node_name.clone());
                    }
                    if let (Some(ip), Some(port)) = (ep.public_ip_addr(), ep.effective_port()) {
                        entry
                            .servers
                            .push((ep.node_name.clone(), SocketAddr::new(ip, port)));
                    }
                }
            }
            if entry.exposed {
                view.exposed_ports.extend(entry.ports.iter().copied());
                view.exposed_https_ports
                    .extend(entry.https_ports.iter().copied());
            }
            view.gateways.insert(name, entry);
        }
        view
    }

    /// The node's entry, if a Gateway lists it.
    pub fn node(&self, node: &str) -> Option<&NodeEntry> {
        self.nodes.get(node)
    }

    /// The Gateway's entry.
    pub fn gateway(&self, name: &str) -> Option<&GatewayEntry> {
        self.gateways.get(name)
    }

    /// The first exposed Gateway by name (upstream's centre Gateway for solo nodes).
    fn centre(&self) -> Option<&GatewayEntry> {
        self.gateways.values().find(|g| g.exposed)
    }

    /// Whether the proxy is on for `node` (its Gateway's replicas, or the centre's for a solo
    /// node).
    pub fn proxy_enabled_for(&self, node: &str) -> bool {
        match self.nodes.get(node) {
            Some(n) => self
                .gateways
                .get(&n.gateway)
                .is_some_and(|g| g.proxy_enabled),
            None => self.centre().is_some_and(|g| g.proxy_enabled),
        }
    }

    /// The port lists that apply to `node`: (all, HTTPS) of its Gateway when that lists any,
    /// else the exposed Gateways' (see the module doc).
    fn port_lists(&self, node: &str) -> (&BTreeSet<u16>, &BTreeSet<u16>) {
        self.nodes
            .get(node)
            .and_then(|n| self.gateways.get(&n.gateway))
            .filter(|g| !g.ports.is_empty())
            .map_or((&self.exposed_ports, &self.exposed_https_ports), |g| {
                (&g.ports, &g.https_ports)
            })
    }

    /// Whether `port` may be dialed on `node` (see the module doc for the fallback).
    pub fn port_allowed(&self, node: &str, port: u16) -> bool {
        self.port_lists(node).0.contains(&port)
    }

    /// Whether `port` of `node` is an HTTPS port (the front side speaks TLS to it).
    pub fn port_is_https(&self, node: &str, port: u16) -> bool {
        self.port_lists(node).1.contains(&port)
    }

    /// The roles of `node`.
    pub fn roles(&self, node: &str) -> Roles {
        let mut roles = Roles::default();
        if !self.proxy_enabled_for(node) {
            return roles;
        }
        let own = self.nodes.get(node).map(|n| n.gateway.as_str());
        if let Some(own) = own {
            let Some(g) = self.gateways.get(own) else {
                return roles;
            };
            if !g.proxy_nodes.iter().any(|n| n == node) {
                return roles; // a member: reached over its LAN by its gateway node
            }
            if g.exposed {
                roles.server = Some(own.to_owned());
            }
        }
        let mut addrs: Vec<SocketAddr> = self
            .gateways
            .iter()
            .filter(|(name, g)| g.exposed && Some(name.as_str()) != own)
            .flat_map(|(_, g)| g.servers.iter().map(|(_, addr)| *addr))
            .collect();
        addrs.sort();
        addrs.dedup();
        roles.client = addrs;
        roles
    }

    /// The nodes that are tunnel servers at `addr`: active proxy endpoints of exposed Gateways
    /// with that `publicIP:port`. An edge accepts a server certificate naming one of them only.
    pub fn servers_at(&self, addr: SocketAddr) -> Vec<&str> {
        self.gateways
            .values()
            .filter(|g| g.exposed)
            .flat_map(|g| g.servers.iter())
            .filter(|(_, a)| *a == addr)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Whether a tunnel server at `server` whose certificate names node `named` is who the
    /// Gateways say. The CA and the address are checked by TLS already, but in Kubernetes mode
    /// every node can get a server certificate for its own name with the IPs its Gateway
    /// claims: without this check a node that got an IP of the real server into its
    /// certificate could pose as the server to every edge. A certificate naming no node
    /// (operator-made files) is left to the CA and address checks.
    pub fn check_server_identity(
        &self,
        named: Option<&str>,
        server: SocketAddr,
    ) -> Result<(), String> {
        let Some(named) = named else {
            return Ok(());
        };
        let expected = self.servers_at(server);
        if expected.contains(&named) {
            return Ok(());
        }
        Err(format!(
            "the server certificate names node {named:?}, but {server} is the proxy endpoint of {expected:?}"
        ))
    }

    /// Which tunnel domain a server of Gateway `server_gateway` seats an authenticated `node`
    /// in, or why it refuses.
    pub fn seat(&self, server_gateway: &str, node: &str) -> Result<Domain, SeatRefusal> {
        if !self.proxy_enabled_for(node) {
            return Err(SeatRefusal::Disabled(node.to_owned()));
        }
        let Some(entry) = self.nodes.get(node) else {
            return Ok(Domain::Solo(node.to_owned()));
        };
        if entry.gateway == server_gateway {
            return Err(SeatRefusal::OwnDomain(node.to_owned()));
        }
        let active = self
            .gateways
            .get(&entry.gateway)
            .is_some_and(|g| g.proxy_nodes.iter().any(|n| n == node));
        if active {
            Ok(Domain::Gateway(entry.gateway.clone()))
        } else {
            Err(SeatRefusal::NotActiveEndpoint {
                node: node.to_owned(),
                gateway: entry.gateway.clone(),
            })
        }
    }

    /// How the server of `server_gateway` reaches `node:port`. A node no Gateway lists is
    /// routed to a solo tunnel of that name (the dialer reports an unknown node when there is
    /// none).
    pub fn route(&self, server_gateway: &str, node: &str, port: u16) -> Result<Route, DialError> {
        if !self.port_allowed(node, port) {
            return Err(DialError::PortNotAllowed {
                node: node.to_owned(),
                port,
            });
        }
        match self.nodes.get(node) {
            None => Ok(Route::Tunnel(Domain::Solo(node.to_owned()))),
            Some(n) if n.gateway == server_gateway => {
                Ok(Route::Direct(SocketAddr::new(n.ip, port)))
            }
            Some(n) => Ok(Route::Tunnel(Domain::Gateway(n.gateway.clone()))),
        }
    }

    /// The edge's check of a stream request: `node` must be in the domain this client (node
    /// `me`) serves and `port` allowed. Returns the address to dial; a solo node only serves
    /// itself, at `solo_ip`.
    pub fn edge_target(
        &self,
        me: &str,
        solo_ip: IpAddr,
        node: &str,
        port: u16,
    ) -> Result<SocketAddr, EdgeRefusal> {
        let target_ip = match (self.nodes.get(me), self.nodes.get(node)) {
            (Some(mine), Some(t)) if mine.gateway == t.gateway => t.ip,
            (None, None) if node == me => solo_ip,
            _ => return Err(EdgeRefusal::ForeignNode(node.to_owned())),
        };
        if !self.port_allowed(node, port) {
            return Err(EdgeRefusal::PortNotAllowed {
                node: node.to_owned(),
                port,
            });
        }
        Ok(SocketAddr::new(target_ip, port))
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
