//! Proxy certificates in Kubernetes mode: this node's key, a CSR for Raven's signer
//! (`raven.openyurt.io/proxy-client` or `/proxy-server`), which raven-controller approves and
//! signs only for the node the requester is bound to, and the files the proxy reloads. The
//! front side's kubelet client certificate ([`CertKind::Front`]) is requested the same way
//! from Kubernetes' `kubernetes.io/kube-apiserver-client` signer: raven-controller approves,
//! kube-controller-manager signs, and no CA file is written.
//!
//! Files, in the configured directory (all written with a temporary file, fsync and rename):
//! - `proxy-<kind>-ca.crt`: the CA bundle to trust (from the CSR answer: raven-controller puts
//!   the leaf first, then its CA bundle). Written first, so a new CA is trusted before a
//!   certificate signed by it is presented.
//! - `proxy-<kind>-current.pem`: the certificate followed by its private key (PKCS#8), mode
//!   0600. One file for both, so a reader can never pair a new certificate with an old key
//!   (kubelet's `kubelet-client-current.pem` does the same). The proxy re-reads it when it
//!   changes.
//!
//! Renewal: [`run`] keeps the files valid without a restart. A certificate is renewed once
//! [`KubeCertConfig::renew_fraction`] of its lifetime has passed (default 2/3), with a fresh key
//! each time; failures back off up to 5 minutes while the old certificate stays in place.
//!
//! Identity: credentials are whatever the kube client carries. In the DaemonSet that is the
//! raven-node ServiceAccount's *projected, pod-bound* token (the default in-cluster token on
//! Kubernetes ≥ 1.21), which raven-controller maps to the pod's node; a plain Secret-based
//! token is refused there, since every node shares the account.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, PostParams};
use raven_api::wellknown::{
    PROXY_CLIENT_CN_PREFIX, PROXY_FRONT_CN_PREFIX, PROXY_FRONT_GROUP, PROXY_SERVER_CN_PREFIX,
    SIGNER_KUBE_APISERVER_CLIENT, SIGNER_PROXY_CLIENT, SIGNER_PROXY_SERVER,
};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData, SanType};
use tracing::{info, warn};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Which certificate: the edge tunnel client's, the cloud proxy server's, or the cloud front
/// side's client certificate towards kubelets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertKind {
    /// Client certificate (`raven.openyurt.io/proxy-client`).
    Client,
    /// Server certificate (`raven.openyurt.io/proxy-server`).
    Server,
    /// The front side's kubelet client certificate (`kubernetes.io/kube-apiserver-client`,
    /// CN `raven-proxy-front:<node>`, O `raven:proxy-fronts`): raven-controller approves it
    /// for proxy servers only, kube-controller-manager signs it with the cluster CA kubelets
    /// trust. Its answer carries no CA bundle (kubelets' roots are configured separately).
    Front,
}

impl CertKind {
    fn signer(self) -> &'static str {
        match self {
            CertKind::Client => SIGNER_PROXY_CLIENT,
            CertKind::Server => SIGNER_PROXY_SERVER,
            CertKind::Front => SIGNER_KUBE_APISERVER_CLIENT,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            CertKind::Client => PROXY_CLIENT_CN_PREFIX,
            CertKind::Server => PROXY_SERVER_CN_PREFIX,
            CertKind::Front => PROXY_FRONT_CN_PREFIX,
        }
    }

    fn word(self) -> &'static str {
        match self {
            CertKind::Client => "client",
            CertKind::Server => "server",
            CertKind::Front => "front",
        }
    }

    /// Whether the signed answer carries the CA bundle to trust (our signers do).
    fn carries_ca(self) -> bool {
        self != CertKind::Front
    }

    /// The usages raven-controller accepts, exactly.
    pub fn usages(self) -> Vec<String> {
        let last = match self {
            CertKind::Client | CertKind::Front => "client auth",
            CertKind::Server => "server auth",
        };
        vec!["digital signature".to_owned(), last.to_owned()]
    }
}

/// What to request and where to write it.
#[derive(Clone, Debug)]
pub struct KubeCertConfig {
    /// This node's name (the certificate's identity).
    pub node: String,
    /// Client or server certificate.
    pub kind: CertKind,
    /// Directory of the files (created if missing).
    pub dir: PathBuf,
    /// Server certificates: DNS names (only the node name is accepted by the controller).
    pub dns_names: Vec<String>,
    /// Server certificates: IP addresses (the node's addresses and its Gateway public IPs).
    pub ips: Vec<IpAddr>,
    /// Fraction of the lifetime after which to renew (0 < f < 1).
    pub renew_fraction: f64,
    /// How long to wait for the controller to sign a submitted CSR.
    pub wait_timeout: Duration,
    /// Requested lifetime (`spec.expirationSeconds`, honoured by Kubernetes ≥ 1.22 and by
    /// raven-controller when shorter than its own).
    pub expiration: Option<Duration>,
}

impl KubeCertConfig {
    /// Defaults for `node` and `kind` in `dir`: renew at 2/3, wait 5 minutes.
    pub fn new(node: &str, kind: CertKind, dir: &Path) -> Self {
        KubeCertConfig {
            node: node.to_owned(),
            kind,
            dir: dir.to_owned(),
            dns_names: Vec::new(),
            ips: Vec::new(),
            renew_fraction: 2.0 / 3.0,
            wait_timeout: Duration::from_secs(300),
            expiration: None,
        }
    }

    /// Path of the certificate + key file.
    pub fn pair_path(&self) -> PathBuf {
        self.dir
            .join(format!("proxy-{}-current.pem", self.kind.word()))
    }

    /// Path of the CA bundle file (not written for [`CertKind::Front`]).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(format!("proxy-{}-ca.crt", self.kind.word()))
    }

    /// The files as the tunnel and the front side read them: certificate and key both from
    /// the pair file (each reader takes the blocks of its kind), the CA bundle beside it.
    pub fn cert_paths(&self) -> crate::proxy::tunnel::certs::CertPaths {
        crate::proxy::tunnel::certs::CertPaths {
            cert: self.pair_path(),
            key: self.pair_path(),
            ca: self.ca_path(),
        }
    }

    fn common_name(&self) -> String {
        format!("{}{}", self.kind.prefix(), self.node)
    }
}

/// Why a certificate could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The controller denied (or failed) the request; `reason` is the condition reason.
    #[error("CSR {name} {kind}: {reason}: {message}")]
    Refused {
        /// CSR name.
        name: String,
        /// `Denied` or `Failed`.
        kind: String,
        /// Condition reason.
        reason: String,
        /// Condition message.
        message: String,
    },
    /// Nobody signed in time.
    #[error("CSR {0} was not signed within {1:?}")]
    Timeout(String, Duration),
    /// API error.
    #[error("API: {0}")]
    Api(String),
    /// Key, CSR or certificate handling.
    #[error("{0}")]
    Crypto(String),
    /// Writing the files.
    #[error("writing {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// A certificate in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// `notBefore`, unix seconds.
    pub not_before: i64,
    /// `notAfter`, unix seconds.
    pub not_after: i64,
    /// When to renew, unix seconds.
    pub renew_at: i64,
    /// Serial number (hex), to tell certificates apart in logs and tests.
    pub serial: String,
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The renewal time of a certificate valid from `not_before` to `not_after`. Pure.
pub fn renew_at(not_before: i64, not_after: i64, fraction: f64) -> i64 {
    let f = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        2.0 / 3.0
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let offset = ((not_after - not_before).max(0) as f64 * f) as i64;
    not_before + offset
}

/// Reads the current files: `Some` when the pair is consistent, names this node with the
/// right common name and is not expired. (Whether it is due for renewal is in `renew_at`.)
pub fn current(cfg: &KubeCertConfig) -> Option<Issued> {
    let pem = std::fs::read(cfg.pair_path()).ok()?;
    if cfg.kind.carries_ca() {
        std::fs::metadata(cfg.ca_path()).ok()?;
    }
    let blocks: Vec<x509_parser::pem::Pem> = x509_parser::pem::Pem::iter_from_buffer(&pem)
        .collect::<Result<_, _>>()
        .ok()?;
    let cert_block = blocks.iter().find(|b| b.label == "CERTIFICATE")?;
    let key_block = blocks.iter().find(|b| b.label == "PRIVATE KEY")?;
    let (_, cert) = X509Certificate::from_der(&cert_block.contents).ok()?;
    let key = KeyPair::try_from(key_block.contents.as_slice()).ok()?;
    if key.subject_public_key_info() != cert.public_key().raw {
        return None;
    }
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    if cn != cfg.common_name() {
        return None;
    }
    if cfg.kind == CertKind::Server && sans_of(&cert) != wanted_sans(cfg) {
        // The public IPs (or names) changed: a new certificate must carry the new set, or
        // edge clients dialing a new address would refuse it (upstream openyurt#2191).
        return None;
    }
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    if not_after <= now_unix() {
        return None;
    }
    Some(Issued {
        not_before,
        not_after,
        renew_at: renew_at(not_before, not_after, cfg.renew_fraction),
        serial: cert.raw_serial_as_string(),
    })
}

/// The subject alternative names a certificate carries, as a comparable set.
fn sans_of(cert: &X509Certificate<'_>) -> std::collections::BTreeSet<String> {
    use x509_parser::extensions::GeneralName;
    let mut out = std::collections::BTreeSet::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    out.insert(format!("dns:{d}"));
                }
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                        _ => None,
                    };
                    out.insert(ip.map_or_else(|| "ip:?".to_owned(), |ip| format!("ip:{ip}")));
                }
                _ => {
                    out.insert("other".to_owned());
                }
            }
        }
    }
    out
}

/// The names `cfg` asks for, in the form of [`sans_of`].
fn wanted_sans(cfg: &KubeCertConfig) -> std::collections::BTreeSet<String> {
    cfg.dns_names
        .iter()
        .map(|d| format!("dns:{d}"))
        .chain(cfg.ips.iter().map(|ip| format!("ip:{ip}")))
        .collect()
}

/// A new key and the PEM CSR for `cfg`.
fn key_and_request(cfg: &KubeCertConfig) -> Result<(KeyPair, String), CertError> {
    let key = KeyPair::generate().map_err(|e| CertError::Crypto(format!("key: {e}")))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, cfg.common_name());
    if cfg.kind == CertKind::Front {
        params
            .distinguished_name
            .push(DnType::OrganizationName, PROXY_FRONT_GROUP);
    }
    if cfg.kind == CertKind::Server {
        for d in &cfg.dns_names {
            params.subject_alt_names.push(SanType::DnsName(
                d.clone()
                    .try_into()
                    .map_err(|e| CertError::Crypto(format!("DNS name {d:?}: {e}")))?,
            ));
        }
        params
            .subject_alt_names
            .extend(cfg.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    }
    let request = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| CertError::Crypto(format!("CSR: {e}")))?;
    Ok((key, request))
}

/// Writes `content` to `path` atomically (mode `mode`; see [`crate::cni_install::fsops`]).
fn write_atomic(path: &Path, content: &[u8], mode: u32) -> Result<(), CertError> {
    crate::cni_install::fsops::write_atomic(path, content, mode)
        .map(drop)
        .map_err(|e| CertError::Io(path.to_owned(), e))
}

/// Submits a CSR, waits for the signed certificate and writes the files. Always a new key.
pub async fn request_once(client: &Client, cfg: &KubeCertConfig) -> Result<Issued, CertError> {
    let (key, request) = key_and_request(cfg)?;
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some(format!("raven-proxy-{}-{}-", cfg.kind.word(), cfg.node)),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request.into_bytes()),
            signer_name: cfg.kind.signer().to_owned(),
            usages: Some(cfg.kind.usages()),
            expiration_seconds: cfg.expiration.and_then(|d| i32::try_from(d.as_secs()).ok()),
            ..Default::default()
        },
        status: None,
    };
    let created = csrs
        .create(&PostParams::default(), &csr)
        .await
        .map_err(|e| CertError::Api(format!("create CSR: {e}")))?;
    let name = created.metadata.name.clone().unwrap_or_default();
    info!(csr = %name, signer = cfg.kind.signer(), "proxy certificate requested");
    let deadline = tokio::time::Instant::now() + cfg.wait_timeout;
    let chain = loop {
        let c = csrs
            .get(&name)
            .await
            .map_err(|e| CertError::Api(format!("get CSR {name}: {e}")))?;
        let status = c.status.unwrap_or_default();
        if let Some(cond) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True")
        {
            return Err(CertError::Refused {
                name,
                kind: cond.type_.clone(),
                reason: cond.reason.clone().unwrap_or_default(),
                message: cond.message.clone().unwrap_or_default(),
            });
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            break String::from_utf8_lossy(&cert.0).into_owned();
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CertError::Timeout(name, cfg.wait_timeout));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    install(cfg, &chain, &key)
}

/// Splits the signed chain (leaf, then CA bundle, except for [`CertKind::Front`]), checks the
/// leaf is for our key and name, and writes the CA bundle, then the certificate + key.
fn install(cfg: &KubeCertConfig, chain: &str, key: &KeyPair) -> Result<Issued, CertError> {
    let blocks: Vec<x509_parser::pem::Pem> =
        x509_parser::pem::Pem::iter_from_buffer(chain.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| CertError::Crypto(format!("signed certificate PEM: {e}")))?;
    let (leaf_block, ca_blocks) = blocks
        .split_first()
        .ok_or_else(|| CertError::Crypto("empty signed certificate".into()))?;
    if ca_blocks.is_empty() && cfg.kind.carries_ca() {
        return Err(CertError::Crypto(
            "the signed certificate carries no CA bundle".into(),
        ));
    }
    let (_, leaf) = X509Certificate::from_der(&leaf_block.contents)
        .map_err(|e| CertError::Crypto(format!("signed certificate: {e}")))?;
    if leaf.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(CertError::Crypto(
            "the signed certificate is not for our key".into(),
        ));
    }
    let cn = leaf
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default();
    if cn != cfg.common_name() {
        return Err(CertError::Crypto(format!(
            "the signed certificate names {cn:?}, not {:?}",
            cfg.common_name()
        )));
    }
    let pem_of = |b: &x509_parser::pem::Pem| {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&b.contents);
        let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        out
    };
    if cfg.kind.carries_ca() {
        let ca_bundle: String = ca_blocks.iter().map(pem_of).collect();
        write_atomic(&cfg.ca_path(), ca_bundle.as_bytes(), 0o644)?;
    }
    let pair = format!("{}{}", pem_of(leaf_block), key.serialize_pem());
    write_atomic(&cfg.pair_path(), pair.as_bytes(), 0o600)?;
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    Ok(Issued {
        not_before,
        not_after,
        renew_at: renew_at(not_before, not_after, cfg.renew_fraction),
        serial: leaf.raw_serial_as_string(),
    })
}

/// The current certificate if it is not yet due, else a new one.
pub async fn ensure(client: &Client, cfg: &KubeCertConfig) -> Result<Issued, CertError> {
    match current(cfg) {
        Some(c) if c.renew_at > now_unix() => Ok(c),
        _ => request_once(client, cfg).await,
    }
}

/// Keeps the files valid forever: renews when due, retries failures with backoff (1 s doubling
/// to 5 min) while the old files stay in place, and re-checks at least every 5 minutes (a
/// deleted file is replaced). `on_update` runs after every new certificate is written.
pub async fn run(client: Client, cfg: KubeCertConfig, on_update: impl Fn(&Issued) + Send) {
    let mut backoff = Duration::from_secs(1);
    let mut last_serial = current(&cfg).map(|c| c.serial);
    loop {
        let wait = match ensure(&client, &cfg).await {
            Ok(issued) => {
                backoff = Duration::from_secs(1);
                if last_serial.as_deref() != Some(issued.serial.as_str()) {
                    info!(serial = %issued.serial, not_after = issued.not_after,
                        "proxy certificate written");
                    on_update(&issued);
                    last_serial = Some(issued.serial.clone());
                }
                let secs = u64::try_from(issued.renew_at - now_unix()).unwrap_or(0);
                Duration::from_secs(secs)
                    .clamp(Duration::from_millis(200), Duration::from_secs(300))
            }
            Err(e) => {
                warn!("proxy certificate: {e}; retrying in {backoff:?}");
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(300));
                w
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renew_at_table() {
        for (nb, na, f, want) in [
            (0, 300, 2.0 / 3.0, 200),
            (100, 100, 0.5, 100),
            (0, 1000, 0.0, 0),
            (0, 1000, 1.5, 1000),
            (0, 900, f64::NAN, 600),
            (50, 10, 0.5, 50),
        ] {
            assert_eq!(renew_at(nb, na, f), want, "{nb} {na} {f}");
        }
    }

    /// The subject `cfg`'s request asks for; fails if it requests any extension.
    fn requested_subject_without_extensions(cfg: &KubeCertConfig) -> String {
        let (_, pem) = key_and_request(cfg).expect("csr");
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
        let (_, req) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
                .expect("csr");
        assert!(
            req.requested_extensions()
                .is_none_or(|mut e| e.next().is_none())
        );
        req.certification_request_info.subject.to_string()
    }

    #[test]
    fn request_names_the_node_and_only_server_certs_carry_sans() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cfg = KubeCertConfig::new("edge-1", CertKind::Client, dir.path());
        cfg.dns_names = vec!["edge-1".into()];
        assert_eq!(
            requested_subject_without_extensions(&cfg),
            "CN=raven-proxy-client:edge-1"
        );
        cfg.kind = CertKind::Server;
        let (_, pem) = key_and_request(&cfg).expect("csr");
        assert!(pem.contains("CERTIFICATE REQUEST"));
        // The front's kubelet identity: its node in the CN, the RBAC group in O, no SANs.
        cfg.kind = CertKind::Front;
        assert_eq!(
            requested_subject_without_extensions(&cfg),
            "CN=raven-proxy-front:edge-1, O=raven:proxy-fronts"
        );
        assert_eq!(
            CertKind::Front.signer(),
            "kubernetes.io/kube-apiserver-client"
        );
        assert_eq!(
            CertKind::Front.usages(),
            ["digital signature", "client auth"]
        );
    }

    #[test]
    fn install_rejects_a_certificate_for_another_key_or_name_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = KubeCertConfig::new("edge-1", CertKind::Client, dir.path());
        let key = KeyPair::generate().expect("key");
        let other = KeyPair::generate().expect("key");
        let mk = |cn: &str, k: &KeyPair| {
            let mut p = CertificateParams::default();
            p.distinguished_name = DistinguishedName::new();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.self_signed(k).expect("cert").pem()
        };
        let ca = mk("ca", &other);
        let wrong_key = format!("{}{ca}", mk("raven-proxy-client:edge-1", &other));
        assert!(install(&cfg, &wrong_key, &key).is_err());
        let wrong_name = format!("{}{ca}", mk("raven-proxy-client:edge-2", &key));
        assert!(install(&cfg, &wrong_name, &key).is_err());
        let no_ca = mk("raven-proxy-client:edge-1", &key);
        assert!(install(&cfg, &no_ca, &key).is_err());
        assert!(!cfg.pair_path().exists() && !cfg.ca_path().exists());
        let good = format!("{}{ca}", mk("raven-proxy-client:edge-1", &key));
        let issued = install(&cfg, &good, &key).expect("install");
        assert_eq!(current(&cfg).map(|c| c.serial), Some(issued.serial));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cfg.pair_path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // The front's certificate comes from kube-controller-manager as the leaf alone.
        let front = KubeCertConfig::new("edge-1", CertKind::Front, dir.path());
        let leaf = mk("raven-proxy-front:edge-1", &key);
        let issued = install(&front, &leaf, &key).expect("install front");
        assert!(!front.ca_path().exists(), "no CA file for the front");
        assert_eq!(current(&front).map(|c| c.serial), Some(issued.serial));
        let client_named = mk("raven-proxy-client:edge-1", &key);
        assert!(install(&front, &client_named, &key).is_err());
    }
}
