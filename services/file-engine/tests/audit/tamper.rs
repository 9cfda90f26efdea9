//! Tampering with the audit index (changing, deleting or reordering rows) makes verification
//! fail and name the sequence, through the endpoint and the CLI.

use serde_json::{json, Value};

use super::support::TestApp;
use super::{cli_verify, verify, wait_projected};

/// A few operations in `acme` (and one in `globex`); returns the acme auditor's token.
async fn scenario(app: &TestApp) -> String {
    let admin = app.admin("acme");
    for body in [
        json!({"op": "mkdir", "path": "/a"}),
        json!({"op": "mkdir", "path": "/a/b"}),
        json!({"op": "move", "from": "/a/b", "to": "/c"}),
    ] {
        assert_eq!(app.run(&admin, body).await["status"], "succeeded");
    }
    app.run(&app.admin("globex"), json!({"op": "mkdir", "path": "/g"}))
        .await;
    wait_projected(app).await;
    app.token("carol", "acme", &["auditor"])
}

/// The (seq, logseq) of acme's first row of `short_type`.
async fn row_of(app: &TestApp, short_type: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT seq, logseq FROM audit_events WHERE tenant = 'acme' AND type = $1 ORDER BY seq LIMIT 1",
    )
    .bind(short_type)
    .fetch_one(&app.platform.pool)
    .await
    .unwrap()
}

/// Whether the report lists a problem of `kind` at `seq`.
fn names(report: &Value, seq: i64, kind: &str) -> bool {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["seq"] == seq && p["kind"] == kind)
}

async fn exec(app: &TestApp, sql: &str, seq: i64) {
    sqlx::query(sql)
        .bind(seq)
        .execute(&app.platform.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_untouched_index_verifies_through_the_endpoint_and_the_cli() {
    let app = TestApp::spawn().await;
    let auditor = scenario(&app).await;
    let v = verify(&app, &auditor).await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["problems"], json!([]));
    assert!(v["events"].as_u64().unwrap() >= 9);
    let head: Vec<u8> = sqlx::query_scalar("SELECT hash FROM audit_heads WHERE tenant = 'acme'")
        .fetch_one(&app.platform.pool)
        .await
        .unwrap();
    assert_eq!(v["head_hash"], hex(&head));
    let (ok, report) = cli_verify(&app);
    assert!(ok, "{report}");
    assert_eq!(report["heads"]["acme"], v["head_hash"]);
    assert!(report["heads"]["globex"].is_string());
}

#[tokio::test]
async fn a_changed_row_is_named_by_its_sequence() {
    let app = TestApp::spawn().await;
    let auditor = scenario(&app).await;
    let (seq, _) = row_of(&app, "entry.moved").await;
    exec(
        &app,
        "UPDATE audit_events SET event = replace(event, '\"/c\"', '\"/elsewhere\"') WHERE tenant = 'acme' AND seq = $1",
        seq,
    )
    .await;
    let v = verify(&app, &auditor).await;
    assert_eq!(v["ok"], false);
    assert!(names(&v, seq, "changed"), "{v}");
    assert!(names(&v, seq, "chain_broken"), "{v}");
    // A filter column alone is checked too.
    let (seq2, _) = row_of(&app, "dir.created").await;
    exec(
        &app,
        "UPDATE audit_events SET principal = 'mallory' WHERE tenant = 'acme' AND seq = $1",
        seq2,
    )
    .await;
    let v = verify(&app, &auditor).await;
    assert!(names(&v, seq2, "changed"), "{v}");
    let (ok, report) = cli_verify(&app);
    assert!(!ok);
    assert!(names(&report, seq, "changed"), "{report}");
}

#[tokio::test]
async fn a_deleted_row_is_named_by_its_sequence() {
    let app = TestApp::spawn().await;
    let auditor = scenario(&app).await;
    let (seq, _) = row_of(&app, "dir.created").await;
    exec(
        &app,
        "DELETE FROM audit_events WHERE tenant = 'acme' AND seq = $1",
        seq,
    )
    .await;
    let v = verify(&app, &auditor).await;
    assert_eq!(v["ok"], false);
    assert!(names(&v, seq, "missing"), "{v}");
    let (ok, report) = cli_verify(&app);
    assert!(!ok);
    assert!(names(&report, seq, "missing"), "{report}");
}

#[tokio::test]
async fn swapped_rows_are_named_as_reordered() {
    let app = TestApp::spawn().await;
    let auditor = scenario(&app).await;
    let (a, _) = row_of(&app, "dir.created").await;
    let (b, _) = row_of(&app, "entry.moved").await;
    // The two rows trade their events (and hashes): each position holds the other's event.
    sqlx::query(
        "UPDATE audit_events AS r SET event = o.event, hash = o.hash
         FROM audit_events AS o
         WHERE r.tenant = 'acme' AND o.tenant = 'acme'
           AND ((r.seq = $1 AND o.seq = $2) OR (r.seq = $2 AND o.seq = $1))",
    )
    .bind(a)
    .bind(b)
    .execute(&app.platform.pool)
    .await
    .unwrap();
    let v = verify(&app, &auditor).await;
    assert_eq!(v["ok"], false);
    assert!(names(&v, a, "reordered"), "{v}");
    assert!(names(&v, b, "reordered"), "{v}");
}

#[tokio::test]
async fn an_inserted_row_and_a_moved_head_are_found() {
    let app = TestApp::spawn().await;
    let auditor = scenario(&app).await;
    let (seq, _) = row_of(&app, "entry.moved").await;
    // A forged row after the commit's last event, numbered far beyond the tenant's history.
    exec(
        &app,
        "INSERT INTO audit_events (seq, logseq, idx, tenant, type, path, target, task_id,
                                   principal, actor, request_id, time, event, hash)
         SELECT 1000 + seq, logseq, 99, tenant, type, path, target, task_id, principal, actor,
                request_id, time, event, hash
         FROM audit_events WHERE tenant = 'acme' AND seq = $1",
        seq,
    )
    .await;
    let v = verify(&app, &auditor).await;
    assert!(names(&v, 1000 + seq, "extra"), "{v}");
    exec(
        &app,
        "DELETE FROM audit_events WHERE tenant = 'acme' AND seq = 1000 + $1",
        seq,
    )
    .await;
    exec(
        &app,
        "UPDATE audit_heads SET hash = sha256(hash) WHERE tenant = 'acme' AND $1 > 0",
        seq,
    )
    .await;
    let v = verify(&app, &auditor).await;
    assert_eq!(v["ok"], false);
    assert!(
        v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "head_mismatch"),
        "{v}"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every audit row and chain head, in order.
async fn snapshot(app: &TestApp) -> Vec<(i64, i64, String, String, Vec<u8>)> {
    let mut rows: Vec<(i64, i64, String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, logseq, tenant, event, hash FROM audit_events ORDER BY tenant, seq",
    )
    .fetch_all(&app.platform.pool)
    .await
    .unwrap();
    let heads: Vec<(i64, i64, String, String, Vec<u8>)> =
        sqlx::query_as("SELECT seq, logseq, tenant, 'head', hash FROM audit_heads ORDER BY tenant")
            .fetch_all(&app.platform.pool)
            .await
            .unwrap();
    rows.extend(heads);
    rows
}

#[tokio::test]
async fn replay_rebuilds_an_identical_index_and_redelivery_changes_nothing() {
    use futures::StreamExt;

    let mut app = TestApp::spawn().await;
    let auditor = scenario(&app).await;
    let head = verify(&app, &auditor).await["head_hash"].clone();
    let before = snapshot(&app).await;
    assert!(before.len() > 10);
    app.stop_services().await;

    // Redelivery of the first commit: skipped by the checkpoint, the index is unchanged.
    let js = app.platform.log.jetstream();
    let stream = js.get_stream("FE_EVENTS").await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let first = messages.next().await.unwrap().unwrap();
    let commit = platform::event_log::LoggedCommit::from_message(&first).unwrap();
    assert!(!projector::apply_commit(&app.platform.pool, &commit)
        .await
        .unwrap());
    assert_eq!(snapshot(&app).await, before);

    projector::replay(js, &app.platform.pool).await.unwrap();
    assert_eq!(
        snapshot(&app).await,
        before,
        "replay wrote a different index"
    );
    let (ok, report) = cli_verify(&app);
    assert!(ok, "{report}");
    assert_eq!(report["heads"]["acme"], head);
}

#[tokio::test]
async fn a_row_changed_after_its_verification_is_found_by_a_full_check() {
    let app = TestApp::spawn().await;
    let auditor = scenario(&app).await;
    let first = verify(&app, &auditor).await;
    assert_eq!(first["ok"], true, "{first}");
    let (seq, _) = row_of(&app, "entry.moved").await;
    exec(
        &app,
        "UPDATE audit_events SET principal = 'mallory' WHERE tenant = 'acme' AND seq = $1",
        seq,
    )
    .await;
    // An incremental check continues after the verified head: nothing new to read.
    let again = verify(&app, &auditor).await;
    assert_eq!(
        (again["ok"].as_bool(), again["events"].as_u64()),
        (Some(true), Some(0))
    );
    // The operator's full re-check reads everything again and names the row.
    let (ok, report) = super::cli_verify_with(&app, &["--full", "--tenant", "acme"]);
    assert!(!ok);
    assert!(names(&report, seq, "changed"), "{report}");
}
