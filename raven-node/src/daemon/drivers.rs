//! Adapters from the engine's traits to the real drivers: the netlink data plane
//! ([`crate::dataplane`], async over rtnetlink) and the tunnel driver ([`crate::tunnel`]).
//!
//! The loop is synchronous; the data plane runs on a private current-thread tokio runtime that
//! is driven only inside [`Dataplane::reconcile`]/[`Dataplane::cleanup`] (`block_on`), so no
//! runtime thread runs between passes and the netlink socket stays in the daemon's namespace.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::engine::{ApplyReport, Dataplane, PeerStats, Tunnel};
use super::run::Drivers;
use crate::dataplane::{self, Counters};
use crate::plan::{NodePlan, Options, TunnelPlan};
use crate::tunnel::{self, DriverChoice, DriverKind, DriverOptions, KernelSupport, TunnelDriver};

/// Resolves the configured driver (probing the kernel for `auto`) and logs the choice.
pub fn choose(choice: DriverChoice) -> Result<DriverKind, String> {
    let kind = choice.resolve(|| {
        let support = KernelSupport::probe();
        tracing::info!(?support, "probed the kernel for tunnel drivers");
        support
    })?;
    tracing::info!(driver = kind.as_str(), configured = ?choice, "tunnel driver chosen");
    Ok(kind)
}

/// Opens the drivers for this node (the tunnel driver loads or creates the persisted key).
pub fn open(state_dir: &Path, options: &Options, kind: DriverKind) -> Result<Drivers, String> {
    if kind.family() != options.driver {
        return Err(format!(
            "driver {} does not speak the planned family {:?}",
            kind.as_str(),
            options.driver
        ));
    }
    let dataplane = NetlinkDataplane::connect()?;
    let driver_options = DriverOptions {
        mtu: options
            .underlay_mtu
            .saturating_sub(options.driver.overhead()),
        device: options.device().to_owned(),
        ipsec_keys: tunnel::ipsec::key_ring_from_env(),
        ..DriverOptions::new(state_dir)
    };
    let driver = tunnel::driver_for(kind, driver_options).map_err(|e| e.to_string())?;
    if let Some(key) = driver.public_key() {
        tracing::info!(
            public_key = %key,
            "tunnel key (publish it as config.publicKey of this node's Gateway endpoint)"
        );
    }
    Ok((Box::new(dataplane), Box::new(TunnelAdapter(driver))))
}

/// The netlink data plane on its own runtime.
pub struct NetlinkDataplane {
    runtime: tokio::runtime::Runtime,
    inner: dataplane::Dataplane,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for NetlinkDataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetlinkDataplane").finish_non_exhaustive()
    }
}

impl NetlinkDataplane {
    /// Opens the netlink socket in the calling thread's network namespace.
    pub fn connect() -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the netlink runtime: {e}"))?;
        let counters = Arc::new(Counters::default());
        let inner = {
            let _guard = runtime.enter();
            dataplane::Dataplane::with_counters(counters.clone())
                .map_err(|e| format!("opening netlink: {e}"))?
        };
        Ok(Self {
            runtime,
            inner,
            counters,
        })
    }

    fn report(&self, report: dataplane::Report) -> Result<ApplyReport, String> {
        let ops = vec![
            ("op".to_owned(), report.ops as u64),
            ("op_error".to_owned(), report.errors.len() as u64),
        ];
        if let Some(e) = report.observe_error {
            return Err(format!("observing the kernel: {}", e.message));
        }
        if !report.errors.is_empty() {
            let msgs: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
            return Err(format!(
                "{} of {} op(s) failed: {}",
                report.errors.len(),
                report.ops,
                msgs.join("; ")
            ));
        }
        tracing::debug!(
            ops = report.ops,
            micros = report.duration.as_micros() as u64,
            requests = self.counters.netlink_requests.load(Ordering::Relaxed),
            "data plane reconciled"
        );
        Ok(ApplyReport { ops })
    }
}

impl Dataplane for NetlinkDataplane {
    fn reconcile(&mut self, plan: &NodePlan) -> Result<ApplyReport, String> {
        let report = self.runtime.block_on(self.inner.reconcile(plan));
        if report.ops > 0 {
            tracing::info!(
                ops = report.ops,
                errors = report.errors.len(),
                micros = report.duration.as_micros() as u64,
                "data plane changed"
            );
        }
        self.report(report)
    }

    fn cleanup(&mut self) -> Result<(), String> {
        let report = self.runtime.block_on(self.inner.cleanup());
        tracing::info!(ops = report.ops, "data plane cleanup");
        self.report(report).map(|_| ())
    }
}

/// The tunnel driver behind the engine's trait.
#[derive(Debug)]
pub struct TunnelAdapter(pub Box<dyn TunnelDriver>);

impl Tunnel for TunnelAdapter {
    fn apply(&mut self, plan: Option<&TunnelPlan>) -> Result<(), String> {
        let report = self.0.apply(plan).map_err(|e| e.to_string())?;
        if !report.is_noop() {
            tracing::info!(
                created = report.device_created,
                removed = report.device_removed,
                added = ?report.peers_added,
                updated = ?report.peers_updated,
                peers_removed = ?report.peers_removed,
                "tunnel changed"
            );
        }
        for s in &report.skipped {
            tracing::warn!(gateway = %s.gateway, reason = ?s.reason, "tunnel peer skipped");
        }
        Ok(())
    }

    fn peer_stats(&self) -> Vec<PeerStats> {
        self.0
            .peer_stats()
            .into_iter()
            .map(|s| PeerStats {
                peer: s.gateway,
                last_handshake: s.last_handshake,
                rx_bytes: s.rx_bytes,
                tx_bytes: s.tx_bytes,
            })
            .collect()
    }

    fn cleanup(&mut self) -> Result<(), String> {
        self.0.cleanup().map_err(|e| e.to_string())
    }
}

/// The public key of this node's tunnel, creating the persisted key if needed (for
/// `raven-node public-key` and the lab, which must publish it in the Gateway files).
pub fn public_key(state_dir: &Path) -> Result<String, String> {
    tunnel::key::KeyFile::load_or_create(state_dir)
        .map(|k| k.public_base64())
        .map_err(|e| e.to_string())
}
