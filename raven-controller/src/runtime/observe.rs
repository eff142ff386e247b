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
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Service};
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

use crate::model::{LeaseView, NODE_LEASE_PREFIX, NodeLite, NodeView};
use crate::triggers;

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
    /// All Nodes, reduced to what planning reads.
    pub nodes: NodeCache,
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

/// The node cache: every Node reduced to a [`NodeView`] with only the labels planning reads.
///
/// Memory at 10k nodes: a reflector store would keep every Node object (and the relevance
/// filter a second copy as views); this keeps one small view per node, in a name-sorted
/// vector behind an `Arc`. A pass takes the `Arc` (no copy); the watch task copies the vector
/// only when it changes a node while a pass still holds the old one (copy on write), so a pass
/// costs at most one extra copy, and none when nothing changes.
#[derive(Clone, Debug)]
pub struct NodeCache {
    state: Arc<std::sync::RwLock<NodeState>>,
    ready: tokio::sync::watch::Receiver<bool>,
}

impl NodeCache {
    /// All nodes, by name order (a shared snapshot).
    pub fn views(&self) -> Arc<Vec<NodeView>> {
        self.state
            .read()
            .map(|s| s.nodes.clone())
            .unwrap_or_default()
    }

    /// Waits until the first full list has been applied.
    pub async fn wait_until_ready(&self) -> Result<(), String> {
        let mut rx = self.ready.clone();
        rx.wait_for(|r| *r)
            .await
            .map(|_| ())
            .map_err(|_| "node watch stopped before its first list".to_owned())
    }
}

/// The cached nodes and the list in progress. Pure state machine over watch events, so the
/// relist semantics are table-tested.
#[derive(Debug, Default)]
pub struct NodeState {
    /// Label keys kept in each view (pool, candidate and gateway labels); others are dropped.
    keep_labels: std::collections::BTreeSet<String>,
    /// Current views, sorted by name (unique).
    nodes: Arc<Vec<NodeView>>,
    /// Views of a (re)list in progress; sorted and swapped in at its end.
    listing: Option<Vec<NodeView>>,
    /// A full list has been applied.
    ready: bool,
}

impl NodeState {
    /// An empty cache keeping the labels `keep_labels`.
    pub fn new(keep_labels: std::collections::BTreeSet<String>) -> NodeState {
        NodeState {
            keep_labels,
            ..Default::default()
        }
    }

    fn view(&self, n: &NodeLite) -> NodeView {
        let mut v = NodeView::from_lite(n);
        v.labels.retain(|k, _| self.keep_labels.contains(k));
        v.name.shrink_to_fit();
        v
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.nodes.binary_search_by(|v| v.name.as_str().cmp(name))
    }

    /// Applies one watch event; returns whether it could change a plan (a pass is due).
    /// Heartbeats and changes of fields no planner reads return false.
    pub fn apply(&mut self, e: &Event<NodeLite>) -> bool {
        match e {
            Event::Init => {
                self.listing = Some(Vec::new());
                false
            }
            Event::InitApply(n) => {
                let v = self.view(n);
                self.listing.get_or_insert_with(Vec::new).push(v);
                false
            }
            Event::InitDone => {
                let mut listed = self.listing.take().unwrap_or_default();
                listed.sort_by(|a, b| a.name.cmp(&b.name));
                // A name listed twice (cannot happen on one list; be safe): the last one wins.
                listed.reverse();
                listed.dedup_by(|later, kept| later.name == kept.name);
                listed.reverse();
                listed.shrink_to_fit();
                let changed = *listed != *self.nodes || !self.ready;
                self.nodes = Arc::new(listed);
                self.ready = true;
                changed
            }
            Event::Apply(n) => {
                let v = self.view(n);
                match self.find(&v.name) {
                    Ok(i) if self.nodes[i] == v => false,
                    Ok(i) => {
                        Arc::make_mut(&mut self.nodes)[i] = v;
                        true
                    }
                    Err(i) => {
                        Arc::make_mut(&mut self.nodes).insert(i, v);
                        true
                    }
                }
            }
            Event::Delete(n) => match self.find(n.metadata.name.as_deref().unwrap_or_default()) {
                Ok(i) => {
                    Arc::make_mut(&mut self.nodes).remove(i);
                    true
                }
                Err(_) => false,
            },
        }
    }
}

/// Starts the Node watch feeding a [`NodeCache`].
fn spawn_nodes(
    client: &Client,
    keep_labels: std::collections::BTreeSet<String>,
    trigger: Arc<Notify>,
) -> NodeCache {
    let state = Arc::new(std::sync::RwLock::new(NodeState::new(keep_labels)));
    let (tx, ready) = tokio::sync::watch::channel(false);
    let cache = NodeCache {
        state: state.clone(),
        ready,
    };
    let api = Api::<NodeLite>::all(client.clone());
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(e) => {
                    let (relevant, is_ready) = match state.write() {
                        Ok(mut s) => (s.apply(&e), s.ready),
                        Err(_) => (false, false),
                    };
                    if is_ready {
                        tx.send_if_modified(|r| !std::mem::replace(r, true));
                    }
                    if relevant {
                        trigger.notify_one();
                    }
                }
                Err(e) => warn!(kind = "Node", error = %e, "watch error (retrying)"),
            }
        }
    });
    cache
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

/// Filter for the ConfigMaps we read or write: `raven-cfg` wakes a pass only when a feature
/// switch changed ([`triggers::raven_cfg_event_reelects_all`]), `raven-agent-config` only
/// when a port some Service depends on changed ([`triggers::due_for_agent_config_event`],
/// judged against the cached Gateways), `edge-tunnel-nodes` on any change (someone else
/// edited our ConfigMap: the pass puts it right). Vendor keys in the same ConfigMaps wake
/// nothing.
fn config_filter(
    gateways: Store<Gateway>,
) -> impl FnMut(&Event<ConfigMap>) -> bool + Send + 'static {
    let mut seen: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    move |e| match e {
        Event::Init => false,
        Event::InitApply(cm) => {
            if is_our_config(cm) {
                let name = cm.metadata.name.clone().unwrap_or_default();
                seen.insert(name, cm.data.clone().unwrap_or_default());
            }
            false
        }
        Event::InitDone => true,
        Event::Apply(cm) | Event::Delete(cm) => {
            if !is_our_config(cm) {
                return false;
            }
            let name = cm.metadata.name.clone().unwrap_or_default();
            let (old, new) = if matches!(e, Event::Apply(_)) {
                let new = cm.data.clone().unwrap_or_default();
                (seen.insert(name.clone(), new.clone()), Some(new))
            } else {
                (seen.remove(&name), None)
            };
            match name.as_str() {
                RAVEN_GLOBAL_CONFIG => {
                    triggers::raven_cfg_event_reelects_all(old.as_ref(), new.as_ref())
                }
                RAVEN_AGENT_CONFIG => {
                    let gws: Vec<Gateway> =
                        gateways.state().iter().map(|g| (**g).clone()).collect();
                    !triggers::due_for_agent_config_event(old.as_ref(), new.as_ref(), &gws)
                        .is_empty()
                }
                _ => true,
            }
        }
    }
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
/// `node_labels` are the Node label keys planning reads (the rest are not cached).
pub fn start(
    client: &Client,
    trigger: Arc<Notify>,
    node_labels: std::collections::BTreeSet<String>,
) -> Stores {
    let ns = WORKING_NAMESPACE;
    let cfg = watcher::Config::default;

    let nodes = spawn_nodes(client, node_labels, trigger.clone());
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
        config_filter(gateways.clone()),
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
    stores.nodes.wait_until_ready().await?;
    let r = tokio::try_join!(
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
    use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};

    /// A Node as the watch delivers it: encoded by the API server, decoded as [`NodeLite`].
    fn node(name: &str, ready: &str, heartbeat: &str) -> NodeLite {
        lite(&full_node(name, ready, heartbeat))
    }

    fn lite(n: &Node) -> NodeLite {
        serde_json::from_value(serde_json::to_value(n).expect("encode")).expect("decode")
    }

    fn full_node(name: &str, ready: &str, heartbeat: &str) -> Node {
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
    fn node_state_ignores_heartbeats_and_foreign_labels() {
        let keep = ["raven.openyurt.io/gateway".to_owned()]
            .into_iter()
            .collect();
        let mut st = NodeState::new(keep);
        assert!(!st.apply(&Event::Init));
        let mut a = full_node("a", "True", "1");
        a.metadata.labels = Some(
            [
                ("raven.openyurt.io/gateway", "gw-x"),
                ("kubernetes.io/os", "linux"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        );
        let a = lite(&a);
        assert!(!st.apply(&Event::InitApply(a.clone())));
        assert!(!st.ready, "not ready before the list ends");
        assert!(st.apply(&Event::InitDone), "first list");
        assert!(st.ready);
        let labels: Vec<&String> = st.nodes[0].labels.keys().collect();
        assert_eq!(
            labels,
            ["raven.openyurt.io/gateway"],
            "foreign labels dropped"
        );
        assert!(!st.apply(&Event::Apply(a.clone())), "heartbeat only");
        let mut a2 = a.clone();
        if let Some(l) = a2.metadata.labels.as_mut() {
            l.insert("kubernetes.io/os".into(), "windows".into());
        }
        assert!(!st.apply(&Event::Apply(a2)), "a label nobody reads");
        assert!(
            st.apply(&Event::Apply(node("a", "False", "3"))),
            "ready flip"
        );
        assert!(st.apply(&Event::Apply(node("b", "True", "1"))), "new node");
        assert!(st.apply(&Event::Delete(node("b", "True", "1"))));
        assert!(
            !st.apply(&Event::Delete(node("b", "True", "1"))),
            "already gone"
        );
        // A relist that finds the same nodes is no change; one that misses a node is.
        assert!(!st.apply(&Event::Init));
        assert!(!st.apply(&Event::InitApply(node("a", "False", "4"))));
        assert_eq!(st.nodes.len(), 1, "old views served while relisting");
        assert!(!st.apply(&Event::InitDone), "same views");
        st.apply(&Event::Init);
        assert!(
            st.apply(&Event::InitDone),
            "node a vanished during the relist"
        );
        assert!(st.nodes.is_empty());
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
    fn config_filter_wakes_on_what_planners_read() {
        use raven_api::gateway::v1beta1::{ExposeType, GatewaySpec};
        let (store, mut w) = reflector::store::<Gateway>();
        w.apply_watcher_event(&Event::Apply(Gateway::new(
            "gw-lb",
            GatewaySpec {
                expose_type: ExposeType::LoadBalancer,
                ..Default::default()
            },
        )));
        let mut f = config_filter(store);
        let cm = |n: &str, kv: &[(&str, &str)]| ConfigMap {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(n.into()),
                ..Default::default()
            },
            data: Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        };
        assert!(!f(&Event::Init));
        assert!(!f(&Event::InitApply(cm(
            "raven-cfg",
            &[("enable-l7-proxy", "true")]
        ))));
        assert!(!f(&Event::InitApply(cm("raven-agent-config", &[]))));
        assert!(f(&Event::InitDone));
        let cases = [
            (
                "vendor key in raven-cfg",
                cm("raven-cfg", &[("enable-l7-proxy", "true"), ("x", "1")]),
                false,
            ),
            (
                "proxy switched off",
                cm("raven-cfg", &[("enable-l7-proxy", "false"), ("x", "1")]),
                true,
            ),
            (
                "vendor key in agent config",
                cm("raven-agent-config", &[("vpn-driver", "wg")]),
                false,
            ),
            (
                "proxy port",
                cm(
                    "raven-agent-config",
                    &[("vpn-driver", "wg"), ("proxy-external-addr", ":80")],
                ),
                true,
            ),
            (
                "our DNS ConfigMap edited",
                cm("edge-tunnel-nodes", &[("tunnel-nodes", "")]),
                true,
            ),
            ("not ours", cm("kube-proxy", &[("a", "b")]), false),
        ];
        for (name, c, want) in cases {
            assert_eq!(f(&Event::Apply(c)), want, "{name}");
        }
        assert!(
            f(&Event::Delete(cm("raven-agent-config", &[]))),
            "delete brings back the default proxy port"
        );
        assert!(f(&Event::Delete(cm("raven-cfg", &[]))), "raven-cfg deleted");
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
