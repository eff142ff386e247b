//! [`TunnelDialer`]: the [`Dialer`] of a proxy server. It resolves the node by name, checks
//! the port against the node's Gateway, then dials directly (same domain as the server) or
//! opens a `CONNECT` stream over a tunnel of the node's domain, trying the next tunnel when one
//! turns out dead. Every leg has a timeout.
//!
//! With a single tunnel to the domain (the common case: one active proxy endpoint per edge
//! Gateway) the stream is handed out as soon as the `CONNECT` is sent ([`H2Io::early`]): the
//! caller's request goes out with it instead of one tunnel round trip later, and the edge's
//! answer is awaited by the first read. There is no other tunnel to retry on, so nothing is
//! lost by not waiting; with several, the answer is awaited here so a dead one is skipped.

use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request, StatusCode};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::h2io::H2Io;
use super::metrics::{ProxyMetrics, l1, l2, reason};
use super::server::Tunnels;
use super::view::{Domain, ProxyView, Route};
use super::{ERROR_HEADER, Timing};
use crate::proxy::{DialError, DialFuture, Dialer, ProxyStream};

/// The dialer; cheap to share (`Arc`).
#[derive(Debug)]
pub struct TunnelDialer {
    me: String,
    view: watch::Receiver<Arc<ProxyView>>,
    tunnels: Arc<Tunnels>,
    metrics: ProxyMetrics,
    timing: Timing,
}

/// Counts a stream as open until dropped.
struct OpenGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A TCP stream that decrements the open-streams gauge on drop and counts bytes.
struct Counted<T> {
    inner: T,
    rx: prometheus_client::metrics::counter::Counter,
    tx: prometheus_client::metrics::counter::Counter,
    _open: OpenGuard,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        self.rx.inc_by((buf.filled().len() - before) as u64);
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            self.tx.inc_by(*n as u64);
        }
        r
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl TunnelDialer {
    /// A dialer for the server running on node `me`.
    pub fn new(
        me: String,
        view: watch::Receiver<Arc<ProxyView>>,
        tunnels: Arc<Tunnels>,
        metrics: ProxyMetrics,
        timing: Timing,
    ) -> Self {
        Self {
            me,
            view,
            tunnels,
            metrics,
            timing,
        }
    }

    /// The connected tunnels (for tests and diagnostics).
    pub fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }

    fn wrap<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static>(
        &self,
        gw: &str,
        io: T,
    ) -> ProxyStream {
        // One statement per lookup: a lookup holds its family's read lock until the end of the
        // statement, and creating a second label set in the same family takes the write lock.
        let open = self
            .metrics
            .streams_open
            .get_or_create(&l1("gateway", gw))
            .clone();
        open.inc();
        let rx = self
            .metrics
            .bytes
            .get_or_create(&l2("gateway", gw, "direction", "rx"))
            .clone();
        let tx = self
            .metrics
            .bytes
            .get_or_create(&l2("gateway", gw, "direction", "tx"))
            .clone();
        Box::new(Counted {
            inner: io,
            rx,
            tx,
            _open: OpenGuard(open),
        })
    }

    /// The stream and its Gateway label; `true` when the stream is early (its dial time and
    /// errors are recorded when the answer arrives).
    async fn dial_inner(
        &self,
        node: &str,
        port: u16,
        started: Instant,
    ) -> Result<(String, ProxyStream, bool), (String, DialError)> {
        let target = format!("{node}:{port}");
        let (route, gw_label) = {
            let view = self.view.borrow();
            let own = view
                .node(&self.me)
                .map(|n| n.gateway.clone())
                .unwrap_or_default();
            let label = view
                .node(node)
                .map_or_else(|| "solo".to_owned(), |n| n.gateway.clone());
            (view.route(&own, node, port), label)
        };
        let route = route.map_err(|e| (gw_label.clone(), e))?;
        match route {
            Route::Direct(addr) => {
                self.metrics
                    .streams
                    .get_or_create(&l2("gateway", &gw_label, "route", "direct"))
                    .inc();
                match tokio::time::timeout(self.timing.dial_timeout, TcpStream::connect(addr)).await
                {
                    Ok(Ok(tcp)) => {
                        let _ = tcp.set_nodelay(true);
                        Ok((gw_label.clone(), self.wrap(&gw_label, tcp), false))
                    }
                    Ok(Err(e)) => Err((
                        gw_label,
                        DialError::Failed {
                            target,
                            reason: format!("{addr}: {e}"),
                        },
                    )),
                    Err(_) => Err((gw_label, DialError::Timeout { target })),
                }
            }
            Route::Tunnel(domain) => {
                self.metrics
                    .streams
                    .get_or_create(&l2("gateway", &gw_label, "route", "tunnel"))
                    .inc();
                let (io, early) = self
                    .over_tunnel(&domain, node, port, &target, &gw_label, started)
                    .await
                    .map_err(|e| (gw_label.clone(), e))?;
                Ok((gw_label.clone(), self.wrap(&gw_label, io), early))
            }
        }
    }

    /// A stream over a tunnel of `domain`; `true` when it is early (see the module docs).
    async fn over_tunnel(
        &self,
        domain: &Domain,
        node: &str,
        port: u16,
        target: &str,
        gw_label: &str,
        started: Instant,
    ) -> Result<(H2Io, bool), DialError> {
        let candidates = self.tunnels.of(domain);
        if candidates.is_empty() {
            return Err(match domain {
                Domain::Solo(n) => DialError::UnknownNode(n.clone()),
                Domain::Gateway(g) => DialError::NoTunnel {
                    node: node.to_owned(),
                    gateway: g.clone(),
                },
            });
        }
        // The edge dials with its own timeout and answers 504; the margin covers the RTT. Each
        // tunnel gets the whole budget: a silently dead one (black-holed, not yet dropped by
        // its keepalive) must not use up the time of the live one tried after it.
        let budget = self.timing.dial_timeout + self.timing.keepalive_timeout;
        let early = candidates.len() == 1;
        let timed_out = || DialError::Timeout {
            target: target.to_owned(),
        };
        let mut last = None;
        for t in candidates {
            let deadline = tokio::time::Instant::now() + budget;
            let open = async {
                let mut sender = t
                    .sender
                    .clone()
                    .ready()
                    .await
                    .map_err(|e| format!("tunnel: {e}"))?;
                let req = Request::builder()
                    .method(Method::CONNECT)
                    .uri(format!("{node}:{port}"))
                    .body(())
                    .map_err(|e| format!("request: {e}"))?;
                sender
                    .send_request(req, false)
                    .map_err(|e| format!("tunnel: {e}"))
            };
            let dead = |why: String| {
                // A dead tunnel: try the next one of the domain.
                tracing::warn!(node = %t.node, "stream over tunnel failed: {why}");
                DialError::Failed {
                    target: target.to_owned(),
                    reason: why,
                }
            };
            let (resp, send) = match tokio::time::timeout_at(deadline, open).await {
                Ok(Ok(x)) => x,
                Ok(Err(why)) => {
                    last = Some(dead(why));
                    continue;
                }
                Err(_) => {
                    last = Some(timed_out());
                    continue;
                }
            };
            let who = Answering::new(node, port, &t.node);
            if early {
                let answer = self.early_answer(resp, deadline, who, gw_label, started);
                return Ok((H2Io::early(send, answer), true));
            }
            let resp = match tokio::time::timeout_at(deadline, resp).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    last = Some(dead(format!("tunnel: {e}")));
                    continue;
                }
                Err(_) => {
                    last = Some(timed_out());
                    continue;
                }
            };
            return Ok((H2Io::new(send, answered(resp, &who)?), false));
        }
        Err(last.unwrap_or_else(|| DialError::NoTunnel {
            node: node.to_owned(),
            gateway: domain.label().to_owned(),
        }))
    }

    /// The future an early stream's first read awaits: the edge's answer by `deadline`, with
    /// the dial time or the dial error recorded under `gw_label` when it arrives.
    fn early_answer(
        &self,
        resp: h2::client::ResponseFuture,
        deadline: tokio::time::Instant,
        who: Answering,
        gw_label: &str,
        started: Instant,
    ) -> super::h2io::Answer {
        let metrics = self.metrics.clone();
        let gw = gw_label.to_owned();
        Box::pin(async move {
            let result = match tokio::time::timeout_at(deadline, resp).await {
                Ok(Ok(r)) => answered(r, &who),
                Ok(Err(e)) => Err(DialError::Failed {
                    target: who.target(),
                    reason: format!("tunnel: {e}"),
                }),
                Err(_) => Err(DialError::Timeout {
                    target: who.target(),
                }),
            };
            record_dial(&metrics, &gw, started, result.as_ref().map(|_| ()));
            result
        })
    }
}

/// Who a `CONNECT` went to, for its answer's errors.
struct Answering {
    node: String,
    port: u16,
    edge: String,
}

impl Answering {
    fn new(node: &str, port: u16, edge: &str) -> Self {
        Self {
            node: node.to_owned(),
            port,
            edge: edge.to_owned(),
        }
    }

    fn target(&self) -> String {
        format!("{}:{}", self.node, self.port)
    }
}

/// The edge's answer to a `CONNECT`: the stream's body on 200, else the dial error it reports.
fn answered(
    resp: http::Response<h2::RecvStream>,
    who: &Answering,
) -> Result<h2::RecvStream, DialError> {
    let why = resp
        .headers()
        .get(ERROR_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    match resp.status() {
        StatusCode::OK => Ok(resp.into_body()),
        StatusCode::GATEWAY_TIMEOUT => Err(DialError::Timeout {
            target: who.target(),
        }),
        StatusCode::FORBIDDEN if why.contains("is not allowed") => Err(DialError::PortNotAllowed {
            node: who.node.clone(),
            port: who.port,
        }),
        s => Err(DialError::Failed {
            target: who.target(),
            reason: format!("edge {} answered {s}: {why}", who.edge),
        }),
    }
}

impl Dialer for TunnelDialer {
    fn is_https_port(&self, node: &str, port: u16) -> bool {
        self.view.borrow().port_is_https(node, port)
    }

    fn dial<'a>(&'a self, node: &'a str, port: u16) -> DialFuture<'a> {
        Box::pin(async move {
            let started = Instant::now();
            match self.dial_inner(node, port, started).await {
                Ok((gw, stream, early)) => {
                    if !early {
                        record_dial(&self.metrics, &gw, started, Ok(()));
                    }
                    Ok(stream)
                }
                Err((gw, e)) => {
                    record_dial(&self.metrics, &gw, started, Err(&e));
                    Err(e)
                }
            }
        })
    }
}

/// Records one dial's outcome under its Gateway label: its duration, or its error by reason
/// (an unknown node counts under "unknown": node names would make the label unbounded).
fn record_dial(
    metrics: &ProxyMetrics,
    gw: &str,
    started: Instant,
    outcome: Result<(), &DialError>,
) {
    match outcome {
        Ok(()) => metrics
            .dial_duration
            .get_or_create(&l1("gateway", gw))
            .observe(started.elapsed().as_secs_f64()),
        Err(e) => {
            let gw = if matches!(e, DialError::UnknownNode(_)) {
                "unknown"
            } else {
                gw
            };
            metrics
                .dial_errors
                .get_or_create(&l2("gateway", gw, "reason", reason(e)))
                .inc();
        }
    }
}

#[cfg(test)]
#[path = "dialer_tests.rs"]
mod tests;
