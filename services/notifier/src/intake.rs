//! The intake: a durable JetStream consumer (`fe-notifier`) on the whole log that turns each
//! commit into queued deliveries, then acknowledges it.
//!
//! For each commit: skip it (ack) when it holds no public event type (from the
//! `Fe-Event-Types` header, no parsing); otherwise wait until the projection has passed the
//! commit (so the subscriptions read model says exactly which subscriptions were live at this
//! log position, and the audit projection has stored the commit's events), read those public
//! events (the audit index's own bytes, `platform::public_events`), match them
//! against the tenant's live subscriptions and queue one delivery per (subscription, event).
//! Queueing is idempotent, so a redelivered commit changes nothing; the ack comes only after
//! the queue committed, so a crash in between redelivers the commit (at-least-once).
//!
//! Sending is the engine's job: the intake never waits for a receiver, so no subscriber can
//! slow it down. Database trouble is retried with `Nak(delay)` (1 s doubling to 30 s);
//! `max_deliver` is unlimited so nothing is lost while PostgreSQL is down.
//!
//! It runs on the consumer runtime ([`platform::consumer`]) with one slot: commits are queued
//! in log order, so deliveries of one subscription are queued in the order of their events.

use std::sync::Arc;
use std::time::Duration;

use events::public;
use platform::consumer::{self, Backoff, ConsumerSettings, Delivery, Handler, Outcome};
use platform::event_log::LoggedCommit;
use platform::projection::Projected;
use platform::public_events::public_events;
use platform::streams::{self, DurableSpec};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::queue::{self, NewDelivery};
use crate::NotifierDeps;

/// Name of the notifier's durable consumer.
pub const CONSUMER_NAME: &str = "fe-notifier";
/// How long a commit may stay unacknowledged before JetStream redelivers it.
const ACK_WAIT: Duration = Duration::from_secs(60);
/// How long the intake waits for the projection before it lets the commit go round again.
const PROJECTION_WAIT: Duration = Duration::from_secs(20);
/// Delays before a commit that could not be queued is delivered again: 1 s doubling to 30 s.
const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

/// The notifier's consumer: every commit of every tenant, never given up on. `backoff` stays
/// empty (it would override `ack_wait`); retries are explicit `Nak(delay)`.
pub fn consumer_spec() -> DurableSpec {
    DurableSpec {
        name: CONSUMER_NAME,
        filter_subject: streams::EVENTS_SUBJECTS.to_string(),
        ack_wait: ACK_WAIT,
        max_deliver: -1,
        backoff: Vec::new(),
        max_ack_pending: 1024,
    }
}

/// Why a commit was not queued this time.
#[derive(Debug, thiserror::Error)]
enum IntakeError {
    #[error("the projection has not reached the commit yet")]
    ProjectionBehind,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Consumes until `shutdown` is cancelled, then drains within `drain`.
pub async fn run(
    deps: NotifierDeps,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let settings = ConsumerSettings {
        spec: consumer_spec(),
        concurrency: 1,
        drain,
    };
    let js = deps.log.jetstream().clone();
    consumer::run(js, settings, Arc::new(Intake { deps, wake }), shutdown).await;
}

struct Intake {
    deps: NotifierDeps,
    wake: Arc<Notify>,
}

impl Handler for Intake {
    /// Public events are mapped from the commit itself ([`public_events`]).
    type Events = ();

    fn wants(&self, event_types: &[&str]) -> bool {
        event_types.iter().any(|t| public::is_public(t))
    }

    async fn handle(&self, delivery: &Delivery<()>) -> Outcome {
        match enqueue_commit(&self.deps, &delivery.commit).await {
            Ok(queued) => {
                if queued > 0 {
                    metrics::counter!("fe_webhook_deliveries_queued_total").increment(queued);
                    self.wake.notify_one();
                }
                Outcome::Done
            }
            Err(e) => {
                tracing::warn!(error = %e, "notifier: commit not queued, will retry");
                Outcome::retry(e.to_string(), RETRY.delay(delivery.delivered))
            }
        }
    }
}

/// The deliveries of one commit, queued; returns how many were new.
async fn enqueue_commit(deps: &NotifierDeps, commit: &LoggedCommit) -> Result<u64, IntakeError> {
    // Only the commit's own tenant matters: a parked or slow tenant never holds up others.
    match deps
        .watermark
        .wait_for_tenant(&commit.tenant, commit.stream_seq, PROJECTION_WAIT)
        .await
    {
        Projected::Applied => {}
        Projected::Pending | Projected::Parked { .. } => return Err(IntakeError::ProjectionBehind),
    }
    let subscriptions =
        queue::live_subscriptions(&deps.pool, &commit.tenant, commit.stream_seq).await?;
    if subscriptions.is_empty() {
        return Ok(0);
    }
    let events = public_events(&deps.pool, commit).await?;
    let mut rows = Vec::new();
    for event in &events {
        let body = &event.body;
        for subscription in &subscriptions {
            if subscription.matches(&event.short_type, &event.paths) {
                rows.push(NewDelivery {
                    tenant: commit.tenant.as_str().to_owned(),
                    subscription_id: subscription.id,
                    event_id: event.event.id.clone(),
                    event_type: event.short_type.clone(),
                    seq: i64::try_from(event.seq).unwrap_or(i64::MAX),
                    body: body.clone(),
                });
            }
        }
    }
    Ok(queue::enqueue(&deps.pool, &rows).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_never_gives_up_and_keeps_its_ack_wait() {
        let spec = consumer_spec();
        assert_eq!(spec.max_deliver, -1);
        assert!(spec.backoff.is_empty());
        assert_eq!(spec.filter_subject, "fe.ev.>");
    }

    #[test]
    fn retries_double_then_cap() {
        let secs: Vec<u64> = [0, 1, 2, 3, 6, 100]
            .iter()
            .map(|d| RETRY.delay(*d).as_secs())
            .collect();
        assert_eq!(secs, [1, 1, 2, 4, 30, 30]);
    }
}
