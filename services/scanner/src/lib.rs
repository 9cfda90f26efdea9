//! The scanner: streams every staged upload to clamd and records the verdict in the log.
//!
//! It is a durable pull consumer (`fe-scanner`, explicit ack, filter `fe.ev.*.task.>`). For
//! every commit holding `file.uploaded` (or `task.retried`), it loads the task; a terminal or
//! already scanned task is acknowledged as a redelivery. Otherwise the staged bytes are
//! streamed to clamd with `INSTREAM` ([`clamd`]) and the verdict is recorded with
//! `TaskCommand::RecordScan` (principal `system:scanner`, the commit's `request_id` and
//! `traceparent` carried over). Clean uploads stay staged: the worker promotes them.
//!
//! Decisions (the rule behind all of them: an unscanned file is never released):
//!
//! * **Infected** → `storage.quarantine` first, then `RecordScan{clean: false}` (one commit:
//!   `file.scanned` + `file.quarantined` + `task.failed{malware_detected}`). A crash between
//!   the two leaves the bytes in quarantine and the task unscanned; the redelivery finds the
//!   staged file gone, `quarantine` (idempotent) finds it in quarantine, and the infected
//!   verdict is recorded then — without the signature name, which only the lost attempt knew.
//! * **clamd unavailable, timeout, I/O or protocol error, log or storage unreachable** → the
//!   delivery is Nak'ed with a capped exponential delay (1 s … 30 s) and `max_deliver` is
//!   unlimited: the task stays pending and the file `scanning` for as long as clamd is down,
//!   then everything waiting is scanned. Nothing fails and nothing is released meanwhile.
//! * **Too large for clamd** (`StreamMaxLength`) → permanent, since resending fails the same
//!   way: the task fails with `storage_error` ("the upload exceeds the scanner's size limit")
//!   and the bytes then go to quarantine, kept for operators and never served. The order is
//!   the reverse of the infected case on purpose: a crash in between leaves a failed task
//!   whose staged bytes the janitor discards, whereas quarantining first would leave staged
//!   bytes missing with no way to tell "too large" from "infected" on redelivery. It is not
//!   `malware_detected` because nothing was detected. Operators avoid it by keeping
//!   `FE_MAX_UPLOAD_BYTES` below clamd's `StreamMaxLength`.
//! * **Staged bytes missing** and not in quarantine (promoted, or discarded by the janitor)
//!   → logged and acknowledged: whoever removed them owns the task's outcome.
//!
//! Metrics (no tenant labels): `fe_scan_seconds`, `fe_scan_verdicts_total{verdict}` (`clean`,
//! `infected`, `too_large`, `error`), `fe_scan_timeouts_total`, `fe_scan_bytes_total`,
//! `fe_scanner_clamd_unavailable_total`, `fe_scanner_unreadable_commits_total`.

pub mod clamd;
mod run;
mod scan;

use std::sync::Arc;
use std::time::Duration;

use platform::event_log::EventLog;
use platform::storage::Storage;

pub use clamd::{ClamdClient, ClamdError, Verdict};
pub use run::{consumer_spec, run, CONSUMER_NAME, RETRY};
pub use scan::PRINCIPAL;

/// Scans in flight per scanner process when `FE_SCANNER_CONCURRENCY` is unset.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Whole-scan timeout when `FE_SCAN_TIMEOUT_S` is unset.
pub const DEFAULT_SCAN_TIMEOUT: Duration = Duration::from_secs(300);
/// A sensible `ack_wait` for the scanner's consumer; scans heartbeat at a third of it.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(60);

/// What the scanner needs; cheap to clone.
#[derive(Clone)]
pub struct ScannerDeps {
    /// The event log the tasks are read from and the verdicts appended to.
    pub log: EventLog,
    /// Where the staged bytes are read and infected ones quarantined.
    pub storage: Arc<dyn Storage>,
    /// The clamd to stream to.
    pub clamd: ClamdClient,
    /// Scans in flight in this process (`FE_SCANNER_CONCURRENCY`).
    pub concurrency: usize,
    /// Redelivery timeout of the durable consumer; heartbeats are sent at a third of it.
    pub ack_wait: Duration,
    /// How long scans in flight may finish after shutdown before they are released for
    /// redelivery (nothing is recorded for them; the next delivery scans again).
    pub drain: Duration,
}
