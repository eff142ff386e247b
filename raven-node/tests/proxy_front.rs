//! The proxy front side over real sockets: TLS callers (the API server's client certificate,
//! bearer tokens, no credentials, a foreign CA) → the front → a direct dialer → stub kubelets
//! over HTTPS that require the front's own client certificate.
//!
//! Covered: a `logs -f`-style chunked stream where each chunk reaches the caller before the
//! next one is sent; exec over a WebSocket upgrade with bidirectional echo, including bytes
//! sent together with the request head and bytes sent by the kubelet together with its 101;
//! port-forward (routed by Pod, raven#178); a metrics scrape with `?nodeName=`; what the
//! kubelet sees (headers stripped, token removed); and the refusals.

mod front_support;

use std::collections::HashMap;

use front_support::{
    Env, HTTPS_PORT, NODES, Options, PLAIN_PORT, ROGUE_NODE, exchange, read_head, read_response,
    read_until,
};
use tokio::io::AsyncWriteExt;

fn get(path: &str, host: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_each_chunk_before_the_next_is_sent() {
    let env = Env::start(Options::default()).await;
    let node = NODES[0];
    let mut s = env.connect(Some(env.apiserver_cert())).await.unwrap();
    s.write_all(&get(
        "/containerLogs/default/web/app?follow=true",
        &format!("{node}:10250"),
        "",
    ))
    .await
    .unwrap();
    let (head, mut acc) =
        tokio::time::timeout(std::time::Duration::from_secs(10), read_head(&mut s))
            .await
            .unwrap()
            .expect("response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let feed = &env.kubelets[node].log_chunks;
    for i in 0..5 {
        // The stub only writes chunk i now; the caller must see it before chunk i+1 exists.
        let line = format!("line {i} of the log\n");
        feed.send(Some(line.clone())).unwrap();
        assert!(
            read_until(&mut s, &mut acc, &line).await,
            "chunk {i} did not arrive while the stream was open; got {:?}",
            String::from_utf8_lossy(&acc)
        );
    }
    feed.send(None).unwrap();
    assert!(
        read_until(&mut s, &mut acc, "0\r\n\r\n").await,
        "end of the chunked body"
    );
    let text = env.metrics_text();
    assert!(
        text.contains(
            "raven_node_proxy_front_requests_total{class=\"2xx\",route=\"kubelet_path\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_websocket_upgrade_echoes_both_ways_including_early_bytes() {
    let env = Env::start(Options::default()).await;
    let node = NODES[1];
    let mut s = env.connect(Some(env.apiserver_cert())).await.unwrap();
    // The request head and the first payload bytes in one write.
    let mut raw = get(
        "/exec/default/web/app?command=sh&stdin=true",
        &format!("{node}:10250"),
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Raven-Node: edge-a-1\r\n",
    );
    raw.extend_from_slice(b"early-bytes;");
    s.write_all(&raw).await.unwrap();
    let (head, mut acc) =
        tokio::time::timeout(std::time::Duration::from_secs(10), read_head(&mut s))
            .await
            .unwrap()
            .expect("response head");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    // Bytes the kubelet wrote together with its 101, then the echo of the early bytes.
    assert!(read_until(&mut s, &mut acc, &format!("hello from {node}\n")).await);
    assert!(
        read_until(&mut s, &mut acc, "early-bytes;").await,
        "{acc:?}"
    );
    for i in 0..3 {
        let msg = format!("round {i};");
        s.write_all(msg.as_bytes()).await.unwrap();
        assert!(read_until(&mut s, &mut acc, &msg).await, "echo {i}");
    }
    drop(s);
    let seen = env.kubelets[node].requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let lower = seen[0].to_ascii_lowercase();
    assert!(
        !lower.contains("x-raven-node"),
        "internal header leaked: {}",
        seen[0]
    );
    assert!(
        lower.contains(&format!("host: {node}:10250")),
        "{}",
        seen[0]
    );
    assert!(lower.contains("sec-websocket-key:"), "{}", seen[0]);
    let text = env.metrics_text();
    assert!(
        text.contains("raven_node_proxy_front_upgrades_total 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_is_routed_by_pod_even_with_the_apiservers_host() {
    let pods = HashMap::from([(("default".to_owned(), "db".to_owned()), NODES[0].to_owned())]);
    let env = Env::start(Options {
        pod_locator: Some(pods),
        ..Options::default()
    })
    .await;
    let mut s = env.connect(Some(env.apiserver_cert())).await.unwrap();
    s.write_all(&get(
        "/portForward/default/db",
        "kube-apiserver:6443",
        "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n",
    ))
    .await
    .unwrap();
    let (head, mut acc) =
        tokio::time::timeout(std::time::Duration::from_secs(10), read_head(&mut s))
            .await
            .unwrap()
            .expect("response head");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(read_until(&mut s, &mut acc, &format!("hello from {}\n", NODES[0])).await);
    s.write_all(b"spdy-frame").await.unwrap();
    assert!(read_until(&mut s, &mut acc, "spdy-frame").await);
    assert_eq!(env.kubelets[NODES[0]].requests().len(), 1);
    assert_eq!(env.kubelets[NODES[1]].requests().len(), 0);

    // An unknown Pod is a 404, not a guess from Host.
    let mut s = env.connect(Some(env.apiserver_cert())).await.unwrap();
    let (status, text) = exchange(
        &mut s,
        &get(
            "/portForward/default/ghost",
            &format!("{}:10250", NODES[0]),
            "",
        ),
    )
    .await;
    assert_eq!(status, 404, "{text}");
    // ... but only to callers who may reach nodes: without rights, a missing pod and an
    // existing one both give 403 (no probing for pods).
    for pod in ["ghost", "db"] {
        let mut s = env.connect(None).await.unwrap();
        let (status, text) = exchange(
            &mut s,
            &get(
                &format!("/portForward/default/{pod}"),
                "kube-apiserver:6443",
                "Authorization: Bearer nobody-token\r\n",
            ),
        )
        .await;
        assert_eq!(status, 403, "{pod}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scrape_with_node_name_and_a_token() {
    let env = Env::start(Options::default()).await;
    let node = NODES[1];
    let mut s = env.connect(None).await.unwrap();
    let (status, text) = exchange(
        &mut s,
        &get(
            &format!("/metrics/resource?nodeName={node}&x=1"),
            "x-raven-proxy-internal-svc:10250",
            "Authorization: Bearer prom-token\r\n",
        ),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(&format!("node={node}\n")), "{text}");
    // The kubelet saw the path without nodeName, its own Host, and not the caller's token.
    assert!(
        text.contains("GET /metrics/resource?x=1 HTTP/1.1"),
        "{text}"
    );
    assert!(
        text.to_ascii_lowercase()
            .contains(&format!("host: {node}:10250")),
        "{text}"
    );
    assert!(!text.contains("prom-token"), "token forwarded: {text}");
    assert!(
        !text.to_ascii_lowercase().contains("x-raven-leak"),
        "internal response header: {text}"
    );
    // Prometheus may scrape metrics but not exec.
    let mut s = env.connect(None).await.unwrap();
    let (status, text) = exchange(
        &mut s,
        &get(
            "/pods",
            &format!("{node}:10250"),
            "Authorization: Bearer prom-token\r\n",
        ),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    let seen = env.auth.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|a| a.subresource == "metrics" && a.verb == "get" && a.node == node),
        "{seen:?}"
    );
    // pods falls back to proxy before the denial, as the kubelet does.
    assert!(seen.iter().any(|a| a.subresource == "pods"), "{seen:?}");
    assert!(seen.iter().any(|a| a.subresource == "proxy"), "{seen:?}");
    let text = env.metrics_text();
    assert!(
        text.contains(
            "raven_node_proxy_front_requests_total{class=\"2xx\",route=\"node_query\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("raven_node_proxy_front_auth_failures_total{reason=\"forbidden\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("raven_node_proxy_front_bytes_total{direction=\"from_target\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_listener_needs_a_token() {
    let env = Env::start(Options {
        plain_http: true,
        ..Options::default()
    })
    .await;
    let addr = env.front.http_addr.unwrap();
    let node = NODES[0];
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (status, text) = exchange(&mut s, &get("/metrics", &format!("{node}:10250"), "")).await;
    assert_eq!(status, 401, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{text}"
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (status, text) = exchange(
        &mut s,
        &get(
            "/metrics",
            &format!("{node}:10250"),
            "Authorization: Bearer ops-token\r\n",
        ),
    )
    .await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_never_reach_a_kubelet() {
    let env = Env::start(Options::default()).await;
    let node = NODES[0];
    let host = format!("{node}:10250");
    let tok = "Authorization: Bearer ops-token\r\n";
    let cases: Vec<(&str, Vec<u8>, bool, u16)> = vec![
        ("no credentials", get("/pods", &host, ""), false, 401),
        ("bad token", get("/pods", &host, "Authorization: Bearer nope\r\n"), false, 401),
        ("IP-literal host", get("/pods", "10.0.0.7:10250", tok), false, 400),
        ("unknown node", get("/pods", "ghost:10250", tok), false, 404),
        ("port not allowed", get("/pods", &format!("{node}:22"), tok), false, 403),
        (
            "absolute-form elsewhere",
            get("http://evil.example:10250/pods", &host, tok),
            false,
            400,
        ),
        (
            "CL and TE",
            format!(
                "POST /run/ns/p/c HTTP/1.1\r\nHost: {host}\r\n{tok}Content-Length: 4\r\n\
                 Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /pods HTTP/1.1\r\nHost: {host}\r\n\r\n"
            )
            .into_bytes(),
            false,
            400,
        ),
        (
            "TE not chunked",
            format!(
                "POST /run/ns/p/c HTTP/1.1\r\nHost: {host}\r\n{tok}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"
            )
            .into_bytes(),
            false,
            // hyper refuses a request whose final coding is not chunked before our layer.
            400,
        ),
        (
            "obs-fold",
            format!("GET /pods HTTP/1.1\r\nHost: {host}\r\n{tok}X-A: 1\r\n  folded\r\n\r\n").into_bytes(),
            false,
            400,
        ),
        (
            "bad header name",
            format!("GET /pods HTTP/1.1\r\nHost: {host}\r\n{tok}Bad Name: 1\r\n\r\n").into_bytes(),
            false,
            400,
        ),
        (
            "two Host headers",
            format!("GET /pods HTTP/1.1\r\nHost: {host}\r\nHost: edge-b-1:10250\r\n{tok}\r\n").into_bytes(),
            false,
            400,
        ),
        (
            "h2c upgrade",
            get("/pods", &host, &format!("{tok}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n")),
            false,
            400,
        ),
        ("unknown CA", get("/pods", &host, ""), true, 0),
    ];
    for (what, raw, rogue, want) in cases {
        let cert = if rogue {
            let rogue_ca = front_support::Ca::new("rogue");
            Some(rogue_ca.issue(
                front_support::APISERVER_CN,
                &["system:masters"],
                &[],
                true,
                false,
            ))
        } else {
            None
        };
        let status = match env.connect(cert).await {
            Ok(mut s) => exchange(&mut s, &raw).await.0,
            Err(_) => 0,
        };
        assert_eq!(status, want, "{what}");
    }
    assert_eq!(
        env.all_kubelet_requests(),
        0,
        "a refused request reached a kubelet"
    );

    // Redirect answering an upgrade: the kubelet is reached, the caller gets a 502.
    let mut s = env.connect(Some(env.apiserver_cert())).await.unwrap();
    let (status, text) = exchange(
        &mut s,
        &get(
            "/exec/ns/redirect/c",
            &host,
            "Connection: Upgrade\r\nUpgrade: websocket\r\n",
        ),
    )
    .await;
    assert_eq!(status, 502, "{text}");
    assert!(!text.contains("elsewhere.invalid"), "{text}");

    let text = env.metrics_text();
    assert!(
        text.contains("raven_node_proxy_front_auth_failures_total{reason=\"no_credentials\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("raven_node_proxy_front_dial_errors_total{kind=\"unknown_node\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_requests_on_one_connection() {
    let env = Env::start(Options::default()).await;
    let node = NODES[0];
    let mut s = env.connect(Some(env.apiserver_cert())).await.unwrap();
    for i in 0..3 {
        let (status, text) = exchange(
            &mut s,
            &get(
                &format!("/stats/summary?i={i}"),
                &format!("{node}:10250"),
                "",
            ),
        )
        .await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains(&format!("/stats/summary?i={i}")), "{text}");
    }
    // Two pipelined requests in one write: both scanned, both answered, in order.
    let mut raw = get("/stats/summary?p=1", &format!("{node}:10250"), "");
    raw.extend(get("/stats/summary?p=2", &format!("{node}:10250"), ""));
    s.write_all(&raw).await.unwrap();
    let mut acc = Vec::new();
    assert!(read_until(&mut s, &mut acc, "/stats/summary?p=2").await);
    let text = String::from_utf8_lossy(&acc);
    let first = text.find("/stats/summary?p=1").expect("first response");
    assert!(first < text.find("/stats/summary?p=2").unwrap(), "{text}");
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_relayed_and_end_the_connection() {
    let env = Env::start(Options::default()).await;
    let node = NODES[1];
    let host = format!("{node}:10250");
    let mut s = env.connect(Some(env.apiserver_cert())).await.unwrap();
    let raw = format!(
        "POST /run/default/web/app HTTP/1.1\r\nHost: {host}\r\nContent-Length: 6\r\n\
         Authorization: Bearer for-the-kubelet\r\n\r\ncmd=ls"
    );
    let (status, text) = exchange(&mut s, raw.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("cmd=ls"), "{text}");
    // A certificate caller's Authorization was not ours: it reaches the target.
    assert!(text.contains("for-the-kubelet"), "{text}");
    // The raw scan stops after a body, so the connection ends with this response.
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    // Chunked request bodies are relayed (re-framed by hyper).
    let mut s = env.connect(Some(env.apiserver_cert())).await.unwrap();
    let raw = format!(
        "POST /run/default/web/app HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n\
         3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    );
    let (status, text) = exchange(&mut s, raw.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("abc") && text.contains("de"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_tls_follows_the_port_and_verifies_the_kubelet() {
    let env = Env::start(Options::default()).await;
    let node = NODES[0];
    // 9100 is not a TLS port: plain HTTP to the target.
    let mut s = env.connect(Some(env.apiserver_cert())).await.unwrap();
    let (status, text) = exchange(
        &mut s,
        &get("/metrics", &format!("{node}:{PLAIN_PORT}"), ""),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        env.kubelets[&format!("{node}:{PLAIN_PORT}")]
            .requests()
            .len(),
        1
    );
    // A port the Gateway lists as HTTPS (an exporter with TLS): TLS with our client
    // certificate, verified like the kubelet.
    let mut s = env.connect(Some(env.apiserver_cert())).await.unwrap();
    let (status, text) = exchange(
        &mut s,
        &get("/metrics", &format!("{node}:{HTTPS_PORT}"), ""),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let seen = env.kubelets[&format!("{node}:{HTTPS_PORT}")].requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    // A kubelet whose serving certificate does not verify is never spoken to.
    let mut s = env.connect(Some(env.apiserver_cert())).await.unwrap();
    let (status, text) = exchange(&mut s, &get("/pods", &format!("{ROGUE_NODE}:10250"), "")).await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("TLS"), "{text}");
    assert_eq!(env.kubelets[ROGUE_NODE].requests().len(), 0);
    let text = env.metrics_text();
    assert!(
        text.contains("raven_node_proxy_front_dial_errors_total{kind=\"tls\"} 1"),
        "{text}"
    );
    let _ = read_response::<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
}
