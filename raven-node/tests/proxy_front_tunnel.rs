//! The proxy end to end in network namespaces: caller → front side (HTTPS, client
//! certificate) → tunnel → edge gateway → stub kubelet (HTTPS, verifying the front's client
//! certificate), on two edge nodes with the same IP (192.168.1.11) in different domains. The
//! right stub must answer, each exactly once; a caller without a certificate, or with one from
//! another CA, reaches no kubelet.
//!
//! Uses the tunnel lab of `proxy_support` (see its topology) and the stubs of `front_support`.
//! Must run as root; otherwise it fails and says why.

mod front_support;
mod proxy_support;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use front_support::{Ca, Leaf, StubKubelet, exchange, tls_connect};
use proxy_support::{Lab, Ns, SERVER_IP};
use raven_node::proxy::front::{self, FrontConfig, FrontMetrics, FrontServices, ServerTls, tls};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Stub kubelets listen here with TLS (an allowed port of the lab; its line stubs use 10250).
const KUBELET_PORT: u16 = 10255;
const FRONT_NAME: &str = "raven-proxy";

/// Starts an HTTPS stub kubelet for `node` at 192.168.1.11 inside `ns`; returns what it saw.
fn tls_kubelet(ns: &Ns, node: &str, serving: Leaf, client_ca: Arc<Ca>) -> Arc<Mutex<Vec<String>>> {
    let node = node.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    ns.spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let stub = StubKubelet::start(
                &node,
                Ipv4Addr::new(192, 168, 1, 11),
                KUBELET_PORT,
                Some((serving, &client_ca)),
            )
            .await;
            tx.send(stub.seen.clone()).expect("test waits");
            // Serve until the process ends.
            std::future::pending::<()>().await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("stub kubelet started")
}

async fn connect(
    addr: SocketAddr,
    front_ca: &Ca,
    cert: Option<Leaf>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    tls_connect(addr, front_ca, FRONT_NAME, cert).await
}

fn get(node: &str) -> Vec<u8> {
    format!("GET /healthz HTTP/1.1\r\nHost: {node}:{KUBELET_PORT}\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

#[test]
fn caller_reaches_the_right_same_ip_kubelet_through_front_and_tunnel() {
    let lab = Lab::build();
    // CAs: the front's serving certificate, callers' client certificates (kube-apiserver's
    // kubelet-client CA), kubelets' serving certificates, the front's client certificate
    // towards kubelets.
    let front_ca = Arc::new(Ca::new("front-serving-ca"));
    let caller_ca = Ca::new("apiserver-kubelet-client-ca");
    let kubelet_serving_ca = Ca::new("kubelet-serving-ca");
    let kubelet_client_ca = Arc::new(Ca::new("kubelet-client-ca"));
    let seen_a = tls_kubelet(
        &lab.ea2,
        "edge-a-2",
        kubelet_serving_ca.issue("edge-a-2", &[], &["edge-a-2"], false, true),
        kubelet_client_ca.clone(),
    );
    let seen_b = tls_kubelet(
        &lab.eb2,
        "edge-b-2",
        kubelet_serving_ca.issue("edge-b-2", &[], &["edge-b-2"], false, true),
        kubelet_client_ca.clone(),
    );

    let (chain, key) = front_ca.issue(FRONT_NAME, &[], &[FRONT_NAME], false, true);
    let (kchain, kkey) =
        kubelet_client_ca.issue("raven-proxy-kubelet-client", &[], &[], true, false);
    let mut config = FrontConfig {
        https_addr: Some(SocketAddr::new(SERVER_IP.parse().expect("ip"), 0)),
        http_addr: None,
        server_tls: Some(ServerTls {
            cert: tls::static_cert(chain, key).expect("serving cert"),
            client_ca: Some(vec![caller_ca.der()]),
        }),
        ..FrontConfig::default()
    };
    config.target_tls.ports = BTreeSet::from([KUBELET_PORT]);
    config.target_tls.roots = vec![kubelet_serving_ca.der()];
    config.target_tls.client_cert = Some(tls::static_cert(kchain, kkey).expect("client cert"));
    let front_metrics = FrontMetrics::default();
    let services = FrontServices {
        dialer: lab.cloud_proxy.dialer(),
        authenticator: None,
        pod_locator: None,
        metrics: front_metrics.clone(),
    };
    let rt = lab.cloud_proxy.handle().expect("proxy runtime");
    // Bound from a thread in the cloud namespace; served on the proxy's runtime there.
    let front = lab
        .cloud
        .call(move || rt.block_on(front::start(config, services)))
        .expect("front starts");
    let addr = front.https_addr.expect("HTTPS listener");

    let good = caller_ca.issue(
        "kube-apiserver-kubelet-client",
        &["system:masters"],
        &[],
        true,
        false,
    );
    let rogue = Ca::new("rogue-ca").issue("kube-apiserver-kubelet-client", &[], &[], true, false);
    let fca = front_ca.clone();
    let (answers, no_cert, rogue_cert, closed) = lab.cloud.block_on(move || async move {
        let mut answers = Vec::new();
        for node in ["edge-a-2", "edge-b-2", "edge-a-2"] {
            let mut s = connect(addr, &fca, Some((good.0.clone(), good.1.clone_key())))
                .await
                .expect("TLS to the front");
            answers.push((node, exchange(&mut s, &get(node)).await));
        }
        let mut s = connect(addr, &fca, None)
            .await
            .expect("TLS without a certificate");
        let no_cert = exchange(&mut s, &get("edge-a-2")).await;
        // An allowed port where nothing listens on the edge: the edge's refusal arrives after
        // the stream was handed out (early CONNECT, TLS ClientHello already sent) and is still
        // answered as a failed dial, with the edge's reason.
        let mut s = connect(addr, &fca, Some((good.0.clone(), good.1.clone_key())))
            .await
            .expect("TLS to the front");
        let closed = exchange(&mut s, &get("edge-a-1")).await;
        // A certificate from another CA: the handshake (or, with TLS 1.3, the first read) fails.
        let rogue_cert = match connect(addr, &fca, Some(rogue)).await {
            Err(e) => format!("handshake refused: {e}"),
            Ok(mut s) => {
                let _ = s.write_all(&get("edge-a-2")).await;
                let mut out = Vec::new();
                match s.read_to_end(&mut out).await {
                    Err(e) => format!("refused: {e}"),
                    Ok(_) => String::from_utf8_lossy(&out).into_owned(),
                }
            }
        };
        (answers, no_cert, rogue_cert, closed)
    });
    for (node, (status, text)) in &answers {
        assert_eq!(*status, 200, "{node}: {text}");
        assert!(
            text.contains(&format!("node={node}\n")),
            "{node} must answer: {text}"
        );
    }
    assert_eq!(no_cert.0, 401, "no certificate, no token: {}", no_cert.1);
    assert_eq!(closed.0, 502, "{}", closed.1);
    assert!(
        closed.1.contains("failed") && closed.1.contains("refused"),
        "the edge's reason: {}",
        closed.1
    );
    // Counted as the failed dial it is, not as a TLS failure.
    let dial_errors = |kind: &str| {
        front_metrics
            .dial_errors
            .get_or_create(&vec![("kind", kind.to_owned())])
            .get()
    };
    assert_eq!((dial_errors("failed"), dial_errors("tls")), (1, 0));
    assert!(
        !rogue_cert.contains("HTTP/1.1 200") && !rogue_cert.contains("node="),
        "a certificate from another CA must be refused: {rogue_cert}"
    );
    // Same IP, different domains: each stub got exactly the requests addressed to its node.
    let seen_a = seen_a.lock().expect("lock").clone();
    let seen_b = seen_b.lock().expect("lock").clone();
    assert_eq!(seen_a.len(), 2, "edge-a-2 stub saw {seen_a:?}");
    assert_eq!(seen_b.len(), 1, "edge-b-2 stub saw {seen_b:?}");
    assert!(
        seen_a.iter().all(|h| h.starts_with("GET /healthz ")),
        "{seen_a:?}"
    );
    drop(front);
}

/// Kills the daemon when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn daemon(ns: &Ns, dir: &std::path::Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &ns.name,
        env!("CARGO_BIN_EXE_raven-node"),
        "run",
    ])
    .args(["--node-name", "cloud-1", "--metrics-addr", "off"])
    .args([
        "--underlay-mtu",
        "1500",
        "--tunnel-driver",
        "wireguard-userspace",
    ])
    .arg("--gateways-dir")
    .arg(dir.join("gateways"))
    .arg("--state-dir")
    .arg(dir.join("state"))
    .arg("--node-state-file")
    .arg(dir.join("node-state.json"))
    .arg("--cni-data-dir")
    .arg(dir.join("cni"))
    .arg("--proxy")
    .arg("--proxy-cert-dir")
    .arg(dir.join("tunnel"))
    .args(["--proxy-front-https", "127.0.0.1:10263"])
    .arg("--proxy-front-cert")
    .arg(dir.join("front.crt"))
    .arg("--proxy-front-key")
    .arg(dir.join("front.key"))
    .args(extra)
    .env_remove("KUBECONFIG")
    .env_remove("KUBERNETES_SERVICE_HOST")
    .env("RAVEN_LOG", "info");
    cmd
}

/// Writes gw-cloud with `active` as its active proxy endpoint into the daemon's Gateway
/// directory (atomically: the daemon polls it).
fn write_cloud_gateway(dir: &std::path::Path, active: &str) {
    let mut gw = serde_json::to_value(&proxy_support::gateways("edge-a-1")[0]).expect("json");
    gw["spec"]["endpoints"][0]["nodeName"] = active.into();
    gw["status"]["activeEndpoints"][0]["nodeName"] = active.into();
    let tmp = dir.join("gateways").join("gw-cloud.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&gw).expect("json")).expect("write");
    std::fs::rename(&tmp, dir.join("gateways").join("gw-cloud.json")).expect("rename");
}

/// Waits (30 s at most) until a TCP connect to `addr` in `ns` succeeds (`true`) or is
/// refused (`false`).
fn wait_listening(ns: &Ns, addr: SocketAddr, want: bool) {
    ns.block_on(move || async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let listening = TcpStream::connect(addr).await.is_ok();
            if listening == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{addr}: listening = {listening}, wanted {want}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// `raven-node run --proxy` with the front flags starts the front side and serves callers with
/// a client certificate from `--proxy-front-client-ca`, listening only while the Gateways make
/// the node a proxy server (the listener closes when another node takes the seat and reopens
/// when it comes back); without a client CA (and no API server for tokens) it refuses to
/// start and says why.
#[test]
fn daemon_starts_the_front_side_from_its_flags() {
    proxy_support::require_root();
    let ns = Ns::new("front-daemon");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("gateways")).expect("gateways dir");
    let pki = proxy_support::Pki::new();
    pki.write_dir(&dir.join("tunnel"), "system:node:cloud-1", &["127.0.0.1"]);
    let (c, k) = pki.issue(FRONT_NAME, &["127.0.0.1"]);
    std::fs::write(dir.join("front.crt"), c).expect("write");
    std::fs::write(dir.join("front.key"), k).expect("write");
    std::fs::write(dir.join("ca.crt"), pki.ca.pem()).expect("write");

    // No client CA, no API server: the front would be unauthenticated.
    let out = daemon(&ns, dir, &["--proxy-kubelet-ca"])
        .arg(dir.join("ca.crt"))
        .output()
        .expect("raven-node runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must refuse: {stderr}");
    assert!(stderr.contains("unauthenticated"), "{stderr}");

    let ca = dir.join("ca.crt");
    let ca = ca.to_str().expect("utf-8 path");
    write_cloud_gateway(dir, "cloud-1");
    let mut child = Child(
        daemon(
            &ns,
            dir,
            &["--proxy-front-client-ca", ca, "--proxy-kubelet-ca", ca],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("raven-node starts"),
    );
    let front_addr: SocketAddr = "127.0.0.1:10263".parse().expect("addr");
    wait_listening(&ns, front_addr, true);
    // Another node takes the seat: this one is no longer a server, the front closes.
    write_cloud_gateway(dir, "cloud-2");
    wait_listening(&ns, front_addr, false);
    write_cloud_gateway(dir, "cloud-1");
    wait_listening(&ns, front_addr, true);
    let (cert, key) = pki.issue("kube-apiserver-kubelet-client", &[]);
    let ca_pem = pki.ca.pem();
    let answer = ns.block_on(move || async move {
        use rustls::pki_types::pem::PemObject;
        let chain =
            vec![rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).expect("pem")];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("pem");
        let root =
            rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("pem");
        let mut roots = RootCertStore::empty();
        roots.add(root).expect("root");
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
                .expect("client cert");
        let addr: SocketAddr = "127.0.0.1:10263".parse().expect("addr");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let tcp = loop {
            match TcpStream::connect(addr).await {
                Ok(t) => break t,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the front side does not listen on {addr}: {e}"),
            }
        };
        let mut s = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
            .await
            .expect("TLS to the daemon's front side");
        exchange(&mut s, &get("nobody")).await
    });
    // Authenticated, then refused by the tunnel's dialer ("nobody" is in no Gateway); the text
    // is the dialer's, so the request went through the daemon's wiring.
    assert_eq!(answer.0, 404, "{}", answer.1);
    assert!(answer.1.contains("unknown node \"nobody\""), "{}", answer.1);
    assert!(
        child.0.try_wait().expect("wait").is_none(),
        "the daemon must keep running"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = child.0.wait().expect("wait");
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    let mut stderr = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(stderr.contains("proxy front side on"), "{stderr}");
    assert!(
        stderr.contains("listeners closed (no longer a proxy server)"),
        "{stderr}"
    );
}
