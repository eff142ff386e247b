//! Issuing proxy certificates from an approved, already-checked request with the proxy CA.
//!
//! The certificate is built from our own parameters, not copied from the request: the subject
//! and subject alternative names that [`super::policy`] checked, the key usage and extended
//! key usage of the signer, and our lifetime (never past the CA). Only the public key comes
//! from the request. `status.certificate` holds the leaf followed by the CA bundle, so the
//! node learns the CA to trust from the same answer (over its authenticated API connection).

use std::time::Duration;

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType,
};

use super::policy::{Kind, Parsed};
use crate::webhook::certs::{self, CertError};

/// Signs the request (PEM) as `kind` for `parsed`; returns the PEM chain for
/// `status.certificate` (leaf, then `ca_bundle_pem`).
pub fn sign(
    kind: Kind,
    parsed: &Parsed,
    request_pem: &str,
    ca_bundle_pem: &str,
    ca_key_pem: &str,
    now: i64,
    validity: Duration,
) -> Result<String, CertError> {
    let csr = CertificateSigningRequestParams::from_pem(request_pem)
        .map_err(|e| CertError(format!("request: {e}")))?;
    let ca_ders = certs::pem_certificates(ca_bundle_pem)?;
    let ca_der = ca_ders
        .first()
        .ok_or_else(|| CertError("empty CA bundle".into()))?;
    let ca_end = certs::not_after(ca_der)?;
    let ca_pem = certs::pem_encode(ca_der);
    let issuer = certs::issuer(&ca_pem, ca_key_pem)?;

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, parsed.common_name.as_str());
    let mut sans = Vec::new();
    for d in &parsed.dns_names {
        sans.push(SanType::DnsName(
            d.clone()
                .try_into()
                .map_err(|e| CertError(format!("DNS name {d:?}: {e}")))?,
        ));
    }
    sans.extend(parsed.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match kind {
        Kind::Client | Kind::Front => ExtendedKeyUsagePurpose::ClientAuth,
        Kind::Server => ExtendedKeyUsagePurpose::ServerAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    let secs = i64::try_from(validity.as_secs()).unwrap_or(i64::MAX);
    params.not_before = time::OffsetDateTime::from_unix_timestamp(now - 300)
        .map_err(|e| CertError(format!("time: {e}")))?;
    params.not_after = time::OffsetDateTime::from_unix_timestamp((now + secs).min(ca_end))
        .map_err(|e| CertError(format!("time: {e}")))?;
    let leaf = params
        .signed_by(&csr.public_key, &issuer)
        .map_err(|e| CertError(format!("sign: {e}")))?;
    Ok(format!("{}{}", leaf.pem(), ca_bundle_pem))
}

#[cfg(test)]
mod tests {
    use rcgen::KeyPair;
    use x509_parser::prelude::{FromDer, X509Certificate};

    use super::*;

    #[test]
    fn signed_certificate_has_our_parameters_and_chains_to_the_ca() {
        let now = 1_800_000_000;
        let (ca, ca_key) =
            certs::new_ca("raven-proxy-ca", now, Duration::from_secs(86_400 * 3650)).expect("ca");
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, "raven-proxy-client:a");
        // Asks for CA powers: must not get them.
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let request = p.serialize_request(&key).expect("csr").pem().expect("pem");
        let parsed = Parsed {
            common_name: "raven-proxy-client:a".into(),
            node: "a".into(),
            dns_names: vec![],
            ips: vec![],
        };
        let chain = sign(
            Kind::Client,
            &parsed,
            &request,
            &ca,
            &ca_key,
            now,
            Duration::from_secs(86_400),
        )
        .expect("sign");
        let ders = certs::pem_certificates(&chain).expect("chain");
        assert_eq!(ders.len(), 2, "leaf + CA");
        let (_, leaf) = X509Certificate::from_der(&ders[0]).expect("leaf");
        let (_, ca_cert) = X509Certificate::from_der(&ders[1]).expect("ca");
        leaf.verify_signature(Some(ca_cert.public_key()))
            .expect("signed by the CA");
        assert!(!leaf.is_ca());
        assert_eq!(leaf.subject().to_string(), "CN=raven-proxy-client:a");
        let eku = leaf
            .extended_key_usage()
            .expect("eku")
            .expect("present")
            .value;
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(
            leaf.validity().not_after.timestamp() - now,
            86_400,
            "our lifetime"
        );
        assert_eq!(
            leaf.public_key().raw,
            rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
        );
    }
}
