//! Verification of the audit index against the log (`GET /v1/audit/verify` for one tenant,
//! `file-engine audit-verify` for all).
//!
//! In one read-only, repeatable-read snapshot of the database: take the projector's checkpoint
//! `C`, re-read the log from sequence 1 through `C` (see `log_reader.rs`), recompute the rows
//! each event should have produced, and walk them side by side with the stored rows in
//! `(seq, idx)` order. Every difference is reported with its sequence:
//!
//! * `missing`: the log has the event, the index has no row;
//! * `extra`: a row with no event in the log (also any row past the checkpoint);
//! * `reordered`: the row holds the event of another log position;
//! * `changed`: the row's event or one of its filter columns differs from the log;
//! * `chain_broken`: the row's hash does not follow from the previous stored row;
//! * `hash_mismatch`: the row's hash differs from the chain recomputed from the log (catches
//!   a rewritten index whose chain was forged consistently);
//! * `head_mismatch`: `audit_heads` does not point at the chain's last hash;
//! * `unreadable`: a log message that cannot be parsed.
//!
//! Memory is bounded by one page of rows, one commit and the paths of open tasks; the report
//! keeps the first [`MAX_REPORTED`] problems and counts the rest.

use std::collections::{BTreeMap, HashMap};

use events::audit_chain::{chain_hash, sha256, to_hex, GENESIS};
use events::TenantId;
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};

use super::entry::AuditEntry;
use super::log_reader::{Expected, LogReader};
use super::rows::{Row, RowPager};

/// Problems listed in a report; further ones are only counted.
pub const MAX_REPORTED: usize = 100;

/// What to verify.
#[derive(Clone, Debug)]
pub enum Scope {
    /// One tenant's chain (what the tenant's auditor may see).
    Tenant(TenantId),
    /// Every tenant's chain.
    All,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("event log: {0}")]
    Log(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    Missing,
    Extra,
    Reordered,
    Changed,
    ChainBroken,
    HashMismatch,
    HeadMismatch,
    Unreadable,
}

/// One difference between the index and the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub seq: u64,
    pub idx: u32,
    pub kind: ProblemKind,
    pub detail: String,
}

/// The result of a verification.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    pub ok: bool,
    /// The log was compared up to this stream sequence (the projector's checkpoint).
    pub verified_through_seq: u64,
    /// Hex head of the chain recomputed from the log: the tenant's for a tenant scope; for all
    /// tenants, SHA-256 over the sorted `tenant ':' head` lines of `heads`.
    pub head_hash: String,
    /// Events compared.
    pub events: u64,
    pub problems: Vec<Problem>,
    pub problems_total: u64,
    /// Every tenant's head (all-tenant scope only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub heads: BTreeMap<String, String>,
}

/// Verifies the index of `scope` against the log.
pub async fn verify(
    js: &async_nats::jetstream::Context,
    pool: &PgPool,
    scope: &Scope,
) -> Result<Verification, VerifyError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    // The position every projection partition has passed (services/platform/src/projection.rs).
    let through: i64 =
        sqlx::query_scalar("SELECT COALESCE(min(last_seq), 0) FROM projection_partitions")
            .fetch_one(&mut *tx)
            .await?;
    let through = through.max(0) as u64;
    let (filter, tenant) = match scope {
        Scope::Tenant(t) => (
            format!("fe.ev.{}.>", t.as_str()),
            Some(t.as_str().to_owned()),
        ),
        Scope::All => ("fe.ev.>".to_owned(), None),
    };
    let mut log = LogReader::open(js, filter, through).await?;
    let mut rows = RowPager::new(tenant);
    let mut walk = Walk::default();
    let outcome = walk.run(&mut log, &mut rows, &mut tx).await;
    log.close().await;
    outcome?;
    walk.check_heads(&mut tx).await?;
    tx.rollback().await?;
    Ok(walk.report(through, scope))
}

/// State of the side-by-side walk.
#[derive(Default)]
struct Walk {
    /// Per tenant: the last hash of the chain recomputed from the log.
    expected_head: HashMap<String, ([u8; 32], u64, u32)>,
    /// Per tenant: the hash of the last stored row seen.
    stored_prev: HashMap<String, [u8; 32]>,
    events: u64,
    problems: Vec<Problem>,
    problems_total: u64,
}

impl Walk {
    async fn run(
        &mut self,
        log: &mut LogReader,
        rows: &mut RowPager,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), VerifyError> {
        loop {
            let expected_key = log.peek().await?.map(Expected::key);
            let row_key = rows.peek(tx).await?.map(Row::key);
            match (expected_key, row_key) {
                (None, None) => return Ok(()),
                (Some(e), Some(r)) if e == r => {
                    let (Some(expected), Some(row)) = (log.advance(), rows.advance()) else {
                        return Ok(());
                    };
                    self.matched(expected, &row);
                }
                (Some(e), r) if r.is_none_or(|r| e < r) => {
                    if let Some(expected) = log.advance() {
                        self.missing(expected);
                    }
                }
                _ => {
                    if let Some(row) = rows.advance() {
                        self.extra(&row);
                    }
                }
            }
        }
    }

    fn problem(&mut self, seq: u64, idx: u32, kind: ProblemKind, detail: impl Into<String>) {
        self.problems_total += 1;
        if self.problems.len() < MAX_REPORTED {
            self.problems.push(Problem {
                seq,
                idx,
                kind,
                detail: detail.into(),
            });
        }
    }

    /// Advances the log-derived chain of the entry's tenant; returns the expected hash.
    fn chain_expected(&mut self, entry: &AuditEntry) -> [u8; 32] {
        self.events += 1;
        let head = self
            .expected_head
            .entry(entry.tenant.clone())
            .or_insert((GENESIS, 0, 0));
        head.0 = entry.hash(&head.0);
        head.1 = entry.seq;
        head.2 = entry.idx;
        head.0
    }

    fn missing(&mut self, expected: Expected) {
        match expected {
            Expected::Entry(entry) => {
                self.chain_expected(&entry);
                let detail = format!("the index has no row for this {} event", entry.short_type);
                self.problem(entry.seq, entry.idx, ProblemKind::Missing, detail);
            }
            Expected::Unreadable { seq, reason } => {
                self.problem(seq, 0, ProblemKind::Unreadable, reason);
            }
        }
    }

    fn extra(&mut self, row: &Row) {
        let (seq, idx) = row.key();
        self.check_link(row);
        self.problem(
            seq,
            idx,
            ProblemKind::Extra,
            "the log has no event at this position",
        );
    }

    fn matched(&mut self, expected: Expected, row: &Row) {
        let entry = match expected {
            Expected::Entry(entry) => entry,
            Expected::Unreadable { seq, reason } => {
                self.problem(seq, 0, ProblemKind::Unreadable, reason);
                return self.check_link(row);
            }
        };
        let (seq, idx) = (entry.seq, entry.idx);
        let want = self.chain_expected(&entry);
        if row.event != entry.event {
            let (kind, detail) = describe_event_difference(row, &entry);
            self.problem(seq, idx, kind, detail);
        } else if let Some(column) = row.differing_column(&entry) {
            self.problem(
                seq,
                idx,
                ProblemKind::Changed,
                format!("column {column} differs from the log"),
            );
        }
        self.check_link(row);
        if row.hash != want {
            self.problem(
                seq,
                idx,
                ProblemKind::HashMismatch,
                "the hash differs from the chain recomputed from the log",
            );
        }
    }

    /// Checks the row's hash follows from the previous stored row of its tenant.
    fn check_link(&mut self, row: &Row) {
        let prev = self
            .stored_prev
            .get(&row.tenant)
            .copied()
            .unwrap_or(GENESIS);
        let (seq, idx) = row.key();
        let bytes: Option<[u8; 32]> = row.hash.as_slice().try_into().ok();
        if bytes != Some(chain_hash(&prev, seq, idx, row.event.as_bytes())) {
            self.problem(
                seq,
                idx,
                ProblemKind::ChainBroken,
                "the hash does not follow from the previous row",
            );
        }
        self.stored_prev
            .insert(row.tenant.clone(), bytes.unwrap_or(GENESIS));
    }

    /// `audit_heads` must point at each verified tenant's last hash.
    async fn check_heads(&mut self, tx: &mut Transaction<'_, Postgres>) -> Result<(), VerifyError> {
        let tenants: Vec<String> = self.expected_head.keys().cloned().collect();
        for tenant in tenants {
            let stored: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT hash FROM audit_heads WHERE tenant = $1")
                    .bind(&tenant)
                    .fetch_optional(&mut **tx)
                    .await?;
            let (head, seq, idx) = self.expected_head[&tenant];
            if stored.as_deref() != Some(head.as_slice()) {
                self.problem(
                    seq,
                    idx,
                    ProblemKind::HeadMismatch,
                    "audit_heads does not point at the last event",
                );
            }
        }
        Ok(())
    }

    fn report(self, through: u64, scope: &Scope) -> Verification {
        let heads: BTreeMap<String, String> = self
            .expected_head
            .iter()
            .map(|(t, (h, _, _))| (t.clone(), to_hex(h)))
            .collect();
        let head_hash = match scope {
            Scope::Tenant(t) => heads
                .get(t.as_str())
                .cloned()
                .unwrap_or_else(|| to_hex(&GENESIS)),
            Scope::All => digest_of_heads(&heads),
        };
        Verification {
            ok: self.problems_total == 0,
            verified_through_seq: through,
            head_hash,
            events: self.events,
            problems: self.problems,
            problems_total: self.problems_total,
            heads: match scope {
                Scope::All => heads,
                Scope::Tenant(_) => BTreeMap::new(),
            },
        }
    }
}

/// A row whose event bytes differ: another position's event (`reordered`) or an edit.
fn describe_event_difference(row: &Row, entry: &AuditEntry) -> (ProblemKind, String) {
    let held: Option<(u64, String)> = serde_json::from_str::<serde_json::Value>(&row.event)
        .ok()
        .and_then(|v| Some((v.get("seq")?.as_u64()?, v.get("id")?.as_str()?.to_owned())));
    match held {
        Some((seq, id))
            if seq != entry.seq
                || id != events::public::event_id(entry.seq, entry.idx as usize) =>
        {
            (
                ProblemKind::Reordered,
                format!("the row holds the event of seq {seq} (id {id})"),
            )
        }
        _ => (
            ProblemKind::Changed,
            "the event differs from the log".to_owned(),
        ),
    }
}

fn digest_of_heads(heads: &BTreeMap<String, String>) -> String {
    let lines: String = heads.iter().map(|(t, h)| format!("{t}:{h}\n")).collect();
    to_hex(&sha256(lines.as_bytes()))
}
