//! The subscriptions read model (`subscriptions`), maintained from `subscription.created`,
//! `subscription.deleted` and `subscription.disabled`.
//!
//! Rows are never removed: a deleted or disabled subscription keeps its row with the status
//! and `ended_seq`, so the notifier can decide exactly which subscriptions were live at any
//! commit (`created_seq < seq` and `ended_seq` null or above it) and the API can answer 404
//! for deleted ones. Every value comes from the log (event data, the commit's JetStream time
//! and sequence), so a replay writes identical rows. The signing secret is not here (it is
//! never stored, see `platform::webhook`).

use events::subscription::SubscriptionEvent;
use platform::event_log::LoggedCommit;
use sqlx::{Postgres, Transaction};

use crate::ProjectorError;

/// Applies every event of a `subscription` commit.
pub async fn apply_commit(
    tx: &mut Transaction<'_, Postgres>,
    commit: &LoggedCommit,
) -> Result<(), ProjectorError> {
    for stored in &commit.events {
        let event: SubscriptionEvent =
            serde_json::from_value(stored.payload.clone()).map_err(|e| {
                ProjectorError::Corrupt {
                    seq: commit.stream_seq,
                    reason: format!("not a subscription event: {e}"),
                }
            })?;
        apply(tx, commit, &event).await?;
    }
    Ok(())
}

async fn apply(
    tx: &mut Transaction<'_, Postgres>,
    commit: &LoggedCommit,
    event: &SubscriptionEvent,
) -> Result<(), ProjectorError> {
    let tenant = commit.tenant.as_str();
    let seq = commit.stream_seq as i64;
    let query = match event {
        SubscriptionEvent::Created { subscription, by } => {
            let types: Vec<&str> = subscription.types.iter().map(String::as_str).collect();
            sqlx::query(
                "INSERT INTO subscriptions (tenant, id, url, types, path_prefix, status,
                                            created_by, created_at, created_seq)
                 VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8)
                 ON CONFLICT (tenant, id) DO NOTHING",
            )
            .bind(tenant)
            .bind(subscription.id)
            .bind(&subscription.url)
            .bind(types)
            .bind(subscription.path_prefix.as_str())
            .bind(by)
            .bind(commit.time)
            .bind(seq)
        }
        SubscriptionEvent::Deleted { id, .. } => sqlx::query(
            "UPDATE subscriptions SET status = 'deleted', ended_at = $3,
                    ended_seq = COALESCE(ended_seq, $4)
             WHERE tenant = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .bind(commit.time)
        .bind(seq),
        SubscriptionEvent::Disabled { id, reason, .. } => sqlx::query(
            "UPDATE subscriptions SET status = 'disabled', status_reason = $3, ended_at = $4,
                    ended_seq = $5
             WHERE tenant = $1 AND id = $2 AND status = 'active'",
        )
        .bind(tenant)
        .bind(id)
        .bind(reason)
        .bind(commit.time)
        .bind(seq),
    };
    query.execute(&mut **tx).await?;
    Ok(())
}
