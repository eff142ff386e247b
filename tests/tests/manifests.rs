//! The manifests of `deploy/`, rendered like `kubectl apply -k deploy/overlays/<mode>` (our
//! renderer of the kustomize subset `deploy/` uses, `raven_tests::manifests`):
//! - what each overlay contains, and the properties the DaemonSet and Deployment promise;
//! - strict validation against the Kubernetes schemas of 1.26 (the minimum) and of the
//!   newest release `kubernetes-validate` bundles (installed by `tests/install-deps.sh`);
//! - server-side dry-run creation of every object on the real kube-apiserver tier.
//!
//! The tier's API server is 1.20, which serves PodDisruptionBudget only as `policy/v1beta1`
//! (`policy/v1` arrived in 1.21; the schemas of 1.26+ have only `policy/v1`): for the dry-run
//! only, the PDB is sent as `policy/v1beta1`, whose fields we use are identical.

use std::path::{Path, PathBuf};

use raven_tests::kube::KubeApiServer;
use raven_tests::manifests::{self, bundled_versions, collection_path, object_id, render};
use serde_json::Value;

const OVERLAYS: [&str; 3] = ["tunnel", "proxy", "both"];

fn deploy() -> PathBuf {
    raven_tests::paths::repo_root().join("deploy")
}

fn rendered(overlay: &str) -> Vec<Value> {
    render(&deploy().join("overlays").join(overlay)).unwrap_or_else(|e| panic!("{overlay}: {e}"))
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn get<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    find(objs, kind, name).unwrap_or_else(|| panic!("{kind} {name} missing"))
}

#[test]
fn overlays_hold_what_each_mode_needs() {
    for overlay in OVERLAYS {
        let objs = rendered(overlay);
        get(
            &objs,
            "CustomResourceDefinition",
            "gateways.raven.openyurt.io",
        );
        get(&objs, "ConfigMap", "raven-agent-config");
        let cfg = get(&objs, "ConfigMap", "raven-cfg");
        let (l3, l7) = match overlay {
            "tunnel" => ("true", "false"),
            "proxy" => ("false", "true"),
            _ => ("true", "true"),
        };
        assert_eq!(cfg["data"]["enable-l3-tunnel"], l3, "{overlay}");
        assert_eq!(cfg["data"]["enable-l7-proxy"], l7, "{overlay}");
        let dns = find(&objs, "Deployment", "raven-proxy-dns").is_some();
        assert_eq!(
            dns,
            l7 == "true",
            "{overlay}: raven-proxy-dns only with the proxy"
        );
        if dns {
            get(&objs, "Service", "raven-proxy-dns");
            get(&objs, "ConfigMap", "raven-proxy-dns");
            assert!(
                find(&objs, "ConfigMap", "edge-tunnel-nodes").is_none(),
                "edge-tunnel-nodes belongs to raven-controller"
            );
        }
        // Everything lives in kube-system, except the controller's Event permissions in
        // "default" (Events about cluster-scoped Gateways are recorded there).
        for o in &objs {
            if let Some(ns) = o["metadata"]["namespace"].as_str() {
                let events = o["metadata"]["name"] == "raven-controller-events";
                assert!(
                    ns == "kube-system" || (ns == "default" && events),
                    "{}",
                    object_id(o)
                );
            }
        }
        // Least privilege: no wildcard anywhere in any rule.
        for o in objs
            .iter()
            .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        {
            for rule in o["rules"].as_array().expect("rules") {
                for key in ["apiGroups", "resources", "verbs", "resourceNames"] {
                    for v in rule[key].as_array().into_iter().flatten() {
                        assert_ne!(v, "*", "{}: wildcard in {key}", object_id(o));
                    }
                }
            }
        }
    }
    // Pod-spec promises of the node DaemonSet and the controller Deployment.
    let objs = rendered("both");
    let ds = get(&objs, "DaemonSet", "raven-node");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(
        pod["tolerations"],
        serde_json::json!([{"operator": "Exists"}])
    );
    assert_eq!(ds["spec"]["updateStrategy"]["type"], "RollingUpdate");
    let c = &pod["containers"][0];
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(
        c["securityContext"]["capabilities"]["add"],
        serde_json::json!(["NET_ADMIN", "SYS_ADMIN"])
    );
    assert!(
        c["securityContext"]["privileged"].is_null(),
        "not privileged"
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let env = c["env"].as_array().expect("env");
    let var = |name: &str| env.iter().find(|e| e["name"] == name).cloned();
    assert_eq!(
        var("NODE_NAME").expect("NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    // The probes hit the address the daemon is told to listen on.
    let addr = var("RAVEN_METRICS_ADDR").expect("RAVEN_METRICS_ADDR");
    let port = c["livenessProbe"]["httpGet"]["port"]
        .as_u64()
        .expect("port");
    assert!(
        addr["value"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{port}"))
    );
    let mounts = c["volumeMounts"].as_array().expect("mounts");
    let mount = |path: &str| {
        mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("mount {path} missing"))
    };
    for p in ["/run/netns", "/var/run/netns"] {
        assert_eq!(mount(p)["mountPropagation"], "HostToContainer", "{p}");
    }
    for p in [
        "/etc/cni/net.d",
        "/opt/cni/bin",
        "/dev/net/tun",
        "/var/lib/raven",
    ] {
        mount(p);
    }
    assert_eq!(mount("/lib/modules")["readOnly"], true);
    // The proxy front side is on exactly when the proxy is (same raven-cfg key); its
    // cluster-specific files come from optional objects mounted where its flags point.
    let from_cfg = |name: &str| {
        var(name).unwrap_or_else(|| panic!("{name} missing"))["valueFrom"]["configMapKeyRef"]
            .clone()
    };
    assert_eq!(from_cfg("RAVEN_PROXY_FRONT"), from_cfg("RAVEN_PROXY"));
    assert_eq!(from_cfg("RAVEN_PROXY_FRONT")["optional"], true);
    let volumes = pod["volumes"].as_array().expect("volumes");
    for (env_name, volume, source, object) in [
        (
            "RAVEN_PROXY_FRONT_CLIENT_CA",
            "proxy-front-ca",
            "configMap",
            "raven-proxy-front",
        ),
        (
            "RAVEN_PROXY_KUBELET_CA",
            "proxy-front-ca",
            "configMap",
            "raven-proxy-front",
        ),
    ] {
        let file = var(env_name).unwrap_or_else(|| panic!("{env_name} missing"))["value"]
            .as_str()
            .unwrap_or_else(|| panic!("{env_name}: a literal path"))
            .to_owned();
        let m = mounts
            .iter()
            .find(|m| m["name"] == volume)
            .unwrap_or_else(|| panic!("{volume} not mounted"));
        assert_eq!(m["readOnly"], true, "{volume}");
        let dir = m["mountPath"].as_str().expect("mountPath");
        assert_eq!(
            Path::new(&file).parent(),
            Some(Path::new(dir)),
            "{env_name} must point into {volume}"
        );
        let v = volumes
            .iter()
            .find(|v| v["name"] == volume)
            .unwrap_or_else(|| panic!("volume {volume} missing"));
        let name_key = if source == "secret" {
            "secretName"
        } else {
            "name"
        };
        assert_eq!(v[source][name_key], object, "{volume}");
        assert_eq!(
            v[source]["optional"], true,
            "{volume}: the pod starts without it"
        );
    }
    // The front's kubelet identity is a CSR-issued certificate per proxy server node, never a
    // Secret every node mounts: no kubelet client file or Secret volume in the pod.
    for name in [
        "RAVEN_PROXY_KUBELET_CLIENT_CERT",
        "RAVEN_PROXY_KUBELET_CLIENT_KEY",
    ] {
        assert!(
            var(name).is_none(),
            "{name}: the CSR-issued front certificate is used"
        );
    }
    assert!(
        volumes.iter().all(|v| v.get("secret").is_none()),
        "no Secret is mounted on every node: {volumes:?}"
    );
    let binding = get(&objs, "ClusterRoleBinding", "raven-proxy-front-kubelet");
    assert_eq!(binding["subjects"][0]["kind"], "Group");
    assert_eq!(binding["subjects"][0]["name"], "raven:proxy-fronts");
    let role = get(&objs, "ClusterRole", "raven-proxy-front-kubelet");
    for rule in role["rules"].as_array().expect("rules") {
        for r in rule["resources"].as_array().expect("resources") {
            assert!(
                r.as_str().is_some_and(|r| r.starts_with("nodes/")),
                "the front's kubelet identity reaches kubelets only: {r}"
            );
        }
    }
    let init = &pod["initContainers"][0];
    assert!(
        init["command"]
            .as_array()
            .expect("command")
            .iter()
            .any(|a| a == "install-cni"),
        "{init}"
    );
    let dep = get(&objs, "Deployment", "raven-controller");
    assert_eq!(dep["spec"]["replicas"], 2);
    // Never scheduled on an edge node: only label keys a kubelet cannot set on itself.
    let terms = dep["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        .as_array()
        .expect("required node affinity");
    let keys: Vec<&str> = terms
        .iter()
        .flat_map(|t| t["matchExpressions"].as_array().into_iter().flatten())
        .filter_map(|e| e["key"].as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "node-role.kubernetes.io/control-plane",
            "node-restriction.kubernetes.io/raven-controller"
        ]
    );
    let ports = dep["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .expect("ports");
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "webhook" && p["containerPort"] == 9443)
    );
    get(&objs, "PodDisruptionBudget", "raven-controller");
    get(&objs, "Service", "raven-controller-metrics");
}

fn write_docs(dir: &Path, name: &str, objs: &[Value]) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let text: Vec<String> = objs
        .iter()
        .map(|o| serde_yaml::to_string(o).expect("YAML"))
        .collect();
    std::fs::write(&path, text.join("---\n")).expect("write");
    path
}

#[test]
fn manifests_validate_against_kubernetes_1_26_and_the_newest_release() {
    let versions = bundled_versions().unwrap_or_else(|e| panic!("{e}"));
    let newest = *versions.last().unwrap_or_else(|| {
        panic!("kubernetes-validate bundles no schemas; run tests/install-deps.sh")
    });
    assert!(
        versions.contains(&(1, 26, 0)),
        "kubernetes-validate in {} has no schemas for 1.26.0 (has {versions:?}); \
         run tests/install-deps.sh",
        manifests::venv().display()
    );
    assert!(
        newest >= (1, 34, 0),
        "kubernetes-validate's newest schemas are {newest:?}; update it in tests/install-deps.sh"
    );
    let newest = format!("{}.{}.{}", newest.0, newest.1, newest.2);
    let tmp = tempfile::tempdir().expect("tmp");
    for overlay in OVERLAYS {
        let file = write_docs(tmp.path(), overlay, &rendered(overlay));
        for version in ["1.26.0", newest.as_str()] {
            manifests::validate(&file, version).unwrap_or_else(|e| panic!("{overlay}: {e}"));
        }
    }
    // The validator does reject: a DaemonSet without a selector, an unknown field.
    let mut bad = rendered("tunnel");
    let ds = bad
        .iter_mut()
        .find(|o| o["kind"] == "DaemonSet")
        .expect("DaemonSet");
    ds["spec"]["template"]["spec"]["containers"][0]["capabilitiez"] = Value::from(1);
    let file = write_docs(tmp.path(), "bad", &bad);
    let e = manifests::validate(&file, "1.26.0").expect_err("an unknown field must fail");
    assert!(e.to_string().contains("capabilitiez"), "{e}");
}

#[test]
fn manifests_dry_run_on_the_real_apiserver() {
    let api =
        KubeApiServer::start().unwrap_or_else(|e| panic!("cannot start the test API server: {e}"));
    let objs = rendered("both");
    assert!(objs.len() > 20, "only {} objects", objs.len());
    for obj in &objs {
        let mut obj = obj.clone();
        if obj["kind"] == "PodDisruptionBudget" && obj["apiVersion"] == "policy/v1" {
            obj["apiVersion"] = Value::from("policy/v1beta1");
        }
        let path = format!(
            "{}?dryRun=All",
            collection_path(&obj).unwrap_or_else(|e| panic!("{e}"))
        );
        let body = serde_json::to_string(&obj).expect("JSON");
        let r = api
            .request(raven_tests::kube::ADMIN_TOKEN, "POST", &path, Some(&body))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            r.ok(),
            "dry-run create of {} refused: HTTP {}: {}",
            object_id(&obj),
            r.status,
            r.body
        );
    }
    // Dry-run means nothing was stored.
    let r = api
        .get_json("/apis/apps/v1/namespaces/kube-system/daemonsets/raven-node")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(r.is_none(), "dry-run stored the DaemonSet");
    // And the server does check: a DaemonSet whose selector misses its labels is refused.
    let mut ds = get(&objs, "DaemonSet", "raven-node").clone();
    ds["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = Value::from("other");
    let r = api
        .request(
            raven_tests::kube::ADMIN_TOKEN,
            "POST",
            &format!("{}?dryRun=All", collection_path(&ds).unwrap()),
            Some(&serde_json::to_string(&ds).unwrap()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 422, "{}", r.body);
}

/// `raven_node_*` names in `text` (histogram series suffixes folded into the family).
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("raven_node_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(family.to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn monitoring_samples_use_documented_metrics_and_every_metric_is_documented() {
    let root = raven_tests::paths::repo_root();
    let read = |p: &str| {
        std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("reading {p}: {e}"))
    };
    let doc = read("docs/metrics.md");
    // Every family the daemon, the proxy and the controller register is in a table.
    let families = |file: &str, call: &str| -> Vec<String> {
        read(file)
            .split(call)
            .skip(1)
            .filter_map(|s| s.split('"').nth(1).map(str::to_owned))
            .collect()
    };
    let sources = [
        (
            "raven-node/src/daemon/metrics.rs",
            "registry.register(",
            "raven_node_",
            15,
        ),
        (
            "raven-node/src/proxy/tunnel/metrics.rs",
            "registry.register(",
            "raven_node_proxy_",
            11,
        ),
        (
            "raven-node/src/proxy/front/metrics.rs",
            "r.register(",
            "raven_node_proxy_front_",
            6,
        ),
        (
            "raven-controller/src/runtime/metrics.rs",
            "r.register(",
            "raven_controller_",
            6,
        ),
    ];
    for (file, call, prefix, at_least) in sources {
        let registered = families(file, call);
        assert!(registered.len() >= at_least, "{file}: {registered:?}");
        for name in &registered {
            assert!(
                doc.contains(&format!("`{prefix}{name}")),
                "{prefix}{name} (registered in {file}) is not documented in docs/metrics.md"
            );
        }
    }
    // The alert rules parse, cover the required alerts, and use documented names only.
    let rules_text = read("deploy/monitoring/prometheus-rules.yaml");
    let rules: Value = serde_yaml::from_str(&rules_text).expect("rules YAML");
    let alerts: Vec<&str> = rules["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for want in [
        "RavenTunnelDown",
        "RavenNoHandshake",
        "RavenApplyFailing",
        "RavenProxyDialErrors",
    ] {
        assert!(alerts.contains(&want), "{want} missing: {alerts:?}");
    }
    let dashboard_text = read("deploy/monitoring/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&dashboard_text).expect("dashboard JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 8));
    for name in metric_names(&rules_text)
        .into_iter()
        .chain(metric_names(&dashboard_text))
    {
        assert!(
            doc.contains(&format!("`{name}`")),
            "{name} is used by deploy/monitoring but not documented"
        );
    }
}
