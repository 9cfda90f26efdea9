//! Low-level helpers of [`super::LocalStorage`]: where each area lives under the storage
//! root, mapping a [`FilePath`] to a relative path, translating `io::Error`s, fsync of
//! directories, and the storage-internal temp names (`.fe-tmp-<uuid v7>`).
//!
//! Nothing here ever builds an absolute path: every helper works on a `cap_std::fs::Dir`
//! and relative paths, so resolution stays beneath that directory.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cap_std::fs::Dir;
use events::{FilePath, TenantId};

use crate::storage::StorageError;

/// Prefix of every storage-internal temp entry. `list` and tree copies skip such names and
/// tenant paths may not use them, so a temp entry is never visible under a user's name.
pub(super) const TEMP_PREFIX: &str = ".fe-tmp-";

/// Temp entries (and trash entries) older than this are left-overs of a crash and are swept.
/// Long enough that no operation still in progress is ever swept from under its feet.
const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The per-tenant areas below the storage root.
#[derive(Clone, Copy, Debug)]
pub(super) enum Area {
    /// `tenants/<t>/tree`: the visible tree.
    Tree,
    /// `tenants/<t>/versions`: retained contents of overwritten files.
    Versions,
    /// `tenants/<t>/trash`: subtrees being deleted (renamed here first, so they vanish at once).
    Trash,
    /// `staging/<t>`: uploads being received or awaiting their scan.
    Staging,
    /// `quarantine/<t>`: infected uploads.
    Quarantine,
}

/// Opens (creating it when missing) one area of a tenant, resolved beneath `root`.
pub(super) fn open_area(root: &Dir, t: &TenantId, area: Area) -> Result<Dir, StorageError> {
    let t = tenant_segment(t)?;
    let rel = match area {
        Area::Tree => format!("tenants/{t}/tree"),
        Area::Versions => format!("tenants/{t}/versions"),
        Area::Trash => format!("tenants/{t}/trash"),
        Area::Staging => format!("staging/{t}"),
        Area::Quarantine => format!("quarantine/{t}"),
    };
    root.create_dir_all(&rel)
        .and_then(|()| root.open_dir(&rel))
        .map_err(|e| StorageError::Io(format!("{rel}: {e}")))
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

/// `p` relative to the tenant root: `.` for the root, `a/b` for `/a/b`. Names starting with
/// [`TEMP_PREFIX`] are reserved for storage internals and refused.
pub(super) fn rel_path(p: &FilePath) -> Result<PathBuf, StorageError> {
    if p.is_root() {
        return Ok(PathBuf::from("."));
    }
    if p.segments().any(is_temp) {
        return Err(StorageError::Escape(format!(
            "{p}: names starting with {TEMP_PREFIX} are reserved"
        )));
    }
    Ok(p.segments().collect())
}

/// The relative path of `p`'s parent (the root's parent is the root).
pub(super) fn parent_rel(p: &FilePath) -> Result<(FilePath, PathBuf), StorageError> {
    let parent = p.parent().unwrap_or_else(FilePath::root);
    let rel = rel_path(&parent)?;
    Ok((parent, rel))
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
        io::ErrorKind::NotADirectory => StorageError::NotADirectory(what),
        io::ErrorKind::IsADirectory => StorageError::IsADirectory(what),
        io::ErrorKind::DirectoryNotEmpty => StorageError::NotEmpty(what),
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

/// fsync the directory at `rel` beneath `base`.
pub(super) fn sync_dir_at(
    base: &Dir,
    rel: &std::path::Path,
    what: &str,
) -> Result<(), StorageError> {
    let dir = base.open_dir(rel).map_err(|e| io_err(e, what))?;
    sync_dir(&dir, what)
}

/// Requires that `p`'s parent exists and is a directory (`NotFound` / `NotADirectory` on
/// the parent otherwise), and returns it opened.
pub(super) fn open_parent(tree: &Dir, p: &FilePath) -> Result<Dir, StorageError> {
    let (parent, rel) = parent_rel(p)?;
    match tree.metadata(&rel) {
        Ok(m) if m.is_dir() => tree.open_dir(&rel).map_err(|e| io_err(e, parent.as_str())),
        Ok(_) => Err(StorageError::NotADirectory(parent.to_string())),
        Err(e) if is_absent(&e) => Err(StorageError::NotFound(parent.to_string())),
        Err(e) => Err(io_err(e, parent.as_str())),
    }
}

/// A fresh temp name. A v7 uuid carries its creation time, so [`sweep_stale`] can tell a
/// crash left-over from an operation in progress without trusting file times.
pub(super) fn temp_name() -> String {
    format!("{TEMP_PREFIX}{}", uuid::Uuid::now_v7().simple())
}

/// Whether a directory entry name is storage-internal.
pub(super) fn is_temp(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
}

/// Removes temp entries of `dir` that are older than [`STALE_TEMP_AGE`] (left behind by a
/// crash between building a copy and renaming it into place). Best effort: a failure here
/// must not fail the operation that triggered the sweep.
pub(super) fn sweep_stale(dir: &Dir) {
    let Ok(entries) = dir.entries() else { return };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !temp_is_stale(name, now) {
            continue;
        }
        let is_dir = entry.file_type().is_ok_and(|ft| ft.is_dir());
        let removed = if is_dir {
            dir.remove_dir_all(name)
        } else {
            dir.remove_file(name)
        };
        if let Err(e) = removed {
            tracing::warn!(error = %e, "could not sweep a stale storage temp entry");
        }
    }
}

fn temp_is_stale(name: &str, now: SystemTime) -> bool {
    let Some(id) = name.strip_prefix(TEMP_PREFIX) else {
        return false;
    };
    let Some((secs, _)) = uuid::Uuid::try_parse(id)
        .ok()
        .and_then(|u| u.get_timestamp())
        .map(|ts| ts.to_unix())
    else {
        return false;
    };
    let created = UNIX_EPOCH + Duration::from_secs(secs);
    now.duration_since(created)
        .is_ok_and(|age| age > STALE_TEMP_AGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_temp_names_are_not_stale_but_old_ones_are() {
        let now = SystemTime::now();
        assert!(!temp_is_stale(&temp_name(), now));
        assert!(temp_is_stale(
            &temp_name(),
            now + STALE_TEMP_AGE + Duration::from_secs(60)
        ));
        assert!(!temp_is_stale(".fe-tmp-not-a-uuid", now));
        assert!(!temp_is_stale("report.pdf", now));
    }

    #[test]
    fn rel_path_maps_root_and_refuses_reserved_names() {
        let root = FilePath::parse("/").unwrap();
        assert_eq!(rel_path(&root).unwrap(), PathBuf::from("."));
        let p = FilePath::parse("/a/b c/d").unwrap();
        assert_eq!(rel_path(&p).unwrap(), PathBuf::from("a/b c/d"));
        let reserved = FilePath::parse("/a/.fe-tmp-x/d").unwrap();
        assert!(matches!(rel_path(&reserved), Err(StorageError::Escape(_))));
    }
}
