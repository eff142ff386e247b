//! What the agent owns in a Gateway spec, and the patch that writes it (pure).
//!
//! As upstream's agent does, `raven-node` writes two things into its own tunnel endpoints
//! (`nodeName == this node`, `type == tunnel`) of the Gateway spec:
//! - `config.publicKey`: its WireGuard public key (always, so peers can configure it);
//! - `publicIP`: only while this node is an active tunnel endpoint and the field is empty —
//!   from its LoadBalancer Service's ingress when the Gateway is exposed that way, else from
//!   the discovery URLs the operator configured ([`super::public_ip`]).
//!
//! The status copies of the endpoints then carry both (the controller copies spec endpoints
//! into `status.activeEndpoints`). Deciding is pure and table-tested; the write is one JSON
//! merge patch carrying the object's resourceVersion, so a concurrent change makes it fail
//! with 409 and the next evaluation recomputes it from the new object (no lost update).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use raven_api::gateway::EndpointType;
use raven_api::gateway::ExposeType;
use raven_api::gateway::v1beta1::{Endpoint, Gateway};
use raven_api::wellknown::CONFIG_PUBLIC_KEY;
use serde_json::{Value, json};

/// Where this node's public IP for a Gateway comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpSource {
    /// The ingress IP of the Gateway's tunnel LoadBalancer Service for this node.
    LoadBalancer,
    /// The operator's discovery URLs (none configured: nothing is discovered).
    Discovery,
}

fn own_tunnel(node: &str) -> impl Fn(&Endpoint) -> bool + '_ {
    move |e| e.node_name == node && e.type_ == EndpointType::Tunnel
}

/// Whether `node` should find and write its public IP for `gw`, and from where: it is an
/// active tunnel endpoint and one of its spec tunnel endpoints has no `publicIP`.
pub fn public_ip_wanted(gw: &Gateway, node: &str) -> Option<IpSource> {
    let mine = own_tunnel(node);
    let active = gw
        .status
        .as_ref()
        .is_some_and(|s| s.active_endpoints.iter().any(&mine));
    let empty = gw
        .spec
        .endpoints
        .iter()
        .any(|e| mine(e) && e.public_ip.trim().is_empty());
    let source = match gw.spec.expose_type {
        ExposeType::LoadBalancer => IpSource::LoadBalancer,
        _ => IpSource::Discovery,
    };
    (active && empty).then_some(source)
}

/// The first usable ingress IP of a LoadBalancer Service (an empty ingress list is simply
/// "not yet"; upstream's check could panic on it).
pub fn load_balancer_ip(svc: &Service) -> Option<IpAddr> {
    svc.status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .iter()
        .find_map(|i| i.ip.as_deref()?.parse().ok())
}

/// The merge patch writing `key` into `config.publicKey` of `node`'s tunnel endpoints and
/// `ip` into their empty `publicIP`, or `None` when nothing would change.
///
/// A merge patch replaces lists whole, so it carries every endpoint as read.
pub fn endpoint_patch(
    gw: &Gateway,
    node: &str,
    key: Option<&str>,
    ip: Option<IpAddr>,
) -> Option<Value> {
    let mine = own_tunnel(node);
    let mut changed = false;
    let endpoints: Vec<Endpoint> = gw
        .spec
        .endpoints
        .iter()
        .cloned()
        .map(|mut e| {
            if !mine(&e) {
                return e;
            }
            if let Some(key) = key
                && e.config.get(CONFIG_PUBLIC_KEY).map(String::as_str) != Some(key)
            {
                e.config
                    .insert(CONFIG_PUBLIC_KEY.to_owned(), key.to_owned());
                changed = true;
            }
            if let Some(ip) = ip
                && e.public_ip.trim().is_empty()
            {
                e.public_ip = ip.to_string();
                changed = true;
            }
            e
        })
        .collect();
    changed.then(|| {
        json!({
            "metadata": {"resourceVersion": gw.metadata.resource_version},
            "spec": {"endpoints": endpoints},
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};
    use raven_api::gateway::v1beta1::{GatewaySpec, GatewayStatus};

    fn ep(node: &str, t: EndpointType, key: Option<&str>, ip: &str) -> Endpoint {
        let mut e = Endpoint {
            node_name: node.into(),
            type_: t,
            port: 4500,
            public_ip: ip.into(),
            ..Default::default()
        };
        if let Some(k) = key {
            e.config.insert(CONFIG_PUBLIC_KEY.into(), k.into());
        }
        e
    }

    fn gw(endpoints: Vec<Endpoint>, active: Vec<Endpoint>, expose: ExposeType) -> Gateway {
        let mut g = Gateway::new(
            "gw",
            GatewaySpec {
                endpoints,
                expose_type: expose,
                ..Default::default()
            },
        );
        g.status = Some(GatewayStatus {
            active_endpoints: active,
            ..Default::default()
        });
        g.metadata.resource_version = Some("7".into());
        g
    }

    const T: EndpointType = EndpointType::Tunnel;
    const P: EndpointType = EndpointType::Proxy;

    #[test]
    fn the_key_goes_into_this_nodes_tunnel_endpoints_only() {
        let g = gw(
            vec![
                ep("n1", T, None, ""),
                ep("n1", P, None, ""),
                ep("n2", T, Some("other"), ""),
            ],
            vec![],
            ExposeType::NotExposed,
        );
        let p = endpoint_patch(&g, "n1", Some("K"), None).expect("a patch");
        assert_eq!(p["metadata"]["resourceVersion"], "7");
        let eps = p["spec"]["endpoints"].as_array().expect("list");
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0]["config"]["publicKey"], "K");
        assert!(eps[1].get("config").is_none(), "{p}");
        assert_eq!(eps[2]["config"]["publicKey"], "other");
        assert!(eps[0].get("publicIP").is_none(), "no IP given: {p}");
    }

    #[test]
    fn no_write_when_nothing_changes() {
        let g = gw(
            vec![ep("n1", T, Some("K"), "1.2.3.4")],
            vec![],
            ExposeType::NotExposed,
        );
        let ip: IpAddr = "5.6.7.8".parse().expect("ip");
        assert_eq!(endpoint_patch(&g, "n1", Some("K"), None), None);
        assert_eq!(
            endpoint_patch(&g, "n1", Some("K"), Some(ip)),
            None,
            "a publicIP set by the user is never overwritten"
        );
        assert_eq!(endpoint_patch(&g, "n9", Some("K"), Some(ip)), None);
        assert!(endpoint_patch(&g, "n1", Some("NEW"), None).is_some());
        assert_eq!(endpoint_patch(&g, "n1", None, None), None);
    }

    #[test]
    fn an_empty_public_ip_is_filled() {
        let g = gw(
            vec![ep("n1", T, Some("K"), ""), ep("n1", P, None, "")],
            vec![],
            ExposeType::NotExposed,
        );
        let ip: IpAddr = "203.0.113.9".parse().expect("ip");
        let p = endpoint_patch(&g, "n1", Some("K"), Some(ip)).expect("patch");
        assert_eq!(p["spec"]["endpoints"][0]["publicIP"], "203.0.113.9");
        assert!(
            p["spec"]["endpoints"][1].get("publicIP").is_none(),
            "proxy endpoints are not ours to fill (upstream bug §6.4 wrote the first match): {p}"
        );
    }

    #[test]
    fn public_ip_is_wanted_only_by_an_active_endpoint_without_one() {
        let cases = [
            (
                "active, empty, not exposed",
                gw(
                    vec![ep("n1", T, None, "")],
                    vec![ep("n1", T, None, "")],
                    ExposeType::NotExposed,
                ),
                Some(IpSource::Discovery),
            ),
            (
                "active, empty, LoadBalancer",
                gw(
                    vec![ep("n1", T, None, "")],
                    vec![ep("n1", T, None, "")],
                    ExposeType::LoadBalancer,
                ),
                Some(IpSource::LoadBalancer),
            ),
            (
                "active, already set",
                gw(
                    vec![ep("n1", T, None, "1.1.1.1")],
                    vec![ep("n1", T, None, "1.1.1.1")],
                    ExposeType::PublicIP,
                ),
                None,
            ),
            (
                "not active",
                gw(
                    vec![ep("n1", T, None, "")],
                    vec![ep("n2", T, None, "")],
                    ExposeType::NotExposed,
                ),
                None,
            ),
            (
                "active only as proxy",
                gw(
                    vec![ep("n1", T, None, "")],
                    vec![ep("n1", P, None, "")],
                    ExposeType::NotExposed,
                ),
                None,
            ),
        ];
        for (name, g, want) in cases {
            assert_eq!(public_ip_wanted(&g, "n1"), want, "{name}");
        }
    }

    #[test]
    fn load_balancer_ingress() {
        let svc = |ingress: Option<Vec<LoadBalancerIngress>>| Service {
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus { ingress }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ing = |ip: Option<&str>, host: Option<&str>| LoadBalancerIngress {
            ip: ip.map(Into::into),
            hostname: host.map(Into::into),
            ..Default::default()
        };
        assert_eq!(load_balancer_ip(&Service::default()), None);
        assert_eq!(load_balancer_ip(&svc(None)), None);
        assert_eq!(load_balancer_ip(&svc(Some(vec![]))), None, "empty: not yet");
        assert_eq!(
            load_balancer_ip(&svc(Some(vec![
                ing(None, Some("lb.example")),
                ing(Some("198.51.100.4"), None)
            ]))),
            Some("198.51.100.4".parse().expect("ip"))
        );
        assert_eq!(
            load_balancer_ip(&svc(Some(vec![ing(Some("garbage"), None)]))),
            None
        );
    }
}
