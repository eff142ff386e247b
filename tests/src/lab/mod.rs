//! The multi-domain lab: network namespaces for switches, NAT routers, nodes and pods, the real
//! CNI chain on every node, Gateway files, and one `raven-node` per node in standalone mode.
//!
//! Topology ([`Lab::build`]):
//!
//! ```text
//!                      "internet" switch 198.18.0.0/24
//!      +--------------+--------------+------------------+------------------+
//!   cloud-1 .11    cloud-2 .12    router-a .21 (NAT)      router-b .22 (NAT)
//!   pods 10.244.1  pods 10.244.2      | 192.168.1.1          | 192.168.1.1
//!   (domain cloud: one L2        edge-a switch            edge-b switch
//!    segment, public IPs)        edge-a-1 .10  edge-a-2 .11   edge-b-1 .10
//!                                pods 10.244.3 pods 10.244.4  pods 10.244.5
//! ```
//!
//! `edge-a` and `edge-b` use the same private addresses on purpose. Inside a domain, pod
//! subnets are routed between nodes like Flannel's host-gw backend. Every node has the
//! Flannel-equivalent chain (bridge + host-local, portmap, raven-cni) with its own pod subnet,
//! its own state directory, node-state file, raven-cni data directory and Gateway directory.
//! The Gateway files say: `gw-cloud` (cloud-1 active, cloud-2 standby, not NATed),
//! `gw-edge-a` (edge-a-1, under NAT), `gw-edge-b` (edge-b-1, under NAT); the central gateway is
//! cloud-1, which relays edge-a ↔ edge-b.
//!
//! Everything is removed on drop: daemons are stopped (SIGTERM, then SIGKILL), namespaces
//! deleted, the temp dir removed.

mod daemon;
mod gateways;
mod plumbing;
mod pods;
mod preconditions;
mod probe;
mod topology;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Child;

use tempfile::TempDir;

use crate::Pod;
use crate::chain::ChainSpec;
use crate::error::{Error, Result};
use crate::netns::Netns;

pub use daemon::run_args;
pub use preconditions::{check_preconditions, find_raven_node};

/// Flannel's cluster CIDR in the lab.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The "internet" segment.
pub const INTERNET_PREFIX: u8 = 24;
/// Where raven-node serves metrics inside each node namespace.
pub const METRICS_ADDR: &str = "127.0.0.1:10265";
/// Underlay MTU of every lab link.
pub const UNDERLAY_MTU: u32 = 1500;

/// How the lab is built: everything that differs between lab runs of the same topology.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabOptions {
    /// `raven-node --tunnel-driver` for every node (`auto`, `wireguard-userspace`,
    /// `wireguard-kernel`, `ipsec`); `None` leaves the daemon's default.
    pub tunnel_driver: Option<String>,
    /// `raven-node --poll-interval-ms`; `None` keeps the lab's fast [`LAB_POLL_INTERVAL_MS`]
    /// (benchmarks of an idle daemon pass the daemon's default, 1000).
    pub poll_interval_ms: Option<u64>,
    /// The `raven-node` binary; `None` uses [`find_raven_node`] (benchmarks pass the release
    /// build explicitly instead of changing the process environment).
    pub raven_node: Option<PathBuf>,
}

/// How often the lab's daemons read their Gateway directory unless [`LabOptions`] says
/// otherwise: fast, so that tests see Gateway edits quickly.
pub const LAB_POLL_INTERVAL_MS: u64 = 200;

impl LabOptions {
    /// Options selecting tunnel driver `driver`.
    pub fn with_driver(driver: &str) -> Self {
        Self {
            tunnel_driver: Some(driver.to_string()),
            ..Self::default()
        }
    }
}

/// Static description of one lab node.
#[derive(Debug, Clone, Copy)]
pub struct NodeSpec {
    /// Node name (also the Kubernetes node name in the Gateway files).
    pub name: &'static str,
    /// Network domain (Gateway name without the `gw-` prefix).
    pub domain: &'static str,
    /// Private (underlay) address.
    pub ip: Ipv4Addr,
    /// Flannel node subnet (pod CIDR).
    pub pod_subnet: &'static str,
}

/// The lab's nodes.
pub const NODES: [NodeSpec; 5] = [
    NodeSpec {
        name: "cloud-1",
        domain: "cloud",
        ip: Ipv4Addr::new(198, 18, 0, 11),
        pod_subnet: "10.244.1.0/24",
    },
    NodeSpec {
        name: "cloud-2",
        domain: "cloud",
        ip: Ipv4Addr::new(198, 18, 0, 12),
        pod_subnet: "10.244.2.0/24",
    },
    NodeSpec {
        name: "edge-a-1",
        domain: "edge-a",
        ip: Ipv4Addr::new(192, 168, 1, 10),
        pod_subnet: "10.244.3.0/24",
    },
    NodeSpec {
        name: "edge-a-2",
        domain: "edge-a",
        ip: Ipv4Addr::new(192, 168, 1, 11),
        pod_subnet: "10.244.4.0/24",
    },
    NodeSpec {
        name: "edge-b-1",
        domain: "edge-b",
        ip: Ipv4Addr::new(192, 168, 1, 10),
        pod_subnet: "10.244.5.0/24",
    },
];

/// A NATed domain's router.
#[derive(Debug, Clone, Copy)]
struct RouterSpec {
    domain: &'static str,
    wan: Ipv4Addr,
    lan: Ipv4Addr,
}

const ROUTERS: [RouterSpec; 2] = [
    RouterSpec {
        domain: "edge-a",
        wan: Ipv4Addr::new(198, 18, 0, 21),
        lan: Ipv4Addr::new(192, 168, 1, 1),
    },
    RouterSpec {
        domain: "edge-b",
        wan: Ipv4Addr::new(198, 18, 0, 22),
        lan: Ipv4Addr::new(192, 168, 1, 1),
    },
];

/// One node of the lab.
#[derive(Debug)]
pub struct LabNode {
    /// Its description.
    pub spec: NodeSpec,
    /// Its namespace (holds eth0, cni0, raven0, the tunnel device).
    pub netns: Netns,
    /// Its directory: conf, cache, ipam, raven (CNI records), state, gateways, node-state.json.
    pub dir: PathBuf,
    chain: ChainSpec,
    daemon: Option<Child>,
    /// Tunnel public key (gateway candidates only).
    pub public_key: Option<String>,
}

/// One pod of the lab.
#[derive(Debug)]
pub struct LabPod {
    /// Index of its node in [`Lab::nodes`].
    pub node: usize,
    /// The pod (netns and CNI identity).
    pub pod: Pod,
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
}

/// The lab.
#[derive(Debug)]
pub struct Lab {
    /// Nodes, in [`NODES`] order. Declared first: dropped (daemons stopped) before the switches.
    pub nodes: Vec<LabNode>,
    /// Pods.
    pub pods: Vec<LabPod>,
    routers: Vec<Netns>,
    /// The "internet" switch namespace (bridge `br0`), for captures.
    pub internet: Netns,
    switches: Vec<Netns>,
    cnitool: PathBuf,
    cni_path: String,
    raven_node: PathBuf,
    tmp: TempDir,
    /// Which cloud node is the active gateway endpoint.
    cloud_active: &'static str,
    /// How it was built.
    options: LabOptions,
}

impl Lab {
    /// The options the lab was built with.
    pub fn options(&self) -> &LabOptions {
        &self.options
    }

    /// Changes the tunnel driver used by daemons started from now on (a scenario switching
    /// one node's driver restores it afterwards).
    pub fn set_tunnel_driver(&mut self, driver: Option<&str>) {
        self.options.tunnel_driver = driver.map(str::to_owned);
    }

    /// The lab's temp dir.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// Index of the node called `name`.
    pub fn node_index(&self, name: &str) -> Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.spec.name == name)
            .ok_or_else(|| Error::new(format!("no lab node {name:?}")))
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Result<&LabNode> {
        Ok(&self.nodes[self.node_index(name)?])
    }

    /// The first pod on node `name`.
    pub fn pod(&self, node: &str) -> Result<&LabPod> {
        let i = self.node_index(node)?;
        self.pods
            .iter()
            .find(|p| p.node == i)
            .ok_or_else(|| Error::new(format!("no pod on {node}")))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if let Err(e) = self.stop_daemon(i, libc::SIGTERM) {
                eprintln!("lab teardown: {e}");
            }
        }
        // Pods, nodes, routers and switches delete their namespaces on drop, in field order.
    }
}
