//! The blob side of [`super::LocalStorage`]: size, ranged reads, listing and deletion of the
//! immutable blobs in `blobs/<tenant>/<aa>/<sha256>`.

use std::io::{Seek, SeekFrom};

use cap_std::fs::Dir;
use events::TenantId;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::disk::{blob_ctx, fan_out, io_err, is_absent, open_area, sync_dir, Area};
use crate::storage::{BlobId, BlobInfo, StorageCounters, StorageError};

type Reader = Box<dyn AsyncRead + Send + Unpin>;

fn shard(root: &Dir, t: &TenantId, blob: &BlobId) -> Result<Option<Dir>, StorageError> {
    let blobs = open_area(root, t, Area::Blobs)?;
    match blobs.open_dir(fan_out(blob)) {
        Ok(d) => Ok(Some(d)),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(io_err(e, &blob_ctx(blob))),
    }
}

pub(super) fn size(root: &Dir, t: &TenantId, blob: &BlobId) -> Result<Option<u64>, StorageError> {
    let Some(shard) = shard(root, t, blob)? else {
        return Ok(None);
    };
    match shard.metadata(blob.as_str()) {
        Ok(m) if m.is_file() => Ok(Some(m.len())),
        Ok(_) => Ok(None),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(io_err(e, &blob_ctx(blob))),
    }
}

pub(super) fn open(
    root: &Dir,
    counters: &StorageCounters,
    t: &TenantId,
    blob: &BlobId,
    range: Option<(u64, u64)>,
) -> Result<(Reader, u64), StorageError> {
    let ctx = blob_ctx(blob);
    let shard = shard(root, t, blob)?.ok_or_else(|| StorageError::NotFound(ctx.clone()))?;
    let mut file = shard.open(blob.as_str()).map_err(|e| io_err(e, &ctx))?;
    let meta = file.metadata().map_err(|e| io_err(e, &ctx))?;
    if !meta.is_file() {
        return Err(StorageError::NotFound(ctx));
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
        .map_err(|e| io_err(e, &ctx))?;
    counters.read();
    let reader = tokio::fs::File::from_std(file.into_std()).take(end - start);
    Ok((Box::new(reader), size))
}

pub(super) fn list(root: &Dir, only: Option<&TenantId>) -> Result<Vec<BlobInfo>, StorageError> {
    let top = root.open_dir("blobs").map_err(|e| io_err(e, "blobs"))?;
    let mut found = Vec::new();
    for tenant_entry in top.entries().map_err(|e| io_err(e, "blobs"))? {
        let tenant_entry = tenant_entry.map_err(|e| io_err(e, "blobs"))?;
        let Some(tenant) = tenant_entry
            .file_name()
            .to_str()
            .and_then(|s| TenantId::parse(s).ok())
        else {
            continue;
        };
        if only.is_some_and(|o| *o != tenant) || !tenant_entry.file_type().is_ok_and(|f| f.is_dir())
        {
            continue;
        }
        let tenant_dir = tenant_entry.open_dir().map_err(|e| io_err(e, "blobs"))?;
        for shard in tenant_dir
            .entries()
            .map_err(|e| io_err(e, "blobs"))?
            .flatten()
        {
            if !shard.file_type().is_ok_and(|f| f.is_dir()) {
                continue;
            }
            let Ok(shard_dir) = shard.open_dir() else {
                continue;
            };
            for entry in shard_dir
                .entries()
                .map_err(|e| io_err(e, "blobs"))?
                .flatten()
            {
                // Only regular files named by a sha256 are blobs; anything else (a planted
                // symlink, a stray file) is never reported, so it is never served or deleted.
                let Some(blob) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| BlobId::parse(n).ok())
                else {
                    continue;
                };
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                found.push(BlobInfo {
                    tenant: tenant.clone(),
                    blob,
                    size: meta.len(),
                    modified: meta
                        .modified()
                        .map(|m| m.into_std())
                        .unwrap_or(std::time::UNIX_EPOCH),
                });
            }
        }
    }
    found.sort_by(|a, b| (a.tenant.as_str(), &a.blob).cmp(&(b.tenant.as_str(), &b.blob)));
    Ok(found)
}

pub(super) fn delete(
    root: &Dir,
    counters: &StorageCounters,
    t: &TenantId,
    blob: &BlobId,
) -> Result<bool, StorageError> {
    let Some(shard) = shard(root, t, blob)? else {
        return Ok(false);
    };
    let ctx = blob_ctx(blob);
    match shard.remove_file(blob.as_str()) {
        Ok(()) => {
            sync_dir(&shard, &ctx)?;
            counters.deleted();
            Ok(true)
        }
        Err(e) if is_absent(&e) => Ok(false),
        Err(e) => Err(io_err(e, &ctx)),
    }
}
