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

/// A few connections of their own for [`OVERLAP_SQL`], on which it keeps one generic plan per
/// connection instead of being planned at every call. PostgreSQL kept choosing custom plans
/// for it (it sizes the path arrays only when it sees them), and planning cost four times its
/// execution (338 µs against 78 µs, `pg_stat_statements` with `track_planning`, 50,000-`mkdir`
/// burst). Sequential scans are off on these connections so that a plan made while
/// `task_paths` looked small (statistics taken early, autovacuum late or off) is still the
/// index plan once the table has grown: the partial index `task_paths_open` is the only plan
/// this query is written for. Setting both per transaction instead cost as much in round trips
/// as it saved (burst 511 against 515 tasks/s).
#[derive(Clone)]
pub struct OrderingPool(pub PgPool);

impl OrderingPool {
    /// Connections beside `pool`'s, to the same database, opened when first needed.
    pub fn beside(pool: &PgPool) -> Self {
        let options = (*pool.connect_options()).clone().options([
            ("plan_cache_mode", "force_generic_plan"),
            ("enable_seqscan", "off"),
        ]);
        Self(platform::db::pool_options(ORDERING_CONNECTIONS).connect_lazy_with(options))
    }
}

/// Connections of an [`OrderingPool`]: one query each, about 0.1 ms.
const ORDERING_CONNECTIONS: u32 = 4;

/// The overlap question, answered with the task it waits for: $1 tenant, $3 the task's id,
/// $2 its position in the order when the read model does not know the task (its stored
/// `queued_seq` wins: the request's position, or its latest retry's), $4 its paths and their
/// ancestors, $5/$6 the lower/upper bounds of the subtrees below its paths. One round trip:
/// the task's own position is looked up inside.
///
/// On a path or an ancestor it names the *latest* earlier open task (one backward index step
/// per path), so a chain of tasks on one path waits link by link: each task's end wakes only
/// the next one. Below its paths it names any one (the first in path order): a task waiting
/// for a subtree is woken once per such task that ends while others remain.
pub const OVERLAP_SQL: &str = "WITH me AS (
    SELECT COALESCE((SELECT queued_seq FROM tasks WHERE tenant = $1 AND task_id = $3), $2) AS q)
SELECT blocker FROM (
    SELECT b.task_id AS blocker, b.queued_seq, 0 AS below
      FROM me, unnest($4::text[]) AS p(path),
           LATERAL (SELECT t.task_id, t.queued_seq FROM task_paths t
                     WHERE t.open AND t.tenant = $1 AND t.path = p.path
                       AND t.queued_seq < me.q AND t.task_id <> $3
                     ORDER BY t.queued_seq DESC LIMIT 1) b
    UNION ALL
    SELECT b.task_id, b.queued_seq, 1
      FROM me, unnest($5::text[], $6::text[]) AS r(lo, hi),
           LATERAL (SELECT t.task_id, t.queued_seq FROM task_paths t
                     WHERE t.open AND t.tenant = $1 AND t.path >= r.lo AND t.path < r.hi
                       AND t.queued_seq < me.q AND t.task_id <> $3
                     LIMIT 1) b
) found
ORDER BY below, queued_seq DESC
LIMIT 1";

/// The earlier open task on an overlapping path that the task waits for right now, if any
/// (`queued_seq`: the task's position when the read model does not hold it).
///
/// Index lookups on `task_paths_open` per path of the task, never a scan of the tenant's
/// backlog: earlier open tasks on the path or one of its ancestors (equality on each of them,
/// latest first), and on anything below it (the byte range `[path/, path0)`, "C" collation).
pub async fn blocking_task(
    pool: &PgPool,
    tenant: &TenantId,
    task_id: Uuid,
    queued_seq: u64,
    spec: &TaskSpec,
) -> Result<Option<Uuid>, sqlx::Error> {
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
        .fetch_optional(pool)
        .await
}

/// Whether a task may run now, as [`turn`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// No earlier open task overlaps it.
    Mine,
    /// It waits for this earlier open task on an overlapping path.
    After(Uuid),
    /// Its tenant's partition has not projected it yet (or the tenant is parked): the
    /// earlier tasks are not all known.
    Unknown,
}

/// Whether the task may run now, without waiting for other tasks: waits at most
/// `projection_wait` for the tenant's partition to pass `projected_through` (so every earlier
/// task of the tenant is visible), then checks once which earlier open task, if any, overlaps
/// it. The worker sets aside a task that is not its turn instead of holding it (`run.rs`).
pub async fn turn(
    pool: &OrderingPool,
    watermark: &ProjectionWatermark,
    tenant: &TenantId,
    task_id: Uuid,
    projected_through: u64,
    spec: &TaskSpec,
    projection_wait: Duration,
) -> Result<Turn, sqlx::Error> {
    // Only the tenant's own partition holds its earlier tasks: a slow or stalled partition of
    // other tenants must not hold this one's turn (nor does a parked tenant's run).
    let own_partition = watermark.wait_for_tenant(tenant, projected_through, projection_wait);
    if own_partition.await != Projected::Applied {
        return Ok(Turn::Unknown);
    }
    let blocker = blocking_task(&pool.0, tenant, task_id, projected_through, spec).await?;
    Ok(blocker.map_or(Turn::Mine, Turn::After))
}
