//! The kernel IPsec driver on a real kernel: the multi-domain lab with `--tunnel-driver ipsec`
//! (cloud public, edge-a and edge-b behind nftables masquerade; edge↔edge through the cloud).
//!
//! - [`POD_TO_POD`]: pods of every domain pair ping and TCP through NAT, and the wire between
//!   the gateways carries only ESP-in-UDP on port 4500 (and NAT keepalives).
//! - [`ROTATION`]: the three-step key rotation (add index, send with it, drop the old) under a
//!   running 20-pps ping and a TCP transfer: no ping lost, xfrm error counters unchanged.
//! - [`RESTART`]: stopping and restarting raven-node keeps the very same SAs (same SPIs, same
//!   add time) and traffic flows again.
//! - [`CLEANUP`]: `raven-node cleanup` removes our SAs, policies and interface and leaves
//!   seeded foreign states and policies (global and with another `if_id`) untouched.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use super::{Ctx, Scenario};
use crate::error::{Context, Error, Result};
use crate::lab::{Lab, LabOptions};
use crate::netns::Netns;
use crate::xfrm::{self, OUR_IF_ID, argv, blocks, ours};

/// The gateways of the lab.
const GATEWAYS: [&str; 3] = ["cloud-1", "edge-a-1", "edge-b-1"];

/// Registration: pod to pod.
pub const POD_TO_POD: Scenario = Scenario {
    name: "ipsec-pod-to-pod",
    about: "ipsec lab: pod<->pod across NAT, only ESP-in-UDP between gateways",
    run: pod_to_pod,
};

/// Registration: key rotation.
pub const ROTATION: Scenario = Scenario {
    name: "ipsec-key-rotation",
    about: "ipsec lab: key rotation under traffic loses nothing, xfrm errors unchanged",
    run: rotation,
};

/// Registration: restart.
pub const RESTART: Scenario = Scenario {
    name: "ipsec-restart-keeps-sas",
    about: "ipsec lab: raven-node restart keeps the same SAs",
    run: restart,
};

/// Registration: cleanup.
pub const CLEANUP: Scenario = Scenario {
    name: "ipsec-cleanup-foreign",
    about: "ipsec lab: cleanup deletes only our xfrm objects, foreign ones survive",
    run: cleanup,
};

fn options() -> LabOptions {
    LabOptions::with_driver("ipsec")
}

/// Waits until the pods of `pairs` ping each other.
fn converge(lab: &Lab, pairs: &[(&str, &str)], timeout: Duration) -> Result<()> {
    for (a, b) in pairs {
        let from = lab.pod(a)?;
        let to = lab.pod(b)?.ip;
        lab.wait_for(&format!("ping {a} pod -> {b} pod ({to})"), timeout, || {
            lab.ping_from_pod(from, to)
        })
        .map_err(|e| Error::new(format!("{e}\n{}", diagnostics(lab))))?;
    }
    Ok(())
}

/// What the gateways' kernels hold and where their daemons wait, for failure messages.
fn diagnostics(lab: &Lab) -> String {
    let mut out = String::new();
    for gw in GATEWAYS {
        let Ok(i) = lab.node_index(gw) else { continue };
        let n = &lab.nodes[i].netns;
        let sas = n.ip(&["xfrm", "state"]).unwrap_or_default();
        let pols = n.ip(&["xfrm", "policy"]).unwrap_or_default();
        let link = n
            .ip(&["-d", "link", "show", "raven-ipsec0"])
            .unwrap_or_default();
        let stat = n.exec(&["cat", "/proc/net/xfrm_stat"]).unwrap_or_default();
        let stack = lab
            .daemon_pid(i)
            .map(|p| {
                let wchan = std::fs::read_to_string(format!("/proc/{p}/wchan")).unwrap_or_default();
                let stack = std::fs::read_to_string(format!("/proc/{p}/stack")).unwrap_or_default();
                format!("wchan {wchan}\n{stack}")
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "=== {gw}: {} SA lines, {} policy lines\nlink: {link}\n{stat}\n{stack}\n{sas}\n",
            sas.lines().count(),
            pols.lines().count()
        ));
    }
    out
}

const ALL_PAIRS: [(&str, &str); 6] = [
    ("cloud-2", "edge-a-2"),
    ("edge-a-2", "cloud-2"),
    ("cloud-2", "edge-b-1"),
    ("edge-b-1", "cloud-2"),
    ("edge-a-2", "edge-b-1"),
    ("edge-b-1", "edge-a-2"),
];

fn ns<'l>(lab: &'l Lab, node: &str) -> Result<&'l Netns> {
    Ok(&lab.node(node)?.netns)
}

/// `ip xfrm state` blocks (one per SA) of namespace `ns`.
fn states(ns: &Netns) -> Result<Vec<String>> {
    let text = ns.ip(&["-s", "xfrm", "state"])?;
    Ok(blocks(&text))
}

/// `ip xfrm policy` blocks of namespace `ns`.
fn policies(ns: &Netns) -> Result<Vec<String>> {
    let text = ns.ip(&["xfrm", "policy"])?;
    Ok(blocks(&text))
}

/// SPIs (from `spi 0x...`) of our states.
fn our_spis(ns: &Netns) -> Result<Vec<u32>> {
    Ok(ours(&states(ns)?)
        .iter()
        .filter_map(|b| {
            // `ip -s` prints `spi 0x1234abcd(305441741)`.
            let rest = b.split("spi 0x").nth(1)?;
            let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
            u32::from_str_radix(&hex, 16).ok()
        })
        .collect())
}

/// Reqids of our `dir out` policies.
fn our_out_reqids(ns: &Netns) -> Result<Vec<u32>> {
    Ok(ours(&policies(ns)?)
        .iter()
        .filter(|b| b.contains("dir out"))
        .filter_map(|b| {
            b.split("reqid ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect())
}

/// Non-zero counters of `/proc/net/xfrm_stat` in `ns`.
fn xfrm_errors(ns: &Netns) -> Result<BTreeMap<String, u64>> {
    let text = ns.exec(&["cat", "/proc/net/xfrm_stat"])?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?.to_string();
            let v: u64 = it.next()?.parse().ok()?;
            (v > 0).then_some((name, v))
        })
        .collect())
}

fn pod_to_pod(ctx: &mut Ctx) -> Result<()> {
    let lab = ctx.lab(&options())?;
    converge(lab, &ALL_PAIRS, Duration::from_secs(90))?;
    for gw in GATEWAYS {
        let dev = ns(lab, gw)?.ip(&["-d", "link", "show", "raven-ipsec0"])?;
        if !dev.contains("xfrm") || !dev.contains(OUR_IF_ID) {
            return Err(Error::new(format!(
                "{gw}: raven-ipsec0 is not our xfrm link: {dev}"
            )));
        }
    }
    // Capture between the cloud gateway and the two NAT routers while traffic flows.
    let filter = "ip and host 198.18.0.11 and (host 198.18.0.21 or host 198.18.0.22)";
    let capture = lab
        .internet
        .command(&[
            "timeout", "20", "tcpdump", "-i", "br0", "-n", "-l", "-c", "40", filter,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context(|| "starting tcpdump".to_string())?;
    std::thread::sleep(Duration::from_secs(2));
    for (a, b) in [("edge-a-2", "cloud-2"), ("edge-a-2", "edge-b-1")] {
        let from = lab.pod(a)?;
        let to = lab.pod(b)?.ip.to_string();
        let out = lab.exec_in_pod(from, &["ping", "-c", "10", "-i", "0.2", &to])?;
        if !out.success() {
            return Err(Error::new(format!(
                "ping {a} -> {b}: {}",
                out.describe_failure()
            )));
        }
        // TCP (iperf3 exits 0 only when everything was delivered).
        let server = lab.pod(b)?;
        let mut srv = server
            .pod
            .netns
            .command(&["iperf3", "-s", "-1", "-p", "5301"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(|| "iperf3 server".to_string())?;
        std::thread::sleep(Duration::from_millis(500));
        let out = lab.exec_in_pod(
            from,
            &[
                "timeout", "60", "iperf3", "-c", &to, "-p", "5301", "-n", "1M",
            ],
        )?;
        let _ = srv.kill();
        let _ = srv.wait();
        if !out.success() {
            return Err(Error::new(format!(
                "TCP {a} -> {b}: {}",
                out.describe_failure()
            )));
        }
    }
    let captured = capture
        .wait_with_output()
        .context(|| "waiting for tcpdump".to_string())?;
    let lines: Vec<String> = String::from_utf8_lossy(&captured.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let esp = lines.iter().filter(|l| l.contains("ESP(spi=")).count();
    let bad: Vec<&String> = lines
        .iter()
        .filter(|l| {
            let both_4500 = l.matches(".4500").count() == 2;
            let kind = l.contains("ESP(spi=") || l.contains("keep-alive");
            !(both_4500 && kind) || l.contains("10.244.")
        })
        .collect();
    if esp < 20 || !bad.is_empty() {
        return Err(Error::new(format!(
            "wire between gateways: {esp} ESP-in-UDP packets (want >= 20), other packets: \
             {bad:#?}\nall:\n{}",
            lines.join("\n")
        )));
    }
    println!("wire: {esp} ESP-in-UDP packets of {} captured", lines.len());
    Ok(())
}

/// Writes the key ring of every gateway and forces a resync.
fn write_ring(lab: &Lab, text: &str) -> Result<()> {
    for gw in GATEWAYS {
        let i = lab.node_index(gw)?;
        let path = lab.nodes[i].dir.join("state").join("ipsec.keys");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).context(|| format!("renaming to {}", path.display()))?;
        if let Some(pid) = lab.daemon_pid(i) {
            let pid = i32::try_from(pid).map_err(|_| Error::new("pid out of range"))?;
            // SAFETY: kill(2) on the daemon we spawned.
            unsafe { libc::kill(pid, libc::SIGHUP) };
        }
    }
    Ok(())
}

/// Waits until every gateway's state satisfies `check`.
fn wait_all(lab: &Lab, what: &str, check: impl Fn(&Netns) -> bool) -> Result<()> {
    for gw in GATEWAYS {
        let n = ns(lab, gw)?;
        lab.wait_for(&format!("{gw}: {what}"), Duration::from_secs(40), || {
            check(n)
        })?;
    }
    Ok(())
}

fn nibble(v: u32) -> u32 {
    v & 0xf
}

fn rotation(ctx: &mut Ctx) -> Result<()> {
    let lab = ctx.lab(&options())?;
    converge(lab, &ALL_PAIRS, Duration::from_secs(90))?;
    let before: Vec<_> = GATEWAYS
        .iter()
        .map(|g| ns(lab, g).and_then(xfrm_errors))
        .collect::<Result<_>>()?;
    // Continuous probes: edge-a → cloud (direct) and edge-a → edge-b (relayed by the cloud).
    let from = lab.pod("edge-a-2")?;
    let mut pings = Vec::new();
    for to in ["cloud-2", "edge-b-1"] {
        let ip = lab.pod(to)?.ip.to_string();
        let child = from
            .pod
            .netns
            .command(&["ping", "-i", "0.05", "-W", "1", &ip])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context(|| "starting ping".to_string())?;
        pings.push((to, child));
    }
    let server = lab.pod("cloud-2")?;
    let mut srv = server
        .pod
        .netns
        .command(&["iperf3", "-s", "-1", "-p", "5302"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context(|| "iperf3 server".to_string())?;
    std::thread::sleep(Duration::from_millis(500));
    let server_ip = server.ip.to_string();
    let tcp = from
        .pod
        .netns
        .command(&[
            "timeout", "120", "iperf3", "-c", &server_ip, "-p", "5302", "-t", "25", "-b", "2M",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(|| "iperf3 client".to_string())?;
    std::thread::sleep(Duration::from_secs(2));

    // Step 1: a second key index; inbound SAs for it appear, output stays on index 0.
    write_ring(lab, "0 -\n1 -\n")?;
    wait_all(lab, "inbound SAs of index 1 installed", |n| {
        our_spis(n).is_ok_and(|s| s.iter().filter(|&&x| nibble(x) == 1).count() >= 2)
    })?;
    std::thread::sleep(Duration::from_secs(2));
    // Step 2: send with index 1.
    write_ring(lab, "0 -\n1 -\nsend 1\n")?;
    wait_all(lab, "output switched to index 1", |n| {
        our_out_reqids(n).is_ok_and(|r| !r.is_empty() && r.iter().all(|&x| nibble(x) == 1))
    })?;
    std::thread::sleep(Duration::from_secs(2));
    // Step 3: drop index 0.
    write_ring(lab, "1 -\n")?;
    wait_all(lab, "index 0 SAs removed", |n| {
        our_spis(n).is_ok_and(|s| !s.is_empty() && s.iter().all(|&x| nibble(x) == 1))
    })?;
    std::thread::sleep(Duration::from_secs(2));

    let mut failures = Vec::new();
    for (to, child) in pings {
        let pid = i32::try_from(child.id()).map_err(|_| Error::new("pid"))?;
        // SAFETY: kill(2) on the ping we spawned; SIGINT makes it print its summary.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let out = child
            .wait_with_output()
            .context(|| "waiting for ping".to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let summary = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or("")
            .to_string();
        let (answered, lost) = lost_before_last_reply(&text);
        println!("ping edge-a-2 -> {to}: {summary}; {lost} lost before the last reply");
        if answered < 100 || lost > 1 {
            failures.push(format!(
                "ping edge-a-2 -> {to}: {answered} answered, {lost} lost before the last reply \
                 (at most 1 allowed): {summary}"
            ));
        }
    }
    let tcp_out = tcp
        .wait_with_output()
        .context(|| "waiting for iperf3".to_string())?;
    let _ = srv.kill();
    let _ = srv.wait();
    if !tcp_out.status.success() {
        failures.push(format!(
            "TCP stream during rotation failed: {}{}",
            String::from_utf8_lossy(&tcp_out.stdout),
            String::from_utf8_lossy(&tcp_out.stderr)
        ));
    }
    for (gw, before) in GATEWAYS.iter().zip(before) {
        let after = xfrm_errors(ns(lab, gw)?)?;
        if after != before {
            failures.push(format!("{gw}: xfrm_stat changed: {before:?} -> {after:?}"));
        }
    }
    // Leave the lab as found: back to the default ring (index 0) would be another rotation;
    // index 1 everywhere is an equally valid steady state, keep it.
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::new(failures.join("\n")))
    }
}

/// Replies and losses in `ping` output, counting only requests sent before the last answered
/// one: the requests still in flight when the probe is stopped (several under an emulated, loaded
/// VM, where a round trip takes hundreds of milliseconds) are not losses.
fn lost_before_last_reply(ping_output: &str) -> (u64, u64) {
    let seqs: std::collections::BTreeSet<u64> = ping_output
        .lines()
        .filter(|l| l.contains(" bytes from "))
        .filter_map(|l| l.split("icmp_seq=").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect();
    let answered = seqs.len() as u64;
    let last = seqs.last().copied().unwrap_or(0);
    (answered, last.saturating_sub(answered))
}

fn restart(ctx: &mut Ctx) -> Result<()> {
    let lab = ctx.lab(&options())?;
    converge(lab, &ALL_PAIRS[..2], Duration::from_secs(90))?;
    let i = lab.node_index("cloud-1")?;
    let n = ns(lab, "cloud-1")?;
    // `ip -s xfrm state` prints the add time: equal blocks (minus counters) = same SAs.
    let identity = |n: &Netns| -> Result<Vec<String>> {
        let mut v: Vec<String> = ours(&states(n)?)
            .iter()
            .map(|b| {
                b.lines()
                    .filter(|l| l.contains("spi") || l.contains("add ") || l.contains("encap"))
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        v.sort();
        Ok(v)
    };
    let before = identity(n)?;
    if before.is_empty() {
        return Err(Error::new("cloud-1 has no SAs of ours"));
    }
    let status = lab.stop_daemon(i, libc::SIGTERM)?;
    let stopped = identity(ns(lab, "cloud-1")?)?;
    if stopped != before {
        return Err(Error::new(format!(
            "SAs changed when raven-node stopped ({status}):\n{before:#?}\n{stopped:#?}"
        )));
    }
    lab.start_daemon(i)?;
    let lab = ctx.lab(&options())?;
    converge(lab, &ALL_PAIRS[..2], Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(3));
    let after = identity(ns(lab, "cloud-1")?)?;
    if after != before {
        return Err(Error::new(format!(
            "SAs were re-created by the restart:\n{before:#?}\n{after:#?}"
        )));
    }
    Ok(())
}

fn cleanup(ctx: &mut Ctx) -> Result<()> {
    let lab = ctx.lab(&options())?;
    converge(lab, &ALL_PAIRS[..2], Duration::from_secs(90))?;
    let i = lab.node_index("edge-a-1")?;
    let n = ns(lab, "edge-a-1")?;
    let seeds = [
        xfrm::state_add("192.0.2.1", "192.0.2.2", 0x4242, 7, None, false),
        xfrm::state_add("192.0.2.1", "192.0.2.3", 0x4243, 8, Some(99), false),
        xfrm::policy_add(
            "10.99.0.0/16",
            "10.98.0.0/16",
            "out",
            "192.0.2.1",
            "192.0.2.2",
            7,
            None,
        ),
        xfrm::policy_add(
            "10.99.0.0/16",
            "10.97.0.0/16",
            "out",
            "192.0.2.1",
            "192.0.2.3",
            8,
            Some(99),
        ),
    ];
    for s in &seeds {
        n.ip(&argv(s))?;
    }
    let foreign = |n: &Netns| -> Result<(Vec<String>, Vec<String>)> {
        let f = |b: Vec<String>| -> Vec<String> {
            xfrm::foreign(b)
                .into_iter()
                .map(|x| {
                    // Drop the counter lines, which change with time.
                    x.lines()
                        .filter(|l| !l.contains("lifetime current") && !l.contains("bytes"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .collect()
        };
        Ok((f(states(n)?), f(policies(n)?)))
    };
    let before = foreign(n)?;
    if before.0.len() < 2 || before.1.len() < 2 {
        return Err(Error::new(format!("seeding failed: {before:#?}")));
    }
    // A running daemon must not touch them either.
    std::thread::sleep(Duration::from_secs(2));
    lab.stop_daemon(i, libc::SIGTERM)?;
    let out = lab.run_cleanup(i)?;
    if !out.success() {
        return Err(Error::new(format!(
            "cleanup failed: {}",
            out.describe_failure()
        )));
    }
    let lab = ctx.lab(&options())?;
    let n = ns(lab, "edge-a-1")?;
    let after = foreign(n)?;
    let left_states = ours(&states(n)?).len();
    let left_policies = ours(&policies(n)?).len();
    let link = n.ip(&["link", "show", "raven-ipsec0"]).is_ok();
    let mut problems = Vec::new();
    if after != before {
        problems.push(format!(
            "foreign xfrm objects changed:\n{before:#?}\n{after:#?}"
        ));
    }
    if left_states + left_policies > 0 || link {
        problems.push(format!(
            "cleanup left {left_states} SAs, {left_policies} policies of ours, link: {link}"
        ));
    }
    // Restore: remove the seeds, restart the daemon, traffic flows again.
    let _ = n.ip(&[
        "xfrm",
        "state",
        "delete",
        "src",
        "192.0.2.1",
        "dst",
        "192.0.2.2",
        "proto",
        "esp",
        "spi",
        "0x4242",
    ]);
    let _ = n.ip(&[
        "xfrm",
        "state",
        "delete",
        "src",
        "192.0.2.1",
        "dst",
        "192.0.2.3",
        "proto",
        "esp",
        "spi",
        "0x4243",
        "if_id",
        "99",
    ]);
    let _ = n.ip(&[
        "xfrm",
        "policy",
        "delete",
        "src",
        "10.99.0.0/16",
        "dst",
        "10.98.0.0/16",
        "dir",
        "out",
    ]);
    let _ = n.ip(&[
        "xfrm",
        "policy",
        "delete",
        "src",
        "10.99.0.0/16",
        "dst",
        "10.97.0.0/16",
        "dir",
        "out",
        "if_id",
        "99",
    ]);
    lab.start_daemon(i)?;
    if problems.is_empty() {
        converge(lab, &ALL_PAIRS[..2], Duration::from_secs(90))
    } else {
        ctx.discard_lab(&options());
        Err(Error::new(problems.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::lost_before_last_reply;

    #[test]
    fn in_flight_requests_are_not_losses_but_gaps_are() {
        let out = "PING 10.0.0.1 (10.0.0.1) 56(84) bytes of data.
64 bytes from 10.0.0.1: icmp_seq=1 ttl=62 time=0.3 ms
64 bytes from 10.0.0.1: icmp_seq=2 ttl=62 time=0.3 ms
From 10.0.0.9 icmp_seq=3 Destination Host Unreachable
64 bytes from 10.0.0.1: icmp_seq=5 ttl=62 time=0.3 ms
64 bytes from 10.0.0.1: icmp_seq=5 ttl=62 time=0.3 ms (DUP!)

--- 10.0.0.1 ping statistics ---
9 packets transmitted, 3 received, 66% packet loss, time 400ms
";
        // Requests 3 and 4 are lost; 6..9 were in flight at the stop.
        assert_eq!(lost_before_last_reply(out), (3, 2));
        assert_eq!(lost_before_last_reply(""), (0, 0));
    }
}
