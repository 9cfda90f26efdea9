//! Verification passes on an untouched system after 10,000 events in two interleaved tenants,
//! and the index holds exactly one row per event.

use std::time::Instant;

use chrono::Utc;
use events::task::{FileCommand, TaskEvent, TaskSpec};
use events::{FilePath, TenantId};
use file_engine::Role;
use platform::event_log::{aggregate_id, StoredEvent};
use serde_json::{json, Value};
use uuid::Uuid;

use super::support::TestApp;
use super::{cli_verify, cli_verify_with, verify, wait_projected};

/// Events per bulk commit.
const PER_COMMIT: usize = 100;

/// One commit of a task: requested, then started `PER_COMMIT - 1` times (a worker's retries).
fn bulk_commit(tenant: &TenantId, i: usize) -> Vec<StoredEvent> {
    let task_id = Uuid::now_v7();
    let id = aggregate_id(tenant, &task_id.to_string());
    let requested = TaskEvent::TaskRequested {
        task_id,
        tenant: tenant.clone(),
        principal: format!("user-{}", i % 7),
        roles: vec![],
        spec: TaskSpec::Command(FileCommand::Mkdir {
            path: FilePath::parse(&format!("/bulk/{i}")).unwrap(),
            parents: true,
        }),
        idempotency_key: None,
        body_hash: None,
        requested_at: Utc::now(),
    };
    let mut events = vec![requested];
    events.extend((1..PER_COMMIT as u32).map(|attempt| TaskEvent::TaskStarted { attempt }));
    events
        .into_iter()
        .enumerate()
        .map(|(n, e)| StoredEvent {
            aggregate_type: "task".into(),
            aggregate_id: id.clone(),
            sequence: n + 1,
            event_type: e.name().into(),
            event_version: "1".into(),
            payload: serde_json::to_value(&e).unwrap(),
            metadata: json!({"principal": format!("user-{}", i % 7), "request_id": format!("bulk-{i}")}),
        })
        .collect()
}

#[tokio::test]
async fn ten_thousand_events_verify_clean() {
    // No worker: the bulk tasks stay as logged, nothing else appends meanwhile.
    let app = TestApp::spawn_with(&[Role::Api, Role::Projector], &[]).await;
    let admin = app.admin("acme");
    app.submit(&admin, json!({"op": "mkdir", "path": "/before"}))
        .await;
    let started = Instant::now();
    let (acme, globex) = (
        TenantId::parse("acme").unwrap(),
        TenantId::parse("globex").unwrap(),
    );
    for i in 0..100 {
        let tenant = if i % 5 == 4 { &globex } else { &acme };
        let events: Vec<_> = bulk_commit(tenant, i).into_iter().map(Into::into).collect();
        app.platform.log.append(&events).await.unwrap();
    }
    app.submit(&admin, json!({"op": "mkdir", "path": "/after"}))
        .await;
    let appended = started.elapsed();
    wait_projected(&app).await;
    let projected = started.elapsed();

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&app.platform.pool)
        .await
        .unwrap();
    assert_eq!(rows, 10_002);

    let t = Instant::now();
    let v: Value = verify(&app, &app.token("carol", "acme", &["auditor"])).await;
    let endpoint = t.elapsed();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["events"], 8_002);

    assert_eq!(v["verified_from_seq"], 0);
    assert_eq!(v["verified_through_seq"], 8_002);

    // Verified twice: the second check continues from the verified head and reads only
    // what is new: nothing, then the one event of a new request.
    let carol = app.token("carol", "acme", &["auditor"]);
    let t = Instant::now();
    let again = verify(&app, &carol).await;
    let incremental = t.elapsed();
    assert_eq!(again["ok"], true, "{again}");
    assert_eq!(again["events"], 0, "{again}");
    assert_eq!(again["verified_from_seq"], 8_002);
    assert_eq!(again["head_hash"], v["head_hash"]);
    app.submit(&admin, json!({"op": "mkdir", "path": "/later"}))
        .await;
    wait_projected(&app).await;
    let third = verify(&app, &carol).await;
    assert_eq!(third["ok"], true, "{third}");
    assert_eq!(third["events"], 1, "{third}");
    assert_eq!(
        (
            third["verified_from_seq"].as_u64(),
            third["verified_through_seq"].as_u64()
        ),
        (Some(8_002), Some(8_003))
    );

    // The CLI continues too: acme is verified, only globex's 2,000 events are read.
    let t = Instant::now();
    let (ok, report) = cli_verify(&app);
    let cli = t.elapsed();
    assert!(ok, "{report}");
    assert_eq!(report["events"], 2_000);
    assert_eq!(report["heads"]["acme"], third["head_hash"]);
    // --full re-checks everything from the genesis.
    let t = Instant::now();
    let (ok, full) = cli_verify_with(&app, &["--full"]);
    let cli_full = t.elapsed();
    assert!(ok, "{full}");
    assert_eq!(full["events"], 10_003);
    assert_eq!(full["heads"], report["heads"]);
    eprintln!(
        "10,003 events: appended in {appended:?}, projected by {projected:?}; \
         verify acme (8,002) {endpoint:?}, again {incremental:?}; CLI incremental {cli:?}, \
         CLI --full {cli_full:?}"
    );
}
