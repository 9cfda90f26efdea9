//! Copy of a file or a whole directory tree inside one tenant's tree.
//!
//! The copy is built under a temp name (`.fe-tmp-<uuid>`) in the target's parent, every file
//! fsynced, every created directory fsynced, and only then renamed onto the target name, so
//! no half copy is ever visible. Re-run after a crash: before the final rename the target is
//! untouched and the re-run builds a fresh copy (the orphaned temp is swept once stale);
//! after it, the re-run returns `AlreadyExists(to)` (or with overwrite replaces the copy with
//! an identical one).
//!
//! Only regular files and directories are copied: symlinks planted on disk are skipped, so a
//! copy neither follows a link out of the tree nor loops on one.

use std::io;

use cap_std::fs::{Dir, File, OpenOptions};
use events::{FilePath, TenantId};

use super::disk::{
    io_err, is_absent, is_temp, open_area, open_parent, rel_path, sweep_stale, sync_dir, temp_name,
    Area,
};
use super::tree::clear_target;
use crate::storage::StorageError;

pub(super) fn copy(
    root: &Dir,
    t: &TenantId,
    from: &FilePath,
    to: &FilePath,
    overwrite: bool,
) -> Result<(), StorageError> {
    if to.is_root() {
        return Err(StorageError::IsADirectory(
            "/: the tenant root cannot be replaced".into(),
        ));
    }
    let tree = open_area(root, t, Area::Tree)?;
    let (rel_from, rel_to) = (rel_path(from)?, rel_path(to)?);
    let source = match tree.metadata(&rel_from) {
        Ok(m) if m.is_dir() || m.is_file() => m,
        Ok(_) => {
            return Err(StorageError::Io(format!(
                "{from}: not a regular file or directory"
            )))
        }
        Err(e) if is_absent(&e) => return Err(StorageError::NotFound(from.to_string())),
        Err(e) => return Err(io_err(e, from.as_str())),
    };
    if from == to {
        return if overwrite {
            Ok(())
        } else {
            Err(StorageError::AlreadyExists(to.to_string()))
        };
    }
    if source.is_dir() && from.contains(to) {
        return Err(StorageError::IsADirectory(format!(
            "{to}: a directory cannot be copied into itself"
        )));
    }
    let parent = open_parent(&tree, to)?;
    // Fail fast, before copying anything, when the target is in the way; checked again below.
    check_target(&tree, to, overwrite)?;
    sweep_stale(&parent);

    let tmp = temp_name();
    let built = if source.is_dir() {
        tree.open_dir(&rel_from)
            .map_err(|e| io_err(e, from.as_str()))
            .and_then(|src| copy_tree(&src, &parent, &tmp, from.as_str()))
    } else {
        tree.open(&rel_from)
            .map_err(|e| io_err(e, from.as_str()))
            .and_then(|src| copy_file(src, &parent, &tmp, from.as_str()))
    };
    let placed = built.and_then(|()| {
        clear_target(&tree, to, source.is_dir(), overwrite)?;
        tree.rename(parent_child(&rel_to, &tmp), &tree, &rel_to)
            .map_err(|e| io_err(e, to.as_str()))
    });
    if let Err(e) = placed {
        discard_temp(&parent, &tmp);
        return Err(e);
    }
    sync_dir(&parent, to.as_str())
}

/// The temp entry `tmp` next to `rel_to` (same parent), relative to the tree.
fn parent_child(rel_to: &std::path::Path, tmp: &str) -> std::path::PathBuf {
    rel_to
        .parent()
        .map(|p| p.join(tmp))
        .unwrap_or_else(|| tmp.into())
}

fn check_target(tree: &Dir, to: &FilePath, overwrite: bool) -> Result<(), StorageError> {
    let rel = rel_path(to)?;
    match tree.symlink_metadata(&rel) {
        Err(e) if is_absent(&e) => Ok(()),
        Err(e) => Err(io_err(e, to.as_str())),
        Ok(_) if !overwrite => Err(StorageError::AlreadyExists(to.to_string())),
        Ok(m) if m.is_dir() => {
            let mut entries = tree.read_dir(&rel).map_err(|e| io_err(e, to.as_str()))?;
            match entries.next() {
                Some(_) => Err(StorageError::NotEmpty(to.to_string())),
                None => Ok(()),
            }
        }
        Ok(_) => Ok(()),
    }
}

/// Removes a temp entry after a failed copy; best effort (a stale one is swept later).
fn discard_temp(parent: &Dir, tmp: &str) {
    let removed = match parent.symlink_metadata(tmp) {
        Ok(m) if m.is_dir() => parent.remove_dir_all(tmp),
        Ok(_) => parent.remove_file(tmp),
        Err(_) => return,
    };
    if let Err(e) = removed {
        tracing::warn!(error = %e, "could not remove the temp entry of a failed copy");
    }
}

/// Copies an open file into a new file `name` of `dst` and fsyncs it.
fn copy_file(mut src: File, dst: &Dir, name: &str, ctx: &str) -> Result<(), StorageError> {
    let mut out = dst
        .open_with(name, OpenOptions::new().write(true).create_new(true))
        .map_err(|e| io_err(e, ctx))?;
    io::copy(&mut src, &mut out).map_err(|e| io_err(e, ctx))?;
    out.sync_all().map_err(|e| io_err(e, ctx))
}

/// Copies the directory `src` as a new directory `name` of `dst`, recursively.
fn copy_tree(src: &Dir, dst: &Dir, name: &str, ctx: &str) -> Result<(), StorageError> {
    dst.create_dir(name).map_err(|e| io_err(e, ctx))?;
    let created = dst.open_dir(name).map_err(|e| io_err(e, ctx))?;
    for entry in src.entries().map_err(|e| io_err(e, ctx))? {
        let entry = entry.map_err(|e| io_err(e, ctx))?;
        let child = entry.file_name();
        let Some(child) = child.to_str() else {
            continue;
        };
        if is_temp(child) {
            continue;
        }
        let child_ctx = format!("{}/{child}", ctx.trim_end_matches('/'));
        // `file_type` does not follow symlinks: links are neither files nor dirs here.
        let kind = entry.file_type().map_err(|e| io_err(e, &child_ctx))?;
        if kind.is_dir() {
            let sub = entry.open_dir().map_err(|e| io_err(e, &child_ctx))?;
            copy_tree(&sub, &created, child, &child_ctx)?;
        } else if kind.is_file() {
            let file = entry.open().map_err(|e| io_err(e, &child_ctx))?;
            copy_file(file, &created, child, &child_ctx)?;
        }
    }
    sync_dir(&created, ctx)
}
