//! GC (1.1.0): forget attachments the runtime no longer knows.
//!
//! Only records are removed: a stale record's netns path may by now belong to another pod, so GC
//! never touches routes (a pod that is gone took its routes with it).

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

use crate::commands::log;
use crate::config::PluginConfig;
use crate::env::AttachmentId;
use crate::error::{CniError, Result, code};
use crate::record::{self, AttachmentLock};
use crate::version::SpecVersion;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValidAttachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

/// Runs GC; keeps going past individual failures and reports them together.
pub fn run(conf: &PluginConfig) -> Result<()> {
    conf.version()?.require_at_least(SpecVersion::V110, "GC")?;
    let valid = valid_attachments(conf)?;
    let (records, mut errors) = record::list(&conf.data_dir, &conf.network)?;
    for rec in records {
        let id = AttachmentId {
            container_id: rec.container_id,
            ifname: rec.ifname,
        };
        if valid.contains(&id) {
            continue;
        }
        if let Err(e) = forget(conf, &id) {
            errors.push(e);
        } else {
            log(format_args!("gc: forgot {}/{}", id.container_id, id.ifname));
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    let details: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Err(CniError::new(
        code::IO,
        "gc could not remove every stale attachment",
        details.join("; "),
    ))
}

fn forget(conf: &PluginConfig, id: &AttachmentId) -> Result<()> {
    let lock = AttachmentLock::acquire(&conf.data_dir, &conf.network, id)?;
    record::remove(&record::record_path(&conf.data_dir, &conf.network, id))?;
    lock.remove_file()
}

/// `cni.dev/valid-attachments`, or the older `cni.dev/attachments`; absent or null means none.
fn valid_attachments(conf: &PluginConfig) -> Result<BTreeSet<AttachmentId>> {
    let raw = conf
        .extra
        .get("cni.dev/valid-attachments")
        .or_else(|| conf.extra.get("cni.dev/attachments"))
        .cloned()
        .unwrap_or(Value::Null);
    if raw.is_null() {
        return Ok(BTreeSet::new());
    }
    let list: Vec<ValidAttachment> = serde_json::from_value(raw).map_err(|e| {
        CniError::new(
            code::DECODE,
            "invalid cni.dev/valid-attachments",
            e.to_string(),
        )
    })?;
    Ok(list
        .into_iter()
        .map(|a| AttachmentId {
            container_id: a.container_id,
            ifname: a.ifname,
        })
        .collect())
}
