//! The `worker_deferred` table (migration 0014): queued work set aside until it can run, so
//! that a delivery that cannot run now is acknowledged instead of staying "ack pending" in
//! JetStream. All SQL on that table lives here.
//!
//! A row is one work item (the commit at `log_seq` that queued it) and waits either for one
//! task to end (`blocked_by`) or for a time (`not_before`). Taking a row leases it: its
//! `not_before` moves a lease length ahead under the taker's id, so a worker that dies holding
//! rows delays them by at most the lease, and two workers never take the same row at once
//! (the `UPDATE` re-checks that the row is due after waiting for a concurrent taker's lock).

use std::time::Duration;

use events::TenantId;
use sqlx::PgPool;
use uuid::Uuid;

use crate::failures::seq;

/// What a set-aside work item waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The end of this task (announced by the projection). Recorded only while the task is
    /// still open, else the item is due at once: its end may have been announced already.
    Task(Uuid),
    /// This long.
    For(Duration),
}

/// One work item taken to run.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Taken {
    pub log_seq: i64,
    /// How often the item was taken so far, this time included.
    pub picks: i32,
}

/// Sets aside the work queued at `log_seq` (again, if it was set aside before: the row takes
/// the new wait and loses its lease).
pub async fn defer(
    pool: &PgPool,
    tenant: &TenantId,
    log_seq: u64,
    task_id: Uuid,
    wait: Wait,
) -> Result<(), sqlx::Error> {
    let (blocker, delay) = match wait {
        Wait::Task(id) => (Some(id), Duration::ZERO),
        Wait::For(delay) => (None, delay),
    };
    sqlx::query(
        "INSERT INTO worker_deferred (log_seq, tenant, task_id, blocked_by, not_before)
         SELECT $1, $2, $3,
                CASE WHEN EXISTS (SELECT 1 FROM task_paths t
                                   WHERE t.tenant = $2 AND t.task_id = $4 AND t.open)
                     THEN $4 END,
                now() + $5 * interval '1 microsecond'
         ON CONFLICT (log_seq) DO UPDATE
           SET blocked_by = EXCLUDED.blocked_by, not_before = EXCLUDED.not_before,
               lease_owner = NULL",
    )
    .bind(seq(log_seq))
    .bind(tenant.as_str())
    .bind(task_id)
    .bind(blocker)
    .bind(micros(delay))
    .execute(pool)
    .await
    .map(|_| ())
}

/// How [`take_due`] finds due items without reading every one: the tenants with items not
/// waiting for a task, one index step each (a loose index scan: PostgreSQL has no skip scan),
/// then at most `$3` of each tenant's oldest due items, one index range each; ranked round robin
/// and cut at `$4`. Its cost grows with the number of tenants, not with a tenant's backlog.
pub const TAKE_DUE_SQL: &str = "WITH RECURSIVE tenants AS (
    (SELECT tenant FROM worker_deferred WHERE blocked_by IS NULL ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT w.tenant FROM worker_deferred w
             WHERE w.blocked_by IS NULL AND w.tenant > t.tenant ORDER BY w.tenant LIMIT 1)
      FROM tenants t WHERE t.tenant IS NOT NULL
), due AS (
    SELECT d.log_seq, d.rank FROM tenants t,
           LATERAL (SELECT w.log_seq, row_number() OVER (ORDER BY w.log_seq) AS rank
                      FROM worker_deferred w
                     WHERE w.tenant = t.tenant AND w.blocked_by IS NULL
                       AND w.not_before <= now()
                     ORDER BY w.log_seq LIMIT $3) d
     WHERE t.tenant IS NOT NULL
), picked AS (
    SELECT log_seq FROM due ORDER BY rank, log_seq LIMIT $4
)
UPDATE worker_deferred d
   SET not_before = now() + $2 * interval '1 microsecond', lease_owner = $1,
       picks = d.picks + 1
  FROM picked
 WHERE d.log_seq = picked.log_seq AND d.blocked_by IS NULL AND d.not_before <= now()
RETURNING d.log_seq, d.picks";

/// Takes up to `limit` due items, at most `per_tenant` of each tenant, round robin over
/// tenants (every tenant's oldest item before any tenant's second), leased to `owner` for
/// `lease`.
pub async fn take_due(
    pool: &PgPool,
    owner: Uuid,
    lease: Duration,
    per_tenant: usize,
    limit: usize,
) -> Result<Vec<Taken>, sqlx::Error> {
    sqlx::query_as(TAKE_DUE_SQL)
        .bind(owner)
        .bind(micros(lease))
        .bind(count(per_tenant))
        .bind(count(limit))
        .fetch_all(pool)
        .await
}

/// Makes the item at `log_seq`, which is set aside already, due again after `delay` (a
/// transient failure), giving its lease back.
pub async fn postpone(pool: &PgPool, log_seq: u64, delay: Duration) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE worker_deferred
            SET not_before = now() + $2 * interval '1 microsecond', lease_owner = NULL
          WHERE log_seq = $1",
    )
    .bind(seq(log_seq))
    .bind(micros(delay))
    .execute(pool)
    .await
    .map(|_| ())
}

/// Makes due the items that wait for one of `ended` (tasks announced terminal).
pub async fn wake_after(pool: &PgPool, ended: &[(TenantId, Uuid)]) -> Result<u64, sqlx::Error> {
    if ended.is_empty() {
        return Ok(0);
    }
    let (tenants, ids): (Vec<&str>, Vec<Uuid>) =
        ended.iter().map(|(t, id)| (t.as_str(), *id)).unzip();
    sqlx::query(
        "UPDATE worker_deferred d SET blocked_by = NULL, not_before = now()
           FROM unnest($1::text[], $2::uuid[]) AS e(tenant, task_id)
          WHERE d.tenant = e.tenant AND d.blocked_by = e.task_id",
    )
    .bind(tenants)
    .bind(ids)
    .execute(pool)
    .await
    .map(|r| r.rows_affected())
}

/// Makes due the items whose task to wait for is no longer open, however its end was missed
/// (a lost announcement, a listener reconnecting, a feed that lagged).
pub async fn wake_orphans(pool: &PgPool) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "UPDATE worker_deferred d SET blocked_by = NULL, not_before = now()
          WHERE d.blocked_by IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM task_paths t
                             WHERE t.tenant = d.tenant AND t.task_id = d.blocked_by AND t.open)",
    )
    .execute(pool)
    .await
    .map(|r| r.rows_affected())
}

/// Extends `owner`'s leases on the items it is still running.
pub async fn renew(
    pool: &PgPool,
    owner: Uuid,
    log_seqs: &[i64],
    lease: Duration,
) -> Result<(), sqlx::Error> {
    if log_seqs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE worker_deferred SET not_before = now() + $3 * interval '1 microsecond'
          WHERE lease_owner = $1 AND log_seq = ANY($2)",
    )
    .bind(owner)
    .bind(log_seqs)
    .bind(micros(lease))
    .execute(pool)
    .await
    .map(|_| ())
}

/// Gives `owner`'s leased items back, due at once (a worker shutting down).
pub async fn release(pool: &PgPool, owner: Uuid) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "UPDATE worker_deferred SET not_before = now(), lease_owner = NULL
          WHERE lease_owner = $1",
    )
    .bind(owner)
    .execute(pool)
    .await
    .map(|r| r.rows_affected())
}

/// Forgets the item of work that settled.
pub async fn settle(pool: &PgPool, log_seq: u64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM worker_deferred WHERE log_seq = $1")
        .bind(seq(log_seq))
        .execute(pool)
        .await
        .map(|_| ())
}

/// Items set aside, all tenants together (for the `fe_worker_deferred_tasks` gauge).
pub async fn waiting(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM worker_deferred")
        .fetch_one(pool)
        .await
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pool() -> (testkit::postgres::TestDb, PgPool) {
        let db = testkit::postgres::TestDb::create().await.unwrap();
        let pool = db.pool().await.unwrap();
        platform::db::migrate(&pool).await.unwrap();
        (db, pool)
    }

    fn tenant(t: &str) -> TenantId {
        TenantId::parse(t).unwrap()
    }

    async fn open_task(pool: &PgPool, tenant: &str, task: Uuid) {
        sqlx::query(
            "INSERT INTO task_paths (tenant, task_id, path, queued_seq, open)
             VALUES ($1, $2, '/p', 1, true)",
        )
        .bind(tenant)
        .bind(task)
        .execute(pool)
        .await
        .unwrap();
    }

    async fn close_task(pool: &PgPool, task: Uuid) {
        sqlx::query("UPDATE task_paths SET open = false WHERE task_id = $1")
            .bind(task)
            .execute(pool)
            .await
            .unwrap();
    }

    const LEASE: Duration = Duration::from_secs(60);

    /// Sets aside the work at `seq` of `t`, waiting as `wait` says.
    async fn set_aside(pool: &PgPool, t: &str, seq: u64, wait: Wait) {
        defer(pool, &tenant(t), seq, Uuid::new_v4(), wait)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn due_work_is_taken_round_robin_over_tenants_and_by_one_taker_only() {
        let (_db, pool) = pool().await;
        // The hog queued first and most; the other tenants' only items still come next.
        let now = Wait::For(Duration::ZERO);
        for seq in 1..=20 {
            set_aside(&pool, "hog", seq, now).await;
        }
        for (seq, t) in [(30, "a"), (31, "b")] {
            set_aside(&pool, t, seq, now).await;
        }
        let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
        let first = take_due(&pool, one, LEASE, 2, 4).await.unwrap();
        let seqs: Vec<i64> = first.iter().map(|t| t.log_seq).collect();
        assert_eq!(seqs.len(), 4, "{first:?}");
        for s in [1, 30, 31] {
            assert!(seqs.contains(&s), "every tenant's oldest first: {seqs:?}");
        }
        assert!(first.iter().all(|t| t.picks == 1));
        // A second taker gets none of the leased items, and at most the cap per tenant.
        let second = take_due(&pool, two, LEASE, 2, 100).await.unwrap();
        assert!(
            second.iter().all(|t| !seqs.contains(&t.log_seq)),
            "{second:?}"
        );
        assert_eq!(second.len(), 2, "two of the hog's per take: {second:?}");
        // Given back at shutdown: due again at once, taken a second time.
        assert_eq!(release(&pool, one).await.unwrap(), 4);
        let again = take_due(&pool, two, LEASE, 100, 100).await.unwrap();
        assert!(
            again.iter().any(|t| t.log_seq == 30 && t.picks == 2),
            "{again:?}"
        );
        // Two takers racing for the same due items never both get one.
        settle(&pool, 1).await.unwrap();
        release(&pool, two).await.unwrap();
        let (x, y) = tokio::join!(
            take_due(&pool, one, LEASE, 100, 100),
            take_due(&pool, two, LEASE, 100, 100)
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        let mut all: Vec<i64> = x.iter().chain(&y).map(|t| t.log_seq).collect();
        all.sort_unstable();
        let before = all.len();
        all.dedup();
        assert_eq!(all.len(), before, "an item was taken twice");
        assert_eq!(all.len(), 21, "every item left is due and taken once");
    }

    #[tokio::test]
    async fn work_waiting_for_a_task_is_due_when_that_task_ends_and_not_before() {
        let (_db, pool) = pool().await;
        let (blocker, unrelated) = (Uuid::new_v4(), Uuid::new_v4());
        open_task(&pool, "acme", blocker).await;
        open_task(&pool, "acme", unrelated).await;
        set_aside(&pool, "acme", 10, Wait::Task(blocker)).await;
        let me = Uuid::new_v4();
        assert!(take_due(&pool, me, LEASE, 8, 8).await.unwrap().is_empty());
        // Another task's end, or the same id in another tenant, wakes nothing.
        let others = [(tenant("acme"), unrelated), (tenant("other"), blocker)];
        assert_eq!(wake_after(&pool, &others).await.unwrap(), 0);
        assert_eq!(
            wake_after(&pool, &[(tenant("acme"), blocker)])
                .await
                .unwrap(),
            1
        );
        let taken = take_due(&pool, me, LEASE, 8, 8).await.unwrap();
        assert_eq!(taken.iter().map(|t| t.log_seq).collect::<Vec<_>>(), [10]);
    }

    #[tokio::test]
    async fn a_missed_end_is_caught_by_the_sweep_and_an_ended_blocker_is_not_recorded() {
        let (_db, pool) = pool().await;
        let blocker = Uuid::new_v4();
        open_task(&pool, "acme", blocker).await;
        set_aside(&pool, "acme", 10, Wait::Task(blocker)).await;
        assert_eq!(wake_orphans(&pool).await.unwrap(), 0, "its blocker is open");
        close_task(&pool, blocker).await;
        assert_eq!(wake_orphans(&pool).await.unwrap(), 1);
        // Set aside behind a task that has already ended: due at once, never stranded.
        set_aside(&pool, "acme", 11, Wait::Task(blocker)).await;
        let taken = take_due(&pool, Uuid::new_v4(), LEASE, 8, 8).await.unwrap();
        let mut seqs: Vec<i64> = taken.iter().map(|t| t.log_seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, [10, 11]);
        assert_eq!(waiting(&pool).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_lease_runs_out_unless_renewed_and_a_delay_is_kept() {
        let (_db, pool) = pool().await;
        set_aside(&pool, "acme", 5, Wait::For(Duration::ZERO)).await;
        set_aside(&pool, "acme", 6, Wait::For(Duration::from_secs(3600))).await;
        let (dead, alive) = (Uuid::new_v4(), Uuid::new_v4());
        let short = Duration::from_millis(300);
        let taken = take_due(&pool, dead, short, 8, 8).await.unwrap();
        assert_eq!(taken.len(), 1, "the delayed item is not due: {taken:?}");
        assert!(take_due(&pool, alive, LEASE, 8, 8)
            .await
            .unwrap()
            .is_empty());
        // The holder died: its lease runs out and another worker takes the item.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let retaken = loop {
            let got = take_due(&pool, alive, LEASE, 8, 8).await.unwrap();
            if !got.is_empty() {
                break got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the lease never ran out"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(retaken[0].log_seq, 5);
        // A renewed lease does not run out.
        renew(&pool, alive, &[5], LEASE).await.unwrap();
        release(&pool, dead).await.unwrap();
        assert!(take_due(&pool, dead, LEASE, 8, 8).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn taking_due_work_reads_a_few_index_entries_per_tenant_not_the_backlog() {
        let (_db, pool) = pool().await;
        sqlx::query(
            "INSERT INTO worker_deferred (log_seq, tenant, task_id)
             SELECT i, CASE WHEN i % 1000 = 0 THEN 'small-' || i ELSE 'hog' END,
                    gen_random_uuid()
               FROM generate_series(1, 30000) AS i",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("ANALYZE worker_deferred")
            .execute(&pool)
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(&format!(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {TAKE_DUE_SQL}"
        ))
        .bind(Uuid::new_v4())
        .bind(micros(LEASE))
        .bind(4i64)
        .bind(8i64)
        .fetch_all(&pool)
        .await
        .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("worker_deferred_ready"), "{plan}");
        // No step of the plan handles more than a few rows (ranking every due row would
        // handle the hog's 29,970).
        let most_rows = plan
            .split("actual rows=")
            .skip(1)
            .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        assert!(most_rows < 100, "{most_rows} rows in one step:\n{plan}");
        assert!(!plan.contains("Seq Scan on worker_deferred"), "{plan}");
        let taken: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM worker_deferred WHERE lease_owner IS NOT NULL",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        // 30 small tenants' oldest first, round robin: the hog gets one of the eight.
        assert_eq!(taken, 8);
        let hog: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM worker_deferred WHERE lease_owner IS NOT NULL AND tenant = 'hog'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(hog, 1, "one per tenant before any tenant's second");
    }
}
