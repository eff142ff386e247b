//! `install-cni` and `uninstall-cni`: their flags and handlers (chaining raven-cni after the
//! node's CNI configuration, and undoing it).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use raven_api::nodestate::{DEFAULT_CNI_DATA_DIR, DEFAULT_NODE_STATE_FILE};
use raven_node::cni_install::{self, Desired};

/// Where the runtime's CNI files live and what our plugin entry says.
#[derive(Debug, Clone, Args)]
pub(crate) struct CniArgs {
    /// The runtime's CNI configuration directory.
    #[arg(long, env = "RAVEN_CNI_CONF_DIR", default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// The runtime's CNI binary directory.
    #[arg(long, env = "RAVEN_CNI_BIN_DIR", default_value = "/opt/cni/bin")]
    cni_bin_dir: PathBuf,
    /// `nodeStateFile` written into our plugin entry.
    #[arg(long = "cni-node-state-file", env = "RAVEN_NODE_STATE_FILE", default_value = DEFAULT_NODE_STATE_FILE)]
    node_state_file: PathBuf,
    /// `dataDir` written into our plugin entry.
    #[arg(long = "cni-data-dir", env = "RAVEN_CNI_DATA_DIR", default_value = DEFAULT_CNI_DATA_DIR)]
    data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct InstallArgs {
    #[command(flatten)]
    cni: CniArgs,
    /// The raven-cni binary to install (default: `raven-cni` beside this executable).
    #[arg(long, env = "RAVEN_CNI_BINARY")]
    cni_binary: Option<PathBuf>,
    /// Wait up to this many seconds for a CNI configuration to chain after (Flannel may not
    /// have written its file yet when the init container runs); 0: fail at once.
    #[arg(long, default_value_t = 0)]
    wait_seconds: u64,
}

impl CniArgs {
    fn settings(&self, binary: Option<PathBuf>) -> cni_install::Settings {
        cni_install::Settings {
            conf_dir: self.cni_conf_dir.clone(),
            bin_dir: self.cni_bin_dir.clone(),
            binary,
            node_state_file: self.node_state_file.clone(),
            data_dir: self.data_dir.clone(),
        }
    }
}

/// `install-cni`: binary, then configuration; waits for a source when asked to.
pub(crate) fn install(args: &InstallArgs) -> ExitCode {
    let binary = args.cni_binary.clone().or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("raven-cni")))
    });
    let settings = args.cni.settings(binary);
    let deadline = std::time::Instant::now() + Duration::from_secs(args.wait_seconds);
    loop {
        match cni_install::install(&settings) {
            Ok(outcome) => match outcome.conf {
                Desired::Write { source, .. } | Desired::UpToDate { source } => {
                    println!(
                        "raven-cni chained after {source} in {} (binary {})",
                        settings.conf_dir.join(cni_install::OUR_FILE).display(),
                        if outcome.binary_written {
                            "installed"
                        } else {
                            "up to date"
                        }
                    );
                    return ExitCode::SUCCESS;
                }
                Desired::Absent if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_secs(1));
                }
                Desired::Absent => {
                    eprintln!(
                        "raven-node: no CNI configuration in {} to chain raven-cni after \
                         (is Flannel installed?)",
                        settings.conf_dir.display()
                    );
                    return ExitCode::FAILURE;
                }
            },
            Err(e) => {
                eprintln!("raven-node: install-cni: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

/// `uninstall-cni`: our configuration file, and the binary when asked to.
pub(crate) fn uninstall(cni: &CniArgs, remove_binary: bool) -> ExitCode {
    match cni_install::uninstall(&cni.settings(None), remove_binary) {
        Ok(changed) => {
            println!(
                "{}",
                if changed {
                    "raven-cni removed from the CNI configuration"
                } else {
                    "raven-cni was not installed"
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("raven-node: uninstall-cni: {e}");
            ExitCode::FAILURE
        }
    }
}
