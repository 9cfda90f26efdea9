//! The audit index: one row per event of the log, hash-chained per tenant, written by the
//! projector for every commit (all aggregate types) in the transaction that advances the
//! checkpoint, so a redelivered commit changes nothing and a replay rebuilds identical rows.
//!
//! * `entry.rs`: the pure mapping commit -> rows (the CloudEvent of each event, in canonical
//!   JSON, and the filter columns), shared with the verifier.
//! * `verify.rs`: re-reads the JetStream log and proves the index matches it event for event
//!   and the chains are unbroken (`GET /v1/audit/verify`, `file-engine audit-verify`), with
//!   `log_reader.rs` (the log side) and `rows.rs` (the stored side).
//!
//! **Positions.** `seq` numbers a tenant's events 1, 2, 3, … (the head in `audit_heads` plus
//! one); `logseq`/`idx` say where each came from in the log. The stored `event` is the one
//! form of the event: webhooks and SSE deliver these very bytes
//! (`platform::public_events`), so for one id the three doors cannot disagree.
//!
//! **Chain.** `hash = SHA-256(prev_hash ‖ seq ‖ canonical event bytes)` with `prev_hash`
//! the hash of the tenant's previous row (32 zero bytes first; see `events::audit_chain`). The
//! chain is per tenant so that a tenant's auditor can verify their own slice; it is
//! deterministic because a tenant's events keep their log order under replay. The tenant's
//! current head is kept in `audit_heads` so appending needs no scan.
//!
//! **Why the index can be trusted.** The index is derived data: the source of truth is the
//! JetStream stream, which is created with `deny_delete` and `deny_purge` (no message can be
//! removed through the API), and whose deletion is denied to service users by the NATS
//! account permissions in `nats/accounts.conf` (explained in `nats/README.md`). Anything done
//! to the index directly in PostgreSQL is found by the verifier.

mod entry;
mod log_reader;
mod rows;
pub mod verify;

pub use entry::{entries, needs_task_context, requested_context, task_id, AuditEntry, TaskContext};

use events::audit_chain::GENESIS;
use platform::event_log::LoggedCommit;
use sqlx::{Postgres, Transaction};

use crate::ProjectorError;

/// A tenant's chain head: the position and hash of its latest audit row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub logseq: u64,
    pub hash: [u8; 32],
}

/// The audit side of one projection transaction.
///
/// * Chain heads: each tenant's head is read (and row-locked) once, advanced in memory commit
///   by commit, and written once by [`ChainHeads::flush`] before the transaction commits.
/// * Rows: in a batch applied without savepoints ([`Writes::Deferred`]) the rows of every
///   commit are inserted together by the flush (one statement per batch instead of one per
///   commit); with a savepoint per commit ([`Writes::Immediate`]) they are inserted at once,
///   so a row the database refuses fails its own commit, which then parks its tenant alone.
/// * Task contexts: a `task.requested` seen in this transaction answers the context of the
///   task's later commits without a query (and must: its row may not be inserted yet). The
///   contexts outlive the transaction ([`ChainHeads::with_contexts`]): they are facts of the
///   log, true whatever becomes of the transaction, so a follower keeps them from batch to
///   batch and a task's later commits need no query at all.
///
/// Nothing is recorded for a commit until [`ChainHeads::advance`] is called for it, which the
/// caller does only for commits it keeps: one rolled back to its savepoint leaves no trace.
#[derive(Debug, Default)]
pub struct ChainHeads {
    /// `None`: the tenant has no audit row yet.
    heads: std::collections::HashMap<String, Option<ChainHead>>,
    advanced: std::collections::BTreeSet<String>,
    contexts: TaskContexts,
    rows: Vec<AuditEntry>,
    hashes: Vec<Vec<u8>>,
}

/// The contexts (path, target, requester) of tasks whose `task.requested` was seen, by
/// (tenant, task id).
pub type TaskContexts = std::collections::HashMap<(String, uuid::Uuid), TaskContext>;

/// Most task contexts a follower keeps between batches (a few MiB); past it the cache
/// starts again empty and misses are answered from the index.
const MAX_KEPT_CONTEXTS: usize = 50_000;

/// When the rows of a commit are inserted (see [`ChainHeads`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writes {
    Immediate,
    Deferred,
}

/// What one applied commit did to the audit index, recorded by [`ChainHeads::advance`].
#[derive(Debug)]
pub struct Advance {
    tenant: String,
    head: ChainHead,
    context: Option<(uuid::Uuid, TaskContext)>,
    /// Rows still to insert (deferred writes only).
    rows: Vec<AuditEntry>,
    hashes: Vec<Vec<u8>>,
}

impl ChainHeads {
    /// Heads for a new transaction that starts from the task contexts already known.
    pub fn with_contexts(contexts: TaskContexts) -> Self {
        Self {
            contexts,
            ..Self::default()
        }
    }

    /// The task contexts known now, to start the next transaction with (bounded by
    /// [`MAX_KEPT_CONTEXTS`]).
    pub fn into_contexts(self) -> TaskContexts {
        if self.contexts.len() > MAX_KEPT_CONTEXTS {
            TaskContexts::default()
        } else {
            self.contexts
        }
    }

    async fn current(
        &mut self,
        tx: &mut Transaction<'_, Postgres>,
        tenant: &str,
        at: u64,
    ) -> Result<Option<ChainHead>, ProjectorError> {
        if let Some(head) = self.heads.get(tenant) {
            return Ok(*head);
        }
        let row: Option<(i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, logseq, hash FROM audit_heads WHERE tenant = $1 FOR UPDATE",
        )
        .bind(tenant)
        .fetch_optional(&mut **tx)
        .await?;
        let head = match row {
            None => None,
            Some((seq, logseq, bytes)) => Some(ChainHead {
                seq: seq.max(0) as u64,
                logseq: logseq.max(0) as u64,
                hash: bytes.try_into().map_err(|_| ProjectorError::Corrupt {
                    seq: at,
                    reason: "the stored audit chain head is not 32 bytes".into(),
                })?,
            }),
        };
        self.heads.insert(tenant.to_owned(), head);
        Ok(head)
    }

    /// Records what a kept commit did.
    pub fn advance(&mut self, advance: Option<Advance>) {
        let Some(a) = advance else { return };
        if let Some((task, context)) = a.context {
            self.contexts.insert((a.tenant.clone(), task), context);
        }
        self.rows.extend(a.rows);
        self.hashes.extend(a.hashes);
        self.heads.insert(a.tenant.clone(), Some(a.head));
        self.advanced.insert(a.tenant);
    }

    /// Inserts the deferred rows and writes every advanced head, inside the caller's
    /// transaction.
    pub async fn flush(
        &mut self,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), ProjectorError> {
        if !self.rows.is_empty() {
            insert_rows(tx, &self.rows, std::mem::take(&mut self.hashes)).await?;
            self.rows.clear();
        }
        let heads: Vec<(&String, ChainHead)> = self
            .advanced
            .iter()
            .filter_map(|t| self.heads.get(t).copied().flatten().map(|h| (t, h)))
            .collect();
        if heads.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO audit_heads (tenant, seq, logseq, hash)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bytea[])
             ON CONFLICT (tenant) DO UPDATE
             SET seq = EXCLUDED.seq, logseq = EXCLUDED.logseq, hash = EXCLUDED.hash",
        )
        .bind(heads.iter().map(|(t, _)| (*t).clone()).collect::<Vec<_>>())
        .bind(heads.iter().map(|(_, h)| h.seq as i64).collect::<Vec<_>>())
        .bind(
            heads
                .iter()
                .map(|(_, h)| h.logseq as i64)
                .collect::<Vec<_>>(),
        )
        .bind(
            heads
                .iter()
                .map(|(_, h)| h.hash.to_vec())
                .collect::<Vec<_>>(),
        )
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// Computes the rows of one commit (inserting them now or leaving them to the flush, as
/// `writes` says) and returns what the caller records with [`ChainHeads::advance`] once the
/// commit is kept. The head row stays locked for the transaction, so even two projectors
/// racing on one tenant could not hand out a position twice (the unique `(logseq, idx)` also
/// refuses a commit indexed twice).
pub async fn apply_commit(
    tx: &mut Transaction<'_, Postgres>,
    commit: &LoggedCommit,
    heads: &mut ChainHeads,
    writes: Writes,
) -> Result<Option<Advance>, ProjectorError> {
    if commit.events.is_empty() {
        return Ok(None);
    }
    let tenant = commit.tenant.as_str();
    let task = task_id(commit);
    let known = match (needs_task_context(commit), task) {
        (true, Some(id)) => match heads.contexts.get(&(tenant.to_owned(), id)) {
            Some(context) => Some(context.clone()),
            None => stored_task_context(tx, commit).await?,
        },
        _ => None,
    };
    let head = heads.current(tx, tenant, commit.stream_seq).await?;
    let (last_seq, mut prev) = head.map_or((0, GENESIS), |h| (h.seq, h.hash));
    let rows = entries(commit, known.as_ref(), last_seq + 1).map_err(|reason| {
        ProjectorError::Corrupt {
            seq: commit.stream_seq,
            reason,
        }
    })?;
    let Some(last) = rows.last() else {
        return Ok(None);
    };
    let mut hashes = Vec::with_capacity(rows.len());
    for row in &rows {
        prev = row.hash(&prev);
        hashes.push(prev.to_vec());
    }
    let head = ChainHead {
        seq: last.seq,
        logseq: last.logseq,
        hash: prev,
    };
    let context = task.zip(requested_context(&rows));
    let (rows, hashes) = match writes {
        Writes::Immediate => {
            insert_rows(tx, &rows, hashes).await?;
            (Vec::new(), Vec::new())
        }
        Writes::Deferred => (rows, hashes),
    };
    Ok(Some(Advance {
        tenant: tenant.to_owned(),
        head,
        context,
        rows,
        hashes,
    }))
}

/// The context of the commit's task from the index row of its `task.requested`.
async fn stored_task_context(
    tx: &mut Transaction<'_, Postgres>,
    commit: &LoggedCommit,
) -> Result<Option<TaskContext>, ProjectorError> {
    Ok(task_context_query(commit, i64::MAX)
        .fetch_optional(&mut **tx)
        .await?
        .map(into_context))
}

/// The same, for the verifier: only from the part of the index proven through `max_seq`.
pub(crate) async fn proven_task_context(
    pool: &sqlx::PgPool,
    commit: &LoggedCommit,
    max_seq: i64,
) -> Result<Option<TaskContext>, sqlx::Error> {
    Ok(task_context_query(commit, max_seq)
        .fetch_optional(pool)
        .await?
        .map(into_context))
}

type ContextRow = (String, Option<String>, String);

fn task_context_query(
    commit: &LoggedCommit,
    max_seq: i64,
) -> sqlx::query::QueryAs<'static, Postgres, ContextRow, sqlx::postgres::PgArguments> {
    sqlx::query_as(
        "SELECT path, target, principal FROM audit_events
         WHERE tenant = $1 AND task_id = $2 AND type = 'task.requested' AND seq <= $3
         ORDER BY seq LIMIT 1",
    )
    .bind(commit.tenant.as_str().to_owned())
    .bind(task_id(commit))
    .bind(max_seq)
}

fn into_context((path, target, principal): ContextRow) -> TaskContext {
    TaskContext {
        path,
        target,
        principal,
    }
}

/// One multi-row insert per commit (arrays unnested server-side).
async fn insert_rows(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[AuditEntry],
    hashes: Vec<Vec<u8>>,
) -> Result<(), ProjectorError> {
    let col = |f: fn(&AuditEntry) -> String| rows.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO audit_events (seq, idx, tenant, type, path, target, task_id, principal,
                                   request_id, time, event, hash, logseq, actor)
         SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::uuid[], $8::text[], $9::text[],
                              $10::timestamptz[], $11::text[], $12::bytea[], $13::bigint[],
                              $14::text[])",
    )
    .bind(rows.iter().map(|r| r.seq as i64).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.idx as i32).collect::<Vec<_>>())
    .bind(col(|r| r.tenant.clone()))
    .bind(col(|r| r.short_type.clone()))
    .bind(col(|r| r.path.clone()))
    .bind(rows.iter().map(|r| r.target.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.task_id).collect::<Vec<_>>())
    .bind(col(|r| r.principal.clone()))
    .bind(
        rows.iter()
            .map(|r| r.request_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.time).collect::<Vec<_>>())
    .bind(col(|r| r.event.clone()))
    .bind(hashes)
    .bind(rows.iter().map(|r| r.logseq as i64).collect::<Vec<_>>())
    .bind(col(|r| r.actor.clone()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
