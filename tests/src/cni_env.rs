//! A lab for one CNI network: temp directories, a "node" netns, the conflist, and pods.
//!
//! `raven-cnitool` (real libcni) runs INSIDE the node namespace, so `cni0`, the host veths and
//! portmap's rules live there and the real host is untouched. Each pod is its own netns. Every
//! path (conflist dir, libcni cache, host-local reservations, raven-cni records, node-state
//! file) is inside one temp dir per lab, so labs run in parallel without sharing anything.

use std::path::{Path, PathBuf};
use std::process::Command;

use raven_api::nodestate::NodeState;
use serde::Deserialize;
use serde_json::{Map, Value};
use tempfile::TempDir;

use crate::chain::{ChainSpec, RavenPlugin};
use crate::cmd::{self, Output};
use crate::error::{Context, Error, Result};
use crate::netns::Netns;
use crate::require::{self, DEBIAN_CNI_DIR};
use crate::{kernel, nodestate, paths};

/// Configures a [`CniEnv`].
#[derive(Debug, Clone)]
pub struct CniEnvBuilder {
    cni_version: String,
    network: String,
    with_raven: bool,
    raven_extra: Map<String, Value>,
    cni_path_prefix: Option<PathBuf>,
}

/// A pod: its netns plus the identity the runtime would pass.
#[derive(Debug)]
pub struct Pod {
    /// The pod's network namespace.
    pub netns: Netns,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `K8S_POD_NAME`.
    pub name: String,
    /// `K8S_POD_NAMESPACE`.
    pub namespace: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

/// One lab; dropping it deletes the node netns (with cni0 and host veths) and the temp dir.
#[derive(Debug)]
pub struct CniEnv {
    spec: ChainSpec,
    cnitool: PathBuf,
    cni_path: String,
    node: Netns,
    tmp: TempDir,
}

/// What `raven-cnitool` printed and how it exited.
#[derive(Debug, Clone)]
pub struct CniOutput(pub Output);

/// A CNI error result as printed by `raven-cnitool`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CniError {
    /// Error code.
    pub code: u32,
    /// Message.
    #[serde(default)]
    pub msg: String,
    /// Details.
    #[serde(default)]
    pub details: String,
}

impl CniEnvBuilder {
    /// Adds (or overrides) a key of the raven-cni plugin object.
    pub fn raven_key(mut self, key: &str, value: Value) -> Self {
        self.raven_extra.insert(key.to_string(), value);
        self
    }

    /// Leaves raven-cni out of the list (bridge + host-local + portmap only).
    pub fn without_raven(mut self) -> Self {
        self.with_raven = false;
        self
    }

    /// Puts `dir` first in `CNI_PATH` (a plugin directory an installer fills during the test).
    pub fn cni_path_prefix(mut self, dir: &Path) -> Self {
        self.cni_path_prefix = Some(dir.to_path_buf());
        self
    }

    /// Sets the network (list) name; default `cbr0` like kube-flannel.
    pub fn network(mut self, name: &str) -> Self {
        self.network = name.to_string();
        self
    }

    /// Checks preconditions, creates the temp dirs and the node netns, writes the conflist.
    pub fn build(self) -> Result<CniEnv> {
        require::check_root()?;
        require::check_tool("ip")?;
        require::check_debian_cni_plugins()?;
        let cnitool = paths::find_cnitool()?;
        let mut cni_path = DEBIAN_CNI_DIR.to_string();
        if self.with_raven {
            let raven = paths::find_raven_cni()?;
            let dir = raven.parent().unwrap_or(Path::new("/"));
            cni_path = format!("{}:{cni_path}", dir.display());
        }
        if let Some(dir) = &self.cni_path_prefix {
            cni_path = format!("{}:{cni_path}", dir.display());
        }
        let tmp = tempfile::Builder::new()
            .prefix("raven-lab-")
            .tempdir()
            .context(|| "creating the lab temp dir".to_string())?;
        let mut spec =
            ChainSpec::flannel_defaults(&self.cni_version, &self.network, &tmp.path().join("ipam"));
        if self.with_raven {
            spec.raven = Some(RavenPlugin {
                node_state_file: tmp.path().join("node-state.json"),
                data_dir: tmp.path().join("raven"),
                extra: self.raven_extra,
            });
        }
        let node = Netns::new("node")?;
        let env = CniEnv {
            spec,
            cnitool,
            cni_path,
            node,
            tmp,
        };
        env.write_conflist()?;
        Ok(env)
    }
}

impl CniEnv {
    /// A lab for a Flannel-equivalent chain plus raven-cni at `cni_version`.
    pub fn builder(cni_version: &str) -> CniEnvBuilder {
        CniEnvBuilder {
            cni_version: cni_version.to_string(),
            network: "cbr0".to_string(),
            with_raven: true,
            raven_extra: Map::new(),
            cni_path_prefix: None,
        }
    }

    fn write_conflist(&self) -> Result<()> {
        let dir = self.conf_dir();
        std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("10-{}.conflist", self.spec.network));
        let body = serde_json::to_vec_pretty(&self.spec.conflist())
            .context(|| "encoding the conflist".to_string())?;
        std::fs::write(&path, body).context(|| format!("writing {}", path.display()))
    }

    /// The chain parameters.
    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    /// The node netns (holds cni0 and the host veths).
    pub fn node(&self) -> &Netns {
        &self.node
    }

    /// The lab's temp dir.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// `NETCONFPATH`.
    pub fn conf_dir(&self) -> PathBuf {
        self.root().join("conf")
    }

    /// libcni's result cache dir.
    pub fn cache_dir(&self) -> PathBuf {
        self.root().join("cache")
    }

    /// host-local's reservations of this network.
    pub fn ipam_dir(&self) -> PathBuf {
        self.spec.ipam_data_dir.join(&self.spec.network)
    }

    /// raven-cni's `nodeStateFile`.
    pub fn state_file(&self) -> PathBuf {
        self.root().join("node-state.json")
    }

    /// raven-cni's `dataDir`.
    pub fn data_dir(&self) -> PathBuf {
        self.root().join("raven")
    }

    /// `CNI_PATH` given to libcni.
    pub fn cni_path(&self) -> &str {
        &self.cni_path
    }

    /// Creates a pod netns with a unique container ID.
    pub fn new_pod(&self, name: &str) -> Result<Pod> {
        let netns = Netns::new("pod")?;
        Ok(Pod {
            container_id: format!("ctr-{}", netns.name()),
            netns,
            name: name.to_string(),
            namespace: "raven-test".to_string(),
            ifname: "eth0".to_string(),
        })
    }

    /// A `Command` running `raven-cnitool <args>` inside the node netns with the lab's env.
    pub fn cnitool_command(&self, args: &[String]) -> Command {
        let tool = self.cnitool.to_string_lossy().into_owned();
        let mut argv = vec![tool.as_str()];
        argv.extend(args.iter().map(String::as_str));
        let mut c = self.node.command(&argv);
        c.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("NETCONFPATH", self.conf_dir())
            .env("CNI_PATH", &self.cni_path);
        c
    }

    /// Runs `raven-cnitool <args>` in the node netns.
    pub fn cnitool(&self, args: &[String]) -> Result<CniOutput> {
        cmd::run_command(self.cnitool_command(args), None).map(CniOutput)
    }

    /// Runs add/check/del for `pod` with an explicit netns path ("" allowed); `extra` flags come
    /// last, so they override the defaults (Go's flag package keeps the last value).
    pub fn pod_op(&self, op: &str, pod: &Pod, netns: &str, extra: &[&str]) -> Result<CniOutput> {
        let mut args = pod_op_args(op, &self.spec.network, netns, pod, &self.cache_dir());
        args.extend(extra.iter().map(|s| s.to_string()));
        self.cnitool(&args)
    }

    /// ADD through the whole chain.
    pub fn add(&self, pod: &Pod) -> Result<CniOutput> {
        self.pod_op("add", pod, &pod.netns.path_str(), &[])
    }

    /// CHECK through the whole chain.
    pub fn check(&self, pod: &Pod) -> Result<CniOutput> {
        self.pod_op("check", pod, &pod.netns.path_str(), &[])
    }

    /// CHECK of the raven-cni entry only, with libcni's cached result. Debian's bridge 1.1.1
    /// fails CHECK on every Flannel-shaped attachment (plugins PR #887), which would stop the
    /// chain before raven-cni is asked.
    pub fn check_raven(&self, pod: &Pod) -> Result<CniOutput> {
        self.pod_op(
            "check",
            pod,
            &pod.netns.path_str(),
            &["--only-types", "raven-cni"],
        )
    }

    /// DEL through the whole chain with the pod's netns path.
    pub fn del(&self, pod: &Pod) -> Result<CniOutput> {
        self.pod_op("del", pod, &pod.netns.path_str(), &[])
    }

    /// GC with the given pods as the valid attachments.
    pub fn gc(&self, valid: &[&Pod]) -> Result<CniOutput> {
        let list: Vec<String> = valid
            .iter()
            .map(|p| format!("{}/{}", p.container_id, p.ifname))
            .collect();
        let mut args = vec!["gc".to_string(), self.spec.network.clone(), String::new()];
        args.extend(["--valid".to_string(), list.join(",")]);
        args.extend([
            "--cache-dir".to_string(),
            self.cache_dir().display().to_string(),
        ]);
        self.cnitool(&args)
    }

    /// STATUS of the list.
    pub fn status(&self) -> Result<CniOutput> {
        self.cnitool(&["status".to_string(), self.spec.network.clone()])
    }

    /// Publishes a node state atomically.
    pub fn publish_state(&self, state: &NodeState) -> Result<()> {
        nodestate::publish(&self.state_file(), state)
    }

    /// Writes arbitrary bytes as the node-state file (for corrupt-state tests).
    pub fn write_state_raw(&self, bytes: &[u8]) -> Result<()> {
        nodestate::write_atomic(&self.state_file(), bytes)
    }

    /// Where raven-cni records the pod's attachment.
    pub fn record_path(&self, pod: &Pod) -> PathBuf {
        self.attachment_file(pod, "json")
    }

    /// The lock file that may sit beside the record.
    pub fn lock_path(&self, pod: &Pod) -> PathBuf {
        self.attachment_file(pod, "lock")
    }

    fn attachment_file(&self, pod: &Pod, ext: &str) -> PathBuf {
        self.data_dir()
            .join(&self.spec.network)
            .join(format!("{}:{}.{ext}", pod.container_id, pod.ifname))
    }

    /// The pod's record, if present.
    pub fn read_record(&self, pod: &Pod) -> Result<Option<Value>> {
        let path = self.record_path(pod);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .context(|| format!("record {} is not JSON", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::new(format!("reading {}: {e}", path.display()))),
        }
    }

    /// Every file under raven-cni's data dir.
    pub fn raven_files(&self) -> Result<Vec<PathBuf>> {
        files_under(&self.data_dir())
    }

    /// host-local's address reservations (files named by IP) of this network.
    pub fn ipam_reservations(&self) -> Result<Vec<String>> {
        Ok(files_under(&self.ipam_dir())?
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .filter(|name| name.parse::<std::net::IpAddr>().is_ok())
            .collect())
    }

    /// libcni's cached results.
    pub fn cache_entries(&self) -> Result<Vec<PathBuf>> {
        files_under(&self.cache_dir().join("results"))
    }

    /// veth links on the node side.
    pub fn node_veths(&self) -> Result<Vec<String>> {
        kernel::veths(&self.node)
    }
}

impl Pod {
    /// `CNI_ARGS` as a kubelet/containerd runtime sends them.
    pub fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
            self.namespace, self.name, self.container_id
        )
    }
}

impl CniOutput {
    /// Whether raven-cnitool exited 0.
    pub fn success(&self) -> bool {
        self.0.success()
    }

    /// Requires success.
    pub fn ok(self) -> Result<Self> {
        if self.success() {
            Ok(self)
        } else {
            Err(Error::new(self.0.describe_failure()))
        }
    }

    /// stdout parsed as JSON (the ADD result).
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.0.stdout).context(|| {
            format!(
                "stdout of `{}` is not JSON: {:?}",
                self.0.argv, self.0.stdout
            )
        })
    }

    /// The CNI error printed by a failed command; an error if the command succeeded.
    pub fn cni_error(&self) -> Result<CniError> {
        if self.success() {
            return Err(Error::new(format!(
                "`{}` succeeded but a failure was expected; stdout: {}",
                self.0.argv, self.0.stdout
            )));
        }
        serde_json::from_str(self.0.stdout.trim()).context(|| {
            format!(
                "error output is not CNI error JSON\n{}",
                self.0.describe_failure()
            )
        })
    }
}

/// All regular files below `dir` (missing dir: none), sorted.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::new(format!("listing {}: {e}", dir.display()))),
    };
    for entry in entries {
        let path = entry
            .context(|| format!("listing {}", dir.display()))?
            .path();
        if path.is_dir() {
            out.extend(files_under(&path)?);
        } else {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The `raven-cnitool` arguments of operation `op` for `pod` on `network` (its netns path,
/// container id, interface, CNI_ARGS and the result cache), shared by every harness.
pub fn pod_op_args(
    op: &str,
    network: &str,
    netns: &str,
    pod: &Pod,
    cache: &std::path::Path,
) -> Vec<String> {
    [
        op,
        network,
        netns,
        "--container-id",
        &pod.container_id,
        "--ifname",
        &pod.ifname,
        "--cni-args",
        &pod.cni_args(),
        "--cache-dir",
        &cache.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
