//! Shared state of the API handlers.

use std::sync::Arc;

use platform::auth::TokenVerifier;
use platform::db::ProjectionWatermark;
use platform::event_log::EventLog;
use platform::storage::Storage;
use sqlx::PgPool;

/// Limits and switches the handlers need from the configuration.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    pub max_command_bytes: usize,
    pub max_upload_bytes: u64,
    pub allowed_types: Vec<String>,
    pub cors_origins: Vec<String>,
    pub rate_limit_per_min: u32,
    /// Request headers must arrive within this time (`FE_HTTP_HEADER_TIMEOUT_S`).
    pub header_timeout: std::time::Duration,
    /// Longest pause between chunks of a request body (`FE_HTTP_BODY_IDLE_TIMEOUT_S`).
    pub body_idle_timeout: std::time::Duration,
    /// Open connections per process (`FE_HTTP_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Default per-tenant quota (FE_TENANT_QUOTA_BYTES / FE_TENANT_QUOTA_FILES); the operator
    /// may set another per tenant (`file-engine quota set`).
    pub quota: events::quota::Limits,
}

#[derive(Clone)]
pub struct AppState {
    pub log: EventLog,
    pub nats: async_nats::Client,
    pub pool: PgPool,
    pub watermark: ProjectionWatermark,
    pub verifier: TokenVerifier,
    pub storage: Arc<dyn Storage>,
    pub settings: Arc<ApiSettings>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Keys for signed links, newest first (never logged: `AppState` has no `Debug`).
    pub link_secrets: Arc<Vec<String>>,
    /// Seals listing cursors (see `cursor`).
    pub cursor_key: Arc<crate::cursor::CursorKey>,
    /// Per-tenant cache of the ACL read model (see `authz`).
    pub acl: crate::authz::AclCache,
    /// Per-principal and per-tenant request limits.
    pub rate_limits: crate::rate_limit::RateLimits,
    /// Slots for open event streams (per process, tenant and principal): each open
    /// `GET /v1/events` holds one of each, so idle streams cannot exhaust the process.
    pub sse_slots: crate::stream_slots::StreamSlots,
    /// The last readiness probe, answered again for a moment (`/readyz` stays cheap).
    pub readiness: crate::routes::ops::Readiness,
    /// Webhook subscriptions: the SSRF switch and the key secrets are derived from.
    pub webhooks: Arc<WebhookSettings>,
    /// Turns true when the server stops; long-lived responses (SSE) end on it so that a
    /// graceful shutdown is not held open by them.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// What the subscriptions API needs from the configuration.
#[derive(Clone)]
pub struct WebhookSettings {
    /// `FE_WEBHOOK_ALLOW_PRIVATE`: admit private and loopback targets (development only).
    pub allow_private: bool,
    /// `FE_WEBHOOK_SECRET_KEY`; without it subscriptions cannot be created (503).
    pub secret_key: Option<platform::webhook::SecretKey>,
}
