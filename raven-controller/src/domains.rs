//! Network domains: which Gateways should exist, what their spec holds, and which node carries
//! which `raven.openyurt.io/gateway` label.
//!
//! OpenYurt leaves Gateway creation to the user; we do it per node pool, with names and labels
//! existing agents and CoreDNS setups already understand:
//! - every Cloud pool joins one cloud domain, Gateway [`DomainConfig::cloud_gateway`]
//!   (`gw-cloud`, like ACK Edge), exposed with [`DomainConfig::cloud_expose_type`]: the control
//!   plane and cloud nodes share one network;
//! - an Edge pool whose nodes reach each other (`interConnectivity`) is one domain, `gw-<pool>`;
//! - a node in no pool, or in an Edge pool without inter-connectivity, is its own domain,
//!   `gw-node-<node>` (switch off with [`DomainConfig::solo_gateways`]);
//! - candidates (spec endpoints) are the members carrying the opt-in label
//!   [`DomainConfig::candidate_label`]`=true`, or all members when none does.
//!
//! Ownership: Gateways we create carry [`LABEL_MANAGED_BY`]`=`[`MANAGED_BY_VALUE`]. A Gateway
//! without it belongs to the user: we never update or delete it, and a domain whose name is
//! taken by one is left alone (reported). A node labelled into a Gateway we do not manage is the
//! user's choice and is left alone too. To customise a managed Gateway for good, remove the
//! marker: it becomes the user's.
//!
//! Garbage collection: when OpenYurt's NodePool API is present, the Gateway of a pool domain
//! carries an ownerReference to its NodePool (by uid), so deleting the pool deletes its
//! Gateway even while this controller is down. Gateways of label-only pools (no NodePool
//! API), the cloud domain (it spans every Cloud pool) and solo nodes have no such owner; this
//! controller deletes them when their domain is gone. Owner references of other kinds that
//! someone else added are kept; while the pools are unknown, owners are not touched.
//!
//! The spec of a managed Gateway is only rewritten when its endpoint set or replicas change;
//! what agents and users write into it (publicIP, natType, publicPort, config such as the
//! WireGuard publicKey, proxy HTTP/HTTPS ports) is carried over.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use raven_api::gateway::v1beta1::{
    Endpoint, EndpointType, ExposeType, Gateway, GatewaySpec, ProxyConfiguration,
    TunnelConfiguration,
};
use raven_api::wellknown::{LABEL_GATEWAY, LABEL_NODEPOOL};

use crate::model::{NodeView, PoolInfo, PoolType};

/// Label that marks a Gateway as created and owned by this controller.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`] on our Gateways.
pub const MANAGED_BY_VALUE: &str = "raven-controller";
/// Annotation on our Gateways naming the domain they stand for (`cloud`, `pool/<name>`,
/// `node/<name>`); informational, for humans and debugging.
pub const ANNOTATION_DOMAIN: &str = "raven.openyurt.io/domain";
/// Default opt-in node label marking gateway candidates (value `"true"`).
pub const DEFAULT_CANDIDATE_LABEL: &str = "raven.openyurt.io/gateway-candidate";
/// Default name of the cloud domain's Gateway (ACK Edge's name).
pub const DEFAULT_CLOUD_GATEWAY: &str = "gw-cloud";
/// Prefix of a pool domain's Gateway name.
pub const POOL_GATEWAY_PREFIX: &str = "gw-";
/// Prefix of a solo node domain's Gateway name.
pub const SOLO_GATEWAY_PREFIX: &str = "gw-node-";
/// `apiVersion` of the NodePool owner references we write.
pub const NODEPOOL_API_VERSION: &str = "apps.openyurt.io/v1beta2";
/// Kind of the NodePool owner references we write.
pub const NODEPOOL_KIND: &str = "NodePool";
/// Longest object name the API server accepts (DNS-1123 subdomain).
const MAX_NAME_LEN: usize = 253;

/// Every choice of the domain planner; see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainConfig {
    /// Node label holding the node's pool name.
    pub pool_label: String,
    /// Opt-in node label (value `"true"`) marking gateway candidates.
    pub candidate_label: String,
    /// Name of the cloud domain's Gateway.
    pub cloud_gateway: String,
    /// Pools treated as Cloud whatever their NodePool says (the only way to name cloud pools
    /// when the NodePool CRD is absent).
    pub cloud_pools: BTreeSet<String>,
    /// How the cloud Gateway is exposed to edge domains.
    pub cloud_expose_type: ExposeType,
    /// Give nodes outside any connected pool a Gateway of their own.
    pub solo_gateways: bool,
    /// Mark endpoints of unexposed (edge) Gateways `underNAT`.
    pub edge_under_nat: bool,
    /// `proxyConfig.Replicas` of new Gateways (capped at the number of candidates).
    pub proxy_replicas: i64,
    /// `tunnelConfig.Replicas` of new Gateways (capped at 1, the API limit).
    pub tunnel_replicas: i64,
}

impl Default for DomainConfig {
    fn default() -> Self {
        DomainConfig {
            pool_label: LABEL_NODEPOOL.to_owned(),
            candidate_label: DEFAULT_CANDIDATE_LABEL.to_owned(),
            cloud_gateway: DEFAULT_CLOUD_GATEWAY.to_owned(),
            cloud_pools: BTreeSet::new(),
            cloud_expose_type: ExposeType::LoadBalancer,
            solo_gateways: true,
            edge_under_nat: true,
            proxy_replicas: 1,
            tunnel_replicas: 1,
        }
    }
}

/// A network domain.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    /// All Cloud pools.
    Cloud,
    /// One connected Edge pool.
    Pool(String),
    /// One node on its own.
    Solo(String),
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Domain::Cloud => f.write_str("cloud"),
            Domain::Pool(p) => write!(f, "pool/{p}"),
            Domain::Solo(n) => write!(f, "node/{n}"),
        }
    }
}

/// Everything the domain planner reads.
#[derive(Clone, Copy, Debug)]
pub struct DomainInput<'a> {
    /// All nodes, any order.
    pub nodes: &'a [NodeView],
    /// NodePools by name; `None` when the NodePool CRD is not installed (then every labelled
    /// pool is a connected Edge pool unless listed in [`DomainConfig::cloud_pools`]).
    pub pools: Option<&'a BTreeMap<String, PoolInfo>>,
    /// All existing Gateways.
    pub existing: &'a [Gateway],
    /// Configuration.
    pub config: &'a DomainConfig,
}

/// A change to a Gateway object.
#[derive(Clone, Debug, PartialEq)]
pub enum GatewayAction {
    /// Create this Gateway (metadata carries the managed marker).
    Create(Box<Gateway>),
    /// Replace the spec of our Gateway `name`.
    UpdateSpec {
        /// Gateway name.
        name: String,
        /// The new spec.
        spec: GatewaySpec,
    },
    /// Replace the owner references of our Gateway `name` (its NodePool owner was missing or
    /// stale; owners of other kinds are carried over).
    SetOwners {
        /// Gateway name.
        name: String,
        /// The complete new list.
        owners: Vec<OwnerReference>,
    },
    /// Delete our Gateway `name`: its domain is gone.
    Delete {
        /// Gateway name.
        name: String,
    },
}

/// A change to a node's `raven.openyurt.io/gateway` label.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LabelChange {
    /// Node name.
    pub node: String,
    /// Current value.
    pub from: Option<String>,
    /// New value; `None` removes the label.
    pub to: Option<String>,
}

/// Something the planner could not do as configured.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DomainProblem {
    /// The node names a pool that has no NodePool; the node is left as it is until it appears.
    PoolNotFound {
        /// Node name.
        node: String,
        /// Pool named by its label.
        pool: String,
    },
    /// A Gateway the user created already has this domain's name; the domain is left alone.
    UserGatewayConflict {
        /// Gateway name.
        gateway: String,
        /// The domain that wanted the name.
        domain: Domain,
    },
    /// Two domains map to one name (e.g. pool `node-a` and solo node `a`); the lower-precedence
    /// one (cloud > pool > solo) is left alone.
    NameCollision {
        /// Gateway name.
        gateway: String,
        /// The domain left alone.
        domain: Domain,
    },
    /// The Gateway name would exceed 253 characters; the domain is left alone.
    NameTooLong {
        /// The domain.
        domain: Domain,
    },
}

impl fmt::Display for DomainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainProblem::PoolNotFound { node, pool } => {
                write!(f, "node {node} is in pool {pool:?}, which has no NodePool")
            }
            DomainProblem::UserGatewayConflict { gateway, domain } => write!(
                f,
                "gateway {gateway} exists and is not managed by {MANAGED_BY_VALUE}; domain {domain} left alone"
            ),
            DomainProblem::NameCollision { gateway, domain } => write!(
                f,
                "gateway name {gateway} is taken by another domain; domain {domain} left alone"
            ),
            DomainProblem::NameTooLong { domain } => {
                write!(
                    f,
                    "gateway name for domain {domain} is longer than {MAX_NAME_LEN} characters"
                )
            }
        }
    }
}

/// A Gateway the planner wants, with its members.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredGateway {
    /// Gateway name.
    pub name: String,
    /// Its domain.
    pub domain: Domain,
    /// Member node names, sorted.
    pub members: Vec<String>,
    /// The spec we would write for a new Gateway.
    pub spec: GatewaySpec,
}

/// The planner's output. Apply in this order: create/update Gateways, change labels, delete
/// Gateways, so a node never points at a Gateway that does not exist yet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DomainPlan {
    /// Desired managed Gateways, by name.
    pub desired: Vec<DesiredGateway>,
    /// Gateway creates, spec updates and deletes, in that order, each by name.
    pub gateway_actions: Vec<GatewayAction>,
    /// Node label changes, by node name.
    pub label_changes: Vec<LabelChange>,
    /// What was left alone and why, sorted.
    pub problems: Vec<DomainProblem>,
}

/// Whether a Gateway carries our managed marker.
pub fn is_managed(gw: &Gateway) -> bool {
    gw.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .is_some_and(|v| v == MANAGED_BY_VALUE)
}

/// The Gateway name of a domain.
pub fn gateway_name(domain: &Domain, config: &DomainConfig) -> String {
    match domain {
        Domain::Cloud => config.cloud_gateway.clone(),
        Domain::Pool(p) => format!("{POOL_GATEWAY_PREFIX}{p}"),
        Domain::Solo(n) => format!("{SOLO_GATEWAY_PREFIX}{n}"),
    }
}

/// Precedence when two domains want one name: lower wins.
fn precedence(d: &Domain) -> u8 {
    match d {
        Domain::Cloud => 0,
        Domain::Pool(_) => 1,
        Domain::Solo(_) => 2,
    }
}

/// Plans domains, Gateways and node labels. Pure and deterministic.
pub fn plan(input: &DomainInput<'_>) -> DomainPlan {
    let cfg = input.config;
    let mut problems = Vec::new();
    let existing: BTreeMap<&str, &Gateway> = input.existing.iter().map(|g| (g.name(), g)).collect();
    let managed: BTreeSet<&str> = input
        .existing
        .iter()
        .filter(|g| is_managed(g))
        .map(Gateway::name)
        .collect();
    let mut nodes: Vec<&NodeView> = input.nodes.iter().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));

    // 1. The domain each node wants (None: no domain; Err: leave the node alone).
    let mut wanted: BTreeMap<&str, Option<Domain>> = BTreeMap::new();
    let mut untouched: BTreeSet<&str> = BTreeSet::new();
    for n in &nodes {
        match domain_of(n, input.pools, cfg) {
            Ok(d) => {
                wanted.insert(&n.name, d);
            }
            Err(p) => {
                problems.push(p);
                untouched.insert(&n.name);
            }
        }
    }

    // 2. Names: too long, collisions, user-owned conflicts.
    let mut by_name: BTreeMap<String, BTreeSet<Domain>> = BTreeMap::new();
    for d in wanted.values().flatten() {
        let name = gateway_name(d, cfg);
        if name.len() > MAX_NAME_LEN {
            problems.push(DomainProblem::NameTooLong { domain: d.clone() });
        } else {
            by_name.entry(name).or_default().insert(d.clone());
        }
    }
    let mut domain_name: BTreeMap<Domain, String> = BTreeMap::new();
    for (name, domains) in &by_name {
        let mut ds: Vec<&Domain> = domains.iter().collect();
        ds.sort_by_key(|d| (precedence(d), (*d).clone()));
        let (winner, losers) = ds
            .split_first()
            .expect("every entry has at least one domain");
        for l in losers {
            problems.push(DomainProblem::NameCollision {
                gateway: name.clone(),
                domain: (*l).clone(),
            });
        }
        if existing.contains_key(name.as_str()) && !managed.contains(name.as_str()) {
            problems.push(DomainProblem::UserGatewayConflict {
                gateway: name.clone(),
                domain: (*winner).clone(),
            });
        } else {
            domain_name.insert((*winner).clone(), name.clone());
        }
    }
    let desired_names: BTreeSet<&str> = domain_name.values().map(String::as_str).collect();

    // 3. Membership, honouring nodes the user placed in their own Gateways.
    let mut members: BTreeMap<&str, Vec<&NodeView>> = BTreeMap::new();
    let mut label_changes = Vec::new();
    for n in &nodes {
        let current = n.label(LABEL_GATEWAY).filter(|v| !v.is_empty());
        let ours = current.is_none_or(|v| managed.contains(v) || desired_names.contains(v));
        if untouched.contains(n.name.as_str()) || !ours {
            continue;
        }
        let target = match wanted.get(n.name.as_str()) {
            Some(Some(d)) => match domain_name.get(d) {
                Some(name) => Some(name.as_str()),
                // The domain is left alone (collision/conflict/too long): so is the node.
                None => continue,
            },
            _ => None,
        };
        if let Some(t) = target {
            members.entry(t).or_default().push(n);
        }
        if current != target {
            label_changes.push(LabelChange {
                node: n.name.clone(),
                from: current.map(str::to_owned),
                to: target.map(str::to_owned),
            });
        }
    }

    // 4. Desired Gateways and the actions that get us there.
    let mut desired = Vec::new();
    let mut creates = Vec::new();
    let mut updates = Vec::new();
    for (domain, name) in &domain_name {
        let Some(ms) = members.get(name.as_str()) else {
            continue;
        };
        let spec = desired_spec(name, domain, ms, cfg);
        let owner = pool_owner(domain, input.pools);
        match existing.get(name.as_str()) {
            None => creates.push(GatewayAction::Create(Box::new(new_gateway(
                name, domain, &spec, owner,
            )))),
            Some(gw) => {
                let merged = merge_spec(&gw.spec, &spec);
                if merged != gw.spec {
                    updates.push(GatewayAction::UpdateSpec {
                        name: name.clone(),
                        spec: merged,
                    });
                }
                // Pools unknown (`None`): leave owners alone rather than strip and restore
                // them on every pool Gateway when the NodePool API is read again.
                let current = gw.metadata.owner_references.clone().unwrap_or_default();
                let owners = merge_owners(&current, owner);
                if input.pools.is_some() && owners != current {
                    updates.push(GatewayAction::SetOwners {
                        name: name.clone(),
                        owners,
                    });
                }
            }
        }
        desired.push(DesiredGateway {
            name: name.clone(),
            domain: domain.clone(),
            members: ms.iter().map(|n| n.name.clone()).collect(),
            spec,
        });
    }
    // Keep a managed Gateway that untouched nodes still point at.
    let still_referenced: BTreeSet<&str> = nodes
        .iter()
        .filter(|n| untouched.contains(n.name.as_str()))
        .filter_map(|n| n.label(LABEL_GATEWAY))
        .collect();
    let deletes = managed
        .iter()
        .filter(|m| !members.contains_key(*m) && !still_referenced.contains(*m))
        .map(|m| GatewayAction::Delete {
            name: (*m).to_owned(),
        });

    let mut gateway_actions = creates;
    gateway_actions.extend(updates);
    gateway_actions.extend(deletes);
    problems.sort();
    problems.dedup();
    DomainPlan {
        desired,
        gateway_actions,
        label_changes,
        problems,
    }
}

/// The domain a node belongs to; `Err` when it must be left alone for now.
fn domain_of(
    n: &NodeView,
    pools: Option<&BTreeMap<String, PoolInfo>>,
    cfg: &DomainConfig,
) -> Result<Option<Domain>, DomainProblem> {
    let solo = || cfg.solo_gateways.then(|| Domain::Solo(n.name.clone()));
    let Some(pool) = n.label(&cfg.pool_label).filter(|p| !p.is_empty()) else {
        return Ok(solo());
    };
    if cfg.cloud_pools.contains(pool) {
        return Ok(Some(Domain::Cloud));
    }
    let info = match pools {
        None => PoolInfo {
            pool_type: PoolType::Edge,
            inter_connectivity: true,
            uid: None,
        },
        Some(map) => match map.get(pool) {
            Some(i) => i.clone(),
            None => {
                return Err(DomainProblem::PoolNotFound {
                    node: n.name.clone(),
                    pool: pool.to_owned(),
                });
            }
        },
    };
    Ok(match info.pool_type {
        PoolType::Cloud => Some(Domain::Cloud),
        PoolType::Edge if info.inter_connectivity => Some(Domain::Pool(pool.to_owned())),
        PoolType::Edge => solo(),
    })
}

/// The spec we want for a domain's Gateway, before carrying over what others wrote.
fn desired_spec(
    name: &str,
    domain: &Domain,
    members: &[&NodeView],
    cfg: &DomainConfig,
) -> GatewaySpec {
    let opted_in: Vec<&NodeView> = members
        .iter()
        .copied()
        .filter(|n| n.label(&cfg.candidate_label) == Some("true"))
        .collect();
    let candidates = if opted_in.is_empty() {
        members.to_vec()
    } else {
        opted_in
    };
    let expose_type = match domain {
        Domain::Cloud => cfg.cloud_expose_type.clone(),
        _ => ExposeType::NotExposed,
    };
    let under_nat = !expose_type.is_exposed() && cfg.edge_under_nat;
    let endpoints = candidates
        .iter()
        .flat_map(|n| {
            [EndpointType::Proxy, EndpointType::Tunnel].map(|t| Endpoint {
                node_name: n.name.clone(),
                port: i64::from(t.default_port().unwrap_or_default()),
                type_: t,
                under_nat,
                ..Default::default()
            })
        })
        .collect();
    let count = i64::try_from(candidates.len()).unwrap_or(i64::MAX);
    GatewaySpec {
        node_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                LABEL_GATEWAY.to_owned(),
                name.to_owned(),
            )])),
            match_expressions: None,
        }),
        proxy_config: ProxyConfiguration {
            replicas: cfg.proxy_replicas.clamp(0, count),
            ..Default::default()
        },
        tunnel_config: TunnelConfiguration {
            replicas: cfg.tunnel_replicas.clamp(0, 1),
        },
        endpoints,
        expose_type,
    }
}

/// The desired spec with what agents and users wrote into the existing one carried over:
/// per (nodeName, type) endpoint its publicIP, publicPort, natType and config, and the proxy
/// HTTP/HTTPS port lists. Any other selector labels the user added are kept too.
fn merge_spec(existing: &GatewaySpec, desired: &GatewaySpec) -> GatewaySpec {
    let mut out = desired.clone();
    for e in &mut out.endpoints {
        if let Some(old) = existing.endpoints.iter().find(|o| o.key() == e.key()) {
            e.public_ip.clone_from(&old.public_ip);
            e.public_port = old.public_port;
            e.nat_type.clone_from(&old.nat_type);
            e.config.clone_from(&old.config);
        }
    }
    out.proxy_config
        .proxy_http_port
        .clone_from(&existing.proxy_config.proxy_http_port);
    out.proxy_config
        .proxy_https_port
        .clone_from(&existing.proxy_config.proxy_https_port);
    if let Some(old_sel) = &existing.node_selector {
        let mut sel = old_sel.clone();
        let desired_labels = desired
            .node_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .unwrap_or_default();
        sel.match_labels
            .get_or_insert_default()
            .extend(desired_labels);
        out.node_selector = Some(sel);
    }
    out
}

/// Whether an owner reference points at a NodePool (any version of OpenYurt's API group).
fn is_nodepool_ref(r: &OwnerReference) -> bool {
    r.kind == NODEPOOL_KIND
        && r.api_version.split('/').next() == NODEPOOL_API_VERSION.split('/').next()
}

/// The owner reference a domain's Gateway should carry: its NodePool, for a pool domain whose
/// NodePool is known (with a uid). Not `blockOwnerDeletion`: that needs delete rights on the
/// pool's finalizers and would make deleting a pool wait for its Gateway.
pub fn pool_owner(
    domain: &Domain,
    pools: Option<&BTreeMap<String, PoolInfo>>,
) -> Option<OwnerReference> {
    let Domain::Pool(pool) = domain else {
        return None;
    };
    let uid = pools?.get(pool)?.uid.clone()?;
    Some(OwnerReference {
        api_version: NODEPOOL_API_VERSION.to_owned(),
        kind: NODEPOOL_KIND.to_owned(),
        name: pool.clone(),
        uid,
        controller: Some(true),
        block_owner_deletion: None,
    })
}

/// `current` with its NodePool references replaced by `owner` (owners of other kinds kept, in
/// their order; ours last).
fn merge_owners(current: &[OwnerReference], owner: Option<OwnerReference>) -> Vec<OwnerReference> {
    let mut out: Vec<OwnerReference> = current
        .iter()
        .filter(|r| !is_nodepool_ref(r))
        .cloned()
        .collect();
    out.extend(owner);
    out
}

/// A new managed Gateway object.
fn new_gateway(
    name: &str,
    domain: &Domain,
    spec: &GatewaySpec,
    owner: Option<OwnerReference>,
) -> Gateway {
    let mut gw = Gateway::new(name, spec.clone());
    gw.metadata.owner_references = owner.map(|o| vec![o]);
    gw.metadata.labels = Some(BTreeMap::from([(
        LABEL_MANAGED_BY.to_owned(),
        MANAGED_BY_VALUE.to_owned(),
    )]));
    gw.metadata.annotations = Some(BTreeMap::from([(
        ANNOTATION_DOMAIN.to_owned(),
        domain.to_string(),
    )]));
    gw
}

#[cfg(test)]
#[path = "domains_tests.rs"]
mod tests;
