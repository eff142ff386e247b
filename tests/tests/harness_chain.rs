//! Self-test of the harness: the Flannel-equivalent Debian chain (bridge + host-local +
//! portmap, no raven-cni) driven through real libcni by raven-cnitool inside a node netns.
//!
//! This pins down what raven-cni receives as prevResult in the conformance tests, so that a
//! change in Debian's plugins or in the harness shows up here and not as a puzzling raven-cni
//! failure. Needs root.

use raven_tests::{CniEnv, Netns, kernel, require_root};

fn lab(version: &str) -> CniEnv {
    require_root();
    CniEnv::builder(version)
        .without_raven()
        .build()
        .expect("building the lab")
}

fn assert_flannel_shaped_add(version: &str) {
    let env = lab(version);
    let pod = env.new_pod("web").expect("pod netns");
    let result = env
        .add(&pod)
        .expect("run")
        .ok()
        .expect("ADD")
        .json()
        .expect("json");

    assert_eq!(result["cniVersion"], version);
    let ifaces = result["interfaces"].as_array().expect("interfaces");
    assert_eq!(ifaces.len(), 3, "{result}");
    assert_eq!(ifaces[0]["name"], "cni0");
    assert_eq!(ifaces[2]["name"], "eth0");
    assert_eq!(ifaces[2]["sandbox"], pod.netns.path_str());
    let ip = &result["ips"][0];
    assert_eq!(ip["gateway"], "10.244.1.1");
    assert_eq!(ip["interface"], 2);
    assert!(
        ip["address"]
            .as_str()
            .expect("address")
            .starts_with("10.244.1.")
    );
    let has_version = ip.get("version").is_some();
    assert_eq!(
        has_version,
        version.starts_with("0."),
        "ips[].version shape at {version}"
    );
    assert_eq!(result["routes"][0]["dst"], "10.244.0.0/16");
    assert_eq!(result["routes"][1]["dst"], "0.0.0.0/0");

    let routes = kernel::routes(&pod.netns, "-4").expect("routes");
    let cluster = routes
        .iter()
        .find(|r| r.dst == "10.244.0.0/16")
        .expect("cluster route");
    assert_eq!(cluster.gateway.as_deref(), Some("10.244.1.1"));
    assert!(routes.iter().any(|r| r.dst == "default"));
    assert_eq!(env.node_veths().expect("veths").len(), 1);
    assert_eq!(env.ipam_reservations().expect("ipam").len(), 1);

    env.del(&pod).expect("run").ok().expect("DEL");
    env.del(&pod).expect("run").ok().expect("second DEL");
    assert!(env.node_veths().expect("veths").is_empty());
    assert!(env.ipam_reservations().expect("ipam").is_empty());
    assert!(env.cache_entries().expect("cache").is_empty());
}

#[test]
fn debian_chain_at_0_3_1() {
    assert_flannel_shaped_add("0.3.1");
}

#[test]
fn debian_chain_at_1_0_0() {
    assert_flannel_shaped_add("1.0.0");
}

#[test]
fn plugin_errors_come_back_as_cni_error_json() {
    let env = lab("1.0.0");
    let pod = env.new_pod("bad").expect("pod netns");
    // Unknown CNI_ARGS without IgnoreUnknown: Debian's plugins reject them (skel code 999).
    let out = env
        .pod_op(
            "add",
            &pod,
            &pod.netns.path_str(),
            &["--cni-args", "FOO=bar"],
        )
        .expect("run");
    // --cni-args given twice: the flag parser keeps the last one.
    let err = out.cni_error().expect("error JSON");
    assert!(err.msg.contains("FOO"), "{err:?}");
    env.del(&pod)
        .expect("run")
        .ok()
        .expect("DEL after failed ADD");
}

#[test]
fn check_on_0_3_1_is_refused_by_libcni() {
    let env = lab("0.3.1");
    let pod = env.new_pod("chk").expect("pod netns");
    env.add(&pod).expect("run").ok().expect("ADD");
    let err = env.check(&pod).expect("run").cni_error().expect("error");
    assert!(
        err.msg.contains("does not support the CHECK command"),
        "{err:?}"
    );
    env.del(&pod).expect("run").ok().expect("DEL");
}

#[test]
fn netns_runs_commands_inside_and_removes_itself() {
    require_root();
    let ns = Netns::new("selftest").expect("netns");
    let path = ns.path();
    assert!(path.exists());
    assert!(ns.name().contains(&std::process::id().to_string()));
    // Inside, only loopback exists (and it is up).
    let links = kernel::links(&ns).expect("links");
    assert_eq!(
        links.iter().map(|l| l.ifname.as_str()).collect::<Vec<_>>(),
        ["lo"]
    );
    let err = ns.exec(&["sh", "-c", "echo oops >&2; exit 4"]).unwrap_err();
    assert!(
        err.message().contains("oops") && err.message().contains(ns.name()),
        "{err}"
    );
    let other = Netns::new("selftest").expect("second netns");
    assert_ne!(other.name(), ns.name());
    drop(ns);
    assert!(!path.exists(), "netns not removed on drop");
}
