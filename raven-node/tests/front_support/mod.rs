//! Test support for the proxy front side: a PKI generated at test time (no key is committed),
//! a direct [`Dialer`] (node name → loopback address table, real TCP), stub kubelets (small
//! HTTPS servers that require the front's client certificate), a table authenticator and
//! raw TLS callers that write exact bytes (smuggling shapes need exact bytes).

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use raven_node::daemon::metrics::Metrics;
use raven_node::proxy::front::{
    self, Attributes, AuthFuture, Authenticator, Decision, FrontConfig, FrontHandle, FrontMetrics,
    FrontServices, LocateFuture, PodLocator, ServerTls, TargetTls, UserInfo,
};
use raven_node::proxy::{DialError, DialFuture, Dialer, ProxyStream};

/// A certificate and its key.
pub type Leaf = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A test CA.
pub struct Ca {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let issuer = rcgen::Issuer::new(params, key);
        Self { cert, issuer }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A leaf for `cn`/`orgs` with DNS or IP `sans`, for client and/or server use.
    pub fn issue(
        &self,
        cn: &str,
        orgs: &[&str],
        sans: &[&str],
        client: bool,
        server: bool,
    ) -> Leaf {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if client {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        if server {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

/// A fresh loopback address per stub node (127.x.y.z, x from the pid), so parallel tests and
/// test binaries never share a kubelet port.
pub fn loopback() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    Ipv4Addr::new(
        127,
        10 + (pid % 200) as u8,
        (n / 250) as u8,
        (n % 250 + 2) as u8,
    )
}

/// Node name → (address, allowed ports), and the ports listed as HTTPS; dials real TCP. A
/// real [`Dialer`] for the Local mode shape (no tunnel), not a mock.
#[derive(Default)]
pub struct DirectDialer {
    pub nodes: HashMap<String, (IpAddr, BTreeSet<u16>)>,
    pub https_ports: BTreeSet<u16>,
}

impl Dialer for DirectDialer {
    fn is_https_port(&self, _node: &str, port: u16) -> bool {
        self.https_ports.contains(&port)
    }

    fn dial<'a>(&'a self, node: &'a str, port: u16) -> DialFuture<'a> {
        Box::pin(async move {
            let (ip, ports) = self
                .nodes
                .get(node)
                .ok_or_else(|| DialError::UnknownNode(node.to_owned()))?;
            if !ports.contains(&port) {
                return Err(DialError::PortNotAllowed {
                    node: node.to_owned(),
                    port,
                });
            }
            let target = format!("{node}:{port}");
            match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect((*ip, port)))
                .await
            {
                Ok(Ok(s)) => Ok(Box::new(s) as ProxyStream),
                Ok(Err(e)) => Err(DialError::Failed {
                    target,
                    reason: e.to_string(),
                }),
                Err(_) => Err(DialError::Timeout { target }),
            }
        })
    }
}

/// Tokens → users; users → allowed subresources.
pub struct TableAuth {
    pub tokens: HashMap<String, UserInfo>,
    pub grants: HashMap<String, Vec<&'static str>>,
    pub seen: Mutex<Vec<Attributes>>,
}

impl Authenticator for TableAuth {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a, Option<UserInfo>> {
        Box::pin(async move { Ok(self.tokens.get(token).cloned()) })
    }
    fn authorize<'a>(&'a self, attrs: &'a Attributes) -> AuthFuture<'a, Decision> {
        Box::pin(async move {
            self.seen.lock().unwrap().push(attrs.clone());
            let ok = self
                .grants
                .get(&attrs.user.name)
                .is_some_and(|g| g.contains(&attrs.subresource));
            Ok(if ok {
                Decision::Allow
            } else {
                Decision::Deny("no RBAC rule".into())
            })
        })
    }
}

/// (namespace, pod) → node.
pub struct TablePods(pub HashMap<(String, String), String>);

impl PodLocator for TablePods {
    fn node_of<'a>(&'a self, namespace: &'a str, pod: &'a str) -> LocateFuture<'a> {
        Box::pin(async move { Ok(self.0.get(&(namespace.to_owned(), pod.to_owned())).cloned()) })
    }
}

/// A stub kubelet: HTTPS on `addr`, client certificates from `client_ca` required.
pub struct StubKubelet {
    pub addr: SocketAddr,
    /// Raw request heads received, in order.
    pub seen: Arc<Mutex<Vec<String>>>,
    /// Feeds the `containerLogs` stream: `Some(chunk)` sends a chunk, `None` ends it.
    pub log_chunks: mpsc::UnboundedSender<Option<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StubKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StubKubelet {
    /// HTTPS with `tls = Some((serving leaf, client CA))`, plain HTTP with `None`.
    pub async fn start(node: &str, ip: Ipv4Addr, port: u16, tls: Option<(Leaf, &Ca)>) -> Self {
        let acceptor = tls.map(|(serving, client_ca)| {
            let mut roots = RootCertStore::empty();
            roots.add(client_ca.der()).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .unwrap();
            let config = ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(serving.0, serving.1)
                .unwrap();
            TlsAcceptor::from(Arc::new(config))
        });
        let listener = TcpListener::bind((ip, port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let node = node.to_owned();
        let seen2 = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let (seen, rx, node) = (seen2.clone(), rx.clone(), node.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            stub_serve(&node, tls, &seen, &rx).await;
                        }
                        None => stub_serve(&node, tcp, &seen, &rx).await,
                    }
                });
            }
        });
        Self {
            addr,
            seen,
            log_chunks: tx,
            task,
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

async fn stub_serve<S>(
    node: &str,
    mut s: S,
    seen: &Mutex<Vec<String>>,
    logs: &tokio::sync::Mutex<mpsc::UnboundedReceiver<Option<String>>>,
) where
    S: tokio::io::AsyncRead + AsyncWrite + Unpin,
{
    let Some((head, rest)) = read_head(&mut s).await else {
        return;
    };
    seen.lock().unwrap().push(head.clone());
    stub_respond(node, &head, rest, &mut s, logs).await;
}

/// Reads up to the end of a head; returns it and the bytes read past it.
pub async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            return Some((head, buf[end + 4..].to_vec()));
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn stub_respond<S>(
    node: &str,
    head: &str,
    rest: Vec<u8>,
    s: &mut S,
    logs: &tokio::sync::Mutex<mpsc::UnboundedReceiver<Option<String>>>,
) where
    S: tokio::io::AsyncRead + AsyncWrite + Unpin,
{
    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
    let upgrade = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("Upgrade: ")
                .or_else(|| l.strip_prefix("upgrade: "))
        })
        .map(str::to_owned);
    if path.starts_with("/containerLogs/") {
        let h = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
        if s.write_all(h.as_bytes()).await.is_err() || s.flush().await.is_err() {
            return;
        }
        let mut rx = logs.lock().await;
        while let Some(Some(chunk)) = rx.recv().await {
            let frame = format!("{:x}\r\n{chunk}\r\n", chunk.len());
            if s.write_all(frame.as_bytes()).await.is_err() || s.flush().await.is_err() {
                return;
            }
        }
        let _ = s.write_all(b"0\r\n\r\n").await;
        let _ = s.flush().await;
        return;
    }
    if let Some(proto) = upgrade {
        if path.contains("/redirect/") {
            let r = "HTTP/1.1 302 Found\r\nLocation: https://elsewhere.invalid/\r\nContent-Length: 0\r\n\r\n";
            let _ = s.write_all(r.as_bytes()).await;
            let _ = s.flush().await;
            return;
        }
        // The 101 and the first payload bytes in one write: the relay must pass on bytes that
        // arrive together with the response head.
        let r = format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {proto}\r\n\r\nhello from {node}\n"
        );
        if s.write_all(r.as_bytes()).await.is_err() || s.flush().await.is_err() {
            return;
        }
        // Echo, starting with whatever the caller sent together with its request head.
        if !rest.is_empty() && (s.write_all(&rest).await.is_err() || s.flush().await.is_err()) {
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if s.write_all(&buf[..n]).await.is_err() || s.flush().await.is_err() {
                        return;
                    }
                }
            }
        }
    }
    // Echo the request body too (Content-Length framed or chunked: raw, as received).
    let mut rest = rest;
    let want = head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let mut buf = [0u8; 4096];
    while want.is_some_and(|w| rest.len() < w) || (chunked && find(&rest, b"0\r\n\r\n").is_none()) {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
        }
    }
    let body = format!("node={node}\n{head}{}", String::from_utf8_lossy(&rest));
    let r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Raven-Leak: 1\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(r.as_bytes()).await;
    let _ = s.flush().await;
}

/// Options of one test environment.
#[derive(Default)]
pub struct Options {
    pub plain_http: bool,
    pub pod_locator: Option<HashMap<(String, String), String>>,
}

/// Two stub nodes behind one front side.
pub struct Env {
    pub front: FrontHandle,
    pub kubelets: HashMap<String, StubKubelet>,
    /// Signs callers' client certificates (the API server's kubelet-client CA) and the
    /// front's own client certificate towards kubelets.
    pub client_ca: Ca,
    /// Signs serving certificates (front and kubelets).
    pub serving_ca: Ca,
    pub metrics: Arc<Mutex<Metrics>>,
    pub auth: Arc<TableAuth>,
}

pub const NODES: [&str; 2] = ["edge-a-1", "edge-b-1"];
/// A node whose kubelet serves a certificate from a CA the front does not trust.
pub const ROGUE_NODE: &str = "edge-rogue-1";
/// A plain-HTTP port on every stub node.
pub const PLAIN_PORT: u16 = 9100;
/// A port listed as HTTPS (`proxyHTTPSPort`) besides the kubelet's, on every stub node: an
/// exporter with TLS, served with the node's kubelet serving certificate.
pub const HTTPS_PORT: u16 = 9445;
pub const APISERVER_CN: &str = "kube-apiserver-kubelet-client";

impl Env {
    pub async fn start(opts: Options) -> Self {
        let client_ca = Ca::new("kubelet-client-ca");
        let serving_ca = Ca::new("serving-ca");
        let mut kubelets = HashMap::new();
        let mut dialer = DirectDialer {
            https_ports: BTreeSet::from([HTTPS_PORT]),
            ..DirectDialer::default()
        };
        let rogue_ca = Ca::new("rogue-serving-ca");
        for node in NODES.into_iter().chain([ROGUE_NODE]) {
            let ip = loopback();
            let issuer = if node == ROGUE_NODE {
                &rogue_ca
            } else {
                &serving_ca
            };
            let serving = issuer.issue(node, &[], &[node], false, true);
            let tls = Some(((serving.0.clone(), serving.1.clone_key()), &client_ca));
            let k = StubKubelet::start(node, ip, front::KUBELET_PORT, tls).await;
            let https = StubKubelet::start(node, ip, HTTPS_PORT, Some((serving, &client_ca))).await;
            kubelets.insert(format!("{node}:{HTTPS_PORT}"), https);
            let ports = BTreeSet::from([front::KUBELET_PORT, PLAIN_PORT, HTTPS_PORT]);
            dialer
                .nodes
                .insert(node.to_owned(), (IpAddr::V4(ip), ports));
            kubelets.insert(node.to_owned(), k);
            // A plain-HTTP port beside the kubelet (node-exporter style).
            let plain = StubKubelet::start(node, ip, PLAIN_PORT, None).await;
            kubelets.insert(format!("{node}:{PLAIN_PORT}"), plain);
        }
        let auth = Arc::new(TableAuth {
            tokens: HashMap::from([
                ("prom-token".to_owned(), user("prometheus", &["monitoring"])),
                ("ops-token".to_owned(), user("ops", &[])),
                ("nobody-token".to_owned(), user("nobody", &[])),
            ]),
            grants: HashMap::from([
                ("prometheus".to_owned(), vec!["metrics"]),
                ("ops".to_owned(), vec!["proxy", "metrics", "stats", "log"]),
                (
                    APISERVER_CN.to_owned(),
                    vec![
                        "proxy", "metrics", "stats", "log", "spec", "pods", "healthz", "configz",
                    ],
                ),
            ]),
            seen: Mutex::new(Vec::new()),
        });
        let mut metrics = Metrics::new();
        let front_metrics = FrontMetrics::register(metrics.registry_mut());
        let (front_chain, front_key) = serving_ca.issue(
            "raven-proxy-server",
            &[],
            &["raven-proxy", "127.0.0.1"],
            false,
            true,
        );
        let (own_chain, own_key) = client_ca.issue(
            "tunnel-proxy-client",
            &["openyurt:yurttunnel"],
            &[],
            true,
            false,
        );
        let config = FrontConfig {
            https_addr: Some("127.0.0.1:0".parse().unwrap()),
            http_addr: opts.plain_http.then(|| "127.0.0.1:0".parse().unwrap()),
            server_tls: Some(ServerTls {
                cert: front::tls::static_cert(front_chain, front_key).unwrap(),
                client_ca: Some(vec![client_ca.der()]),
            }),
            target_tls: TargetTls {
                ports: BTreeSet::from([front::KUBELET_PORT]),
                roots: vec![serving_ca.der()],
                client_cert: Some(front::tls::static_cert(own_chain, own_key).unwrap()),
            },
            dial_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(5),
            ..FrontConfig::default()
        };
        let services = FrontServices {
            dialer: Arc::new(dialer),
            authenticator: Some(auth.clone()),
            pod_locator: opts
                .pod_locator
                .map(|t| Arc::new(TablePods(t)) as Arc<dyn PodLocator>),
            metrics: front_metrics,
        };
        let front = front::start(config, services).await.unwrap();
        Self {
            front,
            kubelets,
            client_ca,
            serving_ca,
            metrics: Arc::new(Mutex::new(metrics)),
            auth,
        }
    }

    /// The API server's kubelet-client certificate.
    pub fn apiserver_cert(&self) -> Leaf {
        self.client_ca
            .issue(APISERVER_CN, &["system:masters"], &[], true, false)
    }

    /// A TLS connection to the HTTPS listener, with `cert` as client certificate.
    pub async fn connect(&self, cert: Option<Leaf>) -> std::io::Result<TlsStream<TcpStream>> {
        let addr = self.front.https_addr.expect("HTTPS listener on");
        tls_connect(addr, &self.serving_ca, "raven-proxy", cert).await
    }

    pub fn metrics_text(&self) -> String {
        self.metrics.lock().unwrap().encode()
    }

    pub fn all_kubelet_requests(&self) -> usize {
        self.kubelets.values().map(|k| k.requests().len()).sum()
    }
}

/// A TLS connection to `addr` trusting `ca` for server name `name`, presenting `cert` (none:
/// no client certificate).
pub async fn tls_connect(
    addr: SocketAddr,
    ca: &Ca,
    name: &'static str,
    cert: Option<Leaf>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der()).expect("test CA certificate parses");
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(roots);
    let config = match cert {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .expect("test client certificate"),
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name).expect("valid server name"), tcp)
        .await
}

pub fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.to_owned(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        uid: None,
    }
}

/// Sends `raw` and reads one whole response (until the peer closes or `Content-Length` is
/// satisfied); returns (status, the full text).
pub async fn exchange<S>(s: &mut S, raw: &[u8]) -> (u16, String)
where
    S: tokio::io::AsyncRead + AsyncWrite + Unpin,
{
    s.write_all(raw).await.unwrap();
    s.flush().await.unwrap();
    read_response(s).await
}

/// Reads one response (head + `Content-Length` body, or until close).
pub async fn read_response<S>(s: &mut S) -> (u16, String)
where
    S: tokio::io::AsyncRead + Unpin,
{
    let read = async {
        let Some((head, mut rest)) = read_head(s).await else {
            return (0, String::new());
        };
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let len = head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        });
        let mut buf = [0u8; 4096];
        while len.is_none_or(|l| rest.len() < l) {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
            }
        }
        (status, format!("{head}{}", String::from_utf8_lossy(&rest)))
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("response within 10 s")
}

/// Reads until `needle` has arrived (10 s bound); returns everything read.
pub async fn read_until<S>(s: &mut S, acc: &mut Vec<u8>, needle: &str) -> bool
where
    S: tokio::io::AsyncRead + Unpin,
{
    let work = async {
        let mut buf = [0u8; 4096];
        while find(acc, needle.as_bytes()).is_none() {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => acc.extend_from_slice(&buf[..n]),
            }
        }
        true
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .unwrap_or(false)
}
