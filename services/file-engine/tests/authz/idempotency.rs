//! Idempotency keys bind the whole request (method, path, body; uploads: path + content) for
//! 24 hours.

use std::collections::HashMap;

use chrono::{Duration, Utc};
use events::task::{
    body_hash, key_window, request_fingerprint, task_id_for_idempotency_key, FileCommand, Task,
    TaskCommand, TaskSpec,
};
use events::{FilePath, IdempotencyKey, TenantId};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::support::TestApp;

async fn keyed_upload(app: &TestApp, token: &str, path: &str, key: &str) -> (StatusCode, Value) {
    let resp = app
        .upload(
            token,
            path,
            b"same bytes".to_vec(),
            &[("Idempotency-Key", key)],
        )
        .await;
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_key_binds_the_upload_path_and_the_method_not_only_the_content() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    let (first, body) = keyed_upload(&app, &admin, "/one.txt", "k-upload").await;
    assert_eq!(first, StatusCode::ACCEPTED, "{body}");
    let (again, replay) = keyed_upload(&app, &admin, "/one.txt", "k-upload").await;
    assert_eq!(again, StatusCode::ACCEPTED);
    assert_eq!(
        replay["task_id"], body["task_id"],
        "same request, same task"
    );

    let (other_path, problem) = keyed_upload(&app, &admin, "/two.txt", "k-upload").await;
    assert_eq!(other_path, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "idempotency_key_reused");

    let resp = app
        .post_command(
            &admin,
            &json!({"op": "mkdir", "path": "/one.txt"}),
            Some("k-upload"),
        )
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::CONFLICT,
        "another method and path"
    );
}

/// Records, as the API would have, a keyed mkdir requested at `at` in the previous window.
async fn plant(
    app: &TestApp,
    sub: &str,
    key: &str,
    body: &Value,
    at: chrono::DateTime<Utc>,
) -> String {
    let tenant = TenantId::parse("acme").unwrap();
    let k = IdempotencyKey::parse(key).unwrap();
    let task_id = task_id_for_idempotency_key(&tenant, sub, &k, key_window(Utc::now()) - 1);
    let command = TaskCommand::Request {
        task_id,
        tenant: tenant.clone(),
        principal: sub.into(),
        roles: vec!["admin".into()],
        spec: TaskSpec::Command(FileCommand::Mkdir {
            path: FilePath::parse(body["path"].as_str().unwrap()).unwrap(),
            parents: true,
        }),
        idempotency_key: Some(key.into()),
        body_hash: Some(request_fingerprint(
            "POST",
            "/v1/commands",
            &body_hash(body),
        )),
        requested_at: at,
    };
    let id = platform::event_log::aggregate_id(&tenant, &task_id.to_string());
    app.platform
        .log
        .execute::<Task>(&id, command, &(), HashMap::new())
        .await
        .unwrap();
    task_id.to_string()
}

#[tokio::test]
async fn a_key_is_honoured_for_24_hours_and_free_afterwards() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    let body = json!({"op": "mkdir", "path": "/fresh", "parents": true});
    let young = plant(
        &app,
        "root",
        "k-young",
        &body,
        Utc::now() - Duration::hours(23),
    )
    .await;
    let resp = app.post_command(&admin, &body, Some("k-young")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["task_id"],
        young.as_str(),
        "within 24 h the key answers its task"
    );

    let old = plant(
        &app,
        "root",
        "k-old",
        &body,
        Utc::now() - Duration::hours(25),
    )
    .await;
    let resp = app.post_command(&admin, &body, Some("k-old")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let v: Value = resp.json().await.unwrap();
    assert_ne!(
        v["task_id"],
        old.as_str(),
        "after 24 h the key makes a new task"
    );
    let again = app.post_command(&admin, &body, Some("k-old")).await;
    let w: Value = again.json().await.unwrap();
    assert_eq!(w["task_id"], v["task_id"], "and then binds that one");
}
