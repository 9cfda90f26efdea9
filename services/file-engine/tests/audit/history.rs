//! One history (issue 16): every created directory has its own event, every event its own
//! gapless `seq`, attribution `principal` = who asked / `actor` = who acted, the path filter
//! by whole segments over subjects and move targets, a lease-bounded verification (429), and
//! an export verified offline and rejected after a one-byte edit with the `seq` named.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::support::TestApp;
use super::{audit_all, export_raw, short, verify, wait_projected};

fn subjects_of(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            let about = e["data"]["to"].as_str().or(e["subject"].as_str());
            (short(e).to_owned(), about.unwrap().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn implicit_directories_have_their_own_events_and_paths_match_whole_segments() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    for body in [
        json!({"op": "mkdir", "path": "/a/b", "parents": true}),
        json!({"op": "mkdir", "path": "/ab"}),
        json!({"op": "mkdir", "path": "/ab/x"}),
        json!({"op": "move", "from": "/ab/x", "to": "/a/x"}),
    ] {
        assert_eq!(app.run(&admin, body).await["status"], "succeeded");
    }
    wait_projected(&app).await;
    let auditor = app.token("carol", "acme", &["auditor"]);

    // Every event its own position: 1, 2, 3, ... without gaps or repeats.
    let all = audit_all(&app, &auditor, "limit=3").await;
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=all.len() as u64).collect::<Vec<_>>());

    // `/a` came into existence through `mkdir -p /a/b`: its own dir.created, in the same
    // commit as /a/b's, attributed to the admin who asked and the worker who acted.
    let created: Vec<&Value> = all.iter().filter(|e| short(e) == "dir.created").collect();
    let subjects: Vec<&str> = created
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["/a", "/a/b", "/ab", "/ab/x"]);
    assert_eq!(created[0]["logseq"], created[1]["logseq"]);
    assert_eq!(
        created[1]["seq"].as_u64(),
        created[0]["seq"].as_u64().map(|s| s + 1)
    );
    assert_eq!(
        (&created[0]["principal"], &created[0]["actor"]),
        (&json!("root"), &json!("system:worker"))
    );
    let requested = all.iter().find(|e| short(e) == "task.requested").unwrap();
    assert_eq!(
        (&requested["principal"], &requested["actor"]),
        (&json!("root"), &json!("root"))
    );

    let dirs = |q: &str| {
        let (app, auditor, q) = (&app, &auditor, q.to_owned());
        async move {
            let events =
                audit_all(app, auditor, &format!("type=dir.created,entry.moved&{q}")).await;
            subjects_of(&events)
        }
    };
    let pair = |t: &str, p: &str| (t.to_owned(), p.to_owned());
    assert_eq!(
        dirs("path=/a").await,
        [
            pair("dir.created", "/a"),
            pair("dir.created", "/a/b"),
            pair("entry.moved", "/a/x")
        ],
        "/a: itself, below it, and the move into it; never /ab"
    );
    assert_eq!(dirs("path=/a/b").await, [pair("dir.created", "/a/b")]);
    assert_eq!(
        dirs("path=/ab").await,
        [
            pair("dir.created", "/ab"),
            pair("dir.created", "/ab/x"),
            pair("entry.moved", "/a/x")
        ],
        "/ab: itself, below it, and the move out of it; never /a"
    );
    // A tree moved and then deleted as a whole: every entry in it has its own event, naming
    // the root it went with, so the plain path filter shows the whole history of an entry deep
    // inside the tree; the root's own event comes after its entries'.
    for body in [
        json!({"op": "mkdir", "path": "/t/u/v", "parents": true}),
        json!({"op": "move", "from": "/t", "to": "/t2"}),
        json!({"op": "delete", "path": "/t2", "recursive": true}),
    ] {
        assert_eq!(app.run(&admin, body).await["status"], "succeeded");
    }
    wait_projected(&app).await;
    let t = "type=dir.created,entry.moved,entry.deleted";
    let plain = audit_all(&app, &auditor, &format!("{t}&path=/t2/u/v")).await;
    assert_eq!(
        subjects_of(&plain),
        [
            pair("entry.moved", "/t2/u/v"),
            pair("entry.deleted", "/t2/u/v")
        ],
        "moved in with its tree, deleted with it: {plain:?}"
    );
    assert_eq!(plain[0]["subject"], "/t/u/v");
    assert_eq!(plain[0]["data"]["within"], "/t");
    assert_eq!(plain[1]["data"]["within"], "/t2");
    assert_eq!(plain[1]["data"]["recursive"], false);
    assert_eq!(
        subjects_of(&audit_all(&app, &auditor, &format!("{t}&path=/t/u/v")).await),
        [
            pair("dir.created", "/t/u/v"),
            pair("entry.moved", "/t2/u/v")
        ],
        "created, then moved away with its tree"
    );
    let roots = audit_all(&app, &auditor, &format!("{t}&path=/t2")).await;
    let root_events: Vec<&Value> = roots
        .iter()
        .filter(|e| e["data"].get("within").is_none())
        .collect();
    assert_eq!(
        root_events
            .iter()
            .map(|e| (e["type"].as_str().unwrap(), e["subject"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [
            ("io.file-engine.entry.moved.v1", "/t"),
            ("io.file-engine.entry.deleted.v1", "/t2")
        ],
        "one root event per command, without `within`"
    );
    // `ancestors=true` adds the root events of the trees the entry was in.
    let tree = |q: &str| {
        let (app, auditor, q) = (&app, &auditor, q.to_owned());
        async move { subjects_of(&audit_all(app, auditor, &format!("{t}&ancestors=true&{q}")).await) }
    };
    assert_eq!(
        tree("path=/t2/u/v").await,
        [
            pair("entry.moved", "/t2/u"),
            pair("entry.moved", "/t2/u/v"),
            pair("entry.moved", "/t2"),
            pair("entry.deleted", "/t2/u"),
            pair("entry.deleted", "/t2/u/v"),
            pair("entry.deleted", "/t2")
        ]
    );
    assert!(
        tree("path=/t2u/v").await.is_empty(),
        "ancestors are whole segments: /t2 is no ancestor of /t2u/v"
    );
    let bad = app
        .request(
            reqwest::Method::GET,
            "/v1/audit?path=/t&ancestors=yes",
            Some(&auditor),
        )
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_export_verifies_offline_and_a_one_byte_edit_is_named_by_its_seq() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    for path in ["/e1", "/e2/f"] {
        let body = json!({"op": "mkdir", "path": path, "parents": true});
        assert_eq!(app.run(&admin, body).await["status"], "succeeded");
    }
    wait_projected(&app).await;
    let auditor = app.token("carol", "acme", &["auditor"]);
    let (status, _, lines) = export_raw(&app, &auditor, "").await;
    assert_eq!(status, StatusCode::OK);
    let trailer = &lines.last().unwrap()["export"];
    let n = lines.len() as u64 - 1;
    assert_eq!(
        (
            trailer["tenant"].as_str(),
            trailer["first_seq"].as_u64(),
            trailer["last_seq"].as_u64()
        ),
        (Some("acme"), Some(1), Some(n))
    );
    let live = verify(&app, &auditor).await;
    assert_eq!(
        trailer["head_hash"], live["head_hash"],
        "the export ends at the verified head"
    );

    let dir = tempfile::tempdir().unwrap();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let file = dir.path().join("export.ndjson");
    std::fs::write(&file, &text).unwrap();
    let run = |path: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_file-engine"))
            .args(["audit-verify", "--file"])
            .arg(path)
            .env_clear()
            .output()
            .unwrap()
    };
    let ok = run(&file);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let summary: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(summary["events"], n);

    // One byte of the third event's subject changed: rejected, naming seq 3.
    let third = lines[2].to_string();
    let subject = lines[2]["subject"].as_str().unwrap();
    let edited_subject = format!("{}X", &subject[..subject.len() - 1]);
    let edited_line = third.replace(
        &format!("\"subject\":\"{subject}\""),
        &format!("\"subject\":\"{edited_subject}\""),
    );
    assert_ne!(edited_line, third);
    let tampered = text.replacen(&third, &edited_line, 1);
    let bad = dir.path().join("tampered.ndjson");
    std::fs::write(&bad, tampered).unwrap();
    let out = run(&bad);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("seq 3"), "{stderr}");
}

#[tokio::test]
async fn one_verification_per_tenant_at_a_time() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    app.run(&admin, json!({"op": "mkdir", "path": "/v"})).await;
    wait_projected(&app).await;
    let auditor = app.token("carol", "acme", &["auditor"]);
    assert_eq!(verify(&app, &auditor).await["ok"], true);
    // Another replica holds acme's lease (as a running verification does).
    sqlx::query(
        "UPDATE audit_verification SET lease_holder = gen_random_uuid(),
                lease_until = now() + interval '20 seconds' WHERE tenant = 'acme'",
    )
    .execute(&app.platform.pool)
    .await
    .unwrap();
    let resp = app
        .request(reqwest::Method::GET, "/v1/audit/verify", Some(&auditor))
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "rate_limited");
    // Other tenants are not held up.
    app.run(&app.admin("globex"), json!({"op": "mkdir", "path": "/g"}))
        .await;
    wait_projected(&app).await;
    let globex = app.token("gina", "globex", &["auditor"]);
    assert_eq!(verify(&app, &globex).await["ok"], true);
    // An expired lease (its holder died) frees the tenant.
    sqlx::query("UPDATE audit_verification SET lease_until = now() - interval '1 second' WHERE tenant = 'acme'")
        .execute(&app.platform.pool)
        .await
        .unwrap();
    assert_eq!(verify(&app, &auditor).await["ok"], true);
}

#[tokio::test]
async fn an_upload_gives_every_parent_it_created_its_own_event() {
    let app = TestApp::spawn_with_scanner(&[]).await;
    let admin = app.admin("acme");
    let body = json!({"op": "mkdir", "path": "/up"});
    assert_eq!(app.run(&admin, body).await["status"], "succeeded");
    let pdf = b"%PDF-1.7\nhello\n%%EOF\n".to_vec();
    let done = app.upload_and_wait(&admin, "/up/deep/er/r.pdf", pdf).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    wait_projected(&app).await;
    let auditor = app.token("carol", "acme", &["auditor"]);
    let events = audit_all(&app, &auditor, "type=dir.created,file.available").await;
    let seen = subjects_of(&events);
    let pair = |t: &str, p: &str| (t.to_owned(), p.to_owned());
    assert_eq!(
        seen,
        [
            pair("dir.created", "/up"),
            pair("dir.created", "/up/deep"),
            pair("dir.created", "/up/deep/er"),
            pair("file.available", "/up/deep/er/r.pdf"),
        ],
        "/up existed already; /up/deep and /up/deep/er came into existence with the upload"
    );
    assert_eq!(events[1]["logseq"], events[3]["logseq"], "one commit");
}

#[tokio::test]
async fn a_tree_copy_reports_the_entries_it_copied_and_a_delete_those_that_went_away() {
    let app = TestApp::spawn_with_scanner(&[]).await;
    let admin = app.admin("acme");
    let clean = app
        .upload_and_wait(&admin, "/src/ok.txt", b"clean".to_vec())
        .await;
    assert_eq!(clean["status"], "succeeded", "{clean}");
    let infected = app
        .upload_and_wait(&admin, "/src/bad.txt", testkit::clamd::EICAR.to_vec())
        .await;
    assert_eq!(infected["status"], "failed", "{infected}");
    for body in [
        json!({"op": "copy", "from": "/src", "to": "/dst"}),
        json!({"op": "delete", "path": "/src", "recursive": true}),
    ] {
        assert_eq!(app.run(&admin, body).await["status"], "succeeded");
    }
    wait_projected(&app).await;
    let auditor = app.token("carol", "acme", &["auditor"]);
    let events = audit_all(&app, &auditor, "type=entry.copied,entry.deleted").await;
    let seen: Vec<(String, String, Value)> = events
        .iter()
        .map(|e| {
            (
                short(e).to_owned(),
                e["subject"].as_str().unwrap().to_owned(),
                e["data"]["within"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            // A copy leaves a quarantined file behind: only what it copied is reported.
            ("entry.copied".into(), "/src/ok.txt".into(), json!("/src")),
            ("entry.copied".into(), "/src".into(), Value::Null),
            // A delete takes the quarantined file too.
            ("entry.deleted".into(), "/src/bad.txt".into(), json!("/src")),
            ("entry.deleted".into(), "/src/ok.txt".into(), json!("/src")),
            ("entry.deleted".into(), "/src".into(), Value::Null),
        ]
    );
    assert_eq!(events[0]["data"]["to"], "/dst/ok.txt");
    assert!(app
        .get_json(&admin, "/v1/stat/dst/ok.txt")
        .await
        .0
        .is_success());
}
