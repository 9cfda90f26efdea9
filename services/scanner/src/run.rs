//! The consumer loop: take a commit, scan its upload, acknowledge or retry.
//!
//! Structured like the worker's loop (`services/worker/src/run.rs`): subscribe (retrying with
//! backoff while JetStream is unreachable), hand each delivery to its own task in a `JoinSet`,
//! and stop taking work when the shutdown channel turns true. Unlike the worker it takes a
//! delivery only once a scan slot is free (one pull request for one message per free slot):
//! scans are long, and messages waiting in a local buffer would let other scanner processes
//! idle and risk redelivery while queued. Every delivery sends `Progress` at a third of
//! `ack_wait` for as long as it is handled, so a long scan is not redelivered meanwhile.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use platform::event_log::LoggedCommit;
use platform::streams::{self, DurableSpec};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::scan::{self, Outcome};
use crate::ScannerDeps;

/// Name of the scanner's durable consumer.
pub const CONSUMER_NAME: &str = "fe-scanner";
/// First delay after a failed attempt; doubles per delivery up to [`RETRY_CAP`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest delay between attempts while clamd (or the log, or storage) stays unreachable.
pub const RETRY_CAP: Duration = Duration::from_secs(30);
/// How long one pull request waits for a message before it is renewed.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// How long shutdown waits for scans in flight before abandoning them to redelivery.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// The scanner's durable consumer: every task commit of every tenant.
///
/// `max_deliver` is unlimited (-1): while clamd is down files must wait, not fail, and every
/// retry is a `Nak` with a capped delay ([`retry_delay`]). `backoff` stays empty because the
/// server would replace `ack_wait` with its first step and redeliver long scans mid-way.
pub fn consumer_spec(ack_wait: Duration) -> DurableSpec {
    DurableSpec {
        name: CONSUMER_NAME,
        filter_subject: "fe.ev.*.task.>".to_string(),
        ack_wait,
        max_deliver: -1,
        backoff: Vec::new(),
        max_ack_pending: 256,
    }
}

/// Delay before the next delivery after `delivered` unsuccessful ones: 1 s, 2 s, 4 s, ...
/// capped at 30 s.
pub fn retry_delay(delivered: i64) -> Duration {
    // Clamped to 0..=16 first, so the cast cannot truncate (2^16 s is far above the cap).
    let doublings = delivered.saturating_sub(1).clamp(0, 16) as u32;
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_CAP)
}

/// Consumes until `shutdown` turns true, then gives scans in flight [`SHUTDOWN_GRACE`] to
/// finish; any still running are dropped unacknowledged and redelivered later.
pub async fn run(deps: ScannerDeps, mut shutdown: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(deps.concurrency.max(1)));
    let mut in_flight = JoinSet::new();
    let mut backoff = Duration::from_millis(200);
    loop {
        let subscribed = tokio::select! {
            subscribed = subscribe(&deps) => subscribed,
            _ = stopped(&mut shutdown) => break,
        };
        match subscribed {
            Ok(consumer) => {
                backoff = Duration::from_millis(200);
                let ended = consume(&deps, &consumer, &permits, &mut in_flight, &mut shutdown);
                if ended.await == Ended::Shutdown {
                    break;
                }
            }
            Err(e) => tracing::error!(error = %e, "scanner: cannot subscribe, retrying"),
        }
        // Only reached after a failure: pause so an unreachable server is not hammered.
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut shutdown) => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    drain(in_flight).await;
}

/// Why [`consume`] returned.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Shutdown,
    /// The consumer failed (deleted, server restarted): subscribe again.
    Resubscribe,
}

/// Resolves once shutdown is requested; a dropped sender counts as a request, so a lost
/// handle can never leave the loop spinning.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Takes one message per free scan slot until shutdown or until the consumer fails (then the
/// caller subscribes again).
async fn consume(
    deps: &ScannerDeps,
    consumer: &PullConsumer,
    permits: &Arc<Semaphore>,
    in_flight: &mut JoinSet<()>,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    loop {
        while in_flight.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit,
            _ = stopped(shutdown) => return Ended::Shutdown,
        };
        let Ok(permit) = permit else {
            return Ended::Shutdown; // the semaphore is never closed
        };
        let next = tokio::select! {
            next = next_message(consumer) => next,
            _ = stopped(shutdown) => return Ended::Shutdown,
        };
        match next {
            Ok(Some(message)) => {
                in_flight.spawn(handle(deps.clone(), permit, message));
            }
            Ok(None) => {} // the pull request expired without a message: ask again
            Err(e) => {
                tracing::warn!(error = %e, "scanner: pulling failed, subscribing again");
                return Ended::Resubscribe;
            }
        }
    }
}

#[tracing::instrument(skip_all, fields(consumer = CONSUMER_NAME))]
async fn subscribe(
    deps: &ScannerDeps,
) -> Result<PullConsumer, Box<dyn std::error::Error + Send + Sync>> {
    let stream = deps
        .log
        .jetstream()
        .get_stream(streams::EVENTS_STREAM)
        .await?;
    Ok(streams::ensure_durable(&stream, &consumer_spec(deps.ack_wait)).await?)
}

/// One pull request for one message, waiting up to [`PULL_EXPIRES`].
async fn next_message(
    consumer: &PullConsumer,
) -> Result<Option<jetstream::Message>, Box<dyn std::error::Error + Send + Sync>> {
    let mut batch = consumer
        .batch()
        .max_messages(1)
        .expires(PULL_EXPIRES)
        .messages()
        .await?;
    match batch.next().await {
        Some(Ok(message)) => Ok(Some(message)),
        Some(Err(e)) => Err(e),
        None => Ok(None),
    }
}

/// Handles one delivery to an ack decision, holding its scan slot until done.
async fn handle(deps: ScannerDeps, _permit: OwnedSemaphorePermit, message: jetstream::Message) {
    let commit = match LoggedCommit::from_message(&message) {
        Ok(commit) => commit,
        Err(e) => {
            // Redelivery cannot make it readable; it stays in the log, the metric shows it.
            metrics::counter!("fe_scanner_unreadable_commits_total").increment(1);
            tracing::error!(error = %e, "scanner: unreadable commit skipped");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    if !scan::wants_scan(&commit) {
        let _ = message.ack().await;
        return;
    }
    let span = tracing::info_span!("scan", tenant = %commit.tenant, aggregate = %commit.aggregate_id, seq = commit.stream_seq);
    let work = scan::process(&deps, &commit).instrument(span);
    let outcome = with_heartbeat(&message, deps.ack_wait / 3, work).await;
    let ack = match outcome {
        Outcome::Done => AckKind::Ack,
        Outcome::Retry(reason) => {
            let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
            tracing::warn!(%reason, delivered, aggregate = %commit.aggregate_id, "scanner: no verdict yet, will retry");
            AckKind::Nak(Some(retry_delay(delivered)))
        }
    };
    if let Err(e) = message.ack_with(ack).await {
        // Without the ack JetStream redelivers after ack_wait; the verdict is idempotent.
        tracing::warn!(error = %e, "scanner: acknowledging failed");
    }
}

/// Runs `work` while telling JetStream every `every` that the message is still in progress.
async fn with_heartbeat<T>(
    message: &jetstream::Message,
    every: Duration,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(100)));
    ticker.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticker.tick() => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    }
}

/// Waits up to [`SHUTDOWN_GRACE`] for deliveries in flight, then aborts the rest. Aborting is
/// safe at any point: nothing is acknowledged, and every step is redone idempotently.
async fn drain(mut in_flight: JoinSet<()>) {
    let all_done = async { while in_flight.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, all_done)
        .await
        .is_err()
    {
        tracing::warn!("scanner: scans still running at shutdown are left to redelivery");
        in_flight.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_then_cap() {
        let secs = |d: i64| retry_delay(d).as_secs();
        assert_eq!(
            [0, 1, 2, 3, 4, 5, 6, 7, 1000].map(secs),
            [1, 1, 2, 4, 8, 16, 30, 30, 30]
        );
        assert_eq!(retry_delay(i64::MAX), RETRY_CAP);
    }

    #[test]
    fn consumer_never_gives_up_and_keeps_its_ack_wait() {
        let spec = consumer_spec(Duration::from_secs(60));
        assert_eq!(spec.max_deliver, -1);
        assert!(spec.backoff.is_empty());
        assert_eq!(spec.ack_wait, Duration::from_secs(60));
    }
}
