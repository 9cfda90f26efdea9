//! The task-status read model: one row per task, answering `GET /v1/tasks/{id}`, the
//! dead-letter list, and the worker's question "is an earlier task on an overlapping path
//! still open?" (`queued_seq`).

use events::task::{TaskEvent, TaskSpec};
use platform::event_log::LoggedCommit;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::ProjectorError;

pub async fn apply(
    tx: &mut Transaction<'_, Postgres>,
    commit: &LoggedCommit,
    event: &TaskEvent,
) -> Result<(), ProjectorError> {
    let tenant = commit.tenant.as_str();
    let task_id = task_uuid(commit)?;
    let seq = commit.stream_seq as i64;
    let q = match event {
        TaskEvent::TaskRequested {
            principal,
            spec,
            idempotency_key,
            requested_at,
            ..
        } => {
            let spec_json = serde_json::to_value(spec).map_err(|e| ProjectorError::Corrupt {
                seq: commit.stream_seq,
                reason: e.to_string(),
            })?;
            sqlx::query(
                "INSERT INTO tasks (tenant, task_id, principal, op, spec, status, idempotency_key,
                                    created_at, updated_at, queued_seq, last_seq)
                 VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $9)
                 ON CONFLICT (tenant, task_id) DO NOTHING",
            )
            .bind(tenant)
            .bind(task_id)
            .bind(principal)
            .bind(op_name(spec))
            .bind(spec_json)
            .bind(idempotency_key)
            .bind(requested_at)
            .bind(commit.time)
            .bind(seq)
        }
        TaskEvent::TaskStarted { attempt } => sqlx::query(
            "UPDATE tasks SET status = 'running', attempts = $3, updated_at = $4, last_seq = $5
             WHERE tenant = $1 AND task_id = $2",
        )
        .bind(tenant)
        .bind(task_id)
        .bind(*attempt as i32)
        .bind(commit.time)
        .bind(seq),
        TaskEvent::TaskSucceeded => set_status(tenant, task_id, "succeeded", commit),
        TaskEvent::TaskFailed { error } => sqlx::query(
            "UPDATE tasks SET status = 'failed', error = $3, updated_at = $4, last_seq = $5
             WHERE tenant = $1 AND task_id = $2",
        )
        .bind(tenant)
        .bind(task_id)
        .bind(serde_json::json!({"code": error.code, "message": error.message}))
        .bind(commit.time)
        .bind(seq),
        TaskEvent::TaskDeadLettered { error, attempts } => sqlx::query(
            "UPDATE tasks SET status = 'dead_lettered', error = $3, attempts = $4,
                              dead_lettered_at = $5, updated_at = $5, last_seq = $6
             WHERE tenant = $1 AND task_id = $2",
        )
        .bind(tenant)
        .bind(task_id)
        .bind(serde_json::json!({"code": error.code, "message": error.message}))
        .bind(*attempts as i32)
        .bind(commit.time)
        .bind(seq),
        TaskEvent::TaskRetried { .. } => sqlx::query(
            "UPDATE tasks SET status = 'pending', error = NULL, dead_lettered_at = NULL,
                              updated_at = $3, queued_seq = $4, last_seq = $4
             WHERE tenant = $1 AND task_id = $2",
        )
        .bind(tenant)
        .bind(task_id)
        .bind(commit.time)
        .bind(seq),
        TaskEvent::FileScanned { clean: true, .. } => {
            set_status(tenant, task_id, "running", commit)
        }
        _ => return Ok(()),
    };
    q.execute(&mut **tx).await?;
    task_paths(tx, tenant, task_id, seq, event).await
}

/// Keeps `task_paths` (the paths of every task, flagged open while it is pending or running)
/// in step with the task row, for the worker's indexed overlap check.
async fn task_paths(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &str,
    task_id: Uuid,
    seq: i64,
    event: &TaskEvent,
) -> Result<(), ProjectorError> {
    match event {
        TaskEvent::TaskRequested { spec, .. } => {
            let paths: Vec<&str> = spec.paths().iter().map(|p| p.as_str()).collect();
            sqlx::query(
                "INSERT INTO task_paths (tenant, task_id, path, queued_seq, open)
                 SELECT $1, $2, p, $4, true FROM unnest($3::text[]) AS p
                 ON CONFLICT (tenant, task_id, path) DO NOTHING",
            )
            .bind(tenant)
            .bind(task_id)
            .bind(paths)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        }
        TaskEvent::TaskSucceeded
        | TaskEvent::TaskFailed { .. }
        | TaskEvent::TaskDeadLettered { .. } => {
            sqlx::query("UPDATE task_paths SET open = false WHERE tenant = $1 AND task_id = $2")
                .bind(tenant)
                .bind(task_id)
                .execute(&mut **tx)
                .await?;
        }
        TaskEvent::TaskRetried { .. } => {
            sqlx::query(
                "UPDATE task_paths SET open = true, queued_seq = $3
                 WHERE tenant = $1 AND task_id = $2",
            )
            .bind(tenant)
            .bind(task_id)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        }
        _ => {}
    }
    Ok(())
}

fn set_status<'q>(
    tenant: &'q str,
    task_id: uuid::Uuid,
    status: &'q str,
    commit: &LoggedCommit,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(
        "UPDATE tasks SET status = $3, updated_at = $4, last_seq = $5 WHERE tenant = $1 AND task_id = $2",
    )
    .bind(tenant)
    .bind(task_id)
    .bind(status)
    .bind(commit.time)
    .bind(commit.stream_seq as i64)
}

fn op_name(spec: &TaskSpec) -> &'static str {
    spec.op().as_str()
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
