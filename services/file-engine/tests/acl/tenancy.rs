//! Tenant isolation of rules and paths, the rules listing filter, a change the projection has
//! not applied yet (503, recorded anyway), and deterministic replay of the ACL read model.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::admin_api::{post_rule, problem};
use super::{check, command_status, events_recorded, grant, grant_id, mkdirs, revoke};
use crate::support::TestApp;

#[tokio::test]
async fn another_tenant_cannot_see_revoke_or_use_rules_and_paths() {
    let app = TestApp::spawn().await;
    let (admin_a, admin_b) = (app.admin("acme"), app.admin("beta"));
    mkdirs(&app, "acme", &["/only-a/inner"]).await;
    let rule = grant(
        &app,
        &admin_a,
        "user:bob",
        "/only-a",
        &["list", "delete"],
        "allow",
    )
    .await;
    let id = rule["rule_id"].as_str().unwrap();
    assert_eq!(rule["granted_by"], "root");

    // B's admin sees none of A's rules and cannot revoke them (unknown there: 404).
    let (_, b_rules) = app.get_json(&admin_b, "/v1/acl/rules").await;
    assert_eq!(b_rules, json!({"rules": []}));
    let resp = app
        .request(
            Method::DELETE,
            &format!("/v1/acl/rules/{id}"),
            Some(&admin_b),
        )
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(resp).await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    let q = [
        ("subject", "user:bob"),
        ("path", "/only-a"),
        ("permission", "list"),
    ];
    assert_eq!(
        check(&app, &admin_b, &q).await.1,
        json!({"allowed": false, "rule_ids": []})
    );
    let mut q_at = q.to_vec();
    q_at.push(("at", "2999-01-01T00:00:00Z"));
    assert_eq!(check(&app, &admin_b, &q_at).await.1["allowed"], false);

    // B's bob is not A's bob.
    let bob_b = app.token("bob", "beta", &[]);
    assert_eq!(
        app.get_json(&bob_b, "/v1/list/only-a").await.0,
        StatusCode::FORBIDDEN
    );
    let bob_a = app.token("bob", "acme", &[]);
    assert_eq!(
        app.get_json(&bob_a, "/v1/list/only-a").await.0,
        StatusCode::OK
    );

    // B's admin acting on "A's" paths acts in B's own tree: nothing of A is seen or touched.
    assert_eq!(
        app.get_json(&admin_b, "/v1/stat/only-a").await.0,
        StatusCode::NOT_FOUND
    );
    let (_, root_b) = app.get_json(&admin_b, "/v1/list/").await;
    assert_eq!(root_b["entries"], json!([]));
    let del = app
        .run(
            &admin_b,
            json!({"op": "delete", "path": "/only-a", "recursive": true}),
        )
        .await;
    assert_eq!(del["error"]["code"], "not_found", "{del}");
    let mv = app
        .run(
            &admin_b,
            json!({"op": "move", "from": "/only-a", "to": "/stolen"}),
        )
        .await;
    assert_eq!(mv["error"]["code"], "not_found", "{mv}");
    assert!(app.is_dir("acme", "/only-a/inner").await);
    assert!(!app.exists("beta", "/stolen").await);

    // A's rule is untouched.
    let (_, a_rules) = app.get_json(&admin_a, "/v1/acl/rules?path=/only-a").await;
    assert_eq!(a_rules["rules"][0]["rule_id"], id);
    assert_eq!(revoke(&app, &admin_a, id).await, StatusCode::NO_CONTENT);
    let forbidden = json!({"op": "delete", "path": "/only-a/inner"});
    assert_eq!(
        command_status(&app, &bob_a, forbidden).await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_path_filter_selects_a_subtree_by_whole_segments() {
    let app = TestApp::spawn().await;
    let admin = app.admin("acme");
    for path in ["/", "/a", "/a/b", "/ab", "/a0"] {
        grant(&app, &admin, "*", path, &["list"], "allow").await;
    }
    let paths = |v: Value| -> Vec<String> {
        v["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["path"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        paths(app.get_json(&admin, "/v1/acl/rules?path=/a").await.1),
        ["/a", "/a/b"]
    );
    assert_eq!(
        paths(app.get_json(&admin, "/v1/acl/rules").await.1).len(),
        5
    );
    assert_eq!(
        paths(app.get_json(&admin, "/v1/acl/rules?path=/").await.1).len(),
        5
    );
}

#[tokio::test]
async fn a_change_the_projection_has_not_applied_is_503_but_recorded() {
    // No projector: the grant is recorded but cannot be in force within the deadline.
    let app = TestApp::spawn_with(&[file_engine::Role::Api], &[]).await;
    let admin = app.admin("acme");
    let body = json!({"subject": "user:bob", "path": "/late", "permissions": ["mkdir"], "effect": "allow"});
    let resp = post_rule(
        &app,
        &admin,
        "application/json",
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "unavailable");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("recorded") && detail.contains("not in force"),
        "{detail}"
    );
    assert_eq!(events_recorded(&app).await, 1);
    let bob = app.token("bob", "acme", &[]);
    let mkdir = json!({"op": "mkdir", "path": "/late"});
    assert_eq!(
        command_status(&app, &bob, mkdir.clone()).await,
        StatusCode::FORBIDDEN
    );

    // Once a projector runs, the recorded rule takes effect.
    let projector = file_engine::start(&app.platform, &[file_engine::Role::Projector])
        .await
        .unwrap();
    let q = [
        ("subject", "user:bob"),
        ("path", "/late"),
        ("permission", "mkdir"),
    ];
    crate::support::eventually(
        "the rule to be projected",
        std::time::Duration::from_secs(30),
        || async { check(&app, &admin, &q).await.1["allowed"] == true },
    )
    .await;
    assert_eq!(
        command_status(&app, &bob, mkdir).await,
        StatusCode::ACCEPTED
    );
    projector.shutdown().await;
}

async fn dump_acl(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT row_to_json(r)::text FROM (
            SELECT 'rule' AS kind, tenant, rule_id::text AS id, subject, path, permissions, effect,
                   granted_by, granted_at, seq FROM acl_rules
            UNION ALL
            SELECT 'version', tenant, NULL, NULL, NULL, NULL, NULL, NULL, NULL, seq FROM acl_versions
         ) r ORDER BY kind, tenant, id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn replay_rebuilds_the_acl_read_model_identically() {
    let mut app = TestApp::spawn().await;
    let (admin_a, admin_b) = (app.admin("acme"), app.admin("beta"));
    let kept = grant_id(
        &app,
        &admin_a,
        "role:staff",
        "/docs",
        &["list", "read"],
        "allow",
    )
    .await;
    let gone = grant_id(&app, &admin_a, "*", "/", &["delete"], "deny").await;
    grant(&app, &admin_b, "user:bob", "/b", &["mkdir"], "allow").await;
    assert_eq!(revoke(&app, &admin_a, &gone).await, StatusCode::NO_CONTENT);
    app.stop_services().await;
    let pool = app.platform.pool.clone();
    let before = dump_acl(&pool).await;
    // Two rules and two tenant versions; the revoked rule is gone.
    assert_eq!(before.len(), 4, "{before:?}");
    assert!(before.iter().any(|r| r.contains(&kept)) && !before.iter().any(|r| r.contains(&gone)));
    projector::replay(app.platform.log.jetstream(), &pool)
        .await
        .unwrap();
    assert_eq!(
        dump_acl(&pool).await,
        before,
        "replay changed the ACL read model"
    );
}
