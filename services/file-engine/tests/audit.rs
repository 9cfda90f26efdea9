//! End to end over HTTP: the audit API (`/v1/audit`, `/v1/audit/export`, `/v1/audit/verify`)
//! and `file-engine audit-verify`. Filters, order and tenancy live in `audit/query.rs`, the
//! tamper tests in `audit/tamper.rs`, the 10,000-event run in `audit/volume.rs`; they share the
//! helpers below.

mod support;

#[path = "audit/history.rs"]
mod history;
#[path = "audit/query.rs"]
mod query;
#[path = "audit/tamper.rs"]
mod tamper;
#[path = "audit/volume.rs"]
mod volume;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{eventually, TestApp};

/// `GET /v1/audit?<query>`.
pub async fn audit(app: &TestApp, token: &str, query: &str) -> (StatusCode, Value) {
    app.get_json(token, &format!("/v1/audit?{query}")).await
}

/// Every event matching `query`, following `next_cursor` page by page.
pub async fn audit_all(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("{query}&cursor={c}"),
            None => query.to_owned(),
        };
        let (status, page) = audit(app, token, &q).await;
        assert_eq!(status, StatusCode::OK, "{q}: {page}");
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return events,
        }
    }
}

/// `GET /v1/audit/export?<query>`: status, content type and the events (trailer and
/// `chainhash` left out, so they compare with `GET /v1/audit`).
pub async fn export(app: &TestApp, token: &str, query: &str) -> (StatusCode, String, Vec<Value>) {
    let (status, content_type, mut lines) = export_raw(app, token, query).await;
    if status == StatusCode::OK {
        let trailer = lines.pop().expect("a trailer line");
        assert!(trailer.get("export").is_some(), "{trailer}");
        for line in &mut lines {
            line.as_object_mut().unwrap().remove("chainhash");
        }
    }
    (status, content_type, lines)
}

/// `GET /v1/audit/export?<query>`: status, content type and every line as sent.
pub async fn export_raw(
    app: &TestApp,
    token: &str,
    query: &str,
) -> (StatusCode, String, Vec<Value>) {
    let resp = app
        .request(
            Method::GET,
            &format!("/v1/audit/export?{query}"),
            Some(token),
        )
        .await
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.text().await.unwrap();
    let lines = match status {
        StatusCode::OK => body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        _ => Vec::new(),
    };
    (status, content_type, lines)
}

/// `GET /v1/audit/verify` (must answer 200).
pub async fn verify(app: &TestApp, token: &str) -> Value {
    let (status, v) = app.get_json(token, "/v1/audit/verify").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

/// Waits until the projector has applied everything in the log.
pub async fn wait_projected(app: &TestApp) {
    let js = app.platform.log.jetstream().clone();
    let pool = app.platform.pool.clone();
    eventually(
        "the projector to reach the end of the log",
        Duration::from_secs(60),
        || {
            let (js, pool) = (js.clone(), pool.clone());
            async move {
                let mut stream = js.get_stream("FE_EVENTS").await.unwrap();
                let last = stream.info().await.unwrap().state.last_sequence;
                platform::db::checkpoint(&pool).await.unwrap() >= last
            }
        },
    )
    .await;
}

/// Grants a rule as an admin (201 expected).
pub async fn grant(app: &TestApp, admin: &str, subject: &str, path: &str) -> Value {
    let body =
        json!({"subject": subject, "path": path, "permissions": ["read"], "effect": "allow"});
    let resp = app
        .request(Method::POST, "/v1/acl/rules", Some(admin))
        .await
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

/// Short type of an event (`dir.created`).
pub fn short(ev: &Value) -> &str {
    ev["type"]
        .as_str()
        .unwrap()
        .trim_start_matches("io.file-engine.")
        .trim_end_matches(".v1")
}

/// Log positions `(seq, id)` of events, for order and equality checks.
pub fn positions(events: &[Value]) -> Vec<(u64, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Runs `file-engine audit-verify` against the app's environment: success and its JSON.
pub fn cli_verify(app: &TestApp) -> (bool, Value) {
    cli_verify_with(app, &[])
}

/// `file-engine audit-verify <args>`: success and its JSON.
pub fn cli_verify_with(app: &TestApp, args: &[&str]) -> (bool, Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_file-engine"))
        .arg("audit-verify")
        .args(args)
        .env_clear()
        .envs(app.env(&[("FE_LOG_LEVEL", "error")]))
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), json)
}
