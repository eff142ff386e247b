//! `raven-node install-cni` / `uninstall-cni`: put `raven-cni` into the node's CNI chain and
//! take it out again, without ever editing a file someone else owns.
//!
//! Shape: [`observe`] reads the configuration directory → [`plan`] (pure) decides the one file
//! we own, `05-raven.conflist` (why a separate, lower-sorting file: see [`plan`]) → [`fsops`]
//! writes it atomically (temporary file, fsync, rename, directory fsync), so the runtime, which
//! reads the directory at any moment, sees either the old complete file or the new complete
//! file. The binary is installed the same way, and always before the configuration that names
//! it. [`watch`] re-runs the install from the daemon whenever the directory changes.

pub mod fsops;
pub mod observe;
pub mod plan;
pub mod watch;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use plan::{Desired, OUR_FILE, PlanError};

/// Where things live and what our plugin entry says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The runtime's CNI configuration directory (`/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// The runtime's CNI binary directory (`/opt/cni/bin`).
    pub bin_dir: PathBuf,
    /// The `raven-cni` binary to install; `None` installs the configuration only (the daemon's
    /// re-install, once the init container has installed the binary).
    pub binary: Option<PathBuf>,
    /// `nodeStateFile` of our plugin entry.
    pub node_state_file: PathBuf,
    /// `dataDir` of our plugin entry.
    pub data_dir: PathBuf,
}

/// What an install did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The binary was (re)written.
    pub binary_written: bool,
    /// The configuration after the install.
    pub conf: Desired,
}

/// Why an install or uninstall failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Reading the directory or a file failed.
    #[error("{0}")]
    Observe(String),
    /// No plan (bad source, foreign file first); nothing was written.
    #[error("{0}; nothing was written")]
    Plan(#[from] PlanError),
    /// Writing failed; the previous complete file is still in place.
    #[error("{0}")]
    Write(String),
}

impl Settings {
    /// Our plugin entry.
    pub fn plugin(&self) -> plan::PluginSettings {
        let mut plugin = Map::new();
        plugin.insert("type".into(), Value::from(plan::PLUGIN_TYPE));
        plugin.insert(
            "nodeStateFile".into(),
            Value::from(self.node_state_file.to_string_lossy().into_owned()),
        );
        plugin.insert(
            "dataDir".into(),
            Value::from(self.data_dir.to_string_lossy().into_owned()),
        );
        plan::PluginSettings { plugin }
    }
}

/// Installs the binary (when configured) and brings our configuration file to the plan.
/// Idempotent: nothing is written when everything is already in place. The configuration is
/// planned first, so a directory we cannot chain into (garbage, a foreign file first) fails
/// before anything is written; the binary is installed before the configuration naming it.
pub fn install(settings: &Settings) -> Result<Outcome, InstallError> {
    let desired = plan_conf(settings)?;
    let binary_written = match &settings.binary {
        Some(src) => fsops::install_binary(src, &settings.bin_dir, plan::PLUGIN_TYPE)
            .map_err(|e| InstallError::Write(e.to_string()))?,
        None => false,
    };
    apply_conf(settings, &desired)?;
    Ok(Outcome {
        binary_written,
        conf: desired,
    })
}

/// Brings our configuration file to the plan (no binary).
pub fn sync_conf(settings: &Settings) -> Result<Desired, InstallError> {
    let desired = plan_conf(settings)?;
    apply_conf(settings, &desired)?;
    Ok(desired)
}

fn plan_conf(settings: &Settings) -> Result<Desired, InstallError> {
    let files = observe::read_dir(&settings.conf_dir).map_err(InstallError::Observe)?;
    Ok(plan::plan_install(&files, &settings.plugin())?)
}

fn apply_conf(settings: &Settings, desired: &Desired) -> Result<(), InstallError> {
    let ours = settings.conf_dir.join(OUR_FILE);
    match desired {
        Desired::Write { content, .. } => fsops::write_atomic(&ours, content, 0o644)
            .map_err(|e| InstallError::Write(format!("writing {}: {e}", ours.display()))),
        Desired::Absent => remove(&ours),
        Desired::UpToDate { .. } => Ok(()),
    }
}

/// Removes our configuration file (the runtime falls back to the untouched foreign chain) and,
/// with `remove_binary`, the binary. Keeping the binary is the default because a runtime may
/// still run DEL for pods added under our chain with the configuration it cached then; a
/// missing plugin binary would make those DELs fail and the pods' teardown hang.
pub fn uninstall(settings: &Settings, remove_binary: bool) -> Result<bool, InstallError> {
    let files = observe::read_dir(&settings.conf_dir).map_err(InstallError::Observe)?;
    let mut changed = false;
    if plan::plan_uninstall(&files) {
        remove(&settings.conf_dir.join(OUR_FILE))?;
        changed = true;
    }
    if remove_binary {
        changed |= fsops::remove_file(&settings.bin_dir.join(plan::PLUGIN_TYPE))
            .map_err(|e| InstallError::Write(e.to_string()))?;
    }
    Ok(changed)
}

fn remove(path: &Path) -> Result<(), InstallError> {
    fsops::remove_file(path)
        .map(|_| ())
        .map_err(|e| InstallError::Write(format!("removing {}: {e}", path.display())))
}
