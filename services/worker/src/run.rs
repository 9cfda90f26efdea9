//! The consumer loop: fetch, order, execute, record, acknowledge.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use events::task::{Task, TaskCommand, TaskFailure, TaskSpec, TaskStatus};
use futures::StreamExt;
use platform::db::ProjectionWatermark;
use platform::event_log::{EventLog, LoggedCommit};
use platform::storage::Storage;
use platform::streams;
use sqlx::PgPool;
use tokio::sync::{watch, Semaphore};
use tracing::Instrument;

use crate::effects::{self, EffectError};
use crate::ordering;

/// What the worker needs; cheap to clone.
#[derive(Clone)]
pub struct WorkerDeps {
    pub log: EventLog,
    pub pool: PgPool,
    pub watermark: ProjectionWatermark,
    pub storage: Arc<dyn Storage>,
    pub concurrency: usize,
    /// Redelivery timeout of the durable consumer; heartbeats are sent at a third of it.
    pub ack_wait: Duration,
    /// Deliveries of a task before it is dead-lettered (`FE_WORKER_MAX_DELIVER`); the
    /// durable consumer is declared with it, so every worker process must use the same value.
    pub max_deliver: i64,
}

/// Consumes until `shutdown` turns true, then waits for effects in flight to finish.
pub async fn run(deps: WorkerDeps, mut shutdown: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(deps.concurrency.max(1)));
    let mut in_flight = tokio::task::JoinSet::new();
    let mut backoff = Duration::from_millis(200);
    'outer: while !*shutdown.borrow() {
        let mut messages = match subscribe(&deps).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "worker: cannot subscribe, retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        loop {
            let next = tokio::select! {
                m = messages.next() => m,
                _ = shutdown.changed() => break 'outer,
            };
            match next {
                Some(Ok(message)) => {
                    let deps = deps.clone();
                    let permits = permits.clone();
                    in_flight.spawn(async move { handle(deps, permits, message).await });
                }
                Some(Err(e)) => tracing::warn!(error = %e, "worker: message stream error"),
                None => break,
            }
            while in_flight.try_join_next().is_some() {}
        }
    }
    while in_flight.join_next().await.is_some() {}
}

async fn subscribe(
    deps: &WorkerDeps,
) -> Result<jetstream::consumer::pull::Stream, Box<dyn std::error::Error + Send + Sync>> {
    let stream = deps
        .log
        .jetstream()
        .get_stream(streams::EVENTS_STREAM)
        .await?;
    let mut spec = streams::worker_consumer();
    spec.ack_wait = deps.ack_wait;
    spec.max_deliver = deps.max_deliver;
    let consumer = streams::ensure_durable(&stream, &spec).await?;
    Ok(consumer.messages().await?)
}

/// What a commit asks of the worker.
enum Work {
    /// A file command was requested or retried.
    Command,
    /// An upload was scanned clean and waits to be promoted.
    Promotion,
}

impl Work {
    fn of(commit: &LoggedCommit) -> Option<Self> {
        let types = || commit.events.iter().map(|e| e.event_type.as_str());
        if types().any(|t| matches!(t, "task.requested" | "task.retried")) {
            return Some(Self::Command);
        }
        let clean_scan = commit.events.iter().any(|e| {
            e.event_type == "file.scanned"
                && e.payload.pointer("/FileScanned/clean") == Some(&serde_json::Value::Bool(true))
        });
        clean_scan.then_some(Self::Promotion)
    }
}

async fn handle(deps: WorkerDeps, permits: Arc<Semaphore>, message: jetstream::Message) {
    let commit = match LoggedCommit::from_message(&message) {
        Ok(c) => c,
        Err(e) => {
            // A commit we cannot read will not become readable by redelivery; it stays in the
            // log for audit, and the metric makes it visible.
            metrics::counter!("fe_worker_unreadable_commits_total").increment(1);
            tracing::error!(error = %e, "worker: unreadable commit skipped");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let Some(kind) = Work::of(&commit) else {
        let _ = message.ack().await;
        return;
    };
    let span = tracing::info_span!("task", tenant = %commit.tenant, aggregate = %commit.aggregate_id, seq = commit.stream_seq);
    let outcome = match kind {
        Work::Command => {
            process(&deps, &permits, &message, &commit)
                .instrument(span)
                .await
        }
        Work::Promotion => {
            crate::promote::promote(&deps, &permits, &message, &commit)
                .instrument(span)
                .await
        }
    };
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
    let ack = match outcome {
        Ok(()) => AckKind::Ack,
        Err(reason) if delivered >= deps.max_deliver => dead_letter(&deps, &commit, reason).await,
        Err(reason) => {
            tracing::warn!(%reason, delivered, "worker: transient failure, will retry");
            AckKind::Nak(Some(streams::retry_delay(delivered)))
        }
    };
    let _ = message.ack_with(ack).await;
}

async fn dead_letter(deps: &WorkerDeps, commit: &LoggedCommit, reason: String) -> AckKind {
    let failure = TaskFailure::new("storage_error", reason);
    match execute(deps, commit, TaskCommand::DeadLetter { error: failure }).await {
        Ok(()) => {
            metrics::counter!("fe_tasks_dead_lettered_total").increment(1);
            AckKind::Ack
        }
        Err(e) => {
            tracing::error!(error = %e, "worker: could not dead-letter, will retry");
            AckKind::Nak(Some(Duration::from_secs(5)))
        }
    }
}

/// Runs one task to a recorded outcome. `Err` = transient, the delivery should be retried.
async fn process(
    deps: &WorkerDeps,
    permits: &Semaphore,
    message: &jetstream::Message,
    commit: &LoggedCommit,
) -> Result<(), String> {
    let loaded = deps
        .log
        .load::<Task>(&commit.aggregate_id)
        .await
        .map_err(|e| e.to_string())?;
    let task = loaded.aggregate;
    let (Some(task_id), Some(TaskSpec::Command(cmd))) = (task.task_id, task.spec.clone()) else {
        return Ok(()); // uploads are driven by the scanner and promotion
    };
    if task.status.is_terminal() {
        return Ok(());
    }
    let spec = TaskSpec::Command(cmd.clone());
    let _permit = take_turn(deps, permits, message, commit, task_id, &spec).await?;
    let storage = deps.storage.as_ref();
    let redo = task.status == TaskStatus::Running;
    if !redo {
        if let Err(err) = effects::check_preconditions(storage, &commit.tenant, &cmd).await {
            return record_failure(deps, commit, err).await;
        }
        execute(deps, commit, TaskCommand::Start).await?;
    }
    let started = std::time::Instant::now();
    let result = with_heartbeat(
        message,
        deps.ack_wait / 3,
        effects::execute(storage, &commit.tenant, &cmd, redo),
    )
    .await;
    metrics::histogram!("fe_worker_effect_seconds", "op" => cmd.op().as_str())
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(()) => {
            execute(deps, commit, TaskCommand::Succeed).await?;
            metrics::counter!("fe_tasks_finished_total", "op" => cmd.op().as_str(), "status" => "succeeded").increment(1);
            Ok(())
        }
        Err(err) => record_failure(deps, commit, err).await,
    }
}

pub(crate) async fn record_failure(
    deps: &WorkerDeps,
    commit: &LoggedCommit,
    err: EffectError,
) -> Result<(), String> {
    match err {
        EffectError::Transient(reason) => Err(reason),
        EffectError::Permanent(failure) => {
            tracing::info!(code = %failure.code, "worker: task failed");
            metrics::counter!("fe_tasks_finished_total", "op" => "command", "status" => "failed")
                .increment(1);
            execute(deps, commit, TaskCommand::Fail { error: failure }).await
        }
    }
}

/// Appends a task command's events; a task that reached a terminal state meanwhile (another
/// delivery finished it) is not an error.
pub(crate) async fn execute(
    deps: &WorkerDeps,
    commit: &LoggedCommit,
    command: TaskCommand,
) -> Result<(), String> {
    let mut metadata = HashMap::new();
    metadata.insert("principal".to_owned(), "system:worker".to_owned());
    if let Some(tp) = &commit.headers.traceparent {
        metadata.insert("traceparent".to_owned(), tp.clone());
    }
    if let Some(rid) = &commit.headers.request_id {
        metadata.insert("request_id".to_owned(), rid.clone());
    }
    match deps
        .log
        .execute::<Task>(&commit.aggregate_id, command, &(), metadata)
        .await
    {
        Ok(_) => Ok(()),
        Err(platform::event_log::ExecuteError::Domain(
            events::task::TaskError::AlreadyTerminal,
        )) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs `work` while telling JetStream every `every` that the message is still in progress,
/// so a long effect is not redelivered to another worker meanwhile.
pub(crate) async fn with_heartbeat<T>(
    message: &jetstream::Message,
    every: Duration,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(100)));
    ticker.tick().await;
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticker.tick() => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    }
}

/// Waits for the task's turn in the per-path log order (heartbeating meanwhile), then for a
/// free effect slot, which the caller holds while it works.
pub(crate) async fn take_turn<'a>(
    deps: &WorkerDeps,
    permits: &'a Semaphore,
    message: &jetstream::Message,
    commit: &LoggedCommit,
    task_id: uuid::Uuid,
    spec: &TaskSpec,
) -> Result<tokio::sync::SemaphorePermit<'a>, String> {
    let turn = ordering::wait_for_turn(
        &deps.pool,
        &deps.watermark,
        &commit.tenant,
        task_id,
        commit.stream_seq,
        spec,
    );
    with_heartbeat(message, deps.ack_wait / 3, turn)
        .await
        .map_err(|e| e.to_string())?;
    permits.acquire().await.map_err(|e| e.to_string())
}
