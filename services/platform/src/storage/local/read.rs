//! The read path of [`super::LocalStorage`]: opening a file of the tree, or a retained
//! version of it, for download, optionally limited to a byte range.

use std::io::{Seek, SeekFrom};

use cap_std::fs::{Dir, File};
use events::{FilePath, TenantId};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::disk::{io_err, is_absent, open_area, rel_path, Area};
use crate::storage::{is_valid_version_id, StorageError};

type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// Opens `p` (or `versions/<retained_version>` when that version was retained) and returns a
/// reader over `range` (clamped to the file) plus the file's total size.
pub(super) fn open_read(
    root: &Dir,
    t: &TenantId,
    p: &FilePath,
    retained_version: Option<&str>,
    range: Option<(u64, u64)>,
) -> Result<(Reader, u64), StorageError> {
    let file = match retained_version {
        Some(v) => open_retained(root, t, p, v)?,
        None => None,
    };
    let mut file = match file {
        Some(f) => f,
        None => open_in_tree(root, t, p)?,
    };
    let meta = file.metadata().map_err(|e| io_err(e, p.as_str()))?;
    if meta.is_dir() {
        return Err(StorageError::IsADirectory(p.to_string()));
    }
    let size = meta.len();
    let (start, end) = match range {
        Some((start, end)) => {
            let end = end.min(size);
            (start.min(end), end)
        }
        None => (0, size),
    };
    file.seek(SeekFrom::Start(start))
        .map_err(|e| io_err(e, p.as_str()))?;
    let reader = tokio::fs::File::from_std(file.into_std()).take(end - start);
    Ok((Box::new(reader), size))
}

/// The retained version `v`, or `None` when it was never retained (then the path's current
/// content is that version). An invalid id names nothing: `NotFound`.
fn open_retained(
    root: &Dir,
    t: &TenantId,
    p: &FilePath,
    v: &str,
) -> Result<Option<File>, StorageError> {
    if !is_valid_version_id(v) {
        return Err(StorageError::NotFound(format!("{p}: invalid version id")));
    }
    let versions = open_area(root, t, Area::Versions)?;
    match versions.open(v) {
        Ok(f) => Ok(Some(f)),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(io_err(e, &format!("{p} version {v}"))),
    }
}

fn open_in_tree(root: &Dir, t: &TenantId, p: &FilePath) -> Result<File, StorageError> {
    let tree = open_area(root, t, Area::Tree)?;
    tree.open(rel_path(p)?).map_err(|e| {
        if is_absent(&e) {
            StorageError::NotFound(p.to_string())
        } else {
            io_err(e, p.as_str())
        }
    })
}
