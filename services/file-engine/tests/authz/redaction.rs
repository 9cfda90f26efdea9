//! Link tokens never reach logs or spans: the request span records `/v1/links/<redacted>`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tracing_subscriber::fmt::format::FmtSpan;

use super::support::TestApp;

/// Everything the process traces, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_link_token_is_recorded_redacted_in_the_request_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    // The test binary's only global subscriber: it records every span with its fields.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_span_events(FmtSpan::NEW)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("no other global subscriber in this test binary");

    let app = TestApp::spawn_with_scanner(&[]).await;
    let admin = app.admin("acme");
    let done = app
        .upload_and_wait(&admin, "/shared.txt", b"linked bytes".to_vec())
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let link: Value = app
        .request(Method::POST, "/v1/links", Some(&admin))
        .await
        .json(&json!({"path": "/shared.txt", "expires_in_s": 300}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = link["url"].as_str().unwrap().to_owned();
    let token = url.trim_start_matches("/v1/links/").to_owned();
    assert!(token.len() > 20, "{url}");
    let served = app.http.get(app.url(&url)).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    // The same path with a tampered token is a request too.
    let tampered = format!("{url}x");
    let refused = app.http.get(app.url(&tampered)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let text = captured.text();
    assert!(
        text.contains("/v1/links/<redacted>"),
        "the link requests' spans were recorded"
    );
    assert!(
        !text.contains(&token),
        "a link token reached the trace output"
    );
}
