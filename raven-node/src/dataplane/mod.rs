//! The data plane: applies a [`NodePlan`] to the kernel, observe → pure diff → apply.
//!
//! - [`observe`] reads only what Raven owns, with filtered dumps ([`Observed`]).
//! - [`diff`] (pure, table-tested) compares it with the plan and returns the minimal ordered
//!   [`Op`]s: nothing for an unchanged plan, MTU/MAC/remote changed in place, raven0
//!   re-created only for parameters the kernel cannot change.
//! - [`apply`] sends one netlink request per op, create-or-replace, continuing past failures.
//!
//! [`Dataplane::reconcile`] runs the three and reports; it is idempotent, and because it starts
//! from what the kernel has, an apply killed half-way converges on the next call.
//! [`Dataplane::cleanup`] removes everything we own and nothing else: ownership is the name
//! raven0 for the link and what is on it, and the protocol tag [`ROUTE_PROTOCOL`] for routes
//! and rules (so foreign routes in tables 9027/9028 and foreign rules survive).
//!
//! The tunnel device (`raven-wg0`, …) belongs to the tunnel driver; routes into it fail with a
//! clear error while it is missing, and everything else is still applied.

mod apply;
mod diff;
mod netlink;
mod observe;
mod observed;
mod op;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use apply::{ApplyReport, OpError};
pub use diff::{diff, diff_cleanup};
pub use netlink::{Counters, Netlink, NlError};
pub use observed::{
    FdbEntry, NeighbourEntry, Observed, ObservedLink, ObservedRoute, ObservedRule, ROUTE_PROTOCOL,
    VxlanParams, ZERO_MAC,
};
pub use op::{LinkChange, LinkSpec, Op};

pub use crate::plan::vxlan::RAVEN0;
use crate::plan::{NextHop, NodePlan};

/// Reads our kernel state; `devices` are the other devices the plan routes into.
pub async fn observe(nl: &Netlink, devices: &[String]) -> Result<Observed, NlError> {
    observe::observe(nl, devices).await
}

/// Applies ops produced by [`diff`] against `observed`.
pub async fn apply(nl: &Netlink, ops: &[Op], observed: &Observed) -> ApplyReport {
    apply::apply(nl, ops, observed).await
}

/// The devices other than raven0 that `plan`'s routes go through.
pub fn plan_devices(plan: &NodePlan) -> Vec<String> {
    let mut d: Vec<String> = plan
        .routes
        .iter()
        .filter_map(|r| match &r.next_hop {
            NextHop::Device(d) => Some(d.clone()),
            NextHop::Vtep(_) => None,
        })
        .collect();
    d.sort_unstable();
    d.dedup();
    d
}

/// The outcome of one reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Ops sent (one netlink request each; observation requests are not counted here).
    pub ops: usize,
    /// Why observation failed, if it did (then nothing was applied).
    pub observe_error: Option<NlError>,
    /// Ops the kernel refused; all the others were applied.
    pub errors: Vec<OpError>,
    /// Wall time of observe + diff + apply.
    pub duration: Duration,
}

impl Report {
    /// Whether the kernel now holds the whole plan.
    pub fn is_ok(&self) -> bool {
        self.observe_error.is_none() && self.errors.is_empty()
    }
}

/// A handle on the data plane of the network namespace it was created in.
#[derive(Clone, Debug)]
pub struct Dataplane {
    nl: Netlink,
}

impl Dataplane {
    /// Opens a netlink socket in the calling thread's network namespace; must be called inside
    /// a tokio runtime (it spawns the socket driver).
    pub fn connect() -> std::io::Result<Self> {
        Self::with_counters(Arc::new(Counters::default()))
    }

    /// Like [`Dataplane::connect`], counting into `counters` (shared with the metrics
    /// endpoint).
    pub fn with_counters(counters: Arc<Counters>) -> std::io::Result<Self> {
        Ok(Self {
            nl: Netlink::connect(counters)?,
        })
    }

    /// The counters.
    pub fn counters(&self) -> &Arc<Counters> {
        self.nl.counters()
    }

    /// The netlink connection, for callers composing observe/diff/apply themselves.
    pub fn netlink(&self) -> &Netlink {
        &self.nl
    }

    /// Reads our state, with the devices `plan` routes into resolved.
    pub async fn observe(&self, plan: &NodePlan) -> Result<Observed, NlError> {
        observe::observe(&self.nl, &plan_devices(plan)).await
    }

    /// Makes the kernel hold `plan`: observe, diff, apply.
    pub async fn reconcile(&self, plan: &NodePlan) -> Report {
        let start = Instant::now();
        let devices = plan_devices(plan);
        let report = match observe::observe(&self.nl, &devices).await {
            Err(e) => Report {
                observe_error: Some(e),
                ..Report::default()
            },
            Ok(observed) => {
                let ops = diff(plan, &observed);
                self.run(&ops, &observed).await
            }
        };
        self.finish(report, start)
    }

    /// Removes raven0, our routes and our rules; nothing else.
    pub async fn cleanup(&self) -> Report {
        let start = Instant::now();
        let report = match observe::observe(&self.nl, &[]).await {
            Err(e) => Report {
                observe_error: Some(e),
                ..Report::default()
            },
            Ok(observed) => {
                let ops = diff_cleanup(&observed);
                self.run(&ops, &observed).await
            }
        };
        self.finish(report, start)
    }

    async fn run(&self, ops: &[Op], observed: &Observed) -> Report {
        let applied = apply::apply(&self.nl, ops, observed).await;
        Report {
            ops: applied.ops,
            observe_error: None,
            errors: applied.errors,
            duration: Duration::ZERO,
        }
    }

    fn finish(&self, mut report: Report, start: Instant) -> Report {
        report.duration = start.elapsed();
        let c = self.nl.counters();
        Counters::add(&c.reconciles, 1);
        if !report.is_ok() {
            Counters::add(&c.failed_reconciles, 1);
        }
        c.last_reconcile_micros.store(
            u64::try_from(report.duration.as_micros()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        report
    }
}
