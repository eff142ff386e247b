//! Engine tests with in-memory fakes for the tunnel, the data plane and the node-state sink.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use raven_api::gateway::EndpointType;
use raven_api::gateway::v1beta1::{
    Endpoint, Gateway, GatewaySpec, GatewayStatus, NodeInfo, TunnelConfiguration,
};
use raven_api::nodestate::NodeState;

use super::*;
use crate::plan::TunnelDriver;

/// Everything the fakes saw, shared with the test.
#[derive(Debug, Default)]
struct Log {
    tunnel_applies: Vec<Option<usize>>,
    reconciles: Vec<usize>,
    published: Vec<NodeState>,
    refreshes: usize,
    on_disk: Option<NodeState>,
    persisted: u64,
    fail_dataplane: bool,
    fail_refresh: bool,
    handshake: Option<SystemTime>,
}

type Shared = Arc<Mutex<Log>>;

struct FakeDataplane(Shared);
struct FakeTunnel(Shared);
struct FakeSink(Shared);

impl Dataplane for FakeDataplane {
    fn reconcile(&mut self, plan: &NodePlan) -> Result<ApplyReport, String> {
        let mut log = self.0.lock().unwrap();
        log.reconciles.push(plan.routes.len());
        if log.fail_dataplane {
            return Err("netlink: Operation not permitted".into());
        }
        Ok(ApplyReport {
            ops: vec![("route_add".into(), plan.routes.len() as u64)],
        })
    }
    fn cleanup(&mut self) -> Result<(), String> {
        Ok(())
    }
}

impl Tunnel for FakeTunnel {
    fn apply(&mut self, plan: Option<&TunnelPlan>) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .tunnel_applies
            .push(plan.map(|p| p.peers.len()));
        Ok(())
    }
    fn peer_stats(&self) -> Vec<PeerStats> {
        let log = self.0.lock().unwrap();
        vec![PeerStats {
            peer: "gw-b".into(),
            last_handshake: log.handshake,
            rx_bytes: 10,
            tx_bytes: 20,
        }]
    }
    fn cleanup(&mut self) -> Result<(), String> {
        Ok(())
    }
}

impl NodeStateSink for FakeSink {
    fn current(&self) -> Option<NodeState> {
        self.0.lock().unwrap().on_disk.clone()
    }
    fn persisted_generation(&self) -> u64 {
        self.0.lock().unwrap().persisted
    }
    fn publish(&mut self, state: &NodeState) -> Result<(), String> {
        let mut log = self.0.lock().unwrap();
        log.persisted = log.persisted.max(state.generation);
        log.on_disk = Some(state.clone());
        log.published.push(state.clone());
        Ok(())
    }
    fn refresh_pods(&mut self) -> Result<RefreshCounts, String> {
        let mut log = self.0.lock().unwrap();
        log.refreshes += 1;
        let mut counts = RefreshCounts {
            updated: 2,
            ..RefreshCounts::default()
        };
        if log.fail_refresh {
            counts.errors.push("cbr0/ctr:eth0: netns busy".into());
        }
        Ok(counts)
    }
}

fn gateway(name: &str, nodes: &[(&str, &str, &str)], public_ip: &str, key: &str) -> Gateway {
    let active = Endpoint {
        node_name: nodes[0].0.into(),
        public_ip: public_ip.into(),
        type_: EndpointType::Tunnel,
        port: 4500,
        config: [("publicKey".to_owned(), key.to_owned())].into(),
        ..Default::default()
    };
    let mut gw = Gateway::new(
        name,
        GatewaySpec {
            tunnel_config: TunnelConfiguration { replicas: 1 },
            endpoints: vec![active.clone()],
            ..Default::default()
        },
    );
    gw.status = Some(GatewayStatus {
        nodes: nodes
            .iter()
            .map(|(n, ip, subnet)| NodeInfo {
                node_name: (*n).into(),
                private_ip: (*ip).into(),
                subnets: vec![(*subnet).into()],
            })
            .collect(),
        active_endpoints: vec![active],
    });
    gw
}

const KEY_A: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
const KEY_B: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=";

fn two_domains(b_subnet: &str) -> Vec<Gateway> {
    vec![
        gateway(
            "gw-a",
            &[
                ("a1", "10.0.0.1", "10.244.0.0/24"),
                ("a2", "10.0.0.2", "10.244.1.0/24"),
            ],
            "1.1.1.1",
            KEY_A,
        ),
        gateway("gw-b", &[("b1", "192.168.0.1", b_subnet)], "2.2.2.2", KEY_B),
    ]
}

fn engine(node: &str, log: &Shared) -> (Engine, Arc<Metrics>, Health) {
    let metrics = Arc::new(Metrics::new());
    let health = Health::default();
    let options = Options {
        driver: TunnelDriver::WireGuard,
        ..Options::default()
    };
    let e = Engine::new(
        node,
        options,
        Timing::default(),
        Box::new(FakeDataplane(log.clone())),
        Box::new(FakeTunnel(log.clone())),
        Box::new(FakeSink(log.clone())),
        metrics.clone(),
        health.clone(),
    );
    (e, metrics, health)
}

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

#[test]
fn gateway_pass_applies_publishes_and_refreshes() {
    let log = Shared::default();
    let (mut e, metrics, health) = engine("a1", &log);
    let r = e.pass(&two_domains("10.245.0.0/24"), t(0));
    assert!(r.ok, "{r:?}");
    assert_eq!(r.published, Some(1));
    assert_eq!(r.refreshed.as_ref().map(|c| c.updated), Some(2));
    let l = log.lock().unwrap();
    assert_eq!(l.tunnel_applies, vec![Some(1)]);
    assert_eq!(l.published.len(), 1);
    let s = &l.published[0];
    assert_eq!(s.remote_prefixes, vec!["10.245.0.0/24".parse().unwrap()]);
    assert_eq!(s.mtu, 1420);
    assert_eq!(s.node_name, "a1");
    assert_eq!(s.updated_at, 1_700_000_000);
    drop(l);
    let text = metrics.encode();
    assert!(
        text.contains("raven_node_netlink_ops_total{kind=\"route_add\"} 2"),
        "{text}"
    );
    assert!(text.contains("raven_node_tunnel_peers 1"), "{text}");
    assert!(
        text.contains("raven_node_peer_rx_bytes{peer=\"gw-b\"} 10"),
        "{text}"
    );
    assert!(
        text.contains("raven_node_node_state_generation 1"),
        "{text}"
    );
    // Applied fine, but the peer never handshaked: not ready.
    let err = ready_now(&health, t(1)).unwrap_err();
    assert!(err.contains("gw-b: no handshake yet"), "{err}");
    log.lock().unwrap().handshake = Some(t(1));
    e.poll_peers();
    assert_eq!(ready_now(&health, t(2)), Ok(()));
}

fn ready_now(health: &Health, now: SystemTime) -> Result<(), String> {
    super::super::health::ready(&health.lock(), now)
}

#[test]
fn unchanged_plan_publishes_nothing_and_change_bumps_generation() {
    let log = Shared::default();
    let (mut e, _, _) = engine("a2", &log);
    assert_eq!(
        e.pass(&two_domains("10.245.0.0/24"), t(0)).published,
        Some(1)
    );
    let again = e.pass(&two_domains("10.245.0.0/24"), t(30));
    assert!(again.ok);
    assert_eq!(again.published, None);
    assert_eq!(again.refreshed, None, "no refresh without a new generation");
    let changed = e.pass(&two_domains("10.246.0.0/24"), t(60));
    assert_eq!(changed.published, Some(2));
    assert!(changed.refreshed.is_some());
    let l = log.lock().unwrap();
    assert_eq!(l.published.len(), 2);
    assert_eq!(l.refreshes, 2);
    // A member runs no tunnel.
    assert!(l.tunnel_applies.iter().all(Option::is_none));
}

#[test]
fn restart_keeps_generation_when_routes_are_unchanged() {
    let log = Shared::default();
    let (mut first, _, _) = engine("a1", &log);
    first.pass(&two_domains("10.245.0.0/24"), t(0));
    first.pass(&two_domains("10.246.0.0/24"), t(1));
    drop(first);
    // Same routes after a restart: generation 2 is adopted, nothing republished, but the pods
    // are checked once (a crash between publish and refresh must converge).
    let (mut second, metrics, _) = engine("a1", &log);
    let r = second.pass(&two_domains("10.246.0.0/24"), t(2));
    assert!(r.ok);
    assert_eq!(r.published, None);
    assert!(r.refreshed.is_some());
    assert_eq!(log.lock().unwrap().published.len(), 2);
    assert!(
        metrics
            .encode()
            .contains("raven_node_node_state_generation 2")
    );
    // Different routes after a restart whose state file vanished (reboot): the generation
    // continues above the persisted one.
    log.lock().unwrap().on_disk = None;
    let (mut third, _, _) = engine("a1", &log);
    assert_eq!(
        third.pass(&two_domains("10.247.0.0/24"), t(3)).published,
        Some(3)
    );
}

#[test]
fn republishes_updated_at_when_due() {
    let log = Shared::default();
    let (mut e, _, _) = engine("a1", &log);
    e.pass(&two_domains("10.245.0.0/24"), t(0));
    e.republish_if_due(t(59)).unwrap();
    assert_eq!(log.lock().unwrap().published.len(), 1);
    e.republish_if_due(t(60)).unwrap();
    let l = log.lock().unwrap();
    assert_eq!(l.published.len(), 2);
    assert_eq!(l.published[1].generation, 1, "same generation");
    assert_eq!(l.published[1].updated_at, 1_700_000_060);
}

#[test]
fn failures_are_reported_retried_and_do_not_block_publication() {
    let log = Shared::default();
    log.lock().unwrap().fail_dataplane = true;
    let (mut e, metrics, health) = engine("a1", &log);
    let r = e.pass(&two_domains("10.245.0.0/24"), t(0));
    assert!(!r.ok);
    assert_eq!(r.published, Some(1), "pods still learn the plan");
    let err = ready_now(&health, t(0)).unwrap_err();
    assert!(err.contains("data plane: netlink"), "{err}");
    assert_eq!(e.next_delay(), Duration::from_secs(1));
    e.pass(&two_domains("10.245.0.0/24"), t(1));
    assert_eq!(e.next_delay(), Duration::from_secs(2));
    let text = metrics.encode();
    assert!(
        text.contains("raven_node_errors_total{kind=\"dataplane\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("raven_node_applies_total{result=\"error\"} 2"),
        "{text}"
    );
    log.lock().unwrap().fail_dataplane = false;
    assert!(e.pass(&two_domains("10.245.0.0/24"), t(2)).ok);
    assert_eq!(e.next_delay(), Duration::from_secs(30));
}

#[test]
fn failed_refresh_is_retried_on_the_next_pass() {
    let log = Shared::default();
    log.lock().unwrap().fail_refresh = true;
    let (mut e, metrics, _) = engine("a1", &log);
    assert!(!e.pass(&two_domains("10.245.0.0/24"), t(0)).ok);
    log.lock().unwrap().fail_refresh = false;
    let r = e.pass(&two_domains("10.245.0.0/24"), t(1));
    assert!(r.ok);
    assert!(
        r.refreshed.is_some(),
        "refresh retried without a new generation"
    );
    assert_eq!(log.lock().unwrap().refreshes, 2);
    assert!(
        metrics
            .encode()
            .contains("raven_node_errors_total{kind=\"refresh\"} 1")
    );
}

#[test]
fn warnings_become_metrics_by_kind() {
    let log = Shared::default();
    let (mut e, metrics, _) = engine("a1", &log);
    let mut gws = two_domains("10.245.0.0/24");
    // gw-b's subnet collides with a local one: excluded and reported, the rest applies.
    gws[1].status.as_mut().unwrap().nodes[0].subnets =
        vec!["10.244.1.0/24".into(), "10.250.0.0/24".into()];
    let r = e.pass(&gws, t(0));
    assert!(r.ok);
    let text = metrics.encode();
    assert!(
        text.contains("raven_node_plan_warnings{kind=\"remote_conflict\"} 1"),
        "{text}"
    );
    let l = log.lock().unwrap();
    assert_eq!(
        l.published[0].remote_prefixes,
        vec!["10.250.0.0/24".parse().unwrap()]
    );
    drop(l);
    // Fixed: the gauge drops back.
    e.pass(&two_domains("10.245.0.0/24"), t(1));
    assert!(!metrics.encode().contains("remote_conflict"));
}

#[test]
fn file_errors_are_counted_once_per_new_error() {
    let log = Shared::default();
    let (mut e, metrics, _) = engine("a1", &log);
    let err = FileError {
        path: "/gw/bad.yaml".into(),
        document: Some(0),
        reason: "YAML: bad".into(),
    };
    e.report_file_errors(std::slice::from_ref(&err));
    e.report_file_errors(std::slice::from_ref(&err));
    let text = metrics.encode();
    assert!(text.contains("raven_node_gateway_file_errors 1"), "{text}");
    assert!(
        text.contains("raven_node_errors_total{kind=\"gateway_file\"} 1"),
        "{text}"
    );
    e.report_file_errors(&[]);
    assert!(
        metrics
            .encode()
            .contains("raven_node_gateway_file_errors 0")
    );
}
