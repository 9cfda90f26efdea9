//! Disabling a subscription after sustained failure, recorded as `subscription.disabled` in
//! the tenant's subscription aggregate (principal `system:notifier`), then abandoning its
//! pending deliveries.
//!
//! The rule: a subscription is disabled once its deliveries have failed for
//! `FE_WEBHOOK_DISABLE_AFTER_S` (24 h by default) without a single success in between
//! (`subscription_health.failing_since`). A receiver that rejects only some events keeps its
//! subscription; one that is gone for a day loses it, and an admin re-creates it once the
//! receiver is back. Several replicas may decide this at once: the aggregate turns every
//! request after the first into a no-op.

use std::collections::HashMap;

use events::subscription::{SubscriptionAggregate, SubscriptionCommand};
use events::TenantId;
use platform::event_log::{aggregate_id, EventLog, ExecuteError};
use sqlx::PgPool;
use uuid::Uuid;

use crate::outcome;

/// The principal recorded on `subscription.disabled`.
pub const PRINCIPAL: &str = "system:notifier";

/// Why disabling failed; the caller logs it and tries again on the next failure.
#[derive(Debug, thiserror::Error)]
pub enum DisableError {
    #[error("invalid tenant in the delivery queue")]
    Tenant,
    #[error("recording the disabling failed: {0}")]
    Log(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Records that `subscription_id` is disabled and cancels its pending deliveries.
#[tracing::instrument(skip_all, fields(tenant = %tenant, subscription = %subscription_id))]
pub async fn disable(
    log: &EventLog,
    pool: &PgPool,
    tenant: &str,
    subscription_id: Uuid,
    reason: &str,
) -> Result<(), DisableError> {
    let tenant = TenantId::parse(tenant).map_err(|_| DisableError::Tenant)?;
    let command = SubscriptionCommand::Disable {
        id: subscription_id,
        reason: reason.to_owned(),
    };
    let metadata = HashMap::from([("principal".to_owned(), PRINCIPAL.to_owned())]);
    let id = aggregate_id(&tenant, tenant.as_str());
    let executed = log
        .execute::<SubscriptionAggregate>(&id, command, &(), metadata)
        .await
        .map_err(|e| match e {
            ExecuteError::Domain(e) => DisableError::Log(e.to_string()),
            ExecuteError::Conflict => DisableError::Log("concurrent changes".into()),
            ExecuteError::Log(e) => DisableError::Log(e.to_string()),
        })?;
    let cancelled = outcome::cancel_pending(pool, subscription_id).await?;
    if executed.stream_seq.is_some() {
        metrics::counter!("fe_webhook_subscriptions_disabled_total").increment(1);
        tracing::warn!(
            cancelled,
            "notifier: subscription disabled after sustained failure"
        );
    }
    Ok(())
}
