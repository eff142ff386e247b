//! [`Proxy`]: runs the proxy roles the Gateways give this node, on its own tokio runtime, so
//! the daemon's synchronous reconcile loop only calls [`Proxy::update`] with each Gateway
//! snapshot. Roles follow the view: the tunnel listener starts when this node becomes a server
//! and stops (dropping every tunnel) when it no longer is; one client task per server replica
//! address, started and stopped as the address set changes; the certificate files are
//! re-checked on a timer (rotation without restart).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use raven_api::gateway::v1beta1::Gateway;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::certs::{CertError, CertPaths, Reloader};
use super::client::{self, EdgeCtx};
use super::dialer::TunnelDialer;
use super::metrics::{ProxyMetrics, l1};
use super::server::{self, ServerCtx, Tunnels};
use super::view::{ProxyView, Roles};
use super::{DEFAULT_TUNNEL_PORT, Timing};

/// Proxy configuration (from the command line).
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// This node's name.
    pub node_name: String,
    /// Tunnel listener address when this node is a server.
    pub listen: SocketAddr,
    /// Certificate files (the tunnel client's, and the server's unless `server_certs`).
    pub certs: CertPaths,
    /// Separate server material for the tunnel listener (Kubernetes mode: the certificate
    /// of the `proxy-server` signer, requested only while this node is a server); loaded when
    /// the server role starts, waited for while absent, reloaded like `certs`. `None`: the
    /// listener uses `certs`.
    pub server_certs: Option<CertPaths>,
    /// Name checked in the server certificate; `None`: the IP address dialed (the server
    /// certificate then carries its public IPs as IP SANs).
    pub server_name: Option<String>,
    /// Where a solo node dials its own ports for the server.
    pub solo_ip: IpAddr,
    /// Timeouts.
    pub timing: Timing,
}

impl ProxyConfig {
    /// Defaults for `node` with certificates at `certs`.
    pub fn new(node: &str, certs: CertPaths) -> Self {
        Self {
            node_name: node.to_owned(),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_TUNNEL_PORT),
            certs,
            server_certs: None,
            server_name: None,
            solo_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            timing: Timing::default(),
        }
    }
}

/// Why the proxy cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Certificates unusable at start.
    #[error("proxy certificates: {0}")]
    Certs(#[from] CertError),
    /// The runtime could not start.
    #[error("proxy runtime: {0}")]
    Runtime(std::io::Error),
}

/// The running proxy. Dropping it stops everything.
#[derive(Debug)]
pub struct Proxy {
    view_tx: watch::Sender<Arc<ProxyView>>,
    server_role: watch::Receiver<bool>,
    dialer: Arc<TunnelDialer>,
    tunnels: Arc<Tunnels>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    /// Loads the certificates and starts the runtime. Certificate files that are present but
    /// unusable are an error now (never a silent retry); files that do not exist yet (a CSR
    /// still pending in Kubernetes mode) are waited for, and no role runs until they appear.
    /// No role runs either until the first [`Proxy::update`].
    ///
    /// Sockets belong to the network namespace of the calling thread (the runtime's threads
    /// are spawned from it).
    pub fn start(config: ProxyConfig, metrics: ProxyMetrics) -> Result<Self, ProxyError> {
        let certs = match Reloader::new(config.certs.clone()) {
            Ok(r) => Some(Arc::new(r)),
            Err(CertError::Read { path, source })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                tracing::warn!(
                    file = %path.display(),
                    "proxy certificate files not there yet; waiting for them"
                );
                None
            }
            Err(e) => return Err(e.into()),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("raven-proxy")
            .enable_all()
            .build()
            .map_err(ProxyError::Runtime)?;
        let (view_tx, view_rx) = watch::channel(Arc::new(ProxyView::default()));
        let tunnels = Arc::new(Tunnels::default());
        let dialer = Arc::new(TunnelDialer::new(
            config.node_name.clone(),
            view_rx.clone(),
            tunnels.clone(),
            metrics.clone(),
            config.timing.clone(),
        ));
        let tunnels2 = tunnels.clone();
        let (role_tx, server_role) = watch::channel(false);
        runtime.spawn(publish_server_role(
            view_rx.clone(),
            config.node_name.clone(),
            role_tx,
        ));
        // The proxy is what churns buffers: reuse them, and its runtime gives freed memory back.
        crate::memory::tune_for_buffer_churn();
        runtime.spawn(crate::memory::trim_loop());
        runtime.spawn(async move {
            let certs = match certs {
                Some(c) => c,
                None => wait_for_certs(&config).await,
            };
            tokio::spawn(reload_loop(
                certs.clone(),
                "tunnel",
                metrics.clone(),
                config.timing.clone(),
            ));
            supervise(config, certs, view_rx, tunnels2, metrics).await;
        });
        Ok(Self {
            view_tx,
            server_role,
            dialer,
            tunnels,
            runtime: Some(runtime),
        })
    }

    /// Feeds a Gateway snapshot; roles and seats follow it.
    pub fn update(&self, gateways: &[Gateway]) {
        let view = ProxyView::build(gateways);
        self.view_tx.send_if_modified(|cur| {
            if **cur == view {
                return false;
            }
            for w in &view.warnings {
                tracing::warn!("proxy view: {w}");
            }
            *cur = Arc::new(view);
            true
        });
    }

    /// The dialer for the front side (meaningful on a server; elsewhere it routes by the same
    /// view but holds no tunnels).
    pub fn dialer(&self) -> Arc<TunnelDialer> {
        self.dialer.clone()
    }

    /// Whether the Gateways make this node a proxy server (an active proxy endpoint of an
    /// exposed Gateway), as it changes; the front side's listeners follow it. The sender goes
    /// away when the proxy stops.
    pub fn server_role(&self) -> watch::Receiver<bool> {
        self.server_role.clone()
    }

    /// The connected tunnels (server side).
    pub fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }

    /// The proxy's runtime, for the front side's listeners.
    pub fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.as_ref().map(|r| r.handle().clone())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Publishes whether `node` is a server in each new view, until the view's sender is dropped.
async fn publish_server_role(
    mut view: watch::Receiver<Arc<ProxyView>>,
    node: String,
    role: watch::Sender<bool>,
) {
    loop {
        let server = view.borrow_and_update().roles(&node).server.is_some();
        role.send_if_modified(|cur| std::mem::replace(cur, server) != server);
        if view.changed().await.is_err() {
            break;
        }
    }
}

/// Polls until the certificate files load (logging each new reason once).
async fn wait_for_certs(config: &ProxyConfig) -> Arc<Reloader> {
    let mut last = String::new();
    loop {
        tokio::time::sleep(config.timing.cert_reload).await;
        match Reloader::new(config.certs.clone()) {
            Ok(r) => {
                tracing::info!("proxy certificate files loaded");
                return Arc::new(r);
            }
            Err(e) => {
                let why = e.to_string();
                if why != last {
                    tracing::warn!("proxy certificates not usable yet: {why}");
                    last = why;
                }
            }
        }
    }
}

/// Reloads `certs` (published as `cert` in the expiry metric) on every tick.
async fn reload_loop(
    certs: Arc<Reloader>,
    cert: &'static str,
    metrics: ProxyMetrics,
    timing: Timing,
) {
    metrics.set_cert_not_after(cert, certs.current().not_after);
    loop {
        tokio::time::sleep(timing.cert_reload).await;
        match certs.reload() {
            Ok(false) => {}
            Ok(true) => {
                metrics.set_cert_not_after(cert, certs.current().not_after);
                metrics
                    .cert_reloads
                    .get_or_create(&l1("result", "rotated"))
                    .inc();
                tracing::info!("proxy certificates rotated; new handshakes use them");
            }
            Err(e) => {
                metrics
                    .cert_reloads
                    .get_or_create(&l1("result", "error"))
                    .inc();
                tracing::warn!("proxy certificates not reloaded (keeping the previous ones): {e}");
            }
        }
    }
}

struct Running {
    listener: Option<JoinHandle<()>>,
    clients: BTreeMap<SocketAddr, JoinHandle<()>>,
    bind_error: Option<String>,
    /// The separate server material once loaded (then reloaded by its own loop).
    server_certs: Option<Arc<Reloader>>,
    /// Why the separate server material is not usable yet (the listener waits for it).
    server_certs_pending: Option<String>,
}

async fn supervise(
    config: ProxyConfig,
    certs: Arc<Reloader>,
    mut view: watch::Receiver<Arc<ProxyView>>,
    tunnels: Arc<Tunnels>,
    metrics: ProxyMetrics,
) {
    let mut running = Running {
        listener: None,
        clients: BTreeMap::new(),
        bind_error: None,
        server_certs: None,
        server_certs_pending: None,
    };
    let mut retry = tokio::time::interval(
        config
            .timing
            .backoff_cap
            .max(std::time::Duration::from_secs(1)),
    );
    loop {
        let roles: Roles = view.borrow_and_update().roles(&config.node_name);
        apply(
            &config,
            &certs,
            &view,
            &tunnels,
            &metrics,
            &roles,
            &mut running,
        )
        .await;
        tokio::select! {
            changed = view.changed() => if changed.is_err() { break },
            // Retries a failed bind without waiting for a Gateway change.
            _ = retry.tick(), if running.bind_error.is_some() => {}
            // Server material still pending (a CSR in flight): look again soon.
            _ = tokio::time::sleep(config.timing.cert_reload), if running.server_certs_pending.is_some() => {}
        }
    }
    if let Some(l) = running.listener.take() {
        l.abort();
    }
    for (_, c) in running.clients {
        c.abort();
    }
}

/// The listener's material: `certs`, or the separate server files once they load (a reload
/// loop is started for them the first time). `None` while they are not usable yet; the reason
/// is logged once per change and kept in `running.server_certs_pending`.
fn server_material(
    config: &ProxyConfig,
    certs: &Arc<Reloader>,
    metrics: &ProxyMetrics,
    running: &mut Running,
) -> Option<Arc<Reloader>> {
    let Some(paths) = &config.server_certs else {
        return Some(certs.clone());
    };
    if let Some(r) = &running.server_certs {
        return Some(r.clone());
    }
    match Reloader::new(paths.clone()) {
        Ok(r) => {
            let r = Arc::new(r);
            tracing::info!("proxy server certificate files loaded");
            tokio::spawn(reload_loop(
                r.clone(),
                "tunnel_server",
                metrics.clone(),
                config.timing.clone(),
            ));
            running.server_certs = Some(r.clone());
            running.server_certs_pending = None;
            Some(r)
        }
        Err(e) => {
            let why = e.to_string();
            if running.server_certs_pending.as_ref() != Some(&why) {
                tracing::warn!("proxy tunnel server waits for its certificate: {why}");
            }
            running.server_certs_pending = Some(why);
            None
        }
    }
}

async fn apply(
    config: &ProxyConfig,
    certs: &Arc<Reloader>,
    view: &watch::Receiver<Arc<ProxyView>>,
    tunnels: &Arc<Tunnels>,
    metrics: &ProxyMetrics,
    roles: &Roles,
    running: &mut Running,
) {
    if roles.server.is_none() {
        running.server_certs_pending = None;
    }
    let server_certs = match (&roles.server, &running.listener) {
        (Some(_), None) => server_material(config, certs, metrics, running),
        _ => None,
    };
    match (&roles.server, &running.listener, server_certs) {
        (Some(_), None, None) => {}
        (Some(gw), None, Some(server_certs)) => {
            match tokio::net::TcpListener::bind(config.listen).await {
                Ok(listener) => {
                    tracing::info!(listen = %config.listen, gateway = %gw, "proxy tunnel server started");
                    running.bind_error = None;
                    let ctx = ServerCtx {
                        me: config.node_name.clone(),
                        view: view.clone(),
                        certs: server_certs,
                        tunnels: tunnels.clone(),
                        metrics: metrics.clone(),
                        timing: config.timing.clone(),
                    };
                    running.listener = Some(tokio::spawn(server::serve(listener, ctx)));
                }
                Err(e) => {
                    let why = format!("binding the tunnel listener {}: {e}", config.listen);
                    if running.bind_error.as_ref() != Some(&why) {
                        tracing::error!("{why}; retrying");
                    }
                    running.bind_error = Some(why);
                }
            }
        }
        (None, Some(_), _) => {
            if let Some(l) = running.listener.take() {
                l.abort();
            }
            // Seated tunnels see the view change and drop themselves (no seat on a non-server).
            tracing::info!("proxy tunnel server stopped (no longer an active proxy endpoint)");
        }
        _ => {}
    }
    running.clients.retain(|addr, task| {
        let keep = roles.client.contains(addr);
        if !keep {
            tracing::info!(server = %addr, "proxy tunnel client stopped");
            task.abort();
            metrics.tunnel_up.remove(&l1("server", &addr.to_string()));
        }
        keep
    });
    for addr in &roles.client {
        if running.clients.contains_key(addr) {
            continue;
        }
        tracing::info!(server = %addr, "proxy tunnel client started");
        let ctx = EdgeCtx {
            me: config.node_name.clone(),
            solo_ip: config.solo_ip,
            view: view.clone(),
            metrics: metrics.clone(),
            timing: config.timing.clone(),
        };
        let task = tokio::spawn(client::run(
            *addr,
            config.server_name.clone(),
            certs.clone(),
            ctx,
        ));
        running.clients.insert(*addr, task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_waited_for_broken_ones_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = CertPaths::in_dir(&dir.path().join("not-yet"));
        let p = Proxy::start(ProxyConfig::new("n1", paths), ProxyMetrics::default());
        assert!(p.is_ok(), "a pending CSR must not stop the daemon");
        let paths = CertPaths::in_dir(dir.path());
        for f in [&paths.cert, &paths.key, &paths.ca] {
            std::fs::write(f, "not PEM").expect("write");
        }
        let e = Proxy::start(ProxyConfig::new("n1", paths), ProxyMetrics::default())
            .expect_err("garbage certificate files are an error at start");
        assert!(e.to_string().contains("tls.crt"), "{e}");
    }
}
