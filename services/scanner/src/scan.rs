//! One upload from its staged bytes to a recorded verdict.
//!
//! Owns the decisions of the scanner for one task (see the crate docs for the why): which
//! tasks need a scan, what each clamd answer becomes in the log and in storage, and which
//! failures are retried. It never acknowledges messages itself: it returns an [`Outcome`] and
//! `run.rs` turns it into the consumer runtime's outcome (an ack or a delayed Nak).

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use events::task::{Task, TaskCommand, TaskEvent, TaskFailure, TaskSpec, UploadSpec};
use events::TenantId;
use platform::event_log::{ExecuteError, LoggedCommit};
use platform::storage::StorageError;
use tokio::io::{AsyncRead, ReadBuf};

use crate::clamd::{ClamdError, Verdict};
use crate::ScannerDeps;

/// The principal recorded on every commit the scanner makes.
pub const PRINCIPAL: &str = "system:scanner";

/// What the delivery of one commit came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing (more) to do for this commit: acknowledge it.
    Done,
    /// Not possible now (clamd down, log or storage unreachable): deliver again later. The
    /// upload stays staged and unscanned meanwhile, so nothing is released.
    Retry(String),
}

/// Whether a commit puts an upload in front of the scanner.
pub(crate) fn wants_scan(events: &[TaskEvent]) -> bool {
    events.iter().any(|e| {
        matches!(
            e,
            TaskEvent::FileUploaded { .. } | TaskEvent::TaskRetried { .. }
        )
    })
}

/// Loads the task of `commit` and, if its upload still awaits a verdict, scans and records it.
pub(crate) async fn process(deps: &ScannerDeps, commit: &LoggedCommit) -> Outcome {
    let task = match load_task(deps, commit).await {
        Ok(task) => task,
        Err(reason) => return Outcome::Retry(reason),
    };
    let Some(TaskSpec::Upload(upload)) = task.spec else {
        return Outcome::Done; // file commands belong to the worker
    };
    if task.status.is_terminal() || task.scanned_clean.is_some() {
        return Outcome::Done; // a redelivery: the first verdict stands
    }
    let reader = match open_staged(deps, &commit.tenant, &upload).await {
        Ok(reader) => reader,
        Err(StorageError::NotFound(_)) => return staged_missing(deps, commit, &upload).await,
        Err(e) => return Outcome::Retry(e.to_string()),
    };
    match scan(deps, reader).await {
        Ok(Verdict::Clean) => record(deps, commit, clean_verdict()).await,
        Ok(Verdict::Infected { signature }) => infected(deps, commit, &upload, signature).await,
        Err(ClamdError::TooLarge) => too_large(deps, commit, &upload).await,
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

fn clean_verdict() -> TaskCommand {
    TaskCommand::RecordScan {
        clean: true,
        signature: None,
    }
}

/// Quarantine first, then the verdict: a crash in between leaves the bytes in quarantine and
/// the task unscanned, which [`staged_missing`] completes on redelivery.
async fn infected(
    deps: &ScannerDeps,
    commit: &LoggedCommit,
    upload: &UploadSpec,
    signature: String,
) -> Outcome {
    match quarantine(deps, &commit.tenant, upload).await {
        Ok(()) => {}
        // Someone removed the staged bytes meanwhile: nothing can serve them either way, and
        // the verdict is still true, so it is recorded.
        Err(StorageError::NotFound(_)) => {
            tracing::warn!("scanner: infected upload vanished before quarantine");
        }
        Err(e) => return Outcome::Retry(e.to_string()),
    }
    let command = TaskCommand::RecordScan {
        clean: false,
        signature: Some(signature),
    };
    record(deps, commit, command).await
}

/// The task fails first, then the bytes move to quarantine: a crash in between leaves a
/// failed task whose staged bytes the janitor discards, never an unscanned file released.
async fn too_large(deps: &ScannerDeps, commit: &LoggedCommit, upload: &UploadSpec) -> Outcome {
    let error = TaskFailure::new(
        "storage_error",
        "the upload exceeds the scanner's size limit and cannot be scanned",
    );
    let outcome = record(deps, commit, TaskCommand::Fail { error }).await;
    if outcome == Outcome::Done {
        if let Err(e) = quarantine(deps, &commit.tenant, upload).await {
            tracing::warn!(error = %e, "scanner: could not quarantine an unscannable upload; the janitor will discard it");
        }
    }
    outcome
}

/// The staged bytes are gone while the task still waits for a verdict. Either an earlier
/// delivery quarantined them and crashed before recording (then `quarantine` finds them there
/// and succeeds), or the upload was discarded, which its owner (the janitor) reports.
async fn staged_missing(deps: &ScannerDeps, commit: &LoggedCommit, upload: &UploadSpec) -> Outcome {
    match quarantine(deps, &commit.tenant, upload).await {
        Ok(()) => {
            tracing::warn!("scanner: completing an infected verdict interrupted after quarantine");
            let command = TaskCommand::RecordScan {
                clean: false,
                signature: None,
            };
            record(deps, commit, command).await
        }
        Err(StorageError::NotFound(_)) => {
            tracing::warn!("scanner: staged upload is gone; nothing to scan");
            Outcome::Done
        }
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

#[tracing::instrument(skip_all, fields(aggregate = %commit.aggregate_id))]
async fn load_task(deps: &ScannerDeps, commit: &LoggedCommit) -> Result<Task, String> {
    deps.log
        .load::<Task>(&commit.aggregate_id)
        .await
        .map(|loaded| loaded.aggregate)
        .map_err(|e| e.to_string())
}

#[tracing::instrument(skip_all, fields(upload_id = %upload.upload_id))]
async fn open_staged(
    deps: &ScannerDeps,
    tenant: &TenantId,
    upload: &UploadSpec,
) -> Result<Box<dyn AsyncRead + Send + Unpin>, StorageError> {
    deps.storage.open_staged(tenant, upload.upload_id).await
}

#[tracing::instrument(skip_all, fields(upload_id = %upload.upload_id))]
async fn quarantine(
    deps: &ScannerDeps,
    tenant: &TenantId,
    upload: &UploadSpec,
) -> Result<(), StorageError> {
    deps.storage.quarantine(tenant, upload.upload_id).await
}

/// Streams the bytes to clamd and accounts for the attempt in the metrics.
#[tracing::instrument(skip_all, fields(verdict = tracing::field::Empty))]
async fn scan(
    deps: &ScannerDeps,
    reader: Box<dyn AsyncRead + Send + Unpin>,
) -> Result<Verdict, ClamdError> {
    let started = Instant::now();
    let mut counted = CountingReader {
        inner: reader,
        bytes: 0,
    };
    let result = deps.clamd.scan(&mut counted).await;
    metrics::histogram!("fe_scan_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("fe_scan_bytes_total").increment(counted.bytes);
    let label = match &result {
        Ok(Verdict::Clean) => "clean",
        Ok(Verdict::Infected { .. }) => "infected",
        Err(ClamdError::TooLarge) => "too_large",
        Err(ClamdError::Unavailable { .. }) => {
            metrics::counter!("fe_scanner_clamd_unavailable_total").increment(1);
            "error"
        }
        Err(ClamdError::Timeout(_)) => {
            metrics::counter!("fe_scan_timeouts_total").increment(1);
            "error"
        }
        Err(_) => "error",
    };
    metrics::counter!("fe_scan_verdicts_total", "verdict" => label).increment(1);
    tracing::Span::current().record("verdict", label);
    result
}

/// Appends a task command with the scanner's metadata. A task that became terminal meanwhile
/// is not an error: its outcome is already recorded.
#[tracing::instrument(skip_all, fields(aggregate = %commit.aggregate_id))]
async fn record(deps: &ScannerDeps, commit: &LoggedCommit, command: TaskCommand) -> Outcome {
    match deps
        .log
        .execute::<Task>(&commit.aggregate_id, command, &(), metadata(commit))
        .await
    {
        Ok(_) => Outcome::Done,
        Err(ExecuteError::Domain(refused)) => {
            tracing::info!(reason = %refused, "scanner: task no longer takes a verdict");
            Outcome::Done
        }
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

/// `principal`, and the `request_id` / `traceparent` of the commit that asked for the scan.
fn metadata(commit: &LoggedCommit) -> HashMap<String, String> {
    let mut metadata = HashMap::new();
    metadata.insert("principal".to_owned(), PRINCIPAL.to_owned());
    if let Some(tp) = &commit.headers.traceparent {
        metadata.insert("traceparent".to_owned(), tp.clone());
    }
    if let Some(rid) = &commit.headers.request_id {
        metadata.insert("request_id".to_owned(), rid.clone());
    }
    metadata
}

/// Counts the bytes read through it, for `fe_scan_bytes_total`.
struct CountingReader<R> {
    inner: R,
    bytes: u64,
}

impl<R: AsyncRead + Unpin> AsyncRead for CountingReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        self.bytes += read as u64;
        polled
    }
}
