//! Fair workers: one tenant's backlog of tasks waiting for their turn never keeps the workers
//! from another tenant's work, nor holds deliveries in JetStream (it is set aside in
//! PostgreSQL, each task with the task it waits for), and the waiting tasks are neither lost
//! nor dead-lettered for having waited: they run once their turn comes.

mod support;

use std::time::{Duration, Instant};

use file_engine::Role;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::TestApp;

/// More waiting tasks than the old worker window (256 unacknowledged deliveries) held.
const WAITING: usize = 300;

#[tokio::test]
async fn a_tenant_full_of_waiting_tasks_does_not_delay_another_tenant() {
    let clamd = testkit::clamd::Clamd::start().await.expect("clamd");
    // No scanner at first: the upload below stays pending for as long as the test wants.
    let app = TestApp::spawn_with(
        &[Role::Api, Role::Projector, Role::Worker],
        &[
            ("FE_CLAMD_ADDR", clamd.addr.as_str()),
            ("FE_WORKER_CONCURRENCY", "4"),
        ],
    )
    .await;
    let hog = app.admin("hog");
    let other = app.admin("other");

    let resp = app
        .upload(&hog, "/blk", b"blocking upload".to_vec(), &[])
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let upload_task = resp.json::<Value>().await.unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Every one of these is below the pending upload, so each waits for it.
    let waiting: Vec<String> = futures::stream::iter(0..WAITING)
        .map(|i| {
            let (app, hog) = (&app, &hog);
            async move {
                let body = json!({"op": "mkdir", "path": format!("/blk/d{i}"), "parents": true});
                app.submit(hog, body).await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;

    // Measure the workers, not the projector's catch-up: every waiting task is projected first.
    let pool = &app.platform.pool;
    support::eventually(
        "the waiting tasks to be projected",
        Duration::from_secs(120),
        || async {
            let projected: i64 =
                sqlx::query_scalar("SELECT count(*) FROM tasks WHERE tenant = 'hog'")
                    .fetch_one(pool)
                    .await
                    .unwrap_or(0);
            projected == WAITING as i64 + 1
        },
    )
    .await;

    // Every waiting task is set aside, waiting for the upload, and its delivery acknowledged:
    // JetStream holds none of them (the old worker kept each one "ack pending").
    support::eventually(
        "the waiting tasks to be set aside",
        Duration::from_secs(120),
        || async {
            let aside: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM worker_deferred
                  WHERE tenant = 'hog' AND blocked_by = $1::uuid",
            )
            .bind(&upload_task)
            .fetch_one(pool)
            .await
            .unwrap_or(0);
            aside == WAITING as i64
        },
    )
    .await;
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = app
        .platform
        .log
        .jetstream()
        .get_consumer_from_stream("fe-worker", platform::streams::EVENTS_STREAM)
        .await
        .expect("the worker's consumer");
    let info = consumer.info().await.expect("consumer info");
    assert!(
        info.num_ack_pending <= 16,
        "{} deliveries held in JetStream while {WAITING} tasks wait",
        info.num_ack_pending
    );

    let started = Instant::now();
    let task = app
        .run(&other, json!({"op": "mkdir", "path": "/unrelated"}))
        .await;
    let took = started.elapsed();
    eprintln!("another tenant's mkdir behind {WAITING} waiting tasks: {took:?}");
    assert_eq!(task["status"], "succeeded", "{task}");
    assert!(
        took < Duration::from_secs(10),
        "another tenant's task took {took:?} behind {WAITING} waiting tasks"
    );
    for id in waiting.iter().take(5) {
        let (_, t) = app.get_json(&hog, &format!("/v1/tasks/{id}")).await;
        assert_eq!(
            t["status"], "pending",
            "a waiting task must stay queued: {t}"
        );
    }

    // Unblock: a scanner passes the upload, and every waiting task then runs to an outcome
    // (the upload made /blk a file, so the mkdirs below it fail with a stable code).
    let _scanner = file_engine::start(&app.platform, &[Role::Scanner])
        .await
        .expect("scanner");
    let upload = app.wait_task(&hog, &upload_task).await;
    assert_eq!(upload["status"], "succeeded", "{upload}");
    for id in &waiting {
        let t = app.wait_task(&hog, id).await;
        assert_eq!(t["status"], "failed", "{t}");
        assert_ne!(t["error"]["code"], "storage_error", "{t}");
    }
    support::eventually(
        "the set-aside work to be settled",
        Duration::from_secs(30),
        || async {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM worker_deferred")
                .fetch_one(pool)
                .await
                .unwrap_or(-1);
            left == 0
        },
    )
    .await;
}
