//! Pure translation of a [`TunnelPlan`] into the WireGuard peers a driver must configure,
//! shared by the userspace and (issue 7) kernel WireGuard drivers. No I/O.
//!
//! Allowed IPs are [`TunnelPlan::allowed_prefixes`]: the peer's own domain plus, on a NATed
//! gateway, the domains the central gateway relays for us. The transit domains of a central
//! gateway ([`TunnelPlan::transit_domains`]) are *not* added: in WireGuard a prefix belongs to
//! exactly one peer (cryptokey routing), and a transit domain already belongs to the peer that
//! owns it; packets a NATed peer sends us for another NATed domain carry that peer's own
//! source addresses, which its allowed IPs accept. Only selector-based IPsec needs transit
//! domains, on its local side.

use std::net::SocketAddr;

use ipnetwork::IpNetwork;

use super::error::TunnelError;
use super::key::decode_key;
use crate::plan::TunnelPlan;

/// One peer as the driver must configure it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredPeer {
    /// Peer's Gateway name.
    pub gateway: String,
    /// Its endpoint node.
    pub node: String,
    /// Its public key.
    pub public_key: [u8; 32],
    /// Where to send first; learned from the peer's authenticated packets afterwards.
    pub endpoint: Option<SocketAddr>,
    /// Prefixes routed to it and accepted from it.
    pub allowed: Vec<IpNetwork>,
    /// Persistent keepalive, seconds.
    pub keepalive: Option<u16>,
}

/// A plan peer the driver leaves out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Peer's Gateway name.
    pub gateway: String,
    /// Why.
    pub reason: SkipReason,
}

/// Why a plan peer cannot be configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// The Gateway has not published `config.publicKey` yet.
    NoPublicKey,
    /// `config.publicKey` is not a base64 32-byte key.
    BadPublicKey(String),
    /// The key is our own (a copied Gateway object or a shared state directory).
    OwnPublicKey,
    /// Another peer, sorted earlier, already uses the key.
    DuplicatePublicKey {
        /// The peer that keeps it.
        kept: String,
    },
    /// A driver-specific reason (IPsec: no endpoint address, SPI collision, ...).
    Unusable(String),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoPublicKey => f.write_str("no publicKey published yet"),
            Self::BadPublicKey(p) => write!(f, "publicKey unusable: {p}"),
            Self::OwnPublicKey => f.write_str("publicKey is our own"),
            Self::DuplicatePublicKey { kept } => {
                write!(f, "publicKey already used by gateway {kept}")
            }
            Self::Unusable(why) => f.write_str(why),
        }
    }
}

/// [`desired_peers`] for a WireGuard driver: refuses a plan made for another driver (both
/// WireGuard drivers share this check, the IPsec driver has its own).
pub fn wireguard_peers(
    plan: &TunnelPlan,
    own_public: &[u8; 32],
    keepalive_secs: u16,
) -> Result<(Vec<DesiredPeer>, Vec<Skipped>), TunnelError> {
    if plan.driver != crate::plan::TunnelDriver::WireGuard {
        return Err(TunnelError::Plan(format!(
            "plan is for {:?}, this driver speaks WireGuard",
            plan.driver
        )));
    }
    Ok(desired_peers(plan, own_public, keepalive_secs))
}

/// The peers to configure and the ones left out, in plan order (sorted by gateway).
pub fn desired_peers(
    plan: &TunnelPlan,
    own_public: &[u8; 32],
    keepalive_secs: u16,
) -> (Vec<DesiredPeer>, Vec<Skipped>) {
    let mut out: Vec<DesiredPeer> = Vec::with_capacity(plan.peers.len());
    let mut skipped = Vec::new();
    for peer in &plan.peers {
        let skip = |reason| Skipped {
            gateway: peer.gateway.clone(),
            reason,
        };
        let key = match peer.public_key.as_deref().map(str::trim) {
            None | Some("") => {
                skipped.push(skip(SkipReason::NoPublicKey));
                continue;
            }
            Some(text) => match decode_key(text) {
                Ok(k) => k,
                Err(p) => {
                    skipped.push(skip(SkipReason::BadPublicKey(p.to_owned())));
                    continue;
                }
            },
        };
        if &key == own_public {
            skipped.push(skip(SkipReason::OwnPublicKey));
            continue;
        }
        if let Some(kept) = out.iter().find(|p| p.public_key == key) {
            let kept = kept.gateway.clone();
            skipped.push(skip(SkipReason::DuplicatePublicKey { kept }));
            continue;
        }
        let mut allowed: Vec<IpNetwork> = plan.allowed_prefixes(peer).copied().collect();
        allowed.sort_unstable();
        allowed.dedup();
        out.push(DesiredPeer {
            gateway: peer.gateway.clone(),
            node: peer.node.clone(),
            public_key: key,
            endpoint: peer.endpoint,
            allowed,
            keepalive: (peer.initiator && keepalive_secs > 0).then_some(keepalive_secs),
        });
    }
    (out, skipped)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plan::{
        LocalEndpoint, NatType, PeerMode, RemoteDomain, TunnelDriver, TunnelPeer, TunnelPlan,
    };
    use crate::tunnel::key::encode;

    /// A plan with the given peers; each peer `i` owns domain `i` with prefix 10.(i+1).0.0/16.
    pub(crate) fn plan_with(peers: Vec<TunnelPeer>) -> TunnelPlan {
        let domains = peers
            .iter()
            .enumerate()
            .map(|(i, p)| RemoteDomain {
                gateway: p.gateway.clone(),
                prefixes: vec![format!("10.{}.0.0/16", i + 1).parse().expect("prefix")],
                via: i,
                under_nat: p.under_nat,
                hole_punching: None,
            })
            .collect();
        TunnelPlan {
            driver: TunnelDriver::WireGuard,
            device: "raven-wg0".into(),
            listen_port: 4500,
            local: LocalEndpoint {
                gateway: "local".into(),
                node: "me".into(),
                private_ip: "192.168.0.1".parse().expect("ip"),
                public_ip: None,
                under_nat: false,
                nat_type: NatType::Unknown,
                prefixes: vec![],
            },
            central: None,
            domains,
            peers,
            relays: false,
        }
    }

    pub(crate) fn peer(gateway: &str, key: Option<String>, initiator: bool) -> TunnelPeer {
        TunnelPeer {
            gateway: gateway.into(),
            node: format!("{gateway}-node"),
            private_ip: "192.168.1.1".parse().expect("ip"),
            public_ip: Some("203.0.113.1".parse().expect("ip")),
            endpoint: Some("203.0.113.1:4500".parse().expect("sa")),
            mode: PeerMode::Direct,
            under_nat: false,
            nat_type: NatType::Unknown,
            initiator,
            public_key: key,
            domains: vec![],
        }
    }

    fn numbered(mut peers: Vec<TunnelPeer>) -> TunnelPlan {
        for (i, p) in peers.iter_mut().enumerate() {
            p.domains = vec![i];
        }
        plan_with(peers)
    }

    #[test]
    fn translates_and_skips() {
        let own = [1u8; 32];
        let k2 = encode(&[2u8; 32]);
        let plan = numbered(vec![
            peer("a", Some(k2.clone()), true),
            peer("b", None, true),
            peer("c", Some("not-base64!".into()), false),
            peer("d", Some(encode(&own)), false),
            peer("e", Some(k2), false),
            peer("f", Some(format!(" {} ", encode(&[3u8; 32]))), false),
        ]);
        let (peers, skipped) = desired_peers(&plan, &own, 25);
        assert_eq!(
            peers,
            vec![
                DesiredPeer {
                    gateway: "a".into(),
                    node: "a-node".into(),
                    public_key: [2u8; 32],
                    endpoint: Some("203.0.113.1:4500".parse().expect("sa")),
                    allowed: vec!["10.1.0.0/16".parse().expect("p")],
                    keepalive: Some(25),
                },
                DesiredPeer {
                    gateway: "f".into(),
                    node: "f-node".into(),
                    public_key: [3u8; 32],
                    endpoint: Some("203.0.113.1:4500".parse().expect("sa")),
                    allowed: vec!["10.6.0.0/16".parse().expect("p")],
                    keepalive: None,
                },
            ]
        );
        let reasons: Vec<(&str, &SkipReason)> = skipped
            .iter()
            .map(|s| (s.gateway.as_str(), &s.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("b", &SkipReason::NoPublicKey),
                (
                    "c",
                    &SkipReason::BadPublicKey(
                        "not valid base64 (expected a key as from `wg genkey`)".into()
                    )
                ),
                ("d", &SkipReason::OwnPublicKey),
                ("e", &SkipReason::DuplicatePublicKey { kept: "a".into() }),
            ]
        );
    }

    #[test]
    fn keepalive_zero_disables() {
        let plan = numbered(vec![peer("a", Some(encode(&[2u8; 32])), true)]);
        let (peers, _) = desired_peers(&plan, &[1u8; 32], 0);
        assert_eq!(peers[0].keepalive, None);
    }

    #[test]
    fn central_peer_carries_relayed_domains() {
        // Peer "c" (central) carries its own domain 0 and the relayed domain 1.
        let mut c = peer("c", Some(encode(&[2u8; 32])), true);
        c.domains = vec![0, 1];
        let mut plan = plan_with(vec![c]);
        plan.domains.push(RemoteDomain {
            gateway: "relayed".into(),
            prefixes: vec![
                "10.9.0.0/16".parse().expect("p"),
                "10.1.0.0/16".parse().expect("p"),
            ],
            via: 0,
            under_nat: true,
            hole_punching: None,
        });
        let (peers, _) = desired_peers(&plan, &[1u8; 32], 5);
        let want: Vec<IpNetwork> = vec![
            "10.1.0.0/16".parse().expect("p"),
            "10.9.0.0/16".parse().expect("p"),
        ];
        assert_eq!(peers[0].allowed, want, "sorted and de-duplicated");
    }
}
