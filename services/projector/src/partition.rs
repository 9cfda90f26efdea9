//! Following one partition of the log: read commits from the partition's checkpoint, apply
//! them in batches (one transaction per batch, bounded by count and time, with the checkpoint
//! of the last commit), hold the commits of parked tenants, and park a tenant whose commit
//! fails for a reason retrying will not fix, so that every other tenant goes on.
//!
//! The partition's checkpoint in PostgreSQL is its durable position: it is written in the same
//! transaction as the effects, so the reader itself is an ordered (ephemeral) consumer that
//! restarts from the checkpoint, and redelivery can never apply a commit twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use events::partition::partition_of_str;
use events::task::TaskEvent;
use futures::StreamExt;
use platform::event_log::LoggedCommit;
use platform::projection;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::apply::{apply_events, task_events};
use crate::audit::{ChainHeads, TaskContexts, Writes};
use crate::catalogue::PendingDirs;
use crate::tasks::TaskChanges;
use crate::ProjectorError;

/// Most commits applied in one transaction.
pub const MAX_BATCH: usize = 256;
/// Longest a batch waits for more commits once it has one.
pub const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// How often an idle follower looks for resume requests.
const RESUME_POLL: Duration = Duration::from_secs(1);
/// How long a follower may see nothing before it asks the stream whether it fell silent
/// while the log went on (an ordered consumer can stall across a stream leader change);
/// a silent reader behind the log is recreated from the checkpoint.
const STALL_CHECK: Duration = Duration::from_secs(3);

/// One partition of `partitions`, as followed by its owner.
#[derive(Clone)]
pub(crate) struct Partition {
    pub js: jetstream::Context,
    pub pool: PgPool,
    pub partition: u32,
    pub partitions: u32,
}

/// One position of the log as the projector sees it.
pub(crate) enum Entry {
    Commit(LoggedCommit),
    /// A message that is not a valid commit: it parks its tenant when the subject names one.
    Unreadable {
        seq: u64,
        tenant: Option<String>,
        reason: String,
    },
}

impl Entry {
    pub fn read(message: &jetstream::Message) -> Result<Self, ProjectorError> {
        match LoggedCommit::from_message(message) {
            Ok(commit) => Ok(Self::Commit(commit)),
            Err(e) => {
                let seq = message
                    .info()
                    .map_err(|e| ProjectorError::Log(e.to_string()))?
                    .stream_sequence;
                // `fe.ev.<tenant>.<type>.<id>`: the tenant token, when it is a valid tenant.
                let tenant = message
                    .subject
                    .as_str()
                    .split('.')
                    .nth(2)
                    .filter(|t| events::TenantId::parse(t).is_ok())
                    .map(str::to_owned);
                Ok(Self::Unreadable {
                    seq,
                    tenant,
                    reason: e.to_string(),
                })
            }
        }
    }

    pub fn seq(&self) -> u64 {
        match self {
            Self::Commit(c) => c.stream_seq,
            Self::Unreadable { seq, .. } => *seq,
        }
    }

    pub fn tenant(&self) -> Option<&str> {
        match self {
            Self::Commit(c) => Some(c.tenant.as_str()),
            Self::Unreadable { tenant, .. } => tenant.as_deref(),
        }
    }
}

/// How long an owned partition that only sees other partitions' commits may leave its
/// checkpoint behind the log (log-wide readers wait for the lowest checkpoint of all
/// partitions).
const IDLE_FLUSH: Duration = Duration::from_millis(100);

/// The tenant token of an event subject `fe.ev.<tenant>.<type>.<id>`, unchecked: enough to
/// route a commit to its partition without parsing it.
fn subject_tenant(subject: &str) -> Option<&str> {
    subject.split('.').nth(2)
}

/// Where one owned partition stands in the group's reading.
struct Owned {
    part: Partition,
    label: String,
    /// Kept between batches (the audit's task contexts).
    contexts: TaskContexts,
    /// The last position read past the checkpoint with nothing of this partition in it,
    /// not written yet; and when the checkpoint was last written.
    skipped: Option<u64>,
    flushed: Instant,
}

/// Follows every partition in `owned` (this replica's share) with **one** reader of the log
/// until `stop` turns true. Returns an error (to be retried by the caller with backoff) on
/// transient failures; nothing is skipped, the next attempt restarts from the checkpoints.
///
/// The reader starts after the lowest checkpoint of the group and routes each commit to its
/// partition by the tenant token of its subject (no parsing for other replicas' partitions).
/// Each read window (bounded by count and [`BATCH_WINDOW`]) is applied as one transaction per
/// partition that has commits in it, the partitions side by side; a partition ignores what it
/// has already passed. A partition with nothing in a window moves its checkpoint at least
/// every [`IDLE_FLUSH`], so log-wide readers are not held up by a quiet one. One reader per
/// replica instead of one per partition: with 8 partitions every commit had been delivered
/// and skipped 8 times.
pub(crate) async fn follow(
    group: &[Partition],
    stop: &mut watch::Receiver<bool>,
) -> Result<(), ProjectorError> {
    let Some(first_part) = group.first() else {
        // Nothing owned: wait to be stopped.
        let _ = stop.changed().await;
        return Ok(());
    };
    let (js, pool, partitions) = (&first_part.js, &first_part.pool, first_part.partitions);
    let mut owned: HashMap<u32, Owned> = HashMap::new();
    let mut start = u64::MAX;
    for part in group {
        start = start.min(projection::partition_checkpoint(pool, part.partition).await? + 1);
        owned.insert(
            part.partition,
            Owned {
                part: part.clone(),
                label: part.partition.to_string(),
                contexts: TaskContexts::default(),
                skipped: None,
                flushed: Instant::now(),
            },
        );
    }
    let read_window = MAX_BATCH * owned.len().min(8);
    let mut messages = crate::runner::ordered_messages(js, start).await?;
    let mut resume_checked = Instant::now() - RESUME_POLL;
    // The last position this reader delivered, and when something last arrived.
    let mut seen_through = start - 1;
    let mut heard = Instant::now();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        for o in owned.values_mut() {
            if let Some(seq) = o.skipped.filter(|_| o.flushed.elapsed() >= IDLE_FLUSH) {
                advance_only(pool, o.part.partition, seq).await?;
                o.skipped = None;
                o.flushed = Instant::now();
            }
        }
        if resume_checked.elapsed() >= RESUME_POLL {
            for o in owned.values() {
                crate::resume::serve_requests(&o.part).await?;
            }
            resume_checked = Instant::now();
        }
        let wait = if owned.values().any(|o| o.skipped.is_some()) {
            IDLE_FLUSH
        } else {
            RESUME_POLL
        };
        let first = tokio::select! {
            m = messages.next() => m,
            _ = stop.changed() => return Ok(()),
            _ = tokio::time::sleep(wait) => {
                if heard.elapsed() >= STALL_CHECK {
                    if crate::runner::last_stream_seq(js).await? > seen_through {
                        return Err(ProjectorError::Log(
                            "the log reader fell silent behind the log".into(),
                        ));
                    }
                    heard = Instant::now();
                }
                continue;
            }
        };
        heard = Instant::now();
        let first = first.ok_or_else(|| ProjectorError::Log("the log reader ended".into()))?;
        let first = first.map_err(|e| ProjectorError::Log(e.to_string()))?;
        let mut pending = 0;
        let mut last_seq = 0;
        let mut read = 0;
        let mut batches: HashMap<u32, Vec<Entry>> = HashMap::new();
        let mut take = |m: &jetstream::Message| -> Result<(), ProjectorError> {
            let info = m.info().map_err(|e| ProjectorError::Log(e.to_string()))?;
            last_seq = info.stream_sequence;
            pending = info.pending;
            let p =
                subject_tenant(m.subject.as_str()).map_or(0, |t| partition_of_str(t, partitions));
            if owned.contains_key(&p) {
                batches.entry(p).or_default().push(Entry::read(m)?);
            }
            Ok(())
        };
        take(&first)?;
        read += 1;
        let window = tokio::time::Instant::now() + BATCH_WINDOW;
        while read < read_window {
            match tokio::time::timeout_at(window, messages.next()).await {
                Ok(Some(m)) => {
                    take(&m.map_err(|e| ProjectorError::Log(e.to_string()))?)?;
                    read += 1;
                }
                Ok(None) => return Err(ProjectorError::Log("the log reader ended".into())),
                Err(_) => break,
            }
        }
        seen_through = seen_through.max(last_seq);
        let applying = owned.iter_mut().filter_map(|(p, o)| {
            let batch = batches.get(p)?;
            Some(async move {
                apply_batch(pool, o.part.partition, partitions, batch, &mut o.contexts).await
            })
        });
        // Every partition's transaction runs to its end before an error is returned: none is
        // cancelled halfway through its commit.
        for applied in futures::future::join_all(applying).await {
            applied?;
        }
        for (p, o) in owned.iter_mut() {
            let own_last = batches.get(p).and_then(|b| b.last()).map_or(0, Entry::seq);
            if own_last > 0 && own_last == last_seq {
                o.skipped = None;
                o.flushed = Instant::now();
            } else if last_seq > own_last {
                o.skipped = Some(last_seq);
            }
            metrics::gauge!("fe_projector_lag_commits", "partition" => o.label.clone())
                .set(pending as f64);
            metrics::gauge!("fe_projector_checkpoint", "partition" => o.label.clone())
                .set(last_seq as f64);
        }
    }
}

/// Moves the checkpoint over positions that held nothing of this partition.
async fn advance_only(pool: &PgPool, partition: u32, seq: u64) -> Result<(), ProjectorError> {
    let mut tx = pool.begin().await?;
    let done = projection::lock_partition(&mut tx, partition).await?;
    if seq > done {
        projection::advance_partition(&mut tx, partition, seq).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// How [`apply_batch`] isolates the commits of one batch from each other.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Isolation {
    /// No savepoints: the common case, where every commit applies. A permanent failure
    /// rolls the whole batch back and it is applied again [`Isolation::PerCommit`].
    Optimistic,
    /// One savepoint per commit, so a commit that fails for good parks its tenant alone.
    PerCommit,
}

/// Applies the commits of `batch` that belong to `partition` in one transaction and moves the
/// partition's checkpoint to the last position of the batch. Commits at or below the
/// checkpoint are ignored (redelivery, a second owner); commits of parked tenants are held;
/// a commit that fails permanently is rolled back to its savepoint and parks its tenant.
/// A transient failure rolls the whole batch back and is returned. Returns how many commits
/// were applied.
///
/// The batch is first tried without savepoints (two round trips fewer per commit); only a
/// batch holding a commit that fails for good is redone with one savepoint per commit.
pub(crate) async fn apply_batch(
    pool: &PgPool,
    partition: u32,
    partitions: u32,
    batch: &[Entry],
    contexts: &mut TaskContexts,
) -> Result<usize, ProjectorError> {
    let started = Instant::now();
    let optimistic = apply_batch_as(
        pool,
        partition,
        partitions,
        batch,
        Isolation::Optimistic,
        contexts,
    )
    .await;
    let applied = match optimistic {
        Err(e) if !e.is_transient() => {
            apply_batch_as(
                pool,
                partition,
                partitions,
                batch,
                Isolation::PerCommit,
                contexts,
            )
            .await?
        }
        other => other?,
    };
    metrics::counter!("fe_projector_commits_total").increment(applied as u64);
    metrics::histogram!("fe_projector_batch_seconds").record(started.elapsed().as_secs_f64());
    Ok(applied)
}

async fn apply_batch_as(
    pool: &PgPool,
    partition: u32,
    partitions: u32,
    batch: &[Entry],
    isolation: Isolation,
    contexts: &mut TaskContexts,
) -> Result<usize, ProjectorError> {
    let Some(last) = batch.last() else {
        return Ok(0);
    };
    let mut tx = pool.begin().await?;
    let done = projection::lock_partition(&mut tx, partition).await?;
    if last.seq() <= done {
        return Ok(0);
    }
    let mut parked: HashMap<String, u64> =
        projection::parked_in_partition(&mut tx, partition, partitions).await?;
    let mut heads = ChainHeads::with_contexts(std::mem::take(contexts));
    // Task events of the admitted commits, decoded once, by log position.
    let mut decoded: HashMap<u64, Vec<TaskEvent>> = HashMap::new();
    if isolation == Isolation::Optimistic {
        // The task table of the whole batch, set-based, ahead of the rest (see `tasks`).
        let mut tasks = TaskChanges::default();
        for entry in batch.iter().filter(|e| e.seq() > done) {
            if let (Entry::Commit(commit), Admission::Apply(_)) =
                (entry, admit(entry, partition, partitions, &parked))
            {
                let events = task_events(commit)?;
                tasks.record(commit, &events)?;
                decoded.insert(commit.stream_seq, events);
            }
        }
        tasks.flush(&mut tx).await?;
    }
    let mut applied = 0;
    let mut dirs = PendingDirs::default();
    for entry in batch.iter().filter(|e| e.seq() > done) {
        let tenant = match admit(entry, partition, partitions, &parked) {
            Admission::Apply(tenant) => tenant,
            Admission::OtherPartition => continue,
            Admission::NoTenant => {
                // No tenant to park: it cannot belong to any read model. Loud, never silent.
                metrics::counter!("fe_projector_unreadable_commits_total").increment(1);
                tracing::error!(
                    seq = entry.seq(),
                    "projector: a log entry names no tenant; skipped"
                );
                continue;
            }
            Admission::Held => {
                metrics::counter!("fe_projection_held_commits_total").increment(1);
                continue;
            }
        };
        let applying = std::time::Instant::now();
        let result = match isolation {
            Isolation::Optimistic => match entry {
                Entry::Commit(commit) => {
                    let events = decoded.remove(&commit.stream_seq).unwrap_or_default();
                    let deferred = Writes::Deferred;
                    apply_events(&mut tx, commit, &events, &mut heads, deferred, &mut dirs)
                        .await
                        .map(|advance| heads.advance(advance))
                }
                Entry::Unreadable { .. } => apply_one(&mut tx, entry, &mut heads).await,
            },
            Isolation::PerCommit => apply_one(&mut tx, entry, &mut heads).await,
        };
        match result {
            Ok(()) => {
                applied += 1;
                metrics::histogram!("fe_projector_apply_seconds")
                    .record(applying.elapsed().as_secs_f64());
            }
            Err(e) if e.is_transient() || isolation == Isolation::Optimistic => return Err(e),
            Err(e) => {
                let reason = e.to_string();
                projection::park(&mut tx, tenant, entry.seq(), &reason).await?;
                parked.insert(tenant.to_owned(), entry.seq());
                metrics::counter!("fe_projection_parkings_total").increment(1);
                tracing::error!(%tenant, seq = entry.seq(), %reason, "projector: tenant parked");
            }
        }
    }
    dirs.flush(&mut tx).await?;
    heads.flush(&mut tx).await?;
    projection::advance_partition(&mut tx, partition, last.seq()).await?;
    tx.commit().await?;
    *contexts = heads.into_contexts();
    Ok(applied)
}

/// What a batch does with one of its entries.
enum Admission<'a> {
    /// Apply it: it is of this partition's tenant `.0`, which is not parked.
    Apply(&'a str),
    /// Another partition's tenant.
    OtherPartition,
    /// It names no tenant.
    NoTenant,
    /// Its tenant is parked: held until resumed.
    Held,
}

fn admit<'a>(
    entry: &'a Entry,
    partition: u32,
    partitions: u32,
    parked: &HashMap<String, u64>,
) -> Admission<'a> {
    match entry.tenant() {
        None => Admission::NoTenant,
        Some(tenant) if partition_of_str(tenant, partitions) != partition => {
            Admission::OtherPartition
        }
        Some(tenant) if parked.contains_key(tenant) => Admission::Held,
        Some(tenant) => Admission::Apply(tenant),
    }
}

/// Applies one entry inside a savepoint of `tx`, so that a permanent failure undoes exactly
/// this commit and leaves the rest of the batch intact; its audit chain head advances only
/// when the commit is kept.
pub(crate) async fn apply_one(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    entry: &Entry,
    heads: &mut ChainHeads,
) -> Result<(), ProjectorError> {
    let commit = match entry {
        Entry::Commit(c) => c,
        Entry::Unreadable { seq, reason, .. } => {
            return Err(ProjectorError::Corrupt {
                seq: *seq,
                reason: reason.clone(),
            })
        }
    };
    let events = task_events(commit)?;
    let mut savepoint = sqlx::Connection::begin(&mut **tx).await?;
    let mut dirs = PendingDirs::default();
    let applied = match apply_events(
        &mut savepoint,
        commit,
        &events,
        heads,
        Writes::Immediate,
        &mut dirs,
    )
    .await
    {
        Ok(advance) => dirs.flush(&mut savepoint).await.map(|()| advance),
        Err(e) => Err(e),
    };
    match applied {
        Ok(advance) => {
            savepoint.commit().await?;
            heads.advance(advance);
            Ok(())
        }
        Err(e) => {
            savepoint.rollback().await?;
            Err(e)
        }
    }
}
