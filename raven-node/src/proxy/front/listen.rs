//! Accept loops of the HTTPS and plain HTTP listeners: bounded connection count, bounded TLS
//! handshake and request-head time, HTTP/1.1 with upgrades.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::relay::{self, Conn, Shared};
use super::sniff::{Sniff, Verdicts};
use super::{FrontConfig, FrontError, identity};

/// Where the HTTPS listener's TLS configuration comes from.
#[derive(Clone)]
pub enum TlsSource {
    /// Fixed for the listener's lifetime.
    Static(TlsAcceptor),
    /// Re-read from files; each handshake takes the configuration current at accept, so a
    /// rotation never touches established connections.
    Reloading(Arc<super::ReloadingServerTls>),
}

impl TlsSource {
    fn acceptor(&self) -> Option<TlsAcceptor> {
        match self {
            TlsSource::Static(a) => Some(a.clone()),
            TlsSource::Reloading(r) => r.current().map(TlsAcceptor::from),
        }
    }
}

/// Binds `addr` and spawns its accept loop; TLS when `acceptor` is given.
pub async fn spawn(
    addr: SocketAddr,
    acceptor: Option<TlsSource>,
    shared: Arc<Shared>,
    config: &FrontConfig,
) -> Result<(SocketAddr, JoinHandle<()>), FrontError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| FrontError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| FrontError::Bind { addr, source })?;
    let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let timeout = config.header_read_timeout;
    let task = tokio::spawn(accept_loop(listener, acceptor, shared, limit, timeout));
    Ok((bound, task))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsSource>,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    timeout: Duration,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "proxy front: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "proxy front: connection limit reached, closing");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                None => serve(tcp, None, peer, shared, timeout).await,
                Some(source) => {
                    let Some(acceptor) = source.acceptor() else {
                        tracing::debug!(%peer, "proxy front: no serving certificate yet, closing");
                        return;
                    };
                    let tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "proxy front: TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "proxy front: TLS handshake timed out");
                            return;
                        }
                    };
                    let cert_user = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|cert| identity::user_from_cert(cert));
                    serve(tls, cert_user, peer, shared, timeout).await;
                }
            }
        });
    }
}

async fn serve<I>(
    io: I,
    cert_user: Option<super::UserInfo>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    timeout: Duration,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let verdicts = Verdicts::default();
    let io = Sniff::new(io, verdicts.clone());
    let conn = Arc::new(Conn {
        cert_user,
        peer,
        verdicts,
    });
    let service = service_fn(move |req| relay::handle(shared.clone(), conn.clone(), req));
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "proxy front: connection ended with an error");
    }
}
