//! Storage by content and version, end to end: moves and copies of whole trees change only
//! the catalogue (no blob written or read), and signed links serve exactly the version they
//! were made for (or 404), never bytes that later occupy the path.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestApp};

/// Submits all `bodies` at once and requires every task to succeed.
async fn run_all(app: &TestApp, t: &str, bodies: Vec<Value>) {
    let mut ids = Vec::new();
    for body in bodies {
        ids.push(app.submit(t, body).await);
    }
    for id in ids {
        let task = app.wait_task(t, &id).await;
        assert_eq!(task["status"], "succeeded", "{task}");
    }
}

async fn files_below(app: &TestApp, tenant: &str, dir: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM entries WHERE tenant = $1 AND kind = 'file' AND status = 'available'
           AND path >= $2 AND path < $3",
    )
    .bind(tenant)
    .bind(format!("{dir}/"))
    .bind(format!("{dir}0"))
    .fetch_one(&app.platform.pool)
    .await
    .unwrap()
}

async fn download(app: &TestApp, t: &str, path: &str) -> (StatusCode, Vec<u8>) {
    let resp = app
        .request(Method::GET, &format!("/v1/files{path}"), Some(t))
        .await
        .send()
        .await
        .unwrap();
    (resp.status(), resp.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn moving_and_copying_a_tree_of_10000_files_writes_and_reads_no_blob() {
    tree_moves_and_copies_touch_no_blob(Backend::Local).await;
}

#[tokio::test]
async fn moving_and_copying_a_tree_of_10000_files_writes_and_reads_no_blob_on_s3() {
    tree_moves_and_copies_touch_no_blob(Backend::S3).await;
}

async fn tree_moves_and_copies_touch_no_blob(backend: Backend) {
    let app = TestApp::spawn_with_scanner_on(backend, &[]).await;
    let t = app.admin("acme");
    // 10 distinct files, then three rounds of "10 copies of the level below": 10,000 files
    // built from 10 blobs (the copies are the first proof: they add no blob).
    let mut uploads = Vec::new();
    for i in 0..10 {
        let resp = app
            .upload(
                &t,
                &format!("/lib/l1/f{i}.txt"),
                format!("file {i}\n").into_bytes(),
                &[],
            )
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let v: Value = resp.json().await.unwrap();
        uploads.push(v["task_id"].as_str().unwrap().to_owned());
    }
    for id in &uploads {
        assert_eq!(app.wait_task(&t, id).await["status"], "succeeded");
    }
    for (level, from) in [
        ("/lib/l2", "/lib/l1"),
        ("/lib/l3", "/lib/l2"),
        ("/big", "/lib/l3"),
    ] {
        app.run(&t, json!({"op": "mkdir", "path": level, "parents": true}))
            .await;
        let copies = (0..10)
            .map(|i| json!({"op": "copy", "from": from, "to": format!("{level}/c{i}")}))
            .collect();
        run_all(&app, &t, copies).await;
    }
    assert_eq!(files_below(&app, "acme", "/big").await, 10_000);
    let blobs = app.blob_names("acme").await;
    assert_eq!(blobs.len(), 10, "copies wrote blobs: {blobs:?}");

    let before = app.platform.storage.stats();
    let started = Instant::now();
    let mv = app
        .run(&t, json!({"op": "move", "from": "/big", "to": "/moved"}))
        .await;
    let moved_in = started.elapsed();
    let cp = app
        .run(&t, json!({"op": "copy", "from": "/moved", "to": "/copied"}))
        .await;
    let both_in = started.elapsed();
    assert_eq!(mv["status"], "succeeded", "{mv}");
    assert_eq!(cp["status"], "succeeded", "{cp}");
    println!("move of 10,000 files: {moved_in:?}; move + copy: {both_in:?}");

    assert_eq!(
        app.platform.storage.stats(),
        before,
        "a blob was written or read"
    );
    assert_eq!(app.blob_names("acme").await, blobs);
    assert_eq!(files_below(&app, "acme", "/big").await, 0);
    assert_eq!(files_below(&app, "acme", "/moved").await, 10_000);
    assert_eq!(files_below(&app, "acme", "/copied").await, 10_000);
    // Every entry inside the moved tree has exactly one event of its own, across the many
    // pages and commits the worker reports them in.
    let inside: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM entries WHERE tenant = 'acme' AND path >= '/moved/' AND path < '/moved0'",
    )
    .fetch_one(&app.platform.pool)
    .await
    .unwrap();
    let (reported, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT path) FROM audit_events
          WHERE tenant = 'acme' AND type = 'entry.moved' AND task_id = $1::uuid AND path <> '/big'",
    )
    .bind(mv["task_id"].as_str().unwrap())
    .fetch_one(&app.platform.pool)
    .await
    .unwrap();
    assert_eq!((reported, distinct), (inside, inside));
    assert!(
        both_in < Duration::from_secs(60),
        "moving and copying 10,000 files took {both_in:?}"
    );

    // The copy serves the right bytes from the shared blob (and that read is counted).
    let (status, body) = download(&app, &t, "/copied/c3/c4/c5/f7.txt").await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, b"file 7\n".as_slice())
    );
    assert_eq!(
        app.platform.storage.stats().blob_reads,
        before.blob_reads + 1
    );
}

async fn link_to(app: &TestApp, t: &str, path: &str) -> String {
    let resp = app
        .request(Method::POST, "/v1/links", Some(t))
        .await
        .json(&json!({"path": path, "expires_in_s": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED, "link to {path}");
    let v: Value = resp.json().await.unwrap();
    v["url"].as_str().unwrap().to_owned()
}

async fn follow(app: &TestApp, url: &str, range: Option<&str>) -> (StatusCode, Vec<u8>) {
    let mut rb = app.http.get(app.url(url));
    if let Some(r) = range {
        rb = rb.header("Range", r);
    }
    let resp = rb.send().await.unwrap();
    (resp.status(), resp.bytes().await.unwrap().to_vec())
}

async fn upload_ok(app: &TestApp, t: &str, path: &str, bytes: &[u8]) {
    let task = app.upload_and_wait(t, path, bytes.to_vec()).await;
    assert_eq!(task["status"], "succeeded", "{task}");
}

const PUBLIC: &[u8] = b"public: the bytes that were shared\n";
const SECRET: &[u8] = b"secret: must never leave through an old link\n";

#[tokio::test]
async fn a_link_keeps_serving_its_version_after_an_overwrite_by_copy() {
    link_serves_its_version_after_a_copy_over_it(Backend::Local).await;
}

#[tokio::test]
async fn a_link_keeps_serving_its_version_after_an_overwrite_by_copy_on_s3() {
    link_serves_its_version_after_a_copy_over_it(Backend::S3).await;
}

async fn link_serves_its_version_after_a_copy_over_it(backend: Backend) {
    let app = TestApp::spawn_with_scanner_on(backend, &[]).await;
    let t = app.admin("acme");
    upload_ok(&app, &t, "/pub.txt", PUBLIC).await;
    upload_ok(&app, &t, "/secret.txt", SECRET).await;
    let url = link_to(&app, &t, "/pub.txt").await;
    let task = app
        .run(
            &t,
            json!({"op": "copy", "from": "/secret.txt", "to": "/pub.txt", "overwrite": true}),
        )
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(download(&app, &t, "/pub.txt").await.1, SECRET);
    assert_eq!(
        follow(&app, &url, None).await,
        (StatusCode::OK, PUBLIC.to_vec())
    );
    assert_eq!(
        follow(&app, &url, Some("bytes=0-5")).await,
        (StatusCode::PARTIAL_CONTENT, PUBLIC[..6].to_vec())
    );

    // When the linked bytes are gone (an operator removed the blob), the link answers 404,
    // never the bytes now at the path.
    let public_blob = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(PUBLIC));
    app.remove_blob("acme", &public_blob).await;
    let (status, body) = follow(&app, &url, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!body.windows(6).any(|w| w == b"secret"));
}

#[tokio::test]
async fn a_link_keeps_serving_its_version_after_an_overwrite_by_move() {
    let app = TestApp::spawn_with_scanner(&[]).await;
    let t = app.admin("acme");
    upload_ok(&app, &t, "/pub.txt", PUBLIC).await;
    upload_ok(&app, &t, "/secret.txt", SECRET).await;
    let url = link_to(&app, &t, "/pub.txt").await;
    let task = app
        .run(
            &t,
            json!({"op": "move", "from": "/secret.txt", "to": "/pub.txt", "overwrite": true}),
        )
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(download(&app, &t, "/pub.txt").await.1, SECRET);
    assert_eq!(
        follow(&app, &url, None).await,
        (StatusCode::OK, PUBLIC.to_vec())
    );
}

#[tokio::test]
async fn a_link_to_a_copied_file_keeps_serving_it_after_an_overwrite_by_upload() {
    let app = TestApp::spawn_with_scanner(&[]).await;
    let t = app.admin("acme");
    upload_ok(&app, &t, "/orig.txt", PUBLIC).await;
    let copy = app
        .run(
            &t,
            json!({"op": "copy", "from": "/orig.txt", "to": "/pub.txt"}),
        )
        .await;
    assert_eq!(copy["status"], "succeeded", "{copy}");
    let url = link_to(&app, &t, "/pub.txt").await;
    upload_ok(&app, &t, "/pub.txt", SECRET).await;
    assert_eq!(download(&app, &t, "/pub.txt").await.1, SECRET);
    assert_eq!(
        follow(&app, &url, None).await,
        (StatusCode::OK, PUBLIC.to_vec())
    );
    // Overwriting again changes nothing for the link.
    upload_ok(&app, &t, "/pub.txt", b"third version\n").await;
    assert_eq!(
        follow(&app, &url, None).await,
        (StatusCode::OK, PUBLIC.to_vec())
    );
}

#[tokio::test]
async fn a_link_to_a_deleted_file_answers_404_even_after_the_path_is_uploaded_again() {
    let app = TestApp::spawn_with_scanner(&[]).await;
    let t = app.admin("acme");
    upload_ok(&app, &t, "/pub.txt", PUBLIC).await;
    let url = link_to(&app, &t, "/pub.txt").await;
    let del = app
        .run(&t, json!({"op": "delete", "path": "/pub.txt"}))
        .await;
    assert_eq!(del["status"], "succeeded", "{del}");
    assert_eq!(follow(&app, &url, None).await.0, StatusCode::NOT_FOUND);
    upload_ok(&app, &t, "/pub.txt", SECRET).await;
    let (status, body) = follow(&app, &url, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        !body.windows(6).any(|w| w == b"secret"),
        "the new bytes leaked"
    );
    // A fresh link serves the new file.
    let fresh = link_to(&app, &t, "/pub.txt").await;
    assert_eq!(
        follow(&app, &fresh, None).await,
        (StatusCode::OK, SECRET.to_vec())
    );
}

async fn usage(app: &TestApp, t: &str) -> Value {
    let (status, v) = app.get_json(t, "/v1/usage").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

async fn problem_code(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    (status, v["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn quotas_count_logical_size_and_refuse_what_would_pass_them() {
    quotas_hold(Backend::Local).await;
}

#[tokio::test]
async fn quotas_count_logical_size_and_refuse_what_would_pass_them_on_s3() {
    quotas_hold(Backend::S3).await;
}

/// An upload of `bytes` to `to` and a copy of `from` to `to` are both refused with 507
/// `quota_exceeded` at request time.
async fn upload_and_copy_refused(app: &TestApp, t: &str, bytes: Vec<u8>, from: &str, to: &str) {
    let refused = app.upload(t, to, bytes, &[]).await;
    assert_eq!(
        problem_code(refused).await,
        (StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded".into()),
        "upload to {to}"
    );
    let copy_refused = app
        .post_command(t, &json!({"op": "copy", "from": from, "to": to}), None)
        .await;
    assert_eq!(
        problem_code(copy_refused).await,
        (StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded".into()),
        "copy {from} -> {to}"
    );
}

async fn quotas_hold(backend: Backend) {
    let quota = [
        ("FE_TENANT_QUOTA_BYTES", "100"),
        ("FE_TENANT_QUOTA_FILES", "3"),
    ];
    let app = TestApp::spawn_with_scanner_on(backend, &quota).await;
    let t = app.admin("acme");
    let user = app.token("bob", "acme", &[]);
    let empty = usage(&app, &user).await;
    assert_eq!(
        empty,
        json!({"bytes": {"used": 0, "limit": 100}, "files": {"used": 0, "limit": 3}})
    );

    upload_ok(&app, &t, "/a.txt", &[b'a'; 40]).await;
    // A copy counts what it holds although it shares the blob.
    let copy = app
        .run(&t, json!({"op": "copy", "from": "/a.txt", "to": "/b.txt"}))
        .await;
    assert_eq!(copy["status"], "succeeded", "{copy}");
    assert_eq!(app.blob_names("acme").await.len(), 1);
    assert_eq!(usage(&app, &t).await["bytes"]["used"], 80);
    assert_eq!(usage(&app, &t).await["files"]["used"], 2);

    // Known size over the quota: 507 before any byte is accepted, and no task.
    let tasks_before: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE tenant = 'acme'")
        .fetch_one(&app.platform.pool)
        .await
        .unwrap();
    upload_and_copy_refused(&app, &t, vec![b'c'; 21], "/a.txt", "/c.txt").await;
    let tasks_after: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE tenant = 'acme'")
        .fetch_one(&app.platform.pool)
        .await
        .unwrap();
    assert_eq!(tasks_before, tasks_after, "a refused request left a task");
    assert_eq!(app.staged_left("acme").await, 0);

    // Overwriting counts only the growth: 40 -> 55 bytes fits (80 - 40 + 55 = 95).
    upload_ok(&app, &t, "/a.txt", &[b'A'; 55]).await;
    assert_eq!(usage(&app, &t).await["bytes"]["used"], 95);

    // Unknown size (chunked): accepted, then the task fails with quota_exceeded and the file
    // never appears.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![b'z'; 10]), Ok(vec![b'z'; 10])];
    let resp = app
        .request(Method::PUT, "/v1/files/chunked.txt", Some(&t))
        .await
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let v: Value = resp.json().await.unwrap();
    let task = app.wait_task(&t, v["task_id"].as_str().unwrap()).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["error"]["code"], "quota_exceeded");
    assert_eq!(
        app.get_json(&t, "/v1/stat/chunked.txt").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(usage(&app, &t).await["bytes"]["used"], 95);

    // Shrinking is always allowed, and frees room.
    let del = app.run(&t, json!({"op": "delete", "path": "/b.txt"})).await;
    assert_eq!(del["status"], "succeeded");
    assert_eq!(
        usage(&app, &t).await,
        json!({"bytes": {"used": 55, "limit": 100}, "files": {"used": 1, "limit": 3}})
    );

    // The file count is a limit of its own: with room for bytes, a fourth file is refused.
    upload_ok(&app, &t, "/f1.txt", b"1").await;
    upload_ok(&app, &t, "/f2.txt", b"2").await;
    assert_eq!(usage(&app, &t).await["files"]["used"], 3);
    upload_and_copy_refused(&app, &t, b"3".to_vec(), "/f1.txt", "/f3.txt").await;
    // Replacing a file adds none: an overwrite at the limit is accepted.
    upload_ok(&app, &t, "/f2.txt", b"22").await;
    assert_eq!(
        usage(&app, &t).await,
        json!({"bytes": {"used": 58, "limit": 100}, "files": {"used": 3, "limit": 3}})
    );

    // Moving files into a new directory changes no usage; the kept usage row (triggers on
    // the catalogue) stays the sum over the tenant's available files after all of the above.
    let mkdir = app.run(&t, json!({"op": "mkdir", "path": "/d"})).await;
    assert_eq!(mkdir["status"], "succeeded", "{mkdir}");
    let mv = app
        .run(
            &t,
            json!({"op": "move", "from": "/f1.txt", "to": "/d/f1.txt"}),
        )
        .await;
    assert_eq!(mv["status"], "succeeded", "{mv}");
    let pool = &app.platform.pool;
    let acme = events::TenantId::parse("acme").unwrap();
    let kept = platform::catalogue::standing(pool, &acme, events::quota::Limits::default())
        .await
        .unwrap()
        .used;
    let summed = platform::catalogue::usage_of(pool, &acme, &events::FilePath::root())
        .await
        .unwrap();
    assert_eq!(kept, summed);
    assert_eq!((kept.bytes, kept.files), (58, 3));
}
