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
        Command::Bench {
            sections,
            quick,
            json,
            check,
        } => {
            let opts = file_engine::bench::Options { quick, json, check };
            file_engine::bench::run(&sections, opts).await
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
