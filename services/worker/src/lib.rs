//! The worker: performs the storage side effects of file commands (mkdir, move, copy,
//! delete) and records each task's outcome in the log.
//!
//! It is a durable pull consumer (`fe-worker`, explicit ack) on the task subjects. For every
//! commit that queues work (`task.requested`, `task.retried`):
//! 1. it waits until every earlier open task on an overlapping path is terminal (log order per
//!    path; unrelated paths run in parallel, across any number of worker processes);
//! 2. it loads the task from the log; a terminal task is just acknowledged (redelivery);
//! 3. a pending task gets its preconditions checked against storage — a violated one is a
//!    task failure with a stable code — and is then marked `running` (`task.started`);
//! 4. the effect is performed in a redo-safe way (a task found `running` again after a crash
//!    re-runs it without re-checking, since the first attempt may have completed it);
//! 5. the outcome is committed (`task.succeeded` with the domain fact, or `task.failed`).
//!
//! Transient storage errors are Nak'ed with backoff; on the last allowed delivery the task is
//! dead-lettered instead, so every task reaches a terminal state. Uploads are scanned by the
//! scanner; the worker promotes the clean ones ([`promote`]) and sweeps staging ([`janitor`]).

mod effects;
pub mod janitor;
pub mod ordering;
mod promote;
mod run;

pub use run::{run, WorkerDeps};
