//! Events of the task aggregate: the lifecycle of a task plus the domain facts a successful
//! task establishes (a directory created, an entry moved, ...), committed together with the
//! task's outcome so that the fact and the outcome can never disagree.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::spec::{TaskSpec, UploadSpec};
use crate::{FilePath, TenantId};

/// Why a task failed, as shown in `error` of the task resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailure {
    /// Stable code: `not_found`, `already_exists`, `not_empty`, `conflict`,
    /// `malware_detected`, `storage_error`, `timeout`.
    pub code: String,
    pub message: String,
}

impl TaskFailure {
    /// A failure with a message written for the client. Never pass the text of an internal
    /// error here (database, NATS, I/O, a storage backend): use [`TaskFailure::generic`].
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// A failure with the fixed, client-safe message of its code, for failures whose cause is
    /// internal text: the cause belongs in the service's log, never in the task or the
    /// `task.failed` / `task.dead_lettered` events that subscribers and auditors receive.
    pub fn generic(code: &str) -> Self {
        let message = match code {
            "not_found" => "a path the task needs does not exist",
            "already_exists" => "the target already exists",
            "not_empty" => "the directory is not empty",
            "conflict" => "an entry is not of the kind the task needs (file or directory)",
            "forbidden" => "the requester may not do this",
            "path_invalid" => "a path of the task is not valid in storage",
            "malware_detected" => "the upload contains malware",
            "quota_exceeded" => "the tenant's quota would be exceeded",
            "timeout" => "the task did not finish in time",
            _ => "the storage backend failed; an administrator can retry the task",
        };
        Self::new(code, message)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskEvent {
    TaskRequested {
        task_id: Uuid,
        tenant: TenantId,
        principal: String,
        /// The requester's roles when the request was accepted, so the worker can decide the
        /// ACL again as of execution time (absent in events written before they were kept).
        #[serde(default)]
        roles: Vec<String>,
        spec: TaskSpec,
        idempotency_key: Option<String>,
        body_hash: Option<String>,
        requested_at: DateTime<Utc>,
    },
    TaskStarted {
        attempt: u32,
    },
    DirCreated {
        path: FilePath,
        parents: bool,
    },
    EntryMoved {
        from: FilePath,
        to: FilePath,
        overwrite: bool,
        /// Set on the event of an entry inside the tree of a recursive command: the root
        /// whose own event changes the catalogue (this one only reports the entry).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        within: Option<FilePath>,
    },
    EntryCopied {
        from: FilePath,
        to: FilePath,
        overwrite: bool,
        /// Set on the event of an entry inside the tree of a recursive command: the root
        /// whose own event changes the catalogue (this one only reports the entry).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        within: Option<FilePath>,
    },
    EntryDeleted {
        path: FilePath,
        recursive: bool,
        /// Set on the event of an entry inside the tree of a recursive command: the root
        /// whose own event changes the catalogue (this one only reports the entry).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        within: Option<FilePath>,
    },
    FileUploaded {
        upload: UploadSpec,
    },
    FileScanned {
        clean: bool,
        signature: Option<String>,
    },
    FileAvailable {
        upload: UploadSpec,
        version: String,
        previous_version: Option<String>,
    },
    FileQuarantined {
        upload: UploadSpec,
        signature: Option<String>,
    },
    TaskSucceeded,
    TaskFailed {
        error: TaskFailure,
    },
    TaskDeadLettered {
        error: TaskFailure,
        attempts: u32,
    },
    TaskRetried {
        by: String,
    },
}

impl TaskEvent {
    /// The stable, dotted name of the event (its `event_type` in the log).
    pub fn name(&self) -> &'static str {
        match self {
            Self::TaskRequested { .. } => "task.requested",
            Self::TaskStarted { .. } => "task.started",
            Self::DirCreated { .. } => "dir.created",
            Self::EntryMoved { .. } => "entry.moved",
            Self::EntryCopied { .. } => "entry.copied",
            Self::EntryDeleted { .. } => "entry.deleted",
            Self::FileUploaded { .. } => "file.uploaded",
            Self::FileScanned { .. } => "file.scanned",
            Self::FileAvailable { .. } => "file.available",
            Self::FileQuarantined { .. } => "file.quarantined",
            Self::TaskSucceeded => "task.succeeded",
            Self::TaskFailed { .. } => "task.failed",
            Self::TaskDeadLettered { .. } => "task.dead_lettered",
            Self::TaskRetried { .. } => "task.retried",
        }
    }

    /// Whether this is the event of an entry inside the tree of a recursive command (`within`
    /// set): it reports the entry, while the root's own event changes the catalogue.
    pub fn reports_an_entry(&self) -> bool {
        matches!(
            self,
            Self::EntryMoved {
                within: Some(_),
                ..
            } | Self::EntryCopied {
                within: Some(_),
                ..
            } | Self::EntryDeleted {
                within: Some(_),
                ..
            }
        )
    }

    /// Whether this event puts work in front of a worker: a new command task, or any retried
    /// task. A new upload has nothing for the worker until the scanner's clean verdict
    /// (`file.scanned`), which is what brings it to the worker.
    pub fn queues_work(&self) -> bool {
        match self {
            Self::TaskRequested { spec, .. } => !matches!(spec, TaskSpec::Upload(_)),
            Self::TaskRetried { .. } => true,
            _ => false,
        }
    }
}

impl DomainEvent for TaskEvent {
    fn event_type(&self) -> String {
        self.name().to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
