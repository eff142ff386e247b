//! Admission and conversion webhooks for Gateways, served by every raven-controller replica
//! (not only the leader: the API server picks any endpoint of the Service) over TLS with a
//! certificate the controller manages itself.
//!
//! - [`review`]: pure handlers (defaulting, validation, conversion) from the API crate's rules.
//! - [`server`]: the HTTPS server (hyper + rustls) with a hot-swappable certificate.
//! - [`certs`]: the CA and serving certificate, and the pure reuse/renew decision.
//! - this module: keeping the Secret `kube-system/raven-controller-webhook-tls` and the CA
//!   bundle of the webhook configurations and of the CRD's conversion webhook right.
//!
//! Two replicas starting together race to create the Secret: each creates it only if absent
//! and, when the create loses (409), reads back and serves what the winner stored. Renewals
//! replace the Secret with the resourceVersion they read, so two renewals cannot both win;
//! the loser re-reads and finds a valid certificate. Every replica re-reads the Secret every
//! [`WebhookSettings::recheck`] (and when its renewal time comes), so a certificate renewed by
//! one replica is picked up by the others, and re-applies the CA bundle only where it differs.

pub mod certs;
pub mod node_writes;
pub mod review;
pub mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing::{info, warn};

use certs::{Assessment, Material, Policy};

/// Name of the Secret holding the webhook CA and serving certificate.
pub const DEFAULT_SECRET: &str = "raven-controller-webhook-tls";
/// Name of both webhook configurations (validating and mutating) in `deploy/webhooks/`.
pub const DEFAULT_CONFIGURATION: &str = "raven-controller-webhook";
/// Common name of the webhook CA.
const CA_COMMON_NAME: &str = "raven-controller-webhook-ca";
/// Label marking objects this controller writes.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "raven-controller");

/// Webhook configuration (from the command line).
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// Listen address (the Service's targetPort, 9443 in `deploy/webhooks/`).
    pub bind: SocketAddr,
    /// Namespace of the Secret and the Service.
    pub namespace: String,
    /// Secret holding the certificates.
    pub secret: String,
    /// Service through which the API server reaches us; its DNS names go into the certificate.
    pub service: String,
    /// Name of the Validating- and MutatingWebhookConfiguration to inject the CA bundle into.
    pub configuration: String,
    /// CRD whose conversion webhook gets the CA bundle.
    pub crd: String,
    /// Certificate lifetimes.
    pub policy: Policy,
    /// How often to re-read the Secret and re-check the CA bundles.
    pub recheck: Duration,
    /// raven-node's ServiceAccount user: its Gateway writes are bound to its pod's node
    /// ([`node_writes`]).
    pub raven_node_user: String,
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Serves the webhooks and keeps their certificate and CA bundles right; never returns.
/// Failures (API errors, a port in use) are logged and retried: the leader's controller work
/// must not stop because the webhook side has trouble.
pub async fn run(client: Client, settings: WebhookSettings) {
    let slot = Arc::new(server::CertSlot::default());
    let serve_slot = slot.clone();
    let bind = settings.bind;
    let writers = Arc::new(server::NodeWriters {
        client: client.clone(),
        raven_node_user: settings.raven_node_user.clone(),
        namespace: settings.namespace.clone(),
    });
    tokio::spawn(async move {
        loop {
            if let Err(e) = server::serve(bind, serve_slot.clone(), writers.clone()).await {
                warn!("{e}; retrying in 5 s");
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &settings.namespace);
    let mut installed: Option<Material> = None;
    let mut failures = 0u32;
    loop {
        let wait = match ensure_secret(&secrets, &settings).await {
            Ok((material, renew_at)) => {
                failures = 0;
                if installed.as_ref() != Some(&material) {
                    match slot.install(&material.tls_crt, &material.tls_key) {
                        Ok(()) => info!("webhook serving certificate installed"),
                        Err(e) => warn!("cannot install the webhook certificate: {e}"),
                    }
                    installed = Some(material.clone());
                }
                if let Err(e) = inject_ca_bundle(&client, &settings, &material.ca_crt).await {
                    warn!("CA bundle injection: {e}");
                }
                let until_renew =
                    Duration::from_secs(u64::try_from(renew_at - now_unix()).unwrap_or(0));
                settings
                    .recheck
                    .min(until_renew)
                    .max(Duration::from_secs(1))
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                warn!("webhook certificate Secret: {e}");
                Duration::from_secs(1 << failures.min(5))
            }
        };
        tokio::time::sleep(wait).await;
    }
}

fn material_of(secret: &Secret) -> Material {
    let get = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .unwrap_or_default()
    };
    Material {
        tls_crt: get(certs::KEY_TLS_CRT),
        tls_key: get(certs::KEY_TLS_KEY),
        ca_crt: get(certs::KEY_CA_CRT),
        ca_key: get(certs::KEY_CA_KEY),
    }
}

fn secret_of(settings: &WebhookSettings, m: &Material, resource_version: Option<String>) -> Secret {
    let data: BTreeMap<String, ByteString> = [
        (certs::KEY_TLS_CRT, &m.tls_crt),
        (certs::KEY_TLS_KEY, &m.tls_key),
        (certs::KEY_CA_CRT, &m.ca_crt),
        (certs::KEY_CA_KEY, &m.ca_key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(settings.secret.clone()),
            namespace: Some(settings.namespace.clone()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY.0.to_owned(),
                MANAGED_BY.1.to_owned(),
            )])),
            resource_version,
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Default::default()
    }
}

/// Makes the Secret hold valid material and returns it with its renewal time (unix seconds).
/// Create-if-absent and replace-with-resourceVersion; a lost race re-reads (see module docs).
async fn ensure_secret(
    secrets: &Api<Secret>,
    settings: &WebhookSettings,
) -> Result<(Material, i64), String> {
    let names = certs::service_dns_names(&settings.service, &settings.namespace);
    for _ in 0..5 {
        let now = now_unix();
        let existing = secrets
            .get_opt(&settings.secret)
            .await
            .map_err(|e| format!("get {}: {e}", settings.secret))?;
        let (old, rv, assessment) = match &existing {
            None => (None, None, Assessment::RenewCa("no Secret yet".into())),
            Some(s) => {
                let m = material_of(s);
                let a = certs::assess(&m, &names, now, &settings.policy);
                (Some(m), s.metadata.resource_version.clone(), a)
            }
        };
        if let (Some(m), Assessment::Valid { renew_at }) = (&old, &assessment) {
            return Ok((m.clone(), *renew_at));
        }
        let why = match &assessment {
            Assessment::RenewCa(w) | Assessment::RenewLeaf(w) => w.clone(),
            Assessment::Valid { .. } => String::new(),
        };
        info!(secret = %settings.secret, "issuing webhook certificates: {why}");
        let new = certs::renew(
            old.as_ref(),
            &assessment,
            CA_COMMON_NAME,
            &names,
            now,
            &settings.policy,
        )
        .map_err(|e| e.to_string())?;
        let result = match rv {
            None => {
                secrets
                    .create(&PostParams::default(), &secret_of(settings, &new, None))
                    .await
            }
            Some(rv) => {
                secrets
                    .replace(
                        &settings.secret,
                        &PostParams::default(),
                        &secret_of(settings, &new, Some(rv)),
                    )
                    .await
            }
        };
        match result {
            Ok(stored) => {
                let m = material_of(&stored);
                if let Assessment::Valid { renew_at } =
                    certs::assess(&m, &names, now, &settings.policy)
                {
                    return Ok((m, renew_at));
                }
                return Err("the Secret just written does not assess as valid".into());
            }
            // Another replica created or renewed it first: read back and use theirs.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                info!("another replica wrote the webhook Secret first; reading it back");
            }
            Err(e) => return Err(format!("write {}: {e}", settings.secret)),
        }
    }
    Err("the webhook Secret kept changing under us (5 attempts)".into())
}

/// The strategic-merge entries (`name` + `clientConfig.caBundle`) of the webhooks that
/// `needs_bundle` selects.
fn stale_entries<'a>(
    hooks: impl Iterator<Item = (&'a String, &'a WebhookClientConfig)>,
    needs_bundle: &dyn Fn(&WebhookClientConfig) -> bool,
    bundle: &str,
) -> Vec<serde_json::Value> {
    hooks
        .filter(|(_, c)| needs_bundle(c))
        .map(|(name, _)| json!({"name": name, "clientConfig": {"caBundle": bundle}}))
        .collect()
}

/// Patches the stale entries into one webhook configuration; `read` is its GET: `Ok(None)`
/// when it does not exist. Problems go to `errors`.
async fn patch_bundle<K>(
    api: &Api<K>,
    kind: &str,
    name: &str,
    read: Result<Option<Vec<serde_json::Value>>, kube::Error>,
    errors: &mut Vec<String>,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match read {
        Ok(Some(stale)) if stale.is_empty() => {}
        Ok(Some(stale)) => {
            let patch = Patch::Strategic(json!({"webhooks": stale}));
            match api.patch(name, &PatchParams::default(), &patch).await {
                Ok(_) => info!("CA bundle written into {kind}"),
                Err(e) => errors.push(format!("patch {kind}: {e}")),
            }
        }
        Ok(None) => errors.push(format!("{kind} {name} not found")),
        Err(e) => errors.push(format!("get {kind}: {e}")),
    }
}

/// Writes the CA bundle into our webhook configurations and the CRD's conversion webhook,
/// only where it differs. Only webhooks whose clientConfig names our Service are touched.
async fn inject_ca_bundle(
    client: &Client,
    settings: &WebhookSettings,
    ca_bundle_pem: &str,
) -> Result<(), String> {
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_bundle_pem);
    let ours = |svc: Option<&k8s_openapi::api::admissionregistration::v1::ServiceReference>| {
        svc.is_some_and(|s| s.name == settings.service && s.namespace == settings.namespace)
    };
    let has = |b: Option<&ByteString>| b.is_some_and(|b| b.0 == ca_bundle_pem.as_bytes());
    let pp = PatchParams::default();
    let mut errors = Vec::new();

    let needs_bundle =
        |c: &WebhookClientConfig| ours(c.service.as_ref()) && !has(c.ca_bundle.as_ref());
    let name = &settings.configuration;
    let vwc: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let read = vwc.get_opt(name).await.map(|c| {
        c.map(|c| {
            let hooks = c.webhooks.iter().flatten();
            stale_entries(
                hooks.map(|w| (&w.name, &w.client_config)),
                &needs_bundle,
                &bundle,
            )
        })
    });
    patch_bundle(
        &vwc,
        "ValidatingWebhookConfiguration",
        name,
        read,
        &mut errors,
    )
    .await;
    let mwc: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let read = mwc.get_opt(name).await.map(|c| {
        c.map(|c| {
            let hooks = c.webhooks.iter().flatten();
            stale_entries(
                hooks.map(|w| (&w.name, &w.client_config)),
                &needs_bundle,
                &bundle,
            )
        })
    });
    patch_bundle(
        &mwc,
        "MutatingWebhookConfiguration",
        name,
        read,
        &mut errors,
    )
    .await;

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.get_opt(&settings.crd).await {
        Ok(Some(crd)) => {
            let cc = crd
                .spec
                .conversion
                .as_ref()
                .filter(|c| c.strategy == "Webhook")
                .and_then(|c| c.webhook.as_ref())
                .and_then(|w| w.client_config.as_ref());
            let is_ours = cc.is_some_and(|c| {
                c.service.as_ref().is_some_and(|s| {
                    s.name == settings.service && s.namespace == settings.namespace
                })
            });
            if is_ours && !cc.is_some_and(|c| has(c.ca_bundle.as_ref())) {
                let patch = Patch::Merge(json!({"spec": {"conversion": {"webhook":
                    {"clientConfig": {"caBundle": bundle}}}}}));
                match crds.patch(&settings.crd, &pp, &patch).await {
                    Ok(_) => {
                        info!(crd = %settings.crd, "CA bundle written into the CRD conversion webhook")
                    }
                    Err(e) => errors.push(format!("patch CRD {}: {e}", settings.crd)),
                }
            }
        }
        Ok(None) => errors.push(format!("CRD {} not found", settings.crd)),
        Err(e) => errors.push(format!("get CRD {}: {e}", settings.crd)),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}
