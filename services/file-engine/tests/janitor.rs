//! The staging janitor: abandoned staged bytes are removed, bytes of an open upload are kept,
//! and an upload that waited too long for its scan fails with `timeout` instead of staying
//! `scanning` for ever.

mod support;

use std::time::Duration;

use file_engine::Role;
use platform::db::ProjectionWatermark;
use reqwest::StatusCode;
use serde_json::Value;
use support::{Backend, TestApp};

async fn deps(app: &TestApp) -> worker::WorkerDeps {
    worker::WorkerDeps {
        log: app.platform.log.clone(),
        pool: app.platform.pool.clone(),
        watermark: ProjectionWatermark::start(app.platform.pool.clone())
            .await
            .unwrap(),
        storage: app.platform.storage.clone(),
        quota: events::quota::Limits {
            bytes: u64::MAX,
            files: u64::MAX,
        },
        version_retention: Duration::ZERO,
        concurrency: 1,
        tenant_concurrency: 1,
        ack_wait: Duration::from_secs(10),
        drain: Duration::from_secs(1),
        max_deliver: 10,
    }
}

#[tokio::test]
async fn abandoned_staging_is_removed_and_open_uploads_are_kept() {
    abandoned_staging_is_removed(Backend::Local).await;
}

/// The same on `FE_STORAGE=s3://…` (moto), where the upload that vanished mid-stream is an
/// incomplete multipart upload which the sweep aborts.
#[tokio::test]
async fn abandoned_staging_is_removed_and_open_uploads_are_kept_on_s3() {
    abandoned_staging_is_removed(Backend::S3).await;
}

async fn abandoned_staging_is_removed(backend: Backend) {
    // No scanner: the upload stays pending with its bytes staged.
    let app = TestApp::spawn_with_on(backend, &[Role::Api, Role::Projector], &[]).await;
    let t = app.admin("acme");
    let resp = app
        .upload(&t, "/waiting.pdf", b"%PDF-1.7 waiting".to_vec(), &[])
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let task_id = resp.json::<Value>().await.unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.get_json(&t, &format!("/v1/tasks/{task_id}?wait=1"))
        .await;
    // What an API crash in the middle of a body leaves behind: staged bytes and no task.
    let tenant = events::TenantId::parse("acme").unwrap();
    let mut writer = app
        .platform
        .storage
        .create_staged(&tenant, uuid::Uuid::now_v7())
        .await
        .unwrap();
    writer.write(b"half an upload").await.unwrap();
    writer.finish().await.unwrap();
    // And what a crash of the API process in the middle of a large body leaves: more than one
    // S3 part (8 MiB) already sent, no `finish`, and no drop either (an S3 backend would abort
    // its multipart upload on drop).
    let mut vanished = app
        .platform
        .storage
        .create_staged(&tenant, uuid::Uuid::now_v7())
        .await
        .unwrap();
    vanished.write(&vec![7u8; (8 << 20) + 1]).await.unwrap();
    std::mem::forget(vanished);
    assert_eq!(app.staged_left("acme").await, 3);

    support::eventually(
        "the upload task to be projected",
        Duration::from_secs(10),
        || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM tasks")
                .fetch_one(&app.platform.pool)
                .await
                .unwrap()
                == 1
        },
    )
    .await;
    let removed = worker::janitor::sweep(&deps(&app).await, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(removed, 2);
    assert_eq!(
        app.staged_left("acme").await,
        1,
        "the open upload's bytes must stay, the vanished upload must be gone"
    );
    let (_, task) = app.get_json(&t, &format!("/v1/tasks/{task_id}")).await;
    assert_eq!(task["status"], "pending");
}

#[tokio::test]
async fn an_upload_never_scanned_fails_with_timeout_and_its_bytes_go() {
    let app = TestApp::spawn_with(&[Role::Api, Role::Projector], &[]).await;
    let t = app.admin("acme");
    let resp = app
        .upload(&t, "/stuck.pdf", b"%PDF-1.7 stuck".to_vec(), &[])
        .await;
    let task_id = resp.json::<Value>().await.unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    support::eventually(
        "the upload task to be projected",
        Duration::from_secs(10),
        || async { app.get_json(&t, "/v1/stat/stuck.pdf").await.1["status"] == "scanning" },
    )
    .await;
    let deps = deps(&app).await;
    assert_eq!(
        worker::janitor::give_up_unscanned(&deps, Duration::from_secs(3600))
            .await
            .unwrap(),
        0,
        "a fresh upload was given up"
    );
    assert_eq!(
        worker::janitor::give_up_unscanned(&deps, Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    let task = app.wait_task(&t, &task_id).await;
    assert_eq!(task["status"], "failed");
    assert_eq!(task["error"]["code"], "timeout");
    assert_eq!(app.staged_count("acme"), 0);
    // Nothing is left showing as `scanning`, and nothing is served.
    assert_eq!(
        app.get_json(&t, "/v1/stat/stuck.pdf").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get_json(&t, "/v1/files/stuck.pdf").await.0,
        StatusCode::NOT_FOUND
    );
}
