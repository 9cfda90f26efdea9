//! Preconditions of each file command, checked against the catalogue.
//!
//! Storage holds only immutable blobs, so mkdir, move, copy and delete of files and whole
//! trees have no storage effect at all: the command's fact (`DirCreated`, `EntryMoved`, ...)
//! committed with the task's success *is* the effect, and the projection applies it to the
//! catalogue. What the worker still owns is deciding whether the command may succeed. The
//! catalogue is up to date for that decision: the worker takes its turn only after every
//! earlier task on an overlapping path is terminal in the read model, and a task's outcome and
//! its catalogue change are projected in the same transaction.
//!
//! Because nothing is written, a redelivery after a crash simply decides again and records
//! the same outcome: there is nothing to redo.

use events::quota::{self, Limits};
use events::task::{mkdir, FileCommand, TaskFailure};
use events::{FilePath, TenantId};
use platform::catalogue::{self, EntryKind};
use sqlx::PgPool;

/// How an attempt to execute an effect ended.
pub enum EffectError {
    /// The task can never succeed as asked: fail it with this failure.
    Permanent(TaskFailure),
    /// A dependency misbehaved; another delivery may succeed.
    Transient(String),
}

impl From<platform::storage::StorageError> for EffectError {
    /// The storage error's own text stays in the log: clients get its code with a fixed
    /// message ([`TaskFailure::generic`]).
    fn from(e: platform::storage::StorageError) -> Self {
        match e {
            platform::storage::StorageError::Io(msg) => Self::Transient(msg),
            other => {
                tracing::info!(error = %other, "worker: storage refused the effect");
                Self::Permanent(TaskFailure::generic(other.code()))
            }
        }
    }
}

impl From<sqlx::Error> for EffectError {
    fn from(e: sqlx::Error) -> Self {
        Self::Transient(format!("catalogue: {e}"))
    }
}

fn fail(code: &str, message: impl Into<String>) -> EffectError {
    EffectError::Permanent(TaskFailure::new(code, message))
}

async fn require_dir(pool: &PgPool, t: &TenantId, p: &FilePath) -> Result<(), EffectError> {
    match catalogue::kind_of(pool, t, p).await? {
        Some(EntryKind::Dir) => Ok(()),
        Some(EntryKind::File) => Err(fail("conflict", format!("{p} is not a directory"))),
        None => Err(fail("not_found", format!("{p} does not exist"))),
    }
}

/// What a command that may succeed brings about beyond its own fact.
#[derive(Debug, Default)]
pub struct Checked {
    /// The directories above a `mkdir -p` path it creates, top down (each gets its own
    /// `dir.created`, see `promote.rs`); empty for every other command.
    pub created_parents: Vec<FilePath>,
}

/// Checks what must hold for the command to succeed (a copy must also fit the quota: the
/// API refused what it could foresee, but copies and uploads accepted meanwhile count too).
pub async fn check_preconditions(
    pool: &PgPool,
    quota: Limits,
    t: &TenantId,
    cmd: &FileCommand,
) -> Result<Checked, EffectError> {
    let checked = match cmd {
        FileCommand::Mkdir { path, parents } => {
            let held = catalogue::held_at(pool, t, &mkdir::paths_to_look_up(path)).await?;
            let decided = mkdir::decide(path, *parents, |p| held.get(p.as_str()).copied());
            return decided
                .map(|created_parents| Checked { created_parents })
                .map_err(EffectError::Permanent);
        }
        FileCommand::Delete { path, recursive } => {
            if path.is_root() {
                return Err(fail("conflict", "the root cannot be deleted"));
            }
            match catalogue::kind_of(pool, t, path).await? {
                None => Err(fail("not_found", format!("{path} does not exist"))),
                Some(EntryKind::Dir)
                    if !*recursive && catalogue::has_children(pool, t, path).await? =>
                {
                    Err(fail("not_empty", format!("{path} is not empty")))
                }
                Some(_) => Ok(()),
            }
        }
        FileCommand::Move {
            from,
            to,
            overwrite,
        }
        | FileCommand::Copy {
            from,
            to,
            overwrite,
        } => {
            if from.contains(to) || to.contains(from) {
                return Err(fail("conflict", format!("{to} and {from} overlap")));
            }
            if catalogue::kind_of(pool, t, from).await?.is_none() {
                return Err(fail("not_found", format!("{from} does not exist")));
            }
            if let Some(parent) = to.parent() {
                require_dir(pool, t, &parent).await?;
            }
            if !*overwrite && catalogue::kind_of(pool, t, to).await?.is_some() {
                return Err(fail("already_exists", format!("{to} already exists")));
            }
            // Every rebased descendant must stay within the path limits, else the committed
            // fact would give the read models a path they cannot hold.
            let longest = catalogue::longest_path_in_subtree(pool, t, from)
                .await?
                .unwrap_or(from.as_str().len());
            FilePath::check_subtree_rebase(from, to, longest)
                .map_err(|e| fail("path_invalid", e.to_string()))?;
            if matches!(cmd, FileCommand::Copy { .. }) {
                let change = catalogue::copy_change(pool, t, from, to, *overwrite).await?;
                let standing = catalogue::standing(pool, t, quota).await?;
                quota::admit(standing.limits, standing.used, change)
                    .map_err(|e| fail("quota_exceeded", e.to_string()))?;
            }
            Ok(())
        }
    };
    checked.map(|()| Checked::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::storage::StorageError;

    #[test]
    fn storage_error_text_never_becomes_the_task_message() {
        let inner = "/var/lib/file-engine/blobs/acme/ab: Permission denied (os error 13)";
        for e in [
            StorageError::Escape(inner.into()),
            StorageError::Config(inner.into()),
            StorageError::NotFound(inner.into()),
            StorageError::AlreadyExists(inner.into()),
        ] {
            let code = e.code();
            match EffectError::from(e) {
                EffectError::Permanent(f) => {
                    assert_eq!(f.code, code);
                    assert!(!f.message.contains("/var") && !f.message.contains("os error"));
                }
                EffectError::Transient(_) => panic!("{code} is permanent"),
            }
        }
    }
}
