//! The gateway election: what a Gateway's `status` should be, given its spec, its member nodes,
//! their health Leases and the cluster feature switches.
//!
//! Upstream's "pickup" semantics, made deterministic and health-aware:
//! - per endpoint type (proxy, tunnel), and only when that feature is enabled in `raven-cfg`;
//! - only `spec.endpoints` of that type, on member nodes (labelled into this Gateway) that are
//!   Ready and whose `raven-node` Lease has not expired;
//! - at most `Replicas` of them (0 or a negative value elects nothing);
//! - sticky: an active endpoint that is still eligible keeps its seat; when `Replicas` shrinks,
//!   the sticky endpoints earliest in spec order stay (upstream: random map order);
//! - free seats are filled in spec order;
//! - `status.activeEndpoints` are copies of the spec endpoints (so the agent's publicIP,
//!   natType, publicPort and publicKey flow through) with `config["enable-…"] = "true"`,
//!   sorted by (nodeName, type);
//! - `status.nodes` lists every member, ready or not, with its private IP and every pod CIDR
//!   (dual-stack), plus the extra allowed source CIDRs on the active tunnel node.
//!
//! [`status_changed`] tells the reconciler whether a write is needed, and [`Transition`]s are
//! computed from (nodeName, type) sets, so events fire only on real changes (upstream compares
//! whole endpoints, including the config keys it adds itself, and emits "Elected" events on
//! every reconcile).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::jiff::Timestamp;
use raven_api::gateway::EndpointType;
use raven_api::gateway::v1beta1::{Endpoint, Gateway, GatewayStatus, NodeInfo};
use raven_api::gateway::validation::parse_extra_allowed_source_cidrs;
use raven_api::wellknown::{
    ANNOTATION_EXTRA_ALLOWED_SOURCE_CIDRS, CONFIG_ENABLE_L3_TUNNEL, CONFIG_ENABLE_L7_PROXY,
    CONFIG_TRUE, EVENT_ACTIVE_ENDPOINT_ELECTED, EVENT_ACTIVE_ENDPOINT_LOST, config_enabled,
};

use crate::model::{LeaseView, NodeView};

/// Event reason of a [`Transition::Failover`] (ours; upstream has only Elected and Lost).
pub const EVENT_ACTIVE_ENDPOINT_FAILOVER: &str = "ActiveEndpointFailover";

/// The cluster-wide feature switches from `kube-system/raven-cfg`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// `enable-l7-proxy`: elect proxy endpoints.
    pub proxy: bool,
    /// `enable-l3-tunnel`: elect tunnel endpoints.
    pub tunnel: bool,
}

impl Features {
    /// Reads the switches like upstream: a key enables its feature only when its value is
    /// `"true"` in any case; a missing ConfigMap (`None`) or key disables it.
    pub fn from_raven_cfg(data: Option<&BTreeMap<String, String>>) -> Features {
        let get = |k: &str| data.and_then(|d| d.get(k)).map(String::as_str);
        Features {
            proxy: config_enabled(get(CONFIG_ENABLE_L7_PROXY)),
            tunnel: config_enabled(get(CONFIG_ENABLE_L3_TUNNEL)),
        }
    }

    /// Whether endpoints of this type are elected at all.
    pub fn enabled(&self, t: &EndpointType) -> bool {
        match t {
            EndpointType::Proxy => self.proxy,
            EndpointType::Tunnel => self.tunnel,
            EndpointType::Unknown(_) => false,
        }
    }
}

/// How a member without a health Lease is treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LeasePolicy {
    /// No Lease means "no health signal": only Ready counts (upstream behaviour). Needed while
    /// nodes run an agent that renews no Lease (upstream raven-agent, or during a rollout).
    /// An existing Lease that expired still takes the seat away.
    #[default]
    MissingIsHealthy,
    /// No Lease means not eligible: every candidate must run a Lease-renewing `raven-node`.
    Required,
}

/// Everything one election reads. Built by the observer; nothing here does I/O.
#[derive(Clone, Copy, Debug)]
pub struct ElectionInput<'a> {
    /// The Gateway as stored (spec and current status).
    pub gateway: &'a Gateway,
    /// Nodes labelled `raven.openyurt.io/gateway=<gateway name>`, in any order.
    pub members: &'a [NodeView],
    /// Health Leases by node name.
    pub leases: &'a BTreeMap<String, LeaseView>,
    /// Feature switches from `raven-cfg`.
    pub features: Features,
    /// Treatment of members without a Lease.
    pub lease_policy: LeasePolicy,
    /// The current time (injected so elections are reproducible).
    pub now: Timestamp,
}

/// Why an endpoint cannot hold (or lost) a seat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SeatLoss {
    /// Its feature is disabled in `raven-cfg`.
    FeatureDisabled,
    /// No longer in `spec.endpoints` with this type.
    RemovedFromSpec,
    /// Its node is not (or no longer) labelled into the Gateway, or does not exist.
    NotMember,
    /// Its node's Ready condition is not True.
    NotReady,
    /// Its node's health Lease expired.
    LeaseExpired,
    /// Its node has no health Lease and the policy requires one.
    LeaseMissing,
    /// Still eligible, but `Replicas` leaves no seat for it.
    OverCapacity,
}

impl fmt::Display for SeatLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SeatLoss::FeatureDisabled => "feature disabled in raven-cfg",
            SeatLoss::RemovedFromSpec => "removed from spec.endpoints",
            SeatLoss::NotMember => "node is not a member of the gateway",
            SeatLoss::NotReady => "node is not Ready",
            SeatLoss::LeaseExpired => "node health lease expired",
            SeatLoss::LeaseMissing => "node has no health lease",
            SeatLoss::OverCapacity => "no seat left under Replicas",
        })
    }
}

/// A real change of the active set of one endpoint type; one Event each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// `node` gained a seat that nobody lost.
    Elected {
        /// Node of the new active endpoint.
        node: String,
        /// Endpoint type.
        endpoint_type: EndpointType,
    },
    /// `node` lost its seat and nobody took it.
    LostSeat {
        /// Node of the former active endpoint.
        node: String,
        /// Endpoint type.
        endpoint_type: EndpointType,
        /// Why.
        reason: SeatLoss,
    },
    /// The seat of `from` went to `to`.
    Failover {
        /// Endpoint type.
        endpoint_type: EndpointType,
        /// Former active node.
        from: String,
        /// New active node.
        to: String,
        /// Why `from` lost the seat.
        reason: SeatLoss,
    },
}

impl Transition {
    /// The Event reason (upstream's reasons for Elected and Lost).
    pub fn event_reason(&self) -> &'static str {
        match self {
            Transition::Elected { .. } => EVENT_ACTIVE_ENDPOINT_ELECTED,
            Transition::LostSeat { .. } => EVENT_ACTIVE_ENDPOINT_LOST,
            Transition::Failover { .. } => EVENT_ACTIVE_ENDPOINT_FAILOVER,
        }
    }

    /// Whether the Event is a Warning (anything that lost a seat) or Normal.
    pub fn is_warning(&self) -> bool {
        !matches!(self, Transition::Elected { .. })
    }

    /// Human-readable Event message.
    pub fn message(&self) -> String {
        match self {
            Transition::Elected {
                node,
                endpoint_type,
            } => format!("{endpoint_type} endpoint on node {node} elected active"),
            Transition::LostSeat {
                node,
                endpoint_type,
                reason,
            } => format!("{endpoint_type} endpoint on node {node} is no longer active: {reason}"),
            Transition::Failover {
                endpoint_type,
                from,
                to,
                reason,
            } => format!("{endpoint_type} endpoint moved from node {from} to node {to}: {reason}"),
        }
    }
}

/// One Event to publish about a Gateway: its transitions of one reason, merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitionEvent {
    /// Event reason ([`Transition::event_reason`]).
    pub reason: &'static str,
    /// Warning (a seat was lost) or Normal.
    pub warning: bool,
    /// The transitions' messages joined by `"; "`, in transition order.
    pub message: String,
}

/// Merges the transitions of one election into one Event per reason (first-seen order), so a
/// Gateway whose proxy and tunnel seats are both filled gets one "Elected" Event, not two:
/// Events are writes, and cold start at 1 000 Gateways paid 2 000 of them.
pub fn transition_events(transitions: &[Transition]) -> Vec<TransitionEvent> {
    let mut out: Vec<TransitionEvent> = Vec::new();
    for t in transitions {
        let reason = t.event_reason();
        match out.iter_mut().find(|e| e.reason == reason) {
            Some(e) => {
                e.message.push_str("; ");
                e.message.push_str(&t.message());
            }
            None => out.push(TransitionEvent {
                reason,
                warning: t.is_warning(),
                message: t.message(),
            }),
        }
    }
    out
}

/// The outcome of one election.
#[derive(Clone, Debug, PartialEq)]
pub struct Election {
    /// The status the Gateway should have (normalized: see [`normalize_status`]).
    pub status: GatewayStatus,
    /// Real transitions since the stored status, in (type, node) order.
    pub transitions: Vec<Transition>,
    /// Things wrong with the Gateway that the election worked around (for an Event/condition).
    pub problems: Vec<String>,
}

/// The endpoint types, in the order they are elected and reported.
const TYPES: [EndpointType; 2] = [EndpointType::Proxy, EndpointType::Tunnel];

/// Runs the election. Pure and deterministic: the same input gives the same output whatever
/// the order of `members`.
pub fn elect(input: &ElectionInput<'_>) -> Election {
    let gw = input.gateway;
    let mut problems = spec_problems(gw);
    let members: BTreeMap<&str, &NodeView> =
        input.members.iter().map(|n| (n.name.as_str(), n)).collect();
    let blocker = |node: &str| -> Option<SeatLoss> {
        let Some(n) = members.get(node) else {
            return Some(SeatLoss::NotMember);
        };
        if !n.ready {
            return Some(SeatLoss::NotReady);
        }
        match (input.leases.get(node), input.lease_policy) {
            (Some(l), _) if !l.is_live(input.now) => Some(SeatLoss::LeaseExpired),
            (None, LeasePolicy::Required) => Some(SeatLoss::LeaseMissing),
            _ => None,
        }
    };
    let previous = gw.status.clone().unwrap_or_default();

    let mut active = Vec::new();
    let mut transitions = Vec::new();
    for t in &TYPES {
        // Spec endpoints of this type, first occurrence of each node only.
        let mut seen = BTreeSet::new();
        let spec: Vec<&Endpoint> = gw
            .spec
            .endpoints_of(t.clone())
            .filter(|e| seen.insert(e.node_name.as_str()))
            .collect();
        let prev: BTreeSet<&str> = previous
            .active_endpoints_of(t.clone())
            .map(|e| e.node_name.as_str())
            .collect();
        let cap = if input.features.enabled(t) {
            usize::try_from(gw.spec.replicas(t)).unwrap_or(0)
        } else {
            0
        };
        let eligible: Vec<&Endpoint> = spec
            .iter()
            .copied()
            .filter(|e| blocker(&e.node_name).is_none())
            .collect();
        // Sticky seats first (spec order), then fill in spec order.
        let chosen: Vec<&Endpoint> = eligible
            .iter()
            .filter(|e| prev.contains(e.node_name.as_str()))
            .chain(
                eligible
                    .iter()
                    .filter(|e| !prev.contains(e.node_name.as_str())),
            )
            .take(cap)
            .copied()
            .collect();
        let now_set: BTreeSet<&str> = chosen.iter().map(|e| e.node_name.as_str()).collect();

        let lost: Vec<(&str, SeatLoss)> = prev
            .difference(&now_set)
            .map(|n| {
                let reason = if !input.features.enabled(t) {
                    SeatLoss::FeatureDisabled
                } else if !spec.iter().any(|e| e.node_name == *n) {
                    SeatLoss::RemovedFromSpec
                } else {
                    blocker(n).unwrap_or(SeatLoss::OverCapacity)
                };
                (*n, reason)
            })
            .collect();
        let gained: Vec<&str> = now_set.difference(&prev).copied().collect();
        transitions.extend(pair_transitions(t, &lost, &gained));

        let key = match t {
            EndpointType::Proxy => CONFIG_ENABLE_L7_PROXY,
            _ => CONFIG_ENABLE_L3_TUNNEL,
        };
        active.extend(chosen.into_iter().map(|e| {
            let mut e = e.clone();
            e.config.insert(key.to_owned(), CONFIG_TRUE.to_owned());
            e
        }));
    }
    sort_endpoints(&mut active);

    let mut nodes: Vec<NodeInfo> = members
        .values()
        .map(|n| NodeInfo {
            node_name: n.name.clone(),
            private_ip: n.private_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            subnets: n.pod_cidrs.clone(),
        })
        .collect();
    add_extra_allowed_cidrs(gw, &active, &mut nodes, &mut problems);

    Election {
        status: GatewayStatus {
            nodes,
            active_endpoints: active,
        },
        transitions,
        problems,
    }
}

/// Pairs losses with gains of one type as failovers (both in node-name order); the rest are
/// plain losses or elections.
fn pair_transitions(
    t: &EndpointType,
    lost: &[(&str, SeatLoss)],
    gained: &[&str],
) -> Vec<Transition> {
    let mut out = Vec::new();
    let pairs = lost.len().min(gained.len());
    for ((from, reason), to) in lost.iter().zip(gained) {
        out.push(Transition::Failover {
            endpoint_type: t.clone(),
            from: (*from).to_owned(),
            to: (*to).to_owned(),
            reason: *reason,
        });
    }
    for (node, reason) in &lost[pairs..] {
        out.push(Transition::LostSeat {
            node: (*node).to_owned(),
            endpoint_type: t.clone(),
            reason: *reason,
        });
    }
    for node in &gained[pairs..] {
        out.push(Transition::Elected {
            node: (*node).to_owned(),
            endpoint_type: t.clone(),
        });
    }
    out
}

/// Appends the Gateway's extra allowed source CIDRs to the subnets of the first active tunnel
/// endpoint's node. A malformed list is reported and not published (upstream copies the
/// pieces unchecked, and agents then fail to parse them); duplicates are not repeated.
fn add_extra_allowed_cidrs(
    gw: &Gateway,
    active: &[Endpoint],
    nodes: &mut [NodeInfo],
    problems: &mut Vec<String>,
) {
    let Some(value) = gw
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_EXTRA_ALLOWED_SOURCE_CIDRS))
    else {
        return;
    };
    let cidrs = match parse_extra_allowed_source_cidrs(value) {
        Ok(c) => c,
        Err(e) => {
            problems.push(format!(
                "annotation {ANNOTATION_EXTRA_ALLOWED_SOURCE_CIDRS} ignored: {e}"
            ));
            return;
        }
    };
    let Some(tunnel) = active.iter().find(|e| e.type_ == EndpointType::Tunnel) else {
        return;
    };
    if let Some(node) = nodes.iter_mut().find(|n| n.node_name == tunnel.node_name) {
        for c in cidrs {
            let c = c.to_string();
            if !node.subnets.contains(&c) {
                node.subnets.push(c);
            }
        }
    }
}

/// Spec defects the election tolerates but reports.
fn spec_problems(gw: &Gateway) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, e) in gw.spec.endpoints.iter().enumerate() {
        if let EndpointType::Unknown(s) = &e.type_ {
            out.push(format!(
                "spec.endpoints[{i}] has unknown type {s:?}; it is never elected"
            ));
        } else if !seen.insert((e.node_name.as_str(), e.type_.as_str())) {
            out.push(format!(
                "spec.endpoints[{i}] repeats node {} type {}; only the first counts",
                e.node_name, e.type_
            ));
        }
    }
    for t in &TYPES {
        let r = gw.spec.replicas(t);
        if r < 0 {
            out.push(format!(
                "{t} Replicas is negative ({r}); nothing is elected"
            ));
        }
    }
    out
}

/// Sorts active endpoints by (nodeName, type): the order we publish.
fn sort_endpoints(eps: &mut [Endpoint]) {
    eps.sort_by(|a, b| {
        (a.node_name.as_str(), a.type_.as_str()).cmp(&(b.node_name.as_str(), b.type_.as_str()))
    });
}

/// The status in canonical order: nodes by name, active endpoints by (nodeName, type). Order
/// carries no meaning for readers except the first tunnel endpoint, which is the same in both
/// orders since at most one tunnel endpoint is active per node.
pub fn normalize_status(status: &GatewayStatus) -> GatewayStatus {
    let mut s = status.clone();
    s.nodes.sort_by(|a, b| a.node_name.cmp(&b.node_name));
    sort_endpoints(&mut s.active_endpoints);
    s
}

/// Whether writing `desired` would change the stored status. Order-insensitive, so taking over
/// from a controller that sorts differently causes no write.
pub fn status_changed(stored: Option<&GatewayStatus>, desired: &GatewayStatus) -> bool {
    normalize_status(&stored.cloned().unwrap_or_default()) != normalize_status(desired)
}

#[cfg(test)]
#[path = "election_tests.rs"]
mod tests;
