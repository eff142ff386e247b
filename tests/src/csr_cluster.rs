//! A real kube-apiserver set up for proxy certificates through the CSR API: raven-controller
//! (the binary, as its ServiceAccount, with the RBAC of `deploy/rbac`) approves and signs; node
//! identities `system:node:<name>` (token-file users in `system:nodes`) get raven-node's
//! ClusterRole from `deploy/rbac/node`, bound to that group as the ServiceAccount has it in a
//! cluster; each node has an InternalIP (the controller only signs IP SANs it can attribute to
//! the requesting node). Shared by the CSR tests and the CSR-to-tunnel test.
//!
//! Proxy server and front certificates go to proxy servers only, which the controller elects
//! from Gateways, so the cluster has the Gateway CRD, `raven-cfg` with the proxy on, and Ready
//! nodes labelled with their Gateway ([`CsrCluster::proxy_gateway`] creates one). The front's
//! kubelet client certificate is signed by the cluster itself: a cluster CA kube-apiserver
//! trusts and kube-controller-manager signing `kubernetes.io/kube-apiserver-client` with it.

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
    /// The cluster's own signer.
    pub signer: ClusterSigner,
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
    /// Starts the API server (trusting the cluster CA) with one user per node, applies the
    /// RBAC, the Gateway CRD and `raven-cfg`, creates the nodes (Ready, with their InternalIP
    /// and Gateway label), and starts raven-controller and kube-controller-manager.
    pub fn start(nodes: &[GatewayNode<'_>]) -> Result<Self, KubeError> {
        let ca = ClusterCa::new()?;
        let ctl = controller_user();
        let mut users = vec![ctl.clone()];
        users.extend(nodes.iter().map(|n| node_user(n.name)));
        let api = KubeApiServer::start_with_args(&users, &[&ca.apiserver_flag()])?;
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
        api.install_gateway_api()?;
        for n in nodes {
            let node = json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": n.name, "labels": {"raven.openyurt.io/gateway": n.gateway}}});
            api.admin("POST", "/api/v1/nodes", Some(&node.to_string()))?;
            let st = json!({"status": {
                "addresses": [{"type": "InternalIP", "address": n.ip}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "Test",
                    "lastHeartbeatTime": "2025-01-01T00:00:00Z",
                    "lastTransitionTime": "2025-01-01T00:00:00Z"}]}});
            api.admin(
                "PATCH",
                &format!("/api/v1/nodes/{}/status", n.name),
                Some(&st.to_string()),
            )?;
        }
        let kc = api.kubeconfig("raven-controller", &ctl.token)?;
        let controller = ControllerProcess::start(
            &kc,
            api.dir().join("controller.log"),
            &["--no-nodepools", "--no-webhooks", "--proxy-cert-hours", "1"],
        )?;
        let signer = ClusterSigner {
            kcm: ControllerManager::start(&api, &ca, "1h")?,
            ca,
        };
        Ok(Self {
            signer,
            controller,
            api,
        })
    }

    /// Creates Gateway `name` with one proxy endpoint on `node` (port `port`, `public_ip` if
    /// given; exposed as PublicIP when `exposed`) and waits until the controller has elected
    /// it active. `proxy_http_ports`: the Gateway's `proxyHTTPPort`, if any.
    pub fn proxy_gateway(
        &self,
        name: &str,
        node: &str,
        public_ip: Option<&str>,
        port: u16,
        proxy_http_ports: Option<&str>,
    ) -> Result<(), KubeError> {
        let mut endpoint = json!({"nodeName": node, "type": "proxy", "port": port});
        let mut gw = json!({"apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
            "metadata": {"name": name},
            "spec": {"proxyConfig": {"Replicas": 1}, "tunnelConfig": {"Replicas": 1}}});
        if let Some(ip) = public_ip {
            endpoint["publicIP"] = json!(ip);
            gw["spec"]["exposeType"] = json!("PublicIP");
        }
        if let Some(p) = proxy_http_ports {
            gw["spec"]["proxyConfig"]["proxyHTTPPort"] = json!(p);
        }
        gw["spec"]["endpoints"] = json!([endpoint]);
        self.api.admin("POST", GATEWAYS, Some(&gw.to_string()))?;
        self.wait_active_proxy(name, node, true)
    }

    /// Waits until the controller has (`want`) or has not elected `node` as an active proxy
    /// endpoint of Gateway `gw`.
    pub fn wait_active_proxy(&self, gw: &str, node: &str, want: bool) -> Result<(), KubeError> {
        crate::kube::wait_for(
            std::time::Duration::from_secs(60),
            &format!("{gw}: {node} active proxy endpoint = {want}"),
            || {
                let g = self
                    .api
                    .get_json(&format!("{GATEWAYS}/{gw}"))
                    .map_err(|e| e.to_string())?;
                let active = g
                    .as_ref()
                    .and_then(|g| g["status"]["activeEndpoints"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .any(|e| e["nodeName"] == node && e["type"] == "proxy");
                Ok((active == want).then_some(()))
            },
        )
        .map(drop)
        .map_err(|e| KubeError(format!("{e}\ncontroller:\n{}", self.controller.log_text())))
    }
}

/// The Gateways collection.
pub const GATEWAYS: &str = "/apis/raven.openyurt.io/v1beta1/gateways";
