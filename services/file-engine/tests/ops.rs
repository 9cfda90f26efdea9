//! Operational endpoints and the OpenAPI document.

mod support;

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
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

/// The operations `docs/API.md` names, as (METHOD, path with `{}` for every parameter):
/// every "`METHOD /path`" span, plus its two prose forms ("`HEAD` likewise" after the file
/// download, and "`GET` on that URL" for a link's `/v1/links/<token>`).
fn documented_operations(api_md: &str) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for span in api_md.split('`').skip(1).step_by(2) {
        let Some((method, rest)) = span.split_once(' ') else {
            continue;
        };
        if !["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"].contains(&method) {
            continue;
        }
        if !rest.starts_with('/') {
            continue;
        }
        let path = rest.split(['?', '[', ' ']).next().unwrap();
        ops.insert((method.to_owned(), normalise(path)));
    }
    if api_md.contains("`HEAD` likewise") {
        ops.insert(("HEAD".into(), normalise("/v1/files/{path}")));
    }
    if api_md.contains("\"/v1/links/<token>\"") && api_md.contains("`GET` on that URL") {
        ops.insert(("GET".into(), normalise("/v1/links/{token}")));
    }
    ops
}

/// `/v1/acl/rules/{rule_id}` → `/v1/acl/rules/{}` (parameter names may differ).
fn normalise(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' | '<' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' | '>' => in_param = false,
            _ if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

/// Documented in API.md but not served yet (none today). The test fails as soon as one of
/// them is served, so this list cannot go stale.
const NOT_YET_SERVED: &[(&str, &str)] = &[];
/// Served but not (yet) in API.md: the delivery log of a subscription, documented in
/// services/notifier/README.md. Must be served; API.md should name it (shared contract).
const SERVED_BEYOND_API_MD: &[(&str, &str)] = &[("GET", "/v1/subscriptions/{}/deliveries")];

/// The served document against the in-repository contract, both ways, and its shared
/// conventions: unique operation ids, problem+json errors, the statuses the server returns.
#[tokio::test]
async fn openapi_matches_api_md_both_ways_and_describes_errors_as_served() {
    let app = TestApp::spawn().await;
    let resp = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));

    let mut served = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(!path.contains('*'), "axum template leaked into {path}");
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_owned()), "operationId {id} used twice");
            served.insert((method.to_uppercase(), normalise(path)));
            for (status, response) in op["responses"].as_object().unwrap() {
                let error = status == "default" || status.starts_with(['4', '5']);
                let content = response["content"].as_object();
                if !error {
                    continue;
                }
                if method == "head" {
                    assert!(
                        content.is_none_or(|c| c.is_empty()),
                        "HEAD {path} {status} has a body"
                    );
                } else {
                    let types: Vec<&String> =
                        content.map(|c| c.keys().collect()).unwrap_or_default();
                    assert_eq!(
                        types,
                        ["application/problem+json"],
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }

    // The contract, read from the repository's own copy only.
    let api_md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/API.md"))
        .expect("docs/API.md");
    let documented = documented_operations(&api_md);
    assert!(
        documented.len() >= 25,
        "API.md parsing found too little: {documented:?}"
    );
    let pair = |(m, p): &(&str, &str)| (m.to_string(), p.to_string());
    let not_yet: BTreeSet<_> = NOT_YET_SERVED.iter().map(pair).collect();
    let beyond: BTreeSet<_> = SERVED_BEYOND_API_MD.iter().map(pair).collect();
    for op in &not_yet {
        assert!(
            documented.contains(op) && !served.contains(op),
            "{op:?}: update NOT_YET_SERVED"
        );
    }
    for op in &beyond {
        assert!(
            served.contains(op) && !documented.contains(op),
            "{op:?}: update SERVED_BEYOND_API_MD"
        );
    }
    let undocumented: Vec<_> = served
        .difference(&documented)
        .filter(|o| !beyond.contains(*o))
        .collect();
    assert!(
        undocumented.is_empty(),
        "served but not in API.md: {undocumented:?}"
    );
    let unserved: Vec<_> = documented
        .difference(&served)
        .filter(|o| !not_yet.contains(*o))
        .collect();
    assert!(
        unserved.is_empty(),
        "in API.md but not served: {unserved:?}"
    );

    // Every documented operation is routed, and without a token answers a status its
    // operation lists (401 for every protected one), never the router's fallback.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let concrete = path
                .replace("{path}", "docs/a.txt")
                .replace("{token}", "not-a-link")
                .replace(['{', '}'], "")
                .replace("rule_id", "00000000-0000-0000-0000-000000000000")
                .replace("task_id", "00000000-0000-0000-0000-000000000000")
                .replace("/id", "/00000000-0000-0000-0000-000000000000");
            let method_ = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = app
                .http
                .request(method_, app.url(&concrete))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16().to_string();
            let listed = op["responses"].get(&status).is_some();
            let body = resp.text().await.unwrap_or_default();
            assert!(
                !body.contains("no such resource"),
                "{method} {concrete} is not routed"
            );
            assert!(
                listed,
                "{method} {concrete} answered {status}, not in the document"
            );
            if op
                .get("security")
                .is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty()))
            {
                assert_eq!(status, "401", "{method} {concrete} without a token");
            }
        }
    }

    // The cases the issue names, against the server.
    let files = &doc["paths"]["/v1/files/{path}"]["head"]["responses"];
    assert!(
        files.get("401").is_some() && files.get("400").is_some(),
        "{files}"
    );
    assert!(doc["paths"]["/v1/links"]["post"]["responses"]
        .get("415")
        .is_some());
    let t = app.admin("acme");
    let head = app
        .request(Method::HEAD, "/v1/files/a%2Fb", Some(&t))
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::BAD_REQUEST);
    let link = app
        .request(Method::POST, "/v1/links", Some(&t))
        .await
        .header("content-type", "text/plain")
        .body("{\"path\": \"/a\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        link.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
}
