//! The manifests of `deploy/`: a small kustomize renderer, schema validation through
//! `kubernetes-validate`, and the REST collection path of each object for dry-run creates.
//!
//! No `kustomize` binary is installable here (none in Debian, no kubectl), so [`render`]
//! implements the subset `deploy/` uses: a `kustomization.yaml` with `apiVersion`, `kind` and
//! `resources` (files of YAML documents, or directories holding a `kustomization.yaml`),
//! followed recursively, depth first, in listed order, with kustomize's rule that the same
//! object (group, kind, namespace, name) may appear only once. Any other key (patches,
//! generators, namespace, images, ...) is an error naming it, so the renderer can never silently
//! render something kustomize would render differently.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};

/// Keys of a kustomization the renderer understands.
const KNOWN_KEYS: [&str; 3] = ["apiVersion", "kind", "resources"];

/// Renders the kustomization in `dir` into its objects.
pub fn render(dir: &Path) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    render_into(dir, &mut out, &mut seen, 0)?;
    Ok(out)
}

fn render_into(
    dir: &Path,
    out: &mut Vec<Value>,
    seen: &mut BTreeSet<String>,
    depth: usize,
) -> Result<()> {
    if depth > 16 {
        return Err(Error::new(format!(
            "{}: kustomizations nested too deep (a cycle?)",
            dir.display()
        )));
    }
    let file = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&file)
        .map_err(|e| Error::new(format!("reading {}: {e}", file.display())))?;
    let k: Value =
        serde_yaml::from_str(&text).map_err(|e| Error::new(format!("{}: {e}", file.display())))?;
    let Value::Object(map) = &k else {
        return Err(Error::new(format!("{}: not a mapping", file.display())));
    };
    for key in map.keys() {
        if !KNOWN_KEYS.contains(&key.as_str()) {
            return Err(Error::new(format!(
                "{}: key {key:?} is not supported by the test renderer (only {KNOWN_KEYS:?})",
                file.display()
            )));
        }
    }
    if k["kind"] != "Kustomization" {
        return Err(Error::new(format!(
            "{}: kind is not Kustomization",
            file.display()
        )));
    }
    let resources = k["resources"]
        .as_array()
        .ok_or_else(|| Error::new(format!("{}: no resources list", file.display())))?;
    for r in resources {
        let rel = r
            .as_str()
            .ok_or_else(|| Error::new(format!("{}: resource {r} is not a path", file.display())))?;
        let path = dir.join(rel);
        if path.is_dir() {
            render_into(&path, out, seen, depth + 1)?;
        } else {
            // kustomize's load restrictor: files must be inside the kustomization's directory.
            if rel.contains("..") {
                return Err(Error::new(format!(
                    "{}: file {rel} is outside the kustomization root",
                    file.display()
                )));
            }
            for obj in read_objects(&path)? {
                let id = object_id(&obj);
                if !seen.insert(id.clone()) {
                    return Err(Error::new(format!(
                        "{}: {id} is defined twice",
                        path.display()
                    )));
                }
                out.push(obj);
            }
        }
    }
    Ok(())
}

/// Every non-empty YAML document of `path`.
pub fn read_objects(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new(format!("reading {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
        if v.is_null() {
            continue;
        }
        if v["apiVersion"].as_str().is_none() || v["kind"].as_str().is_none() {
            return Err(Error::new(format!(
                "{}: a document without apiVersion/kind",
                path.display()
            )));
        }
        out.push(v);
    }
    Ok(out)
}

/// `group/kind namespace/name`, kustomize's identity of an object.
pub fn object_id(obj: &Value) -> String {
    let api = obj["apiVersion"].as_str().unwrap_or_default();
    let group = api.rsplit_once('/').map_or("", |(g, _)| g);
    format!(
        "{group}/{} {}/{}",
        obj["kind"].as_str().unwrap_or_default(),
        obj["metadata"]["namespace"].as_str().unwrap_or("_"),
        obj["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// The REST collection path to POST `obj` to.
pub fn collection_path(obj: &Value) -> Result<String> {
    let api = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let (resource, namespaced) = match kind {
        "ServiceAccount" => ("serviceaccounts", true),
        "ConfigMap" => ("configmaps", true),
        "Service" => ("services", true),
        "Deployment" => ("deployments", true),
        "DaemonSet" => ("daemonsets", true),
        "PodDisruptionBudget" => ("poddisruptionbudgets", true),
        "Role" => ("roles", true),
        "RoleBinding" => ("rolebindings", true),
        "ClusterRole" => ("clusterroles", false),
        "ClusterRoleBinding" => ("clusterrolebindings", false),
        "CustomResourceDefinition" => ("customresourcedefinitions", false),
        "MutatingWebhookConfiguration" => ("mutatingwebhookconfigurations", false),
        "ValidatingWebhookConfiguration" => ("validatingwebhookconfigurations", false),
        other => return Err(Error::new(format!("no REST path known for kind {other}"))),
    };
    let prefix = if api.contains('/') {
        format!("/apis/{api}")
    } else {
        format!("/api/{api}")
    };
    if namespaced {
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .ok_or_else(|| Error::new(format!("{} has no namespace", object_id(obj))))?;
        Ok(format!("{prefix}/namespaces/{ns}/{resource}"))
    } else {
        Ok(format!("{prefix}/{resource}"))
    }
}

/// The python venv holding `kubernetes-validate` (made by `tests/install-deps.sh`;
/// `RAVEN_MANIFEST_VENV` overrides).
pub fn venv() -> PathBuf {
    std::env::var_os("RAVEN_MANIFEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/raven-tests/venv"))
}

/// The Kubernetes versions whose schemas the installed `kubernetes-validate` bundles, sorted
/// ascending (`1.26.0`, ...).
pub fn bundled_versions() -> Result<Vec<(u32, u32, u32)>> {
    let python = venv().join("bin/python");
    let script = "import importlib.resources as r, kubernetes_validate as k; \
                  d = r.files(k) / 'kubernetes-json-schema'; \
                  print('\\n'.join(p.name for p in d.iterdir()))";
    let out = std::process::Command::new(&python)
        .args(["-c", script])
        .output()
        .map_err(|e| {
            Error::new(format!(
                "{}: {e}; run tests/install-deps.sh (it installs kubernetes-validate into that venv)",
                python.display()
            ))
        })?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "listing kubernetes-validate's schemas failed: {}; run tests/install-deps.sh",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let mut versions: Vec<(u32, u32, u32)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix('v')?.strip_suffix("-local-strict"))
        .filter_map(|v| {
            let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((it.next()??, it.next()??, it.next()??))
        })
        .collect();
    versions.sort_unstable();
    versions.dedup();
    Ok(versions)
}

/// Validates `file` (YAML documents) strictly against the schemas of `version` (`1.26.0`);
/// `Ok(())` or the validator's report.
pub fn validate(file: &Path, version: &str) -> Result<()> {
    let tool = venv().join("bin/kubernetes-validate");
    let out = std::process::Command::new(&tool)
        .args(["--strict", "--kubernetes-version", version])
        .arg(file)
        .output()
        .map_err(|e| {
            Error::new(format!(
                "{}: {e}; run tests/install-deps.sh",
                tool.display()
            ))
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && !text.contains("ERROR") {
        Ok(())
    } else {
        Err(Error::new(format!(
            "{} against Kubernetes {version}:\n{text}",
            file.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_and_ids() {
        let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                        "metadata": {"name": "raven-node", "namespace": "kube-system"}});
        assert_eq!(
            collection_path(&ds).unwrap(),
            "/apis/apps/v1/namespaces/kube-system/daemonsets"
        );
        assert_eq!(object_id(&ds), "apps/DaemonSet kube-system/raven-node");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "x", "namespace": "kube-system"}});
        assert_eq!(
            collection_path(&cm).unwrap(),
            "/api/v1/namespaces/kube-system/configmaps"
        );
        let cr = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                        "metadata": {"name": "x"}});
        assert_eq!(
            collection_path(&cr).unwrap(),
            "/apis/rbac.authorization.k8s.io/v1/clusterroles"
        );
        assert!(collection_path(&json!({"apiVersion": "v1", "kind": "Pod"})).is_err());
    }

    #[test]
    fn renderer_follows_resources_and_refuses_what_it_does_not_know() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("base")).unwrap();
        std::fs::create_dir_all(d.join("over")).unwrap();
        std::fs::write(
            d.join("base/kustomization.yaml"),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml]\n",
        )
        .unwrap();
        std::fs::write(
            d.join("base/a.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: x}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: x}\n",
        )
        .unwrap();
        std::fs::write(
            d.join("over/kustomization.yaml"),
            "kind: Kustomization\nresources: [../base, c.yaml]\n",
        )
        .unwrap();
        std::fs::write(
            d.join("over/c.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: x}\n",
        )
        .unwrap();
        let names: Vec<_> = render(&d.join("over"))
            .unwrap()
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        // A duplicate object.
        std::fs::write(
            d.join("over/c.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: x}\n",
        )
        .unwrap();
        let e = render(&d.join("over")).unwrap_err().to_string();
        assert!(e.contains("defined twice"), "{e}");
        // An unsupported key.
        std::fs::write(
            d.join("over/kustomization.yaml"),
            "kind: Kustomization\nresources: [../base]\nnamePrefix: x-\n",
        )
        .unwrap();
        let e = render(&d.join("over")).unwrap_err().to_string();
        assert!(e.contains("namePrefix"), "{e}");
        // A file outside the root.
        std::fs::write(
            d.join("over/kustomization.yaml"),
            "kind: Kustomization\nresources: [../base/a.yaml]\n",
        )
        .unwrap();
        let e = render(&d.join("over")).unwrap_err().to_string();
        assert!(e.contains("outside the kustomization root"), "{e}");
    }
}
