//! Kubernetes mode: the proxy's certificates come from the CSR API (`proxy::certs_kube`,
//! signed by raven-controller), requested as the node's role requires and renewed before
//! expiry, into files the tunnel and the front side reload without a restart.
//!
//! - The **client** certificate (`raven.openyurt.io/proxy-client`, CN
//!   `raven-proxy-client:<node>`) is kept for as long as the daemon runs: any node may become
//!   a tunnel client (solo nodes, edge endpoints, cloud endpoints towards other exposed
//!   Gateways), and the tunnel loads its client material before any role starts.
//! - The **server** certificate (`raven.openyurt.io/proxy-server`, CN
//!   `raven-proxy-server:<node>`) is requested only while the Gateways make this node a tunnel
//!   server, with the names edge clients dial: DNS = the node name, IP = the public IPs of this
//!   node's active proxy endpoints and its `privateIP` (what the controller accepts). When that
//!   set changes, a new certificate is requested (upstream re-creates its server on a public
//!   IP change for the same reason, openyurt#2191). It serves both the tunnel listener and the
//!   HTTPS front side.
//! - The **front** certificate (`kubernetes.io/kube-apiserver-client`, CN
//!   `raven-proxy-front:<node>`, O `raven:proxy-fronts`), when [`CsrSettings::front`] is on:
//!   the front side's client certificate towards kubelets. Requested with the server role
//!   (raven-controller approves it only for proxy servers; kube-controller-manager signs it
//!   with the cluster CA), and deleted when the role goes: it may call every kubelet's API, so
//!   a node keeps it only while it needs it. Its lifetime is asked as [`FRONT_LIFETIME`].
//!
//! Shape: [`server_names`] is the pure plan (table-tested); [`ProxyCsr`] runs one
//! `certs_kube::run` task per wanted certificate on the proxy's runtime and replaces the
//! server task when the plan changes.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use raven_api::gateway::EndpointType;
use raven_api::gateway::v1beta1::Gateway;
use tokio::task::JoinHandle;

use crate::proxy::certs_kube::{self, CertKind, KubeCertConfig};
use crate::proxy::tunnel::certs::CertPaths;
use crate::proxy::tunnel::view::ProxyView;

/// Where and how the certificates are requested (from the command line).
#[derive(Clone, Debug, PartialEq)]
pub struct CsrSettings {
    /// Directory of the files (`proxy-{client,server}-current.pem`, `proxy-*-ca.crt`).
    pub dir: PathBuf,
    /// Fraction of the lifetime after which a certificate is renewed.
    pub renew_fraction: f64,
    /// How long one CSR may wait for raven-controller.
    pub wait_timeout: Duration,
    /// Request the front side's kubelet client certificate while a proxy server (off when the
    /// front is off or given that certificate as files).
    pub front: bool,
}

/// The front certificate's requested lifetime (`spec.expirationSeconds`): kube-controller-
/// manager ≥ 1.22 honours it (older ones sign for `--cluster-signing-duration`), so a node
/// that lost the server role holds a working copy for at most a day.
pub const FRONT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

impl CsrSettings {
    /// Defaults in `dir`: renew at 2/3 of the lifetime, wait 5 minutes per CSR.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            renew_fraction: 2.0 / 3.0,
            wait_timeout: Duration::from_secs(300),
            front: false,
        }
    }

    fn cfg(&self, node: &str, kind: CertKind) -> KubeCertConfig {
        let mut c = KubeCertConfig::new(node, kind, &self.dir);
        c.renew_fraction = self.renew_fraction;
        c.wait_timeout = self.wait_timeout;
        if kind == CertKind::Front {
            c.expiration = Some(FRONT_LIFETIME);
        }
        c
    }

    /// The client certificate's files, as the tunnel reads them.
    pub fn client_paths(&self, node: &str) -> CertPaths {
        self.cfg(node, CertKind::Client).cert_paths()
    }

    /// The server certificate's files, as the tunnel listener and the front side read them.
    pub fn server_paths(&self, node: &str) -> CertPaths {
        self.cfg(node, CertKind::Server).cert_paths()
    }

    /// The front certificate's file (certificate and key), as the front's kubelet leg reads it.
    pub fn front_pair_path(&self, node: &str) -> PathBuf {
        self.cfg(node, CertKind::Front).pair_path()
    }
}

/// The names a server certificate must carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerNames {
    /// DNS names (the node name).
    pub dns: Vec<String>,
    /// IP addresses, sorted and de-duplicated.
    pub ips: Vec<IpAddr>,
}

/// The server certificate `node` needs now: `None` unless the Gateways make it a tunnel
/// server; else its names (public IPs of its active proxy endpoints, its `privateIP`). Pure.
pub fn server_names(gateways: &[Gateway], node: &str) -> Option<ServerNames> {
    ProxyView::build(gateways).roles(node).server?;
    let mut ips = BTreeSet::new();
    for gw in gateways {
        let Some(status) = &gw.status else { continue };
        ips.extend(
            status
                .active_endpoints_of(EndpointType::Proxy)
                .filter(|e| e.node_name == node)
                .filter_map(|e| e.public_ip_addr()),
        );
        ips.extend(
            status
                .node(node)
                .and_then(|n| n.private_ip.parse::<IpAddr>().ok()),
        );
    }
    Some(ServerNames {
        dns: vec![node.to_owned()],
        ips: ips.into_iter().collect(),
    })
}

struct Tasks {
    client: Option<JoinHandle<()>>,
    server: Option<(ServerNames, JoinHandle<()>)>,
    front: Option<JoinHandle<()>>,
}

/// The running certificate requesters; dropping it stops them (the files stay).
pub struct ProxyCsr {
    node: String,
    settings: CsrSettings,
    client: kube::Client,
    rt: tokio::runtime::Handle,
    tasks: Mutex<Tasks>,
}

impl std::fmt::Debug for ProxyCsr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyCsr")
            .field("node", &self.node)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn spawn_kind(
    rt: &tokio::runtime::Handle,
    client: &kube::Client,
    cfg: KubeCertConfig,
) -> JoinHandle<()> {
    let client = client.clone();
    let kind = cfg.kind;
    rt.spawn(async move {
        if let Err(e) = std::fs::create_dir_all(&cfg.dir) {
            tracing::warn!(dir = %cfg.dir.display(), "proxy certificates: creating the directory: {e}");
        }
        certs_kube::run(client, cfg, move |issued| {
            tracing::info!(?kind, serial = %issued.serial, not_after = issued.not_after,
                renew_at = issued.renew_at, "proxy certificate in place");
        })
        .await;
    })
}

impl ProxyCsr {
    /// Starts the client certificate's requester on `rt` (the proxy's runtime); the server
    /// certificate follows [`ProxyCsr::update`].
    pub fn start(
        rt: tokio::runtime::Handle,
        client: kube::Client,
        node: &str,
        settings: CsrSettings,
    ) -> Self {
        let task = spawn_kind(&rt, &client, settings.cfg(node, CertKind::Client));
        Self {
            node: node.to_owned(),
            settings,
            client,
            rt,
            tasks: Mutex::new(Tasks {
                client: Some(task),
                server: None,
                front: None,
            }),
        }
    }

    /// Feeds a Gateway snapshot: starts, replaces (names changed) or stops the server
    /// certificate's requester. A stopped requester leaves its files (a node that becomes a
    /// server again reuses a still-valid certificate with the same names). The front
    /// certificate's requester starts and stops with the server role; its file is deleted
    /// when the role goes.
    pub fn update(&self, gateways: &[Gateway]) {
        let want = server_names(gateways, &self.node);
        let mut tasks = match self.tasks.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        self.update_front(&mut tasks, want.is_some() && self.settings.front);
        if tasks.server.as_ref().map(|(n, _)| n) == want.as_ref() {
            return;
        }
        if let Some((_, old)) = tasks.server.take() {
            old.abort();
        }
        if let Some(names) = want {
            tracing::info!(dns = ?names.dns, ips = ?names.ips, "proxy server certificate wanted");
            let mut cfg = self.settings.cfg(&self.node, CertKind::Server);
            cfg.dns_names = names.dns.clone();
            cfg.ips = names.ips.clone();
            let task = spawn_kind(&self.rt, &self.client, cfg);
            tasks.server = Some((names, task));
        } else {
            tracing::info!("proxy server certificate no longer wanted (not a tunnel server)");
        }
    }
}

impl ProxyCsr {
    fn update_front(&self, tasks: &mut Tasks, wanted: bool) {
        match (wanted, tasks.front.take()) {
            (true, Some(running)) => tasks.front = Some(running),
            (true, None) => {
                tracing::info!("proxy front kubelet client certificate wanted (proxy server)");
                let cfg = self.settings.cfg(&self.node, CertKind::Front);
                tasks.front = Some(spawn_kind(&self.rt, &self.client, cfg));
            }
            (false, Some(running)) => {
                // The requester may be inside its (synchronous) file write right now: delete
                // once it has really stopped, so the file cannot come back after the delete.
                running.abort();
                let path = self.settings.front_pair_path(&self.node);
                self.rt.spawn(async move {
                    let _ = running.await;
                    delete_front_file(&path);
                });
            }
            // Also a file left from before a restart, when the role was lost meanwhile.
            (false, None) => delete_front_file(&self.settings.front_pair_path(&self.node)),
        }
    }
}

/// Deletes the front certificate's file (absent is fine).
fn delete_front_file(path: &std::path::Path) {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(),
            "proxy front kubelet client certificate deleted (not a proxy server)"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(),
            "deleting the proxy front kubelet client certificate: {e}"),
    }
}

impl Drop for ProxyCsr {
    fn drop(&mut self) {
        let tasks = match self.tasks.get_mut() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(t) = tasks.client.take() {
            t.abort();
        }
        if let Some((_, t)) = tasks.server.take() {
            t.abort();
        }
        if let Some(t) = tasks.front.take() {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(v: serde_json::Value) -> Gateway {
        serde_json::from_value(v).expect("gateway")
    }

    fn gateways() -> Vec<Gateway> {
        vec![
            gw(serde_json::json!({
                "apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
                "metadata": {"name": "cloud"},
                "spec": {"exposeType": "PublicIP", "proxyConfig": {"Replicas": 2},
                         "endpoints": [
                             {"nodeName": "c1", "type": "proxy", "port": 10262, "publicIP": "1.2.3.4"},
                             {"nodeName": "c1", "type": "proxy", "port": 10262, "publicIP": "1.2.3.5"},
                             {"nodeName": "c2", "type": "proxy", "port": 10262, "publicIP": "1.2.3.6"}]},
                "status": {"nodes": [{"nodeName": "c1", "privateIP": "10.0.0.1", "subnets": []},
                                     {"nodeName": "c2", "privateIP": "10.0.0.2", "subnets": []},
                                     {"nodeName": "c3", "privateIP": "10.0.0.3", "subnets": []}],
                           "activeEndpoints": [
                             {"nodeName": "c1", "type": "proxy", "port": 10262, "publicIP": "1.2.3.5"},
                             {"nodeName": "c1", "type": "proxy", "port": 10262, "publicIP": "1.2.3.4"},
                             {"nodeName": "c2", "type": "proxy", "port": 10262, "publicIP": "1.2.3.6"}]}
            })),
            gw(serde_json::json!({
                "apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
                "metadata": {"name": "edge"},
                "spec": {"proxyConfig": {"Replicas": 1},
                         "endpoints": [{"nodeName": "e1", "type": "proxy", "port": 10262}]},
                "status": {"nodes": [{"nodeName": "e1", "privateIP": "10.1.0.1", "subnets": []}],
                           "activeEndpoints": [{"nodeName": "e1", "type": "proxy", "port": 10262}]}
            })),
        ]
    }

    #[test]
    fn server_names_follow_the_server_role() {
        let g = gateways();
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        for (node, want) in [
            // Two public IPs of its own, sorted, plus its privateIP; never c2's.
            (
                "c1",
                Some(vec![ip("1.2.3.4"), ip("1.2.3.5"), ip("10.0.0.1")]),
            ),
            ("c2", Some(vec![ip("1.2.3.6"), ip("10.0.0.2")])),
            // A cloud member that is not an active endpoint, an edge endpoint, a stranger.
            ("c3", None),
            ("e1", None),
            ("nobody", None),
        ] {
            let got = server_names(&g, node);
            assert_eq!(got.as_ref().map(|n| n.ips.clone()), want, "{node}");
            if let Some(n) = got {
                assert_eq!(n.dns, vec![node.to_owned()]);
            }
        }
        // Proxy off for the cloud Gateway: nobody serves.
        let mut off = gateways();
        off[0].spec.proxy_config.replicas = 0;
        assert_eq!(server_names(&off, "c1"), None);
        // No Gateways at all.
        assert_eq!(server_names(&[], "c1"), None);
    }

    #[test]
    fn paths_are_the_pair_files() {
        let s = CsrSettings::new("/var/lib/raven/proxy".into());
        let c = s.client_paths("n");
        assert_eq!(c.cert, c.key);
        assert!(c.cert.ends_with("proxy-client-current.pem"), "{c:?}");
        assert!(c.ca.ends_with("proxy-client-ca.crt"), "{c:?}");
        let sv = s.server_paths("n");
        assert!(sv.cert.ends_with("proxy-server-current.pem"), "{sv:?}");
        assert!(s.front_pair_path("n").ends_with("proxy-front-current.pem"));
        assert_eq!(s.cfg("n", CertKind::Front).expiration, Some(FRONT_LIFETIME));
        assert_eq!(s.cfg("n", CertKind::Server).expiration, None);
    }
}
