//! The daemon's CNI-directory watch: re-run the configuration install whenever the directory
//! changes (Flannel rewrote its file, someone deleted ours, the operator added a plugin).
//!
//! Polling, not inotify: the daemon's loop already wakes every poll interval (1 s), and one
//! `readdir` plus a `stat` per file of a directory holding a handful of files costs
//! microseconds. Polling also sees what inotify handles badly here: the directory is a hostPath
//! whose watch would have to be re-armed if it is replaced or re-mounted, and events come in
//! bursts while `cp -f` truncates and rewrites (we would debounce anyway). The change test is a
//! fingerprint of (name, inode, size, mtime) of every configuration file; besides changes, the
//! install re-runs every [`RESYNC`] as a safety net (an mtime-preserving edit).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::plan::is_config_name;
use super::{Desired, InstallError, Settings, sync_conf};

/// Re-run the install at least this often even without a visible change.
pub const RESYNC: Duration = Duration::from_secs(60);

/// (name, inode, size, mtime seconds, mtime nanoseconds) of one configuration file.
type FileStamp = (String, u64, u64, i64, i64);

/// The polling watcher.
#[derive(Debug)]
pub struct CniWatcher {
    settings: Settings,
    last: Option<Vec<FileStamp>>,
    last_run: Option<Instant>,
    last_error: Option<String>,
}

/// What one tick did.
#[derive(Debug, PartialEq, Eq)]
pub enum Tick {
    /// Nothing changed, nothing ran.
    Idle,
    /// The install ran and left this configuration.
    Ran(Desired),
    /// The install ran and failed (logged once per distinct message).
    Failed(String),
}

impl CniWatcher {
    /// A watcher that installs on its first tick.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            last: None,
            last_run: None,
            last_error: None,
        }
    }

    /// Polls the directory and re-installs when it changed (or [`RESYNC`] elapsed).
    pub fn tick(&mut self) -> Tick {
        let now = Instant::now();
        let fp = fingerprint(&self.settings.conf_dir);
        let due = self
            .last_run
            .is_none_or(|t| now.duration_since(t) >= RESYNC);
        if !due && self.last.as_ref() == Some(&fp) {
            return Tick::Idle;
        }
        self.last_run = Some(now);
        let result = sync_conf(&self.settings);
        // Fingerprint after our own write, so our write is not seen as a change next tick.
        self.last = Some(fingerprint(&self.settings.conf_dir));
        match result {
            Ok(d) => {
                if self.last_error.take().is_some() {
                    tracing::info!("CNI configuration recovered");
                }
                match &d {
                    Desired::Write { source, .. } => tracing::info!(
                        source = %source,
                        file = super::OUR_FILE,
                        "CNI configuration (re)written"
                    ),
                    Desired::Absent => tracing::warn!(
                        dir = %self.settings.conf_dir.display(),
                        "no CNI configuration to chain raven-cni after; ours is absent"
                    ),
                    Desired::UpToDate { .. } => {}
                }
                Tick::Ran(d)
            }
            Err(e) => {
                let msg = e.to_string();
                if self.last_error.as_deref() != Some(msg.as_str()) {
                    log_error(&e);
                    self.last_error = Some(msg.clone());
                }
                Tick::Failed(msg)
            }
        }
    }
}

fn log_error(e: &InstallError) {
    tracing::error!("CNI install: {e}");
}

/// (name, inode, size, mtime s, mtime ns) of every configuration file, sorted; unreadable
/// entries and a missing directory simply contribute nothing (the install reports them).
fn fingerprint(dir: &Path) -> Vec<FileStamp> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_config_name(&name) {
            continue;
        }
        if let Ok(m) = std::fs::metadata(entry.path()) {
            out.push((name, m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLANNEL: &str =
        r#"{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel"},{"type":"portmap"}]}"#;

    #[test]
    fn reinstalls_on_change_only() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            conf_dir: dir.path().to_path_buf(),
            bin_dir: dir.path().join("bin"),
            binary: None,
            node_state_file: "/run/raven/node-state.json".into(),
            data_dir: "/var/lib/cni/raven".into(),
        };
        let mut w = CniWatcher::new(settings);
        assert_eq!(w.tick(), Tick::Ran(Desired::Absent));
        assert_eq!(w.tick(), Tick::Idle);
        std::fs::write(dir.path().join("10-flannel.conflist"), FLANNEL).unwrap();
        assert!(matches!(w.tick(), Tick::Ran(Desired::Write { .. })));
        assert_eq!(w.tick(), Tick::Idle);
        // Flannel mid-rewrite: an error, ours untouched; then converges.
        let ours = std::fs::read(dir.path().join(super::super::OUR_FILE)).unwrap();
        std::fs::write(dir.path().join("10-flannel.conflist"), "").unwrap();
        assert!(matches!(w.tick(), Tick::Failed(m) if m.contains("empty")));
        assert_eq!(
            std::fs::read(dir.path().join(super::super::OUR_FILE)).unwrap(),
            ours
        );
        std::fs::write(dir.path().join("10-flannel.conflist"), FLANNEL).unwrap();
        assert!(matches!(w.tick(), Tick::Ran(Desired::UpToDate { .. })));
        // Someone deleted ours: recreated.
        std::fs::remove_file(dir.path().join(super::super::OUR_FILE)).unwrap();
        assert!(matches!(w.tick(), Tick::Ran(Desired::Write { .. })));
    }
}
