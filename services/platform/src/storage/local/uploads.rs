//! The upload side of [`super::LocalStorage`]: staged uploads, their promotion into the tree
//! (retaining the overwritten content as a version) and quarantine.
//!
//! Staged files live in `staging/<tenant>/<upload id>`, outside every tenant tree, so no path
//! reaches them. Promotion renames the (already fsynced) staged file onto its path: staging
//! and tree are on one filesystem, so the new content appears atomically and is never copied.
//! The old content, when it is to be retained, is hard-linked into `versions/` first: the
//! rename only replaces the name, the linked bytes stay as they were.
//!
//! Re-runs after a crash:
//! - `promote`: before the rename, the re-run redoes everything (a version already retained
//!   is kept). Before renaming, promote records the staged file's identity (device and inode)
//!   in `<id>.promoted`; after the rename, a re-run finds the staged file gone and answers Ok
//!   only if the path still holds exactly that file, else `NotFound`.
//! - `quarantine`: Ok when the upload already sits in quarantine.
//! - `discard_staged`: Ok when nothing is left.

use std::io::Write;
use std::time::{Duration, SystemTime};

use cap_std::fs::{Dir, MetadataExt, OpenOptions};
use events::{FilePath, TenantId};
use tokio::io::{AsyncRead, AsyncWriteExt};
use uuid::Uuid;

use super::disk::{io_err, is_absent, open_area, open_parent, rel_path, sync_dir, Area};
use super::tree::lstat;
use crate::storage::{is_valid_version_id, StagedWriter, StorageError};

fn staged_ctx(id: Uuid) -> String {
    format!("staged upload {id}")
}

fn marker_name(id: Uuid) -> String {
    format!("{id}.promoted")
}

/// Streams one upload into its staged file.
pub(super) struct LocalStagedWriter {
    file: tokio::fs::File,
    staging: Dir,
    id: Uuid,
    written: u64,
    finished: bool,
}

#[async_trait::async_trait]
impl StagedWriter for LocalStagedWriter {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| io_err(e, &staged_ctx(self.id)))?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, StorageError> {
        let ctx = staged_ctx(self.id);
        self.file.flush().await.map_err(|e| io_err(e, &ctx))?;
        self.file.sync_all().await.map_err(|e| io_err(e, &ctx))?;
        let staging = self.staging.try_clone().map_err(|e| io_err(e, &ctx))?;
        tokio::task::spawn_blocking(move || sync_dir(&staging, &ctx))
            .await
            .map_err(|e| StorageError::Io(format!("storage task failed: {e}")))??;
        self.finished = true;
        Ok(self.written)
    }
}

impl Drop for LocalStagedWriter {
    fn drop(&mut self) {
        if !self.finished {
            // An abandoned upload (client gone, size limit hit): its partial bytes are useless.
            // One unlink is cheap enough to do inline; the janitor catches a failure.
            let _ = self.staging.remove_file(self.id.to_string());
        }
    }
}

pub(super) fn create_staged(
    root: &Dir,
    t: &TenantId,
    id: Uuid,
) -> Result<LocalStagedWriter, StorageError> {
    let staging = open_area(root, t, Area::Staging)?;
    let file = staging
        .open_with(
            id.to_string(),
            OpenOptions::new().write(true).create_new(true),
        )
        .map_err(|e| io_err(e, &staged_ctx(id)))?;
    Ok(LocalStagedWriter {
        file: tokio::fs::File::from_std(file.into_std()),
        staging,
        id,
        written: 0,
        finished: false,
    })
}

pub(super) fn open_staged(
    root: &Dir,
    t: &TenantId,
    id: Uuid,
) -> Result<Box<dyn AsyncRead + Send + Unpin>, StorageError> {
    let staging = open_area(root, t, Area::Staging)?;
    let file = staging
        .open(id.to_string())
        .map_err(|e| io_err(e, &staged_ctx(id)))?;
    Ok(Box::new(tokio::fs::File::from_std(file.into_std())))
}

pub(super) fn discard_staged(root: &Dir, t: &TenantId, id: Uuid) -> Result<(), StorageError> {
    let staging = open_area(root, t, Area::Staging)?;
    for name in [id.to_string(), marker_name(id)] {
        match staging.remove_file(&name) {
            Err(e) if !is_absent(&e) => return Err(io_err(e, &staged_ctx(id))),
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn stale_staged(
    root: &Dir,
    older_than: Duration,
) -> Result<Vec<(TenantId, Uuid)>, StorageError> {
    let Some(cutoff) = SystemTime::now().checked_sub(older_than) else {
        return Ok(Vec::new());
    };
    let staging = root.open_dir("staging").map_err(|e| io_err(e, "staging"))?;
    let mut stale = Vec::new();
    for tenant_entry in staging.entries().map_err(|e| io_err(e, "staging"))? {
        let tenant_entry = tenant_entry.map_err(|e| io_err(e, "staging"))?;
        let Some(tenant) = tenant_entry
            .file_name()
            .to_str()
            .and_then(|s| TenantId::parse(s).ok())
        else {
            continue;
        };
        if !tenant_entry.file_type().is_ok_and(|ft| ft.is_dir()) {
            continue;
        }
        let dir = tenant_entry.open_dir().map_err(|e| io_err(e, "staging"))?;
        for entry in dir.entries().map_err(|e| io_err(e, "staging"))?.flatten() {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| Uuid::try_parse(n.trim_end_matches(".promoted")).ok())
            else {
                continue;
            };
            let modified = entry.metadata().and_then(|m| m.modified());
            if modified.is_ok_and(|m| m.into_std() < cutoff) {
                stale.push((tenant.clone(), id));
            }
        }
    }
    stale.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
    stale.dedup();
    Ok(stale)
}

pub(super) fn promote(
    root: &Dir,
    t: &TenantId,
    id: Uuid,
    p: &FilePath,
    previous_version: Option<&str>,
) -> Result<(), StorageError> {
    if previous_version.is_some_and(|v| !is_valid_version_id(v)) {
        return Err(StorageError::Config(
            "previous version id must match [A-Za-z0-9-]{1,64}".into(),
        ));
    }
    if p.is_root() {
        return Err(StorageError::IsADirectory(p.to_string()));
    }
    let tree = open_area(root, t, Area::Tree)?;
    let staging = open_area(root, t, Area::Staging)?;
    let rel = rel_path(p)?;
    let parent = open_parent(&tree, p)?;
    let staged = match staging.metadata(id.to_string()) {
        Ok(m) => m,
        Err(e) if is_absent(&e) => return already_promoted(&staging, &tree, id, p),
        Err(e) => return Err(io_err(e, &staged_ctx(id))),
    };
    match lstat(&tree, &rel, p)? {
        Some(m) if m.is_dir() => return Err(StorageError::IsADirectory(p.to_string())),
        Some(m) if m.is_file() => {
            if let Some(version) = previous_version {
                retain(root, t, &tree, p, version)?;
            }
        }
        _ => {}
    }
    write_marker(&staging, id, &format!("{}:{}", staged.dev(), staged.ino()))?;
    staging
        .rename(id.to_string(), &tree, &rel)
        .map_err(|e| io_err(e, p.as_str()))?;
    sync_dir(&parent, p.as_str())?;
    sync_dir(&staging, &staged_ctx(id))
}

/// Hard-links the current content of `p` as `versions/<version>`, unless already done.
fn retain(
    root: &Dir,
    t: &TenantId,
    tree: &Dir,
    p: &FilePath,
    version: &str,
) -> Result<(), StorageError> {
    let versions = open_area(root, t, Area::Versions)?;
    let ctx = format!("{p} version {version}");
    match versions.symlink_metadata(version) {
        Ok(_) => return Ok(()),
        Err(e) if !is_absent(&e) => return Err(io_err(e, &ctx)),
        Err(_) => {}
    }
    tree.hard_link(rel_path(p)?, &versions, version)
        .map_err(|e| io_err(e, &ctx))?;
    sync_dir(&versions, &ctx)
}

fn write_marker(staging: &Dir, id: Uuid, identity: &str) -> Result<(), StorageError> {
    let ctx = staged_ctx(id);
    let mut file = staging
        .open_with(
            marker_name(id),
            OpenOptions::new().write(true).create(true).truncate(true),
        )
        .map_err(|e| io_err(e, &ctx))?;
    file.write_all(identity.as_bytes())
        .map_err(|e| io_err(e, &ctx))?;
    file.sync_all().map_err(|e| io_err(e, &ctx))
}

/// The staged file is gone: Ok only if a previous run promoted it and `p` still is that file.
fn already_promoted(staging: &Dir, tree: &Dir, id: Uuid, p: &FilePath) -> Result<(), StorageError> {
    let not_found = || StorageError::NotFound(staged_ctx(id));
    let recorded = match staging.read_to_string(marker_name(id)) {
        Ok(s) => s,
        Err(e) if is_absent(&e) => return Err(not_found()),
        Err(e) => return Err(io_err(e, &staged_ctx(id))),
    };
    match lstat(tree, &rel_path(p)?, p)? {
        Some(m) if m.is_file() && recorded == format!("{}:{}", m.dev(), m.ino()) => Ok(()),
        _ => Err(not_found()),
    }
}

pub(super) fn quarantine(root: &Dir, t: &TenantId, id: Uuid) -> Result<(), StorageError> {
    let staging = open_area(root, t, Area::Staging)?;
    let quarantine = open_area(root, t, Area::Quarantine)?;
    let name = id.to_string();
    match staging.rename(&name, &quarantine, &name) {
        Ok(()) => {
            sync_dir(&quarantine, &staged_ctx(id))?;
            sync_dir(&staging, &staged_ctx(id))
        }
        Err(e) if is_absent(&e) => match quarantine.symlink_metadata(&name) {
            Ok(_) => Ok(()),
            Err(_) => Err(StorageError::NotFound(staged_ctx(id))),
        },
        Err(e) => Err(io_err(e, &staged_ctx(id))),
    }
}
