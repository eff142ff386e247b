//! One reconcile pass: snapshot the caches, run every planner, apply the writes.
//!
//! Writes are minimal and owned: Gateways we manage (create, spec merge patch, delete), the
//! `raven.openyurt.io/gateway` label of nodes, Gateway status through the status subresource
//! (merge patch, only when [`status_changed`]), our Services/Endpoints, the DNS ConfigMap key,
//! and Events on real transitions. Each write group runs with bounded concurrency; a failed
//! write is logged and retried by the next pass (level-triggered), it never aborts the pass.
//!
//! Order (cold start at 10k nodes is bound by the API server's write rate, so what agents wait
//! for goes first): Gateway creates, spec updates and problem annotations; then status
//! writes, including the first status of the Gateways just created; Services/Endpoints; the DNS ConfigMap; node labels
//! (planned membership is what the election reads, so it does not wait for them); Gateway
//! deletes; Events (one per Gateway and reason).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event as CoreEvent, EventSource, Node, ObjectReference, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use raven_api::gateway::v1beta1::{Gateway, GatewayStatus};
use raven_api::gateway::validation::validate;
use raven_api::wellknown::{
    EDGE_TUNNEL_NODES_CONFIG, LABEL_GATEWAY, PROXY_INTERNAL_SERVICE, RAVEN_AGENT_CONFIG,
    RAVEN_GLOBAL_CONFIG, WORKING_NAMESPACE,
};
use tracing::{debug, info, warn};

use crate::dns;
use crate::domains::{self, DomainInput, GatewayAction};
use crate::election::{self, ElectionInput, Features, status_changed};
use crate::model::{LeaseView, NODE_LEASE_PREFIX, NodeView, PoolInfo};
use crate::services::{self, AgentPorts, ServiceAction, ServiceInput};

use super::Settings;
use super::observe::Stores;
use super::report::{self, ANNOTATION_PROBLEMS, PROBLEM_SEPARATOR};

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "raven-controller";
/// Namespace of Events about Gateways (cluster-scoped).
pub const EVENT_NAMESPACE: &str = "default";
/// Event reason for a Gateway whose spec has defects.
pub const EVENT_INVALID_GATEWAY: &str = "InvalidGateway";

/// State kept across passes (only for de-duplicating reports).
pub struct Context {
    /// API client.
    pub client: Client,
    /// Configuration.
    pub settings: Settings,
    /// Successful writes since start (for tests and benchmarks).
    pub writes: AtomicU64,
    /// Last reported problems per object, so a problem is reported once, not every pass.
    /// Values are the problems joined by [`PROBLEM_SEPARATOR`] (the Event message).
    reported: Mutex<BTreeMap<String, String>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .field("writes", &self.writes)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A new context.
    pub fn new(client: Client, settings: Settings) -> Context {
        Context {
            client,
            settings,
            writes: AtomicU64::new(0),
            reported: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether `problems` for `key` differ from what was last reported (and remembers them).
    fn newly_reported(&self, key: &str, problems: &[String]) -> bool {
        let Ok(mut map) = self.reported.lock() else {
            return true;
        };
        let joined = problems.join(PROBLEM_SEPARATOR);
        if map.get(key).map(String::as_str).unwrap_or_default() == joined {
            return false;
        }
        if problems.is_empty() {
            map.remove(key);
        } else {
            map.insert(key.to_owned(), joined);
        }
        true
    }

    /// Seeds the report memory from the Events a previous process left, so a restart does not
    /// report the same bad Gateway again (each Event is a write).
    pub async fn seed_reports(&self) {
        let api: Api<CoreEvent> = Api::namespaced(self.client.clone(), EVENT_NAMESPACE);
        let list = match api.list(&kube::api::ListParams::default()).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "cannot list previous events; bad objects may be reported again");
                return;
            }
        };
        let mut latest: BTreeMap<String, (Option<Timestamp>, String)> = BTreeMap::new();
        for ev in list.items {
            let ours =
                ev.source.as_ref().and_then(|s| s.component.as_deref()) == Some(FIELD_MANAGER);
            if !ours
                || ev.reason.as_deref() != Some(EVENT_INVALID_GATEWAY)
                || ev.involved_object.kind.as_deref() != Some("Gateway")
            {
                continue;
            }
            let Some(name) = ev.involved_object.name.clone() else {
                continue;
            };
            let at = ev.last_timestamp.as_ref().map(|t| t.0);
            let msg = ev.message.clone().unwrap_or_default();
            let e = latest
                .entry(format!("gateway/{name}"))
                .or_insert((at, msg.clone()));
            if at > e.0 {
                *e = (at, msg);
            }
        }
        if let Ok(mut map) = self.reported.lock() {
            for (k, (_, msg)) in latest {
                map.insert(k, msg);
            }
        }
    }
}

/// What the loop needs from a pass.
#[derive(Debug, Default)]
pub struct PassOutcome {
    /// Writes attempted in this pass.
    pub writes: u64,
    /// Failed writes.
    pub failures: u64,
    /// Nodes holding a seat whose health Lease will expire, with the instant (the loop wakes
    /// then, so failover does not wait for the periodic resync).
    pub seat_leases: BTreeMap<String, Timestamp>,
}

type Write<'a> = BoxFuture<'a, Result<(), String>>;

/// Runs `writes` with bounded concurrency; counts successes and failures. The futures are
/// created lazily as slots free up, so 10k label patches never sit in memory at once.
async fn run_writes<'a>(
    ctx: &Context,
    what: &str,
    writes: impl IntoIterator<Item = Write<'a>>,
    out: &mut PassOutcome,
) {
    let started = std::time::Instant::now();
    let results: Vec<Result<(), String>> = futures::stream::iter(writes)
        .buffer_unordered(ctx.settings.concurrency.max(1))
        .collect()
        .await;
    if results.is_empty() {
        return;
    }
    let n = results.len();
    let mut failures = 0u64;
    for r in results {
        out.writes += 1;
        match r {
            Ok(()) => {
                ctx.writes.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                failures += 1;
                warn!(group = what, error = %e, "write failed (next pass retries)");
            }
        }
    }
    out.failures += failures;
    info!(
        group = what,
        count = n,
        failures,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "writes applied"
    );
}

fn err_str(e: kube::Error) -> String {
    e.to_string()
}

/// Deletes, treating "already gone" as success.
fn ok_if_gone<T>(r: kube::Result<T>) -> Result<(), String> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(err_str(e)),
    }
}

fn gateway_ref(gw: &Gateway) -> ObjectReference {
    let mut r = gw.object_ref(&());
    r.namespace = None;
    r
}

/// Publishes one core/v1 Event about a Gateway in `default` (where Events about
/// cluster-scoped objects go; the 1.20 events.k8s.io validation rejects those). A failure is
/// logged and counted like any write; the Event is not retried (Events are best effort, and a
/// retry could duplicate it).
async fn publish(
    ctx: &Context,
    reference: &ObjectReference,
    warning: bool,
    reason: &str,
    note: String,
) -> Result<(), String> {
    let now = Timestamp::now();
    let name = format!(
        "{}.{:x}",
        reference.name.as_deref().unwrap_or("raven-controller"),
        now.as_nanosecond()
    );
    let ev = CoreEvent {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(EVENT_NAMESPACE.to_owned()),
            ..Default::default()
        },
        involved_object: reference.clone(),
        reason: Some(reason.to_owned()),
        message: Some(note),
        type_: Some(if warning { "Warning" } else { "Normal" }.to_owned()),
        source: Some(EventSource {
            component: Some(FIELD_MANAGER.to_owned()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        reporting_component: Some(FIELD_MANAGER.to_owned()),
        reporting_instance: Some(ctx.settings.leader.identity.clone()),
        ..Default::default()
    };
    let api: Api<CoreEvent> = Api::namespaced(ctx.client.clone(), EVENT_NAMESPACE);
    api.create(&PostParams::default(), &ev)
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot publish {reason} event: {e}"))
}

/// Snapshot of the caches, reduced for the planners.
struct Snapshot {
    nodes: std::sync::Arc<Vec<NodeView>>,
    gateways: Vec<Gateway>,
    leases: BTreeMap<String, LeaseView>,
    features: Features,
    ports: AgentPorts,
    dns_cm: Option<ConfigMap>,
    services: Vec<Service>,
    endpoints: Vec<Endpoints>,
    pools: Option<BTreeMap<String, PoolInfo>>,
}

fn snapshot(stores: &Stores) -> Snapshot {
    let nodes = stores.nodes.views();
    let gateways: Vec<Gateway> = stores
        .gateways
        .state()
        .iter()
        .map(|g| (**g).clone())
        .collect();
    let leases = stores
        .leases
        .state()
        .iter()
        .filter_map(|l| {
            let name = l.metadata.name.as_deref()?;
            let node = name.strip_prefix(NODE_LEASE_PREFIX)?;
            Some((node.to_owned(), LeaseView::from_lease(l)))
        })
        .collect();
    let cms = stores.configmaps.state();
    let cm = |name: &str| {
        cms.iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .map(|c| (**c).clone())
    };
    let features = Features::from_raven_cfg(cm(RAVEN_GLOBAL_CONFIG).and_then(|c| c.data).as_ref());
    let ports = AgentPorts::from_agent_config(cm(RAVEN_AGENT_CONFIG).and_then(|c| c.data).as_ref());
    let pools = stores.pools.lock().ok().and_then(|slot| {
        slot.as_ref().map(|s| {
            s.state()
                .iter()
                .filter_map(|p| {
                    let v = serde_json::to_value(&**p).ok()?;
                    PoolInfo::from_nodepool_json(&v)
                })
                .collect()
        })
    });
    Snapshot {
        nodes,
        gateways,
        leases,
        features,
        ports,
        dns_cm: cm(EDGE_TUNNEL_NODES_CONFIG),
        services: stores
            .services
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect(),
        endpoints: stores
            .endpoints
            .state()
            .iter()
            .map(|e| (**e).clone())
            .collect(),
        pools,
    }
}

/// One full reconcile pass.
pub async fn run_pass(ctx: &Context, stores: &Stores) -> PassOutcome {
    let mut out = PassOutcome::default();
    let snap = snapshot(stores);
    let client = &ctx.client;
    let gw_api: Api<Gateway> = Api::all(client.clone());
    let node_api: Api<Node> = Api::all(client.clone());
    let mp = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    };

    // Domains: managed Gateways and node labels.
    let mut dplan = domains::plan(&DomainInput {
        nodes: &snap.nodes,
        pools: snap.pools.as_ref(),
        existing: &snap.gateways,
        config: &ctx.settings.domains,
    });
    // The per-domain summary is for tests and debugging; at 10k nodes it is megabytes.
    drop(std::mem::take(&mut dplan.desired));
    let problems: Vec<String> = dplan.problems.iter().map(ToString::to_string).collect();
    if ctx.newly_reported("domains", &problems) {
        for p in &problems {
            warn!(problem = %p, "domain planning");
        }
    }
    // Membership as it will be once the label changes below are applied: elections use the
    // plan, not the labels on the wire, so Gateways are elected before (and independently of)
    // the 10k label writes of a cold start.
    let mut label_of: BTreeMap<&str, Option<&str>> = snap
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.label(LABEL_GATEWAY)))
        .collect();
    for c in &dplan.label_changes {
        label_of.insert(c.node.as_str(), c.to.as_deref());
    }
    // By reference: a full copy of 10k node views is megabytes; each election copies only its
    // own members, for as long as it runs.
    let mut members: BTreeMap<&str, Vec<&NodeView>> = BTreeMap::new();
    for n in snap.nodes.iter() {
        if let Some(Some(g)) = label_of.get(n.name.as_str()) {
            members.entry(g).or_default().push(n);
        }
    }
    let now = Timestamp::now();
    let elect = |gw: &Gateway| {
        let ms: Vec<NodeView> = members
            .get(gw.name())
            .map(|v| v.iter().map(|n| (*n).clone()).collect())
            .unwrap_or_default();
        election::elect(&ElectionInput {
            gateway: gw,
            members: &ms,
            leases: &snap.leases,
            features: snap.features,
            lease_policy: ctx.settings.lease_policy,
            now,
        })
    };

    // 1. Gateways and their status, first: "every Gateway elected" is what agents wait for.
    // A new Gateway is elected in the pass that creates it: its first status (the status
    // subresource ignores status on create) is written right after the creates.
    // Writes are kept as data and turned into futures lazily (see [`GatewayWrite`]).
    let mut gateway_writes: Vec<GatewayWrite> = Vec::new();
    let mut status_writes: Vec<GatewayWrite> = Vec::new();
    let mut deletes = Vec::new();
    let mut deleted: BTreeSet<String> = BTreeSet::new();
    // Exposed Gateways with the status this pass gives them: the only ones the Service
    // planner reads (public Services for LoadBalancer, the internal Service for any exposed
    // type), so the 10k-node cold start does not copy the other 999 Gateways.
    let mut gateways_after: Vec<Gateway> = Vec::new();
    let mut events: Vec<(ObjectReference, bool, String, String)> = Vec::new();
    // New Gateways whose create or status write did not happen: their events are dropped.
    let not_created: std::sync::Arc<Mutex<BTreeSet<String>>> = Default::default();
    for a in std::mem::take(&mut dplan.gateway_actions) {
        match a {
            GatewayAction::Create(gw) => {
                let e = elect(&gw);
                note_seats(&e, &snap.leases, &mut out);
                let status = status_changed(None, &e.status).then(|| status_json(&e.status));
                info!(gateway = gw.name(), "creating gateway");
                // Transition events of a new Gateway are published once its status is written
                // (next pass would see no transition: the status is then stored).
                let r = gateway_ref(&gw);
                for t in election::transition_events(&e.transitions) {
                    events.push((r.clone(), t.warning, t.reason.to_owned(), t.message));
                }
                if gw.spec.expose_type.is_exposed() {
                    let mut after = (*gw).clone();
                    after.status = Some(e.status);
                    gateways_after.push(after);
                }
                if let Some(status) = status {
                    status_writes.push(GatewayWrite::FirstStatus {
                        name: gw.name().to_owned(),
                        patch: serde_json::json!({ "status": status }),
                    });
                }
                gateway_writes.push(GatewayWrite::Create { gateway: gw });
            }
            GatewayAction::UpdateSpec { name, spec } => {
                let rv = snap
                    .gateways
                    .iter()
                    .find(|g| g.name() == name)
                    .and_then(|g| g.metadata.resource_version.clone());
                let patch = serde_json::json!({
                    "metadata": {"resourceVersion": rv},
                    "spec": spec,
                });
                info!(gateway = %name, "updating gateway spec");
                gateway_writes.push(GatewayWrite::Patch {
                    name: name.clone(),
                    patch,
                });
            }
            GatewayAction::SetOwners { name, owners } => {
                let rv = snap
                    .gateways
                    .iter()
                    .find(|g| g.name() == name)
                    .and_then(|g| g.metadata.resource_version.clone());
                let patch = serde_json::json!({
                    "metadata": {"resourceVersion": rv, "ownerReferences": owners},
                });
                info!(gateway = %name, "setting gateway owner (NodePool)");
                gateway_writes.push(GatewayWrite::Patch {
                    name: name.clone(),
                    patch,
                });
            }
            GatewayAction::Delete { name } => {
                deleted.insert(name.clone());
                let (api, name) = (gw_api.clone(), name.clone());
                info!(gateway = %name, "deleting gateway (domain gone)");
                deletes.push(Box::pin(async move {
                    ok_if_gone(api.delete(&name, &DeleteParams::default()).await)
                }) as Write);
            }
        }
    }
    for gw in &snap.gateways {
        if deleted.contains(gw.name()) {
            continue;
        }
        let e = elect(gw);
        note_seats(&e, &snap.leases, &mut out);
        let mut problems = e.problems.clone();
        if let Err(v) = validate(gw) {
            problems.push(v.to_string());
        }
        let stored = gw
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_PROBLEMS))
            .map(String::as_str);
        if let Some(patch) = report::problems_patch(stored, &problems) {
            gateway_writes.push(GatewayWrite::Patch {
                name: gw.name().to_owned(),
                patch,
            });
        }
        if ctx.newly_reported(&format!("gateway/{}", gw.name()), &problems) && !problems.is_empty()
        {
            warn!(gateway = gw.name(), problems = ?problems, "gateway has defects");
            events.push((
                gateway_ref(gw),
                true,
                EVENT_INVALID_GATEWAY.to_owned(),
                problems.join(PROBLEM_SEPARATOR),
            ));
        }
        if status_changed(gw.status.as_ref(), &e.status) {
            for t in &e.transitions {
                info!(gateway = gw.name(), transition = %t.message(), "election");
            }
            for t in election::transition_events(&e.transitions) {
                events.push((gateway_ref(gw), t.warning, t.reason.to_owned(), t.message));
            }
            status_writes.push(GatewayWrite::Status {
                name: gw.name().to_owned(),
                patch: serde_json::json!({"status": status_json(&e.status)}),
            });
        }
        if gw.spec.expose_type.is_exposed() {
            let mut after = gw.clone();
            after.status = Some(e.status);
            gateways_after.push(after);
        }
    }
    // Objects first, then status: a status write needs its Gateway to exist. (Chaining each
    // create with its status write measured 66 writes/s against 180–220/s for separate bursts
    // of creates and of status patches under the same load; see BENCHMARKS.md.)
    let failed = not_created.clone();
    let gateway_write = |w: GatewayWrite| {
        let (api, mp, failed) = (gw_api.clone(), mp.clone(), failed.clone());
        Box::pin(async move {
            let (name, r) = match w {
                GatewayWrite::Create { gateway } => {
                    let r = match api.create(&PostParams::default(), &*gateway).await {
                        Ok(_) => Ok(()),
                        // Our cache was behind: the next pass elects it from what is stored.
                        Err(kube::Error::Api(s)) if s.code == 409 => Err(None),
                        Err(e) => Err(Some(err_str(e))),
                    };
                    (Some(gateway.name().to_owned()), r)
                }
                GatewayWrite::FirstStatus { name, patch } => {
                    let r = api.patch_status(&name, &mp, &Patch::Merge(&patch)).await;
                    (Some(name), r.map(|_| ()).map_err(|e| Some(err_str(e))))
                }
                GatewayWrite::Patch { name, patch } => {
                    let r = api.patch(&name, &mp, &Patch::Merge(&patch)).await;
                    (None, r.map(|_| ()).map_err(|e| Some(err_str(e))))
                }
                GatewayWrite::Status { name, patch } => {
                    let r = api.patch_status(&name, &mp, &Patch::Merge(&patch)).await;
                    (None, r.map(|_| ()).map_err(|e| Some(err_str(e))))
                }
            };
            if let (Some(n), Err(_)) = (name, &r)
                && let Ok(mut f) = failed.lock()
            {
                f.insert(n);
            }
            match r {
                Ok(()) | Err(None) => Ok(()),
                Err(Some(e)) => Err(e),
            }
        }) as Write
    };
    run_writes(
        ctx,
        "gateways",
        gateway_writes.into_iter().map(gateway_write),
        &mut out,
    )
    .await;
    let created_or_old = |w: &GatewayWrite| match w {
        GatewayWrite::FirstStatus { name, .. } => not_created
            .lock()
            .map(|f| !f.contains(name))
            .unwrap_or(true),
        _ => true,
    };
    let status_writes: Vec<GatewayWrite> =
        status_writes.into_iter().filter(created_or_old).collect();
    run_writes(
        ctx,
        "gateway status",
        status_writes.into_iter().map(gateway_write),
        &mut out,
    )
    .await;
    if let Ok(failed) = not_created.lock()
        && !failed.is_empty()
    {
        events.retain(|(r, ..)| !r.name.as_ref().is_some_and(|n| failed.contains(n)));
    }

    // 2. Services and Endpoints.
    let node_ips: BTreeMap<String, std::net::IpAddr> = snap
        .nodes
        .iter()
        .filter_map(|n| n.private_ip.map(|ip| (n.name.clone(), ip)))
        .collect();
    let splan = services::plan(&ServiceInput {
        gateways: &gateways_after,
        features: snap.features,
        ports: snap.ports,
        node_ips: &node_ips,
        services: &snap.services,
        endpoints: &snap.endpoints,
    });
    if ctx.newly_reported("services", &splan.problems) {
        for p in &splan.problems {
            warn!(problem = %p, "service planning");
        }
    }
    let svc_api: Api<Service> = Api::namespaced(client.clone(), WORKING_NAMESPACE);
    let eps_api: Api<Endpoints> = Api::namespaced(client.clone(), WORKING_NAMESPACE);
    let (mut svc_writes, mut eps_writes): (Vec<Write>, Vec<Write>) = (Vec::new(), Vec::new());
    for a in splan.actions {
        let (sa, ea, mp) = (svc_api.clone(), eps_api.clone(), mp.clone());
        match a {
            ServiceAction::CreateService(s) => svc_writes.push(Box::pin(async move {
                sa.create(&PostParams::default(), &s)
                    .await
                    .map(|_| ())
                    .map_err(err_str)
            })),
            ServiceAction::PatchService { name, patch } => svc_writes.push(Box::pin(async move {
                sa.patch(&name, &mp, &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
                    .map_err(err_str)
            })),
            ServiceAction::DeleteService { name } => svc_writes.push(Box::pin(async move {
                ok_if_gone(sa.delete(&name, &DeleteParams::default()).await)
            })),
            ServiceAction::CreateEndpoints(e) => eps_writes.push(Box::pin(async move {
                ea.create(&PostParams::default(), &e)
                    .await
                    .map(|_| ())
                    .map_err(err_str)
            })),
            ServiceAction::PatchEndpoints { name, subsets } => {
                let patch = serde_json::json!({"subsets": subsets});
                eps_writes.push(Box::pin(async move {
                    ea.patch(&name, &mp, &Patch::Merge(&patch))
                        .await
                        .map(|_| ())
                        .map_err(err_str)
                }))
            }
            ServiceAction::DeleteEndpoints { name } => eps_writes.push(Box::pin(async move {
                ok_if_gone(ea.delete(&name, &DeleteParams::default()).await)
            })),
        }
    }
    run_writes(ctx, "services", svc_writes, &mut out).await;
    run_writes(ctx, "endpoints", eps_writes, &mut out).await;

    // 3. DNS hosts ConfigMap.
    let cluster_ip = snap
        .services
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some(PROXY_INTERNAL_SERVICE))
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.cluster_ip.clone());
    let (text, skipped) = dns::hosts(
        &snap.nodes,
        dns::proxy_ip(snap.features.proxy, cluster_ip.as_deref()),
    );
    let skipped: Vec<String> = skipped
        .into_iter()
        .map(|n| format!("node {n} has no address; left out of {EDGE_TUNNEL_NODES_CONFIG}"))
        .collect();
    if ctx.newly_reported("dns", &skipped) {
        for p in &skipped {
            warn!(problem = %p, "dns");
        }
    }
    if let Some(action) = dns::plan(snap.dns_cm.as_ref(), &text) {
        let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), WORKING_NAMESPACE);
        let w: Write = match action {
            dns::DnsAction::Create(cm) => Box::pin(async move {
                match cm_api.create(&PostParams::default(), &cm).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    Err(e) => Err(err_str(e)),
                }
            }),
            dns::DnsAction::Patch(text) => {
                let mp = mp.clone();
                Box::pin(async move {
                    cm_api
                        .patch(
                            EDGE_TUNNEL_NODES_CONFIG,
                            &mp,
                            &Patch::Merge(&dns::patch_body(&text)),
                        )
                        .await
                        .map(|_| ())
                        .map_err(err_str)
                })
            }
        };
        run_writes(ctx, "dns", vec![w], &mut out).await;
    }

    // 4. Node labels: agents find their Gateway through them, election does not need them.
    let labels = dplan.label_changes.iter().map(|c| {
        let patch = serde_json::json!({"metadata": {"labels": {LABEL_GATEWAY: c.to}}});
        let (api, node, mp) = (node_api.clone(), c.node.clone(), mp.clone());
        debug!(node = %c.node, from = ?c.from, to = ?c.to, "relabelling node");
        Box::pin(async move {
            api.patch(&node, &mp, &Patch::Merge(&patch))
                .await
                .map(|_| ())
                .map_err(err_str)
        }) as Write
    });
    run_writes(ctx, "node labels", labels, &mut out).await;
    // Deletes after relabelling, so no node points at a Gateway that is gone.
    run_writes(ctx, "gateway deletes", deletes, &mut out).await;

    // 5. Events last: best effort, for people; the writes above are what agents wait for.
    let event_writes: Vec<Write> = events
        .into_iter()
        .map(|(r, warning, reason, note)| {
            Box::pin(async move { publish(ctx, &r, warning, &reason, note).await }) as Write
        })
        .collect();
    run_writes(ctx, "events", event_writes, &mut out).await;
    out
}

/// A Gateway write as data: a boxed request future is kilobytes, so at cold start (1 000
/// Gateways) the futures are made only as concurrency slots free up.
enum GatewayWrite {
    /// Create a new Gateway.
    Create { gateway: Box<Gateway> },
    /// The first status of a Gateway created in this pass (skipped if the create failed).
    FirstStatus {
        name: String,
        patch: serde_json::Value,
    },
    /// Merge patch of the object (spec or metadata).
    Patch {
        name: String,
        patch: serde_json::Value,
    },
    /// Merge patch of the status subresource.
    Status {
        name: String,
        patch: serde_json::Value,
    },
}

/// Remembers when the health Leases of `e`'s seat holders expire (the loop wakes then).
fn note_seats(e: &election::Election, leases: &BTreeMap<String, LeaseView>, out: &mut PassOutcome) {
    for ep in &e.status.active_endpoints {
        if let Some(exp) = leases.get(&ep.node_name).and_then(LeaseView::expires_at) {
            out.seat_leases.insert(ep.node_name.clone(), exp);
        }
    }
}

/// The status as JSON for a merge patch. Lists are replaced whole by a merge patch, which is
/// what we want for `nodes` and `activeEndpoints`.
/// Empty lists are omitted on the wire (Go `omitempty`), so they are sent as `null` here:
/// a merge patch that leaves a key out would keep the old list.
fn status_json(s: &GatewayStatus) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(obj) = v.as_object_mut() {
        for key in ["nodes", "activeEndpoints"] {
            obj.entry(key).or_insert(serde_json::Value::Null);
        }
    }
    v
}
