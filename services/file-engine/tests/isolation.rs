//! Isolation between tenants: no command of one tenant can leave the read models a state they
//! cannot hold (path limits over whole subtrees), and a commit that cannot be projected parks
//! only its own tenant.

mod support;

use file_engine::{start, Role};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::TestApp;

/// A 200-byte directory name with a distinguishing suffix.
fn long(n: u8) -> String {
    format!("{}{n}", "d".repeat(199))
}

/// The trigger of issue 14: directories with long names moved into each other. Each path in
/// the request is valid, but the subtree would land over 1024 bytes at the target. The task
/// fails with `path_invalid` when the catalogue did not know the subtree at request time, the
/// request is refused with 400 once it does, and another tenant's work goes on throughout.
#[tokio::test]
async fn nested_move_over_the_path_limit_fails_with_a_stable_code_and_others_go_on() {
    // No worker yet: the deep tree is still only requested when the move is accepted, so the
    // request-time check cannot see it and the execution-time check must catch it.
    let app = TestApp::spawn_with(&[Role::Api, Role::Projector], &[]).await;
    let t = app.admin("deep");
    let other = app.admin("bystander");
    let deep = format!("/{}/{}/{}/{}", long(1), long(2), long(3), long(6));
    let target_parent = format!("/{}/{}", long(4), long(5));
    let target = format!("{target_parent}/{}", long(1));
    let mkdir_deep = app
        .submit(&t, json!({"op": "mkdir", "path": deep, "parents": true}))
        .await;
    let mkdir_target = app
        .submit(
            &t,
            json!({"op": "mkdir", "path": target_parent, "parents": true}),
        )
        .await;
    let moved = app
        .submit(
            &t,
            json!({"op": "move", "from": format!("/{}", long(1)), "to": target}),
        )
        .await;
    let workers = start(&app.platform, &[Role::Worker]).await.expect("worker");

    assert_eq!(app.wait_task(&t, &mkdir_deep).await["status"], "succeeded");
    assert_eq!(
        app.wait_task(&t, &mkdir_target).await["status"],
        "succeeded"
    );
    let failed = app.wait_task(&t, &moved).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "path_invalid", "{failed}");
    // Nothing moved, on disk or in the catalogue.
    assert!(app.disk("deep", &deep).is_dir());
    let (status, _) = app
        .get_json(&t, &format!("/v1/stat{}", url_path(&target)))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Another tenant's commands keep completing.
    let done = app
        .run(
            &other,
            json!({"op": "mkdir", "path": "/still/here", "parents": true}),
        )
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // Now the catalogue knows the subtree: the same move and a copy are refused at once.
    for op in ["move", "copy"] {
        let body = json!({"op": op, "from": format!("/{}", long(1)), "to": target});
        let resp = app.post_command(&t, &body, None).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{op}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["code"], "path_invalid", "{problem}");
        assert!(!problem["detail"].as_str().unwrap().contains(&long(1)));
    }
    // A move of the same subtree that fits is accepted and succeeds.
    let fits = app
        .run(
            &t,
            json!({"op": "move", "from": format!("/{}", long(1)), "to": "/short"}),
        )
        .await;
    assert_eq!(fits["status"], "succeeded", "{fits}");
    workers.shutdown().await;
}

/// The schema enforces the domain's limits itself: a path over 1024 bytes cannot be stored,
/// whatever code tries.
#[tokio::test]
async fn the_schema_refuses_paths_the_domain_refuses() {
    let app = TestApp::spawn_with(&[], &[]).await;
    let too_long = format!(
        "/{}/{}/{}/{}/{}/{}",
        long(1),
        long(2),
        long(3),
        long(4),
        long(5),
        long(6)
    );
    assert!(too_long.len() > 1024);
    let err = sqlx::query(
        "INSERT INTO entries (tenant, path, parent, name, kind, status, modified_at, updated_seq)
         VALUES ('acme', $1, '/', 'x', 'dir', 'available', now(), 1)",
    )
    .bind(&too_long)
    .execute(&app.platform.pool)
    .await
    .expect_err("an over-long path was stored");
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("23514"), "{err}");
    let name_too_long = sqlx::query(
        "INSERT INTO entries (tenant, path, parent, name, kind, status, modified_at, updated_seq)
         VALUES ('acme', '/x', '/', $1, 'dir', 'available', now(), 1)",
    )
    .bind("n".repeat(256))
    .execute(&app.platform.pool)
    .await;
    assert!(name_too_long.is_err());
}

/// Percent-encodes each segment of a path for use in a URL.
fn url_path(path: &str) -> String {
    path.split('/')
        .map(|s| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>())
        .collect::<Vec<_>>()
        .join("/")
}
