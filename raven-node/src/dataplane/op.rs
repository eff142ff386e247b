//! One kernel change: the unit the diff produces and apply sends, one netlink request each.
//!
//! Ops name devices, not interface indexes, because raven0 may be created by an earlier op of
//! the same apply; apply resolves names when it sends.

use std::fmt;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use crate::plan::{MacAddr, Route, Rule};

use super::observed::{FdbEntry, ObservedRoute, ObservedRule};

/// The raven0 device to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkSpec {
    /// Device name (raven0).
    pub name: String,
    /// VNI.
    pub vni: u32,
    /// UDP port.
    pub port: u16,
    /// Unicast remote (members).
    pub remote: Option<Ipv4Addr>,
    /// MTU.
    pub mtu: u32,
    /// MAC.
    pub mac: MacAddr,
}

/// In-place changes to an existing raven0 (`ip link set`): no flush of FDB, neighbours or
/// routes, unlike upstream's delete + create.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkChange {
    /// New MTU.
    pub mtu: Option<u32>,
    /// New MAC.
    pub mac: Option<MacAddr>,
    /// New unicast remote; `Some(None)` removes it. The kernel moves its default FDB entry.
    pub remote: Option<Option<Ipv4Addr>>,
    /// Set it up.
    pub up: bool,
}

impl LinkChange {
    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A kernel change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Delete a policy rule of ours.
    DeleteRule(ObservedRule),
    /// Delete a route of ours.
    DeleteRoute(ObservedRoute),
    /// Delete a link by name.
    DeleteLink(String),
    /// Create raven0 (create-or-update: `NLM_F_CREATE` without `NLM_F_EXCL`).
    CreateLink(LinkSpec),
    /// Change raven0 in place.
    SetLink(String, LinkChange),
    /// Delete an address from raven0.
    DeleteAddress(Ipv4Network),
    /// Add-or-replace the raven0 address (`NLM_F_REPLACE`).
    ReplaceAddress(Ipv4Network),
    /// Delete one FDB entry (MAC + destination) on raven0.
    DeleteFdb(FdbEntry),
    /// Add-or-replace a permanent FDB entry.
    ReplaceFdb {
        /// Peer MAC.
        mac: MacAddr,
        /// Peer underlay address.
        dst: Ipv4Addr,
    },
    /// Delete a neighbour entry on raven0.
    DeleteNeighbour(Ipv4Addr),
    /// Add-or-replace a permanent neighbour entry.
    ReplaceNeighbour {
        /// Peer VTEP.
        ip: Ipv4Addr,
        /// Peer MAC.
        mac: MacAddr,
    },
    /// Add-or-replace a route (`NLM_F_CREATE|NLM_F_REPLACE`).
    ReplaceRoute(Route),
    /// Add a rule (exclusive; `EEXIST` means it is already there and counts as success).
    AddRule(Rule),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeleteRule(r) => write!(
                f,
                "rule del pref {} {} table {}",
                r.priority,
                selector(&r.selector),
                r.table
            ),
            Self::DeleteRoute(r) => write!(f, "route del {} table {}", r.destination, r.table),
            Self::DeleteLink(n) => write!(f, "link del {n}"),
            Self::CreateLink(s) => write!(
                f,
                "link add {} vxlan id {} dstport {} remote {} mtu {} address {}",
                s.name,
                s.vni,
                s.port,
                s.remote.map_or_else(|| "-".to_owned(), |r| r.to_string()),
                s.mtu,
                s.mac
            ),
            Self::SetLink(n, c) => write!(f, "link set {n} {c:?}"),
            Self::DeleteAddress(a) => write!(f, "addr del {a} dev raven0"),
            Self::ReplaceAddress(a) => write!(f, "addr replace {a} dev raven0"),
            Self::DeleteFdb(e) => write!(
                f,
                "fdb del {} dst {}",
                e.mac,
                e.dst.map_or_else(|| "-".to_owned(), |d| d.to_string())
            ),
            Self::ReplaceFdb { mac, dst } => write!(f, "fdb replace {mac} dst {dst}"),
            Self::DeleteNeighbour(ip) => write!(f, "neigh del {ip} dev raven0"),
            Self::ReplaceNeighbour { ip, mac } => {
                write!(f, "neigh replace {ip} lladdr {mac} dev raven0")
            }
            Self::ReplaceRoute(r) => write!(
                f,
                "route replace {} {:?} table {} mtu {}",
                r.destination, r.next_hop, r.table, r.mtu
            ),
            Self::AddRule(r) => write!(
                f,
                "rule add pref {} {} table {}",
                r.priority,
                selector(&r.selector),
                r.table
            ),
        }
    }
}

fn selector(s: &crate::plan::Selector) -> String {
    match s {
        crate::plan::Selector::All => "from all".to_owned(),
        crate::plan::Selector::IncomingInterface(d) => format!("iif {d}"),
    }
}
