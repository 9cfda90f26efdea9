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

/// The overlap question: $1 tenant, $2 the task's queued_seq, $3 its id, $4 its paths and
/// their ancestors, $5/$6 the lower/upper bounds of the subtrees below its paths.
pub const OVERLAP_SQL: &str = "SELECT EXISTS (
    SELECT 1 FROM task_paths t
     WHERE t.open AND t.tenant = $1 AND t.path = ANY($4::text[])
       AND t.queued_seq < $2 AND t.task_id <> $3
    UNION ALL
    SELECT 1 FROM task_paths t, unnest($5::text[], $6::text[]) AS r(lo, hi)
     WHERE t.open AND t.tenant = $1 AND t.path >= r.lo AND t.path < r.hi
       AND t.queued_seq < $2 AND t.task_id <> $3)";

/// Whether an earlier open task on an overlapping path exists right now.
///
/// Two index lookups on `task_paths_open` per path of the task, never a scan of the tenant's
/// backlog: earlier open tasks on the path or one of its ancestors (equality on each of them),
/// and on anything below it (the byte range `[path/, path0)`, "C" collation).
pub async fn blocked_by_earlier(
    pool: &PgPool,
    tenant: &TenantId,
    task_id: Uuid,
    queued_seq: u64,
    spec: &TaskSpec,
) -> Result<bool, sqlx::Error> {
    let mut same_or_above: Vec<String> = Vec::new();
    let (mut lows, mut highs): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for path in spec.paths() {
        same_or_above.extend(path.ancestor_strs().map(str::to_owned));
        if path.is_root() {
            lows.push("/".into());
            highs.push("0".into());
        } else {
            lows.push(format!("{path}/"));
            highs.push(format!("{path}0"));
        }
    }
    sqlx::query_scalar(OVERLAP_SQL)
        .bind(tenant.as_str())
        .bind(queued_seq as i64)
        .bind(task_id)
        .bind(same_or_above)
        .bind(lows)
        .bind(highs)
        .fetch_one(pool)
        .await
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

/// Whether the task may run now, without waiting for other tasks: waits at most
/// `projection_wait` for the tenant's partition to pass `projected_through` (so every earlier
/// task of the tenant is visible), then checks once that no earlier open task overlaps it. The worker releases a
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
    // Only the tenant's own partition holds its earlier tasks: a slow or stalled partition of
    // other tenants must not hold this one's turn (nor does a parked tenant's run).
    let own_partition = watermark.wait_for_tenant(tenant, projected_through, projection_wait);
    if own_partition.await != Projected::Applied {
        return Ok(false);
    }
    let own = queued_seq(pool, tenant, task_id)
        .await?
        .unwrap_or(projected_through);
    Ok(!blocked_by_earlier(pool, tenant, task_id, own, spec).await?)
}
