//! Table tests for every role and for the awkward inputs: solo nodes, a node in no Gateway,
//! NATed gateways (hub, edge-to-edge, no hub), no active endpoint yet, missing or malformed
//! publicIP, conflicting node IPs and subnets, empty or malformed podCIDRs, VTEP collisions,
//! duplicate objects. Every case asserts exact values, warnings included.

mod common;

use std::net::SocketAddr;

use common::*;
use raven_node::plan::{
    AddressProblem, Counterpart, InactiveReason, NodePlan, Options, PeerMode, PlanError,
    PlanWarning, PrefixProblem, Role, TunnelDriver, TunnelPeer, plan,
};

const KEY_A: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fn cloud() -> Gw {
    Gw::new("gw-cloud")
        .node("cloud-1", "10.0.0.1", &["10.244.0.0/24"])
        .node("cloud-2", "10.0.0.2", &["10.244.1.0/24"])
        .active("cloud-1", "1.2.3.4")
}

fn edge_a() -> Gw {
    Gw::new("gw-edge-a")
        .node("a-1", "192.168.1.10", &["10.244.2.0/24"])
        .node("a-2", "192.168.1.11", &["10.244.3.0/24"])
        .active("a-1", "5.6.7.8")
        .nat()
}

/// Node IPs deliberately equal to edge-a's: the usual edge site LAN.
fn edge_b() -> Gw {
    Gw::new("gw-edge-b")
        .node("b-1", "192.168.1.10", &["10.244.4.0/24"])
        .node("b-2", "192.168.1.12", &["10.244.5.0/24"])
        .active("b-1", "7.7.7.7")
        .nat()
}

fn run(gws: &[Gw], node: &str, options: &Options) -> NodePlan {
    plan(&build(gws), node, options).expect("valid options")
}

fn ipsec() -> Options {
    Options::default()
}

fn peer_names(p: &NodePlan) -> Vec<(String, PeerMode)> {
    p.tunnel
        .as_ref()
        .expect("tunnel plan")
        .peers
        .iter()
        .map(|peer| (peer.gateway.clone(), peer.mode))
        .collect()
}

fn peer<'a>(p: &'a NodePlan, gateway: &str) -> &'a TunnelPeer {
    p.tunnel
        .as_ref()
        .expect("tunnel plan")
        .peers
        .iter()
        .find(|peer| peer.gateway == gateway)
        .expect("peer present")
}

/// Gateway names of the domains carried by a peer, in order.
fn carried(p: &NodePlan, gateway: &str) -> Vec<String> {
    let t = p.tunnel.as_ref().expect("tunnel plan");
    peer(p, gateway)
        .domains
        .iter()
        .map(|&d| t.domains[d].gateway.clone())
        .collect()
}

fn transit(p: &NodePlan, gateway: &str) -> Vec<String> {
    let t = p.tunnel.as_ref().expect("tunnel plan");
    t.transit_domains(peer(p, gateway))
        .map(|d| d.gateway.clone())
        .collect()
}

fn destinations(p: &NodePlan, table: u32) -> Vec<String> {
    p.routes
        .iter()
        .filter(|r| r.table == table)
        .map(|r| r.destination.to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------------------------

#[test]
fn solo_node_has_tunnel_but_no_raven0() {
    let solo = Gw::new("gw-solo")
        .node("solo-1", "172.16.0.5", &["10.246.0.0/24"])
        .active("solo-1", "9.9.9.9")
        .nat();
    let gws = [cloud(), solo];
    // A narrower domain link changes only nodes with raven0: the solo node keeps 1500 - 64.
    let options = Options {
        domain_link_mtu: Some(1450),
        ..ipsec()
    };
    let p = run(&gws, "solo-1", &options);
    assert_eq!(
        p.role,
        Role::Solo {
            gateway: "gw-solo".into()
        }
    );
    assert_eq!(p.mtu, 1436);
    assert_eq!(p.vxlan, None);
    assert_eq!(
        p.routes,
        vec![via_tunnel(
            "10.244.0.0/23",
            "raven-ipsec0",
            1436,
            "172.16.0.5"
        )]
    );
    assert_eq!(p.rules, solo_rules());
    let to_cloud = peer(&p, "gw-cloud");
    assert_eq!(
        to_cloud.endpoint,
        Some(SocketAddr::new(ip("1.2.3.4"), 4500))
    );
    assert!(to_cloud.initiator, "the NATed solo node initiates");
    assert_eq!(p.pod_routes.remote_prefixes, nets(&["10.244.0.0/23"]));
    assert_eq!(p.warnings, vec![]);

    // Seen from the cloud: the solo domain is a NATed peer that dials in; members route to it.
    let c1 = run(&gws, "cloud-1", &options);
    assert_eq!(c1.mtu, 1400, "min(1436, 1450 - 50)");
    let to_solo = peer(&c1, "gw-solo");
    assert!(!to_solo.initiator);
    assert_eq!(to_solo.endpoint, Some(SocketAddr::new(ip("9.9.9.9"), 4500)));
    let c2 = run(&gws, "cloud-2", &options);
    assert_eq!(
        c2.routes,
        vec![via_vtep(
            "10.246.0.0/24",
            "240.0.0.1",
            1400,
            Some("10.0.0.2")
        )]
    );
}

#[test]
fn gateway_without_remote_domains_keeps_raven0() {
    // Upstream deletes raven0 when there is no remote gateway and recreates it when one
    // appears; we keep the domain's overlay and rules in place (empty tables miss, harmlessly).
    let c1 = run(&[cloud()], "cloud-1", &ipsec());
    assert_eq!(
        c1.vxlan,
        Some(raven0("10.0.0.1", 1436, None, &[("cloud-2", "10.0.0.2")]))
    );
    assert_eq!(
        c1.routes,
        vec![via_vtep("10.244.1.0/24", "240.0.0.2", 1436, None)]
    );
    assert_eq!(c1.rules, gateway_rules("raven-ipsec0"));
    let t = c1.tunnel.expect("tunnel");
    assert_eq!((t.peers.len(), t.domains.len()), (0, 0));
    let c2 = run(&[cloud()], "cloud-2", &ipsec());
    assert_eq!(c2.routes, vec![]);
    assert_eq!(c2.rules, member_rules());
    assert_eq!(
        c2.vxlan,
        Some(raven0(
            "10.0.0.2",
            1436,
            Some("10.0.0.1"),
            &[("cloud-1", "10.0.0.1")]
        ))
    );
}

#[test]
fn node_in_no_gateway_gets_an_empty_plan() {
    // Problems in other Gateways are not this node's business: no warnings.
    let broken = Gw::new("gw-broken")
        .node("x-1", "", &["", "garbage"])
        .active("x-1", "");
    let p = run(&[cloud(), broken], "stranger", &ipsec());
    assert_eq!(p.role, Role::Unmanaged);
    assert_eq!(p.vxlan, None);
    assert_eq!(p.routes, vec![]);
    assert_eq!(p.rules, vec![]);
    assert_eq!(p.tunnel, None);
    assert_eq!(p.pod_routes.remote_prefixes, vec![]);
    assert_eq!(p.pod_routes.mtu, 1436);
    assert_eq!(p.warnings, vec![]);
    // And with no Gateways at all.
    assert_eq!(run(&[], "stranger", &ipsec()).role, Role::Unmanaged);
}

#[test]
fn tunnel_disabled_is_inactive_without_warning() {
    let gws = [cloud().replicas(0), edge_a()];
    let p = run(&gws, "cloud-2", &ipsec());
    assert_eq!(
        p.role,
        Role::Inactive {
            gateway: "gw-cloud".into(),
            reason: InactiveReason::TunnelDisabled
        }
    );
    assert_eq!((p.routes.len(), p.rules.len()), (0, 0));
    assert_eq!(p.warnings, vec![]);
}

#[test]
fn invalid_options_and_node_name_are_errors() {
    let gws = build(&[cloud()]);
    assert_eq!(plan(&gws, "", &ipsec()), Err(PlanError::EmptyNodeName));
    let tiny = Options {
        underlay_mtu: 1300,
        ..ipsec()
    };
    assert!(matches!(
        plan(&gws, "cloud-1", &tiny),
        Err(PlanError::MtuTooSmall { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// NAT
// ---------------------------------------------------------------------------------------------

#[test]
fn nated_gateways_reach_each_other_through_the_central_gateway() {
    let gws = [cloud(), edge_a(), edge_b()];
    let a1 = run(&gws, "a-1", &ipsec());
    assert_eq!(peer_names(&a1), [("gw-cloud".to_owned(), PeerMode::Direct)]);
    assert_eq!(carried(&a1, "gw-cloud"), ["gw-cloud", "gw-edge-b"]);
    let t = a1.tunnel.as_ref().expect("tunnel");
    assert_eq!(
        t.allowed_prefixes(peer(&a1, "gw-cloud"))
            .cloned()
            .collect::<Vec<_>>(),
        nets(&["10.244.0.0/23", "10.244.4.0/23"])
    );
    assert_eq!(t.central, Some(("gw-cloud".into(), "cloud-1".into())));
    assert_eq!(
        a1.routes,
        vec![
            via_vtep("10.244.3.0/24", "240.168.1.11", 1436, None),
            via_tunnel("10.244.0.0/23", "raven-ipsec0", 1436, "192.168.1.10"),
            via_tunnel("10.244.4.0/23", "raven-ipsec0", 1436, "192.168.1.10"),
        ]
    );
    assert_eq!(a1.warnings, vec![]);

    // The central gateway relays: each NATed peer reaches the other NATed domain through it.
    let c1 = run(&gws, "cloud-1", &ipsec());
    assert_eq!(
        peer_names(&c1),
        [
            ("gw-edge-a".to_owned(), PeerMode::Direct),
            ("gw-edge-b".to_owned(), PeerMode::Direct)
        ]
    );
    assert_eq!(transit(&c1, "gw-edge-a"), ["gw-edge-b"]);
    assert_eq!(transit(&c1, "gw-edge-b"), ["gw-edge-a"]);
    assert_eq!(carried(&c1, "gw-edge-a"), ["gw-edge-a"]);

    // A member of a NATed domain routes everything to its own gateway.
    let a2 = run(&gws, "a-2", &ipsec());
    assert_eq!(
        a2.routes,
        vec![
            via_vtep("10.244.0.0/23", "240.168.1.10", 1436, Some("192.168.1.11")),
            via_vtep("10.244.4.0/23", "240.168.1.10", 1436, Some("192.168.1.11")),
        ]
    );
}

fn with_traversal() -> Options {
    Options {
        nat_traversal: true,
        ..ipsec()
    }
}

#[test]
fn nat_traversal_allows_edge_to_edge_for_compatible_types() {
    let gws = [
        cloud().stun("Open Internet (no NAT)", 4500),
        edge_a().stun("Full cone NAT", 40001),
        edge_b().stun("Port Restricted cone NAT", 40002),
    ];
    let a1 = run(&gws, "a-1", &with_traversal());
    assert_eq!(
        peer_names(&a1),
        [
            ("gw-cloud".to_owned(), PeerMode::Direct),
            ("gw-edge-b".to_owned(), PeerMode::EdgeToEdge)
        ]
    );
    let to_b = peer(&a1, "gw-edge-b");
    assert_eq!(to_b.endpoint, Some(SocketAddr::new(ip("7.7.7.7"), 40002)));
    assert!(to_b.initiator);
    assert_eq!(carried(&a1, "gw-cloud"), ["gw-cloud"]);
    assert_eq!(a1.warnings, vec![]);
    // The central gateway relays nothing: the NATed pair talks directly.
    let c1 = run(&gws, "cloud-1", &with_traversal());
    assert_eq!(transit(&c1, "gw-edge-a"), Vec::<String>::new());
    assert_eq!(transit(&c1, "gw-edge-b"), Vec::<String>::new());
}

#[test]
fn nat_traversal_with_a_symmetric_side() {
    // (Full cone, Symmetric) is allowed; the symmetric side has no stable port, so the other
    // side waits for it (our listen port as the guess) and the symmetric side initiates.
    let gws = [
        cloud().stun("Open Internet (no NAT)", 4500),
        edge_a().stun("Full cone NAT", 40001),
        edge_b().stun("Symmetric NAT", 0),
    ];
    let a1 = run(&gws, "a-1", &with_traversal());
    let to_b = peer(&a1, "gw-edge-b");
    assert_eq!(to_b.mode, PeerMode::EdgeToEdge);
    assert_eq!(to_b.endpoint, Some(SocketAddr::new(ip("7.7.7.7"), 4500)));
    assert!(!to_b.initiator);
    let b1 = run(&gws, "b-1", &with_traversal());
    let to_a = peer(&b1, "gw-edge-a");
    assert_eq!(to_a.endpoint, Some(SocketAddr::new(ip("5.6.7.8"), 40001)));
    assert!(to_a.initiator);

    // (Symmetric, Symmetric) is not: back through the central gateway.
    let gws = [
        cloud().stun("Open Internet (no NAT)", 4500),
        edge_a().stun("Symmetric NAT", 0),
        edge_b().stun("Symmetric NAT", 0),
    ];
    let a1 = run(&gws, "a-1", &with_traversal());
    assert_eq!(peer_names(&a1), [("gw-cloud".to_owned(), PeerMode::Direct)]);
    assert_eq!(carried(&a1, "gw-cloud"), ["gw-cloud", "gw-edge-b"]);
    assert_eq!(a1.warnings, vec![]);
}

#[test]
fn nat_traversal_needs_published_nat_info() {
    // edge-b has not published its NAT type: no edge-to-edge, and (upstream's rule) it is not
    // usable for the central-gateway choice either; it is still relayed by the cloud.
    let gws = [
        cloud().stun("Open Internet (no NAT)", 4500),
        edge_a().stun("Full cone NAT", 40001),
        edge_b(),
    ];
    let a1 = run(&gws, "a-1", &with_traversal());
    assert_eq!(peer_names(&a1), [("gw-cloud".to_owned(), PeerMode::Direct)]);
    assert_eq!(carried(&a1, "gw-cloud"), ["gw-cloud", "gw-edge-b"]);
    assert_eq!(
        a1.warnings,
        vec![PlanWarning::MissingNatInfo {
            gateway: "gw-edge-b".into(),
            node: "b-1".into()
        }]
    );
}

#[test]
fn nated_gateways_without_a_central_gateway_are_unreachable() {
    let gws = [edge_a(), edge_b()];
    let a1 = run(&gws, "a-1", &ipsec());
    assert_eq!(
        a1.warnings,
        vec![PlanWarning::Unreachable {
            gateway: "gw-edge-b".into()
        }]
    );
    let t = a1.tunnel.as_ref().expect("tunnel");
    assert_eq!(
        (t.peers.len(), t.domains.len(), t.central.clone()),
        (0, 0, None)
    );
    // Deliberate difference: upstream installs routes into a black hole; we route nothing.
    assert_eq!(destinations(&a1, 9028), Vec::<String>::new());
    assert_eq!(a1.pod_routes.remote_prefixes, vec![]);
    // The gateway still serves its own members.
    assert_eq!(destinations(&a1, 9027), ["10.244.3.0/24"]);
}

#[test]
fn central_gateway_is_the_last_non_nated_by_node_name() {
    let second = Gw::new("gw-cloud-2")
        .node("zz-cloud", "10.1.0.1", &["10.245.0.0/24"])
        .active("zz-cloud", "2.2.2.2");
    let gws = [cloud(), second, edge_a(), edge_b()];
    let a1 = run(&gws, "a-1", &ipsec());
    let t = a1.tunnel.as_ref().expect("tunnel");
    assert_eq!(t.central, Some(("gw-cloud-2".into(), "zz-cloud".into())));
    assert_eq!(carried(&a1, "gw-cloud-2"), ["gw-cloud-2", "gw-edge-b"]);
    assert_eq!(carried(&a1, "gw-cloud"), ["gw-cloud"]);
    // The non-central cloud gateway relays nothing.
    let c1 = run(&gws, "cloud-1", &ipsec());
    assert_eq!(transit(&c1, "gw-edge-a"), Vec::<String>::new());
    let z = run(&gws, "zz-cloud", &ipsec());
    assert_eq!(transit(&z, "gw-edge-a"), ["gw-edge-b"]);
}

// ---------------------------------------------------------------------------------------------
// Endpoints not ready
// ---------------------------------------------------------------------------------------------

#[test]
fn no_active_endpoint_yet() {
    let mut pending = cloud();
    pending.active = None;
    // Local: inactive, reported.
    let p = run(&[pending.clone(), edge_a()], "cloud-2", &ipsec());
    assert_eq!(
        p.role,
        Role::Inactive {
            gateway: "gw-cloud".into(),
            reason: InactiveReason::NoActiveEndpoint
        }
    );
    assert_eq!(
        p.warnings,
        vec![PlanWarning::NoActiveEndpoint {
            gateway: "gw-cloud".into()
        }]
    );
    // Remote: reported, not routed; the rest of the plan is intact.
    let a2 = run(&[pending, edge_a(), edge_b()], "a-2", &ipsec());
    assert_eq!(
        a2.warnings,
        vec![
            PlanWarning::NoActiveEndpoint {
                gateway: "gw-cloud".into()
            },
            // No central gateway without the cloud: edge-b cannot be reached either.
            PlanWarning::Unreachable {
                gateway: "gw-edge-b".into()
            },
        ]
    );
    assert_eq!(a2.routes, vec![]);
    // A remote domain with its tunnel switched off is skipped silently.
    let mut off = cloud().replicas(0);
    off.active = None;
    let a1 = run(&[off, edge_a()], "a-1", &ipsec());
    assert_eq!(a1.warnings, vec![]);
}

#[test]
fn active_endpoint_not_a_member() {
    let ghost = cloud().active("ghost", "1.2.3.4");
    let p = run(std::slice::from_ref(&ghost), "cloud-1", &ipsec());
    assert_eq!(
        p.role,
        Role::Inactive {
            gateway: "gw-cloud".into(),
            reason: InactiveReason::EndpointNotMember
        }
    );
    let warning = PlanWarning::ActiveEndpointNotMember {
        gateway: "gw-cloud".into(),
        node: "ghost".into(),
    };
    assert_eq!(p.warnings, vec![warning.clone()]);
    let a1 = run(&[ghost, edge_a()], "a-1", &ipsec());
    assert_eq!(a1.warnings, vec![warning]);
    assert_eq!(a1.tunnel.expect("tunnel").peers, vec![]);
}

#[test]
fn missing_public_ip() {
    // A public gateway without publicIP cannot be dialled: skipped and reported.
    let gws = [cloud().active("cloud-1", ""), edge_a()];
    let a1 = run(&gws, "a-1", &ipsec());
    assert_eq!(
        a1.warnings,
        vec![PlanWarning::MissingPublicIp {
            gateway: "gw-cloud".into(),
            node: "cloud-1".into()
        }]
    );
    assert_eq!(a1.tunnel.as_ref().expect("tunnel").peers, vec![]);
    assert_eq!(destinations(&a1, 9028), Vec::<String>::new());

    // The same gateway keeps planning its own side (upstream tears its domain down): members
    // still route, the gateway still has its NATed peer, which will dial in.
    let c2 = run(&gws, "cloud-2", &ipsec());
    assert_eq!(destinations(&c2, 9027), ["10.244.2.0/23"]);
    assert_eq!(c2.warnings, a1.warnings);
    let c1 = run(&gws, "cloud-1", &ipsec());
    assert_eq!(
        peer_names(&c1),
        [("gw-edge-a".to_owned(), PeerMode::Direct)]
    );

    // A NATed gateway without publicIP is still reachable from a public one (it initiates):
    // no endpoint, no warning. Deliberate difference from upstream (raven#35, PR #170).
    let gws = [cloud(), edge_a().active("a-1", "")];
    let c1 = run(&gws, "cloud-1", &ipsec());
    let to_a = peer(&c1, "gw-edge-a");
    assert_eq!((to_a.endpoint, to_a.initiator), (None, false));
    assert_eq!(c1.warnings, vec![]);
    assert_eq!(destinations(&c1, 9028), ["10.244.2.0/23"]);
}

#[test]
fn malformed_public_ip() {
    let gws = [cloud().active("cloud-1", "1.2.3"), edge_a()];
    let a1 = run(&gws, "a-1", &ipsec());
    assert_eq!(
        a1.warnings,
        vec![PlanWarning::MalformedPublicIp {
            gateway: "gw-cloud".into(),
            node: "cloud-1".into(),
            value: "1.2.3".into()
        }]
    );
    assert_eq!(a1.tunnel.expect("tunnel").peers, vec![]);
}

#[test]
fn wireguard_keys_missing_or_malformed() {
    let wg = Options {
        driver: TunnelDriver::WireGuard,
        ..ipsec()
    };
    let gws = [cloud(), edge_a(), edge_b().key("not-a-key")];
    let c1 = run(&gws, "cloud-1", &wg);
    assert_eq!(
        c1.warnings,
        vec![
            PlanWarning::MissingPublicKey {
                gateway: "gw-edge-a".into(),
                node: "a-1".into()
            },
            PlanWarning::MalformedPublicKey {
                gateway: "gw-edge-b".into(),
                node: "b-1".into()
            },
        ]
    );
    // The peers stay planned (routes do not flap while keys are exchanged); the driver waits.
    assert_eq!(peer(&c1, "gw-edge-a").public_key, None);
    assert_eq!(destinations(&c1, 9028), ["10.244.2.0/23", "10.244.4.0/23"]);
    // IPsec does not need the key: a missing one is no warning there, a valid one is passed on.
    let gws = [cloud(), edge_a().key(KEY_A)];
    let c1 = run(&gws, "cloud-1", &ipsec());
    assert_eq!(c1.warnings, vec![]);
    assert_eq!(peer(&c1, "gw-edge-a").public_key.as_deref(), Some(KEY_A));
}

#[test]
fn remote_port_is_the_endpoints_declared_port() {
    let mut lb = cloud();
    lb.port = 31500;
    let a1 = run(&[lb, edge_a()], "a-1", &ipsec());
    assert_eq!(
        peer(&a1, "gw-cloud").endpoint,
        Some(SocketAddr::new(ip("1.2.3.4"), 31500))
    );
    // Port 0 (not defaulted by a webhook) means the tunnel default.
    let mut zero = cloud();
    zero.port = 0;
    let a1 = run(&[zero, edge_a()], "a-1", &ipsec());
    assert_eq!(
        peer(&a1, "gw-cloud").endpoint,
        Some(SocketAddr::new(ip("1.2.3.4"), 4500))
    );
}

// ---------------------------------------------------------------------------------------------
// Conflicts
// ---------------------------------------------------------------------------------------------

#[test]
fn conflicting_node_ips_with_forwarded_node_ips() {
    let options = Options {
        forward_node_ip: true,
        ..ipsec()
    };
    let gws = [cloud(), edge_a(), edge_b()];
    let a2 = run(&gws, "a-2", &options);
    // b-1 has a-1's address: never routed. b-2's address is free in this domain's view.
    assert_eq!(
        a2.warnings,
        vec![PlanWarning::RemoteConflict {
            gateway: "gw-edge-b".into(),
            node: "b-1".into(),
            prefix: net("192.168.1.10/32"),
            with: Counterpart::LocalNodeAddress {
                node: "a-1".into(),
                address: v4("192.168.1.10")
            },
        }]
    );
    assert_eq!(
        destinations(&a2, 9027),
        [
            "10.0.0.1/32",
            "10.0.0.2/32",
            "10.244.0.0/23",
            "10.244.4.0/23",
            "192.168.1.12/32"
        ]
    );
    // Protecting the site LAN (what the daemon passes from the host's addresses) keeps every
    // remote address of that LAN out.
    let protected = Options {
        protected_prefixes: nets(&["192.168.1.0/24"]),
        ..options
    };
    let a2 = run(&gws, "a-2", &protected);
    assert_eq!(
        a2.warnings,
        vec![
            PlanWarning::RemoteConflict {
                gateway: "gw-edge-b".into(),
                node: "b-1".into(),
                prefix: net("192.168.1.10/32"),
                with: Counterpart::LocalNodeAddress {
                    node: "a-1".into(),
                    address: v4("192.168.1.10")
                },
            },
            PlanWarning::RemoteConflict {
                gateway: "gw-edge-b".into(),
                node: "b-2".into(),
                prefix: net("192.168.1.12/32"),
                with: Counterpart::Protected {
                    prefix: net("192.168.1.0/24")
                },
            },
        ]
    );
    assert_eq!(
        destinations(&a2, 9027),
        [
            "10.0.0.1/32",
            "10.0.0.2/32",
            "10.244.0.0/23",
            "10.244.4.0/23"
        ]
    );
}

#[test]
fn conflicting_subnets_are_never_routed() {
    let gws = [
        cloud(),
        edge_a(),
        // b-2's pod CIDR is the same as a-1's; b-1's is fine.
        Gw::new("gw-edge-b")
            .node("b-1", "192.168.1.10", &["10.244.4.0/24"])
            .node("b-2", "192.168.1.12", &["10.244.2.0/24"])
            .active("b-1", "7.7.7.7")
            .nat(),
        // Two remote domains claim 10.250.0.0/24: both lose it.
        Gw::new("gw-c")
            .node("c-1", "172.20.0.1", &["10.250.0.0/24", "10.251.0.0/24"])
            .active("c-1", "3.3.3.3"),
        Gw::new("gw-d")
            .node("d-1", "172.21.0.1", &["10.250.0.0/25"])
            .active("d-1", "4.4.4.4"),
        // A subnet holding a gateway's public IP, another in the reserved 240/4.
        Gw::new("gw-e")
            .node(
                "e-1",
                "172.22.0.1",
                &["5.6.0.0/16", "240.1.0.0/16", "10.252.0.0/24"],
            )
            .active("e-1", "6.6.6.6"),
    ];
    let a1 = run(&gws, "a-1", &ipsec());
    assert_eq!(
        a1.warnings,
        vec![
            PlanWarning::RemoteConflict {
                gateway: "gw-c".into(),
                node: "c-1".into(),
                prefix: net("10.250.0.0/24"),
                with: Counterpart::RemoteSubnet {
                    gateway: "gw-d".into(),
                    node: "d-1".into(),
                    prefix: net("10.250.0.0/25")
                },
            },
            PlanWarning::RemoteConflict {
                gateway: "gw-d".into(),
                node: "d-1".into(),
                prefix: net("10.250.0.0/25"),
                with: Counterpart::RemoteSubnet {
                    gateway: "gw-c".into(),
                    node: "c-1".into(),
                    prefix: net("10.250.0.0/24")
                },
            },
            PlanWarning::RemoteConflict {
                gateway: "gw-e".into(),
                node: "e-1".into(),
                prefix: net("5.6.0.0/16"),
                with: Counterpart::GatewayPublicIp {
                    gateway: "gw-edge-a".into(),
                    address: ip("5.6.7.8")
                },
            },
            PlanWarning::RemoteConflict {
                gateway: "gw-e".into(),
                node: "e-1".into(),
                prefix: net("240.1.0.0/16"),
                with: Counterpart::Reserved {
                    prefix: net("240.0.0.0/4")
                },
            },
            PlanWarning::RemoteConflict {
                gateway: "gw-edge-b".into(),
                node: "b-2".into(),
                prefix: net("10.244.2.0/24"),
                with: Counterpart::LocalSubnet {
                    node: "a-1".into(),
                    prefix: net("10.244.2.0/24")
                },
            },
        ]
    );
    assert_eq!(
        destinations(&a1, 9028),
        [
            "10.244.0.0/23",
            "10.244.4.0/24",
            "10.251.0.0/24",
            "10.252.0.0/24"
        ]
    );
    // The same exclusions on a member of the domain: one domain, one route set.
    let a2 = run(&gws, "a-2", &ipsec());
    assert_eq!(a2.pod_routes, a1.pod_routes);
    assert_eq!(a2.warnings, a1.warnings);
}

#[test]
fn overlapping_local_subnets_get_no_return_route() {
    let gws = [
        Gw::new("gw-cloud")
            .node("cloud-1", "10.0.0.1", &["10.244.0.0/24"])
            .node("cloud-2", "10.0.0.2", &["10.244.0.0/25", "10.244.1.0/24"])
            .active("cloud-1", "1.2.3.4"),
        edge_a(),
    ];
    let c1 = run(&gws, "cloud-1", &ipsec());
    assert_eq!(destinations(&c1, 9027), ["10.244.1.0/24"]);
    assert_eq!(
        c1.warnings,
        vec![
            PlanWarning::LocalOverlap {
                gateway: "gw-cloud".into(),
                node: "cloud-1".into(),
                prefix: net("10.244.0.0/24"),
                other_node: "cloud-2".into(),
                other_prefix: net("10.244.0.0/25"),
            },
            PlanWarning::LocalOverlap {
                gateway: "gw-cloud".into(),
                node: "cloud-2".into(),
                prefix: net("10.244.0.0/25"),
                other_node: "cloud-1".into(),
                other_prefix: net("10.244.0.0/24"),
            },
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed status
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_and_malformed_pod_cidrs() {
    let gws = [
        Gw::new("gw-cloud")
            .node("cloud-1", "10.0.0.1", &["10.244.0.0/24"])
            .node(
                "cloud-2",
                "10.0.0.2",
                &[
                    "",
                    "garbage",
                    "10.244.1.5/24",
                    "fd00:1::/64",
                    "10.244.1.0/24",
                ],
            )
            .active("cloud-1", "1.2.3.4"),
        // Upstream writes `[""]` for a node without podCIDR.
        Gw::new("gw-edge-a")
            .node("a-1", "192.168.1.10", &["10.244.2.0/24"])
            .node("a-2", "192.168.1.11", &[""])
            .active("a-1", "5.6.7.8")
            .nat(),
    ];
    let bad = |node: &str, value: &str, problem| PlanWarning::BadSubnet {
        gateway: "gw-cloud".into(),
        node: node.into(),
        value: value.into(),
        problem,
    };
    let c1 = run(&gws, "cloud-1", &ipsec());
    assert_eq!(
        c1.warnings,
        vec![
            bad("cloud-2", "", PrefixProblem::Empty),
            bad("cloud-2", "10.244.1.5/24", PrefixProblem::HostBitsSet),
            bad("cloud-2", "fd00:1::/64", PrefixProblem::Ipv6NotSupported),
            bad("cloud-2", "garbage", PrefixProblem::Unparsable),
            PlanWarning::BadSubnet {
                gateway: "gw-edge-a".into(),
                node: "a-2".into(),
                value: "".into(),
                problem: PrefixProblem::Empty,
            },
        ]
    );
    // Everything else is planned: the valid subnet of cloud-2, the valid one of edge-a.
    assert_eq!(destinations(&c1, 9027), ["10.244.1.0/24"]);
    assert_eq!(destinations(&c1, 9028), ["10.244.2.0/24"]);
    assert_eq!(
        c1.vxlan.as_ref().expect("raven0").peers.len(),
        1,
        "cloud-2 keeps its raven0 entries"
    );
}

#[test]
fn unusable_private_ips() {
    let gws = [
        Gw::new("gw-cloud")
            .node("cloud-1", "10.0.0.1", &["10.244.0.0/24"])
            .node("cloud-2", "", &["10.244.1.0/24"])
            .node("cloud-3", "fd00::3", &["10.243.3.0/24"])
            .node("cloud-4", "10.0.0.4", &["10.243.4.0/24"])
            .active("cloud-1", "1.2.3.4"),
        edge_a(),
    ];
    let c1 = run(&gws, "cloud-1", &ipsec());
    assert_eq!(
        c1.warnings,
        vec![
            PlanWarning::BadPrivateIp {
                gateway: "gw-cloud".into(),
                node: "cloud-2".into(),
                value: "".into(),
                problem: AddressProblem::Empty
            },
            PlanWarning::BadPrivateIp {
                gateway: "gw-cloud".into(),
                node: "cloud-3".into(),
                value: "fd00::3".into(),
                problem: AddressProblem::NotIpv4
            },
        ]
    );
    // Only cloud-4 is served over raven0.
    assert_eq!(
        c1.vxlan.as_ref().expect("raven0").peers,
        raven0("10.0.0.1", 1436, None, &[("cloud-4", "10.0.0.4")]).peers
    );
    assert_eq!(destinations(&c1, 9027), ["10.243.4.0/24"]);
    // The subnets of nodes without raven0 are still local: never routed remote, still in the
    // gateway's own traffic selectors.
    assert_eq!(
        c1.tunnel.expect("tunnel").local.prefixes,
        nets(&["10.243.3.0/24", "10.243.4.0/24", "10.244.0.0/23"])
    );
    let c2 = run(&gws, "cloud-2", &ipsec());
    assert_eq!(
        c2.role,
        Role::Inactive {
            gateway: "gw-cloud".into(),
            reason: InactiveReason::OwnAddressUnusable
        }
    );
    // A gateway without a usable address leaves its members inactive.
    let gws = [
        Gw::new("gw-cloud")
            .node("cloud-1", "not-an-ip", &["10.244.0.0/24"])
            .node("cloud-2", "10.0.0.2", &["10.244.1.0/24"])
            .active("cloud-1", "1.2.3.4"),
        edge_a(),
    ];
    assert_eq!(
        run(&gws, "cloud-2", &ipsec()).role,
        Role::Inactive {
            gateway: "gw-cloud".into(),
            reason: InactiveReason::GatewayAddressUnusable
        }
    );
    // And other domains cannot name it: reported, skipped.
    let a1 = run(&gws, "a-1", &ipsec());
    assert_eq!(
        a1.warnings,
        vec![PlanWarning::BadPrivateIp {
            gateway: "gw-cloud".into(),
            node: "cloud-1".into(),
            value: "not-an-ip".into(),
            problem: AddressProblem::Unparsable
        }]
    );
}

#[test]
fn vtep_collisions_leave_the_colliding_members_out() {
    let gws = [
        Gw::new("gw-cloud")
            .node("cloud-1", "10.0.0.1", &["10.244.0.0/24"])
            .node("cloud-2", "10.0.0.2", &["10.244.1.0/24"])
            .node("cloud-3", "172.0.0.2", &["10.243.2.0/24"]) // same 240.0.0.2 as cloud-2
            .node("cloud-4", "11.0.0.1", &["10.243.3.0/24"]) // same 240.0.0.1 as the gateway
            .node("cloud-5", "10.0.0.5", &["10.244.5.0/24"])
            .active("cloud-1", "1.2.3.4"),
        edge_a(),
    ];
    let collision = |node: &str, other: &str, vtep: &str| PlanWarning::VtepCollision {
        gateway: "gw-cloud".into(),
        node: node.into(),
        other_node: other.into(),
        vtep: v4(vtep),
    };
    let expected_warnings = vec![
        collision("cloud-2", "cloud-3", "240.0.0.2"),
        collision("cloud-3", "cloud-2", "240.0.0.2"),
        collision("cloud-4", "cloud-1", "240.0.0.1"),
    ];
    let c1 = run(&gws, "cloud-1", &ipsec());
    assert_eq!(c1.warnings, expected_warnings);
    assert_eq!(destinations(&c1, 9027), ["10.244.5.0/24"]);
    assert_eq!(
        c1.vxlan.expect("raven0"),
        raven0("10.0.0.1", 1436, None, &[("cloud-5", "10.0.0.5")])
    );
    for node in ["cloud-2", "cloud-3", "cloud-4"] {
        let p = run(&gws, node, &ipsec());
        assert_eq!(
            p.role,
            Role::Inactive {
                gateway: "gw-cloud".into(),
                reason: InactiveReason::VtepCollision
            },
            "{node}"
        );
        assert_eq!(p.warnings, expected_warnings);
    }
    assert!(matches!(
        run(&gws, "cloud-5", &ipsec()).role,
        Role::Member { .. }
    ));
}

#[test]
fn node_listed_by_several_gateways_uses_the_first_by_name() {
    let gws = [
        edge_a(),
        Gw::new("gw-aaa")
            .node("a-2", "192.168.1.11", &["10.244.3.0/24"])
            .node("x-1", "192.168.9.1", &["10.249.0.0/24"])
            .active("x-1", "8.8.8.8"),
        cloud(),
    ];
    let p = run(&gws, "a-2", &ipsec());
    assert_eq!(
        p.role,
        Role::Member {
            gateway: "gw-aaa".into(),
            gateway_node: "x-1".into()
        }
    );
    assert!(p.warnings.contains(&PlanWarning::NodeInSeveralGateways {
        node: "a-2".into(),
        chosen: "gw-aaa".into(),
        ignored: "gw-edge-a".into()
    }));
    // gw-edge-a also claims a-2's subnet, which is local: not routed.
    assert!(p.warnings.iter().any(|w| matches!(
        w,
        PlanWarning::RemoteConflict { gateway, node, .. } if gateway == "gw-edge-a" && node == "a-2"
    )));
}

#[test]
fn duplicate_objects() {
    // Two Gateways with one name (only possible from files): neither is trusted.
    let gws = [cloud(), edge_a(), edge_a().active("a-2", "5.6.7.9")];
    let c1 = run(&gws, "cloud-1", &ipsec());
    assert_eq!(
        c1.warnings,
        vec![PlanWarning::DuplicateGateway {
            gateway: "gw-edge-a".into()
        }]
    );
    assert_eq!(c1.tunnel.expect("tunnel").peers, vec![]);
    // A node listed twice in one status: the first by content wins, whatever the order.
    let twice = cloud().node("cloud-2", "10.0.0.9", &["10.244.9.0/24"]);
    let mut reversed = twice.clone();
    reversed.nodes.reverse();
    let expected = run(&[twice.clone(), edge_a()], "cloud-1", &ipsec());
    assert_eq!(run(&[reversed, edge_a()], "cloud-1", &ipsec()), expected);
    assert_eq!(
        expected.warnings,
        vec![PlanWarning::DuplicateNode {
            gateway: "gw-cloud".into(),
            node: "cloud-2".into()
        }]
    );
    assert_eq!(
        expected.vxlan.expect("raven0").peers,
        raven0("10.0.0.1", 1436, None, &[("cloud-2", "10.0.0.2")]).peers
    );
}

#[test]
fn several_active_endpoints_use_the_first_by_node_name() {
    let mut json = cloud().to_json();
    let mut second = json["status"]["activeEndpoints"][0].clone();
    second["nodeName"] = "cloud-2".into();
    second["publicIP"] = "1.2.3.5".into();
    // Written in the "wrong" order: cloud-2 first.
    json["status"]["activeEndpoints"] =
        serde_json::json!([second, json["status"]["activeEndpoints"][0]]);
    let gw = serde_json::from_value(json).expect("gateway");
    let gws = vec![gw, edge_a().build()];
    let p = plan(&gws, "cloud-2", &ipsec()).expect("plan");
    assert_eq!(
        p.role,
        Role::Member {
            gateway: "gw-cloud".into(),
            gateway_node: "cloud-1".into()
        }
    );
    assert_eq!(
        p.warnings,
        vec![PlanWarning::SeveralActiveEndpoints {
            gateway: "gw-cloud".into(),
            used: "cloud-1".into()
        }]
    );
}

#[test]
fn warnings_render_for_logs_and_metrics() {
    let w = PlanWarning::RemoteConflict {
        gateway: "gw-edge-b".into(),
        node: "b-1".into(),
        prefix: net("192.168.1.10/32"),
        with: Counterpart::LocalNodeAddress {
            node: "a-1".into(),
            address: v4("192.168.1.10"),
        },
    };
    assert_eq!(
        w.to_string(),
        "not routing subnet 192.168.1.10/32 of node b-1 in gateway gw-edge-b: it overlaps \
         address 192.168.1.10 of local node a-1"
    );
    assert_eq!(w.kind(), "remote_conflict");
    assert_eq!(w.gateway(), "gw-edge-b");
}
