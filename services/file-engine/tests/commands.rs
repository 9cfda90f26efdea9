//! End to end over HTTP: file commands reach the right terminal status and the right effect
//! in the catalogue and in the log (storage holds only blobs: commands never touch it).

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::TestApp;

#[tokio::test]
async fn mkdir_with_parents_creates_every_level_in_the_catalogue() {
    let app = TestApp::spawn().await;
    let t = app.admin("acme");
    let task = app
        .run(
            &t,
            json!({"op": "mkdir", "path": "/a/b/c", "parents": true}),
        )
        .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["op"], "mkdir");
    assert!(app.is_dir("acme", "/a/b/c").await);

    let (status, stat) = app.get_json(&t, "/v1/stat/a/b").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stat["kind"], "dir");
    assert_eq!(stat["path"], "/a/b");
    let (_, listing) = app.get_json(&t, "/v1/list/a").await;
    assert_eq!(listing["entries"][0]["path"], "/a/b");
    let (_, root) = app.get_json(&t, "/v1/list/").await;
    assert_eq!(root["entries"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn mkdir_failures_carry_stable_codes() {
    let app = TestApp::spawn().await;
    let t = app.admin("acme");
    let missing_parent = app
        .run(&t, json!({"op": "mkdir", "path": "/no/such"}))
        .await;
    assert_eq!(missing_parent["status"], "failed");
    assert_eq!(missing_parent["error"]["code"], "not_found");
    assert!(!app.exists("acme", "/no").await);

    app.run(&t, json!({"op": "mkdir", "path": "/d"})).await;
    let again = app.run(&t, json!({"op": "mkdir", "path": "/d"})).await;
    assert_eq!(again["error"]["code"], "already_exists");
    let with_parents = app
        .run(&t, json!({"op": "mkdir", "path": "/d", "parents": true}))
        .await;
    assert_eq!(with_parents["status"], "succeeded");
}

#[tokio::test]
async fn move_copy_and_delete_change_the_catalogue_and_copies_share_the_blob() {
    let app = TestApp::spawn_with_scanner(&[]).await;
    let t = app.admin("acme");
    app.run(
        &t,
        json!({"op": "mkdir", "path": "/src/inner", "parents": true}),
    )
    .await;
    let up = app
        .upload_and_wait(&t, "/src/inner/file.txt", b"payload".to_vec())
        .await;
    assert_eq!(up["status"], "succeeded", "{up}");
    app.run(&t, json!({"op": "mkdir", "path": "/dst"})).await;

    let copy = app
        .run(&t, json!({"op": "copy", "from": "/src", "to": "/dst/copy"}))
        .await;
    assert_eq!(copy["status"], "succeeded", "{copy}");
    let copied = app
        .request(
            reqwest::Method::GET,
            "/v1/files/dst/copy/inner/file.txt",
            Some(&t),
        )
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(copied.status(), StatusCode::OK);
    assert_eq!(copied.bytes().await.unwrap().as_ref(), b"payload");
    assert!(app.exists("acme", "/src/inner/file.txt").await);
    assert_eq!(app.blob_files("acme").len(), 1, "a copy writes no blob");
    let (status, _) = app.get_json(&t, "/v1/stat/dst/copy/inner").await;
    assert_eq!(status, StatusCode::OK);

    let mv = app
        .run(&t, json!({"op": "move", "from": "/src", "to": "/moved"}))
        .await;
    assert_eq!(mv["status"], "succeeded", "{mv}");
    assert!(!app.exists("acme", "/src").await);
    assert!(app.exists("acme", "/moved/inner/file.txt").await);
    assert_eq!(
        app.get_json(&t, "/v1/stat/src/inner").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get_json(&t, "/v1/stat/moved/inner").await.0,
        StatusCode::OK
    );

    let onto_existing = app
        .run(
            &t,
            json!({"op": "copy", "from": "/moved", "to": "/dst/copy"}),
        )
        .await;
    assert_eq!(onto_existing["error"]["code"], "already_exists");
    let into_itself = app
        .run(
            &t,
            json!({"op": "move", "from": "/moved", "to": "/moved/inner/x"}),
        )
        .await;
    assert_eq!(into_itself["error"]["code"], "conflict");

    let not_empty = app.run(&t, json!({"op": "delete", "path": "/dst"})).await;
    assert_eq!(not_empty["error"]["code"], "not_empty");
    assert!(app.exists("acme", "/dst/copy").await);
    let recursive = app
        .run(
            &t,
            json!({"op": "delete", "path": "/dst", "recursive": true}),
        )
        .await;
    assert_eq!(recursive["status"], "succeeded");
    assert!(!app.exists("acme", "/dst").await);
    assert_eq!(
        app.get_json(&t, "/v1/stat/dst/copy").await.0,
        StatusCode::NOT_FOUND
    );
    let gone = app.run(&t, json!({"op": "delete", "path": "/dst"})).await;
    assert_eq!(gone["error"]["code"], "not_found");
}

#[tokio::test]
async fn tasks_on_overlapping_paths_run_in_log_order() {
    let app = TestApp::spawn().await;
    let t = app.admin("acme");
    // Submitted back to back without waiting: each depends on the previous one's effect.
    let mut ids = Vec::new();
    for body in [
        json!({"op": "mkdir", "path": "/o/a", "parents": true}),
        json!({"op": "move", "from": "/o/a", "to": "/o/b"}),
        json!({"op": "mkdir", "path": "/o/b/c"}),
        json!({"op": "copy", "from": "/o/b", "to": "/o/d"}),
        json!({"op": "delete", "path": "/o/b", "recursive": true}),
    ] {
        ids.push(app.submit(&t, body).await);
    }
    for id in &ids {
        let task = app.wait_task(&t, id).await;
        assert_eq!(task["status"], "succeeded", "{task}");
    }
    assert!(app.is_dir("acme", "/o/d/c").await);
    assert!(!app.exists("acme", "/o/b").await);
    assert!(!app.exists("acme", "/o/a").await);
}

#[tokio::test]
async fn idempotency_key_replays_the_same_task_and_refuses_another_body() {
    let app = TestApp::spawn().await;
    let t = app.admin("acme");
    let body = json!({"op": "mkdir", "path": "/idem", "parents": true});
    let first = app.post_command(&t, &body, Some("key-1")).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    let first: serde_json::Value = first.json().await.unwrap();
    assert_eq!(location, first["status_url"]);

    let reordered = json!({"parents": true, "path": "/idem", "op": "mkdir"});
    let replay = app.post_command(&t, &reordered, Some("key-1")).await;
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    let replay: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(replay, first);

    let other = app
        .post_command(&t, &json!({"op": "mkdir", "path": "/other"}), Some("key-1"))
        .await;
    assert_eq!(other.status(), StatusCode::CONFLICT);
    let problem: serde_json::Value = other.json().await.unwrap();
    assert_eq!(problem["code"], "idempotency_key_reused");

    // The key is scoped to the principal: another admin's same key is a new task.
    let t2 = app.token("other-admin", "acme", &["admin"]);
    let theirs = app.post_command(&t2, &body, Some("key-1")).await;
    let theirs: serde_json::Value = theirs.json().await.unwrap();
    assert_ne!(theirs["task_id"], first["task_id"]);

    app.wait_task(&t, first["task_id"].as_str().unwrap()).await;
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tasks WHERE tenant = 'acme' AND principal = 'root'",
    )
    .fetch_one(&app.platform.pool)
    .await
    .unwrap();
    assert_eq!(count, 1, "the replay created a second task");
}

#[tokio::test]
async fn a_task_is_visible_to_its_principal_and_admins_only() {
    let app = TestApp::spawn().await;
    let t = app.admin("acme");
    let id = app.submit(&t, json!({"op": "mkdir", "path": "/v"})).await;
    app.wait_task(&t, &id).await;
    let other_admin = app.token("ops", "acme", &["admin"]);
    assert_eq!(
        app.get_json(&other_admin, &format!("/v1/tasks/{id}"))
            .await
            .0,
        StatusCode::OK
    );
    let user = app.token("bob", "acme", &[]);
    assert_eq!(
        app.get_json(&user, &format!("/v1/tasks/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    let foreign_admin = app.admin("globex");
    let (status, problem) = app
        .get_json(&foreign_admin, &format!("/v1/tasks/{id}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["code"], "not_found");
}

#[tokio::test]
async fn tenants_do_not_see_each_others_entries() {
    let app = TestApp::spawn().await;
    let acme = app.admin("acme");
    let globex = app.admin("globex");
    app.run(&acme, json!({"op": "mkdir", "path": "/secret"}))
        .await;
    assert_eq!(
        app.get_json(&globex, "/v1/stat/secret").await.0,
        StatusCode::NOT_FOUND
    );
    let (_, listing) = app.get_json(&globex, "/v1/list/").await;
    assert_eq!(listing["entries"], json!([]));
    let task = app
        .run(&globex, json!({"op": "delete", "path": "/secret"}))
        .await;
    assert_eq!(task["error"]["code"], "not_found");
    assert!(app.is_dir("acme", "/secret").await);
}

#[tokio::test]
async fn listing_is_paginated_with_a_cursor() {
    let app = TestApp::spawn().await;
    let t = app.admin("acme");
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            app.submit(
                &t,
                json!({"op": "mkdir", "path": format!("/p/d{i}"), "parents": true}),
            )
            .await,
        );
    }
    for id in &ids {
        app.wait_task(&t, id).await;
    }
    let mut seen = Vec::new();
    let mut url = "/v1/list/p?limit=3".to_owned();
    loop {
        let (status, page) = app.get_json(&t, &url).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= 3);
        seen.extend(
            entries
                .iter()
                .map(|e| e["path"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("/v1/list/p?limit=3&cursor={c}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7).map(|i| format!("/p/d{i}")).collect();
    assert_eq!(seen, expected);
}

/// The projection announces each task it makes terminal, after the commit that shows it, and
/// a waiter for that task (what `?wait=` uses) is woken by it — not by a recheck.
#[tokio::test]
async fn the_projection_announces_each_settled_task_to_its_waiters() {
    use events::task::{key_window, task_id_for_idempotency_key};
    let app = TestApp::spawn().await;
    let t = app.admin("acme");
    let acme = events::TenantId::parse("acme").unwrap();
    let key = events::IdempotencyKey::parse("announce-1").unwrap();
    let window = key_window(chrono::Utc::now());
    // The task id the key maps to (either side of a window boundary the test might cross).
    let ids = [window, window + 1].map(|w| task_id_for_idempotency_key(&acme, "root", &key, w));
    let watermark = platform::db::ProjectionWatermark::start(app.platform.pool.clone())
        .await
        .unwrap();
    let watches = ids.map(|id| watermark.watch_task(&acme, id));
    let [first, second] = &watches;
    let (woken_first, woken_second) = (first.notified(), second.notified());
    tokio::pin!(woken_first, woken_second);
    woken_first.as_mut().enable();
    woken_second.as_mut().enable();

    let resp = app
        .post_command(
            &t,
            &json!({"op": "mkdir", "path": "/announced"}),
            Some("announce-1"),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let woken = async {
        tokio::select! {
            _ = &mut woken_first => ids[0],
            _ = &mut woken_second => ids[1],
        }
    };
    let id = tokio::time::timeout(std::time::Duration::from_secs(30), woken)
        .await
        .expect("no announcement of the settled task");
    // Announced after the commit: the read model already shows the outcome.
    let (status, task) = app.get_json(&t, &format!("/v1/tasks/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(task["status"], "succeeded", "{task}");
}
