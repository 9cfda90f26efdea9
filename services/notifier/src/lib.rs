//! The notifier: delivers the tenant's public events to its webhook subscriptions, signed,
//! at least once, retried with exponential backoff, and isolated per subscription
//! (API.md "Notifications"; `README.md` next to this crate for operators).
//!
//! Two loops share one PostgreSQL queue:
//!
//! * `intake.rs` — a durable JetStream consumer on the whole log: commit → CloudEvents →
//!   matching subscriptions → rows in `deliveries` (idempotent) → ack.
//! * `engine.rs` — claims due rows (`FOR UPDATE SKIP LOCKED`, so replicas share the work),
//!   sends each (`send.rs`), records the outcome (`outcome.rs`), schedules retries
//!   (`policy.rs`) and disables subscriptions that keep failing (`disable.rs`).
//!
//! Signing secrets are never stored: both the API and the notifier derive them from
//! `FE_WEBHOOK_SECRET_KEY` and the subscription id (`platform::webhook::SecretKey`).
//!
//! Metrics (no tenant labels): `fe_webhook_deliveries_queued_total`,
//! `fe_webhook_attempts_total{outcome}`, `fe_webhook_attempt_seconds`,
//! `fe_webhook_dead_total`, `fe_webhook_subscriptions_disabled_total`,
//! `fe_notifier_unreadable_commits_total`.

mod disable;
mod engine;
mod intake;
mod outcome;
mod policy;
mod queue;
mod send;

use std::sync::Arc;
use std::time::Duration;

use platform::db::ProjectionWatermark;
use platform::event_log::EventLog;
use platform::webhook::SecretKey;
use sqlx::PgPool;
use tokio::sync::{watch, Notify};

pub use disable::PRINCIPAL;
pub use engine::{POLL, RETENTION};
pub use intake::{consumer_spec, CONSUMER_NAME};
pub use policy::{retry_delay, FIRST_RETRY, MAX_RETRY_DELAY};
pub use send::{Outcome, Sender};

/// The notifier's tunables (the `FE_WEBHOOK_*` variables).
#[derive(Clone, Debug)]
pub struct NotifierSettings {
    /// Admit private and loopback targets (`FE_WEBHOOK_ALLOW_PRIVATE`; development only).
    pub allow_private: bool,
    /// Per-attempt timeout (`FE_WEBHOOK_TIMEOUT_S`).
    pub timeout: Duration,
    /// Attempts in flight per process (`FE_WEBHOOK_CONCURRENCY`).
    pub concurrency: usize,
    /// Attempts in flight per subscription per process (`FE_WEBHOOK_SUBSCRIPTION_CONCURRENCY`).
    pub per_subscription: usize,
    /// A delivery is dead this long after it was queued (`FE_WEBHOOK_GIVE_UP_S`).
    pub give_up: Duration,
    /// A subscription failing this long without a success is disabled
    /// (`FE_WEBHOOK_DISABLE_AFTER_S`).
    pub disable_after: Duration,
}

/// What the notifier needs; cheap to clone.
#[derive(Clone)]
pub struct NotifierDeps {
    pub log: EventLog,
    pub pool: PgPool,
    pub watermark: ProjectionWatermark,
    pub secret_key: SecretKey,
    pub sender: Sender,
    pub settings: Arc<NotifierSettings>,
}

/// Why the notifier could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error("building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl NotifierDeps {
    /// Assembles the notifier's dependencies and its HTTP client.
    pub fn new(
        log: EventLog,
        pool: PgPool,
        watermark: ProjectionWatermark,
        secret_key: SecretKey,
        settings: NotifierSettings,
    ) -> Result<Self, NotifierError> {
        let sender = Sender {
            client: platform::webhook::delivery_client(settings.allow_private)?,
            allow_private: settings.allow_private,
            timeout: settings.timeout,
        };
        Ok(Self {
            log,
            pool,
            watermark,
            secret_key,
            sender,
            settings: Arc::new(settings),
        })
    }
}

/// Runs the intake (on the consumer runtime, stopped by `cancel` and drained within `drain`)
/// and the delivery engine (stopped by `shutdown`) until both have stopped.
pub async fn run(
    deps: NotifierDeps,
    shutdown: watch::Receiver<bool>,
    cancel: tokio_util::sync::CancellationToken,
    drain: Duration,
) {
    let wake = Arc::new(Notify::new());
    let intake = intake::run(deps.clone(), wake.clone(), cancel, drain);
    let engine = engine::run(deps, wake, shutdown);
    tokio::join!(intake, engine);
}
