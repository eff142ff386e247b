//! Building the lab's topology: switches, NAT routers, nodes with their CNI chain and
//! directories, Flannel host-gw routes, the gateway candidates' keys, then Gateway files and
//! one pod per node.

use std::path::Path;

use super::plumbing::{ip, plug, switch, sysctl};
use super::{
    CLUSTER_CIDR, INTERNET_PREFIX, Lab, LabNode, LabOptions, NODES, NodeSpec, ROUTERS, RouterSpec,
    check_preconditions, find_raven_node,
};
use crate::chain::{ChainSpec, RavenPlugin};
use crate::cmd;
use crate::error::{Context, Error, Result};
use crate::netns::Netns;
use crate::paths;
use crate::require::DEBIAN_CNI_DIR;

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
            let (router, lan) = nat_router(&lab.internet, i, r)?;
            lans.push((r.domain, lan));
            lab.routers.push(router);
        }
        for (i, spec) in NODES.iter().enumerate() {
            let node = new_node(lab.tmp.path(), &lab.internet, &lans, i, spec)?;
            lab.nodes.push(node);
        }
        lab.switches.extend(lans.into_iter().map(|(_, sw)| sw));
        lab.route_pod_subnets_in_domains()?;
        lab.read_public_keys()?;
        lab.write_gateways()?;
        for i in 0..lab.nodes.len() {
            lab.add_pod(i)?;
        }
        Ok(lab)
    }

    /// Flannel host-gw inside each domain: every node routes the other nodes' pod subnets
    /// via their private IPs.
    fn route_pod_subnets_in_domains(&self) -> Result<()> {
        for (a, na) in NODES.iter().enumerate() {
            for nb in NODES
                .iter()
                .filter(|nb| nb.name != na.name && nb.domain == na.domain)
            {
                ip(
                    &self.nodes[a].netns,
                    &["route", "add", nb.pod_subnet, "via", &nb.ip.to_string()],
                )?;
            }
        }
        Ok(())
    }

    /// Gateway candidates' public keys, from their own state directories (`raven-node
    /// public-key` creates each key where the node's daemon will find it).
    fn read_public_keys(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            if self.is_candidate(i) {
                let state = self.nodes[i].dir.join("state");
                let out = cmd::run_ok(&[
                    &self.raven_node.to_string_lossy(),
                    "public-key",
                    "--state-dir",
                    &state.to_string_lossy(),
                ])?;
                self.nodes[i].public_key = Some(out.trim().to_string());
            }
        }
        Ok(())
    }

    /// Whether node `i` is a gateway endpoint candidate.
    fn is_candidate(&self, i: usize) -> bool {
        matches!(
            self.nodes[i].spec.name,
            "cloud-1" | "cloud-2" | "edge-a-1" | "edge-b-1"
        )
    }
}

/// NAT router `i` of domain `r`: its WAN port on the "internet" switch, its LAN switch (the
/// domain's segment), forwarding and masquerade on the WAN side. Returns (router, LAN switch).
fn nat_router(internet: &Netns, i: usize, r: &RouterSpec) -> Result<(Netns, Netns)> {
    let router = Netns::new(&format!("rt{i}"))?;
    plug(
        internet,
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
    Ok((router, lan))
}

/// Node `i` (`spec`): its namespace plugged into its domain's switch (cloud nodes on the
/// "internet" one, edge nodes on their LAN, default route via the router), forwarding on,
/// and its directory under `root` with the CNI chain's configuration.
fn new_node(
    root: &Path,
    internet: &Netns,
    lans: &[(&str, Netns)],
    i: usize,
    spec: &NodeSpec,
) -> Result<LabNode> {
    let netns = Netns::new(&format!("n{i}"))?;
    let segment = match spec.domain {
        "cloud" => internet,
        domain => {
            let (_, lan) = lans
                .iter()
                .find(|(d, _)| *d == domain)
                .ok_or_else(|| Error::new(format!("no LAN for {domain}")))?;
            lan
        }
    };
    plug(
        segment,
        &format!("n{i}"),
        &netns,
        "eth0",
        &format!("{}/24", spec.ip),
    )?;
    if spec.domain != "cloud" {
        let router = ROUTERS
            .iter()
            .find(|r| r.domain == spec.domain)
            .ok_or_else(|| Error::new(format!("no router for {}", spec.domain)))?;
        ip(
            &netns,
            &["route", "add", "default", "via", &router.lan.to_string()],
        )?;
    }
    sysctl(&netns, "net.ipv4.ip_forward=1")?;
    let dir = root.join(spec.name);
    let chain = write_chain(&dir, spec)?;
    Ok(LabNode {
        spec: *spec,
        netns,
        dir,
        chain,
        daemon: None,
        public_key: None,
    })
}

/// Creates the node directory `dir` (conf, cache, ipam, raven, state, gateways) and writes
/// the Flannel-equivalent chain with raven-cni for `spec`'s pod subnet into `conf/`.
fn write_chain(dir: &Path, spec: &NodeSpec) -> Result<ChainSpec> {
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
    Ok(chain)
}
