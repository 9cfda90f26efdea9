//! Hostile and malformed input: every case gets its documented 4xx problem with a stable
//! `code` and a request id, never a 500, and records nothing.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::TestApp;

async fn problem(resp: reqwest::Response) -> (StatusCode, Value) {
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
    assert!(resp.headers().contains_key("x-request-id"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(body["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    (status, body)
}

async fn post_raw(
    app: &TestApp,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let resp = app
        .request(Method::POST, "/v1/commands", Some(token))
        .await
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    problem(resp).await
}

async fn tasks_recorded(app: &TestApp) -> i64 {
    let js = app.platform.log.jetstream();
    let mut stream = js
        .get_stream(platform::streams::EVENTS_STREAM)
        .await
        .unwrap();
    stream.info().await.unwrap().state.messages as i64
}

#[tokio::test]
async fn malformed_bodies_are_rejected_without_recording_anything() {
    let app = TestApp::spawn().await;
    let t = app.admin("acme");
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "application/json",
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "application/json",
            b"".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "application/json",
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "application/json",
            br#"{"op":"chmod","path":"/a"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "application/json",
            br#"{"op":"mkdir"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "application/json",
            br#"{"op":"mkdir","path":"/a","extra":1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "application/json",
            br#"{"op":"mkdir","path":42}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "application/json",
            br#"{"op":"delete","path":"/"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "text/plain",
            br#"{"op":"mkdir","path":"/a"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "application/json",
            vec![b' '; 70_000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "application/json",
            [&b"\xff\xfe"[..], br#"{"op":"mkdir"}"#].concat(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (ct, body, want_status, want_code) in cases {
        let (status, p) = post_raw(&app, &t, ct, body).await;
        assert_eq!(
            (status, p["code"].as_str().unwrap()),
            (want_status, want_code),
            "{p}"
        );
    }
    assert_eq!(tasks_recorded(&app).await, 0);
}

#[tokio::test]
async fn traversal_and_invalid_paths_are_path_invalid() {
    let app = TestApp::spawn().await;
    let t = app.admin("acme");
    let long_segment = format!("/{}", "a".repeat(256));
    let long_path = "/abcdefghi".repeat(103);
    for bad in [
        "../etc",
        "/a/../../etc",
        "/a/./b",
        "/a//b",
        "/a\\b",
        "/a\u{0}b",
        "/a\u{7f}",
        "/a\u{85}",
        "",
        "relative",
        long_segment.as_str(),
        long_path.as_str(),
    ] {
        for body in [
            json!({"op": "mkdir", "path": bad}),
            json!({"op": "move", "from": "/x", "to": bad}),
            json!({"op": "copy", "from": bad, "to": "/y"}),
        ] {
            let resp = app.post_command(&t, &body, None).await;
            let (status, p) = problem(resp).await;
            assert_eq!(
                (status, p["code"].as_str().unwrap()),
                (StatusCode::BAD_REQUEST, "path_invalid"),
                "{body}"
            );
        }
    }
    // Sent over a raw socket: HTTP clients normalise `..` and `%2e%2e` away before sending.
    for url in [
        "/v1/stat/a/%2e%2e/b",
        "/v1/stat/a/../b",
        "/v1/stat/a%2Fb",
        "/v1/stat/a//b",
        "/v1/stat/%00",
        "/v1/stat/%ff",
        "/v1/list/..",
        "/v1/stat/a/%2E",
        "/v1/list/a/./b",
    ] {
        let (status, body) = raw_get(&app, url, &t).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(body.contains("\"code\":\"path_invalid\""), "{url}: {body}");
    }
    assert_eq!(tasks_recorded(&app).await, 0);
}

#[tokio::test]
async fn bad_tokens_are_unauthorized_with_a_bearer_challenge() {
    let app = TestApp::spawn().await;
    let other_keys = testkit::jwt::TestKeys::es256();
    let forged = other_keys.token("root", "acme", &["admin"]);
    let expired = app.keys.token_with(json!({"sub": "root", "tenant": "acme", "roles": ["admin"], "iss": testkit::jwt::TEST_ISSUER, "aud": testkit::jwt::TEST_AUDIENCE, "exp": 1_000_000}));
    let bad_tenant = app.token("root", "../acme", &["admin"]);
    let huge = "a".repeat(20_000);
    for auth in [
        None,
        Some("Bearer".to_owned()),
        Some("Basic cm9vdDpyb290".to_owned()),
        Some(format!("Bearer {forged}")),
        Some(format!("Bearer {expired}")),
        Some(format!("Bearer {bad_tenant}")),
        Some(format!("Bearer {huge}")),
        Some("Bearer a.b.c".to_owned()),
    ] {
        let mut rb = app
            .request(Method::POST, "/v1/commands", None)
            .await
            .json(&json!({"op": "mkdir", "path": "/a"}));
        if let Some(a) = &auth {
            rb = rb.header("authorization", a);
        }
        let resp = rb.send().await.unwrap();
        assert_eq!(
            resp.headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer")
        );
        let (status, p) = problem(resp).await;
        assert_eq!(
            (status, p["code"].as_str().unwrap()),
            (StatusCode::UNAUTHORIZED, "unauthorized")
        );
    }
    assert_eq!(tasks_recorded(&app).await, 0);
}

#[tokio::test]
async fn non_admins_are_forbidden_until_granted_and_record_nothing() {
    let app = TestApp::spawn().await;
    let user = app.token("bob", "acme", &["editor"]);
    let resp = app
        .post_command(&user, &json!({"op": "mkdir", "path": "/a"}), None)
        .await;
    let (status, p) = problem(resp).await;
    assert_eq!(
        (status, p["code"].as_str().unwrap()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let resp = app
        .request(Method::GET, "/v1/list/", Some(&user))
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, StatusCode::FORBIDDEN);
    assert_eq!(tasks_recorded(&app).await, 0);
}

#[tokio::test]
async fn bad_headers_and_parameters_are_bad_requests() {
    let app = TestApp::spawn().await;
    let t = app.admin("acme");
    let long_key = "k".repeat(256);
    for key in ["", "has space", "tab\tkey", long_key.as_str(), "é"] {
        let resp = app
            .request(Method::POST, "/v1/commands", Some(&t))
            .await
            .header("Idempotency-Key", key.as_bytes())
            .json(&json!({"op": "mkdir", "path": "/a"}))
            .send()
            .await
            .unwrap();
        let (status, p) = problem(resp).await;
        assert_eq!(
            (status, p["code"].as_str().unwrap()),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "key {key:?}"
        );
    }
    for url in [
        "/v1/tasks/00000000-0000-0000-0000-000000000000?wait=abc",
        "/v1/list/?limit=0",
        "/v1/list/?limit=5000",
        "/v1/list/?cursor=%%%",
    ] {
        let resp = app
            .request(Method::GET, url, Some(&t))
            .await
            .send()
            .await
            .unwrap();
        let (status, p) = problem(resp).await;
        assert_eq!(
            (status, p["code"].as_str().unwrap()),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{url}"
        );
    }
    let resp = app
        .request(Method::GET, "/v1/tasks/not-a-uuid", Some(&t))
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, StatusCode::NOT_FOUND);
    let resp = app
        .request(Method::GET, "/v1/nope", Some(&t))
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, StatusCode::NOT_FOUND);
    assert_eq!(tasks_recorded(&app).await, 0);
}

#[tokio::test]
async fn request_ids_are_echoed_when_valid_and_replaced_otherwise() {
    let app = TestApp::spawn().await;
    let send = |id: &'static str| {
        let rb = app.http.get(app.url("/healthz")).header("x-request-id", id);
        async move {
            rb.send().await.unwrap().headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(send("abc-123.X_y").await, "abc-123.X_y");
    let replaced = send("bad id <script>").await;
    assert_ne!(replaced, "bad id <script>");
    assert!(!replaced.is_empty());
}

/// A GET written byte for byte, so the request target reaches the server unnormalised.
async fn raw_get(app: &TestApp, target: &str, token: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app.base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(host).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    sock.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn a_principal_over_its_rate_limit_gets_429_with_retry_after() {
    let app = TestApp::spawn_with(
        &[file_engine::Role::Api, file_engine::Role::Projector],
        &[("FE_RATE_LIMIT_PER_MIN", "5")],
    )
    .await;
    let t = app.admin("acme");
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let resp = app
            .request(Method::GET, "/v1/list/", Some(&t))
            .await
            .send()
            .await
            .unwrap();
        statuses.push(resp.status());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry >= 1);
            let (_, p) = problem(resp).await;
            assert_eq!(p["code"], "rate_limited");
        }
    }
    assert_eq!(statuses[..5], [StatusCode::OK; 5]);
    assert_eq!(statuses[5..], [StatusCode::TOO_MANY_REQUESTS; 2]);
    // Another principal of the tenant is not held back by the first one's limit.
    let other = app.token("ops", "acme", &["admin"]);
    let resp = app
        .request(Method::GET, "/v1/list/", Some(&other))
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Health checks are never limited.
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn event_streams_beyond_the_per_process_cap_get_503_and_slots_are_freed() {
    let app = TestApp::spawn_with(
        &[file_engine::Role::Api, file_engine::Role::Projector],
        &[("FE_SSE_MAX_CONNECTIONS", "1")],
    )
    .await;
    let t = app.admin("acme");
    let open = || app.request(Method::GET, "/v1/events", Some(&t));
    let first = open().await.send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = open().await.send().await.unwrap();
    let (status, p) = problem(second).await;
    assert_eq!(
        (status, p["code"].as_str().unwrap()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    drop(first);
    support::eventually(
        "the slot to be freed",
        std::time::Duration::from_secs(30),
        || async {
            open()
                .await
                .send()
                .await
                .map(|r| r.status() == StatusCode::OK)
                .unwrap_or(false)
        },
    )
    .await;
}
