//! Observation: one reflector (watch-backed cache) per kind the planners read, and the
//! filters that decide which watch events are worth a new reconcile pass.
//!
//! The passes are level-triggered (each one re-plans everything from the caches), so a filter
//! only has to answer "could this change the plan?". Noise is dropped here: Node heartbeats
//! (only the fields in [`NodeView`] matter), Lease renewals that do not change liveness (expiry
//! is handled by a timer in the loop), and Services/Endpoints/ConfigMaps that are not ours.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use raven_api::gateway::v1beta1::Gateway;
use raven_api::wellknown::{
    EDGE_TUNNEL_NODES_CONFIG, LABEL_GATEWAY, PROXY_INTERNAL_SERVICE, RAVEN_AGENT_CONFIG,
    RAVEN_GLOBAL_CONFIG, WORKING_NAMESPACE,
};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::model::{LeaseView, NODE_LEASE_PREFIX, NodeView};

/// OpenYurt's NodePool API.
pub const NODEPOOL_GROUP: &str = "apps.openyurt.io";
/// The NodePool version we read.
pub const NODEPOOL_VERSION: &str = "v1beta2";

/// The NodePool resource description for the dynamic API.
pub fn nodepool_resource() -> ApiResource {
    ApiResource {
        group: NODEPOOL_GROUP.to_owned(),
        version: NODEPOOL_VERSION.to_owned(),
        api_version: format!("{NODEPOOL_GROUP}/{NODEPOOL_VERSION}"),
        kind: "NodePool".to_owned(),
        plural: "nodepools".to_owned(),
    }
}

/// Whether the NodePool CRD is served (API discovery; any error reads as "absent").
pub async fn nodepools_served(client: &Client) -> bool {
    match client
        .list_api_group_resources(&format!("{NODEPOOL_GROUP}/{NODEPOOL_VERSION}"))
        .await
    {
        Ok(list) => list.resources.iter().any(|r| r.name == "nodepools"),
        Err(e) => {
            debug!(error = %e, "NodePool API not served");
            false
        }
    }
}

/// The caches every pass reads.
#[derive(Clone)]
pub struct Stores {
    /// All Nodes.
    pub nodes: Store<Node>,
    /// All Gateways (v1beta1).
    pub gateways: Store<Gateway>,
    /// Leases in the working namespace.
    pub leases: Store<Lease>,
    /// ConfigMaps in the working namespace.
    pub configmaps: Store<ConfigMap>,
    /// Services in the working namespace.
    pub services: Store<Service>,
    /// Endpoints in the working namespace.
    pub endpoints: Store<Endpoints>,
    /// NodePools, once the CRD has been discovered.
    pub pools: Arc<std::sync::Mutex<Option<Store<DynamicObject>>>>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}

/// Runs one reflector, calling `relevant` for each event and waking `trigger` when it says so.
/// `trim` shrinks each object before it is cached (memory at 10k nodes).
fn spawn_reflector<K>(
    api: Api<K>,
    cfg: watcher::Config,
    writer: reflector::store::Writer<K>,
    trigger: Arc<Notify>,
    trim: fn(&mut K),
    mut relevant: impl FnMut(&Event<K>) -> bool + Send + 'static,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Default + Send + Sync,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, cfg)
            .default_backoff()
            .modify(trim)
            .reflect(writer)
            .boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(e) => {
                    if relevant(&e) {
                        trigger.notify_one();
                    }
                }
                Err(e) => warn!(kind = %kind, error = %e, "watch error (retrying)"),
            }
        }
    });
}

/// Drops `managedFields`, which no planner reads and which dominate small objects.
fn trim_meta<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// Keeps of a Node only what [`NodeView::from_node`] reads (name, labels, Ready, addresses,
/// pod CIDRs) plus the resourceVersion: images, node info and the other conditions of 10k
/// Nodes would otherwise be most of the controller's memory.
fn trim_node(n: &mut Node) {
    let meta = &mut n.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
    if let Some(spec) = n.spec.as_mut() {
        spec.taints = None;
        spec.config_source = None;
        spec.provider_id = None;
    }
    if let Some(st) = n.status.as_mut() {
        st.images = None;
        st.node_info = None;
        st.volumes_attached = None;
        st.volumes_in_use = None;
        st.capacity = None;
        st.allocatable = None;
        st.daemon_endpoints = None;
        st.config = None;
        st.features = None;
        st.runtime_handlers = None;
        if let Some(c) = st.conditions.as_mut() {
            c.retain(|c| c.type_ == "Ready");
            for c in c.iter_mut() {
                c.message = None;
                c.last_heartbeat_time = None;
            }
        }
    }
}

/// Filter for Nodes: changes of what [`NodeView`] holds.
fn node_filter() -> impl FnMut(&Event<Node>) -> bool + Send + 'static {
    let mut seen: BTreeMap<String, NodeView> = BTreeMap::new();
    move |e| match e {
        Event::Apply(n) | Event::InitApply(n) => {
            let v = NodeView::from_node(n);
            let changed = seen.get(&v.name) != Some(&v);
            seen.insert(v.name.clone(), v);
            changed && matches!(e, Event::Apply(_))
        }
        Event::Delete(n) => {
            seen.remove(n.metadata.name.as_deref().unwrap_or_default());
            true
        }
        Event::Init => false,
        Event::InitDone => true,
    }
}

/// Filter for Leases: a `raven-node-*` Lease appearing, disappearing or changing liveness,
/// judged against the previous expiry at the time of the new event (so a Lease renewed after
/// it had expired, i.e. a recovered node, triggers a pass).
fn lease_filter() -> impl FnMut(&Event<Lease>) -> bool + Send + 'static {
    let mut expiry: BTreeMap<String, Option<Timestamp>> = BTreeMap::new();
    move |e| match e {
        Event::Apply(l) | Event::InitApply(l) => {
            let name = l.metadata.name.clone().unwrap_or_default();
            if !name.starts_with(NODE_LEASE_PREFIX) {
                return false;
            }
            let now = Timestamp::now();
            let view = LeaseView::from_lease(l);
            let old = expiry.insert(name, view.expires_at());
            let was_live = old.flatten().is_some_and(|t| now < t);
            (old.is_none() || was_live != view.is_live(now)) && matches!(e, Event::Apply(_))
        }
        Event::Delete(l) => expiry
            .remove(l.metadata.name.as_deref().unwrap_or_default())
            .is_some(),
        Event::Init => false,
        Event::InitDone => true,
    }
}

fn is_our_config(cm: &ConfigMap) -> bool {
    matches!(
        cm.metadata.name.as_deref(),
        Some(RAVEN_GLOBAL_CONFIG | RAVEN_AGENT_CONFIG | EDGE_TUNNEL_NODES_CONFIG)
    )
}

fn is_our_service_meta(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    m.name.as_deref() == Some(PROXY_INTERNAL_SERVICE)
        || m.labels
            .as_ref()
            .is_some_and(|l| l.contains_key(LABEL_GATEWAY))
}

/// Filter that wakes on live changes of objects `ours` selects, and at the end of the initial
/// list.
fn ours_filter<K: Resource>(
    ours: impl Fn(&K) -> bool + Send + 'static,
) -> impl FnMut(&Event<K>) -> bool + Send + 'static {
    move |e| match e {
        Event::Apply(o) | Event::Delete(o) => ours(o),
        Event::InitApply(_) | Event::Init => false,
        Event::InitDone => true,
    }
}

/// Starts every reflector and returns the caches. `trigger` is woken for relevant changes.
pub fn start(client: &Client, trigger: Arc<Notify>) -> Stores {
    let ns = WORKING_NAMESPACE;
    let cfg = watcher::Config::default;

    let (nodes, w) = reflector::store();
    spawn_reflector(
        Api::<Node>::all(client.clone()),
        cfg(),
        w,
        trigger.clone(),
        trim_node,
        node_filter(),
    );
    let (gateways, w) = reflector::store();
    spawn_reflector(
        Api::<Gateway>::all(client.clone()),
        cfg(),
        w,
        trigger.clone(),
        trim_meta,
        |e: &Event<Gateway>| !matches!(e, Event::Init | Event::InitApply(_)),
    );
    let (leases, w) = reflector::store();
    spawn_reflector(
        Api::<Lease>::namespaced(client.clone(), ns),
        cfg(),
        w,
        trigger.clone(),
        trim_meta,
        lease_filter(),
    );
    let (configmaps, w) = reflector::store();
    spawn_reflector(
        Api::<ConfigMap>::namespaced(client.clone(), ns),
        cfg(),
        w,
        trigger.clone(),
        trim_meta,
        ours_filter(is_our_config),
    );
    let (services, w) = reflector::store();
    spawn_reflector(
        Api::<Service>::namespaced(client.clone(), ns),
        cfg(),
        w,
        trigger.clone(),
        trim_meta,
        ours_filter(|s: &Service| is_our_service_meta(&s.metadata)),
    );
    let (endpoints, w) = reflector::store();
    spawn_reflector(
        Api::<Endpoints>::namespaced(client.clone(), ns),
        cfg(),
        w,
        trigger,
        trim_meta,
        ours_filter(|e: &Endpoints| is_our_service_meta(&e.metadata)),
    );
    Stores {
        nodes,
        gateways,
        leases,
        configmaps,
        services,
        endpoints,
        pools: Arc::new(std::sync::Mutex::new(None)),
    }
}

/// Starts the NodePool reflector (once the CRD is known to be served) and waits for its first
/// list, so no pass sees pools as missing.
pub async fn start_pools(client: &Client, stores: &Stores, trigger: Arc<Notify>) {
    let ar = nodepool_resource();
    let writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
    let store = writer.as_reader();
    let api = Api::<DynamicObject>::all_with(client.clone(), &ar);
    let tr = trigger.clone();
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Init | Event::InitApply(_)) => {}
                Ok(_) => tr.notify_one(),
                Err(e) => warn!(error = %e, "NodePool watch error (retrying)"),
            }
        }
    });
    if store.wait_until_ready().await.is_err() {
        warn!("NodePool cache closed before it was ready");
        return;
    }
    if let Ok(mut slot) = stores.pools.lock() {
        *slot = Some(store);
    }
    trigger.notify_one();
}

/// Waits until every core cache has listed once.
pub async fn wait_ready(stores: &Stores) -> Result<(), String> {
    let r = tokio::try_join!(
        stores.nodes.wait_until_ready(),
        stores.gateways.wait_until_ready(),
        stores.leases.wait_until_ready(),
        stores.configmaps.wait_until_ready(),
        stores.services.wait_until_ready(),
        stores.endpoints.wait_until_ready(),
    );
    r.map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};

    fn node(name: &str, ready: &str, heartbeat: &str) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.metadata.resource_version = Some(heartbeat.into());
        n.status = Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: ready.into(),
                message: Some(heartbeat.into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        n
    }

    #[test]
    fn node_filter_ignores_heartbeats() {
        let mut f = node_filter();
        assert!(!f(&Event::Init));
        assert!(!f(&Event::InitApply(node("a", "True", "1"))));
        assert!(f(&Event::InitDone));
        assert!(!f(&Event::Apply(node("a", "True", "2"))), "heartbeat only");
        assert!(f(&Event::Apply(node("a", "False", "3"))), "ready flip");
        assert!(f(&Event::Apply(node("b", "True", "1"))), "new node");
        assert!(f(&Event::Delete(node("b", "True", "1"))));
    }

    fn lease(name: &str, renewed_secs_ago: i64, duration: i32) -> Lease {
        use k8s_openapi::api::coordination::v1::LeaseSpec;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
        use k8s_openapi::jiff::SignedDuration;
        let renewed = Timestamp::now()
            .checked_sub(SignedDuration::from_secs(renewed_secs_ago))
            .expect("time");
        Lease {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(duration),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn lease_filter_wakes_on_liveness_changes_only() {
        let mut f = lease_filter();
        assert!(!f(&Event::InitApply(lease("raven-node-a", 0, 40))));
        assert!(!f(&Event::InitApply(lease("raven-node-b", 100, 40))));
        assert!(f(&Event::InitDone));
        assert!(!f(&Event::Apply(lease("raven-node-a", 0, 40))), "renewal");
        assert!(f(&Event::Apply(lease("raven-node-b", 0, 40))), "recovered");
        assert!(f(&Event::Apply(lease("raven-node-c", 0, 40))), "new lease");
        assert!(
            !f(&Event::Apply(lease("kube-scheduler", 0, 40))),
            "not ours"
        );
        assert!(f(&Event::Delete(lease("raven-node-c", 0, 40))));
    }

    #[test]
    fn ours_filter_table() {
        let mut f = ours_filter(is_our_config);
        let cm = |n: &str| ConfigMap {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(n.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(f(&Event::Apply(cm("raven-cfg"))));
        assert!(f(&Event::Delete(cm("edge-tunnel-nodes"))));
        assert!(!f(&Event::Apply(cm("kube-proxy"))));
        assert!(!f(&Event::InitApply(cm("raven-cfg"))));
        assert!(f(&Event::InitDone));
    }
}
