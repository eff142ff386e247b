use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

use super::*;

const SA: &str = "system:serviceaccount:kube-system:raven-node";

fn csr(cn: &str, extra_dn: bool, sans: Vec<SanType>) -> Vec<u8> {
    let orgs: &[&str] = if extra_dn { &["system:masters"] } else { &[] };
    csr_in(cn, orgs, sans)
}

/// A request for `cn` in the groups `orgs`.
fn csr_in(cn: &str, orgs: &[&str], sans: Vec<SanType>) -> Vec<u8> {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    for o in orgs {
        p.distinguished_name.push(DnType::OrganizationName, *o);
    }
    p.subject_alt_names = sans;
    p.serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
        .into_bytes()
}

fn node_user(n: &str) -> Requester {
    Requester {
        username: format!("system:node:{n}"),
        groups: vec!["system:nodes".into(), "system:authenticated".into()],
        pod_node: None,
    }
}

fn facts() -> NodeFacts {
    NodeFacts {
        exists: true,
        allowed_ips: ["10.0.0.1".parse().expect("ip")].into_iter().collect(),
        proxy_server: false,
    }
}

fn proxy_server_facts() -> NodeFacts {
    NodeFacts {
        proxy_server: true,
        ..facts()
    }
}

const FRONT: &str = "raven:proxy-fronts";

#[test]
fn only_front_subjects_of_the_kubernetes_client_signer_are_ours() {
    let front = csr_in("raven-proxy-front:a", &[FRONT], vec![]);
    let admin = csr_in("alice", &["system:masters"], vec![]);
    let cases: [(&str, Kind, &[u8], bool); 6] = [
        ("front request", Kind::Front, &front, true),
        (
            "front prefix, bad groups",
            Kind::Front,
            &csr("raven-proxy-front:a", true, vec![]),
            true,
        ),
        ("someone else's", Kind::Front, &admin, false),
        ("garbage", Kind::Front, b"hello", false),
        ("our client signer", Kind::Client, &admin, true),
        ("our server signer, garbage", Kind::Server, b"hello", true),
    ];
    for (what, kind, pem, want) in cases {
        assert_eq!(is_ours(kind, pem), want, "{what}");
    }
    assert_eq!(
        Kind::of_signer("kubernetes.io/kube-apiserver-client"),
        Some(Kind::Front)
    );
    assert_eq!(
        Kind::of_signer("kubernetes.io/kube-apiserver-client-kubelet"),
        None
    );
    assert!(!Kind::Front.signed_here() && Kind::Client.signed_here());
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn parse_table() {
    let ip = |s: &str| SanType::IpAddress(s.parse().expect("ip"));
    let dns = |s: &str| SanType::DnsName(s.try_into().expect("dns"));
    type Case<'a> = (&'a str, Kind, Vec<u8>, Result<&'a str, &'a str>);
    let cases: Vec<Case> = vec![
        (
            "client ok",
            Kind::Client,
            csr("raven-proxy-client:a", false, vec![]),
            Ok("a"),
        ),
        (
            "server ok",
            Kind::Server,
            csr(
                "raven-proxy-server:a",
                false,
                vec![dns("a"), ip("10.0.0.1")],
            ),
            Ok("a"),
        ),
        (
            "wrong prefix",
            Kind::Client,
            csr("raven-proxy-server:a", false, vec![]),
            Err("BadSubject"),
        ),
        (
            "empty node",
            Kind::Client,
            csr("raven-proxy-client:", false, vec![]),
            Err("BadSubject"),
        ),
        (
            "extra O",
            Kind::Client,
            csr("raven-proxy-client:a", true, vec![]),
            Err("BadSubject"),
        ),
        (
            "client with SAN",
            Kind::Client,
            csr("raven-proxy-client:a", false, vec![dns("a")]),
            Err("BadSubjectAltNames"),
        ),
        (
            "server with URI SAN",
            Kind::Server,
            csr(
                "raven-proxy-server:a",
                false,
                vec![SanType::URI("https://x".try_into().expect("uri"))],
            ),
            Err("BadSubjectAltNames"),
        ),
        (
            "garbage",
            Kind::Client,
            b"hello".to_vec(),
            Err("BadRequest"),
        ),
        (
            "front ok",
            Kind::Front,
            csr_in("raven-proxy-front:a", &[FRONT], vec![]),
            Ok("a"),
        ),
        (
            "front without its group",
            Kind::Front,
            csr("raven-proxy-front:a", false, vec![]),
            Err("BadSubject"),
        ),
        (
            "front in system:masters",
            Kind::Front,
            csr_in("raven-proxy-front:a", &["system:masters"], vec![]),
            Err("BadSubject"),
        ),
        (
            "front in a second group",
            Kind::Front,
            csr_in("raven-proxy-front:a", &[FRONT, "system:masters"], vec![]),
            Err("BadSubject"),
        ),
        (
            "front with a SAN",
            Kind::Front,
            csr_in("raven-proxy-front:a", &[FRONT], vec![dns("a")]),
            Err("BadSubjectAltNames"),
        ),
        (
            "client subject on the front signer",
            Kind::Front,
            csr_in("raven-proxy-client:a", &[FRONT], vec![]),
            Err("BadSubject"),
        ),
        (
            "a certificate instead",
            Kind::Client,
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
            Err("BadRequest"),
        ),
    ];
    for (case, kind, pem, want) in cases {
        match (parse(kind, &pem), want) {
            (Ok(p), Ok(node)) => assert_eq!(p.node, node, "{case}"),
            (Err(d), Err(reason)) => assert_eq!(d.reason, reason, "{case}: {d:?}"),
            (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn node_facts_come_from_elected_proxy_endpoints_of_exposed_gateways() {
    let gw = |name: &str, exposed: bool, spec_ip: &str, active: Vec<(&str, &str, &str)>| {
        let active: Vec<serde_json::Value> = active
            .into_iter()
            .map(|(n, t, ip)| serde_json::json!({"nodeName": n, "type": t, "publicIP": ip}))
            .collect();
        let mut v = serde_json::json!({"apiVersion": "raven.openyurt.io/v1beta1",
            "kind": "Gateway", "metadata": {"name": name},
            "spec": {"endpoints": [{"nodeName": "a", "type": "proxy", "publicIP": spec_ip},
                                   {"nodeName": "a", "type": "tunnel", "publicIP": "192.0.2.9"}]},
            "status": {"activeEndpoints": active}});
        if exposed {
            v["spec"]["exposeType"] = serde_json::json!("PublicIP");
        }
        serde_json::from_value::<Gateway>(v).expect("gateway")
    };
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    let own = Some(vec![ip("10.0.0.1")]);
    let ips = |f: &NodeFacts| {
        f.allowed_ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    // Elected in an exposed Gateway: a server, with the elected public IP (not the spec's,
    // not the tunnel endpoint's).
    let f = node_facts(
        "a",
        own.clone(),
        &[gw(
            "c",
            true,
            "198.51.100.7",
            vec![
                ("a", "proxy", "198.51.100.1"),
                ("b", "proxy", "198.51.100.2"),
            ],
        )],
    );
    assert!(f.exists && f.proxy_server);
    assert_eq!(ips(&f), ["10.0.0.1", "198.51.100.1"]);
    // Elected, but the Gateway is not exposed; or only a tunnel endpoint; or not elected.
    for (what, gws) in [
        (
            "not exposed",
            vec![gw(
                "c",
                false,
                "198.51.100.7",
                vec![("a", "proxy", "198.51.100.1")],
            )],
        ),
        (
            "tunnel only",
            vec![gw(
                "c",
                true,
                "198.51.100.7",
                vec![("a", "tunnel", "192.0.2.9")],
            )],
        ),
        (
            "another node",
            vec![gw(
                "c",
                true,
                "198.51.100.7",
                vec![("b", "proxy", "198.51.100.2")],
            )],
        ),
        ("no Gateways", vec![]),
    ] {
        let f = node_facts("a", own.clone(), &gws);
        assert!(f.exists && !f.proxy_server, "{what}");
        assert_eq!(ips(&f), ["10.0.0.1"], "{what}: only its own addresses");
    }
    let gone = node_facts(
        "a",
        None,
        &[gw("c", true, "", vec![("a", "proxy", "198.51.100.1")])],
    );
    assert!(!gone.exists && !gone.proxy_server && gone.allowed_ips.is_empty());
}

/// Requests a lenient PEM reader and Go's `pem.Decode` (kube-controller-manager) would
/// read differently are refused, whatever the first block says.
#[test]
fn only_exactly_one_plain_pem_block_is_read() {
    let front = String::from_utf8(csr_in("raven-proxy-front:a", &[FRONT], vec![])).expect("pem");
    let admin =
        String::from_utf8(csr_in("admin", &["kubeadm:cluster-admins"], vec![])).expect("pem");
    let smuggled = format!(
        "{}{}",
        front.replace("-----END CERTIFICATE REQUEST-----", "-----END X-----"),
        admin
    );
    let cases: Vec<(&str, String, bool)> = vec![
        ("as made", front.clone(), true),
        ("CRLF line ends", front.replace('\n', "\r\n"), true),
        ("surrounding blank lines", format!("\n\n{front}\n"), true),
        ("a second block behind a mislabelled END", smuggled, false),
        ("two blocks", format!("{front}{admin}"), false),
        ("text before", format!("hello\n{front}"), false),
        ("text after", format!("{front}bye\n"), false),
        (
            "text on the BEGIN line",
            front.replacen("REQUEST-----", "REQUEST----- x", 1),
            false,
        ),
        (
            "a header",
            front.replacen("REQUEST-----\n", "REQUEST-----\nProc-Type: 4,X\n\n", 1),
            false,
        ),
        (
            "another label",
            front.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"),
            false,
        ),
    ];
    for (what, pem, ok) in cases {
        let got = parse(Kind::Front, pem.as_bytes());
        assert_eq!(got.is_ok(), ok, "{what}: {got:?}");
        if let Err(d) = got {
            assert_eq!(d.reason, "BadRequest", "{what}");
        }
        // The first block still claims our subject: ours to deny, never to leave pending
        // for someone else to approve.
        if what == "a second block behind a mislabelled END" {
            assert!(is_ours(Kind::Front, pem.as_bytes()), "{what}");
        }
    }
}

#[test]
fn front_lifetime_is_capped_where_kubernetes_honours_it() {
    let front = parse(
        Kind::Front,
        &csr_in("raven-proxy-front:a", &[FRONT], vec![]),
    )
    .expect("ok");
    let client = parse(Kind::Client, &csr("raven-proxy-client:a", false, vec![])).expect("ok");
    let cu = strs(&["digital signature", "client auth"]);
    let me = node_user("a");
    let day = FRONT_MAX_LIFETIME_SECONDS;
    for (what, kind, parsed, requested, honoured, ok) in [
        ("a day", Kind::Front, &front, Some(day), true, true),
        ("ten minutes", Kind::Front, &front, Some(600), true, true),
        ("not asked", Kind::Front, &front, None, true, false),
        ("a year", Kind::Front, &front, Some(365 * day), true, false),
        ("too short", Kind::Front, &front, Some(60), true, false),
        (
            "not asked, old cluster",
            Kind::Front,
            &front,
            None,
            false,
            true,
        ),
        (
            "proxy client, not asked",
            Kind::Client,
            &client,
            None,
            true,
            true,
        ),
    ] {
        let got = decide(
            kind,
            parsed,
            &cu,
            &me,
            SA,
            &proxy_server_facts(),
            Expiry {
                requested,
                honoured,
            },
        );
        assert_eq!(got.is_ok(), ok, "{what}: {got:?}");
        if let Err(d) = got {
            assert_eq!(d.reason, "BadExpiration", "{what}");
        }
    }
    for (major, minor, want) in [
        ("1", "20", false),
        ("1", "21+", false),
        ("1", "22", true),
        ("1", "30+", true),
        ("2", "0", true),
        ("", "", false),
        ("1", "x", false),
    ] {
        assert_eq!(honours_expiration(major, minor), want, "{major}.{minor}");
    }
}

#[test]
fn tampered_request_fails_signature() {
    let pem = String::from_utf8(csr("raven-proxy-client:a", false, vec![])).expect("utf8");
    // Flip one base64 character in the middle of the body.
    let mut chars: Vec<char> = pem.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let bad: String = chars.into_iter().collect();
    let d = parse(Kind::Client, bad.as_bytes()).expect_err("tampered");
    assert_eq!(d.reason, "BadRequest");
}

#[test]
fn decide_table() {
    let client = parse(Kind::Client, &csr("raven-proxy-client:a", false, vec![])).expect("ok");
    let server = parse(
        Kind::Server,
        &csr(
            "raven-proxy-server:a",
            false,
            vec![SanType::IpAddress("10.0.0.1".parse().expect("ip"))],
        ),
    )
    .expect("ok");
    let server_foreign_ip = parse(
        Kind::Server,
        &csr(
            "raven-proxy-server:a",
            false,
            vec![SanType::IpAddress("8.8.8.8".parse().expect("ip"))],
        ),
    )
    .expect("ok");
    let front = parse(
        Kind::Front,
        &csr_in("raven-proxy-front:a", &[FRONT], vec![]),
    )
    .expect("ok");
    let cu = strs(&["client auth", "digital signature"]);
    let su = strs(&["digital signature", "server auth"]);
    let sa = |pod_node: Option<&str>| Requester {
        username: SA.into(),
        groups: vec!["system:serviceaccounts".into()],
        pod_node: pod_node.map(String::from),
    };
    type Case<'a> = (
        &'a str,
        Kind,
        &'a Parsed,
        Vec<String>,
        Requester,
        NodeFacts,
        Result<(), &'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "node A for A",
            Kind::Client,
            &client,
            cu.clone(),
            node_user("a"),
            facts(),
            Ok(()),
        ),
        (
            "node B for A",
            Kind::Client,
            &client,
            cu.clone(),
            node_user("b"),
            facts(),
            Err("NodeMismatch"),
        ),
        (
            "node name without group",
            Kind::Client,
            &client,
            cu.clone(),
            Requester {
                groups: vec![],
                ..node_user("a")
            },
            facts(),
            Err("UnknownRequester"),
        ),
        (
            "stranger",
            Kind::Client,
            &client,
            cu.clone(),
            Requester {
                username: "alice".into(),
                ..Default::default()
            },
            facts(),
            Err("UnknownRequester"),
        ),
        (
            "raven-node pod on A",
            Kind::Client,
            &client,
            cu.clone(),
            sa(Some("a")),
            facts(),
            Ok(()),
        ),
        (
            "raven-node pod on B",
            Kind::Client,
            &client,
            cu.clone(),
            sa(Some("b")),
            facts(),
            Err("NodeMismatch"),
        ),
        (
            "raven-node unbound token",
            Kind::Client,
            &client,
            cu.clone(),
            sa(None),
            facts(),
            Err("RequesterNotBound"),
        ),
        (
            "server usages on client",
            Kind::Client,
            &client,
            su.clone(),
            node_user("a"),
            facts(),
            Err("BadUsages"),
        ),
        (
            "extra usage",
            Kind::Client,
            &client,
            strs(&["digital signature", "client auth", "server auth"]),
            node_user("a"),
            facts(),
            Err("BadUsages"),
        ),
        (
            "duplicated usage",
            Kind::Client,
            &client,
            strs(&["digital signature", "client auth", "client auth"]),
            node_user("a"),
            facts(),
            Err("BadUsages"),
        ),
        (
            "missing usage",
            Kind::Client,
            &client,
            strs(&["client auth"]),
            node_user("a"),
            facts(),
            Err("BadUsages"),
        ),
        (
            "unknown node",
            Kind::Client,
            &client,
            cu.clone(),
            node_user("a"),
            NodeFacts::default(),
            Err("UnknownNode"),
        ),
        (
            "front on a proxy server, own node",
            Kind::Front,
            &front,
            cu.clone(),
            sa(Some("a")),
            proxy_server_facts(),
            Ok(()),
        ),
        (
            "front on a node that is no proxy server",
            Kind::Front,
            &front,
            cu.clone(),
            sa(Some("a")),
            facts(),
            Err("NotProxyServer"),
        ),
        (
            "front for a proxy server, asked by another node",
            Kind::Front,
            &front,
            cu.clone(),
            sa(Some("b")),
            proxy_server_facts(),
            Err("NodeMismatch"),
        ),
        (
            "front with key encipherment",
            Kind::Front,
            &front,
            strs(&["digital signature", "key encipherment", "client auth"]),
            sa(Some("a")),
            proxy_server_facts(),
            Err("BadUsages"),
        ),
        (
            "front, unbound token",
            Kind::Front,
            &front,
            cu.clone(),
            sa(None),
            proxy_server_facts(),
            Err("RequesterNotBound"),
        ),
        (
            "server with own IP",
            Kind::Server,
            &server,
            su.clone(),
            node_user("a"),
            proxy_server_facts(),
            Ok(()),
        ),
        (
            "server with foreign IP",
            Kind::Server,
            &server_foreign_ip,
            su.clone(),
            node_user("a"),
            proxy_server_facts(),
            Err("BadSubjectAltNames"),
        ),
        (
            "server on a node that is no proxy server",
            Kind::Server,
            &server,
            su.clone(),
            node_user("a"),
            facts(),
            Err("NotProxyServer"),
        ),
    ];
    for (case, kind, parsed, usages, req, node, want) in cases {
        let got = decide(kind, parsed, &usages, &req, SA, &node, Expiry::default());
        match (got, want) {
            (Ok(()), Ok(())) => {}
            (Err(d), Err(reason)) => assert_eq!(d.reason, reason, "{case}: {d:?}"),
            (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
        }
    }
}
