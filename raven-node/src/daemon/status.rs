//! `GET /status` and `raven-node status`: what the running daemon is doing, as JSON for tools
//! and as a table for people.
//!
//! The daemon keeps a [`PlanSummary`] of its last plan next to the health state (the plan
//! itself is large; the summary is what an operator asks about), and the report is assembled
//! on request from that, the health decisions and the count of pod records `raven-cni` left in
//! its data directory. Assembly and rendering are pure and table-tested; the command is a
//! plain HTTP GET to the daemon's metrics address, so it reports the daemon's view (what it
//! planned and last applied), not a second observation of the kernel.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::health::{self, HealthState};
use crate::plan::{NodePlan, Role, TunnelDriver};

/// What an operator wants to know about the last plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanSummary {
    /// Role name: `unmanaged`, `inactive`, `solo`, `gateway`, `member`.
    pub role: String,
    /// Why an inactive node is inactive.
    pub inactive_reason: Option<String>,
    /// The node's Gateway.
    pub gateway: Option<String>,
    /// The gateway node (members).
    pub gateway_node: Option<String>,
    /// Tunnel driver (tunnel nodes).
    pub driver: Option<String>,
    /// Tunnel device (tunnel nodes).
    pub tunnel_device: Option<String>,
    /// Tunnel MTU (raven0, routes, pods).
    pub mtu: u32,
    /// Planned peers: (gateway, node, endpoint).
    pub peers: Vec<(String, String, Option<String>)>,
    /// Routes per table.
    pub routes_by_table: BTreeMap<u32, usize>,
    /// Policy rules.
    pub rules: usize,
    /// Plan warnings.
    pub warnings: usize,
}

impl PlanSummary {
    /// Summarizes a plan (pure).
    pub fn from_plan(plan: &NodePlan) -> Self {
        let (role, reason, gateway, gateway_node) = match &plan.role {
            Role::Unmanaged => ("unmanaged", None, None, None),
            Role::Inactive { gateway, reason } => (
                "inactive",
                Some(format!("{reason:?}")),
                Some(gateway.clone()),
                None,
            ),
            Role::Solo { gateway } => ("solo", None, Some(gateway.clone()), None),
            Role::Gateway { gateway } => ("gateway", None, Some(gateway.clone()), None),
            Role::Member {
                gateway,
                gateway_node,
            } => (
                "member",
                None,
                Some(gateway.clone()),
                Some(gateway_node.clone()),
            ),
        };
        let mut routes_by_table = BTreeMap::new();
        for r in &plan.routes {
            *routes_by_table.entry(r.table).or_insert(0) += 1;
        }
        Self {
            role: role.to_owned(),
            inactive_reason: reason,
            gateway,
            gateway_node,
            driver: plan.tunnel.as_ref().map(|t| {
                match t.driver {
                    TunnelDriver::WireGuard => "wireguard",
                    TunnelDriver::Ipsec => "ipsec",
                }
                .to_owned()
            }),
            tunnel_device: plan.tunnel.as_ref().map(|t| t.device.clone()),
            mtu: plan.mtu,
            peers: plan
                .tunnel
                .iter()
                .flat_map(|t| &t.peers)
                .map(|p| {
                    (
                        p.gateway.clone(),
                        p.node.clone(),
                        p.endpoint.map(|e| e.to_string()),
                    )
                })
                .collect(),
            routes_by_table,
            rules: plan.rules.len(),
            warnings: plan.warnings.len(),
        }
    }
}

/// One tunnel peer in the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    /// The peer's Gateway.
    pub gateway: String,
    /// The peer's node.
    pub node: String,
    /// Where packets are sent (`None`: we wait for the peer to reach us, e.g. behind NAT).
    pub endpoint: Option<String>,
    /// Unix time of the last handshake.
    pub last_handshake: Option<u64>,
    /// Seconds since the last handshake.
    pub last_handshake_age_seconds: Option<u64>,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
}

/// The last apply in the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyStatus {
    /// Whether it succeeded.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// How long the tunnel and data-plane apply took.
    pub duration_seconds: Option<f64>,
    /// Unix time it finished.
    pub finished_at: Option<u64>,
}

/// `GET /status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// Node name.
    pub node: String,
    /// Live and ready.
    pub healthy: bool,
    /// Why not live.
    pub live_error: Option<String>,
    /// Why not ready.
    pub ready_error: Option<String>,
    /// Role (`unknown` before the first plan).
    pub role: String,
    /// Why an inactive node is inactive.
    pub inactive_reason: Option<String>,
    /// The node's Gateway.
    pub gateway: Option<String>,
    /// The gateway node (members).
    pub gateway_node: Option<String>,
    /// Tunnel driver.
    pub driver: Option<String>,
    /// Tunnel device.
    pub tunnel_device: Option<String>,
    /// Tunnel MTU.
    pub tunnel_mtu: Option<u32>,
    /// Tunnel peers.
    pub peers: Vec<PeerStatus>,
    /// Routes in our tables.
    pub routes: usize,
    /// Routes per table (table number as text).
    pub routes_by_table: BTreeMap<String, usize>,
    /// Our policy rules.
    pub rules: usize,
    /// Plan warnings (details in the log).
    pub plan_warnings: usize,
    /// Pod attachments recorded by raven-cni (`None`: the data directory is unreadable).
    pub recorded_pods: Option<usize>,
    /// Proxy-mode tunnels (empty until proxy mode runs on this node).
    pub proxy_tunnels: Vec<String>,
    /// The last apply.
    pub last_apply: Option<ApplyStatus>,
    /// Generation of the published node state.
    pub node_state_generation: Option<u64>,
}

/// Assembles the report (pure).
pub fn report(
    node: &str,
    state: &HealthState,
    live: Result<(), String>,
    now: SystemTime,
    recorded_pods: Option<usize>,
) -> StatusReport {
    let ready = health::ready(state, now);
    let summary = state.plan.clone().unwrap_or_default();
    let peers = summary
        .peers
        .iter()
        .map(|(gateway, peer_node, endpoint)| {
            let stats = state.peers.iter().find(|s| &s.peer == gateway);
            let handshake = stats.and_then(|s| s.last_handshake);
            PeerStatus {
                gateway: gateway.clone(),
                node: peer_node.clone(),
                endpoint: endpoint.clone(),
                last_handshake: handshake.map(unix),
                last_handshake_age_seconds: handshake
                    .map(|t| now.duration_since(t).unwrap_or_default().as_secs()),
                rx_bytes: stats.map_or(0, |s| s.rx_bytes),
                tx_bytes: stats.map_or(0, |s| s.tx_bytes),
            }
        })
        .collect();
    StatusReport {
        node: node.to_owned(),
        healthy: live.is_ok() && ready.is_ok(),
        live_error: live.err(),
        ready_error: ready.err(),
        role: if state.plan.is_some() {
            summary.role.clone()
        } else {
            "unknown".to_owned()
        },
        inactive_reason: summary.inactive_reason.clone(),
        gateway: summary.gateway.clone(),
        gateway_node: summary.gateway_node.clone(),
        driver: summary.driver.clone(),
        tunnel_device: summary.tunnel_device.clone(),
        tunnel_mtu: state.plan.as_ref().map(|p| p.mtu),
        peers,
        routes: summary.routes_by_table.values().sum(),
        routes_by_table: summary
            .routes_by_table
            .iter()
            .map(|(t, n)| (t.to_string(), *n))
            .collect(),
        rules: summary.rules,
        plan_warnings: summary.warnings,
        recorded_pods,
        proxy_tunnels: Vec::new(),
        last_apply: state.last_apply.as_ref().map(|r| ApplyStatus {
            ok: r.is_ok(),
            error: r.as_ref().err().cloned(),
            duration_seconds: state.last_apply_duration.map(|d| d.as_secs_f64()),
            finished_at: state.last_apply_at.map(unix),
        }),
        node_state_generation: state.generation,
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Pod records in raven-cni's data directory (`<dir>/<network>/<cid>:<ifname>.json`).
pub fn count_records(data_dir: &Path) -> Option<usize> {
    let networks = match std::fs::read_dir(data_dir) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(0),
        Err(_) => return None,
    };
    let mut n = 0;
    for net in networks.flatten() {
        if !net.path().is_dir() {
            continue;
        }
        let entries = std::fs::read_dir(net.path()).ok()?;
        n += entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .count();
    }
    Some(n)
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_owned(), T::to_string)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The human table (pure).
pub fn render_table(r: &StatusReport) -> String {
    let mut out = String::new();
    let health = if r.healthy { "healthy" } else { "UNHEALTHY" };
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "{k:<16} {v}");
    };
    row("Node", r.node.clone());
    row("Health", health.to_owned());
    if let Some(e) = &r.live_error {
        row("  not live", e.clone());
    }
    if let Some(e) = &r.ready_error {
        row("  not ready", e.clone());
    }
    let role = match &r.inactive_reason {
        Some(why) => format!("{} ({why})", r.role),
        None => r.role.clone(),
    };
    row("Role", role);
    row("Gateway", opt(&r.gateway));
    if r.gateway_node.is_some() {
        row("Gateway node", opt(&r.gateway_node));
    }
    row(
        "Driver",
        match (&r.driver, &r.tunnel_device) {
            (Some(d), Some(dev)) => format!("{d} ({dev})"),
            (d, _) => opt(d),
        },
    );
    row("Tunnel MTU", opt(&r.tunnel_mtu));
    let tables = r
        .routes_by_table
        .iter()
        .map(|(t, n)| format!("table {t}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    row(
        "Routes",
        if tables.is_empty() {
            r.routes.to_string()
        } else {
            format!("{} ({tables})", r.routes)
        },
    );
    row("Rules", r.rules.to_string());
    row("Recorded pods", opt(&r.recorded_pods));
    row("Plan warnings", r.plan_warnings.to_string());
    row("Node state gen", opt(&r.node_state_generation));
    row(
        "Last apply",
        match &r.last_apply {
            None => "-".to_owned(),
            Some(a) => {
                let took = a
                    .duration_seconds
                    .map(|s| format!(" in {:.1} ms", s * 1000.0))
                    .unwrap_or_default();
                match &a.error {
                    None => format!("ok{took}"),
                    Some(e) => format!("FAILED{took}: {e}"),
                }
            }
        },
    );
    row(
        "Proxy tunnels",
        if r.proxy_tunnels.is_empty() {
            "none".to_owned()
        } else {
            r.proxy_tunnels.join(", ")
        },
    );
    if !r.peers.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<20} {:<16} {:<24} {:>15} {:>12} {:>12}",
            "PEER", "NODE", "ENDPOINT", "HANDSHAKE", "RX", "TX"
        );
        for p in &r.peers {
            let hs = p
                .last_handshake_age_seconds
                .map_or_else(|| "never".to_owned(), |s| format!("{s} s ago"));
            let _ = writeln!(
                out,
                "{:<20} {:<16} {:<24} {:>15} {:>12} {:>12}",
                p.gateway,
                p.node,
                p.endpoint.as_deref().unwrap_or("(passive)"),
                hs,
                human_bytes(p.rx_bytes),
                human_bytes(p.tx_bytes)
            );
        }
    }
    out
}

/// Fetches `/status` from the daemon at `addr` (plain HTTP/1.1, bounded time).
pub fn fetch(addr: std::net::SocketAddr, timeout: Duration) -> Result<StatusReport, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot reach raven-node at {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("{addr}: {e}"))?;
    write!(
        s,
        "GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{addr}: {e}"))?;
    let mut text = String::new();
    s.take(4 * 1024 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| format!("{addr}: reading the answer: {e}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}: malformed HTTP answer"))?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!(
            "{addr}/status answered {status}: {} (is this raven-node with /status?)",
            body.trim()
        ));
    }
    serde_json::from_str(body).map_err(|e| format!("{addr}/status: not a status report: {e}"))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::daemon::engine::PeerStats;

    fn summary() -> PlanSummary {
        PlanSummary {
            role: "gateway".into(),
            gateway: Some("gw-cloud".into()),
            driver: Some("wireguard".into()),
            tunnel_device: Some("raven-wg0".into()),
            mtu: 1400,
            peers: vec![
                (
                    "gw-edge".into(),
                    "edge-1".into(),
                    Some("198.18.0.21:4500".into()),
                ),
                ("gw-b".into(), "b-1".into(), None),
            ],
            routes_by_table: BTreeMap::from([(9027, 2), (9028, 3)]),
            rules: 2,
            ..PlanSummary::default()
        }
    }

    #[test]
    fn report_table() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let mut s = HealthState {
            heartbeat: Some(Instant::now()),
            ..HealthState::default()
        };
        // Before the first plan.
        let r = report("n1", &s, Ok(()), now, Some(0));
        assert_eq!(r.role, "unknown");
        assert!(!r.healthy);
        assert!(r.ready_error.as_deref().unwrap().contains("no apply"));
        assert!(r.last_apply.is_none() && r.tunnel_mtu.is_none());

        s.plan = Some(summary());
        s.last_apply = Some(Ok(()));
        s.last_apply_duration = Some(Duration::from_millis(3));
        s.last_apply_at = Some(now);
        s.generation = Some(4);
        s.expected_peers = vec!["gw-edge".into(), "gw-b".into()];
        s.peers = vec![PeerStats {
            peer: "gw-edge".into(),
            last_handshake: Some(now - Duration::from_secs(5)),
            rx_bytes: 2048,
            tx_bytes: 10,
        }];
        let r = report("n1", &s, Ok(()), now, Some(3));
        assert_eq!(r.role, "gateway");
        assert_eq!(r.routes, 5);
        assert_eq!(r.routes_by_table["9028"], 3);
        assert_eq!(r.rules, 2);
        assert_eq!(r.tunnel_mtu, Some(1400));
        assert_eq!(r.recorded_pods, Some(3));
        assert_eq!(r.peers[0].last_handshake_age_seconds, Some(5));
        assert_eq!(r.peers[0].rx_bytes, 2048);
        assert_eq!(r.peers[1].last_handshake, None);
        // gw-b never handshaked: not ready, hence unhealthy.
        assert!(!r.healthy);
        assert!(r.ready_error.as_deref().unwrap().contains("gw-b"));
        let table = render_table(&r);
        for want in [
            "UNHEALTHY",
            "wireguard (raven-wg0)",
            "5 (table 9027: 2, table 9028: 3)",
            "198.18.0.21:4500",
            "(passive)",
            "5 s ago",
            "never",
            "2.0 KiB",
            "ok in 3.0 ms",
        ] {
            assert!(table.contains(want), "{want:?} missing in\n{table}");
        }
        // JSON round trip (what `raven-node status` parses).
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"lastHandshakeAgeSeconds\":5"), "{json}");
        assert_eq!(serde_json::from_str::<StatusReport>(&json).unwrap(), r);

        s.peers.push(PeerStats {
            peer: "gw-b".into(),
            last_handshake: Some(now),
            rx_bytes: 0,
            tx_bytes: 0,
        });
        assert!(report("n1", &s, Ok(()), now, None).healthy);
        let r = report("n1", &s, Err("silent".into()), now, None);
        assert!(!r.healthy && r.live_error.as_deref() == Some("silent"));
        s.last_apply = Some(Err("netlink EPERM".into()));
        let r = report("n1", &s, Ok(()), now, None);
        assert!(render_table(&r).contains("FAILED in 3.0 ms: netlink EPERM"));
    }

    #[test]
    fn counts_records() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(count_records(&dir.path().join("none")), Some(0));
        std::fs::create_dir_all(dir.path().join("cbr0")).unwrap();
        std::fs::write(dir.path().join("cbr0/c1:eth0.json"), "{}").unwrap();
        std::fs::write(dir.path().join("cbr0/c1:eth0.lock"), "").unwrap();
        std::fs::write(dir.path().join("cbr0/c2:eth0.json"), "{}").unwrap();
        assert_eq!(count_records(dir.path()), Some(2));
    }
}
