//! Tree operations of [`super::LocalStorage`]: stat, list, mkdir, remove and rename inside
//! one tenant's tree.
//!
//! Re-runs after a crash (the worker redelivers a task whose effect may already be done):
//! - `create_dir` returns `Ok(false)` once the directory exists; `create_dir_all` returns Ok.
//! - `remove` returns `Ok(false)` once the entry is gone. A recursive remove first renames the
//!   subtree into the tenant's trash (it vanishes from the tree atomically), then deletes it
//!   there; a crash in between leaves only trash, swept later.
//! - `rename` returns `NotFound(from)` once the source has moved; the target is untouched. A
//!   replace that needs the old target out of the way first (a file replaced by a directory
//!   or the reverse) removes it before the rename; a crash in between leaves the source in
//!   place, and the re-run completes the move.

use cap_std::fs::{Dir, Metadata};
use events::{FilePath, TenantId};

use super::disk::{
    io_err, is_absent, is_temp, open_area, open_parent, parent_rel, rel_path, sweep_stale,
    sync_dir, temp_name, Area,
};
use crate::storage::{EntryKind, EntryMeta, StorageError};

/// What `meta` means for a caller; `None` for anything that is neither file nor directory.
pub(super) fn entry_meta(meta: &Metadata) -> Option<EntryMeta> {
    if meta.is_dir() {
        Some(EntryMeta {
            kind: EntryKind::Dir,
            size: 0,
        })
    } else if meta.is_file() {
        Some(EntryMeta {
            kind: EntryKind::File,
            size: meta.len(),
        })
    } else {
        None
    }
}

/// `symlink_metadata` of `rel`, with "nothing there" as `None`.
pub(super) fn lstat(
    tree: &Dir,
    rel: &std::path::Path,
    p: &FilePath,
) -> Result<Option<Metadata>, StorageError> {
    match tree.symlink_metadata(rel) {
        Ok(m) => Ok(Some(m)),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(io_err(e, p.as_str())),
    }
}

pub(super) fn stat(
    root: &Dir,
    t: &TenantId,
    p: &FilePath,
) -> Result<Option<EntryMeta>, StorageError> {
    let tree = open_area(root, t, Area::Tree)?;
    match tree.metadata(rel_path(p)?) {
        Ok(m) => Ok(entry_meta(&m)),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(io_err(e, p.as_str())),
    }
}

pub(super) fn list(
    root: &Dir,
    t: &TenantId,
    dir: &FilePath,
) -> Result<Vec<(String, EntryMeta)>, StorageError> {
    let tree = open_area(root, t, Area::Tree)?;
    let opened = tree
        .open_dir(rel_path(dir)?)
        .map_err(|e| io_err(e, dir.as_str()))?;
    let mut out = Vec::new();
    for entry in opened.entries().map_err(|e| io_err(e, dir.as_str()))? {
        let entry = entry.map_err(|e| io_err(e, dir.as_str()))?;
        // Names that are not UTF-8 cannot be addressed by any FilePath: not part of the tree.
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if is_temp(&name) {
            continue;
        }
        // `DirEntry::metadata` does not follow symlinks, so planted links are skipped here.
        let meta = entry.metadata().map_err(|e| io_err(e, dir.as_str()))?;
        if let Some(meta) = entry_meta(&meta) {
            out.push((name, meta));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

pub(super) fn create_dir(root: &Dir, t: &TenantId, p: &FilePath) -> Result<bool, StorageError> {
    let tree = open_area(root, t, Area::Tree)?;
    create_one(&tree, p)
}

pub(super) fn create_dir_all(root: &Dir, t: &TenantId, p: &FilePath) -> Result<(), StorageError> {
    let tree = open_area(root, t, Area::Tree)?;
    for ancestor in p.ancestors_and_self().filter(|a| !a.is_root()) {
        match create_one(&tree, &ancestor) {
            // An ancestor that is a file: the requested directory cannot exist below it.
            Err(StorageError::AlreadyExists(_)) if ancestor != *p => {
                return Err(StorageError::NotADirectory(ancestor.to_string()));
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Creates one directory whose parent must exist; `Ok(false)` when it already is one.
fn create_one(tree: &Dir, p: &FilePath) -> Result<bool, StorageError> {
    if p.is_root() {
        return Ok(false);
    }
    let rel = rel_path(p)?;
    let parent = open_parent(tree, p)?;
    match tree.create_dir(&rel) {
        Ok(()) => {
            sync_dir(&parent, p.as_str())?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match tree.metadata(&rel) {
            Ok(m) if m.is_dir() => Ok(false),
            Ok(_) => Err(StorageError::AlreadyExists(p.to_string())),
            Err(e) => Err(io_err(e, p.as_str())),
        },
        Err(e) => Err(io_err(e, p.as_str())),
    }
}

pub(super) fn remove(
    root: &Dir,
    t: &TenantId,
    p: &FilePath,
    recursive: bool,
) -> Result<bool, StorageError> {
    if p.is_root() {
        return Err(StorageError::IsADirectory(
            "/: the tenant root cannot be removed".into(),
        ));
    }
    let tree = open_area(root, t, Area::Tree)?;
    let rel = rel_path(p)?;
    // The entry itself (a planted symlink is removed as a link, never followed).
    let Some(meta) = lstat(&tree, &rel, p)? else {
        return Ok(false);
    };
    let (_, parent_rel) = parent_rel(p)?;
    let parent = tree
        .open_dir(&parent_rel)
        .map_err(|e| io_err(e, p.as_str()))?;
    if !meta.is_dir() {
        tree.remove_file(&rel).map_err(|e| io_err(e, p.as_str()))?;
    } else if recursive {
        remove_subtree(root, t, &tree, &rel, p)?;
    } else {
        tree.remove_dir(&rel).map_err(|e| io_err(e, p.as_str()))?;
    }
    sync_dir(&parent, p.as_str())?;
    Ok(true)
}

/// Renames the subtree into the tenant's trash (atomic disappearance), then deletes it there.
fn remove_subtree(
    root: &Dir,
    t: &TenantId,
    tree: &Dir,
    rel: &std::path::Path,
    p: &FilePath,
) -> Result<(), StorageError> {
    let trash = open_area(root, t, Area::Trash)?;
    let name = temp_name();
    tree.rename(rel, &trash, &name)
        .map_err(|e| io_err(e, p.as_str()))?;
    // Once renamed, the delete is committed: what remains is trash, swept if this fails.
    if let Err(e) = trash.remove_dir_all(&name) {
        tracing::warn!(error = %e, path = %p, "removed subtree left in trash");
    }
    sweep_stale(&trash);
    Ok(())
}

pub(super) fn rename(
    root: &Dir,
    t: &TenantId,
    from: &FilePath,
    to: &FilePath,
    overwrite: bool,
) -> Result<(), StorageError> {
    if from.is_root() || to.is_root() {
        return Err(StorageError::IsADirectory(
            "/: the tenant root cannot be moved or replaced".into(),
        ));
    }
    let tree = open_area(root, t, Area::Tree)?;
    let (rel_from, rel_to) = (rel_path(from)?, rel_path(to)?);
    let Some(source) = lstat(&tree, &rel_from, from)? else {
        return Err(StorageError::NotFound(from.to_string()));
    };
    if from == to {
        return Ok(());
    }
    if source.is_dir() && from.contains(to) {
        return Err(StorageError::IsADirectory(format!(
            "{to}: a directory cannot move into itself"
        )));
    }
    let to_parent = open_parent(&tree, to)?;
    clear_target(&tree, to, source.is_dir(), overwrite)?;
    tree.rename(&rel_from, &tree, &rel_to)
        .map_err(|e| io_err(e, from.as_str()))?;
    sync_dir(&to_parent, to.as_str())?;
    if from.parent() != to.parent() {
        let (_, from_parent) = parent_rel(from)?;
        super::disk::sync_dir_at(&tree, &from_parent, from.as_str())?;
    }
    Ok(())
}

/// Makes `to` ready to receive an entry by rename: refuses an existing target unless
/// `overwrite`, refuses a non-empty directory target, and removes a target that `rename(2)`
/// could not replace atomically (a different kind than the source). A target of the same
/// kind stays: the rename replaces it atomically.
pub(super) fn clear_target(
    tree: &Dir,
    to: &FilePath,
    source_is_dir: bool,
    overwrite: bool,
) -> Result<(), StorageError> {
    let rel = rel_path(to)?;
    let Some(target) = lstat(tree, &rel, to)? else {
        return Ok(());
    };
    if !overwrite {
        return Err(StorageError::AlreadyExists(to.to_string()));
    }
    if target.is_dir() {
        let mut entries = tree.read_dir(&rel).map_err(|e| io_err(e, to.as_str()))?;
        if entries.next().is_some() {
            return Err(StorageError::NotEmpty(to.to_string()));
        }
        if !source_is_dir {
            tree.remove_dir(&rel).map_err(|e| io_err(e, to.as_str()))?;
        }
    } else if source_is_dir {
        tree.remove_file(&rel).map_err(|e| io_err(e, to.as_str()))?;
    }
    Ok(())
}
