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

/// The overlap question: $1 tenant, $3 the task's id, $2 its position in the order when the
/// read model does not know the task (its stored `queued_seq` wins: the request's position,
/// or its latest retry's), $4 its paths and their ancestors, $5/$6 the lower/upper bounds of
/// the subtrees below its paths. One round trip: the task's own position is looked up inside.
pub const OVERLAP_SQL: &str = "WITH me AS (
    SELECT COALESCE((SELECT queued_seq FROM tasks WHERE tenant = $1 AND task_id = $3), $2) AS q)
SELECT EXISTS (
    SELECT 1 FROM task_paths t, me
     WHERE t.open AND t.tenant = $1 AND t.path = ANY($4::text[])
       AND t.queued_seq < me.q AND t.task_id <> $3
    UNION ALL
    SELECT 1 FROM task_paths t, me, unnest($5::text[], $6::text[]) AS r(lo, hi)
     WHERE t.open AND t.tenant = $1 AND t.path >= r.lo AND t.path < r.hi
       AND t.queued_seq < me.q AND t.task_id <> $3)";

/// Whether an earlier open task on an overlapping path exists right now (`queued_seq`: the
/// task's position when the read model does not hold it).
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
    Ok(!blocked_by_earlier(pool, tenant, task_id, projected_through, spec).await?)
}
