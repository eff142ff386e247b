//! Sends [`Op`]s: one netlink request each, create-or-replace, in phases.
//!
//! Ops of one phase are independent (different keys), so they are pipelined on the one socket;
//! phases run in the order the diff emits (rule/route deletes, link, addresses, FDB and
//! neighbours, routes, rule adds). A failing op is recorded and the rest still runs. Deletes
//! of things already gone and the exclusive rule add finding its rule succeed: the state is
//! what we wanted. Device names are resolved once per phase (raven0 may have just been created).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::StreamExt;
use futures_util::stream;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteMetric, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};

use crate::plan::vxlan::VXLAN_AGEING_SECS;
use crate::plan::{MacAddr, NextHop, Route, Rule, Selector};

use super::RAVEN0;
use super::netlink::{Counters, Netlink, NlError};
use super::observe::link_by_name;
use super::observed::{Observed, ObservedRoute, ObservedRule, ROUTE_PROTOCOL};
use super::op::{LinkChange, LinkSpec, Op};

/// Requests in flight per phase: enough to hide the round trip, small enough for the
/// socket's receive buffer to hold every acknowledgement.
const PIPELINE: usize = 128;

/// `NUD_PERMANENT | NUD_NOARP`, the state of our FDB entries (upstream's).
const FDB_STATE: u16 = 0x80 | 0x40;

/// An op the kernel refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpError {
    /// The op.
    pub op: Op,
    /// Why.
    pub error: NlError,
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, self.error)
    }
}

/// What apply did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Ops attempted.
    pub ops: usize,
    /// Ops that failed, in op order.
    pub errors: Vec<OpError>,
}

/// Applies `ops` (in diff order). `observed` seeds the device index cache.
pub async fn apply(nl: &Netlink, ops: &[Op], observed: &Observed) -> ApplyReport {
    let mut devices: BTreeMap<String, Option<u32>> = observed
        .devices
        .iter()
        .map(|(k, v)| (k.clone(), Some(*v)))
        .collect();
    if let Some(l) = &observed.raven0 {
        devices.insert(RAVEN0.to_owned(), Some(l.index));
    }
    let mut report = ApplyReport::default();
    let mut start = 0;
    while start < ops.len() {
        let phase = phase(&ops[start]);
        let end = ops[start..]
            .iter()
            .position(|o| self::phase(o) != phase)
            .map_or(ops.len(), |n| start + n);
        let group = &ops[start..end];
        start = end;
        for name in group.iter().filter_map(device_of) {
            if !devices.contains_key(name) {
                let index = match link_by_name(nl, name).await {
                    Ok(l) => l.map(|l| l.header.index),
                    Err(_) => None,
                };
                devices.insert(name.to_owned(), index);
            }
        }
        let devices_ref = &devices;
        let mut results: Vec<(usize, Result<(), NlError>)> = stream::iter(group.iter().enumerate())
            .map(|(i, op)| async move { (i, run(nl, op, devices_ref).await) })
            .buffer_unordered(PIPELINE)
            .collect()
            .await;
        results.sort_by_key(|(i, _)| *i);
        for (i, r) in results {
            report.ops += 1;
            Counters::add(&nl.counters().ops, 1);
            if let Err(error) = r {
                Counters::add(&nl.counters().op_errors, 1);
                report.errors.push(OpError {
                    op: group[i].clone(),
                    error,
                });
            }
        }
        // Links change under us in this phase: forget what we resolved.
        if matches!(phase, Phase::DeleteLink | Phase::Link) {
            devices.remove(RAVEN0);
        }
    }
    report
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    DeleteRule,
    DeleteRoute,
    DeleteLink,
    Link,
    DeleteAddress,
    Address,
    DeleteNeighbour,
    Neighbour,
    Route,
    Rule,
}

fn phase(op: &Op) -> Phase {
    match op {
        Op::DeleteRule(_) => Phase::DeleteRule,
        Op::DeleteRoute(_) => Phase::DeleteRoute,
        Op::DeleteLink(_) => Phase::DeleteLink,
        Op::CreateLink(_) | Op::SetLink(..) => Phase::Link,
        Op::DeleteAddress(_) => Phase::DeleteAddress,
        Op::ReplaceAddress(_) => Phase::Address,
        Op::DeleteFdb(_) | Op::DeleteNeighbour(_) => Phase::DeleteNeighbour,
        Op::ReplaceFdb { .. } | Op::ReplaceNeighbour { .. } => Phase::Neighbour,
        Op::ReplaceRoute(_) => Phase::Route,
        Op::AddRule(_) => Phase::Rule,
    }
}

/// The device whose index the op needs.
fn device_of(op: &Op) -> Option<&str> {
    match op {
        Op::SetLink(..)
        | Op::DeleteAddress(_)
        | Op::ReplaceAddress(_)
        | Op::DeleteFdb(_)
        | Op::ReplaceFdb { .. }
        | Op::DeleteNeighbour(_)
        | Op::ReplaceNeighbour { .. } => Some(RAVEN0),
        Op::ReplaceRoute(r) => Some(match &r.next_hop {
            NextHop::Vtep(_) => RAVEN0,
            NextHop::Device(d) => d.as_str(),
        }),
        Op::DeleteRule(_)
        | Op::DeleteRoute(_)
        | Op::DeleteLink(_)
        | Op::CreateLink(_)
        | Op::AddRule(_) => None,
    }
}

async fn run(
    nl: &Netlink,
    op: &Op,
    devices: &BTreeMap<String, Option<u32>>,
) -> Result<(), NlError> {
    let index = match device_of(op) {
        None => 0,
        Some(name) => match devices.get(name).copied().flatten() {
            Some(i) => i,
            None => {
                nl.count_error();
                return Err(NlError::other(if name == RAVEN0 {
                    format!("device {name} does not exist")
                } else {
                    format!("device {name} does not exist (the tunnel driver creates it)")
                }));
            }
        },
    };
    let (msg, flags, tolerate) = message(op, index);
    match nl.ack(msg, flags).await {
        Ok(()) => Ok(()),
        Err(e) if tolerate(&e) => Ok(()),
        Err(e) => {
            nl.count_error();
            Err(e)
        }
    }
}

type Tolerate = fn(&NlError) -> bool;

fn never(_: &NlError) -> bool {
    false
}

fn not_found(e: &NlError) -> bool {
    e.is_not_found()
}

fn exists(e: &NlError) -> bool {
    e.is_exists()
}

const REPLACE: u16 = NLM_F_CREATE | NLM_F_REPLACE;

/// The request for `op`, its header flags, and which errors mean "already so".
fn message(op: &Op, index: u32) -> (RouteNetlinkMessage, u16, Tolerate) {
    match op {
        Op::DeleteRule(r) => (RouteNetlinkMessage::DelRule(delete_rule(r)), 0, not_found),
        Op::DeleteRoute(r) => (RouteNetlinkMessage::DelRoute(delete_route(r)), 0, not_found),
        Op::DeleteLink(name) => {
            let mut m = LinkMessage::default();
            m.attributes.push(LinkAttribute::IfName(name.clone()));
            (RouteNetlinkMessage::DelLink(m), 0, not_found)
        }
        // Create-or-update: without NLM_F_EXCL an existing compatible raven0 (a race, a crash
        // between observe and apply) is updated instead of failing with EEXIST.
        Op::CreateLink(spec) => (
            RouteNetlinkMessage::NewLink(create_link(spec)),
            NLM_F_CREATE,
            never,
        ),
        Op::SetLink(_, change) => (
            RouteNetlinkMessage::NewLink(set_link(index, change)),
            0,
            never,
        ),
        Op::DeleteAddress(a) => (
            RouteNetlinkMessage::DelAddress(address(index, a.ip(), a.prefix())),
            0,
            not_found,
        ),
        Op::ReplaceAddress(a) => (
            RouteNetlinkMessage::NewAddress(address(index, a.ip(), a.prefix())),
            REPLACE,
            never,
        ),
        Op::DeleteFdb(e) => (
            RouteNetlinkMessage::DelNeighbour(fdb(index, e.mac, e.dst)),
            0,
            not_found,
        ),
        Op::ReplaceFdb { mac, dst } => (
            RouteNetlinkMessage::NewNeighbour(fdb(index, *mac, Some(*dst))),
            REPLACE,
            never,
        ),
        Op::DeleteNeighbour(ip) => (
            RouteNetlinkMessage::DelNeighbour(neighbour(index, *ip, None)),
            0,
            not_found,
        ),
        Op::ReplaceNeighbour { ip, mac } => (
            RouteNetlinkMessage::NewNeighbour(neighbour(index, *ip, Some(*mac))),
            REPLACE,
            never,
        ),
        Op::ReplaceRoute(r) => (
            RouteNetlinkMessage::NewRoute(route(r, index)),
            REPLACE,
            never,
        ),
        // Rules have no replace: without NLM_F_EXCL the kernel adds duplicates. EEXIST means
        // the very rule is there.
        Op::AddRule(r) => (
            RouteNetlinkMessage::NewRule(rule(r)),
            NLM_F_CREATE | NLM_F_EXCL,
            exists,
        ),
    }
}

fn rule_base(priority: u32, table: u32) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.action = RuleAction::ToTable;
    m.attributes.push(RuleAttribute::Priority(priority));
    m.attributes.push(RuleAttribute::Table(table));
    m.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::from(ROUTE_PROTOCOL)));
    m
}

fn rule(r: &Rule) -> RuleMessage {
    let mut m = rule_base(r.priority, r.table);
    if let Selector::IncomingInterface(d) = &r.selector {
        m.attributes.push(RuleAttribute::Iifname(d.clone()));
    }
    m
}

/// Matches by priority, table, selector and our protocol tag, so a foreign rule that looks the
/// same is never the one deleted.
fn delete_rule(r: &ObservedRule) -> RuleMessage {
    rule(&Rule {
        priority: r.priority,
        selector: r.selector.clone(),
        table: r.table,
    })
}

fn route_base(table: u32, destination: Ipv4Addr, prefix: u8) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.destination_prefix_length = prefix;
    m.header.protocol = RouteProtocol::from(ROUTE_PROTOCOL);
    m.attributes.push(RouteAttribute::Table(table));
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(destination)));
    m
}

/// Matches our protocol tag (the kernel compares it), any scope, the observed metric and TOS.
fn delete_route(r: &ObservedRoute) -> RouteMessage {
    let mut m = route_base(r.table, r.destination.network(), r.destination.prefix());
    m.header.scope = RouteScope::NoWhere;
    m.header.tos = r.tos;
    if r.metric != 0 {
        m.attributes.push(RouteAttribute::Priority(r.metric));
    }
    m
}

fn route(r: &Route, oif: u32) -> RouteMessage {
    let (dst, prefix) = match r.destination {
        ipnetwork::IpNetwork::V4(n) => (n.network(), n.prefix()),
        // The planner emits no IPv6 routes; the kernel would reject this one clearly.
        ipnetwork::IpNetwork::V6(_) => (Ipv4Addr::UNSPECIFIED, 255),
    };
    let mut m = route_base(r.table, dst, prefix);
    m.header.kind = RouteType::Unicast;
    match &r.next_hop {
        NextHop::Vtep(gw) => {
            m.header.scope = RouteScope::Universe;
            m.header.flags = RouteFlags::Onlink;
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(*gw)));
        }
        NextHop::Device(_) => m.header.scope = RouteScope::Link,
    }
    m.attributes.push(RouteAttribute::Oif(oif));
    if let Some(IpAddr::V4(src)) = r.source {
        m.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::Inet(src)));
    }
    m.attributes
        .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(r.mtu)]));
    m
}

fn create_link(spec: &LinkSpec) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    m.attributes.push(LinkAttribute::IfName(spec.name.clone()));
    m.attributes.push(LinkAttribute::Mtu(spec.mtu));
    m.attributes
        .push(LinkAttribute::Address(spec.mac.0.to_vec()));
    let mut data = vec![
        InfoVxlan::Id(spec.vni),
        InfoVxlan::Port(spec.port),
        InfoVxlan::Learning(false),
        InfoVxlan::Ageing(VXLAN_AGEING_SECS),
    ];
    if let Some(r) = spec.remote {
        data.push(InfoVxlan::Group(r));
    }
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Vxlan),
        LinkInfo::Data(InfoData::Vxlan(data)),
    ]));
    m
}

fn set_link(index: u32, change: &LinkChange) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    if change.up {
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
    }
    if let Some(mtu) = change.mtu {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = change.mac {
        m.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    if let Some(remote) = change.remote {
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(vec![InfoVxlan::Group(
                remote.unwrap_or(Ipv4Addr::UNSPECIFIED),
            )])),
        ]));
    }
    m
}

fn address(index: u32, ip: Ipv4Addr, prefix: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.prefix_len = prefix;
    m.header.scope = AddressScope::Link;
    m.header.index = index;
    m.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
    m.attributes.push(AddressAttribute::Address(IpAddr::V4(ip)));
    m
}

fn fdb(index: u32, mac: MacAddr, dst: Option<Ipv4Addr>) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = index;
    m.header.state = NeighbourState::from(FDB_STATE);
    m.header.flags = NeighbourFlags::Own;
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
    if let Some(d) = dst {
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(d)));
    }
    m
}

fn neighbour(index: u32, ip: Ipv4Addr, mac: Option<MacAddr>) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = index;
    m.header.state = NeighbourState::Permanent;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    if let Some(mac) = mac {
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
    }
    m
}
