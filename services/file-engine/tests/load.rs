//! Correctness under load (not timed): a burst of a few thousand commands from several tenants
//! at once, some of them sent twice with the same `Idempotency-Key` by racing clients. Every
//! accepted task must reach exactly one outcome; the log, read through the outcome census, must
//! hold exactly one `task.requested` and one outcome per accepted task, and no task nobody was
//! told about. Nothing lost, nothing duplicated.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use file_engine::bench::census;
use futures::StreamExt;
use serde_json::json;
use support::TestApp;

/// 800 commands over 8 tenants (880 requests with the keyed repeats): enough to keep every
/// worker slot and the projector busy with a backlog per tenant, small enough that the
/// suite's 4-minute limit holds on a shared 2-core machine with a debug build.
const TENANTS: usize = 8;
const PER_TENANT: usize = 100;
const CLIENTS: usize = 32;
/// Every n-th command carries an idempotency key and is sent twice, concurrently.
const KEYED_EVERY: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_several_tenants_loses_and_duplicates_nothing() {
    let app = Arc::new(TestApp::spawn().await);
    let tokens: Vec<String> = (0..TENANTS)
        .map(|t| app.admin(&format!("load{t}")))
        .collect();
    let total = TENANTS * PER_TENANT;
    let started = Instant::now();

    // Each request: (tenant index, task ids answered). Keyed requests are sent twice at once.
    let answers: Vec<(usize, Vec<String>)> = futures::stream::iter(0..total)
        .map(|i| {
            let (app, token) = (app.clone(), tokens[i % TENANTS].clone());
            async move {
                let tenant = i % TENANTS;
                let body = json!({"op": "mkdir", "path": format!("/load/d{i}"), "parents": true});
                if i % KEYED_EVERY == 0 {
                    let key = format!("load-{i}");
                    let (a, b) = tokio::join!(
                        app.post_command(&token, &body, Some(&key)),
                        app.post_command(&token, &body, Some(&key))
                    );
                    let mut ids = Vec::new();
                    for resp in [a, b] {
                        assert_eq!(resp.status().as_u16(), 202, "keyed command {i}");
                        let v: serde_json::Value = resp.json().await.unwrap();
                        ids.push(v["task_id"].as_str().unwrap().to_owned());
                    }
                    (tenant, ids)
                } else {
                    (tenant, vec![app.submit(&token, body).await])
                }
            }
        })
        .buffer_unordered(CLIENTS)
        .collect()
        .await;

    let mut accepted: HashSet<String> = HashSet::new();
    for (tenant, ids) in &answers {
        // Both racing requests with one key were answered with the same task.
        assert!(
            ids.windows(2).all(|w| w[0] == w[1]),
            "keyed answers differ: {ids:?}"
        );
        accepted.insert(format!("load{tenant}.{}", ids[0]));
    }
    assert_eq!(accepted.len(), total, "every request named a distinct task");
    eprintln!("{total} commands accepted in {:?}", started.elapsed());

    // Wait (deadline, not a sleep) until the log holds an outcome for every accepted task.
    let js = app.platform.log.jetstream().clone();
    let deadline = Instant::now() + Duration::from_secs(180);
    let (done, _) = census::follow_outcomes(&js, total, deadline).await.unwrap();
    assert_eq!(done, total, "tasks with an outcome before the deadline");
    eprintln!("all terminal in the log after {:?}", started.elapsed());

    let census = census::take(&js).await.unwrap();
    let in_log: HashSet<&String> = census.tasks.keys().collect();
    let lost: Vec<&String> = accepted.iter().filter(|t| !in_log.contains(t)).collect();
    assert!(lost.is_empty(), "accepted but not in the log: {lost:?}");
    let unknown: Vec<&&String> = in_log.iter().filter(|t| !accepted.contains(**t)).collect();
    assert!(
        unknown.is_empty(),
        "tasks nobody was answered with: {unknown:?}"
    );
    let mut wrong: HashMap<&String, census::TaskEvents> = HashMap::new();
    for (task, events) in &census.tasks {
        if events.requested != 1 || events.outcomes != 1 || !events.succeeded {
            wrong.insert(task, *events);
        }
    }
    assert!(
        wrong.is_empty(),
        "tasks not requested once and succeeded once: {wrong:?}"
    );

    // What clients read agrees with the log: every task is terminal in the read model.
    // Fresh tokens: on a loaded machine the burst may outlast the first ones.
    let tokens: Vec<String> = (0..TENANTS)
        .map(|t| app.admin(&format!("load{t}")))
        .collect();
    let terminal = futures::stream::iter(answers.iter().map(|(tenant, ids)| {
        let (app, token, id) = (app.clone(), tokens[*tenant].clone(), ids[0].clone());
        async move { app.wait_task(&token, &id).await["status"] == "succeeded" }
    }))
    .buffer_unordered(CLIENTS)
    .filter(|ok| futures::future::ready(*ok))
    .count()
    .await;
    assert_eq!(terminal, total, "tasks reading succeeded");
    for i in (0..total).step_by(97) {
        assert!(
            app.is_dir(&format!("load{}", i % TENANTS), &format!("/load/d{i}"))
                .await,
            "directory {i} exists"
        );
    }
}
