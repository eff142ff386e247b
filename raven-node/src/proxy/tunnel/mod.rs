//! The mTLS reverse tunnel of proxy mode and the [`super::Dialer`] over it.
//!
//! - [`view`]: the pure view of the Gateways (roles, seats, allowed ports, routes; no I/O).
//! - [`certs`]: certificate files, rotation, the node identity in a client certificate.
//! - [`h2io`]: one HTTP/2 stream as a byte stream with per-stream flow control.
//! - [`pump`]: the edge's copy-free relay between a stream and the TCP connection it dialed.
//! - [`transport`]: the TCP connection under TLS (read buffer, send buffer limit, NODELAY).
//! - [`server`]: the cloud side: the tunnel listener and the registry of connected tunnels.
//! - [`client`]: the edge side: one tunnel per server replica, reconnecting, serving dials.
//! - [`dialer`]: [`dialer::TunnelDialer`], the [`super::Dialer`] the front side uses.
//! - [`metrics`]: streams, bytes, dial errors and latency, tunnel state.
//! - [`service`]: [`service::Proxy`], which runs the roles the Gateways give this node.
//!
//! Framing: the edge dials TLS (mTLS, ALPN `raven-tunnel/1`) and then acts as the HTTP/2
//! *server*; the cloud is the HTTP/2 *client* and opens one `CONNECT <node>:<port>` stream per
//! proxied connection. The edge answers 200 once it dialed the target (403 for a target
//! outside its domain or a port not allowed, 502/504 for a failed or timed-out dial; the reason
//! in the `raven-error` header), then the stream carries raw bytes both ways.

pub mod certs;
pub mod client;
pub mod dialer;
pub mod h2io;
pub mod metrics;
pub mod pump;
pub mod server;
pub mod service;
pub mod transport;
pub mod view;

use std::time::Duration;

pub use dialer::TunnelDialer;
pub use service::{Proxy, ProxyConfig};

/// Default tunnel port (upstream `DefaultProxyServerExposedPort`).
pub const DEFAULT_TUNNEL_PORT: u16 = 10262;
/// Response header carrying why a stream was refused.
pub const ERROR_HEADER: &str = "raven-error";

/// Per-stream receive window. One stalled stream holds at most this much in flight; 1 MiB
/// keeps a single stream at line rate on LAN/WAN RTTs up to ~1 ms per 8 Gbit/s.
pub const STREAM_WINDOW: u32 = 1 << 20;
/// Streams a tunnel carries at once (the edge's `SETTINGS_MAX_CONCURRENT_STREAMS`); more
/// dials wait for a free stream, within their dial timeout.
pub const MAX_STREAMS: u32 = 2000;
/// Per-connection receive window: every stream may hold its full window unread. h2 credits
/// the connection window back only when a stream's data is consumed, so a smaller connection
/// window lets a few stalled streams (paused `kubectl logs -f`) freeze every other stream of
/// the tunnel: head-of-line blocking again. What bounds memory is the per-stream window
/// times the streams actually stalled, at most [`MAX_STREAMS`] (2000 × 1 MiB < 2^31 - 1,
/// the protocol's largest window).
pub const CONNECTION_WINDOW: u32 = MAX_STREAMS * STREAM_WINDOW;
/// Largest frame we accept: fewer frame headers and wakeups per byte than the 16 KiB default.
pub const MAX_FRAME: u32 = 256 << 10;

/// Timeouts and intervals of the tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// TCP connect to a target (both the cloud's direct dials and the edge's dials).
    pub dial_timeout: Duration,
    /// TCP connect + TLS + HTTP/2 handshake of a tunnel.
    pub handshake_timeout: Duration,
    /// How often each side PINGs an idle-or-not tunnel.
    pub keepalive_interval: Duration,
    /// How long a PING may stay unanswered before the tunnel is dropped.
    pub keepalive_timeout: Duration,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Reconnect delay cap.
    pub backoff_cap: Duration,
    /// How often the certificate files are checked for rotation.
    pub cert_reload: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            dial_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(30),
            cert_reload: Duration::from_secs(5),
        }
    }
}

/// A random value (the std hasher's random keys), for jitter; no RNG crate needed.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64,
    );
    h.finish()
}

/// `d` ± 20 %.
pub fn jitter(d: Duration) -> Duration {
    let fifth = d / 5;
    let span = fifth.as_millis() as u64 * 2;
    if span == 0 {
        return d;
    }
    (d - fifth) + Duration::from_millis(random_u64() % (span + 1))
}

/// Runs PINGs every `interval`; returns when one goes unanswered for `timeout` (or the
/// connection is gone). Both ends run this, so a dead peer or a NAT that dropped the mapping
/// is noticed from either side.
pub async fn keepalive(mut pp: h2::PingPong, timing: Timing) -> String {
    loop {
        tokio::time::sleep(timing.keepalive_interval).await;
        match tokio::time::timeout(timing.keepalive_timeout, pp.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return format!("keepalive: {e}"),
            Err(_) => {
                return format!(
                    "keepalive: no PING answer within {:?}",
                    timing.keepalive_timeout
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_fifth() {
        for _ in 0..200 {
            let j = jitter(Duration::from_secs(10));
            assert!(
                j >= Duration::from_secs(8) && j <= Duration::from_secs(12),
                "{j:?}"
            );
        }
        assert_eq!(jitter(Duration::from_millis(2)), Duration::from_millis(2));
    }
}
