//! The proxy flags' part of the daemon configuration: where the certificates come from (files
//! or CSRs), the tunnel's settings and the front side's.

use std::time::Duration;

use raven_node::daemon::proxy_certs::CsrSettings;
use raven_node::daemon::proxy_front::FrontSettings;
use raven_node::proxy::tunnel::ProxyConfig;
use raven_node::proxy::tunnel::certs::CertPaths;

use super::Common;

/// `--proxy-certs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum CertSource {
    /// CSR in Kubernetes mode, files in standalone mode.
    Auto,
    /// PEM files.
    Files,
    /// The CSR API (Kubernetes mode only).
    Csr,
}

/// The proxy's part of the daemon configuration.
pub(super) struct Settings {
    /// The tunnel's (`None` without `--proxy`).
    pub(super) tunnel: Option<ProxyConfig>,
    /// The front side's.
    pub(super) front: Option<FrontSettings>,
    /// CSR mode's, when the certificates come from the CSR API.
    pub(super) csr: Option<CsrSettings>,
}

/// The proxy's settings from the flags; in CSR mode the tunnel uses the CSR-issued
/// certificates, and so does the front's kubelet leg (when it has kubelets' roots) unless its
/// client certificate is given as files.
pub(super) fn settings(c: &Common) -> Result<Settings, String> {
    let mut csr = csr_settings(c)?;
    let mut tunnel = c.proxy.then(|| proxy_config(c)).transpose()?;
    if let (Some(pc), Some(csr)) = (&mut tunnel, &csr) {
        pc.certs = csr.client_paths(&pc.node_name);
        pc.server_certs = Some(csr.server_paths(&pc.node_name));
    }
    let mut front = front_settings(c, csr.as_ref())?;
    if let (Some(f), Some(csr)) = (&mut front, &mut csr)
        && f.kubelet_ca.is_some()
        && f.kubelet_client_cert.is_none()
        && f.kubelet_client_key.is_none()
    {
        let pair = csr.front_pair_path(c.node_name.as_deref().unwrap_or_default());
        f.kubelet_client_cert = Some(pair.clone());
        f.kubelet_client_key = Some(pair);
        csr.front = true;
    }
    Ok(Settings { tunnel, front, csr })
}

/// CSR mode's settings when it applies (`--proxy` and the certificate source resolves to
/// CSR); an error for CSR asked in standalone mode or a bad renewal fraction.
fn csr_settings(c: &Common) -> Result<Option<CsrSettings>, String> {
    let kubernetes = c.gateways_dir.is_none();
    let csr = match c.proxy_certs {
        CertSource::Files => false,
        CertSource::Auto => kubernetes,
        CertSource::Csr if !kubernetes => {
            return Err("--proxy-certs csr needs Kubernetes mode (not --gateways-dir)".to_owned());
        }
        CertSource::Csr => true,
    };
    if !c.proxy || !csr {
        return Ok(None);
    }
    let f = c.proxy_cert_renew_fraction;
    if !(f > 0.0 && f < 1.0) {
        return Err(format!(
            "--proxy-cert-renew-fraction {f}: must be between 0 and 1 (exclusive)"
        ));
    }
    if c.proxy_cert.is_some() || c.proxy_key.is_some() || c.proxy_ca.is_some() {
        return Err(
            "--proxy-cert/--proxy-key/--proxy-ca are files-mode flags; pass --proxy-certs files \
             (CSR mode writes its own files into --proxy-cert-dir)"
                .to_owned(),
        );
    }
    let mut s = CsrSettings::new(c.proxy_cert_dir.clone());
    s.renew_fraction = f;
    Ok(Some(s))
}

/// The front side's settings: on with --proxy-front, or when a serving certificate or the
/// plain HTTP listener is asked for (proxy servers); needs --proxy. In CSR mode the HTTPS
/// listener serves the proxy server certificate unless one is given.
fn front_settings(c: &Common, csr: Option<&CsrSettings>) -> Result<Option<FrontSettings>, String> {
    if !c.proxy_front
        && c.proxy_front_cert.is_none()
        && c.proxy_front_key.is_none()
        && c.proxy_front_http.is_none()
    {
        return Ok(None);
    }
    if !c.proxy {
        return Err("--proxy-front-* flags need --proxy".to_owned());
    }
    let (cert, key) = match (&c.proxy_front_cert, &c.proxy_front_key, csr) {
        (None, None, Some(csr)) if c.proxy_front => {
            let p = csr.server_paths(c.node_name.as_deref().unwrap_or_default());
            (Some(p.cert), Some(p.key))
        }
        // Files mode: the node's proxy certificate serves the front too.
        (None, None, None) if c.proxy_front => {
            let p = proxy_cert_paths(c);
            (Some(p.cert), Some(p.key))
        }
        (cert, key, _) => (cert.clone(), key.clone()),
    };
    Ok(Some(FrontSettings {
        https: cert.is_some().then_some(c.proxy_front_https),
        http: c.proxy_front_http,
        cert,
        key,
        client_ca: c.proxy_front_client_ca.clone(),
        kubelet_ca: c.proxy_kubelet_ca.clone(),
        kubelet_client_cert: c.proxy_kubelet_client_cert.clone(),
        kubelet_client_key: c.proxy_kubelet_client_key.clone(),
    }))
}

/// Files mode's proxy certificate: `--proxy-cert-dir`, single files overridden.
fn proxy_cert_paths(c: &Common) -> CertPaths {
    let mut certs = CertPaths::in_dir(&c.proxy_cert_dir);
    if let Some(p) = &c.proxy_cert {
        certs.cert = p.clone();
    }
    if let Some(p) = &c.proxy_key {
        certs.key = p.clone();
    }
    if let Some(p) = &c.proxy_ca {
        certs.ca = p.clone();
    }
    certs
}

/// The proxy tunnel's settings (files mode's certificate paths; CSR mode replaces them).
fn proxy_config(c: &Common) -> Result<ProxyConfig, String> {
    if c.proxy_dial_timeout_ms == 0 || c.proxy_keepalive_seconds == 0 {
        return Err(
            "--proxy-dial-timeout-ms and --proxy-keepalive-seconds must be positive".to_owned(),
        );
    }
    let mut pc = ProxyConfig::new(
        c.node_name.as_deref().unwrap_or_default(),
        proxy_cert_paths(c),
    );
    pc.listen = c.proxy_listen;
    pc.server_name = c.proxy_server_name.clone();
    pc.solo_ip = c.proxy_solo_address;
    pc.timing.dial_timeout = Duration::from_millis(c.proxy_dial_timeout_ms);
    pc.timing.keepalive_interval = Duration::from_secs(c.proxy_keepalive_seconds);
    pc.timing.keepalive_timeout = (pc.timing.keepalive_interval / 2).max(Duration::from_secs(1));
    Ok(pc)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::cli::config_of;

    #[test]
    fn proxy_flags() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["run", "--node-name", "n1", "--gateways-dir", "/gw"];
            argv.extend_from_slice(extra);
            config_of(&argv)
        };
        assert!(parse(&[]).unwrap().proxy.is_none(), "off by default");
        let pc = parse(&["--proxy", "--proxy-cert-dir", "/d", "--proxy-ca", "/ca.pem"])
            .unwrap()
            .proxy
            .unwrap();
        assert_eq!(pc.node_name, "n1");
        assert_eq!(pc.certs.cert, PathBuf::from("/d/tls.crt"));
        assert_eq!(pc.certs.key, PathBuf::from("/d/tls.key"));
        assert_eq!(pc.certs.ca, PathBuf::from("/ca.pem"));
        assert_eq!(pc.listen.port(), 10262);
        let e = parse(&["--proxy", "--proxy-dial-timeout-ms", "0"]).unwrap_err();
        assert!(e.contains("--proxy-dial-timeout-ms"), "{e}");
        // Front side: off unless a serving certificate or plain HTTP is asked for.
        assert!(parse(&["--proxy"]).unwrap().proxy_front.is_none());
        let f = parse(&[
            "--proxy",
            "--proxy-front-cert",
            "/f.crt",
            "--proxy-front-key",
            "/f.key",
            "--proxy-front-client-ca",
            "/ca.crt",
            "--proxy-kubelet-ca",
            "/k.crt",
        ])
        .unwrap()
        .proxy_front
        .unwrap();
        assert_eq!(f.https, Some("0.0.0.0:10263".parse().unwrap()));
        assert_eq!(f.http, None, "plain HTTP off by default");
        assert_eq!(f.client_ca, Some(PathBuf::from("/ca.crt")));
        assert_eq!(f.kubelet_ca, Some(PathBuf::from("/k.crt")));
        let e = parse(&["--proxy-front-cert", "/f.crt"]).unwrap_err();
        assert!(e.contains("need --proxy"), "{e}");
        // Standalone mode: files, whatever auto means; csr is refused there.
        assert!(parse(&["--proxy"]).unwrap().proxy_csr.is_none());
        let e = parse(&["--proxy", "--proxy-certs", "csr"]).unwrap_err();
        assert!(e.contains("Kubernetes mode"), "{e}");
    }

    #[test]
    fn kubernetes_mode_proxy_certificates_come_from_csrs() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["run", "--node-name", "n1"];
            argv.extend_from_slice(extra);
            config_of(&argv)
        };
        let cfg = parse(&[
            "--proxy",
            "--proxy-cert-dir",
            "/p",
            "--proxy-front",
            "--proxy-kubelet-ca",
            "/k-ca.crt",
        ])
        .unwrap();
        let csr = cfg.proxy_csr.expect("auto is csr in Kubernetes mode");
        assert_eq!(csr.dir, PathBuf::from("/p"));
        let pc = cfg.proxy.unwrap();
        assert_eq!(pc.certs.cert, PathBuf::from("/p/proxy-client-current.pem"));
        assert_eq!(pc.certs.ca, PathBuf::from("/p/proxy-client-ca.crt"));
        let server = pc.server_certs.expect("separate server material");
        assert_eq!(server.key, PathBuf::from("/p/proxy-server-current.pem"));
        let f = cfg.proxy_front.expect("front on");
        assert_eq!(f.cert, Some(PathBuf::from("/p/proxy-server-current.pem")));
        assert_eq!(f.https, Some("0.0.0.0:10263".parse().unwrap()));
        // The kubelet leg's client certificate: the CSR-issued front certificate...
        let front_pair = Some(PathBuf::from("/p/proxy-front-current.pem"));
        assert_eq!(f.kubelet_client_cert, front_pair);
        assert_eq!(f.kubelet_client_key, front_pair);
        assert!(csr.front, "the front certificate is requested");
        // ...unless given as files; and not requested without the front side.
        let cfg = parse(&[
            "--proxy",
            "--proxy-front",
            "--proxy-kubelet-client-cert",
            "/k.crt",
            "--proxy-kubelet-client-key",
            "/k.key",
        ])
        .unwrap();
        assert!(!cfg.proxy_csr.expect("csr").front);
        let f = cfg.proxy_front.expect("front on");
        assert_eq!(f.kubelet_client_cert, Some(PathBuf::from("/k.crt")));
        assert!(!parse(&["--proxy"]).unwrap().proxy_csr.expect("csr").front);
        // Without kubelets' roots the front has no TLS kubelet leg, so no certificate for it.
        let cfg = parse(&["--proxy", "--proxy-front"]).unwrap();
        assert!(!cfg.proxy_csr.expect("csr").front);
        assert_eq!(cfg.proxy_front.expect("front on").kubelet_client_cert, None);
        // Explicit files mode keeps tls.crt & co; no proxy, no CSR.
        let cfg = parse(&["--proxy", "--proxy-certs", "files"]).unwrap();
        assert!(cfg.proxy_csr.is_none());
        assert!(cfg.proxy.unwrap().server_certs.is_none());
        assert!(parse(&[]).unwrap().proxy_csr.is_none());
        for bad in ["0", "1", "1.5", "NaN"] {
            let e = parse(&["--proxy", "--proxy-cert-renew-fraction", bad]).unwrap_err();
            assert!(e.contains("--proxy-cert-renew-fraction"), "{e}");
        }
        let e = parse(&["--proxy", "--proxy-cert", "/c.pem"]).unwrap_err();
        assert!(e.contains("--proxy-certs files"), "{e}");
        // Files mode: the node's proxy certificate serves the front too.
        let f = parse(&["--proxy", "--proxy-certs", "files", "--proxy-front"])
            .unwrap()
            .proxy_front
            .unwrap();
        assert_eq!(f.cert, Some(PathBuf::from("/var/lib/raven/proxy/tls.crt")));
        assert_eq!(f.key, Some(PathBuf::from("/var/lib/raven/proxy/tls.key")));
    }
}
