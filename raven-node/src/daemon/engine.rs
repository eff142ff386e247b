//! One reconcile pass: Gateways → plan → tunnel driver → data plane → node state → pod routes.
//!
//! The engine holds no I/O of its own: the tunnel driver, the data plane and the node-state
//! sink are traits, so the whole pass (generation handling, when to publish, when to refresh
//! pods, what counts as ready) is unit-tested with in-memory fakes, and the real
//! implementations are plugged in by [`super::run`].
//!
//! Order matters: the tunnel and the node's routes are applied before the pods learn about new
//! prefixes, so a pod never sends into a route that does not exist yet; the node state is
//! published before the pods are refreshed (the lost-update argument of
//! [`raven_cni::refresh`]). The generation only moves forward: it starts above anything
//! published or persisted before, and a restart that plans the same route set keeps the
//! published generation so that no pod is reprogrammed for nothing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use raven_api::gateway::v1beta1::Gateway;
use raven_api::nodestate::NodeState;

use super::health::Health;
use super::metrics::{Metrics, label};
use super::source::FileError;
use crate::plan::{self, NodePlan, Options, TunnelPlan};

/// What a data-plane reconcile did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Operations sent, by kind (e.g. `route_add`), for the netlink-ops metric.
    pub ops: Vec<(String, u64)>,
}

/// The node's kernel state owned by Raven: raven0, FDB/neighbours, routes and rules.
pub trait Dataplane {
    /// Makes the kernel match the plan, touching only what Raven owns.
    fn reconcile(&mut self, plan: &NodePlan) -> Result<ApplyReport, String>;
    /// Removes everything Raven owns.
    fn cleanup(&mut self) -> Result<(), String>;
}

/// Counters of one tunnel peer, as the driver reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer's Gateway name.
    pub peer: String,
    /// When the last handshake completed.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
}

/// The gateway tunnel.
pub trait Tunnel {
    /// Brings the tunnel to the plan; `None` means this node runs no tunnel.
    fn apply(&mut self, plan: Option<&TunnelPlan>) -> Result<(), String>;
    /// Counters of the current peers.
    fn peer_stats(&self) -> Vec<PeerStats>;
    /// Removes the tunnel device and everything else the driver owns.
    fn cleanup(&mut self) -> Result<(), String>;
}

/// Per-outcome counts of one pod refresh.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefreshCounts {
    /// Attachments re-programmed.
    pub updated: u64,
    /// Attachments already at the current generation.
    pub up_to_date: u64,
    /// Records that vanished meanwhile.
    pub gone: u64,
    /// Attachments whose namespace no longer exists.
    pub namespace_gone: u64,
    /// One message per attachment that failed.
    pub errors: Vec<String>,
}

/// Where the node state goes: the file `raven-cni` reads and the pods' recorded routes.
pub trait NodeStateSink {
    /// The currently published state, if any and valid.
    fn current(&self) -> Option<NodeState>;
    /// The highest generation ever published (persisted beside the daemon's state).
    fn persisted_generation(&self) -> u64;
    /// Publishes atomically (and persists the generation first).
    fn publish(&mut self, state: &NodeState) -> Result<(), String>;
    /// Re-programs every recorded pod to the published state.
    fn refresh_pods(&mut self) -> Result<RefreshCounts, String>;
}

/// Timing knobs of the loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Full resync even without a change.
    pub resync: Duration,
    /// Rewrite the node state (`updatedAt`) at least this often, for raven-cni STATUS.
    pub republish: Duration,
    /// First retry delay after a failed pass; doubles up to `resync`.
    pub retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(30),
            republish: Duration::from_secs(60),
            retry: Duration::from_secs(1),
        }
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Tunnel, data plane, publication and refresh all succeeded.
    pub ok: bool,
    /// A new generation was published.
    pub published: Option<u64>,
    /// Pods were refreshed.
    pub refreshed: Option<RefreshCounts>,
}

/// The reconcile engine of one node.
pub struct Engine {
    node: String,
    options: Options,
    timing: Timing,
    dataplane: Box<dyn Dataplane + Send>,
    tunnel: Box<dyn Tunnel + Send>,
    sink: Box<dyn NodeStateSink + Send>,
    metrics: std::sync::Arc<Metrics>,
    health: Health,
    /// `(fingerprint content, generation, updatedAt)` of what we published, once we have.
    published: Option<Published>,
    /// Pods must be refreshed on the next pass (first pass, or a failed refresh).
    refresh_pending: bool,
    last_warnings: BTreeSet<String>,
    last_file_errors: Vec<FileError>,
    consecutive_failures: u32,
}

#[derive(Clone, Debug)]
struct Published {
    state: NodeState,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("node", &self.node)
            .field("published", &self.published)
            .field("refresh_pending", &self.refresh_pending)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine for `node`; nothing is applied until the first [`Engine::pass`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: &str,
        options: Options,
        timing: Timing,
        dataplane: Box<dyn Dataplane + Send>,
        tunnel: Box<dyn Tunnel + Send>,
        sink: Box<dyn NodeStateSink + Send>,
        metrics: std::sync::Arc<Metrics>,
        health: Health,
    ) -> Self {
        Self {
            node: node.to_owned(),
            options,
            timing,
            dataplane,
            tunnel,
            sink,
            metrics,
            health,
            published: None,
            refresh_pending: true,
            last_warnings: BTreeSet::new(),
            last_file_errors: Vec::new(),
            consecutive_failures: 0,
        }
    }

    /// Timing knobs.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// Delay before the next pass: the resync interval, or a doubling retry delay after
    /// failures.
    pub fn next_delay(&self) -> Duration {
        if self.consecutive_failures == 0 {
            return self.timing.resync;
        }
        let shift = (self.consecutive_failures - 1).min(16);
        self.timing
            .retry
            .saturating_mul(1 << shift)
            .min(self.timing.resync)
    }

    /// Logs and counts gateway-file problems (logged when the set changes, counted then too).
    pub fn report_file_errors(&mut self, errors: &[FileError]) {
        self.metrics
            .gateway_file_errors
            .set(i64::try_from(errors.len()).unwrap_or(i64::MAX));
        if errors == self.last_file_errors.as_slice() {
            return;
        }
        for e in errors {
            if !self.last_file_errors.contains(e) {
                tracing::warn!(target: "raven_node::gateways", "ignored: {e}");
                self.metrics.error("gateway_file");
            }
        }
        self.last_file_errors = errors.to_vec();
    }

    /// One full pass at time `now`.
    pub fn pass(&mut self, gateways: &[Gateway], now: SystemTime) -> PassReport {
        self.metrics
            .gateways
            .set(i64::try_from(gateways.len()).unwrap_or(i64::MAX));
        let plan = match plan::plan(gateways, &self.node, &self.options) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("planning failed: {e}");
                self.metrics.error("plan");
                return self.finish(Err(format!("plan: {e}")), None, None);
            }
        };
        self.report_warnings(&plan);
        self.health.lock().plan = Some(super::status::PlanSummary::from_plan(&plan));
        let started = Instant::now();
        let tunnel = self.tunnel.apply(plan.tunnel.as_ref());
        if let Err(e) = &tunnel {
            tracing::error!("tunnel apply failed: {e}");
            self.metrics.error("tunnel");
        }
        let dataplane = self.dataplane.reconcile(&plan);
        match &dataplane {
            Ok(report) => {
                for (kind, n) in &report.ops {
                    self.metrics
                        .netlink_ops
                        .get_or_create(&label("kind", kind))
                        .inc_by(*n);
                }
            }
            Err(e) => {
                tracing::error!("data-plane reconcile failed: {e}");
                self.metrics.error("dataplane");
            }
        }
        let took = started.elapsed();
        self.metrics.apply_duration.observe(took.as_secs_f64());
        self.health.lock().last_apply_duration = Some(took);
        self.update_peers(&plan);
        // The pods' routes are published even when the node's own apply failed: they only say
        // "remote prefixes go to the pod gateway with this MTU", which is right for the plan,
        // and an MTU decrease must reach the pods whatever else is broken.
        let published = self.publish_if_changed(&plan, now);
        let refreshed = match &published {
            Ok(_) if self.refresh_pending => Some(self.refresh()),
            _ => None,
        };
        let mut problems = Vec::new();
        if let Err(e) = tunnel {
            problems.push(format!("tunnel: {e}"));
        }
        if let Err(e) = dataplane {
            problems.push(format!("data plane: {e}"));
        }
        if let Err(e) = &published {
            problems.push(format!("node state: {e}"));
        }
        if let Some(Err(e)) = &refreshed {
            problems.push(format!("pod refresh: {e}"));
        }
        let result = if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        };
        let published = published.ok().flatten();
        let refreshed = refreshed.and_then(Result::ok);
        self.finish(result, published, refreshed)
    }

    fn finish(
        &mut self,
        result: Result<(), String>,
        published: Option<u64>,
        refreshed: Option<RefreshCounts>,
    ) -> PassReport {
        let ok = result.is_ok();
        let outcome = if ok { "ok" } else { "error" };
        self.metrics
            .applies
            .get_or_create(&label("result", outcome))
            .inc();
        if ok {
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        }
        {
            let mut h = self.health.lock();
            h.last_apply = Some(result);
            h.last_apply_at = Some(SystemTime::now());
            h.generation = self.published.as_ref().map(|p| p.state.generation);
        }
        PassReport {
            ok,
            published,
            refreshed,
        }
    }

    /// Logs warnings that are new since the last pass; the gauge always shows the current set.
    fn report_warnings(&mut self, plan: &NodePlan) {
        self.metrics.plan_warnings.clear();
        let mut now = BTreeSet::new();
        for w in &plan.warnings {
            self.metrics
                .plan_warnings
                .get_or_create(&label("kind", w.kind()))
                .inc();
            let line = w.to_string();
            if !self.last_warnings.contains(&line) {
                tracing::warn!(target: "raven_node::plan", kind = w.kind(), gateway = w.gateway(), "{line}");
            }
            now.insert(line);
        }
        self.last_warnings = now;
    }

    fn update_peers(&mut self, plan: &NodePlan) {
        let expected: Vec<String> = plan
            .tunnel
            .iter()
            .flat_map(|t| t.peers.iter().map(|p| p.gateway.clone()))
            .collect();
        let stats = self.tunnel.peer_stats();
        self.metrics
            .tunnel_peers
            .set(i64::try_from(expected.len()).unwrap_or(i64::MAX));
        self.metrics.peer_last_handshake.clear();
        self.metrics.peer_rx_bytes.clear();
        self.metrics.peer_tx_bytes.clear();
        self.export_peer_stats(&stats);
        let mut h = self.health.lock();
        h.expected_peers = expected;
        h.peers = stats;
    }

    /// Sets the per-peer gauges (last handshake, bytes) from the driver's statistics.
    fn export_peer_stats(&self, stats: &[PeerStats]) {
        for s in stats {
            let l = label("peer", &s.peer);
            if let Some(at) = s.last_handshake {
                let secs = at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
                self.metrics.peer_last_handshake.get_or_create(&l).set(secs);
            }
            self.metrics
                .peer_rx_bytes
                .get_or_create(&l)
                .set(i64::try_from(s.rx_bytes).unwrap_or(i64::MAX));
            self.metrics
                .peer_tx_bytes
                .get_or_create(&l)
                .set(i64::try_from(s.tx_bytes).unwrap_or(i64::MAX));
        }
    }

    /// Refreshes tunnel peer counters between passes (handshakes happen all the time).
    pub fn poll_peers(&mut self) {
        let stats = self.tunnel.peer_stats();
        self.export_peer_stats(&stats);
        self.health.lock().peers = stats;
    }

    /// Publishes a new generation when the route set or MTU changed; `Ok(None)` when nothing
    /// new was published.
    fn publish_if_changed(
        &mut self,
        plan: &NodePlan,
        now: SystemTime,
    ) -> Result<Option<u64>, String> {
        let routes = &plan.pod_routes;
        if self.published.is_none() {
            // First pass since start: adopt what is on disk when it already says the same, so a
            // restart does not reprogram every pod.
            if let Some(current) = self.sink.current()
                && current.remote_prefixes == routes.remote_prefixes
                && current.mtu == routes.mtu
            {
                self.metrics
                    .node_state_generation
                    .set(i64::try_from(current.generation).unwrap_or(i64::MAX));
                self.published = Some(Published { state: current });
                self.republish_if_due(now)?;
                return Ok(None);
            }
        }
        if let Some(p) = &self.published
            && p.state.remote_prefixes == routes.remote_prefixes
            && p.state.mtu == routes.mtu
        {
            return Ok(None);
        }
        let floor = self
            .published
            .as_ref()
            .map(|p| p.state.generation)
            .into_iter()
            .chain(self.sink.current().map(|s| s.generation))
            .chain([self.sink.persisted_generation()])
            .max()
            .unwrap_or(0);
        let generation = floor + 1;
        let state = routes.to_node_state(&self.node, generation, unix_secs(now));
        if let Err(e) = self.sink.publish(&state) {
            self.metrics.error("publish");
            tracing::error!("publishing the node state failed: {e}");
            return Err(e);
        }
        tracing::info!(
            generation,
            mtu = routes.mtu,
            prefixes = routes.remote_prefixes.len(),
            "published node state"
        );
        self.metrics
            .node_state_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        self.published = Some(Published { state });
        self.refresh_pending = true;
        Ok(Some(generation))
    }

    /// Rewrites the published state with a new `updatedAt` when the last write is older than
    /// the republish interval (raven-cni STATUS treats a stale file as a dead daemon).
    pub fn republish_if_due(&mut self, now: SystemTime) -> Result<(), String> {
        let Some(p) = &mut self.published else {
            return Ok(());
        };
        let age = now
            .duration_since(SystemTime::UNIX_EPOCH + Duration::from_secs(p.state.updated_at))
            .unwrap_or_default();
        if age < self.timing.republish {
            return Ok(());
        }
        let mut state = p.state.clone();
        state.updated_at = unix_secs(now);
        if let Err(e) = self.sink.publish(&state) {
            self.metrics.error("publish");
            tracing::error!("re-publishing the node state failed: {e}");
            return Err(e);
        }
        p.state = state;
        Ok(())
    }

    fn refresh(&mut self) -> Result<RefreshCounts, String> {
        match self.sink.refresh_pods() {
            Ok(counts) => {
                let add = |outcome: &str, n: u64| {
                    if n > 0 {
                        self.metrics
                            .pod_refreshes
                            .get_or_create(&label("outcome", outcome))
                            .inc_by(n);
                    }
                };
                add("updated", counts.updated);
                add("up_to_date", counts.up_to_date);
                add("gone", counts.gone);
                add("namespace_gone", counts.namespace_gone);
                add("error", counts.errors.len() as u64);
                for e in &counts.errors {
                    tracing::error!("pod route refresh: {e}");
                    self.metrics.error("refresh");
                }
                if counts.updated > 0 {
                    tracing::info!(updated = counts.updated, "refreshed pod routes");
                }
                self.refresh_pending = !counts.errors.is_empty();
                if counts.errors.is_empty() {
                    Ok(counts)
                } else {
                    Err(format!("{} attachment(s) failed", counts.errors.len()))
                }
            }
            Err(e) => {
                tracing::error!("pod route refresh: {e}");
                self.metrics.error("refresh");
                Err(e)
            }
        }
    }

    /// The node this engine plans for.
    pub fn node(&self) -> &str {
        &self.node
    }
}

/// Seconds since the epoch (0 for a clock before 1970).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
