//! [`LocalStorage`]: the [`Storage`] trait on a local filesystem (`FE_STORAGE=local:<dir>`).
//!
//! Layout beneath `<dir>` (which must be one filesystem: promotion and version retention
//! rely on `rename` and hard links between these areas):
//!
//! ```text
//! tenants/<tenant>/tree/...          the tenant's visible tree (the root of its paths)
//! tenants/<tenant>/versions/<v>      retained content of overwritten files (hard links)
//! tenants/<tenant>/trash/<temp>      subtrees being deleted (crash left-overs are swept)
//! staging/<tenant>/<upload id>       uploads being received or awaiting their scan
//! staging/<tenant>/<id>.promoted     marker proving a promotion happened (for re-runs)
//! quarantine/<tenant>/<upload id>    infected uploads, never served
//! ```
//!
//! Confinement: `<dir>` is opened once with ambient authority; everything else is resolved
//! relative to it with cap-std, which refuses any resolution that leaves the directory it
//! started from (`..`, absolute symlinks, relative symlinks pointing out). Tenant paths are
//! resolved beneath `tenants/<tenant>/tree`, so they cannot reach another tenant, staging,
//! versions or the host. Symlinks are never created by this code; one planted on disk is
//! followed only while it stays inside the tenant tree (else `Escape`), `list` and tree
//! copies skip symlinks altogether (so a copy cannot loop), and `remove`/`rename` act on the
//! link itself, never on what it points to.
//!
//! Durability: file contents are fsynced before they become visible, and the directories
//! whose entries changed are fsynced after each rename, create and remove.
//!
//! cap-std is synchronous: every operation runs on tokio's blocking pool.

mod copy;
mod disk;
mod read;
mod tree;
mod uploads;

use std::path::PathBuf;
use std::sync::Arc;

use cap_std::fs::Dir;
use events::{FilePath, TenantId};
use tokio::io::AsyncRead;

use super::{EntryMeta, StagedWriter, Storage, StorageError};

/// Local-filesystem storage rooted at one directory. Cloning shares the open root.
#[derive(Clone)]
pub struct LocalStorage {
    root: Arc<Dir>,
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
        for area in ["tenants", "staging", "quarantine"] {
            dir.create_dir_all(area)
                .map_err(|e| StorageError::Config(format!("{area}: {e}")))?;
        }
        Ok(Self {
            root: Arc::new(dir),
        })
    }

    /// Runs a synchronous storage operation on the blocking pool.
    async fn blocking<T, F>(&self, op: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Dir) -> Result<T, StorageError> + Send + 'static,
    {
        let root = Arc::clone(&self.root);
        tokio::task::spawn_blocking(move || op(&root))
            .await
            .map_err(|e| StorageError::Io(format!("storage task failed: {e}")))?
    }
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;

#[async_trait::async_trait]
impl Storage for LocalStorage {
    async fn stat(&self, t: &TenantId, p: &FilePath) -> Result<Option<EntryMeta>, StorageError> {
        let (t, p) = (t.clone(), p.clone());
        self.blocking(move |root| tree::stat(root, &t, &p)).await
    }

    async fn create_dir(&self, t: &TenantId, p: &FilePath) -> Result<bool, StorageError> {
        let (t, p) = (t.clone(), p.clone());
        self.blocking(move |root| tree::create_dir(root, &t, &p))
            .await
    }

    async fn create_dir_all(&self, t: &TenantId, p: &FilePath) -> Result<(), StorageError> {
        let (t, p) = (t.clone(), p.clone());
        self.blocking(move |root| tree::create_dir_all(root, &t, &p))
            .await
    }

    async fn remove(
        &self,
        t: &TenantId,
        p: &FilePath,
        recursive: bool,
    ) -> Result<bool, StorageError> {
        let (t, p) = (t.clone(), p.clone());
        self.blocking(move |root| tree::remove(root, &t, &p, recursive))
            .await
    }

    async fn rename(
        &self,
        t: &TenantId,
        from: &FilePath,
        to: &FilePath,
        overwrite: bool,
    ) -> Result<(), StorageError> {
        let (t, from, to) = (t.clone(), from.clone(), to.clone());
        self.blocking(move |root| tree::rename(root, &t, &from, &to, overwrite))
            .await
    }

    async fn copy(
        &self,
        t: &TenantId,
        from: &FilePath,
        to: &FilePath,
        overwrite: bool,
    ) -> Result<(), StorageError> {
        let (t, from, to) = (t.clone(), from.clone(), to.clone());
        self.blocking(move |root| copy::copy(root, &t, &from, &to, overwrite))
            .await
    }

    async fn list(
        &self,
        t: &TenantId,
        dir: &FilePath,
    ) -> Result<Vec<(String, EntryMeta)>, StorageError> {
        let (t, dir) = (t.clone(), dir.clone());
        self.blocking(move |root| tree::list(root, &t, &dir)).await
    }

    async fn create_staged(
        &self,
        t: &TenantId,
        upload_id: uuid::Uuid,
    ) -> Result<Box<dyn StagedWriter>, StorageError> {
        let t = t.clone();
        let writer = self
            .blocking(move |root| uploads::create_staged(root, &t, upload_id))
            .await?;
        Ok(Box::new(writer))
    }

    async fn open_staged(
        &self,
        t: &TenantId,
        upload_id: uuid::Uuid,
    ) -> Result<Reader, StorageError> {
        let t = t.clone();
        self.blocking(move |root| uploads::open_staged(root, &t, upload_id))
            .await
    }

    async fn discard_staged(
        &self,
        t: &TenantId,
        upload_id: uuid::Uuid,
    ) -> Result<(), StorageError> {
        let t = t.clone();
        self.blocking(move |root| uploads::discard_staged(root, &t, upload_id))
            .await
    }

    async fn stale_staged(
        &self,
        older_than: std::time::Duration,
    ) -> Result<Vec<(TenantId, uuid::Uuid)>, StorageError> {
        self.blocking(move |root| uploads::stale_staged(root, older_than))
            .await
    }

    async fn promote(
        &self,
        t: &TenantId,
        upload_id: uuid::Uuid,
        p: &FilePath,
        previous_version: Option<&str>,
    ) -> Result<(), StorageError> {
        let (t, p) = (t.clone(), p.clone());
        let previous = previous_version.map(str::to_owned);
        self.blocking(move |root| uploads::promote(root, &t, upload_id, &p, previous.as_deref()))
            .await
    }

    async fn quarantine(&self, t: &TenantId, upload_id: uuid::Uuid) -> Result<(), StorageError> {
        let t = t.clone();
        self.blocking(move |root| uploads::quarantine(root, &t, upload_id))
            .await
    }

    async fn open_read(
        &self,
        t: &TenantId,
        p: &FilePath,
        retained_version: Option<&str>,
        range: Option<(u64, u64)>,
    ) -> Result<(Reader, u64), StorageError> {
        let (t, p) = (t.clone(), p.clone());
        let version = retained_version.map(str::to_owned);
        self.blocking(move |root| read::open_read(root, &t, &p, version.as_deref(), range))
            .await
    }
}
