//! A real kube-apiserver set up for proxy certificates through the CSR API: raven-controller
//! (the binary, as its ServiceAccount, with the RBAC of `deploy/rbac`) approves and signs; node
//! identities `system:node:<name>` (token-file users in `system:nodes`) get raven-node's
//! ClusterRole from `deploy/rbac/node`, bound to that group as the ServiceAccount has it in a
//! cluster; each node has an InternalIP (the controller only signs IP SANs it can attribute to
//! the requesting node). Shared by the CSR tests and the CSR-to-tunnel test.

use std::path::PathBuf;

use serde_json::json;

use crate::kube::{ControllerProcess, KubeApiServer, KubeError, TestUser, controller_user};

/// The API server and the signing controller; both stop on drop.
#[derive(Debug)]
pub struct CsrCluster {
    /// The API server.
    pub api: KubeApiServer,
    /// raven-controller, started with `--proxy-cert-hours 1` (its shortest lifetime).
    pub controller: ControllerProcess,
}

/// The token-file identity of node `name`.
pub fn node_user(name: &str) -> TestUser {
    TestUser {
        name: format!("system:node:{name}"),
        token: format!("token-{name}"),
        groups: vec!["system:nodes".into()],
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl CsrCluster {
    /// Starts the API server with one user per node, applies the RBAC, creates the nodes with
    /// their InternalIPs and starts the controller.
    pub fn start(nodes: &[(&str, String)]) -> Result<Self, KubeError> {
        let ctl = controller_user();
        let mut users = vec![ctl.clone()];
        users.extend(nodes.iter().map(|(n, _)| node_user(n)));
        let api = KubeApiServer::start_with_users(&users)?;
        api.apply_dir(&repo().join("deploy/rbac"))?;
        api.apply_dir(&repo().join("deploy/rbac/node"))?;
        let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "raven-node-test-nodes"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "raven-node"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}]});
        api.admin(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            Some(&crb.to_string()),
        )?;
        for (n, ip) in nodes {
            let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}});
            api.admin("POST", "/api/v1/nodes", Some(&node.to_string()))?;
            let st = json!({"status": {"addresses": [{"type": "InternalIP", "address": ip}]}});
            api.admin(
                "PATCH",
                &format!("/api/v1/nodes/{n}/status"),
                Some(&st.to_string()),
            )?;
        }
        let kc = api.kubeconfig("raven-controller", &ctl.token)?;
        let controller = ControllerProcess::start(
            &kc,
            api.dir().join("controller.log"),
            &["--no-nodepools", "--no-webhooks", "--proxy-cert-hours", "1"],
        )?;
        Ok(Self { api, controller })
    }
}
