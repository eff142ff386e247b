//! TLS of the front side: the HTTPS listener (server certificate through a resolver, so a
//! rotating certificate source can swap it without a restart; optional client certificates
//! from the configured CA) and the onward leg to targets (verified against the configured
//! roots, our own client certificate presented).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::FrontError;

/// The HTTPS listener's TLS settings.
#[derive(Clone)]
pub struct ServerTls {
    /// Serving certificate (see [`static_cert`] for a fixed one).
    pub cert: Arc<dyn ResolvesServerCert>,
    /// CA whose client certificates authenticate callers (kube-apiserver's kubelet-client
    /// CA). `None`: certificates are not asked for and only bearer tokens authenticate.
    pub client_ca: Option<Vec<CertificateDer<'static>>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_ca", &self.client_ca.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// TLS on the leg to the target.
#[derive(Clone)]
pub struct TargetTls {
    /// Target ports spoken to with TLS (default: the kubelet's 10250), besides the ports the
    /// node's Gateway lists as HTTPS ([`crate::proxy::Dialer::is_https_port`]); others get
    /// plain HTTP.
    pub ports: BTreeSet<u16>,
    /// Roots that verify the targets' serving certificates (the kubelet serving CA). The name
    /// checked is the node name. Empty: TLS targets cannot be reached (refused at start if
    /// `ports` is not empty): we never skip verification.
    pub roots: Vec<CertificateDer<'static>>,
    /// Our own client certificate towards targets (the kubelet authorizes it).
    pub client_cert: Option<Arc<dyn ResolvesClientCert>>,
}

impl fmt::Debug for TargetTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetTls")
            .field("ports", &self.ports)
            .field("roots", &self.roots.len())
            .field("client_cert", &self.client_cert.is_some())
            .finish()
    }
}

/// The crypto provider (ring, the one already linked through kube).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A fixed certificate and key as a resolver usable on both sides.
pub fn static_cert(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<SingleCertAndKey>, FrontError> {
    let ck = CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| FrontError::Tls(format!("certificate and key: {e}")))?;
    Ok(Arc::new(SingleCertAndKey::from(ck)))
}

fn roots(certs: &[CertificateDer<'static>], what: &str) -> Result<Arc<RootCertStore>, FrontError> {
    let mut store = RootCertStore::empty();
    for c in certs {
        store
            .add(c.clone())
            .map_err(|e| FrontError::Tls(format!("{what}: {e}")))?;
    }
    Ok(Arc::new(store))
}

/// The listener's rustls configuration.
pub fn server_config(tls: &ServerTls) -> Result<ServerConfig, FrontError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| FrontError::Tls(e.to_string()))?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            // Optional at the TLS layer: token callers have no certificate. The request layer
            // refuses callers with neither.
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots(ca, "client CA")?, provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| FrontError::Tls(format!("client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(tls.cert.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The target leg's rustls configuration.
pub fn client_config(tls: &TargetTls) -> Result<ClientConfig, FrontError> {
    if tls.roots.is_empty() && !tls.ports.is_empty() {
        return Err(FrontError::Tls(
            "TLS target ports are configured but no roots to verify targets".into(),
        ));
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| FrontError::Tls(e.to_string()))?
        .with_root_certificates(roots(&tls.roots, "target roots")?);
    let mut config = match &tls.client_cert {
        Some(resolver) => builder.with_client_cert_resolver(resolver.clone()),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
