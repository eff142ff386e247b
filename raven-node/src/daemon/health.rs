//! `/healthz` and `/readyz` decisions from the loop's real state (upstream's are pings).
//!
//! - live: the reconcile loop has completed an iteration recently (it wakes every poll
//!   interval, so a loop stuck in a hung netlink call or a deadlock stops being live);
//! - ready: the last apply succeeded and every tunnel peer of the plan completed a handshake
//!   within [`HANDSHAKE_FRESH`]. WireGuard re-handshakes every two minutes while traffic or
//!   keepalives flow, so three minutes without one means the path is broken.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::engine::PeerStats;

/// A handshake older than this makes the node not ready.
pub const HANDSHAKE_FRESH: Duration = Duration::from_secs(180);

/// What the loop last reported.
#[derive(Clone, Debug, Default)]
pub struct HealthState {
    /// When the loop last completed an iteration.
    pub heartbeat: Option<Instant>,
    /// Result of the last apply: `None` before the first one.
    pub last_apply: Option<Result<(), String>>,
    /// Peers the plan expects (gateway names).
    pub expected_peers: Vec<String>,
    /// What the tunnel driver reported about them.
    pub peers: Vec<PeerStats>,
    /// Summary of the last plan (for `/status`).
    pub plan: Option<super::status::PlanSummary>,
    /// How long the last tunnel and data-plane apply took.
    pub last_apply_duration: Option<Duration>,
    /// When the last pass finished.
    pub last_apply_at: Option<SystemTime>,
    /// Generation of the published node state.
    pub generation: Option<u64>,
}

/// The state shared between the loop and the HTTP server.
#[derive(Clone, Debug, Default)]
pub struct Health(Arc<Mutex<HealthState>>);

impl Health {
    /// Locks the state; a poisoned lock (a panic while holding it) still yields the data, which
    /// is plain values and stays consistent.
    pub fn lock(&self) -> MutexGuard<'_, HealthState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Liveness now.
    pub fn live(&self, max_silence: Duration) -> Result<(), String> {
        live(&self.lock(), Instant::now(), max_silence)
    }

    /// Readiness now.
    pub fn ready(&self) -> Result<(), String> {
        ready(&self.lock(), SystemTime::now())
    }
}

/// Live when the loop completed an iteration within `max_silence` of `now`.
pub fn live(state: &HealthState, now: Instant, max_silence: Duration) -> Result<(), String> {
    match state.heartbeat {
        None => Err("the reconcile loop has not completed an iteration yet".to_owned()),
        Some(beat) => {
            let silence = now.saturating_duration_since(beat);
            if silence <= max_silence {
                Ok(())
            } else {
                Err(format!(
                    "the reconcile loop has been silent for {:.1} s (limit {} s)",
                    silence.as_secs_f64(),
                    max_silence.as_secs()
                ))
            }
        }
    }
}

/// Ready when the last apply succeeded and every expected peer handshaked recently.
pub fn ready(state: &HealthState, now: SystemTime) -> Result<(), String> {
    match &state.last_apply {
        None => return Err("no apply has completed yet".to_owned()),
        Some(Err(e)) => return Err(format!("the last apply failed: {e}")),
        Some(Ok(())) => {}
    }
    let mut stale = Vec::new();
    for peer in &state.expected_peers {
        let stats = state.peers.iter().find(|p| &p.peer == peer);
        match stats.and_then(|s| s.last_handshake) {
            None => stale.push(format!("{peer}: no handshake yet")),
            Some(at) => {
                let age = now.duration_since(at).unwrap_or_default();
                if age > HANDSHAKE_FRESH {
                    stale.push(format!("{peer}: last handshake {} s ago", age.as_secs()));
                }
            }
        }
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!("tunnel peers not up: {}", stale.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, handshake: Option<SystemTime>) -> PeerStats {
        PeerStats {
            peer: name.to_owned(),
            last_handshake: handshake,
            rx_bytes: 0,
            tx_bytes: 0,
        }
    }

    #[test]
    fn liveness_table() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(10);
        let mut s = HealthState::default();
        assert!(live(&s, t0, limit).is_err());
        s.heartbeat = Some(t0);
        assert!(live(&s, t0 + Duration::from_secs(10), limit).is_ok());
        let err = live(&s, t0 + Duration::from_secs(11), limit).unwrap_err();
        assert!(err.contains("silent for 11.0 s"), "{err}");
    }

    #[test]
    fn readiness_table() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let recent = Some(now - Duration::from_secs(30));
        let old = Some(now - Duration::from_secs(181));
        let ok = |s: &HealthState| ready(s, now);
        let mut s = HealthState::default();
        assert!(ok(&s).unwrap_err().contains("no apply"));
        s.last_apply = Some(Err("netlink: EPERM".into()));
        assert!(ok(&s).unwrap_err().contains("EPERM"));
        s.last_apply = Some(Ok(()));
        // A member node: no peers, ready as soon as the apply succeeded.
        assert_eq!(ok(&s), Ok(()));
        s.expected_peers = vec!["gw-a".into(), "gw-b".into()];
        s.peers = vec![peer("gw-a", recent)];
        assert!(ok(&s).unwrap_err().contains("gw-b: no handshake yet"));
        s.peers.push(peer("gw-b", old));
        assert!(
            ok(&s)
                .unwrap_err()
                .contains("gw-b: last handshake 181 s ago")
        );
        s.peers[1] = peer("gw-b", recent);
        assert_eq!(ok(&s), Ok(()));
        // Stats for peers that are no longer planned do not matter.
        s.peers.push(peer("gw-gone", None));
        assert_eq!(ok(&s), Ok(()));
    }
}
