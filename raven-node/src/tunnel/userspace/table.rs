//! The peer table the packet path reads: cryptokey routing (destination prefix → peer),
//! receiver index → peer, public key → peer, and the source check on decrypted packets.
//!
//! The table is immutable once built; `apply` builds a new one and swaps it in, so the packet
//! threads take no lock for the lookup itself. Per-peer protocol state ([`PeerState`]) is
//! shared between successive tables, which is how an unchanged peer keeps its session.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use boringtun::noise::Tunn;
use ipnetwork::IpNetwork;

use super::liveness::Liveness;
use crate::tunnel::peers::DesiredPeer;

/// Protocol state of one peer, kept across applies while its key and keepalive stay.
pub(crate) struct PeerState {
    /// boringtun's session state machine; both packet threads and the timer thread use it.
    pub tunn: Mutex<Tunn>,
    /// Current endpoint: the configured one, then wherever authenticated packets come from.
    pub endpoint: Mutex<Option<SocketAddr>>,
    /// Our 24-bit local index for this peer (receiver index >> 8 in its packets).
    pub index: u32,
    /// The keepalive the `Tunn` was built with (it cannot be changed on a live `Tunn`).
    pub keepalive: Option<u16>,
    /// The endpoint the plan gave last time: a learned endpoint is only overwritten when the
    /// plan's changes (upstream rewrote it on every resync, breaking NATed peers until their
    /// next packet).
    pub configured_endpoint: Mutex<Option<SocketAddr>>,
    /// Dead-session detection boringtun lacks (see [`super::liveness`]).
    pub liveness: Liveness,
}

impl std::fmt::Debug for PeerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerState")
            .field("index", &self.index)
            .field("keepalive", &self.keepalive)
            .finish_non_exhaustive()
    }
}

/// A configured peer.
#[derive(Debug)]
pub(crate) struct Entry {
    /// What the plan asked for.
    pub config: DesiredPeer,
    /// Its live state.
    pub state: Arc<PeerState>,
}

impl Entry {
    /// Whether a decrypted packet from this peer may carry source `src`.
    pub fn allows(&self, src: IpAddr) -> bool {
        self.config.allowed.iter().any(|n| n.contains(src))
    }
}

/// Immutable lookup structure over the configured peers.
#[derive(Debug, Default)]
pub(crate) struct PeerTable {
    /// Peers in plan order.
    pub peers: Vec<Entry>,
    /// IPv4 routes `(network, mask, peer)`, longest prefix first.
    v4: Vec<(u32, u32, usize)>,
    /// IPv6 routes, longest prefix first.
    v6: Vec<(ipnetwork::Ipv6Network, usize)>,
    by_key: HashMap<[u8; 32], usize>,
    by_index: HashMap<u32, usize>,
}

impl PeerTable {
    /// Builds the lookups. A prefix listed by two peers goes to the first (the planner never
    /// produces that; this only keeps the lookup deterministic).
    pub fn new(peers: Vec<Entry>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut by_key = HashMap::new();
        let mut by_index = HashMap::new();
        for (i, e) in peers.iter().enumerate() {
            by_key.insert(e.config.public_key, i);
            by_index.insert(e.state.index, i);
            for net in &e.config.allowed {
                match net {
                    IpNetwork::V4(n) => {
                        let mask = u32::from(n.mask());
                        v4.push((u32::from(n.network()) & mask, mask, i));
                    }
                    IpNetwork::V6(n) => v6.push((*n, i)),
                }
            }
        }
        // Stable sort: equal prefixes keep plan order, so the first peer wins.
        v4.sort_by_key(|&(_, mask, _)| std::cmp::Reverse(mask.count_ones()));
        v6.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix()));
        Self {
            peers,
            v4,
            v6,
            by_key,
            by_index,
        }
    }

    /// Longest-prefix match of a destination.
    pub fn route(&self, dst: IpAddr) -> Option<&Entry> {
        let i = match dst {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .find(|&&(net, mask, _)| a & mask == net)
                    .map(|&(_, _, i)| i)
            }
            IpAddr::V6(a) => self.v6.iter().find(|(n, _)| n.contains(a)).map(|&(_, i)| i),
        }?;
        self.peers.get(i)
    }

    /// The peer with this static public key.
    pub fn by_key(&self, key: &[u8; 32]) -> Option<&Entry> {
        self.by_key.get(key).and_then(|&i| self.peers.get(i))
    }

    /// The peer a packet with this receiver index is for (boringtun puts the peer's 24-bit
    /// index in the upper bits and a session counter in the lowest 8).
    pub fn by_receiver(&self, receiver: u32) -> Option<&Entry> {
        self.by_index
            .get(&(receiver >> 8))
            .and_then(|&i| self.peers.get(i))
    }
}

/// Destination address of a raw IP packet.
pub(crate) fn destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let b: [u8; 4] = packet[16..20].try_into().ok()?;
            Some(IpAddr::from(b))
        }
        6 if packet.len() >= 40 => {
            let b: [u8; 16] = packet[24..40].try_into().ok()?;
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boringtun::x25519::{PublicKey, StaticSecret};

    fn entry(name: &str, key: u8, index: u32, allowed: &[&str]) -> Entry {
        let secret = StaticSecret::from([key; 32]);
        let peer_public = PublicKey::from(&StaticSecret::from([key.wrapping_add(100); 32]));
        Entry {
            config: DesiredPeer {
                gateway: name.into(),
                node: name.into(),
                public_key: [key; 32],
                endpoint: None,
                allowed: allowed.iter().map(|a| a.parse().expect("net")).collect(),
                keepalive: None,
            },
            state: Arc::new(PeerState {
                tunn: Mutex::new(Tunn::new(secret, peer_public, None, None, index, None)),
                endpoint: Mutex::new(None),
                index,
                keepalive: None,
                configured_endpoint: Mutex::new(None),
                liveness: Liveness::default(),
            }),
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let table = PeerTable::new(vec![
            entry("wide", 1, 10, &["10.0.0.0/8"]),
            entry("narrow", 2, 11, &["10.1.2.0/24", "fd00::/64"]),
            entry("dup", 3, 12, &["10.0.0.0/8"]),
        ]);
        let route = |a: &str| {
            table
                .route(a.parse().expect("ip"))
                .map(|e| e.config.gateway.as_str())
        };
        assert_eq!(route("10.1.2.3"), Some("narrow"));
        assert_eq!(route("10.1.3.3"), Some("wide"), "first of equal prefixes");
        assert_eq!(route("11.0.0.1"), None);
        assert_eq!(route("fd00::1"), Some("narrow"));
        assert_eq!(route("fd01::1"), None);
    }

    #[test]
    fn lookups_by_key_index_and_source() {
        let table = PeerTable::new(vec![
            entry("a", 1, 0x00ab_cdef, &["10.1.0.0/16"]),
            entry("b", 2, 7, &[]),
        ]);
        assert_eq!(table.by_key(&[2; 32]).map(|e| e.state.index), Some(7));
        assert!(table.by_key(&[9; 32]).is_none());
        let a = table.by_receiver(0xabcd_ef03).expect("a by receiver");
        assert_eq!(a.config.gateway, "a");
        assert!(table.by_receiver(0x0000_0803).is_none());
        assert!(a.allows("10.1.200.1".parse().expect("ip")));
        assert!(!a.allows("10.2.0.1".parse().expect("ip")));
    }

    #[test]
    fn packet_destinations() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[16..20].copy_from_slice(&[10, 1, 2, 3]);
        assert_eq!(destination(&v4), Some("10.1.2.3".parse().expect("ip")));
        assert_eq!(destination(&v4[..19]), None);
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[39] = 1;
        assert_eq!(destination(&v6), Some("::1".parse().expect("ip")));
        assert_eq!(destination(&[]), None);
        assert_eq!(destination(&[0x15; 40]), None);
    }
}
