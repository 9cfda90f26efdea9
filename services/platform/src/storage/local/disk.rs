//! Low-level helpers of [`super::LocalStorage`]: where each area lives under the storage
//! root, translating `io::Error`s and fsync of directories.
//!
//! Nothing here ever builds an absolute path: every helper works on a `cap_std::fs::Dir`
//! and relative paths, so resolution stays beneath that directory.

use std::io;

use cap_std::fs::Dir;
use events::TenantId;

use crate::storage::{BlobId, StorageError};

/// The per-tenant areas below the storage root.
#[derive(Clone, Copy, Debug)]
pub(super) enum Area {
    /// `blobs/<t>`: immutable content by SHA-256.
    Blobs,
    /// `staging/<t>`: uploads being received or awaiting their scan.
    Staging,
    /// `quarantine/<t>`: infected uploads.
    Quarantine,
}

impl Area {
    pub(super) fn top(self) -> &'static str {
        match self {
            Self::Blobs => "blobs",
            Self::Staging => "staging",
            Self::Quarantine => "quarantine",
        }
    }
}

/// Opens (creating it when missing) one area of a tenant, resolved beneath `root`.
pub(super) fn open_area(root: &Dir, t: &TenantId, area: Area) -> Result<Dir, StorageError> {
    let rel = format!("{}/{}", area.top(), tenant_segment(t)?);
    root.create_dir_all(&rel)
        .and_then(|()| root.open_dir(&rel))
        .map_err(|e| StorageError::Io(format!("{rel}: {e}")))
}

/// The fan-out directory of a blob inside the tenant's blob area (`aa` of `aa…`), so that no
/// directory grows to millions of entries.
pub(super) fn fan_out(blob: &BlobId) -> &str {
    &blob.as_str()[..2]
}

/// Context for errors about a blob: its name only.
pub(super) fn blob_ctx(blob: &BlobId) -> String {
    format!("blob {blob}")
}

/// The tenant id as a directory name. `TenantId` already guarantees `[a-z0-9][a-z0-9-]*`;
/// checking again here keeps storage safe even if that rule is ever loosened.
fn tenant_segment(t: &TenantId) -> Result<&str, StorageError> {
    let s = t.as_str();
    let safe = !s.is_empty()
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if safe {
        Ok(s)
    } else {
        Err(StorageError::Config(
            "tenant id is not usable as a directory name".into(),
        ))
    }
}

/// Whether `e` means "nothing there": the entry, or an ancestor directory, is missing or an
/// ancestor is a file.
pub(super) fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Whether cap-std refused a resolution that would leave the directory it started from
/// (`..` above it, an absolute symlink, or a relative one pointing out).
fn is_escape(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
        && e.to_string().contains("outside of the filesystem")
}

/// Translates an `io::Error` on the entry described by `what` (a tenant-relative path or a
/// short context). The io error's own text never contains a path, so it is safe to keep.
pub(super) fn io_err(e: io::Error, what: &str) -> StorageError {
    let what = what.to_owned();
    match e.kind() {
        io::ErrorKind::NotFound => StorageError::NotFound(what),
        io::ErrorKind::AlreadyExists => StorageError::AlreadyExists(what),
        _ if is_escape(&e) => StorageError::Escape(what),
        _ => StorageError::Io(format!("{what}: {e}")),
    }
}

/// fsync a directory, making the entries created, renamed or removed in it durable.
pub(super) fn sync_dir(dir: &Dir, what: &str) -> Result<(), StorageError> {
    // cap-std holds directories as `O_PATH` descriptors, which cannot be fsynced: open the
    // directory itself for reading to get one that can.
    dir.open(".")
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(e, what))
}
