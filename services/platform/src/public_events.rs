//! The public events of one log commit, as the notifier and the SSE endpoint deliver them.
//!
//! There is one mapping from a commit to its CloudEvents (`events::public`), applied once, by
//! the audit projection (`projector::audit`), which also gives every event its position in its
//! tenant's history (`seq`). This adapter reads those stored events back: webhooks and SSE
//! send the very bytes the audit index holds and hashed, so for one event `id` the audit API,
//! a webhook body and an SSE `data` line are identical, attribution (`principal`/`actor`) and
//! positions included. Callers must have waited for the projection to pass the commit (the
//! notifier and SSE both do); before that the commit has no stored events.
//!
//! Only the [`PUBLIC_TYPES`](events::public::PUBLIC_TYPES) are returned, each with the paths it
//! is about: its subject and, for moves and copies, the target (for `task.failed` and
//! `task.dead_lettered`, the task's paths, which the audit projection filled in).

use events::public::{CloudEvent, PUBLIC_TYPES};
use events::{FilePath, TenantId};
use sqlx::PgPool;

use crate::event_log::LoggedCommit;

/// One public event of a commit with the paths it is about.
#[derive(Clone, Debug, PartialEq)]
pub struct PublicEvent {
    /// `dir.created`, ...
    pub short_type: String,
    /// The event's position in its tenant's history.
    pub seq: u64,
    pub event: CloudEvent,
    /// The event exactly as stored in the audit index (canonical JSON): what is delivered.
    pub body: String,
    /// The subject and, for moves and copies, the target.
    pub paths: Vec<FilePath>,
}

#[derive(sqlx::FromRow)]
struct StoredRow {
    seq: i64,
    #[sqlx(rename = "type")]
    short_type: String,
    path: String,
    target: Option<String>,
    event: String,
}

/// The public events of `commit`, in commit order.
pub async fn public_events(
    pool: &PgPool,
    commit: &LoggedCommit,
) -> Result<Vec<PublicEvent>, sqlx::Error> {
    let rows: Vec<StoredRow> = sqlx::query_as(
        "SELECT seq, type, path, target, event FROM audit_events
         WHERE tenant = $1 AND logseq = $2 AND type = ANY($3) ORDER BY idx",
    )
    .bind(commit.tenant.as_str())
    .bind(i64::try_from(commit.stream_seq).unwrap_or(i64::MAX))
    .bind(PUBLIC_TYPES)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| to_public(commit, row))
        .collect())
}

/// Whether the audit projection has indexed `commit` (any event of it).
pub async fn is_indexed(pool: &PgPool, commit: &LoggedCommit) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM audit_events WHERE tenant = $1 AND logseq = $2)",
    )
    .bind(commit.tenant.as_str())
    .bind(i64::try_from(commit.stream_seq).unwrap_or(i64::MAX))
    .fetch_one(pool)
    .await
}

/// The log position of the commit holding the tenant's event `seq`, if it is indexed.
pub async fn logseq_of(
    pool: &PgPool,
    tenant: &TenantId,
    seq: u64,
) -> Result<Option<u64>, sqlx::Error> {
    let logseq: Option<i64> =
        sqlx::query_scalar("SELECT logseq FROM audit_events WHERE tenant = $1 AND seq = $2")
            .bind(tenant.as_str())
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .fetch_optional(pool)
            .await?;
    Ok(logseq.map(|l| l.max(0) as u64))
}

/// The tenant's last event position and its log position (0, 0 before its first event).
pub async fn tenant_head(pool: &PgPool, tenant: &TenantId) -> Result<(u64, u64), sqlx::Error> {
    let head: Option<(i64, i64)> =
        sqlx::query_as("SELECT seq, logseq FROM audit_heads WHERE tenant = $1")
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?;
    Ok(head.map_or((0, 0), |(s, l)| (s.max(0) as u64, l.max(0) as u64)))
}

fn to_public(commit: &LoggedCommit, row: StoredRow) -> Option<PublicEvent> {
    let event: CloudEvent = match serde_json::from_str(&row.event) {
        Ok(event) => event,
        Err(e) => {
            metrics::counter!("fe_public_event_errors_total").increment(1);
            tracing::error!(seq = commit.stream_seq, error = %e, "stored event does not parse; skipped");
            return None;
        }
    };
    let paths = std::iter::once(row.path.as_str())
        .chain(row.target.as_deref())
        .filter_map(|p| FilePath::parse(p).ok())
        .collect();
    Some(PublicEvent {
        short_type: row.short_type,
        seq: row.seq.max(0) as u64,
        event,
        body: row.event,
        paths,
    })
}
