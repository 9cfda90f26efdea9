//! Resuming a parked tenant: after an operator's fix, `file-engine projection resume --tenant
//! T` asks for it, and the owner of T's partition (between two batches, so the partition's
//! checkpoint stands still meanwhile) re-reads T's commits from the parked one up to the
//! checkpoint and applies them in log order, one transaction each with the parking row as the
//! guard. When it reaches the checkpoint the tenant is unparked and follows the live log again.
//! A commit that still fails parks the tenant there again with the new reason.

use std::time::Duration;

use async_nats::jetstream::consumer;
use futures::StreamExt;
use platform::projection;
use platform::streams::EVENTS_STREAM;

use crate::audit::ChainHeads;
use crate::partition::{apply_one, Entry, Partition};
use crate::ProjectorError;

/// How long one message of a catch-up read may take before the attempt is abandoned.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Catches up every tenant of the partition whose resume was requested.
pub(crate) async fn serve_requests(part: &Partition) -> Result<(), ProjectorError> {
    for (tenant, from) in
        projection::resume_requests(&part.pool, part.partition, part.partitions).await?
    {
        tracing::info!(%tenant, from, "projector: resuming a parked tenant");
        catch_up(part, &tenant, from).await?;
    }
    Ok(())
}

async fn catch_up(part: &Partition, tenant: &str, from: u64) -> Result<(), ProjectorError> {
    let through = projection::partition_checkpoint(&part.pool, part.partition).await?;
    let log = |e: &dyn std::fmt::Display| ProjectorError::Log(e.to_string());
    let stream = part
        .js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| log(&e))?;
    let reader = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: format!("fe.ev.{tenant}.>"),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from.max(1),
            },
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(|e| log(&e))?;
    // The number of matching messages at creation tells where the tenant's log ends, so the
    // read never waits for commits that will not come.
    let mut remaining = reader.cached_info().num_pending;
    let name = reader.cached_info().name.clone();
    let mut messages = reader.messages().await.map_err(|e| log(&e))?;
    let outcome = async {
        while remaining > 0 {
            let message = tokio::time::timeout(MESSAGE_TIMEOUT, messages.next())
                .await
                .map_err(|_| ProjectorError::Log("timed out reading the log".into()))?
                .ok_or_else(|| ProjectorError::Log("the log reader ended".into()))?
                .map_err(|e| log(&e))?;
            remaining -= 1;
            let entry = Entry::read(&message)?;
            if entry.seq() > through {
                break;
            }
            if !apply_step(part, tenant, &entry).await? {
                return Ok(());
            }
        }
        let mut tx = part.pool.begin().await?;
        if projection::lock_parked(&mut tx, tenant).await?.is_some() {
            projection::unpark(&mut tx, tenant).await?;
        }
        tx.commit().await?;
        tracing::info!(%tenant, through, "projector: tenant caught up and unparked");
        Ok(())
    }
    .await;
    // Service users may not delete consumers; then it expires after a minute of inactivity.
    let _ = stream.delete_consumer(&name).await;
    outcome
}

/// Applies one commit of a resuming tenant; false when it failed again (the tenant stays
/// parked at it) or the tenant is no longer parked.
async fn apply_step(part: &Partition, tenant: &str, entry: &Entry) -> Result<bool, ProjectorError> {
    let mut tx = part.pool.begin().await?;
    let Some(parked_at) = projection::lock_parked(&mut tx, tenant).await? else {
        return Ok(false);
    };
    if entry.seq() < parked_at {
        return Ok(true);
    }
    let mut heads = ChainHeads::default();
    match apply_one(&mut tx, entry, &mut heads).await {
        Ok(()) => {
            heads.flush(&mut tx).await?;
            projection::parked_progress(&mut tx, tenant, entry.seq() + 1).await?;
            tx.commit().await?;
            Ok(true)
        }
        Err(e) if e.is_transient() => Err(e),
        Err(e) => {
            let reason = e.to_string();
            projection::repark(&mut tx, tenant, entry.seq(), &reason).await?;
            tx.commit().await?;
            tracing::error!(%tenant, seq = entry.seq(), %reason, "projector: resume failed; still parked");
            Ok(false)
        }
    }
}
