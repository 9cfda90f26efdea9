//! Operational endpoints, reachable without a token: liveness, readiness (NATS, Postgres and
//! the event stream), Prometheus metrics and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::state::AppState;

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// NATS, Postgres and the event stream are reachable.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, description = "a dependency is down")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let nats = matches!(
        state.nats.connection_state(),
        async_nats::connection::State::Connected
    );
    let stream = nats
        && state
            .log
            .jetstream()
            .get_stream(platform::streams::EVENTS_STREAM)
            .await
            .is_ok();
    let postgres = sqlx::query("SELECT 1").execute(&state.pool).await.is_ok();
    let ready = nats && stream && postgres;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"ready": ready, "checks": {"nats": nats, "event_stream": stream, "postgres": postgres}});
    (status, Json(body)).into_response()
}

/// Prometheus text format. Expose to the cluster only.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document())
}
