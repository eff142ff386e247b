//! Metrics of the front side, registered in the daemon's registry
//! (`raven_node_proxy_front_*`). Every label comes from a fixed set (status class, route kind,
//! direction, failure reason), never from paths, nodes or users, so cardinality is bounded.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::daemon::metrics::Labels;

/// Counters of the front side; cheap to clone (shared atomics).
#[derive(Clone, Debug, Default)]
pub struct FrontMetrics {
    /// Requests answered, by `class` (`1xx`..`5xx`) and `route` (`host`, `node_query`,
    /// `kubelet_path`, `none` for requests refused before routing).
    pub requests: Family<Labels, Counter>,
    /// Body and upgraded-stream bytes, by `direction` (`to_target`, `from_target`).
    pub bytes: Family<Labels, Counter>,
    /// Upgraded sessions started.
    pub upgrades: Counter,
    /// Upgraded sessions currently relaying.
    pub upgrades_active: Gauge,
    /// Authentication or authorization failures, by `reason` (`no_credentials`, `bad_token`,
    /// `forbidden`, `backend_unavailable`).
    pub auth_failures: Family<Labels, Counter>,
    /// Dial failures, by `kind` (the `DialError` variant).
    pub dial_errors: Family<Labels, Counter>,
    /// TLS file reloads, by `material` (`serving`, `target`) and `result` (`rotated`,
    /// `error`).
    pub cert_reloads: Family<Labels, Counter>,
    /// 1 while the listeners are bound (this node is a proxy server), else 0.
    pub listening: Gauge,
}

impl FrontMetrics {
    /// Creates the metrics and registers them under `proxy_front_` in `registry` (the
    /// daemon's, `crate::daemon::metrics::Metrics::registry_mut`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("proxy_front");
        r.register(
            "requests",
            "Front-side requests answered, by status class and route kind",
            m.requests.clone(),
        );
        r.register(
            "bytes",
            "Bytes relayed (bodies and upgraded streams), by direction",
            m.bytes.clone(),
        );
        r.register("upgrades", "Upgraded sessions started", m.upgrades.clone());
        r.register(
            "upgrades_active",
            "Upgraded sessions currently relaying",
            m.upgrades_active.clone(),
        );
        r.register(
            "auth_failures",
            "Callers refused by authentication or authorization, by reason",
            m.auth_failures.clone(),
        );
        r.register(
            "dial_errors",
            "Streams to targets that could not be opened, by kind",
            m.dial_errors.clone(),
        );
        r.register(
            "cert_reloads",
            "TLS file reloads (serving certificate, kubelet leg), by material and result",
            m.cert_reloads.clone(),
        );
        r.register(
            "listening",
            "1 while the front side's listeners are bound (this node is a proxy server)",
            m.listening.clone(),
        );
        m
    }

    /// Counts one reload of `material` (`serving`, `target`) with `result` (`rotated`,
    /// `error`).
    pub fn cert_reload(&self, material: &'static str, result: &'static str) {
        self.cert_reloads
            .get_or_create(&vec![
                ("material", material.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
    }

    /// Counts one answered request.
    pub fn request(&self, status: u16, route: &'static str) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .get_or_create(&vec![
                ("class", class.to_owned()),
                ("route", route.to_owned()),
            ])
            .inc();
    }

    /// Adds relayed bytes.
    pub fn add_bytes(&self, direction: &'static str, n: u64) {
        if n > 0 {
            self.bytes
                .get_or_create(&vec![("direction", direction.to_owned())])
                .inc_by(n);
        }
    }

    /// Counts one refused caller.
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// Counts one dial failure.
    pub fn dial_error(&self, kind: &'static str) {
        self.dial_errors
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    }
}
