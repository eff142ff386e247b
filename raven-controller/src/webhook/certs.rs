//! The webhook's own PKI: a CA and a serving certificate for the webhook Service, kept in one
//! Secret, and the pure decision whether what is stored can be reused.
//!
//! Layout of the Secret (type `kubernetes.io/tls`, so `kubectl` and other tools understand it):
//! `tls.crt`/`tls.key` the serving certificate and key, `ca.crt` the CA bundle the API server
//! must trust (the current CA first, then older CAs that are still valid, so a CA rotation
//! never invalidates a serving certificate that another replica still presents), `ca.key` the
//! current CA key.
//!
//! Lifetimes: the CA lives [`Policy::ca_validity`] (10 years) and is replaced when less than
//! [`Policy::ca_renew_before`] is left; the serving certificate lives [`Policy::leaf_validity`]
//! (1 year, never past the CA) and is replaced when less than [`Policy::leaf_renew_before`] is
//! left. Renewing the leaf keeps the CA, so the CA bundle in the webhook configurations does
//! not change and no request fails during a renewal.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Secret key of the serving certificate (PEM).
pub const KEY_TLS_CRT: &str = "tls.crt";
/// Secret key of the serving key (PKCS#8 PEM).
pub const KEY_TLS_KEY: &str = "tls.key";
/// Secret key of the CA bundle (PEM, current CA first).
pub const KEY_CA_CRT: &str = "ca.crt";
/// Secret key of the current CA key (PKCS#8 PEM).
pub const KEY_CA_KEY: &str = "ca.key";

/// Certificate lifetimes; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Lifetime of a new CA.
    pub ca_validity: Duration,
    /// Replace the CA when less than this is left.
    pub ca_renew_before: Duration,
    /// Lifetime of a new serving certificate.
    pub leaf_validity: Duration,
    /// Replace the serving certificate when less than this is left.
    pub leaf_renew_before: Duration,
}

const DAY: u64 = 86_400;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            ca_validity: Duration::from_secs(3650 * DAY),
            ca_renew_before: Duration::from_secs(365 * DAY),
            leaf_validity: Duration::from_secs(365 * DAY),
            leaf_renew_before: Duration::from_secs(30 * DAY),
        }
    }
}

/// PEM material as stored in the Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Material {
    /// Serving certificate.
    pub tls_crt: String,
    /// Serving key.
    pub tls_key: String,
    /// CA bundle, current CA first.
    pub ca_crt: String,
    /// Current CA key.
    pub ca_key: String,
}

/// What to do with the stored material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assessment {
    /// Valid: serve it; look again at `renew_at` (unix seconds) at the latest.
    Valid {
        /// When the first renewal threshold is crossed.
        renew_at: i64,
    },
    /// The CA is fine, the serving certificate must be re-issued (why).
    RenewLeaf(String),
    /// Start over with a new CA (why); still-valid old CAs stay in the bundle.
    RenewCa(String),
}

/// Why certificates could not be generated or read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CertError(pub String);

fn cert_err(what: &str, e: impl std::fmt::Display) -> CertError {
    CertError(format!("{what}: {e}"))
}

/// The DNS names the API server may use for `service` in `namespace`: it verifies
/// `<service>.<namespace>.svc`; the others serve in-cluster clients and tools.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Every certificate (DER) in a PEM bundle, in order; non-certificate blocks are skipped.
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, CertError> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| cert_err("PEM", e))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    Ok(out)
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| cert_err("certificate", e))
}

/// `notAfter` of a DER certificate, unix seconds.
pub fn not_after(der: &[u8]) -> Result<i64, CertError> {
    Ok(parse(der)?.validity().not_after.timestamp())
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Decides whether `m` can serve `dns_names` at unix time `now`. Pure; see the module docs.
pub fn assess(m: &Material, dns_names: &[String], now: i64, policy: &Policy) -> Assessment {
    match assess_inner(m, dns_names, now, policy) {
        Ok(a) => a,
        Err(e) => Assessment::RenewCa(e.0),
    }
}

fn assess_inner(
    m: &Material,
    dns_names: &[String],
    now: i64,
    policy: &Policy,
) -> Result<Assessment, CertError> {
    let cas = pem_certificates(&m.ca_crt)?;
    let ca_der = cas
        .first()
        .ok_or_else(|| CertError("no CA certificate stored".into()))?;
    let ca = parse(ca_der)?;
    if !ca.is_ca() {
        return Err(CertError("stored CA certificate is not a CA".into()));
    }
    let ca_key = KeyPair::from_pem(&m.ca_key).map_err(|e| cert_err("CA key", e))?;
    if ca_key.subject_public_key_info() != ca.public_key().raw {
        return Err(CertError("CA key does not match the CA certificate".into()));
    }
    let ca_end = ca.validity().not_after.timestamp();
    if ca_end - now < secs(policy.ca_renew_before) {
        return Ok(Assessment::RenewCa(format!(
            "CA expires at {ca_end}, within the renewal window"
        )));
    }

    let leaf_check = || -> Result<i64, String> {
        let leaves = pem_certificates(&m.tls_crt).map_err(|e| e.0)?;
        let leaf_der = leaves.first().ok_or("no serving certificate stored")?;
        let leaf = parse(leaf_der).map_err(|e| e.0)?;
        leaf.verify_signature(Some(ca.public_key()))
            .map_err(|_| "serving certificate is not signed by the current CA".to_owned())?;
        let key = KeyPair::from_pem(&m.tls_key).map_err(|e| format!("serving key: {e}"))?;
        if key.subject_public_key_info() != leaf.public_key().raw {
            return Err("serving key does not match the serving certificate".into());
        }
        let sans: Vec<String> = leaf
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(d) => Some((*d).to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(missing) = dns_names.iter().find(|n| !sans.contains(n)) {
            return Err(format!("serving certificate does not name {missing}"));
        }
        let start = leaf.validity().not_before.timestamp();
        if start > now + 300 {
            return Err(format!("serving certificate is not valid before {start}"));
        }
        let end = leaf.validity().not_after.timestamp();
        if end - now < secs(policy.leaf_renew_before) {
            return Err(format!(
                "serving certificate expires at {end}, within the renewal window"
            ));
        }
        Ok(end)
    };
    match leaf_check() {
        Ok(leaf_end) => Ok(Assessment::Valid {
            renew_at: (leaf_end - secs(policy.leaf_renew_before))
                .min(ca_end - secs(policy.ca_renew_before)),
        }),
        Err(why) => Ok(Assessment::RenewLeaf(why)),
    }
}

fn offset(unix: i64) -> Result<time::OffsetDateTime, CertError> {
    time::OffsetDateTime::from_unix_timestamp(unix).map_err(|e| cert_err("time", e))
}

/// A new self-signed CA with common name `cn`: (certificate PEM, key PEM).
pub fn new_ca(cn: &str, now: i64, validity: Duration) -> Result<(String, String), CertError> {
    let key = KeyPair::generate().map_err(|e| cert_err("CA key", e))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // Back-dated a little: clocks of the API server and the controller differ.
    params.not_before = offset(now - 300)?;
    params.not_after = offset(now + secs(validity))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| cert_err("self-sign CA", e))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// An issuer from a stored CA certificate and key.
pub fn issuer(ca_pem: &str, ca_key_pem: &str) -> Result<Issuer<'static, KeyPair>, CertError> {
    let key = KeyPair::from_pem(ca_key_pem).map_err(|e| cert_err("CA key", e))?;
    Issuer::from_ca_cert_pem(ca_pem, key).map_err(|e| cert_err("CA certificate", e))
}

/// A serving certificate for `dns_names`, signed by the CA, valid for `validity` but never
/// past `ca_not_after`: (certificate PEM, key PEM).
pub fn new_serving_cert(
    ca_pem: &str,
    ca_key_pem: &str,
    dns_names: &[String],
    now: i64,
    validity: Duration,
) -> Result<(String, String), CertError> {
    let ca_ders = pem_certificates(ca_pem)?;
    let ca_end = not_after(ca_ders.first().ok_or_else(|| CertError("no CA".into()))?)?;
    let issuer = issuer(ca_pem, ca_key_pem)?;
    let key = KeyPair::generate().map_err(|e| cert_err("serving key", e))?;
    let mut params =
        CertificateParams::new(dns_names.to_vec()).map_err(|e| cert_err("DNS names", e))?;
    params.distinguished_name = DistinguishedName::new();
    if let Some(first) = dns_names.get(2).or(dns_names.first()) {
        params.distinguished_name.push(DnType::CommonName, first);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = offset(now - 300)?;
    params.not_after = offset((now + secs(validity)).min(ca_end))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| cert_err("sign serving certificate", e))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// New material after `assessment` said to renew: re-issues the leaf with the stored CA, or
/// creates a new CA and keeps the still-valid old CAs (those after the first) in the bundle.
pub fn renew(
    old: Option<&Material>,
    assessment: &Assessment,
    ca_cn: &str,
    dns_names: &[String],
    now: i64,
    policy: &Policy,
) -> Result<Material, CertError> {
    let (ca_crt, ca_key, ca_bundle) = match (old, assessment) {
        (Some(m), Assessment::RenewLeaf(_)) => {
            let current = first_pem_block(&m.ca_crt)?;
            (current, m.ca_key.clone(), m.ca_crt.clone())
        }
        _ => {
            let (crt, key) = new_ca(ca_cn, now, policy.ca_validity)?;
            let mut bundle = crt.clone();
            if let Some(m) = old {
                for der in pem_certificates(&m.ca_crt).unwrap_or_default() {
                    if not_after(&der).is_ok_and(|end| end > now) {
                        bundle.push_str(&pem_encode(&der));
                    }
                }
            }
            (crt, key, bundle)
        }
    };
    let (tls_crt, tls_key) =
        new_serving_cert(&ca_crt, &ca_key, dns_names, now, policy.leaf_validity)?;
    Ok(Material {
        tls_crt,
        tls_key,
        ca_crt: ca_bundle,
        ca_key,
    })
}

/// The first certificate of a bundle, re-encoded as PEM.
fn first_pem_block(bundle: &str) -> Result<String, CertError> {
    let ders = pem_certificates(bundle)?;
    ders.first()
        .map(|d| pem_encode(d))
        .ok_or_else(|| CertError("empty CA bundle".into()))
}

/// DER certificate as PEM.
pub fn pem_encode(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn names() -> Vec<String> {
        service_dns_names("raven-controller-webhook", "kube-system")
    }

    fn fresh(policy: &Policy) -> Material {
        renew(
            None,
            &Assessment::RenewCa("none".into()),
            "test-ca",
            &names(),
            NOW,
            policy,
        )
        .expect("generate")
    }

    #[test]
    fn fresh_material_is_valid_and_renews_at_the_leaf_window() {
        let p = Policy::default();
        let m = fresh(&p);
        let a = assess(&m, &names(), NOW, &p);
        let want = NOW + secs(p.leaf_validity) - secs(p.leaf_renew_before);
        assert_eq!(a, Assessment::Valid { renew_at: want });
    }

    #[test]
    fn assessment_table() {
        let p = Policy::default();
        let m = fresh(&p);
        let other = fresh(&p);
        let leaf_end = NOW + secs(p.leaf_validity);
        let ca_end = NOW + secs(p.ca_validity);
        let cases: Vec<(&str, Material, Vec<String>, i64, &str)> = vec![
            ("valid", m.clone(), names(), NOW, "Valid"),
            (
                "leaf in renewal window",
                m.clone(),
                names(),
                leaf_end - 10,
                "RenewLeaf",
            ),
            (
                "leaf expired",
                m.clone(),
                names(),
                leaf_end + 10,
                "RenewLeaf",
            ),
            (
                "CA in renewal window",
                m.clone(),
                names(),
                ca_end - 10,
                "RenewCa",
            ),
            (
                "missing DNS name",
                m.clone(),
                vec!["other.kube-system.svc".into()],
                NOW,
                "RenewLeaf",
            ),
            (
                "leaf from another CA",
                Material {
                    tls_crt: other.tls_crt.clone(),
                    tls_key: other.tls_key.clone(),
                    ..m.clone()
                },
                names(),
                NOW,
                "RenewLeaf",
            ),
            (
                "key of another certificate",
                Material {
                    tls_key: other.tls_key.clone(),
                    ..m.clone()
                },
                names(),
                NOW,
                "RenewLeaf",
            ),
            (
                "CA key mismatch",
                Material {
                    ca_key: other.ca_key.clone(),
                    ..m.clone()
                },
                names(),
                NOW,
                "RenewCa",
            ),
            ("empty", Material::default(), names(), NOW, "RenewCa"),
            (
                "garbage CA",
                Material {
                    ca_crt: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
                    ..m.clone()
                },
                names(),
                NOW,
                "RenewCa",
            ),
        ];
        for (case, material, dns, now, want) in cases {
            let got = assess(&material, &dns, now, &p);
            let kind = match got {
                Assessment::Valid { .. } => "Valid",
                Assessment::RenewLeaf(_) => "RenewLeaf",
                Assessment::RenewCa(_) => "RenewCa",
            };
            assert_eq!(kind, want, "{case}: {got:?}");
        }
    }

    #[test]
    fn leaf_renewal_keeps_the_ca_and_bundle() {
        let p = Policy::default();
        let m = fresh(&p);
        let later = NOW + secs(p.leaf_validity) - 10;
        let a = assess(&m, &names(), later, &p);
        let renewed = renew(Some(&m), &a, "test-ca", &names(), later, &p).expect("renew");
        assert_eq!(renewed.ca_crt, m.ca_crt);
        assert_eq!(renewed.ca_key, m.ca_key);
        assert_ne!(renewed.tls_crt, m.tls_crt);
        assert!(matches!(
            assess(&renewed, &names(), later, &p),
            Assessment::Valid { .. }
        ));
    }

    #[test]
    fn ca_rotation_keeps_the_old_ca_in_the_bundle_until_it_expires() {
        let p = Policy::default();
        let m = fresh(&p);
        let later = NOW + secs(p.ca_validity) - 10;
        let a = assess(&m, &names(), later, &p);
        assert!(matches!(a, Assessment::RenewCa(_)), "{a:?}");
        let rotated = renew(Some(&m), &a, "test-ca", &names(), later, &p).expect("rotate");
        let bundle = pem_certificates(&rotated.ca_crt).expect("bundle");
        let old = pem_certificates(&m.ca_crt).expect("old");
        assert_eq!(bundle.len(), 2);
        assert_eq!(bundle[1], old[0], "old CA kept second");
        assert_ne!(rotated.ca_key, m.ca_key);
        assert!(matches!(
            assess(&rotated, &names(), later, &p),
            Assessment::Valid { .. }
        ));
        // After the old CA expired, the next rotation drops it.
        let much_later = later + secs(p.ca_validity) - 5;
        let again = renew(
            Some(&rotated),
            &Assessment::RenewCa("test".into()),
            "test-ca",
            &names(),
            much_later,
            &p,
        )
        .expect("rotate again");
        assert_eq!(pem_certificates(&again.ca_crt).expect("bundle").len(), 2);
    }

    #[test]
    fn leaf_never_outlives_its_ca() {
        let p = Policy {
            ca_validity: Duration::from_secs(100 * DAY),
            ca_renew_before: Duration::from_secs(DAY),
            ..Policy::default()
        };
        let m = fresh(&p);
        let leaf = pem_certificates(&m.tls_crt).expect("leaf");
        let ca = pem_certificates(&m.ca_crt).expect("ca");
        assert_eq!(
            not_after(&leaf[0]).expect("leaf end"),
            not_after(&ca[0]).expect("ca end")
        );
    }

    #[test]
    fn pem_encode_round_trips() {
        let p = Policy::default();
        let m = fresh(&p);
        let der = pem_certificates(&m.tls_crt).expect("der");
        assert_eq!(pem_certificates(&pem_encode(&der[0])).expect("again"), der);
    }
}
