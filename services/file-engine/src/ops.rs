//! The operations listener of the roles without an HTTP API (`projector`, `worker`,
//! `scanner`, `notifier`): `/metrics` (Prometheus text), `/healthz` (the process is alive) and
//! `/readyz` (NATS, the event stream and PostgreSQL answer; for the scanner also clamd), on
//! `FE_OPS_ADDR` or the role's default port. The API serves the same three endpoints on its
//! own port, so a process that runs the API (`api`, `all`) opens no second listener unless
//! `FE_OPS_ADDR` is set.
//!
//! Default addresses are loopback, like `FE_HTTP_ADDR`'s: the Kubernetes manifests set
//! `FE_OPS_ADDR=0.0.0.0:<port>` so the kubelet and Prometheus reach it.
//!
//! Every process also starts the alert metrics of its roles at zero ([`register_metrics`]):
//! a counter that has never been incremented is absent from `/metrics`, and an alert on
//! `increase(absent_metric[…])` can never fire.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use sqlx::PgPool;

use crate::Role;

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Role {
    /// The role's name as on the command line and in the `role` metric label.
    pub fn name(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Projector => "projector",
            Role::Worker => "worker",
            Role::Scanner => "scanner",
            Role::Notifier => "notifier",
        }
    }

    /// The documented default ops port of a role run alone.
    pub fn default_ops_port(self) -> Option<u16> {
        match self {
            Role::Api => None,
            Role::Projector => Some(9091),
            Role::Worker => Some(9092),
            Role::Scanner => Some(9093),
            Role::Notifier => Some(9094),
        }
    }
}

/// Where the ops listener of a process running `roles` binds: `FE_OPS_ADDR` when set; else
/// none when the API is among the roles (it serves the endpoints itself); else the default
/// port of the first role on loopback.
pub fn ops_addr(configured: Option<SocketAddr>, roles: &[Role]) -> Option<SocketAddr> {
    if configured.is_some() {
        return configured;
    }
    if roles.contains(&Role::Api) {
        return None;
    }
    let port = roles.iter().find_map(|r| r.default_ops_port())?;
    Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// What `/readyz` checks.
#[derive(Clone)]
pub struct Readiness {
    pub nats: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
    pub pool: PgPool,
    /// Checked when the process runs the scanner.
    pub clamd: Option<scanner::ClamdClient>,
}

#[derive(Clone)]
struct OpsState {
    readiness: Readiness,
    metrics: Option<PrometheusHandle>,
}

/// The ops router (no authentication: expose it to the cluster only, as `networkpolicy.yaml`
/// does).
pub fn router(readiness: Readiness, metrics: Option<PrometheusHandle>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(OpsState { readiness, metrics })
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<OpsState>) -> Response {
    let r = &state.readiness;
    let nats = matches!(
        r.nats.connection_state(),
        async_nats::connection::State::Connected
    );
    let stream = nats
        && within(r.jetstream.get_stream(platform::streams::EVENTS_STREAM))
            .await
            .is_some_and(|s| s.is_ok());
    let postgres = within(sqlx::query("SELECT 1").execute(&r.pool))
        .await
        .is_some_and(|q| q.is_ok());
    let mut checks = json!({"nats": nats, "event_stream": stream, "postgres": postgres});
    let mut ready = nats && stream && postgres;
    if let Some(clamd) = &r.clamd {
        let up = within(clamd.ping()).await.is_some_and(|p| p.is_ok());
        checks["clamd"] = json!(up);
        ready &= up;
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": ready, "checks": checks}))).into_response()
}

async fn within<F: std::future::Future>(f: F) -> Option<F::Output> {
    tokio::time::timeout(CHECK_TIMEOUT, f).await.ok()
}

async fn render_metrics(State(state): State<OpsState>) -> Response {
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Starts at zero the counters that alert rules and dashboard panels watch with `increase(…)`
/// (so they exist before the first event), and sets the build info gauge, for the roles of
/// this process (see the metrics table in the README).
pub fn register_metrics(roles: &[Role]) {
    for role in roles {
        metrics::gauge!("fe_build_info", "role" => role.name(), "version" => env!("CARGO_PKG_VERSION"))
            .set(1.0);
        let counters: &[&'static str] = match role {
            Role::Api => &[
                "fe_auth_failures_total",
                "fe_rate_limited_total",
                "fe_acl_cache_reloads_total",
                "fe_public_event_errors_total",
                "fe_quota_refusals_total",
                "fe_readiness_probes_total",
                "fe_storage_blob_reads_total",
            ],
            Role::Projector => &[
                "fe_projector_errors_total",
                "fe_projector_commits_total",
                "fe_projection_parkings_total",
                "fe_projection_held_commits_total",
                "fe_projector_unreadable_commits_total",
            ],
            Role::Worker => &[
                "fe_tasks_dead_lettered_total",
                "fe_uploads_given_up_total",
                "fe_staging_removed_total",
                "fe_worker_unreadable_commits_total",
                "fe_worker_released_total",
                "fe_storage_blob_writes_total",
                "fe_storage_blob_bytes_written_total",
                "fe_storage_blob_deletes_total",
                "fe_storage_gc_blobs_total",
                "fe_storage_gc_reclaimed_bytes_total",
                "fe_consumer_outcomes_total",
                "fe_consumer_rejected_total",
                "fe_consumer_released_at_shutdown_total",
            ],
            Role::Scanner => &[
                "fe_scanner_clamd_unavailable_total",
                "fe_scan_timeouts_total",
                "fe_scanner_unreadable_commits_total",
                "fe_consumer_outcomes_total",
                "fe_consumer_rejected_total",
                "fe_consumer_released_at_shutdown_total",
            ],
            Role::Notifier => &[
                "fe_webhook_dead_total",
                "fe_webhook_subscriptions_disabled_total",
                "fe_notifier_unreadable_commits_total",
                "fe_public_event_errors_total",
                "fe_consumer_outcomes_total",
                "fe_consumer_rejected_total",
                "fe_consumer_released_at_shutdown_total",
            ],
        };
        if *role == Role::Api {
            // True at start: no event stream is open yet.
            metrics::gauge!("fe_sse_connections").set(0.0);
            metrics::counter!("fe_sse_disconnects_total", "reason" => "slow_or_gone").increment(0);
            metrics::gauge!("fe_http_connections").set(0.0);
        }
        if *role == Role::Projector {
            // Set for real as soon as the replica owns partitions / learns of parkings.
            metrics::gauge!("fe_projection_parked_tenants").increment(0.0);
            metrics::gauge!("fe_projector_partitions_owned").increment(0.0);
        }
        if *role == Role::Worker {
            // Sampled from the table within seconds of the start.
            metrics::gauge!("fe_worker_deferred_tasks").increment(0.0);
        }
        for name in counters {
            metrics::counter!(*name).increment(0);
        }
    }
}
