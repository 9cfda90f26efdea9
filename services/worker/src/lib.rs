//! The worker: performs the storage side effects of file commands (mkdir, move, copy,
//! delete) and records each task's outcome in the log.
//!
//! It is a handler on the consumer runtime ([`platform::consumer`], durable consumer
//! `fe-worker`) on the task subjects. For every commit that queues work (`task.requested`,
//! `task.retried`):
//! 1. it takes its tenant's slot and checks that every earlier open task on an overlapping
//!    path is terminal (log order per path; unrelated paths run in parallel, across any number
//!    of worker processes) — or sets the work aside in PostgreSQL until the task it waits for
//!    ends, so waiting never holds a slot, nor a delivery, other tenants need ([`run`] says
//!    how; [`resume`] runs set-aside work);
//! 2. it loads the task from the log; a terminal task is just acknowledged (redelivery);
//! 3. a pending task gets its access decided again (a permission withdrawn since the request
//!    fails it `forbidden`, see [`access`]) and its preconditions checked against the
//!    catalogue — a violated one is a task failure with a stable code (after `task.started`,
//!    so the attempt counts);
//! 4. commands change only the catalogue, so deciding is the whole effect: the outcome is
//!    committed with the domain fact, and a pending task is started in the same commit
//!    (`task.started` + `dir.created`/`entry.*` + `task.succeeded`); a recursive command
//!    first reports every entry of its tree in chunks (started before the first chunk;
//!    a task found `running` after a crash goes on from what it reported);
//! 5. uploads run the same way once scanned clean, with the blob published first (redo-safe).
//!
//! Transient storage errors are Nak'ed with backoff; after [`MAX_ATTEMPTS`] failed attempts
//! the task is dead-lettered instead, so every task reaches a terminal state. Uploads are
//! scanned by the scanner; the worker promotes the clean ones ([`promote`]) and sweeps staging
//! ([`janitor`]); [`gc`] collects blobs nothing needs any more.

mod access;
mod deferred;
mod effects;
mod failures;
pub mod gc;
pub mod janitor;
pub mod ordering;
mod promote;
mod resume;
mod run;
mod tenant_slots;
mod tree_report;

pub use failures::MAX_ATTEMPTS;
pub use run::{run, WorkerDeps, FAILURE_BACKOFF, SLOT_RETRY, SLOT_WAIT, TURN_WAIT, WAIT_BACKOFF};
