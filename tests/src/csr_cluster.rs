//! A real kube-apiserver set up for proxy certificates through the CSR API: raven-controller
//! (the binary, as its ServiceAccount, with the RBAC of `deploy/rbac`) approves and signs; node
//! identities `system:node:<name>` (token-file users in `system:nodes`) get raven-node's
//! ClusterRole from `deploy/rbac/node`, bound to that group as the ServiceAccount has it in a
//! cluster; each node has an InternalIP (the controller only signs IP SANs it can attribute to
//! the requesting node). Shared by the CSR tests and the CSR-to-tunnel test.
//!
//! [`CsrCluster::start_with_cluster_signer`] adds what the proxy front's kubelet client
//! certificate needs: the cluster CA kube-apiserver trusts, kube-controller-manager signing
//! `kubernetes.io/kube-apiserver-client` with it, the Gateway CRD and `raven-cfg` (the
//! controller approves that certificate only for proxy servers, which it elects from Gateways),
//! and Ready nodes labelled with their Gateway.

use std::path::PathBuf;

use serde_json::json;

use crate::cluster_signer::{ClusterCa, ControllerManager};
use crate::kube::{ControllerProcess, KubeApiServer, KubeError, TestUser, controller_user};

/// The cluster's own signer: its CA and kube-controller-manager.
#[derive(Debug)]
pub struct ClusterSigner {
    /// kube-controller-manager (stopped first on drop).
    pub kcm: ControllerManager,
    /// The CA kube-apiserver trusts for client certificates.
    pub ca: ClusterCa,
}

/// The API server and the signing controller; both stop on drop.
#[derive(Debug)]
pub struct CsrCluster {
    /// The cluster's own signer, when started with it.
    pub signer: Option<ClusterSigner>,
    /// raven-controller, started with `--proxy-cert-hours 1` (its shortest lifetime).
    pub controller: ControllerProcess,
    /// The API server.
    pub api: KubeApiServer,
}

/// A kube client as the token-file user `name` (the kube-rs client raven-node uses).
pub async fn node_client(api: &KubeApiServer, name: &str, token: &str) -> kube::Client {
    let path = api.kubeconfig(name, token).expect("kubeconfig");
    let kc = kube::config::Kubeconfig::read_from(&path).expect("read kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

/// A node of a cluster with Gateways: name, InternalIP and the Gateway it belongs to.
#[derive(Clone, Debug)]
pub struct GatewayNode<'a> {
    /// Node name.
    pub name: &'a str,
    /// InternalIP.
    pub ip: String,
    /// Value of its `raven.openyurt.io/gateway` label.
    pub gateway: &'a str,
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
        let nodes: Vec<(&str, String, Option<&str>)> =
            nodes.iter().map(|(n, ip)| (*n, ip.clone(), None)).collect();
        Self::start_inner(&nodes, None)
    }

    /// Like [`start`](Self::start), plus the cluster's own signer, the Gateway CRD and
    /// `raven-cfg` with the proxy on; nodes are Ready and labelled with their Gateway.
    pub fn start_with_cluster_signer(nodes: &[GatewayNode<'_>]) -> Result<Self, KubeError> {
        let nodes: Vec<(&str, String, Option<&str>)> = nodes
            .iter()
            .map(|n| (n.name, n.ip.clone(), Some(n.gateway)))
            .collect();
        Self::start_inner(&nodes, Some(ClusterCa::new()?))
    }

    fn start_inner(
        nodes: &[(&str, String, Option<&str>)],
        ca: Option<ClusterCa>,
    ) -> Result<Self, KubeError> {
        let ctl = controller_user();
        let mut users = vec![ctl.clone()];
        users.extend(nodes.iter().map(|(n, _, _)| node_user(n)));
        let ca_flag = ca.as_ref().map(ClusterCa::apiserver_flag);
        let api = KubeApiServer::start_with_args(
            &users,
            &ca_flag.iter().map(String::as_str).collect::<Vec<_>>(),
        )?;
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
        if ca.is_some() {
            let crd =
                std::fs::read_to_string(repo().join("deploy/crds/raven.openyurt.io_gateways.yaml"))
                    .map_err(|e| KubeError(format!("read Gateway CRD: {e}")))?;
            api.create_crd(&crd)?;
            let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "raven-cfg", "namespace": "kube-system"},
                "data": {"enable-l7-proxy": "true", "enable-l3-tunnel": "true"}});
            api.admin(
                "POST",
                "/api/v1/namespaces/kube-system/configmaps",
                Some(&cfg.to_string()),
            )?;
        }
        for (n, ip, gateway) in nodes {
            let labels = gateway
                .map(|g| json!({"raven.openyurt.io/gateway": g}))
                .unwrap_or_else(|| json!({}));
            let node = json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": n, "labels": labels}});
            api.admin("POST", "/api/v1/nodes", Some(&node.to_string()))?;
            let mut st = json!({"status": {"addresses": [{"type": "InternalIP", "address": ip}]}});
            if gateway.is_some() {
                st["status"]["conditions"] = json!([{"type": "Ready", "status": "True",
                    "reason": "Test", "lastHeartbeatTime": "2025-01-01T00:00:00Z",
                    "lastTransitionTime": "2025-01-01T00:00:00Z"}]);
            }
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
        let signer = match ca {
            Some(ca) => Some(ClusterSigner {
                kcm: ControllerManager::start(&api, &ca, "1h")?,
                ca,
            }),
            None => None,
        };
        Ok(Self {
            signer,
            controller,
            api,
        })
    }
}
