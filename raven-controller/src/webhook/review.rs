//! The three webhook handlers as pure functions from request body to response body: Gateway
//! defaulting (`AdmissionReview` → JSON Patch), Gateway validation (`AdmissionReview` →
//! allowed / denied with Kubernetes' `Invalid` status, or `Forbidden` for a node agent
//! changing what is not its own, [`super::node_writes`]) and CRD conversion
//! (`ConversionReview`). No I/O, so every case is table-tested here; [`super::server`] moves
//! bytes and resolves the requesting node of a pod-bound token ([`requester`]) before calling
//! [`validate`].
//!
//! Failure modes follow the API server's expectations: a body that is not a review at all gets
//! an HTTP 400 (the API server then applies the webhook's failurePolicy, `Fail` for ours);
//! a review whose object cannot be read is answered with `allowed: false` (validation and
//! defaulting) or `result.status: Failure` (conversion), never with a half-converted list.

use std::collections::BTreeMap;

use raven_api::gateway::{conversion, defaults, v1beta1, validation};
use raven_api::wellknown::{GATEWAY_KIND, GROUP};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::node_writes::{self, UserInfo, Writer};

/// A body that is not a review: the server answers 400 with this text.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadReview(pub String);

/// The parts of `admission.k8s.io/v1` `AdmissionReview.request` we read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdmissionRequest {
    uid: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    object: Option<Value>,
    #[serde(default)]
    old_object: Option<Value>,
    #[serde(default)]
    user_info: RequestUser,
}

/// `AdmissionReview.request.userInfo`.
#[derive(Debug, Default, Deserialize)]
struct RequestUser {
    #[serde(default)]
    username: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    extra: BTreeMap<String, Vec<String>>,
}

/// Who sent an admission request: the user and, for a pod-bound ServiceAccount token, the
/// `(name, uid)` of its pod (the server resolves that to a node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requester {
    /// User name and groups.
    pub user: UserInfo,
    /// The pod a pod-bound token names.
    pub pod: Option<(String, String)>,
}

/// The requester of an admission request.
pub fn requester(body: &[u8]) -> Result<Requester, BadReview> {
    let (_, req) = parse_admission(body)?;
    Ok(Requester {
        pod: crate::bound_pod::pod_binding(&req.user_info.extra),
        user: UserInfo {
            username: req.user_info.username,
            groups: req.user_info.groups,
        },
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdmissionReview {
    #[serde(default)]
    api_version: String,
    request: Option<AdmissionRequest>,
}

/// `AdmissionReview.response`.
#[derive(Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct AdmissionResponse {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

fn parse_admission(body: &[u8]) -> Result<(String, AdmissionRequest), BadReview> {
    let review: AdmissionReview = serde_json::from_slice(body)
        .map_err(|e| BadReview(format!("not an AdmissionReview: {e}")))?;
    let request = review
        .request
        .ok_or_else(|| BadReview("AdmissionReview without request".into()))?;
    let api_version = if review.api_version.is_empty() {
        "admission.k8s.io/v1".to_owned()
    } else {
        review.api_version
    };
    Ok((api_version, request))
}

fn admission_body(api_version: &str, response: AdmissionResponse) -> Vec<u8> {
    json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response})
        .to_string()
        .into_bytes()
}

/// A `metav1.Status` failure.
fn status(code: u16, reason: &str, message: String, causes: Vec<Value>) -> Value {
    let mut s = json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "code": code, "reason": reason, "message": message,
    });
    if !causes.is_empty() {
        s["details"] = json!({"group": GROUP, "kind": GATEWAY_KIND, "causes": causes});
    }
    s
}

fn deny(uid: String, code: u16, reason: &str, message: String) -> AdmissionResponse {
    AdmissionResponse {
        uid,
        allowed: false,
        status: Some(status(code, reason, message, Vec::new())),
        ..Default::default()
    }
}

fn read_gateway(object: Option<&Value>, which: &str) -> Result<v1beta1::Gateway, String> {
    let object = object.ok_or_else(|| format!("request has no {which}"))?;
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != GATEWAY_KIND {
        return Err(format!("expected a Gateway but got kind {kind:?}"));
    }
    v1beta1::Gateway::deserialize(object).map_err(|e| format!("{which} is not a Gateway: {e}"))
}

/// Mutating webhook: upstream's v1beta1 defaulting, as a JSON Patch that touches only the
/// fields the defaults changed (`/spec/nodeSelector`, `/spec/endpoints/<i>/port`), so fields
/// we do not model are never rewritten.
pub fn mutate(body: &[u8]) -> Result<Vec<u8>, BadReview> {
    let (api_version, req) = parse_admission(body)?;
    let uid = req.uid.clone();
    let response = match read_gateway(req.object.as_ref(), "object") {
        Err(e) => deny(uid, 400, "BadRequest", e),
        Ok(mut gw) => {
            let before = gw.clone();
            if defaults::default_gateway(&mut gw) {
                let ops = default_patch(req.object.as_ref(), &before, &gw);
                AdmissionResponse {
                    uid,
                    allowed: true,
                    patch: Some(base64_encode(&Value::Array(ops).to_string())),
                    patch_type: Some("JSONPatch".into()),
                    ..Default::default()
                }
            } else {
                AdmissionResponse {
                    uid,
                    allowed: true,
                    ..Default::default()
                }
            }
        }
    };
    Ok(admission_body(&api_version, response))
}

/// JSON Patch operations from `before` to `after` (both defaulted only in the known places).
/// `add` replaces an existing member and creates a missing one, so the ops hold whether the
/// original JSON had the field or not.
fn default_patch(
    original: Option<&Value>,
    before: &v1beta1::Gateway,
    after: &v1beta1::Gateway,
) -> Vec<Value> {
    let has_spec = original
        .and_then(|o| o.get("spec"))
        .is_some_and(Value::is_object);
    if !has_spec {
        return vec![json!({"op": "add", "path": "/spec", "value": after.spec})];
    }
    let mut ops = Vec::new();
    if before.spec.node_selector != after.spec.node_selector {
        ops.push(json!({"op": "add", "path": "/spec/nodeSelector",
            "value": after.spec.node_selector}));
    }
    for (i, (b, a)) in before
        .spec
        .endpoints
        .iter()
        .zip(&after.spec.endpoints)
        .enumerate()
    {
        if b.port != a.port {
            ops.push(
                json!({"op": "add", "path": format!("/spec/endpoints/{i}/port"),
                "value": a.port}),
            );
        }
    }
    ops
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Validating webhook: the API crate's rules on CREATE and UPDATE, then what `writer` may
/// change ([`node_writes::check`]); anything else is allowed (the configuration only sends
/// CREATE and UPDATE). Invalid objects are denied with Kubernetes' `Invalid` status,
/// `Gateway.raven.openyurt.io "<name>" is invalid: [...]`, like upstream's
/// `apierrors.NewInvalid`, with one cause per field error; a node agent's change to what is
/// not its own with `Forbidden` (403).
pub fn validate(body: &[u8], writer: &Writer) -> Result<Vec<u8>, BadReview> {
    let (api_version, req) = parse_admission(body)?;
    let uid = req.uid.clone();
    let response = match req.operation.as_str() {
        "CREATE" | "UPDATE" => match validate_request(&req, writer) {
            Ok(()) => AdmissionResponse {
                uid,
                allowed: true,
                ..Default::default()
            },
            Err(status) => AdmissionResponse {
                uid,
                allowed: false,
                status: Some(status),
                ..Default::default()
            },
        },
        _ => AdmissionResponse {
            uid,
            allowed: true,
            ..Default::default()
        },
    };
    Ok(admission_body(&api_version, response))
}

/// `Err` is the `metav1.Status` of the denial.
fn validate_request(req: &AdmissionRequest, writer: &Writer) -> Result<(), Value> {
    let bad = |e: String| status(400, "BadRequest", e, Vec::new());
    let new = read_gateway(req.object.as_ref(), "object").map_err(bad)?;
    let old = if req.operation == "UPDATE" {
        Some(read_gateway(req.old_object.as_ref(), "oldObject").map_err(bad)?)
    } else {
        None
    };
    let result = match &old {
        Some(old) => validation::validate_update(old, &new),
        None => validation::validate(&new),
    };
    result.map_err(|errs| {
        let causes = errs
            .0
            .iter()
            .map(|e| json!({"reason": cause_reason(e.kind), "message": e.to_string(), "field": e.path}))
            .collect();
        let message = format!(
            "{GATEWAY_KIND}.{GROUP} {:?} is invalid: {errs}",
            new.name()
        );
        status(422, "Invalid", message, causes)
    })?;
    // `new` has passed the defaulting webhook; default `old` the same way, so defaults added
    // now (a Gateway stored before the webhooks were installed) are not the writer's change.
    let old = old.map(|mut o| {
        defaults::default_gateway(&mut o);
        o
    });
    node_writes::check(writer, old.as_ref(), &new).map_err(|e| {
        let message = format!("{GATEWAY_KIND}.{GROUP} {:?} is forbidden: {e}", new.name());
        status(403, "Forbidden", message, Vec::new())
    })
}

/// Kubernetes' `CauseType` strings for each field error class.
fn cause_reason(kind: validation::FieldErrorKind) -> &'static str {
    use validation::FieldErrorKind as K;
    match kind {
        K::Invalid => "FieldValueInvalid",
        K::Required => "FieldValueRequired",
        K::NotSupported => "FieldValueNotSupported",
        K::Duplicate => "FieldValueDuplicate",
        K::Forbidden => "FieldValueForbidden",
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConversionRequest {
    uid: String,
    #[serde(rename = "desiredAPIVersion")]
    desired_api_version: String,
    #[serde(default)]
    objects: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConversionReview {
    #[serde(default)]
    api_version: String,
    request: Option<ConversionRequest>,
}

/// Conversion webhook (`apiextensions.k8s.io/v1` `ConversionReview`): every object through the
/// API crate's lossless conversion. One object that cannot be converted fails the whole review
/// (the API server requires all or nothing), with the object's index and name in the message.
pub fn convert(body: &[u8]) -> Result<(Vec<u8>, Vec<String>), BadReview> {
    let review: ConversionReview = serde_json::from_slice(body)
        .map_err(|e| BadReview(format!("not a ConversionReview: {e}")))?;
    let req = review
        .request
        .ok_or_else(|| BadReview("ConversionReview without request".into()))?;
    let api_version = if review.api_version.is_empty() {
        "apiextensions.k8s.io/v1".to_owned()
    } else {
        review.api_version
    };
    let mut converted = Vec::with_capacity(req.objects.len());
    let mut warnings = Vec::new();
    let mut failure = None;
    for (i, obj) in req.objects.iter().enumerate() {
        match conversion::convert_value(obj, &req.desired_api_version) {
            Ok(c) => {
                warnings.extend(c.warnings);
                converted.push(c.object);
            }
            Err(e) => {
                let name = obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                failure = Some(format!("object {i} ({name:?}): {e}"));
                break;
            }
        }
    }
    let response = match failure {
        None => json!({"uid": req.uid, "convertedObjects": converted,
            "result": {"status": "Success"}}),
        Some(message) => json!({"uid": req.uid, "convertedObjects": [],
            "result": {"status": "Failure", "message": message}}),
    };
    let body = json!({"apiVersion": api_version, "kind": "ConversionReview", "response": response});
    Ok((body.to_string().into_bytes(), warnings))
}

#[cfg(test)]
#[path = "review_tests.rs"]
mod tests;
