//! kill -9 of worker processes at random moments during a mixed workload (mkdir, upload,
//! move, copy, overwrite, recursive delete), each restarted at once: every acknowledged task
//! ends exactly once, and the final tree and every task's status equal a model that applies
//! the same commands in log order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::{Rng, SeedableRng};

use super::model::{self, Node, Op, Tree};
use super::rig::{Listing, Rig, RigSpec};
use super::tally::{Tally, TaskHistory};
use super::Form;

pub async fn run(form: Form) {
    let (tasks, lanes, workers) = match form {
        Form::Quick => (150, 6, 2),
        Form::Full => (500, 12, 3),
    };
    let seed: u64 = std::env::var("FE_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("worker_kill: seed {seed} (FE_FAULTS_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let ops = model::workload(&mut rng, "/wk", lanes, tasks);

    let mut rig = Rig::start(RigSpec {
        clamd: true,
        workers,
        env: vec![("FE_WORKER_CONCURRENCY", "4".into())],
        ..RigSpec::default()
    })
    .await;
    let token = rig.admin("acme");

    // The killer: kill -9 a random worker each time the log has grown by a random 15–60
    // commits since the last kill (so restarted workers make progress in between), restart it
    // at once, until every task is terminal.
    let done = Arc::new(AtomicBool::new(false));
    let mut workers = std::mem::take(&mut rig.workers);
    let urls = rig.nats.urls();
    let killer = {
        let done = done.clone();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
        tokio::spawn(async move {
            let mut kills = 0usize;
            let mut last = log_length(&urls).await;
            let mut gap = rng.random_range(15..60);
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(rng.random_range(20..200))).await;
                let now = log_length(&urls).await;
                if now < last + gap {
                    continue;
                }
                let victim = rng.random_range(0..workers.len());
                workers[victim].kill();
                kills += 1;
                workers[victim].restart().expect("restart worker");
                (last, gap) = (now, rng.random_range(15..60));
            }
            (kills, workers)
        })
    };

    // Lanes first (everything else lives in them), then the mix, eight requests in flight.
    let mut acked: Vec<(usize, String)> = Vec::new();
    for (i, op) in ops.iter().enumerate().take(lanes) {
        let body = op.body().expect("lanes are mkdirs");
        let id = rig
            .command(&token, &body)
            .await
            .expect("lane mkdir accepted");
        acked.push((i, id));
    }
    let results: Vec<(usize, Option<String>)> =
        futures::stream::iter(ops.iter().enumerate().skip(lanes))
            .map(|(i, op)| {
                let (rig, token) = (&rig, &token);
                async move {
                    let id = match op {
                        Op::Upload(path, bytes) => rig.upload(token, path, bytes.clone()).await,
                        other => rig.command(token, &other.body().expect("a command")).await,
                    };
                    (i, id)
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
    acked.extend(
        results
            .into_iter()
            .filter_map(|(i, id)| id.map(|id| (i, id))),
    );

    let ids: Vec<String> = acked.iter().map(|(_, id)| id.clone()).collect();
    let finals = rig.wait_all(&token, &ids, form.patience()).await;
    done.store(true, Ordering::Relaxed);
    let (kills, workers) = killer.await.expect("killer");
    rig.workers = workers;

    let log = rig.read_log().await;
    let mut tally = Tally::judge(ops.len(), &finals, &log);

    // The model applies the acknowledged commands in the order the log holds them.
    let history = TaskHistory::of(&log);
    let mut in_log_order: Vec<(u64, usize, &String)> = acked
        .iter()
        .filter_map(|(i, id)| history.requested_at(id).map(|seq| (seq, *i, id)))
        .collect();
    in_log_order.sort();
    let mut tree = Tree::default();
    let mut diverged = 0;
    for (_, i, id) in &in_log_order {
        let expected = if tree.apply(&ops[*i]) {
            "succeeded"
        } else {
            "failed"
        };
        let got = finals
            .get(*id)
            .and_then(|t| t["status"].as_str())
            .unwrap_or("?");
        if got != expected {
            let error = finals
                .get(*id)
                .map(|t| t["error"].clone())
                .unwrap_or_default();
            eprintln!(
                "diverged: task {id} {:?}: {got} {error}, model says {expected}",
                ops[*i]
            );
            diverged += 1;
        }
    }
    let actual = rig.tree(&token, "/wk").await;
    let expected = tree.below("/wk");
    let tree_differences = compare_trees(&expected, &actual);
    if !tree_differences.is_empty() {
        // The history of every diverged path, to tell a platform bug from a model bug.
        for (seq, i, id) in &in_log_order {
            if tree_differences.iter().any(|p| touches(&ops[*i], p)) {
                let task = &finals[*id];
                eprintln!(
                    "  history: log {seq} task {id} {:?}: {} {}",
                    ops[*i], task["status"], task["error"]
                );
            }
        }
    }
    diverged += tree_differences.len();
    tally.lost += diverged;
    eprintln!(
        "worker_kill: {kills} kills of {} worker processes",
        rig.workers.len()
    );
    assert!(
        kills >= 2,
        "fewer than two kills happened; the scenario proved nothing"
    );
    tally.report("worker_kill");
}

/// Whether `op` names `path`, one of its ancestors or one of its descendants.
fn touches(op: &Op, path: &str) -> bool {
    let related = |p: &str| {
        p == path || path.starts_with(&format!("{p}/")) || p.starts_with(&format!("{path}/"))
    };
    match op {
        Op::Mkdir(p) | Op::Upload(p, _) | Op::Delete(p) => related(p),
        Op::Move { from, to, .. } | Op::Copy { from, to, .. } => related(from) || related(to),
    }
}

/// The entries that differ between the model and the API's listing, each printed.
fn compare_trees(expected: &BTreeMap<String, Node>, actual: &Listing) -> Vec<String> {
    let mut differences = Vec::new();
    for (path, node) in expected {
        let ok = match (node, actual.get(path)) {
            (Node::Dir, Some((kind, _, _))) => kind == "dir",
            (Node::File(sha), Some((kind, got, status))) => {
                kind == "file"
                    && got.as_deref() == Some(sha)
                    && status.as_deref() == Some("available")
            }
            (_, None) => false,
        };
        if !ok {
            eprintln!(
                "diverged: {path}: model {node:?}, API {:?}",
                actual.get(path)
            );
            differences.push(path.clone());
        }
    }
    for path in actual.keys().filter(|p| !expected.contains_key(*p)) {
        eprintln!(
            "diverged: {path} exists, the model has no such entry: {:?}",
            actual[path]
        );
        differences.push(path.clone());
    }
    differences
}

/// Messages in the event stream right now (0 while it cannot be asked).
async fn log_length(urls: &str) -> u64 {
    let servers: Vec<&str> = urls.split(',').collect();
    let Ok(client) = async_nats::connect(servers).await else {
        return 0;
    };
    let js = async_nats::jetstream::new(client);
    match js.get_stream(platform::streams::EVENTS_STREAM).await {
        Ok(mut stream) => stream.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}
