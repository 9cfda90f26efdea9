//! End to end over HTTP: ACL rules granted and revoked through the admin API decide every
//! command and read, at once (read-your-writes), per tenant, and `acl/check?at=` answers from
//! the log. Per-permission, admin-API, tenancy and planted-symlink cases live in `acl/` next
//! to this file and share these helpers.

mod support;

#[path = "acl/admin_api.rs"]
mod admin_api;
#[path = "acl/permissions.rs"]
mod permissions;
#[path = "acl/tenancy.rs"]
mod tenancy;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::TestApp;

/// Grants a rule as `admin`; returns the 201 body.
pub async fn grant(
    app: &TestApp,
    admin: &str,
    subject: &str,
    path: &str,
    permissions: &[&str],
    effect: &str,
) -> Value {
    app.grant_rule(admin, subject, path, permissions, effect)
        .await
}

pub async fn grant_id(
    app: &TestApp,
    admin: &str,
    subject: &str,
    path: &str,
    permissions: &[&str],
    effect: &str,
) -> String {
    let v = grant(app, admin, subject, path, permissions, effect).await;
    v["rule_id"].as_str().unwrap().to_owned()
}

pub async fn revoke(app: &TestApp, admin: &str, rule_id: &str) -> StatusCode {
    app.request(
        Method::DELETE,
        &format!("/v1/acl/rules/{rule_id}"),
        Some(admin),
    )
    .await
    .send()
    .await
    .unwrap()
    .status()
}

/// `GET /v1/acl/check`; returns the status and body.
pub async fn check(app: &TestApp, admin: &str, query: &[(&str, &str)]) -> (StatusCode, Value) {
    let resp = app
        .request(Method::GET, "/v1/acl/check", Some(admin))
        .await
        .query(query)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The status a command gets (202 accepted, 403 forbidden, ...).
pub async fn command_status(app: &TestApp, token: &str, body: Value) -> StatusCode {
    app.post_command(token, &body, None).await.status()
}

/// Messages in the event stream: every recorded command or ACL change adds one.
pub async fn events_recorded(app: &TestApp) -> u64 {
    let js = app.platform.log.jetstream();
    let mut stream = js
        .get_stream(platform::streams::EVENTS_STREAM)
        .await
        .unwrap();
    stream.info().await.unwrap().state.messages
}

/// Creates directories as the tenant admin and waits for each to succeed.
pub async fn mkdirs(app: &TestApp, tenant: &str, paths: &[&str]) {
    let admin = app.admin(tenant);
    for p in paths {
        let task = app
            .run(&admin, json!({"op": "mkdir", "path": p, "parents": true}))
            .await;
        assert_eq!(task["status"], "succeeded", "mkdir {p}: {task}");
    }
}

fn ids(v: &Value) -> Vec<&str> {
    v["rule_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn rules_inherit_and_any_deny_beats_any_allow_at_any_depth() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    mkdirs(&app, "acme", &["/a/b/c"]).await;
    let bob = app.token("bob", "acme", &[]);
    let bob_contractor = app.token("bob", "acme", &["contractors"]);
    let carol = app.token("carol", "acme", &[]);

    // An allow on an ancestor covers everything below it.
    grant(&app, &admin, "user:bob", "/a", &["list"], "allow").await;
    assert_eq!(app.get_json(&bob, "/v1/list/a/b/c").await.0, StatusCode::OK);
    assert_eq!(
        app.get_json(&bob, "/v1/list/").await.0,
        StatusCode::FORBIDDEN
    );

    // A deny below the allow, through a role: only where it applies, only for that role.
    let deny = grant_id(&app, &admin, "role:contractors", "/a/b", &["list"], "deny").await;
    assert_eq!(
        app.get_json(&bob_contractor, "/v1/list/a").await.0,
        StatusCode::OK
    );
    for p in ["/v1/list/a/b", "/v1/list/a/b/c"] {
        assert_eq!(
            app.get_json(&bob_contractor, p).await.0,
            StatusCode::FORBIDDEN,
            "{p}"
        );
    }
    assert_eq!(app.get_json(&bob, "/v1/list/a/b/c").await.0, StatusCode::OK);

    // A deny above an allow wins too, and check names the denying rule.
    let allow = grant_id(&app, &admin, "user:carol", "/a/b/c", &["list"], "allow").await;
    assert_eq!(
        app.get_json(&carol, "/v1/list/a/b/c").await.0,
        StatusCode::OK
    );
    let top_deny = grant_id(&app, &admin, "user:carol", "/", &["list"], "deny").await;
    assert_eq!(
        app.get_json(&carol, "/v1/list/a/b/c").await.0,
        StatusCode::FORBIDDEN
    );
    let q = [
        ("subject", "user:carol"),
        ("path", "/a/b/c"),
        ("permission", "list"),
    ];
    let (status, v) = check(&app, &admin, &q).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (v["allowed"].as_bool(), ids(&v)),
        (Some(false), vec![top_deny.as_str()])
    );
    assert_eq!(
        revoke(&app, &admin, &top_deny).await,
        StatusCode::NO_CONTENT
    );
    let (_, v) = check(&app, &admin, &q).await;
    assert_eq!(
        (v["allowed"].as_bool(), ids(&v)),
        (Some(true), vec![allow.as_str()])
    );

    // A deny on one permission leaves the others alone.
    grant(&app, &admin, "user:carol", "/a/b/c", &["read"], "deny").await;
    assert_eq!(
        app.get_json(&carol, "/v1/list/a/b/c").await.0,
        StatusCode::OK
    );
    let q = [
        ("subject", "role:contractors"),
        ("path", "/a/b/c/d"),
        ("permission", "list"),
    ];
    let (_, v) = check(&app, &admin, &q).await;
    assert_eq!(
        (v["allowed"].as_bool(), ids(&v)),
        (Some(false), vec![deny.as_str()])
    );
}

#[tokio::test]
async fn a_grant_or_revoke_is_in_force_for_the_very_next_request() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    let bob = app.token("bob", "acme", &[]);
    for round in 0..5 {
        let path = format!("/r{round}");
        let body = json!({"op": "mkdir", "path": path});
        assert_eq!(
            command_status(&app, &bob, body.clone()).await,
            StatusCode::FORBIDDEN
        );
        let id = grant_id(&app, &admin, "user:bob", &path, &["mkdir"], "allow").await;
        assert_eq!(
            command_status(&app, &bob, body.clone()).await,
            StatusCode::ACCEPTED
        );
        assert_eq!(revoke(&app, &admin, &id).await, StatusCode::NO_CONTENT);
        let again = json!({"op": "mkdir", "path": format!("{path}/again")});
        assert_eq!(
            command_status(&app, &bob, again).await,
            StatusCode::FORBIDDEN
        );
        // Revoking twice: the rule is gone.
        assert_eq!(revoke(&app, &admin, &id).await, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn check_at_answers_as_of_that_instant_from_the_log() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    let before = chrono::Utc::now();
    let granted = grant(&app, &admin, "user:erin", "/reports", &["read"], "allow").await;
    let id = granted["rule_id"].as_str().unwrap().to_owned();
    let after_grant = chrono::Utc::now();
    assert_eq!(revoke(&app, &admin, &id).await, StatusCode::NO_CONTENT);
    let after_revoke = chrono::Utc::now();
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let granted_at = granted["granted_at"].as_str().unwrap().to_owned();
    let cases = [
        (at(before), false),
        (granted_at, true),
        (at(after_grant), true),
        (at(after_revoke), false),
        ("2000-01-01T00:00:00+02:00".to_owned(), false),
    ];
    for (when, allowed) in cases {
        let q = [
            ("subject", "user:erin"),
            ("path", "/reports/q1.pdf"),
            ("permission", "read"),
            ("at", when.as_str()),
        ];
        let (status, v) = check(&app, &admin, &q).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["allowed"].as_bool(), Some(allowed), "at {when}: {v}");
        let want: Vec<&str> = if allowed { vec![id.as_str()] } else { vec![] };
        assert_eq!(ids(&v), want, "at {when}");
    }
    let now = [
        ("subject", "user:erin"),
        ("path", "/reports"),
        ("permission", "read"),
    ];
    assert_eq!(check(&app, &admin, &now).await.1["allowed"], false);
}

#[tokio::test]
async fn role_and_everyone_subjects_match_principals_of_the_tenant() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    mkdirs(&app, "acme", &["/team", "/public"]).await;
    grant(&app, &admin, "role:staff", "/team", &["list"], "allow").await;
    grant(&app, &admin, "*", "/public", &["list"], "allow").await;
    let staff = app.token("sam", "acme", &["viewer", "staff"]);
    let nobody = app.token("nora", "acme", &[]);
    assert_eq!(
        app.get_json(&staff, "/v1/list/team").await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.get_json(&nobody, "/v1/list/team").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get_json(&nobody, "/v1/list/public").await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.get_json(&staff, "/v1/list/public").await.0,
        StatusCode::OK
    );
    // A `*` deny beats a role allow as well.
    grant(&app, &admin, "*", "/team", &["list"], "deny").await;
    assert_eq!(
        app.get_json(&staff, "/v1/list/team").await.0,
        StatusCode::FORBIDDEN
    );
    let (_, v) = check(
        &app,
        &admin,
        &[
            ("subject", "user:x"),
            ("path", "/public/y"),
            ("permission", "list"),
        ],
    )
    .await;
    assert_eq!(v["allowed"], true);
    let (_, v) = check(
        &app,
        &admin,
        &[
            ("subject", "role:staff"),
            ("path", "/team"),
            ("permission", "list"),
        ],
    )
    .await;
    assert_eq!(v["allowed"], false);
    // Admins bypass the ACL in their own tenant, deny rules included.
    assert_eq!(
        app.get_json(&admin, "/v1/list/team").await.0,
        StatusCode::OK
    );
}
