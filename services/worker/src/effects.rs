//! Preconditions and redo-safe execution of each file command against storage.

use events::task::{FileCommand, TaskFailure};
use events::{FilePath, TenantId};
use platform::storage::{EntryKind, Storage, StorageError};

/// How an attempt to execute an effect ended.
pub enum EffectError {
    /// The task can never succeed as asked: fail it with this failure.
    Permanent(TaskFailure),
    /// Storage misbehaved; another delivery may succeed.
    Transient(String),
}

impl From<StorageError> for EffectError {
    /// The storage error's own text stays in the log: clients get its code with a fixed
    /// message ([`TaskFailure::generic`]).
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Io(msg) => Self::Transient(msg),
            other => {
                tracing::info!(error = %other, "worker: storage refused the effect");
                Self::Permanent(TaskFailure::generic(other.code()))
            }
        }
    }
}

fn fail(code: &str, message: impl Into<String>) -> EffectError {
    EffectError::Permanent(TaskFailure::new(code, message))
}

async fn kind_of(
    s: &dyn Storage,
    t: &TenantId,
    p: &FilePath,
) -> Result<Option<EntryKind>, EffectError> {
    Ok(s.stat(t, p).await?.map(|m| m.kind))
}

async fn require_dir(s: &dyn Storage, t: &TenantId, p: &FilePath) -> Result<(), EffectError> {
    match kind_of(s, t, p).await? {
        Some(EntryKind::Dir) => Ok(()),
        Some(EntryKind::File) => Err(fail("conflict", format!("{p} is not a directory"))),
        None => Err(fail("not_found", format!("{p} does not exist"))),
    }
}

/// Checks what must hold before a first attempt; storage is the source of truth here.
pub async fn check_preconditions(
    s: &dyn Storage,
    t: &TenantId,
    cmd: &FileCommand,
) -> Result<(), EffectError> {
    match cmd {
        FileCommand::Mkdir { path, parents } => {
            match kind_of(s, t, path).await? {
                Some(EntryKind::Dir) if *parents => return Ok(()),
                Some(_) => return Err(fail("already_exists", format!("{path} already exists"))),
                None => {}
            }
            if !*parents {
                if let Some(parent) = path.parent() {
                    require_dir(s, t, &parent).await?;
                }
            }
            Ok(())
        }
        FileCommand::Delete { path, recursive } => match s.stat(t, path).await? {
            None => Err(fail("not_found", format!("{path} does not exist"))),
            Some(m) if m.kind == EntryKind::Dir && !*recursive => {
                if s.list(t, path).await?.is_empty() {
                    Ok(())
                } else {
                    Err(fail("not_empty", format!("{path} is not empty")))
                }
            }
            Some(_) => Ok(()),
        },
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
            if from.contains(to) {
                return Err(fail("conflict", format!("{to} is {from} or inside it")));
            }
            if kind_of(s, t, from).await?.is_none() {
                return Err(fail("not_found", format!("{from} does not exist")));
            }
            if let Some(parent) = to.parent() {
                require_dir(s, t, &parent).await?;
            }
            if !*overwrite && kind_of(s, t, to).await?.is_some() {
                return Err(fail("already_exists", format!("{to} already exists")));
            }
            subtree_fits(s, t, from, to).await
        }
    }
}

/// Refuses a move or copy after which some entry below `from` would have a path longer than
/// the limit at `to` (the domain's rebase rule applied to the whole subtree, as found in
/// storage now): committing it would give the read models a path they cannot hold.
/// The walk stops at the first entry over the limit.
async fn subtree_fits(
    s: &dyn Storage,
    t: &TenantId,
    from: &FilePath,
    to: &FilePath,
) -> Result<(), EffectError> {
    let too_long = |e: events::PathError| fail("path_invalid", e.to_string());
    FilePath::check_subtree_rebase(from, to, from.as_str().len()).map_err(too_long)?;
    if kind_of(s, t, from).await? != Some(EntryKind::Dir) {
        return Ok(());
    }
    let mut dirs = vec![from.clone()];
    while let Some(dir) = dirs.pop() {
        for (name, meta) in s.list(t, &dir).await? {
            // `dir/name`, counted in bytes like the limit.
            let len = if dir.is_root() { 0 } else { dir.as_str().len() } + 1 + name.len();
            FilePath::check_subtree_rebase(from, to, len).map_err(too_long)?;
            if meta.kind == EntryKind::Dir {
                let child = dir.join(&name).map_err(too_long)?;
                dirs.push(child);
            }
        }
    }
    Ok(())
}

/// Performs the effect. `redo` is true when an earlier attempt may already have done it
/// (the task was found running): every branch then converges on the same end state.
pub async fn execute(
    s: &dyn Storage,
    t: &TenantId,
    cmd: &FileCommand,
    redo: bool,
) -> Result<(), EffectError> {
    match cmd {
        FileCommand::Mkdir {
            path,
            parents: true,
        } => s.create_dir_all(t, path).await?,
        FileCommand::Mkdir {
            path,
            parents: false,
        } => {
            s.create_dir(t, path).await?;
        }
        FileCommand::Delete { path, recursive } => {
            s.remove(t, path, *recursive).await?;
        }
        FileCommand::Move {
            from,
            to,
            overwrite,
        } => {
            let already_moved =
                redo && kind_of(s, t, from).await?.is_none() && kind_of(s, t, to).await?.is_some();
            if !already_moved {
                s.rename(t, from, to, *overwrite).await?;
            }
        }
        FileCommand::Copy {
            from,
            to,
            overwrite,
        } => {
            s.copy(t, from, to, *overwrite || redo).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_error_text_never_becomes_the_task_message() {
        let inner = "/var/lib/file-engine/tenants/acme/tree/a: Permission denied (os error 13)";
        for e in [
            StorageError::Escape(inner.into()),
            StorageError::Config(inner.into()),
            StorageError::NotFound(inner.into()),
            StorageError::NotADirectory(inner.into()),
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
