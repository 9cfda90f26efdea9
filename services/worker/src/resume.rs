//! Resuming work set aside ([`crate::deferred`]): one loop per worker process takes due items
//! from PostgreSQL and runs each exactly as a delivery of its commit would be run
//! ([`Worker::work`]), with its own slots (`FE_WORKER_CONCURRENCY` items at once).
//!
//! When an item becomes due:
//! * one waiting for a task: when the projection announces that task terminal (the settled
//!   feed of [`platform::settled`]); a sweep every [`ORPHAN_SWEEP`] catches any end whose
//!   announcement was missed;
//! * the others: when their delay is over.
//!
//! Due items are taken round robin over tenants (each tenant's oldest first, at most
//! `FE_WORKER_TENANT_CONCURRENCY` of a tenant per take), whenever a slot is free and at least
//! every [`DUE_SWEEP`]. A taken item is leased for the consumer's `ack_wait`, renewed while it
//! runs; a worker that dies holding items delays them by at most one lease. At shutdown the
//! items in flight get the drain time, then are dropped and their leases given back.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use events::task::TaskEvent;
use platform::consumer::Decode;
use platform::event_log::{EventLogError, LoggedCommit};
use tokio::sync::{broadcast, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::deferred::{self, Taken};
use crate::run::{Decision, Work, Worker, FAILURE_BACKOFF};

/// Longest a due item waits for a free slot to be noticed.
pub const DUE_SWEEP: Duration = Duration::from_millis(250);
/// How often items waiting for a task that is no longer open are made due (and the
/// `fe_worker_deferred_tasks` gauge is sampled).
pub const ORPHAN_SWEEP: Duration = Duration::from_secs(2);
/// Longest the leases are given back for at shutdown (PostgreSQL may be gone; they run out
/// by themselves then).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(1);
/// Most announcements handled in one statement.
const WAKE_BATCH: usize = 1024;

/// Runs until `shutdown` is cancelled, then drains.
pub(crate) async fn run(worker: Arc<Worker>, shutdown: CancellationToken) {
    let resumer = Resumer {
        owner: Uuid::new_v4(),
        lease: worker.deps.ack_wait,
        slots: Arc::new(Semaphore::new(worker.deps.concurrency.max(1))),
        in_flight: Arc::default(),
        finished: Arc::default(),
        tracker: TaskTracker::new(),
        abort: CancellationToken::new(),
        worker,
    };
    resumer.follow(&shutdown).await;
    resumer.drain().await;
}

struct Resumer {
    worker: Arc<Worker>,
    /// This process's id on the leases it takes.
    owner: Uuid,
    lease: Duration,
    slots: Arc<Semaphore>,
    in_flight: Arc<Mutex<HashSet<i64>>>,
    /// Woken when an item finishes (a slot is free again).
    finished: Arc<Notify>,
    tracker: TaskTracker,
    /// Drops the items still running once the drain time is over.
    abort: CancellationToken,
}

impl Resumer {
    async fn follow(&self, shutdown: &CancellationToken) {
        let pool = &self.worker.deps.pool;
        let mut feed = Some(self.worker.deps.watermark.settled_feed());
        let mut due = tokio::time::interval(DUE_SWEEP);
        let mut orphans = tokio::time::interval(ORPHAN_SWEEP);
        let mut renew = tokio::time::interval((self.lease / 3).max(Duration::from_millis(100)));
        for timer in [&mut due, &mut orphans, &mut renew] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                announced = next_announcement(&mut feed) => {
                    self.wake(&mut feed, announced).await;
                }
                _ = self.finished.notified() => {}
                _ = due.tick() => {}
                _ = orphans.tick() => {
                    if let Err(e) = deferred::wake_orphans(pool).await {
                        tracing::warn!(error = %e, "worker: sweeping set-aside work failed");
                    }
                    if let Ok(n) = deferred::waiting(pool).await {
                        metrics::gauge!("fe_worker_deferred_tasks").set(n as f64);
                    }
                }
                _ = renew.tick() => {
                    let seqs: Vec<i64> = self.in_flight().iter().copied().collect();
                    if let Err(e) = deferred::renew(pool, self.owner, &seqs, self.lease).await {
                        tracing::warn!(error = %e, "worker: renewing leases failed");
                    }
                    continue;
                }
            }
            self.take_due().await;
        }
    }

    /// Makes due the items waiting for the announced task and every other announcement
    /// already queued; after a lag, every item whose task is no longer open.
    async fn wake(
        &self,
        feed: &mut Option<broadcast::Receiver<Arc<str>>>,
        first: Result<Arc<str>, broadcast::error::RecvError>,
    ) {
        let pool = &self.worker.deps.pool;
        let mut ended = Vec::new();
        let mut lagged = false;
        let mut received = Some(first);
        while let Some(one) = received.take() {
            match one {
                Ok(payload) => ended.extend(platform::settled::parse_announcement(&payload)),
                Err(broadcast::error::RecvError::Lagged(_)) => lagged = true,
                Err(broadcast::error::RecvError::Closed) => *feed = None,
            }
            if ended.len() >= WAKE_BATCH {
                break;
            }
            // Whatever is queued already goes into the same statement.
            received = match feed.as_mut().map(broadcast::Receiver::try_recv) {
                Some(Ok(payload)) => Some(Ok(payload)),
                Some(Err(broadcast::error::TryRecvError::Lagged(n))) => {
                    Some(Err(broadcast::error::RecvError::Lagged(n)))
                }
                _ => None,
            };
        }
        let woken = if lagged {
            deferred::wake_orphans(pool).await
        } else {
            deferred::wake_after(pool, &ended).await
        };
        if let Err(e) = woken {
            tracing::warn!(error = %e, "worker: waking set-aside work failed (the sweep will)");
        }
    }

    /// Takes as many due items as there are free slots and starts each.
    async fn take_due(&self) {
        let free = self.slots.available_permits();
        if free == 0 {
            return;
        }
        let deps = &self.worker.deps;
        let per_tenant = deps.tenant_concurrency.max(1);
        let taken =
            match deferred::take_due(&deps.pool, self.owner, self.lease, per_tenant, free).await {
                Ok(taken) => taken,
                Err(e) => {
                    tracing::warn!(error = %e, "worker: taking set-aside work failed");
                    return;
                }
            };
        for item in taken {
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                // Cannot happen (one taker); the lease runs out and the item is taken again.
                break;
            };
            self.in_flight().insert(item.log_seq);
            let (worker, in_flight, finished) = (
                self.worker.clone(),
                self.in_flight.clone(),
                self.finished.clone(),
            );
            let abort = self.abort.clone();
            self.tracker.spawn(async move {
                let seq = item.log_seq;
                tokio::select! {
                    _ = resume_one(&worker, item) => {}
                    _ = abort.cancelled() => {}
                }
                in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&seq);
                drop(permit);
                finished.notify_one();
            });
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        // Only inserted into and removed from under the lock: consistent even if poisoned.
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets the items in flight finish within the drain time, drops the rest, and gives
    /// every lease of this process back.
    async fn drain(&self) {
        self.tracker.close();
        let drain = self.worker.deps.drain;
        if tokio::time::timeout(drain, self.tracker.wait())
            .await
            .is_err()
        {
            self.abort.cancel();
            self.tracker.wait().await;
        }
        let released = tokio::time::timeout(
            RELEASE_TIMEOUT,
            deferred::release(&self.worker.deps.pool, self.owner),
        )
        .await;
        if !matches!(released, Ok(Ok(_))) {
            tracing::warn!("worker: leases not given back at shutdown; they run out by themselves");
        }
    }
}

/// The next announcement, or never once the feed is gone (the sweeps go on).
async fn next_announcement(
    feed: &mut Option<broadcast::Receiver<Arc<str>>>,
) -> Result<Arc<str>, broadcast::error::RecvError> {
    match feed {
        Some(feed) => feed.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs one taken item as a delivery of its commit would be run, and records what became of
/// it: settled (row deleted), set aside again, or due again after a transient failure.
async fn resume_one(worker: &Worker, item: Taken) {
    let pool = &worker.deps.pool;
    let seq = u64::try_from(item.log_seq).unwrap_or_default();
    let attempt = i64::from(item.picks);
    let recorded = match worker.deps.log.logged_commit_at(seq).await {
        Ok(commit) => {
            let decision = decide(worker, &commit, attempt).await;
            record(worker, &commit, decision).await
        }
        Err(e @ (EventLogError::Nats(_) | EventLogError::Timeout(_))) => {
            tracing::warn!(error = %e, "worker: set-aside work not readable now, will retry");
            deferred::postpone(pool, seq, FAILURE_BACKOFF.delay(attempt)).await
        }
        Err(e) => {
            // Set aside only after its delivery was read and decoded: not reachable unless the
            // log itself changed. Logged, counted, and dropped from the table (it stays in the
            // log for audit), like an unreadable delivery.
            tracing::error!(error = %e, seq, "worker: set-aside work is unreadable, dropped");
            metrics::counter!("fe_worker_unreadable_commits_total").increment(1);
            deferred::settle(pool, seq).await
        }
    };
    if let Err(e) = recorded {
        tracing::warn!(error = %e, seq, "worker: outcome of set-aside work not recorded; its lease runs out");
    }
}

async fn decide(worker: &Worker, commit: &LoggedCommit, attempt: i64) -> Decision {
    match Vec::<TaskEvent>::decode(commit) {
        Ok(events) => match Work::of(&events) {
            Some(work) => worker.work(commit, work, attempt).await,
            None => Decision::Done,
        },
        Err(e) => {
            tracing::error!(error = %e, "worker: set-aside work does not decode, dropped");
            metrics::counter!("fe_worker_unreadable_commits_total").increment(1);
            Decision::Done
        }
    }
}

async fn record(
    worker: &Worker,
    commit: &LoggedCommit,
    decision: Decision,
) -> Result<(), sqlx::Error> {
    let (pool, seq) = (&worker.deps.pool, commit.stream_seq);
    match decision {
        Decision::Done => deferred::settle(pool, seq).await,
        Decision::Defer { wait, reason } => worker.set_aside(commit, wait, reason).await,
        Decision::Retry { reason, delay } => {
            tracing::warn!(%reason, "worker: set-aside work failed, will retry");
            deferred::postpone(pool, seq, delay).await
        }
    }
}
