//! The HTTP API of File Engine (axum): commands, tasks, reads, and the operational
//! endpoints. Handlers are thin: they parse input into domain types (`events`), ask
//! [`authz`] for a decision, and either append to the event log or read a read model.
//!
//! Every response carries `X-Request-Id`; every error is problem+json rendered in
//! [`error`]; panics are caught and answered as a generic 500 problem; security headers are
//! set on every response; CORS is off unless `FE_CORS_ORIGINS` lists origins.

pub mod authz;
pub mod context;
pub mod cursor;
pub mod error;
pub mod extract;
pub mod files;
pub mod openapi;
pub mod rate_limit;
pub mod routes;
pub mod server;
pub mod state;
pub mod stream_slots;
pub mod waits;

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;

pub use state::{ApiSettings, AppState};

use error::ApiError;

pub fn router(state: AppState) -> axum::Router {
    let cors = cors_layer(&state.settings.cors_origins);
    let body_idle_timeout = state.settings.body_idle_timeout;
    // The one route list (`openapi::routes`) serves and documents every operation; the
    // root of a tenant (`/v1/stat/`, `/v1/list/`) is the same operation with an empty path.
    let (routes, _) = openapi::routes().split_for_parts();
    let api = routes
        .route("/v1/stat/", get(routes::reads::stat))
        .route("/v1/list/", get(routes::reads::list))
        .fallback(|| async { ApiError::NotFound("no such resource".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::BadRequest("method not allowed on this resource".into())
        })
        .with_state(state);
    let mut app = api
        .layer(RequestBodyTimeoutLayer::new(body_idle_timeout))
        .layer(middleware::from_fn(record_metrics))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("handler panicked").into_response()
        }))
        .layer(middleware::from_fn(context::middleware));
    for (name, value) in security_headers() {
        app = app.layer(SetResponseHeaderLayer::if_not_present(name, value));
    }
    match cors {
        Some(cors) => app.layer(cors),
        None => app,
    }
}

fn security_headers() -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ),
    ]
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                header::IF_NONE_MATCH,
                header::RANGE,
            ])
            .expose_headers([
                header::LOCATION,
                header::ETAG,
                HeaderName::from_static("x-request-id"),
            ]),
    )
}

/// Request counts and latencies by route template (never the raw path: bounded labels, and
/// no tenant data in metrics).
async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("fe_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("fe_http_request_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Serves until `shutdown` resolves, then drains in-flight requests (see [`server`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let settings = state.settings.clone();
    server::serve(listener, router(state), &settings, shutdown).await
}
