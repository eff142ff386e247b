//! Reads what we own from the kernel with filtered requests, into [`Observed`].
//!
//! Nothing here lists the whole host: raven0 and the tunnel device are looked up by name, the
//! address, FDB and neighbour dumps are filtered by raven0's index, and the route dumps by
//! table and our protocol tag. Only the rule dump is unfiltered (the kernel accepts no filter
//! for it); rules are few and we keep those tagged with our protocol.

use futures_util::future::try_join_all;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteMetric, RouteProtocol,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::Ipv4Network;

use crate::plan::{MacAddr, RAVEN0_TABLE, Selector, TUNNEL_TABLE};

use super::RAVEN0;
use super::netlink::{Netlink, NlError};
use super::observed::{
    FdbEntry, NeighbourEntry, Observed, ObservedLink, ObservedRoute, ObservedRule, ROUTE_PROTOCOL,
    VxlanParams,
};

/// `NUD_PERMANENT`.
const NUD_PERMANENT: u16 = 0x80;

/// Reads our state. `devices` are the other device names the plan refers to (the tunnel
/// device), resolved to interface indexes.
pub async fn observe(nl: &Netlink, devices: &[String]) -> Result<Observed, NlError> {
    let raven0 = link_by_name(nl, RAVEN0).await?;
    let mut observed = Observed {
        raven0: raven0.as_ref().map(parse_link),
        ..Observed::default()
    };
    let lookups = try_join_all(
        devices
            .iter()
            .filter(|d| d.as_str() != RAVEN0)
            .map(|d| async move { Ok::<_, NlError>((d, link_by_name(nl, d).await?)) }),
    );
    let routes = try_join_all([RAVEN0_TABLE, TUNNEL_TABLE].map(|t| routes_in(nl, t)));
    let (found, routes, rules) =
        futures_util::future::try_join3(lookups, routes, rules(nl)).await?;
    for (name, link) in found {
        if let Some(l) = link {
            observed.devices.insert(name.clone(), l.header.index);
        }
    }
    observed.routes = routes.into_iter().flatten().collect();
    observed.routes.sort();
    observed.rules = rules;
    if let Some(link) = &observed.raven0 {
        let (addresses, fdb, neighbours) = futures_util::future::try_join3(
            addresses(nl, link.index),
            fdb(nl, link.index),
            neighbours(nl, link.index),
        )
        .await?;
        observed.addresses = addresses;
        observed.fdb = fdb;
        observed.neighbours = neighbours;
    }
    Ok(observed)
}

/// `RTM_GETLINK` by name; `None` if there is no such device.
pub async fn link_by_name(nl: &Netlink, name: &str) -> Result<Option<LinkMessage>, NlError> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    match nl.collect(RouteNetlinkMessage::GetLink(msg), false).await {
        Ok(answers) => Ok(answers.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => {
            nl.count_error();
            Err(NlError {
                message: format!("looking up link {name}"),
                ..e
            })
        }
    }
}

fn parse_link(msg: &LinkMessage) -> ObservedLink {
    let mut link = ObservedLink {
        index: msg.header.index,
        kind: None,
        vxlan: None,
        mtu: 0,
        mac: None,
        up: msg.header.flags.contains(LinkFlags::Up),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::Address(a) => link.mac = mac(a),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => {
                            link.kind = Some(match k {
                                InfoKind::Vxlan => "vxlan".to_owned(),
                                other => other.to_string(),
                            });
                        }
                        LinkInfo::Data(InfoData::Vxlan(v)) => link.vxlan = Some(parse_vxlan(v)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn parse_vxlan(attrs: &[InfoVxlan]) -> VxlanParams {
    let mut p = VxlanParams::default();
    for a in attrs {
        match a {
            InfoVxlan::Id(v) => p.vni = *v,
            InfoVxlan::Port(v) => p.port = *v,
            InfoVxlan::Local(v) if !v.is_unspecified() => p.local = Some(*v),
            InfoVxlan::Group(v) if !v.is_unspecified() => p.remote = Some(*v),
            InfoVxlan::Link(v) if *v != 0 => p.underlay = Some(*v),
            InfoVxlan::Learning(v) => p.learning = *v,
            _ => {}
        }
    }
    p
}

fn mac(bytes: &[u8]) -> Option<MacAddr> {
    <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
}

async fn addresses(nl: &Netlink, index: u32) -> Result<Vec<Ipv4Network>, NlError> {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.index = index;
    let answers = dump(nl, RouteNetlinkMessage::GetAddress(msg), "raven0 addresses").await?;
    let mut out = Vec::new();
    for m in answers {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            continue;
        };
        if a.header.index != index {
            continue;
        }
        let local = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Local(IpAddr::V4(v)) => Some(*v),
            _ => None,
        });
        let address = local.or_else(|| {
            a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(IpAddr::V4(v)) => Some(*v),
                _ => None,
            })
        });
        if let Some(ip) = address
            && let Ok(n) = Ipv4Network::new(ip, a.header.prefix_len)
        {
            out.push(n);
        }
    }
    out.sort();
    Ok(out)
}

async fn routes_in(nl: &Netlink, table: u32) -> Result<Vec<ObservedRoute>, NlError> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.protocol = RouteProtocol::from(ROUTE_PROTOCOL);
    msg.attributes.push(RouteAttribute::Table(table));
    let answers = match nl.collect(RouteNetlinkMessage::GetRoute(msg), true).await {
        Ok(a) => a,
        // The kernel answers ENOENT for a table that has never held a route.
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => {
            nl.count_error();
            return Err(NlError {
                message: format!("dumping routes of table {table}"),
                ..e
            });
        }
    };
    let mut out = Vec::new();
    for m in answers {
        let RouteNetlinkMessage::NewRoute(r) = m else {
            continue;
        };
        if u8::from(r.header.protocol) != ROUTE_PROTOCOL
            || r.header.address_family != AddressFamily::Inet
        {
            continue;
        }
        if let Some(route) = parse_route(&r)
            && route.table == table
        {
            out.push(route);
        }
    }
    Ok(out)
}

fn parse_route(r: &RouteMessage) -> Option<ObservedRoute> {
    let mut table = u32::from(r.header.table);
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut route = ObservedRoute {
        table: 0,
        destination: Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0).ok()?,
        gateway: None,
        oif: None,
        onlink: r.header.flags.contains(RouteFlags::Onlink),
        mtu: None,
        source: None,
        metric: 0,
        tos: r.header.tos,
    };
    for a in &r.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = *d,
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => route.gateway = Some(*g),
            RouteAttribute::PrefSource(RouteAddress::Inet(s)) => route.source = Some(*s),
            RouteAttribute::Oif(o) => route.oif = Some(*o),
            RouteAttribute::Priority(p) => route.metric = *p,
            RouteAttribute::Metrics(ms) => {
                for m in ms {
                    if let RouteMetric::Mtu(v) = m {
                        route.mtu = Some(*v);
                    }
                }
            }
            _ => {}
        }
    }
    route.table = table;
    route.destination = Ipv4Network::new(dst, r.header.destination_prefix_length).ok()?;
    Some(route)
}

async fn rules(nl: &Netlink) -> Result<Vec<ObservedRule>, NlError> {
    let mut msg = RuleMessage::default();
    msg.header.family = AddressFamily::Inet;
    let answers = dump(nl, RouteNetlinkMessage::GetRule(msg), "rules").await?;
    let mut out = Vec::new();
    for m in answers {
        let RouteNetlinkMessage::NewRule(r) = m else {
            continue;
        };
        let ours = r
            .attributes
            .iter()
            .any(|a| matches!(a, RuleAttribute::Protocol(p) if u8::from(*p) == ROUTE_PROTOCOL));
        if !ours {
            continue;
        }
        let mut rule = ObservedRule {
            priority: 0,
            selector: Selector::All,
            table: u32::from(r.header.table),
            exotic: r.header.dst_len != 0
                || r.header.src_len != 0
                || r.header.tos != 0
                || r.header.action != RuleAction::ToTable
                || !r.header.flags.is_empty(),
        };
        for a in &r.attributes {
            match a {
                RuleAttribute::Priority(p) => rule.priority = *p,
                RuleAttribute::Table(t) => rule.table = *t,
                RuleAttribute::Iifname(i) => rule.selector = Selector::IncomingInterface(i.clone()),
                RuleAttribute::Protocol(_) => {}
                RuleAttribute::Source(_)
                | RuleAttribute::Destination(_)
                | RuleAttribute::Oifname(_)
                | RuleAttribute::FwMark(_)
                | RuleAttribute::Goto(_)
                | RuleAttribute::IpProtocol(_)
                | RuleAttribute::SourcePortRange(_)
                | RuleAttribute::DestinationPortRange(_)
                | RuleAttribute::UidRange(_)
                | RuleAttribute::TunId(_) => rule.exotic = true,
                // The kernel always reports these; all ones means "not set".
                RuleAttribute::SuppressIfGroup(v) | RuleAttribute::SuppressPrefixLen(v) => {
                    rule.exotic |= *v != u32::MAX;
                }
                _ => {}
            }
        }
        out.push(rule);
    }
    out.sort();
    Ok(out)
}

fn neighbour_dump(family: AddressFamily, index: u32) -> RouteNetlinkMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family;
    msg.attributes.push(NeighbourAttribute::IfIndex(index));
    RouteNetlinkMessage::GetNeighbour(msg)
}

fn permanent(state: NeighbourState) -> bool {
    u16::from(state) & NUD_PERMANENT != 0
}

/// One neighbour-table entry on raven0: link-layer address, IPv4 destination, permanence.
type RawNeighbour = (Option<MacAddr>, Option<Ipv4Addr>, bool);

/// The entries of `family` (bridge FDB or inet neighbours) on link `index`.
async fn neighbour_entries(
    nl: &Netlink,
    family: AddressFamily,
    index: u32,
    what: &str,
) -> Result<Vec<RawNeighbour>, NlError> {
    let answers = dump(nl, neighbour_dump(family, index), what).await?;
    Ok(answers
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewNeighbour(n) if n.header.ifindex == index => Some(n),
            _ => None,
        })
        .map(|n| {
            let mut mac_addr = None;
            let mut dst = None;
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::LinkLayerAddress(b) => mac_addr = mac(b),
                    NeighbourAttribute::Destination(d) => dst = inet(d),
                    _ => {}
                }
            }
            (mac_addr, dst, permanent(n.header.state))
        })
        .collect())
}

async fn fdb(nl: &Netlink, index: u32) -> Result<Vec<FdbEntry>, NlError> {
    let entries = neighbour_entries(nl, AddressFamily::Bridge, index, "raven0 FDB").await?;
    let mut out: Vec<FdbEntry> = entries
        .into_iter()
        .filter_map(|(mac, dst, permanent)| {
            Some(FdbEntry {
                mac: mac?,
                dst,
                permanent,
            })
        })
        .collect();
    out.sort();
    Ok(out)
}

/// An IPv4 neighbour address; bridge-family messages carry it undecoded.
fn inet(d: &NeighbourAddress) -> Option<Ipv4Addr> {
    match d {
        NeighbourAddress::Inet(v) => Some(*v),
        NeighbourAddress::Other(b) => <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from),
        _ => None,
    }
}

async fn neighbours(nl: &Netlink, index: u32) -> Result<Vec<NeighbourEntry>, NlError> {
    let entries = neighbour_entries(nl, AddressFamily::Inet, index, "raven0 neighbours").await?;
    let mut out: Vec<NeighbourEntry> = entries
        .into_iter()
        .filter_map(|(mac, ip, permanent)| {
            Some(NeighbourEntry {
                ip: ip?,
                mac,
                permanent,
            })
        })
        .collect();
    out.sort();
    Ok(out)
}

async fn dump(
    nl: &Netlink,
    msg: RouteNetlinkMessage,
    what: &str,
) -> Result<Vec<RouteNetlinkMessage>, NlError> {
    nl.collect(msg, true).await.map_err(|e| {
        nl.count_error();
        NlError {
            message: format!("dumping {what}"),
            ..e
        }
    })
}
