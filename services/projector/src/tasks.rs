//! The task-status read model: one row per task, answering `GET /v1/tasks/{id}`, the
//! dead-letter list, and the worker's question "is an earlier task on an overlapping path
//! still open?" (`task_paths`, `queued_seq`).
//!
//! **Set-based.** The task events of a whole batch are folded in memory ([`TaskChanges`]):
//! new tasks become one multi-row insert, and every later event of a task only changes
//! fields of its row, so the events of one task fold into one final change (later fields win)
//! and the whole batch is written with four statements whatever its size, instead of one or two
//! per event. The table never feeds back into another task event's effect, so writing it
//! ahead of the batch's other read models is equivalent to writing it event by event; only
//! the catalogue reads it (the spec of a failed upload, fixed when the task is requested).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use events::task::{TaskEvent, TaskFailure, TaskStatus};
use platform::event_log::LoggedCommit;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::ProjectorError;

/// A task requested in the batch: its row as the request creates it.
struct NewTask {
    tenant: String,
    task_id: Uuid,
    principal: String,
    op: &'static str,
    /// The spec as JSON text (cast to `jsonb` by the insert).
    spec: String,
    idempotency_key: Option<String>,
    requested_at: DateTime<Utc>,
    time: DateTime<Utc>,
    seq: i64,
    paths: Vec<String>,
}

/// What the batch's later events did to one task's row; `None` = left as it was.
/// `Some(None)` clears a nullable column.
#[derive(Default)]
struct Change {
    status: Option<TaskStatus>,
    attempts: Option<i32>,
    error: Option<Option<String>>,
    dead_lettered_at: Option<Option<DateTime<Utc>>>,
    queued_seq: Option<i64>,
    updated_at: Option<DateTime<Utc>>,
    last_seq: i64,
    /// Whether the task's paths are open afterwards (closed by an outcome, reopened by a
    /// retry).
    paths_open: Option<bool>,
}

impl Change {
    /// Folds `later` onto `self`: every field `later` sets wins.
    fn then(&mut self, later: Change) {
        self.status = later.status.or(self.status);
        self.attempts = later.attempts.or(self.attempts);
        self.error = later.error.or(self.error.take());
        self.dead_lettered_at = later.dead_lettered_at.or(self.dead_lettered_at);
        self.queued_seq = later.queued_seq.or(self.queued_seq);
        self.updated_at = later.updated_at.or(self.updated_at);
        self.last_seq = later.last_seq.max(self.last_seq);
        self.paths_open = later.paths_open.or(self.paths_open);
    }
}

/// The task-table changes of a batch (or of one commit), written by [`TaskChanges::flush`].
#[derive(Default)]
pub struct TaskChanges {
    requested: Vec<NewTask>,
    changes: HashMap<(String, Uuid), Change>,
}

impl TaskChanges {
    /// Records `events`, the decoded task events of `commit`.
    pub fn record(
        &mut self,
        commit: &LoggedCommit,
        events: &[TaskEvent],
    ) -> Result<(), ProjectorError> {
        for event in events {
            self.record_event(commit, event)?;
        }
        Ok(())
    }

    fn record_event(
        &mut self,
        commit: &LoggedCommit,
        event: &TaskEvent,
    ) -> Result<(), ProjectorError> {
        let tenant = commit.tenant.as_str();
        let task_id = task_uuid(commit)?;
        let seq = commit.stream_seq as i64;
        let at = |status: TaskStatus| Change {
            status: Some(status),
            updated_at: Some(commit.time),
            last_seq: seq,
            ..Change::default()
        };
        let error_json = |error: &TaskFailure| {
            serde_json::json!({"code": error.code, "message": error.message}).to_string()
        };
        let change = match event {
            TaskEvent::TaskRequested {
                principal,
                spec,
                idempotency_key,
                requested_at,
                ..
            } => {
                let spec_json =
                    serde_json::to_string(spec).map_err(|e| ProjectorError::Corrupt {
                        seq: commit.stream_seq,
                        reason: e.to_string(),
                    })?;
                self.requested.push(NewTask {
                    tenant: tenant.to_owned(),
                    task_id,
                    principal: principal.clone(),
                    op: spec.op().as_str(),
                    spec: spec_json,
                    idempotency_key: idempotency_key.clone(),
                    requested_at: *requested_at,
                    time: commit.time,
                    seq,
                    paths: spec.paths().iter().map(|p| p.as_str().to_owned()).collect(),
                });
                return Ok(());
            }
            TaskEvent::TaskStarted { attempt } => Change {
                attempts: Some(*attempt as i32),
                ..at(TaskStatus::Running)
            },
            TaskEvent::FileScanned { clean: true, .. } => at(TaskStatus::Running),
            TaskEvent::TaskSucceeded => Change {
                paths_open: Some(false),
                ..at(TaskStatus::Succeeded)
            },
            TaskEvent::TaskFailed { error } => Change {
                error: Some(Some(error_json(error))),
                paths_open: Some(false),
                ..at(TaskStatus::Failed)
            },
            TaskEvent::TaskDeadLettered { error, attempts } => Change {
                error: Some(Some(error_json(error))),
                attempts: Some(*attempts as i32),
                dead_lettered_at: Some(Some(commit.time)),
                paths_open: Some(false),
                ..at(TaskStatus::DeadLettered)
            },
            TaskEvent::TaskRetried { .. } => Change {
                error: Some(None),
                dead_lettered_at: Some(None),
                queued_seq: Some(seq),
                paths_open: Some(true),
                ..at(TaskStatus::Pending)
            },
            _ => return Ok(()),
        };
        match self.changes.entry((tenant.to_owned(), task_id)) {
            std::collections::hash_map::Entry::Occupied(mut earlier) => {
                earlier.get_mut().then(change)
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(change);
            }
        }
        Ok(())
    }

    /// Writes everything recorded (inside the caller's transaction) and forgets it.
    pub async fn flush(
        &mut self,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), ProjectorError> {
        let requested = std::mem::take(&mut self.requested);
        let changes = std::mem::take(&mut self.changes);
        if !requested.is_empty() {
            insert_requested(tx, &requested).await?;
        }
        if !changes.is_empty() {
            update_changed(tx, &changes).await?;
        }
        Ok(())
    }
}

/// Inserts the requested tasks and their paths (one row per (task, path), open while the
/// task is pending or running: the worker's indexed overlap check), in one statement.
async fn insert_requested(
    tx: &mut Transaction<'_, Postgres>,
    tasks: &[NewTask],
) -> Result<(), ProjectorError> {
    let paths: Vec<(&NewTask, &str)> = tasks
        .iter()
        .flat_map(|t| t.paths.iter().map(move |p| (t, p.as_str())))
        .collect();
    // Two tables, one round trip: a data-modifying CTE runs exactly once.
    sqlx::query(
        "WITH inserted AS (
             INSERT INTO tasks (tenant, task_id, principal, op, spec, status, idempotency_key,
                                created_at, updated_at, queued_seq, last_seq)
             SELECT r.tenant, r.task_id, r.principal, r.op, r.spec::jsonb, $10, r.key,
                    r.created_at, r.updated_at, r.seq, r.seq
             FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::timestamptz[], $8::timestamptz[], $9::bigint[])
                  AS r(tenant, task_id, principal, op, spec, key, created_at, updated_at, seq)
             ON CONFLICT (tenant, task_id) DO NOTHING)
         INSERT INTO task_paths (tenant, task_id, path, queued_seq, open)
         SELECT p.tenant, p.task_id, p.path, p.seq, true
         FROM unnest($11::text[], $12::uuid[], $13::text[], $14::bigint[])
              AS p(tenant, task_id, path, seq)
         ON CONFLICT (tenant, task_id, path) DO NOTHING",
    )
    .bind(tasks.iter().map(|t| t.tenant.as_str()).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.task_id).collect::<Vec<_>>())
    .bind(
        tasks
            .iter()
            .map(|t| t.principal.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(tasks.iter().map(|t| t.op).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.spec.as_str()).collect::<Vec<_>>())
    .bind(
        tasks
            .iter()
            .map(|t| t.idempotency_key.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(tasks.iter().map(|t| t.requested_at).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.time).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.seq).collect::<Vec<_>>())
    .bind(TaskStatus::Pending.as_str())
    .bind(
        paths
            .iter()
            .map(|(t, _)| t.tenant.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(paths.iter().map(|(t, _)| t.task_id).collect::<Vec<_>>())
    .bind(paths.iter().map(|(_, p)| *p).collect::<Vec<_>>())
    .bind(paths.iter().map(|(t, _)| t.seq).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes the changed tasks; opens or closes the paths of every task whose batch ended with
/// an outcome or a retry (a retry also moves them to its position in the order); and
/// announces the tasks made terminal (`platform::settled`, delivered at commit). One
/// statement.
async fn update_changed(
    tx: &mut Transaction<'_, Postgres>,
    changes: &HashMap<(String, Uuid), Change>,
) -> Result<(), ProjectorError> {
    let rows: Vec<(&(String, Uuid), &Change)> = changes.iter().collect();
    let paths: Vec<(&(String, Uuid), bool, Option<i64>)> = rows
        .iter()
        .filter_map(|(key, c)| c.paths_open.map(|open| (*key, open, c.queued_seq)))
        .collect();
    let settled: Vec<(&str, Uuid)> = rows
        .iter()
        .filter(|(_, c)| c.status.is_some_and(TaskStatus::is_terminal))
        .map(|((tenant, id), _)| (tenant.as_str(), *id))
        .collect();
    // Three effects, one round trip: data-modifying CTEs run exactly once, on different
    // tables, whatever the main query reads.
    sqlx::query(
        "WITH updated AS (
             UPDATE tasks t SET
                status = COALESCE(u.status, t.status),
                attempts = COALESCE(u.attempts, t.attempts),
                error = CASE WHEN u.set_error THEN u.error::jsonb ELSE t.error END,
                dead_lettered_at = CASE WHEN u.set_dead THEN u.dead_at ELSE t.dead_lettered_at END,
                queued_seq = COALESCE(u.queued_seq, t.queued_seq),
                updated_at = COALESCE(u.updated_at, t.updated_at),
                last_seq = u.last_seq
             FROM unnest($1::text[], $2::uuid[], $3::text[], $4::int[], $5::bool[], $6::text[],
                         $7::bool[], $8::timestamptz[], $9::bigint[], $10::timestamptz[],
                         $11::bigint[])
                  AS u(tenant, task_id, status, attempts, set_error, error, set_dead, dead_at,
                       queued_seq, updated_at, last_seq)
             WHERE t.tenant = u.tenant AND t.task_id = u.task_id),
         paths AS (
             UPDATE task_paths tp
             SET open = p.open, queued_seq = COALESCE(p.queued_seq, tp.queued_seq)
             FROM unnest($12::text[], $13::uuid[], $14::bool[], $15::bigint[])
                  AS p(tenant, task_id, open, queued_seq)
             WHERE tp.tenant = p.tenant AND tp.task_id = p.task_id)
         SELECT pg_notify($16, n) FROM unnest($17::text[]) AS n",
    )
    .bind(
        rows.iter()
            .map(|((t, _), _)| t.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|((_, id), _)| *id).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|(_, c)| c.status.map(TaskStatus::as_str))
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|(_, c)| c.attempts).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|(_, c)| c.error.is_some())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|(_, c)| c.error.clone().flatten())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|(_, c)| c.dead_lettered_at.is_some())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|(_, c)| c.dead_lettered_at.flatten())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|(_, c)| c.queued_seq).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, c)| c.updated_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, c)| c.last_seq).collect::<Vec<_>>())
    .bind(
        paths
            .iter()
            .map(|((t, _), _, _)| t.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(paths.iter().map(|((_, id), _, _)| *id).collect::<Vec<_>>())
    .bind(paths.iter().map(|(_, open, _)| *open).collect::<Vec<_>>())
    .bind(paths.iter().map(|(_, _, q)| *q).collect::<Vec<_>>())
    .bind(platform::settled::SETTLED_CHANNEL)
    .bind(platform::settled::announcements(&settled))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The task id is the part of the aggregate id after the tenant (`<tenant>.<uuid>`).
pub fn task_uuid(commit: &LoggedCommit) -> Result<uuid::Uuid, ProjectorError> {
    commit
        .aggregate_id
        .rsplit('.')
        .next()
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .ok_or_else(|| ProjectorError::Corrupt {
            seq: commit.stream_seq,
            reason: "task aggregate id is not <tenant>.<uuid>".into(),
        })
}
