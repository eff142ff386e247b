//! The per-pod route set handed to `raven-cni` through the node-state file.
//!
//! Every pod gets one route per remote prefix via its own gateway with the tunnel MTU, so
//! cross-domain flows are sized right from the first packet. The plan carries the prefixes, the
//! MTU and a content fingerprint; the daemon owns the generation counter (it must increase
//! across restarts, which a pure function cannot know) and bumps it whenever the fingerprint
//! changes.

use ipnetwork::IpNetwork;
use raven_api::nodestate::{NODE_STATE_SCHEMA, NodeState};

/// Remote prefixes and MTU for the pods of this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRoutes {
    /// Routed remote prefixes, merged across domains (every one goes to the same pod gateway),
    /// sorted. Empty when the node has no tunnel role.
    pub remote_prefixes: Vec<IpNetwork>,
    /// Tunnel MTU for those routes.
    pub mtu: u32,
    /// FNV-1a 64 of the MTU and the prefixes: equal content, equal fingerprint, on every build
    /// and platform (std's hasher promises neither).
    pub fingerprint: u64,
}

impl PodRoutes {
    /// The route set with its fingerprint.
    pub fn new(remote_prefixes: Vec<IpNetwork>, mtu: u32) -> Self {
        let mut hash = Fnv::default();
        hash.write(&mtu.to_be_bytes());
        for prefix in &remote_prefixes {
            match prefix {
                IpNetwork::V4(v4) => {
                    hash.write(&[4]);
                    hash.write(&v4.ip().octets());
                }
                IpNetwork::V6(v6) => {
                    hash.write(&[6]);
                    hash.write(&v6.ip().octets());
                }
            }
            hash.write(&[prefix.prefix()]);
        }
        Self {
            remote_prefixes,
            mtu,
            fingerprint: hash.0,
        }
    }

    /// The node-state file content for this route set. `generation` is the daemon's counter,
    /// `updated_at` its clock (seconds since the epoch).
    pub fn to_node_state(&self, node_name: &str, generation: u64, updated_at: u64) -> NodeState {
        NodeState {
            schema: NODE_STATE_SCHEMA,
            generation,
            node_name: node_name.to_owned(),
            remote_prefixes: self.remote_prefixes.clone(),
            mtu: self.mtu,
            updated_at,
        }
    }
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_tracks_content() {
        let a = PodRoutes::new(vec!["10.244.2.0/23".parse().unwrap()], 1436);
        let b = PodRoutes::new(vec!["10.244.2.0/23".parse().unwrap()], 1436);
        let c = PodRoutes::new(vec!["10.244.2.0/24".parse().unwrap()], 1436);
        let d = PodRoutes::new(vec!["10.244.2.0/23".parse().unwrap()], 1420);
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_ne!(a.fingerprint, d.fingerprint);
        // Pinned value: the fingerprint must not change between builds.
        assert_eq!(
            PodRoutes::new(Vec::new(), 1500).fingerprint,
            0x4d15_247f_9dc0_c86c
        );
    }

    #[test]
    fn node_state_is_valid() {
        let routes = PodRoutes::new(vec!["10.244.2.0/23".parse().unwrap()], 1436);
        let state = routes.to_node_state("edge-2", 3, 1_700_000_000);
        state.validate().unwrap();
        assert_eq!(state.remote_prefixes, routes.remote_prefixes);
        assert_eq!(state.mtu, 1436);
        assert_eq!(state.generation, 3);
    }
}
