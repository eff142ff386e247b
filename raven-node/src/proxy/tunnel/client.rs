//! The edge side: holds one tunnel to a server replica (reconnecting with capped, jittered
//! backoff) and serves the server's `CONNECT <node>:<port>` streams by dialing the node's
//! InternalIP from inside this domain — only for nodes of this domain and allowed ports
//! ([`ProxyView::edge_target`]), never as an open relay.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use h2::server::SendResponse;
use http::{Method, Request, Response, StatusCode};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::certs::{Reloader, server_node_from_cert};
use super::metrics::{ProxyMetrics, l1};
use super::pump;
use super::transport::{self, Transport};
use super::view::ProxyView;
use super::{
    CONNECTION_WINDOW, ERROR_HEADER, MAX_FRAME, MAX_STREAMS, STREAM_WINDOW, Timing, jitter,
    keepalive,
};

/// What the edge needs to serve streams.
#[derive(Clone, Debug)]
pub struct EdgeCtx {
    /// This node.
    pub me: String,
    /// Where a solo node's own ports are dialed.
    pub solo_ip: IpAddr,
    /// The current view.
    pub view: watch::Receiver<Arc<ProxyView>>,
    /// Metrics.
    pub metrics: ProxyMetrics,
    /// Timeouts.
    pub timing: Timing,
}

/// Keeps a tunnel to `server` up until the task is aborted.
pub async fn run(
    server: SocketAddr,
    server_name: Option<String>,
    certs: Arc<Reloader>,
    ctx: EdgeCtx,
) {
    let label = server.to_string();
    let up = ctx
        .metrics
        .tunnel_up
        .get_or_create(&l1("server", &label))
        .clone();
    let mut backoff = ctx.timing.backoff_initial;
    loop {
        let started = Instant::now();
        let connected = connect(server, server_name.as_deref(), &certs, &ctx.timing)
            .await
            .and_then(|tls| {
                let named = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(server_node_from_cert);
                ctx.view
                    .borrow()
                    .check_server_identity(named.as_deref(), server)?;
                Ok(tls)
            });
        match connected {
            Ok(tls) => {
                ctx.metrics
                    .tunnel_connects
                    .get_or_create(&l1("result", "ok"))
                    .inc();
                tracing::info!(%server, "tunnel connected");
                up.set(1);
                let why = serve(tls, ctx.clone()).await;
                up.set(0);
                tracing::warn!(%server, "tunnel down: {why}");
            }
            Err(e) => {
                ctx.metrics
                    .tunnel_connects
                    .get_or_create(&l1("result", "error"))
                    .inc();
                tracing::warn!(%server, "tunnel connect failed: {e}");
            }
        }
        // A tunnel that held for a while was healthy: start the backoff over.
        if started.elapsed() > ctx.timing.backoff_cap {
            backoff = ctx.timing.backoff_initial;
        }
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(ctx.timing.backoff_cap);
    }
}

async fn connect(
    server: SocketAddr,
    server_name: Option<&str>,
    certs: &Reloader,
    timing: &Timing,
) -> Result<tokio_rustls::client::TlsStream<Transport>, String> {
    let name = match server_name {
        Some(n) => {
            ServerName::try_from(n.to_owned()).map_err(|e| format!("server name {n:?}: {e}"))?
        }
        None => ServerName::IpAddress(server.ip().into()),
    };
    let connector = tokio_rustls::TlsConnector::from(certs.current().client.clone());
    let attempt = async {
        let tcp = TcpStream::connect(server)
            .await
            .map_err(|e| format!("TCP: {e}"))?;
        let mut tls = connector
            .connect(name, transport::wrap(tcp))
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        transport::tune(tls.get_mut().1);
        Ok(tls)
    };
    tokio::time::timeout(timing.handshake_timeout, attempt)
        .await
        .map_err(|_| format!("no TLS session within {:?}", timing.handshake_timeout))?
}

/// Serves one established tunnel (any byte stream, so tests can use an in-memory pipe) until
/// it ends; returns why.
pub async fn serve<T>(io: T, ctx: EdgeCtx) -> String
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(MAX_STREAMS)
        .max_frame_size(MAX_FRAME)
        .max_send_buffer_size(STREAM_WINDOW as usize)
        .handshake::<_, Bytes>(io);
    let mut conn = match tokio::time::timeout(ctx.timing.handshake_timeout, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return format!("HTTP/2 handshake: {e}"),
        Err(_) => return "HTTP/2 handshake timed out".to_owned(),
    };
    let Some(pp) = conn.ping_pong() else {
        return "HTTP/2 PING unavailable".to_owned();
    };
    let ka = keepalive(pp, ctx.timing.clone());
    tokio::pin!(ka);
    let streams = pump::StreamCount::default();
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((req, respond))) => {
                    let ctx = ctx.clone();
                    let counted = streams.enter();
                    tokio::spawn(async move { serve_stream(req, respond, ctx, counted).await });
                }
                Some(Err(e)) => return format!("connection: {e}"),
                None => return "closed by the server".to_owned(),
            },
            why = &mut ka => return why,
        }
    }
}

fn reply(respond: &mut SendResponse<Bytes>, status: StatusCode, why: &str) {
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    if let Ok(v) =
        http::HeaderValue::from_str(&why.replace(|c: char| !c.is_ascii() || c.is_control(), "?"))
    {
        resp.headers_mut().insert(ERROR_HEADER, v);
    }
    let _ = respond.send_response(resp, true);
}

/// Parses the `CONNECT` authority `<node>:<port>`.
pub fn parse_target(req: &Request<h2::RecvStream>) -> Option<(String, u16)> {
    if req.method() != Method::CONNECT {
        return None;
    }
    let auth = req.uri().authority()?;
    let port = auth.port_u16()?;
    let node = auth.host();
    (!node.is_empty()).then(|| (node.to_owned(), port))
}

async fn serve_stream(
    req: Request<h2::RecvStream>,
    mut respond: SendResponse<Bytes>,
    ctx: EdgeCtx,
    counted: pump::Counted,
) {
    let count = |result: &str| {
        ctx.metrics
            .edge_streams
            .get_or_create(&l1("result", result))
            .inc()
    };
    let Some((node, port)) = parse_target(&req) else {
        count("refused");
        return reply(
            &mut respond,
            StatusCode::BAD_REQUEST,
            "expected CONNECT <node>:<port>",
        );
    };
    let target = ctx
        .view
        .borrow()
        .edge_target(&ctx.me, ctx.solo_ip, &node, port);
    let addr = match target {
        Ok(a) => a,
        Err(e) => {
            count("refused");
            tracing::warn!(%node, port, "refused a stream: {e}");
            return reply(&mut respond, StatusCode::FORBIDDEN, &e.to_string());
        }
    };
    let tcp = match tokio::time::timeout(ctx.timing.dial_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            count("dial_error");
            return reply(
                &mut respond,
                StatusCode::BAD_GATEWAY,
                &format!("dialing {addr}: {e}"),
            );
        }
        Err(_) => {
            count("timeout");
            let why = format!(
                "dialing {addr}: no answer within {:?}",
                ctx.timing.dial_timeout
            );
            return reply(&mut respond, StatusCode::GATEWAY_TIMEOUT, &why);
        }
    };
    let _ = tcp.set_nodelay(true);
    let send = match respond.send_response(Response::new(()), false) {
        Ok(s) => s,
        Err(_) => return, // the server gave up on the stream
    };
    count("ok");
    // Both halves end on EOF (END_STREAM / FIN, half-close passed on); h2 still flushes the
    // frames queued before the stream is dropped.
    let _ = pump::relay(send, req.into_body(), tcp, counted).await;
}
