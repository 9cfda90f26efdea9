//! Configuration from the `FE_*` environment variables of API.md, with their documented
//! defaults, parsed by clap (`ConfigArgs`: one option per variable, so `file-engine --help`
//! lists them all). Parsing is separate from reading the environment so that it can be tested
//! with a plain map. Values that are secrets (link secrets, dev HS256 secret) are never printed:
//! `Debug` redacts them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is required")]
    Missing { var: &'static str },
    /// A value clap refused; the message names the option and its variable.
    #[error("{0}")]
    Invalid(String),
}

impl From<clap::Error> for ConfigError {
    fn from(e: clap::Error) -> Self {
        Self::Invalid(e.render().to_string().trim().to_owned())
    }
}

/// The upload types accepted when `FE_ALLOWED_TYPES` is unset: documents, images and archives
/// that browsers do not execute. HTML, SVG, XML and executables are deliberately absent.
pub const DEFAULT_ALLOWED_TYPES: &str = "application/pdf,image/png,image/jpeg,image/gif,image/webp,text/plain,text/csv,application/json,application/zip,application/gzip,application/x-tar,application/vnd.openxmlformats-officedocument.wordprocessingml.document,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet,application/vnd.openxmlformats-officedocument.presentationml.presentation,application/octet-stream";

#[derive(Clone)]
pub struct Config {
    pub http_addr: SocketAddr,
    pub nats_url: String,
    pub nats_replicas: usize,
    pub database_url: Option<String>,
    pub storage: String,
    pub jwt_public_keys: Option<PathBuf>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub jwt_leeway_s: u64,
    pub jwt_dev_hs256_secret: Option<String>,
    pub clamd_addr: String,
    pub max_upload_bytes: u64,
    pub max_command_bytes: usize,
    pub allowed_types: Vec<String>,
    pub rate_limit_per_min: u32,
    pub tenant_rate_limit_per_min: u32,
    pub sse_max_connections: usize,
    /// Open `GET /v1/events` streams per tenant per API process (`FE_SSE_MAX_PER_TENANT`,
    /// default 100; 429 beyond).
    pub sse_max_per_tenant: usize,
    /// Open `GET /v1/events` streams per principal per API process
    /// (`FE_SSE_MAX_PER_PRINCIPAL`, default 10; 429 beyond).
    pub sse_max_per_principal: usize,
    /// A client must finish sending its request headers within this time
    /// (`FE_HTTP_HEADER_TIMEOUT_S`, default 30), else the connection is closed.
    pub http_header_timeout_s: u64,
    /// A request body may pause at most this long between chunks
    /// (`FE_HTTP_BODY_IDLE_TIMEOUT_S`, default 60), else the request fails.
    pub http_body_idle_timeout_s: u64,
    /// Open connections per API process (`FE_HTTP_MAX_CONNECTIONS`, default 10000); further
    /// connections wait in the listen backlog until one closes.
    pub http_max_connections: usize,
    pub cors_origins: Vec<String>,
    pub log_level: String,
    pub otlp_endpoint: Option<String>,
    pub worker_concurrency: usize,
    /// How long a delivered task may go without an ack or heartbeat before JetStream
    /// redelivers it to another worker.
    pub worker_ack_wait_s: u64,
    /// Deliveries of a task before the worker dead-letters it (`FE_WORKER_MAX_DELIVER`,
    /// default 10, 1–1000; the same for every worker process).
    pub worker_max_deliver: i64,
    pub scanner_concurrency: usize,
    pub scan_timeout_s: u64,
    pub link_secrets: Vec<String>,
    pub webhook_allow_private: bool,
    /// Key every subscription's signing secret is derived from (`FE_WEBHOOK_SECRET_KEY`, at
    /// least 32 bytes; no default: without it subscriptions cannot be created and the
    /// notifier does not deliver).
    pub webhook_secret_key: Option<String>,
    /// Per-delivery timeout, connect included (`FE_WEBHOOK_TIMEOUT_S`, default 10).
    pub webhook_timeout_s: u64,
    /// Deliveries in flight per notifier process (`FE_WEBHOOK_CONCURRENCY`, default 32).
    pub webhook_concurrency: usize,
    /// Deliveries in flight per subscription per notifier process
    /// (`FE_WEBHOOK_SUBSCRIPTION_CONCURRENCY`, default 4).
    pub webhook_subscription_concurrency: usize,
    /// A delivery is given up (dead) this long after it was queued (`FE_WEBHOOK_GIVE_UP_S`,
    /// default 86400).
    pub webhook_give_up_s: u64,
    /// A subscription whose deliveries have failed without a success for this long is
    /// disabled (`FE_WEBHOOK_DISABLE_AFTER_S`, default 86400).
    pub webhook_disable_after_s: u64,
    /// Partitions of the log by tenant, each projected by one consumer
    /// (`FE_PARTITIONS`, default 8).
    pub partitions: u32,
    /// Effects in flight per tenant per worker process (`FE_WORKER_TENANT_CONCURRENCY`;
    /// default: half of `FE_WORKER_CONCURRENCY`, at least 1, so one tenant can never take every
    /// slot of a worker).
    pub worker_tenant_concurrency: usize,
    /// SIGTERM → exit deadline (`FE_SHUTDOWN_TIMEOUT_S`, default 25, under Kubernetes' 30).
    pub shutdown_timeout_s: u64,
    /// `/metrics`, `/healthz`, `/readyz` listener of the non-API roles (`FE_OPS_ADDR`; unset =
    /// the role's default port, see the README).
    pub ops_addr: Option<SocketAddr>,
    /// Default per-tenant quota in logical bytes (`FE_TENANT_QUOTA_BYTES`, default 100 GiB).
    pub tenant_quota_bytes: u64,
    /// Default per-tenant quota in files (`FE_TENANT_QUOTA_FILES`, default 1,000,000).
    pub tenant_quota_files: u64,
    /// How long replaced versions keep their bytes (`FE_VERSION_RETENTION_DAYS`, default 30;
    /// live links extend it).
    pub version_retention_days: u64,
    /// S3 endpoint override for S3-compatible servers (`FE_S3_ENDPOINT`; unset = AWS).
    pub s3_endpoint: Option<String>,
    /// Path-style S3 addressing (`FE_S3_FORCE_PATH_STYLE`; unset = true with an endpoint).
    pub s3_force_path_style: Option<bool>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("http_addr", &self.http_addr)
            .field("nats_url", &self.nats_url)
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field("storage", &self.storage)
            .field("jwt_public_keys", &self.jwt_public_keys)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_dev_hs256", &self.jwt_dev_hs256_secret.is_some())
            .field("link_secrets", &self.link_secrets.len())
            .field("webhook_secret_key", &self.webhook_secret_key.is_some())
            .field("partitions", &self.partitions)
            .field("shutdown_timeout_s", &self.shutdown_timeout_s)
            .finish_non_exhaustive()
    }
}

/// The `FE_*` variables as clap arguments: each is a long option named after its variable and
/// read from that variable, so `file-engine --help` lists every variable with its default.
/// Values are parsed and range-checked by clap; [`Config::from_args`] derives the rest.
/// Secret-bearing variables hide their values from `--help`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    next_help_heading = "Configuration (FE_* environment variables; a flag overrides its variable)"
)]
pub struct ConfigArgs {
    /// API listen address.
    #[arg(
        long,
        env = "FE_HTTP_ADDR",
        value_name = "FE_HTTP_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http_addr: SocketAddr,
    /// JetStream server(s), comma-separated.
    #[arg(
        long,
        env = "FE_NATS_URL",
        value_name = "FE_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Replicas of the event stream (3 in a cluster).
    #[arg(
        long,
        env = "FE_NATS_REPLICAS",
        value_name = "FE_NATS_REPLICAS",
        default_value = "1"
    )]
    pub nats_replicas: usize,
    /// PostgreSQL URL of the read models (required by every role).
    #[arg(
        long,
        env = "FE_DATABASE_URL",
        value_name = "FE_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// `local:<dir>` or `s3://<bucket>[/prefix]`.
    #[arg(
        long,
        env = "FE_STORAGE",
        value_name = "FE_STORAGE",
        default_value = "local:./data"
    )]
    pub storage: String,
    /// PEM public key(s) or a JWKS file verifying tokens (required by the API).
    #[arg(long, env = "FE_JWT_PUBLIC_KEYS", value_name = "FE_JWT_PUBLIC_KEYS")]
    pub jwt_public_keys: Option<PathBuf>,
    /// Required `iss` of tokens (required by the API).
    #[arg(long, env = "FE_JWT_ISSUER", value_name = "FE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of tokens (required by the API).
    #[arg(long, env = "FE_JWT_AUDIENCE", value_name = "FE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock skew allowed for `exp`/`nbf`, seconds.
    #[arg(
        long,
        env = "FE_JWT_LEEWAY_S",
        value_name = "FE_JWT_LEEWAY_S",
        default_value = "30"
    )]
    pub jwt_leeway_s: u64,
    /// Development only: accept HS256 tokens with this secret.
    #[arg(
        long,
        env = "FE_JWT_DEV_HS256_SECRET",
        value_name = "FE_JWT_DEV_HS256_SECRET",
        hide_env_values = true
    )]
    pub jwt_dev_hs256_secret: Option<String>,
    /// clamd TCP address.
    #[arg(
        long,
        env = "FE_CLAMD_ADDR",
        value_name = "FE_CLAMD_ADDR",
        default_value = "127.0.0.1:3310"
    )]
    pub clamd_addr: String,
    /// Upload size limit, bytes.
    #[arg(
        long,
        env = "FE_MAX_UPLOAD_BYTES",
        value_name = "FE_MAX_UPLOAD_BYTES",
        default_value = "104857600"
    )]
    pub max_upload_bytes: u64,
    /// JSON body limit of commands and admin requests, bytes.
    #[arg(
        long,
        env = "FE_MAX_COMMAND_BYTES",
        value_name = "FE_MAX_COMMAND_BYTES",
        default_value = "65536"
    )]
    pub max_command_bytes: usize,
    /// MIME types accepted on upload, comma-separated (default: documents, images, archives).
    #[arg(long, env = "FE_ALLOWED_TYPES", value_name = "FE_ALLOWED_TYPES", default_value = DEFAULT_ALLOWED_TYPES, hide_default_value = true)]
    pub allowed_types: String,
    /// Per-principal requests per minute (0 = off).
    #[arg(
        long,
        env = "FE_RATE_LIMIT_PER_MIN",
        value_name = "FE_RATE_LIMIT_PER_MIN",
        default_value = "6000"
    )]
    pub rate_limit_per_min: u32,
    /// Per-tenant requests per minute (0 = off).
    #[arg(
        long,
        env = "FE_TENANT_RATE_LIMIT_PER_MIN",
        value_name = "FE_TENANT_RATE_LIMIT_PER_MIN",
        default_value = "60000"
    )]
    pub tenant_rate_limit_per_min: u32,
    /// Open `GET /v1/events` streams per API process.
    #[arg(
        long,
        env = "FE_SSE_MAX_CONNECTIONS",
        value_name = "FE_SSE_MAX_CONNECTIONS",
        default_value = "1000"
    )]
    pub sse_max_connections: usize,
    /// Open event streams per tenant per API process (429 beyond).
    #[arg(
        long,
        env = "FE_SSE_MAX_PER_TENANT",
        value_name = "FE_SSE_MAX_PER_TENANT",
        default_value = "100"
    )]
    pub sse_max_per_tenant: usize,
    /// Open event streams per principal per API process (429 beyond).
    #[arg(
        long,
        env = "FE_SSE_MAX_PER_PRINCIPAL",
        value_name = "FE_SSE_MAX_PER_PRINCIPAL",
        default_value = "10"
    )]
    pub sse_max_per_principal: usize,
    /// Seconds a client has to finish its request headers.
    #[arg(
        long,
        env = "FE_HTTP_HEADER_TIMEOUT_S",
        value_name = "FE_HTTP_HEADER_TIMEOUT_S",
        default_value = "30"
    )]
    pub http_header_timeout_s: u64,
    /// Seconds a request body may pause between chunks.
    #[arg(
        long,
        env = "FE_HTTP_BODY_IDLE_TIMEOUT_S",
        value_name = "FE_HTTP_BODY_IDLE_TIMEOUT_S",
        default_value = "60"
    )]
    pub http_body_idle_timeout_s: u64,
    /// Open connections per API process.
    #[arg(
        long,
        env = "FE_HTTP_MAX_CONNECTIONS",
        value_name = "FE_HTTP_MAX_CONNECTIONS",
        default_value = "10000"
    )]
    pub http_max_connections: usize,
    /// Allowed CORS origins, comma-separated (empty = no CORS).
    #[arg(
        long,
        env = "FE_CORS_ORIGINS",
        value_name = "FE_CORS_ORIGINS",
        default_value = ""
    )]
    pub cors_origins: String,
    /// Log level / `tracing` filter.
    #[arg(
        long,
        env = "FE_LOG_LEVEL",
        value_name = "FE_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
    /// OpenTelemetry collector base URL (unset = no export).
    #[arg(long, env = "FE_OTLP_ENDPOINT", value_name = "FE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Effects in flight per worker process.
    #[arg(
        long,
        env = "FE_WORKER_CONCURRENCY",
        value_name = "FE_WORKER_CONCURRENCY",
        default_value = "8"
    )]
    pub worker_concurrency: usize,
    /// Redelivery timeout of a task, seconds.
    #[arg(
        long,
        env = "FE_WORKER_ACK_WAIT_S",
        value_name = "FE_WORKER_ACK_WAIT_S",
        default_value = "60"
    )]
    pub worker_ack_wait_s: u64,
    /// Scans in flight per scanner process.
    #[arg(
        long,
        env = "FE_SCANNER_CONCURRENCY",
        value_name = "FE_SCANNER_CONCURRENCY",
        default_value = "4"
    )]
    pub scanner_concurrency: usize,
    /// Whole-scan timeout, seconds.
    #[arg(
        long,
        env = "FE_SCAN_TIMEOUT_S",
        value_name = "FE_SCAN_TIMEOUT_S",
        default_value = "300"
    )]
    pub scan_timeout_s: u64,
    /// Key(s) for signed links, comma-separated, newest first (unset = links disabled).
    #[arg(
        long,
        env = "FE_LINK_SECRET",
        value_name = "FE_LINK_SECRET",
        hide_env_values = true
    )]
    pub link_secret: Option<String>,
    /// Allow webhook targets on private/loopback addresses.
    #[arg(long, env = "FE_WEBHOOK_ALLOW_PRIVATE", value_name = "FE_WEBHOOK_ALLOW_PRIVATE", default_value = "false", action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,
    /// Key the per-subscription signing secrets are derived from (unset = webhooks off).
    #[arg(
        long,
        env = "FE_WEBHOOK_SECRET_KEY",
        value_name = "FE_WEBHOOK_SECRET_KEY",
        hide_env_values = true
    )]
    pub webhook_secret_key: Option<String>,
    /// Per-delivery timeout, seconds.
    #[arg(
        long,
        env = "FE_WEBHOOK_TIMEOUT_S",
        value_name = "FE_WEBHOOK_TIMEOUT_S",
        default_value = "10"
    )]
    pub webhook_timeout_s: u64,
    /// Deliveries in flight per notifier process.
    #[arg(
        long,
        env = "FE_WEBHOOK_CONCURRENCY",
        value_name = "FE_WEBHOOK_CONCURRENCY",
        default_value = "32"
    )]
    pub webhook_concurrency: usize,
    /// Deliveries in flight per subscription per notifier process.
    #[arg(
        long,
        env = "FE_WEBHOOK_SUBSCRIPTION_CONCURRENCY",
        value_name = "FE_WEBHOOK_SUBSCRIPTION_CONCURRENCY",
        default_value = "4"
    )]
    pub webhook_subscription_concurrency: usize,
    /// A delivery is dead this long after it was queued, seconds.
    #[arg(
        long,
        env = "FE_WEBHOOK_GIVE_UP_S",
        value_name = "FE_WEBHOOK_GIVE_UP_S",
        default_value = "86400"
    )]
    pub webhook_give_up_s: u64,
    /// A subscription failing this long is disabled, seconds.
    #[arg(
        long,
        env = "FE_WEBHOOK_DISABLE_AFTER_S",
        value_name = "FE_WEBHOOK_DISABLE_AFTER_S",
        default_value = "86400"
    )]
    pub webhook_disable_after_s: u64,
    /// Partitions of the log by tenant (1-1024).
    #[arg(long, env = "FE_PARTITIONS", value_name = "FE_PARTITIONS", default_value = "8", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub partitions: u32,
    /// Failed attempts of a task before it is dead-lettered (1-1000; same for every worker).
    #[arg(long, env = "FE_WORKER_MAX_DELIVER", value_name = "FE_WORKER_MAX_DELIVER", default_value = "10", value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub worker_max_deliver: i64,
    /// Effects in flight per tenant per worker process (default: half of FE_WORKER_CONCURRENCY, at least 1).
    #[arg(
        long,
        env = "FE_WORKER_TENANT_CONCURRENCY",
        value_name = "FE_WORKER_TENANT_CONCURRENCY"
    )]
    pub worker_tenant_concurrency: Option<usize>,
    /// SIGTERM to exit deadline, seconds.
    #[arg(
        long,
        env = "FE_SHUTDOWN_TIMEOUT_S",
        value_name = "FE_SHUTDOWN_TIMEOUT_S",
        default_value = "25"
    )]
    pub shutdown_timeout_s: u64,
    /// `/metrics`, `/healthz`, `/readyz` listener of the non-API roles (default: the role's port, see the README).
    #[arg(long, env = "FE_OPS_ADDR", value_name = "FE_OPS_ADDR")]
    pub ops_addr: Option<SocketAddr>,
    /// Default per-tenant quota, logical bytes.
    #[arg(
        long,
        env = "FE_TENANT_QUOTA_BYTES",
        value_name = "FE_TENANT_QUOTA_BYTES",
        default_value = "107374182400"
    )]
    pub tenant_quota_bytes: u64,
    /// Default per-tenant quota, files.
    #[arg(
        long,
        env = "FE_TENANT_QUOTA_FILES",
        value_name = "FE_TENANT_QUOTA_FILES",
        default_value = "1000000"
    )]
    pub tenant_quota_files: u64,
    /// How long replaced versions keep their bytes, days.
    #[arg(
        long,
        env = "FE_VERSION_RETENTION_DAYS",
        value_name = "FE_VERSION_RETENTION_DAYS",
        default_value = "30"
    )]
    pub version_retention_days: u64,
    /// Endpoint of an S3-compatible server (unset = AWS).
    #[arg(long, env = "FE_S3_ENDPOINT", value_name = "FE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Path-style S3 addressing, true or false (unset = true when an endpoint is set).
    #[arg(
        long,
        env = "FE_S3_FORCE_PATH_STYLE",
        value_name = "FE_S3_FORCE_PATH_STYLE"
    )]
    pub s3_force_path_style: Option<bool>,
}

impl Config {
    /// Reads the process environment (the same parser as [`Config::from_map`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_map(&std::env::vars().collect())
    }

    /// Parses the `FE_*` variables of `env` only (never the process environment), with the
    /// same clap parser the binary uses.
    pub fn from_map(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        use clap::{Args as _, FromArgMatches as _};
        let cmd = clap::Command::new("file-engine").no_binary_name(true);
        let (cmd, argv) = with_env_args(ConfigArgs::augment_args(cmd), env, std::iter::empty());
        // Only `env` counts: the process environment is not read.
        let matches = cmd
            .mut_args(|a| a.env(None))
            .try_get_matches_from(argv)
            .map_err(ConfigError::from)?;
        Self::from_args(ConfigArgs::from_arg_matches(&matches).map_err(ConfigError::from)?)
    }

    /// The configuration from parsed arguments.
    pub fn from_args(a: ConfigArgs) -> Result<Self, ConfigError> {
        // Entries may carry credentials: the error names the position, never the text.
        crate::nats_client::servers(&a.nats_url)
            .map_err(|e| ConfigError::Invalid(format!("FE_NATS_URL is invalid: {e}")))?;
        let worker_tenant_concurrency = a
            .worker_tenant_concurrency
            .unwrap_or((a.worker_concurrency / 2).max(1));
        Ok(Self {
            http_addr: a.http_addr,
            nats_url: a.nats_url,
            nats_replicas: a.nats_replicas,
            database_url: a.database_url,
            storage: a.storage,
            jwt_public_keys: a.jwt_public_keys,
            jwt_issuer: a.jwt_issuer,
            jwt_audience: a.jwt_audience,
            jwt_leeway_s: a.jwt_leeway_s,
            jwt_dev_hs256_secret: a.jwt_dev_hs256_secret,
            clamd_addr: a.clamd_addr,
            max_upload_bytes: a.max_upload_bytes,
            max_command_bytes: a.max_command_bytes,
            allowed_types: list(&a.allowed_types),
            rate_limit_per_min: a.rate_limit_per_min,
            tenant_rate_limit_per_min: a.tenant_rate_limit_per_min,
            sse_max_connections: a.sse_max_connections,
            sse_max_per_tenant: a.sse_max_per_tenant,
            sse_max_per_principal: a.sse_max_per_principal,
            http_header_timeout_s: a.http_header_timeout_s,
            http_body_idle_timeout_s: a.http_body_idle_timeout_s,
            http_max_connections: a.http_max_connections,
            cors_origins: list(&a.cors_origins),
            log_level: a.log_level,
            otlp_endpoint: a.otlp_endpoint,
            worker_concurrency: a.worker_concurrency,
            worker_ack_wait_s: a.worker_ack_wait_s,
            scanner_concurrency: a.scanner_concurrency,
            scan_timeout_s: a.scan_timeout_s,
            link_secrets: link_secrets(a.link_secret.as_deref().unwrap_or(""))?,
            webhook_allow_private: a.webhook_allow_private,
            webhook_secret_key: a.webhook_secret_key,
            webhook_timeout_s: a.webhook_timeout_s,
            webhook_concurrency: a.webhook_concurrency,
            webhook_subscription_concurrency: a.webhook_subscription_concurrency,
            webhook_give_up_s: a.webhook_give_up_s,
            webhook_disable_after_s: a.webhook_disable_after_s,
            partitions: a.partitions,
            worker_max_deliver: a.worker_max_deliver,
            worker_tenant_concurrency,
            shutdown_timeout_s: a.shutdown_timeout_s,
            ops_addr: a.ops_addr,
            tenant_quota_bytes: a.tenant_quota_bytes,
            tenant_quota_files: a.tenant_quota_files,
            version_retention_days: a.version_retention_days,
            s3_endpoint: a.s3_endpoint,
            s3_force_path_style: a.s3_force_path_style,
        })
    }

    pub fn require_database_url(&self) -> Result<&str, ConfigError> {
        self.database_url.as_deref().ok_or(ConfigError::Missing {
            var: "FE_DATABASE_URL",
        })
    }
}

/// Prepares `cmd` (which has [`ConfigArgs`] among its arguments) to be parsed against `env`:
/// every variable of `env` that is set to a non-blank value becomes `--option=<trimmed value>`
/// in front of `args` (so an explicit flag later in `args` still wins), and a variable set to a
/// blank value counts as unset (its default applies), as Kubernetes manifests often leave
/// optional variables empty. Returns the command and the argument list to parse.
pub fn with_env_args(
    cmd: clap::Command,
    env: &HashMap<String, String>,
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> (clap::Command, Vec<std::ffi::OsString>) {
    let mut args = args.into_iter();
    let mut argv: Vec<std::ffi::OsString> = Vec::new();
    if !cmd.is_no_binary_name_set() {
        argv.extend(args.next());
    }
    let mut blank = Vec::new();
    for arg in cmd.get_arguments() {
        let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        match var.to_str().and_then(|v| env.get(v)).map(|v| v.trim()) {
            Some("") => blank.push(arg.get_id().clone()),
            Some(value) => argv.push(format!("--{long}={value}").into()),
            None => {}
        }
    }
    argv.extend(args);
    let cmd = cmd.args_override_self(true).mut_args(|a| {
        if blank.contains(a.get_id()) {
            a.env(None)
        } else {
            a
        }
    });
    (cmd, argv)
}

/// Shortest accepted link-signing secret, like the webhook key: a guessable secret would let
/// anyone mint download links.
pub const MIN_LINK_SECRET_BYTES: usize = 32;

/// `FE_LINK_SECRET`: comma-separated keys, newest first, each at least
/// [`MIN_LINK_SECRET_BYTES`] bytes (the process refuses to start otherwise).
fn link_secrets(raw: &str) -> Result<Vec<String>, ConfigError> {
    let secrets = list(raw);
    if secrets.iter().any(|s| s.len() < MIN_LINK_SECRET_BYTES) {
        return Err(ConfigError::Invalid(format!(
            "FE_LINK_SECRET is invalid: every key must be at least {MIN_LINK_SECRET_BYTES} bytes \
             (e.g. `openssl rand -hex 32`)"
        )));
    }
    Ok(secrets)
}

fn list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_api_md() {
        let c = Config::from_map(&map(&[])).unwrap();
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(c.storage, "local:./data");
        assert_eq!(c.jwt_leeway_s, 30);
        assert_eq!(c.max_upload_bytes, 104_857_600);
        assert_eq!(c.rate_limit_per_min, 6000);
        assert_eq!(c.tenant_rate_limit_per_min, 60000);
        assert_eq!(c.partitions, 8);
        assert_eq!(c.worker_tenant_concurrency, 4);
        assert_eq!(c.shutdown_timeout_s, 25);
        assert_eq!(c.worker_concurrency, 8);
        assert!(c.cors_origins.is_empty());
        assert!(!c.webhook_allow_private);
        assert!(c.webhook_secret_key.is_none());
        assert_eq!(c.webhook_timeout_s, 10);
        assert_eq!(c.webhook_give_up_s, 86_400);
        assert!(!c
            .allowed_types
            .iter()
            .any(|t| t.contains("html") || t.contains("svg")));
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let err = Config::from_map(&map(&[("FE_WORKER_CONCURRENCY", "many")])).unwrap_err();
        assert!(err.to_string().contains("FE_WORKER_CONCURRENCY"));
    }

    #[test]
    fn nats_server_lists_are_checked_at_start() {
        let c = Config::from_map(&map(&[("FE_NATS_URL", "nats://a:1, nats://b:2")])).unwrap();
        assert_eq!(c.nats_url, "nats://a:1, nats://b:2");
        for bad in ["nats://a:1,,nats://b:2", "http://a:1", "nats://a:1,"] {
            let err = Config::from_map(&map(&[("FE_NATS_URL", bad)])).unwrap_err();
            assert!(err.to_string().contains("FE_NATS_URL"), "{bad}: {err}");
        }
    }

    #[test]
    fn max_deliver_defaults_to_ten_and_is_bounded() {
        assert_eq!(Config::from_map(&map(&[])).unwrap().worker_max_deliver, 10);
        for bad in ["0", "1001", "-3", "ten"] {
            let err = Config::from_map(&map(&[("FE_WORKER_MAX_DELIVER", bad)])).unwrap_err();
            assert!(err.to_string().contains("FE_WORKER_MAX_DELIVER"), "{bad}");
        }
    }

    #[test]
    fn partitions_out_of_range_are_refused() {
        for bad in ["0", "1025", "-1", "eight"] {
            let err = Config::from_map(&map(&[("FE_PARTITIONS", bad)])).unwrap_err();
            assert!(err.to_string().contains("FE_PARTITIONS"), "{bad}");
        }
    }

    #[test]
    fn blank_values_count_as_unset_and_values_are_trimmed() {
        let c = Config::from_map(&map(&[
            ("FE_PARTITIONS", "  "),
            ("FE_DATABASE_URL", ""),
            ("FE_WORKER_CONCURRENCY", " 6 "),
        ]))
        .unwrap();
        assert_eq!(c.partitions, 8);
        assert!(c.database_url.is_none());
        assert_eq!(c.worker_concurrency, 6);
        assert_eq!(c.worker_tenant_concurrency, 3);
    }

    #[test]
    fn hostile_values_are_refused_not_truncated() {
        for (var, bad) in [
            ("FE_HTTP_ADDR", "0.0.0.0:99999"),
            ("FE_OPS_ADDR", "../../etc"),
            ("FE_WEBHOOK_ALLOW_PRIVATE", "yes please"),
            ("FE_MAX_UPLOAD_BYTES", "184467440737095516150"),
        ] {
            let err = Config::from_map(&map(&[(var, bad)])).unwrap_err();
            assert!(err.to_string().contains(var), "{var}={bad}: {err}");
        }
    }

    /// The binary's path: a flag given after the environment wins, and `--help` names every
    /// variable the config reads with its default, without printing secret values.
    #[test]
    fn flags_override_variables_and_help_lists_every_variable() {
        use clap::{Args as _, FromArgMatches as _};
        let secret = format!("s3cr3t-help{}", "x".repeat(32));
        let env = map(&[("FE_PARTITIONS", "16"), ("FE_LINK_SECRET", secret.as_str())]);
        let cmd = ConfigArgs::augment_args(clap::Command::new("fe"));
        let (cmd, argv) = with_env_args(cmd, &env, ["fe", "--partitions=32"].map(Into::into));
        let m = cmd
            .mut_args(|a| a.env(None))
            .try_get_matches_from(argv)
            .unwrap();
        let c = Config::from_args(ConfigArgs::from_arg_matches(&m).unwrap()).unwrap();
        assert_eq!(c.partitions, 32);
        assert_eq!(c.link_secrets, [secret.as_str()]);

        let help = ConfigArgs::augment_args(clap::Command::new("fe"))
            .render_long_help()
            .to_string();
        for var in [
            "FE_HTTP_ADDR",
            "FE_DATABASE_URL",
            "FE_PARTITIONS",
            "FE_OPS_ADDR",
            "FE_WEBHOOK_DISABLE_AFTER_S",
            "FE_S3_ENDPOINT",
            "FE_S3_FORCE_PATH_STYLE",
        ] {
            assert!(
                help.contains(&format!("[env: {var}")),
                "{var} missing:\n{help}"
            );
        }
        assert!(help.contains("[default: 127.0.0.1:8080]"));
        assert!(!help.contains("s3cr3t"));
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let keys = format!("s3cr3t-a{0},s3cr3t-b{0}", "x".repeat(32));
        let c = Config::from_map(&map(&[("FE_LINK_SECRET", keys.as_str())])).unwrap();
        assert_eq!(c.link_secrets.len(), 2);
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn short_link_secrets_are_refused_without_echoing_them() {
        let long = "L".repeat(MIN_LINK_SECRET_BYTES);
        for bad in ["short-secret".to_owned(), format!("{long},tiny-one")] {
            let err = Config::from_map(&map(&[("FE_LINK_SECRET", bad.as_str())])).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("FE_LINK_SECRET") && text.contains("32 bytes"),
                "{text}"
            );
            assert!(
                !text.contains("tiny") && !text.contains("short-secret"),
                "{text}"
            );
        }
        let ok = Config::from_map(&map(&[("FE_LINK_SECRET", long.as_str())])).unwrap();
        assert_eq!(ok.link_secrets, [long]);
    }
}
