//! Typed plan warnings: everything in the Gateway objects that the planner had to skip, exclude
//! or guess about.
//!
//! A warning never stops planning; the part it concerns is left out and the rest of the plan is
//! computed. The daemon turns each warning into a log line ([`std::fmt::Display`]), a metric
//! label ([`PlanWarning::kind`], a fixed set of snake_case names so label cardinality stays
//! bounded) and, in Kubernetes mode, an Event on [`PlanWarning::gateway`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;

pub use super::prefix::PrefixProblem;

/// Why a node's `privateIP` cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressProblem {
    /// `privateIP` is empty (upstream writes `""` when a node has no InternalIP).
    Empty,
    /// Not an IP address.
    Unparsable,
    /// An IPv6 address: the raven0 VTEP scheme (240.x.y.z) needs IPv4.
    NotIpv4,
}

impl fmt::Display for AddressProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty",
            Self::Unparsable => "not an IP address",
            Self::NotIpv4 => "not IPv4 (raven0 VTEP addresses are derived from IPv4)",
        })
    }
}

/// What a remote prefix collided with.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counterpart {
    /// A pod prefix (or extra subnet) of a node in the local domain.
    LocalSubnet { node: String, prefix: IpNetwork },
    /// The private (underlay) address of a node in the local domain: routing it into the tunnel
    /// would swallow raven0's own VXLAN packets.
    LocalNodeAddress { node: String, address: Ipv4Addr },
    /// A reserved range (loopback, link-local, multicast, class E which holds raven0's 240/8).
    Reserved { prefix: IpNetwork },
    /// A range the daemon declared local (host networks, service CIDR) in the options.
    Protected { prefix: IpNetwork },
    /// The public address of a gateway we send tunnel packets to (or our own): routing it into
    /// the tunnel would loop the tunnel's own packets.
    GatewayPublicIp { gateway: String, address: IpAddr },
    /// A subnet of a node of another remote domain: the address would belong to two domains.
    RemoteSubnet {
        gateway: String,
        node: String,
        prefix: IpNetwork,
    },
}

impl fmt::Display for Counterpart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LocalSubnet { node, prefix } => {
                write!(f, "local subnet {prefix} of node {node}")
            }
            Self::LocalNodeAddress { node, address } => {
                write!(f, "address {address} of local node {node}")
            }
            Self::Reserved { prefix } => write!(f, "reserved range {prefix}"),
            Self::Protected { prefix } => write!(f, "protected local range {prefix}"),
            Self::GatewayPublicIp { gateway, address } => {
                write!(f, "public IP {address} of gateway {gateway}")
            }
            Self::RemoteSubnet {
                gateway,
                node,
                prefix,
            } => write!(f, "subnet {prefix} of node {node} in gateway {gateway}"),
        }
    }
}

/// One thing the planner skipped or excluded. Sorted and de-duplicated in [`super::NodePlan`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PlanWarning {
    /// Two Gateway objects share a name (never from an API server; possible from files). Both
    /// are ignored because neither can be preferred deterministically.
    DuplicateGateway { gateway: String },
    /// A node is listed twice in one Gateway's `status.nodes`; the first by content is used.
    DuplicateNode { gateway: String, node: String },
    /// The local node is listed by several Gateways; the first by name is used (upstream takes
    /// the first in list order, which is not deterministic).
    NodeInSeveralGateways {
        node: String,
        chosen: String,
        ignored: String,
    },
    /// The Gateway has no active tunnel endpoint (yet): it is not reachable.
    NoActiveEndpoint { gateway: String },
    /// More than one active tunnel endpoint (upstream validation allows one); the first by node
    /// name is used.
    SeveralActiveEndpoints { gateway: String, used: String },
    /// The active endpoint's node is not in `status.nodes`, so its private IP is unknown.
    ActiveEndpointNotMember { gateway: String, node: String },
    /// The active endpoint has no `publicIP` yet.
    MissingPublicIp { gateway: String, node: String },
    /// The active endpoint's `publicIP` does not parse.
    MalformedPublicIp {
        gateway: String,
        node: String,
        value: String,
    },
    /// NAT traversal is on but the endpoint has not published its NAT type (and port):
    /// edge-to-edge tunnels with it are not attempted.
    MissingNatInfo { gateway: String, node: String },
    /// WireGuard: the endpoint has not published `config.publicKey` yet.
    MissingPublicKey { gateway: String, node: String },
    /// WireGuard: `config.publicKey` is not a base64 32-byte key.
    MalformedPublicKey { gateway: String, node: String },
    /// A node's `privateIP` is unusable: the node gets no raven0 entries.
    BadPrivateIp {
        gateway: String,
        node: String,
        value: String,
        problem: AddressProblem,
    },
    /// A subnet string of a node is unusable and is ignored.
    BadSubnet {
        gateway: String,
        node: String,
        value: String,
        problem: PrefixProblem,
    },
    /// Two nodes of one domain map to the same raven0 VTEP address (their IPs differ only in the
    /// first octet): neither can be reached over raven0 unambiguously, so `node` is left out.
    VtepCollision {
        gateway: String,
        node: String,
        other_node: String,
        vtep: Ipv4Addr,
    },
    /// A remote subnet overlaps something local or another domain: it is never routed.
    RemoteConflict {
        gateway: String,
        node: String,
        prefix: IpNetwork,
        with: Counterpart,
    },
    /// Subnets of two nodes of the local domain overlap: the gateway installs no return route
    /// for either, the CNI keeps handling them.
    LocalOverlap {
        gateway: String,
        node: String,
        prefix: IpNetwork,
        other_node: String,
        other_prefix: IpNetwork,
    },
    /// Both this domain and `gateway` are behind NAT, there is no central (non-NATed) gateway
    /// and no edge-to-edge tunnel is allowed: its subnets are not routed.
    Unreachable { gateway: String },
}

impl PlanWarning {
    /// Stable snake_case name for a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DuplicateGateway { .. } => "duplicate_gateway",
            Self::DuplicateNode { .. } => "duplicate_node",
            Self::NodeInSeveralGateways { .. } => "node_in_several_gateways",
            Self::NoActiveEndpoint { .. } => "no_active_endpoint",
            Self::SeveralActiveEndpoints { .. } => "several_active_endpoints",
            Self::ActiveEndpointNotMember { .. } => "active_endpoint_not_member",
            Self::MissingPublicIp { .. } => "missing_public_ip",
            Self::MalformedPublicIp { .. } => "malformed_public_ip",
            Self::MissingNatInfo { .. } => "missing_nat_info",
            Self::MissingPublicKey { .. } => "missing_public_key",
            Self::MalformedPublicKey { .. } => "malformed_public_key",
            Self::BadPrivateIp { .. } => "bad_private_ip",
            Self::BadSubnet { .. } => "bad_subnet",
            Self::VtepCollision { .. } => "vtep_collision",
            Self::RemoteConflict { .. } => "remote_conflict",
            Self::LocalOverlap { .. } => "local_overlap",
            Self::Unreachable { .. } => "unreachable",
        }
    }

    /// The Gateway object an Event about this warning belongs on.
    pub fn gateway(&self) -> &str {
        match self {
            Self::NodeInSeveralGateways { chosen, .. } => chosen,
            Self::DuplicateGateway { gateway }
            | Self::DuplicateNode { gateway, .. }
            | Self::NoActiveEndpoint { gateway }
            | Self::SeveralActiveEndpoints { gateway, .. }
            | Self::ActiveEndpointNotMember { gateway, .. }
            | Self::MissingPublicIp { gateway, .. }
            | Self::MalformedPublicIp { gateway, .. }
            | Self::MissingNatInfo { gateway, .. }
            | Self::MissingPublicKey { gateway, .. }
            | Self::MalformedPublicKey { gateway, .. }
            | Self::BadPrivateIp { gateway, .. }
            | Self::BadSubnet { gateway, .. }
            | Self::VtepCollision { gateway, .. }
            | Self::RemoteConflict { gateway, .. }
            | Self::LocalOverlap { gateway, .. }
            | Self::Unreachable { gateway } => gateway,
        }
    }
}

impl fmt::Display for PlanWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateGateway { gateway } => {
                write!(
                    f,
                    "gateway {gateway} is defined more than once; ignoring all copies"
                )
            }
            Self::DuplicateNode { gateway, node } => {
                write!(
                    f,
                    "gateway {gateway} lists node {node} more than once; using the first"
                )
            }
            Self::NodeInSeveralGateways {
                node,
                chosen,
                ignored,
            } => write!(
                f,
                "node {node} is listed by gateways {chosen} and {ignored}; using {chosen}"
            ),
            Self::NoActiveEndpoint { gateway } => {
                write!(f, "gateway {gateway} has no active tunnel endpoint")
            }
            Self::SeveralActiveEndpoints { gateway, used } => write!(
                f,
                "gateway {gateway} has several active tunnel endpoints; using node {used}"
            ),
            Self::ActiveEndpointNotMember { gateway, node } => write!(
                f,
                "active endpoint {node} of gateway {gateway} is not in its status.nodes"
            ),
            Self::MissingPublicIp { gateway, node } => write!(
                f,
                "active endpoint {node} of gateway {gateway} has no publicIP yet"
            ),
            Self::MalformedPublicIp {
                gateway,
                node,
                value,
            } => write!(
                f,
                "active endpoint {node} of gateway {gateway} has an invalid publicIP {value:?}"
            ),
            Self::MissingNatInfo { gateway, node } => write!(
                f,
                "active endpoint {node} of gateway {gateway} has no NAT type/port yet; \
                 no edge-to-edge tunnel with it"
            ),
            Self::MissingPublicKey { gateway, node } => write!(
                f,
                "active endpoint {node} of gateway {gateway} has no WireGuard publicKey yet"
            ),
            Self::MalformedPublicKey { gateway, node } => write!(
                f,
                "active endpoint {node} of gateway {gateway} has an invalid WireGuard publicKey"
            ),
            Self::BadPrivateIp {
                gateway,
                node,
                value,
                problem,
            } => write!(
                f,
                "node {node} of gateway {gateway} has an unusable privateIP {value:?}: {problem}"
            ),
            Self::BadSubnet {
                gateway,
                node,
                value,
                problem,
            } => write!(
                f,
                "node {node} of gateway {gateway}: ignoring subnet {value:?}: {problem}"
            ),
            Self::VtepCollision {
                gateway,
                node,
                other_node,
                vtep,
            } => write!(
                f,
                "nodes {node} and {other_node} of gateway {gateway} both map to raven0 \
                 address {vtep}; leaving {node} out"
            ),
            Self::RemoteConflict {
                gateway,
                node,
                prefix,
                with,
            } => write!(
                f,
                "not routing subnet {prefix} of node {node} in gateway {gateway}: \
                 it overlaps {with}"
            ),
            Self::LocalOverlap {
                gateway,
                node,
                prefix,
                other_node,
                other_prefix,
            } => write!(
                f,
                "subnet {prefix} of node {node} overlaps subnet {other_prefix} of node \
                 {other_node} in gateway {gateway}; no return route for it"
            ),
            Self::Unreachable { gateway } => write!(
                f,
                "gateway {gateway} is unreachable: both sides are behind NAT, there is no \
                 central gateway and no edge-to-edge tunnel is allowed"
            ),
        }
    }
}
