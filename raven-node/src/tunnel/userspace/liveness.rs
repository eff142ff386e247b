//! Dead-session detection that boringtun's timers miss.
//!
//! WireGuard starts a new handshake when it has *sent data* and heard nothing authenticated
//! for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT (15 s). boringtun counts only data, not keepalives,
//! so a NATed initiator whose traffic is idle except for persistent keepalives never notices
//! that its peer restarted and lost the session: it keeps sending keepalives the peer cannot
//! decrypt (unknown receiver index), and the peer cannot reach it first (it does not know the
//! NAT's address). Nothing recovers until the session expires (up to 180 s).
//!
//! This module closes the gap the WireGuard way, from the peer that keeps the path open:
//! - a peer with persistent keepalive treats each keepalive as a probe; if nothing
//!   authenticated arrives for 15 s after an unanswered one, it forces a handshake;
//! - a peer without persistent keepalive answers a keepalive with one of its own (at most every
//!   [`ECHO_EVERY_MS`]), so a healthy idle link never looks dead to the prober;
//! - once boringtun gave up on a handshake (REKEY_ATTEMPT_TIME), a keepalive peer keeps
//!   retrying every keepalive interval, as kernel WireGuard's keepalive timer does.
//!
//! - a peer that never answered yet (first contact: just configured, e.g. after a gateway
//!   failover) is retried quickly with doubling gaps from [`FIRST_RETRY_MS`] during the first
//!   REKEY_TIMEOUT, instead of once after 5 s: its first initiation often arrives before the
//!   far side has configured us (both learn of the change at about the same time) and is lost.
//!
//! The state is a handful of atomics (milliseconds since a process epoch, 0 = never), so the
//! packet threads update it without locking or allocating. [`decide`] is pure.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// KEEPALIVE_TIMEOUT + REKEY_TIMEOUT of the WireGuard paper, in milliseconds.
pub(crate) const DEAD_AFTER_MS: u64 = 15_000;
/// REKEY_TIMEOUT: never force handshakes closer together than this.
pub(crate) const REKEY_TIMEOUT_MS: u64 = 5_000;
/// First-contact retry: the first gap; later gaps double (250, 250, 500, 1000, 2000 ms).
pub(crate) const FIRST_RETRY_MS: u64 = 250;
/// Least interval between keepalives sent back to a probing peer.
pub(crate) const ECHO_EVERY_MS: u64 = 5_000;

/// Milliseconds since the process epoch, never 0 (0 means "never" in [`Liveness`]).
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
}

/// Per-peer timestamps (ms since the epoch, 0 = never).
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    /// Last authenticated packet from the peer.
    received: AtomicU64,
    /// First keepalive sent after `received` (the probe still waiting for an answer).
    probe: AtomicU64,
    /// Last handshake this module forced.
    forced: AtomicU64,
    /// Last keepalive sent back to a probing peer.
    echoed: AtomicU64,
    /// When the peer was configured (0 = unknown: no first-contact retries).
    born: AtomicU64,
}

/// What the timer thread should do for a peer this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing.
    Wait,
    /// Force a new handshake initiation.
    Handshake,
}

/// A snapshot of one peer's timers, for [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub now: u64,
    pub received: u64,
    pub probe: u64,
    pub forced: u64,
    /// When the peer was configured (0 = unknown).
    pub born: u64,
    /// Persistent keepalive interval in ms, if this side keeps the path open.
    pub keepalive_ms: Option<u64>,
    /// boringtun gave up handshaking (REKEY_ATTEMPT_TIME) and sends nothing any more.
    pub expired: bool,
}

/// Pure decision: force a handshake or wait.
pub(crate) fn decide(s: Snapshot) -> Action {
    if s.born != 0 && s.received == 0 && s.now.saturating_sub(s.born) < REKEY_TIMEOUT_MS {
        // First contact: doubling gaps, whatever the keepalive setting.
        let last = s.forced.max(s.born);
        let gap = FIRST_RETRY_MS.max(last - s.born);
        return if s.now.saturating_sub(last) >= gap {
            Action::Handshake
        } else {
            Action::Wait
        };
    }
    let Some(keepalive_ms) = s.keepalive_ms else {
        // The side without keepalive cannot probe: its peer may be idle on purpose.
        return Action::Wait;
    };
    let since = |t: u64| s.now.saturating_sub(t);
    let spaced = s.forced == 0 || since(s.forced) >= REKEY_TIMEOUT_MS.max(keepalive_ms);
    let unanswered = s.probe != 0 && s.probe > s.received && since(s.probe) >= DEAD_AFTER_MS;
    if spaced && (unanswered || s.expired) {
        Action::Handshake
    } else {
        Action::Wait
    }
}

impl Liveness {
    /// Timers of a peer configured at `now` (first-contact retries start from here).
    pub fn born_at(now: u64) -> Self {
        let l = Self::default();
        l.born.store(now, Ordering::Relaxed);
        l
    }

    /// Whether the peer never sent anything authenticated yet.
    pub fn first_contact(&self) -> bool {
        self.received.load(Ordering::Relaxed) == 0
    }

    /// An authenticated packet arrived from the peer.
    pub fn received(&self, now: u64) {
        self.received.store(now, Ordering::Relaxed);
    }

    /// A keepalive went out: it starts a probe unless one is already pending.
    pub fn keepalive_sent(&self, now: u64) {
        let probe = self.probe.load(Ordering::Relaxed);
        if probe <= self.received.load(Ordering::Relaxed) {
            self.probe.store(now, Ordering::Relaxed);
        }
    }

    /// A handshake was forced: the probe is settled (boringtun now retries the handshake).
    pub fn forced(&self, now: u64) {
        self.forced.store(now, Ordering::Relaxed);
        self.probe.store(0, Ordering::Relaxed);
    }

    /// Whether a keepalive should be echoed now; records it if so.
    pub fn echo_due(&self, now: u64) -> bool {
        let last = self.echoed.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < ECHO_EVERY_MS {
            return false;
        }
        self.echoed.store(now, Ordering::Relaxed);
        true
    }

    /// The timers, for [`decide`].
    pub fn snapshot(&self, now: u64, keepalive_ms: Option<u64>, expired: bool) -> Snapshot {
        Snapshot {
            now,
            received: self.received.load(Ordering::Relaxed),
            probe: self.probe.load(Ordering::Relaxed),
            forced: self.forced.load(Ordering::Relaxed),
            born: self.born.load(Ordering::Relaxed),
            keepalive_ms,
            expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(now: u64, received: u64, probe: u64, forced: u64) -> Snapshot {
        Snapshot {
            now,
            received,
            probe,
            forced,
            born: 0,
            keepalive_ms: Some(5_000),
            expired: false,
        }
    }

    #[test]
    fn first_contact_retries_double_then_stop() {
        let first = |now: u64, forced: u64| Snapshot {
            born: 1_000,
            keepalive_ms: None,
            ..snap(now, 0, 0, forced)
        };
        let due: Vec<u64> = {
            // Simulate the 250 ms timer tick from the moment the peer was configured.
            let mut forced = 0;
            let mut sent = Vec::new();
            for now in (1_000..12_000).step_by(250) {
                if decide(first(now, forced)) == Action::Handshake {
                    forced = now;
                    sent.push(now - 1_000);
                }
            }
            sent
        };
        assert_eq!(due, vec![250, 500, 1_000, 2_000, 4_000]);
        let answered = Snapshot {
            received: 1_100,
            ..first(1_250, 0)
        };
        assert_eq!(
            decide(answered),
            Action::Wait,
            "a peer that answered is not retried"
        );
    }

    #[test]
    fn decisions() {
        use Action::*;
        let cases = [
            ("answered probe", snap(40_000, 21_000, 20_000, 0), Wait),
            ("young probe", snap(34_000, 10_000, 20_000, 0), Wait),
            ("dead for 15 s", snap(35_000, 10_000, 20_000, 0), Handshake),
            ("no probe yet", snap(35_000, 10_000, 0, 0), Wait),
            (
                "forced too recently",
                snap(35_000, 10_000, 20_000, 32_000),
                Wait,
            ),
            (
                "forced long ago",
                snap(35_000, 10_000, 20_000, 25_000),
                Handshake,
            ),
            (
                "no keepalive: never probes",
                Snapshot {
                    keepalive_ms: None,
                    ..snap(99_000, 1, 2, 0)
                },
                Wait,
            ),
            (
                "expired: retry every keepalive",
                Snapshot {
                    expired: true,
                    ..snap(99_000, 1, 0, 90_000)
                },
                Handshake,
            ),
            (
                "expired, retried just now",
                Snapshot {
                    expired: true,
                    ..snap(99_000, 1, 0, 97_000)
                },
                Wait,
            ),
        ];
        for (name, s, want) in cases {
            assert_eq!(decide(s), want, "{name}: {s:?}");
        }
    }

    #[test]
    fn a_probe_starts_once_and_settles() {
        let l = Liveness::default();
        l.received(100);
        l.keepalive_sent(200);
        l.keepalive_sent(5_200);
        assert_eq!(
            l.snapshot(6_000, None, false).probe,
            200,
            "first unanswered keepalive"
        );
        l.received(5_300);
        l.keepalive_sent(10_200);
        assert_eq!(
            l.snapshot(11_000, None, false).probe,
            10_200,
            "new probe after an answer"
        );
        l.forced(12_000);
        let s = l.snapshot(13_000, None, false);
        assert_eq!((s.probe, s.forced), (0, 12_000));
    }

    #[test]
    fn echoes_are_spaced() {
        let l = Liveness::default();
        assert!(l.echo_due(1_000));
        assert!(!l.echo_due(3_000));
        assert!(l.echo_due(6_000));
    }

    #[test]
    fn clock_is_never_zero() {
        assert!(now_ms() >= 1);
    }
}
