//! CHECK: our routes exist and match the current node state.

use crate::commands::load_node_state;
use crate::config::PluginConfig;
use crate::env::Env;
use crate::error::{CniError, Result, code};
use crate::netns;
use crate::record::{self, AttachmentLock};
use crate::result;
use crate::sync::PodLink;
use crate::version::SpecVersion;

/// Runs CHECK; any difference is error [`code::CHECK_FAILED`] listing what differs.
pub fn run(conf: &PluginConfig, env: &Env) -> Result<()> {
    conf.version()?
        .require_at_least(SpecVersion::V040, "CHECK")?;
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::config("CHECK needs prevResult (the cached ADD result)"))?;
    let id = env.attachment()?;
    let netns_path = env.required_netns()?;
    let pod = result::pod_addresses(prev, &id.ifname)?;
    let ns = netns::open_existing(netns_path)?;
    let _lock = AttachmentLock::acquire(&conf.data_dir, &conf.network, &id)?;
    if record::load(&record::record_path(&conf.data_dir, &conf.network, &id))?.is_none() {
        return Err(failed(format!(
            "no attachment record for {}/{}",
            id.container_id, id.ifname
        )));
    }
    let state = load_node_state(conf)?;
    let mut link = PodLink::open(&ns, &id.ifname)?
        .ok_or_else(|| failed(format!("interface {} not found in {netns_path}", id.ifname)))?;
    let (_, plan) = link.plan(state.as_ref(), &pod)?;
    if plan.is_noop() {
        return Ok(());
    }
    let mut problems: Vec<String> = plan
        .replace
        .iter()
        .map(|r| {
            format!(
                "route {} missing or not via {} with mtu {}",
                r.dst, r.gateway, r.mtu
            )
        })
        .collect();
    problems.extend(plan.delete.iter().map(|r| format!("stale route {}", r.dst)));
    Err(failed(problems.join("; ")))
}

fn failed(details: String) -> CniError {
    CniError::new(
        code::CHECK_FAILED,
        "raven-cni routes do not match the node state",
        details,
    )
}
