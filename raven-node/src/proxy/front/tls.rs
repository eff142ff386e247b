//! TLS of the front side: the HTTPS listener (server certificate through a resolver, so a
//! rotating certificate source can swap it without a restart; optional client certificates
//! from the configured CA) and the onward leg to targets (verified against the configured
//! roots, our own client certificate presented).

use std::collections::BTreeSet;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use std::path::Path;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;

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
    /// Target ports spoken to with TLS (default: the kubelet's 10250); others get plain HTTP.
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

/// Every certificate of a PEM file (a chain or a CA bundle), for standalone mode's files.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, FrontError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| FrontError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(FrontError::Tls(format!(
            "{}: no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, FrontError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| FrontError::Tls(format!("{}: {e}", path.display())))
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

/// The HTTPS listener's material as files, re-read when they change (certificate rotation
/// without a restart: Kubernetes mode's CSR-issued server certificate, or files an operator or
/// cert-manager replaces).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// Serving certificate chain (PEM; may be the same file as `key`).
    pub cert: PathBuf,
    /// Serving key (PEM).
    pub key: PathBuf,
    /// CA of callers' client certificates; re-read with the rest.
    pub client_ca: Option<PathBuf>,
    /// How often the files are checked.
    pub interval: Duration,
}

/// What [`ReloadingServerTls::reload`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reload {
    /// Same bytes as the material in use.
    Unchanged,
    /// New material swapped in; new handshakes use it, established connections keep theirs.
    Rotated,
    /// The files do not exist (yet): a CSR still pending. Handshakes fail meanwhile.
    Missing(PathBuf),
}

/// The listener's current configuration, rebuilt from [`ServerTlsFiles`] when their bytes
/// change and parse. A bad rotation (garbage, mismatched pair) is refused and the previous
/// configuration stays, so a half-written update can never take the listener down.
#[derive(Debug)]
pub struct ReloadingServerTls {
    files: ServerTlsFiles,
    state: RwLock<Option<(u64, Arc<ServerConfig>)>>,
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, FrontError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FrontError::Tls(format!("{}: {e}", path.display()))),
    }
}

fn pem_certs(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, FrontError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| FrontError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(FrontError::Tls(format!(
            "{}: no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

impl ReloadingServerTls {
    /// Loads the files once. Files that exist but are unusable are an error now; missing
    /// files are waited for (no handshake succeeds until they appear).
    pub fn new(files: ServerTlsFiles) -> Result<Self, FrontError> {
        let me = Self {
            files,
            state: RwLock::new(None),
        };
        me.reload()?;
        Ok(me)
    }

    /// The configuration for the next handshake; `None` while no material was ever loaded.
    pub fn current(&self) -> Option<Arc<ServerConfig>> {
        match self.state.read() {
            Ok(s) => s.as_ref().map(|(_, c)| c.clone()),
            Err(poisoned) => poisoned.into_inner().as_ref().map(|(_, c)| c.clone()),
        }
    }

    /// Re-reads the files and swaps the configuration when their bytes changed and parse.
    /// On error the previous configuration stays in use.
    pub fn reload(&self) -> Result<Reload, FrontError> {
        let f = &self.files;
        let Some(cert) = read_optional(&f.cert)? else {
            return Ok(Reload::Missing(f.cert.clone()));
        };
        let Some(key) = read_optional(&f.key)? else {
            return Ok(Reload::Missing(f.key.clone()));
        };
        let ca = match &f.client_ca {
            Some(p) => match read_optional(p)? {
                Some(b) => Some(b),
                None => return Ok(Reload::Missing(p.clone())),
            },
            None => None,
        };
        let mut h = DefaultHasher::new();
        (&cert, &key, &ca).hash(&mut h);
        let digest = h.finish();
        let current = self.state.read().ok().and_then(|s| s.as_ref().map(|s| s.0));
        if current == Some(digest) {
            return Ok(Reload::Unchanged);
        }
        let chain = pem_certs(&f.cert, &cert)?;
        let key = PrivateKeyDer::from_pem_slice(&key)
            .map_err(|e| FrontError::Tls(format!("{}: {e}", f.key.display())))?;
        let client_ca = match (&f.client_ca, &ca) {
            (Some(p), Some(b)) => Some(pem_certs(p, b)?),
            _ => None,
        };
        let config = Arc::new(server_config(&ServerTls {
            cert: static_cert(chain, key)?,
            client_ca,
        })?);
        match self.state.write() {
            Ok(mut s) => *s = Some((digest, config)),
            Err(poisoned) => *poisoned.into_inner() = Some((digest, config)),
        }
        Ok(Reload::Rotated)
    }

    /// Whether callers may present client certificates (a client CA is configured).
    pub fn has_client_ca(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// Re-checks the files every interval until the task is aborted, logging and counting
    /// each rotation and each refused one.
    pub async fn reload_loop(self: Arc<Self>, metrics: super::FrontMetrics) {
        let mut last_missing: Option<PathBuf> = None;
        loop {
            tokio::time::sleep(self.files.interval).await;
            match self.reload() {
                Ok(Reload::Unchanged) => {}
                Ok(Reload::Rotated) => {
                    last_missing = None;
                    metrics.cert_reload("rotated");
                    tracing::info!(
                        "proxy front: serving certificate (re)loaded; new handshakes use it"
                    );
                }
                Ok(Reload::Missing(p)) => {
                    if last_missing.as_ref() != Some(&p) {
                        tracing::warn!(file = %p.display(), "proxy front: certificate file missing; keeping the previous material");
                        last_missing = Some(p);
                    }
                }
                Err(e) => {
                    metrics.cert_reload("error");
                    tracing::warn!(
                        "proxy front: certificate not reloaded (keeping the previous one): {e}"
                    );
                }
            }
        }
    }
}
