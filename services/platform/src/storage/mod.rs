//! Where file bytes live: the [`Storage`] trait and its implementations.
//!
//! Owns the contract every storage backend fulfils for the worker (tree effects of tasks),
//! the upload path (staging, promotion, quarantine) and the read path (downloads and signed
//! links to retained versions). Paths are always tenant-relative [`FilePath`]s: a backend
//! maps them beneath the tenant's own root and must make it impossible to reach anything
//! else (another tenant, staging, the host).
//!
//! Every mutating operation is written to be safe when the worker runs it again after a crash
//! at any point (JetStream redelivers unacknowledged tasks); each method documents what such a
//! re-run returns. Callers decide what an outcome means for their task: storage only reports
//! the state it finds.
//!
//! Errors carry the tenant-relative path or a short context, never an absolute host path and
//! never file content. [`StorageError::code`] maps them onto the task error codes of API.md.

mod local;

use std::sync::Arc;

use events::{FilePath, TenantId};

pub use local::LocalStorage;

/// What kind of entry a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    File,
    Dir,
}

/// What storage knows about one entry. `size` is the byte length of a file and 0 for a
/// directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryMeta {
    pub kind: EntryKind,
    pub size: u64,
}

/// Why a storage operation failed. The `String` is the tenant-relative path or a short
/// context (`staged upload <id>`), never a host path or file content.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("not a directory: {0}")]
    NotADirectory(String),
    #[error("is a directory: {0}")]
    IsADirectory(String),
    #[error("directory not empty: {0}")]
    NotEmpty(String),
    #[error("path leads outside the tenant root: {0}")]
    Escape(String),
    #[error("storage i/o error: {0}")]
    Io(String),
    #[error("storage configuration error: {0}")]
    Config(String),
}

impl StorageError {
    /// The task error code (API.md "Precise semantics") this error becomes.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::AlreadyExists(_) => "already_exists",
            Self::NotADirectory(_) | Self::IsADirectory(_) => "conflict",
            Self::NotEmpty(_) => "not_empty",
            Self::Escape(_) | Self::Io(_) | Self::Config(_) => "storage_error",
        }
    }
}

/// The storage side of File Engine. Implementations are cheap to share (`Arc<dyn Storage>`).
#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// The kind and size of `p`; `None` when nothing is there (also when an ancestor is a
    /// file). The root always exists.
    async fn stat(&self, t: &TenantId, p: &FilePath) -> Result<Option<EntryMeta>, StorageError>;

    /// Create one directory; parent must exist. Ok(false) if it already existed as a dir,
    /// Ok(true) if created. A re-run after success returns Ok(false).
    async fn create_dir(&self, t: &TenantId, p: &FilePath) -> Result<bool, StorageError>;

    /// Create the directory and missing ancestors (idempotent: a re-run returns Ok).
    async fn create_dir_all(&self, t: &TenantId, p: &FilePath) -> Result<(), StorageError>;

    /// Remove a file or an empty dir (recursive=false) or a whole subtree (recursive=true).
    /// Missing -> Ok(false); so a re-run after success returns Ok(false). The root cannot be
    /// removed (`IsADirectory`).
    async fn remove(
        &self,
        t: &TenantId,
        p: &FilePath,
        recursive: bool,
    ) -> Result<bool, StorageError>;

    /// Atomic rename within the tenant. Target must not exist unless overwrite (then a file or
    /// empty dir target is replaced; a non-empty dir target -> NotEmpty). Moving a directory
    /// into its own subtree is `IsADirectory`. A re-run after success finds the source gone
    /// and returns `NotFound(from)` without touching the target.
    async fn rename(
        &self,
        t: &TenantId,
        from: &FilePath,
        to: &FilePath,
        overwrite: bool,
    ) -> Result<(), StorageError>;

    /// Copy a file or a whole directory tree; the copy is built under a temp name in the
    /// target's parent and renamed into place (so a crash leaves no half copy visible, and
    /// re-running it is safe). overwrite semantics as rename. A re-run after success returns
    /// `AlreadyExists(to)` (or, with overwrite, replaces the copy with an identical one).
    async fn copy(
        &self,
        t: &TenantId,
        from: &FilePath,
        to: &FilePath,
        overwrite: bool,
    ) -> Result<(), StorageError>;

    /// The entries of `dir`, sorted by name, without storage-internal temp entries.
    async fn list(
        &self,
        t: &TenantId,
        dir: &FilePath,
    ) -> Result<Vec<(String, EntryMeta)>, StorageError>;

    /// A writer for a new staged upload; bytes are written as they stream in (never held
    /// whole in memory). A second writer for the same id is `AlreadyExists`.
    async fn create_staged(
        &self,
        t: &TenantId,
        upload_id: uuid::Uuid,
    ) -> Result<Box<dyn StagedWriter>, StorageError>;

    /// The bytes of a staged upload (for the scanner).
    async fn open_staged(
        &self,
        t: &TenantId,
        upload_id: uuid::Uuid,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, StorageError>;

    /// Forget a staged upload; a missing one is fine.
    async fn discard_staged(&self, t: &TenantId, upload_id: uuid::Uuid)
        -> Result<(), StorageError>;

    /// Staged upload ids older than `older_than` (for the janitor, which discards them).
    async fn stale_staged(
        &self,
        older_than: std::time::Duration,
    ) -> Result<Vec<(TenantId, uuid::Uuid)>, StorageError>;

    /// Atomically make the staged bytes the content of `p`. If `p` existed as a file, its old
    /// content is first retained as version `previous_version` (if Some). Idempotent: if the
    /// staged file is gone and `p` already holds this upload's bytes, Ok.
    async fn promote(
        &self,
        t: &TenantId,
        upload_id: uuid::Uuid,
        p: &FilePath,
        previous_version: Option<&str>,
    ) -> Result<(), StorageError>;

    /// Move a staged upload to quarantine, where nothing serves it; idempotent.
    async fn quarantine(&self, t: &TenantId, upload_id: uuid::Uuid) -> Result<(), StorageError>;

    /// Read a file of the tree (or a retained version when `retained_version` is Some and
    /// found among the retained versions), optionally a byte range [start, end) — returns the
    /// reader and the total size. The range is clamped to the file; callers answer 416
    /// themselves from the total size.
    async fn open_read(
        &self,
        t: &TenantId,
        p: &FilePath,
        retained_version: Option<&str>,
        range: Option<(u64, u64)>,
    ) -> Result<(Box<dyn tokio::io::AsyncRead + Send + Unpin>, u64), StorageError>;
}

/// Receives the bytes of one upload as they stream in.
#[async_trait::async_trait]
pub trait StagedWriter: Send {
    /// Append a chunk.
    async fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError>;
    /// fsync and close; returns bytes written. Dropping a writer without `finish` removes
    /// the partial staged file (best effort; the janitor catches what is left).
    async fn finish(self: Box<Self>) -> Result<u64, StorageError>;
}

/// Whether `v` may be used as a version id: `[A-Za-z0-9-]{1,64}`. Version ids become file
/// names, so nothing else is ever accepted.
pub fn is_valid_version_id(v: &str) -> bool {
    (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Parses `FE_STORAGE`: `local:<dir>` -> [`LocalStorage`]; `s3://bucket[/prefix]` is
/// recognised but not built yet.
pub fn from_config(spec: &str) -> Result<Arc<dyn Storage>, StorageError> {
    if let Some(dir) = spec.strip_prefix("local:") {
        if dir.is_empty() {
            return Err(StorageError::Config(
                "FE_STORAGE=local: needs a directory".into(),
            ));
        }
        return Ok(Arc::new(LocalStorage::new(dir)?));
    }
    if let Some(rest) = spec.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or_default();
        if bucket.is_empty() {
            return Err(StorageError::Config(
                "FE_STORAGE=s3:// needs a bucket".into(),
            ));
        }
        return Err(StorageError::Config("s3 storage not built yet".into()));
    }
    Err(StorageError::Config(
        "FE_STORAGE must be local:<dir> or s3://bucket[/prefix]".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids_are_restricted_to_safe_file_names() {
        assert!(is_valid_version_id("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
        assert!(is_valid_version_id(&"a".repeat(64)));
        for bad in ["", "..", "a/b", "a.b", "a b", "ä", &"a".repeat(65)] {
            assert!(!is_valid_version_id(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn error_codes_follow_the_api() {
        let p = || "/x".to_owned();
        assert_eq!(StorageError::NotFound(p()).code(), "not_found");
        assert_eq!(StorageError::AlreadyExists(p()).code(), "already_exists");
        assert_eq!(StorageError::NotADirectory(p()).code(), "conflict");
        assert_eq!(StorageError::IsADirectory(p()).code(), "conflict");
        assert_eq!(StorageError::NotEmpty(p()).code(), "not_empty");
        assert_eq!(StorageError::Escape(p()).code(), "storage_error");
        assert_eq!(StorageError::Io(p()).code(), "storage_error");
        assert_eq!(StorageError::Config(p()).code(), "storage_error");
    }

    #[test]
    fn from_config_recognises_both_schemes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(from_config(&format!("local:{}", dir.path().display())).is_ok());
        assert!(dir.path().join("tenants").is_dir());
        assert_eq!(
            from_config("s3://bucket/prefix").err(),
            Some(StorageError::Config("s3 storage not built yet".into()))
        );
        assert!(matches!(from_config("s3://"), Err(StorageError::Config(_))));
        assert!(matches!(
            from_config("local:"),
            Err(StorageError::Config(_))
        ));
        assert!(matches!(
            from_config("ftp://x"),
            Err(StorageError::Config(_))
        ));
    }
}
