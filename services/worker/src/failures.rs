//! The `worker_failures` table (migration 0008): transient failures per queued work item, so
//! that a task is dead-lettered after [`MAX_ATTEMPTS`] failed attempts whatever the number of
//! deliveries it took to get its turn. All SQL on that table lives here.

use events::TenantId;
use sqlx::PgPool;

/// Failed attempts after which a task is dead-lettered.
pub const MAX_ATTEMPTS: i32 = 10;

/// Counts one more failure of the work queued at `log_seq`; returns the count so far.
pub async fn record(pool: &PgPool, tenant: &TenantId, log_seq: u64) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO worker_failures (log_seq, tenant, failures) VALUES ($1, $2, 1)
         ON CONFLICT (log_seq) DO UPDATE
           SET failures = worker_failures.failures + 1, last_failed_at = now()
         RETURNING failures",
    )
    .bind(seq(log_seq))
    .bind(tenant.as_str())
    .fetch_one(pool)
    .await
}

/// Forgets the failures of work that settled (succeeded, failed or dead-lettered).
pub async fn clear(pool: &PgPool, log_seq: u64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM worker_failures WHERE log_seq = $1")
        .bind(seq(log_seq))
        .execute(pool)
        .await
        .map(|_| ())
}

/// A log position as stored (`BIGINT`).
pub(crate) fn seq(log_seq: u64) -> i64 {
    i64::try_from(log_seq).unwrap_or(i64::MAX)
}
