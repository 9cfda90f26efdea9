//! The wire format of one commit: its JSON body, its headers, and the validated view that
//! projectors and workers read ([`LoggedCommit`]).
//!
//! One commit of an aggregate is one JetStream message whose body is
//! `{"events":[{aggregate_type, aggregate_id, sequence, event_type, event_version, payload,
//! metadata}, ...]}` (the fields of cqrs-es `SerializedEvent`). Error messages built here name
//! stream sequences, subjects and field names, never payloads.

use async_nats::{HeaderMap, HeaderValue};
use cqrs_es::persist::SerializedEvent;
use serde::{Deserialize, Serialize};

use super::subject::{parse_subject, subject_for};
use super::EventLogError;

/// Header names written on every commit message (besides `Nats-Msg-Id` and
/// `Nats-Expected-Last-Subject-Sequence`, which JetStream itself interprets).
pub mod headers {
    /// The aggregate type, e.g. `task`.
    pub const AGGREGATE_TYPE: &str = "Fe-Aggregate-Type";
    /// Comma-separated `event_type`s of the commit, so consumers can skip without parsing.
    pub const EVENT_TYPES: &str = "Fe-Event-Types";
    /// W3C trace context, from the first event's metadata key `traceparent`.
    pub const TRACEPARENT: &str = "traceparent";
    /// Request id, from metadata key `request_id`.
    pub const REQUEST_ID: &str = "Fe-Request-Id";
    /// Principal that caused the commit, from metadata key `principal`.
    pub const PRINCIPAL: &str = "Fe-Principal";
    /// Random id of one publish (the same across its retries). Racing writers share the
    /// `Nats-Msg-Id` and may even send identical bodies; this tells their messages apart.
    pub const COMMIT_ID: &str = "Fe-Commit-Id";
}

/// One event as stored inside a commit; the fields of cqrs-es `SerializedEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: usize,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
}

impl From<SerializedEvent> for StoredEvent {
    fn from(e: SerializedEvent) -> Self {
        StoredEvent {
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            sequence: e.sequence,
            event_type: e.event_type,
            event_version: e.event_version,
            payload: e.payload,
            metadata: e.metadata,
        }
    }
}

impl From<StoredEvent> for SerializedEvent {
    fn from(e: StoredEvent) -> Self {
        SerializedEvent::new(
            e.aggregate_id,
            e.sequence,
            e.aggregate_type,
            e.event_type,
            e.event_version,
            e.payload,
            e.metadata,
        )
    }
}

impl StoredEvent {
    /// A string value from the event's metadata map, if present.
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(|v| v.as_str())
    }
}

/// The body of one commit message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub events: Vec<StoredEvent>,
}

impl Commit {
    /// Builds a commit from events about to be appended, checking that they form one commit:
    /// non-empty, one aggregate, consecutive sequences starting at 1 or more.
    pub fn from_new_events(events: &[SerializedEvent]) -> Result<Self, EventLogError> {
        let Some(first) = events.first() else {
            return Err(EventLogError::InvalidCommit("no events".into()));
        };
        if first.sequence == 0 {
            return Err(EventLogError::InvalidCommit("sequences start at 1".into()));
        }
        let commit = Commit {
            events: events.iter().cloned().map(StoredEvent::from).collect(),
        };
        commit
            .check_shape(&first.aggregate_type, &first.aggregate_id)
            .map_err(EventLogError::InvalidCommit)?;
        Ok(commit)
    }

    /// Parses a commit body read from the stream and checks it belongs to `subject`.
    pub fn parse(seq: u64, subject: &str, body: &[u8]) -> Result<Self, EventLogError> {
        let corrupt = |reason: String| EventLogError::Corrupt { seq, reason };
        let commit: Commit = serde_json::from_slice(body)
            // Only the category and position: the serde message could quote payload text.
            .map_err(|e| {
                corrupt(format!(
                    "body is not a commit ({:?} error at column {})",
                    e.classify(),
                    e.column()
                ))
            })?;
        let parts = parse_subject(subject).map_err(|e| corrupt(e.to_string()))?;
        commit
            .check_shape(parts.aggregate_type, &parts.aggregate_id())
            .map_err(corrupt)?;
        Ok(commit)
    }

    /// Sequence of the first event (commits are never empty once checked).
    pub fn first_sequence(&self) -> usize {
        self.events.first().map_or(0, |e| e.sequence)
    }

    /// Sequence of the last event.
    pub fn last_sequence(&self) -> usize {
        self.events.last().map_or(0, |e| e.sequence)
    }

    /// The subject this commit is published on.
    pub fn subject(&self) -> Result<String, EventLogError> {
        let first = self.first()?;
        subject_for(&first.aggregate_type, &first.aggregate_id)
    }

    /// `Nats-Msg-Id`: `<aggregate type>:<aggregate id>:<sequence of the first event>`. The
    /// type is part of it because aggregates of different types may share an id (a tenant's
    /// ACL and its subscriptions are both keyed by the tenant): without it JetStream's
    /// duplicate window would take the first commit of one for the other's.
    pub fn message_id(&self) -> Result<String, EventLogError> {
        let first = self.first()?;
        Ok(format!(
            "{}:{}:{}",
            first.aggregate_type, first.aggregate_id, first.sequence
        ))
    }

    /// The `Fe-*` and `traceparent` headers of this commit (JetStream headers are added by
    /// the publisher). Metadata values that cannot be header values (CR/LF) are left out:
    /// they stay in the body, and a header must never be split by client input.
    pub fn headers(&self) -> Result<HeaderMap, EventLogError> {
        let first = self.first()?;
        let mut map = HeaderMap::new();
        let value = |s: &str| {
            s.parse::<HeaderValue>().map_err(|_| {
                EventLogError::InvalidCommit("event type is not a header value".into())
            })
        };
        map.insert(headers::AGGREGATE_TYPE, value(&first.aggregate_type)?);
        let types: Vec<&str> = self.events.iter().map(|e| e.event_type.as_str()).collect();
        map.insert(headers::EVENT_TYPES, value(&types.join(","))?);
        for (key, header) in [
            ("traceparent", headers::TRACEPARENT),
            ("request_id", headers::REQUEST_ID),
            ("principal", headers::PRINCIPAL),
        ] {
            if let Some(v) = first
                .metadata_value(key)
                .and_then(|v| v.parse::<HeaderValue>().ok())
            {
                map.insert(header, v);
            }
        }
        Ok(map)
    }

    fn first(&self) -> Result<&StoredEvent, EventLogError> {
        self.events
            .first()
            .ok_or_else(|| EventLogError::InvalidCommit("no events".into()))
    }

    /// One aggregate, consecutive sequences, types without commas (they are joined into a
    /// header).
    fn check_shape(&self, aggregate_type: &str, aggregate_id: &str) -> Result<(), String> {
        let Some(first) = self.events.first() else {
            return Err("commit holds no events".into());
        };
        subject_for(aggregate_type, aggregate_id).map_err(|e| e.to_string())?;
        for (offset, event) in self.events.iter().enumerate() {
            if event.aggregate_type != aggregate_type || event.aggregate_id != aggregate_id {
                return Err(format!("event {offset} belongs to another aggregate"));
            }
            if event.sequence != first.sequence + offset {
                return Err(format!("event {offset} breaks the sequence"));
            }
            if event.event_type.is_empty() || event.event_type.contains([',', '\r', '\n']) {
                return Err(format!("event {offset} has an invalid event_type"));
            }
        }
        Ok(())
    }
}

/// Trace and audit context copied into headers from the first event's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitHeaders {
    pub traceparent: Option<String>,
    pub request_id: Option<String>,
    pub principal: Option<String>,
}

impl CommitHeaders {
    fn from_map(map: Option<&HeaderMap>) -> Self {
        let get = |name: &str| {
            map.and_then(|m| m.get(name))
                .map(|v| v.as_str().to_string())
        };
        CommitHeaders {
            traceparent: get(headers::TRACEPARENT),
            request_id: get(headers::REQUEST_ID),
            principal: get(headers::PRINCIPAL),
        }
    }
}

/// The `Fe-Event-Types` header of a commit message, split; empty if absent. Lets consumers
/// skip commits they do not care about without parsing the body.
pub fn event_types(map: Option<&HeaderMap>) -> Vec<&str> {
    map.and_then(|m| m.get(headers::EVENT_TYPES))
        .map(|v| v.as_str().split(',').filter(|t| !t.is_empty()).collect())
        .unwrap_or_default()
}

/// A commit as read from the stream by projectors and workers (raw consumers, not cqrs-es).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedCommit {
    pub stream_seq: u64,
    pub subject: String,
    pub tenant: events::TenantId,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// When JetStream stored the message: replays see the same time as the first delivery.
    pub time: chrono::DateTime<chrono::Utc>,
    pub events: Vec<StoredEvent>,
    pub headers: CommitHeaders,
}

impl LoggedCommit {
    /// Parses and validates a message delivered by a JetStream consumer.
    pub fn from_message(msg: &async_nats::jetstream::Message) -> Result<Self, EventLogError> {
        let reply = msg.reply.as_ref().map(|r| r.as_str()).unwrap_or_default();
        let info = msg.info().map_err(|_| EventLogError::Corrupt {
            seq: 0,
            reason: "message carries no JetStream ack subject".into(),
        })?;
        let seq = info.stream_sequence;
        let time = ack_subject_time(reply).ok_or_else(|| EventLogError::Corrupt {
            seq,
            reason: "no timestamp in ack subject".into(),
        })?;
        Self::parse(
            seq,
            time,
            msg.subject.as_str(),
            &msg.payload,
            msg.headers.as_ref(),
        )
    }

    /// Parses and validates a message read from the stream by its sequence (`STREAM.MSG.GET`),
    /// e.g. work a consumer acknowledged earlier and set aside.
    pub fn from_stream_message(
        msg: &async_nats::jetstream::message::StreamMessage,
    ) -> Result<Self, EventLogError> {
        let subject = msg.subject.as_str();
        Self::parse(
            msg.sequence,
            msg.time,
            subject,
            &msg.payload,
            Some(&msg.headers),
        )
    }

    fn parse(
        seq: u64,
        time: chrono::DateTime<chrono::Utc>,
        subject: &str,
        payload: &[u8],
        headers: Option<&HeaderMap>,
    ) -> Result<Self, EventLogError> {
        let corrupt = |reason: &str| EventLogError::Corrupt {
            seq,
            reason: reason.to_string(),
        };
        let parts = parse_subject(subject).map_err(|e| EventLogError::Corrupt {
            seq,
            reason: e.to_string(),
        })?;
        let tenant =
            events::TenantId::parse(parts.tenant).map_err(|_| corrupt("invalid tenant"))?;
        let commit = Commit::parse(seq, subject, payload)?;
        Ok(LoggedCommit {
            stream_seq: seq,
            subject: subject.to_string(),
            tenant,
            aggregate_type: parts.aggregate_type.to_string(),
            aggregate_id: parts.aggregate_id(),
            time,
            events: commit.events,
            headers: CommitHeaders::from_map(headers),
        })
    }
}

/// The storage timestamp from a `$JS.ACK.` reply subject (ADR-15; both the 9-token form and
/// the longer form with domain and account hash).
///
/// Parsed here rather than taken from `msg.info().published` because that field's type is
/// `time::OffsetDateTime` or `chrono::DateTime` depending on a feature of async-nats that any
/// crate in the build may switch on.
fn ack_subject_time(reply: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let tokens: Vec<&str> = reply.strip_prefix("$JS.ACK.")?.split('.').collect();
    let nanos_token = match tokens.len() {
        7 => tokens[5],
        n if n >= 9 => tokens[7],
        _ => return None,
    };
    let nanos: i64 = nanos_token.parse().ok()?;
    Some(chrono::DateTime::from_timestamp_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: usize, event_type: &str) -> SerializedEvent {
        SerializedEvent::new(
            "acme.c1".into(),
            seq,
            "counter".into(),
            event_type.into(),
            "1".into(),
            serde_json::json!({"by": 1}),
            serde_json::json!({"traceparent": "00-abc-def-01", "request_id": "r1", "principal": "u1"}),
        )
    }

    /// Regression: two aggregate types with the same id (a tenant's ACL and subscriptions)
    /// must never share a `Nats-Msg-Id`, or JetStream drops one's first commit as a duplicate.
    #[test]
    fn message_ids_differ_between_aggregate_types_with_the_same_id() {
        let of_type = |aggregate_type: &str| {
            let e = SerializedEvent::new(
                "acme.acme".into(),
                1,
                aggregate_type.into(),
                "Created".into(),
                "1".into(),
                serde_json::json!({}),
                serde_json::json!({}),
            );
            Commit::from_new_events(&[e]).unwrap().message_id().unwrap()
        };
        assert_ne!(of_type("acl"), of_type("subscription"));
    }

    #[test]
    fn commit_headers_and_ids() {
        let commit = Commit::from_new_events(&[event(3, "Added"), event(4, "Capped")]).unwrap();
        assert_eq!(commit.message_id().unwrap(), "counter:acme.c1:3");
        assert_eq!(commit.subject().unwrap(), "fe.ev.acme.counter.c1");
        let map = commit.headers().unwrap();
        assert_eq!(event_types(Some(&map)), ["Added", "Capped"]);
        assert_eq!(map.get(headers::REQUEST_ID).unwrap().as_str(), "r1");
        assert_eq!(map.get(headers::PRINCIPAL).unwrap().as_str(), "u1");
        assert_eq!(
            map.get(headers::TRACEPARENT).unwrap().as_str(),
            "00-abc-def-01"
        );
    }

    #[test]
    fn malformed_new_commits_are_rejected() {
        assert!(Commit::from_new_events(&[]).is_err());
        assert!(Commit::from_new_events(&[event(0, "Added")]).is_err());
        assert!(Commit::from_new_events(&[event(1, "Added"), event(3, "Added")]).is_err());
        assert!(Commit::from_new_events(&[event(1, "A,B")]).is_err());
        let mut other = event(2, "Added");
        other.aggregate_id = "acme.c2".into();
        assert!(Commit::from_new_events(&[event(1, "Added"), other]).is_err());
    }

    #[test]
    fn header_injection_from_metadata_is_dropped() {
        let mut e = event(1, "Added");
        e.metadata = serde_json::json!({"request_id": "r1\r\nX-Evil: 1"});
        let map = Commit::from_new_events(&[e]).unwrap().headers().unwrap();
        assert!(map.get(headers::REQUEST_ID).is_none());
    }

    #[test]
    fn parse_rejects_commits_on_foreign_subjects() {
        let body =
            serde_json::to_vec(&Commit::from_new_events(&[event(1, "Added")]).unwrap()).unwrap();
        assert!(Commit::parse(7, "fe.ev.acme.counter.c1", &body).is_ok());
        let err = Commit::parse(7, "fe.ev.acme.counter.c2", &body).unwrap_err();
        assert!(matches!(err, EventLogError::Corrupt { seq: 7, .. }));
        assert!(Commit::parse(7, "fe.ev.acme.counter.c1", b"{\"secret\":").is_err());
    }

    #[test]
    fn ack_subject_timestamps() {
        let v1 = "$JS.ACK.FE_EVENTS.c.1.42.1.1700000000123456789.0";
        let v2 = "$JS.ACK._.hash.FE_EVENTS.c.1.42.1.1700000000123456789.0.tok";
        for reply in [v1, v2] {
            let t = ack_subject_time(reply).unwrap();
            assert_eq!(t.timestamp_nanos_opt(), Some(1_700_000_000_123_456_789));
        }
        assert!(ack_subject_time("$JS.ACK.too.few").is_none());
        assert!(ack_subject_time("_INBOX.x").is_none());
    }
}
