//! The proxy tunnel end to end in network namespaces (see `proxy_support` for the topology):
//! nodes with the same IP in two domains, a 100 MB transfer checked by hash, a stalled stream
//! that does not slow the others, refused agents (no certificate, a certificate from another
//! CA, a node that is not an active endpoint, a CN naming no node), the cap on handshakes in
//! progress, an impostor server refused by the edge, seat loss, the edge's
//! refusal to relay outside its domain, and a tunnel cut and restored.
//!
//! Must run as root; otherwise every test fails and says why.

mod proxy_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use proxy_support::*;
use raven_node::proxy::tunnel::TunnelDialer;
use raven_node::proxy::tunnel::server::MAX_HANDSHAKES;
use raven_node::proxy::tunnel::view::Domain;
use raven_node::proxy::{DialError, Dialer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn who(d: &TunnelDialer, node: &str) -> Result<String, DialError> {
    let mut s = d.dial(node, STUB_PORT).await?;
    s.write_all(b"who\n").await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    Ok(out.trim().to_owned())
}

async fn get(d: &TunnelDialer, node: &str, n: u64) -> (u64, u64) {
    let mut s = d.dial(node, STUB_PORT).await.expect("dial");
    s.write_all(format!("get {n}\n").as_bytes())
        .await
        .expect("write");
    hash_all(&mut s).await.expect("read")
}

#[test]
fn same_ip_nodes_hash_checked_transfer_and_routing_errors() {
    let lab = Lab::build();
    let d = lab.cloud_proxy.dialer();
    let n = lab.cloud.block_on(move || async move {
        // Same IP 192.168.1.11 in both edges: the name picks the domain.
        assert_eq!(who(&d, "edge-a-2").await.expect("edge-a-2"), "edge-a-2");
        assert_eq!(who(&d, "edge-b-2").await.expect("edge-b-2"), "edge-b-2");
        // The server's own domain is dialed directly.
        assert_eq!(who(&d, "cloud-1").await.expect("cloud-1"), "cloud-1");
        // 100 MB through the tunnel, checked by hash.
        let n: u64 = std::env::var("PROXY_TEST_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000_000);
        let started = Instant::now();
        let (got, hash) = get(&d, "edge-b-2", n).await;
        eprintln!("100 MB through the tunnel in {:?}", started.elapsed());
        assert_eq!(got, n);
        assert_eq!(hash, expected_hash(n));
        // Echo (upload and download on one stream, half-close passed on).
        let mut s = d.dial("edge-a-2", STUB_PORT).await.expect("dial");
        s.write_all(b"echo\nhello through the tunnel").await.expect("write");
        s.shutdown().await.expect("half-close");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        assert_eq!(out, "hello through the tunnel");
        // Refusals.
        assert!(matches!(d.dial("edge-a-2", 22).await, Err(DialError::PortNotAllowed { port: 22, .. })));
        assert!(matches!(d.dial("nobody", STUB_PORT).await, Err(DialError::UnknownNode(n)) if n == "nobody"));
        // Allowed port, nothing listening: the edge's dial fails and says so (on the first
        // read of the early stream).
        match dial_answered(&d, "edge-a-2", 10255).await {
            Err(DialError::Failed { reason, .. }) => assert!(reason.contains("refused"), "{reason}"),
            other => panic!("expected a failed dial, got {:?}", other.map(|_| ())),
        }
        n
    });
    let text = {
        let mut r = prometheus_client::registry::Registry::default();
        lab.cloud_metrics.register(&mut r);
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &r).expect("encode");
        s
    };
    for want in [
        "streams_total{gateway=\"gw-edge-b\",route=\"tunnel\"} 2",
        "streams_total{gateway=\"gw-cloud\",route=\"direct\"} 1",
        "dial_errors_total{gateway=\"gw-edge-a\",reason=\"port_not_allowed\"} 1",
        "dial_errors_total{gateway=\"unknown\",reason=\"unknown_node\"} 1",
        "tunnels{peer=\"gw-edge-a\"} 1",
        "streams_open{gateway=\"gw-edge-b\"} 0",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    let rx = lab
        .cloud_metrics
        .bytes
        .get_or_create(&vec![
            ("gateway", "gw-edge-b".to_owned()),
            ("direction", "rx".to_owned()),
        ])
        .get();
    assert!(rx >= n, "bytes from edge-b counted: {rx} < {n}");
}

/// Stalled streams per tunnel in [`stalled_streams_do_not_slow_the_others`].
const STALLED_PER_TUNNEL: usize = 40;

#[test]
fn stalled_streams_do_not_slow_the_others() {
    let lab = Lab::build();
    let d = lab.cloud_proxy.dialer();
    lab.cloud.block_on(move || async move {
        let round = |d: Arc<TunnelDialer>| async move {
            let started = Instant::now();
            let tasks: Vec<_> = (0..16)
                .map(|i| {
                    let d = d.clone();
                    let node = if i % 2 == 0 { "edge-a-2" } else { "edge-b-2" };
                    tokio::spawn(async move { get(&d, node, 4 << 20).await })
                })
                .collect();
            for t in tasks {
                let (n, h) = t.await.expect("task");
                assert_eq!((n, h), (4 << 20, expected_hash(4 << 20)));
            }
            started.elapsed()
        };
        let baseline = round(d.clone()).await;
        // Streams whose readers never read (paused `logs -f`, port-forwards to apps that stopped
        // reading) on each tunnel: more of them than a connection window of 32 stream
        // windows would hold, so a connection window credited back only on consumption
        // would freeze every other stream of the tunnel.
        let mut stalled = Vec::new();
        for node in ["edge-a-2", "edge-b-2"] {
            for _ in 0..STALLED_PER_TUNNEL {
                let mut s = d.dial(node, STUB_PORT).await.expect("dial");
                s.write_all(b"get 1000000000\n").await.expect("write");
                stalled.push(s);
            }
        }
        tokio::time::sleep(Duration::from_millis(1500)).await; // let their windows fill
        let with_stall = tokio::time::timeout(Duration::from_secs(60), round(d.clone()))
            .await
            .expect("streams next to a stalled one must complete (no head-of-line blocking)");
        eprintln!("16 × 4 MiB: {baseline:?} alone, {with_stall:?} next to stalled streams");
        assert!(
            with_stall <= baseline * 3 + Duration::from_secs(2),
            "slowed by the stalled streams: {baseline:?} → {with_stall:?}"
        );
        // The stalled streams are intact: they resume where they stopped.
        for mut s in stalled {
            let mut buf = vec![0u8; 1 << 20];
            s.read_exact(&mut buf)
                .await
                .expect("stalled stream resumes");
            assert_eq!(&buf[..], &block()[..1 << 20]);
        }
    });
}

/// A TLS client towards the tunnel port; `Ok(true)` when the server kept the connection
/// (sent nothing and did not close within 2 s), `Ok(false)`/`Err` when it refused.
async fn try_agent(cfg: Option<Arc<rustls::ClientConfig>>) -> bool {
    let tcp = tokio::net::TcpStream::connect((SERVER_IP, 10262))
        .await
        .expect("TCP connect");
    let cfg = cfg.expect("config");
    let name = rustls_pki_types::ServerName::IpAddress(
        SERVER_IP.parse::<std::net::IpAddr>().expect("ip").into(),
    );
    let Ok(mut tls) = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
    else {
        return false;
    };
    let mut buf = [0u8; 64];
    // An accepted agent gets the server's HTTP/2 preface; a refused one an alert or EOF.
    match tokio::time::timeout(Duration::from_secs(2), tls.read(&mut buf)).await {
        Ok(Ok(n)) => n > 0,
        Ok(Err(_)) => false,
        Err(_) => true,
    }
}

fn client_config(pki: &Pki, cn: Option<&str>, server_ca: &Pki) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_ca.ca.der().clone()).expect("root");
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut cfg = match cn {
        None => b.with_no_client_auth(),
        Some(cn) => {
            use rustls_pki_types::pem::PemObject;
            let (c, k) = pki.issue(cn, &[]);
            let chain = rustls_pki_types::CertificateDer::pem_slice_iter(c.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("pem");
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(k.as_bytes()).expect("key");
            b.with_client_auth_cert(chain, key).expect("client cert")
        }
    };
    cfg.alpn_protocols = vec![b"raven-tunnel/1".to_vec()];
    Arc::new(cfg)
}

#[test]
fn agents_are_authenticated_and_bound_to_their_seat() {
    let lab = Lab::build();
    let rogue = Pki::new();
    let cases = vec![
        (
            "valid edge-a-1 (control: accepted)",
            client_config(&lab.pki, Some("system:node:edge-a-1"), &lab.pki),
            true,
        ),
        (
            "no client certificate",
            client_config(&lab.pki, None, &lab.pki),
            false,
        ),
        (
            "edge-a-1 signed by another CA",
            client_config(&rogue, Some("system:node:edge-a-1"), &lab.pki),
            false,
        ),
        (
            "edge-a-2: not an active endpoint",
            client_config(&lab.pki, Some("system:node:edge-a-2"), &lab.pki),
            false,
        ),
        (
            "cloud-2: the server's own domain",
            client_config(&lab.pki, Some("system:node:cloud-2"), &lab.pki),
            false,
        ),
        (
            "a CN naming no node",
            client_config(&lab.pki, Some("edge-a-1"), &lab.pki),
            false,
        ),
    ];
    let results = lab.cloud.block_on(move || async move {
        let mut out = Vec::new();
        for (what, cfg, want) in cases {
            out.push((what, try_agent(Some(cfg)).await, want));
        }
        out
    });
    for (what, got, want) in results {
        assert_eq!(got, want, "{what}");
    }
    let snap = lab.cloud_proxy.tunnels().snapshot();
    assert!(
        !snap.iter().any(|(_, n)| n == "edge-a-2" || n == "cloud-2"),
        "refused agents must not be seated: {snap:?}"
    );
    let refused = |reason: &str| {
        lab.cloud_metrics
            .tunnels_refused
            .get_or_create(&vec![("reason", reason.to_owned())])
            .get()
    };
    assert!(
        refused("tls") >= 2,
        "no-cert and rogue-CA agents fail the TLS handshake"
    );
    assert_eq!(refused("seat"), 2);
    assert_eq!(refused("no_identity"), 1);

    // Seat loss: edge-a-2 becomes gw-edge-a's active endpoint on the server's view; the
    // tunnel of edge-a-1 is dropped at once, and dials to edge-a report no tunnel.
    lab.cloud_proxy.update(&gateways("edge-a-2"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab
        .cloud_proxy
        .tunnels()
        .count(&Domain::Gateway("gw-edge-a".into()))
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "edge-a-1 kept its tunnel after losing its seat"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let d = lab.cloud_proxy.dialer();
    let r = lab
        .cloud
        .block_on(move || async move { d.dial("edge-a-2", STUB_PORT).await.map(|_| ()) });
    assert!(
        matches!(r, Err(DialError::NoTunnel { ref gateway, .. }) if gateway == "gw-edge-a"),
        "{r:?}"
    );
    // The seat comes back: edge-a-1 reconnects by itself.
    lab.cloud_proxy.update(&gateways("edge-a-1"));
    lab.wait_tunnels(2, Duration::from_secs(15));
}

/// Unauthenticated connections that never finish their handshake are capped: beyond
/// `MAX_HANDSHAKES` the server closes new ones at once (bounded memory on an internet-facing
/// port), and agents get in again as soon as the idle ones are gone.
#[test]
fn handshakes_in_progress_are_capped() {
    let lab = Lab::build();
    let valid = client_config(&lab.pki, Some("system:node:edge-a-1"), &lab.pki);
    let (extra_closed, agent_while_full, agent_after) = lab.cloud.block_on(move || async move {
        let mut idle = Vec::new();
        for _ in 0..MAX_HANDSHAKES {
            idle.push(
                tokio::net::TcpStream::connect((SERVER_IP, 10262))
                    .await
                    .expect("TCP connect"),
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await; // all accepted
        let mut extra = tokio::net::TcpStream::connect((SERVER_IP, 10262))
            .await
            .expect("TCP connect");
        let mut buf = [0u8; 1];
        let closed = matches!(
            tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        );
        let while_full = try_agent(Some(valid.clone())).await;
        drop(idle);
        tokio::time::sleep(Duration::from_millis(300)).await; // their permits return
        let after = try_agent(Some(valid)).await;
        (closed, while_full, after)
    });
    assert!(
        extra_closed,
        "a connection beyond the cap must be closed at once"
    );
    assert!(!agent_while_full, "no handshake is started beyond the cap");
    assert!(
        agent_after,
        "agents are accepted again once the idle connections are gone"
    );
    let busy = lab
        .cloud_metrics
        .tunnels_refused
        .get_or_create(&vec![("reason", "busy".to_owned())])
        .get();
    assert!(busy >= 2, "refusals counted as busy: {busy}");
}

/// An edge accepts only the server the Gateways name at the address it dials. A TLS server
/// with a certificate from the right CA and with the right IP, but naming another node (what a
/// node could get signed for its own name with an IP its Gateway claims), is refused before
/// any stream; the same server with the endpoint's own name is accepted.
#[test]
fn edges_refuse_a_server_certificate_naming_another_node() {
    const PORT: u16 = 10999;
    let lab = Lab::build();
    let mut gws = serde_json::to_value(gateways("edge-a-1")).expect("gateways serialize");
    for gw in gws.as_array_mut().expect("array") {
        if gw["metadata"]["name"] == "gw-cloud" {
            gw["spec"]["endpoints"][0]["port"] = PORT.into();
            gw["status"]["activeEndpoints"][0]["port"] = PORT.into();
        }
    }
    let gws: Vec<raven_api::gateway::v1beta1::Gateway> =
        serde_json::from_value(gws).expect("gateways deserialize");
    let mut outcomes = Vec::new();
    for cn in ["system:node:edge-b-1", "system:node:cloud-1"] {
        let (chain, key) = lab.pki.issue(cn, &[SERVER_IP]);
        let handshakes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = handshakes.clone();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let server = lab.cloud.spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(impostor(PORT, chain, key, seen, ready_tx))
        });
        // Listening before the edge dials: a refused TCP connect would count as an error too.
        ready
            .recv_timeout(Duration::from_secs(5))
            .expect("impostor listening");
        let metrics = raven_node::proxy::tunnel::metrics::ProxyMetrics::default();
        let edge = start_proxy(
            &lab.ea1,
            "edge-a-1",
            raven_node::proxy::tunnel::certs::CertPaths::in_dir(&lab.cert_dir("edge-a-1")),
            metrics.clone(),
            gws.clone(),
        );
        let count = |result: &str| {
            metrics
                .tunnel_connects
                .get_or_create(&vec![("result", result.to_owned())])
                .get()
        };
        // Done when the edge accepted the server, or refused it after a completed handshake.
        let tls_done = || handshakes.load(std::sync::atomic::Ordering::Relaxed) >= 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        while count("ok") == 0 && !(tls_done() && count("error") >= 1) {
            assert!(
                Instant::now() < deadline,
                "{cn}: the edge never finished a connect"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        outcomes.push((
            cn,
            count("ok"),
            count("error"),
            handshakes.load(std::sync::atomic::Ordering::Relaxed),
        ));
        drop(edge);
        server.join().expect("impostor thread");
    }
    let (cn, ok, err, tls) = outcomes[0];
    assert!(
        tls >= 1,
        "{cn}: the TLS handshake itself must succeed (right CA, right IP)"
    );
    assert_eq!(
        (ok, err >= 1),
        (0, true),
        "{cn}: refused by the identity check"
    );
    let (cn, ok, _, _) = outcomes[1];
    assert!(ok >= 1, "{cn}: the endpoint's own certificate is accepted");
}

/// A TLS server on `SERVER_IP:port` with `chain`/`key` (no client authentication) that counts
/// completed handshakes and holds each connection a while; says `ready` once listening and
/// stops after 3 s.
async fn impostor(
    port: u16,
    chain: String,
    key: String,
    handshakes: Arc<std::sync::atomic::AtomicU64>,
    ready: std::sync::mpsc::Sender<()>,
) {
    use rustls_pki_types::pem::PemObject;
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("pem");
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server cert");
    cfg.alpn_protocols = vec![b"raven-tunnel/1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind((SERVER_IP, port))
        .await
        .expect("impostor binds");
    let _ = ready.send(());
    let serve = async {
        loop {
            let (tcp, _) = listener.accept().await.expect("accept");
            let acceptor = acceptor.clone();
            let handshakes = handshakes.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    handshakes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    drop(tls);
                }
            });
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), serve).await;
}

#[test]
fn the_edge_never_relays_outside_its_domain() {
    let lab = Lab::build();
    // A server view that lies: edge-b-2 listed in gw-edge-a. The server routes edge-b-2 over
    // edge-a's tunnel; edge-a (whose own view is right) must refuse.
    let mut lying = gateways("edge-a-1");
    let mut status = lying[1].status.clone().expect("status");
    let mut b2 = status.nodes[1].clone();
    b2.node_name = "edge-b-2".into();
    status.nodes.push(b2);
    lying[1].status = Some(status);
    lying[2]
        .status
        .as_mut()
        .expect("status")
        .nodes
        .retain(|n| n.node_name != "edge-b-2");
    lab.cloud_proxy.update(&lying);
    let d = lab.cloud_proxy.dialer();
    let r = lab
        .cloud
        .block_on(move || async move { dial_answered(&d, "edge-b-2", STUB_PORT).await });
    match r {
        Err(DialError::Failed { reason, .. }) => {
            assert!(reason.contains("not in this tunnel's domain"), "{reason}")
        }
        other => panic!("the edge must refuse a foreign node, got {other:?}"),
    }
}

/// Dials and waits for the far end's answer: an early stream reports a refused dial on its
/// first read, which is then the same `DialError` a dial answered up front returns.
async fn dial_answered(
    d: &raven_node::proxy::tunnel::TunnelDialer,
    node: &str,
    port: u16,
) -> Result<(), DialError> {
    let mut s = d.dial(node, port).await?;
    s.write_all(b"who\n").await.ok();
    let mut byte = [0u8; 1];
    match s.read(&mut byte).await {
        Ok(_) => Ok(()),
        Err(e) => Err(DialError::from_io(e).unwrap_or_else(|e| panic!("not a dial error: {e}"))),
    }
}

#[test]
fn tunnel_cut_and_restored() {
    let lab = Lab::build();
    let d = lab.cloud_proxy.dialer();
    let d2 = d.clone();
    assert_eq!(
        lab.cloud
            .block_on(move || async move { who(&d2, "edge-a-2").await })
            .expect("before the cut"),
        "edge-a-2"
    );
    // Cut edge-a's uplink: both ends notice through keepalives.
    lab.cloud.ip(&["link", "set", "to-a", "down"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab
        .cloud_proxy
        .tunnels()
        .count(&Domain::Gateway("gw-edge-a".into()))
        > 0
    {
        assert!(Instant::now() < deadline, "the server kept a dead tunnel");
        std::thread::sleep(Duration::from_millis(50));
    }
    let d2 = d.clone();
    let r = lab
        .cloud
        .block_on(move || async move { who(&d2, "edge-a-2").await });
    assert!(matches!(r, Err(DialError::NoTunnel { .. })), "{r:?}");
    // edge-b is unaffected.
    let d2 = d.clone();
    assert_eq!(
        lab.cloud
            .block_on(move || async move { who(&d2, "edge-b-2").await })
            .expect("edge-b"),
        "edge-b-2"
    );
    // Restore: the client reconnects (backoff capped at 2 s in this lab) and dials succeed.
    lab.cloud.ip(&["link", "set", "to-a", "up"]);
    lab.wait_tunnels(2, Duration::from_secs(20));
    let d2 = d.clone();
    assert_eq!(
        lab.cloud
            .block_on(move || async move { who(&d2, "edge-a-2").await })
            .expect("after the restore"),
        "edge-a-2"
    );
}
