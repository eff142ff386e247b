//! The node-state file: what `raven-node` tells `raven-cni` about the node's tunnel.
//!
//! `raven-node` writes it atomically (temporary file in the same directory, fsync, rename), so a
//! reader sees either the old or the new content, never a torn one. `raven-cni` reads it on every
//! ADD/CHECK/STATUS. The generation increases on every change of the route set or the MTU; pod
//! attachments record the generation they were programmed with, which is how `raven-node` finds
//! pods whose routes need a refresh.

use std::net::IpAddr;
use std::path::Path;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

/// Where `raven-node` publishes the node state unless configured otherwise. Under `/run` on
/// purpose: after a reboot there is no state until `raven-node` has planned again.
pub const DEFAULT_NODE_STATE_FILE: &str = "/run/raven/node-state.json";

/// Where `raven-cni` records pod attachments unless configured otherwise. Under `/var/lib/cni`
/// like Flannel's own scratch files, so that records outlive a daemon restart.
pub const DEFAULT_CNI_DATA_DIR: &str = "/var/lib/cni/raven";

/// Schema version of [`NodeState`]; a reader refuses a newer major schema instead of guessing.
pub const NODE_STATE_SCHEMA: u32 = 1;

/// Route protocol number that marks routes installed by Raven (`ip route ... proto 82`).
/// Anything with another protocol is someone else's and is never touched.
pub const RAVEN_ROUTE_PROTOCOL: u8 = 82;

/// The per-pod route set, as published by `raven-node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeState {
    /// Schema version, [`NODE_STATE_SCHEMA`].
    pub schema: u32,
    /// Increases whenever `remote_prefixes` or `mtu` change.
    pub generation: u64,
    /// Name of the node this state belongs to (diagnostics only).
    #[serde(default)]
    pub node_name: String,
    /// Pod prefixes of other network domains, routed through the tunnel.
    pub remote_prefixes: Vec<IpNetwork>,
    /// MTU of the path through the tunnel; carried on every per-pod route.
    pub mtu: u32,
    /// Seconds since the Unix epoch when `raven-node` last confirmed this state (it rewrites the
    /// file periodically even when nothing changed). Used by STATUS to detect a dead daemon.
    pub updated_at: u64,
}

/// Why a node-state file could not be used.
#[derive(Debug)]
pub enum NodeStateError {
    /// Reading the file failed for another reason than "not found".
    Io(std::io::Error),
    /// The file is not valid JSON of the expected shape.
    Decode(serde_json::Error),
    /// The content is well-formed but not usable.
    Invalid(String),
}

impl std::fmt::Display for NodeStateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "read: {e}"),
            Self::Decode(e) => write!(f, "decode: {e}"),
            Self::Invalid(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for NodeStateError {}

/// Smallest MTU we accept: the IPv6 minimum; anything lower is a bug upstream of us.
pub const MIN_MTU: u32 = 1280;
/// Largest MTU we accept (jumbo frames).
pub const MAX_MTU: u32 = 9000;

impl NodeState {
    /// Parses and validates the JSON content of a node-state file.
    pub fn from_json(bytes: &[u8]) -> Result<Self, NodeStateError> {
        let state: NodeState = serde_json::from_slice(bytes).map_err(NodeStateError::Decode)?;
        state.validate()?;
        Ok(state)
    }

    /// Reads the file; `Ok(None)` when it does not exist yet (raven-node not started).
    pub fn load(path: &Path) -> Result<Option<Self>, NodeStateError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::from_json(&bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NodeStateError::Io(e)),
        }
    }

    /// Checks the invariants a reader relies on.
    pub fn validate(&self) -> Result<(), NodeStateError> {
        if self.schema != NODE_STATE_SCHEMA {
            return Err(NodeStateError::Invalid(format!(
                "unsupported node-state schema {} (this build reads {NODE_STATE_SCHEMA})",
                self.schema
            )));
        }
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(NodeStateError::Invalid(format!(
                "mtu {} outside {MIN_MTU}..={MAX_MTU}",
                self.mtu
            )));
        }
        for prefix in &self.remote_prefixes {
            if prefix.network() != prefix.ip() {
                return Err(NodeStateError::Invalid(format!(
                    "remote prefix {prefix} has host bits set"
                )));
            }
        }
        Ok(())
    }

    /// Serializes the state (pretty, newline-terminated) for publication.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("NodeState always serializes");
        out.push(b'\n');
        out
    }

    /// Publishes the state at `path` atomically: temporary file in the same directory, fsync,
    /// rename over the old file, fsync of the directory. Readers see the old or the new file,
    /// never a torn one, and a crash after return cannot bring the old one back.
    pub fn publish(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("node-state.json");
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&tmp)?;
            f.write_all(&self.to_json())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// The remote prefixes of one address family, in file order.
    pub fn prefixes_of_family(&self, ip: IpAddr) -> impl Iterator<Item = &IpNetwork> {
        let v4 = ip.is_ipv4();
        self.remote_prefixes
            .iter()
            .filter(move |p| p.is_ipv4() == v4)
    }

    /// Advertised MSS matching `mtu` for the family: MTU minus IP and TCP headers.
    pub fn advmss(&self, ipv4: bool) -> u32 {
        self.mtu - if ipv4 { 40 } else { 60 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeState {
        NodeState {
            schema: 1,
            generation: 7,
            node_name: "n1".into(),
            remote_prefixes: vec![
                "10.20.0.0/24".parse().unwrap(),
                "fd00:20::/64".parse().unwrap(),
            ],
            mtu: 1400,
            updated_at: 1_700_000_000,
        }
    }

    #[test]
    fn round_trips_through_json() {
        let s = sample();
        assert_eq!(NodeState::from_json(&s.to_json()).unwrap(), s);
    }

    #[test]
    fn rejects_bad_content() {
        let cases: &[(&str, &str)] = &[
            (
                "host bits",
                r#"{"schema":1,"generation":1,"remotePrefixes":["10.0.0.1/24"],"mtu":1400,"updatedAt":0}"#,
            ),
            (
                "tiny mtu",
                r#"{"schema":1,"generation":1,"remotePrefixes":[],"mtu":500,"updatedAt":0}"#,
            ),
            (
                "schema",
                r#"{"schema":2,"generation":1,"remotePrefixes":[],"mtu":1400,"updatedAt":0}"#,
            ),
            (
                "unknown key",
                r#"{"schema":1,"generation":1,"remotePrefixes":[],"mtu":1400,"updatedAt":0,"x":1}"#,
            ),
            ("not json", "garbage"),
        ];
        for (name, json) in cases {
            assert!(
                NodeState::from_json(json.as_bytes()).is_err(),
                "{name} accepted"
            );
        }
    }

    #[test]
    fn missing_file_is_none() {
        let dir = std::env::temp_dir().join("raven-api-nodestate-missing");
        assert!(NodeState::load(&dir.join("nope.json")).unwrap().is_none());
    }

    #[test]
    fn publish_replaces_atomically() {
        let dir = std::env::temp_dir().join(format!("raven-api-publish-{}", std::process::id()));
        let path = dir.join("state.json");
        let mut s = sample();
        s.publish(&path).unwrap();
        s.generation = 8;
        s.publish(&path).unwrap();
        assert_eq!(NodeState::load(&path).unwrap(), Some(s));
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("state.json")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn family_filter_and_advmss() {
        let s = sample();
        let v4: Vec<_> = s.prefixes_of_family("10.0.0.1".parse().unwrap()).collect();
        assert_eq!(v4.len(), 1);
        assert_eq!(s.advmss(true), 1360);
        assert_eq!(s.advmss(false), 1340);
    }
}
