//! Two projector processes (the real `file-engine projector` binary) share the partitions of
//! the log; when one is killed with SIGKILL the other takes its partitions over, and every
//! commit ends up projected exactly once: the read models equal a replay of the log.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use file_engine::Role;
use serde_json::json;
use support::{eventually, TestApp};

const PARTITIONS: &str = "4";

fn spawn_projector(app: &TestApp) -> Child {
    let env = app.env(&[
        ("FE_PARTITIONS", PARTITIONS),
        ("FE_OPS_ADDR", "127.0.0.1:0"),
        ("FE_LOG_LEVEL", "error"),
    ]);
    Command::new(env!("CARGO_BIN_EXE_file-engine"))
        .arg("projector")
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn projector")
}

/// Partition → owning replica (its PostgreSQL application name).
async fn owners(app: &TestApp) -> BTreeMap<u32, String> {
    projector::ownership::partition_owners(&app.platform.pool)
        .await
        .unwrap()
}

/// Replica → how many partitions it owns.
async fn shares(app: &TestApp) -> BTreeMap<String, usize> {
    let mut shares = BTreeMap::new();
    for owner in owners(app).await.into_values() {
        *shares.entry(owner).or_insert(0) += 1;
    }
    shares
}

/// Every row of the read models, as text, in a stable order.
async fn dump(app: &TestApp) -> Vec<String> {
    let mut rows = Vec::new();
    for (table, order) in [
        ("tasks", "tenant, task_id"),
        ("entries", "tenant, path"),
        ("acl_rules", "tenant, rule_id"),
        ("audit_events", "tenant, seq, idx"),
        ("audit_heads", "tenant"),
    ] {
        let sql = format!("SELECT to_jsonb(t)::text FROM {table} t ORDER BY {order}");
        let part: Vec<String> = sqlx::query_scalar(&sql)
            .fetch_all(&app.platform.pool)
            .await
            .unwrap();
        rows.extend(part.into_iter().map(|r| format!("{table}: {r}")));
    }
    rows
}

/// Submits three mkdirs per tenant; returns (token, task id) of each.
async fn submit_round(app: &TestApp, tenants: &[String], round: usize) -> Vec<(String, String)> {
    let mut ids = Vec::new();
    for tenant in tenants {
        let t = app.admin(tenant);
        for i in 0..3 {
            let path = format!("/r{round}/d{i}");
            ids.push((
                t.clone(),
                app.submit(&t, json!({"op": "mkdir", "path": path, "parents": true}))
                    .await,
            ));
        }
    }
    ids
}

/// Waits for every task of a round and checks it succeeded.
async fn all_succeed(app: &TestApp, ids: Vec<(String, String)>) {
    for (t, id) in ids {
        let task = app.wait_task(&t, &id).await;
        assert_eq!(task["status"], "succeeded", "{task}");
    }
}

/// Runs one round and checks it all succeeds.
async fn work(app: &TestApp, tenants: &[String], round: usize) {
    let ids = submit_round(app, tenants, round).await;
    all_succeed(app, ids).await;
}

#[tokio::test]
async fn two_projector_processes_split_partitions_and_take_over_after_kill_9() {
    let app =
        TestApp::spawn_with(&[Role::Api, Role::Worker], &[("FE_PARTITIONS", PARTITIONS)]).await;
    let tenants: Vec<String> = (0..8).map(|i| format!("tenant-{i}")).collect();
    let mut first = spawn_projector(&app);
    let mut second = spawn_projector(&app);

    eventually(
        "the partitions to be split 2 + 2",
        Duration::from_secs(60),
        || async {
            let shares = shares(&app).await;
            shares.len() == 2 && shares.values().all(|n| *n == 2)
        },
    )
    .await;
    work(&app, &tenants, 1).await;

    // Killed with a round in flight: its commits are projected by whichever projector owns
    // their partition, before or after the takeover.
    let in_flight = submit_round(&app, &tenants, 2).await;
    first.kill().expect("kill -9 one projector");
    first.wait().unwrap();
    eventually(
        "the survivor to own every partition",
        Duration::from_secs(60),
        || async {
            let shares = shares(&app).await;
            shares.len() == 1 && shares.values().all(|n| *n == 4)
        },
    )
    .await;
    all_succeed(&app, in_flight).await;
    work(&app, &tenants, 3).await;

    // The tenants really were spread over several partitions.
    let spread: BTreeSet<u32> = tenants
        .iter()
        .map(|t| events::partition::partition_of_str(t, 4))
        .collect();
    assert!(spread.len() > 1, "{spread:?}");

    second.kill().expect("stop the survivor");
    second.wait().unwrap();
    let projected = dump(&app).await;
    assert!(projected.iter().any(|r| r.starts_with("audit_events")));
    let js = app.platform.log.jetstream();
    projector::replay(js, &app.platform.pool).await.unwrap();
    assert_eq!(
        dump(&app).await,
        projected,
        "the live, partitioned, taken-over projection differs from a replay"
    );
}
