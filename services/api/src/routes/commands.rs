//! `POST /v1/commands`: validate, authorize, resolve the idempotency key, and append
//! `task.requested`. The 202 is sent only after JetStream acknowledged the commit, so an
//! acknowledged task is never lost.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use events::acl::Access;
use events::task::{
    body_hash, task_id_for_idempotency_key, FileCommand, Task, TaskCommand, TaskError, TaskSpec,
};
use events::{IdempotencyKey, Principal};
use platform::event_log::{aggregate_id, ExecuteError};
use serde::Serialize;
use uuid::Uuid;

use crate::authz::authorize;
use crate::context;
use crate::error::ApiError;
use crate::extract::{Caller, JsonBody};
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub task_id: Uuid,
    pub status: &'static str,
    pub status_url: String,
}

/// Submit a file command (mkdir, move, copy, delete); it runs asynchronously as a task.
#[utoipa::path(post, path = "/v1/commands", tag = "commands",
    request_body(content = serde_json::Value, description = "mkdir | move | copy | delete command"),
    params(("Idempotency-Key" = Option<String>, Header, description = "1–255 visible ASCII chars")),
    responses((status = 202, body = Accepted), (status = 400, body = crate::error::Problem),
              (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
              (status = 409, body = crate::error::Problem), (status = 413, body = crate::error::Problem),
              (status = 415, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn post_command(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    JsonBody(command, raw): JsonBody<FileCommand>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    refuse_root_mutation(&command)?;
    authorize(&state, &caller, access_for(&command)).await?;
    let hash = key.as_ref().map(|_| body_hash(&raw));
    let requested = request_task(&state, &caller, TaskSpec::Command(command), key, hash).await?;
    Ok(accepted(requested.task_id))
}

pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| {
        ApiError::BadRequest("Idempotency-Key must be 1–255 visible ASCII characters".into())
    })?;
    IdempotencyKey::parse(text).map(Some).map_err(|_| {
        ApiError::BadRequest("Idempotency-Key must be 1–255 visible ASCII characters".into())
    })
}

fn refuse_root_mutation(command: &FileCommand) -> Result<(), ApiError> {
    let touches_root = match command {
        FileCommand::Mkdir { path, .. } | FileCommand::Delete { path, .. } => path.is_root(),
        FileCommand::Move { from, to, .. } | FileCommand::Copy { from, to, .. } => {
            from.is_root() || to.is_root()
        }
    };
    if touches_root {
        return Err(ApiError::BadRequest(
            "the root directory cannot be created, moved, copied over or deleted".into(),
        ));
    }
    Ok(())
}

fn access_for(command: &FileCommand) -> Access<'_> {
    match command {
        FileCommand::Mkdir { path, .. } => Access::Mkdir(path),
        FileCommand::Delete { path, .. } => Access::Delete(path),
        FileCommand::Move { from, to, .. } => Access::Move { from, to },
        FileCommand::Copy { from, to, .. } => Access::Copy { from, to },
    }
}

/// The task a request maps to, and whether it already existed (an idempotent replay).
pub struct Requested {
    pub task_id: Uuid,
    pub replay: bool,
}

/// Appends `task.requested` (or recognises an idempotent replay).
pub async fn request_task(
    state: &AppState,
    caller: &Principal,
    spec: TaskSpec,
    key: Option<IdempotencyKey>,
    body_hash: Option<String>,
) -> Result<Requested, ApiError> {
    let key_given = key.is_some();
    let task_id = match &key {
        Some(k) => task_id_for_idempotency_key(&caller.tenant, &caller.subject, k),
        None => Uuid::now_v7(),
    };
    let command = TaskCommand::Request {
        task_id,
        tenant: caller.tenant.clone(),
        principal: caller.subject.clone(),
        spec,
        idempotency_key: key.map(|k| k.as_str().to_owned()),
        body_hash,
        requested_at: Utc::now(),
    };
    let id = aggregate_id(&caller.tenant, &task_id.to_string());
    let metadata = event_metadata(caller);
    // A fresh UUIDv7 names an aggregate that cannot exist yet: append without loading it.
    // An idempotency key maps to a name-based id that may exist (a replay): load it first.
    let executed = if key_given {
        state.log.execute::<Task>(&id, command, &(), metadata).await
    } else {
        state
            .log
            .execute_new::<Task>(&id, command, &(), metadata)
            .await
    };
    match executed {
        Ok(executed) => {
            let replay = executed.events.is_empty();
            if !replay {
                metrics::counter!("fe_tasks_requested_total").increment(1);
            }
            Ok(Requested { task_id, replay })
        }
        Err(ExecuteError::Domain(TaskError::IdempotencyKeyReused)) => {
            Err(ApiError::IdempotencyKeyReused)
        }
        Err(ExecuteError::Domain(e)) => Err(ApiError::Conflict(e.to_string())),
        Err(e) => Err(ApiError::unavailable(e)),
    }
}

/// Who, which request and which trace: travels with every event the request causes.
pub fn event_metadata(caller: &Principal) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert("principal".to_owned(), caller.subject.clone());
    if let Some(ctx) = context::current() {
        m.insert("request_id".to_owned(), ctx.request_id);
        m.insert("traceparent".to_owned(), ctx.traceparent);
    }
    m
}

pub fn accepted(task_id: Uuid) -> Response {
    let status_url = format!("/v1/tasks/{task_id}");
    let location = HeaderValue::from_str(&status_url).ok();
    let body = Accepted {
        task_id,
        status: "pending",
        status_url,
    };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
