//! The node a pod-bound ServiceAccount token speaks for: the API server copies the bound pod's
//! name and UID into the user's `extra` (`authentication.kubernetes.io/pod-name`, `/pod-uid`);
//! the pod must still exist with that UID, and its `spec.nodeName` is the node. Used by the CSR
//! approver and the Gateway admission check: every raven-node pod shares one ServiceAccount,
//! so only the pod binding tells the nodes apart. Both also map a request's user to the node
//! it speaks for the same way ([`identity`], pure).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use raven_api::wellknown::{EXTRA_POD_NAME, EXTRA_POD_UID};

/// The node a request's user speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Neither a node nor raven-node's ServiceAccount.
    Other,
    /// This node: `system:node:<n>` in `system:nodes`, or raven-node's ServiceAccount with a
    /// token bound to a pod on `<n>`.
    Node(String),
    /// raven-node's ServiceAccount without a pod binding that names a node.
    UnboundAgent,
}

/// The node `username` (in `groups`) speaks for, given raven-node's ServiceAccount user name
/// and, for that account, the node of its token's pod (`None` when unbound or unknown). Pure.
pub fn identity(
    username: &str,
    groups: &[String],
    raven_node_user: &str,
    pod_node: Option<&str>,
) -> Identity {
    if let Some(n) = username.strip_prefix("system:node:")
        && groups.iter().any(|g| g == "system:nodes")
        && !n.is_empty()
    {
        return Identity::Node(n.to_owned());
    }
    if username == raven_node_user {
        return match pod_node {
            Some(n) if !n.is_empty() => Identity::Node(n.to_owned()),
            _ => Identity::UnboundAgent,
        };
    }
    Identity::Other
}

/// For raven-node's ServiceAccount with a pod binding, the node of that pod (looked up in
/// `namespace`); `None` for every other user or binding.
pub async fn agent_pod_node(
    client: &Client,
    namespace: &str,
    raven_node_user: &str,
    username: &str,
    pod: Option<&(String, String)>,
) -> Result<Option<String>, String> {
    match pod {
        Some(pod) if username == raven_node_user => node_of_pod(client, namespace, pod).await,
        _ => Ok(None),
    }
}

/// The `(pod name, pod UID)` a user's `extra` binds it to, if any.
pub fn pod_binding(extra: &BTreeMap<String, Vec<String>>) -> Option<(String, String)> {
    let first = |k: &str| extra.get(k).and_then(|v| v.first()).cloned();
    Some((first(EXTRA_POD_NAME)?, first(EXTRA_POD_UID)?))
}

/// The node of the pod `(name, uid)` in `namespace`: `None` when the pod is gone or was
/// replaced (another UID) or is not scheduled; `Err` on an API error.
pub async fn node_of_pod(
    client: &Client,
    namespace: &str,
    (name, uid): &(String, String),
) -> Result<Option<String>, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match pods.get_opt(name).await {
        Ok(Some(p)) if p.metadata.uid.as_deref() == Some(uid.as_str()) => {
            Ok(p.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty()))
        }
        Ok(_) => Ok(None),
        Err(e) => Err(format!("get pod {namespace}/{name}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_needs_both_name_and_uid() {
        let extra = |kv: &[(&str, &str)]| -> BTreeMap<String, Vec<String>> {
            kv.iter()
                .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
                .collect()
        };
        assert_eq!(
            pod_binding(&extra(&[(EXTRA_POD_NAME, "p"), (EXTRA_POD_UID, "u")])),
            Some(("p".to_owned(), "u".to_owned()))
        );
        assert_eq!(pod_binding(&extra(&[(EXTRA_POD_NAME, "p")])), None);
        assert_eq!(pod_binding(&extra(&[])), None);
        let mut empty = extra(&[(EXTRA_POD_UID, "u")]);
        empty.insert(EXTRA_POD_NAME.to_owned(), Vec::new());
        assert_eq!(pod_binding(&empty), None);
    }
}
