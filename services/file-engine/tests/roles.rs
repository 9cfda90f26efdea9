//! Every role observable as deployed: each role runs as its own `file-engine <role>` process
//! (the binary under test, not an in-process start), serves `/healthz`, `/readyz` and
//! `/metrics` on its ops address, and after real traffic (commands, a scanned upload, a
//! download, a refused upload, an ACL grant, a webhook delivery, a refused token) the union of the scrapes holds every metric
//! the alert rules and the dashboard query; each role's own alert metrics are on that role's
//! endpoint, where its pods are scraped.

mod support;

#[path = "notifications/receiver.rs"]
#[allow(dead_code)] // shared with the notification tests, which use all of it
mod receiver;

use std::collections::{BTreeSet, HashMap};
use std::process::Stdio;
use std::time::Duration;

use receiver::{Behaviour, Receiver};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{eventually, TestApp};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SECRET_KEY: &str = "test-webhook-key-0123456789abcdef0123456789";
const ROLES: [&str; 5] = ["api", "projector", "worker", "scanner", "notifier"];

/// One `file-engine <role>` process and the address its log says it listens on.
struct RoleProcess {
    role: &'static str,
    addr: String,
    _child: Child,
}

/// Starts `file-engine <role>` with `env` and waits (deadline 60 s) for its log line
/// announcing the listener (`api listening` for the API, `ops listening` for the others).
async fn spawn_role(role: &'static str, env: &HashMap<String, String>) -> RoleProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_file-engine"))
        .arg(role)
        .env_clear()
        .envs(env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn file-engine");
    let wanted = if role == "api" {
        "api listening"
    } else {
        "ops listening"
    };
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let find = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["fields"]["message"] == wanted {
                return v["fields"]["addr"].as_str().unwrap().to_owned();
            }
        }
        panic!("{role} exited before listening");
    };
    let addr = tokio::time::timeout(Duration::from_secs(60), find)
        .await
        .unwrap_or_else(|_| panic!("{role} did not listen within 60 s"));
    // Keep draining the log so the process never blocks on a full pipe; warnings and errors
    // go to the test's output.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"") {
                eprintln!("{role}: {line}");
            }
        }
    });
    RoleProcess {
        role,
        addr,
        _child: child,
    }
}

/// The metric names the alert rules' expressions use.
fn alert_metrics() -> BTreeSet<String> {
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/prometheus/file-engine-rules.yaml"
    ))
    .expect("alert rules");
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .flat_map(metric_names)
        .collect()
}

/// The metric names the dashboard's queries use.
fn dashboard_metrics() -> BTreeSet<String> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/grafana/file-engine.json"
        ))
        .expect("dashboard"),
    )
    .expect("dashboard JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(!exprs.is_empty(), "the dashboard has no queries");
    exprs.iter().flat_map(|e| metric_names(e)).collect()
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// `fe_*` identifiers of a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("fe_"))
        .map(str::to_owned)
        .collect()
}

/// The metric names of the README's metrics table.
fn documented_metrics() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README");
    let table = readme
        .split("### Metrics")
        .nth(1)
        .expect("a metrics section in the README");
    table
        .lines()
        .take_while(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with("| `fe_"))
        .flat_map(|l| metric_names(l.split(" | ").next().unwrap()))
        .collect()
}

/// A histogram's or summary's base name.
fn base_name(sample: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| sample.strip_suffix(s))
        .unwrap_or(sample)
}

/// Names of the samples in a Prometheus text exposition.
fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_role_serves_probes_and_the_metrics_alerts_and_dashboard_use() {
    let clamd = testkit::clamd::Clamd::start().await.expect("clamd");
    // The test process itself runs no role; it owns the servers and the typed client.
    let mut app = TestApp::spawn_with(&[], &[]).await;
    let env = app.env(&[
        ("FE_LOG_LEVEL", "info"),
        ("FE_CLAMD_ADDR", clamd.addr.as_str()),
        ("FE_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("FE_WEBHOOK_SECRET_KEY", SECRET_KEY),
    ]);
    let mut processes = Vec::new();
    for role in ROLES {
        processes.push(spawn_role(role, &env).await);
    }
    app.base = format!("http://{}", processes[0].addr);
    let http = reqwest::Client::new();

    // Probes of every role.
    for p in &processes {
        let health = http
            .get(format!("http://{}/healthz", p.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK, "{} /healthz", p.role);
        let (url, http) = (&format!("http://{}/readyz", p.addr), &http);
        eventually(
            &format!("{} /readyz", p.role),
            Duration::from_secs(30),
            || async move {
                http.get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK)
            },
        )
        .await;
    }

    // Traffic through every role.
    let admin = app.admin("acme");
    let hook = Receiver::start(Behaviour::Statuses(vec![204])).await;
    let resp = app
        .request(Method::POST, "/v1/subscriptions", Some(&admin))
        .await
        .json(&json!({"url": hook.url("/hook")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    app.run(&admin, json!({"op": "mkdir", "path": "/ops"}))
        .await;
    let task = app
        .upload_and_wait(&admin, "/ops/report.txt", b"quarterly figures".to_vec())
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let download = app
        .request(Method::GET, "/v1/files/ops/report.txt", Some(&admin))
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    let html = app
        .upload(
            &admin,
            "/ops/page.html",
            b"<html><script>x</script></html>".to_vec(),
            &[],
        )
        .await;
    assert_eq!(html.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // In the tenant that has a subscription: two aggregate kinds keyed by the tenant (a
    // regression: they once shared a `Nats-Msg-Id`, and the second was refused).
    let grant = app
        .request(Method::POST, "/v1/acl/rules", Some(&admin))
        .await
        .json(&json!({"subject": "user:bob", "path": "/ops", "permissions": ["read"], "effect": "allow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        grant.status(),
        StatusCode::CREATED,
        "{}",
        grant.text().await.unwrap_or_default()
    );
    let refused = app
        .request(Method::GET, "/v1/stat/ops", Some("not-a-token"))
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    eventually("the webhook delivery", Duration::from_secs(60), || async {
        !hook.received().is_empty()
    })
    .await;

    // Scrape every role until the traffic's metrics are all there (recording is
    // asynchronous to the responses, e.g. the notifier records after the receiver answered).
    let wanted: BTreeSet<String> = alert_metrics()
        .union(&dashboard_metrics())
        .cloned()
        .collect();
    assert!(wanted.contains("fe_projector_lag_commits"), "{wanted:?}");
    let mut scrapes: HashMap<&str, String> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        for p in &processes {
            let resp = http
                .get(format!("http://{}/metrics", p.addr))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{} /metrics", p.role);
            scrapes.insert(p.role, resp.text().await.unwrap());
        }
        let found: BTreeSet<String> = scrapes.values().flat_map(|s| exposed(s)).collect();
        let missing: Vec<&String> = wanted.iter().filter(|m| !found.contains(*m)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics used by alerts or the dashboard but served by no role: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Each role's own alert metrics are served by that role, and it says who it is.
    let owners = [
        ("api", "fe_http_requests_total"),
        ("api", "fe_auth_failures_total"),
        ("projector", "fe_projector_lag_commits"),
        ("projector", "fe_projector_errors_total"),
        ("worker", "fe_tasks_dead_lettered_total"),
        ("worker", "fe_uploads_given_up_total"),
        ("scanner", "fe_scanner_clamd_unavailable_total"),
        ("notifier", "fe_webhook_dead_total"),
    ];
    for (role, metric) in owners {
        assert!(
            exposed(&scrapes[role]).contains(metric),
            "{metric} is not on the {role}'s /metrics"
        );
    }
    // The README's table documents every metric served, and each documented metric is read by
    // an alert or a dashboard panel.
    let documented = documented_metrics();
    let used: BTreeSet<String> = wanted.iter().map(|m| base_name(m).to_owned()).collect();
    for m in &documented {
        assert!(
            used.contains(m),
            "{m} is documented but no alert or panel reads it"
        );
    }
    for sample in scrapes.values().flat_map(|s| exposed(s)) {
        assert!(
            documented.contains(base_name(&sample)),
            "{sample} is served but not in the README's metrics table"
        );
    }
    for role in ROLES {
        assert!(
            scrapes[role].contains(&format!("fe_build_info{{role=\"{role}\"")),
            "{role} has no fe_build_info"
        );
        assert!(
            !scrapes[role].contains("acme"),
            "tenant name in {role} metrics"
        );
    }
    app.stop_services().await;
}
