//! Table tests of the domain planner: domains from pools, names, candidates, ownership (never
//! taking over or deleting user Gateways), spec carry-over and idempotence.

use super::*;
use raven_api::gateway::validation::validate;

fn node(name: &str, pool: Option<&str>) -> NodeView {
    let mut labels = crate::model::Labels::default();
    if let Some(p) = pool {
        labels.insert(LABEL_NODEPOOL.to_owned(), p.to_owned());
    }
    NodeView {
        name: name.into(),
        labels,
        ready: true,
        ..Default::default()
    }
}

fn with_label(mut n: NodeView, k: &str, v: &str) -> NodeView {
    n.labels.insert(k.into(), v.into());
    n
}

fn pool(t: PoolType, connected: bool) -> PoolInfo {
    PoolInfo {
        pool_type: t,
        inter_connectivity: connected,
        uid: None,
    }
}

fn run(
    nodes: &[NodeView],
    pools: Option<&BTreeMap<String, PoolInfo>>,
    existing: &[Gateway],
    config: &DomainConfig,
) -> DomainPlan {
    plan(&DomainInput {
        nodes,
        pools,
        existing,
        config,
    })
}

/// (gateway name, members) of the desired Gateways.
fn domains(p: &DomainPlan) -> Vec<(String, Vec<String>)> {
    p.desired
        .iter()
        .map(|d| (d.name.clone(), d.members.clone()))
        .collect()
}

fn d(name: &str, members: &[&str]) -> (String, Vec<String>) {
    (name.into(), members.iter().map(|s| s.to_string()).collect())
}

fn lc(node: &str, from: Option<&str>, to: Option<&str>) -> LabelChange {
    LabelChange {
        node: node.into(),
        from: from.map(Into::into),
        to: to.map(Into::into),
    }
}

/// Names of created, updated and deleted Gateways, prefixed `+`, `~`, `-`.
fn actions(p: &DomainPlan) -> Vec<String> {
    p.gateway_actions
        .iter()
        .map(|a| match a {
            GatewayAction::Create(g) => format!("+{}", g.name()),
            GatewayAction::UpdateSpec { name, .. } => format!("~{name}"),
            GatewayAction::SetOwners { name, .. } => format!("^{name}"),
            GatewayAction::Delete { name } => format!("-{name}"),
        })
        .collect()
}

fn user_gateway(name: &str) -> Gateway {
    Gateway::new(name, GatewaySpec::default())
}

/// Applies a plan to in-memory state, the way the reconciler applies it to the API server.
fn apply(p: &DomainPlan, nodes: &mut [NodeView], gws: &mut Vec<Gateway>) {
    for a in &p.gateway_actions {
        match a {
            GatewayAction::Create(g) => gws.push((**g).clone()),
            GatewayAction::UpdateSpec { name, spec } => {
                let g = gws.iter_mut().find(|g| g.name() == name).expect("exists");
                g.spec = spec.clone();
            }
            GatewayAction::SetOwners { name, owners } => {
                let g = gws.iter_mut().find(|g| g.name() == name).expect("exists");
                g.metadata.owner_references = Some(owners.clone());
            }
            GatewayAction::Delete { name } => gws.retain(|g| g.name() != name),
        }
    }
    for c in &p.label_changes {
        let n = nodes.iter_mut().find(|n| n.name == c.node).expect("exists");
        match &c.to {
            Some(v) => n.labels.insert(LABEL_GATEWAY.into(), v.clone()),
            None => n.labels.remove(LABEL_GATEWAY),
        };
    }
}

#[test]
fn label_only_mode_pools_and_solo_nodes() {
    let cfg = DomainConfig::default();
    let nodes = [
        node("b", Some("hz")),
        node("a", Some("hz")),
        node("c", None),
    ];
    let p = run(&nodes, None, &[], &cfg);
    assert_eq!(
        domains(&p),
        vec![d("gw-hz", &["a", "b"]), d("gw-node-c", &["c"])]
    );
    assert_eq!(actions(&p), vec!["+gw-hz", "+gw-node-c"]);
    assert_eq!(
        p.label_changes,
        vec![
            lc("a", None, Some("gw-hz")),
            lc("b", None, Some("gw-hz")),
            lc("c", None, Some("gw-node-c")),
        ]
    );
    assert!(p.problems.is_empty());
    let GatewayAction::Create(gw) = &p.gateway_actions[0] else {
        panic!("first action is a create: {:?}", p.gateway_actions);
    };
    assert!(is_managed(gw));
    assert_eq!(
        gw.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_DOMAIN)),
        Some(&"pool/hz".to_string())
    );
    let eps: Vec<(&str, &str, i64, bool)> = gw
        .spec
        .endpoints
        .iter()
        .map(|e| (e.node_name.as_str(), e.type_.as_str(), e.port, e.under_nat))
        .collect();
    assert_eq!(
        eps,
        vec![
            ("a", "proxy", 10262, true),
            ("a", "tunnel", 4500, true),
            ("b", "proxy", 10262, true),
            ("b", "tunnel", 4500, true),
        ]
    );
    assert_eq!(gw.spec.proxy_config.replicas, 1);
    assert_eq!(gw.spec.tunnel_config.replicas, 1);
    assert_eq!(gw.spec.expose_type, ExposeType::NotExposed);
    assert_eq!(
        gw.spec
            .node_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .and_then(|m| m.get(LABEL_GATEWAY)),
        Some(&"gw-hz".to_string())
    );
}

#[test]
fn nodepool_mode_cloud_connected_and_unconnected_pools() {
    let cfg = DomainConfig::default();
    let pools = BTreeMap::from([
        ("cloud-1".to_string(), pool(PoolType::Cloud, true)),
        ("cloud-2".to_string(), pool(PoolType::Cloud, false)),
        ("hz".to_string(), pool(PoolType::Edge, true)),
        ("loose".to_string(), pool(PoolType::Edge, false)),
    ]);
    let nodes = [
        node("c1", Some("cloud-1")),
        node("c2", Some("cloud-2")),
        node("h1", Some("hz")),
        node("l1", Some("loose")),
        node("l2", Some("loose")),
        node("x", Some("missing")),
        node("y", None),
    ];
    let p = run(&nodes, Some(&pools), &[], &cfg);
    assert_eq!(
        domains(&p),
        vec![
            d("gw-cloud", &["c1", "c2"]),
            d("gw-hz", &["h1"]),
            d("gw-node-l1", &["l1"]),
            d("gw-node-l2", &["l2"]),
            d("gw-node-y", &["y"]),
        ]
    );
    assert_eq!(
        p.problems,
        vec![DomainProblem::PoolNotFound {
            node: "x".into(),
            pool: "missing".into()
        }]
    );
    assert!(p.label_changes.iter().all(|c| c.node != "x"));
    let cloud = &p.desired[0];
    assert_eq!(cloud.domain, Domain::Cloud);
    assert_eq!(cloud.spec.expose_type, ExposeType::LoadBalancer);
    assert!(cloud.spec.endpoints.iter().all(|e| !e.under_nat));
}

/// (gateway name, owner references as "Kind/name/uid/controller") of created Gateways.
fn created_owners(p: &DomainPlan) -> Vec<(String, Vec<String>)> {
    p.gateway_actions
        .iter()
        .filter_map(|a| match a {
            GatewayAction::Create(g) => Some((g.name().to_owned(), owner_strings(g))),
            _ => None,
        })
        .collect()
}

fn owner_strings(g: &Gateway) -> Vec<String> {
    g.metadata
        .owner_references
        .iter()
        .flatten()
        .map(|o| {
            format!(
                "{}/{}/{}/{}/{:?}",
                o.api_version, o.kind, o.name, o.uid, o.controller
            )
        })
        .collect()
}

fn pool_uid(t: PoolType, connected: bool, uid: &str) -> PoolInfo {
    PoolInfo {
        uid: Some(uid.into()),
        ..pool(t, connected)
    }
}

/// NodePool ownership: a connected Edge pool's Gateway is owned by its NodePool (by uid);
/// the cloud Gateway (several pools), solo Gateways and label-only pools have no owner.
#[test]
fn pool_gateways_are_owned_by_their_nodepool() {
    let cfg = DomainConfig::default();
    let pools = BTreeMap::from([
        (
            "cloud".to_string(),
            pool_uid(PoolType::Cloud, true, "u-cloud"),
        ),
        ("hz".to_string(), pool_uid(PoolType::Edge, true, "u-hz")),
        ("sh".to_string(), pool_uid(PoolType::Edge, false, "u-sh")),
        ("nouid".to_string(), pool(PoolType::Edge, true)),
    ]);
    let nodes = [
        node("c1", Some("cloud")),
        node("h1", Some("hz")),
        node("s1", Some("sh")),
        node("n1", Some("nouid")),
        node("y", None),
    ];
    let p = run(&nodes, Some(&pools), &[], &cfg);
    assert_eq!(
        created_owners(&p),
        vec![
            ("gw-cloud".into(), vec![]),
            (
                "gw-hz".into(),
                vec!["apps.openyurt.io/v1beta2/NodePool/hz/u-hz/Some(true)".into()]
            ),
            ("gw-nouid".into(), vec![]),
            ("gw-node-s1".into(), vec![]),
            ("gw-node-y".into(), vec![]),
        ]
    );
    // Label-only mode (no NodePool API): the same pool Gateway has no owner.
    let label_only = run(&nodes, None, &[], &cfg);
    assert!(
        created_owners(&label_only)
            .iter()
            .all(|(_, o)| o.is_empty()),
        "{:?}",
        created_owners(&label_only)
    );

    // Converged: applying the plan leaves nothing to do.
    let (mut ns, mut gws) = (nodes.to_vec(), Vec::new());
    apply(&p, &mut ns, &mut gws);
    let again = run(&ns, Some(&pools), &gws, &cfg);
    assert_eq!(actions(&again), Vec::<String>::new());

    // A Gateway created before the NodePool API appeared (or with a stale uid) gets the owner
    // set; a foreign owner someone added is kept.
    let hz = gws.iter_mut().find(|g| g.name() == "gw-hz").expect("gw-hz");
    let foreign = OwnerReference {
        api_version: "example.com/v1".into(),
        kind: "Thing".into(),
        name: "t".into(),
        uid: "u-t".into(),
        ..Default::default()
    };
    hz.metadata.owner_references = Some(vec![
        foreign.clone(),
        OwnerReference {
            uid: "old-uid".into(),
            ..pool_owner(&Domain::Pool("hz".into()), Some(&pools)).expect("owner")
        },
    ]);
    let fix = run(&ns, Some(&pools), &gws, &cfg);
    assert_eq!(actions(&fix), vec!["^gw-hz".to_string()]);
    let GatewayAction::SetOwners { owners, .. } = &fix.gateway_actions[0] else {
        panic!("{:?}", fix.gateway_actions)
    };
    assert_eq!(owners.len(), 2);
    assert_eq!(owners[0], foreign);
    assert_eq!(
        (owners[1].name.as_str(), owners[1].uid.as_str()),
        ("hz", "u-hz")
    );
    apply(&fix, &mut ns, &mut gws);
    assert_eq!(
        actions(&run(&ns, Some(&pools), &gws, &cfg)),
        Vec::<String>::new()
    );

    // Pools unknown (NodePool API not read, e.g. discovery failed): an owner already set is
    // left alone rather than stripped from every pool Gateway and put back later.
    let hz_nodes = [node("h1", Some("hz"))];
    let (mut ns2, mut gws2) = (hz_nodes.to_vec(), Vec::new());
    apply(
        &run(&hz_nodes, Some(&pools), &[], &cfg),
        &mut ns2,
        &mut gws2,
    );
    assert_eq!(owner_strings(&gws2[0]).len(), 1, "{:?}", gws2[0].metadata);
    assert_eq!(actions(&run(&ns2, None, &gws2, &cfg)), Vec::<String>::new());
}

#[test]
fn cloud_pools_by_config_and_solo_switch() {
    let cfg = DomainConfig {
        cloud_pools: BTreeSet::from(["center".to_string()]),
        cloud_expose_type: ExposeType::PublicIP,
        solo_gateways: false,
        edge_under_nat: false,
        ..Default::default()
    };
    let nodes = [
        node("m", Some("center")),
        node("e", Some("edge")),
        node("z", None),
    ];
    let p = run(&nodes, None, &[], &cfg);
    assert_eq!(
        domains(&p),
        vec![d("gw-cloud", &["m"]), d("gw-edge", &["e"])]
    );
    assert_eq!(p.desired[0].spec.expose_type, ExposeType::PublicIP);
    assert!(p.desired[1].spec.endpoints.iter().all(|e| !e.under_nat));
    assert!(p.label_changes.iter().all(|c| c.node != "z"));
}

#[test]
fn candidates_are_opt_in_else_everyone() {
    let cfg = DomainConfig {
        proxy_replicas: 3,
        ..Default::default()
    };
    let nodes = [
        with_label(node("a", Some("hz")), DEFAULT_CANDIDATE_LABEL, "true"),
        node("b", Some("hz")),
        with_label(node("c", Some("hz")), DEFAULT_CANDIDATE_LABEL, "false"),
        with_label(node("d", Some("hz")), DEFAULT_CANDIDATE_LABEL, "true"),
        node("e", Some("sz")),
    ];
    let p = run(&nodes, None, &[], &cfg);
    let hz = &p.desired[0];
    assert_eq!(hz.members, vec!["a", "b", "c", "d"]);
    let cands: BTreeSet<&str> = hz
        .spec
        .endpoints
        .iter()
        .map(|e| e.node_name.as_str())
        .collect();
    assert_eq!(cands, BTreeSet::from(["a", "d"]));
    // Capped at the number of candidates so the Gateway passes validation.
    assert_eq!(hz.spec.proxy_config.replicas, 2);
    let sz = &p.desired[1];
    assert_eq!(sz.spec.endpoints.len(), 2);
    assert_eq!(sz.spec.proxy_config.replicas, 1);
}

#[test]
fn desired_gateways_pass_validation() {
    let cfg = DomainConfig {
        cloud_pools: BTreeSet::from(["c".to_string()]),
        proxy_replicas: 5,
        tunnel_replicas: 3,
        ..Default::default()
    };
    let nodes = [
        node("c1", Some("c")),
        node("c2", Some("c")),
        node("e1", Some("e")),
        node("s", None),
    ];
    let p = run(&nodes, None, &[], &cfg);
    assert_eq!(p.gateway_actions.len(), 3);
    for a in &p.gateway_actions {
        let GatewayAction::Create(g) = a else {
            panic!("only creates expected: {a:?}");
        };
        validate(g).unwrap_or_else(|e| panic!("{}: {e}", g.name()));
    }
}

#[test]
fn user_gateways_are_never_taken_over_or_deleted() {
    let cfg = DomainConfig::default();
    let mut users_hz = user_gateway("gw-hz");
    users_hz.spec.tunnel_config.replicas = 1;
    let existing = [
        users_hz.clone(),
        user_gateway("my-gw"),
        user_gateway("gw-node-gone"),
    ];
    let nodes = [
        node("a", Some("hz")),
        with_label(node("b", Some("sz")), LABEL_GATEWAY, "my-gw"),
        node("c", Some("sz")),
    ];
    let p = run(&nodes, None, &existing, &cfg);
    assert_eq!(domains(&p), vec![d("gw-sz", &["c"])]);
    assert_eq!(actions(&p), vec!["+gw-sz"]);
    assert_eq!(p.label_changes, vec![lc("c", None, Some("gw-sz"))]);
    assert_eq!(
        p.problems,
        vec![DomainProblem::UserGatewayConflict {
            gateway: "gw-hz".into(),
            domain: Domain::Pool("hz".into())
        }]
    );
}

#[test]
fn managed_gateways_follow_pool_changes_and_disappear_when_empty() {
    let cfg = DomainConfig::default();
    let mut nodes = vec![node("a", Some("p1")), node("b", Some("p1"))];
    let mut gws = Vec::new();
    let p = run(&nodes, None, &gws, &cfg);
    apply(&p, &mut nodes, &mut gws);

    // Both nodes move to p2: relabel, create gw-p2, delete gw-p1.
    for n in &mut nodes {
        n.labels.insert(LABEL_NODEPOOL.into(), "p2".into());
    }
    let p = run(&nodes, None, &gws, &cfg);
    assert_eq!(actions(&p), vec!["+gw-p2", "-gw-p1"]);
    assert_eq!(
        p.label_changes,
        vec![
            lc("a", Some("gw-p1"), Some("gw-p2")),
            lc("b", Some("gw-p1"), Some("gw-p2")),
        ]
    );
    apply(&p, &mut nodes, &mut gws);

    // A node leaves: spec update only.
    nodes.pop();
    let p = run(&nodes, None, &gws, &cfg);
    assert_eq!(actions(&p), vec!["~gw-p2"]);
    assert!(p.label_changes.is_empty());
    apply(&p, &mut nodes, &mut gws);

    // Solo gateways switched off: a node in no pool loses our label and its gateway.
    let cfg_off = DomainConfig {
        solo_gateways: false,
        ..Default::default()
    };
    nodes[0].labels.remove(LABEL_NODEPOOL);
    let p = run(&nodes, None, &gws, &cfg);
    assert_eq!(actions(&p), vec!["+gw-node-a", "-gw-p2"]);
    apply(&p, &mut nodes, &mut gws);
    let p = run(&nodes, None, &gws, &cfg_off);
    assert_eq!(actions(&p), vec!["-gw-node-a"]);
    assert_eq!(p.label_changes, vec![lc("a", Some("gw-node-a"), None)]);
}

#[test]
fn missing_pool_keeps_the_gateway_its_nodes_point_at() {
    let cfg = DomainConfig::default();
    let mut nodes = vec![node("a", Some("p1"))];
    let mut gws = Vec::new();
    let p = run(&nodes, None, &gws, &cfg);
    apply(&p, &mut nodes, &mut gws);
    // The NodePool CRD appears and does not (yet) list p1: leave a and gw-p1 alone.
    let pools = BTreeMap::new();
    let p = run(&nodes, Some(&pools), &gws, &cfg);
    assert!(p.gateway_actions.is_empty(), "{:?}", p.gateway_actions);
    assert!(p.label_changes.is_empty());
    assert_eq!(p.problems.len(), 1);
}

#[test]
fn agent_and_user_fields_survive_spec_updates() {
    let cfg = DomainConfig::default();
    let mut nodes = vec![node("a", Some("hz"))];
    let mut gws = Vec::new();
    let p = run(&nodes, None, &gws, &cfg);
    apply(&p, &mut nodes, &mut gws);
    {
        let spec = &mut gws[0].spec;
        let t = spec
            .endpoints
            .iter_mut()
            .find(|e| e.type_ == EndpointType::Tunnel)
            .expect("tunnel endpoint");
        t.public_ip = "198.51.100.4".into();
        t.nat_type = "Full cone NAT".into();
        t.public_port = 4501;
        t.config.insert("publicKey".into(), "k=".into());
        spec.proxy_config.proxy_http_port = "10255".into();
        spec.proxy_config.proxy_https_port = "10250".into();
    }
    // The agent's writes alone cause no update.
    let p = run(&nodes, None, &gws, &cfg);
    assert!(p.gateway_actions.is_empty(), "{:?}", p.gateway_actions);

    // A new node joins: the update keeps them.
    nodes.push(node("b", Some("hz")));
    let p = run(&nodes, None, &gws, &cfg);
    let [GatewayAction::UpdateSpec { spec, .. }] = p.gateway_actions.as_slice() else {
        panic!("one update expected: {:?}", p.gateway_actions);
    };
    let t = spec
        .endpoints
        .iter()
        .find(|e| e.node_name == "a" && e.type_ == EndpointType::Tunnel)
        .expect("a tunnel");
    assert_eq!(t.public_ip, "198.51.100.4");
    assert_eq!(t.nat_type, "Full cone NAT");
    assert_eq!(t.public_port, 4501);
    assert_eq!(t.public_key(), Some("k="));
    assert_eq!(spec.proxy_config.proxy_http_port, "10255");
    assert_eq!(spec.proxy_config.proxy_https_port, "10250");
    assert_eq!(spec.endpoints.len(), 4);
}

#[test]
fn name_collisions_follow_precedence() {
    let cfg = DomainConfig::default();
    // Pool "node-c" and solo node "c" both want gw-node-c; pool "cloud" collides with the
    // cloud domain's gw-cloud.
    let cfg_cloud = DomainConfig {
        cloud_pools: BTreeSet::from(["center".to_string()]),
        ..cfg.clone()
    };
    let nodes = [
        node("p", Some("node-c")),
        node("c", None),
        node("m", Some("center")),
        node("q", Some("cloud")),
    ];
    let p = run(&nodes, None, &[], &cfg_cloud);
    assert_eq!(
        domains(&p),
        vec![d("gw-cloud", &["m"]), d("gw-node-c", &["p"])]
    );
    assert_eq!(
        p.problems,
        vec![
            DomainProblem::NameCollision {
                gateway: "gw-cloud".into(),
                domain: Domain::Pool("cloud".into())
            },
            DomainProblem::NameCollision {
                gateway: "gw-node-c".into(),
                domain: Domain::Solo("c".into())
            },
        ]
    );
    assert!(
        p.label_changes
            .iter()
            .all(|c| c.node != "c" && c.node != "q")
    );

    let long = "x".repeat(251); // "gw-" + 251 = 254 > 253
    let p = run(&[node("n", Some(&long))], None, &[], &cfg);
    assert!(p.desired.is_empty());
    assert_eq!(
        p.problems,
        vec![DomainProblem::NameTooLong {
            domain: Domain::Pool(long)
        }]
    );
}

#[test]
fn plan_is_idempotent_and_order_independent() {
    let cfg = DomainConfig::default();
    let pools = BTreeMap::from([
        ("hz".to_string(), pool(PoolType::Edge, true)),
        ("c".to_string(), pool(PoolType::Cloud, true)),
        ("lo".to_string(), pool(PoolType::Edge, false)),
    ]);
    let mut nodes = vec![
        node("n3", Some("hz")),
        node("n1", Some("c")),
        node("n2", Some("lo")),
        node("n4", None),
        node("n5", Some("hz")),
    ];
    let mut gws = vec![user_gateway("theirs")];
    let p1 = run(&nodes, Some(&pools), &gws, &cfg);
    let mut reversed = nodes.clone();
    reversed.reverse();
    assert_eq!(run(&reversed, Some(&pools), &gws, &cfg), p1);
    apply(&p1, &mut nodes, &mut gws);
    let p2 = run(&nodes, Some(&pools), &gws, &cfg);
    assert!(p2.gateway_actions.is_empty(), "{:?}", p2.gateway_actions);
    assert!(p2.label_changes.is_empty(), "{:?}", p2.label_changes);
    assert_eq!(p2.desired, p1.desired);
    assert!(gws.iter().any(|g| g.name() == "theirs"));
}
