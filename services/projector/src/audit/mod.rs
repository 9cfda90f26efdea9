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
//! **Chain.** `hash = SHA-256(prev_hash ‖ seq ‖ idx ‖ canonical event bytes)` with `prev_hash`
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

/// Writes the rows of one commit and advances its tenant's chain head.
pub async fn apply_commit(
    tx: &mut Transaction<'_, Postgres>,
    commit: &LoggedCommit,
) -> Result<(), ProjectorError> {
    let known = match needs_task_context(commit) {
        true => stored_task_context(tx, commit).await?,
        false => None,
    };
    let rows = entries(commit, known.as_ref()).map_err(|reason| ProjectorError::Corrupt {
        seq: commit.stream_seq,
        reason,
    })?;
    let Some(last) = rows.last() else {
        return Ok(());
    };
    let tenant = commit.tenant.as_str();
    let head: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT hash FROM audit_heads WHERE tenant = $1")
            .bind(tenant)
            .fetch_optional(&mut **tx)
            .await?;
    let mut prev = match head {
        None => GENESIS,
        Some(bytes) => bytes.try_into().map_err(|_| ProjectorError::Corrupt {
            seq: commit.stream_seq,
            reason: "the stored audit chain head is not 32 bytes".into(),
        })?,
    };
    let mut hashes = Vec::with_capacity(rows.len());
    for row in &rows {
        prev = row.hash(&prev);
        hashes.push(prev.to_vec());
    }
    insert_rows(tx, &rows, hashes).await?;
    sqlx::query(
        "INSERT INTO audit_heads (tenant, seq, idx, hash) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant) DO UPDATE
         SET seq = EXCLUDED.seq, idx = EXCLUDED.idx, hash = EXCLUDED.hash",
    )
    .bind(tenant)
    .bind(last.seq as i64)
    .bind(last.idx as i32)
    .bind(prev.to_vec())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The context of the commit's task from the index row of its `task.requested`.
async fn stored_task_context(
    tx: &mut Transaction<'_, Postgres>,
    commit: &LoggedCommit,
) -> Result<Option<TaskContext>, ProjectorError> {
    let row: Option<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT path, target, principal FROM audit_events
         WHERE tenant = $1 AND task_id = $2 AND type = 'task.requested'
         ORDER BY seq LIMIT 1",
    )
    .bind(commit.tenant.as_str())
    .bind(task_id(commit))
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|(path, target, principal)| TaskContext {
        path,
        target,
        principal,
    }))
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
                                   request_id, time, event, hash)
         SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::uuid[], $8::text[], $9::text[],
                              $10::timestamptz[], $11::text[], $12::bytea[])",
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
    .execute(&mut **tx)
    .await?;
    Ok(())
}
