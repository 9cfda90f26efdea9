//! Garbage collection and operator quotas, end to end: the collector removes exactly the blobs
//! no shown version, retention, live link or open upload needs, records what it removed in
//! the log, and never leaves a catalogued version without its bytes; `quota set` is an
//! audited event that takes effect for the tenant.

mod support;

use std::time::Duration;

use events::quota::Limits;
use events::TenantId;
use platform::db::ProjectionWatermark;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{eventually, Backend, TestApp};

async fn deps(app: &TestApp) -> worker::WorkerDeps {
    worker::WorkerDeps {
        log: app.platform.log.clone(),
        pool: app.platform.pool.clone(),
        watermark: ProjectionWatermark::start(app.platform.pool.clone())
            .await
            .unwrap(),
        storage: app.platform.storage.clone(),
        quota: Limits {
            bytes: u64::MAX,
            files: u64::MAX,
        },
        version_retention: Duration::ZERO,
        concurrency: 1,
        tenant_concurrency: 1,
        ack_wait: Duration::from_secs(10),
        drain: Duration::from_secs(5),
        max_deliver: 10,
    }
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn upload_ok(app: &TestApp, t: &str, path: &str, bytes: &[u8]) {
    let task = app.upload_and_wait(t, path, bytes.to_vec()).await;
    assert_eq!(task["status"], "succeeded", "{task}");
}

/// Every version the catalogue shows has its blob in the backend, and the blob hashes to
/// the version's SHA-256.
pub async fn assert_catalogued_blobs_intact(app: &TestApp, tenant: &str) {
    let shown: Vec<String> = sqlx::query_scalar(
        "SELECT sha256 FROM entries WHERE tenant = $1 AND kind = 'file' AND status = 'available'",
    )
    .bind(tenant)
    .fetch_all(&app.platform.pool)
    .await
    .unwrap();
    let tenant = TenantId::parse(tenant).unwrap();
    for expected in shown {
        let blob = platform::storage::BlobId::parse(&expected).unwrap();
        let (mut reader, _) = app
            .platform
            .storage
            .open_blob(&tenant, &blob, None)
            .await
            .unwrap_or_else(|e| panic!("blob {expected}: {e}"));
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut bytes)
            .await
            .unwrap();
        assert_eq!(sha(&bytes), expected, "blob {expected} does not hash right");
    }
}

#[tokio::test]
async fn gc_removes_only_what_no_version_retention_link_or_upload_needs() {
    gc_removes_only_unneeded_blobs(Backend::Local).await;
}

#[tokio::test]
async fn gc_removes_only_what_no_version_retention_link_or_upload_needs_on_s3() {
    gc_removes_only_unneeded_blobs(Backend::S3).await;
}

async fn gc_removes_only_unneeded_blobs(backend: Backend) {
    let app = TestApp::spawn_with_scanner_on(backend, &[]).await;
    let t = app.admin("acme");
    const KEEP: &[u8] = b"kept: shown at two paths\n";
    const OLD: &[u8] = b"old: replaced by an overwrite\n";
    const NEW: &[u8] = b"new: the current version\n";
    const LINKED: &[u8] = b"linked: replaced, but a live link points here\n";
    const LINKED_NEW: &[u8] = b"linked-new: current\n";
    const DELETED: &[u8] = b"deleted: its file is gone\n";
    upload_ok(&app, &t, "/keep.txt", KEEP).await;
    let copy = app
        .run(
            &t,
            json!({"op": "copy", "from": "/keep.txt", "to": "/keep-copy.txt"}),
        )
        .await;
    assert_eq!(copy["status"], "succeeded");
    upload_ok(&app, &t, "/over.txt", OLD).await;
    upload_ok(&app, &t, "/over.txt", NEW).await;
    upload_ok(&app, &t, "/linked.txt", LINKED).await;
    let link: Value = app
        .request(reqwest::Method::POST, "/v1/links", Some(&t))
        .await
        .json(&json!({"path": "/linked.txt", "expires_in_s": 600}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = link["url"].as_str().unwrap().to_owned();
    upload_ok(&app, &t, "/linked.txt", LINKED_NEW).await;
    upload_ok(&app, &t, "/gone.txt", DELETED).await;
    let del = app
        .run(&t, json!({"op": "delete", "path": "/gone.txt"}))
        .await;
    assert_eq!(del["status"], "succeeded");
    // Another tenant's identical bytes are its own blob and stay whatever acme does.
    upload_ok(&app, &app.admin("beta"), "/old.txt", OLD).await;

    let deps = deps(&app).await;
    // Within the retention, nothing is collected; young blobs are in doubt and kept too.
    let within = worker::gc::collect(&deps, Duration::from_secs(86_400), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(within, worker::gc::Collected::default());
    let young = worker::gc::collect(&deps, Duration::ZERO, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(young, worker::gc::Collected::default());
    assert_eq!(app.blob_names("acme").await.len(), 6);

    let done = worker::gc::collect(&deps, Duration::ZERO, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(done.blobs, 2, "{done:?}");
    assert_eq!(done.bytes, (OLD.len() + DELETED.len()) as u64);
    let mut expected = vec![sha(KEEP), sha(NEW), sha(LINKED), sha(LINKED_NEW)];
    expected.sort();
    assert_eq!(app.blob_names("acme").await, expected);
    assert_eq!(app.blob_names("beta").await, vec![sha(OLD)]);
    assert_catalogued_blobs_intact(&app, "acme").await;
    let linked = app.http.get(app.url(&url)).send().await.unwrap();
    assert_eq!(linked.status(), StatusCode::OK);
    assert_eq!(linked.bytes().await.unwrap().as_ref(), LINKED);

    // Recorded in the log (and so in the audit trail), by the collector.
    eventually("the collection in the audit index", Duration::from_secs(10), || async {
        let principal: Option<String> = sqlx::query_scalar(
            "SELECT principal FROM audit_events WHERE tenant = 'acme' AND type = 'storage.collected'",
        )
        .fetch_optional(&app.platform.pool)
        .await
        .unwrap_or(None);
        principal.as_deref() == Some("system:gc")
    })
    .await;
    // A second run finds nothing more.
    let again = worker::gc::collect(&deps, Duration::ZERO, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(again, worker::gc::Collected::default());
}

#[tokio::test]
async fn an_operator_quota_is_an_audited_event_in_force_for_its_tenant_only() {
    let app = TestApp::spawn_with_scanner(&[]).await;
    let t = app.admin("acme");
    let acme = TenantId::parse("acme").unwrap();
    let seq = file_engine::storage_admin::set_quota(
        &app.platform,
        &acme,
        Limits {
            bytes: 10,
            files: 5,
        },
    )
    .await
    .unwrap();
    assert!(seq.is_some());
    let unchanged = file_engine::storage_admin::set_quota(
        &app.platform,
        &acme,
        Limits {
            bytes: 10,
            files: 5,
        },
    )
    .await
    .unwrap();
    assert_eq!(unchanged, None, "the same quota twice is recorded once");
    eventually("the quota in force", Duration::from_secs(10), || async {
        let (_, usage) = app.get_json(&t, "/v1/usage").await;
        usage["bytes"]["limit"] == 10
    })
    .await;
    let resp = app.upload(&t, "/big.txt", vec![b'x'; 11], &[]).await;
    assert_eq!(resp.status(), StatusCode::INSUFFICIENT_STORAGE);
    upload_ok(&app, &t, "/small.txt", b"0123456789").await;
    // Other tenants keep the default.
    let (_, beta) = app.get_json(&app.admin("beta"), "/v1/usage").await;
    assert_eq!(
        beta["bytes"]["limit"],
        app.platform.config.tenant_quota_bytes
    );
    let principal: String = sqlx::query_scalar(
        "SELECT principal FROM audit_events WHERE tenant = 'acme' AND type = 'quota.set'",
    )
    .fetch_one(&app.platform.pool)
    .await
    .unwrap();
    assert_eq!(principal, file_engine::storage_admin::OPERATOR);
}

async fn succeeded_uploads(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM tasks WHERE op = 'upload' AND status = 'succeeded'")
        .fetch_one(&app.platform.pool)
        .await
        .unwrap()
}

fn spawn_worker(app: &TestApp) -> std::process::Child {
    let env = app.env(&[("FE_WORKER_ACK_WAIT_S", "2"), ("FE_LOG_LEVEL", "error")]);
    std::process::Command::new(env!("CARGO_BIN_EXE_file-engine"))
        .arg("worker")
        .envs(env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn worker")
}

/// kill -9 of the worker while it promotes a stream of uploads (publish = rename + fsyncs, then
/// the outcome is committed): after restarts every upload is available, every catalogued
/// version's blob exists and hashes right, and staging is empty.
#[tokio::test]
async fn workers_killed_while_promoting_leave_every_catalogued_version_with_its_blob() {
    let clamd = testkit::clamd::Clamd::start().await.expect("clamd");
    let app = TestApp::spawn_with(
        &[
            file_engine::Role::Api,
            file_engine::Role::Projector,
            file_engine::Role::Scanner,
        ],
        &[("FE_CLAMD_ADDR", clamd.addr.as_str())],
    )
    .await;
    let t = app.admin("acme");
    const N: i64 = 40;
    let mut ids = Vec::new();
    for i in 0..N {
        let resp = app
            .upload(
                &t,
                &format!("/crash/f{i}.txt"),
                format!("content {i}\n").repeat(200).into_bytes(),
                &[],
            )
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let v: Value = resp.json().await.unwrap();
        ids.push(v["task_id"].as_str().unwrap().to_owned());
    }
    for round in 1..=3 {
        let mut worker = spawn_worker(&app);
        let target = (N * round / 4).max(1);
        eventually("some promotions", Duration::from_secs(120), || async {
            succeeded_uploads(&app).await >= target
        })
        .await;
        worker.kill().ok(); // SIGKILL
        worker.wait().ok();
    }
    let mut worker = spawn_worker(&app);
    for id in &ids {
        let task = app.wait_task(&t, id).await;
        assert_eq!(task["status"], "succeeded", "{task}");
    }
    worker.kill().ok();
    worker.wait().ok();
    assert_catalogued_blobs_intact(&app, "acme").await;
    assert_eq!(app.blob_files("acme").len(), N as usize);
    assert_eq!(app.staged_count("acme"), 0);
    drop(clamd);
}

/// kill -9 of a `file-engine gc` process in the middle of its sweep over 2,000 unneeded blobs
/// (between recording a collection and deleting its blobs, or between deletions): a second
/// run finishes the job, every catalogued version keeps an intact blob, and what was removed
/// is recorded in the log.
#[tokio::test]
async fn a_gc_killed_mid_sweep_is_finished_by_the_next_run_without_touching_needed_blobs() {
    let app = TestApp::spawn_with_scanner(&[]).await;
    let t = app.admin("acme");
    for i in 0..5 {
        upload_ok(
            &app,
            &t,
            &format!("/kept/f{i}.txt"),
            format!("kept {i}\n").as_bytes(),
        )
        .await;
    }
    // Orphans: blobs no version names (as a crash between publication and a failed task
    // would leave), written straight into the blob area.
    const ORPHANS: usize = 2000;
    let area = app.storage.path().join("blobs/acme");
    for i in 0..ORPHANS {
        let bytes = format!("orphan {i}");
        let name = sha(bytes.as_bytes());
        let shard = area.join(&name[..2]);
        std::fs::create_dir_all(&shard).unwrap();
        std::fs::write(shard.join(&name), bytes).unwrap();
    }
    let total = ORPHANS + 5;
    assert_eq!(app.blob_files("acme").len(), total);

    let gc = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_file-engine"))
            .args(["gc", "--grace-s", "0", "--retention-days", "0"])
            .envs(app.env(&[("FE_LOG_LEVEL", "error")]))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn gc")
    };
    let mut first = gc();
    // Kill it as soon as the sweep has begun and before it ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let left = app.blob_files("acme").len();
        if left < total {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep did not start"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "gc exited before sweeping"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.kill().ok(); // SIGKILL
    first.wait().ok();
    let after_kill = app.blob_files("acme").len();
    println!(
        "killed with {} of {ORPHANS} orphans swept",
        total - after_kill
    );
    assert!(after_kill >= 5);
    assert_catalogued_blobs_intact(&app, "acme").await;

    let status = gc().wait().unwrap();
    assert!(status.success());
    assert_eq!(
        app.blob_files("acme").len(),
        5,
        "orphans left after the second run"
    );
    assert_catalogued_blobs_intact(&app, "acme").await;
    // Every removed blob was recorded before it went (a record may list a blob twice when the
    // first run was killed between its record and its deletion).
    eventually(
        "the collections in the audit index",
        Duration::from_secs(30),
        || async {
            let events: Vec<String> = sqlx::query_scalar(
            "SELECT event FROM audit_events WHERE tenant = 'acme' AND type = 'storage.collected'",
        )
        .fetch_all(&app.platform.pool)
        .await
        .unwrap_or_default();
            let mut recorded = std::collections::HashSet::new();
            for e in events {
                let v: Value = serde_json::from_str(&e).unwrap();
                for b in v["data"]["blobs"].as_array().unwrap() {
                    recorded.insert(b["sha256"].as_str().unwrap().to_owned());
                }
            }
            recorded.len() == ORPHANS
        },
    )
    .await;
}
