//! The kube-rs side: observe the cluster through watch caches, run level-triggered reconcile
//! passes over the pure planners, and apply their writes; only while holding the leader Lease.
//!
//! Loop: a pass runs when a relevant watch event arrives (coalesced over
//! [`Settings::debounce`]), when an active endpoint's health Lease is due to expire (so
//! failover does not wait for the Node to go NotReady, nor for the resync), and at least every
//! [`Settings::resync`] (upstream has no periodic requeue, openyurt#2797).

pub mod leader;
pub mod metrics;
pub mod observe;
pub mod pass;
pub mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::Api;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::domains::DomainConfig;
use crate::election::LeasePolicy;
use crate::model::LeaseView;

/// Everything the runtime is configured with (from the command line).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Domain planner choices.
    pub domains: DomainConfig,
    /// Treatment of nodes without a health Lease.
    pub lease_policy: LeasePolicy,
    /// Longest time between two full passes.
    pub resync: Duration,
    /// How long to collect events before a pass.
    pub debounce: Duration,
    /// Concurrent writes per group.
    pub concurrency: usize,
    /// Leader election.
    pub leader: leader::LeaderConfig,
    /// Look for the NodePool CRD (off: pools come from node labels only).
    pub discover_nodepools: bool,
}

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A cache never became ready.
    #[error("watch caches did not become ready: {0}")]
    Caches(String),
    /// Leadership was lost; the process should exit and re-join.
    #[error("leadership lost")]
    LeadershipLost,
}

/// The instant (monotonic) a wall-clock expiry corresponds to.
fn instant_of(t: Timestamp) -> Instant {
    let now = Timestamp::now();
    let delta = t.duration_since(now);
    let d = Duration::try_from(delta).unwrap_or(Duration::ZERO);
    Instant::now() + d
}

/// Whether any seat holder's Lease has expired by now (read from the cache).
fn any_seat_expired(
    stores: &observe::Stores,
    seats: &std::collections::BTreeMap<String, Timestamp>,
) -> bool {
    let now = Timestamp::now();
    seats.keys().any(|node| {
        let name = crate::model::node_lease_name(node);
        stores
            .leases
            .state()
            .iter()
            .find(|l| l.metadata.name.as_deref() == Some(name.as_str()))
            .is_some_and(|l| !LeaseView::from_lease(l).is_live(now))
    })
}

/// Hands memory freed by a pass back to the kernel. glibc keeps freed heap pages mapped, so
/// the transient copies of a 10k-node cold-start pass would otherwise stay resident for good.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_freed_memory() {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: glibc's malloc_trim takes no pointers and locks each arena itself; it is safe to
    // call at any time from any thread.
    unsafe {
        malloc_trim(0);
    }
}

/// Other allocators return memory on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_freed_memory() {}

/// Runs the controller until leadership is lost or a fatal error.
pub async fn run(client: Client, settings: Settings) -> Result<(), RunError> {
    let trigger = Arc::new(Notify::new());
    let node_labels = [
        settings.domains.pool_label.clone(),
        settings.domains.candidate_label.clone(),
        raven_api::wellknown::LABEL_GATEWAY.to_owned(),
    ]
    .into_iter()
    .collect();
    let stores = observe::start(&client, trigger.clone(), node_labels);
    let (tx, mut leading) = watch::channel(false);
    let lease_api: Api<Lease> = Api::namespaced(client.clone(), &settings.leader.namespace);
    let leader_task = tokio::spawn(leader::run(lease_api, settings.leader.clone(), tx));

    observe::wait_ready(&stores)
        .await
        .map_err(RunError::Caches)?;
    info!("caches ready");
    let mut pools_started = false;
    let check_pools = |started: bool| settings.discover_nodepools && !started;
    if check_pools(pools_started) && observe::nodepools_served(&client).await {
        info!("NodePool API found; reading pools from it");
        observe::start_pools(&client, &stores, trigger.clone()).await;
        pools_started = true;
    }

    let ctx = pass::Context::new(client.clone(), settings.clone());
    ctx.seed_reports().await;
    let mut next_resync = Instant::now();
    let mut seats = std::collections::BTreeMap::new();
    let mut was_leader = false;
    let mut first_pass = true;
    loop {
        let lease_wake = seats
            .values()
            .min()
            .map(|t: &Timestamp| instant_of(*t) + Duration::from_millis(20));
        let wake = lease_wake.map_or(next_resync, |w| w.min(next_resync));
        let mut by_lease = false;
        tokio::select! {
            _ = trigger.notified() => {}
            _ = tokio::time::sleep_until(wake.into()) => { by_lease = Some(wake) == lease_wake; }
            r = leading.changed() => {
                if r.is_err() || (was_leader && !*leading.borrow()) {
                    leader_task.abort();
                    return Err(RunError::LeadershipLost);
                }
            }
        }
        metrics::metrics().leader.set(i64::from(*leading.borrow()));
        if !*leading.borrow() {
            // Follower: keep the caches warm, write nothing, wait to be promoted.
            if leading.changed().await.is_err() {
                return Err(RunError::LeadershipLost);
            }
            next_resync = Instant::now();
            first_pass = true;
            continue;
        }
        was_leader = true;
        let resync_due = Instant::now() >= next_resync;
        if by_lease && !resync_due && !any_seat_expired(&stores, &seats) {
            // A seat holder renewed in time: only move the timer.
            seats = seats
                .keys()
                .filter_map(|n| {
                    let name = crate::model::node_lease_name(n);
                    let l = stores
                        .leases
                        .state()
                        .into_iter()
                        .find(|l| l.metadata.name.as_deref() == Some(name.as_str()))?;
                    Some((n.clone(), LeaseView::from_lease(&l).expires_at()?))
                })
                .collect();
            continue;
        }
        // Debounce collects a burst of watch events into one pass. The first pass of a term
        // has nothing to collect (the caches were complete before it) and is the cold
        // start's critical path, so it starts at once.
        if !first_pass {
            tokio::time::sleep(settings.debounce).await;
        }
        first_pass = false;
        if check_pools(pools_started) && resync_due && observe::nodepools_served(&client).await {
            info!("NodePool API appeared; reading pools from it");
            observe::start_pools(&client, &stores, trigger.clone()).await;
            pools_started = true;
        }
        let started = Instant::now();
        let outcome = pass::run_pass(&ctx, &stores).await;
        let m = metrics::metrics();
        m.passes.inc();
        m.pass_duration.observe(started.elapsed().as_secs_f64());
        m.writes.inc_by(outcome.writes);
        m.write_failures.inc_by(outcome.failures);
        m.last_pass.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        );
        if outcome.writes > 0 || resync_due {
            info!(
                writes = outcome.writes,
                failures = outcome.failures,
                total_writes = ctx.writes.load(std::sync::atomic::Ordering::Relaxed),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "pass done"
            );
        }
        if outcome.failures > 0 {
            warn!("some writes failed; retrying soon");
            trigger.notify_one();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if outcome.writes > 0 {
            release_freed_memory();
        }
        seats = outcome.seat_leases;
        if resync_due {
            next_resync = Instant::now() + settings.resync;
        }
    }
}
