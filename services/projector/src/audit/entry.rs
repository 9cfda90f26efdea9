//! One commit of the log as rows of the audit index: the pure mapping shared by the
//! projection (which writes the rows) and the verifier (which recomputes them from the log and
//! compares), so both can only ever agree on what a row should hold.
//!
//! Later commits of a task need its [`TaskContext`] (from its `task.requested`): events that
//! name no path take the task's path as subject, and every event of the task has the task's
//! requester as `principal` and its committer as `actor` (`events::public::attribution`).
//! The projector looks the context up in the index; the verifier remembers it while reading.
//!
//! Each event gets its tenant's next position (`seq`); the caller passes the first one (the
//! tenant's head + 1), so the rows of a commit are numbered without gaps.

use chrono::{DateTime, Utc};
use events::audit_chain::{canonical_json, chain_hash};
use events::public::{attribution, cloud_event, CloudEvent, EventContext, LogEvent};
use platform::event_log::{LoggedCommit, StoredEvent};
use uuid::Uuid;

/// Task events whose payload names no path: their subject is the task's path.
const PATHLESS: &[&str] = &[
    "task.started",
    "file.scanned",
    "task.succeeded",
    "task.failed",
    "task.dead_lettered",
    "task.retried",
];

/// What later events of a task take from its `task.requested`: subject, target, principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskContext {
    pub path: String,
    pub target: Option<String>,
    pub principal: String,
}

/// One row of the audit index, before chaining.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the tenant's history.
    pub seq: u64,
    /// Stream sequence of the commit.
    pub logseq: u64,
    pub idx: u32,
    pub tenant: String,
    pub short_type: String,
    pub path: String,
    pub target: Option<String>,
    pub task_id: Option<Uuid>,
    pub principal: String,
    pub actor: String,
    pub request_id: Option<String>,
    pub time: DateTime<Utc>,
    /// Canonical JSON of the event's CloudEvent: the bytes that are hashed.
    pub event: String,
}

impl AuditEntry {
    /// This entry's chained hash given the previous hash of its tenant.
    pub fn hash(&self, prev: &[u8; 32]) -> [u8; 32] {
        chain_hash(prev, self.seq, self.event.as_bytes())
    }
}

/// Whether this commit belongs to a task (and so may need its paths from an earlier commit).
pub fn task_id(commit: &LoggedCommit) -> Option<Uuid> {
    if commit.aggregate_type != crate::apply::TASK {
        return None;
    }
    let (_, id) = commit.aggregate_id.split_once('.')?;
    Uuid::parse_str(id).ok()
}

/// Whether the commit needs its task's context from an earlier `task.requested`.
pub fn needs_task_context(commit: &LoggedCommit) -> bool {
    task_id(commit).is_some()
        && !commit
            .events
            .iter()
            .any(|e| e.event_type == "task.requested")
}

/// The rows of one commit, numbered from `first_seq` (the tenant's next position). `known` is
/// the task's context from an earlier commit, if any; a `task.requested` inside the commit
/// takes precedence for the events after it.
pub fn entries(
    commit: &LoggedCommit,
    known: Option<&TaskContext>,
    first_seq: u64,
) -> Result<Vec<AuditEntry>, String> {
    let mut task = known.cloned();
    let task_id = task_id(commit);
    let mut out = Vec::with_capacity(commit.events.len());
    for (index, stored) in commit.events.iter().enumerate() {
        let seq = first_seq + index as u64;
        let ev = to_event(commit, index, seq, stored, task.as_ref())?;
        let short_type = ev
            .short_type()
            .ok_or_else(|| format!("event {index} has no short type"))?
            .to_owned();
        let pathless = PATHLESS.contains(&short_type.as_str());
        let target = match (ev.target(), pathless) {
            (Some(to), _) => Some(to.to_owned()),
            (None, true) => task.as_ref().and_then(|t| t.target.clone()),
            (None, false) => None,
        };
        if short_type == "task.requested" {
            task = Some(TaskContext {
                path: ev.subject.clone(),
                target: target.clone(),
                principal: ev.principal.clone(),
            });
        }
        let idx = u32::try_from(index).map_err(|_| "too many events in one commit".to_owned())?;
        let value = serde_json::to_value(&ev).map_err(|e| format!("event {index}: {e}"))?;
        out.push(AuditEntry {
            seq,
            logseq: commit.stream_seq,
            idx,
            tenant: commit.tenant.as_str().to_owned(),
            short_type,
            path: ev.subject,
            target,
            task_id,
            principal: ev.principal,
            actor: ev.actor,
            request_id: context_value(commit, stored, "request_id"),
            time: commit.time,
            event: canonical_json(&value),
        });
    }
    Ok(out)
}

/// The context a commit's `task.requested` establishes, for later commits of the same task.
pub fn requested_context(entries: &[AuditEntry]) -> Option<TaskContext> {
    entries
        .iter()
        .find(|e| e.short_type == "task.requested")
        .map(|e| TaskContext {
            path: e.path.clone(),
            target: e.target.clone(),
            principal: e.principal.clone(),
        })
}

fn to_event(
    commit: &LoggedCommit,
    index: usize,
    seq: u64,
    stored: &StoredEvent,
    task: Option<&TaskContext>,
) -> Result<CloudEvent, String> {
    let committed_by =
        context_value(commit, stored, "principal").unwrap_or_else(|| "system".to_owned());
    let (principal, actor) = attribution(&committed_by, task.map(|t| t.principal.as_str()));
    let traceparent = context_value(commit, stored, "traceparent");
    let ctx = EventContext {
        seq,
        logseq: commit.stream_seq,
        index,
        time: commit.time,
        tenant: &commit.tenant,
        principal,
        actor,
        traceparent: traceparent.as_deref(),
    };
    let event = LogEvent {
        aggregate_type: &commit.aggregate_type,
        aggregate_id: &commit.aggregate_id,
        event_type: &stored.event_type,
        event_version: &stored.event_version,
        payload: &stored.payload,
    };
    cloud_event(&event, &ctx, task.map(|t| t.path.as_str()))
        .map_err(|e| format!("event {index}: {e}"))
}

/// A context value of the commit: the message header when present, else the event's own
/// metadata (headers are left out when a value cannot be a header, the metadata never is).
fn context_value(commit: &LoggedCommit, stored: &StoredEvent, key: &str) -> Option<String> {
    let header = match key {
        "principal" => commit.headers.principal.as_ref(),
        "request_id" => commit.headers.request_id.as_ref(),
        "traceparent" => commit.headers.traceparent.as_ref(),
        _ => None,
    };
    header
        .cloned()
        .or_else(|| stored.metadata_value(key).map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::event_log::CommitHeaders;
    use serde_json::json;

    const TASK: &str = "0190a0b0-0000-7000-8000-000000000001";

    fn commit(seq: u64, events: Vec<(&str, serde_json::Value)>) -> LoggedCommit {
        let aggregate_id = format!("acme.{TASK}");
        LoggedCommit {
            stream_seq: seq,
            subject: format!("fe.ev.acme.task.{TASK}"),
            tenant: events::TenantId::parse("acme").unwrap(),
            aggregate_type: "task".into(),
            aggregate_id: aggregate_id.clone(),
            time: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            events: events
                .into_iter()
                .enumerate()
                .map(|(i, (ty, payload))| StoredEvent {
                    aggregate_type: "task".into(),
                    aggregate_id: aggregate_id.clone(),
                    sequence: i + 1,
                    event_type: ty.into(),
                    event_version: "1".into(),
                    payload,
                    metadata: json!({"principal": "meta-user", "request_id": "r-meta"}),
                })
                .collect(),
            headers: CommitHeaders {
                traceparent: None,
                request_id: Some("r-1".into()),
                principal: Some("alice".into()),
            },
        }
    }

    fn requested_move() -> (&'static str, serde_json::Value) {
        (
            "task.requested",
            json!({"TaskRequested": {"task_id": TASK, "tenant": "acme",
            "principal": "alice", "spec": {"kind": "command", "op": "move", "from": "/a",
            "to": "/b", "overwrite": false}, "idempotency_key": null, "body_hash": null,
            "requested_at": "2026-01-01T00:00:00Z"}}),
        )
    }

    #[test]
    fn a_task_request_gives_its_paths_to_later_pathless_events() {
        let c = commit(
            5,
            vec![
                requested_move(),
                (
                    "task.failed",
                    json!({"TaskFailed": {"error": {"code": "not_found", "message": "m"}}}),
                ),
            ],
        );
        let rows = entries(&c, None, 1).unwrap();
        assert_eq!(rows[1].path, "/a");
        assert_eq!(rows[1].target.as_deref(), Some("/b"));
        assert_eq!(rows[1].short_type, "task.failed");
        assert_eq!(rows[1].principal, "alice");
        assert_eq!(rows[1].request_id.as_deref(), Some("r-1"));
        assert_eq!((rows[1].seq, rows[1].logseq, rows[1].idx), (2, 5, 1));
        assert_eq!(requested_context(&rows).unwrap().path, "/a");
        assert!(!needs_task_context(&c));
    }

    #[test]
    fn later_commits_use_the_known_paths_or_the_root() {
        let c = commit(9, vec![("task.succeeded", json!("TaskSucceeded"))]);
        assert!(needs_task_context(&c));
        let known = TaskContext {
            path: "/x".into(),
            target: None,
            principal: "alice".into(),
        };
        assert_eq!(entries(&c, Some(&known), 1).unwrap()[0].path, "/x");
        assert_eq!(entries(&c, None, 1).unwrap()[0].path, "/");
        let moved = commit(
            9,
            vec![(
                "entry.moved",
                json!({"EntryMoved": {"from": "/a", "to": "/b", "overwrite": false}}),
            )],
        );
        assert!(needs_task_context(&moved));
        assert_eq!(
            entries(&moved, None, 1).unwrap()[0].target.as_deref(),
            Some("/b")
        );
    }

    #[test]
    fn worker_commits_are_attributed_to_the_requester() {
        let mut c = commit(9, vec![("task.succeeded", json!("TaskSucceeded"))]);
        c.headers.principal = Some("system:worker".into());
        let known = TaskContext {
            path: "/x".into(),
            target: None,
            principal: "alice".into(),
        };
        let row = &entries(&c, Some(&known), 1).unwrap()[0];
        assert_eq!(
            (row.principal.as_str(), row.actor.as_str()),
            ("alice", "system:worker")
        );
        let row = &entries(&c, None, 1).unwrap()[0];
        assert_eq!(
            (row.principal.as_str(), row.actor.as_str()),
            ("system:worker", "system:worker")
        );
    }

    #[test]
    fn entries_are_canonical_and_hash_deterministically() {
        let c = commit(3, vec![requested_move()]);
        let a = entries(&c, None, 12).unwrap();
        let b = entries(&c, None, 12).unwrap();
        assert_eq!(a, b);
        let v: serde_json::Value = serde_json::from_str(&a[0].event).unwrap();
        assert_eq!(canonical_json(&v), a[0].event);
        assert_eq!(
            (v["seq"].as_u64(), v["logseq"].as_u64()),
            (Some(12), Some(3))
        );
        assert_ne!(a[0].hash(&[0; 32]), a[0].hash(&[1; 32]));
    }

    #[test]
    fn headers_fall_back_to_event_metadata() {
        let mut c = commit(3, vec![requested_move()]);
        c.headers = CommitHeaders::default();
        let rows = entries(&c, None, 1).unwrap();
        assert_eq!(rows[0].principal, "meta-user");
        assert_eq!(rows[0].request_id.as_deref(), Some("r-meta"));
    }
}
