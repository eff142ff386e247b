//! Pure diff between the observed kernel WireGuard device and the desired one: only what
//! differs is sent, so an unchanged peer keeps its session and counters. No I/O.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::SystemTime;

use ipnetwork::IpNetwork;

use crate::tunnel::peers::DesiredPeer;

/// A device as `WG_CMD_GET_DEVICE` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedDevice {
    /// The private key (the kernel shows it to CAP_NET_ADMIN; `None` when unset).
    pub private_key: Option<[u8; 32]>,
    /// Listen port (0 before one is set: the kernel picks a random one).
    pub listen_port: u16,
    /// Peers.
    pub peers: Vec<ObservedPeer>,
}

/// One peer as the kernel shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedPeer {
    /// Its public key.
    pub public_key: [u8; 32],
    /// Preshared key (all zeros: none).
    pub preshared_key: [u8; 32],
    /// Current endpoint (configured or roamed).
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive in seconds (0: off).
    pub keepalive: u16,
    /// Allowed IPs.
    pub allowed: Vec<IpNetwork>,
    /// Last completed handshake.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
}

/// What to send in one `WG_CMD_SET_DEVICE`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceChange {
    /// New private key.
    pub private_key: Option<[u8; 32]>,
    /// New listen port.
    pub listen_port: Option<u16>,
    /// Peer changes (removals first).
    pub peers: Vec<PeerChange>,
}

impl DeviceChange {
    /// Whether nothing needs to be sent.
    pub fn is_empty(&self) -> bool {
        self.private_key.is_none() && self.listen_port.is_none() && self.peers.is_empty()
    }
}

/// A change of one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerChange {
    /// Remove the peer (not in the plan any more).
    Remove {
        /// Its key.
        public_key: [u8; 32],
    },
    /// Create the peer or update the listed fields (`None`: leave as is).
    Set {
        /// Its key.
        public_key: [u8; 32],
        /// Gateway name, for the report.
        gateway: String,
        /// The peer did not exist.
        new: bool,
        /// Endpoint to set.
        endpoint: Option<SocketAddr>,
        /// Keepalive to set (0 disables).
        keepalive: Option<u16>,
        /// Preshared key to set (zeros remove it).
        preshared_key: Option<[u8; 32]>,
        /// Allowed IPs replacing the current ones.
        allowed: Option<Vec<IpNetwork>>,
    },
}

/// Everything the diff needs besides the observation.
#[derive(Clone, Debug)]
pub struct Desired<'a> {
    /// Our private key.
    pub private_key: [u8; 32],
    /// Listen port.
    pub listen_port: u16,
    /// Peers from [`crate::tunnel::peers::desired_peers`].
    pub peers: &'a [DesiredPeer],
    /// Preshared key for every peer.
    pub preshared_key: Option<[u8; 32]>,
    /// The endpoint this process last configured per peer key: an observed endpoint that
    /// differs from the plan is a roam (the kernel follows authenticated packets, e.g. a NAT
    /// rebinding) and is kept unless the plan itself moved since we configured it.
    pub configured_endpoints: &'a HashMap<[u8; 32], SocketAddr>,
}

fn sorted(v: &[IpNetwork]) -> Vec<IpNetwork> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// The minimal change from `observed` to `desired`.
pub fn diff(observed: &ObservedDevice, desired: &Desired<'_>) -> DeviceChange {
    let mut change = DeviceChange {
        private_key: (observed.private_key != Some(desired.private_key))
            .then_some(desired.private_key),
        listen_port: (observed.listen_port != desired.listen_port).then_some(desired.listen_port),
        peers: Vec::new(),
    };
    for p in &observed.peers {
        if !desired.peers.iter().any(|d| d.public_key == p.public_key) {
            change.peers.push(PeerChange::Remove {
                public_key: p.public_key,
            });
        }
    }
    let psk = desired.preshared_key.unwrap_or([0; 32]);
    for want in desired.peers {
        let keepalive = want.keepalive.unwrap_or(0);
        let allowed = sorted(&want.allowed);
        match observed
            .peers
            .iter()
            .find(|p| p.public_key == want.public_key)
        {
            None => change.peers.push(PeerChange::Set {
                public_key: want.public_key,
                gateway: want.gateway.clone(),
                new: true,
                endpoint: want.endpoint,
                keepalive: Some(keepalive),
                preshared_key: Some(psk),
                allowed: Some(allowed),
            }),
            Some(have) => {
                let endpoint = match want.endpoint {
                    None => None,
                    Some(e) => {
                        let moved = match desired.configured_endpoints.get(&want.public_key) {
                            Some(prev) => *prev != e,
                            None => have.endpoint != Some(e),
                        };
                        (moved || have.endpoint.is_none()).then_some(e)
                    }
                };
                let set = PeerChange::Set {
                    public_key: want.public_key,
                    gateway: want.gateway.clone(),
                    new: false,
                    endpoint,
                    keepalive: (have.keepalive != keepalive).then_some(keepalive),
                    preshared_key: (have.preshared_key != psk).then_some(psk),
                    allowed: (sorted(&have.allowed) != allowed).then_some(allowed),
                };
                if let PeerChange::Set {
                    endpoint: None,
                    keepalive: None,
                    preshared_key: None,
                    allowed: None,
                    ..
                } = set
                {
                    continue;
                }
                change.peers.push(set);
            }
        }
    }
    change
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().expect("test prefix")
    }

    fn want(k: u8, endpoint: Option<&str>, allowed: &[&str]) -> DesiredPeer {
        DesiredPeer {
            gateway: format!("gw-{k}"),
            node: format!("n{k}"),
            public_key: [k; 32],
            endpoint: endpoint.map(|e| e.parse().expect("test endpoint")),
            allowed: allowed.iter().map(|a| net(a)).collect(),
            keepalive: Some(5),
        }
    }

    fn have(k: u8, endpoint: Option<&str>, allowed: &[&str]) -> ObservedPeer {
        ObservedPeer {
            public_key: [k; 32],
            endpoint: endpoint.map(|e| e.parse().expect("test endpoint")),
            keepalive: 5,
            allowed: allowed.iter().map(|a| net(a)).collect(),
            ..ObservedPeer::default()
        }
    }

    fn desired<'a>(
        peers: &'a [DesiredPeer],
        configured: &'a HashMap<[u8; 32], SocketAddr>,
    ) -> Desired<'a> {
        Desired {
            private_key: [9; 32],
            listen_port: 4500,
            peers,
            preshared_key: None,
            configured_endpoints: configured,
        }
    }

    #[test]
    fn converged_device_needs_nothing() {
        let peers = [want(
            1,
            Some("198.18.0.11:4500"),
            &["10.244.1.0/24", "10.244.2.0/24"],
        )];
        let observed = ObservedDevice {
            private_key: Some([9; 32]),
            listen_port: 4500,
            // Order of allowed IPs does not matter.
            peers: vec![have(
                1,
                Some("198.18.0.11:4500"),
                &["10.244.2.0/24", "10.244.1.0/24"],
            )],
        };
        let none = HashMap::new();
        assert!(diff(&observed, &desired(&peers, &none)).is_empty());
    }

    #[test]
    fn fresh_device_gets_key_port_and_peers() {
        let peers = [want(1, None, &["10.244.1.0/24"])];
        let none = HashMap::new();
        let c = diff(&ObservedDevice::default(), &desired(&peers, &none));
        assert_eq!(c.private_key, Some([9; 32]));
        assert_eq!(c.listen_port, Some(4500));
        assert!(matches!(
            &c.peers[..],
            [PeerChange::Set {
                new: true,
                keepalive: Some(5),
                ..
            }]
        ));
    }

    #[test]
    fn only_differing_fields_and_stale_peers_change() {
        let peers = [
            want(1, Some("198.18.0.11:4500"), &["10.244.1.0/24"]),
            want(2, None, &["10.244.3.0/24"]),
        ];
        let observed = ObservedDevice {
            private_key: Some([9; 32]),
            listen_port: 4500,
            peers: vec![
                have(
                    1,
                    Some("198.18.0.11:4500"),
                    &["10.244.1.0/24", "10.244.9.0/24"],
                ),
                have(2, None, &["10.244.3.0/24"]),
                have(3, None, &["10.244.5.0/24"]),
            ],
        };
        let none = HashMap::new();
        let c = diff(&observed, &desired(&peers, &none));
        assert_eq!(c.private_key, None);
        assert_eq!(c.listen_port, None);
        assert_eq!(
            c.peers,
            vec![
                PeerChange::Remove {
                    public_key: [3; 32]
                },
                PeerChange::Set {
                    public_key: [1; 32],
                    gateway: "gw-1".into(),
                    new: false,
                    endpoint: None,
                    keepalive: None,
                    preshared_key: None,
                    allowed: Some(vec![net("10.244.1.0/24")]),
                },
            ]
        );
    }

    #[test]
    fn roamed_endpoint_is_kept_until_the_plan_moves() {
        let peers = [want(1, Some("198.18.0.21:4500"), &["10.244.3.0/24"])];
        let observed = ObservedDevice {
            private_key: Some([9; 32]),
            listen_port: 4500,
            peers: vec![have(1, Some("198.18.0.21:1024"), &["10.244.3.0/24"])],
        };
        let mut configured = HashMap::new();
        configured.insert([1; 32], "198.18.0.21:4500".parse().expect("addr"));
        assert!(diff(&observed, &desired(&peers, &configured)).is_empty());
        // The plan moved the peer: follow it.
        configured.insert([1; 32], "198.18.0.99:4500".parse().expect("addr"));
        let c = diff(&observed, &desired(&peers, &configured));
        assert!(matches!(
            &c.peers[..],
            [PeerChange::Set {
                endpoint: Some(_),
                ..
            }]
        ));
    }

    #[test]
    fn keepalive_and_psk_changes_are_sent() {
        let mut peers = [want(1, None, &["10.244.3.0/24"])];
        peers[0].keepalive = None;
        let observed = ObservedDevice {
            private_key: Some([9; 32]),
            listen_port: 4500,
            peers: vec![have(1, None, &["10.244.3.0/24"])],
        };
        let none = HashMap::new();
        let mut d = desired(&peers, &none);
        d.preshared_key = Some([7; 32]);
        let c = diff(&observed, &d);
        assert!(matches!(
            &c.peers[..],
            [PeerChange::Set { keepalive: Some(0), preshared_key: Some(k), endpoint: None, allowed: None, .. }] if *k == [7; 32]
        ));
    }
}
