//! The worker's handler on the consumer runtime ([`platform::consumer`]): decide what a
//! commit asks for, take a tenant slot, take the task's turn, execute, record, settle.
//!
//! Fairness: nothing a tenant queues can hold what other tenants need, neither in this
//! process nor in JetStream.
//! * A delivery of a tenant at its cap (`FE_WORKER_TENANT_CONCURRENCY`) waits at most
//!   [`SLOT_WAIT`] in a bounded line for its tenant's next slot (no IO meanwhile; at most twice
//!   `FE_WORKER_CONCURRENCY` wait in all and half of them of one tenant, and the runtime has
//!   room for effects, the line and quick decisions beside each other).
//! * Work that cannot run now — its turn has not come (an earlier overlapping task is still
//!   open), its tenant is past the line, or the projection has not reached it — is **set
//!   aside** in PostgreSQL ([`crate::deferred`]) and its delivery acknowledged. A waiting task
//!   therefore never holds a slot, nor stays "ack pending" in JetStream, where one tenant's
//!   backlog would fill the consumer's `max_ack_pending` and stop delivery to every tenant.
//!   [`crate::resume`] runs set-aside work when it is due: a task waiting for another when that
//!   one is announced terminal, the rest round robin over tenants.
//! * Transient failures are retried with backoff (`Nak`), and a task is dead-lettered after
//!   [`failures::MAX_ATTEMPTS`] *failed attempts* (counted in `worker_failures`), never because
//!   it waited; the consumer's `max_deliver` is unlimited for that reason.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use events::task::{Task, TaskCommand, TaskEvent, TaskFailure, TaskSpec, TaskStatus};
use platform::consumer::{self, Backoff, ConsumerSettings, Delivery, Handler, Outcome};
use platform::db::ProjectionWatermark;
use platform::event_log::{EventLog, Loaded, LoggedCommit};
use platform::storage::Storage;
use platform::streams;
use sqlx::PgPool;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::deferred::{self, Wait};
use crate::effects::{self, EffectError};
use crate::failures;
use crate::ordering::{self, Turn as TurnOrder};
use crate::tenant_slots::TenantSlots;

/// How long a delivery may wait for the projection to reach it before it is set aside (the
/// turn itself is checked once, never waited for).
pub const TURN_WAIT: Duration = Duration::from_secs(1);
/// Longest a delivery waits in line for a slot of its tenant before it is set aside.
pub const SLOT_WAIT: Duration = Duration::from_secs(1);
/// When work set aside for the projection is due again, by how often it was tried (a task
/// waiting for another is due when that one ends instead).
pub const WAIT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// When work set aside for a tenant slot is due again. Not growing with the tries: the item
/// then waits in its tenant's line like a new delivery, so it is not overtaken for ever by
/// the tenant's newer work, and a growing delay would only leave slots idle.
pub const SLOT_RETRY: Duration = Duration::from_millis(100);
/// Delays after failed attempts (1 s doubling to 60 s).
pub const FAILURE_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

/// What the worker needs; cheap to clone.
#[derive(Clone)]
pub struct WorkerDeps {
    pub log: EventLog,
    pub pool: PgPool,
    pub watermark: ProjectionWatermark,
    pub storage: Arc<dyn Storage>,
    /// Default per-tenant quota (FE_TENANT_QUOTA_BYTES / FE_TENANT_QUOTA_FILES; an operator's
    /// `quota set` overrides it), checked again when a copy or an upload takes effect.
    pub quota: events::quota::Limits,
    /// How long released versions keep their blobs (FE_VERSION_RETENTION_DAYS).
    pub version_retention: Duration,
    /// Effects in flight per process (`FE_WORKER_CONCURRENCY`).
    pub concurrency: usize,
    /// Effects in flight (and turns waited for) per tenant per process
    /// (`FE_WORKER_TENANT_CONCURRENCY`).
    pub tenant_concurrency: usize,
    /// Redelivery timeout of the durable consumer; heartbeats are sent at a third of it.
    pub ack_wait: Duration,
    /// How long deliveries in flight may finish after shutdown before they are released.
    pub drain: Duration,
    /// Failed attempts of a task before it is dead-lettered (`FE_WORKER_MAX_DELIVER`, default
    /// [`failures::MAX_ATTEMPTS`]); releases while a task waits for its turn do not count.
    pub max_deliver: i64,
}

/// Consumes until `shutdown` is cancelled, then drains (see [`platform::consumer`]).
pub async fn run(deps: WorkerDeps, shutdown: CancellationToken) {
    let mut spec = streams::worker_consumer();
    spec.ack_wait = deps.ack_wait;
    let settings = ConsumerSettings {
        spec,
        // Room for every effect, as many deliveries waiting in line for a tenant slot, and the
        // quick decisions (release, skip) beside them.
        concurrency: deps.concurrency.max(1) * 4,
        drain: deps.drain,
    };
    let worker = Arc::new(Worker {
        ordering: ordering::OrderingPool::beside(&deps.pool),
        effects: Semaphore::new(deps.concurrency.max(1)),
        tenants: TenantSlots::new(deps.tenant_concurrency, deps.concurrency.max(1) * 2),
        running: TenantSlots::new(deps.tenant_concurrency, 0),
        deps,
    });
    let js = worker.deps.log.jetstream().clone();
    let set_aside = tokio::spawn(crate::resume::run(worker.clone(), shutdown.clone()));
    consumer::run(js, settings, worker, shutdown).await;
    let _ = set_aside.await;
}

pub(crate) struct Worker {
    pub(crate) deps: WorkerDeps,
    /// The connections the turn check runs on ([`ordering::OrderingPool`]).
    ordering: ordering::OrderingPool,
    effects: Semaphore,
    /// Deliveries being decided per tenant (loading, waiting for the turn).
    tenants: TenantSlots,
    /// Tasks whose turn has come, per tenant. Apart from [`Worker::tenants`] so that tasks
    /// waiting for their turn can never keep the task they wait for from running.
    running: TenantSlots,
}

/// What a task holds while its effect runs: its tenant's running slot and an effect slot.
pub(crate) struct Turn<'a> {
    _running: crate::tenant_slots::TenantSlot,
    _effect: SemaphorePermit<'a>,
}

/// What a commit asks of the worker.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Work {
    /// A file command was requested or retried.
    Command,
    /// An upload was scanned clean and waits to be promoted.
    Promotion,
}

impl Work {
    pub(crate) fn of(events: &[TaskEvent]) -> Option<Self> {
        if events.iter().any(TaskEvent::queues_work) {
            return Some(Self::Command);
        }
        let clean = |e: &TaskEvent| matches!(e, TaskEvent::FileScanned { clean: true, .. });
        events.iter().any(clean).then_some(Self::Promotion)
    }
}

/// Where one delivery's work ended, short of a transient failure.
pub(crate) enum Step {
    /// Its outcome is recorded (or there was nothing to do).
    Settled,
    /// It cannot run yet.
    NotYet(NotYet),
}

/// Why a task cannot run yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotYet {
    /// This earlier task on an overlapping path is still open.
    After(uuid::Uuid),
    /// Its tenant has as many tasks running here as it may.
    TenantBusy,
    /// Its tenant's partition has not projected it yet.
    Unprojected,
}

/// What becomes of one work item, whoever brought it (a delivery, or the table of work set
/// aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Settled (outcome recorded, or nothing to do).
    Done,
    /// Set aside until `wait` is over; `reason` labels `fe_worker_released_total`.
    Defer { wait: Wait, reason: &'static str },
    /// A transient failure: again after `delay`.
    Retry { reason: String, delay: Duration },
}

impl Handler for Worker {
    type Events = Vec<TaskEvent>;

    fn wants(&self, event_types: &[&str]) -> bool {
        event_types
            .iter()
            .any(|t| matches!(*t, "task.requested" | "task.retried" | "file.scanned"))
    }

    async fn handle(&self, delivery: &Delivery<Vec<TaskEvent>>) -> Outcome {
        let Some(work) = Work::of(&delivery.events) else {
            return Outcome::Done;
        };
        let commit = &delivery.commit;
        match self.work(commit, work, delivery.delivered).await {
            Decision::Done => {
                if delivery.delivered > 1 {
                    // A redelivery may have been set aside before (crash before the ack).
                    let _ = deferred::settle(&self.deps.pool, commit.stream_seq).await;
                }
                Outcome::Done
            }
            Decision::Retry { reason, delay } => Outcome::retry(reason, delay),
            Decision::Defer { wait, reason } => match self.set_aside(commit, wait, reason).await {
                Ok(()) => Outcome::Done,
                Err(e) => Outcome::retry(
                    format!("setting the work aside failed: {e}"),
                    WAIT_BACKOFF.delay(delivery.delivered),
                ),
            },
        }
    }
}

/// The task id of a task commit (`<tenant>.<task id>`); nil for another shape, which only
/// labels the set-aside row.
fn task_id_of(commit: &LoggedCommit) -> uuid::Uuid {
    platform::event_log::subject::split_aggregate_id(&commit.aggregate_id)
        .ok()
        .and_then(|(_, id)| uuid::Uuid::parse_str(id).ok())
        .unwrap_or_default()
}

impl Worker {
    /// Decides and, when it is its turn, runs the work `commit` queued; `attempt` counts the
    /// tries so far (this one included). A delivery and a set-aside item alike wait in their
    /// tenant's line for a slot first.
    pub(crate) async fn work(&self, commit: &LoggedCommit, work: Work, attempt: i64) -> Decision {
        let slot = self.tenants.take_or_wait(&commit.tenant, SLOT_WAIT).await;
        let Some(_tenant_slot) = slot else {
            return self.not_yet(NotYet::TenantBusy, attempt);
        };
        let step = match work {
            Work::Command => self.process(commit).await,
            Work::Promotion => match self.load_task(commit).await {
                Ok(loaded) => crate::promote::promote(self, commit, loaded).await,
                Err(e) => Err(e),
            },
        };
        match step {
            Ok(Step::Settled) => {
                if attempt > 1 {
                    let _ = failures::clear(&self.deps.pool, commit.stream_seq).await;
                }
                Decision::Done
            }
            Ok(Step::NotYet(not_yet)) => self.not_yet(not_yet, attempt),
            Err(reason) => self.failed(commit, attempt, reason).await,
        }
    }

    /// Sets the work `commit` queued aside until `wait` is over (again, if it was already),
    /// counted under `reason`.
    pub(crate) async fn set_aside(
        &self,
        commit: &LoggedCommit,
        wait: Wait,
        reason: &'static str,
    ) -> Result<(), sqlx::Error> {
        let (pool, tenant, seq) = (&self.deps.pool, &commit.tenant, commit.stream_seq);
        deferred::defer(pool, tenant, seq, task_id_of(commit), wait).await?;
        metrics::counter!("fe_worker_released_total", "reason" => reason).increment(1);
        Ok(())
    }

    fn not_yet(&self, not_yet: NotYet, attempt: i64) -> Decision {
        let (wait, reason) = match not_yet {
            NotYet::After(task) => (Wait::Task(task), "turn"),
            NotYet::TenantBusy => (Wait::For(SLOT_RETRY), "tenant_cap"),
            NotYet::Unprojected => (Wait::For(WAIT_BACKOFF.delay(attempt)), "projection"),
        };
        Decision::Defer { wait, reason }
    }

    /// Runs one command task to a recorded outcome. `Err` = transient, retried later.
    async fn process(&self, commit: &LoggedCommit) -> Result<Step, String> {
        let deps = &self.deps;
        let mut loaded = self.load_task(commit).await?;
        let task = loaded.aggregate.clone();
        let (Some(task_id), Some(TaskSpec::Command(cmd))) = (task.task_id, task.spec.clone())
        else {
            // Uploads are driven by the scanner and promotion; a retried upload that was
            // scanned clean (its promotion was dead-lettered) is promoted again.
            return crate::promote::promote(self, commit, loaded).await;
        };
        if task.status.is_terminal() {
            return Ok(Step::Settled);
        }
        let spec = TaskSpec::Command(cmd.clone());
        let _turn = match self.take_turn(commit, task_id, &spec).await? {
            Ok(turn) => turn,
            Err(not_yet) => return Ok(Step::NotYet(not_yet)),
        };
        if task.status != TaskStatus::Running {
            if let Err(err) = crate::access::recheck(&deps.pool, &commit.tenant, &task, &cmd).await
            {
                return record_failure(deps, commit, Some(&mut loaded), err).await;
            }
        }
        let started = std::time::Instant::now();
        // Commands change only the catalogue (see `effects`): deciding is the whole effect,
        // committed with the success, so a pending task starts and succeeds in one commit and a
        // redo decides again on the same, turn-ordered catalogue state. Only a tree report
        // (several commits) starts the task first.
        let result =
            effects::check_preconditions(&deps.pool, deps.quota, &commit.tenant, &cmd).await;
        metrics::histogram!("fe_worker_effect_seconds", "op" => cmd.op().as_str())
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(checked) => {
                crate::tree_report::report_entries(deps, commit, &mut loaded, &cmd).await?;
                let created_parents = checked.created_parents;
                let succeed = TaskCommand::StartAndSucceed { created_parents };
                execute(deps, commit, Some(&mut loaded), succeed).await?;
                metrics::counter!("fe_tasks_finished_total", "op" => cmd.op().as_str(), "status" => "succeeded").increment(1);
                Ok(Step::Settled)
            }
            Err(EffectError::Permanent(failure)) => {
                // The attempt counts (`attempts` of the task) even though it failed.
                start(deps, commit, &mut loaded).await?;
                record_failure(
                    deps,
                    commit,
                    Some(&mut loaded),
                    EffectError::Permanent(failure),
                )
                .await
            }
            Err(transient) => record_failure(deps, commit, Some(&mut loaded), transient).await,
        }
    }

    /// The task of `commit` as the log has it now (a redelivery may find it terminal); the
    /// commands of this delivery run on it ([`execute`]) without loading it again.
    pub(crate) async fn load_task(&self, commit: &LoggedCommit) -> Result<Loaded<Task>, String> {
        let loaded = self.deps.log.load::<Task>(&commit.aggregate_id).await;
        loaded.map_err(|e| e.to_string())
    }

    /// Checks the task's turn in the per-path log order (after at most [`TURN_WAIT`] for the
    /// projection), then takes its tenant's running slot and an effect slot, which the caller
    /// holds while it works; or says why the task cannot run yet.
    pub(crate) async fn take_turn(
        &self,
        commit: &LoggedCommit,
        task_id: uuid::Uuid,
        spec: &TaskSpec,
    ) -> Result<Result<Turn<'_>, NotYet>, String> {
        let deps = &self.deps;
        let order = ordering::turn(
            &self.ordering,
            &deps.watermark,
            &commit.tenant,
            task_id,
            commit.stream_seq,
            spec,
            TURN_WAIT,
        )
        .await
        .map_err(|e| e.to_string())?;
        match order {
            TurnOrder::Mine => {}
            TurnOrder::After(task) => return Ok(Err(NotYet::After(task))),
            TurnOrder::Unknown => return Ok(Err(NotYet::Unprojected)),
        }
        let Some(running) = self.running.try_take(&commit.tenant) else {
            return Ok(Err(NotYet::TenantBusy));
        };
        let effect = self.effects.acquire().await.map_err(|e| e.to_string())?;
        Ok(Ok(Turn {
            _running: running,
            _effect: effect,
        }))
    }

    /// A transient failure: retried with backoff, dead-lettered after the last attempt.
    async fn failed(&self, commit: &LoggedCommit, attempt: i64, reason: String) -> Decision {
        let attempts =
            match failures::record(&self.deps.pool, &commit.tenant, commit.stream_seq).await {
                Ok(attempts) => attempts,
                Err(e) => {
                    tracing::warn!(%reason, error = %e, "worker: failure not counted, will retry");
                    let delay = FAILURE_BACKOFF.delay(attempt);
                    return Decision::Retry { reason, delay };
                }
            };
        if i64::from(attempts) < self.deps.max_deliver {
            tracing::warn!(%reason, attempts, "worker: transient failure, will retry");
            let delay = FAILURE_BACKOFF.delay(i64::from(attempts));
            return Decision::Retry { reason, delay };
        }
        // The reason is internal text (storage, database, NATS): logged, never recorded.
        tracing::error!(%reason, "worker: attempts exhausted, dead-lettering the task");
        let failure = TaskFailure::generic("storage_error");
        match execute(
            &self.deps,
            commit,
            None,
            TaskCommand::DeadLetter {
                error: failure,
                failed_attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            },
        )
        .await
        {
            Ok(()) => {
                metrics::counter!("fe_tasks_dead_lettered_total").increment(1);
                let _ = failures::clear(&self.deps.pool, commit.stream_seq).await;
                Decision::Done
            }
            Err(e) => {
                tracing::error!(error = %e, "worker: could not dead-letter, will retry");
                let delay = FAILURE_BACKOFF.delay(1);
                Decision::Retry { reason: e, delay }
            }
        }
    }
}

/// Starts the task (`task.started`, one more attempt) unless it is running already.
pub(crate) async fn start(
    deps: &WorkerDeps,
    commit: &LoggedCommit,
    loaded: &mut Loaded<Task>,
) -> Result<(), String> {
    if loaded.aggregate.status == TaskStatus::Running {
        return Ok(());
    }
    execute(deps, commit, Some(loaded), TaskCommand::Start).await
}

pub(crate) async fn record_failure(
    deps: &WorkerDeps,
    commit: &LoggedCommit,
    loaded: Option<&mut Loaded<Task>>,
    err: EffectError,
) -> Result<Step, String> {
    match err {
        EffectError::Transient(reason) => Err(reason),
        EffectError::Permanent(failure) => {
            tracing::info!(code = %failure.code, "worker: task failed");
            metrics::counter!("fe_tasks_finished_total", "op" => "command", "status" => "failed")
                .increment(1);
            execute(deps, commit, loaded, TaskCommand::Fail { error: failure }).await?;
            Ok(Step::Settled)
        }
    }
}

/// Appends a task command's events — on the task as this delivery `loaded` it when given
/// (no second load; a stale state is detected by the append and decided again), else on the
/// task as the log has it now. A task that reached a terminal state meanwhile (another
/// delivery finished it) is not an error.
pub(crate) async fn execute(
    deps: &WorkerDeps,
    commit: &LoggedCommit,
    loaded: Option<&mut Loaded<Task>>,
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
    let id = &commit.aggregate_id;
    let executed = match loaded {
        Some(loaded) => {
            deps.log
                .execute_on(id, loaded, command, &(), metadata)
                .await
        }
        None => deps.log.execute::<Task>(id, command, &(), metadata).await,
    };
    match executed {
        Ok(_) => Ok(()),
        Err(platform::event_log::ExecuteError::Domain(
            events::task::TaskError::AlreadyTerminal,
        )) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}
