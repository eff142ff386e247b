//! The `gateways.raven.openyurt.io` CustomResourceDefinition, generated from the Rust types.
//!
//! `crdgen` writes [`crd_yaml`] to `deploy/crds/raven.openyurt.io_gateways.yaml`, and a test
//! fails when the committed file drifts from the types.
//!
//! Compared with OpenYurt's controller-gen output (`charts/yurt-manager/crds/...`):
//! - Same names (plural, singular, kind, listKind, shortName `gw`, category `yurt`), scope,
//!   versions (v1alpha1 served, v1beta1 served + storage), status subresources, property names,
//!   types and `required` lists. Go ints are plain `type: integer` like controller-gen's.
//! - Descriptions are ours (the LabelSelector text is Kubernetes' own in both). The
//!   LabelSelector keeps Kubernetes' `x-kubernetes-map-type`/`list-type: atomic` markers.
//! - No `default` and no `nullable` anywhere, like upstream: schemars would add both for Rust
//!   `Option`/`#[serde(default)]` fields, and a schema default would make the API server write
//!   values (e.g. `underNAT: false`) that Go clients never send.
//! - Printer columns: v1beta1 gets ExposeType, Tunnel (active tunnel node), Proxy (first active
//!   proxy node) and Age, where upstream has none; v1alpha1 keeps upstream's ActiveEndpoint and
//!   adds Age. The API server prints only the first match of a column path, hence "first".
//! - Conversion webhook: our controller's Service ([`CONVERSION_WEBHOOK_SERVICE`]) instead of
//!   yurt-manager's, and `conversionReviewVersions: [v1]` instead of upstream's
//!   `[v1beta1, v1alpha1]` (Gateway versions listed by mistake: the field names ConversionReview
//!   versions, so the API server was effectively using `apiextensions.k8s.io/v1beta1`). No
//!   `caBundle`: it is injected at deploy time.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceConversion, CustomResourceDefinition,
    CustomResourceDefinitionNames, CustomResourceDefinitionSpec, CustomResourceDefinitionVersion,
    CustomResourceSubresourceStatus, CustomResourceSubresources, CustomResourceValidation,
    JSONSchemaProps, ServiceReference, WebhookClientConfig, WebhookConversion,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use super::{v1alpha1, v1beta1};
use crate::wellknown::{
    CONVERSION_WEBHOOK_PATH, CONVERSION_WEBHOOK_PORT, CONVERSION_WEBHOOK_SERVICE, GATEWAY_CRD_NAME,
    GATEWAY_KIND, GATEWAY_PLURAL, GROUP, VERSION_V1ALPHA1, VERSION_V1BETA1, WORKING_NAMESPACE,
};

/// Where the generated CRD is committed, relative to the workspace root.
pub const CRD_PATH: &str = "deploy/crds/raven.openyurt.io_gateways.yaml";

/// The command that regenerates [`CRD_PATH`] (run from the workspace root).
pub const REGENERATE_COMMAND: &str = "cargo run -p raven-api --features kube --bin crdgen -- deploy/crds/raven.openyurt.io_gateways.yaml";

/// Why the CRD could not be built.
#[derive(Debug)]
pub struct CrdError(String);

impl std::fmt::Display for CrdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot build the Gateway CRD: {}", self.0)
    }
}

impl std::error::Error for CrdError {}

/// The two-version Gateway CRD.
pub fn crd() -> Result<CustomResourceDefinition, CrdError> {
    let versions = vec![
        version(
            VERSION_V1ALPHA1,
            false,
            root_schema::<v1alpha1::GatewaySpec, v1alpha1::GatewayStatus>()?,
            vec![
                column(
                    "ActiveEndpoint",
                    "string",
                    ".status.activeEndpoint.nodeName",
                    "Node of the active endpoint",
                ),
                age_column(),
            ],
        ),
        version(
            VERSION_V1BETA1,
            true,
            root_schema::<v1beta1::GatewaySpec, v1beta1::GatewayStatus>()?,
            vec![
                column(
                    "ExposeType",
                    "string",
                    ".spec.exposeType",
                    "How the gateway is exposed to other domains",
                ),
                column(
                    "Tunnel",
                    "string",
                    r#".status.activeEndpoints[?(@.type=="tunnel")].nodeName"#,
                    "Node of the active tunnel endpoint",
                ),
                column(
                    "Proxy",
                    "string",
                    r#".status.activeEndpoints[?(@.type=="proxy")].nodeName"#,
                    "Node of the first active proxy endpoint",
                ),
                age_column(),
            ],
        ),
    ];
    Ok(CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(GATEWAY_CRD_NAME.to_owned()),
            ..Default::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: GROUP.to_owned(),
            names: CustomResourceDefinitionNames {
                categories: Some(vec!["yurt".to_owned()]),
                kind: GATEWAY_KIND.to_owned(),
                list_kind: Some(format!("{GATEWAY_KIND}List")),
                plural: GATEWAY_PLURAL.to_owned(),
                short_names: Some(vec!["gw".to_owned()]),
                singular: Some("gateway".to_owned()),
            },
            scope: "Cluster".to_owned(),
            versions,
            conversion: Some(CustomResourceConversion {
                strategy: "Webhook".to_owned(),
                webhook: Some(WebhookConversion {
                    client_config: Some(WebhookClientConfig {
                        service: Some(ServiceReference {
                            name: CONVERSION_WEBHOOK_SERVICE.to_owned(),
                            namespace: WORKING_NAMESPACE.to_owned(),
                            path: Some(CONVERSION_WEBHOOK_PATH.to_owned()),
                            port: Some(i32::from(CONVERSION_WEBHOOK_PORT)),
                        }),
                        ..Default::default()
                    }),
                    conversion_review_versions: vec!["v1".to_owned()],
                }),
            }),
            preserve_unknown_fields: None,
        },
        status: None,
    })
}

/// The CRD as the YAML document committed at [`CRD_PATH`], with a header naming the generator.
pub fn crd_yaml() -> Result<String, CrdError> {
    let body = serde_yaml::to_string(&crd()?).map_err(|e| CrdError(e.to_string()))?;
    Ok(format!(
        "# Generated by raven-api's crdgen from the Rust Gateway types. Do not edit.\n\
         # Regenerate with: {REGENERATE_COMMAND}\n{body}"
    ))
}

fn version(
    name: &str,
    storage: bool,
    schema: JSONSchemaProps,
    columns: Vec<CustomResourceColumnDefinition>,
) -> CustomResourceDefinitionVersion {
    CustomResourceDefinitionVersion {
        name: name.to_owned(),
        served: true,
        storage,
        schema: Some(CustomResourceValidation {
            open_api_v3_schema: Some(schema),
        }),
        subresources: Some(CustomResourceSubresources {
            status: Some(CustomResourceSubresourceStatus(json!({}))),
            scale: None,
        }),
        additional_printer_columns: Some(columns),
        ..Default::default()
    }
}

fn column(
    name: &str,
    type_: &str,
    path: &str,
    description: &str,
) -> CustomResourceColumnDefinition {
    CustomResourceColumnDefinition {
        name: name.to_owned(),
        type_: type_.to_owned(),
        json_path: path.to_owned(),
        description: Some(description.to_owned()),
        ..Default::default()
    }
}

fn age_column() -> CustomResourceColumnDefinition {
    CustomResourceColumnDefinition {
        name: "Age".to_owned(),
        type_: "date".to_owned(),
        json_path: ".metadata.creationTimestamp".to_owned(),
        ..Default::default()
    }
}

/// The object schema of one version: apiVersion, kind, metadata, spec and status.
fn root_schema<Spec: JsonSchema, Status: JsonSchema>() -> Result<JSONSchemaProps, CrdError> {
    let root = json!({
        "description": "Gateway is one Raven network domain: its member nodes (labelled \
                        raven.openyurt.io/gateway=<name>), candidate gateway endpoints and, in \
                        status, the elected active endpoints.",
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "Versioned schema of this representation of the object.",
                "type": "string",
            },
            "kind": {
                "description": "REST resource this object represents (Gateway).",
                "type": "string",
            },
            "metadata": { "type": "object" },
            "spec": with_atomic_node_selector(schema_of::<Spec>()?),
            "status": schema_of::<Status>()?,
        },
    });
    serde_json::from_value(root)
        .map_err(|e| CrdError(format!("schema is not JSONSchemaProps: {e}")))
}

/// Marks `spec.nodeSelector` and its lists atomic, as Kubernetes declares `LabelSelector`
/// (k8s-openapi's schema leaves the markers out). Server-side apply then replaces a selector
/// as a whole instead of merging two owners' label sets.
fn with_atomic_node_selector(mut spec: Value) -> Value {
    if let Some(selector) = spec.pointer_mut("/properties/nodeSelector")
        && let Some(obj) = selector.as_object_mut()
    {
        obj.insert("x-kubernetes-map-type".into(), json!("atomic"));
    }
    for list in [
        "/properties/nodeSelector/properties/matchExpressions",
        "/properties/nodeSelector/properties/matchExpressions/items/properties/values",
    ] {
        if let Some(obj) = spec.pointer_mut(list).and_then(Value::as_object_mut) {
            obj.insert("x-kubernetes-list-type".into(), json!("atomic"));
        }
    }
    spec
}

/// The structural schema of one type, with kube-rs' rewrites and without `default`/`nullable`
/// (see the module docs).
fn schema_of<T: JsonSchema>() -> Result<Value, CrdError> {
    let generator = SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .into_generator();
    let mut value = serde_json::to_value(generator.into_root_schema_for::<T>())
        .map_err(|e| CrdError(e.to_string()))?;
    if let Some(obj) = value.as_object_mut() {
        obj.remove("title");
        obj.remove("$schema");
    }
    strip_keywords(&mut value);
    Ok(value)
}

/// Removes `default` and `nullable` from every (sub)schema. Property *names* are never touched:
/// only keys of schema objects are, and the keys of a `properties` map are field names.
fn strip_keywords(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    obj.remove("default");
    obj.remove("nullable");
    for (key, child) in obj.iter_mut() {
        match key.as_str() {
            "properties" => {
                if let Some(props) = child.as_object_mut() {
                    props.values_mut().for_each(strip_keywords);
                }
            }
            "items" | "additionalProperties" | "not" => strip_keywords(child),
            "allOf" | "anyOf" | "oneOf" => {
                if let Some(list) = child.as_array_mut() {
                    list.iter_mut().for_each(strip_keywords);
                }
            }
            _ => {}
        }
    }
}
