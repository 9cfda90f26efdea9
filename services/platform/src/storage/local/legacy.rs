//! One-shot migration from the round-1 layout, where storage mirrored the catalogue as a path
//! tree (`tenants/<t>/tree/...`, retained versions in `tenants/<t>/versions/<v>`), to blobs.
//!
//! Every regular file found there is hashed (SHA-256, streamed) and hard-linked as the
//! tenant's blob of that name (no byte copied; an existing blob is kept), the blob directory
//! is fsynced, and only then is the old name removed. The catalogue needs no change: round 1
//! already recorded each version's SHA-256 (`file.available`), which is exactly the blob
//! name. Idempotent and resumable: a re-run (also after a crash at any point) re-hashes what
//! is left and finds its blob already there. Symlinks are never followed (cap-std) and are
//! left in place; emptied directories are removed at the end. A file no version names becomes
//! an unreferenced blob, which garbage collection removes after its grace period.

use std::io::Read;

use cap_std::fs::Dir;
use events::TenantId;
use sha2::{Digest, Sha256};

use super::disk::{blob_ctx, fan_out, io_err, is_absent, open_area, sync_dir, Area};
use crate::storage::{BlobId, LegacyMigration, StorageError};

pub(super) fn migrate(root: &Dir) -> Result<LegacyMigration, StorageError> {
    let mut report = LegacyMigration::default();
    let tenants = match root.open_dir("tenants") {
        Ok(d) => d,
        Err(e) if is_absent(&e) => return Ok(report),
        Err(e) => return Err(io_err(e, "tenants")),
    };
    for entry in tenants.entries().map_err(|e| io_err(e, "tenants"))? {
        let entry = entry.map_err(|e| io_err(e, "tenants"))?;
        let Some(tenant) = entry
            .file_name()
            .to_str()
            .and_then(|n| TenantId::parse(n).ok())
        else {
            continue;
        };
        if !entry.file_type().is_ok_and(|f| f.is_dir()) {
            continue;
        }
        let old = entry.open_dir().map_err(|e| io_err(e, "tenants"))?;
        let blobs = open_area(root, &tenant, Area::Blobs)?;
        for area in ["tree", "versions", "trash"] {
            match old.open_dir(area) {
                Ok(dir) => move_files(&dir, &blobs, &mut report)?,
                Err(e) if is_absent(&e) => {}
                Err(e) => return Err(io_err(e, area)),
            }
        }
        report.tenants += 1;
    }
    // Best effort: only directories left empty go (a symlink or a stray file keeps its tree).
    let _ = remove_empty(&tenants);
    Ok(report)
}

/// Moves every regular file below `dir` into `blobs`, depth first.
fn move_files(dir: &Dir, blobs: &Dir, report: &mut LegacyMigration) -> Result<(), StorageError> {
    for entry in dir.entries().map_err(|e| io_err(e, "legacy tree"))? {
        let entry = entry.map_err(|e| io_err(e, "legacy tree"))?;
        let kind = entry.file_type().map_err(|e| io_err(e, "legacy tree"))?;
        let name = entry.file_name();
        if kind.is_dir() {
            let sub = entry.open_dir().map_err(|e| io_err(e, "legacy tree"))?;
            move_files(&sub, blobs, report)?;
        } else if kind.is_file() {
            let blob = hash(dir, &name)?;
            let ctx = blob_ctx(&blob);
            blobs
                .create_dir_all(fan_out(&blob))
                .map_err(|e| io_err(e, &ctx))?;
            let shard = blobs
                .open_dir(fan_out(&blob))
                .map_err(|e| io_err(e, &ctx))?;
            match dir.hard_link(&name, &shard, blob.as_str()) {
                Ok(()) => report.blobs += 1,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(e, &ctx)),
            }
            sync_dir(&shard, &ctx)?;
            dir.remove_file(&name).map_err(|e| io_err(e, &ctx))?;
            report.files += 1;
        }
    }
    Ok(())
}

fn hash(dir: &Dir, name: &std::ffi::OsStr) -> Result<BlobId, StorageError> {
    let mut file = dir.open(name).map_err(|e| io_err(e, "legacy file"))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| io_err(e, "legacy file"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    BlobId::parse(&hex::encode(hasher.finalize()))
}

/// Removes the empty directories below `dir` (and reports whether `dir` is now empty).
fn remove_empty(dir: &Dir) -> std::io::Result<bool> {
    let mut empty = true;
    for entry in dir.entries()? {
        let entry = entry?;
        let name = entry.file_name();
        if entry.file_type()?.is_dir() {
            let sub = entry.open_dir()?;
            if remove_empty(&sub)? {
                dir.remove_dir(&name)?;
                continue;
            }
        }
        empty = false;
    }
    Ok(empty)
}
