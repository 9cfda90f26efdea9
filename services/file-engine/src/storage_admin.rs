//! Operator commands on tenants' storage: `file-engine quota set` (recorded as a `quota.set`
//! event of the tenant's storage ledger, audited like every event, in force once projected)
//! and `file-engine gc` (one garbage-collection run now, the same one every worker's janitor
//! runs periodically).

use std::collections::HashMap;

use anyhow::Context as _;
use events::quota::Limits;
use events::storage::{StorageCommand, TenantStorage, LEDGER_ID};
use events::TenantId;
use platform::event_log::aggregate_id;

use crate::Platform;

/// The principal operator commands are recorded under.
pub const OPERATOR: &str = "operator:cli";

/// Records the tenant's quota in the log; returns the log position of the record (None when
/// the quota was already exactly this).
pub async fn set_quota(
    platform: &Platform,
    tenant: &TenantId,
    limits: Limits,
) -> anyhow::Result<Option<u64>> {
    let mut metadata = HashMap::new();
    metadata.insert("principal".to_owned(), OPERATOR.to_owned());
    let executed = platform
        .log
        .execute::<TenantStorage>(
            &aggregate_id(tenant, LEDGER_ID),
            StorageCommand::SetQuota { limits },
            &(),
            metadata,
        )
        .await
        .context("recording the quota")?;
    Ok(executed.stream_seq)
}

/// One garbage-collection run over every tenant: released versions are kept
/// `retention_days`, blobs younger than `grace` are kept as in doubt.
pub async fn collect_garbage(
    platform: &Platform,
    retention_days: u64,
    grace: std::time::Duration,
) -> anyhow::Result<worker::gc::Collected> {
    let c = &platform.config;
    let deps = worker::WorkerDeps {
        log: platform.log.clone(),
        pool: platform.pool.clone(),
        watermark: platform::db::ProjectionWatermark::start(platform.pool.clone()).await?,
        storage: platform.storage.clone(),
        quota: crate::quota_limits(c),
        version_retention: std::time::Duration::from_secs(retention_days.saturating_mul(86_400)),
        concurrency: 1,
        tenant_concurrency: 1,
        ack_wait: std::time::Duration::from_secs(c.worker_ack_wait_s.max(1)),
        drain: std::time::Duration::from_secs(c.shutdown_timeout_s.max(1)),
        max_deliver: c.worker_max_deliver,
    };
    worker::gc::collect(&deps, deps.version_retention, grace)
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
