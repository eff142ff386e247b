//! The kernel IPsec driver: route-based ESP-in-UDP on an `xfrm` interface, keyed without an
//! IKE daemon.
//!
//! - **Device**: an `xfrm` link named `plan.device` with our [`IF_ID`]; the daemon routes the
//!   remote prefixes into it (table 9028), exactly as for the WireGuard device. Because every
//!   SA and policy carries that `if_id`, they only ever match traffic routed through our
//!   interface: other IPsec users on the host and the CNI's masquerade rules are unaffected
//!   (no skip-NAT chain, unlike upstream).
//! - **SAs**: ESP tunnel mode between our node address and each peer's endpoint, UDP
//!   encapsulated (port `plan.listen_port`, 4500) so it crosses NAT, AES-256-GCM
//!   (`rfc4106(gcm(aes))`), 64-bit extended sequence numbers and a 128-packet replay window.
//! - **Keys** ([`keys`]): per pair and direction from X25519 between the two published
//!   identities plus an optional PSK per key index; the SPI carries the index. Rotation
//!   without loss follows the key ring file (`<state-dir>/ipsec.keys`, or the file in
//!   `RAVEN_IPSEC_KEYS`): see [`keys::KeyRing`].
//! - **Shape**: observe (dump, keep only objects with our `if_id`) → [`plan::desired`] and
//!   [`plan::diff`] (pure) → apply the ordered operations ([`netlink`]). Nothing is ever
//!   flushed; `cleanup` deletes our objects one by one.
//! - **Reception** needs a UDP socket with `UDP_ENCAP_ESPINUDP` on the port ([`encap`]); it
//!   also sends NAT keepalives for peers we initiate towards.

pub mod encap;
pub mod keys;
pub mod netlink;
pub mod plan;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use encap::Encap;
use keys::KeyRing;
use netlink::Nl;
use plan::{Op, PeerSas};

use super::key::KeyFile;
use super::{DriverOptions, DriverReport, PeerStats, TunnelDriver, TunnelError};
use crate::plan::{TunnelDriver as Family, TunnelPlan};

/// The `if_id` of our `xfrm` interface, SAs and policies: what makes an xfrm object ours.
pub const IF_ID: u32 = 0x0052_4156;
/// Default key ring file name in the state directory.
pub const KEY_RING_FILE: &str = "ipsec.keys";

/// Kernel IPsec (xfrm) driver.
#[derive(Debug)]
pub struct Ipsec {
    options: DriverOptions,
    key: KeyFile,
    encap: Option<Encap>,
    /// Device name of the last successful apply (a renamed device is removed).
    device: Option<String>,
    /// Peers of the last successful apply.
    peers: Vec<PeerSas>,
    /// Inbound SA counters at the last apply ([`plan::stalled_inbound`]).
    inbound: BTreeMap<plan::SaId, plan::InCounters>,
}

impl Ipsec {
    /// Loads or creates the persisted X25519 identity; touches no network state.
    pub fn new(options: DriverOptions) -> Result<Self, TunnelError> {
        let key = KeyFile::load_or_create(&options.state_dir)?;
        Ok(Self {
            options,
            key,
            encap: None,
            device: None,
            peers: Vec::new(),
            inbound: BTreeMap::new(),
        })
    }

    /// The key ring: the configured file (which must exist), else `<state-dir>/ipsec.keys`
    /// when present, else index 0 without PSK.
    fn ring(&self) -> Result<KeyRing, TunnelError> {
        let path = match &self.options.ipsec_keys {
            Some(p) => p.clone(),
            None => {
                let p = self.options.state_dir.join(KEY_RING_FILE);
                if !p.exists() {
                    return Ok(KeyRing::default());
                }
                p
            }
        };
        KeyRing::load(&path).map_err(TunnelError::KeyRing)
    }

    fn device_err(device: &str, op: &'static str) -> impl FnOnce(std::io::Error) -> TunnelError {
        let device = device.to_owned();
        move |source| TunnelError::Device { device, op, source }
    }

    /// Creates or adopts our `xfrm` link; returns whether it was created.
    fn ensure_link(&self, nl: &mut Nl, name: &str) -> Result<bool, TunnelError> {
        let mtu = self.options.mtu;
        let link = netlink::get_link(nl, name).map_err(Self::device_err(name, "get"))?;
        let (link, created) = match link {
            Some(l) => {
                if l.kind.as_deref() != Some("xfrm") || l.if_id != Some(IF_ID) {
                    return Err(TunnelError::ForeignDevice {
                        device: name.to_owned(),
                        problem: format!(
                            "it is a {} link with if_id {:?}, not our xfrm interface \
                             (if_id {IF_ID:#x})",
                            l.kind.as_deref().unwrap_or("unknown"),
                            l.if_id
                        ),
                    });
                }
                (l, false)
            }
            None => {
                netlink::create_xfrm_link(nl, name, IF_ID, mtu)
                    .map_err(Self::device_err(name, "create xfrm interface"))?;
                let l = netlink::get_link(nl, name)
                    .map_err(Self::device_err(name, "get"))?
                    .ok_or_else(|| TunnelError::ForeignDevice {
                        device: name.to_owned(),
                        problem: "vanished right after creation".into(),
                    })?;
                (l, true)
            }
        };
        if !link.up || link.mtu != mtu {
            netlink::set_link(nl, link.index, mtu).map_err(Self::device_err(name, "set up"))?;
        }
        Ok(created)
    }

    /// Deletes the link `name` if it is our xfrm interface; returns whether it did.
    fn remove_link(nl: &mut Nl, name: &str) -> Result<bool, TunnelError> {
        match netlink::get_link(nl, name).map_err(Self::device_err(name, "get"))? {
            Some(l) if l.kind.as_deref() == Some("xfrm") && l.if_id == Some(IF_ID) => {
                netlink::del_link(nl, l.index).map_err(Self::device_err(name, "delete"))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Applies the operations in order, stopping at the first failure (the order keeps every
    /// intermediate state lossless; the next pass resumes).
    fn run_ops(nl: &mut Nl, ops: &[Op]) -> Result<(), TunnelError> {
        for op in ops {
            let result = match op {
                Op::AddSa(sa) => netlink::add_sa(nl, sa, IF_ID),
                Op::DelSa(id) => netlink::del_sa(nl, id, IF_ID),
                Op::PutPolicy(p) => netlink::put_policy(nl, p, IF_ID),
                Op::DelPolicy(id) => netlink::del_policy(nl, id, IF_ID),
            };
            result.map_err(|source| TunnelError::Xfrm {
                op: describe(op),
                source,
            })?;
        }
        Ok(())
    }

    /// Removes every SA and policy of ours (policies first, so nothing selects a deleted SA).
    fn remove_xfrm(nl: &mut Nl) -> Result<usize, TunnelError> {
        let xfrm_err = |op: &str| {
            let op = op.to_owned();
            move |source| TunnelError::Xfrm { op, source }
        };
        let sas = netlink::dump_sas(nl, IF_ID).map_err(xfrm_err("dump SAs"))?;
        let policies = netlink::dump_policies(nl, IF_ID).map_err(xfrm_err("dump policies"))?;
        let sas: Vec<plan::Sa> = sas.into_iter().map(|o| o.sa).collect();
        let ops = plan::diff(&plan::Desired::default(), &sas, &policies);
        Self::run_ops(nl, &ops)?;
        Ok(ops.len())
    }

    fn teardown(&mut self) -> Result<bool, TunnelError> {
        let mut xfrm = Nl::xfrm().map_err(|source| TunnelError::Xfrm {
            op: "open netlink socket".into(),
            source,
        })?;
        Self::remove_xfrm(&mut xfrm)?;
        let mut route = Nl::route().map_err(Self::device_err(&self.options.device, "netlink"))?;
        let mut removed = false;
        let names: Vec<String> = self
            .device
            .iter()
            .cloned()
            .chain(std::iter::once(self.options.device.clone()))
            .collect();
        for name in names {
            removed |= Self::remove_link(&mut route, &name)?;
        }
        self.encap = None;
        self.device = None;
        self.peers.clear();
        Ok(removed)
    }
}

/// A log-friendly name of an operation (never the key).
fn describe(op: &Op) -> String {
    match op {
        Op::AddSa(sa) => format!("add SA {}→{} spi {:#010x}", sa.src, sa.id.dst, sa.id.spi),
        Op::DelSa(id) => format!("delete SA →{} spi {:#010x}", id.dst, id.spi),
        Op::PutPolicy(p) => format!("put policy {:?} {}→{}", p.id.dir, p.id.src, p.id.dst),
        Op::DelPolicy(id) => format!("delete policy {:?} {}→{}", id.dir, id.src, id.dst),
    }
}

impl TunnelDriver for Ipsec {
    fn name(&self) -> &'static str {
        "ipsec"
    }

    fn apply(&mut self, plan: Option<&TunnelPlan>) -> Result<DriverReport, TunnelError> {
        let mut report = DriverReport::default();
        let Some(plan) = plan else {
            report.device_removed = self.teardown()?;
            return Ok(report);
        };
        if plan.driver != Family::Ipsec {
            return Err(TunnelError::Plan(format!(
                "the IPsec driver got a {:?} plan",
                plan.driver
            )));
        }
        // Everything that can fail without side effects first: key ring, socket.
        let ring = self.ring()?;
        let desired = plan::desired(plan, self.key.secret(), &ring, self.options.keepalive_secs);
        if self
            .encap
            .as_ref()
            .is_none_or(|e| e.port() != plan.listen_port)
        {
            self.encap = None;
            self.encap = Some(Encap::open(plan.listen_port, self.options.keepalive_secs)?);
        }
        let mut route = Nl::route().map_err(Self::device_err(&plan.device, "netlink"))?;
        if let Some(old) = self.device.as_deref().filter(|d| *d != plan.device) {
            Self::remove_link(&mut route, old)?;
        }
        report.device_created = self.ensure_link(&mut route, &plan.device)?;
        tracing::debug!(device = %plan.device, "xfrm interface ready");
        self.device = Some(plan.device.clone());

        let mut xfrm = Nl::xfrm().map_err(|source| TunnelError::Xfrm {
            op: "open netlink socket".into(),
            source,
        })?;
        let xfrm_err = |op: &str| {
            let op = op.to_owned();
            move |source| TunnelError::Xfrm { op, source }
        };
        let observed = netlink::dump_sas(&mut xfrm, IF_ID).map_err(xfrm_err("dump SAs"))?;
        let counters: BTreeMap<plan::SaId, plan::InCounters> = observed
            .iter()
            .map(|o| {
                let c = plan::InCounters {
                    packets: o.packets,
                    drops: o.drops,
                };
                (o.sa.id, c)
            })
            .collect();
        let stalled = plan::stalled_inbound(&desired, &self.inbound, &counters);
        let sas: Vec<plan::Sa> = observed
            .into_iter()
            .map(|o| o.sa)
            // A stalled inbound SA is treated as absent: deleted, then added by the diff.
            .filter(|sa| !stalled.contains(&sa.id))
            .collect();
        let policies =
            netlink::dump_policies(&mut xfrm, IF_ID).map_err(xfrm_err("dump policies"))?;
        let mut ops: Vec<Op> = Vec::new();
        for id in &stalled {
            tracing::warn!(
                spi = %format!("{:#010x}", id.spi),
                "inbound SA only drops packets (the peer re-created its SAs): re-creating it \
                 to reset the replay window"
            );
            ops.push(Op::DelSa(*id));
        }
        ops.extend(plan::diff(&desired, &sas, &policies));
        if !ops.is_empty() {
            tracing::info!(
                ops = ops.len(),
                send_index = ring.send(),
                "applying xfrm changes"
            );
        }
        Self::run_ops(&mut xfrm, &ops)?;

        if let Some(encap) = &self.encap {
            encap.set_targets(
                desired
                    .peers
                    .iter()
                    .filter(|p| p.keepalive)
                    .map(|p| p.endpoint)
                    .collect(),
            );
        }
        let before: BTreeMap<&str, &PeerSas> =
            self.peers.iter().map(|p| (p.gateway.as_str(), p)).collect();
        for p in &desired.peers {
            match before.get(p.gateway.as_str()) {
                None => report.peers_added.push(p.gateway.clone()),
                Some(old) if *old != p => report.peers_updated.push(p.gateway.clone()),
                Some(_) => {}
            }
        }
        for name in before.keys() {
            if !desired.peers.iter().any(|p| p.gateway == *name) {
                report.peers_removed.push((*name).to_owned());
            }
        }
        report.skipped = desired.skipped;
        self.peers = desired.peers;
        // Re-created SAs start with fresh counters: forget the old ones.
        self.inbound = counters;
        for id in &stalled {
            self.inbound.remove(id);
        }
        Ok(report)
    }

    /// Bytes from the SA counters; "handshake" is the time both the outbound SA of the send
    /// index and an inbound SA were seen installed (IPsec without IKE has no handshake: this
    /// is what readiness can check).
    fn peer_stats(&self) -> Vec<PeerStats> {
        let observed = Nl::xfrm()
            .and_then(|mut nl| netlink::dump_sas(&mut nl, IF_ID))
            .unwrap_or_default();
        let by_id: BTreeMap<plan::SaId, &netlink::ObservedSa> =
            observed.iter().map(|o| (o.sa.id, o)).collect();
        let now = SystemTime::now();
        self.peers
            .iter()
            .map(|p| {
                let out = by_id.get(&p.out);
                let inbound: Vec<_> = p.inbound.iter().filter_map(|i| by_id.get(i)).collect();
                PeerStats {
                    gateway: p.gateway.clone(),
                    node: p.node.clone(),
                    endpoint: Some(p.endpoint),
                    last_handshake: (out.is_some() && !inbound.is_empty()).then_some(now),
                    rx_bytes: inbound.iter().map(|o| o.bytes).sum(),
                    tx_bytes: out.map_or(0, |o| o.bytes),
                }
            })
            .collect()
    }

    fn public_key(&self) -> Option<String> {
        Some(self.key.public_base64())
    }

    fn cleanup(&mut self) -> Result<(), TunnelError> {
        self.teardown().map(|_| ())
    }
}

/// The key ring path from the environment (`RAVEN_IPSEC_KEYS`), for the daemon.
pub fn key_ring_from_env() -> Option<PathBuf> {
    std::env::var_os("RAVEN_IPSEC_KEYS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}
