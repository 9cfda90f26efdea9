//! A census of task outcomes taken from the log itself: for every task aggregate, how many
//! `task.requested` and how many outcome events (`task.succeeded`, `task.failed`,
//! `task.dead_lettered`) its commits hold. The burst scenario waits on it, and the load test
//! uses it to prove that no accepted task was lost and none completed twice — the log is the
//! truth, read models are derived from it.
//!
//! Reads through an ordered consumer filtered on the task subjects, up to the messages pending
//! when it started; only the `Fe-Event-Types` header is looked at, never a body.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use futures::StreamExt;
use platform::event_log::{event_types, subject::parse_subject, subject_for_type};
use platform::streams::EVENTS_STREAM;

/// Events of one task aggregate, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TaskEvents {
    pub requested: usize,
    /// `task.succeeded`, `task.failed` and `task.dead_lettered` events.
    pub outcomes: usize,
    /// The last outcome was a success.
    pub succeeded: bool,
}

/// Outcomes per task aggregate id (`<tenant>.<task id>`).
#[derive(Debug, Default)]
pub struct Census {
    pub tasks: HashMap<String, TaskEvents>,
}

impl Census {
    /// Tasks with at least one outcome event.
    pub fn terminal(&self) -> usize {
        self.tasks.values().filter(|t| t.outcomes > 0).count()
    }
}

/// Reads every task commit in the log now and counts its events.
pub async fn take(js: &async_nats::jetstream::Context) -> anyhow::Result<Census> {
    let stream = js.get_stream(EVENTS_STREAM).await?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subject_for_type("task")?,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut census = Census::default();
    // An empty filter delivers nothing: ask first whether there is anything to read.
    let mut probe = consumer.clone();
    if probe.info().await?.num_pending == 0 {
        return Ok(census);
    }
    let mut messages = consumer.messages().await?;
    while let Some(msg) = messages.next().await {
        let msg = msg?;
        let parts = parse_subject(&msg.subject)?;
        let entry = census.tasks.entry(parts.aggregate_id()).or_default();
        for t in event_types(msg.headers.as_ref()) {
            match t {
                "task.requested" => entry.requested += 1,
                "task.succeeded" => {
                    entry.outcomes += 1;
                    entry.succeeded = true;
                }
                "task.failed" | "task.dead_lettered" => {
                    entry.outcomes += 1;
                    entry.succeeded = false;
                }
                _ => {}
            }
        }
        if msg.info().map_err(|e| anyhow::anyhow!("{e}"))?.pending == 0 {
            break;
        }
    }
    Ok(census)
}

/// Follows the task subjects live until `expected` distinct tasks have an outcome or
/// `deadline` passes; returns how many tasks reached an outcome and when the last one did.
pub async fn follow_outcomes(
    js: &async_nats::jetstream::Context,
    expected: usize,
    deadline: std::time::Instant,
) -> anyhow::Result<(usize, std::time::Instant)> {
    follow_outcomes_counting(js, expected, deadline, &AtomicUsize::new(0)).await
}

/// [`follow_outcomes`], also publishing the count so far in `progress` (for a caller that
/// may stop waiting first).
pub async fn follow_outcomes_counting(
    js: &async_nats::jetstream::Context,
    expected: usize,
    deadline: std::time::Instant,
    progress: &AtomicUsize,
) -> anyhow::Result<(usize, std::time::Instant)> {
    let stream = js.get_stream(EVENTS_STREAM).await?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subject_for_type("task")?,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut done = std::collections::HashSet::new();
    let mut last = std::time::Instant::now();
    while done.len() < expected {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(next) = tokio::time::timeout(left, messages.next()).await else {
            break;
        };
        let Some(msg) = next else { break };
        let msg = msg?;
        let outcome = event_types(msg.headers.as_ref())
            .iter()
            .any(|t| matches!(*t, "task.succeeded" | "task.failed" | "task.dead_lettered"));
        if outcome && done.insert(parse_subject(&msg.subject)?.aggregate_id()) {
            last = std::time::Instant::now();
            progress.store(done.len(), Ordering::Relaxed);
        }
    }
    Ok((done.len(), last))
}
