//! Tests of [`super`]: the view built from Gateway fixtures (roles, seats, routes, ports,
//! server identity).

use super::*;
use serde_json::json;

fn gw(
    name: &str,
    exposed: bool,
    replicas: i64,
    ports: (&str, &str),
    nodes: &[(&str, &str)],
    active: &[(&str, &str)],
) -> Gateway {
    let v = json!({
        "apiVersion": "raven.openyurt.io/v1beta1",
        "kind": "Gateway",
        "metadata": {"name": name},
        "spec": {
            "exposeType": if exposed { "PublicIP" } else { "" },
            "proxyConfig": {"Replicas": replicas, "proxyHTTPPort": ports.0, "proxyHTTPSPort": ports.1},
            "tunnelConfig": {"Replicas": 1},
            "endpoints": active.iter().map(|(n, ip)| json!({"nodeName": n, "type": "proxy", "port": 10262, "publicIP": ip})).collect::<Vec<_>>(),
        },
        "status": {
            "nodes": nodes.iter().map(|(n, ip)| json!({"nodeName": n, "privateIP": ip, "subnets": []})).collect::<Vec<_>>(),
            "activeEndpoints": active.iter().map(|(n, ip)| json!({"nodeName": n, "type": "proxy", "port": 10262, "publicIP": ip})).collect::<Vec<_>>(),
        }
    });
    serde_json::from_value(v).expect("fixture is a valid Gateway")
}

/// cloud (2 replicas), edge-a and edge-b with the same node IPs, one NATed member each.
fn lab() -> Vec<Gateway> {
    vec![
        gw(
            "gw-cloud",
            true,
            2,
            ("10255,9100", "10250"),
            &[
                ("cloud-1", "10.0.0.1"),
                ("cloud-2", "10.0.0.2"),
                ("cloud-3", "10.0.0.3"),
            ],
            &[("cloud-1", "1.1.1.1"), ("cloud-2", "1.1.1.2")],
        ),
        gw(
            "gw-edge-a",
            false,
            1,
            ("", ""),
            &[("a-1", "192.168.1.10"), ("a-2", "192.168.1.11")],
            &[("a-1", "")],
        ),
        gw(
            "gw-edge-b",
            false,
            1,
            ("", "10250,9445"),
            &[("b-1", "192.168.1.10"), ("b-2", "192.168.1.11")],
            &[("b-1", "")],
        ),
    ]
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

#[test]
fn roles_table() {
    let v = ProxyView::build(&lab());
    let servers = vec![sa("1.1.1.1:10262"), sa("1.1.1.2:10262")];
    let cases: Vec<(&str, Option<&str>, Vec<SocketAddr>)> = vec![
        ("cloud-1", Some("gw-cloud"), vec![]), // no other exposed gateway
        ("cloud-2", Some("gw-cloud"), vec![]),
        ("cloud-3", None, vec![]),      // member, not active
        ("a-1", None, servers.clone()), // edge gateway: every replica
        ("a-2", None, vec![]),
        ("b-1", None, servers.clone()),
        ("solo", None, servers.clone()), // in no gateway
    ];
    for (node, server, client) in cases {
        let r = v.roles(node);
        assert_eq!(r.server.as_deref(), server, "{node}");
        assert_eq!(r.client, client, "{node}");
    }
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
}

#[test]
fn proxy_disabled_means_no_role_and_no_seat() {
    let mut gws = lab();
    gws[1].spec.proxy_config.replicas = 0;
    let v = ProxyView::build(&gws);
    assert_eq!(v.roles("a-1"), Roles::default());
    assert_eq!(
        v.seat("gw-cloud", "a-1"),
        Err(SeatRefusal::Disabled("a-1".into()))
    );
    gws[0].spec.proxy_config.replicas = 0;
    let v = ProxyView::build(&gws);
    assert_eq!(
        v.roles("solo"),
        Roles::default(),
        "solo follows the centre gateway"
    );
    assert_eq!(v.roles("cloud-1"), Roles::default());
}

#[test]
fn two_exposed_gateways_mesh() {
    let mut gws = lab();
    gws.push(gw(
        "gw-cloud-2",
        true,
        1,
        ("", ""),
        &[("r2-1", "10.1.0.1")],
        &[("r2-1", "2.2.2.2")],
    ));
    let v = ProxyView::build(&gws);
    assert_eq!(v.roles("cloud-1").client, vec![sa("2.2.2.2:10262")]);
    assert_eq!(v.roles("r2-1").server.as_deref(), Some("gw-cloud-2"));
    assert_eq!(
        v.roles("r2-1").client,
        vec![sa("1.1.1.1:10262"), sa("1.1.1.2:10262")]
    );
    assert_eq!(
        v.seat("gw-cloud", "r2-1"),
        Ok(Domain::Gateway("gw-cloud-2".into()))
    );
}

#[test]
fn seats_table() {
    let v = ProxyView::build(&lab());
    assert_eq!(
        v.seat("gw-cloud", "a-1"),
        Ok(Domain::Gateway("gw-edge-a".into()))
    );
    assert_eq!(
        v.seat("gw-cloud", "b-1"),
        Ok(Domain::Gateway("gw-edge-b".into()))
    );
    assert_eq!(v.seat("gw-cloud", "solo"), Ok(Domain::Solo("solo".into())));
    assert_eq!(
        v.seat("gw-cloud", "a-2"),
        Err(SeatRefusal::NotActiveEndpoint {
            node: "a-2".into(),
            gateway: "gw-edge-a".into()
        })
    );
    assert_eq!(
        v.seat("gw-cloud", "cloud-3"),
        Err(SeatRefusal::OwnDomain("cloud-3".into()))
    );
}

#[test]
fn allowed_ports_own_list_else_exposed_union() {
    let v = ProxyView::build(&lab());
    // edge-a lists none: the exposed gateways' ports apply.
    for (node, port, ok) in [
        ("a-2", 10250, true),
        ("a-2", 9100, true),
        ("a-2", 9445, false),
        ("b-2", 9445, true), // edge-b's own list
        ("b-2", 9100, false),
        ("cloud-3", 10255, true),
        ("cloud-3", 22, false),
        ("solo", 10250, true),
        ("solo", 22, false),
    ] {
        assert_eq!(v.port_allowed(node, port), ok, "{node}:{port}");
    }
}

#[test]
fn edges_accept_only_the_server_the_gateways_name_at_an_address() {
    let v = ProxyView::build(&lab());
    let (c1, c2) = (sa("1.1.1.1:10262"), sa("1.1.1.2:10262"));
    assert_eq!(v.servers_at(c1), vec!["cloud-1"]);
    for (named, addr, ok) in [
        (Some("cloud-1"), c1, true),
        (Some("cloud-2"), c2, true),
        (Some("cloud-2"), c1, false), // another replica's certificate at cloud-1's address
        (Some("b-1"), c1, false),     // an edge node's certificate with the server's IP
        (Some("cloud-1"), sa("9.9.9.9:10262"), false), // not a server address at all
        (None, c1, true),             // operator files naming no node: CA + IP checks only
    ] {
        let got = v.check_server_identity(named, addr);
        assert_eq!(got.is_ok(), ok, "{named:?} at {addr}: {got:?}");
    }
}

#[test]
fn https_ports_follow_the_list_that_applies() {
    let v = ProxyView::build(&lab());
    for (node, port, https) in [
        ("cloud-3", 10250, true),
        ("cloud-3", 10255, false),
        ("a-2", 10250, true), // edge-a lists none: the exposed gateways' lists
        ("a-2", 9100, false),
        ("b-2", 9445, true), // edge-b's own list
        ("b-2", 9100, false),
        ("solo", 10250, true),
        ("solo", 22, false),
    ] {
        assert_eq!(v.port_is_https(node, port), https, "{node}:{port}");
    }
}

#[test]
fn routes_table() {
    let v = ProxyView::build(&lab());
    assert_eq!(
        v.route("gw-cloud", "cloud-3", 10250).ok(),
        Some(Route::Direct(sa("10.0.0.3:10250")))
    );
    assert_eq!(
        v.route("gw-cloud", "a-2", 10250).ok(),
        Some(Route::Tunnel(Domain::Gateway("gw-edge-a".into())))
    );
    assert_eq!(
        v.route("gw-cloud", "b-2", 9445).ok(),
        Some(Route::Tunnel(Domain::Gateway("gw-edge-b".into())))
    );
    assert_eq!(
        v.route("gw-cloud", "x", 10250).ok(),
        Some(Route::Tunnel(Domain::Solo("x".into())))
    );
    assert!(matches!(
        v.route("gw-cloud", "a-2", 22),
        Err(DialError::PortNotAllowed { port: 22, .. })
    ));
}

#[test]
fn edge_never_relays_outside_its_domain() {
    let v = ProxyView::build(&lab());
    let lo: IpAddr = "127.0.0.1".parse().expect("ip");
    assert_eq!(
        v.edge_target("a-1", lo, "a-2", 10250),
        Ok(sa("192.168.1.11:10250"))
    );
    assert_eq!(
        v.edge_target("a-1", lo, "a-1", 10250),
        Ok(sa("192.168.1.10:10250"))
    );
    assert_eq!(
        v.edge_target("a-1", lo, "b-2", 10250),
        Err(EdgeRefusal::ForeignNode("b-2".into()))
    );
    assert_eq!(
        v.edge_target("a-1", lo, "cloud-1", 10250),
        Err(EdgeRefusal::ForeignNode("cloud-1".into()))
    );
    assert_eq!(
        v.edge_target("a-1", lo, "ghost", 10250),
        Err(EdgeRefusal::ForeignNode("ghost".into()))
    );
    assert_eq!(
        v.edge_target("a-1", lo, "a-2", 22),
        Err(EdgeRefusal::PortNotAllowed {
            node: "a-2".into(),
            port: 22
        })
    );
    assert_eq!(
        v.edge_target("solo", lo, "solo", 10250),
        Ok(sa("127.0.0.1:10250"))
    );
    assert_eq!(
        v.edge_target("solo", lo, "other", 10250),
        Err(EdgeRefusal::ForeignNode("other".into()))
    );
}

#[test]
fn bad_input_is_reported_not_fatal() {
    let mut gws = lab();
    gws[1].spec.proxy_config.proxy_http_port = "80,x,0, 81".into();
    gws.push(gw(
        "gw-dup",
        false,
        1,
        ("", ""),
        &[("a-1", "192.168.9.9"), ("bad", "nope")],
        &[("ghost", "")],
    ));
    let v = ProxyView::build(&gws);
    assert!(v.port_allowed("a-2", 80) && v.port_allowed("a-2", 81));
    assert_eq!(
        v.node("a-1").map(|n| n.gateway.as_str()),
        Some("gw-dup"),
        "first by name wins"
    );
    assert_eq!(v.warnings.len(), 6, "{:?}", v.warnings);
}
