//! Read models are a pure function of the log: redelivering a commit changes nothing, and a
//! replay from the first sequence rebuilds identical tables.

mod support;

use futures::StreamExt;
use serde_json::json;
use sqlx::PgPool;
use support::TestApp;

async fn dump(pool: &PgPool) -> Vec<String> {
    let tasks: Vec<String> = sqlx::query_scalar(
        "SELECT row_to_json(t)::text FROM (SELECT * FROM tasks ORDER BY tenant, task_id) t",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let entries: Vec<String> = sqlx::query_scalar(
        "SELECT row_to_json(e)::text FROM (SELECT * FROM entries ORDER BY tenant, path) e",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let usage: Vec<String> = sqlx::query_scalar(
        "SELECT row_to_json(u)::text FROM (SELECT * FROM tenant_usage ORDER BY tenant) u",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    tasks.into_iter().chain(entries).chain(usage).collect()
}

#[tokio::test]
async fn redelivery_is_ignored_and_replay_rebuilds_identical_read_models() {
    let mut app = TestApp::spawn().await;
    let t = app.admin("acme");
    let g = app.admin("globex");
    app.run(
        &t,
        json!({"op": "mkdir", "path": "/r/a/b", "parents": true}),
    )
    .await;
    app.run(&t, json!({"op": "copy", "from": "/r/a", "to": "/r/c"}))
        .await;
    app.run(&t, json!({"op": "move", "from": "/r/c", "to": "/r/d"}))
        .await;
    app.run(
        &t,
        json!({"op": "delete", "path": "/r/a", "recursive": true}),
    )
    .await;
    app.run(&t, json!({"op": "delete", "path": "/nothing"}))
        .await;
    app.run(&g, json!({"op": "mkdir", "path": "/g"})).await;
    // Runs of directories created, named again, moved away and created again: replay applies
    // them in one batch (directories gathered into one statement, written before the move),
    // live projection one commit at a time; the read models must not differ.
    for command in [
        json!({"op": "mkdir", "path": "/r/x/y/z", "parents": true}),
        json!({"op": "mkdir", "path": "/r/x/y/w", "parents": true}),
        json!({"op": "move", "from": "/r/x/y", "to": "/r/m"}),
        json!({"op": "mkdir", "path": "/r/x/y/z", "parents": true}),
        json!({"op": "copy", "from": "/r/x", "to": "/r/m/x"}),
        json!({"op": "mkdir", "path": "/r/m/x/y/q", "parents": true}),
    ] {
        let task = app.run(&t, command).await;
        assert_eq!(task["status"], "succeeded", "{task}");
    }
    app.stop_services().await;

    let pool = app.platform.pool.clone();
    let before = dump(&pool).await;
    assert!(
        before.len() > 8,
        "scenario produced too few rows: {before:?}"
    );

    // Redeliver the first commit of the log: it is at or below the checkpoint.
    let js = app.platform.log.jetstream();
    let stream = js
        .get_stream(platform::streams::EVENTS_STREAM)
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let first = messages.next().await.unwrap().unwrap();
    let commit = platform::event_log::LoggedCommit::from_message(&first).unwrap();
    assert!(
        !projector::apply_commit(&pool, &commit).await.unwrap(),
        "a redelivered commit was applied again"
    );
    assert_eq!(dump(&pool).await, before);

    let checkpoint = projector::replay(js, &pool).await.unwrap();
    assert!(checkpoint > 0);
    assert_eq!(
        dump(&pool).await,
        before,
        "replay produced different read models"
    );
}
