//! Observed inputs of the planners, reduced to what planning needs.
//!
//! The planners never see a raw Kubernetes object: the observer turns each Node, NodePool and
//! Lease into one of the plain values below first. That keeps the planners free of API-version
//! details, makes table tests short, and puts every "what does this field mean" decision (which
//! address is the private IP, which CIDRs are the pod CIDRs, when a Lease is expired) in one
//! place with its own tests.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Prefix of the per-node Lease that `raven-node` renews in [`LEASE_NAMESPACE`] while its data
/// plane is healthy: `raven-node-<nodeName>`. The controller reads it to take an endpoint's seat
/// away without waiting for the Node to turn NotReady.
pub const NODE_LEASE_PREFIX: &str = "raven-node-";
/// Namespace of the per-node Leases.
pub const LEASE_NAMESPACE: &str = raven_api::wellknown::WORKING_NAMESPACE;

/// Name of the health Lease of `node`.
pub fn node_lease_name(node: &str) -> String {
    format!("{NODE_LEASE_PREFIX}{node}")
}

/// Labels of a [`NodeView`]: a few pairs sorted by key in one vector. The runtime keeps only
/// the two or three keys planning reads, for 10k nodes at once: a `BTreeMap` would allocate a
/// 540-byte tree node per node for them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key`, returning the previous value.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    /// Keeps the pairs `keep` accepts, and gives back spare capacity.
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &String) -> bool) {
        self.0.retain(|(k, v)| keep(k, v));
        self.0.shrink_to_fit();
    }

    /// Keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Labels {
        let mut v: Vec<(String, String)> = iter.into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|b, a| a.0 == b.0);
        Labels(v)
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(m: BTreeMap<String, String>) -> Labels {
        // Already sorted and unique.
        Labels(m.into_iter().collect())
    }
}

/// A Node as the planners see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// Labels of the node (the runtime keeps only those planning reads).
    pub labels: Labels,
    /// The `Ready` condition is `True`. A missing condition counts as not ready.
    pub ready: bool,
    /// First `InternalIP` address that parses as an IP (v4 or v6, whichever comes first).
    pub private_ip: Option<IpAddr>,
    /// Last `ExternalIP` address that parses as an IP: the DNS fallback for a node without an
    /// internal address (upstream's choice, kept so CoreDNS answers the same).
    pub external_ip: Option<IpAddr>,
    /// Pod CIDRs: `spec.podCIDRs` (every family), else `spec.podCIDR`; empty when unassigned.
    pub pod_cidrs: Vec<String>,
}

impl NodeView {
    /// Value of a label, if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// Reduces a Node object. Never fails: a node without status is simply not ready and has
    /// no address.
    pub fn from_node(node: &Node) -> NodeView {
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let private_ip = status
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .find_map(|a| a.address.parse::<IpAddr>().ok());
        let external_ip = status
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "ExternalIP")
            .filter_map(|a| a.address.parse::<IpAddr>().ok())
            .next_back();
        let spec = node.spec.as_ref();
        let pod_cidrs = pod_cidrs_of(
            spec.and_then(|s| s.pod_cidrs.as_deref()),
            spec.and_then(|s| s.pod_cidr.as_deref()),
        );
        NodeView {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default().into(),
            ready,
            private_ip,
            external_ip,
            pod_cidrs,
        }
    }
}

/// A Node as the watch decodes it: only what [`NodeView`] reads. The API server sends whole
/// Nodes (a real one is 5–20 KB of JSON: `managedFields`, `images`, five conditions with
/// messages, `nodeInfo`); decoding them into `k8s_openapi`'s `Node` allocates all of that for
/// every event, only to drop it. Here everything else is skipped while parsing, so a list page
/// or a heartbeat costs a few small strings per node.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct NodeLite {
    /// Name, resourceVersion (the watcher resumes from it) and labels; nothing else is kept.
    #[serde(default, deserialize_with = "lite_meta")]
    pub metadata: ObjectMeta,
    /// Pod CIDRs.
    #[serde(default)]
    pub spec: Option<NodeSpecLite>,
    /// Conditions and addresses.
    #[serde(default)]
    pub status: Option<NodeStatusLite>,
}

/// The metadata fields a [`NodeLite`] keeps.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaLite {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

fn lite_meta<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m: MetaLite = serde::Deserialize::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        resource_version: m.resource_version,
        labels: m.labels,
        ..Default::default()
    })
}

/// `spec` of a [`NodeLite`].
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpecLite {
    /// `spec.podCIDR`.
    #[serde(default, rename = "podCIDR")]
    pub pod_cidr: Option<String>,
    /// `spec.podCIDRs`.
    #[serde(default, rename = "podCIDRs")]
    pub pod_cidrs: Option<Vec<String>>,
}

/// `status` of a [`NodeLite`].
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct NodeStatusLite {
    /// Condition types and statuses.
    #[serde(default)]
    pub conditions: Option<Vec<TypeStatus>>,
    /// Address types and addresses.
    #[serde(default)]
    pub addresses: Option<Vec<AddressLite>>,
}

/// A condition reduced to its type and status.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct TypeStatus {
    /// `type`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `status`.
    #[serde(default)]
    pub status: String,
}

/// A node address.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct AddressLite {
    /// `type`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `address`.
    #[serde(default)]
    pub address: String,
}

impl k8s_openapi::Metadata for NodeLite {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl k8s_openapi::Resource for NodeLite {
    const API_VERSION: &'static str = <Node as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Node as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Node as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Node as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Node as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = k8s_openapi::ClusterResourceScope;
}

/// A node's pod CIDRs: `spec.podCIDRs` without empty entries, else the single `spec.podCIDR`
/// (clusters that predate dual-stack set only the latter).
fn pod_cidrs_of(list: Option<&[String]>, single: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = list
        .unwrap_or_default()
        .iter()
        .filter(|c| !c.is_empty())
        .cloned()
        .collect();
    if out.is_empty()
        && let Some(c) = single.filter(|c| !c.is_empty())
    {
        out.push(c.to_string());
    }
    out
}

impl NodeView {
    /// Reduces a decoded [`NodeLite`]; the same view [`NodeView::from_node`] gives for the
    /// full object.
    pub fn from_lite(node: &NodeLite) -> NodeView {
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let addrs = || {
            status
                .and_then(|s| s.addresses.as_ref())
                .into_iter()
                .flatten()
        };
        let private_ip = addrs()
            .filter(|a| a.type_ == "InternalIP")
            .find_map(|a| a.address.parse::<IpAddr>().ok());
        let external_ip = addrs()
            .filter(|a| a.type_ == "ExternalIP")
            .filter_map(|a| a.address.parse::<IpAddr>().ok())
            .next_back();
        let spec = node.spec.as_ref();
        let pod_cidrs = pod_cidrs_of(
            spec.and_then(|s| s.pod_cidrs.as_deref()),
            spec.and_then(|s| s.pod_cidr.as_deref()),
        );
        NodeView {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default().into(),
            ready,
            private_ip,
            external_ip,
            pod_cidrs,
        }
    }
}

/// OpenYurt NodePool type (`spec.type` of `apps.openyurt.io/v1beta2` NodePool).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PoolType {
    /// Nodes in the cloud (same network as the control plane).
    Cloud,
    /// Nodes at the edge; the default when the type is missing or unknown.
    #[default]
    Edge,
}

/// What the planners need from a NodePool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolInfo {
    /// Pool type.
    pub pool_type: PoolType,
    /// `spec.interConnectivity`: all nodes of the pool reach each other over L2/L3.
    pub inter_connectivity: bool,
    /// `metadata.uid`: the pool Gateway's ownerReference names it, so the garbage collector
    /// deletes the Gateway with its NodePool. `None` when the object carries no uid.
    pub uid: Option<String>,
}

impl PoolInfo {
    /// Reduces a NodePool (`apps.openyurt.io/v1beta2`) given as JSON, so this crate needs no
    /// typed NodePool: `spec.type` `"Cloud"` is Cloud, anything else Edge; a missing
    /// `interConnectivity` is false (what OpenYurt's conversion writes); an empty uid is none.
    pub fn from_nodepool_json(obj: &k8s_openapi::serde_json::Value) -> Option<(String, PoolInfo)> {
        let name = obj.pointer("/metadata/name")?.as_str()?.to_owned();
        let spec = obj.get("spec");
        let pool_type = match spec.and_then(|s| s.get("type")).and_then(|t| t.as_str()) {
            Some("Cloud") => PoolType::Cloud,
            _ => PoolType::Edge,
        };
        let inter_connectivity = spec
            .and_then(|s| s.get("interConnectivity"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let uid = obj
            .pointer("/metadata/uid")
            .and_then(|v| v.as_str())
            .filter(|u| !u.is_empty())
            .map(str::to_owned);
        Some((
            name,
            PoolInfo {
                pool_type,
                inter_connectivity,
                uid,
            },
        ))
    }
}

/// A node's health Lease as the election sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseView {
    /// Last renewal (`renewTime`, else `acquireTime`).
    pub renewed: Option<Timestamp>,
    /// `leaseDurationSeconds`.
    pub duration_secs: Option<i32>,
}

impl LeaseView {
    /// Reduces a Lease object.
    pub fn from_lease(lease: &Lease) -> LeaseView {
        let spec = lease.spec.as_ref();
        LeaseView {
            renewed: spec
                .and_then(|s| s.renew_time.as_ref().or(s.acquire_time.as_ref()))
                .map(|t| t.0),
            duration_secs: spec.and_then(|s| s.lease_duration_seconds),
        }
    }

    /// The instant the Lease stops vouching for its node; `None` when it makes no claim
    /// (never renewed, or no positive duration).
    pub fn expires_at(&self) -> Option<Timestamp> {
        let renewed = self.renewed?;
        let secs = self.duration_secs.filter(|d| *d > 0)?;
        renewed
            .checked_add(SignedDuration::from_secs(i64::from(secs)))
            .ok()
    }

    /// Whether the Lease still vouches for its node at `now`. The expiry instant itself counts
    /// as expired.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.expires_at().is_some_and(|exp| now < exp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeCondition, NodeSpec, NodeStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn node(
        conds: &[(&str, &str)],
        addrs: &[(&str, &str)],
        cidr: Option<&str>,
        cidrs: Option<&[&str]>,
    ) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some("n1".into());
        n.spec = Some(NodeSpec {
            pod_cidr: cidr.map(Into::into),
            pod_cidrs: cidrs.map(|c| c.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        });
        n.status = Some(NodeStatus {
            conditions: Some(
                conds
                    .iter()
                    .map(|(t, s)| NodeCondition {
                        type_: t.to_string(),
                        status: s.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            addresses: Some(
                addrs
                    .iter()
                    .map(|(t, a)| NodeAddress {
                        type_: t.to_string(),
                        address: a.to_string(),
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        n
    }

    #[test]
    fn readiness_needs_ready_true() {
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("Ready", "True")], true),
            (&[("Ready", "False")], false),
            (&[("Ready", "Unknown")], false),
            (&[], false),
            (&[("NetworkUnavailable", "False"), ("Ready", "True")], true),
            (&[("MemoryPressure", "True")], false),
        ];
        for (conds, want) in cases {
            let v = NodeView::from_node(&node(conds, &[], None, None));
            assert_eq!(v.ready, *want, "{conds:?}");
        }
        let mut bare = Node::default();
        bare.metadata.name = Some("bare".into());
        let v = NodeView::from_node(&bare);
        assert_eq!(
            v,
            NodeView {
                name: "bare".into(),
                ..Default::default()
            }
        );
    }

    type AddrCase<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
    type CidrCase<'a> = (Option<&'a str>, Option<&'a [&'a str]>, &'a [&'a str]);

    #[test]
    fn private_ip_is_first_parsable_internal_ip() {
        let cases: &[AddrCase] = &[
            (&[("InternalIP", "10.0.0.1")], Some("10.0.0.1")),
            (
                &[("ExternalIP", "1.2.3.4"), ("InternalIP", "10.0.0.2")],
                Some("10.0.0.2"),
            ),
            (
                &[("InternalIP", "garbage"), ("InternalIP", "fd00::1")],
                Some("fd00::1"),
            ),
            (&[("Hostname", "n1"), ("ExternalIP", "1.2.3.4")], None),
            (&[], None),
        ];
        for (addrs, want) in cases {
            let v = NodeView::from_node(&node(&[], addrs, None, None));
            assert_eq!(v.private_ip, want.map(|s| s.parse().unwrap()), "{addrs:?}");
        }
    }

    /// Acceptance case 25 (upstream getPodCIDRs), plus dual-stack, which upstream ignores.
    #[test]
    fn pod_cidrs_table() {
        let cases: &[CidrCase] = &[
            (Some("10.0.0.1/24"), None, &["10.0.0.1/24"]),
            // Upstream gives [""] here; agents cannot parse "", so we publish no subnet.
            (None, None, &[]),
            (Some(""), Some(&[]), &[]),
            (
                Some("10.244.1.0/24"),
                Some(&["10.244.1.0/24", "fd00:10:244:1::/64"]),
                &["10.244.1.0/24", "fd00:10:244:1::/64"],
            ),
            (Some("10.244.1.0/24"), Some(&[""]), &["10.244.1.0/24"]),
        ];
        for (cidr, cidrs, want) in cases {
            let v = NodeView::from_node(&node(&[], &[], *cidr, *cidrs));
            assert_eq!(v.pod_cidrs, *want, "{cidr:?} {cidrs:?}");
        }
    }

    #[test]
    fn lease_expiry_table() {
        let t0: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let at = |s: i64| t0.checked_add(SignedDuration::from_secs(s)).unwrap();
        let lease = |renew: Option<Timestamp>, acquire: Option<Timestamp>, d: Option<i32>| Lease {
            spec: Some(LeaseSpec {
                renew_time: renew.map(MicroTime),
                acquire_time: acquire.map(MicroTime),
                lease_duration_seconds: d,
                ..Default::default()
            }),
            ..Default::default()
        };
        let cases = [
            ("fresh", lease(Some(t0), None, Some(10)), at(5), true),
            ("at expiry", lease(Some(t0), None, Some(10)), at(10), false),
            ("expired", lease(Some(t0), None, Some(10)), at(11), false),
            ("acquire only", lease(None, Some(t0), Some(10)), at(9), true),
            (
                "renew wins over acquire",
                lease(Some(at(20)), Some(t0), Some(10)),
                at(25),
                true,
            ),
            ("never renewed", lease(None, None, Some(10)), t0, false),
            ("no duration", lease(Some(t0), None, None), t0, false),
            ("zero duration", lease(Some(t0), None, Some(0)), t0, false),
            (
                "negative duration",
                lease(Some(t0), None, Some(-5)),
                t0,
                false,
            ),
            ("no spec", Lease::default(), t0, false),
        ];
        for (name, l, now, want) in cases {
            assert_eq!(LeaseView::from_lease(&l).is_live(now), want, "{name}");
        }
    }

    /// A real-looking Node (managedFields, images, several conditions, both address types,
    /// dual-stack CIDRs) decodes as [`NodeLite`] to the same view as the full object, keeping
    /// only name, resourceVersion and labels of the metadata.
    #[test]
    fn lite_decoding_gives_the_same_view() {
        use k8s_openapi::serde_json::json;
        let obj = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "edge-1", "resourceVersion": "42", "uid": "u-1",
                "labels": {"apps.openyurt.io/nodepool": "hz", "kubernetes.io/os": "linux"},
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
                "managedFields": [{"manager": "kubelet", "operation": "Update",
                    "apiVersion": "v1", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {"f:conditions": {}}}}]},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:1::/64"],
                "taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False", "reason": "r", "message": "m",
                     "lastHeartbeatTime": "2025-01-01T00:00:00Z"},
                    {"type": "Ready", "status": "True", "reason": "KubeletReady",
                     "lastHeartbeatTime": "2025-01-01T00:00:00Z",
                     "lastTransitionTime": "2025-01-01T00:00:00Z"}],
                "addresses": [{"type": "Hostname", "address": "edge-1"},
                    {"type": "ExternalIP", "address": "1.2.3.4"},
                    {"type": "InternalIP", "address": "192.168.1.1"}],
                "images": [{"names": ["registry/a:1", "registry/a@sha256:00"], "sizeBytes": 1}],
                "nodeInfo": {"kubeletVersion": "v1.20.2", "machineID": "m", "systemUUID": "s",
                    "bootID": "b", "kernelVersion": "6", "osImage": "d", "containerRuntimeVersion": "c",
                    "kubeProxyVersion": "v", "operatingSystem": "linux", "architecture": "amd64"}}});
        let full: Node = k8s_openapi::serde_json::from_value(obj.clone()).expect("Node");
        let lite: NodeLite = k8s_openapi::serde_json::from_value(obj).expect("NodeLite");
        assert_eq!(NodeView::from_lite(&lite), NodeView::from_node(&full));
        assert_eq!(lite.metadata.resource_version.as_deref(), Some("42"));
        assert!(lite.metadata.managed_fields.is_none() && lite.metadata.annotations.is_none());
        let bare: NodeLite =
            k8s_openapi::serde_json::from_value(json!({"metadata": {"name": "b"}})).expect("bare");
        assert_eq!(
            NodeView::from_lite(&bare),
            NodeView::from_node(&{
                let mut n = Node::default();
                n.metadata.name = Some("b".into());
                n
            })
        );
    }

    #[test]
    fn nodepool_json_table() {
        use k8s_openapi::serde_json::json;
        let cases = [
            (
                json!({"metadata":{"name":"hz"},"spec":{"type":"Edge","interConnectivity":true}}),
                Some(("hz", PoolType::Edge, true, None)),
            ),
            (
                json!({"metadata":{"name":"u","uid":"1f0c"},"spec":{"type":"Edge"}}),
                Some(("u", PoolType::Edge, false, Some("1f0c"))),
            ),
            (
                json!({"metadata":{"name":"e","uid":""},"spec":{"type":"Edge"}}),
                Some(("e", PoolType::Edge, false, None)),
            ),
            (
                json!({"metadata":{"name":"c"},"spec":{"type":"Cloud"}}),
                Some(("c", PoolType::Cloud, false, None)),
            ),
            (
                json!({"metadata":{"name":"x"},"spec":{"type":"cloud"}}),
                Some(("x", PoolType::Edge, false, None)),
            ),
            (
                json!({"metadata":{"name":"y"}}),
                Some(("y", PoolType::Edge, false, None)),
            ),
            (json!({"spec":{}}), None),
        ];
        for (obj, want) in cases {
            let got = PoolInfo::from_nodepool_json(&obj);
            let want = want.map(|(n, t, c, u)| {
                (
                    n.to_string(),
                    PoolInfo {
                        pool_type: t,
                        inter_connectivity: c,
                        uid: u.map(str::to_owned),
                    },
                )
            });
            assert_eq!(got, want, "{obj}");
        }
    }

    #[test]
    fn lease_name() {
        assert_eq!(node_lease_name("edge-1"), "raven-node-edge-1");
    }
}
