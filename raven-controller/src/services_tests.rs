//! Table tests of the Service planner, including upstream acceptance cases 33, 34, 36 and 37,
//! with exact-set assertions.

use super::*;
use raven_api::gateway::ExposeType;
use raven_api::gateway::v1beta1::{Endpoint, GatewaySpec, GatewayStatus, ProxyConfiguration};

const BOTH: Features = Features {
    proxy: true,
    tunnel: true,
};

fn ep(node: &str, t: EndpointType, port: i64) -> Endpoint {
    Endpoint {
        node_name: node.into(),
        type_: t,
        port,
        ..Default::default()
    }
}

fn gw(name: &str, expose: ExposeType, active: Vec<Endpoint>) -> Gateway {
    let mut g = Gateway::new(
        name,
        GatewaySpec {
            expose_type: expose,
            endpoints: active.clone(),
            ..Default::default()
        },
    );
    g.status = Some(GatewayStatus {
        nodes: vec![],
        active_endpoints: active,
    });
    g
}

fn ips(v: &[(&str, &str)]) -> BTreeMap<String, IpAddr> {
    v.iter()
        .map(|(n, ip)| (n.to_string(), ip.parse().expect("ip")))
        .collect()
}

fn run(
    gws: &[Gateway],
    features: Features,
    node_ips: &BTreeMap<String, IpAddr>,
    services: &[Service],
    endpoints: &[Endpoints],
) -> ServicePlan {
    plan(&ServiceInput {
        gateways: gws,
        features,
        ports: AgentPorts::default(),
        node_ips,
        services,
        endpoints,
    })
}

/// A compact rendering of actions for exact-set assertions.
fn summary(p: &ServicePlan) -> Vec<String> {
    let mut v: Vec<String> = p
        .actions
        .iter()
        .map(|a| match a {
            ServiceAction::CreateService(s) => format!(
                "create svc {} {:?}",
                s.metadata.name.as_deref().unwrap_or_default(),
                s.spec
                    .as_ref()
                    .and_then(|sp| sp.ports.as_ref())
                    .map(|ps| ps
                        .iter()
                        .map(|p| format!(
                            "{}/{}:{}->{:?}",
                            p.name.as_deref().unwrap_or(""),
                            p.protocol.as_deref().unwrap_or(""),
                            p.port,
                            p.target_port
                        ))
                        .collect::<Vec<_>>())
                    .unwrap_or_default()
            ),
            ServiceAction::PatchService { name, .. } => format!("patch svc {name}"),
            ServiceAction::DeleteService { name } => format!("delete svc {name}"),
            ServiceAction::CreateEndpoints(e) => format!(
                "create eps {} {:?}",
                e.metadata.name.as_deref().unwrap_or_default(),
                subsets_key(e.subsets.as_deref().unwrap_or_default())
            ),
            ServiceAction::PatchEndpoints { name, subsets } => {
                format!("patch eps {name} {:?}", subsets_key(subsets))
            }
            ServiceAction::DeleteEndpoints { name } => format!("delete eps {name}"),
        })
        .collect();
    v.sort();
    v
}

/// Applies creates and patches to a fake "cluster" so a second run can be checked for no-ops.
fn applied(
    p: &ServicePlan,
    mut svcs: Vec<Service>,
    mut eps: Vec<Endpoints>,
) -> (Vec<Service>, Vec<Endpoints>) {
    for a in &p.actions {
        match a {
            ServiceAction::CreateService(s) => svcs.push((**s).clone()),
            ServiceAction::PatchService { name, patch } => {
                let s = svcs
                    .iter_mut()
                    .find(|s| s.metadata.name.as_deref() == Some(name))
                    .expect("patched service exists");
                let mut v = serde_json::to_value(&*s).expect("ser");
                for (k, val) in patch["spec"].as_object().expect("spec patch") {
                    v["spec"][k] = val.clone();
                }
                *s = serde_json::from_value(v).expect("de");
            }
            ServiceAction::DeleteService { name } => {
                svcs.retain(|s| s.metadata.name.as_deref() != Some(name))
            }
            ServiceAction::CreateEndpoints(e) => eps.push((**e).clone()),
            ServiceAction::PatchEndpoints { name, subsets } => {
                eps.iter_mut()
                    .find(|e| e.metadata.name.as_deref() == Some(name))
                    .expect("patched endpoints exist")
                    .subsets = Some(subsets.clone());
            }
            ServiceAction::DeleteEndpoints { name } => {
                eps.retain(|e| e.metadata.name.as_deref() != Some(name))
            }
        }
    }
    (svcs, eps)
}

/// Acceptance case 33: an LB Gateway with two active proxy endpoints (port 10262) gets exactly
/// two LB Services and two Endpoints named like them (upstream only checks "no error"). It has
/// no proxy ports, so no internal Service.
#[test]
fn case33_lb_gateway_gets_one_service_and_endpoints_per_active_endpoint() {
    let g = gw(
        "gw-cloud",
        ExposeType::LoadBalancer,
        vec![
            ep("node-1", EndpointType::Proxy, 10262),
            ep("node-2", EndpointType::Proxy, 10262),
        ],
    );
    let node_ips = ips(&[("node-1", "10.0.0.1"), ("node-2", "10.0.0.2")]);
    let p = run(std::slice::from_ref(&g), BOTH, &node_ips, &[], &[]);
    let n1 = public_service_name("gw-cloud", "node-1", &EndpointType::Proxy);
    let n2 = public_service_name("gw-cloud", "node-2", &EndpointType::Proxy);
    assert_ne!(n1, n2);
    let port = "/TCP:10262->Some(Int(10262))";
    let mut want = vec![
        format!("create svc {n1} [\"{port}\"]"),
        format!("create svc {n2} [\"{port}\"]"),
        format!("create eps {n1} [([(\"10.0.0.1\", \"node-1\")], [(\"\", \"TCP\", 10262)])]"),
        format!("create eps {n2} [([(\"10.0.0.2\", \"node-2\")], [(\"\", \"TCP\", 10262)])]"),
    ];
    want.sort();
    assert_eq!(summary(&p), want);
    // Labels and annotation the agent and yurthub rely on.
    let ServiceAction::CreateService(s) = &p.actions[0] else {
        panic!("first action must create a Service: {:?}", p.actions[0]);
    };
    let l = s.metadata.labels.clone().expect("labels");
    assert_eq!(l.get(LABEL_GATEWAY).map(String::as_str), Some("gw-cloud"));
    assert_eq!(l.get(LABEL_GATEWAY_TYPE).map(String::as_str), Some("proxy"));
    assert!(l.contains_key(LABEL_GATEWAY_ENDPOINTS));
    assert_eq!(
        s.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_SERVICE_DISCARD))
            .map(String::as_str),
        Some("true")
    );
    let spec = s.spec.clone().expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
    assert_eq!(spec.selector, None);
    // Idempotent: applying the plan and planning again writes nothing.
    let (svcs, eps) = applied(&p, vec![], vec![]);
    let again = run(std::slice::from_ref(&g), BOTH, &node_ips, &svcs, &eps);
    assert_eq!(summary(&again), Vec::<String>::new());
}

fn existing_public(name: &str, gw: &str, node: &str, t: &str, port: i32) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(WORKING_NAMESPACE.into()),
            labels: Some(BTreeMap::from([
                (LABEL_GATEWAY.into(), gw.into()),
                (LABEL_GATEWAY_TYPE.into(), t.into()),
                (LABEL_GATEWAY_ENDPOINTS.into(), node.into()),
            ])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            external_traffic_policy: Some("Local".into()),
            cluster_ip: Some("10.96.1.42".into()),
            health_check_node_port: Some(30123),
            ports: Some(vec![ServicePort {
                protocol: Some(if t == "tunnel" { "UDP" } else { "TCP" }.into()),
                port,
                target_port: Some(IntOrString::Int(if t == "tunnel" { 4500 } else { 10262 })),
                node_port: Some(31000),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Acceptance case 34: an update touches only type, externalTrafficPolicy and ports, so the
/// allocated ClusterIP and healthCheckNodePort survive.
#[test]
fn case34_update_keeps_immutable_fields() {
    let g = gw(
        "gw-cloud",
        ExposeType::LoadBalancer,
        vec![ep("node-1", EndpointType::Proxy, 10263)],
    );
    let old = existing_public(
        "x-raven-proxy-svc-gw-cloud-0badf00d",
        "gw-cloud",
        "node-1",
        "proxy",
        10262,
    );
    let node_ips = ips(&[("node-1", "10.0.0.1")]);
    let p = run(
        std::slice::from_ref(&g),
        BOTH,
        &node_ips,
        std::slice::from_ref(&old),
        &[],
    );
    let patch = p
        .actions
        .iter()
        .find_map(|a| match a {
            ServiceAction::PatchService { name, patch } => Some((name.clone(), patch.clone())),
            _ => None,
        })
        .expect("a patch");
    assert_eq!(patch.0, "x-raven-proxy-svc-gw-cloud-0badf00d");
    assert_eq!(
        patch.1,
        serde_json::json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "ports": [{"protocol": "TCP", "port": 10263, "targetPort": 10262}]}})
    );
    let (svcs, _) = applied(&p, vec![old], vec![]);
    let spec = svcs[0].spec.clone().expect("spec");
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.1.42"));
    assert_eq!(spec.health_check_node_port, Some(30123));
    assert_eq!(spec.ports.expect("ports")[0].port, 10263);
}

/// Fix for upstream's name mismatch: a Service (random upstream suffix) whose Endpoints went
/// missing gets Endpoints with the Service's own name; a wrongly named one is replaced.
#[test]
fn endpoints_are_named_after_the_actual_service() {
    let g = gw(
        "gw-cloud",
        ExposeType::LoadBalancer,
        vec![ep("node-1", EndpointType::Tunnel, 4500)],
    );
    let svc = existing_public(
        "x-raven-tunnel-svc-gw-cloud-1234abcd",
        "gw-cloud",
        "node-1",
        "tunnel",
        4500,
    );
    let node_ips = ips(&[("node-1", "10.0.0.1")]);
    let p = run(
        std::slice::from_ref(&g),
        BOTH,
        &node_ips,
        std::slice::from_ref(&svc),
        &[],
    );
    assert_eq!(
        summary(&p),
        vec![
            "create eps x-raven-tunnel-svc-gw-cloud-1234abcd [([(\"10.0.0.1\", \"node-1\")], [(\"\", \"UDP\", 4500)])]"
                .to_string()
        ]
    );
    let mut wrong = match &p.actions[0] {
        ServiceAction::CreateEndpoints(e) => (**e).clone(),
        other => panic!("{other:?}"),
    };
    wrong.metadata.name = Some("x-raven-tunnel-svc-gw-cloud-99999999".into());
    let p = run(
        std::slice::from_ref(&g),
        BOTH,
        &node_ips,
        std::slice::from_ref(&svc),
        &[wrong],
    );
    let mut s = summary(&p);
    s.sort();
    assert_eq!(
        s,
        vec![
            "create eps x-raven-tunnel-svc-gw-cloud-1234abcd [([(\"10.0.0.1\", \"node-1\")], [(\"\", \"UDP\", 4500)])]".to_string(),
            "delete eps x-raven-tunnel-svc-gw-cloud-99999999".to_string(),
        ]
    );
}

/// Fix for openyurt#2760: an existing object for one endpoint does not stop the pass; the
/// failover (node-1 → node-2) creates the new pair and deletes the old one in one plan.
#[test]
fn failover_creates_new_and_deletes_old_in_one_pass() {
    let g = gw(
        "gw-cloud",
        ExposeType::LoadBalancer,
        vec![ep("node-2", EndpointType::Tunnel, 4500)],
    );
    let old_svc = existing_public(
        "x-raven-tunnel-svc-gw-cloud-aaaa0001",
        "gw-cloud",
        "node-1",
        "tunnel",
        4500,
    );
    let old_eps = Endpoints {
        metadata: old_svc.metadata.clone(),
        subsets: None,
    };
    let node_ips = ips(&[("node-1", "10.0.0.1"), ("node-2", "10.0.0.2")]);
    let p = run(
        std::slice::from_ref(&g),
        BOTH,
        &node_ips,
        &[old_svc],
        &[old_eps],
    );
    let n2 = public_service_name("gw-cloud", "node-2", &EndpointType::Tunnel);
    let mut want = vec![
        format!("create svc {n2} [\"/UDP:4500->Some(Int(4500))\"]"),
        format!("create eps {n2} [([(\"10.0.0.2\", \"node-2\")], [(\"\", \"UDP\", 4500)])]"),
        "delete svc x-raven-tunnel-svc-gw-cloud-aaaa0001".to_string(),
        "delete eps x-raven-tunnel-svc-gw-cloud-aaaa0001".to_string(),
    ];
    want.sort();
    assert_eq!(summary(&p), want);
}

/// Acceptance case 37 (clean): disabling a feature, un-exposing or deleting the Gateway
/// removes its public objects; other Services in the namespace are never touched.
#[test]
fn case37_clean_paths_delete_exactly_our_objects() {
    let svc = existing_public(
        "x-raven-proxy-svc-gw-cloud-aaaa0002",
        "gw-cloud",
        "node-1",
        "proxy",
        10262,
    );
    let eps = Endpoints {
        metadata: svc.metadata.clone(),
        subsets: None,
    };
    let foreign = Service {
        metadata: ObjectMeta {
            name: Some("kube-dns".into()),
            namespace: Some(WORKING_NAMESPACE.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let node_ips = ips(&[("node-1", "10.0.0.1")]);
    let active = vec![ep("node-1", EndpointType::Proxy, 10262)];
    let want = vec![
        "delete eps x-raven-proxy-svc-gw-cloud-aaaa0002".to_string(),
        "delete svc x-raven-proxy-svc-gw-cloud-aaaa0002".to_string(),
    ];
    let cases: Vec<(&str, Vec<Gateway>, Features)> = vec![
        (
            "proxy disabled",
            vec![gw("gw-cloud", ExposeType::LoadBalancer, active.clone())],
            Features {
                proxy: false,
                tunnel: true,
            },
        ),
        (
            "now PublicIP",
            vec![gw("gw-cloud", ExposeType::PublicIP, active.clone())],
            Features {
                proxy: false,
                tunnel: true,
            },
        ),
        ("gateway deleted", vec![], BOTH),
    ];
    for (name, gws, f) in cases {
        let p = run(
            &gws,
            f,
            &node_ips,
            &[svc.clone(), foreign.clone()],
            std::slice::from_ref(&eps),
        );
        assert_eq!(summary(&p), want, "{name}");
    }
}

#[test]
fn public_services_only_for_load_balancer_and_valid_ports() {
    let gws = vec![
        gw(
            "gw-pub",
            ExposeType::PublicIP,
            vec![ep("a", EndpointType::Proxy, 10262)],
        ),
        gw(
            "gw-edge",
            ExposeType::NotExposed,
            vec![ep("b", EndpointType::Tunnel, 4500)],
        ),
        gw(
            "gw-lb",
            ExposeType::LoadBalancer,
            vec![
                ep("c", EndpointType::Tunnel, 0),
                ep("c", EndpointType::Proxy, 70000),
            ],
        ),
    ];
    let node_ips = ips(&[("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.3")]);
    let p = run(&gws, BOTH, &node_ips, &[], &[]);
    assert_eq!(summary(&p), Vec::<String>::new());
    assert_eq!(
        p.problems,
        vec![
            "gateway gw-lb: tunnel endpoint on node c has port 0 outside 1..65535; no Service",
            "gateway gw-lb: proxy endpoint on node c has port 70000 outside 1..65535; no Service",
            "no exposed gateway lists proxyHTTPPort/proxyHTTPSPort; x-raven-proxy-internal-svc not created",
        ]
    );
}

#[test]
fn service_names_are_stable_valid_and_bounded() {
    let n = public_service_name("gw-cloud", "node-1", &EndpointType::Proxy);
    assert_eq!(
        n,
        public_service_name("gw-cloud", "node-1", &EndpointType::Proxy)
    );
    assert!(n.starts_with("x-raven-proxy-svc-gw-cloud-"), "{n}");
    assert_eq!(n.len(), "x-raven-proxy-svc-gw-cloud-".len() + 8);
    let t = public_service_name("gw-cloud", "node-1", &EndpointType::Tunnel);
    assert!(t.starts_with("x-raven-tunnel-svc-gw-cloud-"), "{t}");
    let long = "gw-node-".to_string() + &"very.long.host.name".repeat(10);
    for name in [long.as_str(), "gw-node-a.b.c", "gw-Mixed_Case"] {
        let s = public_service_name(name, "n", &EndpointType::Tunnel);
        assert!(s.len() <= 63, "{s}");
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{s}"
        );
        assert!(!s.contains("--"), "{s}");
    }
    // Two long names differing only past the cut still differ.
    let a = public_service_name(&(long.clone() + "a"), "n", &EndpointType::Tunnel);
    let b = public_service_name(&(long + "b"), "n", &EndpointType::Tunnel);
    assert_ne!(a, b);
}

fn gw_ports(
    name: &str,
    expose: ExposeType,
    http: &str,
    https: &str,
    active: Vec<Endpoint>,
) -> Gateway {
    let mut g = gw(name, expose, active);
    g.spec.proxy_config = ProxyConfiguration {
        replicas: 1,
        proxy_http_port: http.into(),
        proxy_https_port: https.into(),
    };
    g
}

fn port_names(p: &[ServicePort]) -> Vec<(String, i32, i32)> {
    p.iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port,
                match p.target_port {
                    Some(IntOrString::Int(t)) => t,
                    _ => -1,
                },
            )
        })
        .collect()
}

/// Acceptance case 36: an LB Gateway with ports "10266,10267,10255,9100" and "10250,9445" and
/// two active proxy endpoints: the exact internal Service ports (sorted by name) and Endpoints.
#[test]
fn case36_internal_service_ports_and_endpoints() {
    let g = gw_ports(
        "gw-cloud",
        ExposeType::LoadBalancer,
        "10266,10267,10255,9100",
        "10250,9445",
        vec![
            ep("node-1", EndpointType::Proxy, 10262),
            ep("node-2", EndpointType::Proxy, 10262),
        ],
    );
    let node_ips = ips(&[("node-1", "10.0.0.1"), ("node-2", "10.0.0.2")]);
    let p = run(std::slice::from_ref(&g), BOTH, &node_ips, &[], &[]);
    let svc = p
        .actions
        .iter()
        .find_map(|a| match a {
            ServiceAction::CreateService(s)
                if s.metadata.name.as_deref() == Some(PROXY_INTERNAL_SERVICE) =>
            {
                Some(s.clone())
            }
            _ => None,
        })
        .expect("internal service created");
    let spec = svc.spec.clone().expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(spec.selector, None);
    assert_eq!(
        svc.metadata.labels,
        Some(BTreeMap::from([("app".into(), "raven".into())]))
    );
    let want = vec![
        ("http-10255".to_string(), 10255, 10264),
        ("http-10266".to_string(), 10266, 10264),
        ("http-10267".to_string(), 10267, 10264),
        ("http-9100".to_string(), 9100, 10264),
        ("https-10250".to_string(), 10250, 10263),
        ("https-9445".to_string(), 9445, 10263),
    ];
    assert_eq!(port_names(&spec.ports.expect("ports")), want);
    let eps = p
        .actions
        .iter()
        .find_map(|a| match a {
            ServiceAction::CreateEndpoints(e)
                if e.metadata.name.as_deref() == Some(PROXY_INTERNAL_SERVICE) =>
            {
                Some(e.clone())
            }
            _ => None,
        })
        .expect("internal endpoints created");
    let key = subsets_key(eps.subsets.as_deref().unwrap_or_default());
    assert_eq!(
        key,
        vec![(
            vec![
                ("10.0.0.1".to_string(), "node-1".to_string()),
                ("10.0.0.2".to_string(), "node-2".to_string())
            ],
            vec![
                ("http-10255".to_string(), "TCP".to_string(), 10264),
                ("http-10266".to_string(), "TCP".to_string(), 10264),
                ("http-10267".to_string(), "TCP".to_string(), 10264),
                ("http-9100".to_string(), "TCP".to_string(), 10264),
                ("https-10250".to_string(), "TCP".to_string(), 10263),
                ("https-9445".to_string(), "TCP".to_string(), 10263),
            ]
        )]
    );
    // And nothing to do the second time.
    let (svcs, epss) = applied(&p, vec![], vec![]);
    let again = run(std::slice::from_ref(&g), BOTH, &node_ips, &svcs, &epss);
    assert!(again.actions.is_empty(), "{:?}", again.actions);
}

/// Fix: two exposed Gateways listing the same ports give each port once; a port in both the
/// HTTP and HTTPS lists is kept once (HTTP) and reported; garbage is reported and skipped.
#[test]
fn internal_ports_are_deduplicated_across_gateways() {
    let a = gw_ports(
        "gw-a",
        ExposeType::LoadBalancer,
        "10255, 9100",
        "10250",
        vec![],
    );
    let b = gw_ports(
        "gw-b",
        ExposeType::PublicIP,
        "9100,x",
        "10250,10255",
        vec![],
    );
    let mut problems = Vec::new();
    let ports = internal_ports(&[&a, &b], AgentPorts::default(), &mut problems);
    assert_eq!(
        port_names(&ports),
        vec![
            ("http-10255".to_string(), 10255, 10264),
            ("http-9100".to_string(), 9100, 10264),
            ("https-10250".to_string(), 10250, 10263),
        ]
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("\"x\"")), "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("both HTTP and HTTPS")),
        "{problems:?}"
    );
}

/// Fix: the internal Endpoints is cleared (not left stale) when the last proxy endpoint goes;
/// it and the Service are deleted when proxy is disabled or nothing is exposed.
#[test]
fn internal_endpoints_follow_the_active_proxies() {
    let node_ips = ips(&[("node-1", "10.0.0.1")]);
    let with = gw_ports(
        "gw-cloud",
        ExposeType::LoadBalancer,
        "10255",
        "",
        vec![ep("node-1", EndpointType::Proxy, 10262)],
    );
    let p = run(std::slice::from_ref(&with), BOTH, &node_ips, &[], &[]);
    let (svcs, eps) = applied(&p, vec![], vec![]);
    let (svcs, eps): (Vec<_>, Vec<_>) = (
        svcs.into_iter()
            .filter(|s| s.metadata.name.as_deref() == Some(PROXY_INTERNAL_SERVICE))
            .collect(),
        eps.into_iter()
            .filter(|e| e.metadata.name.as_deref() == Some(PROXY_INTERNAL_SERVICE))
            .collect(),
    );
    assert_eq!((svcs.len(), eps.len()), (1, 1));

    let without = gw_ports("gw-cloud", ExposeType::LoadBalancer, "10255", "", vec![]);
    let p = run(std::slice::from_ref(&without), BOTH, &node_ips, &svcs, &eps);
    assert_eq!(
        summary(&p),
        vec![format!("patch eps {PROXY_INTERNAL_SERVICE} []")]
    );

    let off = Features {
        proxy: false,
        tunnel: true,
    };
    let p = run(std::slice::from_ref(&with), off, &node_ips, &svcs, &eps);
    assert_eq!(
        summary(&p),
        vec![
            format!("delete eps {PROXY_INTERNAL_SERVICE}"),
            format!("delete svc {PROXY_INTERNAL_SERVICE}"),
        ]
    );
    let p = run(&[], BOTH, &node_ips, &svcs, &eps);
    assert_eq!(summary(&p).len(), 2);
}

#[test]
fn agent_ports_table() {
    let cfg = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
    assert_eq!(AgentPorts::from_agent_config(None), AgentPorts::default());
    let cases = [
        (
            cfg("proxy-external-addr", "1.1.1.3:80"),
            80,
            4500,
            10264,
            10263,
        ),
        (
            cfg("tunnel-bind-addr", "127.0.0.4:80"),
            10262,
            80,
            10264,
            10263,
        ),
        (
            cfg("proxy-internal-insecure-addr", "127.0.0.1"),
            10262,
            4500,
            10264,
            10263,
        ),
        (
            cfg("proxy-internal-secure-addr", ":9443"),
            10262,
            4500,
            10264,
            9443,
        ),
        (
            cfg("proxy-internal-insecure-addr", "[fd00::1]:8080"),
            10262,
            4500,
            8080,
            10263,
        ),
        (cfg("tunnel-bind-addr", ":0"), 10262, 4500, 10264, 10263),
    ];
    for (data, pe, tb, ii, is) in cases {
        assert_eq!(
            AgentPorts::from_agent_config(Some(&data)),
            AgentPorts {
                proxy_external: pe,
                tunnel_bind: tb,
                proxy_internal_insecure: ii,
                proxy_internal_secure: is,
            },
            "{data:?}"
        );
    }
}
