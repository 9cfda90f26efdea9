//! Following the log: the ordered consumer, the per-commit transaction, leadership, replay.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use platform::db::{CHECKPOINT, PROJECTED_CHANNEL};
use platform::event_log::LoggedCommit;
use platform::streams::EVENTS_STREAM;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::watch;

/// Advisory lock key of the active projector ("fe-proj" in ASCII).
const LEADER_LOCK: i64 = 0x0066_652d_7072_6f6a;

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("event log: {0}")]
    Log(String),
    #[error("commit {seq} cannot be projected: {reason}")]
    Corrupt { seq: u64, reason: String },
}

/// Runs until `shutdown` turns true; reconnects with backoff after errors.
pub async fn run(js: jetstream::Context, pool: PgPool, mut shutdown: watch::Receiver<bool>) {
    let leader = loop {
        match acquire_leadership(&pool).await {
            Ok(conn) => break conn,
            Err(e) => tracing::warn!(error = %e, "projector: waiting for leadership"),
        }
        if wait_or_shutdown(&mut shutdown, Duration::from_secs(1)).await {
            return;
        }
    };
    tracing::info!("projector: active");
    let mut backoff = Duration::from_millis(200);
    while !*shutdown.borrow() {
        match follow(&js, &pool, &mut shutdown).await {
            Ok(()) => break,
            Err(e) => {
                metrics::counter!("fe_projector_errors_total").increment(1);
                tracing::error!(error = %e, "projector: stopped following the log, retrying");
            }
        }
        if wait_or_shutdown(&mut shutdown, backoff).await {
            break;
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    drop(leader);
}

/// Takes the leader lock on a connection detached from the pool: the lock lives exactly as
/// long as that connection, so however the holder ends (return, error, crash), dropping the
/// connection closes it and releases the lock; it can never leak into a pooled connection.
async fn acquire_leadership(pool: &PgPool) -> Result<sqlx::PgConnection, sqlx::Error> {
    let mut conn = pool.acquire().await?.detach();
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut conn)
            .await?;
        if got {
            return Ok(conn);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Returns true when shutdown was requested during the wait.
async fn wait_or_shutdown(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        r = shutdown.changed() => r.is_err() || *shutdown.borrow(),
    }
}

async fn follow(
    js: &jetstream::Context,
    pool: &PgPool,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ProjectorError> {
    let start = platform::db::checkpoint(pool).await? + 1;
    let mut messages = ordered_messages(js, start).await?;
    loop {
        let next = tokio::select! {
            m = messages.next() => m,
            _ = shutdown.changed() => return Ok(()),
        };
        let Some(message) = next else {
            return Err(ProjectorError::Log("the ordered consumer ended".into()));
        };
        let message = message.map_err(|e| ProjectorError::Log(e.to_string()))?;
        let commit =
            LoggedCommit::from_message(&message).map_err(|e| ProjectorError::Log(e.to_string()))?;
        apply_commit(pool, &commit).await?;
        // Commits still ahead of the read models: the projection lag operators alert on.
        if let Ok(info) = message.info() {
            metrics::gauge!("fe_projector_lag_commits").set(info.pending as f64);
        }
        metrics::gauge!("fe_projector_checkpoint").set(commit.stream_seq as f64);
    }
}

async fn ordered_messages(
    js: &jetstream::Context,
    start_seq: u64,
) -> Result<consumer::pull::Ordered, ProjectorError> {
    let stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| ProjectorError::Log(e.to_string()))?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start_seq,
            },
            filter_subject: "fe.ev.>".into(),
            ..Default::default()
        })
        .await
        .map_err(|e| ProjectorError::Log(e.to_string()))?;
    consumer
        .messages()
        .await
        .map_err(|e| ProjectorError::Log(e.to_string()))
}

/// Applies one commit and advances the checkpoint in one transaction; a commit at or below
/// the checkpoint is ignored. Returns whether it was applied.
pub async fn apply_commit(pool: &PgPool, commit: &LoggedCommit) -> Result<bool, ProjectorError> {
    let started = std::time::Instant::now();
    let mut tx = pool.begin().await?;
    let done: Option<i64> = sqlx::query_scalar(
        "SELECT last_seq FROM projection_checkpoints WHERE projection = $1 FOR UPDATE",
    )
    .bind(CHECKPOINT)
    .fetch_optional(&mut *tx)
    .await?;
    if done.is_some_and(|d| d >= commit.stream_seq as i64) {
        return Ok(false);
    }
    apply_events(&mut tx, commit).await?;
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, last_seq) VALUES ($1, $2)
         ON CONFLICT (projection) DO UPDATE SET last_seq = EXCLUDED.last_seq",
    )
    .bind(CHECKPOINT)
    .bind(commit.stream_seq as i64)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(PROJECTED_CHANNEL)
        .bind(commit.stream_seq.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    metrics::counter!("fe_projector_commits_total").increment(1);
    metrics::histogram!("fe_projector_apply_seconds").record(started.elapsed().as_secs_f64());
    Ok(true)
}

async fn apply_events(
    tx: &mut Transaction<'_, Postgres>,
    commit: &LoggedCommit,
) -> Result<(), ProjectorError> {
    // Every commit of every aggregate type is audited.
    crate::audit::apply_commit(tx, commit).await?;
    if commit.aggregate_type == "acl" {
        return crate::acl::apply_commit(tx, commit).await;
    }
    if commit.aggregate_type == "subscription" {
        return crate::subscriptions::apply_commit(tx, commit).await;
    }
    if commit.aggregate_type == "storage" {
        return crate::quotas::apply_commit(tx, commit).await;
    }
    if commit.aggregate_type != "task" {
        // Other aggregates (e.g. subscriptions) have their own projections; unknown types are
        // skipped so an older projector never blocks on a newer log.
        return Ok(());
    }
    for stored in &commit.events {
        let corrupt = |reason: String| ProjectorError::Corrupt {
            seq: commit.stream_seq,
            reason,
        };
        let payload = events::upcast::upcast(
            &stored.event_type,
            &stored.event_version,
            stored.payload.clone(),
        )
        .map_err(|e| corrupt(e.to_string()))?;
        let event: events::task::TaskEvent =
            serde_json::from_value(payload).map_err(|e| corrupt(e.to_string()))?;
        crate::tasks::apply(tx, commit, &event).await?;
        crate::catalogue::apply(tx, commit, &event).await?;
    }
    Ok(())
}

/// Drops every read model row and rebuilds from the start of the log, then returns the
/// checkpoint reached. The projector service must be stopped meanwhile (the advisory lock
/// makes a running one and the replay exclusive).
pub async fn replay(js: &jetstream::Context, pool: &PgPool) -> Result<u64, ProjectorError> {
    let leader = acquire_leadership(pool).await?;
    sqlx::query("TRUNCATE tasks, entries, file_versions, acl_rules, acl_versions, subscriptions, tenant_quotas, audit_events, audit_heads, projection_checkpoints")
        .execute(pool)
        .await?;
    let last = last_stream_seq(js).await?;
    if last > 0 {
        let mut messages = ordered_messages(js, 1).await?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| ProjectorError::Log(e.to_string()))?;
            let commit = LoggedCommit::from_message(&message)
                .map_err(|e| ProjectorError::Log(e.to_string()))?;
            apply_commit(pool, &commit).await?;
            if commit.stream_seq >= last {
                break;
            }
        }
    }
    drop(leader);
    Ok(platform::db::checkpoint(pool).await?)
}

async fn last_stream_seq(js: &jetstream::Context) -> Result<u64, ProjectorError> {
    let mut stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| ProjectorError::Log(e.to_string()))?;
    let info = stream
        .info()
        .await
        .map_err(|e| ProjectorError::Log(e.to_string()))?;
    Ok(info.state.last_sequence)
}
