//! What a node agent may change in a Gateway, pure and table-tested.
//!
//! raven-node's RBAC has to let it patch Gateways: each node writes its WireGuard public key
//! and, while it is an active tunnel endpoint, its public IP into its own tunnel endpoints
//! (`raven-node/src/daemon/writeback.rs`). RBAC cannot say "only your own endpoint", and every
//! node shares the ServiceAccount, so without this check root on one edge node could rewrite
//! every Gateway: expose its own, point another domain's endpoint at itself, turn the proxy
//! on or off. The validating webhook binds those writes to the node:
//! - the writer's node comes from the request's user: `system:node:<n>` in `system:nodes`, or
//!   the raven-node ServiceAccount with a pod-bound token whose pod runs on `<n>` (resolved by
//!   the server, as the CSR approver does; [`Writer`]);
//! - a node may only UPDATE, and only `publicIP` and `config.publicKey` of endpoints of type
//!   tunnel whose `nodeName` is its own, in place (same list positions: the agent's merge
//!   patch carries every endpoint as read). Everything else in the spec, and the labels,
//!   annotations, finalizers and owner references, must stay as they were;
//! - a raven-node token bound to no pod (or to a pod that is gone) may change nothing: every
//!   node shares that account, so the account alone names no node.
//!
//! Every other user (administrators, raven-controller, GitOps tools) is not checked here.

use raven_api::gateway::EndpointType;
use raven_api::gateway::v1beta1::Gateway;
use raven_api::wellknown::CONFIG_PUBLIC_KEY;

pub use crate::bound_pod::Identity as Writer;

/// The request's user, as the admission request carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// `userInfo.username`.
    pub username: String,
    /// `userInfo.groups`.
    pub groups: Vec<String>,
}

/// The writer, given the raven-node ServiceAccount's user name and, for that account, the node
/// of the pod its token is bound to ([`crate::bound_pod::identity`]).
pub fn writer(user: &UserInfo, raven_node_user: &str, pod_node: Option<&str>) -> Writer {
    crate::bound_pod::identity(&user.username, &user.groups, raven_node_user, pod_node)
}

/// Whether `writer` may turn `old` into `new` (`old` is `None` on CREATE). `Err` says what it
/// touched that is not its own.
pub fn check(writer: &Writer, old: Option<&Gateway>, new: &Gateway) -> Result<(), String> {
    let node = match writer {
        Writer::Other => return Ok(()),
        Writer::UnboundAgent => {
            return Err(
                "the raven-node token is not bound to a pod on a node (use a \
                        projected, pod-bound ServiceAccount token); node agents may change \
                        only their own endpoints"
                    .to_owned(),
            );
        }
        Writer::Node(n) => n,
    };
    let Some(old) = old else {
        return Err(format!("node {node:?} may not create Gateways"));
    };
    let (om, nm) = (&old.metadata, &new.metadata);
    for (what, same) in [
        ("labels", om.labels == nm.labels),
        ("annotations", om.annotations == nm.annotations),
        ("finalizers", om.finalizers == nm.finalizers),
        (
            "ownerReferences",
            om.owner_references == nm.owner_references,
        ),
    ] {
        if !same {
            return Err(format!("node {node:?} may not change metadata.{what}"));
        }
    }
    if old.spec.endpoints.len() != new.spec.endpoints.len() {
        return Err(format!(
            "node {node:?} may not add or remove endpoints ({} -> {})",
            old.spec.endpoints.len(),
            new.spec.endpoints.len()
        ));
    }
    // Take the node's own fields from `new` into a copy of `old`: what remains different was
    // not the node's to change.
    let mut allowed = old.spec.clone();
    for (i, (o, n)) in old
        .spec
        .endpoints
        .iter()
        .zip(&new.spec.endpoints)
        .enumerate()
    {
        let own = |e: &raven_api::gateway::v1beta1::Endpoint| {
            e.node_name == *node && e.type_ == EndpointType::Tunnel
        };
        if !(own(o) && own(n)) {
            if o != n {
                return Err(format!(
                    "node {node:?} may not change spec.endpoints[{i}] (node {:?}, type {}): \
                     only its own tunnel endpoints' publicIP and config.{CONFIG_PUBLIC_KEY}",
                    o.node_name, o.type_
                ));
            }
            continue;
        }
        let e = &mut allowed.endpoints[i];
        e.public_ip.clone_from(&n.public_ip);
        match n.config.get(CONFIG_PUBLIC_KEY) {
            Some(k) => e.config.insert(CONFIG_PUBLIC_KEY.to_owned(), k.clone()),
            None => e.config.remove(CONFIG_PUBLIC_KEY),
        };
        if *e != *n {
            return Err(format!(
                "node {node:?} may change only publicIP and config.{CONFIG_PUBLIC_KEY} of its \
                 tunnel endpoint spec.endpoints[{i}]"
            ));
        }
    }
    if allowed != new.spec {
        return Err(format!(
            "node {node:?} may not change the Gateway's spec beyond its own tunnel endpoints"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "node_writes_tests.rs"]
mod tests;
