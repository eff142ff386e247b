//! Certificate rotation of the proxy front side's HTTPS listener: the serving certificate,
//! its key and the callers' client CA are files, re-read when they change, without a restart
//! and without touching established connections (a `logs -f`-style stream opened before a
//! rotation keeps streaming after it). Missing files are waited for; garbage or a mismatched
//! pair is refused and the previous material stays.
//!
//! Real TLS on loopback, certificates generated at test time; no root needed.

mod front_support;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use front_support::{
    Ca, DirectDialer, Leaf, StubKubelet, loopback, read_response, read_until, tls_connect,
};
use raven_node::daemon::metrics::Metrics;
use raven_node::proxy::front::{
    self, FrontConfig, FrontHandle, FrontMetrics, FrontServices, ServerTlsFiles, TargetTls,
    TargetTlsFiles,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const NODE: &str = "edge-r-1";
const PORT: u16 = 9100;
const NAME: &str = "raven-proxy";

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn key_pem(key: &PrivateKeyDer<'_>) -> String {
    match key {
        PrivateKeyDer::Pkcs8(k) => pem("PRIVATE KEY", k.secret_pkcs8_der()),
        other => panic!("unexpected key kind {other:?}"),
    }
}

/// Replaces `path` atomically (a reader sees the old or the new bytes).
fn put(path: &Path, bytes: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A certificate, its key and a CA: the serving leg (the CA verifies callers) or the kubelet
/// leg (the CA verifies kubelets; the certificate is ours towards them).
struct Files {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl Files {
    fn install(&self, leaf: &Leaf, client_ca: &Ca) {
        // CA first, then key, then certificate: each swap is refused until the pair matches.
        put(&self.ca, &pem("CERTIFICATE", &client_ca.der()));
        put(&self.key, &key_pem(&leaf.1));
        put(&self.cert, &pem("CERTIFICATE", &leaf.0[0]));
    }
}

/// A TLS connection trusting `serving` as the front's CA, presenting `cert`.
async fn connect(
    addr: std::net::SocketAddr,
    serving: &Ca,
    cert: Option<Leaf>,
) -> std::io::Result<TlsStream<TcpStream>> {
    tls_connect(addr, serving, NAME, cert).await
}

/// One bodiless GET on a fresh connection: the status, or 0 when TLS or the connection failed
/// (TLS 1.3 reports a refused client certificate only on the first read).
async fn get_status(
    addr: std::net::SocketAddr,
    serving: &Ca,
    cert: Option<Leaf>,
    path: &str,
) -> u16 {
    get(addr, serving, cert, path, PORT).await.0
}

/// One bodiless GET for `NODE:port` on a fresh connection: status and text, or 0 and why when
/// TLS or the connection failed.
async fn get(
    addr: std::net::SocketAddr,
    serving: &Ca,
    cert: Option<Leaf>,
    path: &str,
    port: u16,
) -> (u16, String) {
    let mut s = match connect(addr, serving, cert).await {
        Ok(s) => s,
        Err(e) => return (0, e.to_string()),
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {NODE}:{port}\r\nConnection: close\r\n\r\n");
    if let Err(e) = tokio::io::AsyncWriteExt::write_all(&mut s, req.as_bytes()).await {
        return (0, e.to_string());
    }
    read_response(&mut s).await
}

/// The serial of the certificate the listener presents now.
async fn presented(addr: std::net::SocketAddr, serving: &Ca, cert: Leaf) -> Option<Vec<u8>> {
    let s = connect(addr, serving, Some(cert)).await.ok()?;
    let der: CertificateDer<'static> = s.get_ref().1.peer_certificates()?.first()?.clone();
    Some(der.as_ref().to_vec())
}

fn caller(ca: &Ca) -> Leaf {
    ca.issue("kube-apiserver-kubelet-client", &[], &[], true, false)
}

/// Waits (10 s at most) until a caller with a certificate of `callers` gets a 200 from a
/// listener verified by `serving`.
async fn wait_served(what: &str, addr: std::net::SocketAddr, serving: &Ca, callers: &Ca) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_status(addr, serving, Some(caller(callers)), "/healthz").await != 200 {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Env {
    front: FrontHandle,
    files: Files,
    kubelet: StubKubelet,
    metrics: Metrics,
    _dir: tempfile::TempDir,
}

/// A front serving from `files` (reloaded every 100 ms) that reaches `NODE` at `ip:port`
/// directly; the kubelet leg from `target` files when given, else plain targets only.
async fn start_front(
    files: &Files,
    ip: std::net::Ipv4Addr,
    port: u16,
    target: Option<TargetTlsFiles>,
) -> (FrontHandle, Metrics) {
    let dialer = DirectDialer {
        nodes: HashMap::from([(NODE.to_owned(), (IpAddr::V4(ip), BTreeSet::from([port])))]),
        ..DirectDialer::default()
    };
    let mut metrics = Metrics::new();
    let front_metrics = FrontMetrics::register(metrics.registry_mut());
    let config = FrontConfig {
        https_addr: Some("127.0.0.1:0".parse().expect("addr")),
        server_tls_files: Some(ServerTlsFiles {
            cert: files.cert.clone(),
            key: files.key.clone(),
            client_ca: Some(files.ca.clone()),
            interval: Duration::from_millis(100),
        }),
        // Without kubelet files: plain targets only, no kubelet roots needed.
        target_tls: TargetTls {
            ports: target
                .as_ref()
                .map_or_else(BTreeSet::new, |_| BTreeSet::from([port])),
            roots: Vec::new(),
            client_cert: None,
        },
        target_tls_files: target,
        ..FrontConfig::default()
    };
    let services = FrontServices {
        dialer: Arc::new(dialer),
        authenticator: None,
        pod_locator: None,
        metrics: front_metrics,
    };
    let front = front::start(config, services)
        .await
        .expect("missing files are waited for, not an error");
    (front, metrics)
}

async fn start() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = Files {
        cert: dir.path().join("serving.pem"),
        key: dir.path().join("serving.pem.key"),
        ca: dir.path().join("callers.pem"),
    };
    let ip = loopback();
    let kubelet = StubKubelet::start(NODE, ip, PORT, None).await;
    let (front, metrics) = start_front(&files, ip, PORT, None).await;
    Env {
        front,
        files,
        kubelet,
        metrics,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_certificate_and_client_ca_rotate_without_dropping_connections() {
    let env = start().await;
    let addr = env.front.https_addr.expect("https");
    let (serving_a, serving_b) = (Ca::new("serving-a"), Ca::new("serving-b"));
    let (callers_1, callers_2) = (Ca::new("callers-1"), Ca::new("callers-2"));

    // No files yet: the listener is up, handshakes fail, nothing reaches the target.
    assert_eq!(
        get_status(addr, &serving_a, Some(caller(&callers_1)), "/healthz").await,
        0
    );

    // Files appear: served within a few reload intervals.
    let leaf_a = serving_a.issue(NAME, &[], &[NAME], false, true);
    env.files.install(&leaf_a, &callers_1);
    wait_served("the first certificate", addr, &serving_a, &callers_1).await;

    // A stream opened before the rotation.
    let mut stream = connect(addr, &serving_a, Some(caller(&callers_1)))
        .await
        .expect("connect");
    let req = format!(
        "GET /containerLogs/default/web/app?follow=true HTTP/1.1\r\nHost: {NODE}:{PORT}\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, req.as_bytes())
        .await
        .expect("write");
    env.kubelet
        .log_chunks
        .send(Some("before-rotation\n".into()))
        .expect("chunk");
    let mut acc = Vec::new();
    assert!(
        read_until(&mut stream, &mut acc, "before-rotation").await,
        "{}",
        String::from_utf8_lossy(&acc)
    );

    // Rotate everything: new serving CA and certificate, new callers' CA.
    let leaf_b = serving_b.issue(NAME, &[], &[NAME], false, true);
    env.files.install(&leaf_b, &callers_2);
    wait_served("the rotated certificate", addr, &serving_b, &callers_2).await;
    assert_eq!(
        presented(addr, &serving_b, caller(&callers_2)).await,
        Some(leaf_b.0[0].as_ref().to_vec()),
        "new handshakes present the new certificate"
    );
    // The old serving CA no longer verifies the listener; the old callers' CA is no longer
    // accepted.
    assert_eq!(
        get_status(addr, &serving_a, Some(caller(&callers_1)), "/healthz").await,
        0
    );
    assert_eq!(
        get_status(addr, &serving_b, Some(caller(&callers_1)), "/healthz").await,
        0
    );
    // The stream established before the rotation keeps streaming.
    env.kubelet
        .log_chunks
        .send(Some("after-rotation\n".into()))
        .expect("chunk");
    assert!(
        read_until(&mut stream, &mut acc, "after-rotation").await,
        "the established stream must survive the rotation: {}",
        String::from_utf8_lossy(&acc)
    );
    env.kubelet.log_chunks.send(None).expect("end");

    // Garbage, then a mismatched pair (new key, old certificate): refused, the previous
    // material stays in use.
    put(&env.files.cert, "not a certificate");
    let text = || env.metrics.encode();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text().contains(
        "raven_node_proxy_front_cert_reloads_total{material=\"serving\",result=\"error\"}",
    ) {
        assert!(
            Instant::now() < deadline,
            "the garbage was never refused: {}",
            text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get_status(addr, &serving_b, Some(caller(&callers_2)), "/healthz").await,
        200
    );
    let leaf_c = serving_a.issue(NAME, &[], &[NAME], false, true);
    put(&env.files.key, &key_pem(&leaf_c.1));
    put(&env.files.cert, &pem("CERTIFICATE", &leaf_b.0[0]));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        presented(addr, &serving_b, caller(&callers_2)).await,
        Some(leaf_b.0[0].as_ref().to_vec()),
        "a mismatched pair is not swapped in"
    );
    let metrics = text();
    let rotated = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("raven_node_proxy_front_cert_reloads_total{material=\"serving\",result=\"rotated\"} ")
        })
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(rotated >= 1.0, "{metrics}");
    // Only requests of accepted handshakes reached the target: the successful probes and the
    // stream, never the refused callers.
    let seen = env.kubelet.requests();
    assert!(
        seen.len() >= 4
            && seen.iter().all(|h| h
                .to_ascii_lowercase()
                .contains(&format!("host: {NODE}:{PORT}"))),
        "{seen:?}"
    );
    let refused = seen.len();
    assert_eq!(
        get_status(addr, &serving_b, Some(caller(&callers_1)), "/healthz").await,
        0
    );
    assert_eq!(env.kubelet.requests().len(), refused);
}

/// The kubelet CA and our client certificate towards kubelets are files too: missing at
/// start (a Secret not created yet) they are waited for, with TLS targets answered 503 and
/// never dialed; once there they are used; a rotation is picked up without a restart, and
/// garbage is refused while the previous material stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_ca_and_client_certificate_are_waited_for_and_rotate() {
    const KUBELET: u16 = 10250;
    let dir = tempfile::tempdir().expect("tempdir");
    let (serving, callers) = (Ca::new("serving"), Ca::new("callers"));
    let files = Files {
        cert: dir.path().join("serving.pem"),
        key: dir.path().join("serving.key"),
        ca: dir.path().join("callers.pem"),
    };
    files.install(&serving.issue(NAME, &[], &[NAME], false, true), &callers);
    let target = Files {
        ca: dir.path().join("kubelet-ca.pem"),
        cert: dir.path().join("kubelet-client.pem"),
        key: dir.path().join("kubelet-client.key"),
    };
    let (kubelet_ca, ours_1, ours_2) = (
        Ca::new("kubelet-serving"),
        Ca::new("kubelet-clients"),
        Ca::new("other-clients"),
    );
    let ip = loopback();
    let kubelet = StubKubelet::start(
        NODE,
        ip,
        KUBELET,
        Some((kubelet_ca.issue(NODE, &[], &[NODE], false, true), &ours_1)),
    )
    .await;
    let (front, metrics) = start_front(
        &files,
        ip,
        KUBELET,
        Some(TargetTlsFiles {
            roots: target.ca.clone(),
            client_cert: Some((target.cert.clone(), target.key.clone())),
            interval: Duration::from_millis(100),
        }),
    )
    .await;
    let addr = front.https_addr.expect("https");
    let status = |path: &'static str| get(addr, &serving, Some(caller(&callers)), path, KUBELET);
    let wait_for = |want: u16, what: &'static str| {
        let status = &status;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let (got, text) = status("/pods").await;
                if got == want {
                    return text;
                }
                assert!(Instant::now() < deadline, "{what}: still {got}: {text}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    // Nothing installed: a clear 503, and the kubelet is never dialed.
    let (got, text) = status("/pods").await;
    assert_eq!(got, 503, "{text}");
    assert!(text.contains("not loaded yet"), "{text}");
    assert!(kubelet.requests().is_empty());

    // The files appear: the kubelet is reached, verified, with our certificate.
    target.install(
        &ours_1.issue("raven-front", &[], &[], true, false),
        &kubelet_ca,
    );
    wait_for(200, "the kubelet files were never loaded").await;
    let reached = kubelet.requests().len();
    assert!(reached >= 1);

    // Our client certificate rotates to one the kubelet does not trust: the next dial uses it.
    target.install(
        &ours_2.issue("raven-front", &[], &[], true, false),
        &kubelet_ca,
    );
    wait_for(502, "the rotated client certificate was never used").await;

    // Garbage roots: refused, counted; the last good material stays in use.
    put(&target.ca, "not a certificate");
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = "raven_node_proxy_front_cert_reloads_total{material=\"target\",result=\"error\"}";
    while !metrics.encode().contains(refused) {
        assert!(Instant::now() < deadline, "{}", metrics.encode());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Back to the trusted client certificate with good roots: reached again.
    target.install(
        &ours_1.issue("raven-front", &[], &[], true, false),
        &kubelet_ca,
    );
    wait_for(200, "the restored certificate was never used").await;
    assert!(kubelet.requests().len() > reached);
    drop(front);
}
