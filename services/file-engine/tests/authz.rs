//! End to end over HTTP: authorization follows the data (issue 15). Recursive commands obey
//! the rules inside their subtree (at request time and again when the task runs), listings
//! filter before they page behind tamper-proof cursors, and rule and subscription events
//! reach admins only. Scenarios live in `authz/` next to this file and share these helpers.

mod support;

#[path = "authz/evasion.rs"]
mod evasion;
#[path = "authz/idempotency.rs"]
mod idempotency;
#[path = "authz/listing.rs"]
mod listing;
#[path = "authz/redaction.rs"]
mod redaction;
#[path = "authz/subtree.rs"]
mod subtree;
#[path = "authz/visibility.rs"]
mod visibility;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::TestApp;

/// Grants a rule as `admin`; returns its id.
pub async fn grant(
    app: &TestApp,
    admin: &str,
    subject: &str,
    path: &str,
    permissions: &[&str],
    effect: &str,
) -> String {
    let rule = app
        .grant_rule(admin, subject, path, permissions, effect)
        .await;
    rule["rule_id"].as_str().unwrap().to_owned()
}

/// Runs `mkdir -p` for each path as `admin`.
pub async fn mkdirs(app: &TestApp, admin: &str, paths: &[&str]) {
    for p in paths {
        let task = app
            .run(admin, json!({"op": "mkdir", "path": p, "parents": true}))
            .await;
        assert_eq!(task["status"], "succeeded", "mkdir {p}: {task}");
    }
}

/// The status and problem `code` of a command refused or accepted.
pub async fn command_status(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    let resp = app.post_command(token, &body, None).await;
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}
