//! Tunnel certificates: PEM files on disk (the interface for both standalone mode and the
//! Kubernetes-mode CSR writer), reloaded when their content changes, turned into rustls
//! configurations; and the node identity a client certificate carries.
//!
//! Identity: the client certificate's subject CN is `system:node:<nodeName>` (the convention
//! of kubelet client certificates, so a CSR from the Kubernetes node identity maps 1:1), or
//! `raven-proxy-client:<nodeName>` as raven-controller signs it in Kubernetes mode. The CA
//! given to the proxy must be a Raven-specific signer: every certificate it signs with such a
//! CN is trusted to speak for that node.
//!
//! Rotation: [`TlsFiles::load`] reads the three files; [`Reloader`] re-reads them on a timer
//! and only swaps the configuration when the bytes changed and parse. Writers use
//! [`write_files`] (temp file + rename per file), so a reader never sees a torn file; a
//! mismatched pair during the swap fails to load and the previous configuration stays.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::proxy::der::tlv;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Prefix of the CN naming a node.
pub const NODE_CN_PREFIX: &str = "system:node:";
/// ALPN protocol of the tunnel (refuses anything that is not a Raven tunnel).
pub const ALPN: &[u8] = b"raven-tunnel/1";
/// File names inside a certificate directory (those of a `kubernetes.io/tls` Secret + CA).
pub const DIR_CERT: &str = "tls.crt";
/// Private key file name in a certificate directory.
pub const DIR_KEY: &str = "tls.key";
/// CA bundle file name in a certificate directory.
pub const DIR_CA: &str = "ca.crt";

/// Where the PEM files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPaths {
    /// Certificate chain (leaf first).
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA bundle that signs the peers' certificates.
    pub ca: PathBuf,
}

impl CertPaths {
    /// `tls.crt`, `tls.key`, `ca.crt` in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join(DIR_CERT),
            key: dir.join(DIR_KEY),
            ca: dir.join(DIR_CA),
        }
    }
}

/// Why the certificate files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A file does not hold what it should.
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the material.
    #[error("building the TLS configuration: {0}")]
    Tls(String),
}

/// The ring provider (already in the tree through kube), explicitly, so the process-wide
/// default provider never matters, with TLS 1.3 AES-128-GCM preferred: both ends of a tunnel
/// have AES and carry-less-multiply instructions (AES-NI/PCLMULQDQ, VAES where present), and
/// 128-bit keys take 10 AES rounds per block instead of 14 (AES-256-GCM, ring's first choice).
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    // Stable: the rest keeps ring's order.
    p.cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(p)
}

/// Loaded, parsed material.
#[derive(Debug)]
pub struct TlsFiles {
    chain: Vec<CertificateDer<'static>>,
    /// The leaf's notAfter (unix seconds), when its validity parses.
    not_after: Option<i64>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
    digest: u64,
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certs_from(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Parse {
            path: path.to_owned(),
            reason: format!("bad PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(CertError::Parse {
            path: path.to_owned(),
            reason: "no CERTIFICATE block".to_owned(),
        });
    }
    Ok(certs)
}

impl TlsFiles {
    /// Reads and parses the three files.
    pub fn load(paths: &CertPaths) -> Result<Self, CertError> {
        let (cert, key, ca) = (read(&paths.cert)?, read(&paths.key)?, read(&paths.ca)?);
        let mut h = DefaultHasher::new();
        (&cert, &key, &ca).hash(&mut h);
        let chain = certs_from(&paths.cert, &cert)?;
        let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| CertError::Parse {
            path: paths.key.clone(),
            reason: format!("no usable private key: {e}"),
        })?;
        let mut roots = RootCertStore::empty();
        for c in certs_from(&paths.ca, &ca)? {
            roots.add(c).map_err(|e| CertError::Parse {
                path: paths.ca.clone(),
                reason: format!("bad CA certificate: {e}"),
            })?;
        }
        let not_after = chain.first().and_then(|leaf| not_after(leaf));
        let files = Self {
            chain,
            not_after,
            key,
            roots: Arc::new(roots),
            digest: h.finish(),
        };
        // Check the pair now, so a mismatched rotation is refused before it is swapped in.
        files.client_config()?;
        Ok(files)
    }

    /// The node this certificate names (its CN), if any.
    pub fn node_name(&self) -> Option<String> {
        self.chain.first().and_then(|c| node_from_cert(c))
    }

    /// Server side: requires a client certificate signed by the CA.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, CertError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| CertError::Tls(e.to_string()))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| CertError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| CertError::Tls(e.to_string()))?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Arc::new(cfg))
    }

    /// Client side: verifies the server against the CA and presents this certificate.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, CertError> {
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| CertError::Tls(e.to_string()))?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| CertError::Tls(e.to_string()))?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// A certificate's notAfter in unix seconds (`None` when it does not parse as X.509).
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    x509_parser::parse_x509_certificate(cert.as_ref())
        .ok()
        .map(|(_, c)| c.validity().not_after.timestamp())
}

/// The current configurations, swapped on rotation.
#[derive(Clone, Debug)]
pub struct Current {
    /// For the tunnel listener.
    pub server: Arc<rustls::ServerConfig>,
    /// For dialing servers.
    pub client: Arc<rustls::ClientConfig>,
    /// The certificate's notAfter (unix seconds), for the expiry metric.
    pub not_after: Option<i64>,
}

/// Holds the last good material and reloads it when the files change.
#[derive(Debug)]
pub struct Reloader {
    paths: CertPaths,
    state: RwLock<(u64, Arc<Current>)>,
}

impl Reloader {
    /// Loads the files once; fails when they are unusable now.
    pub fn new(paths: CertPaths) -> Result<Self, CertError> {
        let files = TlsFiles::load(&paths)?;
        let current = Arc::new(Current {
            server: files.server_config()?,
            client: files.client_config()?,
            not_after: files.not_after,
        });
        Ok(Self {
            paths,
            state: RwLock::new((files.digest, current)),
        })
    }

    /// The configurations to use for the next handshake.
    pub fn current(&self) -> Arc<Current> {
        match self.state.read() {
            Ok(s) => s.1.clone(),
            Err(poisoned) => poisoned.into_inner().1.clone(),
        }
    }

    /// Re-reads the files; `Ok(true)` when new material was swapped in. On error the previous
    /// material stays in use.
    pub fn reload(&self) -> Result<bool, CertError> {
        let files = TlsFiles::load(&self.paths)?;
        let digest = self.state.read().map(|s| s.0).unwrap_or_default();
        if files.digest == digest {
            return Ok(false);
        }
        let current = Arc::new(Current {
            server: files.server_config()?,
            client: files.client_config()?,
            not_after: files.not_after,
        });
        match self.state.write() {
            Ok(mut s) => *s = (files.digest, current),
            Err(poisoned) => *poisoned.into_inner() = (files.digest, current),
        }
        Ok(true)
    }
}

/// The hook for certificate issuers (Kubernetes-mode CSR flow): writes PEM material into
/// `paths` atomically (temp file in the same directory, fsync, rename; the key 0600). The
/// running proxy picks it up on its next reload tick. Files are written key, cert, CA.
pub fn write_files(
    paths: &CertPaths,
    cert_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
) -> io::Result<()> {
    write_atomic(&paths.key, key_pem, 0o600)?;
    write_atomic(&paths.cert, cert_pem, 0o644)?;
    write_atomic(&paths.ca, ca_pem, 0o644)
}

/// Atomic replace (temporary file, fsync, rename, directory fsync): a reader sees the old or
/// the new file, never a prefix. The same helper writes the CNI configuration.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    crate::cni_install::fsops::write_atomic(path, bytes, mode).map(drop)
}

/// The node named by a certificate's subject CN: `system:node:<name>` (files, kubelet
/// convention) or `raven-proxy-client:<name>` (what raven-controller signs for the
/// `raven.openyurt.io/proxy-client` signer in Kubernetes mode). The server-certificate prefix
/// is never an identity here (and such a certificate lacks the client-auth usage anyway).
pub fn node_from_cert(cert: &CertificateDer<'_>) -> Option<String> {
    cn_node(cert, raven_api::wellknown::PROXY_CLIENT_CN_PREFIX)
}

/// The node a *server* certificate names: `system:node:<name>` (files) or
/// `raven-proxy-server:<name>` (what raven-controller signs for the
/// `raven.openyurt.io/proxy-server` signer). The edge checks it against the endpoint it dialed.
pub fn server_node_from_cert(cert: &CertificateDer<'_>) -> Option<String> {
    cn_node(cert, raven_api::wellknown::PROXY_SERVER_CN_PREFIX)
}

/// The name after `system:node:` or after `raven_prefix` in the subject CN.
fn cn_node(cert: &CertificateDer<'_>, raven_prefix: &str) -> Option<String> {
    let cn = subject_cn(cert.as_ref())?;
    let name = cn
        .strip_prefix(NODE_CN_PREFIX)
        .or_else(|| cn.strip_prefix(raven_prefix))?;
    (!name.is_empty() && name.len() <= 253).then(|| name.to_owned())
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// id-at-commonName 2.5.4.3.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];

/// The subject CN of an X.509 certificate (UTF8String, PrintableString or IA5String).
fn subject_cn(der: &[u8]) -> Option<String> {
    let (tag, cert, _) = tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // [0] version (optional), serial, signature, issuer, validity, then subject.
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r;
    }
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (tag, subject, _) = tlv(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rdns = subject;
    let mut found = None;
    while !rdns.is_empty() {
        let (tag, set, r) = tlv(rdns)?;
        rdns = r;
        if tag != SET {
            return None;
        }
        let mut atvs = set;
        while !atvs.is_empty() {
            let (tag, atv, r) = tlv(atvs)?;
            atvs = r;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, r) = tlv(atv)?;
            if tag == OID && oid == OID_CN {
                let (vtag, value, _) = tlv(r)?;
                if matches!(vtag, 0x0c | 0x13 | 0x16) {
                    // A certificate with two CNs names no single node.
                    if found.is_some() {
                        return None;
                    }
                    found = Some(String::from_utf8(value.to_vec()).ok()?);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with_cn(cn: &str) -> CertificateDer<'static> {
        let mut params =
            rcgen::CertificateParams::new(vec!["x.example".to_owned()]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("self-signed").der().clone()
    }

    #[test]
    fn node_name_from_cn() {
        assert_eq!(
            node_from_cert(&cert_with_cn("system:node:edge-a-1")).as_deref(),
            Some("edge-a-1")
        );
        assert_eq!(node_from_cert(&cert_with_cn("edge-a-1")), None);
        assert_eq!(
            node_from_cert(&cert_with_cn("raven-proxy-client:edge-a-2")).as_deref(),
            Some("edge-a-2")
        );
        assert_eq!(
            node_from_cert(&cert_with_cn("raven-proxy-server:edge-a-2")),
            None
        );
        assert_eq!(node_from_cert(&cert_with_cn("raven-proxy-client:")), None);
        assert_eq!(node_from_cert(&cert_with_cn("system:node:")), None);
    }

    #[test]
    fn malformed_der_is_none_never_a_panic() {
        let good = cert_with_cn("system:node:n");
        let bytes = good.as_ref();
        for cut in 0..bytes.len() {
            let _ = subject_cn(&bytes[..cut]);
        }
        let mut flipped = bytes.to_vec();
        for i in 0..flipped.len().min(400) {
            flipped[i] ^= 0xff;
            let _ = subject_cn(&flipped);
            flipped[i] ^= 0xff;
        }
        assert_eq!(subject_cn(&[]), None);
        assert_eq!(subject_cn(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn files_load_reload_and_refuse_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = CertPaths::in_dir(dir.path());
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let issue = |cn: &str, year: i32| {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut p = rcgen::CertificateParams::new(vec!["n".to_owned()]).expect("params");
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            p.not_after = rcgen::date_time_ymd(year, 1, 1);
            let c = p.signed_by(&key, &issuer).expect("signed");
            (c.pem(), key.serialize_pem())
        };
        assert!(matches!(
            Reloader::new(paths.clone()),
            Err(CertError::Read { .. })
        ));
        let (c1, k1) = issue("system:node:one", 2030);
        write_files(&paths, c1.as_bytes(), k1.as_bytes(), ca.pem().as_bytes()).expect("write");
        let r = Reloader::new(paths.clone()).expect("loads");
        assert!(
            !r.reload().expect("same files"),
            "unchanged files are not a rotation"
        );
        // 2030-01-01T00:00:00Z, then 2031's: the expiry metric's source follows rotations.
        assert_eq!(r.current().not_after, Some(1_893_456_000));
        let (c2, k2) = issue("system:node:two", 2031);
        write_files(&paths, c2.as_bytes(), k2.as_bytes(), ca.pem().as_bytes()).expect("write");
        assert!(r.reload().expect("rotated"));
        assert_eq!(r.current().not_after, Some(1_924_992_000));
        assert_eq!(
            TlsFiles::load(&paths).expect("load").node_name().as_deref(),
            Some("two")
        );
        // A mismatched pair (key of one, cert of two) is refused; the old material stays.
        write_atomic(&paths.key, k1.as_bytes(), 0o600).expect("write");
        assert!(r.reload().is_err());
        std::fs::write(&paths.cert, "garbage").expect("write");
        let e = r.reload().expect_err("garbage refused");
        assert!(e.to_string().contains("tls.crt"), "{e}");
        assert_eq!(
            r.current().not_after,
            Some(1_924_992_000),
            "refused files leave the material (and its notAfter) in use"
        );
    }
}
