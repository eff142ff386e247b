//! A small synchronous rtnetlink client: exactly the requests the plugin needs, nothing async.
//!
//! The socket is bound to the network namespace of the thread that created it
//! ([`crate::netns::open_route_socket`] creates it inside the pod's namespace), so every request
//! here acts on that namespace without the calling thread ever entering it.

use std::io;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use raven_api::nodestate::RAVEN_ROUTE_PROTOCOL;

use crate::routes::{DesiredRoute, ObservedRoute};

/// Main routing table id.
const MAIN_TABLE: u32 = 254;

/// A connected NETLINK_ROUTE socket and its sequence counter.
#[derive(Debug)]
pub struct RouteSocket {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl RouteSocket {
    /// Creates the raw socket in the calling thread's network namespace. Kept separate from
    /// [`RouteSocket::from_socket`] so that a helper thread in another namespace only makes this
    /// one system call and allocates nothing (a first allocation in a new thread costs a whole
    /// malloc arena).
    pub fn create_here() -> io::Result<Socket> {
        Socket::new(NETLINK_ROUTE)
    }

    /// Binds and connects a socket made by [`RouteSocket::create_here`], from any thread.
    pub fn from_socket(mut socket: Socket) -> io::Result<Self> {
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self {
            socket,
            seq: 0,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// The index of interface `name`, or `None` when it does not exist.
    /// Equivalent to `ip link show dev NAME`.
    pub fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every route of the main table, both families. Equivalent to `ip route show table main`.
    pub fn main_routes(&mut self) -> io::Result<Vec<ObservedRoute>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut msg = RouteMessage::default();
            msg.header.address_family = family;
            let replies = self.request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP)?;
            out.extend(replies.iter().filter_map(observe_main_route));
        }
        Ok(out)
    }

    /// Creates or replaces one of our routes.
    /// Equivalent to `ip route replace DST via GW dev OIF proto 82 mtu M advmss A`.
    pub fn replace_route(&mut self, route: &DesiredRoute, oif: u32) -> io::Result<()> {
        let mut msg = route_message(route.dst, RouteProtocol::from(RAVEN_ROUTE_PROTOCOL));
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(route.gateway)));
        msg.attributes.push(RouteAttribute::Oif(oif));
        msg.attributes.push(RouteAttribute::Metrics(vec![
            RouteMetric::Mtu(route.mtu),
            RouteMetric::Advmss(route.advmss),
        ]));
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// Deletes exactly this route; a route that is already gone is success.
    /// Equivalent to `ip route del DST proto 82 dev OIF`.
    pub fn delete_route(&mut self, route: &ObservedRoute) -> io::Result<()> {
        let mut msg = route_message(route.dst, RouteProtocol::from(route.protocol));
        if let Some(oif) = route.oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        if let Some(priority) = route.priority {
            msg.attributes.push(RouteAttribute::Priority(priority));
        }
        match self.request(RouteNetlinkMessage::DelRoute(msg), 0) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Sends one request and collects the replies until the ACK (or DONE for a dump).
    ///
    /// Every request carries `NLM_F_ACK`, so the kernel always ends a non-dump exchange with an
    /// error message (code 0 for success): there is a single, simple end condition.
    fn request(
        &mut self,
        inner: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags | NLM_F_REQUEST | NLM_F_ACK;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
        msg.finalize();
        let mut out = vec![0; msg.buffer_len()];
        msg.serialize(&mut out);
        self.socket.send(&out, 0)?;
        self.collect_replies()
    }

    fn collect_replies(&mut self) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut replies = Vec::new();
        loop {
            self.buf.clear();
            let n = self.socket.recv(&mut self.buf, 0)?;
            let mut offset = 0;
            while offset < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[offset..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = msg.header.length as usize;
                if msg.header.sequence_number == self.seq {
                    match msg.payload {
                        NetlinkPayload::Done(_) => return Ok(replies),
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                Some(_) => Err(e.to_io()),
                                None => Ok(replies),
                            };
                        }
                        NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                offset += align4(len);
            }
        }
    }
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// A route message for `dst` in the main table with our usual header fields.
fn route_message(dst: IpNetwork, protocol: RouteProtocol) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header = RouteHeader {
        address_family: if dst.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        },
        destination_prefix_length: dst.prefix(),
        table: RouteHeader::RT_TABLE_MAIN,
        protocol,
        scope: RouteScope::Universe,
        kind: RouteType::Unicast,
        ..RouteHeader::default()
    };
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(dst.ip())));
    msg
}

/// Turns a dumped route into an [`ObservedRoute`] if it is a unicast route of the main table.
fn observe_main_route(msg: &RouteNetlinkMessage) -> Option<ObservedRoute> {
    let RouteNetlinkMessage::NewRoute(route) = msg else {
        return None;
    };
    let table = route
        .attributes
        .iter()
        .find_map(|a| {
            if let RouteAttribute::Table(t) = a {
                Some(*t)
            } else {
                None
            }
        })
        .unwrap_or(u32::from(route.header.table));
    if table != MAIN_TABLE || route.header.kind != RouteType::Unicast {
        return None;
    }
    let mut observed = ObservedRoute {
        dst: IpNetwork::new(
            default_dst(route.header.address_family)?,
            route.header.destination_prefix_length,
        )
        .ok()?,
        gateway: None,
        oif: None,
        protocol: u8::from(route.header.protocol),
        priority: None,
        mtu: None,
        advmss: None,
    };
    for attr in &route.attributes {
        match attr {
            RouteAttribute::Destination(a) => {
                observed.dst =
                    IpNetwork::new(address(a)?, route.header.destination_prefix_length).ok()?;
            }
            RouteAttribute::Gateway(a) => observed.gateway = address(a),
            RouteAttribute::Oif(i) => observed.oif = Some(*i),
            RouteAttribute::Priority(p) => observed.priority = Some(*p),
            RouteAttribute::Metrics(metrics) => {
                for m in metrics {
                    match m {
                        RouteMetric::Mtu(v) => observed.mtu = Some(*v),
                        RouteMetric::Advmss(v) => observed.advmss = Some(*v),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(observed)
}

fn default_dst(family: AddressFamily) -> Option<IpAddr> {
    match family {
        AddressFamily::Inet => Some(IpAddr::from([0, 0, 0, 0])),
        AddressFamily::Inet6 => Some(IpAddr::from([0u16; 8])),
        _ => None,
    }
}

fn address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}
