//! Bounded HTTP resources: clients that send nothing, never finish their headers or stall their bodies are
//! cut off, connections past `FE_HTTP_MAX_CONNECTIONS` wait for a free slot, open event streams are capped per principal, per tenant and per process, and
//! `/readyz` probes the dependencies at most once per second however often it is asked.

mod support;

use std::time::{Duration, Instant};

use file_engine::Role;
use reqwest::StatusCode;
use serde_json::Value;
use support::{eventually, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn app_with(extra: &[(&str, &str)]) -> TestApp {
    TestApp::spawn_with(&[Role::Api, Role::Projector], extra).await
}

/// Reads until the server closes the connection (or `limit` passes); returns what it sent.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut received)).await;
    match read {
        Ok(_) => Some(String::from_utf8_lossy(&received).into_owned()),
        Err(_) => None,
    }
}

/// Connects to the API with `FE_HTTP_HEADER_TIMEOUT_S=1` and the only connection slot,
/// sends `sent` and nothing more, and shows the server hangs up within a few seconds and then
/// serves a client that sends its request at once (the slot is free again).
async fn cut_off_after_sending(sent: &[u8]) {
    let app = app_with(&[
        ("FE_HTTP_HEADER_TIMEOUT_S", "1"),
        ("FE_HTTP_MAX_CONNECTIONS", "1"),
    ])
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut client = TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    client.write_all(sent).await.unwrap();
    let closed = read_until_closed(&mut client, Duration::from_secs(10)).await;
    assert!(
        closed.is_some(),
        "a client that sent {sent:?} is still connected after 10 s"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let resp = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    cut_off_after_sending(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
}

#[tokio::test]
async fn a_client_that_connects_and_sends_nothing_is_disconnected_and_frees_its_slot() {
    cut_off_after_sending(b"").await;
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let app = app_with(&[
        ("FE_HTTP_MAX_CONNECTIONS", "2"),
        ("FE_HTTP_HEADER_TIMEOUT_S", "60"),
    ])
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // Two clients hold the only two connections, each in the middle of its headers.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    let url = app.url("/healthz");
    let mut third = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status()) });
    let waited = tokio::time::timeout(Duration::from_secs(1), &mut third).await;
    assert!(
        waited.is_err(),
        "a third connection was served past the cap of 2: {waited:?}"
    );
    // One holder leaves: its slot goes to the waiting client, which is then served.
    drop(held.pop());
    let served = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("the waiting client was not served after a slot freed")
        .unwrap()
        .unwrap();
    assert_eq!(served, StatusCode::OK);
}

#[tokio::test]
async fn a_stalled_request_body_fails_as_a_client_error() {
    let app = app_with(&[("FE_HTTP_BODY_IDLE_TIMEOUT_S", "1")]).await;
    let token = app.admin("acme");
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/commands HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\nConnection: close\r\n\r\n{{\"op\":"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stalled, Duration::from_secs(10))
        .await
        .expect("an answer within 10 s");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("\"code\":\"bad_request\""), "{answer}");
    // Nothing was recorded for it.
    let (_, tasks) = app.get_json(&token, "/v1/dead-letters").await;
    assert_eq!(tasks["dead_letters"], serde_json::json!([]));
}

/// Opens `GET /v1/events` and returns the response (a stream stays open while it is held).
async fn open_stream(app: &TestApp, token: &str) -> reqwest::Response {
    app.http
        .get(app.url("/v1/events"))
        .bearer_auth(token)
        .send()
        .await
        .expect("events")
}

async fn problem_code(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    let retry_after = resp.headers().get("retry-after").is_some();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status == StatusCode::TOO_MANY_REQUESTS {
        assert!(retry_after, "429 without Retry-After");
    }
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn open_event_streams_are_capped_per_principal_tenant_and_process() {
    let app = app_with(&[
        ("FE_SSE_MAX_PER_PRINCIPAL", "2"),
        ("FE_SSE_MAX_PER_TENANT", "3"),
        ("FE_SSE_MAX_CONNECTIONS", "5"),
    ])
    .await;
    let a1 = app.token("u1", "a", &["admin"]);
    let a2 = app.token("u2", "a", &["admin"]);
    let a3 = app.token("u3", "a", &["admin"]);
    let b1 = app.token("u1", "b", &["admin"]);
    let b2 = app.token("u2", "b", &["admin"]);
    let c1 = app.token("u1", "c", &["admin"]);

    let first = open_stream(&app, &a1).await;
    assert_eq!(first.status(), StatusCode::OK);
    let _second = open_stream(&app, &a1).await;
    let over_principal = problem_code(open_stream(&app, &a1).await).await;
    assert_eq!(
        over_principal,
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited".into())
    );
    // The same subject in another tenant is another principal.
    let _b1 = open_stream(&app, &b1).await;
    let a2_stream = open_stream(&app, &a2).await;
    assert_eq!(a2_stream.status(), StatusCode::OK);
    let over_tenant = problem_code(open_stream(&app, &a3).await).await;
    assert_eq!(
        over_tenant,
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited".into())
    );
    let b2_stream = open_stream(&app, &b2).await;
    assert_eq!(b2_stream.status(), StatusCode::OK);
    // Five streams are open: the process cap refuses a tenant that has none.
    let over_process = problem_code(open_stream(&app, &c1).await).await;
    assert_eq!(
        over_process,
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    );

    // A closed stream gives its slots back.
    drop(first);
    eventually(
        "the closed stream's slot to be free",
        Duration::from_secs(10),
        || async { open_stream(&app, &a1).await.status() == StatusCode::OK },
    )
    .await;
}

/// The value of a counter in the Prometheus text (0 when not yet registered).
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn readiness_is_probed_at_most_once_per_second() {
    let app = app_with(&[]).await;
    let metrics = || async {
        let text = reqwest::get(app.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        counter(&text, "fe_readiness_probes_total")
    };
    let before = metrics().await;
    let started = Instant::now();
    let answers =
        futures::future::join_all((0..50).map(|_| reqwest::get(app.url("/readyz")))).await;
    for answer in answers {
        assert_eq!(answer.unwrap().status(), StatusCode::OK);
    }
    let probes = metrics().await - before;
    let windows = started.elapsed().as_secs_f64().ceil() + 1.0;
    assert!(
        probes >= 1.0 && probes <= windows,
        "{probes} probes for 50 requests"
    );
}
