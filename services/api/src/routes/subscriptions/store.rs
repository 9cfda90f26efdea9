//! Reads behind the subscriptions API: the subscriptions read model (projected from the log)
//! and the notifier's delivery log. Every query is rooted at the caller's tenant, so another
//! tenant's subscription id is simply unknown.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use events::TenantId;
use uuid::Uuid;

use super::input::Page;
use super::{AttemptView, DeliveryView, SubscriptionView};
use crate::error::ApiError;
use crate::state::AppState;

const VIEW_COLUMNS: &str =
    "id, url, types, path_prefix, status, status_reason, created_by, created_at";

/// The tenant's subscriptions that are not deleted, oldest first.
pub(super) async fn list(
    state: &AppState,
    tenant: &TenantId,
) -> Result<Vec<SubscriptionView>, ApiError> {
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM subscriptions
         WHERE tenant = $1 AND status <> 'deleted' ORDER BY created_seq"
    );
    Ok(sqlx::query_as(&sql)
        .bind(tenant.as_str())
        .fetch_all(&state.pool)
        .await?)
}

/// One subscription that is not deleted.
pub(super) async fn get(
    state: &AppState,
    tenant: &TenantId,
    id: Uuid,
) -> Result<Option<SubscriptionView>, ApiError> {
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM subscriptions
         WHERE tenant = $1 AND id = $2 AND status <> 'deleted'"
    );
    Ok(sqlx::query_as(&sql)
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&state.pool)
        .await?)
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    event_id: String,
    event_type: String,
    seq: i64,
    state: String,
    attempts: i32,
    created_at: DateTime<Utc>,
    next_attempt_at: DateTime<Utc>,
    last_attempt_at: Option<DateTime<Utc>>,
    last_status: Option<i32>,
    last_error: Option<String>,
    finished_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    delivery_id: i64,
    attempt: i32,
    started_at: DateTime<Utc>,
    duration_ms: i32,
    status: Option<i32>,
    error: Option<String>,
}

/// One page of a subscription's deliveries, newest first, each with its attempts.
pub(super) async fn deliveries(
    state: &AppState,
    tenant: &TenantId,
    subscription: Uuid,
    page: &Page,
) -> Result<(Vec<DeliveryView>, Option<String>), ApiError> {
    let rows: Vec<DeliveryRow> = sqlx::query_as(
        "SELECT id, event_id, event_type, seq, state, attempts, created_at, next_attempt_at,
                last_attempt_at, last_status, last_error, finished_at
         FROM deliveries
         WHERE tenant = $1 AND subscription_id = $2 AND ($3::bigint IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4",
    )
    .bind(tenant.as_str())
    .bind(subscription)
    .bind(page.before)
    .bind(page.limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let more = rows.len() as i64 > page.limit;
    let rows: Vec<DeliveryRow> = rows.into_iter().take(page.limit as usize).collect();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut by_delivery = attempts_of(state, &ids).await?;
    let next_cursor = more
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let views = rows
        .into_iter()
        .map(|r| DeliveryView {
            attempt_log: by_delivery.remove(&r.id).unwrap_or_default(),
            next_attempt_at: (r.state == "pending").then_some(r.next_attempt_at),
            id: r.id,
            event_id: r.event_id,
            event_type: r.event_type,
            seq: r.seq,
            status: r.state,
            attempts: r.attempts,
            created_at: r.created_at,
            last_attempt_at: r.last_attempt_at,
            last_status: r.last_status,
            last_error: r.last_error,
            finished_at: r.finished_at,
        })
        .collect();
    Ok((views, next_cursor))
}

/// The attempts of the given deliveries, in order, by delivery.
async fn attempts_of(
    state: &AppState,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<AttemptView>>, ApiError> {
    let attempts: Vec<AttemptRow> = sqlx::query_as(
        "SELECT delivery_id, attempt, started_at, duration_ms, status, error
         FROM delivery_attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt",
    )
    .bind(ids)
    .fetch_all(&state.pool)
    .await?;
    let mut by_delivery: HashMap<i64, Vec<AttemptView>> = HashMap::new();
    for a in attempts {
        by_delivery
            .entry(a.delivery_id)
            .or_default()
            .push(AttemptView {
                attempt: a.attempt,
                started_at: a.started_at,
                duration_ms: a.duration_ms,
                status: a.status,
                error: a.error,
            });
    }
    Ok(by_delivery)
}
