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
    /// Apply PostgreSQL migrations and JetStream stream definitions, then exit.
    Migrate,
    /// Drop the read models and rebuild them from the event log (stop projectors first).
    Replay,
    /// Prove the audit index matches the event log and its hash chains are unbroken; prints
    /// the result as JSON and exits non-zero when anything differs.
    AuditVerify {
        /// Verify one tenant's chain only (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Measure performance against raw baselines (use a scratch NATS server).
    Bench {
        /// Sections to run (acl, log); all when omitted.
        sections: Vec<String>,
        /// Fewer samples, for a smoke run.
        #[arg(long)]
        quick: bool,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The `FE_*` variables become options in front of the command line (blank = unset), so an
    // explicit flag wins and `--help` shows every variable with its default.
    let env = std::env::vars().collect();
    let (cmd, argv) = platform::config::with_env_args(Cli::command(), &env, std::env::args_os());
    let cli = Cli::from_arg_matches(&cmd.get_matches_from(argv)).unwrap_or_else(|e| e.exit());
    let config = Config::from_args(cli.config).context("reading configuration")?;
    // Held to the end of `main`: dropping it flushes the spans still queued for export.
    let _telemetry = platform::telemetry::init(&config.log_level, config.otlp_endpoint.as_deref());
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
            Platform::connect(config).await?;
            tracing::info!("migrations and stream definitions applied");
            Ok(())
        }
        Command::Replay => {
            let p = Platform::connect(config).await?;
            let seq = projector::replay(p.log.jetstream(), &p.pool).await?;
            tracing::info!(checkpoint = seq, "read models rebuilt");
            Ok(())
        }
        Command::AuditVerify { tenant } => audit_verify(config, tenant).await,
        Command::Bench { sections, quick } => {
            file_engine::bench::run(config, &sections, quick).await
        }
        Command::Backup { dir } => {
            let nats = async_nats::connect(config.nats_url.as_str()).await?;
            let manifest =
                file_engine::backup::snapshot(&nats, platform::streams::EVENTS_STREAM, &dir)
                    .await?;
            println!("{}", serde_json::to_string_pretty(&manifest)?);
            Ok(())
        }
        Command::Restore { dir } => {
            let nats = async_nats::connect(config.nats_url.as_str()).await?;
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

async fn audit_verify(config: Config, tenant: Option<String>) -> anyhow::Result<()> {
    use projector::audit::verify::{verify, Scope};
    let scope = match tenant {
        Some(t) => Scope::Tenant(events::TenantId::parse(&t).context("--tenant")?),
        None => Scope::All,
    };
    let p = Platform::connect(config).await?;
    let result = verify(p.log.jetstream(), &p.pool, &scope).await?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    anyhow::ensure!(
        result.ok,
        "audit verification failed: {} problem(s)",
        result.problems_total
    );
    Ok(())
}

async fn run(config: Config, roles: &[Role]) -> anyhow::Result<()> {
    let platform = Platform::connect(config).await?;
    let mut services = start(&platform, roles).await?;
    if let Some(addr) = services.http_addr {
        tracing::info!(%addr, "api listening");
    }
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        _ = services.wait_any() => anyhow::bail!("a service stopped unexpectedly"),
    }
    services.shutdown().await;
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
