//! Client-visible task errors are stable codes with safe messages: the storage layer's own
//! text (host paths, OS errors, internal notions) stays in the logs.

use std::os::unix::fs::symlink;

use serde_json::json;

use super::mkdirs;
use super::support::TestApp;

#[tokio::test]
async fn a_storage_refusal_reaches_the_client_as_a_code_with_a_fixed_message() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    mkdirs(&app, &admin, &["/plant"]).await;
    let outside = tempfile::tempdir().unwrap();
    symlink(outside.path(), app.disk("acme", "/plant/out")).unwrap();

    let task = app
        .run(
            &admin,
            json!({"op": "mkdir", "path": "/plant/out/x", "parents": true}),
        )
        .await;
    assert_eq!(task["status"], "failed", "{task}");
    let code = task["error"]["code"].as_str().unwrap();
    assert!(
        ["storage_error", "conflict", "not_found"].contains(&code),
        "{task}"
    );
    let message = task["error"]["message"].as_str().unwrap();
    let storage_root = app.storage.path().display().to_string();
    let outside_dir = outside.path().display().to_string();
    for internal in [
        storage_root.as_str(),
        outside_dir.as_str(),
        "plant/out",
        "tenant root",
        "os error",
    ] {
        assert!(
            !message.contains(internal),
            "{internal:?} leaked: {message}"
        );
    }
    assert!(!outside.path().join("x").exists());
}
