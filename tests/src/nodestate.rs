//! Writing the node-state file the way `raven-node` will: atomically.
//!
//! Tests publish state directly with the shared contract type, so a schema change in
//! `raven-api` breaks the tests at compile time rather than at run time.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use raven_api::nodestate::{NODE_STATE_SCHEMA, NodeState};

use crate::error::{Context, Error, Result};

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh state (updated now) for `prefixes` and `mtu`.
pub fn state(generation: u64, prefixes: &[&str], mtu: u32) -> Result<NodeState> {
    let remote_prefixes = prefixes
        .iter()
        .map(|p| p.parse().context(|| format!("prefix {p:?}")))
        .collect::<Result<Vec<_>>>()?;
    Ok(NodeState {
        schema: NODE_STATE_SCHEMA,
        generation,
        node_name: "test-node".to_string(),
        remote_prefixes,
        mtu,
        updated_at: now_secs(),
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::new(format!("{} has no parent", path.display())))?;
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, bytes).context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).context(|| format!("renaming into {}", path.display()))
}

/// Publishes `state` at `path` with the contract's own writer (the one raven-node uses).
pub fn publish(path: &Path, state: &NodeState) -> Result<()> {
    state
        .publish(path)
        .context(|| format!("publishing node state at {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let s = state(3, &["10.245.0.0/24", "fd00:245::/64"], 1400).unwrap();
        publish(&path, &s).unwrap();
        let read = NodeState::load(&path).unwrap().unwrap();
        assert_eq!(read, s);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn bad_prefix_is_an_error() {
        assert!(state(1, &["nope"], 1400).is_err());
    }
}
