//! Log order per path: a task may start only when every earlier open task (lower
//! `queued_seq`) whose paths overlap its own is terminal.
//!
//! The task read model answers the question once the projector has passed the task's own
//! log position (then every earlier task is in it), which makes the rule hold across any
//! number of worker processes without a distributed lock.

use std::time::Duration;

use events::task::TaskSpec;
use events::TenantId;
use platform::db::ProjectionWatermark;
use platform::projection::Projected;
use sqlx::PgPool;
use uuid::Uuid;

/// Whether an earlier open task on an overlapping path exists right now.
pub async fn blocked_by_earlier(
    pool: &PgPool,
    tenant: &TenantId,
    task_id: Uuid,
    queued_seq: u64,
    spec: &TaskSpec,
) -> Result<bool, sqlx::Error> {
    let open: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT spec FROM tasks
         WHERE tenant = $1 AND status IN ('pending', 'running') AND queued_seq < $2 AND task_id <> $3",
    )
    .bind(tenant.as_str())
    .bind(queued_seq as i64)
    .bind(task_id)
    .fetch_all(pool)
    .await?;
    Ok(open
        .into_iter()
        .filter_map(|v| serde_json::from_value::<TaskSpec>(v).ok())
        .any(|other| other.overlaps(spec)))
}

/// The task's own position in the per-path order (its request or latest retry).
async fn queued_seq(
    pool: &PgPool,
    tenant: &TenantId,
    task_id: Uuid,
) -> Result<Option<u64>, sqlx::Error> {
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT queued_seq FROM tasks WHERE tenant = $1 AND task_id = $2")
            .bind(tenant.as_str())
            .bind(task_id)
            .fetch_optional(pool)
            .await?;
    Ok(seq.map(|s| s.max(0) as u64))
}

/// Waits (with growing pauses, woken early by projector progress) until the task may run:
/// first until the read models have passed `projected_through` (the commit being handled,
/// so every earlier task is visible), then until no earlier open task overlaps it.
pub async fn wait_for_turn(
    pool: &PgPool,
    watermark: &ProjectionWatermark,
    tenant: &TenantId,
    task_id: Uuid,
    projected_through: u64,
    spec: &TaskSpec,
) -> Result<(), sqlx::Error> {
    let mut pause = Duration::from_millis(20);
    loop {
        // Only the tenant's own partition matters. While the tenant is parked its task rows
        // stand still: keep waiting (nothing is lost), the resume lets it go on in order.
        let own_partition = watermark.wait_for_tenant(tenant, projected_through, pause);
        if own_partition.await == Projected::Applied {
            let own = queued_seq(pool, tenant, task_id)
                .await?
                .unwrap_or(projected_through);
            if !blocked_by_earlier(pool, tenant, task_id, own, spec).await? {
                return Ok(());
            }
            // Blocked: wake up on the next projected commit (an earlier task finishing) or soon.
            let _ = watermark.changed(pause).await;
        }
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Whether the task may run now, without waiting for other tasks: waits at most
/// `projection_wait` for the read models to pass `projected_through` (so every earlier task is
/// visible), then checks once that no earlier open task overlaps it. The worker releases a
/// delivery that is not its turn instead of holding it (`run.rs`).
pub async fn is_my_turn(
    pool: &PgPool,
    watermark: &ProjectionWatermark,
    tenant: &TenantId,
    task_id: Uuid,
    projected_through: u64,
    spec: &TaskSpec,
    projection_wait: Duration,
) -> Result<bool, sqlx::Error> {
    if !watermark.wait_for(projected_through, projection_wait).await {
        return Ok(false);
    }
    let own = queued_seq(pool, tenant, task_id)
        .await?
        .unwrap_or(projected_through);
    Ok(!blocked_by_earlier(pool, tenant, task_id, own, spec).await?)
}
