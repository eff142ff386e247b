//! Kubernetes-mode proxy certificates end to end on a real kube-apiserver 1.20.2 with the real
//! raven-controller binary signing: the daemon's CSR wiring (`raven_node::daemon::proxy_certs`,
//! what `raven-node run --proxy` starts in Kubernetes mode) requests a client certificate on
//! both nodes and a server certificate on the cloud node only; raven-controller approves and
//! signs them; the tunnel (`raven_node::proxy::tunnel::Proxy`, file-based hot reload) comes up
//! with nothing but those certificates, and a stream crosses it. Then the certificates are
//! renewed (a renewal fraction that makes them due seconds after issuance) and swapped into
//! the running proxies without a restart: the established tunnel keeps working, and fresh
//! handshakes (the server role dropped and given back) succeed with the renewed material.
//! Both nodes also run the proxy front side as the DaemonSet does (`daemon::proxy_front`,
//! serving the CSR server certificate): it listens only on the cloud node while it is the
//! proxy server, presents the current (then the renewed) server certificate, closes when the
//! role goes and reopens when it comes back; the edge node's front never listens.
//!
//! Both nodes run in this process on loopback addresses (no root, no namespace); identities
//! are token users `system:node:<name>` in `system:nodes`, bound to raven-node's ClusterRole.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use raven_api::gateway::v1beta1::Gateway;
use raven_node::daemon::proxy_certs::{CsrSettings, ProxyCsr};
use raven_node::daemon::proxy_front::{self, FrontSettings};
use raven_node::proxy::Dialer;
use raven_node::proxy::certs_kube::{self, CertKind, KubeCertConfig};
use raven_node::proxy::front::{FrontHandle, FrontMetrics};
use raven_node::proxy::tunnel::metrics::ProxyMetrics;
use raven_node::proxy::tunnel::{Proxy, ProxyConfig};
use raven_tests::csr_cluster::{CsrCluster, GatewayNode, node_client, node_user};
use raven_tests::kube::KubeApiServer;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLOUD: &str = "pk-cloud-1";
const EDGE: &str = "pk-edge-1";
/// The controller issues 1 h certificates backdated by 5 min (3900 s in all); renewing at
/// this fraction makes each one due ~4 s after it was signed.
const RENEW_FRACTION: f64 = 304.0 / 3900.0;

/// Loopback addresses of this test process (parallel test binaries never collide).
fn ips() -> (Ipv4Addr, Ipv4Addr) {
    let b = 100 + (std::process::id() % 100) as u8;
    (Ipv4Addr::new(127, b, 7, 1), Ipv4Addr::new(127, b, 7, 2))
}

fn free_port(ip: Ipv4Addr) -> u16 {
    free_port_at(IpAddr::V4(ip))
}

fn free_port_at(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A TCP echo server (the "kubelet" port on the edge node), threads live until exit.
fn echo(ip: Ipv4Addr) -> u16 {
    let l = TcpListener::bind((ip, 0)).expect("echo listen");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn gateways(
    cloud_ip: Ipv4Addr,
    edge_ip: Ipv4Addr,
    tunnel: u16,
    port: u16,
    serve: bool,
) -> Vec<Gateway> {
    let ep = json!({"nodeName": CLOUD, "type": "proxy", "port": tunnel, "publicIP": cloud_ip.to_string()});
    let edge_ep = json!({"nodeName": EDGE, "type": "proxy", "port": tunnel});
    let ports = port.to_string();
    let active = if serve { json!([ep]) } else { json!([]) };
    [
        json!({"apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
            "metadata": {"name": "gw-pk-cloud"},
            "spec": {"exposeType": "PublicIP",
                     "proxyConfig": {"Replicas": 1, "proxyHTTPPort": ports},
                     "endpoints": [ep]},
            "status": {"nodes": [{"nodeName": CLOUD, "privateIP": cloud_ip.to_string(), "subnets": []}],
                       "activeEndpoints": active}}),
        json!({"apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
            "metadata": {"name": "gw-pk-edge"},
            "spec": {"proxyConfig": {"Replicas": 1, "proxyHTTPPort": ports},
                     "endpoints": [edge_ep]},
            "status": {"nodes": [{"nodeName": EDGE, "privateIP": edge_ip.to_string(), "subnets": []}],
                       "activeEndpoints": [edge_ep]}}),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).expect("gateway"))
    .collect()
}

/// One node: its proxy (own runtime), its certificate requester and its front side on that
/// runtime.
struct Node {
    front: FrontHandle,
    front_addr: SocketAddr,
    proxy: Proxy,
    csr: ProxyCsr,
    metrics: ProxyMetrics,
    settings: CsrSettings,
    name: &'static str,
    ip: IpAddr,
}

impl Node {
    fn start(api: &KubeApiServer, name: &'static str, dir: &Path, listen: SocketAddr) -> Self {
        let mut settings = CsrSettings::new(dir.join(name));
        settings.renew_fraction = RENEW_FRACTION;
        settings.wait_timeout = Duration::from_secs(30);
        let mut pc = ProxyConfig::new(name, settings.client_paths(name));
        pc.server_certs = Some(settings.server_paths(name));
        pc.listen = listen;
        pc.timing.cert_reload = Duration::from_millis(200);
        pc.timing.backoff_initial = Duration::from_millis(200);
        pc.timing.backoff_cap = Duration::from_secs(1);
        let metrics = ProxyMetrics::default();
        let proxy = Proxy::start(pc, metrics.clone()).expect("proxy starts without certificates");
        let rt = proxy.handle().expect("runtime");
        let user = node_user(name);
        let kube = rt.block_on(node_client(api, &user.name, &user.token));
        let csr = ProxyCsr::start(rt.clone(), kube, name, settings.clone());
        // What `raven-node run --proxy --proxy-front` configures in CSR mode.
        let server = settings.server_paths(name);
        let front_addr = SocketAddr::new(listen.ip(), free_port_at(listen.ip()));
        let front = proxy_front::start(
            &FrontSettings {
                https: Some(front_addr),
                cert: Some(server.cert),
                key: Some(server.key),
                client_ca: Some(server.ca.clone()),
                // Any roots: no kubelet is dialed here (files as the DaemonSet mounts them).
                kubelet_ca: Some(server.ca),
                ..Default::default()
            },
            &rt,
            proxy.dialer(),
            proxy.server_role(),
            None,
            FrontMetrics::default(),
        )
        .expect("front starts (it listens only as a server)");
        Self {
            front,
            front_addr,
            proxy,
            csr,
            metrics,
            settings,
            name,
            ip: listen.ip(),
        }
    }

    fn update(&self, gws: &[Gateway]) {
        self.proxy.update(gws);
        self.csr.update(gws);
    }

    fn cert(&self, kind: CertKind) -> KubeCertConfig {
        let mut c = KubeCertConfig::new(self.name, kind, &self.settings.dir);
        c.renew_fraction = RENEW_FRACTION;
        // What the server certificate must name (public IP = private IP here).
        c.dns_names = vec![self.name.to_owned()];
        c.ips = vec![self.ip];
        c
    }

    /// The leaf certificate the front presents, verified against the server CA for the node
    /// name; `Err` when it does not listen or the handshake fails.
    fn front_presents(&self, rt: &tokio::runtime::Runtime) -> Result<Vec<u8>, String> {
        use rustls::pki_types::pem::PemObject;
        let tcp = rt
            .block_on(tokio::net::TcpStream::connect(self.front_addr))
            .map_err(|e| format!("connect {}: {e}", self.front_addr))?;
        let ca = self.settings.server_paths(self.name).ca;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(&ca).map_err(|e| e.to_string())? {
            roots
                .add(c.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(self.name.to_owned())
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            tls.get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec())
                .ok_or_else(|| "no certificate".to_owned())
        })
    }

    /// The leaf of the current server certificate file.
    fn server_leaf(&self) -> Option<Vec<u8>> {
        use rustls::pki_types::pem::PemObject;
        let pair = self.cert(CertKind::Server).pair_path();
        rustls::pki_types::CertificateDer::pem_file_iter(pair)
            .ok()?
            .next()?
            .ok()
            .map(|c| c.as_ref().to_vec())
    }

    /// Waits until the front presents the current server certificate file's leaf.
    fn wait_front_serving(&self, rt: &tokio::runtime::Runtime, what: &str) {
        wait(what, Duration::from_secs(30), || {
            let presented = self.front_presents(rt)?;
            if Some(&presented) == self.server_leaf().as_ref() {
                Ok(())
            } else {
                Err("presents another certificate than the current file's".to_owned())
            }
        });
    }

    fn serial(&self, kind: CertKind) -> Option<String> {
        certs_kube::current(&self.cert(kind)).map(|i| i.serial)
    }

    fn rotations(&self) -> u64 {
        self.metrics
            .cert_reloads
            .get_or_create(&vec![("result", "rotated".to_owned())])
            .get()
    }
}

/// Dials `EDGE:port` through the cloud node's dialer and checks an echo; `Err` says why.
fn echo_through(rt: &tokio::runtime::Runtime, cloud: &Node, port: u16) -> Result<(), String> {
    let dialer = cloud.proxy.dialer();
    rt.block_on(async {
        let mut s = tokio::time::timeout(Duration::from_secs(5), dialer.dial(EDGE, port))
            .await
            .map_err(|_| "dial timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        s.write_all(b"ping through the tunnel\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 24];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
            .await
            .map_err(|_| "echo timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if buf == b"ping through the tunnel\n" {
            Ok(())
        } else {
            Err(format!("wrong echo {:?}", String::from_utf8_lossy(&buf)))
        }
    })
}

fn wait<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("timed out waiting for {what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[test]
fn csr_issued_certificates_bring_the_tunnel_up_and_rotate_without_restart() {
    let (cloud_ip, edge_ip) = ips();
    // The server certificate's IP SANs (public IP = private IP here) must be node addresses
    // or Gateway public IPs for the controller to sign them.
    let cluster = CsrCluster::start(&[
        GatewayNode {
            name: CLOUD,
            ip: cloud_ip.to_string(),
            gateway: "gw-pk-cloud",
        },
        GatewayNode {
            name: EDGE,
            ip: edge_ip.to_string(),
            gateway: "gw-pk-edge",
        },
    ])
    .unwrap_or_else(|e| panic!("cannot start the CSR test cluster: {e}"));
    let (api, controller) = (&cluster.api, &cluster.controller);

    let dir = tempfile::tempdir().expect("tempdir");
    let tunnel_port = free_port(cloud_ip);
    let port = echo(edge_ip);
    // The controller signs server certificates for elected proxy servers only: the API has
    // the Gateways the nodes are fed (the nodes' copies then drop and regain the role).
    let ports = port.to_string();
    cluster
        .proxy_gateway(
            "gw-pk-cloud",
            CLOUD,
            Some(&cloud_ip.to_string()),
            tunnel_port,
            Some(&ports),
        )
        .and_then(|()| cluster.proxy_gateway("gw-pk-edge", EDGE, None, tunnel_port, Some(&ports)))
        .unwrap_or_else(|e| panic!("{e}"));
    let cloud = Node::start(
        api,
        CLOUD,
        dir.path(),
        SocketAddr::new(IpAddr::V4(cloud_ip), tunnel_port),
    );
    let edge = Node::start(
        api,
        EDGE,
        dir.path(),
        SocketAddr::new(IpAddr::V4(edge_ip), 0),
    );
    let gws = gateways(cloud_ip, edge_ip, tunnel_port, port, true);
    cloud.update(&gws);
    edge.update(&gws);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let logs = || format!("--- raven-controller log ---\n{}", controller.log_text());

    // Requested, approved, signed; the tunnel comes up on those certificates alone.
    let took = Instant::now();
    wait(
        "the tunnel on CSR-issued certificates",
        Duration::from_secs(60),
        || echo_through(&rt, &cloud, port).map_err(|e| format!("{e}\n{}", logs())),
    );
    eprintln!("tunnel up on CSR certificates after {:?}", took.elapsed());
    let first_client = edge
        .serial(CertKind::Client)
        .expect("edge client certificate");
    let first_server = cloud
        .serial(CertKind::Server)
        .expect("cloud server certificate");
    assert!(
        !edge.cert(CertKind::Server).pair_path().exists(),
        "an edge node never asks for a server certificate"
    );
    let pem = std::fs::read_to_string(edge.cert(CertKind::Client).pair_path()).expect("pair");
    assert!(pem.contains("BEGIN CERTIFICATE") && pem.contains("BEGIN PRIVATE KEY"));
    // The front side: the server's serves the CSR server certificate; the edge's never listens.
    cloud.wait_front_serving(&rt, "the cloud front to serve the CSR server certificate");
    let edge_front = edge
        .front_presents(&rt)
        .expect_err("the edge is no proxy server");
    assert!(edge_front.contains("connect"), "{edge_front}");

    // Renewal: new certificates (new keys) land in the files and the running proxies swap
    // them in; nothing restarts.
    wait("renewed certificates", Duration::from_secs(40), || {
        let c = edge.serial(CertKind::Client);
        let s = cloud.serial(CertKind::Server);
        if c.as_ref() != Some(&first_client)
            && s.as_ref() != Some(&first_server)
            && c.is_some()
            && s.is_some()
        {
            Ok(())
        } else {
            Err(format!("client {c:?} server {s:?}\n{}", logs()))
        }
    });
    wait(
        "the proxies to reload them",
        Duration::from_secs(10),
        || {
            if edge.rotations() >= 1 && cloud.rotations() >= 1 {
                Ok(())
            } else {
                Err(format!(
                    "rotations edge {} cloud {}",
                    edge.rotations(),
                    cloud.rotations()
                ))
            }
        },
    );
    // The tunnel established before the renewal still carries streams.
    echo_through(&rt, &cloud, port).unwrap_or_else(|e| panic!("after renewal: {e}"));
    cloud.wait_front_serving(&rt, "the cloud front to serve the renewed certificate");

    // Fresh handshakes with the renewed material: the cloud stops serving (listener and
    // tunnels dropped), then serves again; the edge reconnects.
    let no_server = gateways(cloud_ip, edge_ip, tunnel_port, port, false);
    cloud.update(&no_server);
    edge.update(&no_server);
    wait(
        "the tunnel to go away",
        Duration::from_secs(10),
        || match echo_through(&rt, &cloud, port) {
            Ok(()) => Err("still up".to_owned()),
            Err(_) => Ok(()),
        },
    );
    wait(
        "the cloud front to close with the role",
        Duration::from_secs(10),
        || match cloud.front_presents(&rt) {
            Err(e) if e.contains("connect") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    cloud.update(&gws);
    edge.update(&gws);
    cloud.wait_front_serving(&rt, "the cloud front to reopen with the role");
    wait(
        "the tunnel on renewed certificates",
        Duration::from_secs(30),
        || echo_through(&rt, &cloud, port),
    );
    let now_client = edge.serial(CertKind::Client).expect("client");
    assert_ne!(
        now_client, first_client,
        "the reconnect used a renewed certificate"
    );
    let refused_tls = cloud
        .metrics
        .tunnels_refused
        .get_or_create(&vec![("reason", "tls".to_owned())])
        .get();
    assert_eq!(refused_tls, 0, "no handshake failed across the renewals");

    // Every certificate came through the CSR API and was signed by raven-controller.
    let csrs = api
        .get_json("/apis/certificates.k8s.io/v1/certificatesigningrequests")
        .expect("list CSRs")
        .expect("CSR list");
    let items = csrs["items"].as_array().cloned().unwrap_or_default();
    let signed = items
        .iter()
        .filter(|c| {
            c["status"]["certificate"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        })
        .count();
    assert!(
        signed >= 4,
        "expected ≥ 4 signed CSRs (2 issued + 2 renewed), got {signed}"
    );
    assert!(
        items.iter().all(|c| {
            let signer = c["spec"]["signerName"].as_str().unwrap_or_default();
            let user = c["spec"]["username"].as_str().unwrap_or_default();
            let server = signer == "raven.openyurt.io/proxy-server";
            signer.starts_with("raven.openyurt.io/proxy-")
                && (!server || user == format!("system:node:{CLOUD}"))
        }),
        "{csrs}"
    );
    assert!(
        edge.front_presents(&rt).is_err(),
        "the edge front never listened"
    );
    drop(edge.front);
    drop(cloud.front);
    drop(edge.proxy);
    drop(cloud.proxy);
}
