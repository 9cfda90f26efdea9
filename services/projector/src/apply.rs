//! What one commit does to the read models, and whether a failure to apply it is transient
//! (retry: the database is down, a deadlock) or permanent (park the tenant: retrying the same
//! commit against the same schema and code can only fail again).

use platform::event_log::LoggedCommit;
use sqlx::{Postgres, Transaction};

use events::task::TaskEvent;

use crate::audit::{Advance, ChainHeads, Writes};
use crate::catalogue::PendingDirs;
use crate::tasks::TaskChanges;
use crate::ProjectorError;

impl ProjectorError {
    /// Whether retrying later may succeed without anyone changing anything.
    ///
    /// Permanent: a commit the projector cannot read, and database errors about the data
    /// itself (SQLSTATE class 22 data exception, 23 integrity constraint violation, 54 program
    /// limit exceeded, e.g. an index row too large), or rows that do not decode. Everything
    /// else (connection, pool, I/O, serialization failures, deadlocks, a database shutting
    /// down, a missing table during a migration) is transient and retried without parking.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Corrupt { .. } | Self::Layout(_) => false,
            Self::Log(_) => true,
            Self::Db(e) => match e {
                sqlx::Error::Database(db) => !db.code().is_some_and(|code| {
                    code.starts_with("22") || code.starts_with("23") || code.starts_with("54")
                }),
                sqlx::Error::ColumnDecode { .. }
                | sqlx::Error::Decode(_)
                | sqlx::Error::TypeNotFound { .. }
                | sqlx::Error::ColumnNotFound(_)
                | sqlx::Error::ColumnIndexOutOfBounds { .. } => false,
                _ => true,
            },
        }
    }
}

/// Applies the events of one commit inside the caller's transaction (no checkpoint) and
/// returns what it did to the audit index (see [`ChainHeads::advance`]).
///
/// `events` are the commit's task events as [`task_events`] decoded them (the caller decodes
/// each commit once). With [`Writes::Deferred`] the commit belongs to a batch whose task-table
/// changes the caller writes set-based ahead of the batch ([`TaskChanges`]); with
/// [`Writes::Immediate`] the commit's own task changes are written here.
///
/// Directories created are gathered in `dirs` (see [`PendingDirs`]); the caller flushes it
/// before its transaction (or savepoint) ends.
pub(crate) async fn apply_events(
    tx: &mut Transaction<'_, Postgres>,
    commit: &LoggedCommit,
    events: &[TaskEvent],
    heads: &mut ChainHeads,
    writes: Writes,
    dirs: &mut PendingDirs,
) -> Result<Option<Advance>, ProjectorError> {
    // Every commit of every aggregate type is audited.
    let advance = crate::audit::apply_commit(tx, commit, heads, writes).await?;
    if writes == Writes::Immediate && !events.is_empty() {
        let mut tasks = TaskChanges::default();
        tasks.record(commit, events)?;
        tasks.flush(tx).await?;
    }
    apply_read_models(tx, commit, events, dirs).await?;
    Ok(advance)
}

/// The aggregate type of tasks, whose commits feed the task table and the catalogue.
pub(crate) const TASK: &str = "task";

/// The read models other than the audit index and the task table.
async fn apply_read_models(
    tx: &mut Transaction<'_, Postgres>,
    commit: &LoggedCommit,
    events: &[TaskEvent],
    dirs: &mut PendingDirs,
) -> Result<(), ProjectorError> {
    if commit.aggregate_type != TASK {
        dirs.flush(tx).await?;
    }
    match commit.aggregate_type.as_str() {
        "acl" => crate::acl::apply_commit(tx, commit).await,
        "subscription" => crate::subscriptions::apply_commit(tx, commit).await,
        "storage" => crate::quotas::apply_commit(tx, commit).await,
        TASK => {
            for event in events {
                crate::catalogue::apply(tx, commit, event, dirs).await?;
            }
            Ok(())
        }
        // Unknown aggregate types are skipped so an older projector never blocks on a newer
        // log.
        _ => Ok(()),
    }
}

/// The events of a task commit, upcast and decoded (none for other aggregate types).
pub(crate) fn task_events(commit: &LoggedCommit) -> Result<Vec<TaskEvent>, ProjectorError> {
    if commit.aggregate_type != TASK {
        return Ok(Vec::new());
    }
    let corrupt = |reason: String| ProjectorError::Corrupt {
        seq: commit.stream_seq,
        reason,
    };
    commit
        .events
        .iter()
        .map(|stored| {
            let payload = events::upcast::upcast(
                &stored.event_type,
                &stored.event_version,
                stored.payload.clone(),
            )
            .map_err(|e| corrupt(e.to_string()))?;
            serde_json::from_value(payload).map_err(|e| corrupt(e.to_string()))
        })
        .collect()
}
