//! The cloud side: accepts tunnels on the tunnel port, authenticates them (mTLS, the node in
//! the certificate must hold a seat per [`ProxyView::seat`] right now), keeps them in the
//! [`Tunnels`] registry and drops them when their node loses its seat or stops answering
//! PINGs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::certs::{Reloader, node_from_cert};
use super::metrics::{ProxyMetrics, l1};
use super::transport;
use super::view::{Domain, ProxyView};
use super::{CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW, Timing, keepalive};

/// One connected tunnel.
#[derive(Debug)]
pub struct TunnelConn {
    /// Registry id (unique per process).
    pub id: u64,
    /// The node in the client certificate.
    pub node: String,
    /// Where it is seated.
    pub domain: Domain,
    /// Opens streams.
    pub sender: SendRequest<Bytes>,
}

/// The connected tunnels by domain, newest first.
#[derive(Debug, Default)]
pub struct Tunnels {
    by_domain: Mutex<BTreeMap<Domain, Vec<Arc<TunnelConn>>>>,
    next: AtomicU64,
}

/// A snapshot entry for tests and logs: `(domain, node)`.
pub type TunnelInfo = (Domain, String);

impl Tunnels {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Domain, Vec<Arc<TunnelConn>>>> {
        self.by_domain.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn add(
        &self,
        node: String,
        domain: Domain,
        sender: SendRequest<Bytes>,
    ) -> Arc<TunnelConn> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let t = Arc::new(TunnelConn {
            id,
            node,
            domain: domain.clone(),
            sender,
        });
        self.lock().entry(domain).or_default().insert(0, t.clone());
        t
    }

    fn remove(&self, t: &TunnelConn) {
        let mut map = self.lock();
        if let Some(v) = map.get_mut(&t.domain) {
            v.retain(|x| x.id != t.id);
            if v.is_empty() {
                map.remove(&t.domain);
            }
        }
    }

    /// The tunnels of `domain`, newest first.
    pub fn of(&self, domain: &Domain) -> Vec<Arc<TunnelConn>> {
        self.lock().get(domain).cloned().unwrap_or_default()
    }

    /// Every connected tunnel, sorted.
    pub fn snapshot(&self) -> Vec<TunnelInfo> {
        let mut out: Vec<TunnelInfo> = self
            .lock()
            .values()
            .flatten()
            .map(|t| (t.domain.clone(), t.node.clone()))
            .collect();
        out.sort();
        out
    }

    /// Number of tunnels of a domain.
    pub fn count(&self, domain: &Domain) -> usize {
        self.lock().get(domain).map_or(0, Vec::len)
    }
}

/// What the listener tasks share.
#[derive(Clone, Debug)]
pub struct ServerCtx {
    /// This node (its Gateway is the server's domain).
    pub me: String,
    /// The current view.
    pub view: watch::Receiver<Arc<ProxyView>>,
    /// Certificates.
    pub certs: Arc<Reloader>,
    /// The registry the dialer reads.
    pub tunnels: Arc<Tunnels>,
    /// Metrics.
    pub metrics: ProxyMetrics,
    /// Timeouts.
    pub timing: Timing,
}

/// Connections still in their TLS/HTTP/2 handshake (not yet authenticated) at once. The tunnel
/// port faces the internet: without a cap, idle TCP connections held open for the handshake
/// timeout would each pin a [`transport::READ_BUFFER`] until the process runs out of memory.
/// With it they cost at most 64 × 256 KiB; beyond it new connections are closed at once and
/// counted (`tunnels_refused{reason="busy"}`), and real agents retry with backoff.
pub const MAX_HANDSHAKES: usize = 64;

/// Accepts tunnels on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, ctx: ServerCtx) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    // Counted outside the log macro: its arguments are skipped when the
                    // level is off.
                    let why = refuse(
                        &ctx,
                        "busy",
                        format!("{MAX_HANDSHAKES} handshakes in progress"),
                    );
                    tracing::debug!(%peer, "closing: {why}");
                    continue;
                };
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    if let Err(why) = serve_one(tcp, peer, ctx.clone(), permit).await {
                        tracing::info!(%peer, "tunnel ended: {why}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("accepting a tunnel: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

fn refuse(ctx: &ServerCtx, reason: &str, why: String) -> String {
    ctx.metrics
        .tunnels_refused
        .get_or_create(&l1("reason", reason))
        .inc();
    why
}

/// Where `node` sits on this server right now: this node must still be a server, and `node`
/// must hold a seat ([`ProxyView::seat`]).
fn seat_now(view: &ProxyView, me: &str, node: &str) -> Result<Domain, String> {
    let Some(own) = view.roles(me).server else {
        return Err("this node is no longer a tunnel server".to_owned());
    };
    view.seat(&own, node).map_err(|e| e.to_string())
}

/// Serves one tunnel; `in_handshake` is released once the peer is authenticated and HTTP/2
/// is up.
async fn serve_one(
    tcp: TcpStream,
    peer: SocketAddr,
    mut ctx: ServerCtx,
    in_handshake: OwnedSemaphorePermit,
) -> Result<(), String> {
    let acceptor = tokio_rustls::TlsAcceptor::from(ctx.certs.current().server.clone());
    let accept = acceptor.accept(transport::wrap(tcp));
    let mut tls = match tokio::time::timeout(ctx.timing.handshake_timeout, accept).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(refuse(&ctx, "tls", format!("TLS handshake refused: {e}"))),
        Err(_) => return Err(refuse(&ctx, "tls", "TLS handshake timed out".to_owned())),
    };
    let node = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(node_from_cert);
    transport::tune(tls.get_mut().1);
    let Some(node) = node else {
        return Err(refuse(
            &ctx,
            "no_identity",
            "client certificate names no node (CN system:node:<name> or raven-proxy-client:<name>)"
                .to_owned(),
        ));
    };
    let domain = seat_now(&ctx.view.borrow_and_update(), &ctx.me, &node);
    let domain = match domain {
        Ok(d) => d,
        Err(e) => return Err(refuse(&ctx, "seat", format!("node {node:?} refused: {e}"))),
    };
    let handshake = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_send_buffer_size(STREAM_WINDOW as usize)
        .handshake::<_, Bytes>(tls);
    let (sender, mut conn) =
        match tokio::time::timeout(ctx.timing.handshake_timeout, handshake).await {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => return Err(refuse(&ctx, "h2", format!("HTTP/2 handshake: {e}"))),
            Err(_) => return Err(refuse(&ctx, "h2", "HTTP/2 handshake timed out".to_owned())),
        };
    drop(in_handshake);
    let Some(pp) = conn.ping_pong() else {
        return Err("HTTP/2 PING unavailable".to_owned());
    };
    let entry = ctx.tunnels.add(node.clone(), domain.clone(), sender);
    let gauge = ctx
        .metrics
        .tunnels
        .get_or_create(&l1("peer", domain.label()))
        .clone();
    gauge.inc();
    tracing::info!(%peer, %node, domain = domain.label(), "tunnel up");
    let ka = keepalive(pp, ctx.timing.clone());
    tokio::pin!(ka);
    let result = loop {
        tokio::select! {
            r = &mut conn => break r.map_err(|e| format!("connection: {e}")),
            why = &mut ka => break Err(why),
            changed = ctx.view.changed() => {
                if changed.is_err() {
                    break Err("proxy stopping".to_owned());
                }
                let seat = seat_now(&ctx.view.borrow_and_update(), &ctx.me, &node);
                match seat {
                    Ok(d) if d == domain => {}
                    Ok(d) => break Err(format!("node {node:?} moved to {}; dropping the tunnel", d.label())),
                    Err(e) => break Err(format!("dropping the tunnel of {node:?}: {e}")),
                }
            }
        }
    };
    ctx.tunnels.remove(&entry);
    gauge.dec();
    result
}
