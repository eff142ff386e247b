//! Kernel WireGuard in the multi-domain lab (`--tunnel-driver wireguard-kernel`): pod↔pod TCP
//! across NAT, only WireGuard on the wire between gateways, peers kept across a daemon
//! restart, and `cleanup` removing our link only. The four scenarios share one lab, built by
//! the first; the cleanup scenario runs last and discards it.

use std::time::Duration;

use super::common::{self, Capture};
use super::{Ctx, Scenario};
use crate::error::{Error, Result};
use crate::lab::{Lab, LabOptions};

/// The tunnel device of the WireGuard family.
const DEVICE: &str = "raven-wg0";

fn options() -> LabOptions {
    LabOptions::with_driver("wireguard-kernel")
}

/// The shared lab, converged.
fn lab(ctx: &mut Ctx) -> Result<&mut Lab> {
    let lab = ctx.lab(&options())?;
    let took = common::converge(lab, Duration::from_secs(120))?;
    println!("lab converged in {:.1} s", took.as_secs_f64());
    Ok(lab)
}

/// Registration: pod↔pod TCP.
pub const TCP: Scenario = Scenario {
    name: "wg-kernel-lab-tcp",
    about: "lab with kernel WireGuard: pods of all three domains ping, TCP through two NATs",
    run: tcp,
};

fn tcp(ctx: &mut Ctx) -> Result<()> {
    let lab = lab(ctx)?;
    for gw in ["cloud-1", "edge-a-1", "edge-b-1"] {
        let i = lab.node_index(gw)?;
        let (_, text) = common::link(&lab.nodes[i].netns, DEVICE)
            .ok_or_else(|| Error::new(format!("{gw}: no {DEVICE}")))?;
        if !text.contains("wireguard") {
            return Err(Error::new(format!(
                "{gw}: {DEVICE} is not a kernel wireguard link: {text}"
            )));
        }
        let info = lab.metric(
            i,
            "raven_node_tunnel_driver_info{driver=\"wireguard-kernel\"}",
        )?;
        if info != Some(1.0) {
            return Err(Error::new(format!(
                "{gw}: raven_node_tunnel_driver_info for wireguard-kernel is {info:?}"
            )));
        }
    }
    // Peer stats come from the kernel: cloud-1 saw a handshake and bytes from both edges.
    let c1 = lab.node_index("cloud-1")?;
    for peer in ["gw-edge-a", "gw-edge-b"] {
        let rx = lab.metric(c1, &format!("raven_node_peer_rx_bytes{{peer=\"{peer}\"}}"))?;
        let hs = lab.metric(
            c1,
            &format!("raven_node_peer_last_handshake_timestamp_seconds{{peer=\"{peer}\"}}"),
        )?;
        if !rx.is_some_and(|v| v > 0.0) {
            return Err(Error::new(format!(
                "cloud-1: rx bytes from {peer} = {rx:?}\n{}",
                lab.http_get(c1, "/metrics")
                    .map(|r| r.1)
                    .unwrap_or_default()
            )));
        }
        if !hs.is_some_and(|t| t > 1.0e9) {
            return Err(Error::new(format!(
                "cloud-1: last handshake with {peer} = {hs:?}"
            )));
        }
    }
    // edge-b → edge-a crosses both NATs and the cloud relay.
    for (a, b, port) in [
        ("edge-b-1", "edge-a-2", 5301),
        ("edge-a-2", "cloud-2", 5302),
    ] {
        let bps = common::tcp(lab, a, b, 2, port)?;
        println!(
            "TCP {a} -> {b}: {:.1} Mbit/s (TCG: a sanity number only)",
            bps / 1e6
        );
        if bps <= 0.0 {
            return Err(Error::new(format!("TCP {a} -> {b} moved nothing")));
        }
    }
    Ok(())
}

/// Registration: the wire carries only WireGuard.
pub const WIRE: Scenario = Scenario {
    name: "wg-kernel-wire-only-wireguard",
    about: "between gateways the internet segment carries only WireGuard packets",
    run: wire,
};

fn wire(ctx: &mut Ctx) -> Result<()> {
    let lab = lab(ctx)?;
    let pcap = lab.root().join("wg-inet.pcap");
    // The cloud nodes share this segment, so their intra-domain VXLAN (raven0, UDP 4472,
    // plaintext by design like Flannel's) is not captured.
    let cap = Capture::start(&lab.internet, "br0", &pcap, "not udp port 4472")?;
    let marker = "5eedfacecafe";
    let target = lab.pod("cloud-2")?.ip.to_string();
    let out = lab.exec_in_pod(
        lab.pod("edge-a-2")?,
        &[
            "ping", "-c", "5", "-i", "0.2", "-s", "300", "-p", marker, &target,
        ],
    )?;
    let target_b = lab.pod("edge-b-1")?.ip.to_string();
    let out_b = lab.exec_in_pod(
        lab.pod("edge-a-2")?,
        &[
            "ping", "-c", "5", "-i", "0.2", "-s", "300", "-p", marker, &target_b,
        ],
    )?;
    let pcap = cap.stop()?;
    if !out.success() || !out_b.success() {
        return Err(Error::new(format!(
            "{}\n{}",
            out.describe_failure(),
            out_b.describe_failure()
        )));
    }
    // WireGuard messages: type 1..4 then three zero bytes, on the tunnel port. ARP and IPv6
    // link-local chatter of the veths are not tunnel traffic.
    let wg = "udp port 4500 and udp[8] >= 1 and udp[8] <= 4 and udp[9] = 0 and udp[10] = 0 and udp[11] = 0";
    let wg_packets = common::count(&pcap, wg)?;
    let other = common::count(
        &pcap,
        &format!("not arp and not ip6 and not udp port 4472 and not ({wg})"),
    )?;
    let bytes = std::fs::read(&pcap).unwrap_or_default();
    let marker_bytes = [0x5e_u8, 0xed, 0xfa, 0xce, 0xca, 0xfe];
    let plaintext = bytes.windows(6).any(|w| w == marker_bytes);
    println!("internet segment: {wg_packets} WireGuard packets, {other} other IPv4 packets");
    if wg_packets < 20 {
        return Err(Error::new(format!(
            "only {wg_packets} WireGuard packets captured for 10 cross-domain pings"
        )));
    }
    if other > 0 {
        let shown = crate::cmd::run_ok(&[
            "tcpdump",
            "-n",
            "-r",
            &pcap.to_string_lossy(),
            "not arp and not ip6 and not udp port 4472 and not udp port 4500",
        ])
        .unwrap_or_default();
        return Err(Error::new(format!(
            "{other} non-WireGuard IPv4 packets on the internet segment:\n{shown}"
        )));
    }
    if plaintext {
        return Err(Error::new(
            "the ping payload marker is visible on the internet segment",
        ));
    }
    Ok(())
}

/// Registration: restart keeps the peers.
pub const RESTART: Scenario = Scenario {
    name: "wg-kernel-restart-keeps-peers",
    about: "traffic flows while cloud-1's raven-node is stopped; a restart re-attaches without recreating",
    run: restart,
};

fn restart(ctx: &mut Ctx) -> Result<()> {
    let lab = lab(ctx)?;
    let c1 = lab.node_index("cloud-1")?;
    let (index_before, _) = common::link(&lab.nodes[c1].netns, DEVICE)
        .ok_or_else(|| Error::new("cloud-1 has no tunnel link"))?;
    lab.stop_daemon(c1, libc::SIGTERM)?;
    // The relay is cloud-1: with its daemon gone, edge-a ↔ edge-b still flows through the
    // kernel's peers.
    let from = lab.pod("edge-a-2")?;
    let to = lab.pod("edge-b-1")?.ip;
    let ok = (0..10).any(|_| lab.ping_from_pod(from, to));
    if !ok {
        return Err(Error::new(
            "edge-a -> edge-b through cloud-1 failed while cloud-1's daemon was stopped",
        ));
    }
    let log_before = lab.daemon_log(c1).len();
    lab.start_daemon(c1)?;
    common::converge(lab, Duration::from_secs(120))?;
    // Let it finish a pass or two.
    std::thread::sleep(Duration::from_secs(3));
    let (index_after, _) = common::link(&lab.nodes[c1].netns, DEVICE)
        .ok_or_else(|| Error::new("cloud-1 lost its tunnel link after the restart"))?;
    if index_after != index_before {
        return Err(Error::new(format!(
            "the restart recreated the link (ifindex {index_before} -> {index_after})"
        )));
    }
    let log = lab.daemon_log(c1);
    let after = &log[log_before.min(log.len())..];
    if let Some(line) = after.lines().find(|l| {
        l.contains("tunnel changed") && (l.contains("created=true") || l.contains("added=[\""))
    }) {
        return Err(Error::new(format!(
            "the restarted daemon re-created the device or re-added peers: {line}"
        )));
    }
    Ok(())
}

/// Registration: cleanup removes our link only.
pub const CLEANUP: Scenario = Scenario {
    name: "wg-kernel-cleanup-keeps-foreign",
    about: "raven-node cleanup removes raven-wg0 and leaves a foreign wireguard link untouched",
    run: cleanup,
};

fn cleanup(ctx: &mut Ctx) -> Result<()> {
    let result = cleanup_inner(ctx);
    // The lab's cloud-1 is now cleaned up: later scenarios get a fresh one.
    ctx.discard_lab(&options());
    result
}

fn cleanup_inner(ctx: &mut Ctx) -> Result<()> {
    let lab = lab(ctx)?;
    let c1 = lab.node_index("cloud-1")?;
    let ns = &lab.nodes[c1].netns;
    ns.ip(&["link", "add", "wg-foreign", "type", "wireguard"])?;
    ns.ip(&["link", "set", "wg-foreign", "up"])?;
    let (foreign_index, _) =
        common::link(ns, "wg-foreign").ok_or_else(|| Error::new("seeding wg-foreign failed"))?;
    lab.stop_daemon(c1, libc::SIGTERM)?;
    let out = lab.run_cleanup(c1)?;
    if !out.success() {
        return Err(Error::new(out.describe_failure()));
    }
    let ns = &lab.nodes[c1].netns;
    if common::link(ns, DEVICE).is_some() {
        return Err(Error::new(format!("cleanup left {DEVICE} behind")));
    }
    match common::link(ns, "wg-foreign") {
        Some((i, _)) if i == foreign_index => {}
        other => {
            return Err(Error::new(format!(
                "cleanup touched the foreign wireguard link: now {other:?}"
            )));
        }
    }
    // Idempotent: a second cleanup succeeds and still spares the foreign link.
    let again = lab.run_cleanup(c1)?;
    if !again.success() || common::link(&lab.nodes[c1].netns, "wg-foreign").is_none() {
        return Err(Error::new(format!(
            "second cleanup: {}",
            again.describe_failure()
        )));
    }
    Ok(())
}
