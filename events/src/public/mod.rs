//! Public events: every logged event as a CloudEvents 1.0 JSON object (API.md "Events").
//!
//! Owns the mapping from a stored domain event (aggregate type, aggregate id, event type,
//! version, payload) plus its log context (stream sequence, index within the commit, storage
//! time, tenant, principal, trace context) to a [`CloudEvent`]: the `type`
//! (`io.file-engine.<short>.v1`), a deterministic `id`, the `subject` path and a clean
//! public `data` shape per type (see `data.rs`). The audit index, the notifier and SSE all
//! build their events here, so one event has one form and one id everywhere: a redelivered or
//! replayed event maps to the same bytes.
//!
//! **Positions.** `seq` is the event's position in its tenant's history (1, 2, 3, … with no
//! gaps and no repeats; assigned by the audit projection, the one place that sees a tenant's
//! events in order) and `logseq` the stream sequence of the commit it came from. The `id` is
//! derived from `(logseq, index in the commit)`, so it never depends on the projection.
//!
//! **Attribution** (one rule, [`attribution`]): `principal` is who asked for the event (the
//! task's requester for every event of a task), `actor` who performed it (the identity that
//! committed it: a user, or a service such as `system:worker`).
//!
//! `time` is the log's storage time truncated to microseconds, the precision PostgreSQL keeps,
//! so a time read from an event is exact as an audit `from`/`to` bound.
//!
//! The audit trail shows every event ([`ALL_TYPES`]); subscribers are notified of the
//! [`PUBLIC_TYPES`] only. JSON Schemas of all of them live in `schemas/` at the repository
//! root and are checked against what this module emits by the end-to-end tests.
//!
//! Pure: no IO, no clock reads (the time is the log's storage time, passed in).

mod data;
#[cfg(test)]
mod tests;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::acl::AclEvent;
use crate::storage::StorageEvent;
use crate::subscription::SubscriptionEvent;
use crate::task::TaskEvent;
use crate::upcast::{upcast, UpcastError, CURRENT_VERSION};
use crate::TenantId;

/// The CloudEvents spec version emitted.
pub const SPEC_VERSION: &str = "1.0";
/// `datacontenttype` of every event.
pub const DATA_CONTENT_TYPE: &str = "application/json";
const TYPE_PREFIX: &str = "io.file-engine.";
const TYPE_SUFFIX: &str = ".v1";

/// Short types subscribers (webhooks, SSE) are notified of: the list of API.md "Events".
pub const PUBLIC_TYPES: &[&str] = &[
    "dir.created",
    "file.uploaded",
    "file.available",
    "file.quarantined",
    "entry.moved",
    "entry.copied",
    "entry.deleted",
    "task.failed",
    "task.dead_lettered",
    "acl.rule_granted",
    "acl.rule_revoked",
];

/// Every short type the log holds; the audit API shows all of them.
pub const ALL_TYPES: &[&str] = &[
    "task.requested",
    "task.started",
    "dir.created",
    "entry.moved",
    "entry.copied",
    "entry.deleted",
    "file.uploaded",
    "file.scanned",
    "file.available",
    "file.quarantined",
    "task.succeeded",
    "task.failed",
    "task.dead_lettered",
    "task.retried",
    "acl.rule_granted",
    "acl.rule_revoked",
    "subscription.created",
    "subscription.deleted",
    "subscription.disabled",
    "quota.set",
    "storage.collected",
];

/// Log context of one event, supplied by the audit projection from the commit.
#[derive(Clone, Copy, Debug)]
pub struct EventContext<'a> {
    /// Position of the event in its tenant's history (`seq` extension: 1, 2, 3, …).
    pub seq: u64,
    /// Stream sequence of the commit (`logseq` extension; global, increasing).
    pub logseq: u64,
    /// Position of the event within its commit.
    pub index: usize,
    /// When JetStream stored the commit.
    pub time: DateTime<Utc>,
    pub tenant: &'a TenantId,
    /// Who asked for the event (see [`attribution`]).
    pub principal: &'a str,
    /// Who performed it (see [`attribution`]).
    pub actor: &'a str,
    pub traceparent: Option<&'a str>,
}

/// One event as a CloudEvents 1.0 object with the File Engine extensions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub time: DateTime<Utc>,
    pub subject: String,
    pub datacontenttype: String,
    pub data: Value,
    pub tenant: String,
    pub principal: String,
    pub actor: String,
    pub seq: u64,
    pub logseq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl CloudEvent {
    /// The short type (`dir.created`) of this event's `type`.
    pub fn short_type(&self) -> Option<&str> {
        short_type(&self.event_type)
    }

    /// The target path of a move or copy (`data.to`).
    pub fn target(&self) -> Option<&str> {
        self.data.get("to").and_then(Value::as_str)
    }
}

/// One stored event as the mapping needs it (the fields of the log's stored event).
#[derive(Clone, Copy, Debug)]
pub struct LogEvent<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a Value,
}

/// Why an event could not be mapped. Messages name types and versions, never payloads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublicEventError {
    #[error("event of aggregate type {0} has no valid dotted type name")]
    UnknownAggregate(String),
    #[error("aggregate id of a task is not <tenant>.<uuid>")]
    InvalidTaskId,
    #[error(transparent)]
    Upcast(#[from] UpcastError),
    #[error("payload of {event_type} does not match its type ({reason})")]
    Payload { event_type: String, reason: String },
    #[error("event type {declared} does not match its payload ({actual})")]
    TypeMismatch { declared: String, actual: String },
}

/// Every event of the log as a CloudEvent; `payload` is at the current version and the task's
/// path is not known (path-less task events get subject `/`). Prefer [`cloud_event`] when the
/// stored version or the task's path is at hand.
pub fn to_cloud_event(
    aggregate_type: &str,
    aggregate_id: &str,
    event_type: &str,
    payload: &Value,
    ctx: &EventContext,
) -> Result<CloudEvent, PublicEventError> {
    let event = LogEvent {
        aggregate_type,
        aggregate_id,
        event_type,
        event_version: CURRENT_VERSION,
        payload,
    };
    cloud_event(&event, ctx, None)
}

/// Maps one stored event (upcast from its version first) to its CloudEvent. `task_path` is
/// the path of the task the event belongs to (the `subject` of its `task.requested`), used as
/// the subject of task events whose payload names no path.
pub fn cloud_event(
    event: &LogEvent,
    ctx: &EventContext,
    task_path: Option<&str>,
) -> Result<CloudEvent, PublicEventError> {
    let payload = upcast(event.event_type, event.event_version, event.payload.clone())?;
    let bad_payload = |e: serde_json::Error| PublicEventError::Payload {
        event_type: event.event_type.to_owned(),
        reason: format!("{:?} error", e.classify()),
    };
    let (actual, shaped) = match event.aggregate_type {
        "task" => {
            let task_id = task_id(event.aggregate_id)?;
            let typed: TaskEvent = serde_json::from_value(payload).map_err(bad_payload)?;
            (typed.name(), data::task(task_id, typed, task_path))
        }
        "acl" => {
            let typed: AclEvent = serde_json::from_value(payload).map_err(bad_payload)?;
            (acl_name(&typed), data::acl(typed))
        }
        "subscription" => {
            let typed: SubscriptionEvent = serde_json::from_value(payload).map_err(bad_payload)?;
            (subscription_name(&typed), data::subscription(typed))
        }
        "storage" => {
            let typed: StorageEvent = serde_json::from_value(payload).map_err(bad_payload)?;
            (typed.name(), data::storage(typed))
        }
        other => (
            generic_name(event.event_type)
                .ok_or_else(|| PublicEventError::UnknownAggregate(other.to_owned()))?,
            data::generic(payload),
        ),
    };
    if actual != event.event_type {
        return Err(PublicEventError::TypeMismatch {
            declared: event.event_type.to_owned(),
            actual: actual.to_owned(),
        });
    }
    Ok(CloudEvent {
        specversion: SPEC_VERSION.to_owned(),
        id: event_id(ctx.logseq, ctx.index),
        source: format!("/tenants/{}", ctx.tenant.as_str()),
        event_type: full_type(actual),
        time: ctx.time.trunc_subsecs(6),
        subject: shaped.subject,
        datacontenttype: DATA_CONTENT_TYPE.to_owned(),
        data: shaped.data,
        tenant: ctx.tenant.as_str().to_owned(),
        principal: ctx.principal.to_owned(),
        actor: ctx.actor.to_owned(),
        seq: ctx.seq,
        logseq: ctx.logseq,
        traceparent: ctx.traceparent.map(str::to_owned),
    })
}

/// Who an event is attributed to: `(principal, actor)`. `principal` is who asked for it: for
/// every event of a task the task's requester (an effect the worker or scanner committed, a
/// retry an admin asked for: the task is still the requester's), else the committer. `actor`
/// is who performed it: always the identity that committed the event (`system:worker`, the
/// admin who retried, the user who granted a rule).
pub fn attribution<'a>(
    committed_by: &'a str,
    task_principal: Option<&'a str>,
) -> (&'a str, &'a str) {
    (task_principal.unwrap_or(committed_by), committed_by)
}

/// Fixed namespace of event ids (a random v4 uuid, chosen once).
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x3b9e_51d2_7c0a_4f6e_8d21_95a4_c7e0_1b3f);

/// The event id of the `index`th event of the commit at stream sequence `logseq`: a
/// name-based UUID, so a redelivered or replayed event carries the same id.
pub fn event_id(logseq: u64, index: usize) -> String {
    Uuid::new_v5(&EVENT_ID_NAMESPACE, format!("{logseq}.{index}").as_bytes()).to_string()
}

/// Whether subscribers (webhooks, SSE) are notified of this short type.
pub fn is_public(short_type: &str) -> bool {
    PUBLIC_TYPES.contains(&short_type)
}

/// Whether only tenant admins may receive this short type from a subscriber channel (SSE and
/// webhooks alike): rule and subscription events describe the access configuration, which
/// only admins may read (API.md "Notifications").
pub fn is_admin_only(short_type: &str) -> bool {
    short_type.starts_with("acl.") || short_type.starts_with("subscription.")
}

/// `"dir.created"` -> `"io.file-engine.dir.created.v1"`.
pub fn full_type(short_type: &str) -> String {
    format!("{TYPE_PREFIX}{short_type}{TYPE_SUFFIX}")
}

/// `"io.file-engine.dir.created.v1"` -> `"dir.created"`; `None` for any other form.
pub fn short_type(event_type_full: &str) -> Option<&str> {
    let short = event_type_full
        .strip_prefix(TYPE_PREFIX)?
        .strip_suffix(TYPE_SUFFIX)?;
    (!short.is_empty()).then_some(short)
}

/// The task id of a task aggregate id `"<tenant>.<uuid>"`.
fn task_id(aggregate_id: &str) -> Result<Uuid, PublicEventError> {
    aggregate_id
        .split_once('.')
        .and_then(|(_, id)| Uuid::parse_str(id).ok())
        .ok_or(PublicEventError::InvalidTaskId)
}

/// The name of an event of an aggregate this crate does not model (e.g. one added by a newer
/// service): accepted as-is when it is a plain dotted lowercase name, so the audit trail
/// indexes it instead of stalling on it.
fn generic_name(event_type: &str) -> Option<&str> {
    let plain = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.';
    let ok = !event_type.is_empty()
        && event_type.len() <= 64
        && event_type.contains('.')
        && event_type.bytes().all(plain);
    ok.then_some(event_type)
}

fn subscription_name(event: &SubscriptionEvent) -> &'static str {
    match event {
        SubscriptionEvent::Created { .. } => "subscription.created",
        SubscriptionEvent::Deleted { .. } => "subscription.deleted",
        SubscriptionEvent::Disabled { .. } => "subscription.disabled",
    }
}

fn acl_name(event: &AclEvent) -> &'static str {
    match event {
        AclEvent::RuleGranted { .. } => "acl.rule_granted",
        AclEvent::RuleRevoked { .. } => "acl.rule_revoked",
    }
}
