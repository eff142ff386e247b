//! Pure planning for the IPsec driver: the SAs and policies a [`TunnelPlan`] needs, and the
//! minimal ordered operations that turn the observed (ours only) xfrm state into them.
//!
//! Per peer and key index: one outbound and one inbound ESP tunnel-mode SA, UDP-encapsulated,
//! between our address and the peer's endpoint. Per peer prefix: an `out` policy (destination
//! = the prefix, template reqid = the outbound SA of the *send* index) and `in`/`fwd` policies
//! (source = the prefix, template source = the peer's address, so a peer can only inject
//! traffic from its own prefixes, like WireGuard's allowed IPs). Every object carries our
//! `if_id`, so it only ever matches traffic of our `xfrm` interface.
//!
//! Operation order makes rotation lossless: add SAs, then point the policies at the new
//! ones, then delete stale policies, then stale SAs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use boringtun::x25519::StaticSecret;
use ipnetwork::IpNetwork;

use super::keys::{AeadKey, KeyRing, PairError, PairSecret};
use crate::plan::TunnelPlan;
use crate::tunnel::peers::{DesiredPeer, SkipReason, Skipped, desired_peers};

/// Base priority of our policies; more specific prefixes get lower (= preferred) values.
pub const PRIORITY_BASE: u32 = 0x5200;

/// Direction of an SA, from our point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SaDir {
    /// Peer → us.
    In,
    /// Us → peer.
    Out,
}

/// Identity of an SA in the kernel: destination address and SPI (protocol is always ESP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SaId {
    /// Outer destination.
    pub dst: IpAddr,
    /// SPI.
    pub spi: u32,
}

/// One ESP SA as we configure it (or as observed, with `key` possibly redacted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sa {
    /// Destination and SPI.
    pub id: SaId,
    /// Outer source.
    pub src: IpAddr,
    /// Request id: the outbound SPI for outbound SAs (what `out` policies select), the
    /// inbound SPI for inbound ones (informational).
    pub reqid: u32,
    /// UDP encapsulation source port.
    pub sport: u16,
    /// UDP encapsulation destination port.
    pub dport: u16,
    /// rfc4106(gcm(aes)) key; `None` when the kernel redacted it in a dump.
    pub key: Option<AeadKey>,
}

impl Sa {
    /// Whether an observed SA is the desired one (a redacted key is taken as equal: the SPI is
    /// derived from the same material, so a different key would mean a different SPI).
    pub fn matches(&self, observed: &Sa) -> bool {
        self.id == observed.id
            && self.src == observed.src
            && self.reqid == observed.reqid
            && self.sport == observed.sport
            && self.dport == observed.dport
            && (observed.key.is_none() || observed.key == self.key)
    }
}

/// Policy direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyDir {
    /// Decrypted traffic delivered locally.
    In,
    /// Traffic leaving through the `xfrm` interface.
    Out,
    /// Decrypted traffic forwarded (to pods, to the domain through raven0).
    Fwd,
}

/// Identity of a policy: direction and selector (the `if_id` is always ours).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyId {
    /// Direction.
    pub dir: PolicyDir,
    /// Selector source.
    pub src: IpNetwork,
    /// Selector destination.
    pub dst: IpNetwork,
}

/// A policy with its single ESP tunnel-mode template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Direction and selector.
    pub id: PolicyId,
    /// Template outer source (ours for `out`, the peer's for `in`/`fwd`).
    pub tmpl_src: IpAddr,
    /// Template outer destination.
    pub tmpl_dst: IpAddr,
    /// Template reqid: the outbound SA's for `out`; 0 (any SA of that peer) for `in`/`fwd`,
    /// so both key generations are accepted during a rotation.
    pub reqid: u32,
    /// Priority (lower wins).
    pub priority: u32,
}

/// Everything the kernel should hold for the plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// SAs by identity.
    pub sas: BTreeMap<SaId, Sa>,
    /// Policies by identity.
    pub policies: BTreeMap<PolicyId, Policy>,
    /// Peers configured, by gateway, with their outbound SPI of the send index.
    pub peers: Vec<PeerSas>,
    /// Plan peers left out, with the reason.
    pub skipped: Vec<Skipped>,
}

/// The SAs of one peer, for statistics and the keepalive thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSas {
    /// Gateway name.
    pub gateway: String,
    /// Endpoint node.
    pub node: String,
    /// Outer peer address and encapsulation port.
    pub endpoint: std::net::SocketAddr,
    /// We send NAT keepalives to it.
    pub keepalive: bool,
    /// Outbound SA of the send index.
    pub out: SaId,
    /// Inbound SAs, all indices.
    pub inbound: Vec<SaId>,
}

/// Computes the desired SAs and policies. `local` is our outer address (the node's private
/// IP: behind NAT, the NAT rewrites it).
pub fn desired(
    plan: &TunnelPlan,
    own: &StaticSecret,
    ring: &KeyRing,
    keepalive_secs: u16,
) -> Desired {
    let own_public = *boringtun::x25519::PublicKey::from(own).as_bytes();
    let (peers, mut skipped) = desired_peers(plan, &own_public, keepalive_secs);
    let local = plan.local.private_ip;
    let mut out = Desired::default();
    for peer in peers {
        let skip = |why: String| Skipped {
            gateway: peer.gateway.clone(),
            reason: SkipReason::Unusable(why),
        };
        match peer_sas(&peer, local, plan.listen_port, own, ring) {
            Err(why) => skipped.push(skip(why)),
            Ok((sas, info)) => {
                if let Some(clash) = sas.iter().find_map(|sa| {
                    out.sas.contains_key(&sa.id).then(|| {
                        let owner = out
                            .peers
                            .iter()
                            .find(|p| p.out == sa.id || p.inbound.contains(&sa.id))
                            .map_or("?", |p| p.gateway.as_str());
                        format!(
                            "SPI {:#010x} towards {} is already used by gateway {owner} \
                             (a 1 in 2^28 coincidence: change the key index or a PSK)",
                            sa.id.spi, sa.id.dst
                        )
                    })
                }) {
                    skipped.push(skip(clash));
                    continue;
                }
                for sa in sas {
                    out.sas.insert(sa.id, sa);
                }
                add_policies(&mut out.policies, &peer, local, &info);
                out.peers.push(info);
            }
        }
    }
    out.skipped = skipped;
    out
}

/// The SAs of one peer, or why it cannot have any.
fn peer_sas(
    peer: &DesiredPeer,
    local: IpAddr,
    listen_port: u16,
    own: &StaticSecret,
    ring: &KeyRing,
) -> Result<(Vec<Sa>, PeerSas), String> {
    let endpoint = peer
        .endpoint
        .ok_or_else(|| "no public address published (IPsec needs one to address SAs)".to_owned())?;
    if endpoint.is_ipv4() != local.is_ipv4() {
        return Err(format!(
            "endpoint {endpoint} and our address {local} are of different families"
        ));
    }
    let pair = PairSecret::new(own, &peer.public_key).map_err(|e| match e {
        PairError::NonContributory => {
            "publicKey is a low-order point (no shared secret)".to_owned()
        }
    })?;
    let mut sas = Vec::new();
    let mut inbound = Vec::new();
    let mut send_out = None;
    for index in ring.indices() {
        let (okey, ospi) = pair.outbound(ring, index);
        let (ikey, ispi) = pair.inbound(ring, index);
        let o = Sa {
            id: SaId {
                dst: endpoint.ip(),
                spi: ospi,
            },
            src: local,
            reqid: ospi,
            sport: listen_port,
            dport: endpoint.port(),
            key: Some(okey),
        };
        let i = Sa {
            id: SaId {
                dst: local,
                spi: ispi,
            },
            src: endpoint.ip(),
            reqid: ispi,
            sport: endpoint.port(),
            dport: listen_port,
            key: Some(ikey),
        };
        if index == ring.send() {
            send_out = Some(o.id);
        }
        inbound.push(i.id);
        sas.push(o);
        sas.push(i);
    }
    let out = send_out.expect("KeyRing guarantees the send index is one of its indices");
    Ok((
        sas,
        PeerSas {
            gateway: peer.gateway.clone(),
            node: peer.node.clone(),
            endpoint,
            keepalive: peer.keepalive.is_some(),
            out,
            inbound,
        },
    ))
}

fn priority(prefix: &IpNetwork) -> u32 {
    PRIORITY_BASE + (128 - u32::from(prefix.prefix()))
}

fn any(prefix: &IpNetwork) -> IpNetwork {
    let unspecified: IpAddr = if prefix.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    IpNetwork::new(unspecified, 0).expect("/0 is valid for both families")
}

fn add_policies(
    policies: &mut BTreeMap<PolicyId, Policy>,
    peer: &DesiredPeer,
    local: IpAddr,
    info: &PeerSas,
) {
    let remote = info.endpoint.ip();
    for prefix in &peer.allowed {
        let mut put = |dir, src, dst, tmpl_src, tmpl_dst, reqid| {
            let id = PolicyId { dir, src, dst };
            // Prefixes are disjoint across peers (the planner excludes conflicts); should two
            // peers still claim one, the first (sorted by gateway) keeps it.
            policies.entry(id).or_insert(Policy {
                id,
                tmpl_src,
                tmpl_dst,
                reqid,
                priority: priority(prefix),
            });
        };
        put(
            PolicyDir::Out,
            any(prefix),
            *prefix,
            local,
            remote,
            info.out.spi,
        );
        for dir in [PolicyDir::In, PolicyDir::Fwd] {
            put(dir, *prefix, any(prefix), remote, local, 0);
        }
    }
}

/// Counters of one inbound SA at one observation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InCounters {
    /// Packets accepted.
    pub packets: u64,
    /// Packets dropped by the replay or ICV checks.
    pub drops: u64,
}

/// Inbound SAs whose peer evidently restarted its outbound SA from sequence 1 (a reboot or a
/// `cleanup` on the other side): since the previous observation, packets were dropped by the
/// replay/ICV checks and none was accepted. Re-creating our inbound SA (same key) resets the
/// window so the peer's new sequence is accepted. Only SAs we want and saw twice qualify.
///
/// The price, documented in the README: whoever can replay captured packets while no
/// legitimate packet arrives can make us reset the window and then replay them once.
pub fn stalled_inbound(
    desired: &Desired,
    before: &BTreeMap<SaId, InCounters>,
    now: &BTreeMap<SaId, InCounters>,
) -> Vec<SaId> {
    desired
        .peers
        .iter()
        .flat_map(|p| p.inbound.iter())
        .filter(|id| match (before.get(id), now.get(id)) {
            (Some(b), Some(n)) => n.drops > b.drops && n.packets == b.packets,
            _ => false,
        })
        .copied()
        .collect()
}

/// One xfrm change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Add an SA.
    AddSa(Sa),
    /// Delete an SA.
    DelSa(SaId),
    /// Create or replace a policy (atomic in the kernel).
    PutPolicy(Policy),
    /// Delete a policy.
    DelPolicy(PolicyId),
}

/// The ordered operations from `observed` (our objects only) to `desired`.
pub fn diff(desired: &Desired, observed_sas: &[Sa], observed_policies: &[Policy]) -> Vec<Op> {
    let mut replace = Vec::new();
    let mut add = Vec::new();
    let mut put = Vec::new();
    let mut del_policies = Vec::new();
    let mut del_sas = Vec::new();
    let observed: BTreeMap<SaId, &Sa> = observed_sas.iter().map(|s| (s.id, s)).collect();
    for (id, sa) in &desired.sas {
        match observed.get(id) {
            Some(o) if sa.matches(o) => {}
            Some(_) => {
                replace.push(Op::DelSa(*id));
                replace.push(Op::AddSa(sa.clone()));
            }
            None => add.push(Op::AddSa(sa.clone())),
        }
    }
    let seen: BTreeSet<SaId> = observed.keys().copied().collect();
    for id in seen {
        if !desired.sas.contains_key(&id) {
            del_sas.push(Op::DelSa(id));
        }
    }
    let observed_p: BTreeMap<PolicyId, &Policy> =
        observed_policies.iter().map(|p| (p.id, p)).collect();
    for (id, p) in &desired.policies {
        if observed_p.get(id).is_none_or(|o| *o != p) {
            put.push(Op::PutPolicy(p.clone()));
        }
    }
    for id in observed_p.keys() {
        if !desired.policies.contains_key(id) {
            del_policies.push(Op::DelPolicy(*id));
        }
    }
    replace
        .into_iter()
        .chain(add)
        .chain(put)
        .chain(del_policies)
        .chain(del_sas)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::ipsec::keys::index_of;
    use crate::tunnel::key::encode;
    use crate::tunnel::peers::tests::{peer, plan_with};

    fn secret(b: u8) -> StaticSecret {
        StaticSecret::from([b; 32])
    }

    fn public_b64(b: u8) -> String {
        encode(boringtun::x25519::PublicKey::from(&secret(b)).as_bytes())
    }

    /// Our side (key 1) with peers "a" (key 2, domain 10.1/16) and "b" (key 3, 10.2/16).
    fn two_peer_plan() -> TunnelPlan {
        let mut a = peer("a", Some(public_b64(2)), true);
        a.domains = vec![0];
        let mut b = peer("b", Some(public_b64(3)), false);
        b.domains = vec![1];
        b.endpoint = Some("198.51.100.7:4501".parse().expect("sa"));
        let mut plan = plan_with(vec![a, b]);
        plan.driver = crate::plan::TunnelDriver::Ipsec;
        plan
    }

    fn ring(text: &str) -> KeyRing {
        KeyRing::parse(text).expect("ring")
    }

    #[test]
    fn desired_sas_and_policies() {
        let plan = two_peer_plan();
        let d = desired(&plan, &secret(1), &KeyRing::default(), 5);
        assert!(d.skipped.is_empty(), "{:?}", d.skipped);
        assert_eq!(d.sas.len(), 4, "one pair of SAs per peer");
        assert_eq!(d.policies.len(), 6, "out/in/fwd per prefix");
        let local: IpAddr = "192.168.0.1".parse().expect("ip");
        let b = &d.peers[1];
        assert_eq!(b.gateway, "b");
        assert!(!b.keepalive);
        assert!(d.peers[0].keepalive);
        let out = &d.sas[&b.out];
        assert_eq!(out.src, local);
        assert_eq!(out.id.dst, "198.51.100.7".parse::<IpAddr>().expect("ip"));
        assert_eq!((out.sport, out.dport), (4500, 4501));
        assert_eq!(out.reqid, out.id.spi);
        let inb = &d.sas[&b.inbound[0]];
        assert_eq!(inb.id.dst, local);
        assert_eq!((inb.sport, inb.dport), (4501, 4500));
        let pid = PolicyId {
            dir: PolicyDir::Out,
            src: "0.0.0.0/0".parse().expect("p"),
            dst: "10.2.0.0/16".parse().expect("p"),
        };
        let pol = &d.policies[&pid];
        assert_eq!(pol.reqid, b.out.spi);
        assert_eq!((pol.tmpl_src, pol.tmpl_dst), (local, out.id.dst));
        assert_eq!(pol.priority, PRIORITY_BASE + 112);
        let fwd = &d.policies[&PolicyId {
            dir: PolicyDir::Fwd,
            src: "10.2.0.0/16".parse().expect("p"),
            dst: "0.0.0.0/0".parse().expect("p"),
        }];
        assert_eq!(
            (fwd.tmpl_src, fwd.tmpl_dst, fwd.reqid),
            (out.id.dst, local, 0)
        );
    }

    #[test]
    fn the_peer_computes_the_mirror_image() {
        // Peer "a" (key 2) sees us (key 1) as its peer: its outbound SA is our inbound.
        let ours = desired(&two_peer_plan(), &secret(1), &KeyRing::default(), 5);
        let mut me = peer("local", Some(public_b64(1)), false);
        me.domains = vec![0];
        me.endpoint = Some("192.168.0.1:4500".parse().expect("sa"));
        let mut theirs_plan = plan_with(vec![me]);
        theirs_plan.local.private_ip = "203.0.113.1".parse().expect("ip");
        let theirs = desired(&theirs_plan, &secret(2), &KeyRing::default(), 5);
        let their_out = &theirs.sas[&theirs.peers[0].out];
        let our_in = &ours.sas[&ours.peers[0].inbound[0]];
        assert_eq!(their_out.id, our_in.id);
        assert_eq!(their_out.key, our_in.key);
        assert_eq!((their_out.src, their_out.sport), (our_in.src, our_in.sport));
    }

    #[test]
    fn rotation_keeps_both_generations_inbound_and_sends_with_one() {
        let plan = two_peer_plan();
        let d = desired(&plan, &secret(1), &ring("1 -\n2 -\nsend 2\n"), 5);
        assert_eq!(
            d.sas.len(),
            8,
            "two generations × two directions × two peers"
        );
        for p in &d.peers {
            assert_eq!(index_of(p.out.spi), 2);
            let idx: Vec<u8> = p.inbound.iter().map(|i| index_of(i.spi)).collect();
            assert_eq!(idx, vec![1, 2]);
        }
    }

    #[test]
    fn unusable_peers_are_skipped_with_a_reason() {
        let mut plan = two_peer_plan();
        plan.peers[0].endpoint = None;
        plan.peers[1].endpoint = Some("[2001:db8::1]:4500".parse().expect("sa"));
        let d = desired(&plan, &secret(1), &KeyRing::default(), 5);
        assert!(d.sas.is_empty());
        let why: Vec<String> = d.skipped.iter().map(|s| s.reason.to_string()).collect();
        assert!(why[0].contains("no public address"), "{why:?}");
        assert!(why[1].contains("different families"), "{why:?}");
    }

    /// Observed state equal to `d`.
    fn observed(d: &Desired) -> (Vec<Sa>, Vec<Policy>) {
        (
            d.sas.values().cloned().collect(),
            d.policies.values().cloned().collect(),
        )
    }

    #[test]
    fn diff_table() {
        let plan = two_peer_plan();
        let one = desired(&plan, &secret(1), &ring("1 -\n"), 5);
        let both = desired(&plan, &secret(1), &ring("1 -\n2 -\n"), 5);
        let switched = desired(&plan, &secret(1), &ring("1 -\n2 -\nsend 2\n"), 5);
        let two = desired(&plan, &secret(1), &ring("2 -\n"), 5);
        let (sas1, pol1) = observed(&one);
        let (sas_b, pol_b) = observed(&both);
        let (sas_s, pol_s) = observed(&switched);

        // Converged: nothing to do.
        assert!(diff(&one, &sas1, &pol1).is_empty());
        // From nothing: SAs first, then policies.
        let ops = diff(&one, &[], &[]);
        assert_eq!(ops.len(), 4 + 6);
        assert!(ops[..4].iter().all(|o| matches!(o, Op::AddSa(_))));
        assert!(ops[4..].iter().all(|o| matches!(o, Op::PutPolicy(_))));
        // Step 1 of a rotation: only new SAs, policies untouched.
        let ops = diff(&both, &sas1, &pol1);
        assert_eq!(ops.len(), 4);
        assert!(
            ops.iter()
                .all(|o| matches!(o, Op::AddSa(sa) if index_of(sa.id.spi) == 2))
        );
        // Step 2: only the two out policies switch.
        let ops = diff(&switched, &sas_b, &pol_b);
        assert_eq!(ops.len(), 2);
        assert!(ops.iter().all(|o| matches!(o, Op::PutPolicy(p)
            if p.id.dir == PolicyDir::Out && index_of(p.reqid) == 2)));
        // Step 3: old SAs go, policies stay.
        let ops = diff(&two, &sas_s, &pol_s);
        assert_eq!(ops.len(), 4);
        assert!(
            ops.iter()
                .all(|o| matches!(o, Op::DelSa(id) if index_of(id.spi) == 1))
        );
        // Everything at once still orders add < put < delete policy < delete SA.
        let ops = diff(&two, &sas1, &pol1);
        let rank = |o: &Op| match o {
            Op::AddSa(_) => 0,
            Op::PutPolicy(_) => 1,
            Op::DelPolicy(_) => 2,
            Op::DelSa(_) => 3,
        };
        assert!(
            ops.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
            "{ops:?}"
        );
        // Tear-down.
        let ops = diff(&Desired::default(), &sas1, &pol1);
        assert_eq!(ops.len(), 10);
        assert!(matches!(ops[0], Op::DelPolicy(_)));
        assert!(matches!(ops[9], Op::DelSa(_)));
    }

    #[test]
    fn stalled_inbound_table() {
        let d = desired(&two_peer_plan(), &secret(1), &KeyRing::default(), 5);
        let id = d.peers[0].inbound[0];
        let c = |packets, drops| InCounters { packets, drops };
        let out_id = d.peers[0].out;
        let cases = [
            // (before, now, stalled?)
            (Some(c(10, 0)), Some(c(10, 3)), true), // drops only: the peer restarted
            (Some(c(10, 0)), Some(c(12, 3)), false), // some accepted: just reordering
            (Some(c(10, 3)), Some(c(10, 3)), false), // idle
            (None, Some(c(0, 3)), false),           // first observation
            (Some(c(10, 0)), None, false),          // gone
        ];
        for (before, now, want) in cases {
            let b: BTreeMap<SaId, InCounters> = before.map(|x| (id, x)).into_iter().collect();
            let n: BTreeMap<SaId, InCounters> = now.map(|x| (id, x)).into_iter().collect();
            assert_eq!(
                stalled_inbound(&d, &b, &n),
                if want { vec![id] } else { vec![] }
            );
        }
        // Outbound SAs never qualify.
        let b = BTreeMap::from([(out_id, c(1, 0))]);
        let n = BTreeMap::from([(out_id, c(1, 5))]);
        assert!(stalled_inbound(&d, &b, &n).is_empty());
    }

    #[test]
    fn diff_replaces_changed_sas_and_tolerates_redacted_keys() {
        let plan = two_peer_plan();
        let d = desired(&plan, &secret(1), &KeyRing::default(), 5);
        let (mut sas, pols) = observed(&d);
        for sa in &mut sas {
            sa.key = None;
        }
        assert!(diff(&d, &sas, &pols).is_empty(), "redacted keys are fine");
        sas[0].dport = 9999;
        let ops = diff(&d, &sas, &pols);
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0], Op::DelSa(sas[0].id));
        assert!(matches!(&ops[1], Op::AddSa(sa) if sa.id == sas[0].id));
        // A wrong key (same SPI) is replaced too.
        let (mut sas, _) = observed(&d);
        sas[1].key = Some(AeadKey([0u8; 36]));
        assert_eq!(diff(&d, &sas, &pols).len(), 2);
        // A changed policy template is one atomic update.
        let (sas, mut pols) = observed(&d);
        pols[0].tmpl_dst = "192.0.2.9".parse().expect("ip");
        assert!(matches!(
            diff(&d, &sas, &pols).as_slice(),
            [Op::PutPolicy(_)]
        ));
    }
}
