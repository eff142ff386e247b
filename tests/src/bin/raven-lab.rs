//! `raven-lab`: the network-namespace lab. `raven-lab demo` is the README's main job.
//!
//! The demo builds nothing (tests/demo.sh does): it creates a "node" netns with the
//! Flannel-equivalent chain plus raven-cni, publishes a node state with two remote-domain
//! prefixes and MTU 1400, starts a "pod" through the real libcni (raven-cnitool), prints what was
//! installed, deletes the pod again and tears everything down — also when a step fails, because
//! every piece of the lab removes itself on drop.

use raven_tests::{CniEnv, Pod, Result, cmd, nodestate};
use serde_json::Value;

/// Pod prefixes of two other network domains: node subnets of remote nodes inside Flannel's
/// cluster CIDR, more specific than the pod's 10.244.0.0/16 route, so they win in the pod.
const REMOTE_PREFIXES: [&str; 2] = ["10.244.5.0/24", "10.244.9.0/24"];
/// Tunnel MTU published by raven-node in the demo.
const TUNNEL_MTU: u32 = 1400;

const USAGE: &str = "usage: raven-lab demo [--cni-version 0.3.1|0.4.0|1.0.0|1.1.0]
       raven-lab multi [--hold]
  demo   create a node netns with bridge+host-local+portmap+raven-cni, start a pod through
         libcni, show what raven-cni installed, then clean up (needs root; run tests/demo.sh)
  multi  build the three-domain lab (cloud, edge-a and edge-b behind NAT), start raven-node
         on every node, print the ping matrix between pods; --hold keeps it up until Enter";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["demo"] => report(demo("1.0.0")),
        ["demo", "--cni-version", v] => report(demo(v)),
        ["multi"] => report(multi(false)),
        ["multi", "--hold"] => report(multi(true)),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            0
        }
        _ => {
            eprintln!("{USAGE}");
            2
        }
    };
    std::process::exit(code);
}

fn report(outcome: Result<()>) -> i32 {
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("raven-lab demo failed: {e}");
            1
        }
    }
}

fn section(title: &str) {
    println!("\n=== {title} ===");
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn demo(cni_version: &str) -> Result<()> {
    let env = CniEnv::builder(cni_version).build()?;
    section("lab");
    println!("node netns       {}", env.node().name());
    println!("NETCONFPATH      {}", env.conf_dir().display());
    println!("CNI_PATH         {}", env.cni_path());
    let conflist = std::fs::read_to_string(env.conf_dir().join("10-cbr0.conflist"))
        .map_err(|e| raven_tests::Error::new(format!("reading the conflist: {e}")))?;
    section("conflist (Flannel's generated delegate, portmap, raven-cni)");
    println!("{}", conflist.trim_end());

    let mut state = nodestate::state(1, &REMOTE_PREFIXES, TUNNEL_MTU)?;
    state.node_name = "demo-node".to_string();
    env.publish_state(&state)?;
    section(&format!("node state ({})", env.state_file().display()));
    print!("{}", String::from_utf8_lossy(&state.to_json()));

    let pod = env.new_pod("demo-pod")?;
    let added = env.add(&pod)?;
    if !added.success() {
        // What a runtime does after a failed ADD; the lab teardown removes the rest anyway.
        if let Err(e) = env.del(&pod).and_then(|out| out.ok()) {
            eprintln!("DEL after the failed ADD also failed: {e}");
        }
    }
    let result = added.ok()?.json()?;
    section(&format!(
        "ADD result from libcni (pod netns {})",
        pod.netns.name()
    ));
    println!("{}", pretty(&result));
    show_pod(&env, &pod)?;

    env.del(&pod)?.ok()?;
    section("after DEL");
    let routes = pod.netns.exec(&["ip", "route", "show"])?;
    if routes.trim().is_empty() {
        println!("routes in the pod: none (raven-cni removed its routes, bridge removed eth0)");
    } else {
        print!("routes in the pod:\n{routes}");
    }
    println!("record present: {}", env.record_path(&pod).exists());
    println!("\ndemo finished; tearing down the lab");
    Ok(())
}

fn show_pod(env: &CniEnv, pod: &Pod) -> Result<()> {
    section("ip route in the pod (proto 82 = raven-cni)");
    print!("{}", pod.netns.exec(&["ip", "route", "show"])?);
    section("route lookup for a pod in a remote domain (10.244.5.7)");
    let detail = cmd::run_ok(&["ip", "-n", pod.netns.name(), "route", "get", "10.244.5.7"])?;
    print!("{detail}");
    section(&format!(
        "attachment record ({})",
        env.record_path(pod).display()
    ));
    match env.read_record(pod)? {
        Some(record) => println!("{}", pretty(&record)),
        None => println!("(no record)"),
    }
    Ok(())
}

/// The multi-domain lab: build, converge, ping matrix, optional hold, teardown on drop.
fn multi(hold: bool) -> Result<()> {
    use raven_tests::lab::Lab;
    let mut lab = Lab::build()?;
    section(&format!("lab ({})", lab.root().display()));
    for n in &lab.nodes {
        println!(
            "{:<9} domain {:<7} ip {:<14} netns {}",
            n.spec.name,
            n.spec.domain,
            n.spec.ip,
            n.netns.name()
        );
    }
    for p in &lab.pods {
        println!(
            "pod {:<24} on {:<9} ip {:<12} netns {}",
            p.pod.name,
            lab.nodes[p.node].spec.name,
            p.ip,
            p.pod.netns.name()
        );
    }
    lab.start_daemons()?;
    let start = std::time::Instant::now();
    let last = lab.pods.len() - 1;
    let (first_pod, last_ip) = (&lab.pods[0], lab.pods[last].ip);
    lab.wait_for(
        "first cross-domain ping",
        std::time::Duration::from_secs(30),
        || lab.ping_from_pod(first_pod, last_ip),
    )?;
    section(&format!(
        "ping matrix after {:?} (rows: from, columns: to)",
        start.elapsed()
    ));
    for a in &lab.pods {
        let row: Vec<&str> = lab
            .pods
            .iter()
            .map(|b| {
                if lab.ping_from_pod(a, b.ip) {
                    "ok"
                } else {
                    "--"
                }
            })
            .collect();
        println!("{:<9} {}", lab.nodes[a.node].spec.name, row.join(" "));
    }
    if hold {
        println!(
            "\nlab is up; daemon logs in <lab>/<node>/raven-node.log; press Enter to tear down"
        );
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    Ok(())
}
