//! One delivery as a handler sees it: the validated commit, its events decoded into domain
//! types (upcast first, never read through JSON pointers), and how often JetStream has
//! delivered it; plus the explicit [`Outcome`] a handler returns for it.

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::event_log::{EventLogError, LoggedCommit};

/// What a handler decided for one delivery; the runtime turns it into the acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done, or nothing to do: `Ack`.
    Done,
    /// Not now (a transient failure, or not this delivery's turn yet): `Nak` with `delay`, so
    /// JetStream delivers it again later. Nothing of it may be half-done: every step the
    /// handler took is redone idempotently on the next delivery.
    Retry { reason: String, delay: Duration },
    /// Never processable (corrupt, or of a shape no handler knows): `Term`. The commit stays
    /// in the log for audit; the runtime counts it in `fe_consumer_rejected_total`.
    Reject { reason: String },
}

impl Outcome {
    /// A retry after `delay`.
    pub fn retry(reason: impl Into<String>, delay: Duration) -> Self {
        Outcome::Retry {
            reason: reason.into(),
            delay,
        }
    }
}

/// Why a commit could not be decoded into the handler's event type.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Commit(#[from] EventLogError),
    #[error("commit at stream sequence {seq}: event {index} ({event_type}): {reason}")]
    Event {
        seq: u64,
        index: usize,
        event_type: String,
        reason: String,
    },
}

/// How a consumer wants each commit's events: decoded from a [`LoggedCommit`].
pub trait Decode: Sized + Send + Sync + 'static {
    fn decode(commit: &LoggedCommit) -> Result<Self, DecodeError>;
}

/// The commit alone, for consumers that map it themselves (e.g. to public events).
impl Decode for () {
    fn decode(_: &LoggedCommit) -> Result<Self, DecodeError> {
        Ok(())
    }
}

/// Every event of the commit as the domain type `E`, upcast to the current version first.
impl<E: DeserializeOwned + Send + Sync + 'static> Decode for Vec<E> {
    fn decode(commit: &LoggedCommit) -> Result<Self, DecodeError> {
        commit
            .events
            .iter()
            .enumerate()
            .map(|(index, stored)| {
                let failed = |reason: String| DecodeError::Event {
                    seq: commit.stream_seq,
                    index,
                    event_type: stored.event_type.clone(),
                    reason,
                };
                let payload = events::upcast::upcast(
                    &stored.event_type,
                    &stored.event_version,
                    stored.payload.clone(),
                )
                .map_err(|e| failed(e.to_string()))?;
                // Only the category and position: serde's message could quote payload text.
                serde_json::from_value(payload).map_err(|e| {
                    failed(format!("{:?} error at column {}", e.classify(), e.column()))
                })
            })
            .collect()
    }
}

/// One delivery of one commit.
#[derive(Debug)]
pub struct Delivery<E> {
    /// The validated commit (tenant, aggregate, stream sequence, headers).
    pub commit: LoggedCommit,
    /// The commit's events, decoded.
    pub events: E,
    /// How many times JetStream has delivered this message, this delivery included.
    pub delivered: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_log::{CommitHeaders, StoredEvent};
    use events::task::TaskEvent;

    fn commit(event_type: &str, version: &str, payload: serde_json::Value) -> LoggedCommit {
        LoggedCommit {
            stream_seq: 9,
            subject: "fe.ev.acme.task.t1".into(),
            tenant: events::TenantId::parse("acme").unwrap(),
            aggregate_type: "task".into(),
            aggregate_id: "acme.t1".into(),
            time: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            events: vec![StoredEvent {
                aggregate_type: "task".into(),
                aggregate_id: "acme.t1".into(),
                sequence: 1,
                event_type: event_type.into(),
                event_version: version.into(),
                payload,
                metadata: serde_json::json!({}),
            }],
            headers: CommitHeaders::default(),
        }
    }

    #[test]
    fn events_decode_into_domain_types_after_upcasting() {
        let c = commit(
            "file.scanned",
            "1",
            serde_json::json!({"FileScanned": {"clean": true, "signature": null}}),
        );
        let events = Vec::<TaskEvent>::decode(&c).unwrap();
        assert_eq!(
            events,
            [TaskEvent::FileScanned {
                clean: true,
                signature: None
            }]
        );
        // A v0 `dir.created` (no `parents`) reads through the upcaster.
        let old = commit(
            "dir.created",
            "0",
            serde_json::json!({"DirCreated": {"path": "/a"}}),
        );
        let events = Vec::<TaskEvent>::decode(&old).unwrap();
        assert!(matches!(
            &events[0],
            TaskEvent::DirCreated { parents: false, .. }
        ));
    }

    #[test]
    fn undecodable_events_name_the_position_not_the_payload() {
        let c = commit(
            "file.scanned",
            "1",
            serde_json::json!({"FileScanned": {"clean": "secret-text"}}),
        );
        let err = Vec::<TaskEvent>::decode(&c).unwrap_err().to_string();
        assert!(
            err.contains("sequence 9") && err.contains("file.scanned"),
            "{err}"
        );
        assert!(!err.contains("secret-text"), "{err}");
        let unknown = commit("file.scanned", "7", serde_json::json!({}));
        assert!(Vec::<TaskEvent>::decode(&unknown).is_err());
    }
}
