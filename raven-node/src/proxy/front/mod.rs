//! The authenticated HTTP(S) front side of the proxy server.
//!
//! Cloud callers (kube-apiserver, metrics-server, Prometheus) send kubelet-style requests here;
//! each one is authenticated, checked and routed by name (never by IP), then relayed over a
//! stream from the [`Dialer`]:
//! - [`head`]: pure validation of the request head (smuggling shapes, absolute-form, hosts)
//!   and the routing plan (`Host: <node>:<port>`, `?nodeName=`, kubelet streaming paths);
//!   fuzzed by `raven-node/fuzz`.
//! - [`auth`]: the [`Authenticator`] (tokens, authorization as the kubelet does it) and
//!   [`PodLocator`] contracts; [`identity`]: callers' client certificates.
//! - `relay`: forwarding over HTTP/1.1 (TLS to the target when its port asks for it),
//!   streaming bodies frame by frame and splicing upgraded connections.
//! - `sniff`: a second, raw scan of every request head (what hyper's parsed view hides).
//! - `listen`: the HTTPS (10263) and plain HTTP (10264, token only) listeners; `role`:
//!   binds them while this node is a proxy server and closes them when it no longer is.
//! - [`reload`]: both legs' TLS material from files, rotated without a restart.
//! - [`metrics`]: bounded-label counters in the daemon's registry.

pub mod auth;
pub mod head;
pub mod identity;
mod listen;
pub mod metrics;
mod relay;
pub mod reload;
mod role;
mod sniff;
pub mod tls;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

pub use auth::{
    Attributes, AuthFuture, AuthUnavailable, Authenticator, Decision, LocateFuture, PodLocator,
    UserInfo,
};
pub use metrics::FrontMetrics;
pub use reload::{ReloadingServerTls, ReloadingTargetTls, ServerTlsFiles, TargetTlsFiles};
pub use tls::{ServerTls, TargetTls};

use super::Dialer;

/// Default HTTPS listener port (upstream's `DefaultProxyServerSecurePort`).
pub const DEFAULT_HTTPS_PORT: u16 = 10263;
/// Default plain HTTP listener port (off unless enabled).
pub const DEFAULT_HTTP_PORT: u16 = 10264;
/// The kubelet's HTTPS port.
pub const KUBELET_PORT: u16 = 10250;

/// Listener and relay settings.
#[derive(Clone, Debug)]
pub struct FrontConfig {
    /// HTTPS listener (default `0.0.0.0:10263`); needs `server_tls`.
    pub https_addr: Option<SocketAddr>,
    /// Plain HTTP listener (default off); bearer tokens only, so it needs an authenticator.
    pub http_addr: Option<SocketAddr>,
    /// The HTTPS listener's certificate and client CA.
    pub server_tls: Option<ServerTls>,
    /// The HTTPS listener's material as files, reloaded when they change (used instead of
    /// `server_tls` when set).
    pub server_tls_files: Option<ServerTlsFiles>,
    /// TLS towards targets.
    pub target_tls: TargetTls,
    /// TLS towards targets as files, reloaded when they change (used instead of
    /// `target_tls`'s roots and client certificate when set; its ports still apply).
    pub target_tls_files: Option<TargetTlsFiles>,
    /// Port used when `Host` has none.
    pub default_port: u16,
    /// The kubelet port (requests routed by Pod).
    pub kubelet_port: u16,
    /// Bound on dialing the target plus the TLS handshake with it.
    pub dial_timeout: Duration,
    /// Bound on receiving a request head (slowloris) and on the caller's TLS handshake.
    pub header_read_timeout: Duration,
    /// Connections served at once per listener; more are closed at accept.
    pub max_connections: usize,
}

impl Default for FrontConfig {
    fn default() -> Self {
        Self {
            https_addr: Some(SocketAddr::from(([0, 0, 0, 0], DEFAULT_HTTPS_PORT))),
            http_addr: None,
            server_tls: None,
            server_tls_files: None,
            target_tls: TargetTls {
                ports: BTreeSet::from([KUBELET_PORT]),
                roots: Vec::new(),
                client_cert: None,
            },
            target_tls_files: None,
            default_port: KUBELET_PORT,
            kubelet_port: KUBELET_PORT,
            dial_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

/// What the front side uses from the rest of the daemon.
#[derive(Clone)]
pub struct FrontServices {
    /// Opens streams to `node:port` (the tunnel, or a direct dialer).
    pub dialer: Arc<dyn Dialer>,
    /// Bearer tokens and authorization; `None`: only client certificates, all allowed.
    pub authenticator: Option<Arc<dyn Authenticator>>,
    /// Routes kubelet streaming paths by Pod; `None`: by `Host` like every request.
    pub pod_locator: Option<Arc<dyn PodLocator>>,
    /// Counters (register them with [`FrontMetrics::register`]).
    pub metrics: FrontMetrics,
}

impl std::fmt::Debug for FrontServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontServices")
            .field("authenticator", &self.authenticator.is_some())
            .field("pod_locator", &self.pod_locator.is_some())
            .finish_non_exhaustive()
    }
}

/// Why the front side did not start.
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    /// A configuration that would open an unauthenticated or unusable listener.
    #[error("proxy front configuration: {0}")]
    Config(String),
    /// Certificates, keys or CA.
    #[error("proxy front TLS: {0}")]
    Tls(String),
    /// Binding a listener.
    #[error("binding {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// The running listeners; dropping it stops accepting (connections in flight finish).
#[derive(Debug)]
pub struct FrontHandle {
    /// Bound HTTPS address (the real port when 0 was asked for).
    pub https_addr: Option<SocketAddr>,
    /// Bound plain HTTP address.
    pub http_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl FrontHandle {
    /// Stops accepting.
    pub fn shutdown(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for FrontHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Checks the configuration, binds the listeners and starts serving on the current tokio
/// runtime.
pub async fn start(
    config: FrontConfig,
    services: FrontServices,
) -> Result<FrontHandle, FrontError> {
    let prepared = Prepared::new(config, services)?;
    let mut handle = prepared.bind().await?;
    handle.tasks.extend(prepared.reload_tasks());
    Ok(handle)
}

/// Checks the configuration now, then serves on the current tokio runtime only while `role`
/// is `true` (this node is a proxy server): the listeners are bound when it becomes `true`
/// (a failed bind is retried every `rebind`) and closed when it turns `false`; connections in
/// flight finish. The returned handle's addresses stay `None` (the follower logs each bind).
pub fn start_following(
    config: FrontConfig,
    services: FrontServices,
    role: tokio::sync::watch::Receiver<bool>,
    rebind: Duration,
) -> Result<FrontHandle, FrontError> {
    let prepared = Prepared::new(config, services)?;
    let mut tasks = prepared.reload_tasks();
    tasks.push(tokio::spawn(role::follow(prepared, role, rebind)));
    Ok(FrontHandle {
        https_addr: None,
        http_addr: None,
        tasks,
    })
}

/// A checked configuration, ready to bind (any number of times).
struct Prepared {
    config: FrontConfig,
    shared: Arc<relay::Shared>,
    acceptor: Option<listen::TlsSource>,
    serving: Option<Arc<ReloadingServerTls>>,
    target: Option<Arc<ReloadingTargetTls>>,
    metrics: FrontMetrics,
}

impl Prepared {
    /// Refuses unauthenticated or unusable setups and loads the TLS material (missing files
    /// are waited for by the reload tasks).
    fn new(config: FrontConfig, services: FrontServices) -> Result<Self, FrontError> {
        let has_auth = services.authenticator.is_some();
        if config.http_addr.is_some() && !has_auth {
            return Err(FrontError::Config(
                "the plain HTTP listener accepts bearer tokens only, and no authenticator is \
                 configured"
                    .into(),
            ));
        }
        let unauthenticated = || {
            FrontError::Config(
                "no client CA and no authenticator: the HTTPS listener would be unauthenticated"
                    .into(),
            )
        };
        let mut serving = None;
        let acceptor = match (
            &config.https_addr,
            &config.server_tls_files,
            &config.server_tls,
        ) {
            (None, _, _) => None,
            (Some(_), Some(files), _) => {
                if files.client_ca.is_none() && !has_auth {
                    return Err(unauthenticated());
                }
                let r = Arc::new(ReloadingServerTls::new(files.clone())?);
                if r.current().is_none() {
                    tracing::warn!(cert = %files.cert.display(), "proxy front: serving certificate not there yet; TLS handshakes fail until it appears");
                }
                serving = Some(r.clone());
                Some(listen::TlsSource::Reloading(r))
            }
            (Some(_), None, None) => {
                return Err(FrontError::Config(
                    "the HTTPS listener needs a serving certificate".into(),
                ));
            }
            (Some(_), None, Some(tls)) => {
                if tls.client_ca.is_none() && !has_auth {
                    return Err(unauthenticated());
                }
                Some(listen::TlsSource::Static(tokio_rustls::TlsAcceptor::from(
                    Arc::new(tls::server_config(tls)?),
                )))
            }
        };
        let target = match &config.target_tls_files {
            Some(files) => {
                let r = Arc::new(ReloadingTargetTls::new(files.clone())?);
                if r.current().is_none() {
                    tracing::warn!(roots = %files.roots.display(), "proxy front: kubelet TLS files not there yet; TLS targets are answered 503 until they appear");
                }
                Some(r)
            }
            None => None,
        };
        let metrics = services.metrics.clone();
        let shared = Arc::new(relay::Shared::new(&config, services, target.clone())?);
        Ok(Self {
            config,
            shared,
            acceptor,
            serving,
            target,
            metrics,
        })
    }

    /// The tasks that keep the TLS material current (for as long as the front is on).
    fn reload_tasks(&self) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(r) = &self.serving {
            tasks.push(tokio::spawn(r.clone().reload_loop(self.metrics.clone())));
        }
        if let Some(r) = &self.target {
            tasks.push(tokio::spawn(r.clone().reload_loop(self.metrics.clone())));
        }
        tasks
    }

    /// Binds every configured listener, or none (a failure closes those already bound).
    async fn bind(&self) -> Result<FrontHandle, FrontError> {
        let mut handle = FrontHandle {
            https_addr: None,
            http_addr: None,
            tasks: Vec::new(),
        };
        if let Some(addr) = self.config.https_addr {
            let (bound, task) = listen::spawn(
                addr,
                self.acceptor.clone(),
                self.shared.clone(),
                &self.config,
            )
            .await?;
            tracing::info!(%bound, "proxy front: HTTPS listener");
            handle.https_addr = Some(bound);
            handle.tasks.push(task);
        }
        if let Some(addr) = self.config.http_addr {
            let (bound, task) =
                listen::spawn(addr, None, self.shared.clone(), &self.config).await?;
            tracing::info!(%bound, "proxy front: plain HTTP listener (bearer tokens only)");
            handle.http_addr = Some(bound);
            handle.tasks.push(task);
        }
        Ok(handle)
    }
}
