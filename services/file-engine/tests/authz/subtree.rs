//! Recursive move, copy and delete, and `overwrite: true`, need their permission on every
//! entry of the subtree they touch; the worker decides again when the task runs.

use file_engine::Role;
use reqwest::StatusCode;
use serde_json::json;

use super::support::TestApp;
use super::{command_status, grant, mkdirs};

#[tokio::test]
async fn a_copy_of_a_tree_with_an_unreadable_entry_inside_is_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    let bob = app.token("bob", "acme", &[]);
    mkdirs(&app, &admin, &["/shared/hr/pay", "/shared/pub", "/bob"]).await;
    grant(
        &app,
        &admin,
        "user:bob",
        "/shared",
        &["read", "copy", "list"],
        "allow",
    )
    .await;
    grant(&app, &admin, "user:bob", "/shared/hr", &["read"], "deny").await;
    grant(
        &app,
        &admin,
        "user:bob",
        "/bob",
        &["write", "read", "list"],
        "allow",
    )
    .await;

    let (status, problem) = command_status(
        &app,
        &bob,
        json!({"op": "copy", "from": "/shared", "to": "/bob/copy"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(problem["code"], "forbidden");
    assert!(
        !problem.to_string().contains("/shared/hr"),
        "the refusal must not name entries inside the tree: {problem}"
    );
    // A subtree without the denied entry copies fine: the refusal was about hr only.
    let task = app
        .run(
            &bob,
            json!({"op": "copy", "from": "/shared/pub", "to": "/bob/pub"}),
        )
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert!(!app.exists("acme", "/bob/copy").await);
}

#[tokio::test]
async fn a_recursive_delete_with_a_protected_entry_inside_is_refused_and_deletes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    let bob = app.token("bob", "acme", &[]);
    mkdirs(&app, &admin, &["/area/keep/deep", "/area/scratch"]).await;
    grant(&app, &admin, "user:bob", "/area", &["delete"], "allow").await;
    grant(&app, &admin, "user:bob", "/area/keep", &["delete"], "deny").await;

    let (status, problem) = command_status(
        &app,
        &bob,
        json!({"op": "delete", "path": "/area", "recursive": true}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert!(app.is_dir("acme", "/area/keep/deep").await);
    assert!(app.is_dir("acme", "/area/scratch").await);
    // A deny on a path where nothing exists does not block: only entries count.
    grant(
        &app,
        &admin,
        "user:bob",
        "/area/scratch/ghost",
        &["delete"],
        "deny",
    )
    .await;
    let task = app
        .run(
            &bob,
            json!({"op": "delete", "path": "/area/scratch", "recursive": true}),
        )
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert!(!app.exists("acme", "/area/scratch").await);
}

#[tokio::test]
async fn a_recursive_move_needs_move_on_every_entry() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    let bob = app.token("bob", "acme", &[]);
    mkdirs(&app, &admin, &["/proj/locked", "/dst"]).await;
    grant(&app, &admin, "role:staff", "/proj", &["move"], "allow").await;
    grant(&app, &admin, "*", "/proj/locked", &["move"], "deny").await;
    grant(&app, &admin, "user:bob", "/dst", &["write"], "allow").await;
    let staff = app.token("bob", "acme", &["staff"]);
    let (status, _) = command_status(
        &app,
        &staff,
        json!({"op": "move", "from": "/proj", "to": "/dst/proj"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(app.is_dir("acme", "/proj/locked").await);
    // Without the role bob has no `move` at all.
    let (status, _) = command_status(
        &app,
        &bob,
        json!({"op": "move", "from": "/proj/locked", "to": "/dst/x"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn overwrite_needs_write_on_the_replaced_file_and_delete_inside_a_replaced_directory() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    let bob = app.token("bob", "acme", &[]);
    mkdirs(
        &app,
        &admin,
        &["/src/a", "/src/b", "/dst/locked", "/dst/tree/keep"],
    )
    .await;
    grant(
        &app,
        &admin,
        "user:bob",
        "/",
        &["move", "copy", "read", "write", "delete"],
        "allow",
    )
    .await;
    grant(&app, &admin, "user:bob", "/dst/locked", &["write"], "deny").await;
    grant(
        &app,
        &admin,
        "user:bob",
        "/dst/tree/keep",
        &["delete"],
        "deny",
    )
    .await;

    for (op, from, to) in [
        ("copy", "/src/a", "/dst/locked"),
        ("move", "/src/a", "/dst/locked"),
        ("copy", "/src/b", "/dst/tree"),
        ("move", "/src/b", "/dst/tree"),
    ] {
        let (status, problem) = command_status(
            &app,
            &bob,
            json!({"op": op, "from": from, "to": to, "overwrite": true}),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{op} {from} -> {to}: {problem}"
        );
    }
    assert!(app.is_dir("acme", "/dst/tree/keep").await);
    assert!(app.is_dir("acme", "/src/a").await);
}

/// How bob's permission changes between the 202 and the worker.
enum Withdrawal {
    /// The rule that allowed the delete is revoked.
    RevokeTheRule,
    /// A deny is added on an entry inside the subtree.
    DenyInside,
}

/// Bob's recursive delete of `/area` is accepted while no worker runs, then his permission
/// changes as `how` says; when the worker runs it, the task fails `forbidden` and deletes
/// nothing.
async fn a_recursive_delete_rechecked_when_it_runs(how: Withdrawal) {
    // No worker yet: the commands are accepted and wait in the log.
    let app = TestApp::spawn_with(&[Role::Api, Role::Projector], &[]).await;
    let admin = app.admin("acme");
    let bob = app.token("bob", "acme", &[]);
    let rule = grant(&app, &admin, "user:bob", "/area", &["delete"], "allow").await;
    let mkdir = app
        .submit(
            &admin,
            json!({"op": "mkdir", "path": "/area/keep/x", "parents": true}),
        )
        .await;
    let delete = app
        .submit(
            &bob,
            json!({"op": "delete", "path": "/area", "recursive": true}),
        )
        .await;
    match how {
        Withdrawal::RevokeTheRule => {
            let status = app
                .request(
                    reqwest::Method::DELETE,
                    &format!("/v1/acl/rules/{rule}"),
                    Some(&admin),
                )
                .await
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, StatusCode::NO_CONTENT);
        }
        Withdrawal::DenyInside => {
            grant(&app, &admin, "user:bob", "/area/keep", &["delete"], "deny").await;
        }
    }

    let worker = file_engine::start(&app.platform, &[Role::Worker])
        .await
        .expect("worker");
    let created = app.wait_task(&admin, &mkdir).await;
    assert_eq!(created["status"], "succeeded", "{created}");
    let task = app.wait_task(&bob, &delete).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["error"]["code"], "forbidden", "{task}");
    assert!(app.is_dir("acme", "/area/keep/x").await);
    worker.shutdown().await;
}

#[tokio::test]
async fn a_task_whose_permission_is_withdrawn_before_it_runs_fails_forbidden() {
    a_recursive_delete_rechecked_when_it_runs(Withdrawal::RevokeTheRule).await;
}

#[tokio::test]
async fn a_deny_added_inside_the_subtree_before_the_task_runs_fails_it_forbidden() {
    a_recursive_delete_rechecked_when_it_runs(Withdrawal::DenyInside).await;
}

#[tokio::test]
async fn overwriting_a_file_the_caller_may_not_write_is_refused_as_a_put_to_it_is() {
    let app = TestApp::spawn_with_scanner(&[]).await;
    let admin = app.admin("acme");
    let bob = app.token("bob", "acme", &[]);
    for (path, bytes) in [
        ("/dst/secret.txt", "the admin's"),
        ("/src/mine.txt", "bob's"),
    ] {
        let done = app
            .upload_and_wait(&admin, path, bytes.as_bytes().to_vec())
            .await;
        assert_eq!(done["status"], "succeeded", "{path}: {done}");
    }
    grant(
        &app,
        &admin,
        "user:bob",
        "/",
        &["move", "copy", "read", "write", "delete", "list"],
        "allow",
    )
    .await;
    grant(
        &app,
        &admin,
        "user:bob",
        "/dst/secret.txt",
        &["write"],
        "deny",
    )
    .await;

    let put = app
        .upload(&bob, "/dst/secret.txt", b"bob's".to_vec(), &[])
        .await;
    assert_eq!(put.status(), StatusCode::FORBIDDEN);
    for op in ["copy", "move"] {
        let (status, problem) = command_status(
            &app,
            &bob,
            json!({"op": op, "from": "/src/mine.txt", "to": "/dst/secret.txt", "overwrite": true}),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{op}: {problem}");
    }
    // Nothing was replaced, and bob's own file is where it was.
    for (path, expected) in [
        ("/dst/secret.txt", "the admin's"),
        ("/src/mine.txt", "bob's"),
    ] {
        let resp = app
            .request(
                reqwest::Method::GET,
                &format!("/v1/files{path}"),
                Some(&admin),
            )
            .await
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(resp.text().await.unwrap(), expected, "{path}");
    }
}
