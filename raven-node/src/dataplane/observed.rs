//! What we read back from the kernel: only the objects Raven owns, as plain data.
//!
//! [`super::observe`] fills this with filtered dumps; [`super::diff`] compares it with the plan
//! without any I/O, so every comparison rule is table-testable with hand-built values.
//!
//! Ownership: the link named [`crate::plan::vxlan::RAVEN0`] and everything on it (addresses,
//! FDB, neighbours); routes in tables 9027/9028 tagged with [`ROUTE_PROTOCOL`]; IPv4 rules
//! tagged with [`ROUTE_PROTOCOL`] (any priority: we only ever create them at ours). Foreign
//! routes in our tables and foreign rules at our priorities are never read into this struct,
//! so nothing can plan to touch them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use crate::plan::{MacAddr, Selector};

/// `rtm_protocol` / `FRA_PROTOCOL` value tagging Raven's routes and rules (`proto 82` in
/// `ip route`/`ip rule`; 82 is ASCII 'R' and unassigned in iproute2's `rt_protos`). Upstream
/// tags nothing, so its cleanup flushes whole tables; the tag lets cleanup and the diff leave
/// foreign routes in the same tables alone.
pub const ROUTE_PROTOCOL: u8 = 82;

/// Everything we own, as the kernel reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// raven0, if it exists (whatever its kind).
    pub raven0: Option<ObservedLink>,
    /// Interface indexes of the other devices the plan refers to (the tunnel device), by name;
    /// a name missing here does not exist.
    pub devices: BTreeMap<String, u32>,
    /// IPv4 addresses on raven0.
    pub addresses: Vec<Ipv4Network>,
    /// Our routes (tagged [`ROUTE_PROTOCOL`]) in tables 9027/9028.
    pub routes: Vec<ObservedRoute>,
    /// Our IPv4 rules (tagged [`ROUTE_PROTOCOL`]).
    pub rules: Vec<ObservedRule>,
    /// FDB entries on raven0 (`bridge fdb show dev raven0`).
    pub fdb: Vec<FdbEntry>,
    /// IPv4 neighbour entries on raven0.
    pub neighbours: Vec<NeighbourEntry>,
}

/// The raven0 device as found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedLink {
    /// Interface index.
    pub index: u32,
    /// `IFLA_INFO_KIND` (`"vxlan"` when it is ours as created).
    pub kind: Option<String>,
    /// VXLAN parameters; `None` if the device is not a VXLAN device.
    pub vxlan: Option<VxlanParams>,
    /// Link MTU.
    pub mtu: u32,
    /// Link-layer address.
    pub mac: Option<MacAddr>,
    /// Administratively up.
    pub up: bool,
}

/// The VXLAN parameters we set or that force a re-create when they differ.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VxlanParams {
    /// `IFLA_VXLAN_ID`.
    pub vni: u32,
    /// `IFLA_VXLAN_PORT`.
    pub port: u16,
    /// `IFLA_VXLAN_LOCAL` (we set none).
    pub local: Option<Ipv4Addr>,
    /// `IFLA_VXLAN_LINK`, the underlay device (we set none).
    pub underlay: Option<u32>,
    /// `IFLA_VXLAN_GROUP`, the unicast remote (members: the gateway).
    pub remote: Option<Ipv4Addr>,
    /// `IFLA_VXLAN_LEARNING` (we want it off).
    pub learning: bool,
}

/// One of our routes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObservedRoute {
    /// Table.
    pub table: u32,
    /// Destination.
    pub destination: Ipv4Network,
    /// `via`.
    pub gateway: Option<Ipv4Addr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// `onlink` flag.
    pub onlink: bool,
    /// `mtu` metric.
    pub mtu: Option<u32>,
    /// `src`.
    pub source: Option<Ipv4Addr>,
    /// `metric` (priority); ours are 0.
    pub metric: u32,
    /// TOS; ours are 0.
    pub tos: u8,
}

/// One of our policy rules.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObservedRule {
    /// Priority.
    pub priority: u32,
    /// `iif` if any, else `from all` (anything else we never create, see `exotic`).
    pub selector: Selector,
    /// Table looked up.
    pub table: u32,
    /// Set when the rule carries matches we never create (source/destination, fwmark, oif):
    /// such a rule is ours by tag but never equal to a planned one, so it gets deleted.
    pub exotic: bool,
}

/// One forwarding entry on raven0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FdbEntry {
    /// Destination MAC (all zero: the default entry the kernel adds for the link's remote).
    pub mac: MacAddr,
    /// Underlay address VXLAN packets for this MAC go to.
    pub dst: Option<Ipv4Addr>,
    /// `permanent`.
    pub permanent: bool,
}

/// One IPv4 neighbour entry on raven0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NeighbourEntry {
    /// The peer VTEP address.
    pub ip: Ipv4Addr,
    /// Its link-layer address, if resolved.
    pub mac: Option<MacAddr>,
    /// `PERMANENT` (ours); other states are the kernel's cache, which we leave alone unless
    /// the address is a planned peer.
    pub permanent: bool,
}

/// The all-zero MAC: the kernel's default FDB entry for a VXLAN link's remote.
pub const ZERO_MAC: MacAddr = MacAddr([0; 6]);
