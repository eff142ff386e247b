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
mod tests {
    use super::*;

    fn admission(op: &str, object: Value, old: Option<Value>) -> Vec<u8> {
        let mut req = json!({"uid": "u-1", "operation": op, "object": object,
            "kind": {"group": GROUP, "version": "v1beta1", "kind": "Gateway"}});
        if let Some(o) = old {
            req["oldObject"] = o;
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
            .to_string()
            .into_bytes()
    }

    fn response(body: &[u8]) -> Value {
        let v: Value = serde_json::from_slice(body).expect("JSON");
        assert_eq!(v["kind"], "AdmissionReview");
        assert_eq!(v["response"]["uid"], "u-1");
        v["response"].clone()
    }

    fn gw(spec: Value) -> Value {
        json!({"apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
            "metadata": {"name": "gw-a"}, "spec": spec})
    }

    fn decode_patch(resp: &Value) -> Value {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(resp["patch"].as_str().expect("patch"))
            .expect("base64");
        serde_json::from_slice(&raw).expect("patch JSON")
    }

    #[test]
    fn mutate_table() {
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "no selector, proxy and tunnel ports 0",
                gw(
                    json!({"proxyConfig": {"Replicas": 1}, "tunnelConfig": {"Replicas": 1},
                    "endpoints": [{"nodeName": "n1", "type": "proxy"},
                                  {"nodeName": "n2", "type": "tunnel", "port": 4501}]}),
                ),
                json!([
                    {"op": "add", "path": "/spec/nodeSelector",
                     "value": {"matchLabels": {"raven.openyurt.io/gateway": "gw-a"}}},
                    {"op": "add", "path": "/spec/endpoints/0/port", "value": 10262},
                ]),
            ),
            (
                "selector merged, other labels kept",
                gw(json!({"nodeSelector": {"matchLabels": {"x": "y"}},
                    "proxyConfig": {"Replicas": 0}, "tunnelConfig": {"Replicas": 0}})),
                json!([{"op": "add", "path": "/spec/nodeSelector",
                    "value": {"matchLabels": {"raven.openyurt.io/gateway": "gw-a", "x": "y"}}}]),
            ),
            (
                "no spec at all",
                json!({"apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
                    "metadata": {"name": "gw-a"}}),
                json!([{"op": "add", "path": "/spec", "value": {
                    "nodeSelector": {"matchLabels": {"raven.openyurt.io/gateway": "gw-a"}},
                    "proxyConfig": {"Replicas": 0}, "tunnelConfig": {"Replicas": 0}}}]),
            ),
        ];
        for (case, object, want) in cases {
            let resp = response(&mutate(&admission("CREATE", object, None)).expect("review"));
            assert_eq!(resp["allowed"], true, "{case}");
            assert_eq!(resp["patchType"], "JSONPatch", "{case}");
            assert_eq!(decode_patch(&resp), want, "{case}");
        }
    }

    #[test]
    fn mutate_already_defaulted_sends_no_patch() {
        let object = gw(json!({
            "nodeSelector": {"matchLabels": {"raven.openyurt.io/gateway": "gw-a"}},
            "proxyConfig": {"Replicas": 1}, "tunnelConfig": {"Replicas": 1},
            "endpoints": [{"nodeName": "n1", "type": "proxy", "port": 10262}]}));
        let resp = response(&mutate(&admission("CREATE", object, None)).expect("review"));
        assert_eq!(resp["allowed"], true);
        assert!(resp.get("patch").is_none(), "{resp}");
    }

    #[test]
    fn mutate_rejects_non_gateways_like_upstream() {
        let resp =
            response(&mutate(&admission("CREATE", json!({"kind": "Pod"}), None)).expect("review"));
        assert_eq!(resp["allowed"], false);
        assert_eq!(resp["status"]["code"], 400);
        assert!(
            resp["status"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("expected a Gateway")),
            "{resp}"
        );
    }

    fn valid_spec() -> Value {
        json!({"exposeType": "LoadBalancer", "proxyConfig": {"Replicas": 1},
            "tunnelConfig": {"Replicas": 1},
            "endpoints": [{"nodeName": "n1", "type": "proxy", "publicIP": "192.168.1.1"}]})
    }

    #[test]
    fn validate_table() {
        let mut bad_ip = valid_spec();
        bad_ip["endpoints"][0]["publicIP"] = json!("invalid-ip");
        let mut replicas = valid_spec();
        replicas["tunnelConfig"]["Replicas"] = json!(2);
        let mut renamed = gw(valid_spec());
        renamed["metadata"]["name"] = json!("gw-b");
        type Case<'a> = (&'a str, &'a str, Value, Option<Value>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            ("valid create", "CREATE", gw(valid_spec()), None, None),
            (
                "bad publicIP",
                "CREATE",
                gw(bad_ip.clone()),
                None,
                Some(
                    r#"Gateway.raven.openyurt.io "gw-a" is invalid: [spec.endpoints[0].publicIP: Invalid value: "invalid-ip""#,
                ),
            ),
            (
                "tunnel replicas 2",
                "CREATE",
                gw(replicas),
                None,
                Some("spec.tunnelConfig.Replicas: Invalid value: 2"),
            ),
            (
                "update fixing an invalid object",
                "UPDATE",
                gw(valid_spec()),
                Some(gw(bad_ip.clone())),
                None,
            ),
            (
                "update to an invalid object",
                "UPDATE",
                gw(bad_ip.clone()),
                Some(gw(valid_spec())),
                Some("publicIP"),
            ),
            (
                "rename",
                "UPDATE",
                renamed,
                Some(gw(valid_spec())),
                Some("metadata.name: Forbidden"),
            ),
            ("delete is allowed", "DELETE", json!(null), None, None),
        ];
        for (case, op, object, old, want) in cases {
            let resp = response(&validate_other(&admission(op, object, old)).expect("review"));
            match want {
                None => assert_eq!(resp["allowed"], true, "{case}: {resp}"),
                Some(fragment) => {
                    assert_eq!(resp["allowed"], false, "{case}");
                    let st = &resp["status"];
                    assert_eq!(st["code"], 422, "{case}: {st}");
                    assert_eq!(st["reason"], "Invalid", "{case}");
                    let msg = st["message"].as_str().unwrap_or_default();
                    assert!(msg.contains(fragment), "{case}: {msg}");
                    assert!(
                        st["details"]["causes"]
                            .as_array()
                            .is_some_and(|c| !c.is_empty()),
                        "{case}: {st}"
                    );
                }
            }
        }
    }

    #[test]
    fn undecodable_object_is_denied_not_allowed() {
        let object = gw(json!({"endpoints": "not-a-list"}));
        let resp = response(&validate_other(&admission("CREATE", object, None)).expect("review"));
        assert_eq!(resp["allowed"], false);
        assert_eq!(resp["status"]["code"], 400);
    }

    #[test]
    fn garbage_bodies_are_bad_reviews() {
        for body in [&b""[..], b"{", b"{}", b"[]", b"{\"request\":null}"] {
            assert!(mutate(body).is_err(), "{body:?}");
            assert!(validate_other(body).is_err(), "{body:?}");
            assert!(requester(body).is_err(), "{body:?}");
            assert!(convert(body).is_err(), "{body:?}");
        }
    }

    fn validate_other(body: &[u8]) -> Result<Vec<u8>, BadReview> {
        validate(body, &Writer::Other)
    }

    #[test]
    fn node_agents_are_forbidden_what_is_not_theirs() {
        // As stored and as the defaulting webhook leaves it (selector, ports).
        let spec = |ip: &str| {
            json!({"proxyConfig": {"Replicas": 1}, "tunnelConfig": {"Replicas": 1},
                "nodeSelector": {"matchLabels": {"raven.openyurt.io/gateway": "gw-a"}},
                "endpoints": [{"nodeName": "a", "type": "tunnel", "port": 4500, "publicIP": ip},
                              {"nodeName": "b", "type": "tunnel", "port": 4500}]})
        };
        let old = gw(spec(""));
        let mut body: Value = serde_json::from_slice(&admission(
            "UPDATE",
            gw(spec("203.0.113.1")),
            Some(old.clone()),
        ))
        .expect("json");
        body["request"]["userInfo"] = json!({
            "username": "system:serviceaccount:kube-system:raven-node",
            "groups": ["system:serviceaccounts"],
            "extra": {"authentication.kubernetes.io/pod-name": ["raven-node-x"],
                      "authentication.kubernetes.io/pod-uid": ["uid-x"]}});
        let body = body.to_string().into_bytes();
        let who = requester(&body).expect("requester");
        assert_eq!(
            who.user.username,
            "system:serviceaccount:kube-system:raven-node"
        );
        assert_eq!(who.pod, Some(("raven-node-x".into(), "uid-x".into())));
        // Node a sets its own public IP; node b may not; unchecked users may.
        let own = response(&validate(&body, &Writer::Node("a".into())).expect("review"));
        assert_eq!(own["allowed"], true, "{own}");
        let other = response(&validate(&body, &Writer::Node("b".into())).expect("review"));
        assert_eq!(other["allowed"], false, "{other}");
        assert_eq!(other["status"]["code"], 403);
        assert_eq!(other["status"]["reason"], "Forbidden");
        let msg = other["status"]["message"].as_str().expect("message");
        assert!(
            msg.contains("\"gw-a\" is forbidden") && msg.contains("spec.endpoints[0]"),
            "{msg}"
        );
        assert_eq!(
            response(&validate_other(&body).expect("review"))["allowed"],
            true
        );
        // Defaults the mutating webhook adds on the way are not the node's change.
        let mut bare_old = old.clone();
        bare_old["spec"]["endpoints"][1]
            .as_object_mut()
            .expect("endpoint")
            .remove("port");
        bare_old["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("nodeSelector");
        let body = admission("UPDATE", gw(spec("203.0.113.1")), Some(bare_old));
        let own = response(&validate(&body, &Writer::Node("a".into())).expect("review"));
        assert_eq!(own["allowed"], true, "{own}");
        // Validation errors still come first, with their own status.
        let create = admission("CREATE", gw(spec("not-an-ip")), None);
        let invalid = response(&validate(&create, &Writer::Node("a".into())).expect("review"));
        assert_eq!(invalid["status"]["code"], 422, "{invalid}");
        let create_ok = admission("CREATE", gw(spec("")), None);
        let forbidden = response(&validate(&create_ok, &Writer::Node("a".into())).expect("review"));
        assert_eq!(forbidden["status"]["code"], 403, "{forbidden}");
    }

    fn conversion_review(desired: &str, objects: Vec<Value>) -> Vec<u8> {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "request": {"uid": "c-1", "desiredAPIVersion": desired, "objects": objects}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn conversion_round_trip_is_lossless() {
        let beta = json!({"apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
            "metadata": {"name": "gw-a", "resourceVersion": "7"},
            "spec": {"exposeType": "PublicIP", "proxyConfig": {"Replicas": 2, "proxyHTTPPort": "10255"},
                "tunnelConfig": {"Replicas": 1},
                "endpoints": [{"nodeName": "n1", "type": "proxy", "port": 10262, "publicIP": "1.2.3.4"},
                              {"nodeName": "n1", "type": "tunnel", "port": 4500, "publicIP": "1.2.3.4"}]},
            "status": {"activeEndpoints": [{"nodeName": "n1", "type": "tunnel", "port": 4500}]}});
        let (down, _) = convert(&conversion_review(
            "raven.openyurt.io/v1alpha1",
            vec![beta.clone()],
        ))
        .expect("down");
        let down: Value = serde_json::from_slice(&down).expect("json");
        assert_eq!(down["kind"], "ConversionReview");
        let resp = &down["response"];
        assert_eq!(resp["uid"], "c-1");
        assert_eq!(resp["result"]["status"], "Success", "{resp}");
        let alpha = resp["convertedObjects"][0].clone();
        assert_eq!(alpha["apiVersion"], "raven.openyurt.io/v1alpha1");
        let (up, _) =
            convert(&conversion_review("raven.openyurt.io/v1beta1", vec![alpha])).expect("up");
        let up: Value = serde_json::from_slice(&up).expect("json");
        assert_eq!(up["response"]["convertedObjects"][0], beta);
    }

    #[test]
    fn conversion_failure_fails_the_whole_review() {
        let good = gw(valid_spec());
        let bad = json!({"apiVersion": "raven.openyurt.io/v9", "kind": "Gateway",
            "metadata": {"name": "odd"}});
        let (body, _) = convert(&conversion_review(
            "raven.openyurt.io/v1alpha1",
            vec![good, bad],
        ))
        .expect("review");
        let v: Value = serde_json::from_slice(&body).expect("json");
        let resp = &v["response"];
        assert_eq!(resp["result"]["status"], "Failure");
        assert_eq!(resp["convertedObjects"], json!([]));
        let msg = resp["result"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("object 1") && msg.contains("odd"), "{msg}");
    }
}
