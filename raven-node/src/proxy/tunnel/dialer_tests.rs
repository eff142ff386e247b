//! The dial budget per tunnel, over real HTTP/2 connections (the `h2` crate on both ends of
//! in-memory pipes): a domain with two tunnels, the newest of which is silently dead (it took
//! the HTTP/2 handshake and then never answers, like a black-holed TCP connection its keepalive
//! has not dropped yet). The dialer tries it first, gives up when its budget runs out, and the
//! live tunnel tried next gets a whole budget of its own.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use super::*;
use crate::proxy::tunnel::server::Tunnels;

fn gateways() -> Vec<raven_api::gateway::v1beta1::Gateway> {
    let proxy =
        |n: &str, ip: &str| json!({"nodeName": n, "type": "proxy", "port": 10262, "publicIP": ip});
    let node = |n: &str, ip: &str| json!({"nodeName": n, "privateIP": ip, "subnets": []});
    [
        json!({"apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
            "metadata": {"name": "gw-cloud"},
            "spec": {"exposeType": "PublicIP", "proxyConfig": {"Replicas": 1, "proxyHTTPPort": "10250"},
                     "endpoints": [proxy("cloud-1", "198.18.0.11")]},
            "status": {"nodes": [node("cloud-1", "10.0.0.1")],
                       "activeEndpoints": [proxy("cloud-1", "198.18.0.11")]}}),
        json!({"apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
            "metadata": {"name": "gw-edge"},
            "spec": {"proxyConfig": {"Replicas": 2, "proxyHTTPPort": "10250"},
                     "endpoints": [proxy("edge-1", ""), proxy("edge-2", "")]},
            "status": {"nodes": [node("edge-1", "192.168.1.10"), node("edge-2", "192.168.1.11"),
                                 node("edge-3", "192.168.1.12")],
                       "activeEndpoints": [proxy("edge-1", ""), proxy("edge-2", "")]}}),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).expect("gateway"))
    .collect()
}

/// A tunnel's HTTP/2 client end; its edge answers every `CONNECT` with 200 when `alive`, and
/// never when not (holding the streams open).
async fn tunnel(alive: bool) -> h2::client::SendRequest<Bytes> {
    let (client, edge) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let mut conn = h2::server::handshake(edge).await.expect("edge handshake");
        let mut held = Vec::new();
        while let Some(Ok((_req, mut respond))) = conn.accept().await {
            if alive {
                let ok = http::Response::builder()
                    .status(StatusCode::OK)
                    .body(())
                    .expect("response");
                held.push(respond.send_response(ok, false).expect("answer"));
            } else {
                std::mem::forget(respond); // never answered, never reset
            }
        }
    });
    let (send, conn) = h2::client::handshake(client)
        .await
        .expect("cloud handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

#[tokio::test]
async fn a_dead_tunnel_does_not_use_up_the_next_ones_budget() {
    let timing = Timing {
        dial_timeout: Duration::from_millis(300),
        keepalive_timeout: Duration::from_millis(200),
        ..Timing::default()
    };
    let budget = timing.dial_timeout + timing.keepalive_timeout;
    let tunnels = Arc::new(Tunnels::default());
    let domain = Domain::Gateway("gw-edge".into());
    // Newest first: the dead one (added last) is tried first.
    tunnels.add("edge-1".into(), domain.clone(), tunnel(true).await);
    tunnels.add("edge-2".into(), domain.clone(), tunnel(false).await);
    let (_tx, view) = watch::channel(Arc::new(ProxyView::build(&gateways())));
    let dialer = TunnelDialer::new(
        "cloud-1".into(),
        view,
        tunnels,
        ProxyMetrics::default(),
        timing,
    );
    let started = Instant::now();
    let stream = dialer.dial("edge-3", 10250).await;
    let took = started.elapsed();
    assert!(
        stream.is_ok(),
        "the live tunnel must be reached: {:?}",
        stream.err()
    );
    assert!(
        took >= budget,
        "the dead tunnel was tried first and given its whole budget: {took:?}"
    );
    assert!(took < 2 * budget, "the live one answers at once: {took:?}");
}
