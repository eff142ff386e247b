//! DEL: remove our routes and the record; best effort, always idempotent.
//!
//! Works without prevResult (libcni sends none for 0.3.x lists or after a failed ADD), without a
//! record, with `CNI_NETNS` empty, deleted or a stale mount point. Never creates anything at the
//! netns path.

use crate::commands::log;
use crate::config::PluginConfig;
use crate::env::Env;
use crate::error::Result;
use crate::netns::{self, Lookup};
use crate::record::{self, AttachmentLock};
use crate::sync::PodLink;

/// Runs DEL. Only a broken invocation (bad config or env, unusable data dir) is an error.
pub fn run(conf: &PluginConfig, env: &Env) -> Result<()> {
    conf.version()?;
    let id = env.attachment()?;
    let lock = AttachmentLock::acquire(&conf.data_dir, &conf.network, &id)?;
    let path = record::record_path(&conf.data_dir, &conf.network, &id);
    let rec = record::load(&path).unwrap_or_else(|e| {
        log(format_args!("ignoring {e}"));
        None
    });
    let netns_path = env
        .netns
        .clone()
        .or_else(|| rec.as_ref().map(|r| r.netns.clone()));
    if let Some(netns_path) = netns_path
        && let Err(e) = remove_routes(&netns_path, &id.ifname)
    {
        log(format_args!(
            "{}/{}: routes not removed from {netns_path}: {e}",
            id.container_id, id.ifname
        ));
    }
    record::remove(&path)?;
    lock.remove_file()?;
    Ok(())
}

fn remove_routes(netns_path: &str, ifname: &str) -> Result<()> {
    let Lookup::Found(ns) = netns::open(netns_path)? else {
        return Ok(());
    };
    if let Some(mut link) = PodLink::open(&ns, ifname)? {
        link.remove_all()?;
    }
    Ok(())
}
