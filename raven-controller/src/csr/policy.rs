//! The approval policy for Raven's proxy certificates, pure and table-tested.
//!
//! Three kinds: [`SIGNER_PROXY_CLIENT`] and [`SIGNER_PROXY_SERVER`] (our signers: approved and
//! signed here), and the proxy front's kubelet client certificate of Kubernetes' own
//! [`SIGNER_KUBE_APISERVER_CLIENT`] (approved here, signed by kube-controller-manager with the
//! cluster CA that kubelets trust). A request of that signer is ours only when its subject
//! common name starts with [`PROXY_FRONT_CN_PREFIX`] ([`is_ours`]); any other is left alone.
//!
//! A request of ours is approved only when all of this holds; otherwise it is denied with a
//! reason, never left pending:
//! - the PKCS#10 request parses and its self-signature verifies;
//! - its subject is exactly one common name, `raven-proxy-client:<node>` (client) or
//!   `raven-proxy-server:<node>` (server), or exactly `CN=raven-proxy-front:<node>` plus
//!   `O=`[`PROXY_FRONT_GROUP`] (front), and `<node>` exists;
//! - the requester is bound to that node: either the node itself (`system:node:<node>` in
//!   group `system:nodes`, e.g. kubelet credentials), or the raven-node ServiceAccount with a
//!   pod-bound token (`spec.extra` names the pod) whose pod runs on `<node>`. A raven-node
//!   token without a pod binding is refused: every node shares that ServiceAccount, so the
//!   account alone proves nothing about the node;
//! - `spec.usages` is exactly `digital signature` + `client auth` (client, front) or `digital
//!   signature` + `server auth` (server);
//! - server and front: the node is a proxy server now, an active proxy endpoint of an exposed
//!   Gateway. The front certificate may call every kubelet's API (exec into any pod), and a
//!   server certificate is what edges trust as the cloud, so other nodes never get either;
//! - front, where Kubernetes honours `spec.expirationSeconds` (≥ 1.22, [`honours_expiration`]):
//!   the request asks for at most [`FRONT_MAX_LIFETIME_SECONDS`]. Otherwise
//!   kube-controller-manager signs for its `--cluster-signing-duration` (a year by default),
//!   and a node that lost the server role would keep exec rights that long;
//! - the only requested extension is subjectAltName: none for a client or front; for a server, DNS
//!   names limited to `<node>` and IP addresses limited to the node's own addresses and the
//!   public IPs of its active proxy endpoints in Gateway status (what edge clients dial, as
//!   the controller elected it; [`node_facts`]).

use std::collections::BTreeSet;
use std::net::IpAddr;

use raven_api::gateway::EndpointType;
use raven_api::gateway::v1beta1::Gateway;

use raven_api::wellknown::{
    PROXY_CLIENT_CN_PREFIX, PROXY_FRONT_CN_PREFIX, PROXY_FRONT_GROUP, PROXY_SERVER_CN_PREFIX,
    SIGNER_KUBE_APISERVER_CLIENT, SIGNER_PROXY_CLIENT, SIGNER_PROXY_SERVER,
    node_of_proxy_common_name,
};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// Which of our signers a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Proxy client certificate.
    Client,
    /// Proxy server certificate.
    Server,
    /// The proxy front's client certificate towards kubelets (Kubernetes' signer).
    Front,
}

impl Kind {
    /// The kind a signer may carry, `None` for any other signer (not ours: left alone). For
    /// [`SIGNER_KUBE_APISERVER_CLIENT`] the request itself decides ([`is_ours`]).
    pub fn of_signer(signer: &str) -> Option<Kind> {
        match signer {
            SIGNER_PROXY_CLIENT => Some(Kind::Client),
            SIGNER_PROXY_SERVER => Some(Kind::Server),
            SIGNER_KUBE_APISERVER_CLIENT => Some(Kind::Front),
            _ => None,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Kind::Client => PROXY_CLIENT_CN_PREFIX,
            Kind::Server => PROXY_SERVER_CN_PREFIX,
            Kind::Front => PROXY_FRONT_CN_PREFIX,
        }
    }

    /// The subject's required organization, besides the common name.
    fn organization(self) -> Option<&'static str> {
        (self == Kind::Front).then_some(PROXY_FRONT_GROUP)
    }

    /// Whether raven-controller signs approved requests (else kube-controller-manager does).
    pub fn signed_here(self) -> bool {
        self != Kind::Front
    }

    /// The exact `spec.usages` set.
    pub fn usages(self) -> [&'static str; 2] {
        match self {
            Kind::Client | Kind::Front => ["digital signature", "client auth"],
            Kind::Server => ["digital signature", "server auth"],
        }
    }
}

/// Whether a request of `kind`'s signer is ours to decide: always for our own signers; for
/// Kubernetes' client signer only when the request parses and its common name starts with
/// [`PROXY_FRONT_CN_PREFIX`] (other users of that signer, e.g. an administrator's own
/// requests, are never approved or denied by us).
pub fn is_ours(kind: Kind, request_pem: &[u8]) -> bool {
    if kind != Kind::Front {
        return true;
    }
    // Whatever a lenient reader would make of it: any request of that signer whose first
    // block claims our subject is ours to decide (and to deny when it is not exactly one block).
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(request_pem) else {
        return false;
    };
    let Ok((_, csr)) = X509CertificationRequest::from_der(&pem.contents) else {
        return false;
    };
    csr.certification_request_info
        .subject
        .iter_common_name()
        .any(|cn| {
            cn.as_str()
                .is_ok_and(|cn| cn.starts_with(PROXY_FRONT_CN_PREFIX))
        })
}

/// A denial: the CSR condition's reason (CamelCase) and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// Condition reason.
    pub reason: &'static str,
    /// Condition message.
    pub message: String,
}

fn deny(reason: &'static str, message: impl Into<String>) -> Denial {
    Denial {
        reason,
        message: message.into(),
    }
}

/// What the PKCS#10 request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The subject common name.
    pub common_name: String,
    /// The node it names.
    pub node: String,
    /// Requested DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// Requested IP subject alternative names.
    pub ips: Vec<IpAddr>,
}

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE REQUEST-----";
const PEM_END: &str = "-----END CERTIFICATE REQUEST-----";

/// The DER of a request that is exactly one PEM block, `CERTIFICATE REQUEST`, with no headers
/// and nothing but whitespace around it. Stricter than PEM readers are, on purpose: the
/// request we approve must be the request the signer reads. kube-controller-manager (Go's
/// `pem.Decode`) skips a block whose END label does not match and signs the next one, where a
/// lenient reader stops at the first `-----END`; a second block, text around the block or a
/// header could each make the two read different requests (an approved
/// `raven-proxy-front:<node>` signed as a cluster administrator).
fn single_pem_block(request_pem: &[u8]) -> Result<Vec<u8>, Denial> {
    use base64::Engine;
    let bad = |why: &str| deny("BadRequest", format!("spec.request: {why}"));
    let text = std::str::from_utf8(request_pem).map_err(|_| bad("not ASCII PEM"))?;
    let body = text
        .trim()
        .strip_prefix(PEM_BEGIN)
        .and_then(|t| t.strip_suffix(PEM_END))
        .ok_or_else(|| bad("must be exactly one CERTIFICATE REQUEST PEM block and nothing else"))?;
    let b64: String = body.split_ascii_whitespace().collect();
    if !b64
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return Err(bad(
            "the PEM block holds more than base64 (headers or another block)",
        ));
    }
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| bad(&format!("bad base64: {e}")))
}

/// Parses and checks the request's form (signature, subject, extensions) for `kind`.
pub fn parse(kind: Kind, request_pem: &[u8]) -> Result<Parsed, Denial> {
    let der = single_pem_block(request_pem)?;
    let (rest, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| deny("BadRequest", format!("not a PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(deny(
            "BadRequest",
            "spec.request has bytes after the PKCS#10 request",
        ));
    }
    csr.verify_signature()
        .map_err(|_| deny("BadRequest", "the request's signature does not verify"))?;
    let subject = &csr.certification_request_info.subject;
    let attrs = subject.iter_attributes().count();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let orgs: Vec<&str> = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .collect();
    let want_orgs: Vec<&str> = kind.organization().into_iter().collect();
    if attrs != 1 + want_orgs.len() || cn.is_empty() || orgs != want_orgs {
        let o = kind
            .organization()
            .map(|o| format!(", O={o}"))
            .unwrap_or_default();
        return Err(deny(
            "BadSubject",
            format!(
                "the subject must be exactly CN={}<node>{o}, got {subject}",
                kind.prefix()
            ),
        ));
    }
    let node = node_of_proxy_common_name(&cn, kind.prefix())
        .ok_or_else(|| {
            deny(
                "BadSubject",
                format!("CN {cn:?} does not start with {:?}", kind.prefix()),
            )
        })?
        .to_owned();
    let mut dns_names = Vec::new();
    let mut ips = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        match ext {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => dns_names.push((*d).to_owned()),
                        GeneralName::IPAddress(b) => match ip_of(b) {
                            Some(ip) => ips.push(ip),
                            None => return Err(deny("BadSubjectAltNames", "malformed IP SAN")),
                        },
                        other => {
                            return Err(deny(
                                "BadSubjectAltNames",
                                format!("subject alternative name {other} is not allowed"),
                            ));
                        }
                    }
                }
            }
            other => {
                return Err(deny(
                    "BadExtensions",
                    format!("requested extension {other:?} is not allowed; only subjectAltName"),
                ));
            }
        }
    }
    if kind != Kind::Server && !(dns_names.is_empty() && ips.is_empty()) {
        return Err(deny(
            "BadSubjectAltNames",
            "a proxy client certificate carries no subject alternative names",
        ));
    }
    Ok(Parsed {
        common_name: cn,
        node,
        dns_names,
        ips,
    })
}

fn ip_of(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Who asked (`spec.username`, `spec.groups`) and, for the raven-node ServiceAccount, the node
/// of the pod its token is bound to (resolved by the runtime; `None` when unbound or unknown).
#[derive(Clone, Debug, Default)]
pub struct Requester {
    /// `spec.username`.
    pub username: String,
    /// `spec.groups`.
    pub groups: Vec<String>,
    /// Node of the requesting pod, when the token is pod-bound and the pod was found.
    pub pod_node: Option<String>,
}

/// Facts about the named node (from the API).
#[derive(Clone, Debug, Default)]
pub struct NodeFacts {
    /// The Node object exists.
    pub exists: bool,
    /// Its status addresses and the public IPs of its active proxy endpoints of exposed
    /// Gateways.
    pub allowed_ips: BTreeSet<IpAddr>,
    /// It is an active proxy endpoint of an exposed Gateway now
    /// ([`raven_api::gateway::v1beta1::Gateway::proxy_server_on`]).
    pub proxy_server: bool,
}

/// The longest front certificate approved where Kubernetes honours `spec.expirationSeconds`:
/// one day (raven-node asks for exactly that and renews at 2/3).
pub const FRONT_MAX_LIFETIME_SECONDS: i32 = 24 * 3600;

/// Whether an API server of this version makes kube-controller-manager honour
/// `spec.expirationSeconds` (Kubernetes 1.22 and later; minor versions may carry a `+`).
pub fn honours_expiration(major: &str, minor: &str) -> bool {
    let num = |s: &str| {
        s.trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse::<u32>()
            .ok()
    };
    match (num(major), num(minor)) {
        (Some(1), Some(m)) => m >= 22,
        (Some(major), Some(_)) => major > 1,
        _ => false,
    }
}

/// The facts about `node`, pure: `addresses` from its status (`None`: no such Node) and the
/// Gateways. It is a proxy server when it is an active proxy endpoint of an exposed Gateway;
/// the IPs its server certificate may carry are its addresses and the public IPs of those
/// active endpoints (from status: elected by the controller, not merely claimed in a spec).
pub fn node_facts(node: &str, addresses: Option<Vec<IpAddr>>, gateways: &[Gateway]) -> NodeFacts {
    let Some(addresses) = addresses else {
        return NodeFacts::default();
    };
    let mut facts = NodeFacts {
        exists: true,
        allowed_ips: addresses.into_iter().collect(),
        proxy_server: false,
    };
    for gw in gateways.iter().filter(|g| g.proxy_server_on(node)) {
        facts.proxy_server = true;
        let status = gw.status.iter();
        facts.allowed_ips.extend(
            status
                .flat_map(|s| s.active_endpoints_of(EndpointType::Proxy))
                .filter(|e| e.node_name == node)
                .filter_map(|e| e.public_ip_addr()),
        );
    }
    facts
}

/// A request's `spec.expirationSeconds`, and whether the cluster honours it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expiry {
    /// `spec.expirationSeconds`.
    pub requested: Option<i32>,
    /// The cluster's signers honour it ([`honours_expiration`]).
    pub honoured: bool,
}

/// Approve (`Ok`) or deny a parsed request. `raven_node_user` is the raven-node
/// ServiceAccount's user name.
pub fn decide(
    kind: Kind,
    parsed: &Parsed,
    usages: &[String],
    requester: &Requester,
    raven_node_user: &str,
    node: &NodeFacts,
    expiry: Expiry,
) -> Result<(), Denial> {
    let requester_node = if let Some(n) = requester.username.strip_prefix("system:node:") {
        if !requester.groups.iter().any(|g| g == "system:nodes") {
            return Err(deny(
                "UnknownRequester",
                format!("{} is not in group system:nodes", requester.username),
            ));
        }
        n.to_owned()
    } else if requester.username == raven_node_user {
        requester.pod_node.clone().ok_or_else(|| {
            deny(
                "RequesterNotBound",
                "the raven-node token is not bound to a pod on a node (use a projected, \
                 pod-bound ServiceAccount token)",
            )
        })?
    } else {
        return Err(deny(
            "UnknownRequester",
            format!(
                "{} may not request Raven proxy certificates",
                requester.username
            ),
        ));
    };
    if requester_node != parsed.node {
        return Err(deny(
            "NodeMismatch",
            format!(
                "requested by node {requester_node:?} for node {:?}",
                parsed.node
            ),
        ));
    }
    let want: BTreeSet<&str> = kind.usages().into_iter().collect();
    let got: BTreeSet<&str> = usages.iter().map(String::as_str).collect();
    if got != want || got.len() != usages.len() {
        return Err(deny(
            "BadUsages",
            format!("usages must be exactly {want:?}, got {usages:?}"),
        ));
    }
    if !node.exists {
        return Err(deny(
            "UnknownNode",
            format!("node {:?} does not exist", parsed.node),
        ));
    }
    if kind == Kind::Front
        && expiry.honoured
        && !expiry
            .requested
            .is_some_and(|s| (600..=FRONT_MAX_LIFETIME_SECONDS).contains(&s))
    {
        return Err(deny(
            "BadExpiration",
            format!(
                "a kubelet client certificate must ask for spec.expirationSeconds between 600 \
                 and {FRONT_MAX_LIFETIME_SECONDS}, got {:?}",
                expiry.requested
            ),
        ));
    }
    if kind != Kind::Client && !node.proxy_server {
        return Err(deny(
            "NotProxyServer",
            format!(
                "node {:?} is not an active proxy endpoint of an exposed Gateway; only proxy \
                 servers get {} certificates",
                parsed.node,
                if kind == Kind::Front {
                    "kubelet client"
                } else {
                    "proxy server"
                }
            ),
        ));
    }
    if let Some(d) = parsed.dns_names.iter().find(|d| **d != parsed.node) {
        return Err(deny(
            "BadSubjectAltNames",
            format!("DNS name {d:?} is not the node name"),
        ));
    }
    if let Some(ip) = parsed.ips.iter().find(|ip| !node.allowed_ips.contains(ip)) {
        return Err(deny(
            "BadSubjectAltNames",
            format!(
                "IP {ip} is neither an address of node {:?} nor a public IP of its Gateway endpoints",
                parsed.node
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    use super::*;

    const SA: &str = "system:serviceaccount:kube-system:raven-node";

    fn csr(cn: &str, extra_dn: bool, sans: Vec<SanType>) -> Vec<u8> {
        let orgs: &[&str] = if extra_dn { &["system:masters"] } else { &[] };
        csr_in(cn, orgs, sans)
    }

    /// A request for `cn` in the groups `orgs`.
    fn csr_in(cn: &str, orgs: &[&str], sans: Vec<SanType>) -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            p.distinguished_name.push(DnType::OrganizationName, *o);
        }
        p.subject_alt_names = sans;
        p.serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem")
            .into_bytes()
    }

    fn node_user(n: &str) -> Requester {
        Requester {
            username: format!("system:node:{n}"),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
            pod_node: None,
        }
    }

    fn facts() -> NodeFacts {
        NodeFacts {
            exists: true,
            allowed_ips: ["10.0.0.1".parse().expect("ip")].into_iter().collect(),
            proxy_server: false,
        }
    }

    fn proxy_server_facts() -> NodeFacts {
        NodeFacts {
            proxy_server: true,
            ..facts()
        }
    }

    const FRONT: &str = "raven:proxy-fronts";

    #[test]
    fn only_front_subjects_of_the_kubernetes_client_signer_are_ours() {
        let front = csr_in("raven-proxy-front:a", &[FRONT], vec![]);
        let admin = csr_in("alice", &["system:masters"], vec![]);
        let cases: [(&str, Kind, &[u8], bool); 6] = [
            ("front request", Kind::Front, &front, true),
            (
                "front prefix, bad groups",
                Kind::Front,
                &csr("raven-proxy-front:a", true, vec![]),
                true,
            ),
            ("someone else's", Kind::Front, &admin, false),
            ("garbage", Kind::Front, b"hello", false),
            ("our client signer", Kind::Client, &admin, true),
            ("our server signer, garbage", Kind::Server, b"hello", true),
        ];
        for (what, kind, pem, want) in cases {
            assert_eq!(is_ours(kind, pem), want, "{what}");
        }
        assert_eq!(
            Kind::of_signer("kubernetes.io/kube-apiserver-client"),
            Some(Kind::Front)
        );
        assert_eq!(
            Kind::of_signer("kubernetes.io/kube-apiserver-client-kubelet"),
            None
        );
        assert!(!Kind::Front.signed_here() && Kind::Client.signed_here());
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parse_table() {
        let ip = |s: &str| SanType::IpAddress(s.parse().expect("ip"));
        let dns = |s: &str| SanType::DnsName(s.try_into().expect("dns"));
        type Case<'a> = (&'a str, Kind, Vec<u8>, Result<&'a str, &'a str>);
        let cases: Vec<Case> = vec![
            (
                "client ok",
                Kind::Client,
                csr("raven-proxy-client:a", false, vec![]),
                Ok("a"),
            ),
            (
                "server ok",
                Kind::Server,
                csr(
                    "raven-proxy-server:a",
                    false,
                    vec![dns("a"), ip("10.0.0.1")],
                ),
                Ok("a"),
            ),
            (
                "wrong prefix",
                Kind::Client,
                csr("raven-proxy-server:a", false, vec![]),
                Err("BadSubject"),
            ),
            (
                "empty node",
                Kind::Client,
                csr("raven-proxy-client:", false, vec![]),
                Err("BadSubject"),
            ),
            (
                "extra O",
                Kind::Client,
                csr("raven-proxy-client:a", true, vec![]),
                Err("BadSubject"),
            ),
            (
                "client with SAN",
                Kind::Client,
                csr("raven-proxy-client:a", false, vec![dns("a")]),
                Err("BadSubjectAltNames"),
            ),
            (
                "server with URI SAN",
                Kind::Server,
                csr(
                    "raven-proxy-server:a",
                    false,
                    vec![SanType::URI("https://x".try_into().expect("uri"))],
                ),
                Err("BadSubjectAltNames"),
            ),
            (
                "garbage",
                Kind::Client,
                b"hello".to_vec(),
                Err("BadRequest"),
            ),
            (
                "front ok",
                Kind::Front,
                csr_in("raven-proxy-front:a", &[FRONT], vec![]),
                Ok("a"),
            ),
            (
                "front without its group",
                Kind::Front,
                csr("raven-proxy-front:a", false, vec![]),
                Err("BadSubject"),
            ),
            (
                "front in system:masters",
                Kind::Front,
                csr_in("raven-proxy-front:a", &["system:masters"], vec![]),
                Err("BadSubject"),
            ),
            (
                "front in a second group",
                Kind::Front,
                csr_in("raven-proxy-front:a", &[FRONT, "system:masters"], vec![]),
                Err("BadSubject"),
            ),
            (
                "front with a SAN",
                Kind::Front,
                csr_in("raven-proxy-front:a", &[FRONT], vec![dns("a")]),
                Err("BadSubjectAltNames"),
            ),
            (
                "client subject on the front signer",
                Kind::Front,
                csr_in("raven-proxy-client:a", &[FRONT], vec![]),
                Err("BadSubject"),
            ),
            (
                "a certificate instead",
                Kind::Client,
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
                Err("BadRequest"),
            ),
        ];
        for (case, kind, pem, want) in cases {
            match (parse(kind, &pem), want) {
                (Ok(p), Ok(node)) => assert_eq!(p.node, node, "{case}"),
                (Err(d), Err(reason)) => assert_eq!(d.reason, reason, "{case}: {d:?}"),
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn node_facts_come_from_elected_proxy_endpoints_of_exposed_gateways() {
        let gw = |name: &str, exposed: bool, spec_ip: &str, active: Vec<(&str, &str, &str)>| {
            let active: Vec<serde_json::Value> = active
                .into_iter()
                .map(|(n, t, ip)| serde_json::json!({"nodeName": n, "type": t, "publicIP": ip}))
                .collect();
            let mut v = serde_json::json!({"apiVersion": "raven.openyurt.io/v1beta1",
                "kind": "Gateway", "metadata": {"name": name},
                "spec": {"endpoints": [{"nodeName": "a", "type": "proxy", "publicIP": spec_ip},
                                       {"nodeName": "a", "type": "tunnel", "publicIP": "192.0.2.9"}]},
                "status": {"activeEndpoints": active}});
            if exposed {
                v["spec"]["exposeType"] = serde_json::json!("PublicIP");
            }
            serde_json::from_value::<Gateway>(v).expect("gateway")
        };
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let own = Some(vec![ip("10.0.0.1")]);
        let ips = |f: &NodeFacts| {
            f.allowed_ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        // Elected in an exposed Gateway: a server, with the elected public IP (not the spec's,
        // not the tunnel endpoint's).
        let f = node_facts(
            "a",
            own.clone(),
            &[gw(
                "c",
                true,
                "198.51.100.7",
                vec![
                    ("a", "proxy", "198.51.100.1"),
                    ("b", "proxy", "198.51.100.2"),
                ],
            )],
        );
        assert!(f.exists && f.proxy_server);
        assert_eq!(ips(&f), ["10.0.0.1", "198.51.100.1"]);
        // Elected, but the Gateway is not exposed; or only a tunnel endpoint; or not elected.
        for (what, gws) in [
            (
                "not exposed",
                vec![gw(
                    "c",
                    false,
                    "198.51.100.7",
                    vec![("a", "proxy", "198.51.100.1")],
                )],
            ),
            (
                "tunnel only",
                vec![gw(
                    "c",
                    true,
                    "198.51.100.7",
                    vec![("a", "tunnel", "192.0.2.9")],
                )],
            ),
            (
                "another node",
                vec![gw(
                    "c",
                    true,
                    "198.51.100.7",
                    vec![("b", "proxy", "198.51.100.2")],
                )],
            ),
            ("no Gateways", vec![]),
        ] {
            let f = node_facts("a", own.clone(), &gws);
            assert!(f.exists && !f.proxy_server, "{what}");
            assert_eq!(ips(&f), ["10.0.0.1"], "{what}: only its own addresses");
        }
        let gone = node_facts(
            "a",
            None,
            &[gw("c", true, "", vec![("a", "proxy", "198.51.100.1")])],
        );
        assert!(!gone.exists && !gone.proxy_server && gone.allowed_ips.is_empty());
    }

    /// Requests a lenient PEM reader and Go's `pem.Decode` (kube-controller-manager) would
    /// read differently are refused, whatever the first block says.
    #[test]
    fn only_exactly_one_plain_pem_block_is_read() {
        let front =
            String::from_utf8(csr_in("raven-proxy-front:a", &[FRONT], vec![])).expect("pem");
        let admin =
            String::from_utf8(csr_in("admin", &["kubeadm:cluster-admins"], vec![])).expect("pem");
        let smuggled = format!(
            "{}{}",
            front.replace("-----END CERTIFICATE REQUEST-----", "-----END X-----"),
            admin
        );
        let cases: Vec<(&str, String, bool)> = vec![
            ("as made", front.clone(), true),
            ("CRLF line ends", front.replace('\n', "\r\n"), true),
            ("surrounding blank lines", format!("\n\n{front}\n"), true),
            ("a second block behind a mislabelled END", smuggled, false),
            ("two blocks", format!("{front}{admin}"), false),
            ("text before", format!("hello\n{front}"), false),
            ("text after", format!("{front}bye\n"), false),
            (
                "text on the BEGIN line",
                front.replacen("REQUEST-----", "REQUEST----- x", 1),
                false,
            ),
            (
                "a header",
                front.replacen("REQUEST-----\n", "REQUEST-----\nProc-Type: 4,X\n\n", 1),
                false,
            ),
            (
                "another label",
                front.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"),
                false,
            ),
        ];
        for (what, pem, ok) in cases {
            let got = parse(Kind::Front, pem.as_bytes());
            assert_eq!(got.is_ok(), ok, "{what}: {got:?}");
            if let Err(d) = got {
                assert_eq!(d.reason, "BadRequest", "{what}");
            }
            // The first block still claims our subject: ours to deny, never to leave pending
            // for someone else to approve.
            if what == "a second block behind a mislabelled END" {
                assert!(is_ours(Kind::Front, pem.as_bytes()), "{what}");
            }
        }
    }

    #[test]
    fn front_lifetime_is_capped_where_kubernetes_honours_it() {
        let front = parse(
            Kind::Front,
            &csr_in("raven-proxy-front:a", &[FRONT], vec![]),
        )
        .expect("ok");
        let client = parse(Kind::Client, &csr("raven-proxy-client:a", false, vec![])).expect("ok");
        let cu = strs(&["digital signature", "client auth"]);
        let me = node_user("a");
        let day = FRONT_MAX_LIFETIME_SECONDS;
        for (what, kind, parsed, requested, honoured, ok) in [
            ("a day", Kind::Front, &front, Some(day), true, true),
            ("ten minutes", Kind::Front, &front, Some(600), true, true),
            ("not asked", Kind::Front, &front, None, true, false),
            ("a year", Kind::Front, &front, Some(365 * day), true, false),
            ("too short", Kind::Front, &front, Some(60), true, false),
            (
                "not asked, old cluster",
                Kind::Front,
                &front,
                None,
                false,
                true,
            ),
            (
                "proxy client, not asked",
                Kind::Client,
                &client,
                None,
                true,
                true,
            ),
        ] {
            let got = decide(
                kind,
                parsed,
                &cu,
                &me,
                SA,
                &proxy_server_facts(),
                Expiry {
                    requested,
                    honoured,
                },
            );
            assert_eq!(got.is_ok(), ok, "{what}: {got:?}");
            if let Err(d) = got {
                assert_eq!(d.reason, "BadExpiration", "{what}");
            }
        }
        for (major, minor, want) in [
            ("1", "20", false),
            ("1", "21+", false),
            ("1", "22", true),
            ("1", "30+", true),
            ("2", "0", true),
            ("", "", false),
            ("1", "x", false),
        ] {
            assert_eq!(honours_expiration(major, minor), want, "{major}.{minor}");
        }
    }

    #[test]
    fn tampered_request_fails_signature() {
        let pem = String::from_utf8(csr("raven-proxy-client:a", false, vec![])).expect("utf8");
        // Flip one base64 character in the middle of the body.
        let mut chars: Vec<char> = pem.chars().collect();
        let i = chars.len() / 2;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let bad: String = chars.into_iter().collect();
        let d = parse(Kind::Client, bad.as_bytes()).expect_err("tampered");
        assert_eq!(d.reason, "BadRequest");
    }

    #[test]
    fn decide_table() {
        let client = parse(Kind::Client, &csr("raven-proxy-client:a", false, vec![])).expect("ok");
        let server = parse(
            Kind::Server,
            &csr(
                "raven-proxy-server:a",
                false,
                vec![SanType::IpAddress("10.0.0.1".parse().expect("ip"))],
            ),
        )
        .expect("ok");
        let server_foreign_ip = parse(
            Kind::Server,
            &csr(
                "raven-proxy-server:a",
                false,
                vec![SanType::IpAddress("8.8.8.8".parse().expect("ip"))],
            ),
        )
        .expect("ok");
        let front = parse(
            Kind::Front,
            &csr_in("raven-proxy-front:a", &[FRONT], vec![]),
        )
        .expect("ok");
        let cu = strs(&["client auth", "digital signature"]);
        let su = strs(&["digital signature", "server auth"]);
        let sa = |pod_node: Option<&str>| Requester {
            username: SA.into(),
            groups: vec!["system:serviceaccounts".into()],
            pod_node: pod_node.map(String::from),
        };
        type Case<'a> = (
            &'a str,
            Kind,
            &'a Parsed,
            Vec<String>,
            Requester,
            NodeFacts,
            Result<(), &'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "node A for A",
                Kind::Client,
                &client,
                cu.clone(),
                node_user("a"),
                facts(),
                Ok(()),
            ),
            (
                "node B for A",
                Kind::Client,
                &client,
                cu.clone(),
                node_user("b"),
                facts(),
                Err("NodeMismatch"),
            ),
            (
                "node name without group",
                Kind::Client,
                &client,
                cu.clone(),
                Requester {
                    groups: vec![],
                    ..node_user("a")
                },
                facts(),
                Err("UnknownRequester"),
            ),
            (
                "stranger",
                Kind::Client,
                &client,
                cu.clone(),
                Requester {
                    username: "alice".into(),
                    ..Default::default()
                },
                facts(),
                Err("UnknownRequester"),
            ),
            (
                "raven-node pod on A",
                Kind::Client,
                &client,
                cu.clone(),
                sa(Some("a")),
                facts(),
                Ok(()),
            ),
            (
                "raven-node pod on B",
                Kind::Client,
                &client,
                cu.clone(),
                sa(Some("b")),
                facts(),
                Err("NodeMismatch"),
            ),
            (
                "raven-node unbound token",
                Kind::Client,
                &client,
                cu.clone(),
                sa(None),
                facts(),
                Err("RequesterNotBound"),
            ),
            (
                "server usages on client",
                Kind::Client,
                &client,
                su.clone(),
                node_user("a"),
                facts(),
                Err("BadUsages"),
            ),
            (
                "extra usage",
                Kind::Client,
                &client,
                strs(&["digital signature", "client auth", "server auth"]),
                node_user("a"),
                facts(),
                Err("BadUsages"),
            ),
            (
                "duplicated usage",
                Kind::Client,
                &client,
                strs(&["digital signature", "client auth", "client auth"]),
                node_user("a"),
                facts(),
                Err("BadUsages"),
            ),
            (
                "missing usage",
                Kind::Client,
                &client,
                strs(&["client auth"]),
                node_user("a"),
                facts(),
                Err("BadUsages"),
            ),
            (
                "unknown node",
                Kind::Client,
                &client,
                cu.clone(),
                node_user("a"),
                NodeFacts::default(),
                Err("UnknownNode"),
            ),
            (
                "front on a proxy server, own node",
                Kind::Front,
                &front,
                cu.clone(),
                sa(Some("a")),
                proxy_server_facts(),
                Ok(()),
            ),
            (
                "front on a node that is no proxy server",
                Kind::Front,
                &front,
                cu.clone(),
                sa(Some("a")),
                facts(),
                Err("NotProxyServer"),
            ),
            (
                "front for a proxy server, asked by another node",
                Kind::Front,
                &front,
                cu.clone(),
                sa(Some("b")),
                proxy_server_facts(),
                Err("NodeMismatch"),
            ),
            (
                "front with key encipherment",
                Kind::Front,
                &front,
                strs(&["digital signature", "key encipherment", "client auth"]),
                sa(Some("a")),
                proxy_server_facts(),
                Err("BadUsages"),
            ),
            (
                "front, unbound token",
                Kind::Front,
                &front,
                cu.clone(),
                sa(None),
                proxy_server_facts(),
                Err("RequesterNotBound"),
            ),
            (
                "server with own IP",
                Kind::Server,
                &server,
                su.clone(),
                node_user("a"),
                proxy_server_facts(),
                Ok(()),
            ),
            (
                "server with foreign IP",
                Kind::Server,
                &server_foreign_ip,
                su.clone(),
                node_user("a"),
                proxy_server_facts(),
                Err("BadSubjectAltNames"),
            ),
            (
                "server on a node that is no proxy server",
                Kind::Server,
                &server,
                su.clone(),
                node_user("a"),
                facts(),
                Err("NotProxyServer"),
            ),
        ];
        for (case, kind, parsed, usages, req, node, want) in cases {
            let got = decide(kind, parsed, &usages, &req, SA, &node, Expiry::default());
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(d), Err(reason)) => assert_eq!(d.reason, reason, "{case}: {d:?}"),
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
    }
}
