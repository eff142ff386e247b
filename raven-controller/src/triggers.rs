//! Which Gateways must be re-elected when a watched object changes (the enqueue rules).
//!
//! Upstream's rules (reference §3.2) plus the fix for its blind spot: a change of a member's
//! InternalIP or pod CIDRs changes `status.nodes` but upstream does not enqueue it (§3.9), so
//! agents route to stale subnets until something else happens. Nothing else about a Node
//! matters to the election, so other changes (heartbeats, unrelated labels) enqueue nothing.
//! A periodic full re-evaluation covers anything missed regardless.
//!
//! The Service and DNS rules (upstream's public-service, internal-service and DNS
//! controllers, reference §4) say which of those reconcilers an event makes [`Due`]. Our
//! passes re-plan everything, so these rules decide whether a `raven-agent-config` change is
//! worth a pass (see `runtime::observe`) and pin down, as exact sets, what each reconciler
//! depends on. Events about objects of another type (upstream's "non-Gateway gives 0") cannot
//! be expressed with typed events.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Service;
use raven_api::gateway::v1beta1::{Endpoint, EndpointType, ExposeType, Gateway};
use raven_api::wellknown::{
    CONFIG_ENABLE_L3_TUNNEL, CONFIG_ENABLE_L7_PROXY, LABEL_GATEWAY, PROXY_INTERNAL_SERVICE,
};

use crate::model::NodeView;
use crate::services::AgentPorts;

/// A reconciler an event makes due.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Due {
    /// The LoadBalancer Services and Endpoints of this Gateway.
    PublicServices(String),
    /// The internal proxy Service `x-raven-proxy-internal-svc` and its Endpoints.
    InternalService,
    /// The `edge-tunnel-nodes` DNS ConfigMap.
    Dns,
}

fn is_lb(gw: &Gateway) -> bool {
    gw.spec.expose_type == ExposeType::LoadBalancer
}

fn active_of<'a>(gw: &'a Gateway, t: &'a EndpointType) -> impl Iterator<Item = &'a Endpoint> {
    gw.status
        .iter()
        .flat_map(|s| s.active_endpoints.iter())
        .filter(move |e| e.type_ == *t)
}

/// What the internal Service reads from an exposed Gateway: its proxy ports and the nodes of
/// its proxy active endpoints.
fn internal_inputs(gw: &Gateway) -> (&str, &str, Vec<&str>) {
    (
        &gw.spec.proxy_config.proxy_http_port,
        &gw.spec.proxy_config.proxy_https_port,
        active_of(gw, &EndpointType::Proxy)
            .map(|e| e.node_name.as_str())
            .collect(),
    )
}

/// What a Gateway event makes due (acceptance cases 35 and 38, Gateway half).
///
/// Public Services: a create or delete of a LoadBalancer Gateway; an update where either side
/// is LoadBalancer and the exposeType or `status.activeEndpoints` changed (upstream compares a
/// hash of the active endpoints; equality is the same test).
///
/// Internal Service: a create or delete of an exposed Gateway (any non-empty exposeType, as
/// upstream); an update where either side is exposed and the exposeType, the proxy HTTP/HTTPS
/// port lists or the proxy active endpoints changed. Upstream fires on every update of an
/// exposed Gateway, status heartbeats included; nothing else is read, so nothing else can
/// change the internal Service.
pub fn due_for_gateway_event(old: Option<&Gateway>, new: Option<&Gateway>) -> BTreeSet<Due> {
    let mut due = BTreeSet::new();
    let exposed = |g: Option<&Gateway>| g.is_some_and(|g| !g.spec.expose_type.is_not_exposed());
    match (old, new) {
        (None, None) => {}
        (Some(g), None) | (None, Some(g)) => {
            if is_lb(g) {
                due.insert(Due::PublicServices(g.name().to_owned()));
            }
            if exposed(Some(g)) {
                due.insert(Due::InternalService);
            }
        }
        (Some(o), Some(n)) => {
            let active = |g: &Gateway| g.status.as_ref().map(|s| s.active_endpoints.clone());
            let expose_changed = o.spec.expose_type != n.spec.expose_type;
            if (is_lb(o) || is_lb(n)) && (expose_changed || active(o) != active(n)) {
                due.insert(Due::PublicServices(o.name().to_owned()));
                due.insert(Due::PublicServices(n.name().to_owned()));
            }
            if (exposed(old) || exposed(new))
                && (expose_changed || internal_inputs(o) != internal_inputs(n))
            {
                due.insert(Due::InternalService);
            }
        }
    }
    due
}

/// What a `kube-system/raven-agent-config` event makes due, given all Gateways (acceptance
/// cases 35 and 38, ConfigMap half): the public Services of every LoadBalancer Gateway when
/// the proxy-external or tunnel-bind port changed, the internal Service when the internal
/// insecure or secure port changed. Ports are compared as the planners read them (a missing or
/// unparsable address is the default port), so a delete that brings back the defaults counts
/// too (upstream ignores deletes and leaves Services pointing at the old ports), and a create
/// that repeats the defaults changes nothing.
pub fn due_for_agent_config_event(
    old: Option<&BTreeMap<String, String>>,
    new: Option<&BTreeMap<String, String>>,
    gateways: &[Gateway],
) -> BTreeSet<Due> {
    let (o, n) = (
        AgentPorts::from_agent_config(old),
        AgentPorts::from_agent_config(new),
    );
    let mut due = BTreeSet::new();
    if o.proxy_external != n.proxy_external || o.tunnel_bind != n.tunnel_bind {
        due.extend(
            gateways
                .iter()
                .filter(|g| is_lb(g))
                .map(|g| Due::PublicServices(g.name().to_owned())),
        );
    }
    if o.proxy_internal_insecure != n.proxy_internal_insecure
        || o.proxy_internal_secure != n.proxy_internal_secure
    {
        due.insert(Due::InternalService);
    }
    due
}

/// Whether a Service event makes the DNS ConfigMap due (acceptance case 42, Service half):
/// only the ClusterIP Service `x-raven-proxy-internal-svc` in our namespace counts (the
/// caller filters the namespace); a create with a clusterIP, a delete, an update that changes
/// the clusterIP.
pub fn dns_due_for_service_event(old: Option<&Service>, new: Option<&Service>) -> bool {
    let ip = |s: &Service| {
        s.spec
            .as_ref()
            .and_then(|sp| sp.cluster_ip.clone())
            .filter(|ip| !ip.is_empty())
    };
    let internal = |s: &Service| {
        s.metadata.name.as_deref() == Some(PROXY_INTERNAL_SERVICE)
            && s.spec
                .as_ref()
                .and_then(|sp| sp.type_.as_deref())
                .is_none_or(|t| t == "ClusterIP")
    };
    match (old.filter(|s| internal(s)), new.filter(|s| internal(s))) {
        (None, None) => false,
        (None, Some(n)) => ip(n).is_some(),
        // Deleted, or no longer a ClusterIP Service: DNS falls back to node IPs.
        (Some(_), None) => true,
        (Some(o), Some(n)) => ip(o) != ip(n),
    }
}

/// Whether a Node event makes the DNS ConfigMap due (acceptance case 42, Node half): a create
/// or delete always; an update when an address the hosts file uses changed (upstream ignores
/// Node updates, so a node's new InternalIP stays stale in CoreDNS until something else
/// happens).
pub fn dns_due_for_node_event(old: Option<&NodeView>, new: Option<&NodeView>) -> bool {
    match (old, new) {
        (None, None) => false,
        (Some(o), Some(n)) => o.private_ip != n.private_ip || o.external_ip != n.external_ip,
        _ => true,
    }
}

/// Gateways to re-elect after a Node event: `(None, Some)` is a create, `(Some, None)` a
/// delete, `(Some, Some)` an update.
pub fn gateways_for_node_event(old: Option<&NodeView>, new: Option<&NodeView>) -> BTreeSet<String> {
    let gw = |n: Option<&NodeView>| {
        n.and_then(|n| n.label(LABEL_GATEWAY))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let (old_gw, new_gw) = (gw(old), gw(new));
    let relevant = match (old, new) {
        (Some(o), Some(n)) => {
            old_gw != new_gw
                || o.ready != n.ready
                || o.private_ip != n.private_ip
                || o.pod_cidrs != n.pod_cidrs
        }
        _ => true,
    };
    if !relevant {
        return BTreeSet::new();
    }
    old_gw.into_iter().chain(new_gw).collect()
}

/// Whether a `raven-cfg` event re-elects every Gateway: on create and delete always, on update
/// only when `enable-l7-proxy` or `enable-l3-tunnel` changed (other keys belong to vendors).
pub fn raven_cfg_event_reelects_all(
    old: Option<&BTreeMap<String, String>>,
    new: Option<&BTreeMap<String, String>>,
) -> bool {
    match (old, new) {
        (Some(o), Some(n)) => [CONFIG_ENABLE_L7_PROXY, CONFIG_ENABLE_L3_TUNNEL]
            .iter()
            .any(|k| o.get(*k) != n.get(*k)),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(gw: Option<&str>, ready: bool) -> NodeView {
        let mut v = NodeView {
            name: "node".into(),
            ready,
            ..Default::default()
        };
        if let Some(g) = gw {
            v.labels.insert(LABEL_GATEWAY.into(), g.into());
        }
        v
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Acceptance cases 28–31 (27, a non-Node object, cannot be expressed with typed events).
    #[test]
    fn node_event_table() {
        let unlabelled = n(None, true);
        let mock = n(Some("gw-mock"), true);
        let mock_new = n(Some("gw-mock-new"), true);
        let mock_down = n(Some("gw-mock"), false);
        let mut mock_ip = mock.clone();
        mock_ip.private_ip = Some("10.0.0.9".parse().expect("ip"));
        let mut mock_cidr = mock.clone();
        mock_cidr.pod_cidrs = vec!["fd00::/64".into()];
        let unlabelled_down = n(None, false);
        let mut mock_other = mock.clone();
        mock_other.labels.insert("team".into(), "a".into());
        type Case<'a> = (
            &'a str,
            Option<&'a NodeView>,
            Option<&'a NodeView>,
            BTreeSet<String>,
        );
        let cases: Vec<Case> = vec![
            ("28 create unlabelled", None, Some(&unlabelled), set(&[])),
            ("28 delete unlabelled", Some(&unlabelled), None, set(&[])),
            ("29 create labelled", None, Some(&mock), set(&["gw-mock"])),
            ("29 delete labelled", Some(&mock), None, set(&["gw-mock"])),
            (
                "30 label change",
                Some(&mock),
                Some(&mock_new),
                set(&["gw-mock", "gw-mock-new"]),
            ),
            (
                "31 ready flip",
                Some(&mock),
                Some(&mock_down),
                set(&["gw-mock"]),
            ),
            (
                "label added",
                Some(&unlabelled),
                Some(&mock),
                set(&["gw-mock"]),
            ),
            (
                "fix: address change",
                Some(&mock),
                Some(&mock_ip),
                set(&["gw-mock"]),
            ),
            (
                "fix: pod CIDR change",
                Some(&mock),
                Some(&mock_cidr),
                set(&["gw-mock"]),
            ),
            ("unrelated label", Some(&mock), Some(&mock_other), set(&[])),
            ("no change", Some(&mock), Some(&mock), set(&[])),
            (
                "ready flip unlabelled",
                Some(&unlabelled),
                Some(&unlabelled_down),
                set(&[]),
            ),
        ];
        for (name, old, new, want) in cases {
            assert_eq!(gateways_for_node_event(old, new), want, "{name}");
        }
    }

    /// Acceptance case 32 (ConfigMap handler; a non-ConfigMap cannot be expressed).
    #[test]
    fn raven_cfg_event_table() {
        let cm = |p: &str, t: &str, extra: &str| -> BTreeMap<String, String> {
            BTreeMap::from([
                (CONFIG_ENABLE_L7_PROXY.to_string(), p.to_string()),
                (CONFIG_ENABLE_L3_TUNNEL.to_string(), t.to_string()),
                ("acl-id".to_string(), extra.to_string()),
            ])
        };
        let base = cm("true", "true", "a");
        let cases = [
            ("create", None, Some(base.clone()), true),
            ("delete", Some(base.clone()), None, true),
            (
                "proxy changed",
                Some(base.clone()),
                Some(cm("false", "true", "a")),
                true,
            ),
            (
                "tunnel changed",
                Some(base.clone()),
                Some(cm("true", "false", "a")),
                true,
            ),
            (
                "vendor key changed",
                Some(base.clone()),
                Some(cm("true", "true", "b")),
                false,
            ),
            ("unchanged", Some(base.clone()), Some(base.clone()), false),
        ];
        for (name, old, new, want) in cases {
            assert_eq!(
                raven_cfg_event_reelects_all(old.as_ref(), new.as_ref()),
                want,
                "{name}"
            );
        }
    }

    fn gwx(name: &str, expose: ExposeType, proxies: &[&str]) -> Gateway {
        use raven_api::gateway::v1beta1::{GatewaySpec, GatewayStatus};
        let active: Vec<Endpoint> = proxies
            .iter()
            .map(|n| Endpoint {
                node_name: (*n).into(),
                type_: EndpointType::Proxy,
                port: 10262,
                ..Default::default()
            })
            .collect();
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

    fn due(v: &[Due]) -> BTreeSet<Due> {
        v.iter().cloned().collect()
    }

    fn public(n: &str) -> Due {
        Due::PublicServices(n.into())
    }

    /// Acceptance cases 35 and 38, Gateway half: the public-service and internal-service
    /// enqueue rules as one exact set per event (upstream counts requests per controller: 35's
    /// count is our `PublicServices` entries, 38's is `InternalService`).
    #[test]
    fn gateway_event_table() {
        let public_ip = gwx("gw-pub", ExposeType::PublicIP, &["n1"]);
        let lb = gwx("gw-lb", ExposeType::LoadBalancer, &["n1"]);
        let lb_from_pub = gwx("gw-pub", ExposeType::LoadBalancer, &["n1"]);
        let lb_moved = gwx("gw-lb", ExposeType::LoadBalancer, &["n2"]);
        let mut lb_ports = lb.clone();
        lb_ports.spec.proxy_config.proxy_http_port = "10266,10267".into();
        let mut lb_tunnel = lb.clone();
        if let Some(s) = lb_tunnel.status.as_mut() {
            s.active_endpoints.push(Endpoint {
                node_name: "n1".into(),
                type_: EndpointType::Tunnel,
                port: 4500,
                ..Default::default()
            });
        }
        let edge = gwx("gw-edge", ExposeType::NotExposed, &["e1"]);
        let edge_moved = gwx("gw-edge", ExposeType::NotExposed, &["e2"]);
        let pub_moved = gwx("gw-pub", ExposeType::PublicIP, &["n2"]);
        type Case<'a> = (
            &'a str,
            Option<&'a Gateway>,
            Option<&'a Gateway>,
            BTreeSet<Due>,
        );
        let cases: Vec<Case> = vec![
            // 35: public Services.
            (
                "35 PublicIP create",
                None,
                Some(&public_ip),
                due(&[Due::InternalService]),
            ),
            (
                "35 LB create",
                None,
                Some(&lb),
                due(&[public("gw-lb"), Due::InternalService]),
            ),
            (
                "35 PublicIP delete",
                Some(&public_ip),
                None,
                due(&[Due::InternalService]),
            ),
            (
                "35 LB delete",
                Some(&lb),
                None,
                due(&[public("gw-lb"), Due::InternalService]),
            ),
            (
                "35 update PublicIP -> LB",
                Some(&public_ip),
                Some(&lb_from_pub),
                due(&[public("gw-pub"), Due::InternalService]),
            ),
            (
                "35 LB active endpoint moved",
                Some(&lb),
                Some(&lb_moved),
                due(&[public("gw-lb"), Due::InternalService]),
            ),
            (
                "LB tunnel endpoint elected: public only",
                Some(&lb),
                Some(&lb_tunnel),
                due(&[public("gw-lb")]),
            ),
            (
                "LB proxy ports changed: internal only",
                Some(&lb),
                Some(&lb_ports),
                due(&[Due::InternalService]),
            ),
            (
                "LB unchanged (fix: upstream 38 fires)",
                Some(&lb),
                Some(&lb),
                due(&[]),
            ),
            // 38: internal Service.
            ("38 empty exposeType create", None, Some(&edge), due(&[])),
            ("38 empty exposeType delete", Some(&edge), None, due(&[])),
            (
                "38 empty exposeType update",
                Some(&edge),
                Some(&edge_moved),
                due(&[]),
            ),
            (
                "38 exposed create",
                None,
                Some(&public_ip),
                due(&[Due::InternalService]),
            ),
            (
                "38 exposed delete",
                Some(&public_ip),
                None,
                due(&[Due::InternalService]),
            ),
            (
                "38 exposed update",
                Some(&public_ip),
                Some(&pub_moved),
                due(&[Due::InternalService]),
            ),
            ("no object", None, None, due(&[])),
        ];
        for (name, old, new, want) in cases {
            assert_eq!(due_for_gateway_event(old, new), want, "{name}");
        }
    }

    /// Acceptance cases 35 and 38, ConfigMap half (`raven-agent-config`). The fixture has one
    /// LB Gateway, as upstream's, plus a PublicIP and an edge Gateway that must not be listed.
    #[test]
    fn agent_config_event_table() {
        let gws = [
            gwx("gw-lb", ExposeType::LoadBalancer, &["n1"]),
            gwx("gw-pub", ExposeType::PublicIP, &["n2"]),
            gwx("gw-edge", ExposeType::NotExposed, &["e1"]),
        ];
        let cm = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let empty = cm(&[]);
        let proxy80 = cm(&[("proxy-external-addr", "1.1.1.3:80")]);
        let proxy90 = cm(&[("proxy-external-addr", "1.1.1.3:90")]);
        let tunnel80 = cm(&[("tunnel-bind-addr", "127.0.0.4:80")]);
        let tunnel81 = cm(&[("tunnel-bind-addr", "127.0.0.4:81")]);
        let insecure = cm(&[
            ("proxy-internal-insecure-addr", "0.0.0.0:10265"),
            ("proxy-internal-secure-addr", "0.0.0.0:10263"),
        ]);
        let insecure_bad = cm(&[
            ("proxy-internal-insecure-addr", "127.0.0.1"),
            ("proxy-internal-secure-addr", "0.0.0.0:10269"),
        ]);
        let insecure2 = cm(&[
            ("proxy-internal-insecure-addr", "0.0.0.0:10266"),
            ("proxy-internal-secure-addr", "0.0.0.0:10263"),
        ]);
        let secure2 = cm(&[
            ("proxy-internal-insecure-addr", "0.0.0.0:10265"),
            ("proxy-internal-secure-addr", "0.0.0.0:10270"),
        ]);
        let defaults = cm(&[("proxy-external-addr", "0.0.0.0:10262")]);
        let vendor = cm(&[("proxy-external-addr", "1.1.1.3:80"), ("vpn-driver", "wg")]);
        type Case<'a> = (
            &'a str,
            Option<&'a BTreeMap<String, String>>,
            Option<&'a BTreeMap<String, String>>,
            BTreeSet<Due>,
        );
        let lb = || due(&[public("gw-lb")]);
        let cases: Vec<Case> = vec![
            ("35 empty data create", None, Some(&empty), due(&[])),
            ("35 proxy addr create", None, Some(&proxy80), lb()),
            ("35 tunnel addr create", None, Some(&tunnel80), lb()),
            (
                "35 proxy port 80 -> 90",
                Some(&proxy80),
                Some(&proxy90),
                lb(),
            ),
            (
                "35 tunnel port change",
                Some(&tunnel80),
                Some(&tunnel81),
                lb(),
            ),
            (
                "proxy port unchanged, vendor key",
                Some(&proxy80),
                Some(&vendor),
                due(&[]),
            ),
            (
                "create repeating the defaults",
                None,
                Some(&defaults),
                due(&[]),
            ),
            (
                "fix: delete restores default ports",
                Some(&proxy80),
                None,
                lb(),
            ),
            (
                "38 valid insecure port create",
                None,
                Some(&insecure),
                due(&[Due::InternalService]),
            ),
            (
                "38 invalid insecure, valid secure create",
                None,
                Some(&insecure_bad),
                due(&[Due::InternalService]),
            ),
            (
                "38 insecure port change",
                Some(&insecure),
                Some(&insecure2),
                due(&[Due::InternalService]),
            ),
            (
                "38 secure port change",
                Some(&insecure),
                Some(&secure2),
                due(&[Due::InternalService]),
            ),
            ("unchanged", Some(&insecure), Some(&insecure), due(&[])),
        ];
        for (name, old, new, want) in cases {
            assert_eq!(due_for_agent_config_event(old, new, &gws), want, "{name}");
        }
    }

    /// Acceptance case 42: the DNS enqueue rules, plus the address fix for Node updates.
    #[test]
    fn dns_event_table() {
        use k8s_openapi::api::core::v1::ServiceSpec;
        let svc = |name: &str, ty: Option<&str>, ip: Option<&str>| Service {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: ty.map(Into::into),
                cluster_ip: ip.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        };
        let internal = svc(
            PROXY_INTERNAL_SERVICE,
            Some("ClusterIP"),
            Some("172.168.0.1"),
        );
        let internal_new_ip = svc(
            PROXY_INTERNAL_SERVICE,
            Some("ClusterIP"),
            Some("172.168.0.2"),
        );
        let internal_no_ip = svc(PROXY_INTERNAL_SERVICE, None, None);
        let internal_lb = svc(
            PROXY_INTERNAL_SERVICE,
            Some("LoadBalancer"),
            Some("172.168.0.1"),
        );
        let other = svc("kube-dns", Some("ClusterIP"), Some("10.96.0.10"));
        let mut internal_relabelled = internal.clone();
        internal_relabelled.metadata.labels = Some(BTreeMap::from([("a".into(), "b".into())]));
        let svc_cases: Vec<(&str, Option<&Service>, Option<&Service>, bool)> = vec![
            ("42 create with clusterIP", None, Some(&internal), true),
            (
                "create without clusterIP",
                None,
                Some(&internal_no_ip),
                false,
            ),
            ("42 delete", Some(&internal), None, true),
            (
                "42 clusterIP change",
                Some(&internal),
                Some(&internal_new_ip),
                true,
            ),
            (
                "clusterIP assigned",
                Some(&internal_no_ip),
                Some(&internal),
                true,
            ),
            (
                "update, same clusterIP",
                Some(&internal),
                Some(&internal_relabelled),
                false,
            ),
            ("not ClusterIP", None, Some(&internal_lb), false),
            (
                "became LoadBalancer",
                Some(&internal),
                Some(&internal_lb),
                true,
            ),
            ("another Service", None, Some(&other), false),
            ("another Service deleted", Some(&other), None, false),
            ("42 empty event", None, None, false),
        ];
        for (name, old, new, want) in svc_cases {
            assert_eq!(dns_due_for_service_event(old, new), want, "{name}");
        }
        let a = n(Some("gw-a"), true);
        let mut a_ip = a.clone();
        a_ip.private_ip = Some("10.0.0.9".parse().expect("ip"));
        let mut a_ext = a.clone();
        a_ext.external_ip = Some("1.2.3.4".parse().expect("ip"));
        let a_down = n(Some("gw-a"), false);
        let a_moved = n(Some("gw-b"), true);
        let node_cases: Vec<(&str, Option<&NodeView>, Option<&NodeView>, bool)> = vec![
            ("42 node create", None, Some(&a), true),
            ("42 node delete", Some(&a), None, true),
            ("fix: InternalIP change", Some(&a), Some(&a_ip), true),
            ("fix: ExternalIP change", Some(&a), Some(&a_ext), true),
            ("ready flip", Some(&a), Some(&a_down), false),
            ("gateway label change", Some(&a), Some(&a_moved), false),
            ("42 empty event", None, None, false),
        ];
        for (name, old, new, want) in node_cases {
            assert_eq!(dns_due_for_node_event(old, new), want, "{name}");
        }
    }
}
