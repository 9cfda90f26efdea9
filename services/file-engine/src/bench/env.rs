//! Scratch environments for the bench: each scenario gets its own nats-server (with
//! `sync_interval: always`, or JetStream's default fsync policy), a fresh PostgreSQL database,
//! a temporary storage root and, when it scans, its own clamd — started through the test kit,
//! so `file-engine bench` needs nothing but `deploy/dev/setup.sh` and never touches a real
//! installation. Nothing of one scenario (a backlog, a refused upload still being retried)
//! can run in the background of the next one: everything is stopped between scenarios.

use std::collections::HashMap;

use anyhow::Context as _;
use platform::config::Config;
use testkit::clamd::Clamd;
use testkit::jwt::{TestKeys, TEST_AUDIENCE, TEST_ISSUER};
use testkit::nats::NatsServer;
use testkit::postgres::TestDb;

use crate::{start, Platform, Role, Services};

/// The fsync policy of the scenario's nats-server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// `jetstream { sync_interval: always }`: every write fsynced before the ack (production).
    Always,
    /// JetStream's default (fsync every 2 minutes).
    Default,
}

impl Sync {
    pub fn label(self) -> &'static str {
        match self {
            Sync::Always => "sync_interval: always",
            Sync::Default => "default sync",
        }
    }
}

/// A running platform on scratch servers, with an HTTP client and token minting.
pub struct BenchApp {
    pub base: String,
    pub http: reqwest::Client,
    pub keys: TestKeys,
    pub platform: Platform,
    _nats: NatsServer,
    pub db: TestDb,
    services: Option<Services>,
    _storage: tempfile::TempDir,
    _clamd: Option<Clamd>,
}

/// Variables an operator may set to bench a tuning (`FE_WORKER_TENANT_CONCURRENCY=8 file-engine
/// bench uploads`); addresses, credentials and limits stay the bench's own. A scenario's own
/// setting (`extra`) still wins.
const TUNING: &[&str] = &[
    "FE_WORKER_CONCURRENCY",
    "FE_WORKER_TENANT_CONCURRENCY",
    "FE_SCANNER_CONCURRENCY",
    "FE_PARTITIONS",
];

fn tuning_from_environment() -> impl Iterator<Item = (String, String)> {
    TUNING.iter().filter_map(|k| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| ((*k).to_owned(), v))
    })
}

/// Starts scratch servers and the given roles; `scan` also starts a clamd.
pub async fn spawn(
    sync: Sync,
    roles: &[Role],
    scan: bool,
    extra: &[(&str, String)],
) -> anyhow::Result<BenchApp> {
    let nats = match sync {
        Sync::Always => NatsServer::start().await,
        Sync::Default => NatsServer::start_with_default_sync().await,
    }
    .context("starting nats-server (deploy/dev/setup.sh installs it)")?;
    let db = TestDb::create()
        .await
        .context("creating a scratch database (FE_TEST_DATABASE_URL)")?;
    let storage = tempfile::tempdir()?;
    let clamd = if scan {
        Some(Clamd::start().await.context("starting clamd")?)
    } else {
        None
    };
    let keys = TestKeys::es256();
    let mut env: HashMap<String, String> = [
        ("FE_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("FE_NATS_URL", nats.url.clone()),
        ("FE_DATABASE_URL", db.url.clone()),
        ("FE_STORAGE", format!("local:{}", storage.path().display())),
        (
            "FE_JWT_PUBLIC_KEYS",
            keys.public_pem_path.display().to_string(),
        ),
        ("FE_JWT_ISSUER", TEST_ISSUER.to_owned()),
        ("FE_JWT_AUDIENCE", TEST_AUDIENCE.to_owned()),
        ("FE_LOG_LEVEL", "error".to_owned()),
        // The issue's measurements run with rate limits off.
        ("FE_RATE_LIMIT_PER_MIN", "0".to_owned()),
        ("FE_TENANT_RATE_LIMIT_PER_MIN", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(c) = &clamd {
        env.insert("FE_CLAMD_ADDR".into(), c.addr.clone());
    }
    for (k, v) in tuning_from_environment() {
        env.insert(k, v);
    }
    for (k, v) in extra {
        env.insert((*k).to_owned(), v.clone());
    }
    let config = Config::from_map(&env).context("bench configuration")?;
    let platform = Platform::connect(config).await?;
    let services = start(&platform, roles).await?;
    let base = services
        .http_addr
        .map(|a| format!("http://{a}"))
        .unwrap_or_default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    Ok(BenchApp {
        base,
        http,
        keys,
        platform,
        _nats: nats,
        db,
        services: Some(services),
        _storage: storage,
        _clamd: clamd,
    })
}

impl BenchApp {
    /// A token for `sub` in `tenant` with `roles`.
    pub fn token(&self, sub: &str, tenant: &str, roles: &[&str]) -> String {
        self.keys.token(sub, tenant, roles)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the roles at once; the servers stop when `self` is dropped. Not a graceful
    /// shutdown: that would wait for a backlog the scenario may have left on purpose, and
    /// these are scratch servers.
    pub async fn stop_services(&mut self) {
        if let Some(s) = self.services.take() {
            s.abort();
        }
    }

    /// Stops the roles and the servers.
    pub async fn stop(mut self) {
        self.stop_services().await;
    }
}

/// Gives the scratch database the planner statistics a live database has. Autovacuum
/// analyses a table only after a minute or more, longer than a scenario runs, and until then
/// statements prepared on the empty tables keep generic plans that cannot tell the unique
/// `(tenant, path)` key from a prefix of it, so every lookup reads the tenant's rows — a
/// measurement of a database's first minute, not of the platform.
pub async fn analyze(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}
