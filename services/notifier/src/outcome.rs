//! Recording what deliveries came to: attempts, outcomes, retries and death, subscription
//! health, cancellation and the purge of old rows (the notifier's tables of
//! `migrations/0004_notifications.sql`). Times are the database's `now()`, like the claim's.
//! Nothing here logs a URL, a body or a secret.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::queue::Claimed;

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What one attempt came to, for the attempt log.
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// Records a 2xx: the delivery is done and the subscription healthy again.
pub async fn record_delivered(
    pool: &PgPool,
    claimed: &Claimed,
    attempt: &AttemptRecord,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE deliveries SET state = 'delivered', finished_at = now(), last_status = $2,
                last_error = NULL
         WHERE id = $1 AND state = 'pending'",
    )
    .bind(claimed.id)
    .bind(attempt.status.map(i32::from))
    .execute(&mut *tx)
    .await?;
    insert_attempt(&mut tx, claimed, attempt).await?;
    sqlx::query(
        "INSERT INTO subscription_health (subscription_id, tenant, last_success_at)
         VALUES ($1, $2, now())
         ON CONFLICT (subscription_id) DO UPDATE SET failing_since = NULL,
                last_success_at = now()",
    )
    .bind(claimed.subscription_id)
    .bind(&claimed.tenant)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// After a failed attempt: what became of the delivery and of its subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureRecorded {
    /// The give-up deadline passed: the delivery is dead.
    pub dead: bool,
    /// The subscription has failed without a success for the disable period.
    pub failing_too_long: bool,
}

/// Records a failed attempt: the next attempt is due after `retry_in`, or the delivery is
/// dead when that would pass its give-up deadline (queued + `give_up`).
pub async fn record_failed(
    pool: &PgPool,
    claimed: &Claimed,
    attempt: &AttemptRecord,
    retry_in: Duration,
    give_up: Duration,
    disable_after: Duration,
) -> Result<FailureRecorded, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let state: Option<String> = sqlx::query_scalar(
        "UPDATE deliveries SET
            state = CASE WHEN now() + ($2::bigint * interval '1 millisecond')
                              > created_at + ($3::bigint * interval '1 millisecond')
                         THEN 'dead' ELSE 'pending' END,
            next_attempt_at = now() + ($2::bigint * interval '1 millisecond'),
            finished_at = CASE WHEN now() + ($2::bigint * interval '1 millisecond')
                                    > created_at + ($3::bigint * interval '1 millisecond')
                               THEN now() END,
            last_status = $4, last_error = $5
         WHERE id = $1 AND state = 'pending'
         RETURNING state",
    )
    .bind(claimed.id)
    .bind(millis(retry_in))
    .bind(millis(give_up))
    .bind(attempt.status.map(i32::from))
    .bind(&attempt.error)
    .fetch_optional(&mut *tx)
    .await?;
    insert_attempt(&mut tx, claimed, attempt).await?;
    let failing_too_long: bool = sqlx::query_scalar(
        "INSERT INTO subscription_health (subscription_id, tenant, failing_since, last_failure_at)
         VALUES ($1, $2, now(), now())
         ON CONFLICT (subscription_id) DO UPDATE SET
                failing_since = COALESCE(subscription_health.failing_since, now()),
                last_failure_at = now()
         RETURNING now() - failing_since >= ($3::bigint * interval '1 millisecond')",
    )
    .bind(claimed.subscription_id)
    .bind(&claimed.tenant)
    .bind(millis(disable_after))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(FailureRecorded {
        dead: state.as_deref() == Some("dead"),
        failing_too_long,
    })
}

async fn insert_attempt(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    claimed: &Claimed,
    attempt: &AttemptRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status, error)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (delivery_id, attempt) DO NOTHING",
    )
    .bind(claimed.id)
    .bind(claimed.attempts)
    .bind(attempt.started_at)
    .bind(i32::try_from(attempt.duration.as_millis()).unwrap_or(i32::MAX))
    .bind(attempt.status.map(i32::from))
    .bind(&attempt.error)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Abandons the pending deliveries of a subscription that was disabled.
pub async fn cancel_pending(pool: &PgPool, subscription_id: Uuid) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE deliveries SET state = 'cancelled', finished_at = now(),
                last_error = 'subscription disabled'
         WHERE subscription_id = $1 AND state = 'pending'",
    )
    .bind(subscription_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes finished deliveries (and their attempts) older than `retention`.
pub async fn purge_finished(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM deliveries
         WHERE state <> 'pending' AND finished_at < now() - ($1::bigint * interval '1 millisecond')",
    )
    .bind(millis(retention))
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
