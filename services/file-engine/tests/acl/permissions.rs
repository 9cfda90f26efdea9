//! Each of the seven permissions alone, composite move/copy, and listing filters.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{command_status, grant, mkdirs};
use crate::support::TestApp;

/// What one operation got: let through or not, and the task it started, if any.
struct Outcome {
    op: &'static str,
    allowed: bool,
    task_id: Option<String>,
}

/// Tries every operation as one principal (names derived from `name` keep them apart).
async fn operations(app: &TestApp, token: &str, name: &str) -> Vec<Outcome> {
    let commands = [
        (
            "mkdir",
            json!({"op": "mkdir", "path": format!("/src/new-{name}")}),
        ),
        (
            "delete",
            json!({"op": "delete", "path": format!("/src/del-{name}")}),
        ),
        (
            "move",
            json!({"op": "move", "from": format!("/src/mv-{name}"), "to": format!("/dst/mv-{name}")}),
        ),
        (
            "copy",
            json!({"op": "copy", "from": "/src/cp", "to": format!("/dst/cp-{name}")}),
        ),
    ];
    let mut outcomes = Vec::new();
    for (op, body) in commands {
        let resp = app.post_command(token, &body, None).await;
        let status = resp.status();
        assert!(
            matches!(status, StatusCode::ACCEPTED | StatusCode::FORBIDDEN),
            "{name} {op}: {status}"
        );
        let v: Value = resp.json().await.unwrap();
        let task_id = v["task_id"].as_str().map(str::to_owned);
        outcomes.push(Outcome {
            op,
            allowed: status == StatusCode::ACCEPTED,
            task_id,
        });
    }
    for (op, url) in [("list", "/v1/list/src"), ("stat", "/v1/stat/src/cp")] {
        let status = app.get_json(token, url).await.0;
        assert!(
            matches!(status, StatusCode::OK | StatusCode::FORBIDDEN),
            "{name} {op}: {status}"
        );
        outcomes.push(Outcome {
            op,
            allowed: status == StatusCode::OK,
            task_id: None,
        });
    }
    outcomes
}

#[tokio::test]
async fn each_permission_alone_lets_exactly_its_operations_through() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    mkdirs(&app, "acme", &["/src/cp/inner", "/dst"]).await;
    let all = ["list", "read", "write", "mkdir", "move", "copy", "delete"];
    for p in all {
        mkdirs(
            &app,
            "acme",
            &[&format!("/src/del-{p}"), &format!("/src/mv-{p}")],
        )
        .await;
        grant(&app, &admin, &format!("user:u-{p}"), "/src", &[p], "allow").await;
        // The target side of move and copy: `write` on the target's parent.
        grant(
            &app,
            &admin,
            &format!("user:u-{p}"),
            "/dst",
            &["write"],
            "allow",
        )
        .await;
    }
    let expected = |p: &str, op: &str| match op {
        "copy" => p == "read" || p == "copy",
        "stat" => p == "list" || p == "read",
        _ => p == op,
    };
    let u = |p: &str| app.token(&format!("u-{p}"), "acme", &[]);
    for p in all {
        for outcome in operations(&app, &u(p), p).await {
            assert_eq!(
                outcome.allowed,
                expected(p, outcome.op),
                "permission {p}, operation {}",
                outcome.op
            );
            // What was let through also happens.
            if let Some(id) = outcome.task_id {
                let task = app.wait_task(&u(p), &id).await;
                assert_eq!(task["status"], "succeeded", "{p} {}: {task}", outcome.op);
            }
        }
    }
    assert!(app.is_dir("acme", "/src/new-mkdir").await);
    assert!(!app.exists("acme", "/src/del-delete").await);
    assert!(app.is_dir("acme", "/dst/mv-move").await && !app.exists("acme", "/src/mv-move").await);
    assert!(app.is_dir("acme", "/dst/cp-copy/inner").await);
    assert!(app.is_dir("acme", "/dst/cp-read/inner").await);
    assert!(
        !app.exists("acme", "/src/new-write").await && app.exists("acme", "/src/del-write").await
    );

    // Without `write` on the target's parent, move and copy are refused.
    grant(
        &app,
        &admin,
        "user:nowrite",
        "/src",
        &["move", "copy", "read"],
        "allow",
    )
    .await;
    let nowrite = app.token("nowrite", "acme", &[]);
    let mv = json!({"op": "move", "from": "/src/mv-copy", "to": "/dst/x"});
    let cp = json!({"op": "copy", "from": "/src/cp", "to": "/dst/y"});
    assert_eq!(
        command_status(&app, &nowrite, mv).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        command_status(&app, &nowrite, cp).await,
        StatusCode::FORBIDDEN
    );

    // 403 is decided from the rules before existence: a missing path is 403 without a
    // permission and 404 with one.
    assert_eq!(
        app.get_json(&u("mkdir"), "/v1/stat/src/nope").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get_json(&u("read"), "/v1/stat/src/nope").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn listings_show_only_entries_the_caller_may_list_or_read() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    mkdirs(
        &app,
        "acme",
        &["/shared/a", "/shared/b", "/shared/c", "/shared/d"],
    )
    .await;
    grant(&app, &admin, "user:dana", "/shared", &["list"], "allow").await;
    // b: listing denied but readable -> shown; c: both denied -> hidden; d: only list denied
    // and nothing else -> hidden.
    grant(&app, &admin, "user:dana", "/shared/b", &["list"], "deny").await;
    grant(&app, &admin, "user:dana", "/shared/b", &["read"], "allow").await;
    grant(
        &app,
        &admin,
        "user:dana",
        "/shared/c",
        &["list", "read"],
        "deny",
    )
    .await;
    grant(&app, &admin, "user:dana", "/shared/d", &["list"], "deny").await;
    let dana = app.token("dana", "acme", &[]);
    let (status, listing) = app.get_json(&dana, "/v1/list/shared").await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    let shown: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(shown, ["/shared/a", "/shared/b"]);
    let (_, full) = app.get_json(&admin, "/v1/list/shared").await;
    assert_eq!(full["entries"].as_array().unwrap().len(), 4);
}
