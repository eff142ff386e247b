//! Planner options (what the daemon observes or is configured with) and the errors for options
//! that make planning impossible.
//!
//! Options are per node and must agree across the cluster where noted: `nat_traversal` and
//! `forward_node_ip` change what every gateway computes for its peers.

use std::fmt;

use ipnetwork::IpNetwork;
use raven_api::nodestate::{MAX_MTU, MIN_MTU};

use super::vxlan::VXLAN_OVERHEAD;

/// Which encrypted tunnel the gateways run. Both are route-based: the gateway owns one tunnel
/// device and routes remote prefixes into it (issue 4: userspace WireGuard on a TUN device;
/// issue 7: kernel WireGuard and IPsec on an `xfrm` interface).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TunnelDriver {
    /// ESP in UDP (port 4500). Upstream's libreswan driver.
    Ipsec,
    /// WireGuard, kernel or userspace: same overhead, same keys, same device name.
    WireGuard,
}

/// Upstream's ESP-in-UDP allowance (`IPSecEncapLen`), kept so that raven0's MTU matches
/// upstream nodes in the same domain.
pub const IPSEC_OVERHEAD: u32 = 64;
/// Upstream's WireGuard allowance (`wgEncapLen`).
pub const WIREGUARD_OVERHEAD: u32 = 80;
/// Upstream's tunnel port (`DefaultTunnelServerExposedPort`, `--vpn-bind-port`).
pub const DEFAULT_LISTEN_PORT: u16 = 4500;
/// Upstream's `--customized-mac-prefix` default.
pub const DEFAULT_MAC_PREFIX: [u8; 2] = [0xaa, 0x0f];
/// Upstream's WireGuard device name; the userspace driver's TUN device uses it too.
pub const WIREGUARD_DEVICE: &str = "raven-wg0";
/// Our IPsec `xfrm` interface (upstream is policy-based and has no device).
pub const IPSEC_DEVICE: &str = "raven-ipsec0";

impl TunnelDriver {
    /// Bytes the tunnel adds to a packet.
    pub fn overhead(self) -> u32 {
        match self {
            Self::Ipsec => IPSEC_OVERHEAD,
            Self::WireGuard => WIREGUARD_OVERHEAD,
        }
    }

    /// Default name of the gateway's tunnel device.
    pub fn default_device(self) -> &'static str {
        match self {
            Self::Ipsec => IPSEC_DEVICE,
            Self::WireGuard => WIREGUARD_DEVICE,
        }
    }
}

/// Everything besides the Gateways that planning depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Tunnel driver of the gateways (cluster-wide).
    pub driver: TunnelDriver,
    /// MTU of the link carrying the default route (upstream's `DefaultMTU`), observed by the
    /// daemon. The tunnel term of the MTU rule is `underlay_mtu - driver overhead`.
    pub underlay_mtu: u32,
    /// MTU of the link towards the other nodes of the domain, when the daemon observed it to
    /// differ from `underlay_mtu` (upstream asks the kernel for the route to the gateway). The
    /// raven0 term of the MTU rule is this minus 50.
    pub domain_link_mtu: Option<u32>,
    /// `--nat-traversal`: allow direct tunnels between two NATed gateways whose NAT types permit
    /// it. Must be the same on every node.
    pub nat_traversal: bool,
    /// `--forward-node-ip`: route every node's private IP (as a /32) like a pod subnet. Must be
    /// the same on every node.
    pub forward_node_ip: bool,
    /// Local tunnel port; used as the remote port when a remote endpoint declares none.
    pub listen_port: u16,
    /// First two bytes of raven0 MAC addresses (upstream `--customized-mac-prefix`).
    pub mac_prefix: [u8; 2],
    /// Tunnel device name on the gateway; `None` = the driver's default.
    pub tunnel_device: Option<String>,
    /// Ranges that are local to this node and must never be routed into the tunnel (host
    /// networks, the service CIDR). The pod subnets and node IPs of the local domain and the
    /// reserved ranges are always protected and need not be listed.
    pub protected_prefixes: Vec<IpNetwork>,
}

impl Default for Options {
    /// Upstream's defaults: IPsec, MTU 1500, no NAT traversal, no node-IP forwarding, port 4500,
    /// MAC prefix `aa:0f`.
    fn default() -> Self {
        Self {
            driver: TunnelDriver::Ipsec,
            underlay_mtu: 1500,
            domain_link_mtu: None,
            nat_traversal: false,
            forward_node_ip: false,
            listen_port: DEFAULT_LISTEN_PORT,
            mac_prefix: DEFAULT_MAC_PREFIX,
            tunnel_device: None,
            protected_prefixes: Vec::new(),
        }
    }
}

/// Options (or the node name) that make any plan meaningless. Problems in Gateway objects are
/// never errors: they are [`super::PlanWarning`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The local node name is empty.
    EmptyNodeName,
    /// With this underlay MTU the tunnel MTU would fall below the minimum the pod routes accept.
    MtuTooSmall {
        /// Which input: `"underlay_mtu"` or `"domain_link_mtu"`.
        option: &'static str,
        /// The value given.
        value: u32,
        /// Smallest value that works with the chosen driver.
        minimum: u32,
    },
    /// The listen port is 0.
    ZeroListenPort,
    /// The MAC prefix has the multicast bit set, so raven0 MACs would be invalid.
    MulticastMacPrefix([u8; 2]),
    /// The tunnel device name is not a valid Linux interface name.
    BadDeviceName(String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyNodeName => f.write_str("the local node name is empty"),
            Self::MtuTooSmall {
                option,
                value,
                minimum,
            } => write!(
                f,
                "{option} {value} is too small: the tunnel MTU would fall below {MIN_MTU}; \
                 need at least {minimum}"
            ),
            Self::ZeroListenPort => f.write_str("the tunnel listen port is 0"),
            Self::MulticastMacPrefix(p) => write!(
                f,
                "MAC prefix {:02x}:{:02x} has the multicast bit set",
                p[0], p[1]
            ),
            Self::BadDeviceName(name) => write!(f, "{name:?} is not a valid interface name"),
        }
    }
}

impl std::error::Error for PlanError {}

impl Options {
    /// Checks the options; every plan computed with valid options has an MTU the node-state file
    /// accepts.
    pub fn validate(&self) -> Result<(), PlanError> {
        let tunnel_min = MIN_MTU + self.driver.overhead();
        if self.underlay_mtu < tunnel_min {
            return Err(PlanError::MtuTooSmall {
                option: "underlay_mtu",
                value: self.underlay_mtu,
                minimum: tunnel_min,
            });
        }
        let link_min = MIN_MTU + VXLAN_OVERHEAD;
        let link = self.domain_link_mtu.unwrap_or(self.underlay_mtu);
        if link < link_min {
            return Err(PlanError::MtuTooSmall {
                option: if self.domain_link_mtu.is_some() {
                    "domain_link_mtu"
                } else {
                    "underlay_mtu"
                },
                value: link,
                minimum: link_min,
            });
        }
        if self.listen_port == 0 {
            return Err(PlanError::ZeroListenPort);
        }
        if self.mac_prefix[0] & 1 == 1 {
            return Err(PlanError::MulticastMacPrefix(self.mac_prefix));
        }
        if let Some(name) = &self.tunnel_device
            && !valid_ifname(name)
        {
            return Err(PlanError::BadDeviceName(name.clone()));
        }
        Ok(())
    }

    /// The tunnel device the gateway routes remote prefixes into.
    pub fn device(&self) -> &str {
        self.tunnel_device
            .as_deref()
            .unwrap_or_else(|| self.driver.default_device())
    }

    /// The MTU rule (upstream `min(vpnDriver.MTU(), vxlan.MTU())`): the underlay minus the tunnel
    /// overhead, and, on nodes that have raven0, the domain link minus the VXLAN overhead.
    /// Capped at the node-state maximum; [`Options::validate`] guarantees the floor.
    pub fn mtu(&self, with_raven0: bool) -> u32 {
        let tunnel = self.underlay_mtu.saturating_sub(self.driver.overhead());
        let mtu = if with_raven0 {
            let link = self.domain_link_mtu.unwrap_or(self.underlay_mtu);
            tunnel.min(link.saturating_sub(VXLAN_OVERHEAD))
        } else {
            tunnel
        };
        mtu.min(MAX_MTU)
    }
}

/// Linux interface names: 1 to 15 bytes, no `/`, `:` or whitespace, not `.` or `..`.
fn valid_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_mtu_examples() {
        // upstream-raven-tunnel.md §3.3: eth0 MTU 1500 gives 1436 (libreswan), 1420 (wireguard).
        let ipsec = Options::default();
        assert_eq!(ipsec.mtu(true), 1436);
        let wg = Options {
            driver: TunnelDriver::WireGuard,
            ..Options::default()
        };
        assert_eq!(wg.mtu(true), 1420);
        // A single-node gateway has no raven0: only the tunnel term applies.
        assert_eq!(ipsec.mtu(false), 1436);
        // A narrower domain link wins through the VXLAN term.
        let narrow = Options {
            domain_link_mtu: Some(1450),
            ..Options::default()
        };
        assert_eq!(narrow.mtu(true), 1400);
        assert_eq!(narrow.mtu(false), 1436);
        // Jumbo underlays are capped at the node-state maximum.
        let jumbo = Options {
            underlay_mtu: 65000,
            ..Options::default()
        };
        assert_eq!(jumbo.mtu(true), MAX_MTU);
    }

    #[test]
    fn rejects_unusable_options() {
        let cases: Vec<(Options, PlanError)> = vec![
            (
                Options {
                    underlay_mtu: 1343,
                    ..Options::default()
                },
                PlanError::MtuTooSmall {
                    option: "underlay_mtu",
                    value: 1343,
                    minimum: 1344,
                },
            ),
            (
                Options {
                    domain_link_mtu: Some(1300),
                    ..Options::default()
                },
                PlanError::MtuTooSmall {
                    option: "domain_link_mtu",
                    value: 1300,
                    minimum: 1330,
                },
            ),
            (
                Options {
                    listen_port: 0,
                    ..Options::default()
                },
                PlanError::ZeroListenPort,
            ),
            (
                Options {
                    mac_prefix: [0xab, 0x0f],
                    ..Options::default()
                },
                PlanError::MulticastMacPrefix([0xab, 0x0f]),
            ),
            (
                Options {
                    tunnel_device: Some("far-too-long-name0".into()),
                    ..Options::default()
                },
                PlanError::BadDeviceName("far-too-long-name0".into()),
            ),
            (
                Options {
                    tunnel_device: Some("a/b".into()),
                    ..Options::default()
                },
                PlanError::BadDeviceName("a/b".into()),
            ),
        ];
        for (options, error) in cases {
            assert_eq!(options.validate(), Err(error.clone()), "{error}");
        }
        assert_eq!(Options::default().validate(), Ok(()));
        assert_eq!(
            Options {
                underlay_mtu: 1344,
                ..Options::default()
            }
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn device_names() {
        assert_eq!(Options::default().device(), "raven-ipsec0");
        let wg = Options {
            driver: TunnelDriver::WireGuard,
            ..Options::default()
        };
        assert_eq!(wg.device(), "raven-wg0");
        let custom = Options {
            tunnel_device: Some("wg-custom".into()),
            ..wg
        };
        assert_eq!(custom.device(), "wg-custom");
    }
}
