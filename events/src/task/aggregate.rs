//! The task aggregate: `handle` reads like the lifecycle rules, `apply` only folds events.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::command::TaskCommand;
use super::event::{TaskEvent, TaskFailure};
use super::spec::{FileCommand, TaskSpec};
use crate::{FilePath, TenantId};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Not requested yet (a fresh aggregate).
    #[default]
    Unknown,
    Pending,
    Running,
    Succeeded,
    Failed,
    DeadLettered,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::DeadLettered => "dead_lettered",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::DeadLettered)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TaskError {
    #[error("the idempotency key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("the idempotency key's task is older than 24 hours")]
    IdempotencyKeyExpired,
    #[error("the task does not exist")]
    NotRequested,
    #[error("the task already reached a terminal state")]
    AlreadyTerminal,
    #[error("the task is not running")]
    NotRunning,
    #[error("only a dead-lettered task can be retried")]
    NotDeadLettered,
    #[error("the command does not apply to this kind of task")]
    WrongKind,
    #[error("a reported entry is not inside the tree the task acts on")]
    OutsideTheTree,
    #[error("the upload has not been found clean")]
    NotScannedClean,
}

/// State of one task, folded from its events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub task_id: Option<Uuid>,
    pub tenant: Option<TenantId>,
    pub principal: String,
    /// The requester's roles as of the request.
    #[serde(default)]
    pub roles: Vec<String>,
    pub spec: Option<TaskSpec>,
    pub status: TaskStatus,
    pub attempts: u32,
    pub error: Option<TaskFailure>,
    pub idempotency_key: Option<String>,
    pub body_hash: Option<String>,
    pub requested_at: Option<DateTime<Utc>>,
    /// `Some(true)` once an upload was scanned clean, `Some(false)` when infected.
    pub scanned_clean: Option<bool>,
    /// Entries inside the tree of a recursive command reported so far in this run (see
    /// [`TaskCommand::ReportEntries`]).
    #[serde(default)]
    pub reported: usize,
}

impl Aggregate for Task {
    const TYPE: &'static str = "task";
    type Command = TaskCommand;
    type Event = TaskEvent;
    type Error = TaskError;
    type Services = ();

    async fn handle(
        &mut self,
        command: TaskCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), TaskError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: TaskEvent) {
        match event {
            ref entry if entry.reports_an_entry() => self.reported += 1,
            TaskEvent::TaskRequested {
                task_id,
                tenant,
                principal,
                roles,
                spec,
                idempotency_key,
                body_hash,
                requested_at,
            } => {
                self.task_id = Some(task_id);
                self.tenant = Some(tenant);
                self.principal = principal;
                self.roles = roles;
                self.spec = Some(spec);
                self.idempotency_key = idempotency_key;
                self.body_hash = body_hash;
                self.requested_at = Some(requested_at);
                self.status = TaskStatus::Pending;
            }
            TaskEvent::TaskStarted { attempt } => {
                self.attempts = attempt;
                self.status = TaskStatus::Running;
            }
            TaskEvent::FileScanned { clean, .. } => self.scanned_clean = Some(clean),
            TaskEvent::TaskSucceeded => self.status = TaskStatus::Succeeded,
            TaskEvent::TaskFailed { error } => {
                self.error = Some(error);
                self.status = TaskStatus::Failed;
            }
            TaskEvent::TaskDeadLettered { error, .. } => {
                self.error = Some(error);
                self.status = TaskStatus::DeadLettered;
            }
            TaskEvent::TaskRetried { .. } => {
                self.error = None;
                self.status = TaskStatus::Pending;
                // A new run lists its tree afresh.
                self.reported = 0;
            }
            TaskEvent::DirCreated { .. }
            | TaskEvent::EntryMoved { .. }
            | TaskEvent::EntryCopied { .. }
            | TaskEvent::EntryDeleted { .. }
            | TaskEvent::FileUploaded { .. }
            | TaskEvent::FileAvailable { .. }
            | TaskEvent::FileQuarantined { .. } => {}
        }
    }
}

impl Task {
    /// The business rules: which events a command produces in the current state.
    pub fn decide(&self, command: TaskCommand) -> Result<Vec<TaskEvent>, TaskError> {
        match command {
            request @ TaskCommand::Request { .. } => self.request(request),
            _ if self.status == TaskStatus::Unknown => Err(TaskError::NotRequested),
            TaskCommand::Retry { by } => match self.status {
                TaskStatus::DeadLettered => Ok(vec![TaskEvent::TaskRetried { by }]),
                _ => Err(TaskError::NotDeadLettered),
            },
            _ if self.status.is_terminal() => Err(TaskError::AlreadyTerminal),
            TaskCommand::Start => Ok(vec![TaskEvent::TaskStarted {
                attempt: self.attempts + 1,
            }]),
            TaskCommand::Succeed { created_parents } => self.succeed(created_parents),
            TaskCommand::StartAndSucceed { created_parents } => {
                self.start_and_succeed(created_parents)
            }
            TaskCommand::ReportEntries { entries } => self.report_entries(entries),
            TaskCommand::Fail { error } => Ok(vec![TaskEvent::TaskFailed { error }]),
            TaskCommand::DeadLetter {
                error,
                failed_attempts,
            } => Ok(vec![TaskEvent::TaskDeadLettered {
                error,
                attempts: self.attempts.max(failed_attempts),
            }]),
            TaskCommand::RecordScan { clean, signature } => self.record_scan(clean, signature),
            TaskCommand::Promote {
                version,
                previous_version,
                created_parents,
            } => self.promote(version, previous_version, created_parents),
        }
    }

    /// A new request creates the task; a repeated one (same idempotency key) is a replay when
    /// the body matches and refused otherwise.
    fn request(&self, command: TaskCommand) -> Result<Vec<TaskEvent>, TaskError> {
        let TaskCommand::Request {
            task_id,
            tenant,
            principal,
            roles,
            spec,
            idempotency_key,
            body_hash,
            requested_at,
        } = command
        else {
            return Err(TaskError::WrongKind);
        };
        if self.status != TaskStatus::Unknown {
            if !self.holds_key_at(requested_at) {
                return Err(TaskError::IdempotencyKeyExpired);
            }
            return match body_hash {
                Some(hash) if self.body_hash.as_deref() == Some(hash.as_str()) => Ok(vec![]),
                _ => Err(TaskError::IdempotencyKeyReused),
            };
        }
        let upload = match &spec {
            TaskSpec::Upload(u) => Some(TaskEvent::FileUploaded { upload: u.clone() }),
            TaskSpec::Command(_) => None,
        };
        let requested = TaskEvent::TaskRequested {
            task_id,
            tenant,
            principal,
            roles,
            spec,
            idempotency_key,
            body_hash,
            requested_at,
        };
        Ok(std::iter::once(requested).chain(upload).collect())
    }

    /// One event per entry of `entries` (strictly inside the tree the command acts on, as
    /// the catalogue lists it), each naming the root it goes with; the root's own event comes
    /// with the success and is the one that changes the catalogue.
    fn report_entries(&self, entries: Vec<FilePath>) -> Result<Vec<TaskEvent>, TaskError> {
        if self.status != TaskStatus::Running {
            return Err(TaskError::NotRunning);
        }
        let Some(TaskSpec::Command(command)) = &self.spec else {
            return Err(TaskError::WrongKind);
        };
        let root = match command {
            FileCommand::Move { from, .. } | FileCommand::Copy { from, .. } => from,
            FileCommand::Delete { path, .. } => path,
            FileCommand::Mkdir { .. } => return Err(TaskError::WrongKind),
        };
        entries
            .into_iter()
            .map(|entry| {
                if entry == *root || !root.contains(&entry) {
                    return Err(TaskError::OutsideTheTree);
                }
                let within = Some(root.clone());
                Ok(match command {
                    FileCommand::Move {
                        from,
                        to,
                        overwrite,
                    } => TaskEvent::EntryMoved {
                        to: entry.rebase(from, to).ok_or(TaskError::OutsideTheTree)?,
                        from: entry,
                        overwrite: *overwrite,
                        within,
                    },
                    FileCommand::Copy {
                        from,
                        to,
                        overwrite,
                    } => TaskEvent::EntryCopied {
                        to: entry.rebase(from, to).ok_or(TaskError::OutsideTheTree)?,
                        from: entry,
                        overwrite: *overwrite,
                        within,
                    },
                    FileCommand::Delete { .. } | FileCommand::Mkdir { .. } => {
                        TaskEvent::EntryDeleted {
                            path: entry,
                            recursive: false,
                            within,
                        }
                    }
                })
            })
            .collect()
    }

    fn succeed(&self, created_parents: Vec<FilePath>) -> Result<Vec<TaskEvent>, TaskError> {
        if self.status != TaskStatus::Running {
            return Err(TaskError::NotRunning);
        }
        self.success(created_parents)
    }

    fn start_and_succeed(
        &self,
        created_parents: Vec<FilePath>,
    ) -> Result<Vec<TaskEvent>, TaskError> {
        let started = match self.status {
            TaskStatus::Pending => Some(TaskEvent::TaskStarted {
                attempt: self.attempts + 1,
            }),
            TaskStatus::Running => None,
            _ => return Err(TaskError::NotRunning),
        };
        let success = self.success(created_parents)?;
        Ok(started.into_iter().chain(success).collect())
    }

    /// The domain fact of a command task's success, then the success itself.
    fn success(&self, created_parents: Vec<FilePath>) -> Result<Vec<TaskEvent>, TaskError> {
        let fact = match &self.spec {
            Some(TaskSpec::Command(FileCommand::Mkdir { path, parents })) => {
                let created = match parents {
                    true => created_ancestors(path, created_parents),
                    false => Vec::new(),
                };
                let mut events: Vec<TaskEvent> = created
                    .into_iter()
                    .map(|dir| TaskEvent::DirCreated {
                        path: dir,
                        parents: false,
                    })
                    .collect();
                events.push(TaskEvent::DirCreated {
                    path: path.clone(),
                    parents: *parents,
                });
                events.push(TaskEvent::TaskSucceeded);
                return Ok(events);
            }
            Some(TaskSpec::Command(FileCommand::Move {
                from,
                to,
                overwrite,
            })) => TaskEvent::EntryMoved {
                from: from.clone(),
                to: to.clone(),
                overwrite: *overwrite,
                within: None,
            },
            Some(TaskSpec::Command(FileCommand::Copy {
                from,
                to,
                overwrite,
            })) => TaskEvent::EntryCopied {
                from: from.clone(),
                to: to.clone(),
                overwrite: *overwrite,
                within: None,
            },
            Some(TaskSpec::Command(FileCommand::Delete { path, recursive })) => {
                TaskEvent::EntryDeleted {
                    path: path.clone(),
                    recursive: *recursive,
                    within: None,
                }
            }
            Some(TaskSpec::Upload(_)) | None => return Err(TaskError::WrongKind),
        };
        Ok(vec![fact, TaskEvent::TaskSucceeded])
    }

    fn record_scan(
        &self,
        clean: bool,
        signature: Option<String>,
    ) -> Result<Vec<TaskEvent>, TaskError> {
        let Some(TaskSpec::Upload(upload)) = &self.spec else {
            return Err(TaskError::WrongKind);
        };
        if self.scanned_clean.is_some() {
            // A redelivered verdict: the first one stands.
            return Ok(vec![]);
        }
        let scanned = TaskEvent::FileScanned {
            clean,
            signature: signature.clone(),
        };
        if clean {
            return Ok(vec![scanned]);
        }
        let reason = super::verdict::quarantine_reason(signature.as_deref());
        Ok(vec![
            scanned,
            TaskEvent::FileQuarantined {
                upload: upload.clone(),
                signature,
            },
            TaskEvent::TaskFailed {
                error: TaskFailure::new("malware_detected", reason),
            },
        ])
    }

    fn promote(
        &self,
        version: String,
        previous_version: Option<String>,
        created_parents: Vec<FilePath>,
    ) -> Result<Vec<TaskEvent>, TaskError> {
        let Some(TaskSpec::Upload(upload)) = &self.spec else {
            return Err(TaskError::WrongKind);
        };
        if self.scanned_clean != Some(true) {
            return Err(TaskError::NotScannedClean);
        }
        let mut events: Vec<TaskEvent> = created_ancestors(&upload.path, created_parents)
            .into_iter()
            .map(|dir| TaskEvent::DirCreated {
                path: dir,
                parents: false,
            })
            .collect();
        events.push(TaskEvent::FileAvailable {
            upload: upload.clone(),
            version,
            previous_version,
        });
        events.push(TaskEvent::TaskSucceeded);
        Ok(events)
    }
}

/// The directories a task created above `path` (a `mkdir -p`'s or an upload's), top-down:
/// only strict ancestors of `path` (never the root), each once. Whatever the worker reports
/// is held to this.
fn created_ancestors(path: &FilePath, reported: Vec<FilePath>) -> Vec<FilePath> {
    let mut dirs: Vec<FilePath> = reported
        .into_iter()
        .filter(|d| !d.is_root() && d != path && d.contains(path))
        .collect();
    dirs.sort_by_key(|d| d.as_str().len());
    dirs.dedup();
    dirs
}
