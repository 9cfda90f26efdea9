//! Dead letters: a task whose deliveries ran out is listed for admins and, once retried,
//! runs again to success.

mod support;

use std::collections::HashMap;

use events::task::{Task, TaskCommand, TaskFailure};
use file_engine::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{eventually, TestApp};

#[tokio::test]
async fn a_dead_lettered_task_is_listed_and_runs_again_when_retried() {
    let app = TestApp::spawn_with(&[Role::Api, Role::Projector], &[]).await;
    let t = app.admin("acme");
    let id = app
        .submit(&t, json!({"op": "mkdir", "path": "/dl/x", "parents": true}))
        .await;
    // What the worker records when the last delivery failed with a storage error.
    let aggregate =
        platform::event_log::aggregate_id(&events::TenantId::parse("acme").unwrap(), &id);
    for command in [
        TaskCommand::Start,
        TaskCommand::DeadLetter {
            error: TaskFailure::new("storage_error", "disk unavailable"),
            failed_attempts: 1,
        },
    ] {
        app.platform
            .log
            .execute::<Task>(&aggregate, command, &(), HashMap::new())
            .await
            .unwrap();
    }
    let task = app.wait_task(&t, &id).await;
    assert_eq!(task["status"], "dead_lettered");

    // The task read falls back to the log; the list comes from the read model.
    eventually(
        "the dead letter to be listed",
        std::time::Duration::from_secs(10),
        || async { app.get_json(&t, "/v1/dead-letters").await.1["dead_letters"] != json!([]) },
    )
    .await;
    let (status, listed) = app.get_json(&t, "/v1/dead-letters").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let entry = &listed["dead_letters"][0];
    assert_eq!(
        (
            entry["task_id"].as_str(),
            entry["op"].as_str(),
            entry["attempts"].as_i64()
        ),
        (Some(id.as_str()), Some("mkdir"), Some(1))
    );
    assert_eq!(entry["error"]["code"], "storage_error");

    let user = app.token("bob", "acme", &[]);
    assert_eq!(
        app.get_json(&user, "/v1/dead-letters").await.0,
        StatusCode::FORBIDDEN
    );
    let foreign = app.admin("globex");
    let (_, theirs) = app.get_json(&foreign, "/v1/dead-letters").await;
    assert_eq!(theirs["dead_letters"], json!([]));
    let post = |token: String, id: String| {
        let rb = app
            .http
            .request(
                Method::POST,
                app.url(&format!("/v1/dead-letters/{id}/retry")),
            )
            .bearer_auth(token);
        async move { rb.send().await.unwrap() }
    };
    assert_eq!(
        post(foreign.clone(), id.clone()).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post(t.clone(), "not-a-task".into()).await.status(),
        StatusCode::NOT_FOUND
    );

    let retried = post(t.clone(), id.clone()).await;
    assert_eq!(retried.status(), StatusCode::ACCEPTED);
    let body: Value = retried.json().await.unwrap();
    assert_eq!(body["task_id"], id.as_str());

    let worker = file_engine::start(&app.platform, &[Role::Worker])
        .await
        .unwrap();
    let task = app.wait_task(&t, &id).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert!(app.is_dir("acme", "/dl/x").await);
    eventually(
        "the dead letter to leave the list",
        std::time::Duration::from_secs(10),
        || async { app.get_json(&t, "/v1/dead-letters").await.1["dead_letters"] == json!([]) },
    )
    .await;
    let again = post(t.clone(), id.clone()).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    worker.shutdown().await;
}
