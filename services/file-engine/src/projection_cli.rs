//! `file-engine projection status` and `file-engine projection resume --tenant T`: the
//! operator's view of the partitioned projection (checkpoint and owner per partition, parked
//! tenants with their reason) and the one command that retries a parked tenant after a fix.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use platform::config::Config;
use platform::projection;
use serde_json::json;

/// Prints the state of every partition and every parked tenant as JSON; exits non-zero (an
/// error) only when the state cannot be read.
pub async fn status(config: Config) -> anyhow::Result<serde_json::Value> {
    let pool = platform::db::connect(config.require_database_url()?).await?;
    let owners = projector::ownership::partition_owners(&pool).await?;
    let partitions: Vec<_> = projection::partition_checkpoints(&pool)
        .await?
        .into_iter()
        .map(|(p, seq)| json!({"partition": p, "checkpoint": seq, "owner": owners.get(&p)}))
        .collect();
    let parked: Vec<_> = projection::parked_tenants(&pool)
        .await?
        .into_iter()
        .map(|t| {
            json!({
                "tenant": t.tenant, "seq": t.seq, "reason": t.reason,
                "parked_at": t.parked_at, "attempts": t.attempts,
                "resume_requested_at": t.resume_requested_at,
            })
        })
        .collect();
    Ok(json!({
        "configured_partitions": config.partitions,
        "partitions": partitions,
        "parked": parked,
    }))
}

/// What a resume came to.
pub enum Resumed {
    /// The tenant caught up and is projected again.
    CaughtUp,
    /// It was not parked.
    NotParked,
    /// A commit still fails: parked again (with the current row).
    StillParked(projection::ParkedTenant),
    /// The projector did not finish within the wait (is one running for the partition?).
    Pending,
}

/// Asks the projector to retry `tenant` and waits up to `wait` for the outcome.
pub async fn resume(config: Config, tenant: &str, wait: Duration) -> anyhow::Result<Resumed> {
    events::TenantId::parse(tenant).context("--tenant")?;
    let pool = platform::db::connect(config.require_database_url()?).await?;
    if !projection::request_resume(&pool, tenant).await? {
        return Ok(Resumed::NotParked);
    }
    let end = Instant::now() + wait;
    let mut pause = Duration::from_millis(50);
    loop {
        match projection::parked_tenant(&pool, tenant).await? {
            None => return Ok(Resumed::CaughtUp),
            Some(row) if row.resume_requested_at.is_none() => return Ok(Resumed::StillParked(row)),
            Some(_) if Instant::now() >= end => return Ok(Resumed::Pending),
            Some(_) => {}
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}
