//! Stored audit rows as the verifier reads them: one tenant's rows after a position, in
//! `(logseq, idx)` order, in keyset pages. Each page is one short query on the pool: no
//! connection is held between pages, so a long verification never starves other requests.
//! Rows at or below the verified log position never change (the index is append-only), so
//! pages need no common snapshot.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::entry::AuditEntry;

/// Rows fetched per round trip.
const PAGE: i64 = 1000;

/// One stored row of `audit_events`.
#[derive(Debug, FromRow)]
pub(super) struct Row {
    pub seq: i64,
    pub logseq: i64,
    pub idx: i32,
    pub tenant: String,
    #[sqlx(rename = "type")]
    pub short_type: String,
    pub path: String,
    pub target: Option<String>,
    pub task_id: Option<Uuid>,
    pub principal: String,
    pub actor: String,
    pub request_id: Option<String>,
    pub time: DateTime<Utc>,
    pub event: String,
    pub hash: Vec<u8>,
}

impl Row {
    /// Where the row's event came from in the log (the walk's order).
    pub(super) fn key(&self) -> (u64, u32) {
        (self.logseq.max(0) as u64, self.idx.max(0) as u32)
    }

    pub(super) fn seq(&self) -> u64 {
        self.seq.max(0) as u64
    }

    /// The first filter column that differs from what the log says, if any. Times are
    /// compared at PostgreSQL's precision (microseconds); the event itself keeps nanoseconds.
    pub(super) fn differing_column(&self, e: &AuditEntry) -> Option<&'static str> {
        let checks = [
            ("seq", self.seq() == e.seq),
            ("tenant", self.tenant == e.tenant),
            ("type", self.short_type == e.short_type),
            ("path", self.path == e.path),
            ("target", self.target == e.target),
            ("task_id", self.task_id == e.task_id),
            ("principal", self.principal == e.principal),
            ("actor", self.actor == e.actor),
            ("request_id", self.request_id == e.request_id),
            (
                "time",
                self.time.timestamp_micros() == e.time.timestamp_micros(),
            ),
        ];
        checks.into_iter().find(|(_, same)| !same).map(|(c, _)| c)
    }
}

/// Pages through one tenant's rows after a verified position, up to a log position.
pub(super) struct RowPager {
    tenant: String,
    after: (i64, i32),
    through: i64,
    buf: VecDeque<Row>,
    exhausted: bool,
    /// Rows read so far.
    pub(super) read: u64,
}

impl RowPager {
    /// Rows of `tenant` after log position `after_logseq` up to `through` (inclusive).
    pub(super) fn new(tenant: &str, after_logseq: u64, through: u64) -> Self {
        RowPager {
            tenant: tenant.to_owned(),
            after: (after_logseq as i64, i32::MAX),
            through: through as i64,
            buf: VecDeque::new(),
            exhausted: false,
            read: 0,
        }
    }

    pub(super) async fn peek(&mut self, pool: &PgPool) -> Result<Option<&Row>, sqlx::Error> {
        if self.buf.is_empty() && !self.exhausted {
            self.fetch(pool).await?;
        }
        Ok(self.buf.front())
    }

    pub(super) fn advance(&mut self) -> Option<Row> {
        self.buf.pop_front()
    }

    async fn fetch(&mut self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT * FROM audit_events
             WHERE tenant = $1 AND (logseq, idx) > ($2, $3) AND logseq <= $4
             ORDER BY logseq, idx LIMIT $5",
        )
        .bind(&self.tenant)
        .bind(self.after.0)
        .bind(self.after.1)
        .bind(self.through)
        .bind(PAGE)
        .fetch_all(pool)
        .await?;
        self.exhausted = (rows.len() as i64) < PAGE;
        if let Some(last) = rows.last() {
            self.after = (last.logseq, last.idx);
        }
        self.read += rows.len() as u64;
        self.buf.extend(rows);
        Ok(())
    }
}
