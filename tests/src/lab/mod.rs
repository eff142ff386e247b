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

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::chain::{ChainSpec, RavenPlugin};
use crate::cmd::{self, Output};
use crate::error::{Context, Error, Result};
use crate::netns::Netns;
use crate::require::{self, DEBIAN_CNI_DIR};
use crate::{Pod, paths};

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

/// Checks everything the lab needs; the error names the missing piece and the fix.
pub fn check_preconditions() -> Result<()> {
    require::check_root()?;
    for tool in ["ip", "nft", "sysctl"] {
        require::check_tool(tool)?;
    }
    require::check_debian_cni_plugins()?;
    paths::find_cnitool()?;
    paths::find_raven_cni()?;
    find_raven_node()?;
    if !Path::new("/dev/net/tun").exists() {
        return Err(Error::new(
            "/dev/net/tun is missing: the userspace WireGuard driver needs TUN",
        ));
    }
    Ok(())
}

/// The `raven-node` binary: `RAVEN_NODE_BIN`, else the newer of the release and debug builds.
pub fn find_raven_node() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("RAVEN_NODE_BIN") {
        let p = PathBuf::from(p);
        return if require::is_executable(&p) {
            Ok(p)
        } else {
            Err(Error::new(format!(
                "RAVEN_NODE_BIN={} is not executable",
                p.display()
            )))
        };
    }
    let candidates =
        ["release", "debug"].map(|profile| paths::target_dir().join(profile).join("raven-node"));
    candidates
        .iter()
        .filter(|p| require::is_executable(p))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .cloned()
        .ok_or_else(|| {
            Error::new(format!(
                "{} is missing: build it with `cargo build -p raven-node` (or set RAVEN_NODE_BIN)",
                candidates[1].display()
            ))
        })
}

fn ip(ns: &Netns, args: &[&str]) -> Result<()> {
    ns.ip(args).map(|_| ())
}

fn sysctl(ns: &Netns, kv: &str) -> Result<()> {
    ns.exec(&["sysctl", "-q", "-w", kv]).map(|_| ())
}

/// Connects `a:a_if` with `b:b_if` by a veth pair.
fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    cmd::run_ok(&[
        "ip",
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])
    .map(|_| ())
}

/// A switch namespace with bridge `br0`.
fn switch(tag: &str) -> Result<Netns> {
    let ns = Netns::new(tag)?;
    ip(&ns, &["link", "add", "br0", "type", "bridge"])?;
    ip(&ns, &["link", "set", "br0", "up"])?;
    Ok(ns)
}

/// Plugs `ns:ifname` into switch `sw` (port `port`), with `addr`, up.
fn plug(sw: &Netns, port: &str, ns: &Netns, ifname: &str, addr: &str) -> Result<()> {
    veth(ns, ifname, sw, port)?;
    ip(sw, &["link", "set", port, "master", "br0", "up"])?;
    ip(ns, &["addr", "add", addr, "dev", ifname])?;
    ip(ns, &["link", "set", ifname, "up"])
}

impl Lab {
    /// Builds switches, routers, nodes (with the CNI chain and Gateway files) and one pod per
    /// node. Daemons are not started: see [`Lab::start_daemons`].
    pub fn build() -> Result<Lab> {
        Self::build_with(LabOptions::default())
    }

    /// [`Lab::build`] with options (e.g. a tunnel driver).
    pub fn build_with(options: LabOptions) -> Result<Lab> {
        check_preconditions()?;
        let cnitool = paths::find_cnitool()?;
        let raven_cni = paths::find_raven_cni()?;
        let raven_node = match &options.raven_node {
            Some(p) => p.clone(),
            None => find_raven_node()?,
        };
        let cni_path = format!(
            "{}:{DEBIAN_CNI_DIR}",
            raven_cni.parent().unwrap_or(Path::new("/")).display()
        );
        let tmp = tempfile::Builder::new()
            .prefix("raven-mlab-")
            .tempdir()
            .context(|| "creating the lab temp dir".to_string())?;
        let internet = switch("inet")?;
        let mut lab = Lab {
            nodes: Vec::new(),
            pods: Vec::new(),
            routers: Vec::new(),
            internet,
            switches: Vec::new(),
            cnitool,
            cni_path,
            raven_node,
            tmp,
            cloud_active: "cloud-1",
            options,
        };
        // NAT routers and their LAN switches.
        let mut lans = Vec::new();
        for (i, r) in ROUTERS.iter().enumerate() {
            let router = Netns::new(&format!("rt{i}"))?;
            plug(
                &lab.internet,
                &format!("r{i}"),
                &router,
                "wan",
                &format!("{}/{INTERNET_PREFIX}", r.wan),
            )?;
            let lan = switch(&format!("lan{i}"))?;
            plug(&lan, "uplink", &router, "lan", &format!("{}/24", r.lan))?;
            sysctl(&router, "net.ipv4.ip_forward=1")?;
            let rules = "table ip raven_lab_nat {\n\
                 chain post { type nat hook postrouting priority 100; oifname \"wan\" masquerade; }\n\
                 }\n";
            let mut c = router.command(&["nft", "-f", "-"]);
            c.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
            cmd::run_command(c, Some(rules.as_bytes()))?.into_ok()?;
            lans.push((r.domain, lan));
            lab.routers.push(router);
        }
        for (i, spec) in NODES.iter().enumerate() {
            let netns = Netns::new(&format!("n{i}"))?;
            match spec.domain {
                "cloud" => {
                    plug(
                        &lab.internet,
                        &format!("n{i}"),
                        &netns,
                        "eth0",
                        &format!("{}/24", spec.ip),
                    )?;
                }
                domain => {
                    let (_, lan) = lans
                        .iter()
                        .find(|(d, _)| *d == domain)
                        .ok_or_else(|| Error::new(format!("no LAN for {domain}")))?;
                    plug(
                        lan,
                        &format!("n{i}"),
                        &netns,
                        "eth0",
                        &format!("{}/24", spec.ip),
                    )?;
                    let router = ROUTERS
                        .iter()
                        .find(|r| r.domain == domain)
                        .ok_or_else(|| Error::new(format!("no router for {domain}")))?;
                    ip(
                        &netns,
                        &["route", "add", "default", "via", &router.lan.to_string()],
                    )?;
                }
            }
            sysctl(&netns, "net.ipv4.ip_forward=1")?;
            let dir = lab.tmp.path().join(spec.name);
            for sub in ["conf", "cache", "ipam", "raven", "state", "gateways"] {
                std::fs::create_dir_all(dir.join(sub))
                    .context(|| format!("creating {}/{sub}", dir.display()))?;
            }
            let mut chain = ChainSpec::flannel_defaults("1.0.0", "cbr0", &dir.join("ipam"));
            chain.node_subnet = spec.pod_subnet.to_string();
            chain.cluster_cidr = CLUSTER_CIDR.to_string();
            chain.raven = Some(RavenPlugin {
                node_state_file: dir.join("node-state.json"),
                data_dir: dir.join("raven"),
                extra: serde_json::Map::new(),
            });
            let body = serde_json::to_vec_pretty(&chain.conflist())
                .context(|| "encoding the conflist".to_string())?;
            std::fs::write(dir.join("conf/10-cbr0.conflist"), body)
                .context(|| "writing the conflist".to_string())?;
            lab.nodes.push(LabNode {
                spec: *spec,
                netns,
                dir,
                chain,
                daemon: None,
                public_key: None,
            });
        }
        lab.switches.extend(lans.into_iter().map(|(_, sw)| sw));
        // Flannel host-gw inside each domain.
        for (a, na) in NODES.iter().enumerate() {
            for nb in NODES
                .iter()
                .filter(|nb| nb.name != na.name && nb.domain == na.domain)
            {
                ip(
                    &lab.nodes[a].netns,
                    &["route", "add", nb.pod_subnet, "via", &nb.ip.to_string()],
                )?;
            }
        }
        // Gateway candidates' public keys, from their own state directories.
        for i in 0..lab.nodes.len() {
            if lab.is_candidate(i) {
                let state = lab.nodes[i].dir.join("state");
                let out = cmd::run_ok(&[
                    &lab.raven_node.to_string_lossy(),
                    "public-key",
                    "--state-dir",
                    &state.to_string_lossy(),
                ])?;
                lab.nodes[i].public_key = Some(out.trim().to_string());
            }
        }
        lab.write_gateways()?;
        for i in 0..lab.nodes.len() {
            lab.add_pod(i)?;
        }
        Ok(lab)
    }

    /// Whether node `i` is a gateway endpoint candidate.
    fn is_candidate(&self, i: usize) -> bool {
        matches!(
            self.nodes[i].spec.name,
            "cloud-1" | "cloud-2" | "edge-a-1" | "edge-b-1"
        )
    }

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

    /// The Gateway objects of the lab's topology with `cloud_active` as the cloud's active
    /// endpoint.
    pub fn gateways(&self) -> Vec<Value> {
        let key = |name: &str| {
            self.nodes
                .iter()
                .find(|n| n.spec.name == name)
                .and_then(|n| n.public_key.clone())
                .unwrap_or_default()
        };
        let endpoint = |node: &str, public_ip: Ipv4Addr, nat: bool| {
            json!({
                "nodeName": node, "type": "tunnel", "port": 4500, "publicIP": public_ip.to_string(),
                "underNAT": nat, "config": {"publicKey": key(node)},
            })
        };
        let nodes = |domain: &str| -> Vec<Value> {
            NODES
                .iter()
                .filter(|n| n.domain == domain)
                .map(|n| {
                    json!({"nodeName": n.name, "privateIP": n.ip.to_string(),
                           "subnets": [n.pod_subnet]})
                })
                .collect()
        };
        let gateway = |domain: &str, endpoints: Vec<Value>, active: Value| {
            json!({
                "apiVersion": "raven.openyurt.io/v1beta1",
                "kind": "Gateway",
                "metadata": {"name": format!("gw-{domain}")},
                "spec": {
                    "proxyConfig": {"Replicas": 0},
                    "tunnelConfig": {"Replicas": 1},
                    "endpoints": endpoints,
                },
                "status": {"nodes": nodes(domain), "activeEndpoints": [active]},
            })
        };
        let c1 = endpoint("cloud-1", NODES[0].ip, false);
        let c2 = endpoint("cloud-2", NODES[1].ip, false);
        let active = if self.cloud_active == "cloud-2" {
            c2.clone()
        } else {
            c1.clone()
        };
        let ea = endpoint("edge-a-1", ROUTERS[0].wan, true);
        let eb = endpoint("edge-b-1", ROUTERS[1].wan, true);
        vec![
            gateway("cloud", vec![c1, c2], active),
            gateway("edge-a", vec![ea.clone()], ea),
            gateway("edge-b", vec![eb.clone()], eb),
        ]
    }

    /// Writes the Gateway files (one per Gateway) into every node's directory, atomically.
    pub fn write_gateways(&self) -> Result<()> {
        for gw in self.gateways() {
            let name = gw["metadata"]["name"].as_str().unwrap_or("gw").to_string();
            let body =
                serde_json::to_vec_pretty(&gw).context(|| "encoding a Gateway".to_string())?;
            for node in &self.nodes {
                crate::nodestate::write_atomic(
                    &node.dir.join("gateways").join(format!("{name}.json")),
                    &body,
                )?;
            }
        }
        Ok(())
    }

    /// Moves the cloud's active endpoint to `node` ("cloud-1" or "cloud-2") by rewriting the
    /// Gateway files.
    pub fn set_cloud_active(&mut self, node: &'static str) -> Result<()> {
        self.cloud_active = node;
        self.write_gateways()
    }

    /// Creates a pod on node `i` through the real CNI chain; returns its index in
    /// [`Lab::pods`].
    pub fn add_pod(&mut self, i: usize) -> Result<usize> {
        let node = &self.nodes[i];
        let netns = Netns::new("pod")?;
        let pod = Pod {
            container_id: format!("ctr-{}", netns.name()),
            netns,
            name: format!("pod-{}-{}", node.spec.name, self.pods.len()),
            namespace: "raven-lab".to_string(),
            ifname: "eth0".to_string(),
        };
        let out = self.cnitool(i, "add", &pod)?.into_ok()?;
        let result: Value = serde_json::from_str(&out.stdout)
            .context(|| format!("ADD result is not JSON: {}", out.stdout))?;
        let addr = result["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse::<Ipv4Addr>().ok())
            .ok_or_else(|| Error::new(format!("no IPv4 address in the ADD result: {result}")))?;
        self.pods.push(LabPod {
            node: i,
            pod,
            ip: addr,
        });
        Ok(self.pods.len() - 1)
    }

    /// Runs `raven-cnitool <op>` for `pod` inside node `i`.
    pub fn cnitool(&self, i: usize, op: &str, pod: &Pod) -> Result<Output> {
        let node = &self.nodes[i];
        let tool = self.cnitool.to_string_lossy().into_owned();
        let netns = pod.netns.path_str();
        let cache = node.dir.join("cache").to_string_lossy().into_owned();
        let cni_args = pod.cni_args();
        let argv = [
            tool.as_str(),
            op,
            node.chain.network.as_str(),
            netns.as_str(),
            "--container-id",
            &pod.container_id,
            "--ifname",
            &pod.ifname,
            "--cni-args",
            &cni_args,
            "--cache-dir",
            &cache,
        ];
        let mut c = node.netns.command(&argv);
        c.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("NETCONFPATH", node.dir.join("conf"))
            .env("CNI_PATH", &self.cni_path);
        cmd::run_command(c, None)
    }

    /// Runs argv in pod `p`.
    pub fn exec_in_pod(&self, p: &LabPod, argv: &[&str]) -> Result<Output> {
        p.pod.netns.exec_output(argv)
    }

    /// The `raven-node run` command line for node `i`.
    pub fn daemon_command(&self, i: usize) -> Command {
        let node = &self.nodes[i];
        let bin = self.raven_node.to_string_lossy().into_owned();
        let d = |sub: &str| node.dir.join(sub).to_string_lossy().into_owned();
        let mtu = UNDERLAY_MTU.to_string();
        let poll = self
            .options
            .poll_interval_ms
            .unwrap_or(LAB_POLL_INTERVAL_MS)
            .to_string();
        let argv = [
            bin.as_str(),
            "run",
            "--node-name",
            node.spec.name,
            "--gateways-dir",
            &d("gateways"),
            "--state-dir",
            &d("state"),
            "--node-state-file",
            &d("node-state.json"),
            "--cni-data-dir",
            &d("raven"),
            "--metrics-addr",
            METRICS_ADDR,
            "--underlay-mtu",
            &mtu,
            "--poll-interval-ms",
            &poll,
            // Nodes reach remote pods with their private IP as source (the planner's route
            // `src`); replies find their way back only if node IPs are routed like pod
            // subnets. The overlapping edge addresses are excluded by the planner (reported
            // as conflicts), so only nodes with unique addresses reach remote pods.
            "--forward-node-ip",
            "--log",
            "info",
        ];
        let mut c = node.netns.command(&argv);
        if let Some(driver) = &self.options.tunnel_driver {
            c.args(["--tunnel-driver", driver]);
        }
        c
    }

    /// Runs `raven-node cleanup` on node `i` (same paths as the daemon).
    pub fn run_cleanup(&self, i: usize) -> Result<Output> {
        let mut c = self.daemon_command(i);
        // Same flags as `run`, with the subcommand swapped.
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .map(|a| if a == "run" { "cleanup".to_string() } else { a })
            .collect();
        c = Command::new("ip");
        c.args(args);
        cmd::run_command(c, None)
    }

    /// Starts `raven-node` on node `i` (logs appended to `<node dir>/raven-node.log`).
    pub fn start_daemon(&mut self, i: usize) -> Result<()> {
        if self.nodes[i].daemon.is_some() {
            return Ok(());
        }
        let log_path = self.nodes[i].dir.join("raven-node.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .context(|| format!("opening {}", log_path.display()))?;
        let err = log
            .try_clone()
            .context(|| "cloning the log handle".to_string())?;
        let mut c = self.daemon_command(i);
        c.stdin(Stdio::null()).stdout(log).stderr(err);
        let child = c
            .spawn()
            .context(|| format!("starting raven-node on {}", self.nodes[i].spec.name))?;
        self.nodes[i].daemon = Some(child);
        Ok(())
    }

    /// Starts every daemon.
    pub fn start_daemons(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.start_daemon(i)?;
        }
        Ok(())
    }

    /// Stops node `i`'s daemon with `signal` (e.g. `libc::SIGTERM`, `libc::SIGKILL`) and
    /// waits for it; returns its exit status description.
    pub fn stop_daemon(&mut self, i: usize, signal: i32) -> Result<String> {
        let Some(mut child) = self.nodes[i].daemon.take() else {
            return Ok("not running".to_string());
        };
        // `ip netns exec` execs the daemon, so the child's pid is the daemon's.
        let pid = i32::try_from(child.id()).map_err(|_| Error::new("pid out of range"))?;
        // SAFETY: kill(2) on a pid we spawned and have not reaped yet.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child
                .try_wait()
                .context(|| "waiting for raven-node".to_string())?
            {
                return Ok(status.to_string());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::new(format!(
                    "raven-node on {} did not stop within 10 s",
                    self.nodes[i].spec.name
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pid of node `i`'s daemon, if running (`ip netns exec` execs it, so this is the
    /// daemon itself), e.g. to send SIGHUP for an immediate resync.
    pub fn daemon_pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].daemon.as_ref().map(Child::id)
    }

    /// Whether node `i`'s daemon is still running.
    pub fn daemon_running(&mut self, i: usize) -> bool {
        match self.nodes[i].daemon.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Node `i`'s daemon log.
    pub fn daemon_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].dir.join("raven-node.log")).unwrap_or_default()
    }

    /// Every daemon's log tail, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let log = self.daemon_log(i);
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            out.push_str(&format!("--- {} ---\n", n.spec.name));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// GET `path` from node `i`'s daemon (status code and body), with curl in the node netns.
    pub fn http_get(&self, i: usize, path: &str) -> Result<(u16, String)> {
        let url = format!("http://{METRICS_ADDR}{path}");
        let out = self.nodes[i].netns.exec_output(&[
            "curl",
            "-s",
            "-m",
            "2",
            "-w",
            "\n%{http_code}",
            &url,
        ])?;
        let text = out.stdout;
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        Ok((code.trim().parse().unwrap_or(0), body.to_string()))
    }

    /// One metric value (first sample whose line starts with `prefix`) of node `i`.
    pub fn metric(&self, i: usize, prefix: &str) -> Result<Option<f64>> {
        let (code, body) = self.http_get(i, "/metrics")?;
        if code != 200 {
            return Err(Error::new(format!("/metrics answered {code}: {body}")));
        }
        Ok(body
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok()))
    }

    /// Waits until `f` returns true, polling every 100 ms; the error says what was awaited.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut() -> bool,
    ) -> Result<Duration> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if f() {
                return Ok(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(Error::new(format!(
            "timed out after {timeout:?} waiting for {what}\n{}",
            self.logs()
        )))
    }

    /// One ping from pod `from` to `to_ip` (1 s timeout); whether it got an answer.
    pub fn ping_from_pod(&self, from: &LabPod, to_ip: Ipv4Addr) -> bool {
        from.pod
            .netns
            .exec_output(&["ping", "-c", "1", "-W", "1", &to_ip.to_string()])
            .map(|o| o.success())
            .unwrap_or(false)
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
