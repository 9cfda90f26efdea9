//! Configuration from the `FE_*` environment variables of API.md, with their documented
//! defaults. Parsing is separate from reading the environment so that it can be tested with a
//! plain map. Values that are secrets (link secrets, dev HS256 secret) are never printed:
//! `Debug` redacts them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is required")]
    Missing { var: &'static str },
    #[error("{var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
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
    pub cors_origins: Vec<String>,
    pub log_level: String,
    pub otlp_endpoint: Option<String>,
    pub worker_concurrency: usize,
    /// How long a delivered task may go without an ack or heartbeat before JetStream
    /// redelivers it to another worker.
    pub worker_ack_wait_s: u64,
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

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_map(&std::env::vars().collect())
    }

    pub fn from_map(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            env.get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let worker_concurrency: usize = parse(&get, "FE_WORKER_CONCURRENCY", "8")?;
        let default_tenant_share = (worker_concurrency / 2).max(1).to_string();
        Ok(Self {
            http_addr: parse(&get, "FE_HTTP_ADDR", "127.0.0.1:8080")?,
            nats_url: get("FE_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
            nats_replicas: parse(&get, "FE_NATS_REPLICAS", "1")?,
            database_url: get("FE_DATABASE_URL"),
            storage: get("FE_STORAGE").unwrap_or_else(|| "local:./data".into()),
            jwt_public_keys: get("FE_JWT_PUBLIC_KEYS").map(PathBuf::from),
            jwt_issuer: get("FE_JWT_ISSUER"),
            jwt_audience: get("FE_JWT_AUDIENCE"),
            jwt_leeway_s: parse(&get, "FE_JWT_LEEWAY_S", "30")?,
            jwt_dev_hs256_secret: get("FE_JWT_DEV_HS256_SECRET"),
            clamd_addr: get("FE_CLAMD_ADDR").unwrap_or_else(|| "127.0.0.1:3310".into()),
            max_upload_bytes: parse(&get, "FE_MAX_UPLOAD_BYTES", "104857600")?,
            max_command_bytes: parse(&get, "FE_MAX_COMMAND_BYTES", "65536")?,
            allowed_types: list(
                get("FE_ALLOWED_TYPES")
                    .as_deref()
                    .unwrap_or(DEFAULT_ALLOWED_TYPES),
            ),
            rate_limit_per_min: parse(&get, "FE_RATE_LIMIT_PER_MIN", "6000")?,
            tenant_rate_limit_per_min: parse(&get, "FE_TENANT_RATE_LIMIT_PER_MIN", "60000")?,
            sse_max_connections: parse(&get, "FE_SSE_MAX_CONNECTIONS", "1000")?,
            cors_origins: list(get("FE_CORS_ORIGINS").as_deref().unwrap_or("")),
            log_level: get("FE_LOG_LEVEL").unwrap_or_else(|| "info".into()),
            otlp_endpoint: get("FE_OTLP_ENDPOINT"),
            worker_concurrency,
            worker_ack_wait_s: parse(&get, "FE_WORKER_ACK_WAIT_S", "60")?,
            scanner_concurrency: parse(&get, "FE_SCANNER_CONCURRENCY", "4")?,
            scan_timeout_s: parse(&get, "FE_SCAN_TIMEOUT_S", "300")?,
            link_secrets: list(get("FE_LINK_SECRET").as_deref().unwrap_or("")),
            webhook_allow_private: parse(&get, "FE_WEBHOOK_ALLOW_PRIVATE", "false")?,
            webhook_secret_key: get("FE_WEBHOOK_SECRET_KEY"),
            webhook_timeout_s: parse(&get, "FE_WEBHOOK_TIMEOUT_S", "10")?,
            webhook_concurrency: parse(&get, "FE_WEBHOOK_CONCURRENCY", "32")?,
            webhook_subscription_concurrency: parse(
                &get,
                "FE_WEBHOOK_SUBSCRIPTION_CONCURRENCY",
                "4",
            )?,
            webhook_give_up_s: parse(&get, "FE_WEBHOOK_GIVE_UP_S", "86400")?,
            webhook_disable_after_s: parse(&get, "FE_WEBHOOK_DISABLE_AFTER_S", "86400")?,
            partitions: parse_range(&get, "FE_PARTITIONS", "8", 1..=1024)?,
            worker_tenant_concurrency: parse(
                &get,
                "FE_WORKER_TENANT_CONCURRENCY",
                &default_tenant_share,
            )?,
            shutdown_timeout_s: parse(&get, "FE_SHUTDOWN_TIMEOUT_S", "25")?,
            ops_addr: get("FE_OPS_ADDR")
                .map(|v| {
                    v.parse()
                        .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                            var: "FE_OPS_ADDR",
                            reason: e.to_string(),
                        })
                })
                .transpose()?,
            tenant_quota_bytes: parse(&get, "FE_TENANT_QUOTA_BYTES", "107374182400")?,
            tenant_quota_files: parse(&get, "FE_TENANT_QUOTA_FILES", "1000000")?,
            version_retention_days: parse(&get, "FE_VERSION_RETENTION_DAYS", "30")?,
            s3_endpoint: get("FE_S3_ENDPOINT"),
        })
    }

    pub fn require_database_url(&self) -> Result<&str, ConfigError> {
        self.database_url.as_deref().ok_or(ConfigError::Missing {
            var: "FE_DATABASE_URL",
        })
    }
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: &str,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let raw = get(var).unwrap_or_else(|| default.to_owned());
    raw.parse().map_err(|e: T::Err| ConfigError::Invalid {
        var,
        reason: e.to_string(),
    })
}

fn parse_range<T>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: &str,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    let value: T = parse(get, var, default)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            var,
            reason: format!("{value} is outside {}..={}", range.start(), range.end()),
        })
    }
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
    fn partitions_out_of_range_are_refused() {
        for bad in ["0", "1025", "-1", "eight"] {
            let err = Config::from_map(&map(&[("FE_PARTITIONS", bad)])).unwrap_err();
            assert!(err.to_string().contains("FE_PARTITIONS"), "{bad}");
        }
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let c = Config::from_map(&map(&[("FE_LINK_SECRET", "s3cr3t-a,s3cr3t-b")])).unwrap();
        assert_eq!(c.link_secrets.len(), 2);
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
