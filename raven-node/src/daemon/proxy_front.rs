//! Starts the proxy's front side (`crate::proxy::front`) from the daemon: turns the command
//! line's file paths into the front's TLS settings (both legs reloaded when the files
//! change), picks the authenticator (TokenReview + SubjectAccessReview in Kubernetes mode;
//! client certificates only otherwise) and serves over the tunnel's [`crate::proxy::Dialer`]
//! while the Gateways make this node a proxy server. The front's own checks refuse
//! unauthenticated or unusable setups at start; their errors come back as one [`RunError`]
//! naming the flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::lease::KubeAccess;
use super::run::RunError;
use crate::proxy::Dialer;
use crate::proxy::auth_kube::{CacheTtl, KubeTokenAuthenticator};
use crate::proxy::front::{
    self, Authenticator, FrontConfig, FrontError, FrontHandle, FrontMetrics, FrontServices,
    PodLocator, ServerTlsFiles, TargetTlsFiles,
};
use crate::proxy::pods_kube::{KubePodLocator, PodCacheTtl};

/// Kubernetes mode's token checks and Pod routing (both `None` otherwise).
type KubeServices = (Option<Arc<dyn Authenticator>>, Option<Arc<dyn PodLocator>>);

/// How often the certificate files (both legs) are checked for a rotation.
pub const CERT_RELOAD: Duration = Duration::from_secs(5);

/// How often a listener that could not bind (port taken) is tried again.
pub const REBIND: Duration = Duration::from_secs(5);

/// The front side's settings from the command line (`--proxy-front-*`, `--proxy-kubelet-*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrontSettings {
    /// HTTPS listener.
    pub https: Option<SocketAddr>,
    /// Plain HTTP listener (bearer tokens only).
    pub http: Option<SocketAddr>,
    /// Serving certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Serving key (PEM).
    pub key: Option<PathBuf>,
    /// CA of callers' client certificates (kube-apiserver's kubelet-client CA).
    pub client_ca: Option<PathBuf>,
    /// Roots verifying the kubelets' serving certificates.
    pub kubelet_ca: Option<PathBuf>,
    /// Our client certificate towards kubelets.
    pub kubelet_client_cert: Option<PathBuf>,
    /// Its key.
    pub kubelet_client_key: Option<PathBuf>,
}

fn tls_error(e: FrontError) -> RunError {
    RunError(format!(
        "proxy front: {e} (check --proxy-front-cert/--proxy-front-key/--proxy-front-client-ca/\
         --proxy-kubelet-ca/--proxy-kubelet-client-cert/--proxy-kubelet-client-key)"
    ))
}

/// The front's configuration from the settings (file paths only: both legs' files are read,
/// and re-read on change, by the front).
pub fn front_config(s: &FrontSettings) -> Result<FrontConfig, RunError> {
    let mut config = FrontConfig {
        https_addr: s.https,
        http_addr: s.http,
        ..FrontConfig::default()
    };
    config.server_tls_files = match (&s.cert, &s.key) {
        (Some(c), Some(k)) => Some(ServerTlsFiles {
            cert: c.clone(),
            key: k.clone(),
            client_ca: s.client_ca.clone(),
            interval: CERT_RELOAD,
        }),
        (None, None) => None,
        _ => {
            return Err(RunError(
                "proxy front: --proxy-front-cert and --proxy-front-key go together".to_owned(),
            ));
        }
    };
    let client_cert = match (&s.kubelet_client_cert, &s.kubelet_client_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        _ => {
            return Err(RunError(
                "proxy front: --proxy-kubelet-client-cert and --proxy-kubelet-client-key go \
                 together"
                    .to_owned(),
            ));
        }
    };
    config.target_tls_files = match (&s.kubelet_ca, client_cert) {
        (Some(roots), client_cert) => Some(TargetTlsFiles {
            roots: roots.clone(),
            client_cert,
            interval: CERT_RELOAD,
        }),
        (None, Some(_)) => {
            return Err(RunError(
                "proxy front: --proxy-kubelet-client-cert needs --proxy-kubelet-ca (kubelets' \
                 serving certificates are always verified)"
                    .to_owned(),
            ));
        }
        (None, None) => None,
    };
    Ok(config)
}

/// Starts the front on `rt` (the proxy's runtime) over `dialer`, listening while `server_role`
/// is `true`; in Kubernetes mode (`kube`) bearer tokens are checked with TokenReview and
/// SubjectAccessReview, and kubelet streaming paths are routed by their Pod's node (a cached
/// GET of the Pod).
pub fn start(
    settings: &FrontSettings,
    rt: &tokio::runtime::Handle,
    dialer: Arc<dyn Dialer>,
    server_role: tokio::sync::watch::Receiver<bool>,
    kube: Option<&KubeAccess>,
    metrics: FrontMetrics,
) -> Result<FrontHandle, RunError> {
    let config = front_config(settings)?;
    rt.block_on(async move {
        let (authenticator, pod_locator): KubeServices = match kube {
            Some(access) => {
                let client = super::lease::client(access)
                    .await
                    .map_err(|e| RunError(format!("proxy front: API client: {e}")))?;
                (
                    Some(Arc::new(KubeTokenAuthenticator::new(
                        client.clone(),
                        Vec::new(),
                        CacheTtl::default(),
                    ))),
                    Some(Arc::new(KubePodLocator::new(
                        client,
                        PodCacheTtl::default(),
                    ))),
                )
            }
            None => (None, None),
        };
        let services = FrontServices {
            dialer,
            authenticator,
            pod_locator,
            metrics,
        };
        front::start_following(config, services, server_role, REBIND).map_err(|e| match e {
            FrontError::Tls(_) => tls_error(e),
            e => RunError(format!("proxy front: {e}")),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_given_pairs_are_clear_errors_and_missing_files_are_waited_for() {
        let e = front_config(&FrontSettings {
            cert: Some("/c".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.0.contains("--proxy-front-key go together"), "{e}");
        let e = front_config(&FrontSettings {
            kubelet_client_key: Some("/k".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            e.0.contains("--proxy-kubelet-client-key go together"),
            "{e}"
        );
        let e = front_config(&FrontSettings {
            kubelet_client_cert: Some("/c".into()),
            kubelet_client_key: Some("/k".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.0.contains("needs --proxy-kubelet-ca"), "{e}");
        // A Secret not created yet: the files are waited for by the front, not refused here.
        let c = front_config(&FrontSettings {
            kubelet_ca: Some("/nonexistent/ca.pem".into()),
            kubelet_client_cert: Some("/nonexistent/c.pem".into()),
            kubelet_client_key: Some("/nonexistent/k.pem".into()),
            ..Default::default()
        })
        .expect("paths only");
        let files = c.target_tls_files.expect("kubelet leg from files");
        assert_eq!(files.roots, PathBuf::from("/nonexistent/ca.pem"));
        assert_eq!(
            files.client_cert,
            Some(("/nonexistent/c.pem".into(), "/nonexistent/k.pem".into()))
        );
    }

    #[test]
    fn unauthenticated_setups_are_refused_by_the_front() {
        struct NoDial;
        impl Dialer for NoDial {
            fn dial<'a>(&'a self, node: &'a str, _port: u16) -> crate::proxy::DialFuture<'a> {
                Box::pin(async move { Err(crate::proxy::DialError::UnknownNode(node.to_owned())) })
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (_role_tx, role) = tokio::sync::watch::channel(true);
        // Plain HTTP without an authenticator (not Kubernetes mode).
        let e = std::thread::spawn(move || {
            start(
                &FrontSettings {
                    https: None,
                    http: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                    ..Default::default()
                },
                rt.handle(),
                Arc::new(NoDial),
                role,
                None,
                FrontMetrics::default(),
            )
            .unwrap_err()
        })
        .join()
        .expect("thread");
        assert!(e.0.contains("no authenticator"), "{e}");
    }
}
