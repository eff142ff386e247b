//! Routes in Raven's two tables.
//!
//! - Table [`RAVEN0_TABLE`] (9027, upstream's number) holds routes over raven0. On a member:
//!   every routed remote prefix via the gateway's VTEP. On the gateway: every member's subnets
//!   via that member's VTEP (the return path for decrypted traffic).
//! - Table [`TUNNEL_TABLE`] (9028, upstream's WireGuard table, now used by both drivers) holds,
//!   on the gateway, every routed remote prefix into the tunnel device.
//!
//! Every route carries the plan's MTU so the first packet of a flow is sized right even where
//! ICMP is filtered. Upstream routes `default via <gateway VTEP>` on members and relies on
//! marks to select traffic; we route exactly the remote prefixes, so the table can be consulted
//! for all traffic (see [`super::rules`]).

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;

/// Table for routes over raven0 (upstream `routeTableID`).
pub const RAVEN0_TABLE: u32 = 9027;
/// Table for routes into the tunnel device on a gateway (upstream `wgRouteTableID`).
pub const TUNNEL_TABLE: u32 = 9028;

/// Where a route sends packets.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NextHop {
    /// `via <vtep> dev raven0 onlink`.
    Vtep(Ipv4Addr),
    /// `dev <device> scope link` (the tunnel device).
    Device(String),
}

/// One route.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// Routing table.
    pub table: u32,
    /// Destination prefix.
    pub destination: IpNetwork,
    /// Next hop.
    pub next_hop: NextHop,
    /// `mtu` route metric.
    pub mtu: u32,
    /// Preferred source for packets the node itself sends (`src`): its private IP. Without it a
    /// member's own packets would leave with its 240.x.y.z VTEP address, which no other domain
    /// can answer (upstream behaves so). `None` on return routes, which only forward.
    pub source: Option<IpAddr>,
}
