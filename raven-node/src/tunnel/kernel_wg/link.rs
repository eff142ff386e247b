//! The `wireguard` link itself, over rtnetlink: look up by name, create, set MTU and up,
//! delete. Only a link of kind `wireguard` under our configured name is ever touched.

use std::io;

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};

use crate::tunnel::nlsock::NlSocket;

/// What we see of a link with our device name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedLink {
    /// Interface index.
    pub index: u32,
    /// `IFLA_INFO_KIND` (`wireguard`, `tun`, ...), if any.
    pub kind: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
}

impl ObservedLink {
    /// Whether it is a kernel WireGuard link.
    pub fn is_wireguard(&self) -> bool {
        self.kind.as_deref() == Some("wireguard")
    }
}

fn parse(msg: &LinkMessage) -> ObservedLink {
    let mut link = ObservedLink {
        index: msg.header.index,
        kind: None,
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        link.kind = Some(match k {
                            InfoKind::Wireguard => "wireguard".to_owned(),
                            other => other.to_string(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// `RTM_GETLINK` by name; `None` when there is no such link.
pub fn by_name(nl: &mut NlSocket, name: &str) -> io::Result<Option<ObservedLink>> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    match nl.request(RouteNetlinkMessage::GetLink(msg), 0, false) {
        Ok(answers) => Ok(answers.iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(parse(l)),
            _ => None,
        })),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates a `wireguard` link `name` with `mtu`, up.
pub fn create(nl: &mut NlSocket, name: &str, mtu: u32) -> io::Result<()> {
    let mut m = LinkMessage::default();
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    m.attributes.push(LinkAttribute::IfName(name.to_owned()));
    m.attributes.push(LinkAttribute::Mtu(mtu));
    m.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Wireguard,
        )]));
    nl.request(
        RouteNetlinkMessage::NewLink(m),
        netlink_packet_core::NLM_F_CREATE | netlink_packet_core::NLM_F_EXCL,
        false,
    )
    .map(|_| ())
}

/// Sets MTU and up on link `index`.
pub fn set_mtu_up(nl: &mut NlSocket, index: u32, mtu: u32) -> io::Result<()> {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    m.attributes.push(LinkAttribute::Mtu(mtu));
    nl.request(RouteNetlinkMessage::SetLink(m), 0, false)
        .map(|_| ())
}

/// Deletes link `index`.
pub fn delete(nl: &mut NlSocket, index: u32) -> io::Result<()> {
    let mut m = LinkMessage::default();
    m.header.index = index;
    nl.request(RouteNetlinkMessage::DelLink(m), 0, false)
        .map(|_| ())
}
