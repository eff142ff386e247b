//! The kernel WireGuard driver: a link of kind `wireguard` named `plan.device`, created over
//! rtnetlink ([`link`]) and configured over generic netlink ([`genl`]): private key, listen
//! port, peers with public key, endpoint, allowed IPs, persistent keepalive (seconds) and the
//! optional preshared key. Each apply observes the device, computes a minimal change with the
//! pure [`diff`] and sends only that, so unchanged peers keep their sessions; a restarted
//! daemon re-attaches to the link it left.
//!
//! Key material is [`KeyFile`], shared with the userspace driver: switching drivers keeps the
//! published public key. Only the link with our configured name, and only if its kind is
//! `wireguard`, is ever changed or deleted; other WireGuard links are never looked at.
//!
//! Crates: `netlink-packet-wireguard` and `netlink-packet-generic` (the rust-netlink family,
//! on the same `netlink-packet-core` 0.9 as our rtnetlink) give typed messages for the
//! WireGuard family; requests go over a blocking `netlink-sys` socket ([`nl`]) rather than the
//! async `genetlink` connection because the driver trait is synchronous and each call is one
//! or two round trips.

pub mod diff;
pub mod genl;
pub mod link;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;

use super::key::KeyFile;
use super::peers::{DesiredPeer, wireguard_peers};
use super::{DriverKind, DriverOptions, DriverReport, PeerStats, TunnelDriver, TunnelError};
use crate::plan::TunnelPlan;
use crate::tunnel::nlsock::NlSocket;
use diff::{Desired, PeerChange};
use genl::WgGenl;

/// Kernel WireGuard over netlink.
#[derive(Debug)]
pub struct KernelWireGuard {
    options: DriverOptions,
    key: KeyFile,
    route: NlSocket,
    genl: WgGenl,
    /// Device name of the last apply.
    device: Option<String>,
    /// Peers of the last apply (names for stats).
    peers: Vec<DesiredPeer>,
    /// Endpoints this process configured, per peer key (see [`Desired::configured_endpoints`]).
    configured: HashMap<[u8; 32], SocketAddr>,
}

fn dev_err<'a>(device: &'a str, op: &'static str) -> impl FnOnce(io::Error) -> TunnelError + 'a {
    move |source| TunnelError::Device {
        device: device.to_owned(),
        op,
        source,
    }
}

/// Whether the running kernel offers WireGuard (its generic-netlink family resolves; the
/// kernel loads the module on demand).
pub fn kernel_has_wireguard() -> bool {
    WgGenl::open().is_ok()
}

impl KernelWireGuard {
    /// Loads or creates the key and opens the netlink sockets; touches no network state.
    /// Fails when the kernel has no WireGuard.
    pub fn new(options: DriverOptions) -> Result<Self, TunnelError> {
        let key = KeyFile::load_or_create(&options.state_dir)?;
        let device = options.device.clone();
        let route = NlSocket::open(netlink_sys::protocols::NETLINK_ROUTE)
            .map_err(dev_err(&device, "opening rtnetlink"))?;
        let genl = WgGenl::open().map_err(|e| TunnelError::Device {
            device: device.clone(),
            op: "resolving the wireguard generic-netlink family (kernel without WireGuard?)",
            source: e,
        })?;
        Ok(Self {
            options,
            key,
            route,
            genl,
            device: None,
            peers: Vec::new(),
            configured: HashMap::new(),
        })
    }

    /// Deletes our link `name` if it exists and is a WireGuard link; whether one was removed.
    fn remove(&mut self, name: &str) -> Result<bool, TunnelError> {
        match link::by_name(&mut self.route, name).map_err(dev_err(name, "looking up"))? {
            Some(l) if l.is_wireguard() => {
                link::delete(&mut self.route, l.index).map_err(dev_err(name, "deleting"))?;
                self.configured.clear();
                self.peers.clear();
                Ok(true)
            }
            Some(l) => Err(TunnelError::ForeignDevice {
                device: name.to_owned(),
                problem: format!("it is a {} link, not wireguard", l.kind.unwrap_or_default()),
            }),
            None => Ok(false),
        }
    }
}

impl TunnelDriver for KernelWireGuard {
    fn name(&self) -> &'static str {
        DriverKind::KernelWireGuard.as_str()
    }

    fn apply(&mut self, plan: Option<&TunnelPlan>) -> Result<DriverReport, TunnelError> {
        let mut report = DriverReport::default();
        let Some(plan) = plan else {
            let name = self.device.clone().unwrap_or(self.options.device.clone());
            report.device_removed = self.remove(&name)?;
            self.device = None;
            return Ok(report);
        };
        let (desired, skipped) = wireguard_peers(
            plan,
            self.key.public().as_bytes(),
            self.options.keepalive_secs,
        )?;
        report.skipped = skipped;
        if let Some(old) = self.device.clone()
            && old != plan.device
        {
            self.remove(&old)?;
        }
        let name = plan.device.as_str();
        let mtu = self.options.mtu;
        match link::by_name(&mut self.route, name).map_err(dev_err(name, "looking up"))? {
            None => {
                link::create(&mut self.route, name, mtu).map_err(dev_err(name, "creating"))?;
                report.device_created = true;
                self.configured.clear();
            }
            Some(l) if l.kind.as_deref() == Some("tun") => {
                // Our own name on a TUN device: the userspace driver's device from before a
                // driver switch. Replace it (the key file is shared, peers keep their key).
                tracing::warn!(device = %name, "replacing the userspace driver's TUN device");
                link::delete(&mut self.route, l.index)
                    .map_err(dev_err(name, "deleting the old TUN device"))?;
                link::create(&mut self.route, name, mtu).map_err(dev_err(name, "creating"))?;
                report.device_created = true;
                self.configured.clear();
            }
            Some(l) if !l.is_wireguard() => {
                return Err(TunnelError::ForeignDevice {
                    device: name.to_owned(),
                    problem: format!(
                        "it is a {} link, not wireguard",
                        l.kind.unwrap_or_else(|| "kind-less".to_owned())
                    ),
                });
            }
            Some(l) if l.mtu != mtu || !l.up => {
                link::set_mtu_up(&mut self.route, l.index, mtu)
                    .map_err(dev_err(name, "setting MTU and up"))?;
            }
            Some(_) => {}
        }
        self.device = Some(name.to_owned());
        let observed = self
            .genl
            .get(name)
            .map_err(dev_err(name, "reading the WireGuard configuration"))?;
        let change = diff::diff(
            &observed,
            &Desired {
                private_key: self.key.secret().to_bytes(),
                listen_port: plan.listen_port,
                peers: &desired,
                preshared_key: self.options.preshared_key,
                configured_endpoints: &self.configured,
            },
        );
        self.genl
            .set(name, &change)
            .map_err(dev_err(name, "configuring WireGuard"))?;
        for c in &change.peers {
            match c {
                PeerChange::Remove { public_key } => {
                    self.configured.remove(public_key);
                    let gateway = self
                        .peers
                        .iter()
                        .find(|p| p.public_key == *public_key)
                        .map_or_else(|| super::key::encode(public_key), |p| p.gateway.clone());
                    report.peers_removed.push(gateway);
                }
                PeerChange::Set {
                    public_key,
                    gateway,
                    new,
                    endpoint,
                    ..
                } => {
                    if let Some(e) = endpoint {
                        self.configured.insert(*public_key, *e);
                    }
                    if *new {
                        report.peers_added.push(gateway.clone());
                    } else {
                        report.peers_updated.push(gateway.clone());
                    }
                }
            }
        }
        self.peers = desired;
        Ok(report)
    }

    fn peer_stats(&self) -> Vec<PeerStats> {
        let Some(name) = &self.device else {
            return Vec::new();
        };
        // `peer_stats` takes `&self`; a short-lived socket keeps the trait unchanged.
        let observed = match WgGenl::open().and_then(|mut g| g.get(name)) {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(device = %name, "reading peer stats: {e}");
                return Vec::new();
            }
        };
        self.peers
            .iter()
            .filter_map(|want| {
                let have = observed
                    .peers
                    .iter()
                    .find(|p| p.public_key == want.public_key)?;
                Some(PeerStats {
                    gateway: want.gateway.clone(),
                    node: want.node.clone(),
                    endpoint: have.endpoint,
                    last_handshake: have.last_handshake,
                    rx_bytes: have.rx_bytes,
                    tx_bytes: have.tx_bytes,
                })
            })
            .collect()
    }

    fn public_key(&self) -> Option<String> {
        Some(self.key.public_base64())
    }

    fn cleanup(&mut self) -> Result<(), TunnelError> {
        let name = self.device.clone().unwrap_or(self.options.device.clone());
        self.remove(&name).map(|_| ())
    }
}
