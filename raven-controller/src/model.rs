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

/// A Node as the planners see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// All labels of the node.
    pub labels: BTreeMap<String, String>,
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
        let mut pod_cidrs: Vec<String> = spec
            .and_then(|s| s.pod_cidrs.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect();
        if pod_cidrs.is_empty()
            && let Some(c) = spec
                .and_then(|s| s.pod_cidr.as_ref())
                .filter(|c| !c.is_empty())
        {
            pod_cidrs.push(c.clone());
        }
        NodeView {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
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
}

impl PoolInfo {
    /// Reduces a NodePool (`apps.openyurt.io/v1beta2`) given as JSON, so this crate needs no
    /// typed NodePool: `spec.type` `"Cloud"` is Cloud, anything else Edge; a missing
    /// `interConnectivity` is false (what OpenYurt's conversion writes).
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
        Some((
            name,
            PoolInfo {
                pool_type,
                inter_connectivity,
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

    #[test]
    fn nodepool_json_table() {
        use k8s_openapi::serde_json::json;
        let cases = [
            (
                json!({"metadata":{"name":"hz"},"spec":{"type":"Edge","interConnectivity":true}}),
                Some(("hz", PoolType::Edge, true)),
            ),
            (
                json!({"metadata":{"name":"c"},"spec":{"type":"Cloud"}}),
                Some(("c", PoolType::Cloud, false)),
            ),
            (
                json!({"metadata":{"name":"x"},"spec":{"type":"cloud"}}),
                Some(("x", PoolType::Edge, false)),
            ),
            (
                json!({"metadata":{"name":"y"}}),
                Some(("y", PoolType::Edge, false)),
            ),
            (json!({"spec":{}}), None),
        ];
        for (obj, want) in cases {
            let got = PoolInfo::from_nodepool_json(&obj);
            let want = want.map(|(n, t, c)| {
                (
                    n.to_string(),
                    PoolInfo {
                        pool_type: t,
                        inter_connectivity: c,
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
