//! Benchmark of `raven-controller` on the real API server (issue 5): N nodes in P pools
//! (default 10 000 in 1 000). Measures, against kube-apiserver 1.20.2 + etcd on this machine:
//! - cold start: controller start → every Gateway has both active endpoints in status (seen
//!   through a watch on Gateways, so without polling delay or polling load);
//! - labels: controller start → the controller's label writes are done (seen in its log, then
//!   confirmed by the API: no Node lacks `raven.openyurt.io/gateway`); agents find their
//!   Gateway through it; written after the elections, so reported separately;
//! - controller RSS after cold start, its peak (`VmHWM`) and at steady state;
//! - writes at steady state over `RAVEN_BENCH_STEADY_SECS` (default 60, 3 resyncs);
//! - time from a seat holder's Lease expiry to the new active endpoint in status.
//!
//! Run (release controller, as root, with the cached test API server):
//! `cargo build --release -p raven-controller && cargo bench -p raven-tests --bench controller`
//! Knobs: `RAVEN_BENCH_NODES`, `RAVEN_BENCH_POOLS`, `RAVEN_BENCH_STEADY_SECS`,
//! `RAVEN_BENCH_CONCURRENCY` (the controller's `--concurrency`, else its default),
//! `RAVEN_CONTROLLER_BIN` (default: the release build in the target directory). Pools come
//! from node labels (no NodePool CRD). `RAVEN_BENCH_COLD_ONLY=1` stops after the cold start
//! (for sweeps); `RAVEN_BENCH_PPROF=FILE` (`_PPROF_SECS`, default 10) saves a CPU profile of
//! kube-apiserver taken from the controller's start (`go tool pprof -top FILE`). Objects are
//! loaded with one `curl --parallel` over keep-alive connections.
//! Any failure panics, so the process exits non-zero.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, SystemTime};

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
    let cfg_path = api.dir().join("bulk.curlrc");
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

/// Watches Gateways (one watch from the API server's watch cache) and notes the instant
/// every one of `want` Gateways has both endpoint types active in status. A watch sees each
/// status write as it is stored, so the measurement has no polling delay and adds no load to
/// the API server (polling lists of 1 000 Gateways every 0.5 s costs it about 0.1 core, on
/// the 2 cores everything here shares).
///
/// Keeping up with a burst of 300 events/s: kube-apiserver 1.20 gives a custom-resource
/// watcher 10 + 10 buffered events and closes it ("Forcing watcher close due to
/// unresponsiveness") when they stay full for its small time budget (≤ 100 ms, refilled
/// 50 ms a second), which happens whenever its goroutines get too little CPU on a loaded
/// machine, however fast the client reads. What the bench controls is the cost of each close:
/// - a closed watch resumes from the last resourceVersion seen (bookmarks on), as client-go
///   informers and kube-rs do: the watch cache replays only what was missed. Resuming from
///   resourceVersion 0 (the previous bench) re-sent all 1 000 Gateways each time. Only a
///   `410 Gone` (the cache no longer holds that version) starts over with a fresh list;
/// - it resumes on a kept-alive connection of its own client (kube-rs, HTTP/1.1 like the
///   controller), in its own thread: no new process and no TLS handshake per resume (the
///   previous bench started a new `curl` each time, ≈ 80 ms under load, and 20–30 resumes
///   put up to 3 s between the last status write and the bench seeing it).
struct ElectedWatch {
    state: std::sync::Arc<std::sync::Mutex<WatchState>>,
}

#[derive(Default)]
struct WatchState {
    elected: std::collections::HashMap<String, bool>,
    all_at: Option<std::time::Instant>,
    error: Option<String>,
    stop: bool,
    /// Watches that ended (the API server closes a watcher that falls behind a burst of
    /// events, e.g. on a loaded machine); each is resumed from the last resourceVersion.
    restarts: usize,
    /// Of those, the ones that had to list again (`410 Gone`).
    relists: usize,
}

impl ElectedWatch {
    fn start(api: &KubeApiServer, want: usize) -> ElectedWatch {
        let kc = api
            .kubeconfig("bench-admin", ADMIN_TOKEN)
            .expect("kubeconfig");
        let state = std::sync::Arc::new(std::sync::Mutex::new(WatchState::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(Self::run(kc, want, st));
        });
        ElectedWatch { state }
    }

    async fn run(
        kubeconfig: std::path::PathBuf,
        want: usize,
        st: std::sync::Arc<std::sync::Mutex<WatchState>>,
    ) {
        use futures::StreamExt;
        use kube::api::{
            Api, ApiResource, DynamicObject, GroupVersionKind, WatchEvent, WatchParams,
        };
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig).expect("read kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("client config");
        let client = kube::Client::try_from(cfg).expect("client");
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "raven.openyurt.io",
            "v1beta1",
            "Gateway",
        ));
        let api: Api<DynamicObject> = Api::all_with(client, &ar);
        let mut rv = "0".to_owned();
        let mut failed_starts = 0;
        loop {
            if st.lock().expect("lock").stop {
                return;
            }
            let stream = match api.watch(&WatchParams::default(), &rv).await {
                Ok(s) => s,
                // A loaded API server may refuse one; five in a row is a broken bench.
                Err(e) if failed_starts < 5 => {
                    failed_starts += 1;
                    eprintln!("gateway watch did not start ({e}); retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => {
                    st.lock().expect("lock").error = Some(format!("start watch: {e}"));
                    return;
                }
            };
            failed_starts = 0;
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                let at = std::time::Instant::now();
                let mut s = st.lock().expect("lock");
                if s.stop {
                    return;
                }
                let ev = match ev {
                    Ok(ev) => ev,
                    // A broken stream is resumed like a closed one.
                    Err(_) => break,
                };
                match ev {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                        rv = o.metadata.resource_version.clone().unwrap_or(rv);
                        let done = o.data["status"]["activeEndpoints"]
                            .as_array()
                            .is_some_and(|a| a.len() == 2);
                        s.elected.insert(o.metadata.name.unwrap_or_default(), done);
                    }
                    WatchEvent::Deleted(o) => {
                        rv = o.metadata.resource_version.clone().unwrap_or(rv);
                        s.elected
                            .remove(o.metadata.name.as_deref().unwrap_or_default());
                    }
                    WatchEvent::Bookmark(b) => rv = b.metadata.resource_version,
                    WatchEvent::Error(e) if e.code == 410 => {
                        // Too old to resume: list again from scratch.
                        rv = "0".to_owned();
                        s.elected.clear();
                        s.relists += 1;
                        break;
                    }
                    WatchEvent::Error(e) => s.error = Some(format!("watch error: {e:?}")),
                }
                if s.all_at.is_none() && s.elected.len() == want && s.elected.values().all(|d| *d) {
                    s.all_at = Some(at);
                }
            }
            st.lock().expect("lock").restarts += 1;
        }
    }

    /// (Gateways seen, Gateways elected, the instant all were elected, a watch error).
    fn progress(&self) -> (usize, usize, Option<std::time::Instant>, Option<String>) {
        let s = self.state.lock().expect("lock");
        let done = s.elected.values().filter(|d| **d).count();
        (s.elected.len(), done, s.all_at, s.error.clone())
    }

    /// (watches resumed, of which re-listed).
    fn restarts(&self) -> (usize, usize) {
        let s = self.state.lock().expect("lock");
        (s.restarts, s.relists)
    }
}

impl Drop for ElectedWatch {
    fn drop(&mut self) {
        // The watch thread stops at its next event (or with the process).
        self.state.lock().expect("lock").stop = true;
    }
}

/// Watchers the API server closed for being slow so far, by object type (from its `--v=1`
/// log): the bench's Gateway watch and the controller's own watches alike.
fn watcher_closes(api: &KubeApiServer) -> String {
    let log = std::fs::read_to_string(api.dir().join("apiserver.log")).unwrap_or_default();
    let mut by_type: std::collections::BTreeMap<&str, usize> = Default::default();
    for l in log.lines() {
        if let Some(t) = l
            .split("Forcing watcher close due to unresponsiveness: ")
            .nth(1)
        {
            *by_type.entry(t.trim()).or_default() += 1;
        }
    }
    if by_type.is_empty() {
        return "none".into();
    }
    by_type
        .iter()
        .map(|(t, n)| format!("{n} {t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Nodes without the gateway label (one list, checked once the controller says it is done:
/// polling 10k Nodes would load the API server during the measurement).
fn unlabelled_nodes(api: &KubeApiServer) -> usize {
    let l = api
        .get_json("/api/v1/nodes?labelSelector=%21raven.openyurt.io%2Fgateway")
        .expect("list nodes")
        .unwrap_or(Value::Null);
    l["items"].as_array().map_or(usize::MAX, Vec::len)
}

fn total_writes(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| l.split("total_writes=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .next_back()
        .unwrap_or(0)
}

fn now_micro() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%6NZ"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Seconds since midnight UTC of an RFC 3339 UTC timestamp (`2025-01-01T12:34:56.789Z`, the
/// start of a controller log line); `None` for anything else.
fn secs_of_day(ts: &str) -> Option<f64> {
    let t = ts.split_once('T')?.1.trim_end_matches('Z');
    let mut it = t.split(':');
    let h: f64 = it.next()?.parse().ok()?;
    let m: f64 = it.next()?.parse().ok()?;
    let s: f64 = it.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The controller's start-up and write phases as offsets from `start` (its launch): where
/// the cold start goes.
fn timeline(log: &str, start: &str) {
    let Some(t0) = secs_of_day(start) else {
        return;
    };
    let keys = [
        "caches ready",
        "became leader",
        "NodePool API",
        "writes applied",
        "pass done",
    ];
    for l in log
        .lines()
        .filter(|l| keys.iter().any(|k| l.contains(k)))
        .take(24)
    {
        let Some(t) = l.split_whitespace().next().and_then(secs_of_day) else {
            continue;
        };
        let rel = (t - t0).rem_euclid(86_400.0);
        let msg = l.split_once(": ").map_or(l, |(_, m)| m);
        eprintln!("BENCH timeline +{rel:6.2}s {msg}");
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let bin = std::env::var_os("RAVEN_CONTROLLER_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| raven_tests::paths::target_dir().join("release/raven-controller"));
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --release -p raven-controller` first (or set RAVEN_CONTROLLER_BIN)",
        bin.display()
    );
    eprintln!("controller binary: {}", bin.display());
    let nodes = env_num("RAVEN_BENCH_NODES", 10_000);
    let pools = env_num("RAVEN_BENCH_POOLS", 1_000).clamp(1, nodes);
    let steady = Duration::from_secs(env_num("RAVEN_BENCH_STEADY_SECS", 60) as u64);
    // The controller's own default unless set (so an A/B of binaries compares defaults).
    let concurrency = std::env::var("RAVEN_BENCH_CONCURRENCY").ok();
    let user = TestUser {
        name: "system:serviceaccount:kube-system:raven-controller".into(),
        token: "raven-controller-token".into(),
        groups: vec!["system:serviceaccounts".into()],
    };
    let api = KubeApiServer::start_with_users(std::slice::from_ref(&user))
        .unwrap_or_else(|e| panic!("cannot start the test API server: {e}"));
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    api.install_gateway_api()
        .expect("Gateway CRD and raven-cfg");
    api.apply_dir(&repo.join("deploy/rbac")).expect("RBAC");

    let t = std::time::Instant::now();
    let bodies: Vec<String> = (0..nodes).map(|i| node_body(i, pools)).collect();
    bulk_post(&api, "/api/v1/nodes", &bodies);
    eprintln!("loaded {nodes} nodes in {pools} pools in {:?}", t.elapsed());

    let kc = api
        .kubeconfig("raven-controller", &user.token)
        .expect("kubeconfig");
    eprintln!(
        "BENCH load average before the controller starts: {}",
        loadavg()
    );
    let (api_cpu0, etcd_cpu0) = api.cpu_secs();
    let watch = ElectedWatch::start(&api, pools);
    // Optional CPU profile of kube-apiserver over the cold start (Go pprof format; read with
    // `go tool pprof -top FILE`): where the API server spends its time.
    let pprof = std::env::var_os("RAVEN_BENCH_PPROF").map(|out| {
        let secs = env_num("RAVEN_BENCH_PPROF_SECS", 10);
        Command::new("curl")
            .args(["-sS", "-k", "-o"])
            .arg(&out)
            .arg("-H")
            .arg(format!("Authorization: Bearer {ADMIN_TOKEN}"))
            .arg(format!("{}/debug/pprof/profile?seconds={secs}", api.url))
            .spawn()
            .expect("start pprof curl")
    });
    let started_at = now_micro();
    let launched = std::time::Instant::now();
    let mut args = vec!["--identity", "bench", "--resync-seconds", "20"];
    if let Some(c) = &concurrency {
        args.extend(["--concurrency", c.as_str()]);
    }
    eprintln!("controller arguments: {}", args.join(" "));
    let mut c = ControllerProcess::start_bin(&bin, &kc, api.dir().join("bench.log"), &args)
        .expect("start controller");
    let (all_at, _) = wait_for(Duration::from_secs(300), "every gateway elected", || {
        std::thread::sleep(Duration::from_millis(50));
        match watch.progress() {
            (_, _, _, Some(e)) => panic!("gateway watch: {e}"),
            (_, _, Some(at), _) => Ok(Some(at)),
            (total, done, None, _) => Err(format!("{done}/{total} elected")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.log_text()));
    let cold = all_at.duration_since(launched);
    let (restarts, relists) = watch.restarts();
    eprintln!(
        "BENCH gateway watch resumed {restarts} times during cold start ({relists} re-lists)"
    );
    eprintln!("BENCH cold start: {pools} gateways elected {cold:?} after controller start");
    let rss_cold = c.rss_kib().unwrap_or(0);
    let (api_cpu1, etcd_cpu1) = api.cpu_secs();
    let cpu = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.1} s", b - a),
        _ => "?".into(),
    };
    eprintln!(
        "BENCH CPU during cold start: controller {}, kube-apiserver {}, etcd {}; load average {}",
        c.cpu_secs().map_or("?".into(), |s| format!("{s:.1} s")),
        cpu(api_cpu0, api_cpu1),
        cpu(etcd_cpu0, etcd_cpu1),
        loadavg()
    );
    if let Some(mut p) = pprof {
        let _ = p.wait();
    }
    if std::env::var_os("RAVEN_BENCH_COLD_ONLY").is_some() {
        // Sweeps: only the cold start; the controller's timeline up to now and stop. The
        // API server's log is flushed every 5 s.
        std::thread::sleep(Duration::from_secs(6));
        eprintln!(
            "BENCH API server watcher closes (slow consumers) during the cold start: {}",
            watcher_closes(&api)
        );
        timeline(&c.log_text(), &started_at);
        eprintln!("BENCH load average at the end: {}", loadavg());
        return;
    }
    // Labels: the controller logs when its label group is done (cheap to watch); the API
    // then confirms that no Node lacks the label.
    wait_for(Duration::from_secs(300), "node label writes done", || {
        if c.log_text().contains("group=\"node labels\"") {
            Ok(Some(()))
        } else {
            Err("label writes running".into())
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.log_text()));
    let labelled = launched.elapsed();
    let missing = unlabelled_nodes(&api);
    assert_eq!(missing, 0, "nodes left unlabelled");
    eprintln!(
        "BENCH labels: all {nodes} nodes labelled {:?} after controller start",
        labelled
    );

    // Steady state: let a pass settle, then count writes (resync every 20 s).
    std::thread::sleep(Duration::from_secs(5));
    let w0 = total_writes(&c.log_text());
    std::thread::sleep(steady);
    let w1 = total_writes(&c.log_text());
    let rss = c.rss_kib().unwrap_or(0);
    let peak = c.peak_rss_kib().unwrap_or(0);
    eprintln!(
        "BENCH steady state: {} writes in {steady:?}",
        w1.saturating_sub(w0)
    );
    eprintln!(
        "BENCH RSS: {} MiB after cold start, {} MiB at steady state, peak {} MiB",
        rss_cold / 1024,
        rss / 1024,
        peak / 1024
    );

    // Lease expiry of an active endpoint under load.
    let probe = format!("{GW}/gw-p{:04}", 7 % pools);
    let gw = api.get_json(&probe).expect("get").expect("probe gateway");
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
            .get_json(&probe)
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
    eprintln!(
        "BENCH API server watcher closes (slow consumers) over the whole run: {}",
        watcher_closes(&api)
    );
    timeline(&c.log_text(), &started_at);
    eprintln!("BENCH load average at the end: {}", loadavg());
}
