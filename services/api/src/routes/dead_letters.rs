//! Dead letters (role `admin`): tasks whose deliveries were exhausted, listed newest last,
//! and retried on request (`task.retried` puts the task back in the worker's queue).

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use events::task::{Task, TaskCommand, TaskError};
use platform::event_log::{aggregate_id, ExecuteError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::{accepted, event_metadata};
use crate::error::ApiError;
use crate::extract::Caller;
use crate::state::AppState;

#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeadLetter {
    pub task_id: Uuid,
    pub op: String,
    #[schema(value_type = Object)]
    pub error: Option<serde_json::Value>,
    pub attempts: i32,
    pub dead_lettered_at: DateTime<Utc>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeadLetters {
    pub dead_letters: Vec<DeadLetter>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct Page {
    limit: Option<String>,
    cursor: Option<String>,
}

fn require_admin(caller: &events::Principal) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "dead letters are for tenant admins".into(),
        ))
    }
}

fn decode_cursor(raw: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let bad = || ApiError::BadRequest("invalid cursor".into());
    let text =
        String::from_utf8(URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?).map_err(|_| bad())?;
    let (at, id) = text.split_once('|').ok_or_else(bad)?;
    Ok((
        DateTime::parse_from_rfc3339(at)
            .map_err(|_| bad())?
            .with_timezone(&Utc),
        Uuid::parse_str(id).map_err(|_| bad())?,
    ))
}

/// Tasks that exhausted their deliveries, oldest first.
#[utoipa::path(get, path = "/v1/dead-letters", tag = "tasks",
    params(("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = DeadLetters), (status = 400, body = crate::error::Problem),
              (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(page): Query<Page>,
) -> Result<Json<DeadLetters>, ApiError> {
    require_admin(&caller)?;
    let limit = match page.limit.as_deref().map(str::parse::<i64>) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        _ => {
            return Err(ApiError::BadRequest(
                "limit must be between 1 and 1000".into(),
            ))
        }
    };
    let after = page.cursor.as_deref().map(decode_cursor).transpose()?;
    let (at, id) = (after.map(|a| a.0), after.map(|a| a.1));
    let mut rows: Vec<DeadLetter> = sqlx::query_as(
        "SELECT task_id, op, error, attempts, dead_lettered_at FROM tasks
         WHERE tenant = $1 AND status = 'dead_lettered'
           AND ($2::timestamptz IS NULL OR (dead_lettered_at, task_id) > ($2, $3))
         ORDER BY dead_lettered_at, task_id LIMIT $4",
    )
    .bind(caller.tenant.as_str())
    .bind(at)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| {
            rows.last().map(|r| {
                URL_SAFE_NO_PAD.encode(format!("{}|{}", r.dead_lettered_at.to_rfc3339(), r.task_id))
            })
        })
        .flatten();
    Ok(Json(DeadLetters {
        dead_letters: rows,
        next_cursor,
    }))
}

/// Put a dead-lettered task back in the queue; answers 202 with the task.
#[utoipa::path(post, path = "/v1/dead-letters/{task_id}/retry", tag = "tasks",
    params(("task_id" = Uuid, Path)),
    responses((status = 202, body = crate::routes::commands::Accepted), (status = 401, body = crate::error::Problem),
              (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
              (status = 409, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let not_found = || ApiError::NotFound("no such task".into());
    let task_id = Uuid::parse_str(&raw).map_err(|_| not_found())?;
    let id = aggregate_id(&caller.tenant, &task_id.to_string());
    let command = TaskCommand::Retry {
        by: caller.subject.clone(),
    };
    match state
        .log
        .execute::<Task>(&id, command, &(), event_metadata(&caller))
        .await
    {
        Ok(executed) => {
            // Read-your-writes: the task shows as pending again before the 202 is sent.
            if let Some(seq) = executed.stream_seq {
                state
                    .watermark
                    .wait_for_tenant(&caller.tenant, seq, std::time::Duration::from_secs(10))
                    .await;
            }
            Ok(accepted(task_id))
        }
        Err(ExecuteError::Domain(TaskError::NotRequested)) => Err(not_found()),
        Err(ExecuteError::Domain(TaskError::NotDeadLettered)) => {
            Err(ApiError::Conflict("the task is not dead-lettered".into()))
        }
        Err(ExecuteError::Domain(e)) => Err(ApiError::Conflict(e.to_string())),
        Err(e) => Err(ApiError::unavailable(e)),
    }
}
