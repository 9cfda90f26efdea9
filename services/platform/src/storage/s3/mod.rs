//! [`S3Storage`]: the [`Storage`] trait on an S3 bucket (`FE_STORAGE=s3://bucket[/prefix]`),
//! with `aws-sdk-s3`; any S3-compatible server through `FE_S3_ENDPOINT`.
//!
//! Key layout beneath the optional prefix (the local backend's areas, as key prefixes):
//!
//! ```text
//! blobs/<tenant>/<sha256>          immutable content
//! staging/<tenant>/<upload id>     uploads received and awaiting their scan
//! quarantine/<tenant>/<upload id>  infected uploads, never served
//! ```
//!
//! The area comes first, not the tenant, so that one lifecycle rule per area (a prefix
//! filter) can expire staging and quarantine for every tenant; see the platform README's
//! "S3 storage" section. No user-chosen text ever becomes part of a key: tenants are
//! `[a-z0-9-]`, blob names hex, upload ids uuids, and the configured prefix is restricted to
//! `[A-Za-z0-9._-]` segments (`config.rs`), so no key escapes its tenant's area and keys need
//! no escaping anywhere (not even in `CopySource`).
//!
//! Operations:
//! - staged uploads are written by `writer.rs` (multipart with one part of memory, nothing
//!   visible before `finish`);
//! - `publish` copies the staged object onto its blob key (`CopyObject` is atomic: the blob
//!   appears complete or not at all), then deletes the staged object. An existing blob is
//!   overwritten with identical bytes, which refreshes its `LastModified`: the "fresh again"
//!   that garbage collection relies on (it spares blobs modified within its grace period).
//!   `CopyObject` is limited to 5 GiB; larger staged objects are copied with a multipart
//!   copy (`UploadPartCopy` of 1 GiB ranges), equally atomic.
//! - `quarantine` is the same copy-then-delete into the quarantine area.
//! - `stale_staged` reports staged objects *and* incomplete multipart uploads of staging keys
//!   (an upload whose writer vanished) idle for longer than the threshold; the janitor then
//!   calls `discard_staged`, which deletes the object and aborts the multipart uploads of the
//!   key. A multipart upload counts as idle from its last uploaded part (`ListParts`), so an
//!   upload that is still streaming is never aborted. (moto's `ListParts` document has a
//!   root element the SDK refuses, and moto reports a fixed 2010 start for every upload: the
//!   part times are then read from the raw document.)
//!
//! - Integrity: every part and every copy carries a CRC32 that S3 checks on arrival; whole
//!   reads (`open_staged`, `open_blob` without a range) ask for the stored checksum and the
//!   SDK verifies it as the body streams, failing the read on a mismatch. Ranged reads do not
//!   ask (S3 has no checksum of a range).
//!
//! Re-runs after a crash: `publish` between copy and delete finds both and redoes both
//! (same bytes); after the delete it finds only the blob: Ok. `quarantine` likewise.
//!
//! The bucket is checked (`HeadBucket`) by [`Storage::check`], which every process runs once
//! at start (`Platform::connect`): a wrong bucket, endpoint or credentials stop the process
//! with a clear message instead of failing the first upload. It is not part of `/readyz`:
//! an S3 outage makes storage tasks retry, it does not make a role unable to serve.

mod config;
mod errors;
mod objects;
mod writer;

use std::time::{Duration, SystemTime};

use aws_sdk_s3::types::ChecksumMode;
use aws_sdk_s3::Client;
use events::TenantId;
use tokio::io::AsyncRead;
use uuid::Uuid;

pub use config::{env_var, S3Settings, DEFAULT_PART_SIZE, MAX_SINGLE_COPY, MIN_PART_SIZE};
use errors::storage_err;
use writer::S3StagedWriter;

use super::{BlobId, BlobInfo, StagedWriter, Storage, StorageCounters, StorageError, StorageStats};

type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// The per-tenant areas of the bucket (see the module doc).
#[derive(Clone, Copy, Debug)]
enum Area {
    Blobs,
    Staging,
    Quarantine,
}

impl Area {
    fn top(self) -> &'static str {
        match self {
            Self::Blobs => "blobs",
            Self::Staging => "staging",
            Self::Quarantine => "quarantine",
        }
    }
}

fn staged_ctx(id: Uuid) -> String {
    format!("staged upload {id}")
}

fn blob_ctx(blob: &BlobId) -> String {
    format!("blob {blob}")
}

/// S3 storage in one bucket under an optional prefix. Cloning shares the client.
#[derive(Clone)]
pub struct S3Storage {
    client: Client,
    bucket: String,
    prefix: String,
    part_size: usize,
    /// Objects up to this size are copied with one `CopyObject`, larger ones in parts.
    copy_limit: u64,
    counters: std::sync::Arc<StorageCounters>,
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Storage")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl S3Storage {
    /// A storage on the bucket of `settings`; sends nothing yet (see [`Storage::check`]).
    pub fn new(settings: &S3Settings) -> Self {
        Self {
            client: settings.client(),
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
            part_size: settings.part_size.max(MIN_PART_SIZE),
            copy_limit: settings.copy_limit,
            counters: std::sync::Arc::default(),
        }
    }

    /// The SDK client (tests inspect the bucket with it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The full key of a tenant's area, with a trailing `/`.
    fn area(&self, t: &TenantId, area: Area) -> String {
        format!("{}{}/{}/", self.prefix, area.top(), t.as_str())
    }

    /// The key of a staged upload or of its quarantined copy.
    fn upload_key(&self, t: &TenantId, area: Area, id: Uuid) -> String {
        format!("{}{id}", self.area(t, area))
    }

    /// The key of a blob.
    pub fn blob_key(&self, t: &TenantId, blob: &BlobId) -> String {
        format!("{}{}", self.area(t, Area::Blobs), blob.as_str())
    }

    /// The key of a staged upload (tests look for it).
    pub fn staged_key(&self, t: &TenantId, id: Uuid) -> String {
        self.upload_key(t, Area::Staging, id)
    }

    /// `<tenant>/<name>` below an area → the tenant and the name, when both are valid.
    fn split_tenant(rel: &str) -> Option<(TenantId, &str)> {
        let (tenant, name) = rel.split_once('/')?;
        Some((TenantId::parse(tenant).ok()?, name))
    }
}

/// Parses `bytes <start>-<end>/<total>` (a `Content-Range`) into the total.
fn total_from_content_range(range: &str) -> Option<u64> {
    range.rsplit_once('/')?.1.parse().ok()
}

#[async_trait::async_trait]
impl Storage for S3Storage {
    fn stats(&self) -> StorageStats {
        self.counters.snapshot()
    }

    async fn check(&self) -> Result<(), StorageError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| match storage_err(e, "bucket") {
                StorageError::NotFound(_) => {
                    StorageError::Config("the configured bucket does not exist".into())
                }
                other => other,
            })?;
        Ok(())
    }

    async fn create_staged(
        &self,
        t: &TenantId,
        upload_id: Uuid,
    ) -> Result<Box<dyn StagedWriter>, StorageError> {
        let key = self.staged_key(t, upload_id);
        let ctx = staged_ctx(upload_id);
        // Catches a finished upload of this id now; two writers racing are told apart at
        // `finish` by the conditional write.
        if self.head(&key, &ctx).await?.is_some() {
            return Err(StorageError::AlreadyExists(ctx));
        }
        Ok(Box::new(S3StagedWriter::new(
            self.client.clone(),
            self.bucket.clone(),
            key,
            ctx,
            self.part_size,
        )))
    }

    async fn open_staged(&self, t: &TenantId, upload_id: Uuid) -> Result<Reader, StorageError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.staged_key(t, upload_id))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| storage_err(e, &staged_ctx(upload_id)))?;
        Ok(Box::new(Box::pin(out.body.into_async_read())))
    }

    async fn discard_staged(&self, t: &TenantId, upload_id: Uuid) -> Result<(), StorageError> {
        let key = self.staged_key(t, upload_id);
        let ctx = staged_ctx(upload_id);
        self.abort_uploads_of(&key, &ctx).await?;
        // Deleting a missing key succeeds on S3: a re-run is fine.
        self.delete(&key, &ctx).await
    }

    async fn stale_staged(
        &self,
        older_than: Duration,
    ) -> Result<Vec<(TenantId, Uuid)>, StorageError> {
        let Some(cutoff) = SystemTime::now().checked_sub(older_than) else {
            return Ok(Vec::new());
        };
        let staging = format!("{}{}/", self.prefix, Area::Staging.top());
        let mut stale = Vec::new();
        // S3 timestamps have one-second resolution (rounded down): `<=` keeps an object written
        // in the current second stale for a zero threshold, as on a filesystem.
        for (key, _, modified) in self.list(&staging).await? {
            if modified > cutoff {
                continue;
            }
            if let Some((tenant, id)) = key
                .strip_prefix(&staging)
                .and_then(Self::split_tenant)
                .and_then(|(t, name)| Some((t, Uuid::try_parse(name).ok()?)))
            {
                stale.push((tenant, id));
            }
        }
        for (key, upload_id, initiated) in self.multipart_uploads(&staging).await? {
            let Some((tenant, id)) = key
                .strip_prefix(&staging)
                .and_then(Self::split_tenant)
                .and_then(|(t, name)| Some((t, Uuid::try_parse(name).ok()?)))
            else {
                continue;
            };
            if initiated > cutoff || self.last_activity(&key, &upload_id, initiated).await? > cutoff
            {
                continue;
            }
            stale.push((tenant, id));
        }
        stale.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
        stale.dedup();
        Ok(stale)
    }

    async fn publish(
        &self,
        t: &TenantId,
        upload_id: Uuid,
        blob: &BlobId,
    ) -> Result<(), StorageError> {
        let staged_key = self.staged_key(t, upload_id);
        let blob_key = self.blob_key(t, blob);
        let ctx = blob_ctx(blob);
        let staged = self.head(&staged_key, &staged_ctx(upload_id)).await?;
        let Some(len) = staged else {
            return match self.head(&blob_key, &ctx).await? {
                Some(_) => Ok(()),
                None => Err(StorageError::NotFound(staged_ctx(upload_id))),
            };
        };
        // Also when the blob exists: the copy rewrites identical bytes and refreshes its
        // LastModified, which tells a concurrent garbage collection the blob is wanted again.
        self.copy(&staged_key, &blob_key, len, &ctx).await?;
        self.counters.wrote(len);
        self.delete(&staged_key, &staged_ctx(upload_id)).await
    }

    async fn quarantine(&self, t: &TenantId, upload_id: Uuid) -> Result<(), StorageError> {
        let staged_key = self.staged_key(t, upload_id);
        let quarantined = self.upload_key(t, Area::Quarantine, upload_id);
        let ctx = staged_ctx(upload_id);
        match self.head(&staged_key, &ctx).await? {
            Some(len) => {
                self.copy(&staged_key, &quarantined, len, &ctx).await?;
                self.delete(&staged_key, &ctx).await
            }
            None => match self.head(&quarantined, &ctx).await? {
                Some(_) => Ok(()),
                None => Err(StorageError::NotFound(ctx)),
            },
        }
    }

    async fn blob_size(&self, t: &TenantId, blob: &BlobId) -> Result<Option<u64>, StorageError> {
        self.head(&self.blob_key(t, blob), &blob_ctx(blob)).await
    }

    async fn open_blob(
        &self,
        t: &TenantId,
        blob: &BlobId,
        range: Option<(u64, u64)>,
    ) -> Result<(Reader, u64), StorageError> {
        let key = self.blob_key(t, blob);
        let ctx = blob_ctx(blob);
        let empty = |size: u64| -> (Reader, u64) { (Box::new(tokio::io::empty()), size) };
        let mut request = self.client.get_object().bucket(&self.bucket).key(&key);
        if let Some((start, end)) = range {
            if end <= start {
                // An empty range: S3 cannot express it; only the size is wanted.
                let size = self
                    .head(&key, &ctx)
                    .await?
                    .ok_or_else(|| StorageError::NotFound(ctx.clone()))?;
                self.counters.read();
                return Ok(empty(size));
            }
            // S3 clamps the end itself (an end past the blob means "to the end").
            request = request.range(format!("bytes={start}-{}", end - 1));
        } else {
            // The SDK verifies the object's checksum while it streams (single-part objects;
            // a multipart object's composite checksum cannot be checked against its bytes).
            request = request.checksum_mode(ChecksumMode::Enabled);
        }
        match request.send().await {
            Ok(out) => {
                let length = out
                    .content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0);
                let size = match out.content_range() {
                    Some(content_range) => {
                        total_from_content_range(content_range).ok_or_else(|| {
                            StorageError::Io(format!("{ctx}: unparsable Content-Range"))
                        })?
                    }
                    None => length,
                };
                self.counters.read();
                Ok((Box::new(Box::pin(out.body.into_async_read())), size))
            }
            // A range starting at or past the end (416): clamped to nothing, as on disk.
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(416) => {
                let size = self
                    .head(&key, &ctx)
                    .await?
                    .ok_or_else(|| StorageError::NotFound(ctx.clone()))?;
                self.counters.read();
                Ok(empty(size))
            }
            Err(e) => Err(storage_err(e, &ctx)),
        }
    }

    async fn list_blobs(&self, t: Option<&TenantId>) -> Result<Vec<BlobInfo>, StorageError> {
        let blobs = format!("{}{}/", self.prefix, Area::Blobs.top());
        let listed = match t {
            Some(t) => self.list(&self.area(t, Area::Blobs)).await?,
            None => self.list(&blobs).await?,
        };
        let mut found = Vec::new();
        for (key, size, modified) in listed {
            // Only `<tenant>/<sha256>` keys are blobs; anything else in the area (an object
            // put there by hand) is never reported, so never served or deleted.
            let Some((tenant, name)) = key.strip_prefix(&blobs).and_then(Self::split_tenant) else {
                continue;
            };
            let Ok(blob) = BlobId::parse(name) else {
                continue;
            };
            if name != blob.as_str() || t.is_some_and(|t| *t != tenant) {
                continue;
            }
            found.push(BlobInfo {
                tenant,
                blob,
                size,
                modified,
            });
        }
        found.sort_by(|a, b| (a.tenant.as_str(), &a.blob).cmp(&(b.tenant.as_str(), &b.blob)));
        Ok(found)
    }

    async fn delete_blob(&self, t: &TenantId, blob: &BlobId) -> Result<bool, StorageError> {
        let key = self.blob_key(t, blob);
        let ctx = blob_ctx(blob);
        if self.head(&key, &ctx).await?.is_none() {
            return Ok(false);
        }
        self.delete(&key, &ctx).await?;
        self.counters.deleted();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_gives_the_total() {
        assert_eq!(total_from_content_range("bytes 6-9/16"), Some(16));
        assert_eq!(total_from_content_range("bytes */16"), Some(16));
        assert_eq!(total_from_content_range("bytes 0-1/*"), None);
    }
}
