//! Entry points of the projector: [`run`] (this replica's share of the partitions),
//! [`apply_commit`] (one commit, as its partition would), [`replay`] (rebuild everything from
//! the log), and the log reader they share.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use events::partition::partition_of_str;
use futures::{StreamExt, TryStreamExt};
use platform::event_log::LoggedCommit;
use platform::projection::{self, LayoutError};
use platform::streams::EVENTS_STREAM;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::audit::TaskContexts;
use crate::ownership::PARTITION_CLASS;
use crate::partition::{apply_batch, Entry, Scope, MAX_BATCH};

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("event log: {0}")]
    Log(String),
    #[error("commit {seq} cannot be projected: {reason}")]
    Corrupt { seq: u64, reason: String },
    #[error("{0}")]
    Layout(#[from] LayoutError),
}

/// Runs this replica's share of the `partitions` partitions until `shutdown` turns true.
/// Returns early (an error log says why) when the read models were built with another
/// partition count: that needs an operator's decision (see the README).
pub async fn run(
    js: jetstream::Context,
    pool: PgPool,
    partitions: u32,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match projection::ensure_layout(&pool, partitions).await {
            Ok(()) => break,
            Err(e @ LayoutError::Mismatch { .. }) => {
                tracing::error!(error = %e, "projector: refusing to start");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "projector: waiting for the database"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
    tracing::info!(partitions, "projector: active");
    crate::ownership::run(js, pool, partitions, shutdown).await;
}

/// An ordered consumer over the whole log from `start_seq`.
pub(crate) async fn ordered_messages(
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
                start_sequence: start_seq.max(1),
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

/// The partition count the read models were built with (created with the default of 8 when
/// nothing was built yet).
async fn built_partitions(pool: &PgPool) -> Result<u32, ProjectorError> {
    let built = projection::partition_checkpoints(pool).await?.len() as u32;
    if built > 0 {
        return Ok(built);
    }
    projection::ensure_layout(pool, 8).await?;
    Ok(8)
}

/// Applies one commit as its partition's projector would (checkpoint guard, parking) and
/// advances that partition's checkpoint. Returns whether it was applied (false: already
/// passed, or its tenant is parked).
pub async fn apply_commit(pool: &PgPool, commit: &LoggedCommit) -> Result<bool, ProjectorError> {
    let partitions = built_partitions(pool).await?;
    let p = partition_of_str(commit.tenant.as_str(), partitions);
    let scope = Scope {
        parts: &[p],
        partitions,
        through: commit.stream_seq,
        announce: &[p],
    };
    let applied = apply_batch(
        pool,
        &scope,
        &[Entry::Commit(commit.clone())],
        &mut TaskContexts::default(),
    )
    .await?;
    Ok(applied > 0)
}

/// How many partitions a replay applies at once (each holds a pooled connection).
const REPLAY_PARALLELISM: usize = 4;

/// Drops every read model row and rebuilds from the start of the log with the partition
/// count the read models have now; returns the position reached.
pub async fn replay(js: &jetstream::Context, pool: &PgPool) -> Result<u64, ProjectorError> {
    let partitions = built_partitions(pool).await?;
    replay_with_partitions(js, pool, partitions).await
}

/// [`replay`] into `partitions` partitions (the way to change `FE_PARTITIONS`). Every
/// projector must be stopped meanwhile: the replay holds every partition lock, so it waits
/// for running ones and they wait for it. Commits that cannot be applied park their tenant,
/// as they would live; the replay itself goes on.
pub async fn replay_with_partitions(
    js: &jetstream::Context,
    pool: &PgPool,
    partitions: u32,
) -> Result<u64, ProjectorError> {
    // Every partition any configuration can have (FE_PARTITIONS is at most 1024), so that no
    // projector of the old or the new layout runs meanwhile.
    let mut locks = pool.acquire().await?.detach();
    for p in 0..1024 {
        loop {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(PARTITION_CLASS)
                .bind(p)
                .fetch_one(&mut locks)
                .await?;
            if got {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let mut tx = pool.begin().await?;
    sqlx::query("TRUNCATE tasks, task_paths, entries, tenant_usage, file_versions, acl_rules, acl_versions, subscriptions, tenant_quotas, audit_events, audit_heads, audit_verification, projection_checkpoints")
        .execute(&mut *tx)
        .await?;
    projection::reset_layout(&mut tx, partitions).await?;
    tx.commit().await?;
    let last = last_stream_seq(js).await?;
    if last > 0 {
        let mut messages = ordered_messages(js, 1).await?;
        // One read batch holds about a full batch for each partition, and the partitions
        // apply it side by side (their rows never overlap: a tenant lives in one partition).
        let read_batch = MAX_BATCH * partitions.min(8) as usize;
        let mut batch = Vec::with_capacity(read_batch);
        let mut contexts: Vec<TaskContexts> =
            (0..partitions).map(|_| TaskContexts::default()).collect();
        let mut reached = 0;
        while reached < last {
            let message = messages
                .next()
                .await
                .ok_or_else(|| ProjectorError::Log("the log reader ended".into()))?
                .map_err(|e| ProjectorError::Log(e.to_string()))?;
            let entry = Entry::read(&message)?;
            reached = entry.seq();
            batch.push(entry);
            if batch.len() >= read_batch || reached >= last {
                let batch_ref = &batch;
                futures::stream::iter(contexts.iter_mut().enumerate())
                    .map(|(p, contexts)| async move {
                        let part = [p as u32];
                        let scope = Scope {
                            parts: &part,
                            partitions,
                            through: reached,
                            announce: &part,
                        };
                        apply_batch(pool, &scope, batch_ref, contexts).await
                    })
                    .buffer_unordered(REPLAY_PARALLELISM)
                    .try_collect::<Vec<usize>>()
                    .await?;
                batch.clear();
            }
        }
    }
    drop(locks);
    Ok(platform::db::checkpoint(pool).await?)
}

pub(crate) async fn last_stream_seq(js: &jetstream::Context) -> Result<u64, ProjectorError> {
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
