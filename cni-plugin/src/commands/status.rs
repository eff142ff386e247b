//! STATUS (1.1.0): can we service ADD?
//!
//! By default always yes: ADD works without raven-node (pods just get no cross-domain routes
//! until it publishes), and containerd 2.x marks the node's network NotReady when STATUS fails,
//! so coupling them must be an explicit choice (`requireNodeDaemon`).

use std::time::{SystemTime, UNIX_EPOCH};

use raven_api::nodestate::NodeState;

use crate::config::PluginConfig;
use crate::error::{CniError, Result, code};
use crate::version::SpecVersion;

/// Runs STATUS.
pub fn run(conf: &PluginConfig) -> Result<()> {
    conf.version()?
        .require_at_least(SpecVersion::V110, "STATUS")?;
    if !conf.require_node_daemon {
        return Ok(());
    }
    let path = conf.node_state_file.display();
    let unavailable =
        |why: String| CniError::new(code::NOT_AVAILABLE, "raven-node is not ready", why);
    let state = match NodeState::load(&conf.node_state_file) {
        Ok(Some(state)) => state,
        Ok(None) => return Err(unavailable(format!("node state {path} does not exist"))),
        Err(e) => return Err(unavailable(format!("node state {path}: {e}"))),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let age = now.saturating_sub(state.updated_at);
    if age > conf.node_state_max_age_secs {
        return Err(unavailable(format!(
            "node state {path} is stale: updated {age}s ago, limit {}s",
            conf.node_state_max_age_secs
        )));
    }
    Ok(())
}
