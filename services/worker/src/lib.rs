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
//!    fails it `forbidden`, see [`access`]) and its preconditions checked against storage — a violated one is a
//!    task failure with a stable code — and is then marked `running` (`task.started`);
//! 4. the effect is performed in a redo-safe way (a task found `running` again after a crash
//!    re-runs it without re-checking, since the first attempt may have completed it);
//! 5. the outcome is committed (`task.succeeded` with the domain fact, or `task.failed`).
//!
//! Transient storage errors are Nak'ed with backoff; after [`MAX_ATTEMPTS`] failed attempts
//! the task is dead-lettered instead, so every task reaches a terminal state. Uploads are
//! scanned by the scanner; the worker promotes the clean ones ([`promote`]) and sweeps staging
//! ([`janitor`]); [`gc`] collects blobs nothing needs any more.

mod access;
mod created;
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
pub use run::{run, WorkerDeps, FAILURE_BACKOFF, SLOT_WAIT, TURN_WAIT, WAIT_BACKOFF};
