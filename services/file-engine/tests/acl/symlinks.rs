//! Symlinks planted in tenant A's storage tree, pointing outside the storage root and into
//! tenant B's tree: commands through them fail with a task error code, never read foreign
//! data into A's tree, and never change anything outside A's tree.

use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::{json, Value};

use super::mkdirs;
use crate::support::TestApp;

const SECRET: &[u8] = b"host secret: must never be read";
const B_SECRET: &[u8] = b"tenant beta's data";

/// Whether any regular file below `dir` (symlinks not followed) holds `needle`.
fn tree_holds(dir: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let Ok(kind) = e.file_type() else {
            return false;
        };
        if kind.is_dir() {
            tree_holds(&e.path(), needle)
        } else if kind.is_file() {
            std::fs::read(e.path()).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        } else {
            false
        }
    })
}

/// Runs a command as A's admin to its end; a failure (required when `must_fail`) carries a code.
async fn run(app: &TestApp, body: Value, must_fail: bool) -> Value {
    let task = app.run(&app.admin("acme"), body.clone()).await;
    let status = task["status"].as_str().unwrap();
    if must_fail || status != "succeeded" {
        assert_ne!(status, "succeeded", "{body} went through a link: {task}");
        let code = task["error"]["code"].as_str().unwrap_or_default();
        assert!(!code.is_empty(), "{body}: failure without a code: {task}");
    }
    task
}

#[tokio::test]
async fn planted_symlinks_lead_nowhere_outside_the_tenant_tree() {
    let app = TestApp::spawn().await;
    mkdirs(&app, "acme", &["/plant"]).await;
    mkdirs(&app, "beta", &["/bdir/sub"]).await;
    std::fs::write(app.disk("beta", "/bdir/b.txt"), B_SECRET).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), SECRET).unwrap();
    std::fs::create_dir(outside.path().join("subdir")).unwrap();
    std::fs::write(outside.path().join("subdir/more.txt"), SECRET).unwrap();

    let beta_tree = app.disk("beta", "/");
    symlink(outside.path(), app.disk("acme", "/plant/out")).unwrap();
    symlink(
        outside.path().join("secret.txt"),
        app.disk("acme", "/plant/out-file"),
    )
    .unwrap();
    symlink(&beta_tree, app.disk("acme", "/plant/to-beta")).unwrap();
    symlink("../../../beta/tree", app.disk("acme", "/plant/rel-beta")).unwrap();

    for (link, inner, sub) in [
        ("/plant/out", "/plant/out/secret.txt", "/plant/out/subdir"),
        (
            "/plant/to-beta",
            "/plant/to-beta/bdir/b.txt",
            "/plant/to-beta/bdir/sub",
        ),
        (
            "/plant/rel-beta",
            "/plant/rel-beta/bdir/b.txt",
            "/plant/rel-beta/bdir/sub",
        ),
    ] {
        let name = link.rsplit('/').next().unwrap();
        // Through the link: every operation fails with a code.
        for body in [
            json!({"op": "copy", "from": inner, "to": format!("/got-{name}")}),
            json!({"op": "copy", "from": sub, "to": format!("/got-dir-{name}")}),
            json!({"op": "move", "from": inner, "to": format!("/stolen-{name}")}),
            json!({"op": "delete", "path": inner}),
            json!({"op": "delete", "path": sub, "recursive": true}),
            json!({"op": "mkdir", "path": format!("{link}/planted")}),
            json!({"op": "mkdir", "path": format!("{link}/deep/planted"), "parents": true}),
            json!({"op": "move", "from": "/plant/victim", "to": format!("{link}/victim")}),
        ] {
            mkdirs(&app, "acme", &["/plant/victim"]).await;
            run(&app, body, true).await;
        }
        // The link itself as a source: refused, what it points to is not copied.
        run(
            &app,
            json!({"op": "copy", "from": link, "to": format!("/copy-{name}")}),
            true,
        )
        .await;
    }
    run(
        &app,
        json!({"op": "copy", "from": "/plant/out-file", "to": "/copy-file"}),
        true,
    )
    .await;
    // Moving or deleting a link is refused too (its target is outside the tenant tree).
    run(
        &app,
        json!({"op": "move", "from": "/plant/out", "to": "/moved-out"}),
        true,
    )
    .await;
    run(
        &app,
        json!({"op": "delete", "path": "/plant/to-beta", "recursive": true}),
        true,
    )
    .await;
    // A tree holding links: a copy skips them, a recursive delete removes the links only.
    let copied = run(
        &app,
        json!({"op": "copy", "from": "/plant", "to": "/plant-copy"}),
        false,
    )
    .await;
    assert_eq!(copied["status"], "succeeded", "{copied}");
    assert!(app.disk("acme", "/plant-copy/victim").is_dir());
    for name in ["out", "out-file", "to-beta", "rel-beta"] {
        let copy = app.disk("acme", &format!("/plant-copy/{name}"));
        assert!(copy.symlink_metadata().is_err(), "{name} was copied");
    }
    let deleted = run(
        &app,
        json!({"op": "delete", "path": "/plant", "recursive": true}),
        false,
    )
    .await;
    assert_eq!(deleted["status"], "succeeded", "{deleted}");
    assert!(app.disk("acme", "/plant").symlink_metadata().is_err());

    // Nothing outside A's tree changed, and no foreign byte reached A's tree.
    assert_eq!(
        std::fs::read(outside.path().join("secret.txt")).unwrap(),
        SECRET
    );
    assert_eq!(
        std::fs::read(outside.path().join("subdir/more.txt")).unwrap(),
        SECRET
    );
    let outside_names: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        outside_names.len(),
        2,
        "something was created outside: {outside_names:?}"
    );
    assert_eq!(
        std::fs::read(app.disk("beta", "/bdir/b.txt")).unwrap(),
        B_SECRET
    );
    assert!(app.disk("beta", "/bdir/sub").is_dir());
    let beta_names: Vec<_> = std::fs::read_dir(app.disk("beta", "/bdir"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        beta_names.len(),
        2,
        "tenant beta's tree changed: {beta_names:?}"
    );
    let acme_tree = app.disk("acme", "/");
    assert!(
        !tree_holds(&acme_tree, SECRET),
        "host data was copied into acme's tree"
    );
    assert!(
        !tree_holds(&acme_tree, B_SECRET),
        "beta's data was copied into acme's tree"
    );
}
