//! Log order per path across several worker processes: a chain of moves of one entry
//! back and forth (each only possible after the one before it) runs strictly in log order,
//! while tasks on unrelated paths are observed overtaking it.

use futures::StreamExt;
use serde_json::json;

use super::rig::{Rig, RigSpec};
use super::tally::{Tally, TaskHistory};
use super::Form;

pub async fn overlapping_paths(form: Form) {
    let (chain_len, free) = match form {
        Form::Quick => (16, 48),
        Form::Full => (60, 200),
    };
    let rig = Rig::start(RigSpec {
        workers: 3,
        env: vec![("FE_WORKER_CONCURRENCY", "4".into())],
        ..RigSpec::default()
    })
    .await;
    let token = rig.admin("acme");
    let mut chain = Vec::new();
    let first = rig
        .command(
            &token,
            &json!({"op": "mkdir", "path": "/ord/chain/a/inner", "parents": true}),
        )
        .await
        .expect("accepted");
    chain.push(first);

    // The chain is sent one command after the other (so the log holds it in this order) while
    // unrelated mkdirs flow concurrently.
    let unrelated = futures::stream::iter(0..free)
        .map(|i| {
            let (rig, token) = (&rig, &token);
            async move {
                rig.command(
                    token,
                    &json!({"op": "mkdir", "path": format!("/ord/free/{i}/x"), "parents": true}),
                )
                .await
                .expect("accepted")
            }
        })
        .buffer_unordered(6)
        .collect::<Vec<String>>();
    let chained = async {
        for step in 0..chain_len {
            let (from, to) = if step % 2 == 0 {
                ("a", "b")
            } else {
                ("b", "a")
            };
            let body = json!({"op": "move", "from": format!("/ord/chain/{from}"), "to": format!("/ord/chain/{to}"), "overwrite": false});
            chain.push(rig.command(&token, &body).await.expect("accepted"));
        }
    };
    let (free_ids, ()) = tokio::join!(unrelated, chained);

    let all: Vec<String> = chain.iter().chain(free_ids.iter()).cloned().collect();
    let finals = rig.wait_all(&token, &all, form.patience()).await;
    let log = rig.read_log().await;
    let mut tally = Tally::judge(all.len(), &finals, &log);
    let history = TaskHistory::of(&log);

    // Overlapping paths: each chain task started only after the previous one finished.
    let mut out_of_order = 0;
    for pair in chain.windows(2) {
        let before = history.runs[&pair[0]][0].finished.map(|f| f.0);
        let after = history.runs[&pair[1]][0].started.map(|s| s.0);
        if !matches!((before, after), (Some(b), Some(a)) if a > b) {
            eprintln!(
                "out of order: {} (finished {before:?}) vs {} (started {after:?})",
                pair[0], pair[1]
            );
            out_of_order += 1;
        }
        if finals[&pair[1]]["status"] != "succeeded" {
            eprintln!("chain step {} failed: {}", pair[1], finals[&pair[1]]);
            out_of_order += 1;
        }
    }
    tally.lost += out_of_order;

    // Unrelated paths do not wait for the chain: unrelated tasks finish while a chain task
    // queued before them is still open (they overtake it in the log). A single mkdir starts and
    // succeeds in one commit, so overtaking, not overlapping spans, is what shows it.
    let chain_runs: Vec<(u64, u64)> = chain
        .iter()
        .filter_map(|id| {
            let run = history.runs.get(id)?.first()?;
            Some((run.queued_at, run.finished?.0))
        })
        .collect();
    let overtaking = free_ids
        .iter()
        .filter_map(|id| history.runs.get(id)?.first())
        .filter(|run| {
            let Some((finished, _)) = run.finished else {
                return false;
            };
            chain_runs
                .iter()
                .any(|&(queued, done)| queued < run.queued_at && finished < done)
        })
        .count();
    eprintln!("overlap_order: {overtaking} unrelated tasks overtook an earlier chain task");
    assert!(
        overtaking > 0,
        "unrelated paths waited for the chain (a global order, not one per path)"
    );
    tally.report("overlap_order");
}
