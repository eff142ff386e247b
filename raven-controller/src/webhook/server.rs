//! The HTTPS server of the webhooks: TLS (rustls, certificate swapped in place on renewal, no
//! restart), HTTP/1.1 and HTTP/2 (hyper), three POST routes plus `/healthz`.
//!
//! Limits: request bodies above [`MAX_BODY`] are refused with 413 (the API server's own limit
//! for an object is 3 MiB; a ConversionReview of a list holds many, hence 32 MiB), a TLS
//! handshake that does not finish in [`HANDSHAKE_TIMEOUT`] is dropped, and every connection
//! is its own task, so one slow client cannot stall the others.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::node_writes::{self, Writer};
use super::review;

/// What the validating webhook needs to tell node agents apart ([`node_writes`]): the API
/// client to look up the pod a pod-bound token names, raven-node's ServiceAccount user and the
/// namespace of its pods.
#[derive(Clone)]
pub struct NodeWriters {
    /// API client (reads Pods).
    pub client: kube::Client,
    /// raven-node's ServiceAccount user name.
    pub raven_node_user: String,
    /// Namespace of raven-node's pods.
    pub namespace: String,
}

impl std::fmt::Debug for NodeWriters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeWriters")
            .field("raven_node_user", &self.raven_node_user)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl NodeWriters {
    /// The writer of a request: a raven-node token's pod is looked up (a failed lookup leaves
    /// it unbound, so its writes are refused, never let through).
    async fn writer(&self, r: &review::Requester) -> Writer {
        let pod_node = crate::bound_pod::agent_pod_node(
            &self.client,
            &self.namespace,
            &self.raven_node_user,
            &r.user.username,
            r.pod.as_ref(),
        )
        .await
        .unwrap_or_else(|e| {
            warn!("Gateway admission: {e}; the write is refused");
            None
        });
        node_writes::writer(&r.user, &self.raven_node_user, pod_node.as_deref())
    }
}

/// Path of the mutating (defaulting) webhook, as upstream.
pub const PATH_MUTATE: &str = "/mutate-raven-openyurt-io-v1beta1-gateway";
/// Path of the validating webhook, as upstream.
pub const PATH_VALIDATE: &str = "/validate-raven-openyurt-io-v1beta1-gateway";
/// Path of the CRD conversion webhook.
pub const PATH_CONVERT: &str = raven_api::wellknown::CONVERSION_WEBHOOK_PATH;
/// Largest accepted request body.
pub const MAX_BODY: usize = 32 << 20;
/// Longest TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The serving certificate, replaceable while connections are being accepted.
#[derive(Debug, Default)]
pub struct CertSlot {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl CertSlot {
    /// Installs a new certificate chain and key (PEM); the next handshake uses it.
    pub fn install(&self, cert_pem: &str, key_pem: &str) -> Result<(), String> {
        let key = certified_key(cert_pem, key_pem)?;
        let mut slot = self
            .current
            .write()
            .map_err(|_| "certificate slot poisoned".to_owned())?;
        *slot = Some(Arc::new(key));
        Ok(())
    }

    /// Whether a certificate is installed.
    pub fn ready(&self) -> bool {
        self.current.read().is_ok_and(|c| c.is_some())
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().and_then(|c| c.clone())
    }
}

/// A rustls key from PEM, checked to match the certificate.
pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in PEM".into());
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("key PEM: {e}"))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("key: {e}"))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|e| format!("key and certificate: {e}"))?;
    Ok(ck)
}

/// TLS server configuration around `slot` (TLS 1.2 and 1.3, ALPN h2 and http/1.1).
pub fn tls_config(slot: Arc<CertSlot>) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(slot);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Binds `addr` and serves forever (errors of single connections are logged, not returned).
pub async fn serve(
    addr: SocketAddr,
    slot: Arc<CertSlot>,
    writers: Arc<NodeWriters>,
) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("webhook server cannot bind {addr}: {e}"))?;
    serve_listener(listener, slot, writers).await
}

/// Serves on an already bound listener.
pub async fn serve_listener(
    listener: TcpListener,
    slot: Arc<CertSlot>,
    writers: Arc<NodeWriters>,
) -> Result<(), String> {
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(slot)?));
    info!(addr = ?listener.local_addr().ok(), "webhook server listening");
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!("webhook accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let writers = writers.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(%peer, "webhook TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "webhook TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| handle(req, writers.clone()));
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                debug!(%peer, "webhook connection: {e}");
            }
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn text(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", msg.as_bytes().to_vec())
}

async fn handle(
    req: Request<Incoming>,
    writers: Arc<NodeWriters>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    if req.method() == Method::GET && path == "/healthz" {
        return Ok(text(StatusCode::OK, "ok"));
    }
    if ![PATH_MUTATE, PATH_VALIDATE, PATH_CONVERT].contains(&path.as_str()) {
        return Ok(text(StatusCode::NOT_FOUND, "no such webhook"));
    }
    if req.method() != Method::POST {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "POST only"));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let too_big = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return Ok(if too_big {
                text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            } else {
                text(StatusCode::BAD_REQUEST, "cannot read request body")
            });
        }
    };
    let answer = match path.as_str() {
        PATH_MUTATE => review::mutate(&body),
        PATH_CONVERT => convert_logged(&body),
        _ => match review::requester(&body) {
            Ok(who) => review::validate(&body, &writers.writer(&who).await),
            Err(e) => Err(e),
        },
    };
    Ok(match answer {
        Ok(out) => reply(StatusCode::OK, "application/json", out),
        Err(e) => {
            warn!(path, "bad webhook request: {e}");
            text(StatusCode::BAD_REQUEST, &e.0)
        }
    })
}

fn convert_logged(body: &[u8]) -> Result<Vec<u8>, review::BadReview> {
    let (out, warnings) = review::convert(body)?;
    for w in warnings {
        warn!("conversion: {w}");
    }
    Ok(out)
}
