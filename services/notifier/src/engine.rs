//! The delivery engine: claims due deliveries, sends each on its own task, records the
//! outcome, and decides retries, death and disabling.
//!
//! Isolation: a process sends at most `FE_WEBHOOK_CONCURRENCY` deliveries at once and at most
//! `FE_WEBHOOK_SUBSCRIPTION_CONCURRENCY` per subscription; a subscription at its limit is left
//! out of the next claims, so a slow or dead receiver (each attempt bounded by
//! `FE_WEBHOOK_TIMEOUT_S`) occupies only its own slots and never the intake, the log or other
//! subscriptions. The engine wakes when the intake queued something, when a slot frees up,
//! and otherwise every [`POLL`] (retries come due, other replicas queue work).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;
use uuid::Uuid;

use crate::outcome::{self, AttemptRecord};
use crate::policy;
use crate::queue::{self, Budget, Claimed};
use crate::send::{Attempt, Outcome};
use crate::{disable, NotifierDeps};

/// Longest pause between claims when nothing wakes the engine.
pub const POLL: Duration = Duration::from_millis(500);
/// Finished deliveries are kept this long for the delivery log, then purged.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
const PURGE_EVERY: Duration = Duration::from_secs(600);
/// How long shutdown waits for attempts in flight; the rest are retried after their lease.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// Deliveries in flight per subscription in this process.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<HashMap<Uuid, usize>>>);

impl InFlight {
    fn snapshot(&self) -> HashMap<Uuid, usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn add(&self, subscription: Uuid) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(subscription)
            .or_default() += 1;
    }

    fn remove(&self, subscription: Uuid) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&subscription) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&subscription);
            }
        }
    }
}

/// Holds one delivery's slots; releasing them wakes the engine.
struct Slot {
    _permit: OwnedSemaphorePermit,
    subscription: Uuid,
    in_flight: InFlight,
    wake: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.remove(self.subscription);
        self.wake.notify_one();
    }
}

/// Runs until `shutdown` turns true.
pub async fn run(deps: NotifierDeps, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    let settings = deps.settings.clone();
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let in_flight = InFlight::default();
    let mut tasks = JoinSet::new();
    let mut last_purge = Instant::now();
    // The lease outlives the attempt, so a live sender never has its row claimed twice.
    let lease = settings.timeout + Duration::from_secs(30);
    while !*shutdown.borrow() {
        while tasks.try_join_next().is_some() {}
        let budget = Budget {
            total: permits.available_permits(),
            per_subscription: settings.per_subscription.max(1),
            in_flight: in_flight.snapshot(),
        };
        let claimed = match queue::claim(&deps.pool, &budget, lease).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "notifier: claiming deliveries failed");
                Vec::new()
            }
        };
        let idle = claimed.is_empty();
        for delivery in claimed {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break; // cannot happen: the claim stayed within the free permits
            };
            in_flight.add(delivery.subscription_id);
            let slot = Slot {
                _permit: permit,
                subscription: delivery.subscription_id,
                in_flight: in_flight.clone(),
                wake: wake.clone(),
            };
            let span = tracing::info_span!("delivery", delivery = delivery.id, subscription = %delivery.subscription_id, attempt = delivery.attempts);
            tasks.spawn(deliver(deps.clone(), delivery, slot).instrument(span));
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = Instant::now();
            purge(&deps).await;
        }
        if idle {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tasks.shutdown().await;
    }
}

async fn purge(deps: &NotifierDeps) {
    match outcome::purge_finished(&deps.pool, RETENTION).await {
        Ok(n) if n > 0 => tracing::info!(purged = n, "notifier: old deliveries purged"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "notifier: purging old deliveries failed"),
    }
}

/// Sends one claimed delivery and records what happened. The slot is held until the outcome
/// is recorded.
async fn deliver(deps: NotifierDeps, delivery: Claimed, _slot: Slot) {
    let Ok(tenant) = events::TenantId::parse(&delivery.tenant) else {
        tracing::error!("notifier: delivery with an invalid tenant skipped");
        return;
    };
    let secret = deps
        .secret_key
        .subscription_secret(&tenant, delivery.subscription_id);
    let attempt = Attempt {
        url: &delivery.url,
        body: &delivery.body,
        secret: &secret,
        event_id: &delivery.event_id,
        delivery_id: delivery.id,
    };
    let started_at = Utc::now();
    let (outcome, duration) = deps.sender.send(&attempt).await;
    metrics::histogram!("fe_webhook_attempt_seconds").record(duration.as_secs_f64());
    let result = match outcome {
        Outcome::Delivered { status } => {
            metrics::counter!("fe_webhook_attempts_total", "outcome" => "delivered").increment(1);
            let record = AttemptRecord {
                started_at,
                duration,
                status: Some(status),
                error: None,
            };
            outcome::record_delivered(&deps.pool, &delivery, &record).await
        }
        Outcome::Failed { status, error } => {
            metrics::counter!("fe_webhook_attempts_total", "outcome" => "failed").increment(1);
            tracing::info!(status, %error, "notifier: delivery attempt failed");
            let record = AttemptRecord {
                started_at,
                duration,
                status,
                error: Some(error),
            };
            record_failure(&deps, &delivery, &record).await
        }
    };
    if let Err(e) = result {
        // The lease runs out and the delivery is attempted again: at-least-once.
        tracing::warn!(error = %e, "notifier: recording the attempt failed");
    }
}

async fn record_failure(
    deps: &NotifierDeps,
    delivery: &Claimed,
    record: &AttemptRecord,
) -> Result<(), sqlx::Error> {
    let s = &deps.settings;
    let failed_attempts = u32::try_from(delivery.attempts).unwrap_or(1);
    let retry_in = policy::retry_delay(failed_attempts, policy::random_jitter());
    let recorded = outcome::record_failed(
        &deps.pool,
        delivery,
        record,
        retry_in,
        s.give_up,
        s.disable_after,
    )
    .await?;
    if recorded.dead {
        metrics::counter!("fe_webhook_dead_total").increment(1);
        tracing::warn!("notifier: delivery given up (dead)");
    }
    if recorded.failing_too_long {
        let reason = format!(
            "deliveries failed without a success for {} s; last error: {}",
            s.disable_after.as_secs(),
            record.error.as_deref().unwrap_or("unknown")
        );
        let disabled = disable::disable(
            &deps.log,
            &deps.pool,
            &delivery.tenant,
            delivery.subscription_id,
            &reason,
        );
        if let Err(e) = disabled.await {
            tracing::warn!(error = %e, "notifier: disabling the subscription failed; will retry");
        }
    }
    Ok(())
}
