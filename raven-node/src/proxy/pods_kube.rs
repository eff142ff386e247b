//! The front side's [`PodLocator`] in Kubernetes mode: kubelet streaming paths
//! (`containerLogs`, `exec`, `attach`, `portForward`) name a Pod, and the request must go to
//! the node that runs it (`spec.nodeName`), whatever `Host` says (the API server may send its
//! own). One GET of the Pod, cached briefly.
//!
//! Why a GET and not a watch: a DaemonSet pod on every proxy server caching every Pod of the
//! cluster costs memory proportional to the cluster for requests that are rare (logs, exec).
//! Upstream does an uncached GET per request; we cache answers (found: [`PodCacheTtl::found`],
//! default 30 s; not found or not scheduled: [`PodCacheTtl::missing`], default 2 s, so a pod
//! created a moment ago is found soon) with at most [`MAX_CACHE`] entries. A pod's node never
//! changes while it exists; a pod deleted and re-created under the same name elsewhere is
//! routed to its old node for at most the found TTL, where the kubelet answers 404.
//!
//! API errors are [`AuthUnavailable`] (the front answers 503) and never cached. RBAC: `get` on
//! `pods` (deploy/rbac/node).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;

use super::front::{AuthUnavailable, LocateFuture, PodLocator};

/// Most cached answers.
pub const MAX_CACHE: usize = 4096;

/// How long answers are cached.
#[derive(Clone, Copy, Debug)]
pub struct PodCacheTtl {
    /// A scheduled pod's node.
    pub found: Duration,
    /// No such pod, or not scheduled yet.
    pub missing: Duration,
}

impl Default for PodCacheTtl {
    fn default() -> Self {
        Self {
            found: Duration::from_secs(30),
            missing: Duration::from_secs(2),
        }
    }
}

type Cache = HashMap<(String, String), (Instant, Option<String>)>;

/// Pod → node through the API server.
pub struct KubePodLocator {
    client: Client,
    ttl: PodCacheTtl,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for KubePodLocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubePodLocator")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The node of a Pod object: `spec.nodeName` when set and non-empty. Pure.
pub fn node_of_pod(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

impl KubePodLocator {
    /// Uses `client` (raven-node's identity: needs `get` on pods).
    pub fn new(client: Client, ttl: PodCacheTtl) -> Self {
        Self {
            client,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, key: &(String, String)) -> Option<Option<String>> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(key)
            .filter(|(exp, _)| *exp > Instant::now())
            .map(|(_, v)| v.clone())
    }

    fn remember(&self, key: (String, String), node: Option<String>) {
        let ttl = if node.is_some() {
            self.ttl.found
        } else {
            self.ttl.missing
        };
        if let Ok(mut cache) = self.cache.lock() {
            let now = Instant::now();
            if cache.len() >= MAX_CACHE {
                cache.retain(|_, (exp, _)| *exp > now);
                if cache.len() >= MAX_CACHE {
                    cache.clear();
                }
            }
            cache.insert(key, (now + ttl, node));
        }
    }

    /// The node running `namespace/pod`: `Ok(None)` when there is no such Pod or it is not
    /// scheduled.
    pub async fn lookup(&self, namespace: &str, pod: &str) -> Result<Option<String>, String> {
        let key = (namespace.to_owned(), pod.to_owned());
        if let Some(hit) = self.cached(&key) {
            return Ok(hit);
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let found = api
            .get_opt(pod)
            .await
            .map_err(|e| format!("GET pod {namespace}/{pod}: {e}"))?;
        let node = found.as_ref().and_then(node_of_pod);
        self.remember(key, node.clone());
        Ok(node)
    }
}

impl PodLocator for KubePodLocator {
    fn node_of<'a>(&'a self, namespace: &'a str, pod: &'a str) -> LocateFuture<'a> {
        Box::pin(async move { self.lookup(namespace, pod).await.map_err(AuthUnavailable) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_of_pod_needs_a_scheduled_pod() {
        let pod = |v: serde_json::Value| -> Pod { serde_json::from_value(v).expect("pod") };
        assert_eq!(
            node_of_pod(&pod(
                serde_json::json!({"spec": {"nodeName": "edge-1", "containers": []}})
            )),
            Some("edge-1".to_owned())
        );
        assert_eq!(
            node_of_pod(&pod(
                serde_json::json!({"spec": {"nodeName": "", "containers": []}})
            )),
            None
        );
        assert_eq!(
            node_of_pod(&pod(serde_json::json!({"spec": {"containers": []}}))),
            None
        );
        assert_eq!(node_of_pod(&pod(serde_json::json!({}))), None);
    }
}
