//! Which directories an upload brings into existence, so each gets its own `dir.created` event
//! (API.md Events: "every entry that comes into existence ... has its own event"); a
//! `mkdir -p` decides the same from its one precondition lookup (`events::task::mkdir`).
//!
//! Decided from the catalogue (the log's own view of what exists), not from storage: storage
//! may already hold the directories of an interrupted earlier attempt, the catalogue does not
//! (it changes only when this task's success is committed). The worker's turn-taking keeps
//! every other task touching an ancestor from running in between, so a redo computes the
//! same answer: the events are deterministic and redo-safe.

use events::task::mkdir;
use events::{FilePath, TenantId};
use sqlx::PgPool;

/// The strict ancestors of `path` (never the root) the catalogue does not hold as
/// directories, top down: what creating `path` with its parents brings into existence.
pub async fn missing_ancestors(
    pool: &PgPool,
    tenant: &TenantId,
    path: &FilePath,
) -> Result<Vec<FilePath>, sqlx::Error> {
    if path.parent().is_none_or(|parent| parent.is_root()) {
        return Ok(Vec::new());
    }
    let ancestors = mkdir::paths_to_look_up(path);
    let held = platform::catalogue::held_at(pool, tenant, &ancestors).await?;
    Ok(mkdir::missing_parents(path, |p| {
        held.get(p.as_str()).copied()
    }))
}
