//! `raven-controller` against a real kube-apiserver 1.20.2, running as the built binary with
//! the identity of its ServiceAccount (a token user named
//! `system:serviceaccount:kube-system:raven-controller`), so the RBAC manifests in
//! `deploy/rbac` are exactly what authorizes it.
//!
//! Needs the cached apiserver (`tests/kube/build-apiserver.sh`) and a built controller
//! (`cargo build -p raven-controller`); fails with that hint otherwise.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use raven_tests::kube::{ControllerProcess, KubeApiServer, controller_user, wait_for};
use serde_json::{Value, json};

const GW: &str = "/apis/raven.openyurt.io/v1beta1/gateways";
const NP: &str = "/apis/apps.openyurt.io/v1beta2/nodepools";
const KS: &str = "/api/v1/namespaces/kube-system";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";
const T: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// API server with our CRDs (and optionally OpenYurt's NodePool CRD), our RBAC, raven-cfg with
/// both features on, and a kubeconfig for the controller's identity.
fn setup(nodepools: bool) -> (KubeApiServer, PathBuf) {
    let user = controller_user();
    let api = KubeApiServer::start_with_users(std::slice::from_ref(&user))
        .unwrap_or_else(|e| panic!("cannot start the test API server: {e}"));
    let crd = std::fs::read_to_string(repo().join("deploy/crds/raven.openyurt.io_gateways.yaml"))
        .expect("read Gateway CRD");
    api.create_crd(&crd).expect("Gateway CRD");
    if nodepools {
        let np = std::fs::read_to_string(raven_tests::paths::shared_reference(
            "openyurt-crds/apps.openyurt.io_nodepools.yaml",
        ))
        .expect("read NodePool CRD (reference copy)");
        api.create_crd(&np).expect("NodePool CRD");
    }
    let applied = api
        .apply_dir(&repo().join("deploy/rbac"))
        .expect("apply RBAC");
    assert!(applied.len() >= 3, "{applied:?}");
    // Our identity is not an admin: RBAC really applies.
    let r = api
        .request(&user.token, "GET", "/api/v1/secrets", None)
        .expect("request");
    assert_eq!(r.status, 403, "controller identity must not read secrets");
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "raven-cfg", "namespace": "kube-system"},
        "data": {"enable-l7-proxy": "true", "enable-l3-tunnel": "true", "acl-id": "vendor"}});
    api.admin("POST", &format!("{KS}/configmaps"), Some(&cfg.to_string()))
        .expect("raven-cfg");
    let kc = api
        .kubeconfig("raven-controller", &user.token)
        .expect("kubeconfig");
    (api, kc)
}

fn add_node(api: &KubeApiServer, name: &str, pool: Option<&str>, ip: &str, cidr: &str) {
    let mut labels = serde_json::Map::new();
    if let Some(p) = pool {
        labels.insert("apps.openyurt.io/nodepool".into(), p.into());
    }
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    api.admin("POST", "/api/v1/nodes", Some(&node.to_string()))
        .expect("create node");
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "Test",
            "lastHeartbeatTime": "2025-01-01T00:00:00Z", "lastTransitionTime": "2025-01-01T00:00:00Z"}],
        "addresses": [{"type": "InternalIP", "address": ip}]}});
    api.admin(
        "PATCH",
        &format!("/api/v1/nodes/{name}/status"),
        Some(&status.to_string()),
    )
    .expect("node status");
}

fn add_pool(api: &KubeApiServer, name: &str, ty: &str, connected: bool) {
    let np = json!({"apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool",
        "metadata": {"name": name}, "spec": {"type": ty, "interConnectivity": connected}});
    api.admin("POST", NP, Some(&np.to_string()))
        .expect("create pool");
}

fn get(api: &KubeApiServer, path: &str) -> Option<Value> {
    api.get_json(path).expect("GET")
}

fn items(api: &KubeApiServer, path: &str) -> Vec<Value> {
    get(api, path)
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
}

fn managed_gateways(api: &KubeApiServer) -> Vec<String> {
    let mut v: Vec<String> = items(api, GW)
        .iter()
        .filter(|g| g["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "raven-controller")
        .filter_map(|g| g["metadata"]["name"].as_str().map(String::from))
        .collect();
    v.sort();
    v
}

fn active(gw: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = gw["status"]["activeEndpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["nodeName"].as_str().unwrap_or_default().to_string(),
                e["type"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn status_nodes(gw: &Value) -> Vec<String> {
    gw["status"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["nodeName"].as_str().map(String::from))
        .collect()
}

fn both(node: &str) -> Vec<(String, String)> {
    vec![
        (node.into(), "proxy".into()),
        (node.into(), "tunnel".into()),
    ]
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Waits until Gateway `name` has these members and active endpoints.
fn wait_gateway(api: &KubeApiServer, name: &str, members: &[&str], want: Vec<(String, String)>) {
    wait_for(T, &format!("gateway {name}"), || {
        let Some(g) = get(api, &format!("{GW}/{name}")) else {
            return Err("absent".into());
        };
        if status_nodes(&g) == strs(members) && active(&g) == want {
            Ok(Some(()))
        } else {
            Err(g["status"].to_string())
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

fn node_label(api: &KubeApiServer, node: &str) -> Option<String> {
    get(api, &format!("/api/v1/nodes/{node}")).and_then(|n| {
        n["metadata"]["labels"]["raven.openyurt.io/gateway"]
            .as_str()
            .map(String::from)
    })
}

fn wait_label(api: &KubeApiServer, node: &str, want: Option<&str>) {
    wait_for(T, &format!("label of {node}"), || {
        let l = node_label(api, node);
        if l.as_deref() == want {
            Ok(Some(()))
        } else {
            Err(format!("{l:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

fn wait_log(c: &ControllerProcess, needle: &str, timeout: Duration) -> Duration {
    wait_for(timeout, &format!("log line {needle:?}"), || {
        if c.log_text().contains(needle) {
            Ok(Some(()))
        } else {
            Err(c.log_text())
        }
    })
    .unwrap_or_else(|e| panic!("{e}"))
    .1
}

/// resourceVersion of everything the controller writes.
fn versions(api: &KubeApiServer) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (kind, path) in [
        ("gateway", GW.to_string()),
        ("node", "/api/v1/nodes".to_string()),
        ("service", format!("{KS}/services")),
        ("endpoints", format!("{KS}/endpoints")),
        ("configmap", format!("{KS}/configmaps")),
    ] {
        for it in items(api, &path) {
            let name = it["metadata"]["name"].as_str().unwrap_or_default();
            // Leader-election objects of other components are not ours to count.
            if kind == "endpoints" && !name.starts_with("x-raven") {
                continue;
            }
            out.insert(
                format!("{kind}/{name}"),
                it["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    out
}

fn events(api: &KubeApiServer) -> Vec<(String, String)> {
    items(api, "/api/v1/namespaces/default/events")
        .iter()
        .map(|e| {
            (
                e["involvedObject"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                e["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn controller_domains_services_dns_and_restart() {
    let (api, kc) = setup(true);
    add_pool(&api, "cloud", "Cloud", true);
    add_pool(&api, "hz", "Edge", true);
    add_pool(&api, "sh", "Edge", false);
    add_node(
        &api,
        "cloud-1",
        Some("cloud"),
        "192.168.0.1",
        "10.244.1.0/24",
    );
    add_node(
        &api,
        "cloud-2",
        Some("cloud"),
        "192.168.0.2",
        "10.244.2.0/24",
    );
    add_node(&api, "edge-a1", Some("hz"), "192.168.1.1", "10.244.11.0/24");
    add_node(&api, "edge-a2", Some("hz"), "192.168.1.2", "10.244.12.0/24");
    add_node(&api, "edge-s1", Some("sh"), "192.168.2.1", "10.244.21.0/24");
    add_node(&api, "solo", None, "192.168.3.1", "10.244.31.0/24");
    // A user's Gateway and node: never taken over. The Gateway is also a bad object (an
    // unknown endpoint type, a malformed CIDR annotation): reported, worked around, no crash.
    let user_gw = json!({"apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
        "metadata": {"name": "gw-user",
            "annotations": {"raven.openyurt.io/extra-allowed-source-cidrs": "10.0.0.0/8,garbage"}},
        "spec": {"proxyConfig": {"Replicas": 0}, "tunnelConfig": {"Replicas": 1},
                 "endpoints": [{"nodeName": "user-1", "type": "tunnel", "port": 4500},
                               {"nodeName": "user-1", "type": "bogus", "port": 1}]}});
    api.admin("POST", GW, Some(&user_gw.to_string()))
        .expect("user gateway");
    add_node(&api, "user-1", None, "192.168.4.1", "10.244.41.0/24");
    api.admin(
        "PATCH",
        "/api/v1/nodes/user-1",
        Some(r#"{"metadata":{"labels":{"raven.openyurt.io/gateway":"gw-user"}}}"#),
    )
    .expect("label user node");
    let user_spec = get(&api, &format!("{GW}/gw-user")).expect("gw-user")["spec"].clone();

    let dir = api.dir().to_path_buf();
    let mut c1 = ControllerProcess::start(
        &kc,
        dir.join("controller-1.log"),
        &["--identity", "c1", "--leader-lease-seconds", "3"],
    )
    .expect("start controller");
    let t0 = std::time::Instant::now();
    wait_gateway(&api, "gw-cloud", &["cloud-1", "cloud-2"], both("cloud-1"));
    wait_gateway(&api, "gw-hz", &["edge-a1", "edge-a2"], both("edge-a1"));
    wait_gateway(&api, "gw-node-edge-s1", &["edge-s1"], both("edge-s1"));
    wait_gateway(&api, "gw-node-solo", &["solo"], both("solo"));
    wait_gateway(
        &api,
        "gw-user",
        &["user-1"],
        vec![("user-1".into(), "tunnel".into())],
    );
    eprintln!("initial convergence: {:?}", t0.elapsed());
    assert_eq!(
        managed_gateways(&api),
        strs(&["gw-cloud", "gw-hz", "gw-node-edge-s1", "gw-node-solo"])
    );
    for (node, gw) in [
        ("cloud-1", "gw-cloud"),
        ("cloud-2", "gw-cloud"),
        ("edge-a1", "gw-hz"),
        ("edge-a2", "gw-hz"),
        ("edge-s1", "gw-node-edge-s1"),
        ("solo", "gw-node-solo"),
        ("user-1", "gw-user"),
    ] {
        assert_eq!(node_label(&api, node).as_deref(), Some(gw), "{node}");
    }
    let cloud = get(&api, &format!("{GW}/gw-cloud")).expect("gw-cloud");
    assert_eq!(cloud["spec"]["exposeType"], "LoadBalancer");
    assert_eq!(cloud["status"]["nodes"][0]["privateIP"], "192.168.0.1");
    assert_eq!(
        cloud["status"]["nodes"][0]["subnets"],
        json!(["10.244.1.0/24"])
    );
    assert_eq!(
        get(&api, &format!("{GW}/gw-user")).expect("gw-user")["spec"],
        user_spec,
        "user gateway spec untouched"
    );
    // NodePool ownership: the connected Edge pool's Gateway is owned by its NodePool (so the
    // garbage collector deletes it with the pool); the cloud, solo and user Gateways are not.
    let hz_uid = get(&api, &format!("{NP}/hz")).expect("NodePool hz")["metadata"]["uid"].clone();
    assert!(hz_uid.is_string(), "{hz_uid}");
    let owners = |gw: &str| {
        get(&api, &format!("{GW}/{gw}")).expect(gw)["metadata"]["ownerReferences"].clone()
    };
    assert_eq!(
        owners("gw-hz"),
        json!([{"apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool", "name": "hz",
                "uid": hz_uid, "controller": true}])
    );
    for gw in ["gw-cloud", "gw-node-edge-s1", "gw-node-solo", "gw-user"] {
        assert_eq!(owners(gw), Value::Null, "{gw} has no owner");
    }

    // Public LB Services + Endpoints (same name) for each active endpoint of gw-cloud.
    let (svcs, _) = wait_for(T, "public services", || {
        let s: Vec<Value> = items(
            &api,
            &format!("{KS}/services?labelSelector=raven.openyurt.io/gateway%3Dgw-cloud"),
        );
        if s.len() == 2 {
            Ok(Some(s))
        } else {
            Err(format!("{} services", s.len()))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let mut kinds = Vec::new();
    for s in &svcs {
        let name = s["metadata"]["name"].as_str().expect("name").to_string();
        let ty = s["metadata"]["labels"]["raven.openyurt.io/gateway-type"]
            .as_str()
            .expect("type");
        assert!(
            name.starts_with(&format!("x-raven-{ty}-svc-gw-cloud-")),
            "{name}"
        );
        assert_eq!(s["spec"]["type"], "LoadBalancer");
        assert_eq!(
            s["metadata"]["labels"]["raven.openyurt.io/endpoints-name"],
            "cloud-1"
        );
        kinds.push(ty.to_string());
        let (eps, _) = wait_for(T, "public endpoints", || {
            Ok(get(&api, &format!("{KS}/endpoints/{name}")))
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(eps["subsets"][0]["addresses"][0]["ip"], "192.168.0.1");
    }
    kinds.sort();
    assert_eq!(kinds, strs(&["proxy", "tunnel"]));

    // Internal Service once the cloud Gateway lists proxy ports; DNS maps nodes to it.
    api.admin(
        "PATCH",
        &format!("{GW}/gw-cloud"),
        Some(r#"{"spec":{"proxyConfig":{"proxyHTTPPort":"10255","proxyHTTPSPort":"10250"}}}"#),
    )
    .expect("set proxy ports");
    let (internal, _) = wait_for(T, "internal service", || {
        Ok(get(
            &api,
            &format!("{KS}/services/x-raven-proxy-internal-svc"),
        ))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let ports: Vec<String> = internal["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}:{}->{}",
                p["name"].as_str().unwrap_or(""),
                p["port"],
                p["targetPort"]
            )
        })
        .collect();
    assert_eq!(
        ports,
        strs(&["http-10255:10255->10264", "https-10250:10250->10263"])
    );
    let cip = internal["spec"]["clusterIP"]
        .as_str()
        .expect("clusterIP")
        .to_string();
    wait_for(T, "internal endpoints", || {
        let e = get(&api, &format!("{KS}/endpoints/x-raven-proxy-internal-svc"));
        match e {
            Some(e) if e["subsets"][0]["addresses"][0]["ip"] == "192.168.0.1" => Ok(Some(())),
            other => Err(format!("{other:?}")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let mut names = strs(&[
        "cloud-1", "cloud-2", "edge-a1", "edge-a2", "edge-s1", "solo", "user-1",
    ]);
    names.sort();
    let want_dns = names
        .iter()
        .map(|n| format!("{cip}\t{n}"))
        .collect::<Vec<_>>()
        .join("\n");
    wait_for(T, "edge-tunnel-nodes", || {
        let cm = get(&api, &format!("{KS}/configmaps/edge-tunnel-nodes"));
        let got = cm
            .as_ref()
            .and_then(|c| c["data"]["tunnel-nodes"].as_str().map(String::from));
        if got.as_deref() == Some(want_dns.as_str()) {
            Ok(Some(()))
        } else {
            Err(format!("{got:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let ev = events(&api);
    assert!(
        ev.contains(&("gw-hz".to_string(), "ActiveEndpointElected".to_string())),
        "{ev:?}"
    );
    let bad: Vec<&(String, String)> = ev.iter().filter(|(_, r)| r == "InvalidGateway").collect();
    assert_eq!(
        bad,
        vec![&("gw-user".to_string(), "InvalidGateway".to_string())],
        "exactly one report for the bad Gateway"
    );
    let (note, _) = wait_for(T, "problems annotation on gw-user", || {
        let g = get(&api, &format!("{GW}/gw-user")).unwrap_or(Value::Null);
        match g["metadata"]["annotations"]["raven.openyurt.io/problems"].as_str() {
            Some(n) => Ok(Some(n.to_string())),
            None => Err(format!("{}", g["metadata"])),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        note.contains("\"bogus\"") && note.contains("garbage"),
        "both defects named: {note}"
    );
    let user = get(&api, &format!("{GW}/gw-user")).expect("gw-user");
    assert_eq!(
        user["status"]["nodes"][0]["subnets"],
        json!(["10.244.41.0/24"]),
        "bad CIDRs not published"
    );

    // Membership changes.
    add_node(&api, "edge-a3", Some("hz"), "192.168.1.3", "10.244.13.0/24");
    wait_label(&api, "edge-a3", Some("gw-hz"));
    wait_gateway(
        &api,
        "gw-hz",
        &["edge-a1", "edge-a2", "edge-a3"],
        both("edge-a1"),
    );
    // edge-a2 moves to sh (no inter-connectivity): a Gateway of its own.
    api.admin(
        "PATCH",
        "/api/v1/nodes/edge-a2",
        Some(r#"{"metadata":{"labels":{"apps.openyurt.io/nodepool":"sh"}}}"#),
    )
    .expect("move edge-a2");
    wait_label(&api, "edge-a2", Some("gw-node-edge-a2"));
    wait_gateway(&api, "gw-node-edge-a2", &["edge-a2"], both("edge-a2"));
    wait_gateway(&api, "gw-hz", &["edge-a1", "edge-a3"], both("edge-a1"));
    // edge-s1 leaves the cluster: its Gateway goes.
    api.admin("DELETE", "/api/v1/nodes/edge-s1", None)
        .expect("delete edge-s1");
    // Pool hz empties: its Gateway goes.
    api.admin("DELETE", "/api/v1/nodes/edge-a1", None)
        .expect("delete edge-a1");
    api.admin("DELETE", "/api/v1/nodes/edge-a3", None)
        .expect("delete edge-a3");
    // A new pool appears.
    add_pool(&api, "bj", "Edge", true);
    add_node(&api, "edge-b1", Some("bj"), "192.168.5.1", "10.244.51.0/24");
    wait_gateway(&api, "gw-bj", &["edge-b1"], both("edge-b1"));
    wait_for(T, "gateways after changes", || {
        let g = managed_gateways(&api);
        if g == strs(&["gw-bj", "gw-cloud", "gw-node-edge-a2", "gw-node-solo"]) {
            Ok(Some(()))
        } else {
            Err(format!("{g:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(c1.running(), "controller exited:\n{}", c1.log_text());

    // Restart: the new process writes nothing.
    std::thread::sleep(Duration::from_secs(2));
    let before = versions(&api);
    let events_before = events(&api).len();
    c1.stop();
    let c2 = ControllerProcess::start(
        &kc,
        dir.join("controller-2.log"),
        &["--identity", "c2", "--leader-lease-seconds", "3"],
    )
    .expect("restart controller");
    let took = wait_log(&c2, "pass done", Duration::from_secs(30));
    eprintln!("restarted controller finished its first pass after {took:?}");
    std::thread::sleep(Duration::from_secs(3));
    let after = versions(&api);
    let changed: Vec<&String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        changed.is_empty(),
        "restart wrote {changed:?}\n{}",
        c2.log_text()
    );
    assert_eq!(before.len(), after.len());
    assert_eq!(events(&api).len(), events_before, "restart emitted events");
    assert!(c2.log_text().contains("writes=0"), "{}", c2.log_text());

    // The user fixes gw-user: the problems annotation goes, and no new report is made.
    api.admin(
        "PATCH",
        &format!("{GW}/gw-user"),
        Some(
            &json!({"metadata": {"annotations": {"raven.openyurt.io/extra-allowed-source-cidrs": "10.0.0.0/8"}},
                "spec": {"endpoints": [{"nodeName": "user-1", "type": "tunnel", "port": 4500}]}})
            .to_string(),
        ),
    )
    .expect("fix gw-user");
    wait_for(T, "problems annotation removed", || {
        let g = get(&api, &format!("{GW}/gw-user")).unwrap_or(Value::Null);
        if g["metadata"]["annotations"]["raven.openyurt.io/problems"].is_null()
            && g["status"]["nodes"][0]["subnets"] == json!(["10.244.41.0/24", "10.0.0.0/8"])
        {
            Ok(Some(()))
        } else {
            Err(format!("{}", g["metadata"]))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let bad = events(&api)
        .into_iter()
        .filter(|(_, r)| r == "InvalidGateway")
        .count();
    assert_eq!(bad, 1, "fixing a Gateway is not reported as a defect");
}

/// RFC 3339 with microseconds, UTC, for `secs_from_now` from now.
fn micro_time(secs_from_now: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let total = i64::try_from(now.as_secs()).expect("secs") + secs_from_now;
    let (days, rem) = (total.div_euclid(86_400), total.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_micros()
    )
}

fn put_lease(api: &KubeApiServer, node: &str, duration: i32) -> SystemTime {
    let renewed = SystemTime::now();
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": format!("raven-node-{node}"), "namespace": "kube-system"},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": duration,
                 "renewTime": micro_time(0)}});
    api.admin("POST", LEASES, Some(&lease.to_string()))
        .expect("lease");
    renewed
}

fn holder(api: &KubeApiServer) -> Option<String> {
    get(api, &format!("{LEASES}/raven-controller"))
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
}

#[test]
fn controller_lease_failover_and_two_replicas() {
    // No NodePool CRD here: pools come from node labels alone.
    let (api, kc) = setup(false);
    add_node(&api, "edge-a1", Some("hz"), "192.168.1.1", "10.244.11.0/24");
    add_node(&api, "edge-a2", Some("hz"), "192.168.1.2", "10.244.12.0/24");
    put_lease(&api, "edge-a2", 3600);
    let dir = api.dir().to_path_buf();
    let args = |id: &'static str| ["--identity", id, "--leader-lease-seconds", "3"];
    let mut r1 = ControllerProcess::start(&kc, dir.join("r1.log"), &args("r1")).expect("r1");
    let mut r2 = ControllerProcess::start(&kc, dir.join("r2.log"), &args("r2")).expect("r2");
    wait_gateway(&api, "gw-hz", &["edge-a1", "edge-a2"], both("edge-a1"));
    // A label-only pool has no NodePool to be owned by.
    let gw = get(&api, &format!("{GW}/gw-hz")).expect("gw-hz");
    assert_eq!(gw["metadata"]["ownerReferences"], Value::Null, "{gw}");

    // Exactly one leader.
    let leader = holder(&api).expect("leader lease");
    let leaders = [&r1, &r2]
        .iter()
        .filter(|c| c.log_text().contains("became leader"))
        .count();
    assert_eq!(leaders, 1, "r1:\n{}\nr2:\n{}", r1.log_text(), r2.log_text());
    assert!(leader == "r1" || leader == "r2", "{leader}");
    // The metrics say the same: exactly one replica reports leading, the leader passed.
    let (lead, follow) = if leader == "r1" {
        (&r1, &r2)
    } else {
        (&r2, &r1)
    };
    assert_eq!(lead.metric("raven_controller_leader"), Some(1.0));
    assert_eq!(follow.metric("raven_controller_leader"), Some(0.0));
    assert!(
        lead.metric("raven_controller_passes_total").unwrap_or(0.0) >= 1.0,
        "{}",
        lead.metrics_text().unwrap_or_default()
    );

    // edge-a1's data plane stops renewing: its Lease expires while the Node stays Ready.
    let renewed = put_lease(&api, "edge-a1", 4);
    let expiry = renewed + Duration::from_secs(4);
    wait_gateway(&api, "gw-hz", &["edge-a1", "edge-a2"], both("edge-a2"));
    let failover = SystemTime::now().duration_since(expiry).unwrap_or_default();
    eprintln!("lease expiry -> new active endpoint in status: {failover:?}");
    assert!(failover <= Duration::from_secs(5), "{failover:?}");
    let node = get(&api, "/api/v1/nodes/edge-a1").expect("node");
    assert_eq!(node["status"]["conditions"][0]["status"], "True");
    let ev = events(&api);
    assert!(
        ev.contains(&("gw-hz".to_string(), "ActiveEndpointFailover".to_string())),
        "{ev:?}\nr1:\n{}\nr2:\n{}",
        r1.log_text(),
        r2.log_text()
    );

    // The leader goes away: the other replica takes over and keeps reconciling.
    let (dead, alive) = if leader == "r1" {
        (&mut r1, "r2")
    } else {
        (&mut r2, "r1")
    };
    dead.stop();
    let (_, took) = wait_for(Duration::from_secs(20), "takeover", || {
        let h = holder(&api);
        if h.as_deref() == Some(alive) {
            Ok(Some(()))
        } else {
            Err(format!("{h:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("takeover by {alive} after {took:?}");
    add_node(&api, "edge-a3", Some("hz"), "192.168.1.3", "10.244.13.0/24");
    wait_label(&api, "edge-a3", Some("gw-hz"));
}
