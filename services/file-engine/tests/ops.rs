//! Operational endpoints and the OpenAPI document.

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use support::TestApp;

#[tokio::test]
async fn health_readiness_and_metrics_need_no_token() {
    let app = TestApp::spawn().await;
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["postgres"], true);

    let t = app.admin("acme");
    app.run(&t, serde_json::json!({"op": "mkdir", "path": "/m"}))
        .await;
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("fe_http_requests_total"), "{metrics}");
    assert!(metrics.contains("fe_tasks_requested_total"));
    assert!(
        !metrics.contains("acme"),
        "tenant names must not appear in metrics"
    );
}

#[tokio::test]
async fn readiness_fails_when_nats_is_down() {
    let mut app = TestApp::spawn().await;
    app.nats.stop().await;
    support::eventually(
        "readyz to report 503",
        std::time::Duration::from_secs(20),
        || async {
            app.http
                .get(app.url("/readyz"))
                .send()
                .await
                .map(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE)
                .unwrap_or(false)
        },
    )
    .await;
}

#[tokio::test]
async fn openapi_describes_the_implemented_paths_of_api_md() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/commands", "post"),
        ("/v1/tasks/{id}", "get"),
        ("/v1/stat/{path}", "get"),
        ("/v1/list/{path}", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from OpenAPI"
        );
    }
    // Every path the document names must be one API.md names.
    // The repository's own copy of the contract: nothing here reads outside the repository.
    let api_md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/API.md"))
        .expect("docs/API.md");
    for path in paths.keys() {
        let prefix = path.split('{').next().unwrap().trim_end_matches('/');
        assert!(api_md.contains(prefix), "{path} is not in API.md");
    }
}
