//! Commands of the task aggregate. Times and identities come from the adapter that issues the
//! command: the domain never reads a clock.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::event::TaskFailure;
use super::spec::TaskSpec;
use crate::{FilePath, TenantId};

#[derive(Clone, Debug, PartialEq)]
pub enum TaskCommand {
    /// The API accepted a request (access already checked).
    Request {
        task_id: Uuid,
        tenant: TenantId,
        principal: String,
        /// The requester's roles (kept so the worker can re-check access).
        roles: Vec<String>,
        spec: TaskSpec,
        idempotency_key: Option<String>,
        body_hash: Option<String>,
        requested_at: DateTime<Utc>,
    },
    /// A worker checked the preconditions and is about to perform the effect.
    Start,
    /// The effect is done; records the domain fact and the success together. `created_parents`
    /// are the ancestors a `mkdir` with `parents: true` brought into existence (each gets its
    /// own `DirCreated`, top-down, before the directory itself); ignored for other commands.
    Succeed { created_parents: Vec<FilePath> },
    /// [`TaskCommand::Start`] and [`TaskCommand::Succeed`] in one commit, for a command whose
    /// whole effect is the fact it commits (nothing is done between the start and the
    /// success, so there is nothing a crash in between could leave half-done): a pending task
    /// is started and succeeds at once; a running one (a redo) just succeeds.
    StartAndSucceed { created_parents: Vec<FilePath> },
    /// Before the success of a recursive `move`, `copy` or `delete`: the entries strictly
    /// inside its tree (source side), in the catalogue's path order, each to get its own
    /// event (API.md: every entry that comes into existence or goes away has its own event).
    /// Sent in chunks so no commit grows with the tree; the task counts what it reported
    /// (`Task::reported`) so a redo continues after the last chunk.
    ReportEntries { entries: Vec<FilePath> },
    /// The task cannot succeed (a storage precondition failed, malware, timeout).
    Fail { error: TaskFailure },
    /// Attempts are exhausted: park the task for an admin. `failed_attempts` is how many
    /// attempts failed (counted by the worker: an upload's promotion fails without a
    /// `TaskStarted`); the event records the larger of it and the attempts started.
    DeadLetter {
        error: TaskFailure,
        failed_attempts: u32,
    },
    /// An admin put a dead-lettered task back in the queue.
    Retry { by: String },
    /// The scanner's verdict on an upload.
    RecordScan {
        clean: bool,
        signature: Option<String>,
    },
    /// The worker promoted a clean upload to be the file's new version. `created_parents` are
    /// the directories above the file it brought into existence (each gets its own
    /// `DirCreated`, top-down, before `FileAvailable`).
    Promote {
        version: String,
        previous_version: Option<String>,
        created_parents: Vec<FilePath>,
    },
}
