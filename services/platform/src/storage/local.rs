//! [`LocalStorage`]: the [`Storage`] trait on a local filesystem (`FE_STORAGE=local:<dir>`).
//!
//! Layout beneath `<dir>` (which must be one filesystem: publishing a blob renames the staged
//! file, it never copies it):
//!
//! ```text
//! blobs/<tenant>/<aa>/<sha256>       immutable content, `aa` = first two hex digits
//! staging/<tenant>/<upload id>       uploads being received or awaiting their scan
//! quarantine/<tenant>/<upload id>    infected uploads, never served
//! ```
//!
//! Round 1 kept a path tree here (`tenants/<t>/tree/...`); `file-engine migrate` moves what
//! is left of it into blobs (`legacy.rs`). There is no tree of user paths on disk any more: paths, directories and versions live only in the
//! catalogue, so no user-chosen name ever becomes a file name here (blob names are hex,
//! upload ids are uuids, tenants are `[a-z0-9-]`).
//!
//! Confinement: `<dir>` is opened once with ambient authority; everything else is resolved
//! relative to it with cap-std, which refuses any resolution that leaves the directory it
//! started from, so a symlink planted in a blob or staging directory cannot lead elsewhere.
//!
//! Durability: staged bytes are fsynced before an upload is acknowledged; publishing renames
//! the staged file onto its blob name and fsyncs both directories, so after a crash a blob is
//! either complete under its name or still staged (and the redo publishes it).
//!
//! cap-std is synchronous: every operation runs on tokio's blocking pool.

mod blobs;
mod disk;
mod legacy;
mod uploads;

use std::path::PathBuf;
use std::sync::Arc;

use cap_std::fs::Dir;
use events::TenantId;
use tokio::io::AsyncRead;

use super::{
    BlobId, BlobInfo, LegacyMigration, StagedWriter, Storage, StorageCounters, StorageError,
    StorageStats,
};

/// Local-filesystem storage rooted at one directory. Cloning shares the open root.
#[derive(Clone)]
pub struct LocalStorage {
    root: Arc<Dir>,
    counters: Arc<StorageCounters>,
}

impl std::fmt::Debug for LocalStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStorage").finish_non_exhaustive()
    }
}

impl LocalStorage {
    /// Opens (creating it and its top-level areas when missing) the storage root.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root: PathBuf = root.into();
        // The one place that uses ambient authority: the operator chose this directory.
        std::fs::create_dir_all(&root)
            .map_err(|e| StorageError::Config(format!("storage root cannot be created: {e}")))?;
        let dir = Dir::open_ambient_dir(&root, cap_std::ambient_authority())
            .map_err(|e| StorageError::Config(format!("storage root cannot be opened: {e}")))?;
        for area in ["blobs", "staging", "quarantine"] {
            dir.create_dir_all(area)
                .map_err(|e| StorageError::Config(format!("{area}: {e}")))?;
        }
        Ok(Self {
            root: Arc::new(dir),
            counters: Arc::default(),
        })
    }

    /// Runs a synchronous storage operation on the blocking pool.
    async fn blocking<T, F>(&self, op: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Dir, &StorageCounters) -> Result<T, StorageError> + Send + 'static,
    {
        let root = Arc::clone(&self.root);
        let counters = Arc::clone(&self.counters);
        tokio::task::spawn_blocking(move || op(&root, &counters))
            .await
            .map_err(|e| StorageError::Io(format!("storage task failed: {e}")))?
    }
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;

#[async_trait::async_trait]
impl Storage for LocalStorage {
    fn stats(&self) -> StorageStats {
        self.counters.snapshot()
    }

    async fn create_staged(
        &self,
        t: &TenantId,
        upload_id: uuid::Uuid,
    ) -> Result<Box<dyn StagedWriter>, StorageError> {
        let t = t.clone();
        let writer = self
            .blocking(move |root, _| uploads::create_staged(root, &t, upload_id))
            .await?;
        Ok(Box::new(writer))
    }

    async fn open_staged(
        &self,
        t: &TenantId,
        upload_id: uuid::Uuid,
    ) -> Result<Reader, StorageError> {
        let t = t.clone();
        self.blocking(move |root, _| uploads::open_staged(root, &t, upload_id))
            .await
    }

    async fn discard_staged(
        &self,
        t: &TenantId,
        upload_id: uuid::Uuid,
    ) -> Result<(), StorageError> {
        let t = t.clone();
        self.blocking(move |root, _| uploads::discard_staged(root, &t, upload_id))
            .await
    }

    async fn stale_staged(
        &self,
        older_than: std::time::Duration,
    ) -> Result<Vec<(TenantId, uuid::Uuid)>, StorageError> {
        self.blocking(move |root, _| uploads::stale_staged(root, older_than))
            .await
    }

    async fn publish(
        &self,
        t: &TenantId,
        upload_id: uuid::Uuid,
        blob: &BlobId,
    ) -> Result<(), StorageError> {
        let (t, blob) = (t.clone(), blob.clone());
        self.blocking(move |root, counters| uploads::publish(root, counters, &t, upload_id, &blob))
            .await
    }

    async fn quarantine(&self, t: &TenantId, upload_id: uuid::Uuid) -> Result<(), StorageError> {
        let t = t.clone();
        self.blocking(move |root, _| uploads::quarantine(root, &t, upload_id))
            .await
    }

    async fn blob_size(&self, t: &TenantId, blob: &BlobId) -> Result<Option<u64>, StorageError> {
        let (t, blob) = (t.clone(), blob.clone());
        self.blocking(move |root, _| blobs::size(root, &t, &blob))
            .await
    }

    async fn open_blob(
        &self,
        t: &TenantId,
        blob: &BlobId,
        range: Option<(u64, u64)>,
    ) -> Result<(Reader, u64), StorageError> {
        let (t, blob) = (t.clone(), blob.clone());
        self.blocking(move |root, counters| blobs::open(root, counters, &t, &blob, range))
            .await
    }

    async fn list_blobs(&self, t: Option<&TenantId>) -> Result<Vec<BlobInfo>, StorageError> {
        let t = t.cloned();
        self.blocking(move |root, _| blobs::list(root, t.as_ref()))
            .await
    }

    async fn delete_blob(&self, t: &TenantId, blob: &BlobId) -> Result<bool, StorageError> {
        let (t, blob) = (t.clone(), blob.clone());
        self.blocking(move |root, counters| blobs::delete(root, counters, &t, &blob))
            .await
    }

    async fn migrate_legacy_layout(&self) -> Result<LegacyMigration, StorageError> {
        self.blocking(|root, _| legacy::migrate(root)).await
    }
}
