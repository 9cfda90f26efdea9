//! Garbage collection of blobs: mark from the catalogue, sweep what nothing needs.
//!
//! Mark (`platform::retention::needed_blobs`): a blob is needed while a version some entry
//! shows names it, a released version within `FE_VERSION_RETENTION_DAYS` names it, a live
//! signed link points at a version naming it, or an open upload task may be publishing it.
//! Sweep: every other blob of the tenant older than [`BLOB_GRACE`] (younger ones are in
//! doubt: an upload may just have published it) is recorded in the log first
//! (`storage.collected`, with each blob and the bytes), then deleted.
//!
//! Crash safety: the mark is taken twice, before and after recording, and only blobs doomed
//! by both and unchanged on storage in between are deleted, so a blob that became needed
//! meanwhile is kept. A crash after the record and before a deletion leaves the blob for the
//! next run (deleting is idempotent). Nothing here ever removes a blob the catalogue names
//! for a shown version, whatever the clocks say. Quarantine and staging are not blobs and are
//! never touched here (the staging janitor owns staging).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use events::storage::{CollectedBlob, StorageCommand, TenantStorage, LEDGER_ID};
use events::TenantId;
use platform::event_log::aggregate_id;
use platform::storage::BlobInfo;

use crate::run::WorkerDeps;

/// Blobs younger than this are never collected: one may have just been published for an
/// upload whose version the catalogue does not show yet.
pub const BLOB_GRACE: Duration = Duration::from_secs(3600);

/// Blobs recorded per `storage.collected` event (bounds the size of one log message).
const RECORD_BATCH: usize = 500;

/// What one collection run removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    pub blobs: u64,
    pub bytes: u64,
}

/// One collection run over every tenant with blobs.
pub async fn collect(
    deps: &WorkerDeps,
    retention: Duration,
    grace: Duration,
) -> Result<Collected, String> {
    let now = chrono::Utc::now();
    platform::retention::drop_expired_grants(&deps.pool, now)
        .await
        .map_err(|e| e.to_string())?;
    let mut by_tenant: BTreeMap<String, Vec<BlobInfo>> = BTreeMap::new();
    for info in deps
        .storage
        .list_blobs(None)
        .await
        .map_err(|e| e.to_string())?
    {
        by_tenant
            .entry(info.tenant.as_str().to_owned())
            .or_default()
            .push(info);
    }
    let mut total = Collected::default();
    for blobs in by_tenant.into_values() {
        let tenant = blobs[0].tenant.clone();
        let done = collect_tenant(deps, &tenant, blobs, retention, grace).await?;
        total.blobs += done.blobs;
        total.bytes += done.bytes;
    }
    metrics::counter!("fe_storage_gc_reclaimed_bytes_total").increment(total.bytes);
    metrics::counter!("fe_storage_gc_blobs_total").increment(total.blobs);
    Ok(total)
}

/// The tenant's blobs no version, retention, live link or open upload needs.
async fn doomed(
    deps: &WorkerDeps,
    tenant: &TenantId,
    blobs: Vec<BlobInfo>,
    retention: Duration,
    grace: Duration,
) -> Result<Vec<BlobInfo>, String> {
    let now = chrono::Utc::now();
    let retained_after =
        now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let needed = platform::retention::needed_blobs(&deps.pool, tenant, retained_after, now)
        .await
        .map_err(|e| e.to_string())?;
    let young = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(blobs
        .into_iter()
        .filter(|b| !needed.contains(b.blob.as_str()) && b.modified < young)
        .collect())
}

async fn collect_tenant(
    deps: &WorkerDeps,
    tenant: &TenantId,
    blobs: Vec<BlobInfo>,
    retention: Duration,
    grace: Duration,
) -> Result<Collected, String> {
    let first = doomed(deps, tenant, blobs, retention, grace).await?;
    if first.is_empty() {
        return Ok(Collected::default());
    }
    // Second mark on fresh listings: only what both passes doom, unchanged on storage.
    let fresh = deps
        .storage
        .list_blobs(Some(tenant))
        .await
        .map_err(|e| e.to_string())?;
    let second: HashMap<String, BlobInfo> = doomed(deps, tenant, fresh, retention, grace)
        .await?
        .into_iter()
        .map(|b| (b.blob.as_str().to_owned(), b))
        .collect();
    let sweep: Vec<BlobInfo> = first
        .into_iter()
        .filter(|b| second.get(b.blob.as_str()) == Some(b))
        .collect();
    let mut done = Collected::default();
    for batch in sweep.chunks(RECORD_BATCH) {
        let record = batch
            .iter()
            .map(|b| CollectedBlob {
                sha256: b.blob.as_str().to_owned(),
                size: b.size,
            })
            .collect();
        let mut metadata = HashMap::new();
        metadata.insert("principal".to_owned(), "system:gc".to_owned());
        deps.log
            .execute::<TenantStorage>(
                &aggregate_id(tenant, LEDGER_ID),
                StorageCommand::RecordCollection { blobs: record },
                &(),
                metadata,
            )
            .await
            .map_err(|e| e.to_string())?;
        for b in batch {
            if deps
                .storage
                .delete_blob(tenant, &b.blob)
                .await
                .map_err(|e| e.to_string())?
            {
                done.blobs += 1;
                done.bytes += b.size;
            }
        }
    }
    tracing::info!(
        blobs = done.blobs,
        bytes = done.bytes,
        "gc: blobs collected"
    );
    Ok(done)
}
