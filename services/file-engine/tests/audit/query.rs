//! Filters, order, pagination, export and tenancy of the audit API.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::support::TestApp;
use super::{audit, audit_all, export, grant, positions, short, verify, wait_projected};

/// Operations by alice and bob (admins) in tenant `acme`; returns the auditor's token.
async fn scenario(app: &TestApp) -> String {
    let alice = app.token("alice", "acme", &["admin"]);
    let bob = app.token("bob", "acme", &["admin"]);
    for (who, body) in [
        (&alice, json!({"op": "mkdir", "path": "/a"})),
        (&alice, json!({"op": "mkdir", "path": "/ab"})),
        (&alice, json!({"op": "mkdir", "path": "/b"})),
        (&bob, json!({"op": "mkdir", "path": "/a/x"})),
        (&alice, json!({"op": "move", "from": "/a/x", "to": "/b/x"})),
        (&bob, json!({"op": "copy", "from": "/b/x", "to": "/b/y"})),
        (&bob, json!({"op": "delete", "path": "/b/y"})),
    ] {
        assert_eq!(
            app.run(who, body.clone()).await["status"],
            "succeeded",
            "{body}"
        );
    }
    let failed = app.run(&alice, json!({"op": "mkdir", "path": "/a"})).await;
    assert_eq!(failed["status"], "failed");
    grant(app, &alice, "user:bob", "/a").await;
    wait_projected(app).await;
    app.token("carol", "acme", &["auditor"])
}

fn find<'a>(events: &'a [Value], ty: &str, subject: &str) -> Option<&'a Value> {
    events
        .iter()
        .find(|e| short(e) == ty && e["subject"] == subject)
}

#[tokio::test]
async fn operations_of_several_principals_are_filtered_and_in_log_order() {
    let app = TestApp::spawn().await;
    let auditor = scenario(&app).await;

    // Everything, in small pages, equals one big page, in strictly increasing log order.
    let paged = audit_all(&app, &auditor, "limit=3").await;
    let (status, one) = audit(&app, &auditor, "limit=1000").await;
    assert_eq!(status, StatusCode::OK);
    let one = one["events"].as_array().unwrap().clone();
    assert_eq!(positions(&paged), positions(&one));
    let seqs: Vec<u64> = paged.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");
    let mut ids: Vec<&str> = paged.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), paged.len(), "an event appears twice");
    for ty in [
        "task.requested",
        "task.started",
        "dir.created",
        "entry.moved",
        "entry.copied",
        "entry.deleted",
        "task.succeeded",
        "task.failed",
        "acl.rule_granted",
    ] {
        assert!(paged.iter().any(|e| short(e) == ty), "no {ty} in the trail");
    }
    let moved = find(&paged, "entry.moved", "/a/x").expect("the move");
    assert_eq!(moved["data"]["to"], "/b/x");
    assert_eq!(
        moved["principal"], "alice",
        "worker effects are attributed to the requester"
    );
    assert_eq!(moved["tenant"], "acme");

    // principal
    let bobs = audit_all(&app, &auditor, "principal=bob").await;
    assert!(bobs.iter().all(|e| e["principal"] == "bob"));
    for (ty, subject) in [
        ("dir.created", "/a/x"),
        ("entry.copied", "/b/x"),
        ("entry.deleted", "/b/y"),
    ] {
        assert!(find(&bobs, ty, subject).is_some(), "bob's {ty} {subject}");
    }
    assert!(find(&bobs, "entry.moved", "/a/x").is_none());

    // type (comma-separated short names)
    let typed = audit_all(&app, &auditor, "type=entry.moved,entry.copied").await;
    let mut types: Vec<&str> = typed.iter().map(short).collect();
    types.sort();
    assert_eq!(types, ["entry.copied", "entry.moved"]);
}

#[tokio::test]
async fn path_filters_match_subtrees_and_both_ends_of_moves() {
    let app = TestApp::spawn().await;
    let auditor = scenario(&app).await;

    let under_a = audit_all(&app, &auditor, "path=/a").await;
    for (ty, subject) in [
        ("dir.created", "/a"),
        ("dir.created", "/a/x"),
        ("entry.moved", "/a/x"),
        ("task.failed", "/a"),
        ("acl.rule_granted", "/a"),
    ] {
        assert!(
            find(&under_a, ty, subject).is_some(),
            "path=/a lacks {ty} {subject}"
        );
    }
    assert!(
        find(&under_a, "dir.created", "/ab").is_none(),
        "/ab is not below /a"
    );
    assert!(find(&under_a, "dir.created", "/b").is_none());
    assert!(find(&under_a, "entry.copied", "/b/x").is_none());

    // The move's target and the copy's source are both /b/x.
    let bx = audit_all(&app, &auditor, "path=/b/x").await;
    assert!(
        find(&bx, "entry.moved", "/a/x").is_some(),
        "move target matches"
    );
    assert!(
        find(&bx, "entry.copied", "/b/x").is_some(),
        "copy source matches"
    );
    assert!(find(&bx, "dir.created", "/b").is_none());
    // The copy's target /b/y is below /b.
    let by = audit_all(&app, &auditor, "path=/b/y&type=entry.copied").await;
    assert_eq!(by.len(), 1);
    assert_eq!(
        audit_all(&app, &auditor, "path=/").await.len(),
        audit_all(&app, &auditor, "").await.len()
    );
}

#[tokio::test]
async fn time_windows_and_export_agree_with_the_query() {
    let app = TestApp::spawn().await;
    let auditor = scenario(&app).await;
    let all = audit_all(&app, &auditor, "").await;
    let moved = find(&all, "entry.moved", "/a/x").unwrap().clone();
    let t = moved["time"].as_str().unwrap().to_owned();
    let enc = |s: &str| s.replace('+', "%2B");

    let after = audit_all(&app, &auditor, &format!("from={}", enc(&t))).await;
    assert!(
        find(&after, "entry.moved", "/a/x").is_some(),
        "from is inclusive"
    );
    assert!(after
        .iter()
        .all(|e| e["time"].as_str().unwrap() >= t.as_str()));
    let before = audit_all(&app, &auditor, &format!("to={}", enc(&t))).await;
    assert!(
        find(&before, "entry.moved", "/a/x").is_none(),
        "to is exclusive"
    );
    assert_eq!(before.len() + after.len(), all.len());

    let (status, content_type, lines) = export(&app, &auditor, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/x-ndjson");
    assert_eq!(lines, all, "export equals the query");
    let (_, _, under_a) = export(&app, &auditor, "path=/a&principal=alice").await;
    assert_eq!(
        under_a,
        audit_all(&app, &auditor, "path=/a&principal=alice").await
    );
    let (_, _, windowed) = export(&app, &auditor, &format!("to={}", enc(&t))).await;
    assert_eq!(windowed, before);
}

#[tokio::test]
async fn another_tenants_auditor_sees_nothing_and_others_are_refused() {
    let app = TestApp::spawn().await;
    let acme_auditor = scenario(&app).await;
    let acme_events = audit_all(&app, &acme_auditor, "").await;
    let last_cursor = {
        let (_, page) = audit(&app, &acme_auditor, "limit=1").await;
        page["next_cursor"].as_str().unwrap().to_owned()
    };
    let globex_admin = app.admin("globex");
    app.run(&globex_admin, json!({"op": "mkdir", "path": "/a"}))
        .await;
    wait_projected(&app).await;
    let globex = app.token("eve", "globex", &["auditor"]);

    let seen = audit_all(&app, &globex, "").await;
    assert!(!seen.is_empty());
    assert!(seen
        .iter()
        .all(|e| e["tenant"] == "globex" && e["source"] == "/tenants/globex"));
    let acme_ids: Vec<_> = positions(&acme_events);
    assert!(positions(&seen).iter().all(|p| !acme_ids.contains(p)));
    for q in [
        "principal=alice",
        "path=/b",
        &format!("cursor={last_cursor}"),
    ] {
        let events = audit_all(&app, &globex, q).await;
        assert!(events.iter().all(|e| e["tenant"] == "globex"), "{q}");
        assert!(events.iter().all(|e| e["principal"] != "alice"), "{q}");
    }
    let (_, _, exported) = export(&app, &globex, "").await;
    assert_eq!(positions(&exported), positions(&seen));
    let v = verify(&app, &globex).await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["events"].as_u64().unwrap() as usize, seen.len());

    // Neither a plain user nor an editor may read the trail; no token is 401.
    for token in [
        app.token("dave", "acme", &[]),
        app.token("dave", "acme", &["editor"]),
    ] {
        for path in ["/v1/audit", "/v1/audit/export", "/v1/audit/verify"] {
            let (status, body) = app.get_json(&token, path).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
            assert_eq!(body["code"], "forbidden");
        }
    }
    let resp = app.http.get(app.url("/v1/audit")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // An admin may read its own tenant's trail.
    let (status, _) = audit(&app, &app.admin("acme"), "").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn hostile_query_parameters_are_refused_without_side_effects() {
    let app = TestApp::spawn().await;
    let auditor = scenario(&app).await;
    let before = audit_all(&app, &auditor, "").await.len();
    for (q, code) in [
        ("path=/a/../b", "path_invalid"),
        ("path=a", "path_invalid"),
        ("path=/a%00b", "path_invalid"),
        ("path=/a%0Ab", "path_invalid"),
        ("limit=0", "bad_request"),
        ("limit=1001", "bad_request"),
        ("limit=ten", "bad_request"),
        ("type=x%27%20OR%20%271%27%3D%271", "bad_request"),
        (
            "type=dir.created;DROP%20TABLE%20audit_events",
            "bad_request",
        ),
        ("from=yesterday", "bad_request"),
        ("to=2026-02-30T00:00:00Z", "bad_request"),
        ("cursor=%2F%2F%2F", "bad_request"),
        ("cursor=OTk5OTk5OTk5OTk5OTk5OTk5OTk5OS4w", "bad_request"),
        ("principal=", "bad_request"),
        ("limit=1&limit=2", "bad_request"),
        ("pathh=/a", "bad_request"),
        ("path=%FF", "path_invalid"),
    ] {
        let (status, body) = audit(&app, &auditor, q).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert_eq!(body["code"], code, "{q}: {body}");
        assert!(!body.to_string().contains("SELECT"), "{q}: {body}");
    }
    let long_path = format!("path=/{}", "a".repeat(5000));
    assert_eq!(
        audit(&app, &auditor, &long_path).await.0,
        StatusCode::BAD_REQUEST
    );
    // A quoted principal is a value, not SQL: it matches nobody.
    let (status, page) = audit(&app, &auditor, "principal=%27%20OR%20%271%27%3D%271").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["events"], json!([]));
    assert_eq!(audit_all(&app, &auditor, "").await.len(), before);
    assert_eq!(verify(&app, &auditor).await["ok"], true);
}
