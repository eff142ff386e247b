//! Prometheus metrics of the daemon (namespace `raven_node`), in one registry served on
//! `/metrics`.
//!
//! Label values come from fixed sets (error kinds, warning kinds, netlink operation kinds) or
//! from the peers of the current plan, so cardinality is bounded by the topology. Per-peer and
//! per-warning series are gauges rebuilt on every apply: a peer that left the plan disappears
//! from the output instead of reporting its last value forever.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// One label pair set (`kind="..."`, `peer="..."`).
pub type Labels = Vec<(&'static str, String)>;

/// Every metric of the daemon.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Duration of one apply (tunnel + data plane), successful or not.
    pub apply_duration: Histogram,
    /// Applies by result (`ok`, `error`).
    pub applies: Family<Labels, Counter>,
    /// Netlink (or driver) operations sent, by kind as the data plane reports them.
    pub netlink_ops: Family<Labels, Counter>,
    /// Errors by kind: `gateway_file`, `gateway_dir`, `plan`, `tunnel`, `dataplane`,
    /// `publish`, `refresh`, `cni_install`.
    pub errors: Family<Labels, Counter>,
    /// Current plan warnings by kind ([`crate::plan::PlanWarning::kind`]).
    pub plan_warnings: Family<Labels, Gauge>,
    /// Gateway files or documents currently left out.
    pub gateway_file_errors: Gauge,
    /// Gateways currently read from the source.
    pub gateways: Gauge,
    /// Generation of the published node state.
    pub node_state_generation: Gauge,
    /// Pod attachments refreshed, by outcome (`updated`, `up_to_date`, `gone`,
    /// `namespace_gone`, `error`).
    pub pod_refreshes: Family<Labels, Counter>,
    /// Tunnel peers in the plan.
    pub tunnel_peers: Gauge,
    /// Per peer: Unix time of the last completed handshake (absent before the first one).
    pub peer_last_handshake: Family<Labels, Gauge<f64, AtomicU64>>,
    /// Per peer: bytes received through the tunnel, as the driver counts them.
    pub peer_rx_bytes: Family<Labels, Gauge>,
    /// Per peer: bytes sent through the tunnel, as the driver counts them.
    pub peer_tx_bytes: Family<Labels, Gauge>,
    /// Unix time of the last completed loop iteration (liveness).
    pub loop_heartbeat: Gauge<f64, AtomicU64>,
    /// 1 for the tunnel driver in use (`driver="wireguard-kernel"`, ...).
    pub tunnel_driver_info: Family<Labels, Gauge>,
    /// Proxy mode (`raven_node_proxy_*`), registered even when the proxy is off (then empty).
    pub proxy: crate::proxy::tunnel::metrics::ProxyMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("raven_node");
        // 100 µs .. ~13 s: a no-op resync is sub-millisecond, a cold start with 10k routes and a
        // userspace tunnel takes seconds.
        let apply_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        let m = Self {
            apply_duration,
            applies: Family::default(),
            netlink_ops: Family::default(),
            errors: Family::default(),
            plan_warnings: Family::default(),
            gateway_file_errors: Gauge::default(),
            gateways: Gauge::default(),
            node_state_generation: Gauge::default(),
            pod_refreshes: Family::default(),
            tunnel_peers: Gauge::default(),
            peer_last_handshake: Family::default(),
            peer_rx_bytes: Family::default(),
            peer_tx_bytes: Family::default(),
            loop_heartbeat: Gauge::default(),
            tunnel_driver_info: Family::default(),
            proxy: Default::default(),
            registry: Registry::default(),
        };
        registry.register(
            "apply_duration_seconds",
            "Duration of one apply (tunnel driver and data plane)",
            m.apply_duration.clone(),
        );
        registry.register("applies", "Applies by result", m.applies.clone());
        registry.register(
            "tunnel_driver_info",
            "The tunnel driver in use (value 1, label driver)",
            m.tunnel_driver_info.clone(),
        );
        registry.register(
            "netlink_ops",
            "Netlink operations sent by the data plane, by kind",
            m.netlink_ops.clone(),
        );
        registry.register("errors", "Errors by kind", m.errors.clone());
        registry.register(
            "plan_warnings",
            "Current plan warnings by kind (see the log for details)",
            m.plan_warnings.clone(),
        );
        registry.register(
            "gateway_file_errors",
            "Gateway files or documents currently left out (see the log)",
            m.gateway_file_errors.clone(),
        );
        registry.register(
            "gateways",
            "Gateway objects currently read from the source",
            m.gateways.clone(),
        );
        registry.register(
            "node_state_generation",
            "Generation of the node state published for raven-cni",
            m.node_state_generation.clone(),
        );
        registry.register(
            "pod_refreshes",
            "Pod attachments refreshed after a node-state change, by outcome",
            m.pod_refreshes.clone(),
        );
        registry.register(
            "tunnel_peers",
            "Tunnel peers in the current plan",
            m.tunnel_peers.clone(),
        );
        registry.register(
            "peer_last_handshake_timestamp_seconds",
            "Unix time of the last completed handshake with the peer",
            m.peer_last_handshake.clone(),
        );
        registry.register(
            "peer_rx_bytes",
            "Bytes received from the peer through the tunnel",
            m.peer_rx_bytes.clone(),
        );
        registry.register(
            "peer_tx_bytes",
            "Bytes sent to the peer through the tunnel",
            m.peer_tx_bytes.clone(),
        );
        registry.register(
            "loop_heartbeat_timestamp_seconds",
            "Unix time of the last reconcile-loop iteration",
            m.loop_heartbeat.clone(),
        );
        m.proxy.register(registry.sub_registry_with_prefix("proxy"));
        Self { registry, ..m }
    }

    /// Counts one error of `kind`.
    pub fn error(&self, kind: &'static str) {
        self.errors
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    }

    /// The registry, for subsystems that register their own metrics at start-up (the proxy
    /// front side: `proxy::front::FrontMetrics::register`), so one `/metrics` serves all.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// A label set with one pair.
pub fn label(key: &'static str, value: &str) -> Labels {
    vec![(key, value.to_owned())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_registered_families() {
        let m = Metrics::new();
        m.error("tunnel");
        m.error("tunnel");
        m.apply_duration.observe(0.002);
        m.peer_last_handshake
            .get_or_create(&label("peer", "gw-cloud"))
            .set(1_700_000_000.5);
        let text = m.encode();
        assert!(
            text.contains("raven_node_errors_total{kind=\"tunnel\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("raven_node_apply_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "raven_node_peer_last_handshake_timestamp_seconds{peer=\"gw-cloud\"} 1700000000.5"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
