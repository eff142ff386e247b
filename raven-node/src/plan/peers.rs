//! Who talks to whom: reachability of every remote domain, the central gateway, and the tunnel
//! peers of a gateway.
//!
//! Upstream's rules, kept so that a Rust gateway and an upstream gateway agree on who connects
//! to whom (upstream-raven-tunnel.md §4.1, §4.4):
//! - the **central gateway** is the last non-NATed usable endpoint by node name; usability is
//!   upstream's (`shouldHandleGateway`: an active tunnel endpoint whose node is a member, a
//!   non-empty `publicIP`, and with NAT traversal a NAT type and a public port unless
//!   symmetric), so every node in the cluster, upstream or ours, picks the same one;
//! - two NATed gateways talk **edge-to-edge** only with NAT traversal on, both NAT types known
//!   and not (Symmetric, Symmetric), (Symmetric, Port Restricted) or (Port Restricted,
//!   Symmetric);
//! - otherwise two NATed gateways reach each other **through the central gateway**: its peer
//!   carries their prefixes, and the central gateway adds the NATed domains it relays to its
//!   own side of the connection (IPsec selectors);
//! - everything else is a **direct** tunnel; the NATed side (or both, when neither is NATed)
//!   initiates.
//!
//! Deliberate differences, each explained where it is decided:
//! - a NATed remote without `publicIP` is still reachable from a non-NATed gateway (it
//!   initiates; upstream skips it, raven#35/PR #170); a non-NATed one is not;
//! - a domain that is unreachable (both NATed, no central, no edge) is not routed at all
//!   (upstream installs routes into a black hole) and is reported;
//! - the remote port of a direct tunnel is the endpoint's declared `port` (webhook default 4500,
//!   the LoadBalancer's port with `exposeType: LoadBalancer`); upstream assumes every gateway
//!   listens on its own `--vpn-bind-port`, which is the same number in every default install;
//! - edge-to-edge is decided by one symmetric rule for both drivers; upstream's libreswan driver
//!   skips edge-to-edge when no central gateway exists at all.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnetwork::IpNetwork;

use super::input::{Domain, Endpoint, EndpointState};
use super::options::{Options, TunnelDriver};
use super::prefix::V4Prefix;
use super::warnings::PlanWarning;
use raven_api::wellknown::{
    NAT_TYPE_FULL_CONE, NAT_TYPE_OPEN_INTERNET, NAT_TYPE_PORT_RESTRICTED_CONE,
    NAT_TYPE_RESTRICTED_CONE, NAT_TYPE_SYMMETRIC, NAT_TYPE_UNDEFINED,
};

/// NAT type an agent's STUN probe published in `natType`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatType {
    /// Not published (empty).
    Unknown,
    /// "Open Internet (no NAT)".
    OpenInternet,
    /// "Full cone NAT".
    FullCone,
    /// "Restricted cone NAT".
    RestrictedCone,
    /// "Port Restricted cone NAT".
    PortRestrictedCone,
    /// "Symmetric NAT": no stable public port.
    Symmetric,
    /// "Undefined": the probe could not classify the NAT.
    Undefined,
    /// Any other string, verbatim.
    Other(String),
}

impl NatType {
    /// Parses the wire string (exact, like upstream's comparisons).
    pub fn parse(text: &str) -> Self {
        match text {
            "" => Self::Unknown,
            NAT_TYPE_OPEN_INTERNET => Self::OpenInternet,
            NAT_TYPE_FULL_CONE => Self::FullCone,
            NAT_TYPE_RESTRICTED_CONE => Self::RestrictedCone,
            NAT_TYPE_PORT_RESTRICTED_CONE => Self::PortRestrictedCone,
            NAT_TYPE_SYMMETRIC => Self::Symmetric,
            NAT_TYPE_UNDEFINED => Self::Undefined,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Whether the probe produced a classification hole punching can rely on.
    fn known(&self) -> bool {
        !matches!(self, Self::Unknown | Self::Undefined)
    }
}

impl fmt::Display for NatType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unknown => "",
            Self::OpenInternet => NAT_TYPE_OPEN_INTERNET,
            Self::FullCone => NAT_TYPE_FULL_CONE,
            Self::RestrictedCone => NAT_TYPE_RESTRICTED_CONE,
            Self::PortRestrictedCone => NAT_TYPE_PORT_RESTRICTED_CONE,
            Self::Symmetric => NAT_TYPE_SYMMETRIC,
            Self::Undefined => NAT_TYPE_UNDEFINED,
            Self::Other(s) => s,
        })
    }
}

/// How the local domain reaches one domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// The local domain itself.
    Local,
    /// Not usable (no endpoint, unusable endpoint): reported, not routed.
    Skipped,
    /// A direct tunnel between the two gateways.
    Direct,
    /// A direct tunnel between two NATed gateways by hole punching.
    Edge,
    /// Through the central gateway (the domain index).
    ViaCentral(usize),
    /// Both NATed, no central gateway, no edge-to-edge: reported, not routed.
    Unreachable,
}

impl Reach {
    /// Whether the domain's prefixes are routed.
    pub fn routed(self) -> bool {
        matches!(self, Self::Direct | Self::Edge | Self::ViaCentral(_))
    }

    /// Whether we send tunnel packets to the domain's endpoint.
    pub fn is_peer(self) -> bool {
        matches!(self, Self::Direct | Self::Edge)
    }
}

/// Reachability of every domain from the local one.
#[derive(Debug)]
pub(crate) struct Topology {
    /// Per domain, same indices as the domain list.
    pub reach: Vec<Reach>,
    /// Domain index of the central gateway.
    pub central: Option<usize>,
}

/// Upstream's `shouldHandleGateway` for a resolved endpoint.
fn upstream_usable(ep: &Endpoint<'_>, options: &Options) -> bool {
    !ep.raw_public_ip.is_empty()
        && (!options.nat_traversal
            || (ep.nat_type != NatType::Unknown
                && (ep.public_port.is_some() || ep.nat_type == NatType::Symmetric)))
}

/// The NAT type of an endpoint that can take part in edge-to-edge tunnels: NAT traversal on,
/// behind NAT, usable by upstream's rule, a public IP that parses and a known NAT type.
fn hole_punching<'e>(ep: &'e Endpoint<'_>, options: &Options) -> Option<&'e NatType> {
    (options.nat_traversal
        && ep.under_nat
        && upstream_usable(ep, options)
        && ep.public_ip.is_some()
        && ep.nat_type.known())
    .then_some(&ep.nat_type)
}

/// Whether two hole-punching NAT types can meet: not (Symmetric, Symmetric), (Symmetric, Port
/// Restricted) or (Port Restricted, Symmetric).
fn punchable(a: &NatType, b: &NatType) -> bool {
    use NatType::{PortRestrictedCone as Prc, Symmetric as Sym};
    !matches!((a, b), (Sym, Sym) | (Sym, Prc) | (Prc, Sym))
}

/// Upstream's `EnableCreateEdgeConnection`, plus what dialing needs (both public IPs parse).
/// Symmetric in its arguments, so both ends of a pair decide the same.
pub(crate) fn edge_allowed(a: &Endpoint<'_>, b: &Endpoint<'_>, options: &Options) -> bool {
    match (hole_punching(a, options), hole_punching(b, options)) {
        (Some(x), Some(y)) => punchable(x, y),
        _ => false,
    }
}

/// Upstream's `FindCentralGwFn`: among usable endpoints, the last non-NATed one by node name
/// (ties, which need one node in two gateways, broken by gateway name).
fn central(domains: &[Domain<'_>], options: &Options) -> Option<usize> {
    domains
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.active().map(|ep| (i, d, ep)))
        .filter(|(_, _, ep)| !ep.under_nat && upstream_usable(ep, options))
        .max_by_key(|(_, d, ep)| (ep.node, d.name))
        .map(|(i, _, _)| i)
}

/// Classifies every domain as seen from `local`, whose endpoint must be active.
pub(crate) fn classify(
    domains: &[Domain<'_>],
    local: usize,
    options: &Options,
    warnings: &mut Vec<PlanWarning>,
) -> Topology {
    let central = central(domains, options);
    let Some(me) = domains[local].active() else {
        // Callers only classify for active roles; an inactive local domain reaches nothing.
        return Topology {
            reach: vec![Reach::Skipped; domains.len()],
            central,
        };
    };
    endpoint_warnings(&domains[local], me, me.under_nat, options, warnings);
    let mut reach = vec![Reach::Skipped; domains.len()];
    let mut pending = Vec::new();
    for (i, d) in domains.iter().enumerate() {
        if i == local {
            reach[i] = Reach::Local;
            continue;
        }
        let ep = match &d.endpoint {
            EndpointState::None => {
                if d.tunnel_enabled {
                    warnings.push(PlanWarning::NoActiveEndpoint {
                        gateway: d.name.to_owned(),
                    });
                }
                continue;
            }
            EndpointState::NotMember(node) => {
                warnings.push(PlanWarning::ActiveEndpointNotMember {
                    gateway: d.name.to_owned(),
                    node: (*node).to_owned(),
                });
                continue;
            }
            EndpointState::Active(ep) => ep,
        };
        let node = &d.nodes[ep.node_index];
        if let Err(problem) = node.ip {
            // The private IP names the peer (IKE identities); without it there is no peer.
            warnings.push(PlanWarning::BadPrivateIp {
                gateway: d.name.to_owned(),
                node: node.name.to_owned(),
                value: node.raw_ip.to_owned(),
                problem,
            });
            continue;
        }
        endpoint_warnings(d, ep, me.under_nat, options, warnings);
        reach[i] = if me.under_nat && ep.under_nat {
            if edge_allowed(me, ep, options) {
                Reach::Edge
            } else {
                pending.push(i);
                Reach::Unreachable
            }
        } else if !ep.under_nat && ep.public_ip.is_none() {
            // Nobody can dial a non-NATed gateway without its address, and it cannot know it
            // should dial us first. Reported by `endpoint_warnings`.
            Reach::Skipped
        } else {
            // Either it is public (we dial it) or we are public and it dials us (a NATed remote
            // without publicIP stays reachable: deliberate difference from upstream).
            Reach::Direct
        };
    }
    for i in pending {
        match central {
            Some(c) if reach[c] == Reach::Direct => reach[i] = Reach::ViaCentral(c),
            _ => warnings.push(PlanWarning::Unreachable {
                gateway: domains[i].name.to_owned(),
            }),
        }
    }
    Topology { reach, central }
}

/// Warnings about an endpoint's published data, only where the data matters: a public IP for
/// anything not behind NAT, NAT information when NAT traversal could use it.
fn endpoint_warnings(
    d: &Domain<'_>,
    ep: &Endpoint<'_>,
    local_nated: bool,
    options: &Options,
    warnings: &mut Vec<PlanWarning>,
) {
    let gateway = || d.name.to_owned();
    let node = || ep.node.to_owned();
    if ep.public_ip.is_none() {
        if !ep.raw_public_ip.trim().is_empty() {
            warnings.push(PlanWarning::MalformedPublicIp {
                gateway: gateway(),
                node: node(),
                value: ep.raw_public_ip.to_owned(),
            });
        } else if !ep.under_nat {
            warnings.push(PlanWarning::MissingPublicIp {
                gateway: gateway(),
                node: node(),
            });
        }
    }
    let nat_info_missing = ep.nat_type == NatType::Unknown
        || (ep.public_port.is_none() && ep.nat_type != NatType::Symmetric);
    if options.nat_traversal && local_nated && ep.under_nat && nat_info_missing {
        warnings.push(PlanWarning::MissingNatInfo {
            gateway: gateway(),
            node: node(),
        });
    }
}

/// A direct or edge-to-edge tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerMode {
    /// Gateway to gateway where at least one side has a reachable public address.
    Direct,
    /// Between two NATed gateways by hole punching (NAT traversal).
    EdgeToEdge,
}

/// This gateway's own side of its tunnels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalEndpoint {
    /// Local Gateway name.
    pub gateway: String,
    /// This node's name.
    pub node: String,
    /// This node's private IP (upstream's IKE `--host` and identity prefix).
    pub private_ip: IpAddr,
    /// Published public IP, if known yet.
    pub public_ip: Option<IpAddr>,
    /// Declared behind NAT.
    pub under_nat: bool,
    /// Published NAT type.
    pub nat_type: NatType,
    /// The local domain's prefixes (every valid subnet of every member, merged): our side of
    /// every tunnel's traffic selectors.
    pub prefixes: Vec<IpNetwork>,
}

/// A remote domain whose traffic crosses this gateway's tunnels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteDomain {
    /// Gateway name.
    pub gateway: String,
    /// Its routed prefixes (after conflict exclusion), merged per domain exactly as upstream's
    /// `MergeCIDRs`, so IPsec selectors match an upstream peer's.
    pub prefixes: Vec<IpNetwork>,
    /// Index in [`TunnelPlan::peers`] of the peer that carries it.
    pub via: usize,
    /// Behind NAT.
    pub under_nat: bool,
    /// Its NAT type when it can do edge-to-edge tunnels (NAT traversal on, NAT information and
    /// public IP published); `None` otherwise.
    pub hole_punching: Option<NatType>,
}

/// One tunnel peer of this gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelPeer {
    /// The peer's Gateway name.
    pub gateway: String,
    /// Its active endpoint node.
    pub node: String,
    /// That node's private IP (upstream IKE identities embed it).
    pub private_ip: IpAddr,
    /// Its published public IP.
    pub public_ip: Option<IpAddr>,
    /// Where to send: public IP and port. For a NATed peer of a direct tunnel this is only a
    /// first guess (the real NAT mapping is learned from its packets); `None` when no public IP
    /// is known, which is fine when the peer initiates.
    pub endpoint: Option<SocketAddr>,
    /// Direct or edge-to-edge.
    pub mode: PeerMode,
    /// The peer is behind NAT.
    pub under_nat: bool,
    /// The peer's published NAT type.
    pub nat_type: NatType,
    /// This side must initiate and keep the path open (upstream: the NATed side, both sides when
    /// neither is NATed, and towards any edge peer that is not symmetric).
    pub initiator: bool,
    /// `config.publicKey` of the peer (well-formed base64 of 32 bytes), whatever the driver.
    pub public_key: Option<String>,
    /// Indices into [`TunnelPlan::domains`] reached through this peer: its own domain first,
    /// then the NATed domains it relays for us when it is the central gateway.
    pub domains: Vec<usize>,
}

/// Everything the tunnel driver of a gateway needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelPlan {
    /// Driver.
    pub driver: TunnelDriver,
    /// Tunnel device name.
    pub device: String,
    /// Local listen port.
    pub listen_port: u16,
    /// Our side.
    pub local: LocalEndpoint,
    /// The central gateway `(gateway, node)`, as every node computes it.
    pub central: Option<(String, String)>,
    /// Remote domains routed through the tunnel, sorted by gateway name.
    pub domains: Vec<RemoteDomain>,
    /// Peers, sorted by gateway name.
    pub peers: Vec<TunnelPeer>,
    /// We are the central gateway: NATed peers reach each other through us (see
    /// [`TunnelPlan::transit_domains`]).
    pub relays: bool,
}

impl TunnelPlan {
    /// The prefixes a peer carries (WireGuard allowed IPs): its domains' prefixes.
    pub fn allowed_prefixes(&self, peer: &TunnelPeer) -> impl Iterator<Item = &IpNetwork> {
        peer.domains
            .iter()
            .flat_map(|&d| self.domains[d].prefixes.iter())
    }

    /// The domains a peer reaches through us when we are the central gateway: for a NATed peer,
    /// every other NATed domain it cannot reach edge-to-edge (upstream's "left subnets += other
    /// NATed gateways"; IPsec adds them to our side of that peer's selectors).
    ///
    /// Computed on demand rather than stored: the sets of all peers together grow with the
    /// square of the number of NATed domains, and only a selector-based driver needs them.
    pub fn transit_domains<'p>(
        &'p self,
        peer: &'p TunnelPeer,
    ) -> impl Iterator<Item = &'p RemoteDomain> + 'p {
        let own = peer.domains.first().copied();
        let relaying = self.relays && own.is_some_and(|o| self.domains[o].under_nat);
        self.domains
            .iter()
            .enumerate()
            .filter(move |&(i, v)| {
                let Some(own) = own.filter(|_| relaying) else {
                    return false;
                };
                let r = &self.domains[own];
                let edge = match (&v.hole_punching, &r.hole_punching) {
                    (Some(x), Some(y)) => punchable(x, y),
                    _ => false,
                };
                i != own && v.under_nat && !edge
            })
            .map(|(_, v)| v)
    }
}

/// Builds the tunnel plan of the local gateway. `routed[i]` are domain `i`'s routed prefixes.
pub(crate) fn tunnel_plan(
    domains: &[Domain<'_>],
    local: usize,
    topology: &Topology,
    routed: &[Vec<V4Prefix>],
    local_prefixes: &[V4Prefix],
    options: &Options,
    warnings: &mut Vec<PlanWarning>,
) -> Option<TunnelPlan> {
    let me_domain = &domains[local];
    let me = me_domain.active()?;
    let private_ip = me_domain.nodes[me.node_index].ip.ok()?;
    let mut out_domain = vec![usize::MAX; domains.len()];
    let mut out_peer = vec![usize::MAX; domains.len()];
    let mut peers = Vec::new();
    let mut remote = Vec::new();
    for (i, d) in domains.iter().enumerate() {
        let reach = topology.reach[i];
        if !reach.routed() {
            continue;
        }
        let ep = d
            .active()
            .expect("classify() routes only domains with an active endpoint");
        out_domain[i] = remote.len();
        remote.push(RemoteDomain {
            gateway: d.name.to_owned(),
            prefixes: routed[i].iter().map(|p| p.to_network()).collect(),
            via: usize::MAX,
            under_nat: ep.under_nat,
            hole_punching: hole_punching(ep, options).cloned(),
        });
        if reach.is_peer() {
            out_peer[i] = peers.len();
            let mut p = peer(d, ep, reach, me, options, warnings);
            p.domains.push(out_domain[i]);
            remote[out_domain[i]].via = out_peer[i];
            peers.push(p);
        }
    }
    for (i, reach) in topology.reach.iter().enumerate() {
        if let Reach::ViaCentral(c) = *reach {
            let (d, p) = (out_domain[i], out_peer[c]);
            remote[d].via = p;
            peers[p].domains.push(d);
        }
    }
    Some(TunnelPlan {
        driver: options.driver,
        device: options.device().to_owned(),
        listen_port: options.listen_port,
        local: LocalEndpoint {
            gateway: me_domain.name.to_owned(),
            node: me.node.to_owned(),
            private_ip,
            public_ip: me.public_ip,
            under_nat: me.under_nat,
            nat_type: me.nat_type.clone(),
            prefixes: local_prefixes.iter().map(|p| p.to_network()).collect(),
        },
        central: topology.central.and_then(|c| {
            domains[c]
                .active()
                .map(|ep| (domains[c].name.to_owned(), ep.node.to_owned()))
        }),
        domains: remote,
        peers,
        relays: topology.central == Some(local),
    })
}

fn peer(
    d: &Domain<'_>,
    ep: &Endpoint<'_>,
    reach: Reach,
    me: &Endpoint<'_>,
    options: &Options,
    warnings: &mut Vec<PlanWarning>,
) -> TunnelPeer {
    let (mode, port, initiator) = if reach == Reach::Edge {
        // Hole punching: the port STUN saw; a symmetric NAT has none, so wait for it to come to
        // us (upstream's WireGuard guesses our own port, libreswan uses %any).
        let symmetric = ep.nat_type == NatType::Symmetric;
        let port = if symmetric {
            options.listen_port
        } else {
            ep.public_port.unwrap_or(options.listen_port)
        };
        (PeerMode::EdgeToEdge, port, !symmetric)
    } else {
        (
            PeerMode::Direct,
            ep.port.unwrap_or(options.listen_port),
            me.under_nat || !ep.under_nat,
        )
    };
    let public_key = match ep.public_key {
        Some(key) if is_wireguard_key(key) => Some(key.to_owned()),
        Some(_) => {
            warnings.push(PlanWarning::MalformedPublicKey {
                gateway: d.name.to_owned(),
                node: ep.node.to_owned(),
            });
            None
        }
        None => {
            if options.driver == TunnelDriver::WireGuard {
                warnings.push(PlanWarning::MissingPublicKey {
                    gateway: d.name.to_owned(),
                    node: ep.node.to_owned(),
                });
            }
            None
        }
    };
    TunnelPeer {
        gateway: d.name.to_owned(),
        node: ep.node.to_owned(),
        private_ip: d.nodes[ep.node_index]
            .ip
            .expect("classify() skips endpoints whose private IP does not parse"),
        public_ip: ep.public_ip,
        endpoint: ep.public_ip.map(|ip| SocketAddr::new(ip, port)),
        mode,
        under_nat: ep.under_nat,
        nat_type: ep.nat_type.clone(),
        initiator,
        public_key,
        domains: Vec::new(),
    }
}

/// A WireGuard key as published: standard base64 of 32 bytes (43 symbols and one `=`, the last
/// symbol carrying only 4 bits).
fn is_wireguard_key(key: &str) -> bool {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = key.as_bytes();
    if b.len() != 44 || b[43] != b'=' {
        return false;
    }
    let value = |c: u8| ALPHABET.iter().position(|&a| a == c);
    b[..43].iter().all(|&c| value(c).is_some()) && value(b[42]).is_some_and(|v| v & 0b11 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_types_round_trip() {
        for text in [
            "",
            "Open Internet (no NAT)",
            "Full cone NAT",
            "Restricted cone NAT",
            "Port Restricted cone NAT",
            "Symmetric NAT",
            "Undefined",
            "something new",
        ] {
            assert_eq!(NatType::parse(text).to_string(), text);
        }
        assert_eq!(
            NatType::parse("symmetric nat"),
            NatType::Other("symmetric nat".into())
        );
    }

    #[test]
    fn wireguard_keys() {
        assert!(is_wireguard_key(
            "YAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
        ));
        assert!(is_wireguard_key(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        ));
        assert!(!is_wireguard_key(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB="
        ));
        assert!(!is_wireguard_key("short="));
        assert!(!is_wireguard_key(
            "YAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk"
        ));
        assert!(!is_wireguard_key(
            "YAnz5TF-lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
        ));
    }
}
