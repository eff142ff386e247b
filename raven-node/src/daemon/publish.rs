//! The real [`NodeStateSink`]: the node-state file read by `raven-cni`, the persisted
//! generation, and the refresh of every recorded pod through `raven_cni::refresh`.
//!
//! The generation is persisted in the state directory *before* the node state is published:
//! the node-state file lives under `/run` and disappears on reboot, while pod records under
//! `/var/lib/cni` survive it, so the counter must come from somewhere that survives too or a
//! pod recorded at generation 7 could look "up to date" against a new generation 7.

use std::path::{Path, PathBuf};

use raven_api::nodestate::NodeState;
use raven_cni::refresh::{RefreshOutcome, refresh_all};

use super::engine::{NodeStateSink, RefreshCounts};

/// File name of the persisted generation inside the state directory.
pub const GENERATION_FILE: &str = "generation";

/// Publishes to files on this node.
#[derive(Clone, Debug)]
pub struct FileSink {
    /// The node-state file (`raven-cni`'s `nodeStateFile`).
    pub state_file: PathBuf,
    /// `raven-cni`'s data directory with the pod records.
    pub cni_data_dir: PathBuf,
    /// The daemon's own state directory.
    pub state_dir: PathBuf,
}

impl FileSink {
    fn generation_file(&self) -> PathBuf {
        self.state_dir.join(GENERATION_FILE)
    }

    /// Removes the published node state (cleanup); a missing file is fine.
    pub fn remove(&self) -> Result<(), String> {
        match std::fs::remove_file(&self.state_file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("removing {}: {e}", self.state_file.display())),
        }
    }
}

/// Writes `content` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, content: &[u8]) -> std::io::Result<()> {
    crate::cni_install::fsops::write_atomic(path, content, 0o644).map(drop)
}

impl NodeStateSink for FileSink {
    fn current(&self) -> Option<NodeState> {
        match NodeState::load(&self.state_file) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(
                    "ignoring the published node state {}: {e}",
                    self.state_file.display()
                );
                None
            }
        }
    }

    fn persisted_generation(&self) -> u64 {
        let path = self.generation_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().unwrap_or_else(|e| {
                tracing::warn!("ignoring {}: {e}", path.display());
                0
            }),
            Err(_) => 0,
        }
    }

    fn publish(&mut self, state: &NodeState) -> Result<(), String> {
        if state.generation > self.persisted_generation() {
            let path = self.generation_file();
            write_atomic(&path, format!("{}\n", state.generation).as_bytes())
                .map_err(|e| format!("persisting the generation in {}: {e}", path.display()))?;
        }
        state
            .publish(&self.state_file)
            .map_err(|e| format!("writing {}: {e}", self.state_file.display()))
    }

    fn refresh_pods(&mut self) -> Result<RefreshCounts, String> {
        let summary = refresh_all(&self.cni_data_dir, &self.state_file).map_err(|e| {
            format!(
                "listing pod records in {}: {e}",
                self.cni_data_dir.display()
            )
        })?;
        let mut counts = RefreshCounts::default();
        for (_, _, outcome) in &summary.outcomes {
            match outcome {
                RefreshOutcome::UpToDate => counts.up_to_date += 1,
                RefreshOutcome::Updated { .. } => counts.updated += 1,
                RefreshOutcome::Gone => counts.gone += 1,
                RefreshOutcome::NamespaceGone => counts.namespace_gone += 1,
            }
        }
        counts.errors = summary
            .errors
            .iter()
            .map(|(network, id, e)| format!("{network}/{}:{}: {e}", id.container_id, id.ifname))
            .collect();
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_persisted_before_publication() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink {
            state_file: dir.path().join("run/node-state.json"),
            cni_data_dir: dir.path().join("cni"),
            state_dir: dir.path().join("state"),
        };
        assert_eq!(sink.current(), None);
        assert_eq!(sink.persisted_generation(), 0);
        let state = crate::plan::PodRoutes::new(vec!["10.9.0.0/16".parse().unwrap()], 1420)
            .to_node_state("n1", 5, 100);
        sink.publish(&state).unwrap();
        assert_eq!(sink.current(), Some(state.clone()));
        assert_eq!(sink.persisted_generation(), 5);
        // The state file vanishes (reboot: /run is a tmpfs); the generation does not.
        std::fs::remove_file(&sink.state_file).unwrap();
        assert_eq!(sink.current(), None);
        assert_eq!(sink.persisted_generation(), 5);
        // No records yet: an empty refresh.
        assert_eq!(sink.refresh_pods().unwrap(), RefreshCounts::default());
        sink.remove().unwrap();
        sink.remove().unwrap();
    }
}
