//! The per-node health Lease: `kube-system/raven-node-<node>` (`coordination.k8s.io/v1`).
//!
//! raven-controller drops a gateway endpoint whose Lease expired without waiting for the Node
//! to go NotReady, so this Lease must say "my data plane works", not "my process runs": it is
//! renewed only while the engine's last apply succeeded (the apply part of `/readyz`), and left
//! to expire otherwise. Kubernetes errors are logged and retried, never fatal: the data plane
//! must not depend on the API server being reachable.
//!
//! The renewer runs on its own thread with a small tokio runtime, so the synchronous main loop
//! stays as it is; the decision and the object it writes are pure and unit-tested.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

use super::health::{Health, HealthState};

/// Namespace of the node Leases (the controller's `model::node_lease_name` contract).
pub const LEASE_NAMESPACE: &str = "kube-system";

/// Name of the Lease of `node`; must equal raven-controller's `model::node_lease_name`.
pub fn lease_name(node: &str) -> String {
    format!("raven-node-{node}")
}

/// Where the kube client configuration comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KubeAccess {
    /// An explicit kubeconfig file (`--kubeconfig`).
    Kubeconfig(PathBuf),
    /// `KUBECONFIG` or the in-cluster service account, whichever kube finds.
    Infer,
}

/// Which access to use, from the flag and the environment; `None` when no API server is
/// configured at all (standalone mode without a cluster: no Lease).
pub fn access(
    flag: Option<PathBuf>,
    kubeconfig_env: Option<&str>,
    service_host_env: Option<&str>,
) -> Option<KubeAccess> {
    match flag {
        Some(path) => Some(KubeAccess::Kubeconfig(path)),
        None if kubeconfig_env.is_some_and(|v| !v.is_empty())
            || service_host_env.is_some_and(|v| !v.is_empty()) =>
        {
            Some(KubeAccess::Infer)
        }
        None => None,
    }
}

/// Lease timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// `leaseDurationSeconds`.
    pub duration: Duration,
    /// How often the Lease is renewed while healthy (a third of the duration leaves two
    /// missed renewals of slack).
    pub renew_every: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

/// Whether the Lease may be renewed now: the same condition as the apply part of `/readyz`.
pub fn healthy(state: &HealthState) -> bool {
    matches!(state.last_apply, Some(Ok(())))
}

/// The Lease to write: `current` (keeping its resourceVersion, so a concurrent writer makes the
/// update a 409 instead of a lost update) renewed at `now`, or a new one.
pub fn renewed(current: Option<Lease>, node: &str, now: Timestamp, timing: &LeaseTiming) -> Lease {
    let stamp = MicroTime(now);
    let duration = i32::try_from(timing.duration.as_secs()).unwrap_or(i32::MAX);
    let mut lease = current.unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(lease_name(node)),
            namespace: Some(LEASE_NAMESPACE.to_owned()),
            ..Default::default()
        },
        spec: None,
    });
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(node) {
        spec.holder_identity = Some(node.to_owned());
        spec.acquire_time = Some(stamp.clone());
    }
    spec.lease_duration_seconds = Some(duration);
    spec.renew_time = Some(stamp);
    lease
}

pub(crate) async fn client(access: &KubeAccess) -> Result<kube::Client, String> {
    let config = match access {
        KubeAccess::Kubeconfig(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        KubeAccess::Infer => kube::Config::infer()
            .await
            .map_err(|e| format!("kube configuration: {e}"))?,
    };
    kube::Client::try_from(config).map_err(|e| format!("kube client: {e}"))
}

/// One renewal: read, then create or replace.
async fn renew_once(api: &Api<Lease>, node: &str, timing: &LeaseTiming) -> Result<(), String> {
    let name = lease_name(node);
    let current = api
        .get_opt(&name)
        .await
        .map_err(|e| format!("reading Lease {LEASE_NAMESPACE}/{name}: {e}"))?;
    let create = current.is_none();
    let lease = renewed(current, node, Timestamp::now(), timing);
    let result = if create {
        api.create(&PostParams::default(), &lease).await
    } else {
        api.replace(&name, &PostParams::default(), &lease).await
    };
    result
        .map(|_| ())
        .map_err(|e| format!("writing Lease {LEASE_NAMESPACE}/{name}: {e}"))
}

async fn renew_loop(access: KubeAccess, node: String, health: Health, timing: LeaseTiming) {
    let mut api = None;
    let mut last_error: Option<String> = None;
    let mut was_healthy = false;
    loop {
        if api.is_none() {
            match client(&access).await {
                Ok(c) => api = Some(Api::<Lease>::namespaced(c, LEASE_NAMESPACE)),
                Err(e) => {
                    if last_error.as_ref() != Some(&e) {
                        tracing::error!("node Lease: {e}; retrying");
                        last_error = Some(e);
                    }
                }
            }
        }
        if let Some(api) = &api {
            let ok = healthy(&health.lock());
            if ok {
                match renew_once(api, &node, &timing).await {
                    Ok(()) => {
                        if last_error.take().is_some() || !was_healthy {
                            tracing::info!(lease = %lease_name(&node), "renewing the node Lease");
                        }
                    }
                    Err(e) => {
                        if last_error.as_ref() != Some(&e) {
                            tracing::warn!("node Lease: {e}");
                            last_error = Some(e);
                        }
                    }
                }
            } else if was_healthy {
                tracing::warn!("the last apply failed: no longer renewing the node Lease");
            }
            was_healthy = ok;
        }
        tokio::time::sleep(timing.renew_every).await;
    }
}

/// Starts the renewer thread; it runs until the process exits.
pub fn spawn(
    access: KubeAccess,
    node: String,
    health: Health,
    timing: LeaseTiming,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the Lease runtime: {e}"))?;
    std::thread::Builder::new()
        .name("raven-lease".to_owned())
        .spawn(move || rt.block_on(renew_loop(access, node, health, timing)))
        .map_err(|e| format!("starting the Lease thread: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn name_matches_the_controller_contract() {
        assert_eq!(lease_name("edge-1"), "raven-node-edge-1");
    }

    #[test]
    fn access_prefers_the_flag_then_the_environment() {
        let p = PathBuf::from("/k");
        assert_eq!(
            access(Some(p.clone()), None, None),
            Some(KubeAccess::Kubeconfig(p))
        );
        assert_eq!(access(None, Some("/x"), None), Some(KubeAccess::Infer));
        assert_eq!(
            access(None, None, Some("10.0.0.1")),
            Some(KubeAccess::Infer)
        );
        assert_eq!(access(None, Some(""), Some("")), None);
        assert_eq!(access(None, None, None), None);
    }

    #[test]
    fn renews_only_after_a_successful_apply() {
        let mut s = HealthState::default();
        assert!(!healthy(&s), "no apply yet");
        s.last_apply = Some(Err("netlink".into()));
        assert!(!healthy(&s));
        s.last_apply = Some(Ok(()));
        assert!(healthy(&s));
    }

    #[test]
    fn creates_then_renews_keeping_acquire_time_and_resource_version() {
        let t = LeaseTiming::default();
        let first = renewed(None, "n1", at("2025-01-01T00:00:00Z"), &t);
        assert_eq!(first.metadata.name.as_deref(), Some("raven-node-n1"));
        assert_eq!(first.metadata.namespace.as_deref(), Some("kube-system"));
        let spec = first.spec.clone().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.acquire_time, spec.renew_time);

        let mut stored = first;
        stored.metadata.resource_version = Some("42".into());
        let second = renewed(Some(stored), "n1", at("2025-01-01T00:00:05Z"), &t);
        assert_eq!(second.metadata.resource_version.as_deref(), Some("42"));
        let spec2 = second.spec.unwrap();
        assert_eq!(spec2.acquire_time, spec.acquire_time);
        assert_eq!(
            spec2.renew_time,
            Some(MicroTime(at("2025-01-01T00:00:05Z")))
        );
    }

    #[test]
    fn takes_over_a_lease_held_by_someone_else() {
        let other = Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some("old".into()),
                ..Default::default()
            }),
        };
        let l = renewed(
            Some(other),
            "n1",
            at("2025-01-01T00:00:00Z"),
            &LeaseTiming::default(),
        );
        let spec = l.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(spec.acquire_time, spec.renew_time);
    }
}
