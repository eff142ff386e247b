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

use crate::bound_pod::{Identity, identity};

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
    let requester_node = match identity(
        &requester.username,
        &requester.groups,
        raven_node_user,
        requester.pod_node.as_deref(),
    ) {
        Identity::Node(n) => n,
        Identity::UnboundAgent => {
            return Err(deny(
                "RequesterNotBound",
                "the raven-node token is not bound to a pod on a node (use a projected, \
                 pod-bound ServiceAccount token)",
            ));
        }
        Identity::Other if requester.username.starts_with("system:node:") => {
            return Err(deny(
                "UnknownRequester",
                format!("{} is not in group system:nodes", requester.username),
            ));
        }
        Identity::Other => {
            return Err(deny(
                "UnknownRequester",
                format!(
                    "{} may not request Raven proxy certificates",
                    requester.username
                ),
            ));
        }
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
#[path = "policy_tests.rs"]
mod tests;
