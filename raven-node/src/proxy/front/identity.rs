//! The caller's identity from its verified client certificate: user = subject CN, groups =
//! subject O values, as Kubernetes' x509 authenticator does.
//!
//! rustls has already verified the chain against the configured CA; this reads only the
//! subject with a small bounds-checked DER walker (no new dependency for two attributes).

use super::auth::UserInfo;
use crate::proxy::der::tlv;

/// OID 2.5.4.3 (commonName), DER content bytes.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// OID 2.5.4.10 (organizationName), DER content bytes.
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];

/// The subject of a DER certificate as a user, `None` when it has no CN or does not parse.
pub fn user_from_cert(der: &[u8]) -> Option<UserInfo> {
    const SEQUENCE: u8 = 0x30;
    let (tag, cert, _) = tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // Optional [0] version.
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (tag, mut subject, _) = tlv(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut user = UserInfo::default();
    while !subject.is_empty() {
        let (_, mut rdn, after) = tlv(subject)?;
        subject = after;
        while !rdn.is_empty() {
            let (_, atv, after) = tlv(rdn)?;
            rdn = after;
            let (oid_tag, oid, value) = tlv(atv)?;
            let (_, text, _) = tlv(value)?;
            if oid_tag != 0x06 {
                continue;
            }
            let Ok(text) = std::str::from_utf8(text) else {
                continue;
            };
            if oid == OID_CN {
                user.name = text.to_owned();
            } else if oid == OID_O {
                user.groups.push(text.to_owned());
            }
        }
    }
    (!user.name.is_empty()).then_some(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cn_and_organizations() {
        let mut params = rcgen::CertificateParams::new(vec!["x".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver-kubelet-client");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:masters");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let user = user_from_cert(cert.der()).unwrap();
        assert_eq!(user.name, "kube-apiserver-kubelet-client");
        assert_eq!(user.groups, ["system:masters"]);
        // Every truncation is refused, never a panic.
        for n in 0..cert.der().len() {
            let _ = user_from_cert(&cert.der()[..n]);
        }
    }

    #[test]
    fn garbage_never_panics() {
        for input in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x03, 0x30, 0x01],
            &[0x30, 0x80],
        ] {
            assert_eq!(user_from_cert(input), None);
        }
    }
}
