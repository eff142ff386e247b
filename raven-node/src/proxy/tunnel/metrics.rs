//! Proxy metrics, registered in the daemon's registry under `raven_node_proxy_*`.
//!
//! Labels are bounded: `gateway` is a Gateway name (or `solo` for every solo node, whose
//! names are unbounded), `route` is `direct`/`tunnel`, `reason` comes from a fixed set,
//! `server` is a server replica address this client holds a tunnel to (the replicas of the
//! exposed Gateways), `peer` on the server side is the Gateway of the connected edge.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::proxy::DialError;

/// A label set.
pub type Labels = Vec<(&'static str, String)>;

fn histogram() -> Histogram {
    // 50 µs .. ~13 s: a LAN dial is sub-millisecond, a timed-out one is seconds.
    Histogram::new(exponential_buckets(0.00005, 2.0, 19))
}

/// Every proxy metric (cheap to clone: the handles share their values).
#[derive(Clone, Debug)]
pub struct ProxyMetrics {
    /// Streams opened by the dialer, by target gateway and route.
    pub streams: Family<Labels, Counter>,
    /// Streams currently open, by target gateway.
    pub streams_open: Family<Labels, Gauge>,
    /// Bytes through dialed streams, by target gateway and direction (`rx`: from the target).
    pub bytes: Family<Labels, Counter>,
    /// Failed dials, by target gateway and reason.
    pub dial_errors: Family<Labels, Counter>,
    /// Successful dial latency, by target gateway.
    pub dial_duration: Family<Labels, Histogram, fn() -> Histogram>,
    /// Server side: connected tunnels, by peer gateway.
    pub tunnels: Family<Labels, Gauge>,
    /// Server side: tunnels refused, by reason (`busy`, `tls`, `no_identity`, `seat`, `h2`).
    pub tunnels_refused: Family<Labels, Counter>,
    /// Client side: 1 while the tunnel to this server replica is up.
    pub tunnel_up: Family<Labels, Gauge>,
    /// Client side: tunnel connection attempts, by result (`ok`, `error`).
    pub tunnel_connects: Family<Labels, Counter>,
    /// Edge side: streams served, by result (`ok`, `refused`, `dial_error`, `timeout`).
    pub edge_streams: Family<Labels, Counter>,
    /// Certificate reloads, by result (`rotated`, `error`).
    pub cert_reloads: Family<Labels, Counter>,
    /// notAfter (unix seconds) of the certificate in use, by `cert` (`tunnel`: the node's own,
    /// used to dial; `tunnel_server`: the separate server certificate of Kubernetes mode).
    pub cert_not_after: Family<Labels, Gauge>,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self {
            streams: Family::default(),
            streams_open: Family::default(),
            bytes: Family::default(),
            dial_errors: Family::default(),
            dial_duration: Family::new_with_constructor(histogram),
            tunnels: Family::default(),
            tunnels_refused: Family::default(),
            tunnel_up: Family::default(),
            tunnel_connects: Family::default(),
            edge_streams: Family::default(),
            cert_reloads: Family::default(),
            cert_not_after: Family::default(),
        }
    }
}

/// One label.
pub fn l1(k: &'static str, v: &str) -> Labels {
    vec![(k, v.to_owned())]
}

/// Two labels.
pub fn l2(k1: &'static str, v1: &str, k2: &'static str, v2: &str) -> Labels {
    vec![(k1, v1.to_owned()), (k2, v2.to_owned())]
}

/// The fixed reason label of a dial error.
pub fn reason(e: &DialError) -> &'static str {
    match e {
        DialError::UnknownNode(_) => "unknown_node",
        DialError::PortNotAllowed { .. } => "port_not_allowed",
        DialError::NoTunnel { .. } => "no_tunnel",
        DialError::Timeout { .. } => "timeout",
        DialError::Failed { .. } => "failed",
    }
}

impl ProxyMetrics {
    /// Registers every metric in `registry` (call with a `proxy` sub-registry).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "streams",
            "Streams opened by the dialer, by target gateway and route",
            self.streams.clone(),
        );
        registry.register(
            "streams_open",
            "Streams currently open, by target gateway",
            self.streams_open.clone(),
        );
        registry.register(
            "bytes",
            "Bytes through dialed streams, by target gateway and direction",
            self.bytes.clone(),
        );
        registry.register(
            "dial_errors",
            "Failed dials, by target gateway and reason",
            self.dial_errors.clone(),
        );
        registry.register(
            "dial_duration_seconds",
            "Successful dial latency, by target gateway",
            self.dial_duration.clone(),
        );
        registry.register(
            "tunnels",
            "Connected tunnels on this server, by peer gateway",
            self.tunnels.clone(),
        );
        registry.register(
            "tunnels_refused",
            "Tunnels refused by this server, by reason",
            self.tunnels_refused.clone(),
        );
        registry.register(
            "tunnel_up",
            "1 while this client's tunnel to the server replica is up",
            self.tunnel_up.clone(),
        );
        registry.register(
            "tunnel_connects",
            "Tunnel connection attempts of this client, by result",
            self.tunnel_connects.clone(),
        );
        registry.register(
            "edge_streams",
            "Streams served by this edge, by result",
            self.edge_streams.clone(),
        );
        registry.register(
            "cert_reloads",
            "Certificate file reloads, by result",
            self.cert_reloads.clone(),
        );
        registry.register(
            "cert_not_after_timestamp_seconds",
            "notAfter of the proxy certificate in use, unix seconds (alert before time() reaches it)",
            self.cert_not_after.clone(),
        );
    }

    /// Publishes the notAfter of the material `cert` now uses (nothing when it did not parse).
    pub fn set_cert_not_after(&self, cert: &str, not_after: Option<i64>) {
        if let Some(t) = not_after {
            self.cert_not_after.get_or_create(&l1("cert", cert)).set(t);
        }
    }
}
