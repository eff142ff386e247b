//! Wire compatibility with OpenYurt's Go types: objects written by Go read back unchanged, and
//! what we write has Go's keys, passes the CRD schema (nothing pruned, every required key
//! present) and reads back in Go-shaped form.
#![cfg(feature = "kube")]

use std::path::PathBuf;

use kube::core::ObjectList;
use raven_api::gateway::crd::crd;
use raven_api::gateway::{EndpointType, ExposeType, conversion, v1alpha1, v1beta1};
use serde_json::{Value, json};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/go")
}

fn fixture(name: &str) -> Value {
    let path = fixture_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every Gateway fixture (lists excluded), by file name.
fn gateway_fixtures() -> Vec<(String, Value)> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("fixture dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".json") && !n.contains("list"))
        .collect();
    names.sort();
    assert!(names.len() >= 6, "fixtures missing: {names:?}");
    names
        .into_iter()
        .map(|n| (n.clone(), fixture(&n)))
        .collect()
}

/// The `openAPIV3Schema` of one served version of our CRD.
fn schema(version: &str) -> Value {
    let crd = serde_json::to_value(crd().expect("CRD")).expect("CRD JSON");
    crd["spec"]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["name"] == version)
        .expect("version")["schema"]["openAPIV3Schema"]
        .clone()
}

/// A small structural validator: types match, required keys are present, and no key would be
/// pruned by the API server (every object key is declared). `metadata` is the server's.
fn check_against_schema(path: &str, value: &Value, schema: &Value, errors: &mut Vec<String>) {
    let ty = schema["type"].as_str().unwrap_or("");
    let ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !ok {
        errors.push(format!("{path}: {value} is not of type {ty}"));
        return;
    }
    if let (Some(obj), Some(props)) = (value.as_object(), schema["properties"].as_object()) {
        for req in schema["required"].as_array().into_iter().flatten() {
            let req = req.as_str().unwrap_or_default();
            if !obj.contains_key(req) {
                errors.push(format!("{path}: required key {req:?} missing"));
            }
        }
        for (k, v) in obj {
            match props.get(k) {
                Some(_) if path.is_empty() && k == "metadata" => {}
                Some(sub) => check_against_schema(&format!("{path}.{k}"), v, sub, errors),
                None => errors.push(format!("{path}: key {k:?} not in schema (would be pruned)")),
            }
        }
    } else if let (Some(obj), Some(sub)) = (value.as_object(), schema.get("additionalProperties")) {
        for (k, v) in obj {
            check_against_schema(&format!("{path}[{k}]"), v, sub, errors);
        }
    }
    if let (Some(items), Some(sub)) = (value.as_array(), schema.get("items")) {
        for (i, v) in items.iter().enumerate() {
            check_against_schema(&format!("{path}[{i}]"), v, sub, errors);
        }
    }
}

fn assert_valid_for_crd(version: &str, value: &Value) {
    let mut errors = Vec::new();
    check_against_schema("", value, &schema(version), &mut errors);
    assert!(
        errors.is_empty(),
        "{version} object fails the CRD schema: {errors:#?}\n{value:#}"
    );
}

/// Reads with the type of the object's apiVersion and writes it back.
fn round_trip(value: &Value) -> Value {
    match value["apiVersion"].as_str() {
        Some("raven.openyurt.io/v1beta1") => {
            let gw: v1beta1::Gateway = serde_json::from_value(value.clone()).expect("v1beta1");
            serde_json::to_value(&gw).expect("serialize v1beta1")
        }
        Some("raven.openyurt.io/v1alpha1") => {
            let gw: v1alpha1::Gateway = serde_json::from_value(value.clone()).expect("v1alpha1");
            serde_json::to_value(&gw).expect("serialize v1alpha1")
        }
        other => panic!("unexpected apiVersion {other:?}"),
    }
}

#[test]
fn go_fixtures_read_and_write_back_unchanged() {
    for (name, value) in gateway_fixtures() {
        assert_eq!(
            round_trip(&value),
            value,
            "{name} changed on a read/write round trip"
        );
    }
}

#[test]
fn go_fixtures_pass_our_crd_schema() {
    for (name, value) in gateway_fixtures() {
        let version = value["apiVersion"]
            .as_str()
            .and_then(|v| v.strip_prefix("raven.openyurt.io/"))
            .unwrap_or_else(|| panic!("{name}: no apiVersion"));
        assert_valid_for_crd(version, &value);
    }
}

#[test]
fn cloud_fixture_fields() {
    let gw: v1beta1::Gateway =
        serde_json::from_value(fixture("v1beta1-gw-cloud.json")).expect("cloud");
    assert_eq!(gw.name(), "gw-cloud");
    assert_eq!(gw.spec.expose_type, ExposeType::PublicIP);
    assert_eq!(gw.spec.proxy_config.replicas, 2);
    assert_eq!(gw.spec.tunnel_config.replicas, 1);
    assert_eq!(gw.spec.proxy_config.proxy_http_port, "10255,9100");
    assert_eq!(gw.spec.endpoints_of(EndpointType::Proxy).count(), 2);
    let tunnel = gw.active_tunnel_endpoint().expect("active tunnel");
    assert_eq!(tunnel.node_name, "cloud-1");
    assert_eq!(tunnel.effective_port(), Some(4500));
    assert_eq!(
        tunnel.public_key(),
        Some("Yj4x0Qe2m7c9zLr5kTt1w8Hn3uVb6sXa0dFg2hJk4lM=")
    );
    assert_eq!(
        tunnel.config.get("enable-l3-tunnel").map(String::as_str),
        Some("true")
    );
    assert!(gw.has_member("cloud-3"));
    assert!(!gw.has_member("edge-1"));
    let status = gw.status.as_ref().expect("status");
    assert_eq!(status.active_endpoints_of(EndpointType::Proxy).count(), 2);
    assert_eq!(
        status.node("cloud-1").and_then(|n| n.private_ip_addr()),
        Some("192.168.0.10".parse().expect("ip"))
    );
    assert!(raven_api::gateway::validation::validate(&gw).is_ok());
}

#[test]
fn edge_fixture_fields() {
    let gw: v1beta1::Gateway =
        serde_json::from_value(fixture("v1beta1-gw-edge-nat.json")).expect("edge");
    assert_eq!(gw.spec.expose_type, ExposeType::NotExposed);
    let ep = &gw.spec.endpoints[0];
    assert!(ep.under_nat);
    assert_eq!(ep.nat_type, "Port Restricted cone NAT");
    assert_eq!(ep.public_port_u16(), Some(38211));
    let status = gw.status.as_ref().expect("status");
    let no_ip = status.node("hz-edge-3").expect("node without InternalIP");
    assert_eq!(no_ip.private_ip, "");
    assert_eq!(no_ip.private_ip_addr(), None);
    assert_eq!(no_ip.subnets, vec![String::new()]);
    // The agent's view: the first tunnel entry, even though a proxy entry shares the node.
    assert_eq!(
        status.active_tunnel_endpoint().map(|e| &e.type_),
        Some(&EndpointType::Tunnel)
    );
    assert!(raven_api::gateway::validation::validate(&gw).is_ok());
}

#[test]
fn gateway_list_deserializes() {
    let list: ObjectList<v1beta1::Gateway> =
        serde_json::from_value(fixture("v1beta1-gatewaylist.json")).expect("list");
    let names: Vec<&str> = list.items.iter().map(v1beta1::Gateway::name).collect();
    assert_eq!(names, vec!["gw-a", "gw-b"]);
    assert_eq!(list.items[1].status, None);
    assert_eq!(list.items[0].spec.tunnel_config.replicas, 1);
}

#[test]
fn required_keys_are_written_even_when_empty() {
    // Zero values everywhere: Go without omitempty still writes these keys.
    let gw = v1beta1::Gateway {
        spec: v1beta1::GatewaySpec {
            endpoints: vec![v1beta1::Endpoint::default()],
            ..Default::default()
        },
        status: Some(v1beta1::GatewayStatus {
            nodes: vec![v1beta1::NodeInfo::default()],
            active_endpoints: vec![v1beta1::Endpoint::default()],
        }),
        ..v1beta1::Gateway::new("gw", Default::default())
    };
    let v = serde_json::to_value(&gw).expect("serialize");
    assert_eq!(
        v,
        json!({
            "apiVersion": "raven.openyurt.io/v1beta1",
            "kind": "Gateway",
            "metadata": {"name": "gw"},
            "spec": {
                "proxyConfig": {"Replicas": 0},
                "tunnelConfig": {"Replicas": 0},
                "endpoints": [{"nodeName": "", "type": ""}]
            },
            "status": {
                "nodes": [{"nodeName": "", "privateIP": "", "subnets": []}],
                "activeEndpoints": [{"nodeName": "", "type": ""}]
            }
        })
    );
    assert_valid_for_crd("v1beta1", &v);

    let alpha = v1alpha1::Gateway::new("gw", Default::default());
    let v = serde_json::to_value(&alpha).expect("serialize");
    assert_eq!(
        v,
        json!({
            "apiVersion": "raven.openyurt.io/v1alpha1",
            "kind": "Gateway",
            "metadata": {"name": "gw"},
            "spec": {"endpoints": []}
        })
    );
    assert_valid_for_crd("v1alpha1", &v);
}

#[test]
fn omitempty_fields_are_left_out_when_zero_and_written_otherwise() {
    let mut ep = v1beta1::Endpoint {
        node_name: "n".into(),
        type_: EndpointType::Tunnel,
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&ep).expect("ser"),
        json!({"nodeName": "n", "type": "tunnel"})
    );
    ep.public_ip = "1.2.3.4".into();
    ep.public_port = 40000;
    ep.under_nat = true;
    ep.nat_type = "Symmetric NAT".into();
    ep.port = 4500;
    ep.config.insert("publicKey".into(), "k".into());
    assert_eq!(
        serde_json::to_value(&ep).expect("ser"),
        json!({
            "nodeName": "n", "type": "tunnel", "publicIP": "1.2.3.4", "publicPort": 40000,
            "underNAT": true, "natType": "Symmetric NAT", "port": 4500, "config": {"publicKey": "k"}
        })
    );
    let proxy = v1beta1::ProxyConfiguration {
        replicas: 3,
        proxy_http_port: "80".into(),
        proxy_https_port: String::new(),
    };
    assert_eq!(
        serde_json::to_value(&proxy).expect("ser"),
        json!({"Replicas": 3, "proxyHTTPPort": "80"})
    );
}

#[test]
fn go_nulls_and_missing_optional_keys_read_as_empty() {
    // Go writes nil slices/maps without omitempty as null; a hand-made object may lack spec.
    let beta: v1beta1::Gateway = serde_json::from_value(json!({
        "apiVersion": "raven.openyurt.io/v1beta1",
        "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {"proxyConfig": null, "endpoints": null,
                 "tunnelConfig": {"Replicas": 1}},
        "status": {"nodes": [{"nodeName": "n", "privateIP": "", "subnets": null}],
                   "activeEndpoints": null}
    }))
    .expect("nulls");
    assert_eq!(beta.spec.proxy_config.replicas, 0);
    assert!(beta.spec.endpoints.is_empty());
    let status = beta.status.expect("status");
    assert!(status.nodes[0].subnets.is_empty());
    assert!(status.active_endpoints.is_empty());

    let bare: v1beta1::Gateway =
        serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": null, "status": null}))
            .expect("bare");
    assert_eq!(bare.spec, v1beta1::GatewaySpec::default());
    assert_eq!(bare.status, None);

    let alpha: v1alpha1::Gateway = serde_json::from_value(json!({
        "metadata": {"name": "a"},
        "spec": {"endpoints": null}
    }))
    .expect("alpha nil endpoints");
    assert!(alpha.spec.endpoints.is_empty());
}

#[test]
fn required_keys_missing_are_clear_errors_not_panics() {
    let cases = [
        (json!({"spec": {"tunnelConfig": {}}}), "Replicas"),
        (
            json!({"spec": {"endpoints": [{"type": "tunnel"}]}}),
            "nodeName",
        ),
        (json!({"spec": {"endpoints": [{"nodeName": "n"}]}}), "type"),
        (
            json!({"status": {"nodes": [{"nodeName": "n", "subnets": []}]}}),
            "privateIP",
        ),
        (
            json!({"spec": {"endpoints": [{"nodeName": "n", "type": "tunnel", "port": "4500"}]}}),
            "expected i64",
        ),
    ];
    for (input, fragment) in cases {
        let err = serde_json::from_value::<v1beta1::Gateway>(input.clone())
            .expect_err(&input.to_string());
        assert!(err.to_string().contains(fragment), "{input}: {err}");
    }
}

#[test]
fn unknown_strings_survive_a_round_trip() {
    let input = json!({
        "apiVersion": "raven.openyurt.io/v1beta1",
        "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {
            "proxyConfig": {"Replicas": -1},
            "tunnelConfig": {"Replicas": 7},
            "endpoints": [{"nodeName": "n", "type": "vpn", "port": 99999}],
            "exposeType": "NodePort"
        }
    });
    let gw: v1beta1::Gateway = serde_json::from_value(input.clone()).expect("read");
    assert_eq!(
        gw.spec.endpoints[0].type_,
        EndpointType::Unknown("vpn".into())
    );
    assert_eq!(gw.spec.expose_type, ExposeType::Unknown("NodePort".into()));
    assert_eq!(gw.spec.endpoints[0].port_u16(), None);
    assert_eq!(serde_json::to_value(&gw).expect("write"), input);
    // Readable, but not admissible.
    let errs = raven_api::gateway::validation::validate(&gw).expect_err("invalid");
    assert_eq!(errs.0.len(), 5, "{errs}");
}

#[test]
fn converted_fixtures_pass_the_other_versions_schema() {
    for (name, value) in gateway_fixtures() {
        let (to, version) = if value["apiVersion"] == "raven.openyurt.io/v1beta1" {
            ("raven.openyurt.io/v1alpha1", "v1alpha1")
        } else {
            ("raven.openyurt.io/v1beta1", "v1beta1")
        };
        let converted = conversion::convert_value(&value, to).expect(&name);
        assert!(
            converted.warnings.is_empty(),
            "{name}: {:?}",
            converted.warnings
        );
        assert_valid_for_crd(version, &converted.object);
        let from = value["apiVersion"].as_str().expect("apiVersion");
        let back = conversion::convert_value(&converted.object, from).expect("back");
        assert_eq!(
            back.object, value,
            "{name}: round trip through {to} changed it"
        );
    }
}
