//! End to end: webhook subscriptions and the notifier (signed deliveries, retries with the
//! same event id, filtering, isolation between subscriptions, disabling after sustained
//! failure) and the SSE stream. A local receiver (`notifications/receiver.rs`) plays the
//! subscriber. Admin-API and SSRF cases live in `notifications/admin_api.rs`, SSE in
//! `notifications/sse.rs`.

mod support;

#[path = "notifications/admin_api.rs"]
mod admin_api;
#[path = "notifications/receiver.rs"]
mod receiver;
#[path = "notifications/sse.rs"]
mod sse;

use std::time::Duration;

use file_engine::Role;
use receiver::{Behaviour, Received, Receiver};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{eventually, TestApp};

pub const SECRET_KEY: &str = "test-webhook-key-0123456789abcdef0123456789";

/// The platform with the notifier, webhooks to local receivers allowed, plus `extra` env.
pub async fn spawn(extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("FE_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("FE_WEBHOOK_SECRET_KEY", SECRET_KEY),
    ];
    env.extend_from_slice(extra);
    let roles = [Role::Api, Role::Projector, Role::Worker, Role::Notifier];
    TestApp::spawn_with(&roles, &env).await
}

/// `POST /v1/subscriptions`; returns the status and body.
pub async fn post_subscription(app: &TestApp, token: &str, body: &Value) -> (StatusCode, Value) {
    let resp = app
        .request(Method::POST, "/v1/subscriptions", Some(token))
        .await
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Creates a subscription that must be accepted; returns (id, secret).
pub async fn subscribe(app: &TestApp, token: &str, body: Value) -> (String, String) {
    let (status, v) = post_subscription(app, token, &body).await;
    assert_eq!(status, StatusCode::CREATED, "subscribe {body}: {v}");
    (
        v["id"].as_str().unwrap().to_owned(),
        v["secret"].as_str().unwrap().to_owned(),
    )
}

/// The delivery log of a subscription (first page).
pub async fn deliveries(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let (status, v) = app
        .get_json(
            token,
            &format!("/v1/subscriptions/{id}/deliveries?limit=200"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["deliveries"].as_array().unwrap().clone()
}

fn mkdir(path: &str) -> Value {
    json!({"op": "mkdir", "path": path, "parents": true})
}

/// Asserts the request is a correctly signed CloudEvents delivery.
fn assert_signed(r: &Received, secret: &str) {
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/cloudevents+json")
    );
    let signature = r
        .headers
        .get("fileengine-signature")
        .expect("signature header");
    let now = chrono::Utc::now().timestamp();
    platform::webhook::verify(secret, signature, &r.body, now, 300).expect("valid signature");
    assert!(platform::webhook::verify("whsec_wrong", signature, &r.body, now, 300).is_err());
}

/// Subjects of the received events, in arrival order.
fn subjects(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.json()["subject"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_failed_delivery_is_retried_signed_with_the_same_event_id() {
    let app = spawn(&[]).await;
    let admin = app.admin("hooks");
    let receiver = Receiver::start(Behaviour::Statuses(vec![500, 200])).await;
    let (id, secret) = subscribe(
        &app,
        &admin,
        json!({"url": receiver.url("/hook"), "types": ["dir.created"], "path_prefix": "/"}),
    )
    .await;
    assert!(secret.starts_with("whsec_"));
    app.run(&admin, mkdir("/r1")).await;

    eventually("the retried delivery", Duration::from_secs(20), || async {
        receiver.received().len() >= 2
    })
    .await;
    let got = receiver.received();
    for r in &got {
        assert_signed(r, &secret);
    }
    let (first, retry) = (got[0].json(), got[1].json());
    assert_eq!(
        first["id"], retry["id"],
        "a retry carries the same event id"
    );
    assert_eq!(first, retry, "a retry sends the same event");
    assert_eq!(first["type"], "io.file-engine.dir.created.v1");
    assert_eq!(first["subject"], "/r1");
    assert_eq!(first["tenant"], "hooks");
    assert_eq!(first["specversion"], "1.0");
    let gap = got[1].at - got[0].at;
    assert!(gap <= Duration::from_secs(5), "first retry after {gap:?}");

    eventually("the delivery log", Duration::from_secs(10), || async {
        let log = deliveries(&app, &admin, &id).await;
        log.len() == 1 && log[0]["status"] == "delivered"
    })
    .await;
    let log = deliveries(&app, &admin, &id).await;
    assert_eq!(log[0]["event_id"], first["id"]);
    assert_eq!(log[0]["attempts"], 2);
    let statuses: Vec<&Value> = log[0]["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status"])
        .collect();
    assert_eq!(statuses, [&json!(500), &json!(200)]);
    // Only the one retry: a delivered event is never sent again.
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn types_and_path_prefix_filter_by_whole_segments() {
    let app = spawn(&[]).await;
    let admin = app.admin("filters");
    let all = Receiver::start(Behaviour::Statuses(vec![200])).await;
    let under_a = Receiver::start(Behaviour::Statuses(vec![200])).await;
    let deletes = Receiver::start(Behaviour::Statuses(vec![200])).await;
    let (all_id, _) = subscribe(&app, &admin, json!({"url": all.url("/")})).await;
    let (a_id, _) = subscribe(
        &app,
        &admin,
        json!({"url": under_a.url("/"), "path_prefix": "/a"}),
    )
    .await;
    let (del_id, _) = subscribe(
        &app,
        &admin,
        json!({"url": deletes.url("/"), "types": ["entry.deleted"]}),
    )
    .await;

    for path in ["/a", "/a/x", "/ab", "/b"] {
        app.run(&admin, mkdir(path)).await;
    }
    app.run(&admin, json!({"op": "delete", "path": "/b"})).await;

    // The catch-all subscription saw the last commit, so every commit has been matched.
    eventually(
        "the catch-all deliveries",
        Duration::from_secs(20),
        || async { subjects(&all.received()).len() == 5 },
    )
    .await;
    let queued = |log: Vec<Value>| -> Vec<String> {
        let mut types: Vec<String> = log
            .iter()
            .map(|d| d["event_type"].as_str().unwrap().to_owned())
            .collect();
        types.sort();
        types
    };
    assert_eq!(
        queued(deliveries(&app, &admin, &a_id).await),
        ["dir.created", "dir.created"]
    );
    assert_eq!(
        queued(deliveries(&app, &admin, &del_id).await),
        ["entry.deleted"]
    );
    assert_eq!(deliveries(&app, &admin, &all_id).await.len(), 5);

    eventually("filtered deliveries", Duration::from_secs(20), || async {
        under_a.received().len() == 2 && deletes.received().len() == 1
    })
    .await;
    let mut under = subjects(&under_a.received());
    under.sort();
    assert_eq!(under, ["/a", "/a/x"], "/ab is not under /a");
    assert_eq!(
        deletes.received()[0].json()["type"],
        "io.file-engine.entry.deleted.v1"
    );
}

#[tokio::test]
async fn a_hung_receiver_does_not_delay_another_subscription() {
    let app = spawn(&[]).await;
    let admin = app.admin("isolation");
    let hung = Receiver::start(Behaviour::Hang).await;
    let healthy = Receiver::start(Behaviour::Statuses(vec![200])).await;
    let (hung_id, _) = subscribe(&app, &admin, json!({"url": hung.url("/")})).await;
    subscribe(&app, &admin, json!({"url": healthy.url("/")})).await;

    app.run(&admin, mkdir("/iso")).await;
    for i in 0..12 {
        app.submit(&admin, mkdir(&format!("/iso/{i}"))).await;
    }
    // All 13 events reach the healthy receiver while the hung one holds its first
    // deliveries open for the whole 10 s delivery timeout.
    eventually("the healthy receiver", Duration::from_secs(8), || async {
        healthy.received().len() >= 13
    })
    .await;
    assert!(!hung.received().is_empty(), "the hung receiver was tried");
    let stuck = deliveries(&app, &admin, &hung_id).await;
    assert_eq!(stuck.len(), 13);
    assert!(
        stuck.iter().all(|d| d["status"] == "pending"),
        "nothing was delivered to the hung receiver"
    );
    assert!(
        hung.received().len() <= 4,
        "at most the per-subscription limit is in flight: {}",
        hung.received().len()
    );
}

#[tokio::test]
async fn a_subscription_failing_too_long_is_disabled_and_recorded() {
    let app = spawn(&[
        ("FE_WEBHOOK_GIVE_UP_S", "3"),
        ("FE_WEBHOOK_DISABLE_AFTER_S", "2"),
    ])
    .await;
    let admin = app.admin("failing");
    let failing = Receiver::start(Behaviour::Statuses(vec![503])).await;
    let healthy = Receiver::start(Behaviour::Statuses(vec![200])).await;
    let (id, _) = subscribe(&app, &admin, json!({"url": failing.url("/")})).await;
    subscribe(&app, &admin, json!({"url": healthy.url("/")})).await;
    app.run(&admin, mkdir("/f")).await;

    let status_of = |v: &Value| -> Value {
        v["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id.as_str())
            .cloned()
            .unwrap()
    };
    eventually(
        "the subscription to be disabled",
        Duration::from_secs(30),
        || async {
            let (_, v) = app.get_json(&admin, "/v1/subscriptions").await;
            status_of(&v)["status"] == "disabled"
        },
    )
    .await;
    let (_, v) = app.get_json(&admin, "/v1/subscriptions").await;
    let reason = status_of(&v)["status_reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("503"), "{reason}");
    let log = deliveries(&app, &admin, &id).await;
    assert!(log.iter().any(|d| d["status"] == "dead"), "{log:?}");
    assert!(log.iter().all(|d| d["status"] != "pending"), "{log:?}");

    // A later event reaches the healthy subscription but is not queued for the disabled one.
    let tried = failing.received().len();
    app.run(&admin, mkdir("/g")).await;
    eventually(
        "the healthy delivery of /g",
        Duration::from_secs(20),
        || async { subjects(&healthy.received()).contains(&"/g".to_owned()) },
    )
    .await;
    assert_eq!(deliveries(&app, &admin, &id).await.len(), log.len());
    assert_eq!(failing.received().len(), tried);
}
