//! Operational endpoints, reachable without a token: liveness, readiness (NATS, Postgres and
//! the event stream), Prometheus metrics and the OpenAPI document.
//!
//! Readiness is probed at most once per [`READY_TTL`]: callers in between (kubelets, load
//! balancers, a flood of unauthenticated requests) get the last answer, concurrent callers
//! wait for one probe instead of each starting their own, and every check is bounded by
//! [`PROBE_TIMEOUT`], so `/readyz` can neither load the dependencies nor hang on them.

use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// How long one readiness answer is reused.
pub const READY_TTL: Duration = Duration::from_secs(1);
/// How long one dependency check may take before it counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The last readiness answer and when it was probed; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Readiness {
    last: Arc<tokio::sync::Mutex<Option<(Instant, bool, serde_json::Value)>>>,
}

/// NATS, Postgres and the event stream are reachable.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, description = "a dependency is down")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (ready, body) = {
        let mut last = state.readiness.last.lock().await;
        match &*last {
            Some((at, ready, body)) if at.elapsed() < READY_TTL => (*ready, body.clone()),
            _ => {
                let (ready, body) = probe(&state).await;
                *last = Some((Instant::now(), ready, body.clone()));
                (ready, body)
            }
        }
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Checks each dependency once, each bounded by [`PROBE_TIMEOUT`].
async fn probe(state: &AppState) -> (bool, serde_json::Value) {
    metrics::counter!("fe_readiness_probes_total").increment(1);
    let nats = matches!(
        state.nats.connection_state(),
        async_nats::connection::State::Connected
    );
    let stream_check = state
        .log
        .jetstream()
        .get_stream(platform::streams::EVENTS_STREAM);
    let stream = nats
        && tokio::time::timeout(PROBE_TIMEOUT, stream_check)
            .await
            .is_ok_and(|r| r.is_ok());
    let postgres_check = sqlx::query("SELECT 1").execute(&state.pool);
    let postgres = tokio::time::timeout(PROBE_TIMEOUT, postgres_check)
        .await
        .is_ok_and(|r| r.is_ok());
    let ready = nats && stream && postgres;
    let body = json!({"ready": ready, "checks": {"nats": nats, "event_stream": stream, "postgres": postgres}});
    (ready, body)
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
