//! Table tests of the election: upstream's pickup cases (reference §6, cases 20–26) with
//! exact-set assertions instead of counts, the upstream bugs as regression cases, and property
//! tests for determinism.

use super::*;
use k8s_openapi::jiff::SignedDuration;
use raven_api::gateway::v1beta1::{GatewaySpec, ProxyConfiguration, TunnelConfiguration};

const P: EndpointType = EndpointType::Proxy;
const T: EndpointType = EndpointType::Tunnel;

fn t0() -> Timestamp {
    "2025-01-01T00:00:00Z".parse().expect("valid timestamp")
}

fn ep(node: &str, t: EndpointType) -> Endpoint {
    Endpoint {
        node_name: node.into(),
        port: i64::from(t.default_port().unwrap_or_default()),
        type_: t,
        ..Default::default()
    }
}

/// An active endpoint as a previous election wrote it (with the config key upstream adds).
fn active(node: &str, t: EndpointType) -> Endpoint {
    let key = if t == P {
        CONFIG_ENABLE_L7_PROXY
    } else {
        CONFIG_ENABLE_L3_TUNNEL
    };
    let mut e = ep(node, t);
    e.config.insert(key.into(), "true".into());
    e
}

fn gw(
    proxy: i64,
    tunnel: i64,
    spec: &[(&str, EndpointType)],
    act: &[(&str, EndpointType)],
) -> Gateway {
    let mut g = Gateway::new(
        "gw-mock",
        GatewaySpec {
            proxy_config: ProxyConfiguration {
                replicas: proxy,
                ..Default::default()
            },
            tunnel_config: TunnelConfiguration { replicas: tunnel },
            endpoints: spec.iter().map(|(n, t)| ep(n, t.clone())).collect(),
            ..Default::default()
        },
    );
    if !act.is_empty() {
        g.status = Some(GatewayStatus {
            nodes: vec![],
            active_endpoints: act.iter().map(|(n, t)| active(n, t.clone())).collect(),
        });
    }
    g
}

fn node(name: &str, ready: bool) -> NodeView {
    NodeView {
        name: name.into(),
        ready,
        ..Default::default()
    }
}

const BOTH: Features = Features {
    proxy: true,
    tunnel: true,
};

fn run(g: &Gateway, members: &[NodeView]) -> Election {
    run_with(g, members, &BTreeMap::new(), BOTH, LeasePolicy::default())
}

fn run_with(
    g: &Gateway,
    members: &[NodeView],
    leases: &BTreeMap<String, LeaseView>,
    features: Features,
    lease_policy: LeasePolicy,
) -> Election {
    elect(&ElectionInput {
        gateway: g,
        members,
        leases,
        features,
        lease_policy,
        now: t0(),
    })
}

/// The published (nodeName, type) list, in published order.
fn elected(e: &Election) -> Vec<(String, EndpointType)> {
    e.status
        .active_endpoints
        .iter()
        .map(|a| (a.node_name.clone(), a.type_.clone()))
        .collect()
}

fn want(v: &[(&str, EndpointType)]) -> Vec<(String, EndpointType)> {
    v.iter().map(|(n, t)| (n.to_string(), t.clone())).collect()
}

/// Re-running on the election's own output: the fixed point every reconcile after the first
/// must reach (no write, no event).
fn rerun(g: &Gateway, e: &Election, members: &[NodeView]) -> Election {
    let mut g2 = g.clone();
    g2.status = Some(e.status.clone());
    run(&g2, members)
}

// ---------------------------------------------------------------------------------------------
// Upstream acceptance cases 20–24 (pickup election), exact sets.
// ---------------------------------------------------------------------------------------------

#[test]
fn case20_lost_active_endpoint() {
    let g = gw(
        1,
        1,
        &[("node-1", T), ("node-1", P)],
        &[("node-1", T), ("node-1", P)],
    );
    let e = run(&g, &[node("node-1", false)]);
    assert_eq!(elected(&e), want(&[]));
    assert_eq!(
        e.transitions,
        vec![
            Transition::LostSeat {
                node: "node-1".into(),
                endpoint_type: P,
                reason: SeatLoss::NotReady
            },
            Transition::LostSeat {
                node: "node-1".into(),
                endpoint_type: T,
                reason: SeatLoss::NotReady
            },
        ]
    );
}

#[test]
fn case21_switch_active_endpoint() {
    let g = gw(
        2,
        1,
        &[("node-1", T), ("node-1", P), ("node-2", T), ("node-2", P)],
        &[("node-1", T), ("node-1", P)],
    );
    let e = run(&g, &[node("node-1", false), node("node-2", true)]);
    assert_eq!(elected(&e), want(&[("node-2", P), ("node-2", T)]));
    assert_eq!(
        e.transitions,
        vec![
            Transition::Failover {
                endpoint_type: P,
                from: "node-1".into(),
                to: "node-2".into(),
                reason: SeatLoss::NotReady
            },
            Transition::Failover {
                endpoint_type: T,
                from: "node-1".into(),
                to: "node-2".into(),
                reason: SeatLoss::NotReady
            },
        ]
    );
}

#[test]
fn case22_elect_new_active_endpoint() {
    let g = gw(
        2,
        1,
        &[("node-1", T), ("node-2", P), ("node-3", P)],
        &[("node-1", T), ("node-2", P)],
    );
    let e = run(
        &g,
        &[
            node("node-1", false),
            node("node-2", true),
            node("node-3", true),
        ],
    );
    assert_eq!(elected(&e), want(&[("node-2", P), ("node-3", P)]));
    assert_eq!(
        e.transitions,
        vec![
            Transition::Elected {
                node: "node-3".into(),
                endpoint_type: P
            },
            Transition::LostSeat {
                node: "node-1".into(),
                endpoint_type: T,
                reason: SeatLoss::NotReady
            },
        ]
    );
}

#[test]
fn case23_no_available_active_endpoint() {
    let spec: Vec<(&str, EndpointType)> = ["node-1", "node-2", "node-3", "node-4"]
        .iter()
        .flat_map(|n| [(*n, T), (*n, P)])
        .collect();
    let g = gw(2, 1, &spec, &[("node-1", T), ("node-2", P)]);
    let members: Vec<NodeView> = ["node-1", "node-2", "node-3", "node-4"]
        .iter()
        .map(|n| node(n, false))
        .collect();
    let e = run(&g, &members);
    assert_eq!(elected(&e), want(&[]));
    assert_eq!(e.transitions.len(), 2, "{:?}", e.transitions);
    assert!(e.transitions.iter().all(Transition::is_warning));
}

#[test]
fn case24_do_not_switch_active_endpoint() {
    let g = gw(
        1,
        1,
        &[("node-1", T), ("node-2", T), ("node-2", P)],
        &[("node-2", T), ("node-2", P)],
    );
    let e = run(&g, &[node("node-1", false), node("node-2", true)]);
    assert_eq!(elected(&e), want(&[("node-2", P), ("node-2", T)]));
    assert_eq!(e.transitions, vec![]);
    // The stored active endpoints are exactly what we would write.
    let stored = normalize_status(g.status.as_ref().expect("fixture has status"));
    assert_eq!(stored.active_endpoints, e.status.active_endpoints);
}

/// Stickiness beats spec order: node-1 becoming Ready again does not take node-2's seat.
#[test]
fn sticky_endpoint_keeps_its_seat_when_an_earlier_one_recovers() {
    let g = gw(1, 1, &[("node-1", T), ("node-2", T)], &[("node-2", T)]);
    let e = run(&g, &[node("node-1", true), node("node-2", true)]);
    assert_eq!(elected(&e), want(&[("node-2", T)]));
    assert!(e.transitions.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Acceptance case 26 (addExtraAllowedSubnet) and status.nodes.
// ---------------------------------------------------------------------------------------------

#[test]
fn case26_extra_allowed_cidrs_go_to_the_active_tunnel_node() {
    let mut g = gw(0, 1, &[("node-1", T)], &[]);
    g.metadata.annotations = Some(BTreeMap::from([(
        ANNOTATION_EXTRA_ALLOWED_SOURCE_CIDRS.to_owned(),
        "1.1.1.1/32,2.2.2.2/32".to_owned(),
    )]));
    let mut n1 = node("node-1", true);
    n1.pod_cidrs = vec!["10.244.10.0/24".into()];
    let mut n2 = node("node-2", true);
    n2.pod_cidrs = vec!["10.244.11.0/24".into()];
    let members = [n2, n1];
    let e = run(&g, &members);
    assert_eq!(elected(&e), want(&[("node-1", T)]));
    assert_eq!(
        e.status.nodes,
        vec![
            NodeInfo {
                node_name: "node-1".into(),
                private_ip: String::new(),
                subnets: vec![
                    "10.244.10.0/24".into(),
                    "1.1.1.1/32".into(),
                    "2.2.2.2/32".into()
                ],
            },
            NodeInfo {
                node_name: "node-2".into(),
                private_ip: String::new(),
                subnets: vec!["10.244.11.0/24".into()],
            },
        ]
    );
    // Idempotent: a second pass computes the same status, nothing appended twice.
    let e2 = rerun(&g, &e, &members);
    assert_eq!(e2.status, e.status);
}

#[test]
fn extra_cidrs_edge_cases() {
    let annotated = |v: &str| {
        let mut g = gw(0, 1, &[("node-1", T)], &[]);
        g.metadata.annotations = Some(BTreeMap::from([(
            ANNOTATION_EXTRA_ALLOWED_SOURCE_CIDRS.to_owned(),
            v.to_owned(),
        )]));
        g
    };
    // Malformed: reported, nothing published (upstream copies garbage into subnets).
    let e = run(
        &annotated("1.1.1.1/32, 2.2.2.2/32"),
        &[node("node-1", true)],
    );
    assert_eq!(e.status.nodes[0].subnets, Vec::<String>::new());
    assert_eq!(e.problems.len(), 1, "{:?}", e.problems);
    // No active tunnel endpoint: nothing appended anywhere.
    let e = run(&annotated("1.1.1.1/32"), &[node("node-1", false)]);
    assert_eq!(e.status.nodes[0].subnets, Vec::<String>::new());
    assert!(e.problems.is_empty());
    // Duplicate of a pod CIDR: not repeated.
    let mut n = node("node-1", true);
    n.pod_cidrs = vec!["10.0.0.0/24".into()];
    let e = run(&annotated("10.0.0.0/24,fd00::/64"), &[n]);
    assert_eq!(
        e.status.nodes[0].subnets,
        vec!["10.0.0.0/24".to_string(), "fd00::/64".to_string()]
    );
}

#[test]
fn status_nodes_list_every_member_sorted_with_dual_stack() {
    let g = gw(1, 1, &[("b", T)], &[]);
    let a = NodeView {
        name: "a".into(),
        ready: false,
        private_ip: Some("fd00::a".parse().expect("ip")),
        pod_cidrs: vec!["10.244.0.0/24".into(), "fd00:244::/64".into()],
        ..Default::default()
    };
    let b = NodeView {
        name: "b".into(),
        ready: true,
        private_ip: Some("192.168.0.2".parse().expect("ip")),
        ..Default::default()
    };
    let e = run(&g, &[b, a]);
    assert_eq!(
        e.status.nodes,
        vec![
            NodeInfo {
                node_name: "a".into(),
                private_ip: "fd00::a".into(),
                subnets: vec!["10.244.0.0/24".into(), "fd00:244::/64".into()],
            },
            NodeInfo {
                node_name: "b".into(),
                private_ip: "192.168.0.2".into(),
                subnets: vec![],
            },
        ]
    );
    // The CRD requires privateIP and subnets: they are on the wire even when empty.
    let json = k8s_openapi::serde_json::to_value(&e.status).expect("serialize");
    assert_eq!(
        json["nodes"][1]["subnets"],
        k8s_openapi::serde_json::json!([])
    );
    assert_eq!(json["nodes"][1]["privateIP"], "192.168.0.2");
}

// ---------------------------------------------------------------------------------------------
// Spec → status copy, config keys, feature switches.
// ---------------------------------------------------------------------------------------------

#[test]
fn active_endpoints_are_spec_copies_with_the_enable_key() {
    let mut g = gw(1, 1, &[("n1", P), ("n1", T)], &[("n1", T)]);
    let t = &mut g.spec.endpoints[1];
    t.public_ip = "203.0.113.7".into();
    t.nat_type = "Symmetric NAT".into();
    t.public_port = 31000;
    t.config.insert("publicKey".into(), "abc=".into());
    let e = run(&g, &[node("n1", true)]);
    let tunnel = &e.status.active_endpoints[1];
    assert_eq!(tunnel.public_ip, "203.0.113.7");
    assert_eq!(tunnel.nat_type, "Symmetric NAT");
    assert_eq!(tunnel.public_port, 31000);
    assert_eq!(
        tunnel.config,
        BTreeMap::from([
            ("enable-l3-tunnel".to_string(), "true".to_string()),
            ("publicKey".to_string(), "abc=".to_string()),
        ])
    );
    assert_eq!(
        e.status.active_endpoints[0].config,
        BTreeMap::from([("enable-l7-proxy".to_string(), "true".to_string())])
    );
    // The publicKey reaching status is a change to write, but no transition.
    assert!(status_changed(g.status.as_ref(), &e.status));
    assert_eq!(
        e.transitions,
        vec![Transition::Elected {
            node: "n1".into(),
            endpoint_type: P
        }]
    );
}

#[test]
fn raven_cfg_switches_table() {
    let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let cases: Vec<(Option<BTreeMap<String, String>>, Features)> = vec![
        (None, Features::default()),
        (Some(data(&[])), Features::default()),
        (
            Some(data(&[
                ("enable-l7-proxy", "TRUE"),
                ("enable-l3-tunnel", "false"),
            ])),
            Features {
                proxy: true,
                tunnel: false,
            },
        ),
        (
            Some(data(&[("enable-l3-tunnel", "True"), ("acl-id", "x")])),
            Features {
                proxy: false,
                tunnel: true,
            },
        ),
        (
            Some(data(&[("enable-l7-proxy", "yes")])),
            Features::default(),
        ),
    ];
    for (d, want) in cases {
        assert_eq!(Features::from_raven_cfg(d.as_ref()), want, "{d:?}");
    }
}

#[test]
fn disabled_feature_drops_its_endpoints() {
    let g = gw(1, 1, &[("n1", P), ("n1", T)], &[("n1", P), ("n1", T)]);
    let only_tunnel = Features {
        proxy: false,
        tunnel: true,
    };
    let e = run_with(
        &g,
        &[node("n1", true)],
        &BTreeMap::new(),
        only_tunnel,
        LeasePolicy::default(),
    );
    assert_eq!(elected(&e), want(&[("n1", T)]));
    assert_eq!(
        e.transitions,
        vec![Transition::LostSeat {
            node: "n1".into(),
            endpoint_type: P,
            reason: SeatLoss::FeatureDisabled
        }]
    );
    // Missing raven-cfg: nothing at all is elected (upstream semantics).
    let e = run_with(
        &g,
        &[node("n1", true)],
        &BTreeMap::new(),
        Features::from_raven_cfg(None),
        LeasePolicy::default(),
    );
    assert_eq!(elected(&e), want(&[]));
}

// ---------------------------------------------------------------------------------------------
// Health: Leases.
// ---------------------------------------------------------------------------------------------

fn lease(renewed_secs_ago: i64, duration: i32) -> LeaseView {
    LeaseView {
        renewed: Some(
            t0().checked_sub(SignedDuration::from_secs(renewed_secs_ago))
                .expect("in range"),
        ),
        duration_secs: Some(duration),
    }
}

#[test]
fn expired_lease_fails_over_while_the_node_is_still_ready() {
    let g = gw(1, 1, &[("n1", T), ("n2", T)], &[("n1", T)]);
    let leases = BTreeMap::from([
        ("n1".to_string(), lease(20, 10)),
        ("n2".to_string(), lease(1, 10)),
    ]);
    let members = [node("n1", true), node("n2", true)];
    let e = run_with(&g, &members, &leases, BOTH, LeasePolicy::default());
    assert_eq!(elected(&e), want(&[("n2", T)]));
    assert_eq!(
        e.transitions,
        vec![Transition::Failover {
            endpoint_type: T,
            from: "n1".into(),
            to: "n2".into(),
            reason: SeatLoss::LeaseExpired
        }]
    );
}

#[test]
fn lease_policy_table() {
    let g = gw(0, 1, &[("n1", T)], &[]);
    let members = [node("n1", true)];
    let none = BTreeMap::new();
    let live = BTreeMap::from([("n1".to_string(), lease(1, 10))]);
    let dead = BTreeMap::from([("n1".to_string(), lease(11, 10))]);
    let cases = [
        (
            "missing, lenient",
            &none,
            LeasePolicy::MissingIsHealthy,
            true,
        ),
        ("missing, required", &none, LeasePolicy::Required, false),
        ("live, required", &live, LeasePolicy::Required, true),
        ("live, lenient", &live, LeasePolicy::MissingIsHealthy, true),
        (
            "expired, lenient",
            &dead,
            LeasePolicy::MissingIsHealthy,
            false,
        ),
        ("expired, required", &dead, LeasePolicy::Required, false),
    ];
    for (name, leases, policy, want_elected) in cases {
        let e = run_with(&g, &members, leases, BOTH, policy);
        assert_eq!(
            !e.status.active_endpoints.is_empty(),
            want_elected,
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Regression cases for upstream bugs and quirks (reference §3.4, §3.8, §3.9).
// ---------------------------------------------------------------------------------------------

/// §3.8: upstream compares whole endpoints, including the config key it adds itself, so it
/// emits "Elected" on every reconcile. Ours: a second pass is a fixed point.
#[test]
fn regression_no_events_and_no_write_on_a_steady_reconcile() {
    let g = gw(2, 1, &[("a", P), ("b", P), ("a", T)], &[]);
    let members = [node("a", true), node("b", true)];
    let first = run(&g, &members);
    assert_eq!(first.transitions.len(), 3);
    let second = rerun(&g, &first, &members);
    assert!(second.transitions.is_empty(), "{:?}", second.transitions);
    assert!(!status_changed(Some(&first.status), &second.status));
    assert_eq!(second.status, first.status);
}

/// §3.4: when Replicas shrinks below the sticky set, upstream keeps a random subset (Go map
/// order). Ours keeps the earliest in spec order, every time.
#[test]
fn regression_shrinking_replicas_is_deterministic() {
    let g = gw(
        1,
        0,
        &[("c", P), ("a", P), ("b", P)],
        &[("a", P), ("b", P), ("c", P)],
    );
    let members = [node("a", true), node("b", true), node("c", true)];
    let e = run(&g, &members);
    assert_eq!(elected(&e), want(&[("c", P)]));
    assert_eq!(
        e.transitions,
        vec![
            Transition::LostSeat {
                node: "a".into(),
                endpoint_type: P,
                reason: SeatLoss::OverCapacity
            },
            Transition::LostSeat {
                node: "b".into(),
                endpoint_type: P,
                reason: SeatLoss::OverCapacity
            },
        ]
    );
}

/// §3.4: negative Replicas elects every eligible endpoint upstream. Ours: nothing, reported.
#[test]
fn regression_negative_replicas_elect_nothing() {
    let g = gw(-1, -1, &[("a", P), ("b", P), ("a", T)], &[]);
    let e = run(&g, &[node("a", true), node("b", true)]);
    assert_eq!(elected(&e), want(&[]));
    assert_eq!(e.problems.len(), 2, "{:?}", e.problems);
}

/// §3.4: duplicate spec entries for one (node, type) can be elected twice upstream.
#[test]
fn regression_duplicate_spec_entries_elected_once() {
    let g = gw(2, 1, &[("a", P), ("a", P), ("b", P)], &[]);
    let e = run(&g, &[node("a", true), node("b", true)]);
    assert_eq!(elected(&e), want(&[("a", P), ("b", P)]));
    assert_eq!(e.problems.len(), 1, "{:?}", e.problems);
}

/// Eligibility: an endpoint on a Ready node that is not labelled into this Gateway, or of an
/// unknown type, is never elected; a spec removal loses the seat with that reason.
#[test]
fn regression_eligibility_table() {
    let mut g = gw(2, 1, &[("outsider", P), ("a", P)], &[("gone", P)]);
    g.spec.endpoints.push(Endpoint {
        node_name: "a".into(),
        type_: EndpointType::Unknown("vpn".into()),
        ..Default::default()
    });
    let e = run(&g, &[node("a", true), node("gone", true)]);
    assert_eq!(elected(&e), want(&[("a", P)]));
    assert_eq!(
        e.transitions,
        vec![Transition::Failover {
            endpoint_type: P,
            from: "gone".into(),
            to: "a".into(),
            reason: SeatLoss::RemovedFromSpec
        }]
    );
    assert_eq!(e.problems.len(), 1, "{:?}", e.problems);
}

/// Taking over from upstream's controller (status sorted by nodeName only, proxy/tunnel in
/// either order): no write.
#[test]
fn regression_takeover_from_differently_sorted_status_writes_nothing() {
    let g = gw(1, 1, &[("a", P), ("a", T)], &[]);
    let members = [node("b", false), node("a", true)];
    let ours = run(&g, &members).status;
    let mut theirs = ours.clone();
    theirs.active_endpoints.reverse();
    theirs.nodes.reverse();
    assert_ne!(theirs, ours);
    assert!(!status_changed(Some(&theirs), &ours));
    assert!(status_changed(None, &ours));
    assert!(!status_changed(None, &GatewayStatus::default()));
}

#[test]
fn transition_events_table() {
    let cases = [
        (
            Transition::Elected {
                node: "a".into(),
                endpoint_type: T,
            },
            "ActiveEndpointElected",
            false,
            "tunnel endpoint on node a elected active",
        ),
        (
            Transition::LostSeat {
                node: "a".into(),
                endpoint_type: P,
                reason: SeatLoss::LeaseExpired,
            },
            "ActiveEndpointLost",
            true,
            "proxy endpoint on node a is no longer active: node health lease expired",
        ),
        (
            Transition::Failover {
                endpoint_type: T,
                from: "a".into(),
                to: "b".into(),
                reason: SeatLoss::NotReady,
            },
            "ActiveEndpointFailover",
            true,
            "tunnel endpoint moved from node a to node b: node is not Ready",
        ),
    ];
    for (t, reason, warning, message) in cases {
        assert_eq!(t.event_reason(), reason);
        assert_eq!(t.is_warning(), warning);
        assert_eq!(t.message(), message);
    }
}

#[test]
fn transition_events_merge_per_reason() {
    let el = |n: &str, t: EndpointType| Transition::Elected {
        node: n.into(),
        endpoint_type: t,
    };
    let lost = Transition::LostSeat {
        node: "c".into(),
        endpoint_type: P,
        reason: SeatLoss::NotReady,
    };
    let ev = |reason, warning, message: &str| TransitionEvent {
        reason,
        warning,
        message: message.into(),
    };
    let cases: Vec<(Vec<Transition>, Vec<TransitionEvent>)> = vec![
        (vec![], vec![]),
        (
            vec![el("a", P), el("a", T)],
            vec![ev(
                "ActiveEndpointElected",
                false,
                "proxy endpoint on node a elected active; tunnel endpoint on node a elected active",
            )],
        ),
        (
            vec![lost.clone(), el("b", T)],
            vec![
                ev(
                    "ActiveEndpointLost",
                    true,
                    "proxy endpoint on node c is no longer active: node is not Ready",
                ),
                ev(
                    "ActiveEndpointElected",
                    false,
                    "tunnel endpoint on node b elected active",
                ),
            ],
        ),
    ];
    for (input, want) in cases {
        assert_eq!(transition_events(&input), want, "{input:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------------

mod props {
    use super::*;
    use proptest::prelude::*;

    /// spec (node, is_tunnel), previous active, members (node, ready), proxy and tunnel
    /// Replicas, leases (node, seconds since renewal).
    type Case = (
        Vec<(u8, bool)>,
        Vec<(u8, bool)>,
        Vec<(u8, bool)>,
        i64,
        i64,
        Vec<(u8, u8)>,
    );

    fn arb_case() -> impl Strategy<Value = Case> {
        (
            proptest::collection::vec((0u8..6, any::<bool>()), 0..10), // spec (node, is_tunnel)
            proptest::collection::vec((0u8..6, any::<bool>()), 0..6),  // previous active
            proptest::collection::vec((0u8..6, any::<bool>()), 0..8),  // members (node, ready)
            -1i64..4,
            -1i64..3,
            proptest::collection::vec((0u8..6, 0u8..30), 0..6), // leases (node, secs ago)
        )
    }

    fn build(
        spec: &[(u8, bool)],
        prev: &[(u8, bool)],
        members: &[(u8, bool)],
        p: i64,
        t: i64,
        leases: &[(u8, u8)],
    ) -> (Gateway, Vec<NodeView>, BTreeMap<String, LeaseView>) {
        let ty = |b: bool| if b { T } else { P };
        let name = |n: u8| format!("n{n}");
        let spec: Vec<(String, EndpointType)> =
            spec.iter().map(|(n, b)| (name(*n), ty(*b))).collect();
        let prev: Vec<(String, EndpointType)> =
            prev.iter().map(|(n, b)| (name(*n), ty(*b))).collect();
        let sref: Vec<(&str, EndpointType)> =
            spec.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
        let pref: Vec<(&str, EndpointType)> =
            prev.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
        let g = gw(p, t, &sref, &pref);
        let mut seen = BTreeSet::new();
        let ms = members
            .iter()
            .filter(|(n, _)| seen.insert(*n))
            .map(|(n, r)| node(&name(*n), *r))
            .collect();
        let ls = leases
            .iter()
            .map(|(n, ago)| (name(*n), lease(i64::from(*ago), 10)))
            .collect();
        (g, ms, ls)
    }

    proptest! {
        #[test]
        fn election_is_deterministic_bounded_and_a_fixed_point(
            (spec, prev, members, p, t, leases) in arb_case()
        ) {
            let (g, ms, ls) = build(&spec, &prev, &members, p, t, &leases);
            let e = run_with(&g, &ms, &ls, BOTH, LeasePolicy::default());

            // Member order does not matter.
            let mut rev = ms.clone();
            rev.reverse();
            prop_assert_eq!(&run_with(&g, &rev, &ls, BOTH, LeasePolicy::default()), &e);

            // Bounded by Replicas, only eligible endpoints, no duplicates.
            for (ty, cap) in [(P, p), (T, t)] {
                let n = e.status.active_endpoints_of(ty).count();
                prop_assert!(i64::try_from(n).unwrap() <= cap.max(0));
            }
            let keys: BTreeSet<_> = e.status.active_endpoints.iter()
                .map(|a| (a.node_name.clone(), a.type_.clone())).collect();
            prop_assert_eq!(keys.len(), e.status.active_endpoints.len());
            for a in &e.status.active_endpoints {
                let m = ms.iter().find(|m| m.name == a.node_name);
                prop_assert!(m.is_some_and(|m| m.ready));
                prop_assert!(ls.get(&a.node_name).is_none_or(|l| l.is_live(t0())));
                prop_assert!(g.spec.endpoints.iter().any(|s| s.key() == a.key()));
            }

            // Every seat change is reported once; the next pass is silent.
            let mut g2 = g.clone();
            g2.status = Some(e.status.clone());
            let again = run_with(&g2, &ms, &ls, BOTH, LeasePolicy::default());
            prop_assert!(again.transitions.is_empty());
            prop_assert!(!status_changed(Some(&e.status), &again.status));
        }
    }
}
