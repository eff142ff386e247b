//! The cluster's own certificate signer for tests: a cluster CA (made with openssl) that
//! kube-apiserver trusts for client certificates (`--client-ca-file`), and the real
//! kube-controller-manager 1.20.2 (built next to kube-apiserver by
//! `tests/kube/build-apiserver.sh`) running only its CSR signing controllers with that CA, as
//! in a cluster. The proxy front's kubelet client certificate comes from its
//! `kubernetes.io/kube-apiserver-client` signer.
//!
//! A missing binary is an error that says how to build it, never a silent skip.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::kube::{ADMIN_TOKEN, KubeApiServer, KubeError, Response, find_apiserver};

/// The cluster CA's files.
#[derive(Debug)]
pub struct ClusterCa {
    dir: tempfile::TempDir,
}

fn err(msg: impl Into<String>) -> KubeError {
    KubeError(msg.into())
}

impl ClusterCa {
    /// A new self-signed CA (RSA 2048, one day).
    pub fn new() -> Result<Self, KubeError> {
        let dir = tempfile::Builder::new()
            .prefix("raven-cluster-ca-")
            .tempdir()
            .map_err(|e| err(format!("tempdir: {e}")))?;
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=raven-test-cluster-ca"])
            .arg("-keyout")
            .arg(dir.path().join("ca.key"))
            .arg("-out")
            .arg(dir.path().join("ca.crt"))
            .output()
            .map_err(|e| err(format!("spawn openssl: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "openssl req -x509: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(Self { dir })
    }

    /// The CA certificate (PEM).
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The CA key (PEM).
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("ca.key")
    }

    /// The kube-apiserver flag that makes it trust this CA's client certificates.
    pub fn apiserver_flag(&self) -> String {
        format!("--client-ca-file={}", self.cert().display())
    }
}

/// The kube-controller-manager binary: next to the kube-apiserver in use.
pub fn find_controller_manager() -> Result<PathBuf, KubeError> {
    let apiserver = find_apiserver()?;
    let kcm = apiserver.with_file_name("kube-controller-manager");
    if kcm.is_file() {
        Ok(kcm)
    } else {
        Err(err(format!(
            "{} does not exist; run tests/kube/build-apiserver.sh (as root) to build it",
            kcm.display()
        )))
    }
}

/// kube-controller-manager with only the CSR signing controllers; stopped on drop.
#[derive(Debug)]
pub struct ControllerManager {
    child: Child,
    /// Its log file.
    pub log: PathBuf,
}

impl ControllerManager {
    /// Starts it against `api` as admin, signing with `ca` for `lifetime` (its
    /// `--cluster-signing-duration`; 1.20 ignores a CSR's `expirationSeconds`).
    pub fn start(api: &KubeApiServer, ca: &ClusterCa, lifetime: &str) -> Result<Self, KubeError> {
        let bin = find_controller_manager()?;
        let kubeconfig = api.kubeconfig("kube-controller-manager", ADMIN_TOKEN)?;
        let log = api.dir().join("kube-controller-manager.log");
        let file = fs::File::create(&log).map_err(|e| err(format!("log file: {e}")))?;
        let child = Command::new(&bin)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--controllers=csrsigning")
            .arg(format!(
                "--cluster-signing-cert-file={}",
                ca.cert().display()
            ))
            .arg(format!("--cluster-signing-key-file={}", ca.key().display()))
            .arg(format!("--cluster-signing-duration={lifetime}"))
            .args([
                "--leader-elect=false",
                "--port=0",
                "--secure-port=0",
                "--v=2",
            ])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| err(format!("spawn {}: {e}", bin.display())))?;
        Ok(Self { child, log })
    }

    /// Its log so far (for failure messages).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ControllerManager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request as the holder of a client certificate (`cert_and_key`: PEM file with
/// both); `body` as for [`KubeApiServer::request`].
pub fn request_as_cert(
    api: &KubeApiServer,
    cert_and_key: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Response, KubeError> {
    api.request_with(&["--cert".into(), cert_and_key.into()], method, path, body)
}
