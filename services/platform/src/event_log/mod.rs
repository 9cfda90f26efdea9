//! The event log: a cqrs-es 0.5 event repository on one JetStream stream (`FE_EVENTS`).
//!
//! Owns how aggregates are written to and read from the log (DESIGN.md "The event log"):
//!
//! * one commit of an aggregate is one message on `fe.ev.<tenant>.<aggregate type>.<id>`
//!   holding all of the commit's events (atomic by construction), see [`commit`];
//! * `Nats-Msg-Id = <aggregate type>:<aggregate id>:<first sequence>` lets JetStream drop
//!   retried publishes;
//! * `Nats-Expected-Last-Subject-Sequence` makes every append conditional on the state it was
//!   computed from (optimistic concurrency; JetStream error 10071 means someone else won).
//!
//! Because all writers to one aggregate contend on the same `Nats-Msg-Id`, an answer that may
//! stand for an earlier message is only trusted once the stored message is read back and
//! carries this publish's random `Fe-Commit-Id` (see `append.rs`): the loser of a race must
//! get a conflict, never a success.
//!
//! Snapshots are deliberately not supported: `get_snapshot` returns `None` and `persist`
//! ignores `snapshot_update`. cqrs-es 0.5 applies a command's events to the aggregate in
//! `EventSink::write` and then again in `update_snapshot_with_events`, so its snapshots hold
//! every new event twice (DESIGN.md records this from a trial). Aggregates here are small;
//! load cost is bounded by reading one subject.
//!
//! This module never creates the stream: call [`crate::streams::ensure_event_stream`] at start.

mod append;
pub mod commit;
mod execute;
mod read;
mod repository;
pub mod subject;

use std::time::Duration;

use cqrs_es::persist::PersistenceError;

pub use commit::{event_types, headers, Commit, CommitHeaders, LoggedCommit, StoredEvent};
pub use execute::{ExecuteError, Executed};
pub use subject::{aggregate_id, subject_for, subject_for_type};

use crate::streams::EVENTS_STREAM;

/// How long reading one aggregate's commits may take before it is reported as a failure.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the event log. Messages name subjects, ids and stream sequences, never payloads.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("invalid aggregate id or type {0}")]
    InvalidAggregateId(String),
    #[error("invalid commit: {0}")]
    InvalidCommit(String),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("corrupt commit at stream sequence {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },
    #[error("the aggregate was changed concurrently")]
    Conflict,
    #[error("timed out reading {0}")]
    Timeout(String),
}

impl From<EventLogError> for PersistenceError {
    fn from(err: EventLogError) -> Self {
        match err {
            EventLogError::Conflict => PersistenceError::OptimisticLockError,
            EventLogError::Nats(_) | EventLogError::Timeout(_) => {
                PersistenceError::ConnectionError(Box::new(err))
            }
            EventLogError::Corrupt { .. } => PersistenceError::DeserializationError(Box::new(err)),
            EventLogError::InvalidAggregateId(_) | EventLogError::InvalidCommit(_) => {
                PersistenceError::UnknownError(Box::new(err))
            }
        }
    }
}

/// The JetStream-backed event log; cheap to clone (a JetStream context and a stream name).
#[derive(Clone)]
pub struct EventLog {
    js: async_nats::jetstream::Context,
    stream: String,
}

/// One aggregate as loaded from the log.
#[derive(Debug)]
pub struct Loaded<A> {
    /// State folded from all events.
    pub aggregate: A,
    /// Sequence of the aggregate's last event (0 if it has none).
    pub sequence: usize,
    /// Stream sequence of the aggregate's last commit (0 if it has none).
    pub last_stream_seq: u64,
}

impl EventLog {
    /// An event log on the `FE_EVENTS` stream.
    pub fn new(js: async_nats::jetstream::Context) -> Self {
        EventLog {
            js,
            stream: EVENTS_STREAM.to_string(),
        }
    }

    /// The JetStream context this log publishes and reads through.
    pub fn jetstream(&self) -> &async_nats::jetstream::Context {
        &self.js
    }

    /// A handle on the stream (no request is made).
    async fn stream(&self) -> Result<async_nats::jetstream::stream::Stream<()>, EventLogError> {
        self.js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|e| EventLogError::Nats(format!("stream {}: {e}", self.stream)))
    }
}
