//! raven0: the VXLAN overlay between the nodes of one domain and their gateway.
//!
//! Addressing is upstream's, bit for bit, because peers never negotiate it: every node derives
//! the VTEP address and MAC of every other node from its private IP. A Rust node and an upstream
//! node in the same domain therefore agree without talking. VTEP = private IP with the first
//! octet replaced by 240, in 240.0.0.0/8; MAC = the 2-byte prefix (default `aa:0f`) followed by
//! the four VTEP bytes; VNI 200; UDP 4472; no learning, so every peer is an explicit permanent
//! FDB entry plus a permanent neighbour entry and nothing is ever flooded.

use std::fmt;
use std::net::Ipv4Addr;

/// Name of the VXLAN device.
pub const RAVEN0: &str = "raven0";
/// VXLAN network identifier (upstream `vxlanID`).
pub const VNI: u32 = 200;
/// VXLAN UDP destination port (upstream `vxlanPort`); distinct from Flannel's 8472.
pub const VXLAN_PORT: u16 = 4472;
/// Bytes VXLAN adds (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14).
pub const VXLAN_OVERHEAD: u32 = 50;
/// First octet of every VTEP address (upstream `vxlanGwPrefix`).
pub const VTEP_FIRST_OCTET: u8 = 240;
/// Prefix length of the raven0 address (240.0.0.0/8 is on-link on every node).
pub const VTEP_PREFIX_LEN: u8 = 8;
/// FDB ageing upstream sets on the link (irrelevant with permanent entries, kept for parity).
pub const VXLAN_AGEING_SECS: u32 = 300;

/// A MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// The raven0 address of a node: its private IP with the first octet replaced by 240.
pub fn vtep_address(private_ip: Ipv4Addr) -> Ipv4Addr {
    let [_, b, c, d] = private_ip.octets();
    Ipv4Addr::new(VTEP_FIRST_OCTET, b, c, d)
}

/// The raven0 MAC of a node: the prefix followed by the four bytes of its VTEP address.
pub fn vtep_mac(prefix: [u8; 2], vtep: Ipv4Addr) -> MacAddr {
    let [a, b, c, d] = vtep.octets();
    MacAddr([prefix[0], prefix[1], a, b, c, d])
}

/// One peer on raven0: the FDB entry (`bridge fdb append <mac> dev raven0 dst <underlay> self
/// permanent`) and the neighbour entry (`ip neigh replace <vtep> lladdr <mac> dev raven0 nud
/// permanent`) are both derived from it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VxlanPeer {
    /// Peer node name (diagnostics; entries are keyed by address).
    pub node: String,
    /// The peer's raven0 address: the neighbour entry's IP.
    pub vtep: Ipv4Addr,
    /// The peer's raven0 MAC: the FDB and neighbour entries' link-layer address.
    pub mac: MacAddr,
    /// The peer's private IP: the FDB entry's `dst`, where VXLAN packets are sent.
    pub underlay: Ipv4Addr,
}

impl VxlanPeer {
    /// The peer entry for a node with this private IP.
    pub fn new(node: &str, underlay: Ipv4Addr, mac_prefix: [u8; 2]) -> Self {
        let vtep = vtep_address(underlay);
        Self {
            node: node.to_owned(),
            vtep,
            mac: vtep_mac(mac_prefix, vtep),
            underlay,
        }
    }
}

/// The desired raven0 device and its FDB/neighbour entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanPlan {
    /// Device name, [`RAVEN0`].
    pub name: &'static str,
    /// VNI, [`VNI`].
    pub vni: u32,
    /// UDP port, [`VXLAN_PORT`].
    pub port: u16,
    /// Link MTU (the plan's MTU).
    pub mtu: u32,
    /// This node's VTEP address, configured as `<vtep>/8`.
    pub address: Ipv4Addr,
    /// [`VTEP_PREFIX_LEN`].
    pub prefix_len: u8,
    /// This node's raven0 MAC.
    pub mac: MacAddr,
    /// Members only: the gateway's private IP as the link's unicast remote (upstream sets
    /// `IFLA_VXLAN_GROUP`). The kernel's implicit all-zero FDB entry for it is not in `peers`
    /// and is removed by the daemon, as upstream's reconcile does.
    pub remote: Option<Ipv4Addr>,
    /// Members: the gateway. Gateway: every other usable member. Sorted by VTEP address.
    pub peers: Vec<VxlanPeer>,
}

impl VxlanPlan {
    /// raven0 for a node with this private IP; `remote` and `peers` as documented on the fields.
    pub fn new(
        private_ip: Ipv4Addr,
        mac_prefix: [u8; 2],
        mtu: u32,
        remote: Option<Ipv4Addr>,
        mut peers: Vec<VxlanPeer>,
    ) -> Self {
        let address = vtep_address(private_ip);
        peers.sort_by_key(|p| p.vtep);
        Self {
            name: RAVEN0,
            vni: VNI,
            port: VXLAN_PORT,
            mtu,
            address,
            prefix_len: VTEP_PREFIX_LEN,
            mac: vtep_mac(mac_prefix, address),
            remote,
            peers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_addressing() {
        // upstream-raven-tunnel.md §3.1 and §3.10.
        let ip = Ipv4Addr::new(10, 0, 1, 5);
        assert_eq!(vtep_address(ip), Ipv4Addr::new(240, 0, 1, 5));
        assert_eq!(
            vtep_mac([0xaa, 0x0f], vtep_address(ip)).to_string(),
            "aa:0f:f0:00:01:05"
        );
        let edge = VxlanPeer::new("edge-2", Ipv4Addr::new(192, 168, 1, 11), [0xaa, 0x0f]);
        assert_eq!(edge.vtep, Ipv4Addr::new(240, 168, 1, 11));
        assert_eq!(edge.mac.to_string(), "aa:0f:f0:a8:01:0b");
        // Nodes whose IPs differ only in the first octet collide (upstream bug §6.7).
        assert_eq!(
            vtep_address(Ipv4Addr::new(10, 1, 2, 3)),
            vtep_address(Ipv4Addr::new(172, 1, 2, 3))
        );
    }
}
