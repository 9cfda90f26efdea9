//! S3 only: what the contract cannot see from outside the trait. Uploads larger than a part
//! stream through a multipart upload (parts leave while the upload is still being written,
//! nothing is visible before `finish`), an abandoned multipart upload is aborted (by the
//! dropped writer, or by the janitor's `stale_staged` + `discard_staged` when the writer
//! vanished without dropping), and keys stay inside their tenant's area.

use std::time::{Duration, Instant};

use platform::storage::s3::MIN_PART_SIZE;

use super::*;

/// Deterministic, incompressible-looking test bytes.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// The incomplete multipart uploads of `key`, with their part counts. Parts are counted
/// from moto's raw `ListParts` answer: its root element is not S3's, which the SDK refuses.
async fn multipart_parts(s: &S3Storage, endpoint: &str, key: &str) -> Vec<usize> {
    let bucket = s.bucket();
    let uploads = s
        .client()
        .list_multipart_uploads()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await
        .unwrap();
    let mut parts = Vec::new();
    for upload in uploads.uploads() {
        let url = format!(
            "{endpoint}/{bucket}/{key}?uploadId={}",
            upload.upload_id().unwrap()
        );
        let listed = reqwest::get(url).await.unwrap().text().await.unwrap();
        parts.push(listed.matches("<Part>").count());
    }
    parts
}

/// Polls `condition` until it holds or `deadline` passes (no sleep as synchronisation).
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn s3_upload_larger_than_a_part_streams_through_multipart_and_reads_back_identical() {
    let (server, s) = s3_storage(MIN_PART_SIZE).await;
    let (endpoint, bucket) = (server.endpoint.clone(), s.bucket().to_owned());
    let a = t("acme");
    let bytes = pattern(2 * MIN_PART_SIZE + MIN_PART_SIZE / 2 + 123);
    let id = Uuid::now_v7();
    let key = s.staged_key(&a, id);
    let mut w = s.create_staged(&a, id).await.unwrap();
    let (streamed, tail) = bytes.split_at(2 * MIN_PART_SIZE + 1);
    for chunk in streamed.chunks(64 * 1024) {
        w.write(chunk).await.unwrap();
    }
    // Two full parts already left while the upload is still open (memory holds at most one
    // part), and nothing is visible yet under the staged key.
    assert_eq!(multipart_parts(&s, &endpoint, &key).await, [2]);
    assert!(matches!(
        s.open_staged(&a, id).await,
        Err(StorageError::NotFound(_))
    ));
    for chunk in tail.chunks(64 * 1024) {
        w.write(chunk).await.unwrap();
    }
    assert_eq!(w.finish().await.unwrap(), bytes.len() as u64);
    assert!(multipart_parts(&s, &endpoint, &key).await.is_empty());
    let head = s
        .client()
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert!(
        head.e_tag().unwrap().trim_matches('"').ends_with("-3"),
        "a 3-part multipart object: {:?}",
        head.e_tag()
    );

    let mut staged = Vec::new();
    s.open_staged(&a, id)
        .await
        .unwrap()
        .read_to_end(&mut staged)
        .await
        .unwrap();
    assert!(staged == bytes, "staged bytes differ");
    let blob = blob_of(&bytes);
    s.publish(&a, id, &blob).await.unwrap();
    assert_eq!(s.stats().blob_bytes_written, bytes.len() as u64);
    let (whole, size) = read(&s, &a, &blob, None).await;
    assert_eq!(size, bytes.len() as u64);
    assert!(whole == bytes, "published bytes differ");
    // A range across the boundary of parts 1 and 2.
    let (start, end) = (MIN_PART_SIZE as u64 - 10, MIN_PART_SIZE as u64 + 10);
    let (slice, size) = read(&s, &a, &blob, Some((start, end))).await;
    assert_eq!(size, bytes.len() as u64);
    assert_eq!(slice, bytes[start as usize..end as usize]);
}

/// Objects over S3's 5 GiB single-copy limit are published (and quarantined) with a
/// multipart copy; the limit is lowered here so that a small object takes that path.
#[tokio::test]
async fn s3_objects_over_the_single_copy_limit_are_copied_in_parts() {
    let (_server, s) = s3_storage_with(|settings| {
        settings
            .with_part_size(MIN_PART_SIZE)
            .with_copy_limit(MIN_PART_SIZE as u64)
    })
    .await;
    let a = t("acme");
    let bytes = pattern(2 * MIN_PART_SIZE + 4321);
    let blob = blob_of(&bytes);
    let id = stage(&s, &a, &[&bytes]).await;
    s.publish(&a, id, &blob).await.unwrap();
    s.publish(&a, id, &blob).await.unwrap();
    let head = s
        .client()
        .head_object()
        .bucket(s.bucket())
        .key(s.blob_key(&a, &blob))
        .send()
        .await
        .unwrap();
    assert!(
        head.e_tag().unwrap().trim_matches('"').ends_with("-3"),
        "copied in 3 parts: {:?}",
        head.e_tag()
    );
    let (whole, size) = read(&s, &a, &blob, None).await;
    assert_eq!(size, bytes.len() as u64);
    assert!(whole == bytes, "the copied blob differs");
    assert!(matches!(
        s.open_staged(&a, id).await,
        Err(StorageError::NotFound(_))
    ));

    let infected = stage(&s, &a, &[&bytes]).await;
    s.quarantine(&a, infected).await.unwrap();
    s.quarantine(&a, infected).await.unwrap();
    let quarantined = s
        .client()
        .head_object()
        .bucket(s.bucket())
        .key(format!("fe/test/quarantine/acme/{infected}"))
        .send()
        .await
        .unwrap();
    assert_eq!(quarantined.content_length(), Some(bytes.len() as i64));
    let uploads = s
        .client()
        .list_multipart_uploads()
        .bucket(s.bucket())
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "no copy left incomplete");
}

#[tokio::test]
async fn s3_abandoned_multipart_uploads_are_aborted_by_drop_or_by_the_janitor() {
    let (server, s) = s3_storage(MIN_PART_SIZE).await;
    let endpoint = server.endpoint.clone();
    let a = t("acme");
    let part = pattern(MIN_PART_SIZE + 1);

    // A writer dropped mid-upload (client gone) aborts its multipart upload itself.
    let dropped = Uuid::now_v7();
    let mut w = s.create_staged(&a, dropped).await.unwrap();
    w.write(&part).await.unwrap();
    let dropped_key = s.staged_key(&a, dropped);
    assert_eq!(multipart_parts(&s, &endpoint, &dropped_key).await, [1]);
    drop(w);
    eventually("the dropped writer's upload aborted", || async {
        multipart_parts(&s, &endpoint, &dropped_key)
            .await
            .is_empty()
    })
    .await;
    assert!(matches!(
        s.open_staged(&a, dropped).await,
        Err(StorageError::NotFound(_))
    ));

    // A writer that vanished without dropping (the process died): the janitor's pass finds
    // the idle upload and discarding the staged upload aborts it.
    let vanished = Uuid::now_v7();
    let mut w = s.create_staged(&a, vanished).await.unwrap();
    w.write(&part).await.unwrap();
    std::mem::forget(w);
    let vanished_key = s.staged_key(&a, vanished);
    assert_eq!(multipart_parts(&s, &endpoint, &vanished_key).await, [1]);
    assert!(
        s.stale_staged(Duration::from_secs(3600))
            .await
            .unwrap()
            .is_empty(),
        "an upload active within the grace period is left alone"
    );
    let stale = s.stale_staged(Duration::ZERO).await.unwrap();
    assert_eq!(stale, [(a.clone(), vanished)]);
    s.discard_staged(&a, vanished).await.unwrap();
    assert!(multipart_parts(&s, &endpoint, &vanished_key)
        .await
        .is_empty());
    assert!(s.stale_staged(Duration::ZERO).await.unwrap().is_empty());
    assert!(s.list_blobs(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn s3_keys_stay_inside_their_tenant_area_and_strays_are_never_listed() {
    let (_server, s) = s3_storage(MIN_PART_SIZE).await;
    let bucket = s.bucket().to_owned();
    // Hostile names never become a tenant or a blob name: the types refuse them.
    for hostile in [
        "",
        "..",
        "../beta",
        "acme/../beta",
        "ACME",
        "acme/x",
        "-acme",
    ] {
        assert!(TenantId::parse(hostile).is_err(), "tenant {hostile:?}");
    }
    for hostile in ["..", "../../etc/passwd", &format!("{}/x", "a".repeat(62))] {
        assert!(BlobId::parse(hostile).is_err(), "blob {hostile:?}");
    }
    // Every key of a tenant lies below its own area, with no dot segment anywhere.
    let (a, a2) = (t("acme"), t("acme-2"));
    let blob = blob_of(b"mine");
    let id = Uuid::now_v7();
    assert_eq!(
        s.blob_key(&a, &blob),
        format!("fe/test/blobs/acme/{}", blob.as_str())
    );
    assert_eq!(s.staged_key(&a, id), format!("fe/test/staging/acme/{id}"));
    for key in [s.blob_key(&a, &blob), s.staged_key(&a, id)] {
        assert!(key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != ".." && seg != "."));
    }

    let mine = stage(&s, &a, &[b"mine"]).await;
    s.publish(&a, mine, &blob).await.unwrap();
    let theirs = stage(&s, &a2, &[b"theirs"]).await;
    s.publish(&a2, theirs, &blob_of(b"theirs")).await.unwrap();
    // Objects put into the blob area by hand, and another tenant whose name starts alike:
    // none of them is a blob of acme.
    for stray in [
        "fe/test/blobs/acme/notes.txt".to_owned(),
        format!("fe/test/blobs/acme/{}", blob.as_str().to_uppercase()),
        format!("fe/test/blobs/acme/{}/x", blob.as_str()),
        format!("fe/test/blobs/ACME/{}", blob.as_str()),
        format!("fe/test/blobs/{}", blob.as_str()),
        format!("fe/blobs/acme/{}", blob_of(b"outside the prefix").as_str()),
    ] {
        s.client()
            .put_object()
            .bucket(&bucket)
            .key(stray)
            .body(b"planted".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let listed: Vec<(String, BlobId)> = s
        .list_blobs(None)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.tenant.as_str().to_owned(), i.blob))
        .collect();
    assert_eq!(
        listed,
        [
            ("acme".to_owned(), blob.clone()),
            ("acme-2".to_owned(), blob_of(b"theirs"))
        ]
    );
    let acme: Vec<BlobId> = s
        .list_blobs(Some(&a))
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.blob)
        .collect();
    assert_eq!(s.blob_size(&a2, &blob).await.unwrap(), None);
    assert_eq!(acme, [blob]);
}

/// Whole-object reads verify the checksum S3 stores with the object: bytes that do not match
/// it (here: an object planted with a wrong CRC32) fail the read instead of being served.
#[tokio::test]
async fn s3_whole_reads_fail_on_a_checksum_mismatch() {
    let (_server, s) = s3_storage(MIN_PART_SIZE).await;
    let a = t("acme");
    let blob = blob_of(b"genuine");
    s.client()
        .put_object()
        .bucket(s.bucket())
        .key(s.blob_key(&a, &blob))
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
        .checksum_crc32("AAAAAA==")
        .body(b"tampered".to_vec().into())
        .send()
        .await
        .unwrap();
    let (mut reader, _) = s.open_blob(&a, &blob, None).await.unwrap();
    let mut out = Vec::new();
    assert!(reader.read_to_end(&mut out).await.is_err());
    // A range is served as stored (S3 has no checksum of a range to check it against).
    assert_eq!(read(&s, &a, &blob, Some((0, 3))).await.0, b"tam");
}

/// The start-up check tells a missing bucket (configuration) from an unreachable server
/// (transient), and no error or debug output ever carries the credentials.
#[tokio::test]
async fn s3_start_up_check_names_the_problem_and_never_the_credentials() {
    let server = testkit::s3::S3Server::start().await.unwrap();
    let storage_on = |bucket: &str, endpoint: String| {
        let settings = S3Settings::parse(&format!("s3://{bucket}"), |name| {
            match name {
                "AWS_ACCESS_KEY_ID" => Some("AKIALEAKCHECKKEYID"),
                "AWS_SECRET_ACCESS_KEY" => Some("secret-that-must-not-leak"),
                "AWS_SESSION_TOKEN" => Some("token-that-must-not-leak"),
                "FE_S3_ENDPOINT" => Some(endpoint.as_str()),
                _ => None,
            }
            .map(str::to_owned)
        })
        .unwrap();
        S3Storage::new(&settings)
    };
    let missing = storage_on("no-such-bucket", server.endpoint.clone());
    let missing_err = missing.check().await.unwrap_err();
    assert!(
        matches!(&missing_err, StorageError::Config(m) if m.contains("does not exist")),
        "{missing_err}"
    );
    let port = testkit::free_port().unwrap();
    let unreachable = storage_on("some-bucket", format!("http://127.0.0.1:{port}"));
    let unreachable_err = unreachable.check().await.unwrap_err();
    assert!(
        matches!(&unreachable_err, StorageError::Io(m) if m.contains("unreachable")),
        "{unreachable_err}"
    );
    let blob_err = unreachable
        .blob_size(&t("acme"), &blob_of(b"x"))
        .await
        .unwrap_err();
    for shown in [
        missing_err.to_string(),
        format!("{missing_err:?}"),
        unreachable_err.to_string(),
        format!("{blob_err:?}"),
        format!("{unreachable:?}"),
    ] {
        for secret in [
            "AKIALEAKCHECKKEYID",
            "secret-that-must-not-leak",
            "token-that-must-not-leak",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}
