//! Following one partition of the log: read commits from the partition's checkpoint, apply
//! them in batches (one transaction per batch, bounded by count and time, with the checkpoint
//! of the last commit), hold the commits of parked tenants, and park a tenant whose commit
//! fails for a reason retrying will not fix, so that every other tenant goes on.
//!
//! The partition's checkpoint in PostgreSQL is its durable position: it is written in the same
//! transaction as the effects, so the reader itself is an ordered (ephemeral) consumer that
//! restarts from the checkpoint, and redelivery can never apply a commit twice.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use events::partition::partition_of_str;
use events::task::TaskEvent;
use futures::{FutureExt, StreamExt};
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
/// Longest a batch waits for more commits once it has one, while the log holds more than
/// the reader was sent; a reader at the head of the log applies what it has at once.
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
                // The tenant token of the subject, when it is a valid tenant.
                let tenant = subject_tenant(message.subject.as_str())
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
/// checkpoint behind the log, or unannounced (log-wide readers wait for the lowest
/// checkpoint of all partitions).
const IDLE_FLUSH: Duration = Duration::from_millis(100);

/// The tenant token of an event subject `fe.ev.<tenant>.<type>.<id>`, unchecked: enough to
/// route a commit to its partition without parsing it.
fn subject_tenant(subject: &str) -> Option<&str> {
    subject.split('.').nth(2)
}

/// Follows every partition in `group` (this replica's share) with **one** reader of the log
/// until `stop` turns true. Returns an error (to be retried by the caller with backoff) on
/// transient failures; nothing is skipped, the next attempt restarts from the checkpoints.
///
/// The reader starts after the lowest checkpoint of the group and keeps the commits of the
/// group's partitions, recognised by the tenant token of their subject (no parsing for other
/// replicas' partitions). Each read window is applied as **one** transaction for the whole
/// group, which moves every checkpoint of the group to the window's last position; a
/// partition ignores what it has already passed. A window is bounded by count, and by
/// [`BATCH_WINDOW`] while the log holds more; at the head of the log it is applied at once.
/// A window announces the partitions it holds commits of; the checkpoints of the others (and
/// windows with nothing of the group in them) are written and announced at least every
/// [`IDLE_FLUSH`], so log-wide readers are not held up by a quiet partition or replica.
///
/// Measured on 2026-12-08 (release build, 2 cores): one reader per partition delivered and
/// skipped every commit once per partition; one transaction per partition and window cost
/// every partition the transaction's fixed round trips, so 8 partitions drained slower than
/// 1 on one replica.
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
    let parts: Vec<u32> = group.iter().map(|p| p.partition).collect();
    let owned: HashSet<u32> = parts.iter().copied().collect();
    let labels: Vec<String> = parts.iter().map(u32::to_string).collect();
    // After the lowest checkpoint of the group (a partition without a row: from the start).
    let checkpoints: HashMap<u32, u64> = projection::partition_checkpoints(pool)
        .await?
        .into_iter()
        .collect();
    let start = parts
        .iter()
        .map(|p| checkpoints.get(p).copied().unwrap_or(0) + 1)
        .min()
        .unwrap_or(1);
    let read_window = MAX_BATCH * parts.len().min(8);
    let mut messages = crate::runner::ordered_messages(js, start).await?;
    // Kept between batches (the audit's task contexts).
    let mut contexts = TaskContexts::default();
    // The last position read whose checkpoints are not all written and announced yet, and
    // when every partition of the group was last announced. A window announces the
    // partitions it holds commits of, and all of them at most every [`IDLE_FLUSH`] (each
    // announcement wakes the waiters of every process); what is owed is written and
    // announced [`IDLE_FLUSH`] after the last full announcement, even if the log goes quiet.
    let mut owed: Option<u64> = None;
    let mut announced = Instant::now();
    let mut resume_checked = Instant::now() - RESUME_POLL;
    // The last position this reader delivered, and when something last arrived.
    let mut seen_through = start - 1;
    let mut heard = Instant::now();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        if let Some(seq) = owed.filter(|_| announced.elapsed() >= IDLE_FLUSH) {
            projection::advance_partitions(&mut *pool.acquire().await?, &parts, seq, &parts)
                .await?;
            owed = None;
            announced = Instant::now();
        }
        if resume_checked.elapsed() >= RESUME_POLL {
            for part in group {
                crate::resume::serve_requests(part).await?;
            }
            resume_checked = Instant::now();
        }
        let wait = if owed.is_some() {
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
        let mut last_seq = 0;
        let mut read = 0;
        let mut batch: Vec<Entry> = Vec::new();
        let mut touched: Vec<u32> = Vec::new();
        // Takes one message into the batch when it is the group's; returns what the log held
        // beyond it.
        let mut take = |m: &jetstream::Message| -> Result<u64, ProjectorError> {
            let info = m.info().map_err(|e| ProjectorError::Log(e.to_string()))?;
            last_seq = info.stream_sequence;
            let p =
                subject_tenant(m.subject.as_str()).map_or(0, |t| partition_of_str(t, partitions));
            if owned.contains(&p) {
                batch.push(Entry::read(m)?);
                if !touched.contains(&p) {
                    touched.push(p);
                }
            }
            Ok(info.pending)
        };
        let mut pending = take(&first)?;
        read += 1;
        let window = tokio::time::Instant::now() + BATCH_WINDOW;
        while read < read_window {
            let next = if pending == 0 {
                // At the head of the log: apply what is here, unless more already arrived.
                // No waiting for more (smart batching): what arrives while this window is
                // applied makes the next one, so batches grow with the load by themselves.
                match messages.next().now_or_never() {
                    Some(next) => Ok(next),
                    None => break,
                }
            } else {
                tokio::time::timeout_at(window, messages.next()).await
            };
            match next {
                Ok(Some(m)) => {
                    pending = take(&m.map_err(|e| ProjectorError::Log(e.to_string()))?)?;
                    read += 1;
                }
                Ok(None) => return Err(ProjectorError::Log("the log reader ended".into())),
                Err(_) => break,
            }
        }
        seen_through = seen_through.max(last_seq);
        if batch.is_empty() {
            owed = Some(last_seq);
        } else {
            let all = announced.elapsed() >= IDLE_FLUSH;
            let scope = Scope {
                parts: &parts,
                partitions,
                through: last_seq,
                announce: if all { &parts } else { &touched },
            };
            apply_batch(pool, &scope, &batch, &mut contexts).await?;
            if all {
                owed = None;
                announced = Instant::now();
            } else {
                owed = Some(last_seq);
            }
        }
        for label in &labels {
            metrics::gauge!("fe_projector_lag_commits", "partition" => label.clone())
                .set(pending as f64);
            metrics::gauge!("fe_projector_checkpoint", "partition" => label.clone())
                .set(last_seq as f64);
        }
    }
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

/// The partitions one transaction applies a batch for, and the log position the batch
/// reaches: every commit of those partitions up to `through` is in the batch, so each of
/// their checkpoints moves to `through`; those of `announce` are announced (`NOTIFY`).
pub(crate) struct Scope<'a> {
    pub parts: &'a [u32],
    pub partitions: u32,
    pub through: u64,
    pub announce: &'a [u32],
}

/// Applies the commits of `batch` (in log order) that belong to the partitions of `scope` in
/// one transaction and moves those partitions' checkpoints to `scope.through`. Commits at or
/// below their partition's checkpoint are ignored (redelivery, a second owner); commits of
/// parked tenants are held; a commit that fails permanently is rolled back to its savepoint
/// and parks its tenant. A transient failure rolls the whole batch back and is returned.
/// Returns how many commits were applied.
///
/// The batch is first tried without savepoints (two round trips fewer per commit); only a
/// batch holding a commit that fails for good is redone with one savepoint per commit.
pub(crate) async fn apply_batch(
    pool: &PgPool,
    scope: &Scope<'_>,
    batch: &[Entry],
    contexts: &mut TaskContexts,
) -> Result<usize, ProjectorError> {
    let started = Instant::now();
    let optimistic = apply_batch_as(pool, scope, batch, Isolation::Optimistic, contexts).await;
    let applied = match optimistic {
        Err(e) if !e.is_transient() => {
            apply_batch_as(pool, scope, batch, Isolation::PerCommit, contexts).await?
        }
        other => other?,
    };
    metrics::counter!("fe_projector_commits_total").increment(applied as u64);
    metrics::histogram!("fe_projector_batch_seconds").record(started.elapsed().as_secs_f64());
    Ok(applied)
}

async fn apply_batch_as(
    pool: &PgPool,
    scope: &Scope<'_>,
    batch: &[Entry],
    isolation: Isolation,
    contexts: &mut TaskContexts,
) -> Result<usize, ProjectorError> {
    let mut tx = pool.begin().await?;
    let mut locked = projection::lock_partitions(&mut tx, scope.parts, scope.partitions).await?;
    if locked
        .checkpoints
        .values()
        .all(|&done| done >= scope.through)
    {
        return Ok(0);
    }
    let mut heads = ChainHeads::with_contexts(std::mem::take(contexts));
    // Task events of the admitted commits, decoded once, by log position.
    let mut decoded: HashMap<u64, Vec<TaskEvent>> = HashMap::new();
    if isolation == Isolation::Optimistic {
        // The task table of the whole batch, set-based, ahead of the rest (see `tasks`).
        let mut tasks = TaskChanges::default();
        for entry in batch {
            if let (Entry::Commit(commit), Admission::Apply(_)) = (
                entry,
                admit(entry, scope.partitions, &locked.checkpoints, &locked.parked),
            ) {
                let events = task_events(commit)?;
                tasks.record(commit, &events)?;
                decoded.insert(commit.stream_seq, events);
            }
        }
        tasks.flush(&mut tx).await?;
    }
    let mut applied = 0;
    let mut dirs = PendingDirs::default();
    for entry in batch {
        let tenant = match admit(entry, scope.partitions, &locked.checkpoints, &locked.parked) {
            Admission::Apply(tenant) => tenant,
            Admission::Passed => continue,
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
                let tenant = tenant.to_owned();
                projection::park(&mut tx, &tenant, entry.seq(), &reason).await?;
                tracing::error!(%tenant, seq = entry.seq(), %reason, "projector: tenant parked");
                locked.parked.insert(tenant, entry.seq());
                metrics::counter!("fe_projection_parkings_total").increment(1);
            }
        }
    }
    dirs.flush(&mut tx).await?;
    heads.flush(&mut tx).await?;
    projection::advance_partitions(&mut tx, scope.parts, scope.through, scope.announce).await?;
    tx.commit().await?;
    *contexts = heads.into_contexts();
    Ok(applied)
}

/// What a batch does with one of its entries.
enum Admission<'a> {
    /// Apply it: it is of this scope's tenant `.0`, which is not parked.
    Apply(&'a str),
    /// Not of the scope's partitions, or at or below its partition's checkpoint.
    Passed,
    /// It names no tenant.
    NoTenant,
    /// Its tenant is parked: held until resumed.
    Held,
}

/// What to do with `entry`, given the checkpoints of the scope's partitions (a partition not
/// among them is not in the scope) and the parked tenants.
fn admit<'a>(
    entry: &'a Entry,
    partitions: u32,
    checkpoints: &HashMap<u32, u64>,
    parked: &HashMap<String, u64>,
) -> Admission<'a> {
    let Some(tenant) = entry.tenant() else {
        return Admission::NoTenant;
    };
    match checkpoints.get(&partition_of_str(tenant, partitions)) {
        Some(&done) if entry.seq() > done => {
            if parked.contains_key(tenant) {
                Admission::Held
            } else {
                Admission::Apply(tenant)
            }
        }
        _ => Admission::Passed,
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
