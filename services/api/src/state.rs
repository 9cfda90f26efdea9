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
    /// Per-tenant cache of the ACL read model (see `authz`).
    pub acl: crate::authz::AclCache,
}
