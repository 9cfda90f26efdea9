//! `POST /v1/commands`: validate, authorize, resolve the idempotency key, and append
//! `task.requested`. The 202 is sent only after JetStream acknowledged the commit, so an
//! acknowledged task is never lost.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use events::task::{
    body_hash, key_window, request_fingerprint, task_id_for_idempotency_key, CommandAccess,
    FileCommand, Task, TaskCommand, TaskError, TaskSpec,
};
use events::{FilePath, IdempotencyKey, Principal};
use platform::event_log::{aggregate_id, ExecuteError};
use serde::Serialize;
use uuid::Uuid;

use crate::authz::Decider;
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
              (status = 415, body = crate::error::Problem), (status = 507, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn post_command(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    JsonBody(command, raw): JsonBody<FileCommand>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    refuse_root_mutation(&command)?;
    crate::waits::refuse_if_parked(&state, &caller.tenant)?;
    let acl = Decider::load(&state, &caller).await?;
    match command.access() {
        CommandAccess::Named(access) => acl.check(access)?,
        CommandAccess::Tree(access) => acl.check_tree(&state, access).await?,
    }
    refuse_oversized_subtree(&state, &caller, &command).await?;
    if let FileCommand::Copy {
        from,
        to,
        overwrite,
    } = &command
    {
        let change =
            platform::catalogue::copy_change(&state.pool, &caller.tenant, from, to, *overwrite)
                .await?;
        super::usage::admit(&state, &caller.tenant, change).await?;
    }
    let fingerprint = key
        .as_ref()
        .map(|_| request_fingerprint("POST", "/v1/commands", &body_hash(&raw)));
    let requested = request_task(
        &state,
        &caller,
        TaskSpec::Command(command),
        key,
        fingerprint,
    )
    .await?;
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

/// A move or copy whose subtree (as the catalogue knows it now) would get a path over the
/// limit at the target is refused before anything is recorded (400 `path_invalid`); the
/// worker checks again when the task runs, against what is there then.
async fn refuse_oversized_subtree(
    state: &AppState,
    caller: &Principal,
    command: &FileCommand,
) -> Result<(), ApiError> {
    let (FileCommand::Move { from, to, .. } | FileCommand::Copy { from, to, .. }) = command else {
        return Ok(());
    };
    let longest = platform::catalogue::longest_path_in_subtree(&state.pool, &caller.tenant, from)
        .await?
        .unwrap_or(from.as_str().len());
    FilePath::check_subtree_rebase(from, to, longest)?;
    Ok(())
}

/// The task a request maps to, and whether it already existed (an idempotent replay).
pub struct Requested {
    pub task_id: Uuid,
    pub replay: bool,
}

/// Appends `task.requested` (or recognises an idempotent replay). `fingerprint` is the
/// [`request_fingerprint`] of the whole request when it carries an idempotency key.
pub async fn request_task(
    state: &AppState,
    caller: &Principal,
    spec: TaskSpec,
    key: Option<IdempotencyKey>,
    fingerprint: Option<String>,
) -> Result<Requested, ApiError> {
    let requested_at = Utc::now();
    let key_given = key.is_some();
    let task_id = match &key {
        Some(k) => keyed_task_id(state, caller, k, requested_at).await?,
        None => Uuid::now_v7(),
    };
    let command = TaskCommand::Request {
        task_id,
        tenant: caller.tenant.clone(),
        principal: caller.subject.clone(),
        roles: caller.roles.clone(),
        spec,
        idempotency_key: key.map(|k| k.as_str().to_owned()),
        body_hash: fingerprint,
        requested_at,
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

/// The task a key names at `at`: the previous window's task while it is younger than 24 h,
/// else the current window's (see `events::task::task_id_for_idempotency_key`).
async fn keyed_task_id(
    state: &AppState,
    caller: &Principal,
    key: &IdempotencyKey,
    at: chrono::DateTime<Utc>,
) -> Result<Uuid, ApiError> {
    let window = key_window(at);
    let previous = task_id_for_idempotency_key(&caller.tenant, &caller.subject, key, window - 1);
    let loaded = state
        .log
        .load::<Task>(&aggregate_id(&caller.tenant, &previous.to_string()))
        .await
        .map_err(ApiError::unavailable)?;
    if loaded.aggregate.holds_key_at(at) {
        return Ok(previous);
    }
    Ok(task_id_for_idempotency_key(
        &caller.tenant,
        &caller.subject,
        key,
        window,
    ))
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
