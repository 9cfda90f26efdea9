//! Stored audit rows as the verifier reads them: keyset pages in `(seq, idx)` order inside the
//! verifier's snapshot transaction, one page in memory at a time.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, Postgres, Transaction};
use uuid::Uuid;

use super::entry::AuditEntry;

/// Rows fetched per round trip.
const PAGE: i64 = 1000;

/// One stored row of `audit_events`.
#[derive(Debug, FromRow)]
pub(super) struct Row {
    pub seq: i64,
    pub idx: i32,
    pub tenant: String,
    #[sqlx(rename = "type")]
    pub short_type: String,
    pub path: String,
    pub target: Option<String>,
    pub task_id: Option<Uuid>,
    pub principal: String,
    pub request_id: Option<String>,
    pub time: DateTime<Utc>,
    pub event: String,
    pub hash: Vec<u8>,
}

impl Row {
    pub(super) fn key(&self) -> (u64, u32) {
        (self.seq.max(0) as u64, self.idx.max(0) as u32)
    }

    /// The first filter column that differs from what the log says, if any. Times are
    /// compared at PostgreSQL's precision (microseconds); the event itself keeps nanoseconds.
    pub(super) fn differing_column(&self, e: &AuditEntry) -> Option<&'static str> {
        let checks = [
            ("tenant", self.tenant == e.tenant),
            ("type", self.short_type == e.short_type),
            ("path", self.path == e.path),
            ("target", self.target == e.target),
            ("task_id", self.task_id == e.task_id),
            ("principal", self.principal == e.principal),
            ("request_id", self.request_id == e.request_id),
            (
                "time",
                self.time.timestamp_micros() == e.time.timestamp_micros(),
            ),
        ];
        checks.into_iter().find(|(_, same)| !same).map(|(c, _)| c)
    }
}

/// Pages through the rows of one tenant (or all) in log order.
pub(super) struct RowPager {
    tenant: Option<String>,
    after: (i64, i32),
    buf: VecDeque<Row>,
    exhausted: bool,
}

impl RowPager {
    pub(super) fn new(tenant: Option<String>) -> Self {
        RowPager {
            tenant,
            after: (-1, -1),
            buf: VecDeque::new(),
            exhausted: false,
        }
    }

    pub(super) async fn peek(
        &mut self,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<Option<&Row>, sqlx::Error> {
        if self.buf.is_empty() && !self.exhausted {
            self.fetch(tx).await?;
        }
        Ok(self.buf.front())
    }

    pub(super) fn advance(&mut self) -> Option<Row> {
        self.buf.pop_front()
    }

    async fn fetch(&mut self, tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
        // Two statements rather than `$1 IS NULL OR tenant = $1`, so each keeps the plan
        // of its own index (tenant order, or the primary key).
        let sql = match self.tenant {
            Some(_) => {
                "SELECT * FROM audit_events WHERE tenant = $1 AND (seq, idx) > ($2, $3)
                        ORDER BY seq, idx LIMIT $4"
            }
            None => {
                "SELECT * FROM audit_events WHERE $1::text IS NULL AND (seq, idx) > ($2, $3)
                     ORDER BY seq, idx LIMIT $4"
            }
        };
        let rows: Vec<Row> = sqlx::query_as(sql)
            .bind(self.tenant.as_deref())
            .bind(self.after.0)
            .bind(self.after.1)
            .bind(PAGE)
            .fetch_all(&mut **tx)
            .await?;
        self.exhausted = (rows.len() as i64) < PAGE;
        if let Some(last) = rows.last() {
            self.after = (last.seq, last.idx);
        }
        self.buf.extend(rows);
        Ok(())
    }
}
