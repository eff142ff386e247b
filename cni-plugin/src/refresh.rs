//! Refresh: re-program recorded pods after the node state changed (called by raven-node).
//!
//! Lost-update freedom with a concurrent ADD comes from ordering, not from a global lock:
//! raven-node publishes the new state file *before* it lists records, ADD writes its record
//! *before* it reads the state file, and both sides program a pod only while holding that
//! attachment's lock and after reading the state under it. Either ADD read the new state, or the
//! refresh sees ADD's record, waits for its lock and programs the new state afterwards.

use std::path::Path;

use raven_api::nodestate::NodeState;

use crate::env::AttachmentId;
use crate::error::{CniError, Result, code};
use crate::netns::{self, Lookup};
use crate::record::{self, AttachmentLock};
use crate::result::PodAddress;
use crate::sync::PodLink;

/// What happened to one attachment during a refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// Routes were already programmed for the current generation.
    UpToDate,
    /// Routes were re-programmed; the new generation is recorded.
    Updated {
        /// Number of routes installed or replaced.
        replaced: usize,
        /// Number of stale routes removed.
        deleted: usize,
    },
    /// The record vanished (the pod was deleted meanwhile).
    Gone,
    /// The pod's namespace or interface no longer exists; the record stays for DEL/GC.
    NamespaceGone,
}

/// Summary of a refresh over every recorded attachment.
#[derive(Debug, Default)]
pub struct RefreshSummary {
    /// Per attachment: (network, id, outcome).
    pub outcomes: Vec<(String, AttachmentId, RefreshOutcome)>,
    /// Failures, one per attachment that could not be refreshed.
    pub errors: Vec<(String, AttachmentId, CniError)>,
}

/// Refreshes every attachment recorded under `data_dir` (all networks).
pub fn refresh_all(data_dir: &Path, state_file: &Path) -> Result<RefreshSummary> {
    let mut summary = RefreshSummary::default();
    for network in networks(data_dir)? {
        let (records, errors) = record::list(data_dir, &network)?;
        for e in errors {
            let id = AttachmentId {
                container_id: "?".into(),
                ifname: "?".into(),
            };
            summary.errors.push((network.clone(), id, e));
        }
        for rec in records {
            let id = AttachmentId {
                container_id: rec.container_id,
                ifname: rec.ifname,
            };
            match refresh_attachment(data_dir, &network, &id, state_file) {
                Ok(outcome) => summary.outcomes.push((network.clone(), id, outcome)),
                Err(e) => summary.errors.push((network.clone(), id, e)),
            }
        }
    }
    Ok(summary)
}

/// Brings one attachment to the node state currently in `state_file`.
pub fn refresh_attachment(
    data_dir: &Path,
    network: &str,
    id: &AttachmentId,
    state_file: &Path,
) -> Result<RefreshOutcome> {
    let path = record::record_path(data_dir, network, id);
    if !path.exists() {
        return Ok(RefreshOutcome::Gone);
    }
    let lock = AttachmentLock::acquire(data_dir, network, id)?;
    let Some(mut rec) = record::load(&path)? else {
        // DEL removed it while we waited; drop the lock file we re-created by locking.
        lock.remove_file()?;
        return Ok(RefreshOutcome::Gone);
    };
    let state = NodeState::load(state_file).map_err(|e| {
        CniError::new(
            code::DECODE,
            format!("node state {}", state_file.display()),
            e.to_string(),
        )
    })?;
    let generation = state.as_ref().map(|s| s.generation);
    if rec.generation.is_some() && rec.generation == generation {
        return Ok(RefreshOutcome::UpToDate);
    }
    let Lookup::Found(ns) = netns::open(&rec.netns)? else {
        return Ok(RefreshOutcome::NamespaceGone);
    };
    let Some(mut link) = PodLink::open(&ns, &rec.ifname)? else {
        return Ok(RefreshOutcome::NamespaceGone);
    };
    let pod = pod_addresses(&rec);
    let report = link.sync(state.as_ref(), &pod)?;
    rec.generation = generation;
    rec.mtu = state.as_ref().map(|s| s.mtu);
    rec.routes = report.installed.iter().map(|r| r.dst).collect();
    record::store(data_dir, &rec)?;
    Ok(RefreshOutcome::Updated {
        replaced: report.plan.replace.len(),
        deleted: report.plan.delete.len(),
    })
}

/// Rebuilds the pod addresses (with their gateways) from a record.
fn pod_addresses(rec: &record::AttachmentRecord) -> Vec<PodAddress> {
    rec.pod_ips
        .iter()
        .map(|address| PodAddress {
            address: *address,
            gateway: rec
                .gateways
                .iter()
                .copied()
                .find(|g| g.is_ipv4() == address.is_ipv4()),
        })
        .collect()
}

fn networks(data_dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(data_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CniError::io(data_dir.display(), &e)),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}
