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

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, AckKind};
use events::public;
use futures::StreamExt;
use platform::event_log::{event_types, LoggedCommit};
use platform::public_events::public_events;
use platform::streams::{self, DurableSpec};
use tokio::sync::{watch, Notify};

use crate::queue::{self, NewDelivery};
use crate::NotifierDeps;

/// Name of the notifier's durable consumer.
pub const CONSUMER_NAME: &str = "fe-notifier";
/// How long a commit may stay unacknowledged before JetStream redelivers it.
const ACK_WAIT: Duration = Duration::from_secs(60);
/// How long the intake waits for the projection before it lets the commit go round again.
const PROJECTION_WAIT: Duration = Duration::from_secs(20);
/// Messages fetched per pull request.
const BATCH: usize = 64;
const PULL_EXPIRES: Duration = Duration::from_secs(5);

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

/// Delay before a commit that could not be queued is delivered again: 1 s doubling to 30 s.
fn retry_delay(delivered: i64) -> Duration {
    let doublings = delivered.saturating_sub(1).clamp(0, 5) as u32;
    Duration::from_secs(1 << doublings).min(Duration::from_secs(30))
}

/// Why a commit was not queued this time.
#[derive(Debug, thiserror::Error)]
enum IntakeError {
    #[error("the projection has not reached the commit yet")]
    ProjectionBehind,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Consumes until `shutdown` turns true; re-subscribes with backoff after failures.
pub async fn run(deps: NotifierDeps, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(200);
    while !*shutdown.borrow() {
        match subscribe(&deps).await {
            Ok(consumer) => {
                backoff = Duration::from_millis(200);
                if consume(&deps, &consumer, &wake, &mut shutdown).await {
                    return;
                }
            }
            Err(e) => tracing::error!(error = %e, "notifier: cannot subscribe, retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn subscribe(
    deps: &NotifierDeps,
) -> Result<PullConsumer, Box<dyn std::error::Error + Send + Sync>> {
    let stream = deps
        .log
        .jetstream()
        .get_stream(streams::EVENTS_STREAM)
        .await?;
    Ok(streams::ensure_durable(&stream, &consumer_spec()).await?)
}

/// Handles batches until shutdown (true) or a consumer failure (false: subscribe again).
async fn consume(
    deps: &NotifierDeps,
    consumer: &PullConsumer,
    wake: &Notify,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        let batch = consumer
            .batch()
            .max_messages(BATCH)
            .expires(PULL_EXPIRES)
            .messages();
        let mut messages = tokio::select! {
            b = batch => match b {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "notifier: pulling failed");
                    return false;
                }
            },
            _ = shutdown.changed() => return true,
        };
        loop {
            let next = tokio::select! {
                n = messages.next() => n,
                _ = shutdown.changed() => return true,
            };
            match next {
                Some(Ok(message)) => handle(deps, message, wake).await,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "notifier: message stream error");
                    return false;
                }
                None => break,
            }
        }
    }
}

/// Queues one commit's deliveries and acknowledges it (or asks for redelivery).
async fn handle(deps: &NotifierDeps, message: jetstream::Message, wake: &Notify) {
    let public_count = event_types(message.headers.as_ref())
        .into_iter()
        .filter(|t| public::is_public(t))
        .count();
    if public_count == 0 {
        let _ = message.ack().await;
        return;
    }
    let commit = match LoggedCommit::from_message(&message) {
        Ok(commit) => commit,
        Err(e) => {
            metrics::counter!("fe_notifier_unreadable_commits_total").increment(1);
            tracing::error!(error = %e, "notifier: unreadable commit skipped");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let ack = match enqueue_commit(deps, &commit).await {
        Ok(queued) => {
            if queued > 0 {
                metrics::counter!("fe_webhook_deliveries_queued_total").increment(queued);
                wake.notify_one();
            }
            AckKind::Ack
        }
        Err(e) => {
            let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
            tracing::warn!(error = %e, seq = commit.stream_seq, "notifier: commit not queued, will retry");
            AckKind::Nak(Some(retry_delay(delivered)))
        }
    };
    if let Err(e) = message.ack_with(ack).await {
        tracing::warn!(error = %e, "notifier: acknowledging failed");
    }
}

/// The deliveries of one commit, queued; returns how many were new.
async fn enqueue_commit(deps: &NotifierDeps, commit: &LoggedCommit) -> Result<u64, IntakeError> {
    if !deps
        .watermark
        .wait_for(commit.stream_seq, PROJECTION_WAIT)
        .await
    {
        return Err(IntakeError::ProjectionBehind);
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
            .map(|d| retry_delay(*d).as_secs())
            .collect();
        assert_eq!(secs, [1, 1, 2, 4, 30, 30]);
    }
}
