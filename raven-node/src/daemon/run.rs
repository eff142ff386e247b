//! The daemon's main loop and the `cleanup` command, wiring the real pieces together.
//!
//! Threads: the main thread runs the loop (poll the Gateway source, pass, republish, sleep);
//! one thread serves HTTP; one thread waits for SIGTERM/SIGINT/SIGHUP with `sigwait` (the
//! signals are blocked in every thread, so none is delivered asynchronously) and tells the loop
//! through a channel. A stop leaves every kernel object and the published node state in place:
//! a restart or an upgrade must not interrupt traffic.

use std::net::SocketAddr;
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{SigSet, Signal};

use super::engine::{Dataplane, Engine, NodeStateSink, Timing, Tunnel};
use super::health::Health;
use super::http::{self, Endpoints};
use super::kube_source::{KubeWatcher, Writeback};
use super::lease::{self, KubeAccess, LeaseTiming};
use super::metrics::Metrics;
use super::publish::FileSink;
use super::source::{DirWatcher, Poll};
use super::{drivers, mtu};
use crate::plan::Options;

/// Where Gateways come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceConfig {
    /// Files in a directory (standalone mode).
    Dir(PathBuf),
    /// The Kubernetes API (watch of v1beta1 Gateways; needs [`Config::kube`]).
    Kubernetes,
}

/// Everything the daemon needs, already validated by the command line.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's name.
    pub node_name: String,
    /// The Gateway source.
    pub source: SourceConfig,
    /// The daemon's state directory (persisted generation, tunnel key).
    pub state_dir: PathBuf,
    /// The node-state file read by `raven-cni`.
    pub node_state_file: PathBuf,
    /// `raven-cni`'s data directory.
    pub cni_data_dir: PathBuf,
    /// Where `/metrics`, `/healthz`, `/readyz` listen; `None` disables the server.
    pub metrics_addr: Option<SocketAddr>,
    /// Planner options; `underlay_mtu` 0 means "observe it". `options.driver` is the family
    /// of [`Config::tunnel_driver`].
    pub options: Options,
    /// The configured tunnel driver (`--tunnel-driver`).
    pub tunnel_driver: crate::tunnel::DriverChoice,
    /// How often the Gateway directory is read.
    pub poll_interval: Duration,
    /// Loop timing.
    pub timing: Timing,
    /// How to reach the API server for the node Lease; `None`: no Lease.
    pub kube: Option<KubeAccess>,
    /// Kubernetes mode: URLs asked for this node's public IP when it is an active endpoint
    /// whose `publicIP` is empty (see [`super::public_ip`]); empty: never asked.
    pub public_ip_urls: Vec<String>,
    /// Keep `raven-cni` chained in the runtime's CNI configuration (re-install whenever the
    /// directory changes); `None`: the daemon leaves the CNI configuration alone.
    pub cni: Option<crate::cni_install::Settings>,
    /// Proxy mode (L7 tunnel); `None`: off, and nothing of it runs.
    pub proxy: Option<crate::proxy::tunnel::ProxyConfig>,
    /// The proxy's front side (HTTPS/HTTP listeners for cloud callers, relayed over the
    /// tunnel); only with [`Config::proxy`]. `None`: no front side on this node.
    pub proxy_front: Option<super::proxy_front::FrontSettings>,
    /// Kubernetes mode: the proxy's certificates from the CSR API (its file paths are already
    /// in [`Config::proxy`] and [`Config::proxy_front`]); `None`: files.
    pub proxy_csr: Option<super::proxy_certs::CsrSettings>,
}

/// Why the daemon stopped with an error.
#[derive(Debug)]
pub struct RunError(pub String);

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunError {}

enum Event {
    Stop(Signal),
    Resync,
}

/// Blocks the stop signals in the calling thread (call before spawning any thread, so that
/// every thread inherits the mask) and starts the thread that waits for them.
fn spawn_signal_thread(tx: mpsc::Sender<Event>) -> Result<(), RunError> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block()
        .map_err(|e| RunError(format!("blocking signals: {e}")))?;
    std::thread::Builder::new()
        .name("raven-signals".to_owned())
        .spawn(move || {
            loop {
                match set.wait() {
                    Ok(Signal::SIGHUP) => {
                        if tx.send(Event::Resync).is_err() {
                            return;
                        }
                    }
                    Ok(sig) => {
                        let _ = tx.send(Event::Stop(sig));
                        return;
                    }
                    Err(e) => tracing::error!("sigwait: {e}"),
                }
            }
        })
        .map_err(|e| RunError(format!("starting the signal thread: {e}")))?;
    Ok(())
}

fn resolve_options(config: &Config) -> Result<Options, RunError> {
    let mut options = config.options.clone();
    if options.underlay_mtu == 0 {
        options.underlay_mtu = mtu::default_route_mtu().map_err(|e| {
            RunError(format!(
                "cannot observe the underlay MTU ({e}); pass --underlay-mtu"
            ))
        })?;
        tracing::info!(mtu = options.underlay_mtu, "observed the underlay MTU");
    }
    options
        .validate()
        .map_err(|e| RunError(format!("invalid options: {e}")))?;
    Ok(options)
}

fn sink(config: &Config) -> FileSink {
    FileSink {
        state_file: config.node_state_file.clone(),
        cni_data_dir: config.cni_data_dir.clone(),
        state_dir: config.state_dir.clone(),
    }
}

/// The Gateway source the loop polls.
enum Source {
    Dir(DirWatcher),
    Kube(KubeWatcher),
}

impl Source {
    fn poll(&mut self) -> Poll {
        match self {
            Source::Dir(w) => w.poll(),
            Source::Kube(w) => w.poll(),
        }
    }
}

/// Runs until SIGTERM or SIGINT.
pub fn run(config: Config) -> Result<(), RunError> {
    if config.source == SourceConfig::Kubernetes && config.kube.is_none() {
        return Err(RunError(
            "no API server configured: pass --kubeconfig (or set KUBECONFIG, or run in a pod), \
             or --gateways-dir DIR to read Gateway objects from files"
                .to_owned(),
        ));
    }
    if config.node_name.is_empty() {
        return Err(RunError(
            "the node name is empty: pass --node-name or set NODE_NAME".to_owned(),
        ));
    }
    let options = resolve_options(&config)?;
    std::fs::create_dir_all(&config.state_dir).map_err(|e| {
        RunError(format!(
            "creating the state directory {}: {e}",
            config.state_dir.display()
        ))
    })?;
    let (tx, rx) = mpsc::channel();
    spawn_signal_thread(tx)?;

    if config.proxy_front.is_some() && config.proxy.is_none() {
        return Err(RunError(
            "the proxy front side needs proxy mode: pass --proxy".to_owned(),
        ));
    }
    let mut metrics = Metrics::new();
    // Registered before the registry is shared (it is read-only behind the Arc).
    let front_metrics = config
        .proxy_front
        .as_ref()
        .map(|_| crate::proxy::front::FrontMetrics::register(metrics.registry_mut()));
    let metrics = Arc::new(metrics);
    let health = Health::default();
    // Live while the loop wakes: it wakes at least every poll interval.
    let max_silence = (config.poll_interval * 10).max(Duration::from_secs(10));
    if let Some(addr) = config.metrics_addr {
        let bound = http::spawn(
            addr,
            Endpoints {
                metrics: metrics.clone(),
                health: health.clone(),
                max_silence,
                node: config.node_name.clone(),
                cni_data_dir: Some(config.cni_data_dir.clone()),
            },
        )
        .map_err(|e| RunError(format!("listening on {addr}: {e}")))?;
        tracing::info!(%bound, "serving /metrics, /healthz, /readyz, /status");
    }
    let kind = drivers::choose(config.tunnel_driver)
        .map_err(|e| RunError(format!("choosing the tunnel driver: {e}")))?;
    metrics
        .tunnel_driver_info
        .get_or_create(&vec![("driver", kind.as_str().to_owned())])
        .set(1);
    // Proxy roles follow the same Gateway snapshots; with the proxy off nothing of it runs, so
    // the tunnel-mode data plane is unaffected.
    let proxy = match &config.proxy {
        Some(pc) => {
            let proxy = crate::proxy::tunnel::Proxy::start(pc.clone(), metrics.proxy.clone())
                .map_err(|e| RunError(e.to_string()))?;
            tracing::info!(listen = %pc.listen, "proxy mode on (roles follow the Gateways)");
            Some(proxy)
        }
        None => None,
    };
    // Kubernetes mode: the certificates the tunnel and the front wait for come from CSRs,
    // requested on the proxy's runtime; the server certificate follows the Gateways.
    let proxy_csr = match (&config.proxy_csr, &proxy) {
        (Some(settings), Some(p)) => {
            let (Some(rt), Some(access), SourceConfig::Kubernetes) =
                (p.handle(), config.kube.as_ref(), &config.source)
            else {
                return Err(RunError(
                    "proxy certificates from CSRs need Kubernetes mode and its API server"
                        .to_owned(),
                ));
            };
            let client = rt
                .block_on(lease::client(access))
                .map_err(|e| RunError(format!("proxy certificates: API client: {e}")))?;
            tracing::info!(dir = %settings.dir.display(), "proxy certificates from the CSR API");
            Some(super::proxy_certs::ProxyCsr::start(
                rt,
                client,
                &config.node_name,
                settings.clone(),
            ))
        }
        _ => None,
    };
    // The front side serves cloud callers over the tunnel's dialer (targets in this domain are
    // dialed directly, others through their gateway's tunnel), on the proxy's runtime.
    let _front = match (&config.proxy_front, &proxy, front_metrics) {
        (Some(settings), Some(p), Some(fm)) => {
            let rt = p.handle().ok_or_else(|| {
                RunError("proxy front: the proxy runtime is not running".to_owned())
            })?;
            let kube = match config.source {
                SourceConfig::Kubernetes => config.kube.as_ref(),
                SourceConfig::Dir(_) => None,
            };
            let front =
                super::proxy_front::start(settings, &rt, p.dialer(), p.server_role(), kube, fm)?;
            tracing::info!(https = ?settings.https, http = ?settings.http, token_review = kube.is_some(), "proxy front side on (listening while this node is a proxy server)");
            Some(front)
        }
        _ => None,
    };
    let (dataplane, tunnel) = drivers::open(&config.state_dir, &options, kind)
        .map_err(|e| RunError(format!("opening the drivers: {e}")))?;
    let mut engine = Engine::new(
        &config.node_name,
        options,
        config.timing.clone(),
        dataplane,
        tunnel,
        Box::new(sink(&config)),
        metrics.clone(),
        health.clone(),
    );
    if let Some(access) = &config.kube {
        // Not fatal: the data plane must work without the API server.
        if let Err(e) = lease::spawn(
            access.clone(),
            config.node_name.clone(),
            health.clone(),
            LeaseTiming::default(),
        ) {
            tracing::error!("node Lease disabled: {e}");
        }
    }
    let mut watcher = match (&config.source, &config.kube) {
        (SourceConfig::Dir(dir), _) => {
            tracing::info!(
                node = %config.node_name,
                gateways_dir = %dir.display(),
                state_file = %config.node_state_file.display(),
                "raven-node started (standalone mode)"
            );
            Source::Dir(DirWatcher::new(dir))
        }
        (SourceConfig::Kubernetes, Some(access)) => {
            // Both driver families need the node's X25519 public key published: WireGuard
            // peers configure it, the IPsec driver derives its per-pair keys from it.
            let key = Some(
                drivers::public_key(&config.state_dir)
                    .map_err(|e| RunError(format!("reading the tunnel key: {e}")))?,
            );
            tracing::info!(
                node = %config.node_name,
                state_file = %config.node_state_file.display(),
                "raven-node started (Kubernetes mode)"
            );
            let (watcher, events) = KubeWatcher::spawn(
                access.clone(),
                config.node_name.clone(),
                Writeback {
                    public_key: key,
                    public_ip_urls: config.public_ip_urls.clone(),
                },
            )
            .map_err(RunError)?;
            engine.set_event_sink(events);
            Source::Kube(watcher)
        }
        (SourceConfig::Kubernetes, None) => {
            return Err(RunError("no API server configured".to_owned()));
        }
    };
    let mut cni_watcher = config.cni.clone().map(|settings| {
        tracing::info!(dir = %settings.conf_dir.display(), "keeping raven-cni chained in the CNI configuration");
        crate::cni_install::watch::CniWatcher::new(settings)
    });
    let mut gateways = Vec::new();
    let mut have_snapshot = false;
    let mut last_dir_error: Option<String> = None;
    let mut next_pass = Instant::now();
    loop {
        let mut due = false;
        match watcher.poll() {
            Poll::Unchanged => {}
            Poll::Changed(snapshot) => {
                last_dir_error = None;
                engine.report_file_errors(&snapshot.errors);
                gateways = snapshot.gateways;
                if let Some(p) = &proxy {
                    p.update(&gateways);
                }
                if let Some(c) = &proxy_csr {
                    c.update(&gateways);
                }
                have_snapshot = true;
                due = true;
            }
            Poll::DirError(e) => {
                if last_dir_error.as_ref() != Some(&e) {
                    tracing::error!("cannot read the Gateways: {e}; keeping the last plan");
                    metrics.error("gateway_dir");
                    last_dir_error = Some(e);
                }
            }
        }
        let now = Instant::now();
        if have_snapshot && (due || now >= next_pass) {
            let report = engine.pass(&gateways, SystemTime::now());
            next_pass = Instant::now() + engine.next_delay();
            tracing::debug!(?report, "pass");
        } else {
            engine.poll_peers();
        }
        if let Some(w) = &mut cni_watcher
            && let crate::cni_install::watch::Tick::Failed(_) = w.tick()
        {
            metrics.error("cni_install");
        }
        if let Err(e) = engine.republish_if_due(SystemTime::now()) {
            tracing::debug!("republish: {e}");
        }
        health.lock().heartbeat = Some(Instant::now());
        metrics.loop_heartbeat.set(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        );
        match rx.recv_timeout(config.poll_interval) {
            Ok(Event::Stop(sig)) => {
                tracing::info!(
                    signal = %sig,
                    "stopping; the data plane and the node state stay in place"
                );
                return Ok(());
            }
            Ok(Event::Resync) => {
                tracing::info!("SIGHUP: resync now");
                next_pass = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(RunError("the signal thread ended".to_owned()));
            }
        }
    }
}

/// `raven-node cleanup`: removes everything Raven owns on this node and nothing else: the
/// tunnel, the data plane, the published node state, and (through a refresh against the now
/// absent state) the per-pod routes `raven-cni` installed. Idempotent.
pub fn cleanup(config: &Config) -> Result<(), RunError> {
    let mut options = config.options.clone();
    if options.underlay_mtu == 0 {
        // Cleanup needs no MTU; any valid value lets the drivers open.
        options.underlay_mtu = 1500;
    }
    let mut problems = Vec::new();
    let opened = drivers::choose(config.tunnel_driver)
        .and_then(|kind| drivers::open(&config.state_dir, &options, kind));
    match opened {
        Ok((mut dataplane, mut tunnel)) => {
            if let Err(e) = tunnel.cleanup() {
                problems.push(format!("tunnel: {e}"));
            }
            if let Err(e) = dataplane.cleanup() {
                problems.push(format!("data plane: {e}"));
            }
        }
        Err(e) => problems.push(format!("opening the drivers: {e}")),
    }
    let mut sink = sink(config);
    match sink.remove() {
        Ok(()) => match sink.refresh_pods() {
            Ok(counts) => {
                for e in counts.errors {
                    problems.push(format!("pod routes: {e}"));
                }
                tracing::info!(pods = counts.updated, "removed the per-pod routes");
            }
            Err(e) => problems.push(format!("pod routes: {e}")),
        },
        Err(e) => problems.push(e),
    }
    if problems.is_empty() {
        tracing::info!("cleanup done");
        Ok(())
    } else {
        Err(RunError(format!(
            "cleanup incomplete: {}",
            problems.join("; ")
        )))
    }
}

/// Keeps the trait objects' bounds in one place.
pub type Drivers = (Box<dyn Dataplane + Send>, Box<dyn Tunnel + Send>);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(source: SourceConfig, node: &str) -> Config {
        Config {
            node_name: node.to_owned(),
            source,
            state_dir: "/nonexistent/state".into(),
            node_state_file: "/nonexistent/node-state.json".into(),
            cni_data_dir: "/nonexistent/cni".into(),
            metrics_addr: None,
            options: Options::default(),
            tunnel_driver: crate::tunnel::DriverChoice::Fixed(
                crate::tunnel::DriverKind::UserspaceWireGuard,
            ),
            poll_interval: Duration::from_secs(1),
            timing: Timing::default(),
            kube: None,
            public_ip_urls: Vec::new(),
            cni: None,
            proxy: None,
            proxy_front: None,
            proxy_csr: None,
        }
    }

    #[test]
    fn refuses_what_it_cannot_do_before_touching_anything() {
        let e = run(config(SourceConfig::Kubernetes, "n1")).unwrap_err();
        assert!(e.0.contains("no API server configured"), "{e}");
        assert!(
            e.0.contains("--kubeconfig") && e.0.contains("--gateways-dir"),
            "{e}"
        );
        let e = run(config(SourceConfig::Dir("/tmp".into()), "")).unwrap_err();
        assert!(e.0.contains("node name is empty"), "{e}");
        let mut bad = config(SourceConfig::Dir("/tmp".into()), "n1");
        bad.options.underlay_mtu = 1000;
        let e = run(bad).unwrap_err();
        assert!(
            e.0.contains("invalid options") && e.0.contains("underlay_mtu"),
            "{e}"
        );
        assert!(!Path::new("/nonexistent/state").exists());
    }
}
