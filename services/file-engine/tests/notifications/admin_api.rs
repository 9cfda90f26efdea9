//! The subscriptions admin API under attack: SSRF targets (with and without
//! `FE_WEBHOOK_ALLOW_PRIVATE`), malformed input, non-admins and other tenants all get their
//! 4xx problem, and no secret is ever listed.

use file_engine::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{post_subscription, spawn, subscribe, SECRET_KEY};
use crate::support::TestApp;

async fn code_of(app: &TestApp, token: &str, body: Value) -> (StatusCode, String) {
    let (status, v) = post_subscription(app, token, &body).await;
    (status, v["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn private_and_loopback_targets_are_refused_without_the_flag() {
    let app = TestApp::spawn_with(
        &[Role::Api, Role::Projector],
        &[("FE_WEBHOOK_SECRET_KEY", SECRET_KEY)],
    )
    .await;
    let admin = app.admin("ssrf");
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fd00::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://2130706433/",
        "http://0.0.0.0:80/",
        "http://localhost:9/hook",
    ] {
        let (status, code) = code_of(&app, &admin, json!({"url": url})).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{url}"
        );
    }
    let (_, v) = app.get_json(&admin, "/v1/subscriptions").await;
    assert_eq!(v["subscriptions"], json!([]), "nothing was recorded");
}

#[tokio::test]
async fn metadata_and_multicast_stay_refused_with_the_flag() {
    let app = spawn(&[]).await;
    let admin = app.admin("ssrf2");
    for url in [
        "http://169.254.169.254/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://0.0.0.0/",
    ] {
        let (status, _) = code_of(&app, &admin, json!({"url": url})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}");
    }
}

#[tokio::test]
async fn hostile_inputs_are_refused() {
    let app = spawn(&[]).await;
    let admin = app.admin("hostile");
    let ok_url = "http://127.0.0.1:9/hook";
    for (body, expected) in [
        (json!({"url": "not a url"}), "bad_request"),
        (json!({"url": "ftp://127.0.0.1/"}), "bad_request"),
        (json!({"url": "http://user:pw@127.0.0.1/"}), "bad_request"),
        (json!({"url": "http://127.0.0.1/#frag"}), "bad_request"),
        (
            json!({"url": format!("http://127.0.0.1/{}", "a".repeat(3000))}),
            "bad_request",
        ),
        (
            json!({"url": ok_url, "types": ["no.such_type"]}),
            "bad_request",
        ),
        (
            json!({"url": ok_url, "types": ["task.requested"]}),
            "bad_request",
        ),
        (
            json!({"url": ok_url, "types": "dir.created"}),
            "bad_request",
        ),
        (
            json!({"url": ok_url, "path_prefix": "/a/../b"}),
            "path_invalid",
        ),
        (
            json!({"url": ok_url, "path_prefix": "relative"}),
            "path_invalid",
        ),
        (json!({"url": ok_url, "secret": "mine"}), "bad_request"),
        (json!({"types": []}), "bad_request"),
    ] {
        let (status, code) = code_of(&app, &admin, body.clone()).await;
        assert_eq!(code, expected, "{body}");
        assert_eq!(status.as_u16(), 400, "{body}");
    }
    let huge = json!({"url": ok_url, "types": vec!["dir.created"; 20_000]});
    let (status, code) = code_of(&app, &admin, huge).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let resp = app
        .request(Method::POST, "/v1/subscriptions", Some(&admin))
        .await
        .header("content-type", "text/plain")
        .body(json!({"url": ok_url}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (_, v) = app.get_json(&admin, "/v1/subscriptions").await;
    assert_eq!(v["subscriptions"], json!([]));
}

#[tokio::test]
async fn only_admins_of_the_tenant_manage_subscriptions() {
    let app = spawn(&[]).await;
    let admin = app.admin("owner");
    let (id, secret) = subscribe(
        &app,
        &admin,
        json!({"url": "http://127.0.0.1:9/hook", "types": ["dir.created"], "path_prefix": "/x"}),
    )
    .await;

    let (status, v) = app.get_json(&admin, "/v1/subscriptions").await;
    assert_eq!(status, StatusCode::OK);
    let listed = &v["subscriptions"][0];
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["types"], json!(["dir.created"]));
    assert_eq!(listed["path_prefix"], "/x");
    assert_eq!(listed["status"], "active");
    assert!(
        listed.get("secret").is_none(),
        "secrets are shown once only"
    );
    assert!(!v.to_string().contains(&secret));

    let user = app.token("bob", "owner", &["auditor"]);
    let (status, _) =
        super::post_subscription(&app, &user, &json!({"url": "http://127.0.0.1:9/"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for path in [
        "/v1/subscriptions".to_owned(),
        format!("/v1/subscriptions/{id}/deliveries"),
    ] {
        assert_eq!(
            app.get_json(&user, &path).await.0,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    assert_eq!(delete(&app, &user, &id).await, StatusCode::FORBIDDEN);

    let other = app.admin("intruder");
    assert_eq!(delete(&app, &other, &id).await, StatusCode::NOT_FOUND);
    let path = format!("/v1/subscriptions/{id}/deliveries");
    assert_eq!(app.get_json(&other, &path).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get_json(&other, "/v1/subscriptions").await.1["subscriptions"],
        json!([])
    );
    assert_eq!(
        delete(&app, &admin, "not-a-uuid").await,
        StatusCode::NOT_FOUND
    );
    let (status, _) = app.get_json(&admin, &format!("{path}?limit=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    assert_eq!(delete(&app, &admin, &id).await, StatusCode::NO_CONTENT);
    assert_eq!(delete(&app, &admin, &id).await, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get_json(&admin, "/v1/subscriptions").await.1["subscriptions"],
        json!([])
    );
}

async fn delete(app: &TestApp, token: &str, id: &str) -> StatusCode {
    app.request(
        Method::DELETE,
        &format!("/v1/subscriptions/{id}"),
        Some(token),
    )
    .await
    .send()
    .await
    .unwrap()
    .status()
}

#[tokio::test]
async fn a_tenants_first_subscription_right_after_an_acl_change_is_accepted() {
    // The tenant's ACL and its subscriptions are two aggregate types with one id (the
    // tenant); their first commits must not be taken for each other's within JetStream's
    // duplicate window.
    let app = spawn(&[]).await;
    let admin = app.admin("fresh");
    let rule =
        json!({"subject": "user:bob", "path": "/x", "permissions": ["read"], "effect": "allow"});
    let resp = app
        .request(Method::POST, "/v1/acl/rules", Some(&admin))
        .await
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let (id, _) = subscribe(&app, &admin, json!({"url": "http://127.0.0.1:9/hook"})).await;
    let (status, listed) = app.get_json(&admin, "/v1/subscriptions").await;
    assert_eq!(status, StatusCode::OK);
    assert!(listed.to_string().contains(&id), "{listed}");
}
