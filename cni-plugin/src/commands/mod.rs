//! One module per CNI command; each takes the parsed invocation and returns what to print.

pub mod add;
pub mod check;
pub mod del;
pub mod gc;
pub mod status;

use raven_api::nodestate::NodeState;

use crate::config::PluginConfig;
use crate::error::{CniError, Result, code};

/// Loads the node state named by the config; a corrupt file is an error, a missing one is `None`.
pub fn load_node_state(conf: &PluginConfig) -> Result<Option<NodeState>> {
    NodeState::load(&conf.node_state_file).map_err(|e| {
        CniError::new(
            code::DECODE,
            format!("unusable node state {}", conf.node_state_file.display()),
            format!("{e}; raven-node publishes this file, check its logs"),
        )
    })
}

/// Writes one diagnostic line to stderr (stdout carries the result).
pub fn log(msg: impl std::fmt::Display) {
    eprintln!("raven-cni: {msg}");
}
