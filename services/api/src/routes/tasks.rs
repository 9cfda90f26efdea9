//! `GET /v1/tasks/{id}[?wait=]`: the task-status read model, with a long poll that wakes when
//! the projection announces this task's outcome ([`platform::settled`]). A task is visible to
//! its principal and its tenant's admins only; anything else is 404, so task ids of other
//! principals and tenants reveal nothing.

use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use events::task::{Task, TaskStatus};
use events::Principal;
use platform::event_log::aggregate_id;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::Caller;
use crate::state::AppState;

pub const MAX_WAIT_S: u64 = 30;

#[derive(Deserialize)]
pub struct WaitQuery {
    wait: Option<String>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct TaskView {
    pub task_id: Uuid,
    pub op: String,
    pub status: String,
    pub attempts: i32,
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub principal: String,
    /// The request as accepted (paths, flags).
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
}

#[derive(FromRow)]
struct TaskRow {
    task_id: Uuid,
    principal: String,
    op: String,
    spec: serde_json::Value,
    status: String,
    attempts: i32,
    error: Option<serde_json::Value>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<TaskRow> for TaskView {
    fn from(r: TaskRow) -> Self {
        Self {
            task_id: r.task_id,
            op: r.op,
            status: r.status,
            attempts: r.attempts,
            error: r.error,
            created_at: r.created_at,
            updated_at: r.updated_at,
            principal: r.principal,
            request: request_of(r.spec),
        }
    }
}

/// The client-facing request inside a stored spec (`{"kind":"command", "op":...}` → the command).
fn request_of(spec: serde_json::Value) -> serde_json::Value {
    match spec {
        serde_json::Value::Object(mut m) => {
            m.remove("kind");
            serde_json::Value::Object(m)
        }
        other => other,
    }
}

pub fn parse_wait(raw: Option<&str>) -> Result<Duration, ApiError> {
    let Some(raw) = raw else {
        return Ok(Duration::ZERO);
    };
    let secs: u64 = raw
        .parse()
        .map_err(|_| ApiError::BadRequest("wait must be a whole number of seconds".into()))?;
    Ok(Duration::from_secs(secs.min(MAX_WAIT_S)))
}

/// Read a task's status; `wait` (≤ 30 s) long-polls until it is terminal.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks",
    params(("id" = Uuid, Path), ("wait" = Option<u64>, Query, description = "seconds to wait for a terminal state, at most 30")),
    responses((status = 200, body = TaskView), (status = 400, body = crate::error::Problem),
              (status = 401, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn get_task(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw_id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<TaskView>, ApiError> {
    let wait = parse_wait(q.wait.as_deref())?;
    let not_found = || ApiError::NotFound("no such task".into());
    let task_id = Uuid::parse_str(&raw_id).map_err(|_| not_found())?;
    let deadline = Instant::now() + wait;
    // Registered before the first look, so an outcome projected in between still wakes us.
    let settled = state.watermark.watch_task(&caller.tenant, task_id);
    loop {
        let woken = settled.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        // A parked tenant's task rows stand still: say so rather than answer stale.
        crate::waits::refuse_if_parked(&state, &caller.tenant)?;
        let view = match load_row(&state, &caller, task_id).await? {
            Some(view) => view,
            None => from_log(&state, &caller, task_id)
                .await?
                .ok_or_else(not_found)?,
        };
        if !visible_to(&caller, &view) {
            return Err(not_found());
        }
        let terminal = matches!(
            view.status.as_str(),
            "succeeded" | "failed" | "dead_lettered"
        );
        let left = deadline.saturating_duration_since(Instant::now());
        if terminal || left.is_zero() {
            return Ok(Json(view));
        }
        // Woken by the projection of this task's outcome; a lost announcement (or a parking
        // meanwhile) is noticed at the next look.
        let _ = tokio::time::timeout(left.min(platform::settled::RECHECK), woken).await;
    }
}

fn visible_to(caller: &Principal, view: &TaskView) -> bool {
    caller.is_admin() || caller.subject == view.principal
}

async fn load_row(
    state: &AppState,
    caller: &Principal,
    task_id: Uuid,
) -> Result<Option<TaskView>, ApiError> {
    let row: Option<TaskRow> = sqlx::query_as(
        "SELECT task_id, principal, op, spec, status, attempts, error, created_at, updated_at
         FROM tasks WHERE tenant = $1 AND task_id = $2",
    )
    .bind(caller.tenant.as_str())
    .bind(task_id)
    .fetch_optional(&state.pool)
    .await?;
    Ok(row.map(TaskView::from))
}

/// A task accepted a moment ago may not be projected yet: the log is the source of truth.
async fn from_log(
    state: &AppState,
    caller: &Principal,
    task_id: Uuid,
) -> Result<Option<TaskView>, ApiError> {
    let id = aggregate_id(&caller.tenant, &task_id.to_string());
    let loaded = state
        .log
        .load::<Task>(&id)
        .await
        .map_err(ApiError::unavailable)?;
    let last_seq = loaded.last_stream_seq;
    let task = loaded.aggregate;
    let (Some(spec), Some(at)) = (task.spec, task.requested_at) else {
        return Ok(None);
    };
    if task.status == TaskStatus::Unknown {
        return Ok(None);
    }
    if task.status.is_terminal() {
        // A terminal answer promises up-to-date read models (the file is in the catalogue):
        // give the projector a moment to pass the outcome, then answer from it.
        state
            .watermark
            .wait_for_tenant(&caller.tenant, last_seq, std::time::Duration::from_secs(5))
            .await;
        if let Some(view) = load_row(state, caller, task_id).await? {
            return Ok(Some(view));
        }
    }
    Ok(Some(TaskView {
        task_id,
        op: spec.op().as_str().to_owned(),
        status: task.status.as_str().to_owned(),
        attempts: task.attempts as i32,
        error: task
            .error
            .map(|e| serde_json::json!({"code": e.code, "message": e.message})),
        created_at: at,
        updated_at: at,
        principal: task.principal,
        request: request_of(serde_json::to_value(&spec).unwrap_or_default()),
    }))
}
