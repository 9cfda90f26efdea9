//! The ACL admin API under attack: non-admins, another tenant's admin, and malformed input
//! all get their 4xx problem and record nothing.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{events_recorded, grant_id};
use crate::support::TestApp;

/// Asserts a problem+json answer and returns (status, code).
pub async fn problem(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        ct.as_deref(),
        Some("application/problem+json"),
        "status {status}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    (status, body["code"].as_str().unwrap().to_owned())
}

pub async fn post_rule(
    app: &TestApp,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    app.request(Method::POST, "/v1/acl/rules", Some(token))
        .await
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn get(app: &TestApp, token: &str, url: &str) -> reqwest::Response {
    app.request(Method::GET, url, Some(token))
        .await
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn only_admins_may_use_the_admin_api() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    // Even a principal allowed everything on every path is no ACL administrator.
    let all = ["list", "read", "write", "mkdir", "move", "copy", "delete"];
    let id = grant_id(&app, &admin, "user:eve", "/", &all, "allow").await;
    let recorded = events_recorded(&app).await;
    for token in [
        app.token("eve", "acme", &["editor"]),
        app.token("audra", "acme", &["auditor"]),
        app.token("administrator", "acme", &["Admin", "root"]),
    ] {
        let body =
            json!({"subject": "user:eve", "path": "/", "permissions": ["read"], "effect": "deny"});
        let resp = post_rule(
            &app,
            &token,
            "application/json",
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(
            problem(resp).await,
            (StatusCode::FORBIDDEN, "forbidden".into())
        );
        let resp = app
            .request(Method::DELETE, &format!("/v1/acl/rules/{id}"), Some(&token))
            .await
            .send()
            .await
            .unwrap();
        assert_eq!(problem(resp).await.0, StatusCode::FORBIDDEN);
        for url in [
            "/v1/acl/rules",
            "/v1/acl/check?subject=*&path=/&permission=read",
        ] {
            assert_eq!(
                problem(get(&app, &token, url).await).await.0,
                StatusCode::FORBIDDEN,
                "{url}"
            );
        }
    }
    assert_eq!(events_recorded(&app).await, recorded);
    let (_, rules) = app.get_json(&admin, "/v1/acl/rules").await;
    assert_eq!(rules["rules"].as_array().unwrap().len(), 1, "{rules}");
}

#[tokio::test]
async fn hostile_admin_input_gets_4xx_problems_and_records_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    let recorded = events_recorded(&app).await;
    let rule = |subject: Value, path: Value, perms: Value, effect: Value| json!({"subject": subject, "path": path, "permissions": perms, "effect": effect});
    let (ok_s, ok_p, ok_perms, ok_e) = (
        json!("user:bob"),
        json!("/a"),
        json!(["read"]),
        json!("allow"),
    );
    let bad_request = (StatusCode::BAD_REQUEST, "bad_request");
    let path_invalid = (StatusCode::BAD_REQUEST, "path_invalid");
    let mut cases: Vec<(Value, (StatusCode, &str))> = Vec::new();
    for s in ["bob", "user:", "group:x", "user:a\nb", "", "**"] {
        cases.push((
            rule(json!(s), ok_p.clone(), ok_perms.clone(), ok_e.clone()),
            bad_request,
        ));
    }
    for perms in [
        json!([]),
        json!(["admin"]),
        json!(["READ"]),
        json!("read"),
        json!([1]),
        json!(null),
    ] {
        cases.push((
            rule(ok_s.clone(), ok_p.clone(), perms, ok_e.clone()),
            bad_request,
        ));
    }
    for e in [json!("maybe"), json!("Allow"), json!(true)] {
        cases.push((
            rule(ok_s.clone(), ok_p.clone(), ok_perms.clone(), e),
            bad_request,
        ));
    }
    for p in [
        "../etc",
        "/a/../../etc",
        "relative",
        "/a\\b",
        "/a//b",
        "/a\u{0}",
    ] {
        cases.push((
            rule(ok_s.clone(), json!(p), ok_perms.clone(), ok_e.clone()),
            path_invalid,
        ));
    }
    let mut extra = rule(ok_s.clone(), ok_p.clone(), ok_perms.clone(), ok_e.clone());
    extra["rule_id"] = json!("00000000-0000-0000-0000-000000000000");
    cases.push((extra, bad_request));
    for (body, want) in cases {
        let resp = post_rule(
            &app,
            &admin,
            "application/json",
            body.to_string().into_bytes(),
        )
        .await;
        let (status, code) = problem(resp).await;
        assert_eq!((status, code.as_str()), want, "{body}");
    }
    let raw: [(&str, Vec<u8>, StatusCode); 3] = [
        (
            "application/json",
            vec![b' '; 70_000],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "text/plain",
            br#"{"subject":"*"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "application/json",
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (ct, body, want) in raw {
        assert_eq!(
            problem(post_rule(&app, &admin, ct, body).await).await.0,
            want
        );
    }
    hostile_queries(&app, &admin).await;
    assert_eq!(
        events_recorded(&app).await,
        recorded,
        "a hostile request was recorded"
    );
    assert_eq!(
        app.get_json(&admin, "/v1/acl/rules").await.1,
        json!({"rules": []})
    );
}

/// Malformed `check`, `rules?path=` and `DELETE` requests.
async fn hostile_queries(app: &TestApp, admin: &str) {
    let base = "/v1/acl/check?subject=user:bob&path=/a&permission=read";
    let bad_request = (StatusCode::BAD_REQUEST, "bad_request");
    let path_invalid = (StatusCode::BAD_REQUEST, "path_invalid");
    let not_found = (StatusCode::NOT_FOUND, "not_found");
    let cases = [
        (format!("{base}&at=yesterday"), bad_request),
        (format!("{base}&at=2026-13-01T00:00:00Z"), bad_request),
        (format!("{base}&at=1700000000"), bad_request),
        (
            format!("{base}&at=2026-01-01T00:00:00Z&at=2026-01-02T00:00:00Z"),
            bad_request,
        ),
        (
            "/v1/acl/check?subject=user:bob&path=/a".to_owned(),
            bad_request,
        ),
        (
            "/v1/acl/check?subject=bob&path=/a&permission=read".to_owned(),
            bad_request,
        ),
        (
            "/v1/acl/check?subject=*&path=/a&permission=admin".to_owned(),
            bad_request,
        ),
        (
            "/v1/acl/check?subject=*&path=/a/../b&permission=read".to_owned(),
            path_invalid,
        ),
        (
            "/v1/acl/check?subject=*&path=%2e%2e&permission=read".to_owned(),
            path_invalid,
        ),
        ("/v1/acl/rules?path=../etc".to_owned(), path_invalid),
        ("/v1/acl/rules?path=/a/%00".to_owned(), path_invalid),
    ];
    for (url, want) in cases {
        let (status, code) = problem(get(app, admin, &url).await).await;
        assert_eq!((status, code.as_str()), want, "{url}");
    }
    for id in [
        "not-a-uuid",
        "00000000-0000-0000-0000-000000000000",
        "..%2f..%2fetc",
    ] {
        let resp = app
            .request(Method::DELETE, &format!("/v1/acl/rules/{id}"), Some(admin))
            .await
            .send()
            .await
            .unwrap();
        let (status, code) = problem(resp).await;
        assert_eq!((status, code.as_str()), not_found, "{id}");
    }
}
