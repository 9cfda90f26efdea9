//! `file-engine`: the one binary. `file-engine all` runs every role in one process; each role
//! can also run alone (`api`, `projector`, `worker`) to scale them separately. Configuration
//! comes from the `FE_*` environment variables (see the README).

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use file_engine::{start, Platform, Role};
use platform::config::Config;

#[derive(Parser)]
#[command(
    name = "file-engine",
    version,
    about = "Event-sourced multi-tenant file platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    let cli = Cli::parse();
    let config = Config::from_env().context("reading configuration")?;
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
