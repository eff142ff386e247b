//! ADD: record the attachment, install the pod's routes toward other domains, pass prevResult on.

use serde_json::Value;

use crate::commands::{load_node_state, log};
use crate::config::PluginConfig;
use crate::env::Env;
use crate::error::{CniError, Result, code};
use crate::netns;
use crate::record::{self, AttachmentLock, AttachmentRecord};
use crate::result::{self, PodAddress};
use crate::sync::PodLink;

/// Runs ADD and returns the result JSON to print.
///
/// Order matters for the refresh race: the record is written (under the attachment's lock)
/// before the node state is read, so a raven-node refresh that publishes a newer state either
/// was seen here or finds this record afterwards and re-programs the pod.
pub fn run(conf: &PluginConfig, env: &Env) -> Result<Value> {
    let version = conf.version()?;
    let prev = conf.prev_result.clone().ok_or_else(|| {
        CniError::config("raven-cni must be called as a chained plugin: prevResult is missing")
    })?;
    let id = env.attachment()?;
    let netns_path = env.required_netns()?.to_string();
    let args = env.cni_args()?;
    let pod = result::pod_addresses(&prev, &id.ifname)?;
    let ns = netns::open_existing(&netns_path)?;

    let lock = AttachmentLock::acquire(&conf.data_dir, &conf.network, &id)?;
    let mut rec = AttachmentRecord {
        network: conf.network.clone(),
        container_id: id.container_id.clone(),
        ifname: id.ifname.clone(),
        netns: netns_path,
        pod_ips: pod.iter().map(|a| a.address).collect(),
        gateways: gateways(&pod),
        pod_name: args.get("K8S_POD_NAME").cloned(),
        pod_namespace: args.get("K8S_POD_NAMESPACE").cloned(),
        pod_uid: args.get("K8S_POD_UID").cloned(),
        generation: None,
        routes: Vec::new(),
        mtu: None,
    };
    record::store(&conf.data_dir, &rec)?;

    let state = load_node_state(conf)?;
    let mut link = PodLink::open(&ns, &id.ifname)?.ok_or_else(|| {
        CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("interface {} not found in {}", id.ifname, rec.netns),
            "",
        )
    })?;
    let report = link.sync(state.as_ref(), &pod)?;
    for skipped in &report.plan.skipped {
        log(format_args!(
            "{}/{}: route not installed: {skipped}",
            id.container_id, id.ifname
        ));
    }
    rec.generation = state.as_ref().map(|s| s.generation);
    rec.mtu = state.as_ref().map(|s| s.mtu);
    rec.routes = report.installed.iter().map(|r| r.dst).collect();
    record::store(&conf.data_dir, &rec)?;
    drop(lock);
    Ok(result::convert_result(prev, version))
}

/// One gateway per family, in address order.
fn gateways(pod: &[PodAddress]) -> Vec<std::net::IpAddr> {
    let mut out: Vec<_> = pod.iter().filter_map(|a| a.gateway).collect();
    out.sort();
    out.dedup();
    out
}
