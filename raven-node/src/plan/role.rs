//! Which part this node plays: gateway of its domain, member, solo, inactive or unmanaged.
//!
//! Membership is upstream's: the node's name in a Gateway's `status.nodes` (the controller fills
//! it from the `raven.openyurt.io/gateway` node label). The gateway is the node of the active
//! tunnel endpoint. A domain of one node that is its own endpoint is *solo*: tunnels, no raven0.

use std::net::Ipv4Addr;

use super::input::{Domain, EndpointState};
use super::vxlan::vtep_address;
use super::warnings::PlanWarning;

/// Why a node that belongs to a Gateway has no tunnel role right now. Its plan is empty: no
/// raven0, no routes, no rules; the daemon removes what it owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InactiveReason {
    /// `spec.tunnelConfig.Replicas` is 0 (upstream tears down too).
    TunnelDisabled,
    /// No active tunnel endpoint has been elected yet.
    NoActiveEndpoint,
    /// The active endpoint's node is not a member, so its address is unknown.
    EndpointNotMember,
    /// The gateway node's private IP cannot carry raven0 (empty, malformed, IPv6).
    GatewayAddressUnusable,
    /// This node's own private IP cannot carry raven0 (or, on a solo node, does not parse).
    OwnAddressUnusable,
    /// This node's VTEP address collides with another node of the domain.
    VtepCollision,
}

/// The node's role.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Listed by no Gateway: Raven has nothing to do on this node.
    Unmanaged,
    /// In a Gateway, but without a tunnel role for `reason`.
    Inactive {
        /// Gateway name.
        gateway: String,
        /// Why.
        reason: InactiveReason,
    },
    /// The only node of its Gateway and its active endpoint: tunnels, no raven0.
    Solo {
        /// Gateway name.
        gateway: String,
    },
    /// The active tunnel endpoint of a Gateway with other members.
    Gateway {
        /// Gateway name.
        gateway: String,
    },
    /// A member reaching other domains through its gateway over raven0.
    Member {
        /// Gateway name.
        gateway: String,
        /// The gateway (active endpoint) node.
        gateway_node: String,
    },
}

impl Role {
    /// Whether the node has raven0.
    pub fn has_raven0(&self) -> bool {
        matches!(self, Self::Gateway { .. } | Self::Member { .. })
    }

    /// Whether the node runs the tunnel.
    pub fn runs_tunnel(&self) -> bool {
        matches!(self, Self::Gateway { .. } | Self::Solo { .. })
    }
}

/// The local node's place, with the indices later steps need.
#[derive(Debug)]
pub(crate) struct Local {
    /// Index of the local domain.
    pub domain: usize,
    /// Index of this node in the domain.
    pub node: usize,
    /// Index of the gateway node in the domain (active roles).
    pub gateway_node: Option<usize>,
    /// Members (other than the gateway) that raven0 serves: usable IPv4 address, no VTEP
    /// collision. Sorted by name.
    pub raven0_members: Vec<usize>,
    /// The role.
    pub role: Role,
}

/// Finds the domain listing `node`: the first by name; the others are reported.
pub(crate) fn find_local(
    domains: &[Domain<'_>],
    node: &str,
    warnings: &mut Vec<PlanWarning>,
) -> Option<(usize, usize)> {
    let mut found: Option<(usize, usize)> = None;
    for (i, d) in domains.iter().enumerate() {
        let Some(n) = d.node_index(node) else {
            continue;
        };
        match found {
            None => found = Some((i, n)),
            Some((chosen, _)) => warnings.push(PlanWarning::NodeInSeveralGateways {
                node: node.to_owned(),
                chosen: domains[chosen].name.to_owned(),
                ignored: d.name.to_owned(),
            }),
        }
    }
    found
}

/// Decides the role of node `node` of domain `domain`, reporting the local domain's problems.
pub(crate) fn decide(
    domains: &[Domain<'_>],
    domain: usize,
    node: usize,
    warnings: &mut Vec<PlanWarning>,
) -> Local {
    let d = &domains[domain];
    let mut local = Local {
        domain,
        node,
        gateway_node: None,
        raven0_members: Vec::new(),
        role: Role::Unmanaged,
    };
    let inactive = |reason| Role::Inactive {
        gateway: d.name.to_owned(),
        reason,
    };
    subnet_warnings(d, warnings);
    if !d.tunnel_enabled {
        local.role = inactive(InactiveReason::TunnelDisabled);
        return local;
    }
    let ep = match &d.endpoint {
        EndpointState::None => {
            warnings.push(PlanWarning::NoActiveEndpoint {
                gateway: d.name.to_owned(),
            });
            local.role = inactive(InactiveReason::NoActiveEndpoint);
            return local;
        }
        EndpointState::NotMember(n) => {
            warnings.push(PlanWarning::ActiveEndpointNotMember {
                gateway: d.name.to_owned(),
                node: (*n).to_owned(),
            });
            local.role = inactive(InactiveReason::EndpointNotMember);
            return local;
        }
        EndpointState::Active(ep) => ep,
    };
    let gw = ep.node_index;
    local.gateway_node = Some(gw);
    if d.nodes.len() == 1 {
        // Solo: the tunnel needs a private IP of either family (identities), raven0 none.
        local.role = match d.nodes[gw].ip {
            Ok(_) => Role::Solo {
                gateway: d.name.to_owned(),
            },
            Err(problem) => {
                warnings.push(bad_ip(d, gw, problem));
                inactive(InactiveReason::OwnAddressUnusable)
            }
        };
        return local;
    }
    for (i, n) in d.nodes.iter().enumerate() {
        if let Some(problem) = n.ipv4_problem() {
            warnings.push(bad_ip(d, i, problem));
        }
    }
    let collided = vtep_collisions(d, gw, warnings);
    local.raven0_members = (0..d.nodes.len())
        .filter(|&i| i != gw && d.nodes[i].ipv4().is_some() && !collided[i])
        .collect();
    local.role = if d.nodes[node].ipv4().is_none() {
        inactive(InactiveReason::OwnAddressUnusable)
    } else if node == gw {
        Role::Gateway {
            gateway: d.name.to_owned(),
        }
    } else if d.nodes[gw].ipv4().is_none() {
        inactive(InactiveReason::GatewayAddressUnusable)
    } else if collided[node] {
        inactive(InactiveReason::VtepCollision)
    } else {
        Role::Member {
            gateway: d.name.to_owned(),
            gateway_node: d.nodes[gw].name.to_owned(),
        }
    };
    local
}

fn bad_ip(d: &Domain<'_>, i: usize, problem: super::warnings::AddressProblem) -> PlanWarning {
    PlanWarning::BadPrivateIp {
        gateway: d.name.to_owned(),
        node: d.nodes[i].name.to_owned(),
        value: d.nodes[i].raw_ip.to_owned(),
        problem,
    }
}

/// Reports every unusable subnet string of a domain's nodes.
pub(crate) fn subnet_warnings(d: &Domain<'_>, warnings: &mut Vec<PlanWarning>) {
    for n in &d.nodes {
        for (value, problem) in &n.bad_subnets {
            warnings.push(PlanWarning::BadSubnet {
                gateway: d.name.to_owned(),
                node: n.name.to_owned(),
                value: (*value).to_owned(),
                problem: *problem,
            });
        }
    }
}

/// Marks members whose VTEP address equals another node's. The gateway keeps its address (it
/// serves everyone); any member colliding with the gateway or with another member is left out
/// of raven0, because two peers with one VTEP address and MAC cannot be told apart.
fn vtep_collisions(d: &Domain<'_>, gw: usize, warnings: &mut Vec<PlanWarning>) -> Vec<bool> {
    let mut by_vtep: Vec<(Ipv4Addr, bool, usize)> = d
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.ipv4().map(|ip| (vtep_address(ip), i != gw, i)))
        .collect();
    // Per VTEP address: the gateway first (false < true), then members by name.
    by_vtep.sort_unstable();
    let mut collided = vec![false; d.nodes.len()];
    for run in by_vtep.chunk_by(|a, b| a.0 == b.0) {
        if run.len() < 2 {
            continue;
        }
        let first = run[0].2;
        for &(vtep, is_member, i) in run {
            if !is_member {
                continue;
            }
            collided[i] = true;
            let other = if i == first { run[1].2 } else { first };
            warnings.push(PlanWarning::VtepCollision {
                gateway: d.name.to_owned(),
                node: d.nodes[i].name.to_owned(),
                other_node: d.nodes[other].name.to_owned(),
                vtep,
            });
        }
    }
    collided
}
