//! The WireGuard generic-netlink family: resolve it, read a device (`WG_CMD_GET_DEVICE`),
//! change it (`WG_CMD_SET_DEVICE`). Message types come from `netlink-packet-wireguard`.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use ipnetwork::IpNetwork;
use netlink_packet_generic::GenlMessage;
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_wireguard::{
    WireguardAddressFamily, WireguardAllowedIp, WireguardAllowedIpAttr, WireguardAttribute,
    WireguardCmd, WireguardMessage, WireguardPeer, WireguardPeerAttribute, WireguardPeerFlags,
};

use super::diff::{DeviceChange, ObservedDevice, ObservedPeer, PeerChange};
use crate::tunnel::nlsock::NlSocket;

/// A generic-netlink socket with the resolved `wireguard` family id.
#[derive(Debug)]
pub struct WgGenl {
    nl: NlSocket,
    family: u16,
}

/// Resolves a generic-netlink family id (the kernel loads the family's module on demand).
pub fn family_id(nl: &mut NlSocket, name: &str) -> io::Result<u16> {
    let msg = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(name.to_owned())],
    });
    let answers = nl.request(msg, 0, false)?;
    answers
        .iter()
        .flat_map(|m| m.payload.nlas.iter())
        .find_map(|a| match a {
            GenlCtrlAttrs::FamilyId(id) => Some(*id),
            _ => None,
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no {name} family id")))
}

impl WgGenl {
    /// Opens a socket and resolves the family; `ENOENT` means the kernel has no WireGuard.
    pub fn open() -> io::Result<Self> {
        let mut nl = NlSocket::open(netlink_sys::protocols::NETLINK_GENERIC)?;
        let family = family_id(&mut nl, "wireguard")?;
        Ok(Self { nl, family })
    }

    fn message(
        &self,
        cmd: WireguardCmd,
        attributes: Vec<WireguardAttribute>,
    ) -> GenlMessage<WireguardMessage> {
        let mut m = GenlMessage::from_payload(WireguardMessage { cmd, attributes });
        m.set_resolved_family_id(self.family);
        m
    }

    /// Reads device `name` (keys, port, peers with counters).
    pub fn get(&mut self, name: &str) -> io::Result<ObservedDevice> {
        let msg = self.message(
            WireguardCmd::GetDevice,
            vec![WireguardAttribute::IfName(name.to_owned())],
        );
        let answers = self.nl.request(msg, 0, true)?;
        let mut dev = ObservedDevice::default();
        // Large peer sets arrive split over several messages; peers accumulate.
        for m in answers {
            for attr in m.payload.attributes {
                match attr {
                    WireguardAttribute::PrivateKey(k) => dev.private_key = Some(k),
                    WireguardAttribute::ListenPort(p) => dev.listen_port = p,
                    WireguardAttribute::Peers(peers) => {
                        for p in peers {
                            merge_peer(&mut dev.peers, parse_peer(&p));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(dev)
    }

    /// Applies `change` to device `name` (nothing is sent for an empty change).
    pub fn set(&mut self, name: &str, change: &DeviceChange) -> io::Result<()> {
        if change.is_empty() {
            return Ok(());
        }
        let mut attrs = vec![WireguardAttribute::IfName(name.to_owned())];
        if let Some(k) = change.private_key {
            attrs.push(WireguardAttribute::PrivateKey(k));
        }
        if let Some(p) = change.listen_port {
            attrs.push(WireguardAttribute::ListenPort(p));
        }
        if !change.peers.is_empty() {
            attrs.push(WireguardAttribute::Peers(
                change.peers.iter().map(peer_attrs).collect(),
            ));
        }
        let msg = self.message(WireguardCmd::SetDevice, attrs);
        self.nl.request(msg, 0, false).map(|_| ())
    }
}

fn merge_peer(peers: &mut Vec<ObservedPeer>, p: ObservedPeer) {
    match peers.iter_mut().find(|q| q.public_key == p.public_key) {
        // A continuation message repeats the key and carries more allowed IPs.
        Some(q) => q.allowed.extend(p.allowed),
        None => peers.push(p),
    }
}

fn parse_peer(p: &WireguardPeer) -> ObservedPeer {
    let mut out = ObservedPeer::default();
    for a in p.iter() {
        match a {
            WireguardPeerAttribute::PublicKey(k) => out.public_key = *k,
            WireguardPeerAttribute::PresharedKey(k) => out.preshared_key = *k,
            WireguardPeerAttribute::Endpoint(e) => out.endpoint = Some(*e),
            WireguardPeerAttribute::PersistentKeepalive(k) => out.keepalive = *k,
            // Zero means "never": the kernel reports the epoch before the first handshake.
            WireguardPeerAttribute::LastHandshake(t) if t.seconds > 0 || t.nano_seconds > 0 => {
                out.last_handshake = Some(
                    SystemTime::UNIX_EPOCH
                        + Duration::new(
                            u64::try_from(t.seconds).unwrap_or(0),
                            u32::try_from(t.nano_seconds).unwrap_or(0),
                        ),
                );
            }
            WireguardPeerAttribute::RxBytes(b) => out.rx_bytes = *b,
            WireguardPeerAttribute::TxBytes(b) => out.tx_bytes = *b,
            WireguardPeerAttribute::AllowedIps(ips) => {
                out.allowed.extend(ips.iter().filter_map(parse_allowed));
            }
            _ => {}
        }
    }
    out
}

fn parse_allowed(ip: &WireguardAllowedIp) -> Option<IpNetwork> {
    let mut addr = None;
    let mut cidr = None;
    for a in ip.iter() {
        match a {
            WireguardAllowedIpAttr::IpAddr(x) => addr = Some(*x),
            WireguardAllowedIpAttr::Cidr(c) => cidr = Some(*c),
            _ => {}
        }
    }
    IpNetwork::new(addr?, cidr?).ok()
}

fn allowed_attrs(net: &IpNetwork) -> WireguardAllowedIp {
    let family = match net.ip() {
        IpAddr::V4(_) => WireguardAddressFamily::Ipv4,
        IpAddr::V6(_) => WireguardAddressFamily::Ipv6,
    };
    WireguardAllowedIp(vec![
        WireguardAllowedIpAttr::Family(family),
        WireguardAllowedIpAttr::IpAddr(net.network()),
        WireguardAllowedIpAttr::Cidr(net.prefix()),
    ])
}

fn peer_attrs(change: &PeerChange) -> WireguardPeer {
    match change {
        PeerChange::Remove { public_key } => WireguardPeer(vec![
            WireguardPeerAttribute::PublicKey(*public_key),
            WireguardPeerAttribute::Flags(WireguardPeerFlags::RemoveMe),
        ]),
        PeerChange::Set {
            public_key,
            endpoint,
            keepalive,
            preshared_key,
            allowed,
            ..
        } => {
            let mut v = vec![WireguardPeerAttribute::PublicKey(*public_key)];
            if let Some(e) = endpoint {
                v.push(WireguardPeerAttribute::Endpoint(*e));
            }
            if let Some(k) = keepalive {
                v.push(WireguardPeerAttribute::PersistentKeepalive(*k));
            }
            if let Some(k) = preshared_key {
                v.push(WireguardPeerAttribute::PresharedKey(*k));
            }
            if let Some(nets) = allowed {
                v.push(WireguardPeerAttribute::Flags(
                    WireguardPeerFlags::ReplaceAllowedIps,
                ));
                v.push(WireguardPeerAttribute::AllowedIps(
                    nets.iter().map(allowed_attrs).collect(),
                ));
            }
            WireguardPeer(v)
        }
    }
}
