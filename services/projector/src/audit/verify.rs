//! Verification of the audit index against the log (`GET /v1/audit/verify` for one tenant,
//! `file-engine audit-verify [--tenant T] [--full]` for one or all).
//!
//! **Incremental.** `audit_verification` keeps, per tenant, the last position proven
//! (`verified_seq`, its log position and chain hash). A check continues from there: it reads
//! the tenant's commits after that log position up to the projector's checkpoint `C` (see
//! `log_reader.rs`), recomputes the rows each event should have produced (numbered on from the
//! verified `seq`, chained on from the verified hash), and walks them side by side with the
//! stored rows in log order (`rows.rs`). When nothing differs the checkpoint moves to `C`; a
//! failed check leaves it where it was, so the problem stays visible to every later check.
//! `--full` starts from the genesis instead (operators; also what a lost checkpoint means).
//!
//! **One at a time, bounded.** A verification holds a lease on its tenant's row of
//! `audit_verification` (renewed every page, expiring by itself if its holder dies), so at
//! most one runs per tenant across all API replicas; another request gets
//! [`VerifyError::Busy`] (429 `rate_limited` with `Retry-After`). No connection is held between
//! queries and no long transaction is open: rows up to `C` never change, so pages need no
//! common snapshot.
//!
//! Every difference is reported with its `seq` (the tenant position) and log position:
//!
//! * `missing`: the log has the event, the index has no row;
//! * `extra`: a row with no event in the log;
//! * `reordered`: the row holds the event of another log position;
//! * `changed`: the row's event or one of its filter columns (including `seq`) differs;
//! * `chain_broken`: the row's hash does not follow from the previous stored row;
//! * `hash_mismatch`: the row's hash differs from the chain recomputed from the log (catches
//!   a rewritten index whose chain was forged consistently);
//! * `head_mismatch`: `audit_heads` does not point at the chain's last hash;
//! * `unreadable`: a log message that cannot be parsed.
//!
//! Memory is bounded by one page of rows, one commit and the contexts of open tasks; the
//! report keeps the first [`MAX_REPORTED`] problems and counts the rest.

use std::collections::BTreeMap;
use std::time::Duration;

use events::audit_chain::{chain_hash, sha256, to_hex, GENESIS};
use events::TenantId;
use futures::TryStreamExt;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::entry::AuditEntry;
use super::log_reader::{Expected, LogReader};
use super::rows::{Row, RowPager};

/// Problems listed in a report; further ones are only counted.
pub const MAX_REPORTED: usize = 100;
/// How long a verification's lease lasts without renewal.
const LEASE: Duration = Duration::from_secs(30);
/// Rows compared between lease renewals.
const RENEW_EVERY: u64 = 1000;

/// What to verify.
#[derive(Clone, Debug)]
pub enum Scope {
    /// One tenant's chain (what the tenant's auditor may see).
    Tenant(TenantId),
    /// Every tenant's chain.
    All,
}

/// Where a verification starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// From the tenant's last verified head.
    Incremental,
    /// From the genesis (`file-engine audit-verify --full`).
    Full,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("event log: {0}")]
    Log(String),
    /// Another verification of the tenant is running (or its lease has not expired yet).
    #[error("a verification of this tenant is already running")]
    Busy { retry_after_s: u64 },
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
    /// The event's position in its tenant's history (as the log says; 0 when unknown).
    pub seq: u64,
    /// The log position of its commit.
    pub logseq: u64,
    pub idx: u32,
    pub kind: ProblemKind,
    pub detail: String,
}

/// The result of a verification.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    pub ok: bool,
    /// The tenant's events are proven through this position (its last verified event; for
    /// all tenants, the sum over tenants).
    pub verified_through_seq: u64,
    /// The log was compared up to this stream sequence (the projector's checkpoint).
    pub verified_through_logseq: u64,
    /// This check started after this position (0 = from the genesis).
    pub verified_from_seq: u64,
    /// Hex head of the chain recomputed from the log: the tenant's for a tenant scope; for all
    /// tenants, SHA-256 over the sorted `tenant ':' head` lines of `heads`.
    pub head_hash: String,
    /// Events read from the log and compared by this check (only what is new since the last
    /// verified head, unless `--full`).
    pub events: u64,
    /// Index rows read by this check.
    pub rows_read: u64,
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
    mode: Mode,
) -> Result<Verification, VerifyError> {
    match scope {
        Scope::Tenant(t) => verify_tenant(js, pool, t.as_str(), mode).await,
        Scope::All => verify_all(js, pool, mode).await,
    }
}

/// Every tenant in turn (each under its own lease; a busy tenant is waited for).
async fn verify_all(
    js: &async_nats::jetstream::Context,
    pool: &PgPool,
    mode: Mode,
) -> Result<Verification, VerifyError> {
    let mut total = Verification {
        ok: true,
        verified_through_seq: 0,
        verified_through_logseq: 0,
        verified_from_seq: 0,
        head_hash: String::new(),
        events: 0,
        rows_read: 0,
        problems: Vec::new(),
        problems_total: 0,
        heads: BTreeMap::new(),
    };
    for tenant in known_tenants(js, pool).await? {
        let v = loop {
            match verify_tenant(js, pool, &tenant, mode).await {
                Err(VerifyError::Busy { retry_after_s }) => {
                    tokio::time::sleep(Duration::from_secs(retry_after_s.clamp(1, 30))).await;
                }
                other => break other?,
            }
        };
        total.ok &= v.ok;
        total.verified_through_seq += v.verified_through_seq;
        total.verified_through_logseq = v.verified_through_logseq;
        total.events += v.events;
        total.rows_read += v.rows_read;
        total.problems_total += v.problems_total;
        let room = MAX_REPORTED.saturating_sub(total.problems.len());
        total.problems.extend(v.problems.into_iter().take(room));
        total.heads.insert(tenant, v.head_hash);
    }
    total.head_hash = digest_of_heads(&total.heads);
    Ok(total)
}

/// Tenants with events in the log or rows in the index.
async fn known_tenants(
    js: &async_nats::jetstream::Context,
    pool: &PgPool,
) -> Result<Vec<String>, VerifyError> {
    let log = |e: &dyn std::fmt::Display| VerifyError::Log(e.to_string());
    let mut tenants: std::collections::BTreeSet<String> =
        sqlx::query_scalar("SELECT tenant FROM audit_heads")
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    let stream = js
        .get_stream(platform::streams::EVENTS_STREAM)
        .await
        .map_err(|e| log(&e))?;
    let mut subjects = stream
        .info_with_subjects(platform::streams::EVENTS_SUBJECTS)
        .await
        .map_err(|e| log(&e))?;
    while let Some((subject, _)) = subjects.try_next().await.map_err(|e| log(&e))? {
        if let Ok(parts) = platform::event_log::parse_subject(&subject) {
            tenants.insert(parts.tenant.to_owned());
        }
    }
    Ok(tenants.into_iter().collect())
}

/// One tenant, under its lease.
async fn verify_tenant(
    js: &async_nats::jetstream::Context,
    pool: &PgPool,
    tenant: &str,
    mode: Mode,
) -> Result<Verification, VerifyError> {
    let lease = Lease::acquire(pool, tenant).await?;
    let outcome = verify_leased(js, pool, &lease, mode).await;
    lease.release(pool).await;
    outcome
}

async fn verify_leased(
    js: &async_nats::jetstream::Context,
    pool: &PgPool,
    lease: &Lease,
    mode: Mode,
) -> Result<Verification, VerifyError> {
    let start = match mode {
        Mode::Incremental => lease.verified.clone(),
        Mode::Full => Verified::genesis(),
    };
    // Where every partition has passed, but never into a parked tenant's held commits: those
    // are not in the index yet, and a parked tenant is not a broken chain.
    let through = platform::projection::tenant_checkpoint(pool, &lease.tenant)
        .await?
        .max(start.logseq);
    let mut log =
        LogReader::open(js, pool, &lease.tenant, start.logseq, start.seq, through).await?;
    let mut rows = RowPager::new(&lease.tenant, start.logseq, through);
    let mut walk = Walk::starting_at(&start);
    let outcome = walk.run(&mut log, &mut rows, pool, lease).await;
    let read = log.read;
    log.close().await;
    outcome?;
    walk.check_head(pool, &lease.tenant, through).await?;
    let end = Verified {
        seq: walk.expected.1,
        logseq: through,
        hash: walk.expected.0,
    };
    if walk.problems_total == 0 {
        lease.record(pool, &end).await?;
    }
    Ok(Verification {
        ok: walk.problems_total == 0,
        verified_through_seq: end.seq,
        verified_through_logseq: through,
        verified_from_seq: start.seq,
        head_hash: to_hex(&end.hash),
        events: read,
        rows_read: rows.read,
        problems: walk.problems,
        problems_total: walk.problems_total,
        heads: BTreeMap::new(),
    })
}

/// A proven position of a tenant's chain.
#[derive(Clone, Debug)]
struct Verified {
    seq: u64,
    logseq: u64,
    hash: [u8; 32],
}

impl Verified {
    fn genesis() -> Self {
        Verified {
            seq: 0,
            logseq: 0,
            hash: GENESIS,
        }
    }
}

/// The right to verify one tenant now, with where its last verification ended.
struct Lease {
    tenant: String,
    holder: Uuid,
    verified: Verified,
}

impl Lease {
    async fn acquire(pool: &PgPool, tenant: &str) -> Result<Lease, VerifyError> {
        let holder = Uuid::now_v7();
        let won: Option<(i64, i64, Vec<u8>)> = sqlx::query_as(
            "INSERT INTO audit_verification (tenant, lease_holder, lease_until)
             VALUES ($1, $2, now() + make_interval(secs => $3))
             ON CONFLICT (tenant) DO UPDATE
             SET lease_holder = EXCLUDED.lease_holder, lease_until = EXCLUDED.lease_until
             WHERE audit_verification.lease_until IS NULL
                OR audit_verification.lease_until < now()
             RETURNING verified_seq, verified_logseq, verified_hash",
        )
        .bind(tenant)
        .bind(holder)
        .bind(LEASE.as_secs_f64())
        .fetch_optional(pool)
        .await?;
        let Some((seq, logseq, hash)) = won else {
            let left: Option<f64> = sqlx::query_scalar(
                "SELECT EXTRACT(EPOCH FROM lease_until - now())::float8
                 FROM audit_verification WHERE tenant = $1",
            )
            .bind(tenant)
            .fetch_optional(pool)
            .await?
            .flatten();
            let retry_after_s = left.unwrap_or(1.0).ceil().clamp(1.0, LEASE.as_secs_f64()) as u64;
            return Err(VerifyError::Busy { retry_after_s });
        };
        let verified = Verified {
            seq: seq.max(0) as u64,
            logseq: logseq.max(0) as u64,
            hash: hash.try_into().unwrap_or(GENESIS),
        };
        Ok(Lease {
            tenant: tenant.to_owned(),
            holder,
            verified,
        })
    }

    /// Extends the lease; a lease lost (expired and taken) ends this verification.
    async fn renew(&self, pool: &PgPool) -> Result<(), VerifyError> {
        let kept = sqlx::query(
            "UPDATE audit_verification SET lease_until = now() + make_interval(secs => $3)
             WHERE tenant = $1 AND lease_holder = $2",
        )
        .bind(&self.tenant)
        .bind(self.holder)
        .bind(LEASE.as_secs_f64())
        .execute(pool)
        .await?
        .rows_affected();
        match kept {
            1 => Ok(()),
            _ => Err(VerifyError::Busy {
                retry_after_s: LEASE.as_secs(),
            }),
        }
    }

    /// Moves the tenant's verified head (only while the lease is still ours).
    async fn record(&self, pool: &PgPool, end: &Verified) -> Result<(), VerifyError> {
        sqlx::query(
            "UPDATE audit_verification
             SET verified_seq = $3, verified_logseq = $4, verified_hash = $5, verified_at = now()
             WHERE tenant = $1 AND lease_holder = $2",
        )
        .bind(&self.tenant)
        .bind(self.holder)
        .bind(end.seq as i64)
        .bind(end.logseq as i64)
        .bind(end.hash.to_vec())
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Gives the lease up (best effort: it expires by itself otherwise).
    async fn release(self, pool: &PgPool) {
        let released = sqlx::query(
            "UPDATE audit_verification SET lease_holder = NULL, lease_until = NULL
             WHERE tenant = $1 AND lease_holder = $2",
        )
        .bind(&self.tenant)
        .bind(self.holder)
        .execute(pool)
        .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "audit verify: lease left to expire");
        }
    }
}

/// State of the side-by-side walk of one tenant.
struct Walk {
    /// The chain recomputed from the log: last hash, its `seq` and log position.
    expected: ([u8; 32], u64, u64),
    /// The hash of the last stored row seen.
    stored_prev: [u8; 32],
    compared: u64,
    problems: Vec<Problem>,
    problems_total: u64,
}

impl Walk {
    fn starting_at(start: &Verified) -> Self {
        Walk {
            expected: (start.hash, start.seq, start.logseq),
            stored_prev: start.hash,
            compared: 0,
            problems: Vec::new(),
            problems_total: 0,
        }
    }

    async fn run(
        &mut self,
        log: &mut LogReader,
        rows: &mut RowPager,
        pool: &PgPool,
        lease: &Lease,
    ) -> Result<(), VerifyError> {
        loop {
            let expected_key = log.peek().await?.map(Expected::key);
            let row_key = rows.peek(pool).await?.map(Row::key);
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
            self.compared += 1;
            if self.compared.is_multiple_of(RENEW_EVERY) {
                lease.renew(pool).await?;
            }
        }
    }

    fn problem(
        &mut self,
        (seq, logseq, idx): (u64, u64, u32),
        kind: ProblemKind,
        detail: impl Into<String>,
    ) {
        self.problems_total += 1;
        if self.problems.len() < MAX_REPORTED {
            self.problems.push(Problem {
                seq,
                logseq,
                idx,
                kind,
                detail: detail.into(),
            });
        }
    }

    /// Advances the log-derived chain; returns the expected hash.
    fn chain_expected(&mut self, entry: &AuditEntry) -> [u8; 32] {
        let hash = entry.hash(&self.expected.0);
        self.expected = (hash, entry.seq, entry.logseq);
        hash
    }

    fn missing(&mut self, expected: Expected) {
        match expected {
            Expected::Entry(entry) => {
                self.chain_expected(&entry);
                let detail = format!("the index has no row for this {} event", entry.short_type);
                let at = (entry.seq, entry.logseq, entry.idx);
                self.problem(at, ProblemKind::Missing, detail);
            }
            Expected::Unreadable { seq, reason } => {
                self.problem((0, seq, 0), ProblemKind::Unreadable, reason);
            }
        }
    }

    fn extra(&mut self, row: &Row) {
        self.check_link(row);
        let (logseq, idx) = row.key();
        self.problem(
            (row.seq(), logseq, idx),
            ProblemKind::Extra,
            "the log has no event at this position",
        );
    }

    fn matched(&mut self, expected: Expected, row: &Row) {
        let entry = match expected {
            Expected::Entry(entry) => entry,
            Expected::Unreadable { seq, reason } => {
                self.problem((row.seq(), seq, 0), ProblemKind::Unreadable, reason);
                return self.check_link(row);
            }
        };
        let at = (entry.seq, entry.logseq, entry.idx);
        let want = self.chain_expected(&entry);
        if row.event != entry.event {
            let (kind, detail) = describe_event_difference(row, &entry);
            self.problem(at, kind, detail);
        } else if let Some(column) = row.differing_column(&entry) {
            self.problem(
                at,
                ProblemKind::Changed,
                format!("column {column} differs from the log"),
            );
        }
        self.check_link(row);
        if row.hash != want {
            self.problem(
                at,
                ProblemKind::HashMismatch,
                "the hash differs from the chain recomputed from the log",
            );
        }
    }

    /// Checks the row's hash follows from the previous stored row of its tenant.
    fn check_link(&mut self, row: &Row) {
        let (logseq, idx) = row.key();
        let bytes: Option<[u8; 32]> = row.hash.as_slice().try_into().ok();
        if bytes
            != Some(chain_hash(
                &self.stored_prev,
                row.seq(),
                row.event.as_bytes(),
            ))
        {
            self.problem(
                (row.seq(), logseq, idx),
                ProblemKind::ChainBroken,
                "the hash does not follow from the previous row",
            );
        }
        self.stored_prev = bytes.unwrap_or(GENESIS);
    }

    /// `audit_heads` must point at the chain's last hash, unless the projector has moved
    /// past the compared log position meanwhile.
    async fn check_head(
        &mut self,
        pool: &PgPool,
        tenant: &str,
        through: u64,
    ) -> Result<(), VerifyError> {
        let stored: Option<(i64, i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, logseq, hash FROM audit_heads WHERE tenant = $1")
                .bind(tenant)
                .fetch_optional(pool)
                .await?;
        let (hash, seq, logseq) = self.expected;
        let consistent = match &stored {
            None => seq == 0,
            Some((_, head_logseq, _)) if *head_logseq > through as i64 => true,
            Some((head_seq, _, head_hash)) => {
                *head_seq == seq as i64 && head_hash.as_slice() == hash.as_slice()
            }
        };
        if !consistent {
            self.problem(
                (seq, logseq, 0),
                ProblemKind::HeadMismatch,
                "audit_heads does not point at the last event",
            );
        }
        Ok(())
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
                || id != events::public::event_id(entry.logseq, entry.idx as usize) =>
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
