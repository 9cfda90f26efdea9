//! The task aggregate: one client request (mkdir, move, copy, delete, upload) from acceptance
//! to a terminal state.
//!
//! A task is requested by the API, started and finished by a worker, and, when it exhausted
//! its deliveries, dead-lettered and possibly retried by an admin. The aggregate enforces the
//! lifecycle (no finishing a task twice, no retrying a task that is not dead-lettered) and the
//! idempotency-key rule (same key + same body = the same task; a different body = refused).
//! Which storage state makes a task fail is decided by the worker, which reports it here.

mod access;
mod aggregate;
mod command;
mod event;
mod idempotency;
pub mod mkdir;
mod spec;
mod verdict;

pub use access::CommandAccess;
pub use aggregate::{Task, TaskError, TaskStatus};
pub use command::TaskCommand;
pub use event::{TaskEvent, TaskFailure};
pub use idempotency::{
    key_window, request_fingerprint, task_id_for_idempotency_key, IDEMPOTENCY_KEY_TTL,
};
pub use spec::{body_hash, FileCommand, TaskOp, TaskSpec, UploadSpec};
pub use verdict::quarantine_reason;
