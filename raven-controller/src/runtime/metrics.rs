//! Prometheus metrics of raven-controller and the tiny HTTP server exposing them
//! (`/metrics` in the OpenMetrics text format, `/healthz`).
//!
//! One controller runs per process, so the metrics are a process-wide [`metrics()`] value the
//! reconcile loop updates; the server only renders them. Names carry the `raven_controller_`
//! prefix and units; no label has more values than a fixed set (docs/metrics.md).

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The controller's metrics.
#[derive(Debug)]
pub struct ControllerMetrics {
    /// 1 while this replica leads.
    pub leader: Gauge,
    /// Reconcile passes run (as leader).
    pub passes: Counter,
    /// Duration of one pass.
    pub pass_duration: Histogram,
    /// Successful API writes (creates, patches, deletes, Events).
    pub writes: Counter,
    /// Failed API writes (retried by the next pass).
    pub write_failures: Counter,
    /// Unix time of the last completed pass.
    pub last_pass: Gauge<f64, AtomicU64>,
    registry: Registry,
}

impl ControllerMetrics {
    fn new() -> Self {
        let mut m = Self {
            leader: Gauge::default(),
            passes: Counter::default(),
            pass_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            writes: Counter::default(),
            write_failures: Counter::default(),
            last_pass: Gauge::default(),
            registry: Registry::with_prefix("raven_controller"),
        };
        let r = &mut m.registry;
        r.register(
            "leader",
            "1 while this replica is the leader",
            m.leader.clone(),
        );
        r.register("passes", "Reconcile passes run as leader", m.passes.clone());
        r.register(
            "pass_duration_seconds",
            "Duration of one reconcile pass",
            m.pass_duration.clone(),
        );
        r.register("writes", "Successful API writes", m.writes.clone());
        r.register(
            "write_failures",
            "Failed API writes (retried by the next pass)",
            m.write_failures.clone(),
        );
        r.register(
            "last_pass_timestamp_seconds",
            "Unix time of the last completed pass",
            m.last_pass.clone(),
        );
        m
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static ControllerMetrics {
    static METRICS: OnceLock<ControllerMetrics> = OnceLock::new();
    METRICS.get_or_init(ControllerMetrics::new)
}

/// The response to one request line (pure).
fn respond(request_line: &str) -> (u16, &'static str, String) {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => (
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics().render(),
        ),
        ("GET", "/healthz") => (200, "text/plain", "ok\n".to_owned()),
        ("GET", _) => (404, "text/plain", "not found\n".to_owned()),
        _ => (405, "text/plain", "method not allowed\n".to_owned()),
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until the process ends. One request per
/// connection (scrapers and probes need no keep-alive); a slow client is cut after 5 s.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while len < buf.len() {
                    match stream.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => len += n,
                    }
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let line = head.lines().next().unwrap_or("");
            let (status, content_type, body) = respond(line);
            let reason = match status {
                200 => "OK",
                404 => "Not Found",
                _ => "Method Not Allowed",
            };
            let reply = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        metrics().passes.inc();
        let (status, _, body) = respond("GET /metrics HTTP/1.1");
        assert_eq!(status, 200);
        for name in [
            "raven_controller_leader",
            "raven_controller_passes_total",
            "raven_controller_pass_duration_seconds_bucket",
            "raven_controller_writes_total",
            "raven_controller_write_failures_total",
            "raven_controller_last_pass_timestamp_seconds",
        ] {
            assert!(body.contains(name), "{name} missing in:\n{body}");
        }
        assert_eq!(respond("GET /healthz HTTP/1.1").0, 200);
        assert_eq!(respond("GET /nope HTTP/1.1").0, 404);
        assert_eq!(respond("POST /metrics HTTP/1.1").0, 405);
        assert_eq!(respond("").0, 405);
    }
}
