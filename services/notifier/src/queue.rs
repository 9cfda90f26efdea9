//! The durable delivery queue in PostgreSQL (`deliveries`, read with the `subscriptions`
//! read model): enqueueing and claiming due deliveries.
//!
//! * Enqueue is `INSERT … ON CONFLICT (subscription_id, event_id) DO NOTHING`: a commit the
//!   log redelivers never queues a delivery twice.
//! * Claiming picks the most overdue subscriptions first and at most a few rows of each
//!   (`FOR UPDATE SKIP LOCKED`, so notifier replicas never claim the same row), then moves
//!   each claimed row's `next_attempt_at` to the end of a lease. A notifier that dies while
//!   sending loses nothing: when the lease ends, the row is due again (at-least-once).
//! * Times are the database's (`now()`), so replicas with skewed clocks agree on what is due.
//!
//! Outcomes (attempts, retries, death, health) are recorded by `outcome.rs`.
//!
//! Nothing here logs a URL, a body or a secret.

use std::collections::HashMap;
use std::time::Duration;

use events::subscription::Subscription;
use events::{FilePath, TenantId};
use sqlx::PgPool;
use uuid::Uuid;

/// One delivery to queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    pub tenant: String,
    pub subscription_id: Uuid,
    pub event_id: String,
    pub event_type: String,
    pub seq: i64,
    pub body: String,
}

/// A claimed delivery, ready to send.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub tenant: String,
    pub subscription_id: Uuid,
    pub event_id: String,
    pub body: String,
    /// Attempts including the one just claimed.
    pub attempts: i32,
    pub url: String,
}

/// A due row as seen by the claim, before choosing.
#[derive(Clone, Debug, sqlx::FromRow)]
struct Candidate {
    id: i64,
    tenant: String,
    subscription_id: Uuid,
    event_id: String,
    body: String,
    attempts: i32,
    url: Option<String>,
    status: Option<String>,
}

/// How much a claim may take: free global slots, the per-subscription limit, and what each
/// subscription already has in flight in this process.
#[derive(Clone, Debug, Default)]
pub struct Budget {
    pub total: usize,
    pub per_subscription: usize,
    pub in_flight: HashMap<Uuid, usize>,
}

impl Budget {
    fn room(&self, subscription: Uuid) -> usize {
        let used = self.in_flight.get(&subscription).copied().unwrap_or(0);
        self.per_subscription.saturating_sub(used)
    }

    /// Subscriptions with no room left: the claim skips them entirely, so their backlog can
    /// never crowd out other subscriptions' rows.
    fn saturated(&self) -> Vec<Uuid> {
        self.in_flight
            .keys()
            .copied()
            .filter(|s| self.room(*s) == 0)
            .collect()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Queues deliveries; existing (subscription, event) pairs are left as they are.
pub async fn enqueue(pool: &PgPool, rows: &[NewDelivery]) -> Result<u64, sqlx::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let column = |f: fn(&NewDelivery) -> String| rows.iter().map(f).collect::<Vec<_>>();
    let ids: Vec<Uuid> = rows.iter().map(|r| r.subscription_id).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let done = sqlx::query(
        "INSERT INTO deliveries (tenant, subscription_id, event_id, event_type, seq, body)
         SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[])
         ON CONFLICT (subscription_id, event_id) DO NOTHING",
    )
    .bind(column(|r| r.tenant.clone()))
    .bind(ids)
    .bind(column(|r| r.event_id.clone()))
    .bind(column(|r| r.event_type.clone()))
    .bind(seqs)
    .bind(column(|r| r.body.clone()))
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

#[derive(sqlx::FromRow)]
struct SubscriptionRow {
    id: Uuid,
    url: String,
    types: Vec<String>,
    path_prefix: String,
}

/// The tenant's subscriptions that were live at log position `seq`: created before it and
/// not deleted or disabled at or before it. Needs the projection to have passed `seq`.
pub async fn live_subscriptions(
    pool: &PgPool,
    tenant: &TenantId,
    seq: u64,
) -> Result<Vec<Subscription>, sqlx::Error> {
    let rows: Vec<SubscriptionRow> = sqlx::query_as(
        "SELECT id, url, types, path_prefix FROM subscriptions
         WHERE tenant = $1 AND created_seq < $2 AND (ended_seq IS NULL OR ended_seq > $2)",
    )
    .bind(tenant.as_str())
    .bind(i64::try_from(seq).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            // The projector only stores validated prefixes; a row that fails is skipped.
            let path_prefix = FilePath::parse(&r.path_prefix).ok()?;
            Some(Subscription {
                id: r.id,
                url: r.url,
                types: r.types.into_iter().collect(),
                path_prefix,
            })
        })
        .collect())
}

/// Claims due deliveries within `budget`; each claimed row is leased for `lease`. Rows of
/// disabled or deleted subscriptions met on the way are cancelled.
pub async fn claim(
    pool: &PgPool,
    budget: &Budget,
    lease: Duration,
) -> Result<Vec<Claimed>, sqlx::Error> {
    if budget.total == 0 {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await?;
    let candidates: Vec<Candidate> = sqlx::query_as(
        "SELECT d.id, d.tenant, d.subscription_id, d.event_id, d.body, d.attempts, s.url, s.status
         FROM (SELECT subscription_id FROM deliveries
               WHERE state = 'pending' AND next_attempt_at <= now()
                 AND NOT (subscription_id = ANY($1))
               GROUP BY subscription_id ORDER BY min(next_attempt_at) LIMIT $2) due
         CROSS JOIN LATERAL (
               SELECT * FROM deliveries x
               WHERE x.subscription_id = due.subscription_id AND x.state = 'pending'
                 AND x.next_attempt_at <= now()
               ORDER BY x.next_attempt_at, x.id LIMIT $3
               FOR UPDATE SKIP LOCKED) d
         LEFT JOIN subscriptions s ON s.tenant = d.tenant AND s.id = d.subscription_id",
    )
    .bind(budget.saturated())
    .bind(i64::try_from(budget.total).unwrap_or(i64::MAX))
    .bind(i64::try_from(budget.per_subscription.max(1)).unwrap_or(i64::MAX))
    .fetch_all(&mut *tx)
    .await?;
    let (chosen, cancelled) = choose(candidates, budget);
    if !cancelled.is_empty() {
        sqlx::query(
            "UPDATE deliveries SET state = 'cancelled', finished_at = now(),
                    last_error = 'subscription no longer active'
             WHERE id = ANY($1)",
        )
        .bind(&cancelled)
        .execute(&mut *tx)
        .await?;
    }
    let ids: Vec<i64> = chosen.iter().map(|c| c.id).collect();
    sqlx::query(
        "UPDATE deliveries SET attempts = attempts + 1, last_attempt_at = now(),
                next_attempt_at = now() + ($2::bigint * interval '1 millisecond')
         WHERE id = ANY($1)",
    )
    .bind(&ids)
    .bind(millis(lease))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(chosen)
}

/// Splits candidates into rows to send now (within the budget) and rows to cancel. Rows of a
/// subscription the read model does not know (yet) are left alone.
fn choose(candidates: Vec<Candidate>, budget: &Budget) -> (Vec<Claimed>, Vec<i64>) {
    let mut taken: HashMap<Uuid, usize> = HashMap::new();
    let mut chosen = Vec::new();
    let mut cancelled = Vec::new();
    for c in candidates {
        match (c.status.as_deref(), c.url) {
            (Some("active"), Some(url)) => {
                let n = taken.entry(c.subscription_id).or_default();
                if *n < budget.room(c.subscription_id) && chosen.len() < budget.total {
                    *n += 1;
                    chosen.push(Claimed {
                        id: c.id,
                        tenant: c.tenant,
                        subscription_id: c.subscription_id,
                        event_id: c.event_id,
                        body: c.body,
                        attempts: c.attempts + 1,
                        url,
                    });
                }
            }
            (Some("disabled" | "deleted"), _) => cancelled.push(c.id),
            _ => {}
        }
    }
    (chosen, cancelled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: i64, sub: u128, status: Option<&str>) -> Candidate {
        Candidate {
            id,
            tenant: "acme".into(),
            subscription_id: Uuid::from_u128(sub),
            event_id: format!("e{id}"),
            body: "{}".into(),
            attempts: 0,
            url: Some("http://127.0.0.1/".into()),
            status: status.map(str::to_owned),
        }
    }

    #[test]
    fn choosing_respects_per_subscription_room_and_the_total() {
        let budget = Budget {
            total: 3,
            per_subscription: 2,
            in_flight: HashMap::from([(Uuid::from_u128(1), 1)]),
        };
        let rows = vec![
            candidate(1, 1, Some("active")),
            candidate(2, 1, Some("active")),
            candidate(3, 2, Some("active")),
            candidate(4, 2, Some("active")),
            candidate(5, 3, Some("active")),
        ];
        let (chosen, cancelled) = choose(rows, &budget);
        let ids: Vec<i64> = chosen.iter().map(|c| c.id).collect();
        assert_eq!(ids, [1, 3, 4]);
        assert!(cancelled.is_empty());
        assert_eq!(chosen[0].attempts, 1);
    }

    #[test]
    fn inactive_subscriptions_are_cancelled_and_unknown_ones_left() {
        let budget = Budget {
            total: 10,
            per_subscription: 4,
            in_flight: HashMap::new(),
        };
        let rows = vec![
            candidate(1, 1, Some("disabled")),
            candidate(2, 2, Some("deleted")),
            candidate(3, 3, None),
            candidate(4, 4, Some("active")),
        ];
        let (chosen, cancelled) = choose(rows, &budget);
        assert_eq!(cancelled, [1, 2]);
        assert_eq!(chosen.len(), 1);
    }

    #[test]
    fn saturated_subscriptions_are_excluded_from_the_claim() {
        let budget = Budget {
            total: 10,
            per_subscription: 2,
            in_flight: HashMap::from([(Uuid::from_u128(1), 2), (Uuid::from_u128(2), 1)]),
        };
        assert_eq!(budget.saturated(), [Uuid::from_u128(1)]);
    }
}
