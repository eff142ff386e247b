//! Approving and signing the CertificateSigningRequests of Raven's proxy signers
//! (`raven.openyurt.io/proxy-client`, `raven.openyurt.io/proxy-server`), and approving (only)
//! the proxy front's kubelet client certificates of `kubernetes.io/kube-apiserver-client`
//! (subject `raven-proxy-front:<node>`), which kube-controller-manager signs. CSRs of any other
//! signer or subject are never touched.
//!
//! - [`policy`]: the pure approve/deny decision (requester bound to the node the certificate
//!   names, exact subject, usages and SANs).
//! - [`signer`]: issuing the certificate with the proxy CA.
//! - this module: the watch, the observations the policy needs (the Node, the requesting pod
//!   of a pod-bound raven-node token, the node's Gateway public IPs), the approval and status
//!   writes, and the CA Secret `kube-system/raven-proxy-ca` (created if absent, then read back,
//!   like the webhook Secret, so every replica signs with the same CA).
//!
//! Every replica runs this. Writes carry the resourceVersion they were decided on, so when two
//! replicas act on the same CSR one wins and the other's 409 is ignored; the watch then
//! delivers the winner's result.

pub mod policy;
pub mod signer;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::{Node, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use raven_api::gateway::v1beta1;
use tracing::{info, warn};

use crate::bound_pod;
use crate::webhook::certs;
use policy::{Kind, NodeFacts, Requester};

/// Name of the Secret holding the proxy CA.
pub const DEFAULT_CA_SECRET: &str = "raven-proxy-ca";
/// User name of the raven-node ServiceAccount (the DaemonSet's identity).
pub const DEFAULT_RAVEN_NODE_USER: &str = "system:serviceaccount:kube-system:raven-node";

/// CSR signing configuration (from the command line).
#[derive(Clone, Debug)]
pub struct CsrSettings {
    /// Namespace of the CA Secret and of raven-node pods.
    pub namespace: String,
    /// Secret holding the proxy CA.
    pub ca_secret: String,
    /// The raven-node ServiceAccount's user name.
    pub raven_node_user: String,
    /// Lifetime of issued certificates (the node renews at 2/3 of it).
    pub validity: Duration,
    /// Lifetime of a new CA.
    pub ca_validity: Duration,
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The proxy CA: bundle (PEM) and key (PEM).
#[derive(Clone, Debug)]
struct Ca {
    bundle: String,
    key: String,
}

/// Reads the CA Secret, creating it when absent; a lost create race reads the winner's.
async fn ensure_ca(secrets: &Api<Secret>, s: &CsrSettings) -> Result<Ca, String> {
    for _ in 0..5 {
        if let Some(secret) = secrets
            .get_opt(&s.ca_secret)
            .await
            .map_err(|e| format!("get {}: {e}", s.ca_secret))?
        {
            let get = |k: &str| {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                    .unwrap_or_default()
            };
            let ca = Ca {
                bundle: get(certs::KEY_CA_CRT),
                key: get(certs::KEY_CA_KEY),
            };
            // Fail loudly on a broken Secret instead of replacing a CA nodes trust.
            certs::issuer(
                &certs::pem_encode(
                    certs::pem_certificates(&ca.bundle)
                        .map_err(|e| e.to_string())?
                        .first()
                        .ok_or("the proxy CA Secret holds no certificate")?,
                ),
                &ca.key,
            )
            .map_err(|e| format!("proxy CA Secret {}: {e}", s.ca_secret))?;
            return Ok(ca);
        }
        let (crt, key) = certs::new_ca("raven-proxy-ca", now_unix(), s.ca_validity)
            .map_err(|e| e.to_string())?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(s.ca_secret.clone()),
                namespace: Some(s.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "raven-controller".to_owned(),
                )])),
                ..Default::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(BTreeMap::from([
                (certs::KEY_CA_CRT.to_owned(), ByteString(crt.into_bytes())),
                (certs::KEY_CA_KEY.to_owned(), ByteString(key.into_bytes())),
            ])),
            ..Default::default()
        };
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => info!(secret = %s.ca_secret, "proxy CA created"),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                info!("another replica created the proxy CA first; reading it back");
            }
            Err(e) => return Err(format!("create {}: {e}", s.ca_secret)),
        }
    }
    Err("the proxy CA Secret kept changing (5 attempts)".into())
}

/// Watches CSRs and handles ours; never returns (errors are logged and retried).
pub async fn run(client: Client, settings: CsrSettings) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &settings.namespace);
    let mut delay = 1u64;
    let ca = loop {
        match ensure_ca(&secrets, &settings).await {
            Ok(ca) => break ca,
            Err(e) => {
                warn!("proxy CA: {e}; retrying in {delay} s");
                tokio::time::sleep(Duration::from_secs(delay)).await;
                delay = (delay * 2).min(60);
            }
        }
    };
    let honoured = match client.apiserver_version().await {
        Ok(v) => policy::honours_expiration(&v.major, &v.minor),
        Err(e) => {
            // Unknown: enforce the cap (a request without expirationSeconds is then denied
            // and retried by its node, never approved for a year).
            warn!("API server version: {e}; front certificates must ask for a lifetime");
            true
        }
    };
    info!(honoured, "spec.expirationSeconds of front certificates");
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let mut stream = std::pin::pin!(watcher::watcher(csrs.clone(), watcher::Config::default()));
    while let Some(event) = stream.next().await {
        let objects = match event {
            Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => vec![c],
            Ok(_) => continue,
            Err(e) => {
                warn!("CSR watch: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for csr in objects {
            if let Err(e) = handle(&client, &csrs, &settings, &ca, honoured, csr).await {
                warn!("CSR: {e}");
            }
        }
    }
}

fn has_condition(csr: &CertificateSigningRequest, t: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status == "True"))
}

fn condition(t: &str, reason: &str, message: String) -> CertificateSigningRequestCondition {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    CertificateSigningRequestCondition {
        type_: t.to_owned(),
        status: "True".to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

async fn handle(
    client: &Client,
    csrs: &Api<CertificateSigningRequest>,
    s: &CsrSettings,
    ca: &Ca,
    honoured: bool,
    mut csr: CertificateSigningRequest,
) -> Result<(), String> {
    let Some(kind) = Kind::of_signer(&csr.spec.signer_name) else {
        return Ok(());
    };
    if !policy::is_ours(kind, &csr.spec.request.0) {
        return Ok(());
    }
    let name = csr.name_any();
    let issued = csr
        .status
        .as_ref()
        .and_then(|st| st.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    if issued || has_condition(&csr, "Denied") || has_condition(&csr, "Failed") {
        return Ok(());
    }
    let request_pem = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
    let parsed = policy::parse(kind, &csr.spec.request.0);
    if !has_condition(&csr, "Approved") {
        let verdict = match &parsed {
            Err(d) => Err(d.clone()),
            Ok(p) => {
                let requester = requester(client, s, &csr).await?;
                let facts = node_facts(client, &p.node).await?;
                policy::decide(
                    kind,
                    p,
                    &csr.spec.usages.clone().unwrap_or_default(),
                    &requester,
                    &s.raven_node_user,
                    &facts,
                    policy::Expiry {
                        requested: csr.spec.expiration_seconds,
                        honoured,
                    },
                )
            }
        };
        let cond = match &verdict {
            Ok(()) => condition(
                "Approved",
                "RavenProxyAutoApproved",
                format!("{} certificate for its own node", csr.spec.signer_name),
            ),
            Err(d) => condition("Denied", d.reason, d.message.clone()),
        };
        csr.status
            .get_or_insert_with(Default::default)
            .conditions
            .get_or_insert_with(Vec::new)
            .push(cond);
        csr = match csrs
            .replace_subresource("approval", &name, &PostParams::default(), &csr)
            .await
        {
            Ok(c) => c,
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => return Ok(()),
            Err(e) => return Err(format!("approval of {name}: {e}")),
        };
        match verdict {
            Ok(()) => info!(csr = %name, "approved"),
            Err(d) => {
                info!(csr = %name, reason = d.reason, "denied: {}", d.message);
                return Ok(());
            }
        }
    }
    if !kind.signed_here() {
        return Ok(()); // kube-controller-manager signs it
    }
    // Approved (by us or by an administrator): sign only what our policy's form checks accept.
    let parsed = match parsed {
        Ok(p) => p,
        Err(d) => {
            let cond = condition("Failed", d.reason, d.message);
            csr.status
                .get_or_insert_with(Default::default)
                .conditions
                .get_or_insert_with(Vec::new)
                .push(cond);
            return write_status(csrs, &name, &csr).await;
        }
    };
    let chain = signer::sign(
        kind,
        &parsed,
        &request_pem,
        &ca.bundle,
        &ca.key,
        now_unix(),
        requested_validity(&csr, s.validity),
    )
    .map_err(|e| format!("sign {name}: {e}"))?;
    csr.status.get_or_insert_with(Default::default).certificate =
        Some(ByteString(chain.into_bytes()));
    write_status(csrs, &name, &csr).await?;
    info!(csr = %name, node = %parsed.node, "signed");
    Ok(())
}

/// `spec.expirationSeconds` (1.22+; at least 10 minutes, like Kubernetes) when shorter than
/// our default.
fn requested_validity(csr: &CertificateSigningRequest, default: Duration) -> Duration {
    csr.spec
        .expiration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(|s| Duration::from_secs(s.max(600)))
        .map_or(default, |d| d.min(default))
}

async fn write_status(
    csrs: &Api<CertificateSigningRequest>,
    name: &str,
    csr: &CertificateSigningRequest,
) -> Result<(), String> {
    match csrs.replace_status(name, &PostParams::default(), csr).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
        Err(e) => Err(format!("status of {name}: {e}")),
    }
}

/// The requester, with the node of its pod when it is raven-node with a pod-bound token
/// (the pod must exist with the UID the token was bound to).
async fn requester(
    client: &Client,
    s: &CsrSettings,
    csr: &CertificateSigningRequest,
) -> Result<Requester, String> {
    let username = csr.spec.username.clone().unwrap_or_default();
    let pod = csr.spec.extra.as_ref().and_then(bound_pod::pod_binding);
    let pod_node = bound_pod::agent_pod_node(
        client,
        &s.namespace,
        &s.raven_node_user,
        &username,
        pod.as_ref(),
    )
    .await?;
    Ok(Requester {
        username,
        groups: csr.spec.groups.clone().unwrap_or_default(),
        pod_node,
    })
}

/// Observes the node's addresses and the Gateways for [`policy::node_facts`].
async fn node_facts(client: &Client, node: &str) -> Result<NodeFacts, String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let addresses = nodes
        .get_opt(node)
        .await
        .map_err(|e| format!("get node {node}: {e}"))?
        .map(|n| {
            n.status
                .and_then(|st| st.addresses)
                .unwrap_or_default()
                .iter()
                .filter_map(|a| a.address.parse().ok())
                .collect()
        });
    let gateways: Api<v1beta1::Gateway> = Api::all(client.clone());
    let gateways = match gateways.list(&Default::default()).await {
        Ok(list) => list.items,
        // No Gateway CRD: no proxy servers (client certificates only).
        Err(kube::Error::Api(e)) if e.code == 404 => Vec::new(),
        Err(e) => return Err(format!("list gateways: {e}")),
    };
    Ok(policy::node_facts(node, addresses, &gateways))
}
