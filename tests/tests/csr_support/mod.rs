//! Helpers shared by the CSR test files (`csr_apiserver`, `front_csr_apiserver`): a runtime,
//! a certificate request configuration with the tests' wait, `openssl`, and the reason of a
//! denial.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use raven_node::proxy::certs_kube::{CertError, CertKind, Issued, KubeCertConfig};

/// How long a CSR may wait for its answer in these tests.
pub const T: Duration = Duration::from_secs(60);

/// A two-thread runtime for the kube clients.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `node`'s certificate of `kind` in `dir`, waiting at most [`T`].
pub fn cfg(node: &str, kind: CertKind, dir: &Path) -> KubeCertConfig {
    let mut c = KubeCertConfig::new(node, kind, dir);
    c.wait_timeout = T;
    c
}

/// Runs openssl; its stdout (fails the test when openssl fails).
pub fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The reason of a denial (fails the test on anything else).
pub fn refused_reason(r: Result<Issued, CertError>) -> String {
    match r {
        Err(CertError::Refused { kind, reason, .. }) => {
            assert_eq!(kind, "Denied");
            reason
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}
