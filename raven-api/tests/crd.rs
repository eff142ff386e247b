//! The committed CRD matches the Rust types, and its structure matches OpenYurt's CRD.
#![cfg(feature = "kube")]

use std::path::PathBuf;

use raven_api::gateway::crd::{CRD_PATH, REGENERATE_COMMAND, crd, crd_yaml};
use serde_json::Value;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_crd_matches_the_types() {
    let path = workspace_root().join(CRD_PATH);
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}\nGenerate it from the workspace root with:\n  {REGENERATE_COMMAND}",
            path.display()
        )
    });
    let generated = crd_yaml().expect("CRD generation");
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "one file is a prefix of the other".to_owned(),
                |i| {
                    format!(
                        "first difference at line {}:\n  committed: {:?}\n  generated: {:?}",
                        i + 1,
                        committed.lines().nth(i).unwrap_or_default(),
                        generated.lines().nth(i).unwrap_or_default()
                    )
                },
            );
        panic!(
            "{} is out of date with the Rust Gateway types ({line}).\nRegenerate it from the \
             workspace root with:\n  {REGENERATE_COMMAND}",
            CRD_PATH
        );
    }
}

/// One line per schema node, without descriptions: the structure an API server enforces.
/// `tests/fixtures/openyurt-crd-shape.txt` holds the same for OpenYurt's published CRD.
fn shape(crd: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let spec = &crd["spec"];
    let names = &spec["names"];
    let join = |v: &Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    out.push(format!(
        "names kind={} listKind={} plural={} singular={} shortNames={} categories={} scope={}",
        s(&names["kind"]),
        s(&names["listKind"]),
        s(&names["plural"]),
        s(&names["singular"]),
        join(&names["shortNames"]),
        join(&names["categories"]),
        s(&spec["scope"]),
    ));
    let mut versions: Vec<&Value> = spec["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .collect();
    versions.sort_by_key(|v| s(&v["name"]));
    for v in versions {
        let name = s(&v["name"]);
        out.push(format!(
            "version {name} served={} storage={} status={}",
            v["served"],
            v["storage"],
            v["subresources"].get("status").is_some()
        ));
        walk(&name, ".", &v["schema"]["openAPIV3Schema"], false, &mut out);
    }
    out
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("-").to_owned()
}

fn walk(version: &str, path: &str, node: &Value, required: bool, out: &mut Vec<String>) {
    let mut line = format!("{version} {path} {}", s(&node["type"]));
    if required {
        line.push_str(" required");
    }
    let obj = node.as_object().expect("schema node is an object");
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    for k in keys.iter().filter(|k| k.starts_with("x-kubernetes")) {
        line.push_str(&format!(" {k}={}", s(&obj[k.as_str()])));
    }
    out.push(line);
    let req: Vec<&str> = node["required"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = node["properties"].as_object() {
        let mut names: Vec<&String> = props.keys().collect();
        names.sort();
        for name in names {
            let child = if path == "." {
                format!(".{name}")
            } else {
                format!("{path}.{name}")
            };
            walk(
                version,
                &child,
                &props[name.as_str()],
                req.contains(&name.as_str()),
                out,
            );
        }
    }
    if let Some(items) = node.get("items") {
        walk(version, &format!("{path}[]"), items, false, out);
    }
    if let Some(ap) = node.get("additionalProperties").filter(|v| v.is_object()) {
        walk(version, &format!("{path}{{}}"), ap, false, out);
    }
}

#[test]
fn schema_structure_equals_openyurts() {
    let ours = shape(&serde_json::to_value(crd().expect("CRD")).expect("CRD as JSON"));
    let theirs: Vec<String> = include_str!("fixtures/openyurt-crd-shape.txt")
        .lines()
        .map(str::to_owned)
        .collect();
    let missing: Vec<&String> = theirs.iter().filter(|l| !ours.contains(l)).collect();
    let extra: Vec<&String> = ours.iter().filter(|l| !theirs.contains(l)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "schema differs from OpenYurt's\nonly in OpenYurt's: {missing:#?}\nonly in ours: {extra:#?}"
    );
    assert_eq!(ours, theirs, "same lines, different order");
}

#[test]
fn printer_columns_and_conversion() {
    let crd = serde_json::to_value(crd().expect("CRD")).expect("JSON");
    let columns = |version: &str| -> Vec<(String, String)> {
        crd["spec"]["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .find(|v| v["name"] == version)
            .expect("version present")["additionalPrinterColumns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| (s(&c["name"]), s(&c["jsonPath"])))
            .collect()
    };
    assert_eq!(
        columns("v1beta1"),
        vec![
            ("ExposeType".into(), ".spec.exposeType".into()),
            (
                "Tunnel".into(),
                r#".status.activeEndpoints[?(@.type=="tunnel")].nodeName"#.into()
            ),
            (
                "Proxy".into(),
                r#".status.activeEndpoints[?(@.type=="proxy")].nodeName"#.into()
            ),
            ("Age".into(), ".metadata.creationTimestamp".into()),
        ]
    );
    assert_eq!(
        columns("v1alpha1"),
        vec![
            (
                "ActiveEndpoint".into(),
                ".status.activeEndpoint.nodeName".into()
            ),
            ("Age".into(), ".metadata.creationTimestamp".into()),
        ]
    );
    let conversion = &crd["spec"]["conversion"];
    assert_eq!(conversion["strategy"], "Webhook");
    assert_eq!(
        conversion["webhook"]["conversionReviewVersions"],
        serde_json::json!(["v1"])
    );
    assert_eq!(
        conversion["webhook"]["clientConfig"]["service"]["path"],
        "/convert"
    );
    // Exactly one storage version, and it is the hub.
    let storage: Vec<String> = crd["spec"]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter(|v| v["storage"] == true)
        .map(|v| s(&v["name"]))
        .collect();
    assert_eq!(storage, vec!["v1beta1"]);
}

#[test]
fn schema_has_no_defaults_or_nullable() {
    let yaml = crd_yaml().expect("CRD");
    for word in ["default:", "nullable:", "$ref", "anyOf", "oneOf", "title:"] {
        assert!(
            !yaml.contains(word),
            "generated CRD must not contain {word:?}"
        );
    }
}
