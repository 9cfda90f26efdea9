//! `file-engine`: the one binary. `file-engine all` runs every role in one process; each role
//! can also run alone (`api`, `projector`, `worker`) to scale them separately. Configuration
//! comes from the `FE_*` environment variables (see the README).

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use file_engine::{start, Platform, Role};
use platform::config::{Config, ConfigArgs};

#[derive(Parser)]
#[command(
    name = "file-engine",
    version,
    about = "Event-sourced multi-tenant file platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Api,
    /// Project the event log into the PostgreSQL read models.
    Projector,
    /// Perform storage effects of tasks.
    Worker,
    /// Stream uploads to clamd and record verdicts.
    Scanner,
    /// Deliver events to webhook subscriptions (signed, retried).
    Notifier,
    /// Run api, projector, worker, scanner and notifier in one process.
    All,
    /// Apply PostgreSQL migrations and JetStream stream definitions, move a round-1 storage
    /// tree into blobs (idempotent, resumable), then exit.
    Migrate,
    /// Drop the read models and rebuild them from the event log with FE_PARTITIONS
    /// partitions (stop projectors first; this is also how the partition count changes).
    Replay,
    /// Inspect the partitioned projection or resume a parked tenant.
    Projection {
        #[command(subcommand)]
        action: ProjectionAction,
    },
    /// Prove the audit index matches the event log and its hash chains are unbroken
    /// (incrementally, from each tenant's last verified head), or verify an export file
    /// offline; prints the result as JSON and exits non-zero when anything differs.
    AuditVerify {
        /// Verify one tenant's chain only (default: every tenant).
        #[arg(long, conflicts_with = "file")]
        tenant: Option<String>,
        /// Re-check everything from the genesis instead of continuing from the verified head.
        #[arg(long, conflicts_with = "file")]
        full: bool,
        /// Verify an export (`GET /v1/audit/export` NDJSON) from its lines alone: no
        /// database, no log, no configuration needed.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    /// Measure every throughput/latency scenario against raw baselines, on scratch servers
    /// it starts itself (nats-server, PostgreSQL database, clamd).
    Bench {
        /// Sections to run (accept, latency, burst, uploads, log, acl, upload); all when omitted.
        sections: Vec<String>,
        /// Fewer samples: the whole run in under 2 minutes.
        #[arg(long)]
        quick: bool,
        /// Print the report as one JSON document.
        #[arg(long)]
        json: bool,
        /// Exit non-zero when any target is missed.
        #[arg(long)]
        check: bool,
    },
    /// Snapshot the event stream into a directory (nats-server's stream snapshot; see
    /// deploy/backup/). Back up PostgreSQL first, then the stream.
    Backup {
        /// Directory to write `stream.snapshot` and `stream.json` into.
        #[arg(long)]
        dir: std::path::PathBuf,
    },
    /// Restore the event stream from a backup directory into a server where it does not exist
    /// yet (before any role starts).
    Restore {
        /// Directory written by `file-engine backup`.
        #[arg(long)]
        dir: std::path::PathBuf,
    },
    /// Print the OpenAPI document the API serves at /openapi.json (for client generators and
    /// the validator in deploy/dev/test.sh), without connecting to anything.
    Openapi,
    /// Per-tenant quotas (recorded as events, audited).
    Quota {
        #[command(subcommand)]
        action: QuotaAction,
    },
    /// Run one garbage collection of blobs now (workers also run it periodically).
    Gc {
        /// Keep replaced or deleted versions this many days (default FE_VERSION_RETENTION_DAYS).
        #[arg(long)]
        retention_days: Option<u64>,
        /// Keep blobs younger than this many seconds (default 3600: they may be in doubt).
        #[arg(long)]
        grace_s: Option<u64>,
    },
    /// Mint a development token signed with a local private key (never for production).
    DevToken {
        #[arg(long)]
        private_key: std::path::PathBuf,
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        audience: String,
        #[arg(long)]
        sub: String,
        #[arg(long)]
        tenant: String,
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        #[arg(long, default_value_t = 86400)]
        ttl_s: u64,
    },
}

#[derive(Subcommand)]
enum ProjectionAction {
    /// Print every partition (checkpoint, owner) and every parked tenant (seq, reason) as JSON.
    Status,
    /// Retry a parked tenant after a fix and wait until it caught up (exit 1 if still parked).
    Resume {
        #[arg(long)]
        tenant: String,
        /// Seconds to wait for the projector to catch the tenant up.
        #[arg(long, default_value_t = 120)]
        wait_s: u64,
    },
}

#[derive(Subcommand)]
enum QuotaAction {
    /// Set a tenant's quota (logical bytes and files).
    Set {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        bytes: u64,
        #[arg(long)]
        files: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Before any TLS connection (NATS, webhooks, S3): see `platform::tls`.
    platform::tls::install_default_crypto_provider();
    // The `FE_*` variables become options in front of the command line (blank = unset), so an
    // explicit flag wins and `--help` shows every variable with its default.
    let env = std::env::vars().collect();
    let (cmd, argv) = platform::config::with_env_args(Cli::command(), &env, std::env::args_os());
    let cli = Cli::from_arg_matches(&cmd.get_matches_from(argv)).unwrap_or_else(|e| e.exit());
    // Offline export verification needs no configuration: an external auditor runs it.
    if let Command::AuditVerify {
        file: Some(path), ..
    } = &cli.command
    {
        return audit_verify_file(path);
    }
    let config = Config::from_args(cli.config).context("reading configuration")?;
    // Held to the end of `main`: dropping it flushes the spans still queued for export.
    // The bench prints a report: the platforms it starts log errors only, unless asked.
    let log_level = match cli.command {
        Command::Bench { .. } if std::env::var_os("FE_LOG_LEVEL").is_none() => "error",
        _ => config.log_level.as_str(),
    };
    let _telemetry = platform::telemetry::init(log_level, config.otlp_endpoint.as_deref());
    match cli.command {
        Command::Api => run(config, &[Role::Api]).await,
        Command::Projector => run(config, &[Role::Projector]).await,
        Command::Worker => run(config, &[Role::Worker]).await,
        Command::Scanner => run(config, &[Role::Scanner]).await,
        Command::Notifier => run(config, &[Role::Notifier]).await,
        Command::All => {
            run(
                config,
                &[
                    Role::Api,
                    Role::Projector,
                    Role::Worker,
                    Role::Scanner,
                    Role::Notifier,
                ],
            )
            .await
        }
        Command::Migrate => {
            let p = Platform::connect(config).await?;
            tracing::info!("migrations and stream definitions applied");
            let moved = p.storage.migrate_legacy_layout().await?;
            tracing::info!(
                tenants = moved.tenants,
                files = moved.files,
                blobs = moved.blobs,
                "round-1 storage layout migrated to blobs"
            );
            Ok(())
        }
        Command::Replay => {
            let p = Platform::connect(config).await?;
            let partitions = p.config.partitions;
            let seq =
                projector::replay_with_partitions(p.log.jetstream(), &p.pool, partitions).await?;
            tracing::info!(checkpoint = seq, "read models rebuilt");
            Ok(())
        }
        Command::AuditVerify { tenant, full, .. } => audit_verify(config, tenant, full).await,
        Command::Projection { action } => projection(config, action).await,
        Command::Quota {
            action:
                QuotaAction::Set {
                    tenant,
                    bytes,
                    files,
                },
        } => {
            let tenant = events::TenantId::parse(&tenant).context("--tenant")?;
            let p = Platform::connect(config).await?;
            let limits = events::quota::Limits { bytes, files };
            match file_engine::storage_admin::set_quota(&p, &tenant, limits).await? {
                Some(seq) => println!("quota of {tenant} set (log position {seq})"),
                None => println!("quota of {tenant} unchanged"),
            }
            Ok(())
        }
        Command::Gc {
            retention_days,
            grace_s,
        } => {
            let p = Platform::connect(config).await?;
            let retention = retention_days.unwrap_or(p.config.version_retention_days);
            let grace = grace_s.map_or(worker::gc::BLOB_GRACE, std::time::Duration::from_secs);
            let done = file_engine::storage_admin::collect_garbage(&p, retention, grace).await?;
            println!("{} blob(s), {} byte(s) reclaimed", done.blobs, done.bytes);
            Ok(())
        }
        Command::Bench {
            sections,
            quick,
            json,
            check,
        } => {
            let opts = file_engine::bench::Options { quick, json, check };
            file_engine::bench::run(&sections, opts).await
        }
        Command::Backup { dir } => {
            let nats =
                platform::nats_client::connect(&config.nats_url, "file-engine-backup").await?;
            let manifest =
                file_engine::backup::snapshot(&nats, platform::streams::EVENTS_STREAM, &dir)
                    .await?;
            println!("{}", serde_json::to_string_pretty(&manifest)?);
            Ok(())
        }
        Command::Restore { dir } => {
            let nats =
                platform::nats_client::connect(&config.nats_url, "file-engine-restore").await?;
            let summary = file_engine::backup::restore(&nats, &dir).await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Command::Openapi => {
            println!("{}", api::openapi::document().to_pretty_json()?);
            Ok(())
        }
        Command::DevToken {
            private_key,
            issuer,
            audience,
            sub,
            tenant,
            roles,
            ttl_s,
        } => {
            let pem = std::fs::read(&private_key)
                .with_context(|| format!("reading {}", private_key.display()))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let claims = serde_json::json!({
                "iss": issuer, "aud": audience, "sub": sub, "tenant": tenant, "roles": roles,
                "iat": now, "nbf": now, "exp": now + ttl_s,
            });
            println!("{}", platform::auth::mint_token(&pem, &claims, None)?);
            Ok(())
        }
    }
}

async fn projection(config: Config, action: ProjectionAction) -> anyhow::Result<()> {
    use file_engine::projection_cli::{self, Resumed};
    match action {
        ProjectionAction::Status => {
            println!("{}", projection_cli::status(config).await?);
            Ok(())
        }
        ProjectionAction::Resume { tenant, wait_s } => {
            let wait = std::time::Duration::from_secs(wait_s);
            match projection_cli::resume(config, &tenant, wait).await? {
                Resumed::CaughtUp => {
                    println!("{}", serde_json::json!({"tenant": tenant, "resumed": true}))
                }
                Resumed::NotParked => {
                    println!("{}", serde_json::json!({"tenant": tenant, "parked": false}))
                }
                Resumed::StillParked(row) => {
                    println!(
                        "{}",
                        serde_json::json!({"tenant": tenant, "resumed": false, "seq": row.seq, "reason": row.reason})
                    );
                    std::process::exit(1);
                }
                Resumed::Pending => {
                    println!(
                        "{}",
                        serde_json::json!({"tenant": tenant, "resumed": false, "pending": true})
                    );
                    std::process::exit(1);
                }
            }
            Ok(())
        }
    }
}

async fn audit_verify(config: Config, tenant: Option<String>, full: bool) -> anyhow::Result<()> {
    use projector::audit::verify::{verify, Mode, Scope};
    let scope = match tenant {
        Some(t) => Scope::Tenant(events::TenantId::parse(&t).context("--tenant")?),
        None => Scope::All,
    };
    let mode = if full { Mode::Full } else { Mode::Incremental };
    let p = Platform::connect(config).await?;
    let result = verify(p.log.jetstream(), &p.pool, &scope, mode).await?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    anyhow::ensure!(
        result.ok,
        "audit verification failed: {} problem(s)",
        result.problems_total
    );
    Ok(())
}

/// Verifies an export file offline and prints what it proves.
fn audit_verify_file(path: &std::path::Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let summary = events::audit_export::verify_export(&text)
        .map_err(|e| anyhow::anyhow!("export rejected: {e}"))?;
    println!(
        "{}",
        serde_json::json!({"ok": true, "tenant": summary.tenant, "first_seq": summary.first_seq,
            "last_seq": summary.last_seq, "events": summary.events, "head_hash": summary.head_hash})
    );
    Ok(())
}

/// Runs `roles` until SIGTERM (or Ctrl-C), then stops within `FE_SHUTDOWN_TIMEOUT_S` whatever
/// the dependencies' state: the roles stop taking work and drain (consumers release what is
/// still in flight for redelivery at three fifths of the deadline, see
/// [`file_engine::drain_time`]); whatever has not stopped at the deadline is abandoned — every
/// effect is redo-safe and unacknowledged work is redelivered — and the process exits.
async fn run(config: Config, roles: &[Role]) -> anyhow::Result<()> {
    let deadline = std::time::Duration::from_secs(config.shutdown_timeout_s.max(1));
    let stop = shutdown_signal();
    tokio::pin!(stop);
    // A signal while still connecting (NATS or PostgreSQL unreachable) stops at once.
    let platform = tokio::select! {
        platform = Platform::connect(config) => platform?,
        _ = &mut stop => {
            tracing::info!("stopped before the roles started");
            return Ok(());
        }
    };
    let mut services = start(&platform, roles).await?;
    if let Some(addr) = services.http_addr {
        tracing::info!(%addr, "api listening");
    }
    tracing::info!(?roles, "roles started");
    tokio::select! {
        _ = &mut stop => tracing::info!(?deadline, "shutting down"),
        _ = services.wait_any() => anyhow::bail!("a service stopped unexpectedly"),
    }
    let started = std::time::Instant::now();
    // Half a second is left for exiting itself (flushing logs, closing sockets).
    let stop_by = deadline
        .saturating_sub(std::time::Duration::from_millis(500))
        .max(std::time::Duration::from_millis(500));
    if tokio::time::timeout(stop_by, services.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?deadline,
            "shutdown deadline reached; exiting with unfinished work left to redelivery"
        );
        // Not a return through the runtime's drop, which would wait for blocking file IO.
        std::process::exit(0);
    }
    tracing::info!(took = ?started.elapsed(), "stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
            return;
        }
    }
    let _ = ctrl_c.await;
}
