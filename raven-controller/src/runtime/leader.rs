//! Leader election through a `coordination.k8s.io/v1` Lease, so two replicas can run and only
//! one writes.
//!
//! The holder renews `renewTime` every [`LeaderConfig::renew_every`]; another replica takes the
//! Lease over once `renewTime + leaseDurationSeconds` has passed. Every write goes through the
//! API server's optimistic concurrency (the Lease's resourceVersion), so two replicas can never
//! both win a takeover. A leader that cannot renew within the lease duration stops leading
//! (the caller exits, so a fresh process re-joins the election with clean caches).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tracing::{info, warn};

/// Leader election settings.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (`holderIdentity`).
    pub identity: String,
    /// `leaseDurationSeconds`.
    pub lease_duration: Duration,
    /// How often the holder renews (and a follower retries).
    pub renew_every: Duration,
}

/// The decision for one observation of the Lease: pure, so it is table-tested.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Nobody holds it (or the holder let it expire): write ourselves in.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds a live Lease.
    Follow {
        /// The current holder.
        holder: String,
    },
}

/// What to do about `lease` at `now`.
pub fn decide(lease: Option<&Lease>, me: &str, now: Timestamp) -> Step {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return Step::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return Step::Renew;
    }
    let live = crate::model::LeaseView::from_lease(&Lease {
        spec: Some(spec.clone()),
        ..Default::default()
    })
    .is_live(now);
    if holder.is_empty() || !live {
        Step::Acquire
    } else {
        Step::Follow { holder }
    }
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX).max(1)
}

/// Runs the election forever, publishing "am I the leader" on `tx`. Returns when leadership,
/// once held, is lost (the caller should exit).
pub async fn run(api: Api<Lease>, cfg: LeaderConfig, tx: watch::Sender<bool>) {
    let mut last_renew: Option<std::time::Instant> = None;
    loop {
        let now = Timestamp::now();
        let result = step_once(&api, &cfg, now).await;
        let leading = match result {
            Ok(true) => {
                last_renew = Some(std::time::Instant::now());
                true
            }
            Ok(false) => false,
            Err(e) => {
                warn!(error = %e, "leader election: lease update failed");
                // Keep leading only while the last successful renewal still covers us.
                last_renew.is_some_and(|t| t.elapsed() < cfg.lease_duration)
            }
        };
        let was = *tx.borrow();
        if leading != was {
            if leading {
                info!(identity = %cfg.identity, lease = %cfg.name, "became leader");
            } else {
                warn!(identity = %cfg.identity, "lost leadership");
            }
            let _ = tx.send(leading);
        }
        if was && !leading {
            return;
        }
        tokio::time::sleep(cfg.renew_every).await;
    }
}

/// One observe-decide-write round; `Ok(true)` when we hold the Lease afterwards.
async fn step_once(api: &Api<Lease>, cfg: &LeaderConfig, now: Timestamp) -> kube::Result<bool> {
    let current = api.get_opt(&cfg.name).await?;
    let step = decide(current.as_ref(), &cfg.identity, now);
    let stamp = MicroTime(now);
    match (step, current) {
        (Step::Follow { .. }, _) => Ok(false),
        (Step::Acquire, None) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(secs(cfg.lease_duration)),
                    acquire_time: Some(stamp.clone()),
                    renew_time: Some(stamp),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        (step, Some(mut lease)) => {
            let spec = lease.spec.get_or_insert_default();
            if step == Step::Acquire {
                spec.holder_identity = Some(cfg.identity.clone());
                spec.acquire_time = Some(stamp.clone());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.renew_time = Some(stamp);
            spec.lease_duration_seconds = Some(secs(cfg.lease_duration));
            // replace carries the resourceVersion: a concurrent takeover makes this a 409.
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        (Step::Renew, None) => Ok(false),
    }
}

/// Adds `d` to `t`, saturating (only for tests and logs).
pub fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: Timestamp, dur: i32) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(dur),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn decide_table() {
        let t0: Timestamp = "2025-01-01T00:00:00Z".parse().expect("time");
        let at = |s: u64| after(t0, Duration::from_secs(s));
        let cases = [
            ("absent", None, at(0), Step::Acquire),
            ("ours", Some(lease(Some("a"), t0, 15)), at(100), Step::Renew),
            (
                "theirs, live",
                Some(lease(Some("b"), t0, 15)),
                at(10),
                Step::Follow { holder: "b".into() },
            ),
            (
                "theirs, expired",
                Some(lease(Some("b"), t0, 15)),
                at(15),
                Step::Acquire,
            ),
            ("released", Some(lease(None, t0, 15)), at(1), Step::Acquire),
            ("no spec", Some(Lease::default()), at(1), Step::Acquire),
        ];
        for (name, l, now, want) in cases {
            assert_eq!(decide(l.as_ref(), "a", now), want, "{name}");
        }
    }
}
