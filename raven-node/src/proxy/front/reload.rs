//! TLS material read from files and rebuilt when their bytes change, for both legs of the
//! front side: the HTTPS listener's serving certificate and client CA ([`ServerTlsFiles`]),
//! and the kubelet leg's roots and client certificate ([`TargetTlsFiles`]). Certificates
//! rotate (CSR renewals, cert-manager, a re-created Secret) and none of that may need a
//! restart or drop a connection: each new handshake takes the configuration current at that
//! moment, established connections keep theirs.
//!
//! A rotation that does not parse (garbage, a mismatched pair, a half-written file) is refused
//! and the previous configuration stays. Files that do not exist (yet) are waited for: a CSR
//! still pending, or a Secret the operator has not created, leaves that leg unusable with a
//! clear log line instead of stopping the daemon.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::pem::PemObject;

use super::FrontError;
use super::tls::{ServerTls, TargetTls, client_config, server_config, static_cert};

/// A set of files that together make one rustls configuration.
pub trait TlsFiles: Send + Sync + 'static {
    /// The configuration built from them.
    type Config: Send + Sync + 'static;
    /// Which material this is, in logs and as the metrics' `material` label.
    const MATERIAL: &'static str;
    /// Every file, in the order [`TlsFiles::build`] receives their bytes.
    fn paths(&self) -> Vec<&Path>;
    /// Builds the configuration from the files' bytes.
    fn build(&self, bytes: &[Vec<u8>]) -> Result<Self::Config, FrontError>;
    /// How often the files are checked.
    fn interval(&self) -> Duration;
}

/// The HTTPS listener's material as files (Kubernetes mode's CSR-issued server certificate,
/// or files an operator or cert-manager replaces).
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

impl TlsFiles for ServerTlsFiles {
    type Config = ServerConfig;
    const MATERIAL: &'static str = "serving";

    fn paths(&self) -> Vec<&Path> {
        let mut p = vec![self.cert.as_path(), self.key.as_path()];
        p.extend(self.client_ca.as_deref());
        p
    }

    fn build(&self, bytes: &[Vec<u8>]) -> Result<ServerConfig, FrontError> {
        let client_ca = match (&self.client_ca, bytes.get(2)) {
            (Some(p), Some(b)) => Some(pem_certs(p, b)?),
            _ => None,
        };
        server_config(&ServerTls {
            cert: static_cert(
                pem_certs(&self.cert, &bytes[0])?,
                pem_key(&self.key, &bytes[1])?,
            )?,
            client_ca,
        })
    }

    fn interval(&self) -> Duration {
        self.interval
    }
}

/// The kubelet leg's material as files: the roots verifying kubelets' serving certificates
/// and our client certificate towards them (both rotate with the cluster's PKI).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetTlsFiles {
    /// Roots (PEM bundle) that verify the targets' serving certificates.
    pub roots: PathBuf,
    /// Our client certificate chain and key (PEM); `None`: no client certificate.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// How often the files are checked.
    pub interval: Duration,
}

impl TlsFiles for TargetTlsFiles {
    type Config = ClientConfig;
    const MATERIAL: &'static str = "target";

    fn paths(&self) -> Vec<&Path> {
        let mut p = vec![self.roots.as_path()];
        if let Some((c, k)) = &self.client_cert {
            p.extend([c.as_path(), k.as_path()]);
        }
        p
    }

    fn build(&self, bytes: &[Vec<u8>]) -> Result<ClientConfig, FrontError> {
        let client_cert = match (&self.client_cert, bytes.get(1), bytes.get(2)) {
            (Some((c, k)), Some(cb), Some(kb)) => {
                let resolver: Arc<dyn rustls::client::ResolvesClientCert> =
                    static_cert(pem_certs(c, cb)?, pem_key(k, kb)?)?;
                Some(resolver)
            }
            _ => None,
        };
        // Which ports speak TLS is `TargetTls::ports`' business; roots read from a file are
        // never empty (`pem_certs`), so the configuration needs no ports to be checked.
        client_config(&TargetTls {
            ports: Default::default(),
            roots: pem_certs(&self.roots, &bytes[0])?,
            client_cert,
        })
    }

    fn interval(&self) -> Duration {
        self.interval
    }
}

/// What [`Reloading::reload`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reload {
    /// Same bytes as the material in use.
    Unchanged,
    /// New material swapped in; new handshakes use it, established connections keep theirs.
    Rotated,
    /// A file does not exist (yet). The previous material, if any, stays in use.
    Missing(PathBuf),
}

/// The current configuration built from `F`'s files, rebuilt when their bytes change and
/// parse.
#[derive(Debug)]
pub struct Reloading<F: TlsFiles> {
    files: F,
    state: RwLock<Option<(u64, Arc<F::Config>)>>,
}

/// The HTTPS listener's reloading configuration.
pub type ReloadingServerTls = Reloading<ServerTlsFiles>;
/// The kubelet leg's reloading configuration.
pub type ReloadingTargetTls = Reloading<TargetTlsFiles>;

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

fn pem_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, FrontError> {
    PrivateKeyDer::from_pem_slice(bytes)
        .map_err(|e| FrontError::Tls(format!("{}: {e}", path.display())))
}

impl<F: TlsFiles> Reloading<F> {
    /// Loads the files once. Files that exist but are unusable are an error now; missing
    /// files are waited for ([`Reloading::current`] is `None` until they appear).
    pub fn new(files: F) -> Result<Self, FrontError> {
        let me = Self {
            files,
            state: RwLock::new(None),
        };
        me.reload()?;
        Ok(me)
    }

    /// The configuration for the next handshake; `None` while no material was ever loaded.
    pub fn current(&self) -> Option<Arc<F::Config>> {
        let state = match self.state.read() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        state.as_ref().map(|(_, c)| c.clone())
    }

    /// Re-reads the files and swaps the configuration when their bytes changed and parse.
    /// On error the previous configuration stays in use.
    pub fn reload(&self) -> Result<Reload, FrontError> {
        let mut bytes = Vec::new();
        for path in self.files.paths() {
            match read_optional(path)? {
                Some(b) => bytes.push(b),
                None => return Ok(Reload::Missing(path.to_owned())),
            }
        }
        let mut h = DefaultHasher::new();
        bytes.hash(&mut h);
        let digest = h.finish();
        let current = self.state.read().ok().and_then(|s| s.as_ref().map(|s| s.0));
        if current == Some(digest) {
            return Ok(Reload::Unchanged);
        }
        let config = Arc::new(self.files.build(&bytes)?);
        match self.state.write() {
            Ok(mut s) => *s = Some((digest, config)),
            Err(poisoned) => *poisoned.into_inner() = Some((digest, config)),
        }
        Ok(Reload::Rotated)
    }

    /// Re-checks the files every interval until the task is aborted, logging and counting
    /// each rotation and each refused one.
    pub async fn reload_loop(self: Arc<Self>, metrics: super::FrontMetrics) {
        let material = F::MATERIAL;
        let mut last_missing: Option<PathBuf> = None;
        loop {
            tokio::time::sleep(self.files.interval()).await;
            match self.reload() {
                Ok(Reload::Unchanged) => {}
                Ok(Reload::Rotated) => {
                    last_missing = None;
                    metrics.cert_reload(material, "rotated");
                    tracing::info!(
                        material,
                        "proxy front: TLS material (re)loaded; new handshakes use it"
                    );
                }
                Ok(Reload::Missing(p)) => {
                    if last_missing.as_ref() != Some(&p) {
                        tracing::warn!(material, file = %p.display(), "proxy front: TLS file missing; keeping the previous material");
                        last_missing = Some(p);
                    }
                }
                Err(e) => {
                    metrics.cert_reload(material, "error");
                    tracing::warn!(
                        material,
                        "proxy front: TLS material not reloaded (keeping the previous one): {e}"
                    );
                }
            }
        }
    }
}
