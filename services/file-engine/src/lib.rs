//! Assembly of the File Engine services into one process: connect to NATS and Postgres,
//! apply the stream definitions and migrations, open storage, and start any combination of
//! roles (`api`, `projector`, `worker`). The `file-engine` binary and the end-to-end tests
//! both start the platform through this module, so tests exercise exactly what ships.

pub mod backup;
pub mod bench;
pub mod ops;
pub mod projection_cli;
pub mod storage_admin;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use platform::config::Config;
use platform::db::ProjectionWatermark;
use platform::event_log::EventLog;
use platform::storage::Storage;
use platform::streams;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Connections and resources shared by every role of the process.
#[derive(Clone)]
pub struct Platform {
    pub config: Config,
    pub nats: async_nats::Client,
    pub log: EventLog,
    pub pool: PgPool,
    pub storage: Arc<dyn Storage>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Api,
    Projector,
    Worker,
    Scanner,
    Notifier,
}

impl Platform {
    /// Connects and applies the idempotent set-up (stream and consumer definitions,
    /// migrations): a fresh environment needs no separate `migrate` step.
    pub async fn connect(config: Config) -> anyhow::Result<Self> {
        let nats = platform::nats_client::connect(&config.nats_url, "file-engine")
            .await
            .context("connecting to NATS")?;
        let js = async_nats::jetstream::new(nats.clone());
        let settings = streams::StreamSettings {
            replicas: config.nats_replicas,
        };
        // Service users may not change streams (nats/accounts.conf): when the stream is already
        // as declared (applied by `file-engine migrate` as ops) it is only verified; a fresh
        // or outdated environment gets it applied.
        if let Err(e) = streams::verify_event_stream(&js, &settings).await {
            tracing::info!(reason = %e, "applying the event stream definition");
            streams::ensure_event_stream(&js, &settings)
                .await
                .context("applying the event stream definition")?;
        }
        let pool = platform::db::connect(config.require_database_url()?)
            .await
            .context("connecting to PostgreSQL")?;
        platform::db::migrate(&pool)
            .await
            .context("applying migrations")?;
        let s3 = platform::storage::S3Options {
            endpoint: config.s3_endpoint.clone(),
            force_path_style: config.s3_force_path_style,
        };
        let storage = platform::storage::open(&config.storage, &s3).context("opening storage")?;
        // A wrong bucket, endpoint or credentials stop the process here, not the first upload.
        storage
            .check()
            .await
            .context("checking storage (FE_STORAGE)")?;
        Ok(Self {
            log: EventLog::new(js),
            nats,
            pool,
            storage,
            config,
        })
    }
}

/// Running roles of one process; dropping it does not stop them, [`Services::shutdown`] does.
pub struct Services {
    shutdown: watch::Sender<bool>,
    /// The same request for the roles on the consumer runtime ([`platform::consumer`]).
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    pub http_addr: Option<SocketAddr>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served apart from the API, if anywhere
    /// (see [`ops`]).
    pub ops_addr: Option<SocketAddr>,
}

impl Services {
    /// Asks every role to stop and waits for in-flight work to drain.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops immediately without draining (what a crash looks like to the others).
    pub fn abort(mut self) {
        self.tasks.abort_all();
    }

    /// Waits until any role ends (they run until shutdown, so this means a failure).
    pub async fn wait_any(&mut self) {
        self.tasks.join_next().await;
    }
}

pub async fn start(platform: &Platform, roles: &[Role]) -> anyhow::Result<Services> {
    let (tx, rx) = watch::channel(false);
    let cancel = CancellationToken::new();
    let drain = drain_time(&platform.config);
    let mut tasks = JoinSet::new();
    let mut http_addr = None;
    // Every process records metrics, whichever roles it runs.
    let metrics = platform::telemetry::metrics_handle();
    ops::register_metrics(roles);
    let watermark = ProjectionWatermark::start(platform.pool.clone())
        .await
        .context("watching projections")?;
    if roles.contains(&Role::Projector) {
        let (js, pool, rx) = (
            platform.log.jetstream().clone(),
            platform.pool.clone(),
            rx.clone(),
        );
        let partitions = platform.config.partitions;
        tasks.spawn(async move { projector::run(js, pool, partitions, rx).await });
    }
    if roles.contains(&Role::Worker) {
        let deps = worker::WorkerDeps {
            log: platform.log.clone(),
            pool: platform.pool.clone(),
            watermark: watermark.clone(),
            storage: platform.storage.clone(),
            quota: quota_limits(&platform.config),
            version_retention: std::time::Duration::from_secs(
                platform
                    .config
                    .version_retention_days
                    .saturating_mul(86_400),
            ),
            concurrency: platform.config.worker_concurrency,
            tenant_concurrency: platform.config.worker_tenant_concurrency,
            ack_wait: std::time::Duration::from_secs(platform.config.worker_ack_wait_s.max(1)),
            drain,
            max_deliver: platform.config.worker_max_deliver,
        };
        let (janitor_deps, janitor_rx) = (deps.clone(), rx.clone());
        tasks.spawn(async move { worker::janitor::run(janitor_deps, janitor_rx).await });
        let cancel = cancel.clone();
        tasks.spawn(async move { worker::run(deps, cancel).await });
    }
    if roles.contains(&Role::Scanner) {
        let c = &platform.config;
        let deps = scanner::ScannerDeps {
            log: platform.log.clone(),
            storage: platform.storage.clone(),
            clamd: scanner::ClamdClient::new(
                c.clamd_addr.clone(),
                std::time::Duration::from_secs(c.scan_timeout_s.max(1)),
            ),
            concurrency: c.scanner_concurrency,
            ack_wait: scanner::DEFAULT_ACK_WAIT,
            drain,
        };
        let cancel = cancel.clone();
        tasks.spawn(async move { scanner::run(deps, cancel).await });
    }
    if roles.contains(&Role::Notifier) {
        if let Some(deps) = notifier_deps(platform, &watermark)? {
            let (rx, cancel) = (rx.clone(), cancel.clone());
            tasks.spawn(async move { notifier::run(deps, rx, cancel, drain).await });
        }
    }
    if roles.contains(&Role::Api) {
        let listener = tokio::net::TcpListener::bind(platform.config.http_addr)
            .await
            .context("binding the API address")?;
        http_addr = Some(listener.local_addr()?);
        let state = api_state(platform, watermark, rx.clone())?;
        let mut rx = rx.clone();
        let stop = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        tasks.spawn(async move {
            if let Err(e) = api::serve(listener, state, stop).await {
                tracing::error!(error = %e, "api: server error");
            }
        });
    }
    let ops_addr = match ops::ops_addr(platform.config.ops_addr, roles) {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the ops address {addr} (FE_OPS_ADDR)"))?;
            let local = listener.local_addr()?;
            tracing::info!(addr = %local, "ops listening");
            let c = &platform.config;
            let readiness = ops::Readiness {
                nats: platform.nats.clone(),
                jetstream: platform.log.jetstream().clone(),
                pool: platform.pool.clone(),
                clamd: roles.contains(&Role::Scanner).then(|| {
                    scanner::ClamdClient::new(
                        c.clamd_addr.clone(),
                        std::time::Duration::from_secs(2),
                    )
                }),
            };
            let app = ops::router(readiness, metrics);
            let mut rx = rx.clone();
            tasks.spawn(async move {
                let stop = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::error!(error = %e, "ops: server error");
                }
            });
            Some(local)
        }
        None => None,
    };
    Ok(Services {
        shutdown: tx,
        cancel,
        tasks,
        http_addr,
        ops_addr,
    })
}

/// How long consumers let deliveries in flight finish after SIGTERM before they release them
/// for redelivery: three fifths of `FE_SHUTDOWN_TIMEOUT_S`, so that releasing, closing and
/// exiting fit in the rest of the deadline.
pub fn drain_time(c: &Config) -> std::time::Duration {
    std::time::Duration::from_millis(c.shutdown_timeout_s.max(1) * 600)
}

/// The key webhook secrets are derived from; `None` when `FE_WEBHOOK_SECRET_KEY` is unset.
fn webhook_key(c: &Config) -> anyhow::Result<Option<platform::webhook::SecretKey>> {
    c.webhook_secret_key
        .as_deref()
        .map(platform::webhook::SecretKey::new)
        .transpose()
        .context("FE_WEBHOOK_SECRET_KEY")
}

/// The notifier's dependencies; `None` (webhooks off, with a warning) without a secret key.
fn notifier_deps(
    platform: &Platform,
    watermark: &ProjectionWatermark,
) -> anyhow::Result<Option<notifier::NotifierDeps>> {
    let c = &platform.config;
    let Some(key) = webhook_key(c)? else {
        tracing::warn!("notifier: FE_WEBHOOK_SECRET_KEY is not set; webhooks are off");
        return Ok(None);
    };
    let settings = notifier::NotifierSettings {
        allow_private: c.webhook_allow_private,
        timeout: std::time::Duration::from_secs(c.webhook_timeout_s.max(1)),
        concurrency: c.webhook_concurrency.max(1),
        per_subscription: c.webhook_subscription_concurrency.max(1),
        give_up: std::time::Duration::from_secs(c.webhook_give_up_s),
        disable_after: std::time::Duration::from_secs(c.webhook_disable_after_s),
    };
    let deps = notifier::NotifierDeps::new(
        platform.log.clone(),
        platform.pool.clone(),
        watermark.clone(),
        key,
        settings,
    )
    .context("setting up the notifier")?;
    Ok(Some(deps))
}

fn api_state(
    platform: &Platform,
    watermark: ProjectionWatermark,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<api::AppState> {
    let c = &platform.config;
    let verifier = platform::auth::TokenVerifier::from_settings(&auth_settings(c)?)
        .context("loading JWT keys")?;
    Ok(api::AppState {
        log: platform.log.clone(),
        nats: platform.nats.clone(),
        pool: platform.pool.clone(),
        watermark,
        verifier,
        storage: platform.storage.clone(),
        settings: Arc::new(api::ApiSettings {
            max_command_bytes: c.max_command_bytes,
            max_upload_bytes: c.max_upload_bytes,
            allowed_types: c.allowed_types.clone(),
            cors_origins: c.cors_origins.clone(),
            rate_limit_per_min: c.rate_limit_per_min,
            header_timeout: std::time::Duration::from_secs(c.http_header_timeout_s.max(1)),
            body_idle_timeout: std::time::Duration::from_secs(c.http_body_idle_timeout_s.max(1)),
            max_connections: c.http_max_connections.max(1),
            quota: quota_limits(c),
        }),
        metrics: platform::telemetry::metrics_handle(),
        link_secrets: Arc::new(c.link_secrets.clone()),
        cursor_key: Arc::new(api::cursor::CursorKey::derive(
            c.link_secrets
                .first()
                .or(c.webhook_secret_key.as_ref())
                .map(String::as_str),
        )),
        rate_limits: api::rate_limit::RateLimits::new(
            c.rate_limit_per_min,
            c.tenant_rate_limit_per_min,
        ),
        sse_slots: api::stream_slots::StreamSlots::new(
            c.sse_max_connections,
            c.sse_max_per_tenant,
            c.sse_max_per_principal,
        ),
        readiness: api::routes::ops::Readiness::default(),
        acl: api::authz::AclCache::default(),
        webhooks: Arc::new(api::state::WebhookSettings {
            allow_private: c.webhook_allow_private,
            secret_key: webhook_key(c)?,
        }),
        shutdown,
    })
}

/// The JWT settings; the API refuses to start without a key source, issuer and audience
/// (deny by default: there is no anonymous mode).
pub fn auth_settings(c: &Config) -> anyhow::Result<platform::auth::AuthSettings> {
    if c.jwt_public_keys.is_none() && c.jwt_dev_hs256_secret.is_none() {
        anyhow::bail!("FE_JWT_PUBLIC_KEYS is required");
    }
    Ok(platform::auth::AuthSettings {
        public_keys_path: c.jwt_public_keys.clone(),
        issuer: c.jwt_issuer.clone().context("FE_JWT_ISSUER is required")?,
        audience: c
            .jwt_audience
            .clone()
            .context("FE_JWT_AUDIENCE is required")?,
        leeway_s: c.jwt_leeway_s,
        dev_hs256_secret: c.jwt_dev_hs256_secret.clone(),
    })
}

/// The per-tenant quota every tenant gets (FE_TENANT_QUOTA_BYTES / FE_TENANT_QUOTA_FILES).
fn quota_limits(c: &platform::config::Config) -> events::quota::Limits {
    events::quota::Limits {
        bytes: c.tenant_quota_bytes,
        files: c.tenant_quota_files,
    }
}
