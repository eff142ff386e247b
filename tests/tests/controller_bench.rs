//! Benchmark of `raven-controller` on the real API server (issue 5): N nodes in P pools
//! (default 10 000 in 1 000), cold start until every Gateway has elected, controller RSS,
//! writes per minute at steady state, and Lease expiry → new active endpoint in status.
//!
//! Opt-in (`--ignored`) because it takes minutes; reproduce with
//! `cargo build --release -p raven-controller && RAVEN_CONTROLLER_BIN=$CARGO_TARGET_DIR/release/raven-controller
//!  cargo test -p raven-tests --test controller_bench -- --ignored --nocapture`
//! (`RAVEN_BENCH_NODES` / `RAVEN_BENCH_POOLS` scale it). Pools come from node labels (no
//! NodePool CRD). Objects are loaded with one `curl --parallel` over keep-alive connections.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use raven_tests::kube::{ADMIN_TOKEN, ControllerProcess, KubeApiServer, TestUser, wait_for};
use serde_json::{Value, json};

const GW: &str = "/apis/raven.openyurt.io/v1beta1/gateways";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// POSTs every body to `path` with one curl process (keep-alive, 16 in flight); panics unless
/// every answer is 201.
fn bulk_post(api: &KubeApiServer, path: &str, bodies: &[String]) {
    let dir = api.dir();
    let cfg_path = dir.join("bulk.curlrc");
    let mut cfg = String::new();
    for (i, b) in bodies.iter().enumerate() {
        if i > 0 {
            cfg.push_str("next\n");
        }
        let escaped = b.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = write!(
            cfg,
            "url = \"{}{path}\"\nrequest = \"POST\"\ninsecure\nheader = \"Authorization: Bearer {ADMIN_TOKEN}\"\n\
             header = \"Content-Type: application/json\"\ndata = \"{escaped}\"\noutput = \"/dev/null\"\n\
             write-out = \"%{{http_code}}\\n\"\n",
            api.url
        );
    }
    std::fs::write(&cfg_path, cfg).expect("write curl config");
    let out = Command::new("curl")
        .args(["-sS", "--parallel", "--parallel-max", "16", "-K"])
        .arg(&cfg_path)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let bad: Vec<&str> = text.lines().filter(|l| l.trim() != "201").collect();
    assert!(
        bad.is_empty() && text.lines().count() == bodies.len(),
        "{} of {} POSTs failed: {:?} {}",
        bad.len(),
        bodies.len(),
        &bad[..bad.len().min(5)],
        String::from_utf8_lossy(&out.stderr)
    );
}

fn node_body(i: usize, pools: usize) -> String {
    let (a, b) = (i / 250, i % 250);
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("n{i:05}"),
                     "labels": {"apps.openyurt.io/nodepool": format!("p{:04}", i % pools)}},
        "spec": {"podCIDR": format!("10.{}.{}.0/24", 100 + a, b)},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "Bench",
                "lastHeartbeatTime": "2025-01-01T00:00:00Z", "lastTransitionTime": "2025-01-01T00:00:00Z"}],
            "addresses": [{"type": "InternalIP", "address": format!("172.16.{a}.{}", b + 1)}]}})
    .to_string()
}

fn elected(api: &KubeApiServer) -> (usize, usize) {
    let list = api.get_json(GW).expect("list").unwrap_or(Value::Null);
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let done = items
        .iter()
        .filter(|g| {
            g["status"]["activeEndpoints"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
        })
        .count();
    (items.len(), done)
}

fn total_writes(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| l.split("total_writes=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .next_back()
        .unwrap_or(0)
}

#[test]
#[ignore = "benchmark: minutes of load; run with --ignored (see the module docs)"]
fn bench_controller_at_scale() {
    let nodes = env_num("RAVEN_BENCH_NODES", 10_000);
    let pools = env_num("RAVEN_BENCH_POOLS", 1_000).clamp(1, nodes);
    let user = TestUser {
        name: "system:serviceaccount:kube-system:raven-controller".into(),
        token: "raven-controller-token".into(),
        groups: vec!["system:serviceaccounts".into()],
    };
    let api = KubeApiServer::start_with_users(std::slice::from_ref(&user))
        .unwrap_or_else(|e| panic!("cannot start the test API server: {e}"));
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let crd = std::fs::read_to_string(repo.join("deploy/crds/raven.openyurt.io_gateways.yaml"))
        .expect("CRD");
    api.create_crd(&crd).expect("create CRD");
    api.apply_dir(&repo.join("deploy/rbac")).expect("RBAC");
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "raven-cfg", "namespace": "kube-system"},
        "data": {"enable-l7-proxy": "true", "enable-l3-tunnel": "true"}});
    api.admin(
        "POST",
        "/api/v1/namespaces/kube-system/configmaps",
        Some(&cfg.to_string()),
    )
    .expect("raven-cfg");

    let t = Instant::now();
    let bodies: Vec<String> = (0..nodes).map(|i| node_body(i, pools)).collect();
    bulk_post(&api, "/api/v1/nodes", &bodies);
    eprintln!("loaded {nodes} nodes in {pools} pools in {:?}", t.elapsed());

    let kc = api
        .kubeconfig("raven-controller", &user.token)
        .expect("kubeconfig");
    let mut c = ControllerProcess::start(
        &kc,
        api.dir().join("bench.log"),
        &["--identity", "bench", "--resync-seconds", "20"],
    )
    .expect("start controller");
    let start = Instant::now();
    let (_, cold) = wait_for(Duration::from_secs(300), "every gateway elected", || {
        let (total, done) = elected(&api);
        if total == pools && done == pools {
            Ok(Some(()))
        } else {
            Err(format!("{done}/{total} elected"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.log_text()));
    let _ = start;
    eprintln!("BENCH cold start: {pools} gateways elected {cold:?} after controller start");
    let rss_cold = c.rss_kib().unwrap_or(0);

    // Steady state: let a pass settle, then count writes over 60 s (3 resyncs).
    std::thread::sleep(Duration::from_secs(5));
    let w0 = total_writes(&c.log_text());
    std::thread::sleep(Duration::from_secs(60));
    let w1 = total_writes(&c.log_text());
    let rss = c.rss_kib().unwrap_or(0);
    eprintln!(
        "BENCH steady state: {} writes in 60 s",
        w1.saturating_sub(w0)
    );
    eprintln!(
        "BENCH RSS: {} MiB after cold start, {} MiB at steady state",
        rss_cold / 1024,
        rss / 1024
    );

    // Lease expiry of an active endpoint under load.
    let gw = api
        .get_json(&format!("{GW}/gw-p0007"))
        .expect("get")
        .expect("gw-p0007");
    let holder = gw["status"]["activeEndpoints"][0]["nodeName"]
        .as_str()
        .expect("active")
        .to_string();
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": format!("raven-node-{holder}"), "namespace": "kube-system"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 3,
                 "renewTime": now_micro()}});
    let renewed = SystemTime::now();
    api.admin(
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
        Some(&lease.to_string()),
    )
    .expect("lease");
    let expiry = renewed + Duration::from_secs(3);
    wait_for(Duration::from_secs(30), "failover", || {
        let g = api
            .get_json(&format!("{GW}/gw-p0007"))
            .map_err(|e| e.to_string())?
            .unwrap_or(Value::Null);
        let now = g["status"]["activeEndpoints"][0]["nodeName"]
            .as_str()
            .unwrap_or("");
        if !now.is_empty() && now != holder {
            Ok(Some(()))
        } else {
            Err(now.to_string())
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let failover = SystemTime::now().duration_since(expiry).unwrap_or_default();
    eprintln!("BENCH lease expiry -> new active endpoint in status: {failover:?}");
    assert!(c.running(), "controller exited:\n{}", c.log_text());
    for l in c
        .log_text()
        .lines()
        .filter(|l| l.contains("pass done"))
        .take(8)
    {
        eprintln!("BENCH log: {l}");
    }
}

fn now_micro() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%6NZ"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
