//! Gateway tunnel drivers behind one trait.
//!
//! The planner computes a [`TunnelPlan`] (device, listen port, peers with endpoints, keys and
//! the prefixes each peer carries); a [`TunnelDriver`] makes the kernel (or a userspace
//! process) match it. The daemon owns routes and rules (table 9028 → `plan.device`); a driver
//! owns only the tunnel device, its peers and its key material.
//!
//! Drivers ([`DriverKind`]):
//! - [`DriverKind::UserspaceWireGuard`] ([`userspace`]): a TUN device plus boringtun's protocol
//!   core. Works on any kernel with TUN (this machine has no WireGuard or ESP).
//! - [`DriverKind::KernelWireGuard`] ([`kernel_wg`]): a `wireguard` link over netlink,
//!   sharing [`key::KeyFile`] so switching drivers keeps the published public key.
//! - [`DriverKind::Ipsec`] ([`ipsec`]): kernel ESP-in-UDP on an `xfrm` interface named
//!   `plan.device`, keys derived per pair from the published X25519 identities of
//!   [`key::KeyFile`] (no IKE daemon). It consumes the same [`peers::desired_peers`] view; being
//!   route-based, it needs no transit selectors (the routes and per-prefix policies carry
//!   relayed domains). Its `public_key` is the same identity, published the same way.
//!
//! Contract of every driver:
//! - [`TunnelDriver::apply`] is idempotent and converges from any state, including a device
//!   left behind by a previous run (a restart re-attaches rather than recreates, so routes on
//!   the device survive); `None` tears the device down.
//! - Dropping a driver (graceful stop) leaves the device in place; [`TunnelDriver::cleanup`]
//!   removes what the driver owns and nothing else, even in a fresh process.
//! - Keepalive is in seconds ([`DriverOptions::keepalive_secs`]); upstream passed nanoseconds,
//!   which wgctrl truncated to 0 (no keepalive at all).

pub mod error;
pub mod ipsec;
pub mod kernel_wg;
pub mod key;
pub mod nlsock;
pub mod peers;
pub mod userspace;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::plan::TunnelPlan;
use crate::plan::options::WIREGUARD_OVERHEAD;

pub use error::TunnelError;

/// A tunnel implementation for a gateway.
///
/// Synchronous on purpose: every call is a handful of syscalls (or netlink requests for the
/// kernel drivers) and the packet path of the userspace driver runs on its own threads, so the
/// daemon can call it from its reconcile task (or `spawn_blocking`) without an async runtime
/// inside the driver.
pub trait TunnelDriver: Send + std::fmt::Debug {
    /// Short name for logs, metrics and status (`"wireguard-userspace"`, ...).
    fn name(&self) -> &'static str;

    /// Makes the tunnel match `plan`: creates or re-attaches the device `plan.device`, sets
    /// its MTU and brings it up, and replaces the peer set (peers keyed by public key; a
    /// peer whose key, endpoint and prefixes did not change keeps its session). `None`
    /// removes the device. Idempotent.
    fn apply(&mut self, plan: Option<&TunnelPlan>) -> Result<DriverReport, TunnelError>;

    /// Per-peer counters and the time of the last completed handshake.
    fn peer_stats(&self) -> Vec<PeerStats>;

    /// Our public key in base64, for `config.publicKey` of our Gateway endpoint (IPsec
    /// derives its per-pair keys from the same X25519 identity); `None` for drivers without
    /// one.
    fn public_key(&self) -> Option<String>;

    /// Removes everything the driver owns (device, peers); works without a prior `apply`,
    /// e.g. from `raven-node cleanup` in a fresh process, using the device name in
    /// [`DriverOptions::device`]. Leaves the persisted key in place.
    fn cleanup(&mut self) -> Result<(), TunnelError>;
}

/// Which implementation runs the tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DriverKind {
    /// WireGuard protocol in this process over a TUN device.
    UserspaceWireGuard,
    /// The kernel's `wireguard` link over generic netlink (issue 7).
    KernelWireGuard,
    /// Kernel ESP-in-UDP on an `xfrm` interface (issue 7).
    Ipsec,
}

impl DriverKind {
    /// Name used in logs, metrics and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserspaceWireGuard => "wireguard-userspace",
            Self::KernelWireGuard => "wireguard-kernel",
            Self::Ipsec => "ipsec",
        }
    }

    /// Parses a configured driver name ([`DriverKind::as_str`]).
    pub fn parse(text: &str) -> Option<Self> {
        [Self::UserspaceWireGuard, Self::KernelWireGuard, Self::Ipsec]
            .into_iter()
            .find(|k| k.as_str() == text)
    }

    /// The protocol family the planner uses for MTU and device defaults: drivers of one family
    /// interoperate on the wire.
    pub fn family(self) -> crate::plan::TunnelDriver {
        match self {
            Self::UserspaceWireGuard | Self::KernelWireGuard => {
                crate::plan::TunnelDriver::WireGuard
            }
            Self::Ipsec => crate::plan::TunnelDriver::Ipsec,
        }
    }

    /// Automatic choice for a protocol family (issue 7): the kernel implementation when the
    /// kernel has it, the userspace one otherwise; `None` when nothing can run the family
    /// (IPsec without ESP support has no userspace fallback).
    pub fn choose(family: crate::plan::TunnelDriver, kernel: KernelSupport) -> Option<Self> {
        match family {
            crate::plan::TunnelDriver::WireGuard if kernel.wireguard => Some(Self::KernelWireGuard),
            crate::plan::TunnelDriver::WireGuard if kernel.tun => Some(Self::UserspaceWireGuard),
            crate::plan::TunnelDriver::WireGuard => None,
            crate::plan::TunnelDriver::Ipsec => kernel.xfrm_esp.then_some(Self::Ipsec),
        }
    }
}

/// The configured driver (`--tunnel-driver`): a fixed implementation, or automatic within a
/// protocol family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverChoice {
    /// The kernel implementation of the family when the kernel has it, else userspace.
    Auto(crate::plan::TunnelDriver),
    /// Exactly this driver.
    Fixed(DriverKind),
}

impl DriverChoice {
    /// Parses `auto` / `wireguard` (both: WireGuard family, automatic), or a
    /// [`DriverKind`] name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" | "wireguard" => Some(Self::Auto(crate::plan::TunnelDriver::WireGuard)),
            other => DriverKind::parse(other).map(Self::Fixed),
        }
    }

    /// The protocol family (MTU overhead, device defaults).
    pub fn family(self) -> crate::plan::TunnelDriver {
        match self {
            Self::Auto(f) => f,
            Self::Fixed(k) => k.family(),
        }
    }

    /// The driver to run; `probe` is called only for automatic choices.
    pub fn resolve(self, probe: impl FnOnce() -> KernelSupport) -> Result<DriverKind, String> {
        match self {
            Self::Fixed(k) => Ok(k),
            Self::Auto(family) => {
                let support = probe();
                DriverKind::choose(family, support).ok_or_else(|| {
                    format!(
                        "no tunnel driver for {family:?} on this kernel ({support:?}):                          WireGuard needs the wireguard module or /dev/net/tun, IPsec needs ESP                          and xfrm interfaces"
                    )
                })
            }
        }
    }
}

/// What the running kernel offers, as probed by the daemon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelSupport {
    /// `/dev/net/tun` usable.
    pub tun: bool,
    /// A `wireguard` link can be created.
    pub wireguard: bool,
    /// ESP with UDP encapsulation and `xfrm` interfaces.
    pub xfrm_esp: bool,
}

impl KernelSupport {
    /// Probes the running kernel (in the caller's network namespace): TUN by its device
    /// node, WireGuard by resolving its generic-netlink family (which loads the module on
    /// demand), ESP by its loaded modules (a refined probe belongs to the IPsec driver).
    pub fn probe() -> Self {
        let module = |m: &str| std::path::Path::new("/sys/module").join(m).exists();
        Self {
            tun: std::path::Path::new("/dev/net/tun").exists(),
            wireguard: kernel_wg::kernel_has_wireguard(),
            xfrm_esp: module("esp4") && module("xfrm_interface"),
        }
    }
}

/// Settings of a driver that are not part of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverOptions {
    /// State directory (`<state-dir>/wireguard.key` lives here).
    pub state_dir: PathBuf,
    /// Tunnel device MTU: the underlay MTU minus the driver's overhead (1420 on a 1500 link),
    /// the tunnel term of the planner's MTU rule.
    pub mtu: u32,
    /// Persistent keepalive in seconds towards peers this side must keep reachable
    /// ([`crate::plan::TunnelPeer::initiator`]); 0 disables it. Upstream used 5 s for relay
    /// peers.
    pub keepalive_secs: u16,
    /// Optional WireGuard preshared key applied to every peer (upstream: SHA-256 of its PSK).
    pub preshared_key: Option<[u8; 32]>,
    /// Device name for [`TunnelDriver::cleanup`] before any `apply` told us the name.
    pub device: String,
    /// IPsec key ring file ([`ipsec::keys::KeyRing`]); `None`: `<state_dir>/ipsec.keys` when
    /// it exists, else key index 0 without PSK.
    pub ipsec_keys: Option<PathBuf>,
}

impl DriverOptions {
    /// Defaults for a state directory: MTU 1420 (1500 − 80), keepalive 5 s, no PSK, device
    /// `raven-wg0`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            mtu: 1500 - WIREGUARD_OVERHEAD,
            keepalive_secs: 5,
            preshared_key: None,
            device: crate::plan::options::WIREGUARD_DEVICE.to_owned(),
            ipsec_keys: None,
        }
    }
}

/// Builds the driver of a kind. The IPsec driver is issue 7 and fails with
/// [`TunnelError::Unsupported`] until it exists. Loads (or creates) the persisted key, so an
/// unusable key file fails here, before anything touches the network.
pub fn driver_for(
    kind: DriverKind,
    options: DriverOptions,
) -> Result<Box<dyn TunnelDriver>, TunnelError> {
    match kind {
        DriverKind::UserspaceWireGuard => {
            Ok(Box::new(userspace::UserspaceWireGuard::new(options)?))
        }
        DriverKind::KernelWireGuard => Ok(Box::new(kernel_wg::KernelWireGuard::new(options)?)),
        DriverKind::Ipsec => Ok(Box::new(ipsec::Ipsec::new(options)?)),
    }
}

/// What one `apply` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverReport {
    /// The device was created (not found and not re-attached).
    pub device_created: bool,
    /// The device was removed (`apply(None)`).
    pub device_removed: bool,
    /// Peers added, by gateway name.
    pub peers_added: Vec<String>,
    /// Peers whose configuration changed (endpoint, prefixes, keepalive).
    pub peers_updated: Vec<String>,
    /// Peers removed, by gateway name.
    pub peers_removed: Vec<String>,
    /// Plan peers the driver could not configure, with the reason (no or bad public key).
    pub skipped: Vec<peers::Skipped>,
}

impl DriverReport {
    /// Whether the apply changed nothing.
    pub fn is_noop(&self) -> bool {
        !self.device_created
            && !self.device_removed
            && self.peers_added.is_empty()
            && self.peers_updated.is_empty()
            && self.peers_removed.is_empty()
    }
}

/// Counters of one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStats {
    /// Peer's Gateway name.
    pub gateway: String,
    /// Peer's endpoint node.
    pub node: String,
    /// Where packets currently go (configured, or learned from the peer's packets).
    pub endpoint: Option<SocketAddr>,
    /// Last completed handshake.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received from the peer (decrypted payload).
    pub rx_bytes: u64,
    /// Bytes sent to the peer (payload before encryption).
    pub tx_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::TunnelDriver as Family;

    #[test]
    fn automatic_choice() {
        let none = KernelSupport::default();
        let tun = KernelSupport { tun: true, ..none };
        let all = KernelSupport {
            tun: true,
            wireguard: true,
            xfrm_esp: true,
        };
        let cases = [
            (Family::WireGuard, none, None),
            (Family::WireGuard, tun, Some(DriverKind::UserspaceWireGuard)),
            (Family::WireGuard, all, Some(DriverKind::KernelWireGuard)),
            (Family::Ipsec, tun, None),
            (Family::Ipsec, all, Some(DriverKind::Ipsec)),
        ];
        for (family, support, want) in cases {
            assert_eq!(
                DriverKind::choose(family, support),
                want,
                "{family:?} {support:?}"
            );
            if let Some(kind) = want {
                assert_eq!(kind.family(), family);
            }
        }
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in [
            DriverKind::UserspaceWireGuard,
            DriverKind::KernelWireGuard,
            DriverKind::Ipsec,
        ] {
            assert_eq!(DriverKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(DriverKind::parse("libreswan"), None);
    }

    #[test]
    fn choices_parse_and_resolve() {
        let wg = Family::WireGuard;
        assert_eq!(DriverChoice::parse("auto"), Some(DriverChoice::Auto(wg)));
        assert_eq!(
            DriverChoice::parse("wireguard"),
            Some(DriverChoice::Auto(wg))
        );
        assert_eq!(
            DriverChoice::parse("ipsec"),
            Some(DriverChoice::Fixed(DriverKind::Ipsec))
        );
        assert_eq!(DriverChoice::parse("strongswan"), None);
        let tun = KernelSupport {
            tun: true,
            ..KernelSupport::default()
        };
        assert_eq!(
            DriverChoice::Auto(wg).resolve(|| tun),
            Ok(DriverKind::UserspaceWireGuard)
        );
        let fixed = DriverChoice::Fixed(DriverKind::KernelWireGuard);
        assert_eq!(
            fixed.resolve(|| panic!("a fixed choice must not probe")),
            Ok(DriverKind::KernelWireGuard)
        );
        let e = DriverChoice::Auto(wg)
            .resolve(KernelSupport::default)
            .expect_err("nothing available");
        assert!(e.contains("no tunnel driver"), "{e}");
    }

    #[test]
    fn ipsec_driver_builds_without_touching_the_network() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ipsec = driver_for(DriverKind::Ipsec, DriverOptions::new(dir.path())).expect("ipsec");
        assert_eq!(ipsec.name(), "ipsec");
        assert!(ipsec.public_key().is_some());
    }
}
