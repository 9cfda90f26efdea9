//! The numbers every scenario reports, and how they are read from the API and the log.
//!
//! - `sent`: commands and uploads the scenario sent; `acked`: answered 202 (a promise);
//! - `terminal`, `succeeded`, `failed`: acknowledged tasks by their final status (the API);
//! - `duplicated`: acknowledged tasks whose outcome or whose effect fact (`dir.created`,
//!   `entry.*`, `file.available`, ...) the log records in more than one commit of one run
//!   (a dead-letter retry starts a new run);
//! - `lost`: acknowledged tasks that never reached a terminal state, are missing from the log,
//!   or whose effect differs from what the scenario's model says the log order produces.

use std::collections::HashMap;

use platform::event_log::LoggedCommit;
use serde_json::Value;

use super::rig::is_terminal;

const OUTCOMES: [&str; 3] = ["task.succeeded", "task.failed", "task.dead_lettered"];
const EFFECT_FACTS: [&str; 7] = [
    "dir.created",
    "entry.moved",
    "entry.copied",
    "entry.deleted",
    "file.available",
    "file.quarantined",
    "file.scanned",
];

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub sent: usize,
    pub acked: usize,
    pub terminal: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub duplicated: usize,
    pub lost: usize,
}

impl Tally {
    /// Counts final answers and checks the log: every acked task is in it, with at most one
    /// outcome and one effect commit per run.
    pub fn judge(sent: usize, finals: &HashMap<String, Value>, log: &[LoggedCommit]) -> Tally {
        let history = TaskHistory::of(log);
        let mut tally = Tally {
            sent,
            acked: finals.len(),
            ..Tally::default()
        };
        for (id, task) in finals {
            if is_terminal(task) {
                tally.terminal += 1;
            } else {
                eprintln!("lost: task {id} not terminal: {task}");
                tally.lost += 1;
                continue;
            }
            match task["status"].as_str() {
                Some("succeeded") => tally.succeeded += 1,
                _ => tally.failed += 1,
            }
            match history.runs.get(id.as_str()) {
                None => {
                    eprintln!("lost: task {id} is not in the log");
                    tally.lost += 1;
                }
                Some(runs) => {
                    if runs.iter().any(Run::duplicated) {
                        eprintln!("duplicated: task {id}: {runs:?}");
                        tally.duplicated += 1;
                    }
                    if runs.last().is_some_and(|r| r.outcomes == 0) {
                        eprintln!("lost: task {id} has no outcome in the log");
                        tally.lost += 1;
                    }
                }
            }
        }
        tally
    }

    pub fn line(&self, scenario: &str) -> String {
        format!(
            "scenario={scenario} sent={} acked={} terminal={} succeeded={} failed={} duplicated={} lost={}",
            self.sent, self.acked, self.terminal, self.succeeded, self.failed, self.duplicated, self.lost
        )
    }

    /// Prints the summary line and fails the scenario when anything was lost or duplicated.
    pub fn report(&self, scenario: &str) {
        let line = self.line(scenario);
        println!("{line}");
        assert!(
            self.lost == 0 && self.duplicated == 0,
            "{line}: the delivery guarantee was broken"
        );
        assert_eq!(self.acked, self.terminal, "{line}");
    }
}

/// One run of a task: from `task.requested` or `task.retried` to its outcome.
#[derive(Debug, Default, Clone)]
pub struct Run {
    pub outcomes: usize,
    /// Commits carrying each kind of effect fact.
    pub facts: HashMap<String, usize>,
    /// Log sequence of the commit that queued this run.
    pub queued_at: u64,
    /// Log sequence and time of `task.started`, of the outcome.
    pub started: Option<(u64, chrono::DateTime<chrono::Utc>)>,
    pub finished: Option<(u64, chrono::DateTime<chrono::Utc>)>,
}

impl Run {
    /// More than one outcome, or the same kind of effect recorded by two commits.
    pub fn duplicated(&self) -> bool {
        self.outcomes > 1 || self.facts.values().any(|&n| n > 1)
    }
}

/// The runs of every task, keyed by task id, read from the log.
#[derive(Debug, Default)]
pub struct TaskHistory {
    pub runs: HashMap<String, Vec<Run>>,
}

impl TaskHistory {
    pub fn of(log: &[LoggedCommit]) -> TaskHistory {
        let mut history = TaskHistory::default();
        for commit in log.iter().filter(|c| c.aggregate_type == "task") {
            // Aggregate ids are `<tenant>.<task id>`.
            let id = commit
                .aggregate_id
                .split_once('.')
                .map(|(_, id)| id)
                .unwrap_or(&commit.aggregate_id)
                .to_owned();
            let runs = history.runs.entry(id).or_default();
            let types: Vec<&str> = commit
                .events
                .iter()
                .map(|e| e.event_type.as_str())
                .collect();
            if types
                .iter()
                .any(|t| *t == "task.requested" || *t == "task.retried")
            {
                runs.push(Run {
                    queued_at: commit.stream_seq,
                    ..Run::default()
                });
            }
            let Some(run) = runs.last_mut() else { continue };
            if types.contains(&"task.started") {
                run.started = Some((commit.stream_seq, commit.time));
            }
            // An entry reported inside a recursive command's tree is not an effect of its
            // own (the root's event is): chunks of them may span several commits.
            let mut kinds: Vec<&str> = commit
                .events
                .iter()
                .filter(|e| !reports_an_entry(&e.payload))
                .map(|e| e.event_type.as_str())
                .filter(|t| EFFECT_FACTS.contains(t))
                .collect();
            kinds.sort_unstable();
            kinds.dedup();
            for kind in kinds {
                *run.facts.entry(kind.to_owned()).or_default() += 1;
            }
            let outcomes = types.iter().filter(|t| OUTCOMES.contains(t)).count();
            if outcomes > 0 {
                run.outcomes += outcomes;
                run.finished = Some((commit.stream_seq, commit.time));
            }
        }
        history
    }

    /// Log sequence of the commit that first requested `id`.
    pub fn requested_at(&self, id: &str) -> Option<u64> {
        self.runs
            .get(id)
            .and_then(|r| r.first())
            .map(|r| r.queued_at)
    }
}

/// Whether a stored task event is an entry reported inside a recursive command's tree
/// (`{"EntryDeleted": {..., "within": "/root"}}`).
fn reports_an_entry(payload: &Value) -> bool {
    payload
        .as_object()
        .and_then(|o| o.values().next())
        .is_some_and(|fields| fields.get("within").is_some())
}
