//! Webhook subscriptions (role `admin` of the caller's tenant, else 403):
//! `POST /v1/subscriptions`, `GET /v1/subscriptions`, `DELETE /v1/subscriptions/{id}` and the
//! delivery log `GET /v1/subscriptions/{id}/deliveries`.
//!
//! Changes go through the tenant's subscription aggregate (`fe.ev.<tenant>.subscription.
//! <tenant>`) with the admin in the event metadata (audit), and are answered once the
//! projection has passed them: a subscription created by a 201 receives every event of a
//! commit that comes after it in the log, a deletion answered 204 stops deliveries of later
//! commits. The signing secret is derived from `FE_WEBHOOK_SECRET_KEY` and the id
//! (`platform::webhook::SecretKey`) and shown in the 201 only; it is never stored. Without
//! that key webhooks are off and creation answers 503. Another tenant's id, a deleted one or
//! a malformed one answers 404.
//!
//! `input.rs` validates bodies and queries (SSRF rules included), `store.rs` holds the reads.

mod input;
mod store;

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use events::subscription::{SubscriptionAggregate, SubscriptionCommand, SubscriptionError};
use events::Principal;
use platform::event_log::{aggregate_id, ExecuteError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::{Caller, JsonBody};
use crate::routes::commands::event_metadata;
use crate::state::AppState;

/// How long a change waits for the projection before answering 503.
const APPLY_DEADLINE: Duration = Duration::from_secs(10);

/// Body of `POST /v1/subscriptions`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// `https://` or `http://` target; no credentials, no fragment; must not resolve to a
    /// private, loopback, link-local, multicast or reserved address.
    pub url: String,
    /// Public event types (short names such as `dir.created`); empty or absent = all.
    pub types: Option<Vec<String>>,
    /// Only events about this path or below it (whole segments); default `/`.
    pub path_prefix: Option<String>,
}

/// A subscription as recorded (never with its secret).
#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SubscriptionView {
    pub id: Uuid,
    pub url: String,
    pub types: Vec<String>,
    pub path_prefix: String,
    /// `active` or `disabled` (after sustained delivery failure).
    pub status: String,
    /// Why it was disabled.
    pub status_reason: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// The 201 of `POST /v1/subscriptions`: the subscription and its signing secret, shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedSubscription {
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    /// Key of `FileEngine-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
    pub secret: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<SubscriptionView>,
}

/// One attempt of a delivery.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    /// HTTP status of the answer; null when none came.
    pub status: Option<i32>,
    pub error: Option<String>,
}

/// One event's delivery to the subscription.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    /// The CloudEvents `id` (the same on every attempt).
    pub event_id: String,
    pub event_type: String,
    pub seq: i64,
    /// `pending`, `delivered`, `dead` (given up) or `cancelled` (subscription disabled).
    pub status: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    pub attempt_log: Vec<AttemptView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryLog {
    pub deliveries: Vec<DeliveryView>,
    pub next_cursor: Option<String>,
}

/// Subscribe a URL to the tenant's events.
#[utoipa::path(post, path = "/v1/subscriptions", tag = "notifications", request_body = CreateRequest,
    responses((status = 201, body = CreatedSubscription), (status = 400, body = crate::error::Problem),
              (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
              (status = 409, body = crate::error::Problem), (status = 413, body = crate::error::Problem),
              (status = 415, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(req, _): JsonBody<CreateRequest>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let Some(key) = state.webhooks.secret_key.clone() else {
        return Err(ApiError::unavailable("FE_WEBHOOK_SECRET_KEY is not set"));
    };
    let subscription = input::subscription_from(req, state.webhooks.allow_private).await?;
    let id = subscription.id;
    let command = SubscriptionCommand::Create {
        subscription,
        principal: caller.clone(),
    };
    crate::waits::refuse_if_parked(&state, &caller.tenant)?;
    let seq = execute(&state, &caller, command).await?;
    metrics::counter!("fe_subscription_changes_total", "change" => "create").increment(1);
    wait_applied(
        &state,
        &caller.tenant,
        seq,
        &format!("the subscription {id} was recorded"),
    )
    .await?;
    let view = store::get(&state, &caller.tenant, id)
        .await?
        .ok_or_else(|| ApiError::internal("a projected subscription is missing"))?;
    let body = CreatedSubscription {
        subscription: view,
        secret: key.subscription_secret(&caller.tenant, id),
    };
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/subscriptions/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// List the tenant's subscriptions (without secrets).
#[utoipa::path(get, path = "/v1/subscriptions", tag = "notifications",
    responses((status = 200, body = SubscriptionList), (status = 401, body = crate::error::Problem),
              (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<SubscriptionList>, ApiError> {
    require_admin(&caller)?;
    let subscriptions = store::list(&state, &caller.tenant).await?;
    Ok(Json(SubscriptionList { subscriptions }))
}

/// Delete a subscription; its pending deliveries are abandoned.
#[utoipa::path(delete, path = "/v1/subscriptions/{id}", tag = "notifications",
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = crate::error::Problem),
              (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
              (status = 409, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    let id = Uuid::parse_str(&raw_id).map_err(|_| not_found())?;
    let command = SubscriptionCommand::Delete {
        id,
        principal: caller.clone(),
    };
    crate::waits::refuse_if_parked(&state, &caller.tenant)?;
    let seq = execute(&state, &caller, command).await?;
    metrics::counter!("fe_subscription_changes_total", "change" => "delete").increment(1);
    wait_applied(
        &state,
        &caller.tenant,
        seq,
        &format!("the deletion of subscription {id} was recorded"),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The delivery log of a subscription, newest first.
#[utoipa::path(get, path = "/v1/subscriptions/{id}/deliveries", tag = "notifications",
    params(("id" = Uuid, Path), ("limit" = Option<i64>, Query, description = "1–200, default 50"),
           ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, body = DeliveryLog), (status = 400, body = crate::error::Problem),
              (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw_id): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<DeliveryLog>, ApiError> {
    require_admin(&caller)?;
    let id = Uuid::parse_str(&raw_id).map_err(|_| not_found())?;
    let page = input::page(query)?;
    if store::get(&state, &caller.tenant, id).await?.is_none() {
        return Err(not_found());
    }
    let (deliveries, next_cursor) = store::deliveries(&state, &caller.tenant, id, &page).await?;
    Ok(Json(DeliveryLog {
        deliveries,
        next_cursor,
    }))
}

fn require_admin(caller: &Principal) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "managing subscriptions needs the role admin".into(),
        ))
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("no such subscription".into())
}

/// Runs a subscription command on the caller's tenant aggregate; returns the commit's
/// stream sequence.
async fn execute(
    state: &AppState,
    caller: &Principal,
    command: SubscriptionCommand,
) -> Result<u64, ApiError> {
    let id = aggregate_id(&caller.tenant, caller.tenant.as_str());
    let executed = state
        .log
        .execute::<SubscriptionAggregate>(&id, command, &(), event_metadata(caller))
        .await
        .map_err(|e| match e {
            ExecuteError::Domain(SubscriptionError::NotAdmin) => {
                ApiError::Forbidden(SubscriptionError::NotAdmin.to_string())
            }
            ExecuteError::Domain(SubscriptionError::NotFound) => not_found(),
            ExecuteError::Domain(
                e @ (SubscriptionError::Duplicate | SubscriptionError::TooMany),
            ) => ApiError::Conflict(e.to_string()),
            ExecuteError::Conflict => {
                ApiError::Conflict("the subscriptions were changed concurrently; retry".into())
            }
            ExecuteError::Log(e) => ApiError::unavailable(e),
        })?;
    executed
        .stream_seq
        .ok_or_else(|| ApiError::internal("a subscription command recorded no event"))
}

/// Waits until the tenant's read models (hence enforcement) include `seq`.
async fn wait_applied(
    state: &AppState,
    tenant: &events::TenantId,
    seq: u64,
    what: &str,
) -> Result<(), ApiError> {
    crate::waits::wait_applied(state, tenant, seq, APPLY_DEADLINE, what).await
}
