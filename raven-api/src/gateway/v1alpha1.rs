//! `raven.openyurt.io/v1alpha1` Gateway: the older served version.
//!
//! It has no endpoint type, port or NAT details, no proxy/tunnel configuration and a single
//! `status.activeEndpoint`. `spec.endpoints` is required by the CRD and Go has no `omitempty`
//! on it, so we always write it (as `[]` when empty; Go would write `null` for a nil slice,
//! which we also read). [`super::conversion`] maps it to and from v1beta1.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::ExposeType;
use super::root::gateway_root;
use super::serde_util::{is_false, null_as_default};
/// Member nodes have the same shape in both versions.
pub use super::v1beta1::NodeInfo;
use crate::wellknown::{API_VERSION_V1ALPHA1, VERSION_V1ALPHA1};

gateway_root!(VERSION_V1ALPHA1, API_VERSION_V1ALPHA1);

/// Desired state of a Gateway (v1alpha1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Label query over the nodes of this gateway's network domain (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// Candidate gateway endpoints.
    // Required by the CRD, so always written (`[]` when empty).
    #[serde(deserialize_with = "null_as_default")]
    pub endpoints: Vec<Endpoint>,
    /// How the gateway is exposed to other network domains.
    #[serde(default, skip_serializing_if = "ExposeType::is_not_exposed")]
    pub expose_type: ExposeType,
}

/// A candidate gateway endpoint (v1alpha1: tunnel only, no type or port).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Name of the node hosting the endpoint.
    pub node_name: String,
    /// Whether the node is behind NAT.
    #[serde(rename = "underNAT", default, skip_serializing_if = "is_false")]
    pub under_nat: bool,
    /// Address other domains reach this endpoint at.
    #[serde(rename = "publicIP", default, skip_serializing_if = "String::is_empty")]
    pub public_ip: String,
    /// Per-endpoint agent settings (e.g. publicKey).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub config: BTreeMap<String, String>,
}

/// Observed state of a Gateway (v1alpha1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Every node labelled into the gateway, sorted by name.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub nodes: Vec<NodeInfo>,
    /// The elected endpoint, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_endpoint: Option<Endpoint>,
}
