//! The storage contract: what every backend must do, written once against `dyn Storage` and
//! run for each backend with the same code (the local filesystem, and S3 against a real
//! S3-compatible server, moto, started per test by `testkit::s3`; a new backend adds its own
//! instantiation of `contract_tests!`). Blobs are immutable, named by SHA-256, per tenant (no
//! cross-tenant deduplication); publishing is atomic and idempotent; reads are ranged; every
//! blob write and read is counted. Backend-specific behaviour (local symlinks and the round-1
//! migration, S3 multipart uploads) has its own tests below the instantiations.

use std::sync::Arc;
use std::time::Duration;

use events::TenantId;
use platform::storage::{BlobId, LocalStorage, S3Settings, S3Storage, Storage, StorageError};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use uuid::Uuid;

fn t(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn blob_of(bytes: &[u8]) -> BlobId {
    BlobId::parse(&hex::encode(Sha256::digest(bytes))).unwrap()
}

async fn stage(s: &dyn Storage, tenant: &TenantId, chunks: &[&[u8]]) -> Uuid {
    let id = Uuid::now_v7();
    let mut w = s.create_staged(tenant, id).await.unwrap();
    for c in chunks {
        w.write(c).await.unwrap();
    }
    w.finish().await.unwrap();
    id
}

async fn read(
    s: &dyn Storage,
    tenant: &TenantId,
    blob: &BlobId,
    range: Option<(u64, u64)>,
) -> (Vec<u8>, u64) {
    let (mut r, size) = s.open_blob(tenant, blob, range).await.unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    (out, size)
}

pub async fn published_blob_is_read_whole_or_by_range(s: Arc<dyn Storage>) {
    let a = t("acme");
    let bytes = b"hello wide world";
    let blob = blob_of(bytes);
    let id = stage(s.as_ref(), &a, &[b"hello ", b"wide ", b"world"]).await;
    let mut staged = Vec::new();
    s.open_staged(&a, id)
        .await
        .unwrap()
        .read_to_end(&mut staged)
        .await
        .unwrap();
    assert_eq!(staged, bytes);
    assert_eq!(
        s.blob_size(&a, &blob).await.unwrap(),
        None,
        "staging is not a blob"
    );

    let before = s.stats();
    s.publish(&a, id, &blob).await.unwrap();
    s.publish(&a, id, &blob).await.unwrap(); // redelivery after success
    assert_eq!(s.stats().blob_writes, before.blob_writes + 1);
    assert_eq!(s.stats().blob_bytes_written, before.blob_bytes_written + 16);
    assert_eq!(s.blob_size(&a, &blob).await.unwrap(), Some(16));
    assert_eq!(
        read(s.as_ref(), &a, &blob, None).await,
        (bytes.to_vec(), 16)
    );
    assert_eq!(
        read(s.as_ref(), &a, &blob, Some((6, 10))).await,
        (b"wide".to_vec(), 16)
    );
    assert_eq!(
        read(s.as_ref(), &a, &blob, Some((11, 99))).await.0,
        b"world"
    );
    assert_eq!(s.stats().blob_reads, before.blob_reads + 3);
    // Ranges are clamped to the blob: past its end or empty, they read nothing but still
    // report the size (the API answers 416 from it).
    assert_eq!(
        read(s.as_ref(), &a, &blob, Some((16, 20))).await,
        (Vec::new(), 16)
    );
    assert_eq!(
        read(s.as_ref(), &a, &blob, Some((40, 50))).await,
        (Vec::new(), 16)
    );
    assert_eq!(
        read(s.as_ref(), &a, &blob, Some((5, 5))).await,
        (Vec::new(), 16)
    );
    assert!(matches!(
        s.open_staged(&a, id).await,
        Err(StorageError::NotFound(_))
    ));

    // A publication that never happened is not mistaken for a redelivery.
    let other = blob_of(b"never staged");
    assert!(matches!(
        s.publish(&a, Uuid::now_v7(), &other).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        s.open_blob(&a, &other, None).await,
        Err(StorageError::NotFound(_))
    ));
}

pub async fn same_content_is_one_blob_per_tenant(s: Arc<dyn Storage>) {
    let (a, b) = (t("acme"), t("beta"));
    let bytes = b"shared report";
    let blob = blob_of(bytes);
    let first = stage(s.as_ref(), &a, &[bytes]).await;
    s.publish(&a, first, &blob).await.unwrap();
    let second = stage(s.as_ref(), &a, &[bytes]).await;
    s.publish(&a, second, &blob).await.unwrap();
    assert!(matches!(
        s.open_staged(&a, second).await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(s.list_blobs(Some(&a)).await.unwrap().len(), 1);

    // No cross-tenant deduplication: beta does not see acme's blob, and its own upload of the
    // same bytes is its own blob.
    assert_eq!(s.blob_size(&b, &blob).await.unwrap(), None);
    assert!(matches!(
        s.open_blob(&b, &blob, None).await,
        Err(StorageError::NotFound(_))
    ));
    let theirs = stage(s.as_ref(), &b, &[bytes]).await;
    s.publish(&b, theirs, &blob).await.unwrap();
    let all = s.list_blobs(None).await.unwrap();
    let tenants: Vec<&str> = all.iter().map(|i| i.tenant.as_str()).collect();
    assert_eq!(tenants, ["acme", "beta"]);
    assert!(all
        .iter()
        .all(|i| i.blob == blob && i.size == bytes.len() as u64));
    assert_eq!(read(s.as_ref(), &b, &blob, None).await.0, bytes);
}

pub async fn quarantine_and_discard_are_idempotent_and_never_publish(s: Arc<dyn Storage>) {
    let a = t("acme");
    let bytes = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR";
    let id = stage(s.as_ref(), &a, &[bytes]).await;
    s.quarantine(&a, id).await.unwrap();
    s.quarantine(&a, id).await.unwrap();
    assert!(matches!(
        s.open_staged(&a, id).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        s.publish(&a, id, &blob_of(bytes)).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(s.list_blobs(Some(&a)).await.unwrap().is_empty());
    assert!(matches!(
        s.quarantine(&a, Uuid::now_v7()).await,
        Err(StorageError::NotFound(_))
    ));

    let dropped = stage(s.as_ref(), &a, &[b"abandoned"]).await;
    assert!(s
        .stale_staged(Duration::ZERO)
        .await
        .unwrap()
        .contains(&(a.clone(), dropped)));
    assert!(s
        .stale_staged(Duration::from_secs(3600))
        .await
        .unwrap()
        .is_empty());
    s.discard_staged(&a, dropped).await.unwrap();
    s.discard_staged(&a, dropped).await.unwrap();
    assert!(!s
        .stale_staged(Duration::ZERO)
        .await
        .unwrap()
        .contains(&(a.clone(), dropped)));
}

pub async fn a_writer_dropped_unfinished_leaves_nothing_and_ids_are_single_use(
    s: Arc<dyn Storage>,
) {
    let a = t("acme");
    let id = Uuid::now_v7();
    let mut w = s.create_staged(&a, id).await.unwrap();
    w.write(b"partial").await.unwrap();
    drop(w);
    assert!(matches!(
        s.open_staged(&a, id).await,
        Err(StorageError::NotFound(_))
    ));
    let used = stage(s.as_ref(), &a, &[b"once"]).await;
    assert!(matches!(
        s.create_staged(&a, used).await.err(),
        Some(StorageError::AlreadyExists(_))
    ));
}

/// Two writers for one id never both succeed and the first one's bytes stay: a backend may
/// refuse the second at once (local: exclusive create) or when it finishes (S3: the
/// conditional write of `finish` finds the first one's object).
pub async fn two_writers_of_one_id_never_both_succeed(s: Arc<dyn Storage>) {
    let a = t("acme");
    let id = Uuid::now_v7();
    let mut first = s.create_staged(&a, id).await.unwrap();
    first.write(b"first").await.unwrap();
    let second = s.create_staged(&a, id).await;
    first.finish().await.unwrap();
    match second {
        Err(e) => assert!(matches!(e, StorageError::AlreadyExists(_)), "{e}"),
        Ok(mut second) => {
            second.write(b"second").await.unwrap();
            assert!(matches!(
                second.finish().await,
                Err(StorageError::AlreadyExists(_))
            ));
        }
    }
    let mut staged = Vec::new();
    s.open_staged(&a, id)
        .await
        .unwrap()
        .read_to_end(&mut staged)
        .await
        .unwrap();
    assert_eq!(staged, b"first");
}

pub async fn deleted_blobs_are_gone_and_deleting_again_is_fine(s: Arc<dyn Storage>) {
    let a = t("acme");
    let bytes = b"to be collected";
    let blob = blob_of(bytes);
    let id = stage(s.as_ref(), &a, &[bytes]).await;
    s.publish(&a, id, &blob).await.unwrap();
    let before = s.stats();
    assert!(s.delete_blob(&a, &blob).await.unwrap());
    assert!(!s.delete_blob(&a, &blob).await.unwrap());
    assert_eq!(s.stats().blob_deletes, before.blob_deletes + 1);
    assert_eq!(s.blob_size(&a, &blob).await.unwrap(), None);
    assert!(s.list_blobs(Some(&a)).await.unwrap().is_empty());
}

macro_rules! contract_tests {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn published_blob_is_read_whole_or_by_range() {
                let (_keep, s) = $make;
                super::published_blob_is_read_whole_or_by_range(s).await;
            }

            #[tokio::test]
            async fn same_content_is_one_blob_per_tenant() {
                let (_keep, s) = $make;
                super::same_content_is_one_blob_per_tenant(s).await;
            }

            #[tokio::test]
            async fn quarantine_and_discard_are_idempotent_and_never_publish() {
                let (_keep, s) = $make;
                super::quarantine_and_discard_are_idempotent_and_never_publish(s).await;
            }

            #[tokio::test]
            async fn a_writer_dropped_unfinished_leaves_nothing_and_ids_are_single_use() {
                let (_keep, s) = $make;
                super::a_writer_dropped_unfinished_leaves_nothing_and_ids_are_single_use(s).await;
            }

            #[tokio::test]
            async fn two_writers_of_one_id_never_both_succeed() {
                let (_keep, s) = $make;
                super::two_writers_of_one_id_never_both_succeed(s).await;
            }

            #[tokio::test]
            async fn deleted_blobs_are_gone_and_deleting_again_is_fine() {
                let (_keep, s) = $make;
                super::deleted_blobs_are_gone_and_deleting_again_is_fine(s).await;
            }
        }
    };
}

fn local() -> (tempfile::TempDir, Arc<dyn Storage>) {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStorage::new(dir.path().join("root")).unwrap();
    (dir, Arc::new(s))
}

contract_tests!(local_backend, local());

/// An S3 storage on a fresh bucket of its own moto server, under a key prefix (so the prefix
/// handling is part of every test).
async fn s3_storage(part_size: usize) -> (testkit::s3::S3Server, S3Storage) {
    s3_storage_with(|s| s.with_part_size(part_size)).await
}

/// Like [`s3_storage`] with the settings adjusted by `adjust`.
async fn s3_storage_with(
    adjust: impl FnOnce(S3Settings) -> S3Settings,
) -> (testkit::s3::S3Server, S3Storage) {
    let server = testkit::s3::S3Server::start().await.unwrap();
    let bucket = server.create_bucket().await.unwrap();
    let endpoint = server.endpoint.clone();
    let settings = S3Settings::parse(&format!("s3://{bucket}/fe/test"), |name| {
        match name {
            "AWS_ACCESS_KEY_ID" => Some(testkit::s3::ACCESS_KEY_ID),
            "AWS_SECRET_ACCESS_KEY" => Some(testkit::s3::SECRET_ACCESS_KEY),
            "AWS_REGION" => Some(testkit::s3::REGION),
            "FE_S3_ENDPOINT" => Some(endpoint.as_str()),
            _ => None,
        }
        .map(str::to_owned)
    })
    .unwrap();
    let s = S3Storage::new(&adjust(settings));
    s.check().await.unwrap();
    (server, s)
}

async fn s3() -> (testkit::s3::S3Server, Arc<dyn Storage>) {
    let (server, s) = s3_storage(platform::storage::s3::DEFAULT_PART_SIZE).await;
    (server, Arc::new(s))
}

contract_tests!(s3_backend, s3().await);

/// Local only: a symlink planted where a blob would be is neither served nor listed, so a
/// compromised storage directory cannot make the API read host files.
#[tokio::test]
async fn local_blob_area_does_not_follow_planted_symlinks() {
    let (dir, s) = local();
    let a = t("acme");
    let bytes = b"real";
    let id = stage(s.as_ref(), &a, &[bytes]).await;
    s.publish(&a, id, &blob_of(bytes)).await.unwrap();
    let secret = dir.path().join("host-secret");
    std::fs::write(&secret, b"host secret").unwrap();
    let planted = blob_of(b"planted");
    let shard = dir
        .path()
        .join("root/blobs/acme")
        .join(&planted.as_str()[..2]);
    std::fs::create_dir_all(&shard).unwrap();
    std::os::unix::fs::symlink(&secret, shard.join(planted.as_str())).unwrap();

    assert!(s.open_blob(&a, &planted, None).await.is_err());
    let listed: Vec<BlobId> = s
        .list_blobs(Some(&a))
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.blob)
        .collect();
    assert_eq!(listed, [blob_of(bytes)]);
}

/// Local only: the round-1 path tree (`tenants/<t>/tree/...`, `versions/<v>`) becomes blobs
/// named by content, without copying, idempotently; what the catalogue names by SHA-256 is
/// then readable as a blob.
#[tokio::test]
async fn local_round1_tree_migrates_into_blobs_idempotently() {
    let (dir, s) = local();
    let old = dir.path().join("root/tenants/acme");
    std::fs::create_dir_all(old.join("tree/reports/2026")).unwrap();
    std::fs::create_dir_all(old.join("versions")).unwrap();
    std::fs::write(old.join("tree/reports/2026/q1.pdf"), b"quarter one").unwrap();
    std::fs::write(old.join("tree/copy-of-q1.pdf"), b"quarter one").unwrap();
    std::fs::write(
        old.join("versions/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
        b"older",
    )
    .unwrap();
    let a = t("acme");

    let first = s.migrate_legacy_layout().await.unwrap();
    assert_eq!((first.tenants, first.files, first.blobs), (1, 3, 2));
    assert_eq!(
        read(s.as_ref(), &a, &blob_of(b"quarter one"), None).await.0,
        b"quarter one"
    );
    assert_eq!(
        read(s.as_ref(), &a, &blob_of(b"older"), None).await.0,
        b"older"
    );
    assert!(
        !old.join("tree/reports").exists(),
        "the old tree is left behind"
    );
    assert_eq!(s.list_blobs(Some(&a)).await.unwrap().len(), 2);

    // Resumable: a file left over (as after a crash before its old name was removed) is
    // moved on the next run, and a finished migration finds nothing to do.
    std::fs::create_dir_all(old.join("tree")).unwrap();
    std::fs::write(old.join("tree/late.txt"), b"quarter one").unwrap();
    let second = s.migrate_legacy_layout().await.unwrap();
    assert_eq!((second.files, second.blobs), (1, 0));
    let third = s.migrate_legacy_layout().await.unwrap();
    assert_eq!((third.files, third.blobs), (0, 0));
    assert_eq!(s.list_blobs(Some(&a)).await.unwrap().len(), 2);
}

#[path = "storage_contract/s3_specific.rs"]
mod s3_specific;
