//! Conversion between v1alpha1 and v1beta1 Gateways, lossless in both directions.
//!
//! The mapping of what both versions can express is upstream's (`gateway_conversion.go`):
//!
//! - v1alpha1 → v1beta1: every endpoint becomes a `tunnel` endpoint on port 4500,
//!   `proxyConfig.Replicas` and `tunnelConfig.Replicas` become 1, `activeEndpoint` becomes the
//!   single entry of `activeEndpoints` (type tunnel, port 4500).
//! - v1beta1 → v1alpha1: every endpoint, whatever its type, is copied as
//!   `{nodeName, publicIP, underNAT, config}` in spec order.
//!
//! Upstream drops everything else (types, ports, NAT details, proxy/tunnel configuration, all
//! but one active endpoint). We keep it: when the v1alpha1 form cannot reproduce the v1beta1
//! object, the v1beta1 spec is stored as JSON in the annotation
//! [`ANNOTATION_V1BETA1_SPEC`] and the active endpoints in [`ANNOTATION_V1BETA1_STATUS`]. The
//! way back restores them and removes the annotations. Both annotations are written only when
//! needed, so a v1alpha1 object that never was anything else converts back and forth unchanged.
//!
//! If a v1alpha1 client edits the object, the v1alpha1 fields win: each v1alpha1 endpoint is
//! matched with the first not-yet-matched stored endpoint of the same node (in order, which is
//! exact for objects produced by the downgrade since it keeps order and count) and takes its
//! type, port and NAT details from it; an endpoint without a match gets upstream's defaults.
//!
//! Deliberate difference from upstream: `status.activeEndpoint` is the first *tunnel* active
//! endpoint (v1alpha1 is tunnel-only), not `activeEndpoints[0]`, which after the name sort may be
//! a proxy endpoint that an old tunnel agent would wrongly take for its gateway.
//!
//! The annotation keys are reserved: a v1beta1 object never carries them (they are dropped when
//! converting it), so round trips are exact for every v1beta1 object without them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::serde_util::null_as_default;
use super::{EndpointType, v1alpha1, v1beta1};
use crate::wellknown::{
    ANNOTATION_V1BETA1_SPEC, ANNOTATION_V1BETA1_STATUS, API_VERSION_V1ALPHA1, API_VERSION_V1BETA1,
    DEFAULT_TUNNEL_SERVER_EXPOSED_PORT,
};

/// A converted object plus what the conversion had to ignore (e.g. an unreadable stash
/// annotation). Warnings do not make the conversion fail: the API server needs an answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Converted<T> {
    /// The object in the requested version.
    pub object: T,
    /// Human-readable notes for the log; empty in the normal case.
    pub warnings: Vec<String>,
}

/// Why [`convert_value`] could not convert an object.
#[derive(Debug)]
pub enum ConversionError {
    /// The object's or the requested `apiVersion` is not one of ours.
    UnsupportedApiVersion(String),
    /// The object does not deserialize as a Gateway of its `apiVersion`.
    Malformed {
        /// The object's `apiVersion`.
        api_version: String,
        /// The decoder's message.
        source: serde_json::Error,
    },
    /// The converted object could not be encoded (cannot happen for these types, kept so the
    /// webhook never panics).
    Encode(serde_json::Error),
}

impl fmt::Display for ConversionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConversionError::UnsupportedApiVersion(v) => write!(
                f,
                "unsupported apiVersion {v:?}: expected {API_VERSION_V1BETA1} or {API_VERSION_V1ALPHA1}"
            ),
            ConversionError::Malformed {
                api_version,
                source,
            } => write!(f, "object is not a valid {api_version} Gateway: {source}"),
            ConversionError::Encode(e) => write!(f, "cannot encode converted Gateway: {e}"),
        }
    }
}

impl std::error::Error for ConversionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConversionError::Malformed { source, .. } => Some(source),
            ConversionError::Encode(e) => Some(e),
            ConversionError::UnsupportedApiVersion(_) => None,
        }
    }
}

/// What [`ANNOTATION_V1BETA1_STATUS`] holds: the v1beta1 active endpoints.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusStash {
    #[serde(default, deserialize_with = "null_as_default")]
    active_endpoints: Vec<v1beta1::Endpoint>,
}

/// Converts a v1alpha1 Gateway to the v1beta1 hub, restoring stashed v1beta1-only data.
pub fn to_v1beta1(alpha: &v1alpha1::Gateway) -> Converted<v1beta1::Gateway> {
    let mut warnings = Vec::new();
    let mut metadata = alpha.metadata.clone();
    let spec_stash = take_annotation(&mut metadata, ANNOTATION_V1BETA1_SPEC);
    let status_stash = take_annotation(&mut metadata, ANNOTATION_V1BETA1_STATUS);

    let stored_spec = spec_stash.and_then(|json| {
        serde_json::from_str::<v1beta1::GatewaySpec>(&json)
            .map_err(|e| {
                warnings.push(format!(
                    "ignoring unreadable annotation {ANNOTATION_V1BETA1_SPEC}: {e}"
                ));
            })
            .ok()
    });
    let spec = match stored_spec {
        Some(stored) if downgrade_spec(&stored) == alpha.spec => stored,
        Some(stored) => merge_spec(&alpha.spec, &stored),
        None => upgrade_spec(&alpha.spec),
    };

    let stored_active = status_stash.and_then(|json| {
        serde_json::from_str::<StatusStash>(&json)
            .map_err(|e| {
                warnings.push(format!(
                    "ignoring unreadable annotation {ANNOTATION_V1BETA1_STATUS}: {e}"
                ));
            })
            .ok()
    });
    let status = alpha.status.as_ref().map(|s| match &stored_active {
        Some(stored) if downgrade_active(&stored.active_endpoints) == s.active_endpoint => {
            v1beta1::GatewayStatus {
                nodes: s.nodes.clone(),
                active_endpoints: stored.active_endpoints.clone(),
            }
        }
        Some(stored) => v1beta1::GatewayStatus {
            nodes: s.nodes.clone(),
            active_endpoints: merge_endpoints(
                s.active_endpoint.as_slice(),
                &stored.active_endpoints,
            ),
        },
        None => upgrade_status(s),
    });

    Converted {
        object: v1beta1::Gateway {
            metadata,
            spec,
            status,
        },
        warnings,
    }
}

/// Converts a v1beta1 Gateway to v1alpha1, stashing what v1alpha1 cannot express.
pub fn to_v1alpha1(beta: &v1beta1::Gateway) -> Converted<v1alpha1::Gateway> {
    let mut warnings = Vec::new();
    let mut metadata = beta.metadata.clone();
    // Reserved keys: a stale copy must not survive, or the way back would restore it.
    take_annotation(&mut metadata, ANNOTATION_V1BETA1_SPEC);
    take_annotation(&mut metadata, ANNOTATION_V1BETA1_STATUS);

    let spec = downgrade_spec(&beta.spec);
    if upgrade_spec(&spec) != beta.spec {
        stash(
            &mut metadata,
            ANNOTATION_V1BETA1_SPEC,
            &beta.spec,
            &mut warnings,
        );
    }

    let status = beta.status.as_ref().map(|s| {
        let alpha = v1alpha1::GatewayStatus {
            nodes: s.nodes.clone(),
            active_endpoint: downgrade_active(&s.active_endpoints),
        };
        if upgrade_status(&alpha).active_endpoints != s.active_endpoints {
            let stash_value = StatusStash {
                active_endpoints: s.active_endpoints.clone(),
            };
            stash(
                &mut metadata,
                ANNOTATION_V1BETA1_STATUS,
                &stash_value,
                &mut warnings,
            );
        }
        alpha
    });

    Converted {
        object: v1alpha1::Gateway {
            metadata,
            spec,
            status,
        },
        warnings,
    }
}

/// Converts a Gateway given as JSON (as in a `ConversionReview`) to `desired_api_version`.
/// An object already in that version is returned unchanged.
pub fn convert_value(
    object: &serde_json::Value,
    desired_api_version: &str,
) -> Result<Converted<serde_json::Value>, ConversionError> {
    let from = object
        .get("apiVersion")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    for v in [from, desired_api_version] {
        if v != API_VERSION_V1BETA1 && v != API_VERSION_V1ALPHA1 {
            return Err(ConversionError::UnsupportedApiVersion(v.to_owned()));
        }
    }
    if from == desired_api_version {
        return Ok(Converted {
            object: object.clone(),
            warnings: Vec::new(),
        });
    }
    let malformed = |source| ConversionError::Malformed {
        api_version: from.to_owned(),
        source,
    };
    let (value, warnings) = if from == API_VERSION_V1ALPHA1 {
        let alpha = v1alpha1::Gateway::deserialize(object).map_err(malformed)?;
        let c = to_v1beta1(&alpha);
        (serde_json::to_value(&c.object), c.warnings)
    } else {
        let beta = v1beta1::Gateway::deserialize(object).map_err(malformed)?;
        let c = to_v1alpha1(&beta);
        (serde_json::to_value(&c.object), c.warnings)
    };
    Ok(Converted {
        object: value.map_err(ConversionError::Encode)?,
        warnings,
    })
}

/// Upstream's v1alpha1 → v1beta1 spec mapping.
fn upgrade_spec(alpha: &v1alpha1::GatewaySpec) -> v1beta1::GatewaySpec {
    v1beta1::GatewaySpec {
        node_selector: alpha.node_selector.clone(),
        proxy_config: v1beta1::ProxyConfiguration {
            replicas: 1,
            ..Default::default()
        },
        tunnel_config: v1beta1::TunnelConfiguration { replicas: 1 },
        endpoints: alpha.endpoints.iter().map(upgrade_endpoint).collect(),
        expose_type: alpha.expose_type.clone(),
    }
}

/// Upstream's v1beta1 → v1alpha1 spec mapping (every endpoint, in order).
fn downgrade_spec(beta: &v1beta1::GatewaySpec) -> v1alpha1::GatewaySpec {
    v1alpha1::GatewaySpec {
        node_selector: beta.node_selector.clone(),
        endpoints: beta.endpoints.iter().map(downgrade_endpoint).collect(),
        expose_type: beta.expose_type.clone(),
    }
}

/// v1alpha1 fields win; everything else comes from the stored v1beta1 spec.
fn merge_spec(
    alpha: &v1alpha1::GatewaySpec,
    stored: &v1beta1::GatewaySpec,
) -> v1beta1::GatewaySpec {
    v1beta1::GatewaySpec {
        node_selector: alpha.node_selector.clone(),
        proxy_config: stored.proxy_config.clone(),
        tunnel_config: stored.tunnel_config.clone(),
        endpoints: merge_endpoints(&alpha.endpoints, &stored.endpoints),
        expose_type: alpha.expose_type.clone(),
    }
}

/// Pairs each v1alpha1 endpoint with the first unused stored endpoint of the same node.
fn merge_endpoints(
    alpha: &[v1alpha1::Endpoint],
    stored: &[v1beta1::Endpoint],
) -> Vec<v1beta1::Endpoint> {
    let mut used = vec![false; stored.len()];
    alpha
        .iter()
        .map(|a| {
            let found = stored
                .iter()
                .enumerate()
                .find(|(i, s)| !used[*i] && s.node_name == a.node_name);
            match found {
                Some((i, s)) => {
                    used[i] = true;
                    v1beta1::Endpoint {
                        node_name: a.node_name.clone(),
                        public_ip: a.public_ip.clone(),
                        under_nat: a.under_nat,
                        config: a.config.clone(),
                        ..s.clone()
                    }
                }
                None => upgrade_endpoint(a),
            }
        })
        .collect()
}

fn upgrade_endpoint(a: &v1alpha1::Endpoint) -> v1beta1::Endpoint {
    v1beta1::Endpoint {
        node_name: a.node_name.clone(),
        public_ip: a.public_ip.clone(),
        under_nat: a.under_nat,
        config: a.config.clone(),
        type_: EndpointType::Tunnel,
        port: i64::from(DEFAULT_TUNNEL_SERVER_EXPOSED_PORT),
        ..Default::default()
    }
}

fn downgrade_endpoint(b: &v1beta1::Endpoint) -> v1alpha1::Endpoint {
    v1alpha1::Endpoint {
        node_name: b.node_name.clone(),
        under_nat: b.under_nat,
        public_ip: b.public_ip.clone(),
        config: b.config.clone(),
    }
}

fn upgrade_status(alpha: &v1alpha1::GatewayStatus) -> v1beta1::GatewayStatus {
    v1beta1::GatewayStatus {
        nodes: alpha.nodes.clone(),
        active_endpoints: alpha.active_endpoint.iter().map(upgrade_endpoint).collect(),
    }
}

/// The v1alpha1 `activeEndpoint`: the first tunnel active endpoint (see module docs).
fn downgrade_active(active: &[v1beta1::Endpoint]) -> Option<v1alpha1::Endpoint> {
    active
        .iter()
        .find(|e| e.type_ == EndpointType::Tunnel)
        .map(downgrade_endpoint)
}

/// Removes an annotation, dropping the map when it becomes empty (Go omits empty maps, so
/// `Some({})` and `None` are the same object on the wire).
fn take_annotation(
    metadata: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<String> {
    let annotations = metadata.annotations.as_mut()?;
    let value = annotations.remove(key);
    if annotations.is_empty() {
        metadata.annotations = None;
    }
    value
}

fn stash<T: Serialize>(
    metadata: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
    value: &T,
    warnings: &mut Vec<String>,
) {
    match serde_json::to_string(value) {
        Ok(json) => {
            metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(key.to_owned(), json);
        }
        Err(e) => warnings.push(format!("cannot write annotation {key}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beta_endpoint(node: &str, t: EndpointType, port: i64) -> v1beta1::Endpoint {
        v1beta1::Endpoint {
            node_name: node.into(),
            type_: t,
            port,
            ..Default::default()
        }
    }

    #[test]
    fn merge_pairs_endpoints_by_node_in_order() {
        let stored = vec![
            beta_endpoint("a", EndpointType::Proxy, 10262),
            beta_endpoint("a", EndpointType::Tunnel, 4500),
            beta_endpoint("b", EndpointType::Tunnel, 4501),
        ];
        let alpha: Vec<v1alpha1::Endpoint> = ["b", "a", "c", "a", "a"]
            .iter()
            .map(|n| v1alpha1::Endpoint {
                node_name: (*n).into(),
                public_ip: format!("10.0.0.{}", n.len()),
                ..Default::default()
            })
            .collect();
        let merged = merge_endpoints(&alpha, &stored);
        let got: Vec<(&str, &EndpointType, i64)> = merged
            .iter()
            .map(|e| (e.node_name.as_str(), &e.type_, e.port))
            .collect();
        assert_eq!(
            got,
            vec![
                ("b", &EndpointType::Tunnel, 4501),
                ("a", &EndpointType::Proxy, 10262),
                ("c", &EndpointType::Tunnel, 4500),
                ("a", &EndpointType::Tunnel, 4500),
                ("a", &EndpointType::Tunnel, 4500),
            ]
        );
        assert!(merged.iter().all(|e| e.public_ip == "10.0.0.1"));
    }

    #[test]
    fn downgrade_active_prefers_the_tunnel_endpoint() {
        let active = vec![
            beta_endpoint("a", EndpointType::Proxy, 10262),
            beta_endpoint("b", EndpointType::Tunnel, 4500),
        ];
        assert_eq!(
            downgrade_active(&active).map(|e| e.node_name),
            Some("b".to_owned())
        );
        assert_eq!(downgrade_active(&active[..1]), None);
        assert_eq!(downgrade_active(&[]), None);
    }
}
