//! Conformance of `raven-cni` in a Flannel-equivalent chain, driven through the real libcni.
//!
//! Chain: Debian `bridge` + `host-local` (configured like Flannel's generated delegate), Debian
//! `portmap`, then `raven-cni`, run by `raven-cnitool` inside a "node" netns; pods are their own
//! netns. Assertions read kernel state (`ip -j route` in the pod), the final result JSON and the
//! attachment records. Needs root, the release `raven-cni` and `raven-cnitool`
//! (`sudo tests/run.sh` provides all three).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use raven_api::nodestate::RAVEN_ROUTE_PROTOCOL;
use raven_tests::cni_env::CniError;
use raven_tests::kernel::{self, Route};
use raven_tests::nodestate::{now_secs, state};
use raven_tests::plugin::CniCall;
use raven_tests::{CniEnv, CniEnvBuilder, Pod, paths, require_root};
use serde_json::{Value, json};

/// Remote prefixes published in the node state: two IPv4 (installed in an IPv4 pod) and one
/// IPv6 (must not be installed: wrong family).
const REMOTE: [&str; 3] = ["10.245.0.0/24", "10.246.0.0/16", "fd00:245::/64"];
const REMOTE_V4: [&str; 2] = ["10.245.0.0/24", "10.246.0.0/16"];
const GATEWAY: &str = "10.244.1.1";
const MTU: u32 = 1400;
const GENERATION: u64 = 7;
/// libcni's "first plugin error" code for CHECK failures reported by raven-cni.
const CHECK_FAILED: u32 = 100;

/// Instantiates a `fn(&str)` test body once per listed spec version.
macro_rules! per_version {
    ($body:ident: $($test:ident => $version:literal),+ $(,)?) => {
        mod $body {
            $(
                #[test]
                fn $test() {
                    super::$body($version);
                }
            )+
        }
    };
}

fn builder(version: &str) -> CniEnvBuilder {
    require_root();
    CniEnv::builder(version)
}

fn lab(version: &str) -> CniEnv {
    builder(version).build().expect("building the lab")
}

fn publish(env: &CniEnv, generation: u64, prefixes: &[&str], mtu: u32) {
    let s = state(generation, prefixes, mtu).expect("state");
    env.publish_state(&s).expect("publish node state");
}

fn add_ok(env: &CniEnv, pod: &Pod) -> Value {
    env.add(pod)
        .expect("run ADD")
        .ok()
        .expect("ADD")
        .json()
        .expect("ADD result JSON")
}

fn del_ok(env: &CniEnv, pod: &Pod) {
    env.del(pod).expect("run DEL").ok().expect("DEL");
}

fn error_of(out: raven_tests::Result<raven_tests::CniOutput>) -> CniError {
    out.expect("run").cni_error().expect("CNI error JSON")
}

/// Routes carrying Raven's protocol number in the pod, both families.
fn raven_routes(pod: &Pod) -> Vec<Route> {
    let mut all = kernel::routes(&pod.netns, "-4").expect("ipv4 routes");
    all.extend(kernel::routes(&pod.netns, "-6").expect("ipv6 routes"));
    all.into_iter()
        .filter(|r| r.protocol_number() == Some(u32::from(RAVEN_ROUTE_PROTOCOL)))
        .collect()
}

/// Exactly one route per expected prefix, via the gateway, on the pod interface, with mtu/advmss.
fn assert_raven_routes(pod: &Pod, prefixes: &[&str], mtu: u32) {
    let routes = raven_routes(pod);
    let got: BTreeSet<&str> = routes.iter().map(|r| r.dst.as_str()).collect();
    let want: BTreeSet<&str> = prefixes.iter().copied().collect();
    assert_eq!(got, want, "raven routes in the pod: {routes:#?}");
    assert_eq!(
        routes.len(),
        prefixes.len(),
        "duplicate routes: {routes:#?}"
    );
    for r in &routes {
        assert_eq!(r.gateway.as_deref(), Some(GATEWAY), "{r:?}");
        assert_eq!(r.dev.as_deref(), Some(pod.ifname.as_str()), "{r:?}");
        assert_eq!(r.mtu(), Some(mtu), "{r:?}");
        assert_eq!(r.advmss(), Some(mtu - 40), "{r:?}");
    }
}

/// The pod's IPv4 address with prefix length, read from the kernel.
fn pod_address(pod: &Pod) -> String {
    let out = pod
        .netns
        .exec(&["ip", "-j", "-4", "addr", "show", "dev", &pod.ifname])
        .expect("ip addr");
    let v: Value = serde_json::from_str(&out).expect("ip -j addr");
    let info = &v[0]["addr_info"][0];
    format!(
        "{}/{}",
        info["local"].as_str().expect("local"),
        info["prefixlen"]
    )
}

/// The final result equals what bridge returned: the Flannel shape, nothing added by us.
fn assert_bridge_result(result: &Value, version: &str, pod: &Pod) {
    assert_eq!(result["cniVersion"], version, "{result:#}");
    let keys: BTreeSet<&str> = result
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let allowed: BTreeSet<&str> = ["cniVersion", "interfaces", "ips", "routes", "dns"].into();
    assert!(keys.is_subset(&allowed), "unexpected result keys {keys:?}");
    let ifaces = result["interfaces"].as_array().expect("interfaces");
    let names: Vec<&str> = ifaces
        .iter()
        .map(|i| i["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names.len(), 3, "{result:#}");
    assert_eq!((names[0], names[2]), ("cni0", "eth0"), "{result:#}");
    assert!(names[1].starts_with("veth"), "{result:#}");
    assert_eq!(ifaces[2]["sandbox"], pod.netns.path_str());
    let ips = result["ips"].as_array().expect("ips");
    assert_eq!(ips.len(), 1, "{result:#}");
    assert_eq!(ips[0]["address"], pod_address(pod));
    assert_eq!(ips[0]["gateway"], GATEWAY);
    assert_eq!(ips[0]["interface"], 2);
    if version.starts_with("0.") {
        assert_eq!(ips[0]["version"], "4", "0.x results carry ips[].version");
    } else {
        assert!(
            ips[0].get("version").is_none(),
            "1.x results have no ips[].version"
        );
    }
    let expected_routes = json!([{"dst": "10.244.0.0/16"}, {"dst": "0.0.0.0/0", "gw": GATEWAY}]);
    assert_eq!(
        result["routes"], expected_routes,
        "routes must be bridge's, unchanged"
    );
}

/// The record describes the attachment as the contract says.
fn assert_record(
    env: &CniEnv,
    pod: &Pod,
    result: &Value,
    generation: Option<u64>,
    routes: &[&str],
) {
    let record = env
        .read_record(pod)
        .expect("read record")
        .unwrap_or_else(|| panic!("no record at {}", env.record_path(pod).display()));
    assert_eq!(record["network"], env.spec().network);
    assert_eq!(record["containerId"], pod.container_id);
    assert_eq!(record["ifname"], pod.ifname);
    assert_eq!(record["netns"], pod.netns.path_str());
    assert_eq!(record["podIps"], json!([result["ips"][0]["address"]]));
    assert_eq!(record["gateways"], json!([GATEWAY]));
    assert_eq!(record["podName"], pod.name);
    assert_eq!(record["podNamespace"], pod.namespace);
    assert_eq!(record["generation"], json!(generation));
    let got: BTreeSet<&str> = record["routes"]
        .as_array()
        .expect("routes array")
        .iter()
        .map(|r| r.as_str().expect("route string"))
        .collect();
    assert_eq!(
        got,
        routes.iter().copied().collect::<BTreeSet<_>>(),
        "{record:#}"
    );
    if generation.is_some() {
        assert_eq!(record["mtu"], MTU, "{record:#}");
    }
}

fn assert_attachment_gone(env: &CniEnv, pod: &Pod) {
    assert!(!env.record_path(pod).exists(), "record left behind");
    assert!(!env.lock_path(pod).exists(), "lock file left behind");
}

/// Nothing of any attachment is left: records, locks, reservations, veths, cache.
fn assert_nothing_left(env: &CniEnv) {
    assert_eq!(
        env.raven_files().expect("raven files"),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(env.ipam_reservations().expect("ipam"), Vec::<String>::new());
    assert_eq!(
        env.cache_entries().expect("cache"),
        Vec::<std::path::PathBuf>::new()
    );
    // Host veths of deleted pod namespaces disappear asynchronously (netns cleanup runs in a
    // kernel workqueue), so give them a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let veths = env.node_veths().expect("veths");
        if veths.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "veths left on the node: {veths:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// ADD

fn add_installs_routes_and_passes_result_through(version: &str) {
    let env = lab(version);
    publish(&env, GENERATION, &REMOTE, MTU);
    let pod = env.new_pod("web").expect("pod");
    let result = add_ok(&env, &pod);

    assert_bridge_result(&result, version, &pod);
    assert_raven_routes(&pod, &REMOTE_V4, MTU);
    assert_record(&env, &pod, &result, Some(GENERATION), &REMOTE_V4);

    del_ok(&env, &pod);
    assert_attachment_gone(&env, &pod);
    assert_nothing_left(&env);
}
per_version!(add_installs_routes_and_passes_result_through:
    v0_3_1 => "0.3.1", v0_4_0 => "0.4.0", v1_0_0 => "1.0.0", v1_1_0 => "1.1.0");

fn add_without_node_state_succeeds_without_routes(version: &str) {
    let env = lab(version);
    let pod = env.new_pod("early").expect("pod");
    let result = add_ok(&env, &pod);
    assert_bridge_result(&result, version, &pod);
    assert!(raven_routes(&pod).is_empty(), "{:#?}", raven_routes(&pod));
    assert_record(&env, &pod, &result, None, &[]);
    del_ok(&env, &pod);
    assert_nothing_left(&env);
}
per_version!(add_without_node_state_succeeds_without_routes:
    v0_3_1 => "0.3.1", v1_0_0 => "1.0.0", v1_1_0 => "1.1.0");

fn foreign_routes_are_untouched(version: &str) {
    let env = lab(version);
    publish(&env, GENERATION, &REMOTE, MTU);
    let pod = env.new_pod("mixed").expect("pod");
    // A second link with a foreign route before ADD, and foreign routes on eth0 after it.
    pod.netns
        .exec(&[
            "ip", "link", "add", "side0", "type", "veth", "peer", "name", "side1",
        ])
        .expect("side veth");
    pod.netns
        .exec(&["ip", "link", "set", "side0", "up"])
        .expect("up");
    pod.netns
        .exec(&["ip", "addr", "add", "192.168.77.1/24", "dev", "side0"])
        .expect("addr");
    pod.netns
        .exec(&[
            "ip",
            "route",
            "add",
            "10.99.0.0/16",
            "via",
            "192.168.77.2",
            "proto",
            "static",
        ])
        .expect("foreign route");
    add_ok(&env, &pod);
    pod.netns
        .exec(&[
            "ip",
            "route",
            "add",
            "10.98.0.0/16",
            "via",
            GATEWAY,
            "dev",
            "eth0",
            "proto",
            "static",
            "mtu",
            "1300",
        ])
        .expect("foreign route on eth0");
    let foreign_before = foreign_routes(&pod);
    assert_eq!(foreign_before.len(), 2, "{foreign_before:#?}");

    // DEL of raven-cni alone: our routes go, everything else stays exactly as it was.
    env.pod_op(
        "del",
        &pod,
        &pod.netns.path_str(),
        &["--only-types", "raven-cni"],
    )
    .expect("run")
    .ok()
    .expect("raven-only DEL");
    assert!(raven_routes(&pod).is_empty(), "{:#?}", raven_routes(&pod));
    assert_eq!(foreign_routes(&pod), foreign_before);
    assert_attachment_gone(&env, &pod);
    del_ok(&env, &pod);
}
per_version!(foreign_routes_are_untouched: v0_3_1 => "0.3.1", v1_0_0 => "1.0.0", v1_1_0 => "1.1.0");

fn foreign_routes(pod: &Pod) -> Vec<Route> {
    kernel::routes(&pod.netns, "-4")
        .expect("routes")
        .into_iter()
        .filter(|r| r.dst == "10.99.0.0/16" || r.dst == "10.98.0.0/16")
        .collect()
}

fn add_after_failed_add(version: &str) {
    let env = lab(version);
    env.write_state_raw(b"{ this is not a node state")
        .expect("corrupt state");
    let pod = env.new_pod("retry").expect("pod");
    let err = error_of(env.add(&pod));
    assert_ne!(err.code, 0, "{err:?}");
    assert!(
        raven_routes(&pod).is_empty(),
        "half-applied: {:#?}",
        raven_routes(&pod)
    );

    // The runtime's DEL after a failed ADD (libcni cached nothing: no prevResult).
    del_ok(&env, &pod);
    assert_attachment_gone(&env, &pod);

    publish(&env, GENERATION, &REMOTE, MTU);
    let result = add_ok(&env, &pod);
    assert_raven_routes(&pod, &REMOTE_V4, MTU);
    assert_record(&env, &pod, &result, Some(GENERATION), &REMOTE_V4);
    del_ok(&env, &pod);
    assert_nothing_left(&env);
}
per_version!(add_after_failed_add: v0_3_1 => "0.3.1", v1_0_0 => "1.0.0", v1_1_0 => "1.1.0");

fn unknown_plugin_key_is_code_2(version: &str) {
    let env = builder(version)
        .raven_key("surpriseKey", json!(true))
        .build()
        .expect("lab");
    let pod = env.new_pod("cfg").expect("pod");
    let err = error_of(env.add(&pod));
    assert_eq!(err.code, 2, "{err:?}");
    assert!(
        format!("{} {}", err.msg, err.details).contains("surpriseKey"),
        "the message must name the key: {err:?}"
    );
    // Undo bridge's part without raven-cni (whose config stays invalid).
    env.pod_op(
        "del",
        &pod,
        &pod.netns.path_str(),
        &["--only-types", "bridge,portmap"],
    )
    .expect("run")
    .ok()
    .expect("DEL of the other plugins");
}
per_version!(unknown_plugin_key_is_code_2: v0_3_1 => "0.3.1", v1_1_0 => "1.1.0");

// ---------------------------------------------------------------------------------------------
// DEL

fn del_twice(version: &str) {
    let env = lab(version);
    publish(&env, GENERATION, &REMOTE, MTU);
    let pod = env.new_pod("twice").expect("pod");
    add_ok(&env, &pod);
    del_ok(&env, &pod);
    del_ok(&env, &pod);
    assert_nothing_left(&env);
}
per_version!(del_twice: v0_3_1 => "0.3.1", v1_0_0 => "1.0.0", v1_1_0 => "1.1.0");

fn del_with_netns_deleted(version: &str) {
    let env = lab(version);
    publish(&env, GENERATION, &REMOTE, MTU);
    let pod = env.new_pod("gone").expect("pod");
    add_ok(&env, &pod);
    pod.netns.delete().expect("ip netns del");
    del_ok(&env, &pod);
    del_ok(&env, &pod);
    assert!(
        !pod.netns.path().exists(),
        "DEL created something at the netns path"
    );
    assert_nothing_left(&env);
}
per_version!(del_with_netns_deleted: v0_3_1 => "0.3.1", v1_0_0 => "1.0.0", v1_1_0 => "1.1.0");

fn del_with_empty_netns(version: &str) {
    let env = lab(version);
    publish(&env, GENERATION, &REMOTE, MTU);
    let pod = env.new_pod("nonetns").expect("pod");
    add_ok(&env, &pod);
    env.pod_op("del", &pod, "", &[])
        .expect("run")
        .ok()
        .expect("DEL with empty CNI_NETNS");
    assert_attachment_gone(&env, &pod);
    env.pod_op("del", &pod, "", &[])
        .expect("run")
        .ok()
        .expect("second DEL");
    assert!(env.ipam_reservations().expect("ipam").is_empty());
}
per_version!(del_with_empty_netns: v0_3_1 => "0.3.1", v1_0_0 => "1.0.0", v1_1_0 => "1.1.0");

fn del_without_record_or_netns(version: &str) {
    let env = lab(version);
    let pod = env.new_pod("never").expect("pod");
    let never = format!("{}-never-created", pod.netns.path_str());
    env.pod_op("del", &pod, &never, &[])
        .expect("run")
        .ok()
        .expect("DEL of an unknown pod");
    assert!(
        !std::path::Path::new(&never).exists(),
        "DEL created the netns path"
    );
    assert_nothing_left(&env);
}
per_version!(del_without_record_or_netns: v0_3_1 => "0.3.1", v1_1_0 => "1.1.0");

/// A path that is not a network namespace is never entered nor modified.
fn del_with_non_netns_path(version: &str) {
    let env = lab(version);
    let pod = env.new_pod("file").expect("pod");
    let fake = env.root().join("not-a-netns");
    std::fs::write(&fake, b"plain file").expect("write");
    let fake_str = fake.to_string_lossy().into_owned();
    let out = env
        .pod_op("del", &pod, &fake_str, &["--only-types", "raven-cni"])
        .expect("run");
    if !out.success() {
        out.cni_error().expect("a failure must be CNI error JSON");
    }
    assert_eq!(std::fs::read(&fake).expect("read"), b"plain file");
}
per_version!(del_with_non_netns_path: v1_0_0 => "1.0.0");

// ---------------------------------------------------------------------------------------------
// CHECK

fn check_detects_removed_route(version: &str) {
    let env = lab(version);
    publish(&env, GENERATION, &REMOTE, MTU);
    let pod = env.new_pod("chk").expect("pod");
    add_ok(&env, &pod);
    env.check_raven(&pod)
        .expect("run")
        .ok()
        .expect("CHECK of a healthy pod");

    pod.netns
        .exec(&["ip", "route", "del", REMOTE_V4[0]])
        .expect("remove our route");
    let err = error_of(env.check_raven(&pod));
    assert_eq!(err.code, CHECK_FAILED, "{err:?}");
    del_ok(&env, &pod);
    assert_nothing_left(&env);
}
per_version!(check_detects_removed_route: v0_4_0 => "0.4.0", v1_0_0 => "1.0.0", v1_1_0 => "1.1.0");

fn check_detects_wrong_mtu_after_state_change(version: &str) {
    let env = lab(version);
    publish(&env, GENERATION, &REMOTE, MTU);
    let pod = env.new_pod("mtu").expect("pod");
    add_ok(&env, &pod);
    env.check_raven(&pod)
        .expect("run")
        .ok()
        .expect("CHECK before the change");

    publish(&env, GENERATION + 1, &REMOTE, MTU - 50);
    let err = error_of(env.check_raven(&pod));
    assert_eq!(err.code, CHECK_FAILED, "{err:?}");
    del_ok(&env, &pod);
}
per_version!(check_detects_wrong_mtu_after_state_change: v1_0_0 => "1.0.0", v1_1_0 => "1.1.0");

// ---------------------------------------------------------------------------------------------
// GC and STATUS (1.1.0)

#[test]
fn gc_keeps_valid_attachments_and_drops_the_others() {
    let env = lab("1.1.0");
    publish(&env, GENERATION, &REMOTE, MTU);
    let keep = env.new_pod("keep").expect("pod");
    let cached = env.new_pod("cached").expect("pod");
    let orphan = env.new_pod("orphan").expect("pod");
    add_ok(&env, &keep);
    add_ok(&env, &cached);
    // The orphan's libcni cache lives elsewhere: only raven-cni's own GC can drop its record.
    let other_cache = env
        .root()
        .join("other-cache")
        .to_string_lossy()
        .into_owned();
    env.pod_op(
        "add",
        &orphan,
        &orphan.netns.path_str(),
        &["--cache-dir", &other_cache],
    )
    .expect("run")
    .ok()
    .expect("ADD orphan");

    env.gc(&[&keep]).expect("run").ok().expect("GC");

    assert!(
        env.read_record(&keep).expect("read").is_some(),
        "valid record dropped"
    );
    assert_raven_routes(&keep, &REMOTE_V4, MTU);
    assert_attachment_gone(&env, &cached);
    assert_attachment_gone(&env, &orphan);

    del_ok(&env, &keep);
    env.pod_op(
        "del",
        &orphan,
        &orphan.netns.path_str(),
        &["--cache-dir", &other_cache],
    )
    .expect("run")
    .ok()
    .expect("DEL orphan");
    drop((cached, orphan));
    assert_nothing_left(&env);
}

/// Runtimes built on libcni before cni#1103 send the list as `cni.dev/attachments`.
#[test]
fn gc_accepts_the_older_attachments_key() {
    let env = lab("1.1.0");
    publish(&env, GENERATION, &REMOTE, MTU);
    let keep = env.new_pod("keep").expect("pod");
    let stale = env.new_pod("stale").expect("pod");
    add_ok(&env, &keep);
    add_ok(&env, &stale);
    let raven = env.spec().raven.as_ref().expect("raven in the list");
    let mut stdin = raven.plugin_object();
    stdin["cniVersion"] = json!("1.1.0");
    stdin["name"] = json!(env.spec().network);
    stdin["cni.dev/attachments"] =
        json!([{"containerID": keep.container_id, "ifname": keep.ifname}]);
    let call = CniCall {
        command: "GC",
        path: env.cni_path(),
        ..CniCall::default()
    };
    call.run(&paths::raven_cni_bin(), stdin.to_string().as_bytes())
        .expect("run")
        .into_ok()
        .expect("GC");
    assert!(
        env.read_record(&keep).expect("read").is_some(),
        "valid record dropped"
    );
    assert_attachment_gone(&env, &stale);
    del_ok(&env, &keep);
    del_ok(&env, &stale);
    drop(stale);
    assert_nothing_left(&env);
}

#[test]
fn status_succeeds_by_default_even_without_node_state() {
    let env = lab("1.1.0");
    env.status().expect("run").ok().expect("STATUS");
}

#[test]
fn status_requiring_the_daemon_reports_50_when_state_is_missing_or_stale() {
    let env = builder("1.1.0")
        .raven_key("requireNodeDaemon", json!(true))
        .raven_key("nodeStateMaxAgeSeconds", json!(60))
        .build()
        .expect("lab");
    assert_eq!(error_of(env.status()).code, 50, "missing state");

    publish(&env, GENERATION, &REMOTE, MTU);
    env.status()
        .expect("run")
        .ok()
        .expect("STATUS with fresh state");

    let mut stale = state(GENERATION, &REMOTE, MTU).expect("state");
    stale.updated_at = now_secs() - 120;
    env.publish_state(&stale).expect("publish");
    assert_eq!(error_of(env.status()).code, 50, "stale state");
}

// ---------------------------------------------------------------------------------------------
// Scale

#[test]
fn fifty_pods_in_parallel_leave_nothing_behind() {
    const PODS: usize = 50;
    let env = lab("1.0.0");
    publish(&env, GENERATION, &REMOTE, MTU);
    let pods: Vec<Pod> = (0..PODS)
        .map(|i| env.new_pod(&format!("p{i}")).expect("pod"))
        .collect();

    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = pods.iter().map(|p| s.spawn(|| add_ok(&env, p))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ADD thread"))
            .collect()
    });
    let addresses: BTreeSet<&str> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().expect("address"))
        .collect();
    assert_eq!(addresses.len(), PODS, "every pod gets its own address");
    for (pod, result) in pods.iter().zip(&results) {
        assert_raven_routes(pod, &REMOTE_V4, MTU);
        assert_record(&env, pod, result, Some(GENERATION), &REMOTE_V4);
    }
    assert_eq!(env.node_veths().expect("veths").len(), PODS);

    std::thread::scope(|s| {
        for pod in &pods {
            s.spawn(|| del_ok(&env, pod));
        }
    });
    assert_nothing_left(&env);
}

// ---------------------------------------------------------------------------------------------
// The raw binary contract (no libcni)

#[test]
fn version_lists_exactly_the_supported_versions() {
    require_root();
    let bin = paths::raven_cni_bin();
    let call = CniCall {
        command: "VERSION",
        ..CniCall::default()
    };
    let out = call
        .run(&bin, br#"{"cniVersion":"1.1.0"}"#)
        .expect("run")
        .into_ok()
        .expect("VERSION");
    let v: Value = serde_json::from_str(&out.stdout).expect("VERSION JSON");
    let got: BTreeSet<&str> = v["supportedVersions"]
        .as_array()
        .expect("supportedVersions")
        .iter()
        .map(|s| s.as_str().expect("string"))
        .collect();
    assert_eq!(got, ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"].into());
}

fn raw_error(stdin: &[u8]) -> CniError {
    let bin = paths::raven_cni_bin();
    let call = CniCall {
        command: "ADD",
        container_id: "raw",
        netns: "/proc/self/ns/net",
        ifname: "eth0",
        path: "/usr/lib/cni",
        ..CniCall::default()
    };
    let out = call.run(&bin, stdin).expect("run");
    assert!(!out.success(), "expected failure, got {}", out.stdout);
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is not CNI error JSON ({e}): {}",
            out.describe_failure()
        )
    })
}

#[test]
fn raw_errors_have_spec_codes() {
    require_root();
    assert_eq!(
        raw_error(b"definitely not json").code,
        6,
        "undecodable stdin"
    );
    let v = |version: &str| {
        json!({"cniVersion": version, "name": "n", "type": "raven-cni",
               "nodeStateFile": "/nonexistent/state.json", "dataDir": "/nonexistent/raven"})
    };
    for bad in ["0.2.0", "0.1.0", "9.9.9"] {
        assert_eq!(
            raw_error(v(bad).to_string().as_bytes()).code,
            1,
            "version {bad}"
        );
    }
    // Chained only: no prevResult is a clear error, not a panic.
    let err = raw_error(v("1.0.0").to_string().as_bytes());
    assert!(err.msg.to_lowercase().contains("prevresult"), "{err:?}");
}
