//! Where file bytes live: the [`Storage`] trait and its implementations.
//!
//! Storage holds **immutable blobs** in a per-tenant namespace, each named by the SHA-256 of
//! its content ([`BlobId`]), plus the upload areas around them (staging, quarantine). It knows
//! nothing of paths, directories or versions: the catalogue (read models built from the log)
//! maps each path to its current version and each version to its blob, so a move, copy,
//! delete or overwrite of any tree changes only the catalogue and never touches a byte here.
//! There is no cross-tenant deduplication: the same content uploaded by two tenants is two
//! blobs, so no tenant can learn whether another holds a file.
//!
//! Every mutating operation is safe when the worker runs it again after a crash at any point
//! (JetStream redelivers unacknowledged tasks); each method documents what such a re-run
//! returns.
//!
//! Errors carry a short context (`staged upload <id>`, `blob <sha256>`), never an absolute host
//! path and never file content. [`StorageError::code`] maps them onto the task error codes of
//! API.md.
//!
//! Every blob written or read is counted ([`StorageStats`], and the metrics
//! `fe_storage_blob_writes_total` / `fe_storage_blob_reads_total` /
//! `fe_storage_blob_bytes_written_total`), which is how tests and operators see that a move
//! or copy of a tree moved no bytes.

mod local;
pub mod s3;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use events::TenantId;

pub use local::LocalStorage;
pub use s3::{S3Settings, S3Storage};

/// The name of a blob: the lowercase hex SHA-256 of its content. Parsed, never built from
/// unchecked text, so it is always safe as a file or object name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(String);

impl BlobId {
    /// Accepts exactly 64 hex digits (either case; kept lowercase).
    pub fn parse(s: &str) -> Result<Self, StorageError> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(StorageError::NotFound("blob: not a sha256".into()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One stored blob, as listed for garbage collection and checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub tenant: TenantId,
    pub blob: BlobId,
    pub size: u64,
    pub modified: SystemTime,
}

/// Why a storage operation failed. The `String` is a short context (`staged upload <id>`,
/// `blob <sha256>`), never a host path or file content.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("path leads outside the storage root: {0}")]
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
            Self::Escape(_) | Self::Io(_) | Self::Config(_) => "storage_error",
        }
    }
}

/// A snapshot of what a storage instance did since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Blobs published (a promotion that found its blob already stored counts too: it is
    /// the only operation that ever creates one).
    pub blob_writes: u64,
    /// Bytes of the blobs published.
    pub blob_bytes_written: u64,
    /// Blobs opened for reading (downloads, links, checks).
    pub blob_reads: u64,
    /// Blobs deleted (garbage collection).
    pub blob_deletes: u64,
}

/// Counters behind [`StorageStats`]; each backend owns one and bumps it on every blob
/// operation (and the matching process-wide metric).
#[derive(Debug, Default)]
pub struct StorageCounters {
    writes: AtomicU64,
    bytes_written: AtomicU64,
    reads: AtomicU64,
    deletes: AtomicU64,
}

impl StorageCounters {
    pub fn wrote(&self, bytes: u64) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        metrics::counter!("fe_storage_blob_writes_total").increment(1);
        metrics::counter!("fe_storage_blob_bytes_written_total").increment(bytes);
    }

    pub fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("fe_storage_blob_reads_total").increment(1);
    }

    pub fn deleted(&self) {
        self.deletes.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("fe_storage_blob_deletes_total").increment(1);
    }

    pub fn snapshot(&self) -> StorageStats {
        StorageStats {
            blob_writes: self.writes.load(Ordering::Relaxed),
            blob_bytes_written: self.bytes_written.load(Ordering::Relaxed),
            blob_reads: self.reads.load(Ordering::Relaxed),
            blob_deletes: self.deletes.load(Ordering::Relaxed),
        }
    }
}

type Reader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// The storage side of File Engine. Implementations are cheap to share (`Arc<dyn Storage>`).
#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// What this instance wrote and read since it was opened.
    fn stats(&self) -> StorageStats;

    /// Whether the storage is reachable and usable as configured (the S3 bucket exists and
    /// the credentials may read it); every process checks once at start. Backends whose
    /// constructor already checked (local) have nothing more to do.
    async fn check(&self) -> Result<(), StorageError> {
        Ok(())
    }

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
    ) -> Result<Reader, StorageError>;

    /// Forget a staged upload; a missing one is fine.
    async fn discard_staged(&self, t: &TenantId, upload_id: uuid::Uuid)
        -> Result<(), StorageError>;

    /// Staged upload ids older than `older_than` (for the janitor, which discards them).
    async fn stale_staged(
        &self,
        older_than: std::time::Duration,
    ) -> Result<Vec<(TenantId, uuid::Uuid)>, StorageError>;

    /// Publishes the (clean) staged upload as the tenant's blob `blob` and forgets the staged
    /// copy. The blob appears atomically and complete, or not at all; an existing blob keeps
    /// its content (same name = same content) and counts as fresh again for garbage
    /// collection. Idempotent: when the staged upload is gone
    /// and the blob exists, Ok; when both are gone, `NotFound`.
    async fn publish(
        &self,
        t: &TenantId,
        upload_id: uuid::Uuid,
        blob: &BlobId,
    ) -> Result<(), StorageError>;

    /// Move a staged upload to quarantine, where nothing serves it; idempotent.
    async fn quarantine(&self, t: &TenantId, upload_id: uuid::Uuid) -> Result<(), StorageError>;

    /// The size of a blob, `None` when it is not stored.
    async fn blob_size(&self, t: &TenantId, blob: &BlobId) -> Result<Option<u64>, StorageError>;

    /// Reads a blob, optionally a byte range [start, end) (clamped to the blob); returns the
    /// reader and the blob's total size. Callers answer 416 themselves from the size.
    async fn open_blob(
        &self,
        t: &TenantId,
        blob: &BlobId,
        range: Option<(u64, u64)>,
    ) -> Result<(Reader, u64), StorageError>;

    /// Every stored blob (of one tenant, or of all), for garbage collection and checks.
    async fn list_blobs(&self, t: Option<&TenantId>) -> Result<Vec<BlobInfo>, StorageError>;

    /// Deletes a blob; Ok(false) when it was not there (a re-run after success).
    async fn delete_blob(&self, t: &TenantId, blob: &BlobId) -> Result<bool, StorageError>;

    /// Moves whatever the round-1 path-tree layout left into blobs (`file-engine migrate`);
    /// idempotent and resumable. Backends that never had that layout have nothing to do.
    async fn migrate_legacy_layout(&self) -> Result<LegacyMigration, StorageError> {
        Ok(LegacyMigration::default())
    }
}

/// What [`Storage::migrate_legacy_layout`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LegacyMigration {
    /// Tenants whose round-1 tree was walked.
    pub tenants: u64,
    /// Files moved out of the round-1 layout.
    pub files: u64,
    /// Blobs created from them (fewer when files shared content).
    pub blobs: u64,
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

/// Parses `FE_STORAGE`: `local:<dir>` -> [`LocalStorage`]; `s3://bucket[/prefix]` ->
/// [`S3Storage`] configured from the `AWS_*` variables, `FE_S3_ENDPOINT` and
/// `FE_S3_FORCE_PATH_STYLE` of the environment (see [`S3Settings::from_env`]). Nothing is sent
/// to S3 here: [`Storage::check`] does that.
pub fn from_config(spec: &str) -> Result<Arc<dyn Storage>, StorageError> {
    open(spec, &S3Options::default())
}

/// The S3 settings the binary's configuration carries (`FE_S3_ENDPOINT`,
/// `FE_S3_FORCE_PATH_STYLE`, also given as `--s3-endpoint`, `--s3-force-path-style`); each
/// one set wins over the environment.
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub force_path_style: Option<bool>,
}

/// Like [`from_config`], with the S3 settings of the configuration taking precedence.
pub fn open(spec: &str, s3: &S3Options) -> Result<Arc<dyn Storage>, StorageError> {
    if let Some(dir) = spec.strip_prefix("local:") {
        if dir.is_empty() {
            return Err(StorageError::Config(
                "FE_STORAGE=local: needs a directory".into(),
            ));
        }
        return Ok(Arc::new(LocalStorage::new(dir)?));
    }
    if spec.starts_with("s3://") {
        let settings = s3_settings(spec, s3, s3::env_var)?;
        return Ok(Arc::new(S3Storage::new(&settings)));
    }
    Err(StorageError::Config(
        "FE_STORAGE must be local:<dir> or s3://bucket[/prefix]".into(),
    ))
}

/// The S3 settings of `spec`: the configuration's values where set, else `var`'s.
fn s3_settings(
    spec: &str,
    s3: &S3Options,
    var: impl Fn(&str) -> Option<String>,
) -> Result<S3Settings, StorageError> {
    S3Settings::parse(spec, |name| match name {
        "FE_S3_ENDPOINT" if s3.endpoint.is_some() => s3.endpoint.clone(),
        "FE_S3_FORCE_PATH_STYLE" if s3.force_path_style.is_some() => {
            s3.force_path_style.map(|b| b.to_string())
        }
        _ => var(name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_are_exactly_a_sha256() {
        let sha = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        assert_eq!(
            BlobId::parse(sha).unwrap().as_str(),
            sha.to_ascii_lowercase()
        );
        for bad in [
            "",
            "..",
            &"a".repeat(63),
            &"a".repeat(65),
            &format!("{}/", &sha[..63]),
            &"g".repeat(64),
        ] {
            assert!(BlobId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn error_codes_follow_the_api() {
        let p = || "/x".to_owned();
        assert_eq!(StorageError::NotFound(p()).code(), "not_found");
        assert_eq!(StorageError::AlreadyExists(p()).code(), "already_exists");
        assert_eq!(StorageError::Escape(p()).code(), "storage_error");
        assert_eq!(StorageError::Io(p()).code(), "storage_error");
        assert_eq!(StorageError::Config(p()).code(), "storage_error");
    }

    #[test]
    fn the_configuration_s_s3_settings_win_over_the_environment() {
        let env = |name: &str| {
            match name {
                "AWS_ACCESS_KEY_ID" => Some("id"),
                "AWS_SECRET_ACCESS_KEY" => Some("secret"),
                "FE_S3_ENDPOINT" => Some("http://from-env:9000"),
                "FE_S3_FORCE_PATH_STYLE" => Some("true"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let from_env = s3_settings("s3://bucket", &S3Options::default(), env).unwrap();
        assert_eq!(from_env.endpoint.as_deref(), Some("http://from-env:9000"));
        assert!(from_env.force_path_style);
        let options = S3Options {
            endpoint: Some("https://from-config:9000".into()),
            force_path_style: Some(false),
        };
        let configured = s3_settings("s3://bucket", &options, env).unwrap();
        assert_eq!(
            configured.endpoint.as_deref(),
            Some("https://from-config:9000")
        );
        assert!(!configured.force_path_style);
    }

    #[test]
    fn from_config_recognises_both_schemes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(from_config(&format!("local:{}", dir.path().display())).is_ok());
        assert!(dir.path().join("blobs").is_dir());
        // The S3 side of the parsing (bucket, prefix, variables) is tested in `s3::config`
        // without touching the process environment.
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
