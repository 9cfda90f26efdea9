//! The one consumer runtime: how every service that follows the log through a durable pull
//! consumer subscribes, takes deliveries, decodes them, heartbeats them, acknowledges them and
//! drains on shutdown. A service only writes a [`Handler`]: which commits it wants (by the
//! `Fe-Event-Types` header, before any parsing) and what it does with one [`Delivery`],
//! answered with an explicit [`Outcome`]:
//!
//! | outcome | acknowledgement |
//! |---|---|
//! | [`Outcome::Done`] | `Ack` |
//! | [`Outcome::Retry`] | `Nak(delay)`: delivered again after `delay` |
//! | [`Outcome::Reject`] | `Term` (never processable; stays in the log, counted) |
//!
//! Dead-lettering is a domain decision (a task becomes `dead_lettered` in the log), so it is
//! the handler's: it returns `Done` once it recorded the dead letter.
//!
//! What the runtime guarantees:
//! * **Subscribing** creates or updates the durable consumer ([`crate::streams::ensure_durable`])
//!   and retries with a capped exponential backoff (`backon`) for as long as JetStream is
//!   unreachable; a consumer that fails later is subscribed again.
//! * **Bounded intake**: a message is pulled only for a free handling slot
//!   ([`ConsumerSettings::concurrency`]), so nothing waits in a local buffer while its
//!   `ack_wait` runs and other processes idle.
//! * **Heartbeats**: while a handler runs, `Progress` is sent every third of `ack_wait`, so
//!   long work is never redelivered to another process meanwhile.
//! * **Typed events**: handlers receive the commit's events decoded ([`Decode`]); an
//!   unreadable commit is rejected in one place instead of being parsed by each service.
//! * **Shutdown with a deadline**: when the [`CancellationToken`] fires, no more messages are
//!   pulled; handlers in flight get [`ConsumerSettings::drain`] to finish, then they are
//!   dropped and their deliveries released with an immediate `Nak` (redelivered elsewhere).
//!   Handlers must therefore be redo-safe at every await point — they are, since every
//!   delivery can also be lost to a crash. Acknowledgements are bounded by a timeout, so a
//!   vanished NATS server cannot hold the process.
//!
//! *Decision — the projector*: its durable position is each partition's checkpoint in
//! PostgreSQL, written in the transaction of its effects, so it reads with ordered consumers
//! from that checkpoint instead of acknowledging a durable consumer (an ack after the commit
//! could be lost, one before could lose the commit). It shares what is the same: the commit
//! parsing ([`LoggedCommit::from_message`]), the retry schedule ([`Backoff`]) and the shutdown
//! deadline of the role (see `services/projector/README.md`).
//!
//! Metrics (labelled by consumer name only, never by tenant): `fe_consumer_outcomes_total
//! {consumer, outcome}`, `fe_consumer_rejected_total{consumer}`,
//! `fe_consumer_released_at_shutdown_total{consumer}`.

mod backoff;
mod delivery;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, AckKind};
use backon::Retryable;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use backoff::Backoff;
pub use delivery::{Decode, DecodeError, Delivery, Outcome};

use crate::event_log::{event_types, LoggedCommit};
use crate::streams::{self, DurableSpec};

/// How long one pull request waits for messages before it is renewed.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// How long an acknowledgement may take; past it JetStream's `ack_wait` takes over.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Pauses between attempts to subscribe while JetStream is unreachable.
const SUBSCRIBE_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

/// What a service does with the commits of its consumer.
pub trait Handler: Send + Sync + 'static {
    /// How the commit's events are decoded before [`Handler::handle`] sees them.
    type Events: Decode;

    /// Whether a commit with these event types concerns this handler; the others are
    /// acknowledged without being parsed. Commits without the header are always handled.
    fn wants(&self, event_types: &[&str]) -> bool {
        let _ = event_types;
        true
    }

    /// Handles one delivery to an outcome. Must be redo-safe: it can be dropped at any await
    /// point (shutdown deadline) and the delivery is then handled again.
    fn handle(&self, delivery: &Delivery<Self::Events>) -> impl Future<Output = Outcome> + Send;
}

/// How a consumer runs in this process.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// The durable consumer (name, filter, `ack_wait`, `max_deliver`, `max_ack_pending`).
    pub spec: DurableSpec,
    /// Deliveries handled at once by this process.
    pub concurrency: usize,
    /// How long handlers in flight may run on after shutdown is requested.
    pub drain: Duration,
}

/// Runs `handler` on the consumer until `shutdown` is cancelled, then drains (see the module
/// documentation). Returns once every delivery of this process is settled or released.
pub async fn run<H: Handler>(
    js: jetstream::Context,
    settings: ConsumerSettings,
    handler: Arc<H>,
    shutdown: CancellationToken,
) {
    let in_flight = TaskTracker::new();
    let release = CancellationToken::new();
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let intake = Intake {
        settings: &settings,
        handler: &handler,
        slots: &slots,
        in_flight: &in_flight,
        release: &release,
    };
    loop {
        let consumer = tokio::select! {
            consumer = subscribe(&js, &settings.spec) => consumer,
            _ = shutdown.cancelled() => break,
        };
        if intake.consume(&consumer, &shutdown).await == Ended::Shutdown {
            break;
        }
        // The consumer failed (server restarted, consumer deleted): pause, then subscribe again.
        tokio::select! {
            _ = tokio::time::sleep(SUBSCRIBE_BACKOFF.delay(1)) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    drain(&settings, in_flight, release).await;
}

/// Creates or updates the durable consumer, retrying for as long as it takes.
async fn subscribe(js: &jetstream::Context, spec: &DurableSpec) -> PullConsumer {
    let attempt = || async {
        let stream = js
            .get_stream(streams::EVENTS_STREAM)
            .await
            .map_err(|e| e.to_string())?;
        streams::ensure_durable(&stream, spec)
            .await
            .map_err(|e| e.to_string())
    };
    let retried = attempt
        .retry(SUBSCRIBE_BACKOFF.builder())
        .notify(|error: &String, pause: Duration| {
            tracing::warn!(consumer = spec.name, %error, ?pause, "cannot subscribe, retrying");
        })
        .await;
    match retried {
        Ok(consumer) => consumer,
        // The schedule has no limit on attempts, so this is unreachable; waiting for shutdown
        // is still the safe answer should it ever be reached.
        Err(_) => std::future::pending().await,
    }
}

/// Why [`Intake::consume`] returned.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Shutdown,
    Resubscribe,
}

/// The pulling side of [`run`]: one message per free slot.
struct Intake<'a, H> {
    settings: &'a ConsumerSettings,
    handler: &'a Arc<H>,
    slots: &'a Arc<Semaphore>,
    in_flight: &'a TaskTracker,
    release: &'a CancellationToken,
}

impl<H: Handler> Intake<'_, H> {
    async fn consume(&self, consumer: &PullConsumer, shutdown: &CancellationToken) -> Ended {
        loop {
            let mut permits = tokio::select! {
                permits = self.free_slots() => permits,
                _ = shutdown.cancelled() => return Ended::Shutdown,
            };
            let request = consumer
                .batch()
                .max_messages(permits.len())
                .expires(PULL_EXPIRES)
                .messages();
            let mut messages = tokio::select! {
                messages = request => match messages {
                    Ok(messages) => messages,
                    Err(error) => {
                        tracing::warn!(consumer = self.settings.spec.name, %error, "pulling failed");
                        return Ended::Resubscribe;
                    }
                },
                _ = shutdown.cancelled() => return Ended::Shutdown,
            };
            loop {
                let next = tokio::select! {
                    next = messages.next() => next,
                    _ = shutdown.cancelled() => return Ended::Shutdown,
                };
                match next {
                    Some(Ok(message)) => {
                        if !wanted(self.handler.as_ref(), &message) {
                            // Nothing to do: acknowledged here, without a slot or a task, so
                            // a backlog of commits the handler skips (a worker's own outcome
                            // commits, behind a burst of requests) drains at the pace of the
                            // pulls and new work behind it waits as little as possible.
                            acknowledge(self.settings.spec.name, &message, Outcome::Done).await;
                            continue;
                        }
                        // The server sends at most what was asked for; a surplus waits for
                        // redelivery rather than exceed the slots.
                        let Some(permit) = permits.pop() else { break };
                        self.in_flight.spawn(settle_one(
                            self.handler.clone(),
                            self.settings.spec.clone(),
                            message,
                            permit,
                            self.release.clone(),
                        ));
                    }
                    Some(Err(error)) => {
                        tracing::warn!(consumer = self.settings.spec.name, %error, "message stream failed");
                        return Ended::Resubscribe;
                    }
                    None => break, // the pull request expired or was filled: ask again
                }
            }
        }
    }

    /// Waits for one free slot, then takes every other free one (one pull asks for all).
    async fn free_slots(&self) -> Vec<OwnedSemaphorePermit> {
        let Ok(first) = self.slots.clone().acquire_owned().await else {
            return std::future::pending().await; // the semaphore is never closed
        };
        let mut permits = vec![first];
        while let Ok(more) = self.slots.clone().try_acquire_owned() {
            permits.push(more);
        }
        permits
    }
}

/// Handles one message to an outcome (heartbeating meanwhile) and acknowledges it.
async fn settle_one<H: Handler>(
    handler: Arc<H>,
    spec: DurableSpec,
    message: jetstream::Message,
    _slot: OwnedSemaphorePermit,
    release: CancellationToken,
) {
    let heartbeat = (spec.ack_wait / 3).max(Duration::from_millis(100));
    let work = with_heartbeat(
        &message,
        heartbeat,
        decide(handler.as_ref(), spec.name, &message),
    );
    let outcome = tokio::select! {
        outcome = work => outcome,
        _ = release.cancelled() => {
            metrics::counter!("fe_consumer_released_at_shutdown_total", "consumer" => spec.name)
                .increment(1);
            Outcome::retry("released at shutdown", Duration::ZERO)
        }
    };
    acknowledge(spec.name, &message, outcome).await;
}

/// Whether the handler wants the commit of `message`, by its `Fe-Event-Types` header (a
/// message without the header is decoded and handed over).
fn wanted<H: Handler>(handler: &H, message: &jetstream::Message) -> bool {
    let types = event_types(message.headers.as_ref());
    types.is_empty() || handler.wants(&types)
}

/// Decodes one wanted message and hands it to the handler.
async fn decide<H: Handler>(
    handler: &H,
    consumer: &'static str,
    message: &jetstream::Message,
) -> Outcome {
    let commit = match LoggedCommit::from_message(message) {
        Ok(commit) => commit,
        Err(e) => {
            return Outcome::Reject {
                reason: e.to_string(),
            }
        }
    };
    let events = match H::Events::decode(&commit) {
        Ok(events) => events,
        Err(e) => {
            return Outcome::Reject {
                reason: e.to_string(),
            }
        }
    };
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
    let span = tracing::info_span!("delivery", consumer, tenant = %commit.tenant,
        aggregate = %commit.aggregate_id, seq = commit.stream_seq, delivered);
    let delivery = Delivery {
        commit,
        events,
        delivered,
    };
    handler.handle(&delivery).instrument(span).await
}

/// Turns an outcome into its acknowledgement; bounded, so a gone server cannot hold us.
async fn acknowledge(consumer: &'static str, message: &jetstream::Message, outcome: Outcome) {
    let (kind, label) = match outcome {
        Outcome::Done => (AckKind::Ack, "done"),
        Outcome::Retry { reason, delay } => {
            tracing::debug!(consumer, %reason, ?delay, "released for redelivery");
            let delay = (!delay.is_zero()).then_some(delay);
            (AckKind::Nak(delay), "retry")
        }
        Outcome::Reject { reason } => {
            // Redelivery cannot make it processable; it stays in the log, the metric shows it.
            tracing::error!(consumer, %reason, "commit rejected");
            metrics::counter!("fe_consumer_rejected_total", "consumer" => consumer).increment(1);
            (AckKind::Term, "reject")
        }
    };
    metrics::counter!("fe_consumer_outcomes_total", "consumer" => consumer, "outcome" => label)
        .increment(1);
    match tokio::time::timeout(ACK_TIMEOUT, message.ack_with(kind)).await {
        Ok(Ok(())) => {}
        // Without the ack JetStream redelivers after ack_wait; every handler is idempotent.
        Ok(Err(error)) => tracing::warn!(consumer, %error, "acknowledging failed"),
        Err(_) => tracing::warn!(consumer, "acknowledging timed out"),
    }
}

/// Runs `work` while telling JetStream every `every` that the message is still in progress.
async fn with_heartbeat<T>(
    message: &jetstream::Message,
    every: Duration,
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticker.tick() => {
                let _ = tokio::time::timeout(ACK_TIMEOUT, message.ack_with(AckKind::Progress)).await;
            }
        }
    }
}

/// Gives handlers in flight the drain time, then releases what is left for redelivery.
async fn drain(settings: &ConsumerSettings, in_flight: TaskTracker, release: CancellationToken) {
    in_flight.close();
    if tokio::time::timeout(settings.drain, in_flight.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            consumer = settings.spec.name,
            left = in_flight.len(),
            "deliveries still in flight at the drain deadline are released for redelivery"
        );
        release.cancel();
        // Each release is one bounded acknowledgement.
        let _ = tokio::time::timeout(ACK_TIMEOUT * 2, in_flight.wait()).await;
    }
}
