//! rathole 0.5 on the same path shape as the 2-process tunnel: its server on cloud-1, its
//! client on edge-a-1, TLS transport, its visitor port on cloud-1.

use super::*;

/// Path of the rathole 0.5 binary.
pub const RATHOLE_ENV: &str = "RAVEN_RATHOLE_BIN";
pub const DEFAULT_RATHOLE: &str = "/opt/rathole/bin/rathole";

pub fn rathole_bin() -> PathBuf {
    let p = PathBuf::from(std::env::var(RATHOLE_ENV).unwrap_or_else(|_| DEFAULT_RATHOLE.into()));
    assert!(
        p.is_file(),
        "rathole 0.5 not found at {} (set {RATHOLE_ENV}, or install it with `cargo install \
         rathole --version 0.5.0 --root /opt/rathole --no-default-features --features \
         server,client,tls,noise`; or pass --no-rathole to leave it out explicitly)",
        p.display()
    );
    p
}

/// Starts rathole's server on cloud-1 and client on edge-a-1 with the TLS transport (server
/// identity: the cloud-1 certificate as PKCS#12; the client trusts the lab CA).
pub fn start_rathole(lab: &Lab, dir: &Path) -> (Proc, Proc) {
    let bin = rathole_bin();
    let certs = CertPaths::in_dir(&lab.cert_dir("cloud-1"));
    let p12 = dir.join("rathole-server.p12");
    let out = Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:bench", "-in"])
        .arg(&certs.cert)
        .arg("-inkey")
        .arg(&certs.key)
        .arg("-out")
        .arg(&p12)
        .output()
        .expect("`openssl` (for rathole's PKCS#12 identity) is required");
    assert!(
        out.status.success(),
        "openssl pkcs12: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = dir.join("rathole-server.toml");
    std::fs::write(
        &server,
        format!(
            "[server]\nbind_addr = \"{RATHOLE_CONTROL}\"\n\
             [server.transport]\ntype = \"tls\"\n\
             [server.transport.tls]\npkcs12 = \"{}\"\npkcs12_password = \"bench\"\n\
             [server.services.stub]\ntoken = \"raven-bench\"\nbind_addr = \"{RATHOLE_VISITOR}\"\n",
            p12.display()
        ),
    )
    .expect("write rathole server config");
    let client = dir.join("rathole-client.toml");
    std::fs::write(
        &client,
        format!(
            "[client]\nremote_addr = \"{RATHOLE_CONTROL}\"\n\
             [client.transport]\ntype = \"tls\"\n\
             [client.transport.tls]\ntrusted_root = \"{}\"\nhostname = \"{SERVER_IP}\"\n\
             [client.services.stub]\ntoken = \"raven-bench\"\nlocal_addr = \"192.168.1.10:{STUB_PORT}\"\n",
            certs.ca.display()
        ),
    )
    .expect("write rathole client config");
    let run = |ns: &Ns, mode: &str, cfg: &Path| {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(&bin)
            .arg(mode)
            .arg(cfg)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("rathole starts");
        Proc {
            child,
            _stdin: None,
            what: format!("rathole {mode}"),
        }
    };
    let s = run(&lab.cloud, "--server", &server);
    std::thread::sleep(Duration::from_millis(300));
    let c = run(&lab.ea1, "--client", &client);
    (s, c)
}
