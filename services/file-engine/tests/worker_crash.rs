//! A worker process killed with SIGKILL in the middle of a batch, then restarted, finishes
//! every task, and every task has exactly one recorded outcome in the log; work it had set
//! aside (waiting for its turn) or taken back under a lease is not lost with it.

mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use file_engine::Role;
use futures::StreamExt;
use serde_json::json;
use support::{eventually, TestApp};

fn spawn_worker(app: &TestApp) -> Child {
    let env = app.env(&[
        ("FE_WORKER_CONCURRENCY", "2"),
        ("FE_WORKER_ACK_WAIT_S", "2"),
        ("FE_LOG_LEVEL", "error"),
    ]);
    Command::new(env!("CARGO_BIN_EXE_file-engine"))
        .arg("worker")
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn worker")
}

async fn terminal_count(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM tasks WHERE status IN ('succeeded', 'failed', 'dead_lettered')",
    )
    .fetch_one(&app.platform.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_killed_worker_is_replaced_and_every_task_finishes_exactly_once() {
    let app = TestApp::spawn_with(&[Role::Api, Role::Projector], &[]).await;
    let t = app.admin("acme");
    const N: usize = 120;
    let mut ids = Vec::new();
    for i in 0..N {
        // Copies of a small tree keep each effect busy for a moment.
        ids.push(
            app.submit(
                &t,
                json!({"op": "mkdir", "path": format!("/crash/d{i}/x/y"), "parents": true}),
            )
            .await,
        );
    }

    let mut worker = spawn_worker(&app);
    eventually("some tasks to finish", Duration::from_secs(60), || async {
        terminal_count(&app).await >= 10
    })
    .await;
    worker.kill().expect("kill -9 the worker");
    worker.wait().unwrap();
    let at_kill = terminal_count(&app).await;
    assert!(
        (at_kill as usize) < N,
        "the worker finished everything before it was killed; the test proves nothing"
    );

    let mut replacement = spawn_worker(&app);
    eventually("every task to finish", Duration::from_secs(120), || async {
        terminal_count(&app).await == N as i64
    })
    .await;
    replacement.kill().ok();
    replacement.wait().ok();

    for id in &ids {
        let task = app.wait_task(&t, id).await;
        assert_eq!(task["status"], "succeeded", "{task}");
    }
    for i in 0..N {
        assert!(app.is_dir("acme", &format!("/crash/d{i}/x/y")).await);
    }
    // Exactly one outcome per task in the log.
    let outcomes = outcomes_per_task(&app).await;
    assert_eq!(outcomes.len(), N);
    assert!(
        outcomes.values().all(|&n| n == 1),
        "a task recorded more than one outcome: {outcomes:?}"
    );
}

/// A chain of tasks on one path (mkdir, delete, mkdir, …): each waits for the one before, so
/// all but the running one are set aside in PostgreSQL, each woken by its predecessor's end.
/// A worker killed in the middle of the chain loses nothing, runs nothing twice and breaks no
/// link of the order (a mkdir or delete out of order would fail).
#[tokio::test]
async fn set_aside_work_survives_a_killed_worker_and_keeps_the_order() {
    let app = TestApp::spawn_with(&[Role::Api, Role::Projector], &[]).await;
    let t = app.admin("chain");
    const N: usize = 60;
    let mut ids = Vec::new();
    for i in 0..N {
        let command = if i % 2 == 0 {
            json!({"op": "mkdir", "path": "/link/x", "parents": true})
        } else {
            json!({"op": "delete", "path": "/link/x", "recursive": true})
        };
        ids.push(app.submit(&t, command).await);
    }
    let pool = &app.platform.pool;
    let set_aside = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM worker_deferred WHERE tenant = 'chain'")
            .fetch_one(pool)
            .await
            .unwrap()
    };

    let mut worker = spawn_worker(&app);
    eventually(
        "the chain to be set aside and begun",
        Duration::from_secs(60),
        || async { terminal_count(&app).await >= 6 && set_aside().await > 0 },
    )
    .await;
    worker.kill().expect("kill -9 the worker");
    worker.wait().unwrap();
    assert!(
        (terminal_count(&app).await as usize) < N,
        "the chain ended before the kill; the test proves nothing"
    );

    let mut replacement = spawn_worker(&app);
    eventually(
        "the whole chain to finish",
        Duration::from_secs(180),
        || async { terminal_count(&app).await == N as i64 },
    )
    .await;
    eventually(
        "the set-aside work to be settled",
        Duration::from_secs(30),
        || async { set_aside().await == 0 },
    )
    .await;
    replacement.kill().ok();
    replacement.wait().ok();

    for id in &ids {
        let task = app.wait_task(&t, id).await;
        assert_eq!(task["status"], "succeeded", "out of order or lost: {task}");
    }
    assert!(
        !app.exists("chain", "/link/x").await,
        "the last link deletes it"
    );
    let outcomes = outcomes_per_task(&app).await;
    assert_eq!(outcomes.len(), N);
    assert!(
        outcomes.values().all(|&n| n == 1),
        "a task recorded more than one outcome: {outcomes:?}"
    );
}

async fn outcomes_per_task(app: &TestApp) -> HashMap<String, usize> {
    let js = app.platform.log.jetstream();
    let mut stream = js
        .get_stream(platform::streams::EVENTS_STREAM)
        .await
        .unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut outcomes = HashMap::new();
    while let Some(Ok(m)) = messages.next().await {
        let commit = platform::event_log::LoggedCommit::from_message(&m).unwrap();
        for e in &commit.events {
            if matches!(
                e.event_type.as_str(),
                "task.succeeded" | "task.failed" | "task.dead_lettered"
            ) {
                *outcomes.entry(commit.aggregate_id.clone()).or_insert(0) += 1;
            }
        }
        if commit.stream_seq >= last {
            break;
        }
    }
    outcomes
}
