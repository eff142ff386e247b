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
