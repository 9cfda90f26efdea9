//! Running a command against an aggregate: load → `handle` → append, retried on conflict.
//!
//! This is what `CqrsFramework::execute` does, minus the parts we do not want: it returns the
//! new events and the commit's stream sequence (the API answers with it and waits for
//! projections to pass it), and a conflict reloads and re-runs the command on fresh state
//! instead of failing at once. After [`MAX_ATTEMPTS`] lost races the caller gets
//! [`ExecuteError::Conflict`] (HTTP 409).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate, EventEnvelope};

use super::commit::Commit;
use super::subject::subject_for;
use super::{EventLog, EventLogError, Loaded};

/// Attempts per command before giving up with a conflict.
const MAX_ATTEMPTS: u32 = 10;
/// Upper bound of the random pause between attempts; doubles per attempt up to the cap, so
/// contending writers spread out instead of colliding again in lockstep.
const BACKOFF_BASE: Duration = Duration::from_millis(2);
const BACKOFF_CAP: Duration = Duration::from_millis(100);

/// The outcome of a command that was accepted.
#[derive(Debug)]
pub struct Executed<A: Aggregate> {
    /// The events the command produced (empty if it changed nothing).
    pub events: Vec<A::Event>,
    /// Stream sequence of the commit, `None` if the command produced no events.
    pub stream_seq: Option<u64>,
    /// The aggregate's state after the command.
    pub aggregate: A,
    /// The aggregate's sequence and its subject's last stream sequence after the command.
    pub sequence: usize,
    pub last_stream_seq: u64,
}

impl<A: Aggregate + Clone> Executed<A> {
    /// The state after the command, as [`EventLog::load`] would return it now.
    pub fn state(&self) -> Loaded<A> {
        Loaded {
            aggregate: self.aggregate.clone(),
            sequence: self.sequence,
            last_stream_seq: self.last_stream_seq,
        }
    }
}

/// Why a command was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    /// The aggregate refused the command.
    #[error("command rejected: {0}")]
    Domain(E),
    /// Other writers kept changing the aggregate; every attempt lost the race.
    #[error("the aggregate was changed concurrently; gave up retrying")]
    Conflict,
    /// The log could not be read or written.
    #[error(transparent)]
    Log(EventLogError),
}

impl EventLog {
    /// Runs `command` with optimistic concurrency: load → `A::handle` → append; on a conflict
    /// reload and retry (up to 10 times, then [`ExecuteError::Conflict`]).
    ///
    /// `metadata` is stored on every event of the commit; its `traceparent`, `request_id` and
    /// `principal` keys also become message headers.
    pub async fn execute<A: Aggregate>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        services: &A::Services,
        metadata: HashMap<String, String>,
    ) -> Result<Executed<A>, ExecuteError<A::Error>>
    where
        A::Command: Clone,
    {
        let subject = subject_for(A::TYPE, aggregate_id).map_err(ExecuteError::Log)?;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let loaded = self
                .load::<A>(aggregate_id)
                .await
                .map_err(ExecuteError::Log)?;
            let mut aggregate = loaded.aggregate;
            let sink = EventSink::<A>::default();
            // cqrs-es 0.5: `EventSink::write` applies each event to `aggregate` as it is
            // written, so after `handle` the aggregate already holds the new state.
            aggregate
                .handle(command.clone(), services, &sink)
                .await
                .map_err(ExecuteError::Domain)?;
            let events = sink.collect().await;
            if events.is_empty() {
                return Ok(Executed {
                    events,
                    stream_seq: None,
                    aggregate,
                    sequence: loaded.sequence,
                    last_stream_seq: loaded.last_stream_seq,
                });
            }
            // The load already told us the subject's last stream sequence: no second lookup.
            let base = (loaded.sequence, loaded.last_stream_seq);
            let appended = self
                .append_executed(&subject, aggregate_id, base, events, aggregate, &metadata)
                .await
                .map_err(ExecuteError::Log)?;
            match appended {
                Some(executed) => return Ok(executed),
                None => {
                    tracing::debug!(aggregate_id, attempt, "conflict; retrying on fresh state");
                }
            }
        }
        Err(ExecuteError::Conflict)
    }

    /// Like [`EventLog::execute`] for an aggregate that cannot exist yet (its id was just
    /// generated, e.g. a new task's UUIDv7): `command` runs on the default state and its
    /// commit is appended with expected subject sequence 0, without reading the log first.
    /// One round trip instead of two on the API's hottest path. Should the subject hold a
    /// commit after all, JetStream refuses the append (10071) and the command runs through
    /// the loading path on the real state, so correctness never rests on the id being new.
    pub async fn execute_new<A: Aggregate>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        services: &A::Services,
        metadata: HashMap<String, String>,
    ) -> Result<Executed<A>, ExecuteError<A::Error>>
    where
        A::Command: Clone,
    {
        let subject = subject_for(A::TYPE, aggregate_id).map_err(ExecuteError::Log)?;
        let mut aggregate = A::default();
        let sink = EventSink::<A>::default();
        aggregate
            .handle(command.clone(), services, &sink)
            .await
            .map_err(ExecuteError::Domain)?;
        let events = sink.collect().await;
        if events.is_empty() {
            return self
                .execute(aggregate_id, command, services, metadata)
                .await;
        }
        let appended = self
            .append_executed(&subject, aggregate_id, (0, 0), events, aggregate, &metadata)
            .await
            .map_err(ExecuteError::Log)?;
        match appended {
            Some(executed) => Ok(executed),
            None => {
                tracing::debug!(aggregate_id, "aggregate exists; running on its state");
                self.execute(aggregate_id, command, services, metadata)
                    .await
            }
        }
    }
}

impl EventLog {
    /// Like [`EventLog::execute`], starting from state the caller loaded earlier (one load
    /// fewer per command on a worker's path: load once, then start, then succeed). Stale state
    /// is harmless: the append expects the subject's last stream sequence of `loaded`, so a
    /// commit made meanwhile turns it into a conflict, and a refusal may come from stale state;
    /// in both cases the command runs again on fresh state through [`EventLog::execute`].
    /// `loaded` is updated to the state after the command.
    pub async fn execute_on<A: Aggregate + Clone>(
        &self,
        aggregate_id: &str,
        loaded: &mut Loaded<A>,
        command: A::Command,
        services: &A::Services,
        metadata: HashMap<String, String>,
    ) -> Result<Executed<A>, ExecuteError<A::Error>>
    where
        A::Command: Clone,
    {
        let subject = subject_for(A::TYPE, aggregate_id).map_err(ExecuteError::Log)?;
        let mut aggregate = loaded.aggregate.clone();
        let sink = EventSink::<A>::default();
        let handled = aggregate.handle(command.clone(), services, &sink).await;
        let events = sink.collect().await;
        if handled.is_ok() && !events.is_empty() {
            let base = (loaded.sequence, loaded.last_stream_seq);
            let appended = self
                .append_executed(&subject, aggregate_id, base, events, aggregate, &metadata)
                .await
                .map_err(ExecuteError::Log)?;
            if let Some(executed) = appended {
                *loaded = executed.state();
                return Ok(executed);
            }
        }
        // Refused or a no-op on possibly stale state, or a commit made meanwhile: decided
        // again on fresh state.
        let executed = self
            .execute(aggregate_id, command, services, metadata)
            .await?;
        *loaded = executed.state();
        Ok(executed)
    }

    /// Appends the `events` a command produced on the aggregate as it stood at `base` (its
    /// sequence and its subject's last stream sequence), `aggregate` being the state after
    /// them. `Ok(None)`: another commit came first (a conflict), nothing was appended.
    async fn append_executed<A: Aggregate>(
        &self,
        subject: &str,
        aggregate_id: &str,
        base: (usize, u64),
        events: Vec<A::Event>,
        aggregate: A,
        metadata: &HashMap<String, String>,
    ) -> Result<Option<Executed<A>>, EventLogError> {
        let (sequence, last_stream_seq) = base;
        let commit = new_commit::<A>(aggregate_id, sequence, &events, metadata)?;
        match self.publish_commit(subject, &commit, last_stream_seq).await {
            Ok(seq) => Ok(Some(Executed {
                sequence: sequence + events.len(),
                events,
                stream_seq: Some(seq),
                aggregate,
                last_stream_seq: seq,
            })),
            Err(EventLogError::Conflict) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Serializes the new events exactly as cqrs-es would (`SerializedEvent::try_from`).
fn new_commit<A: Aggregate>(
    aggregate_id: &str,
    last_sequence: usize,
    events: &[A::Event],
    metadata: &HashMap<String, String>,
) -> Result<Commit, EventLogError> {
    let mut serialized = Vec::with_capacity(events.len());
    for (offset, payload) in events.iter().enumerate() {
        let envelope = EventEnvelope::<A> {
            aggregate_id: aggregate_id.to_string(),
            sequence: last_sequence + 1 + offset,
            payload: payload.clone(),
            metadata: metadata.clone(),
        };
        let event = SerializedEvent::try_from(&envelope).map_err(|_| {
            EventLogError::InvalidCommit(format!("a {} event does not serialize", A::TYPE))
        })?;
        serialized.push(event);
    }
    Commit::from_new_events(&serialized)
}

/// A random pause in `[0, min(BASE · 2^attempt, CAP)]`.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1 << attempt.min(16))
        .min(BACKOFF_CAP);
    // RandomState is seeded randomly per instance: enough entropy for jitter, no extra crate.
    let random = RandomState::new().hash_one(attempt);
    let ceiling_micros = ceiling.as_micros().max(1) as u64;
    Duration::from_micros(random % ceiling_micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_cap() {
        for attempt in 0..40 {
            assert!(backoff(attempt) <= BACKOFF_CAP);
        }
        assert!(backoff(1) <= BACKOFF_BASE * 2);
    }
}
