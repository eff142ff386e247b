//! The Services and Endpoints that make exposed Gateways reachable: upstream's
//! gatewaypublicservice and gatewayinternalservice controllers as one pure planner.
//!
//! - **Public**: for every Gateway with `exposeType: LoadBalancer`, one `LoadBalancer` Service
//!   (no selector, `externalTrafficPolicy: Local`) plus a manual Endpoints pointing at the node,
//!   per active endpoint of an enabled type, named `x-raven-{proxy,tunnel}-svc-<gw>-<suffix>`
//!   and labelled `raven.openyurt.io/{gateway,gateway-type,endpoints-name}` (the agent finds its
//!   tunnel Service by these labels). Identity is the label triple, not the name, so Services an
//!   upstream controller created (random suffix) are adopted as they are.
//! - **Internal**: `x-raven-proxy-internal-svc` (ClusterIP, no selector, label `app: raven`)
//!   with one `http-<p>`/`https-<p>` port per port listed by any exposed Gateway, and Endpoints
//!   at the nodes of every active proxy endpoint of exposed Gateways.
//!
//! Upstream bugs fixed here (reference §4.1–4.2): the Endpoints name is always the actual
//! Service's name (upstream derives it from a fresh random name, so a Service that lost its
//! Endpoints gets a differently named one and no backends); an already existing object is
//! updated, never a reason to stop the pass; the suffix is a hash of (Gateway, node, type), so
//! names are stable and planning is deterministic; internal ports are de-duplicated across
//! Gateways (upstream sends duplicates and the API server rejects the Service); the internal
//! Endpoints is cleared when no proxy endpoint is left instead of going stale; an update only
//! touches `type`, `externalTrafficPolicy` and `ports`, so the allocated ClusterIP and
//! healthCheckNodePort survive (upstream #2653).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use raven_api::gateway::EndpointType;
use raven_api::gateway::v1beta1::Gateway;
use raven_api::wellknown::{
    AGENT_CONFIG_PROXY_EXTERNAL_ADDR, AGENT_CONFIG_PROXY_INTERNAL_INSECURE_ADDR,
    AGENT_CONFIG_PROXY_INTERNAL_SECURE_ADDR, AGENT_CONFIG_TUNNEL_BIND_ADDR,
    ANNOTATION_SERVICE_DISCARD, ANNOTATION_SERVICE_DISCARD_VALUE,
    DEFAULT_PROXY_SERVER_EXPOSED_PORT, DEFAULT_PROXY_SERVER_INSECURE_PORT,
    DEFAULT_PROXY_SERVER_SECURE_PORT, DEFAULT_TUNNEL_SERVER_EXPOSED_PORT,
    EXPOSE_TYPE_LOAD_BALANCER, INTERNAL_SERVICE_HTTP_PORT_PREFIX,
    INTERNAL_SERVICE_HTTPS_PORT_PREFIX, LABEL_APP, LABEL_APP_VALUE, LABEL_GATEWAY,
    LABEL_GATEWAY_ENDPOINTS, LABEL_GATEWAY_TYPE, PROXY_INTERNAL_SERVICE, PROXY_SERVICE_NAME_PREFIX,
    TUNNEL_SERVICE_NAME_PREFIX, WORKING_NAMESPACE,
};

use crate::election::Features;

/// Longest Service name (DNS-1035 label).
const MAX_SERVICE_NAME: usize = 63;
/// `spec.type` of the public Services.
const LOAD_BALANCER: &str = "LoadBalancer";
/// `spec.type` of the internal Service.
const CLUSTER_IP: &str = "ClusterIP";
/// `externalTrafficPolicy` of the public Services: keep the client address, no extra hop.
const TRAFFIC_POLICY_LOCAL: &str = "Local";

/// The agent ports from `kube-system/raven-agent-config` (each `host:port`; a missing or
/// unparsable value gives the default, like upstream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentPorts {
    /// Proxy server external port: target of the proxy LB Services.
    pub proxy_external: u16,
    /// Tunnel server port: target of the tunnel LB Services.
    pub tunnel_bind: u16,
    /// Proxy server plain-HTTP internal port: target of `http-*` internal ports.
    pub proxy_internal_insecure: u16,
    /// Proxy server HTTPS internal port: target of `https-*` internal ports.
    pub proxy_internal_secure: u16,
}

impl Default for AgentPorts {
    fn default() -> Self {
        AgentPorts {
            proxy_external: DEFAULT_PROXY_SERVER_EXPOSED_PORT,
            tunnel_bind: DEFAULT_TUNNEL_SERVER_EXPOSED_PORT,
            proxy_internal_insecure: DEFAULT_PROXY_SERVER_INSECURE_PORT,
            proxy_internal_secure: DEFAULT_PROXY_SERVER_SECURE_PORT,
        }
    }
}

/// The port of a `host:port` (`:port`, `[v6]:port`) address; `None` unless it is 1..=65535.
pub fn addr_port(addr: &str) -> Option<u16> {
    let (_, port) = addr.rsplit_once(':')?;
    port.parse::<u16>().ok().filter(|p| *p != 0)
}

impl AgentPorts {
    /// Reads `raven-agent-config` data (`None` when the ConfigMap is absent).
    pub fn from_agent_config(data: Option<&BTreeMap<String, String>>) -> AgentPorts {
        let d = AgentPorts::default();
        let get = |k: &str, def: u16| {
            data.and_then(|m| m.get(k))
                .and_then(|v| addr_port(v))
                .unwrap_or(def)
        };
        AgentPorts {
            proxy_external: get(AGENT_CONFIG_PROXY_EXTERNAL_ADDR, d.proxy_external),
            tunnel_bind: get(AGENT_CONFIG_TUNNEL_BIND_ADDR, d.tunnel_bind),
            proxy_internal_insecure: get(
                AGENT_CONFIG_PROXY_INTERNAL_INSECURE_ADDR,
                d.proxy_internal_insecure,
            ),
            proxy_internal_secure: get(
                AGENT_CONFIG_PROXY_INTERNAL_SECURE_ADDR,
                d.proxy_internal_secure,
            ),
        }
    }
}

/// Everything the Service planner reads.
#[derive(Clone, Copy, Debug)]
pub struct ServiceInput<'a> {
    /// All Gateways, with their status.
    pub gateways: &'a [Gateway],
    /// Feature switches from `raven-cfg`.
    pub features: Features,
    /// Agent ports from `raven-agent-config`.
    pub ports: AgentPorts,
    /// Private IP of each node (nodes without one are absent).
    pub node_ips: &'a BTreeMap<String, IpAddr>,
    /// Services in the working namespace (others are ignored).
    pub services: &'a [Service],
    /// Endpoints in the working namespace (others are ignored).
    pub endpoints: &'a [Endpoints],
}

/// One write. Patches are JSON merge patches of exactly the fields we own.
#[derive(Clone, Debug, PartialEq)]
pub enum ServiceAction {
    /// Create this Service.
    CreateService(Box<Service>),
    /// Merge-patch Service `name` (only `spec.type`, `spec.externalTrafficPolicy`,
    /// `spec.ports`).
    PatchService {
        /// Service name.
        name: String,
        /// The merge patch.
        patch: serde_json::Value,
    },
    /// Delete Service `name`.
    DeleteService {
        /// Service name.
        name: String,
    },
    /// Create these Endpoints.
    CreateEndpoints(Box<Endpoints>),
    /// Replace the subsets of Endpoints `name` (merge patch `{"subsets": …}`).
    PatchEndpoints {
        /// Endpoints name.
        name: String,
        /// The new subsets.
        subsets: Vec<EndpointSubset>,
    },
    /// Delete Endpoints `name`.
    DeleteEndpoints {
        /// Endpoints name.
        name: String,
    },
}

/// The planner's output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServicePlan {
    /// Writes, Services before their Endpoints, creates/patches before deletes per object.
    pub actions: Vec<ServiceAction>,
    /// Things skipped and why (for logs and Events).
    pub problems: Vec<String>,
}

/// Identity of a public Service/Endpoints: (gateway, node, type).
type PublicKey = (String, String, String);

fn labels_of(meta: &ObjectMeta) -> Option<&BTreeMap<String, String>> {
    meta.labels.as_ref()
}

/// The (gateway, node, type) identity of a public object, from its labels.
fn public_key(meta: &ObjectMeta) -> Option<PublicKey> {
    let l = labels_of(meta)?;
    Some((
        l.get(LABEL_GATEWAY)?.clone(),
        l.get(LABEL_GATEWAY_ENDPOINTS)?.clone(),
        l.get(LABEL_GATEWAY_TYPE)?.clone(),
    ))
}

fn in_namespace(meta: &ObjectMeta) -> bool {
    meta.namespace
        .as_deref()
        .is_none_or(|n| n == WORKING_NAMESPACE)
}

/// 32-bit FNV-1a: a stable, dependency-free name suffix.
fn fnv1a(parts: &[&str]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// The name of a new public Service: `<prefix>-<gw>-<8 hex>`, where the suffix hashes
/// (gateway, node, type). Dots (legal in Gateway names, not in Service names) become dashes and
/// a long Gateway name is shortened to keep the 63-character limit.
pub fn public_service_name(gateway: &str, node: &str, t: &EndpointType) -> String {
    let prefix = match t {
        EndpointType::Tunnel => TUNNEL_SERVICE_NAME_PREFIX,
        _ => PROXY_SERVICE_NAME_PREFIX,
    };
    let suffix = format!("{:08x}", fnv1a(&[gateway, node, t.as_str()]));
    let room = MAX_SERVICE_NAME - prefix.len() - suffix.len() - 2;
    let gw: String = gateway
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(room)
        .collect();
    let gw = gw.trim_end_matches('-');
    format!("{prefix}-{gw}-{suffix}")
}

fn protocol(t: &EndpointType) -> &'static str {
    match t {
        EndpointType::Tunnel => "UDP",
        _ => "TCP",
    }
}

/// What we compare of a Service port: (name, protocol, port, targetPort).
fn port_key(p: &ServicePort) -> (String, String, i32, Option<IntOrString>) {
    (
        p.name.clone().unwrap_or_default(),
        p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
        p.port,
        p.target_port.clone(),
    )
}

fn ports_differ(a: &[ServicePort], b: &[ServicePort]) -> bool {
    let ka: Vec<_> = a.iter().map(port_key).collect();
    let kb: Vec<_> = b.iter().map(port_key).collect();
    ka != kb
}

/// The comparable form of one Endpoints subset: sorted (ip, node) and (name, protocol, port).
type SubsetKey = (Vec<(String, String)>, Vec<(String, String, i32)>);

/// What we compare of Endpoints subsets: sorted addresses (ip, node) and ports.
fn subsets_key(s: &[EndpointSubset]) -> Vec<SubsetKey> {
    s.iter()
        .map(|s| {
            let mut a: Vec<_> = s
                .addresses
                .iter()
                .flatten()
                .map(|a| (a.ip.clone(), a.node_name.clone().unwrap_or_default()))
                .collect();
            a.sort();
            let mut p: Vec<_> = s
                .ports
                .iter()
                .flatten()
                .map(|p| {
                    (
                        p.name.clone().unwrap_or_default(),
                        p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                        p.port,
                    )
                })
                .collect();
            p.sort();
            (a, p)
        })
        .collect()
}

fn meta(name: &str, labels: BTreeMap<String, String>, discard: bool) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(WORKING_NAMESPACE.to_owned()),
        labels: Some(labels),
        annotations: discard.then(|| {
            BTreeMap::from([(
                ANNOTATION_SERVICE_DISCARD.to_owned(),
                ANNOTATION_SERVICE_DISCARD_VALUE.to_owned(),
            )])
        }),
        ..Default::default()
    }
}

/// A desired public Service/Endpoints pair.
struct PublicWant {
    key: PublicKey,
    endpoint_type: EndpointType,
    port: i32,
}

/// Plans every Service and Endpoints write. Pure and deterministic.
pub fn plan(input: &ServiceInput<'_>) -> ServicePlan {
    let mut plan = ServicePlan::default();
    plan_public(input, &mut plan);
    plan_internal(input, &mut plan);
    plan
}

fn plan_public(input: &ServiceInput<'_>, plan: &mut ServicePlan) {
    // Desired, keyed by identity.
    let mut want: BTreeMap<PublicKey, PublicWant> = BTreeMap::new();
    for gw in input.gateways {
        if gw.spec.expose_type.as_str() != EXPOSE_TYPE_LOAD_BALANCER {
            continue;
        }
        let Some(status) = &gw.status else { continue };
        for ep in &status.active_endpoints {
            if !input.features.enabled(&ep.type_) {
                continue;
            }
            let Some(port) = i32::try_from(ep.port)
                .ok()
                .filter(|p| (1..=65535).contains(p))
            else {
                plan.problems.push(format!(
                    "gateway {}: {} endpoint on node {} has port {} outside 1..65535; no Service",
                    gw.name(),
                    ep.type_,
                    ep.node_name,
                    ep.port
                ));
                continue;
            };
            let key = (
                gw.name().to_owned(),
                ep.node_name.clone(),
                ep.type_.as_str().to_owned(),
            );
            want.entry(key.clone()).or_insert(PublicWant {
                key,
                endpoint_type: ep.type_.clone(),
                port,
            });
        }
    }

    // Current public Services (LoadBalancer, fully labelled); duplicates beyond the first
    // (by name) are deleted.
    let mut services: Vec<&Service> = input
        .services
        .iter()
        .filter(|s| in_namespace(&s.metadata))
        .filter(|s| {
            s.spec.as_ref().and_then(|sp| sp.type_.as_deref()) == Some(LOAD_BALANCER)
                && public_key(&s.metadata).is_some()
        })
        .collect();
    services.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut have_svc: BTreeMap<PublicKey, &Service> = BTreeMap::new();
    let mut deletes = Vec::new();
    for s in services {
        let key = public_key(&s.metadata).expect("filtered on a complete key");
        if have_svc.contains_key(&key) || !want.contains_key(&key) {
            deletes.push(ServiceAction::DeleteService {
                name: s.metadata.name.clone().unwrap_or_default(),
            });
        } else {
            have_svc.insert(key, s);
        }
    }
    let mut endpoints: Vec<&Endpoints> = input
        .endpoints
        .iter()
        .filter(|e| in_namespace(&e.metadata) && public_key(&e.metadata).is_some())
        .collect();
    endpoints.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut have_eps: BTreeMap<PublicKey, Vec<&Endpoints>> = BTreeMap::new();
    for e in endpoints {
        let key = public_key(&e.metadata).expect("filtered on a complete key");
        have_eps.entry(key).or_default().push(e);
    }

    for w in want.values() {
        let (gw, node, t) = &w.key;
        let target = match w.endpoint_type {
            EndpointType::Tunnel => input.ports.tunnel_bind,
            _ => input.ports.proxy_external,
        };
        let proto = protocol(&w.endpoint_type);
        let ports = vec![ServicePort {
            protocol: Some(proto.to_owned()),
            port: w.port,
            target_port: Some(IntOrString::Int(i32::from(target))),
            ..Default::default()
        }];
        let labels = BTreeMap::from([
            (LABEL_GATEWAY.to_owned(), gw.clone()),
            (LABEL_GATEWAY_TYPE.to_owned(), t.clone()),
            (LABEL_GATEWAY_ENDPOINTS.to_owned(), node.clone()),
        ]);
        // The Service: adopt the existing one (any name), else create.
        let svc_name = match have_svc.get(&w.key) {
            Some(s) => {
                let spec = s.spec.clone().unwrap_or_default();
                let current: Vec<ServicePort> = spec.ports.clone().unwrap_or_default();
                if spec.external_traffic_policy.as_deref() != Some(TRAFFIC_POLICY_LOCAL)
                    || ports_differ(&current, &ports)
                {
                    plan.actions.push(ServiceAction::PatchService {
                        name: s.metadata.name.clone().unwrap_or_default(),
                        patch: serde_json::json!({"spec": {
                            "type": LOAD_BALANCER,
                            "externalTrafficPolicy": TRAFFIC_POLICY_LOCAL,
                            "ports": ports,
                        }}),
                    });
                }
                s.metadata.name.clone().unwrap_or_default()
            }
            None => {
                let name = public_service_name(gw, node, &w.endpoint_type);
                plan.actions
                    .push(ServiceAction::CreateService(Box::new(Service {
                        metadata: meta(&name, labels.clone(), true),
                        spec: Some(ServiceSpec {
                            type_: Some(LOAD_BALANCER.to_owned()),
                            external_traffic_policy: Some(TRAFFIC_POLICY_LOCAL.to_owned()),
                            ports: Some(ports),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })));
                name
            }
        };
        // Its Endpoints: named exactly like the Service.
        let subsets = input.node_ips.get(node).map(|ip| {
            vec![EndpointSubset {
                addresses: Some(vec![EndpointAddress {
                    ip: ip.to_string(),
                    node_name: Some(node.clone()),
                    ..Default::default()
                }]),
                ports: Some(vec![EndpointPort {
                    port: i32::from(target),
                    protocol: Some(proto.to_owned()),
                    ..Default::default()
                }]),
                ..Default::default()
            }]
        });
        if subsets.is_none() {
            plan.problems.push(format!(
                "gateway {gw}: node {node} has no InternalIP; Service {svc_name} has no Endpoints"
            ));
        }
        let mut matched = false;
        for e in have_eps.remove(&w.key).unwrap_or_default() {
            let ename = e.metadata.name.clone().unwrap_or_default();
            match &subsets {
                Some(want_sub) if ename == svc_name && !matched => {
                    matched = true;
                    if subsets_key(e.subsets.as_deref().unwrap_or_default())
                        != subsets_key(want_sub)
                    {
                        plan.actions.push(ServiceAction::PatchEndpoints {
                            name: ename,
                            subsets: want_sub.clone(),
                        });
                    }
                }
                _ => deletes.push(ServiceAction::DeleteEndpoints { name: ename }),
            }
        }
        if let Some(want_sub) = subsets
            && !matched
        {
            plan.actions
                .push(ServiceAction::CreateEndpoints(Box::new(Endpoints {
                    metadata: meta(&svc_name, labels, false),
                    subsets: Some(want_sub),
                })));
        }
    }
    // Endpoints whose identity is no longer wanted.
    for eps in have_eps.into_values() {
        for e in eps {
            deletes.push(ServiceAction::DeleteEndpoints {
                name: e.metadata.name.clone().unwrap_or_default(),
            });
        }
    }
    plan.actions.extend(deletes);
}

/// The internal Service ports, de-duplicated by port number (first listing wins; HTTP before
/// HTTPS) and sorted by name like upstream.
pub fn internal_ports(
    gateways: &[&Gateway],
    ports: AgentPorts,
    problems: &mut Vec<String>,
) -> Vec<ServicePort> {
    let mut by_port: BTreeMap<i32, ServicePort> = BTreeMap::new();
    let lists = [
        (
            INTERNAL_SERVICE_HTTP_PORT_PREFIX,
            ports.proxy_internal_insecure,
            false,
        ),
        (
            INTERNAL_SERVICE_HTTPS_PORT_PREFIX,
            ports.proxy_internal_secure,
            true,
        ),
    ];
    for (prefix, target, https) in lists {
        for gw in gateways {
            let list = if https {
                &gw.spec.proxy_config.proxy_https_port
            } else {
                &gw.spec.proxy_config.proxy_http_port
            };
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let Some(p) = item.parse::<i32>().ok().filter(|p| (1..=65535).contains(p)) else {
                    problems.push(format!(
                        "gateway {}: proxy port {item:?} is not a port number; ignored",
                        gw.name()
                    ));
                    continue;
                };
                let name = format!("{prefix}{p}");
                match by_port.get(&p) {
                    Some(existing) if existing.name.as_deref() != Some(name.as_str()) => {
                        problems.push(format!(
                            "gateway {}: port {p} listed as both HTTP and HTTPS; kept {}",
                            gw.name(),
                            existing.name.as_deref().unwrap_or_default()
                        ));
                    }
                    Some(_) => {}
                    None => {
                        by_port.insert(
                            p,
                            ServicePort {
                                name: Some(name),
                                protocol: Some("TCP".to_owned()),
                                port: p,
                                target_port: Some(IntOrString::Int(i32::from(target))),
                                ..Default::default()
                            },
                        );
                    }
                }
            }
        }
    }
    let mut out: Vec<ServicePort> = by_port.into_values().collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn plan_internal(input: &ServiceInput<'_>, plan: &mut ServicePlan) {
    let mut exposed: Vec<&Gateway> = input
        .gateways
        .iter()
        .filter(|g| g.spec.expose_type.is_exposed())
        .collect();
    exposed.sort_by(|a, b| a.name().cmp(b.name()));
    let ports = internal_ports(&exposed, input.ports, &mut plan.problems);
    let wanted = input.features.proxy && !exposed.is_empty() && !ports.is_empty();
    if input.features.proxy && !exposed.is_empty() && ports.is_empty() {
        plan.problems.push(format!(
            "no exposed gateway lists proxyHTTPPort/proxyHTTPSPort; {PROXY_INTERNAL_SERVICE} not created"
        ));
    }
    let svc = input.services.iter().find(|s| {
        in_namespace(&s.metadata) && s.metadata.name.as_deref() == Some(PROXY_INTERNAL_SERVICE)
    });
    let eps = input.endpoints.iter().find(|e| {
        in_namespace(&e.metadata) && e.metadata.name.as_deref() == Some(PROXY_INTERNAL_SERVICE)
    });
    if !wanted {
        if svc.is_some() {
            plan.actions.push(ServiceAction::DeleteService {
                name: PROXY_INTERNAL_SERVICE.to_owned(),
            });
        }
        if eps.is_some() {
            plan.actions.push(ServiceAction::DeleteEndpoints {
                name: PROXY_INTERNAL_SERVICE.to_owned(),
            });
        }
        return;
    }
    let labels = BTreeMap::from([(LABEL_APP.to_owned(), LABEL_APP_VALUE.to_owned())]);
    match svc {
        None => plan
            .actions
            .push(ServiceAction::CreateService(Box::new(Service {
                metadata: meta(PROXY_INTERNAL_SERVICE, labels.clone(), false),
                spec: Some(ServiceSpec {
                    type_: Some(CLUSTER_IP.to_owned()),
                    ports: Some(ports.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }))),
        Some(s) => {
            let current = s
                .spec
                .as_ref()
                .and_then(|sp| sp.ports.clone())
                .unwrap_or_default();
            if ports_differ(&current, &ports) {
                plan.actions.push(ServiceAction::PatchService {
                    name: PROXY_INTERNAL_SERVICE.to_owned(),
                    patch: serde_json::json!({"spec": {"ports": ports}}),
                });
            }
        }
    }
    // Endpoints: every active proxy endpoint's node of every exposed Gateway.
    let mut addrs: BTreeSet<(String, String)> = BTreeSet::new();
    for gw in &exposed {
        for ep in gw
            .status
            .iter()
            .flat_map(|s| s.active_endpoints_of(EndpointType::Proxy))
        {
            match input.node_ips.get(&ep.node_name) {
                Some(ip) => {
                    addrs.insert((ip.to_string(), ep.node_name.clone()));
                }
                None => plan.problems.push(format!(
                    "gateway {}: proxy node {} has no InternalIP; not in {PROXY_INTERNAL_SERVICE}",
                    gw.name(),
                    ep.node_name
                )),
            }
        }
    }
    let subsets = if addrs.is_empty() {
        Vec::new()
    } else {
        vec![EndpointSubset {
            addresses: Some(
                addrs
                    .into_iter()
                    .map(|(ip, node)| EndpointAddress {
                        ip,
                        node_name: Some(node),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ports: Some(
                ports
                    .iter()
                    .map(|p| EndpointPort {
                        name: p.name.clone(),
                        port: match &p.target_port {
                            Some(IntOrString::Int(t)) => *t,
                            _ => p.port,
                        },
                        protocol: p.protocol.clone(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }]
    };
    match eps {
        None => plan
            .actions
            .push(ServiceAction::CreateEndpoints(Box::new(Endpoints {
                metadata: meta(PROXY_INTERNAL_SERVICE, labels, false),
                subsets: Some(subsets),
            }))),
        Some(e) => {
            if subsets_key(e.subsets.as_deref().unwrap_or_default()) != subsets_key(&subsets) {
                plan.actions.push(ServiceAction::PatchEndpoints {
                    name: PROXY_INTERNAL_SERVICE.to_owned(),
                    subsets,
                });
            }
        }
    }
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;
