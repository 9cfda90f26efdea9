//! The upload side of [`super::LocalStorage`]: staged uploads, their publication as blobs,
//! and quarantine.
//!
//! Staged files live in `staging/<tenant>/<upload id>`, outside the blob area, so nothing
//! serves them. Publishing renames the (already fsynced) staged file onto its blob name:
//! staging and blobs are on one filesystem, so the blob appears atomically and complete and
//! is never copied. A blob that already exists is replaced by the identical new copy (same
//! name = same content), which refreshes its modification time for garbage collection.
//!
//! Re-runs after a crash:
//! - `publish`: before the rename, the re-run redoes it; after it, the staged file is gone
//!   and the blob is there: Ok. Both gone: `NotFound`.
//! - `quarantine`: Ok when the upload already sits in quarantine.
//! - `discard_staged`: Ok when nothing is left.

use std::time::{Duration, SystemTime};

use cap_std::fs::{Dir, OpenOptions};
use events::TenantId;
use tokio::io::{AsyncRead, AsyncWriteExt};
use uuid::Uuid;

use super::disk::{blob_ctx, fan_out, io_err, is_absent, open_area, sync_dir, Area};
use crate::storage::{BlobId, StagedWriter, StorageCounters, StorageError};

fn staged_ctx(id: Uuid) -> String {
    format!("staged upload {id}")
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
    match staging.remove_file(id.to_string()) {
        Err(e) if !is_absent(&e) => Err(io_err(e, &staged_ctx(id))),
        _ => Ok(()),
    }
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
            let Some(id) = name.to_str().and_then(|n| Uuid::try_parse(n).ok()) else {
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

pub(super) fn publish(
    root: &Dir,
    counters: &StorageCounters,
    t: &TenantId,
    id: Uuid,
    blob: &BlobId,
) -> Result<(), StorageError> {
    let staging = open_area(root, t, Area::Staging)?;
    let blobs = open_area(root, t, Area::Blobs)?;
    let ctx = blob_ctx(blob);
    blobs
        .create_dir_all(fan_out(blob))
        .map_err(|e| io_err(e, &ctx))?;
    let shard = blobs.open_dir(fan_out(blob)).map_err(|e| io_err(e, &ctx))?;
    let stored = match shard.metadata(blob.as_str()) {
        Ok(m) => Some(m.len()),
        Err(e) if is_absent(&e) => None,
        Err(e) => return Err(io_err(e, &ctx)),
    };
    let staged = match staging.metadata(id.to_string()) {
        Ok(m) => Some(m.len()),
        Err(e) if is_absent(&e) => None,
        Err(e) => return Err(io_err(e, &staged_ctx(id))),
    };
    match (stored, staged) {
        (Some(_), None) => Ok(()),
        (None, None) => Err(StorageError::NotFound(staged_ctx(id))),
        // Also when the same content is already stored: the rename replaces it atomically
        // with identical bytes and a fresh modification time, which tells a concurrent
        // garbage collection that the blob is wanted again (it keeps blobs in doubt).
        (_, Some(len)) => {
            staging
                .rename(id.to_string(), &shard, blob.as_str())
                .map_err(|e| io_err(e, &ctx))?;
            sync_dir(&shard, &ctx)?;
            sync_dir(&blobs, &ctx)?;
            sync_dir(&staging, &staged_ctx(id))?;
            counters.wrote(len);
            Ok(())
        }
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
