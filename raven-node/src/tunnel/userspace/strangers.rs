//! Handshake initiations from keys we have no peer for yet, remembered briefly so a peer that
//! is added a moment later gets an immediate handshake back to where it knocked from.
//!
//! Why: on a gateway failover the edge learns of the new gateway (and handshakes with it) at
//! about the same time the new gateway learns of the edge. When the edge wins that race its
//! initiation is dropped (unknown key), and without this the edge retries only after
//! REKEY_TIMEOUT (5 s). A NATed edge cannot be reached first by the gateway — but its dropped
//! initiation just opened the NAT mapping to exactly this socket, so answering it with our own
//! initiation as soon as the peer exists completes the handshake within one poll interval.
//!
//! Safety: the claimed static key was decrypted with our private key (`parse_handshake_anon`),
//! but the initiation is not fully authenticated until the peer is known, so a forger could
//! make us send one initiation (148 bytes) to an address of its choice, once per peer addition
//! and only for a key we are about to add. The table is bounded ([`CAPACITY`]) and entries
//! expire after [`TTL_MS`].

use std::collections::HashMap;
use std::net::SocketAddr;

/// Entries kept at most; the oldest is evicted when full.
pub(crate) const CAPACITY: usize = 256;
/// How long a knock is worth answering, in milliseconds (two REKEY_TIMEOUTs).
pub(crate) const TTL_MS: u64 = 10_000;

/// Recent knocks by static public key.
#[derive(Debug, Default)]
pub(crate) struct Strangers {
    seen: HashMap<[u8; 32], (SocketAddr, u64)>,
}

impl Strangers {
    /// Records that `key` sent an initiation from `src` at `now` (ms).
    pub fn knock(&mut self, key: [u8; 32], src: SocketAddr, now: u64) {
        self.seen
            .retain(|_, (_, at)| now.saturating_sub(*at) <= TTL_MS);
        if self.seen.len() >= CAPACITY
            && !self.seen.contains_key(&key)
            && let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| *k)
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(key, (src, now));
    }

    /// Where `key` knocked from within the last [`TTL_MS`], forgetting it (answer once).
    pub fn take(&mut self, key: &[u8; 32], now: u64) -> Option<SocketAddr> {
        let (src, at) = self.seen.remove(key)?;
        (now.saturating_sub(at) <= TTL_MS).then_some(src)
    }

    /// Number of remembered knocks (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn a_recent_knock_is_answered_once() {
        let mut s = Strangers::default();
        s.knock([1; 32], addr(1), 100);
        assert_eq!(s.take(&[1; 32], 200), Some(addr(1)));
        assert_eq!(s.take(&[1; 32], 200), None);
        assert_eq!(s.take(&[2; 32], 200), None);
    }

    #[test]
    fn the_latest_source_wins_and_old_knocks_expire() {
        let mut s = Strangers::default();
        s.knock([1; 32], addr(1), 100);
        s.knock([1; 32], addr(2), 150);
        assert_eq!(s.take(&[1; 32], 150 + TTL_MS), Some(addr(2)));
        s.knock([3; 32], addr(3), 100);
        assert_eq!(s.take(&[3; 32], 101 + TTL_MS), None);
    }

    #[test]
    fn bounded_by_evicting_the_oldest() {
        let mut s = Strangers::default();
        for i in 0..CAPACITY + 10 {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            s.knock(key, addr(1), 1000 + i as u64);
        }
        assert_eq!(s.len(), CAPACITY);
        assert_eq!(s.take(&[0; 32], 2000), None, "the oldest was evicted");
        let mut newest = [0u8; 32];
        newest[..8].copy_from_slice(&((CAPACITY + 9) as u64).to_le_bytes());
        assert_eq!(s.take(&newest, 2000), Some(addr(1)));
    }
}
