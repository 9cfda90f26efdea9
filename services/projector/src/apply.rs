//! What one commit does to the read models, and whether a failure to apply it is transient
//! (retry: the database is down, a deadlock) or permanent (park the tenant: retrying the same
//! commit against the same schema and code can only fail again).

use platform::event_log::LoggedCommit;
use sqlx::{Postgres, Transaction};

use crate::audit::{Advance, ChainHeads, Writes};
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
pub(crate) async fn apply_events(
    tx: &mut Transaction<'_, Postgres>,
    commit: &LoggedCommit,
    heads: &mut ChainHeads,
    writes: Writes,
) -> Result<Option<Advance>, ProjectorError> {
    // Every commit of every aggregate type is audited.
    let advance = crate::audit::apply_commit(tx, commit, heads, writes).await?;
    apply_read_models(tx, commit).await?;
    Ok(advance)
}

/// The read models other than the audit index.
async fn apply_read_models(
    tx: &mut Transaction<'_, Postgres>,
    commit: &LoggedCommit,
) -> Result<(), ProjectorError> {
    if commit.aggregate_type == "acl" {
        return crate::acl::apply_commit(tx, commit).await;
    }
    if commit.aggregate_type == "subscription" {
        return crate::subscriptions::apply_commit(tx, commit).await;
    }
    if commit.aggregate_type == "storage" {
        return crate::quotas::apply_commit(tx, commit).await;
    }
    if commit.aggregate_type != "task" {
        // Unknown aggregate types are skipped so an older projector never blocks on a newer
        // log.
        return Ok(());
    }
    for stored in &commit.events {
        let corrupt = |reason: String| ProjectorError::Corrupt {
            seq: commit.stream_seq,
            reason,
        };
        let payload = events::upcast::upcast(
            &stored.event_type,
            &stored.event_version,
            stored.payload.clone(),
        )
        .map_err(|e| corrupt(e.to_string()))?;
        let event: events::task::TaskEvent =
            serde_json::from_value(payload).map_err(|e| corrupt(e.to_string()))?;
        crate::tasks::apply(tx, commit, &event).await?;
        crate::catalogue::apply(tx, commit, &event).await?;
    }
    Ok(())
}
