//! The `subject` and `data` of each event type: a clean public shape per type, built from the
//! typed domain event (never serde's enum wrapper), so subscribers see stable field names.
//!
//! Every task-aggregate event carries `task_id`, so a subscriber can tie a `file.available`
//! to its upload or a `task.failed` to its request. Events whose payload names no path
//! (`task.failed`, `file.scanned`, ...) take the task's path from the adapter when it knows it
//! (the subject of the task's `task.requested`), else `/`.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::acl::AclEvent;
use crate::storage::StorageEvent;
use crate::subscription::SubscriptionEvent;
use crate::task::{FileCommand, TaskEvent, TaskSpec, UploadSpec};
use crate::FilePath;

/// The path an event is about and its public data.
pub(super) struct Shaped {
    pub subject: String,
    pub data: Value,
}

fn shaped(subject: impl Into<String>, data: Value) -> Shaped {
    Shaped {
        subject: subject.into(),
        data,
    }
}

/// `subject`/`data` of a task-aggregate event; `task_path` is the task's path if known.
pub(super) fn task(task_id: Uuid, event: TaskEvent, task_path: Option<&str>) -> Shaped {
    let about = task_path.unwrap_or("/").to_owned();
    match event {
        TaskEvent::TaskRequested {
            spec, requested_at, ..
        } => requested(task_id, &spec, requested_at),
        TaskEvent::TaskStarted { attempt } => {
            shaped(about, json!({"task_id": task_id, "attempt": attempt}))
        }
        TaskEvent::DirCreated { path, parents } => shaped(
            path.as_str(),
            json!({"task_id": task_id, "path": path, "parents": parents}),
        ),
        TaskEvent::EntryMoved {
            from,
            to,
            overwrite,
            within,
        }
        | TaskEvent::EntryCopied {
            from,
            to,
            overwrite,
            within,
        } => shaped(
            from.as_str(),
            with_root(
                json!({"task_id": task_id, "from": from, "to": to, "overwrite": overwrite}),
                within,
            ),
        ),
        TaskEvent::EntryDeleted {
            path,
            recursive,
            within,
        } => shaped(
            path.as_str(),
            with_root(
                json!({"task_id": task_id, "path": path, "recursive": recursive}),
                within,
            ),
        ),
        TaskEvent::FileUploaded { upload } => upload_shaped(task_id, &upload, json!({})),
        TaskEvent::FileScanned { clean, signature } => shaped(
            about,
            json!({"task_id": task_id, "clean": clean, "signature": signature}),
        ),
        TaskEvent::FileAvailable {
            upload,
            version,
            previous_version,
        } => upload_shaped(
            task_id,
            &upload,
            json!({"version": version, "previous_version": previous_version}),
        ),
        TaskEvent::FileQuarantined { upload, signature } => {
            upload_shaped(task_id, &upload, json!({"signature": signature}))
        }
        TaskEvent::TaskSucceeded => shaped(about, json!({"task_id": task_id})),
        TaskEvent::TaskFailed { error } => shaped(
            about,
            json!({"task_id": task_id, "error": {"code": error.code, "message": error.message}}),
        ),
        TaskEvent::TaskDeadLettered { error, attempts } => shaped(
            about,
            json!({"task_id": task_id, "attempts": attempts,
                   "error": {"code": error.code, "message": error.message}}),
        ),
        TaskEvent::TaskRetried { by } => shaped(about, json!({"task_id": task_id, "by": by})),
    }
}

/// `task.requested`: the operation and its arguments, flattened (`op` plus the fields of the
/// command, as in `POST /v1/commands`). Idempotency keys and body hashes stay internal.
fn requested(
    task_id: Uuid,
    spec: &TaskSpec,
    requested_at: chrono::DateTime<chrono::Utc>,
) -> Shaped {
    let mut data =
        json!({"task_id": task_id, "op": spec.op().as_str(), "requested_at": requested_at});
    let (subject, args) = match spec {
        TaskSpec::Command(FileCommand::Mkdir { path, parents }) => {
            (path, json!({"path": path, "parents": parents}))
        }
        TaskSpec::Command(FileCommand::Move {
            from,
            to,
            overwrite,
        })
        | TaskSpec::Command(FileCommand::Copy {
            from,
            to,
            overwrite,
        }) => (
            from,
            json!({"from": from, "to": to, "overwrite": overwrite}),
        ),
        TaskSpec::Command(FileCommand::Delete { path, recursive }) => {
            (path, json!({"path": path, "recursive": recursive}))
        }
        TaskSpec::Upload(u) => (&u.path, upload_fields(u)),
    };
    merge(&mut data, args);
    shaped(subject.as_str(), data)
}

fn upload_fields(upload: &UploadSpec) -> Value {
    json!({
        "path": upload.path,
        "size": upload.size,
        "sha256": upload.sha256,
        "content_type": upload.content_type,
    })
}

fn upload_shaped(task_id: Uuid, upload: &UploadSpec, extra: Value) -> Shaped {
    let mut data = json!({"task_id": task_id});
    merge(&mut data, upload_fields(upload));
    merge(&mut data, extra);
    shaped(upload.path.as_str(), data)
}

/// `subject`/`data` of an ACL event: the rule's path is the subject.
pub(super) fn acl(event: AclEvent) -> Shaped {
    match event {
        AclEvent::RuleGranted { rule, .. } => shaped(
            rule.path.as_str(),
            json!({
                "rule_id": rule.rule_id,
                "subject": rule.subject,
                "path": rule.path,
                "permissions": rule.permissions,
                "effect": rule.effect,
            }),
        ),
        AclEvent::RuleRevoked { rule_id, path, .. } => {
            shaped(path.as_str(), json!({"rule_id": rule_id, "path": path}))
        }
    }
}

/// `subject`/`data` of a subscription event (audit only): the subscription's path prefix is
/// the subject. The target URL is left out: webhook URLs often embed credentials.
pub(super) fn subscription(event: SubscriptionEvent) -> Shaped {
    match event {
        SubscriptionEvent::Created { subscription, .. } => shaped(
            subscription.path_prefix.as_str(),
            json!({
                "subscription_id": subscription.id,
                "types": subscription.types,
                "path_prefix": subscription.path_prefix,
            }),
        ),
        SubscriptionEvent::Deleted {
            id, path_prefix, ..
        } => shaped(
            path_prefix.as_str(),
            json!({"subscription_id": id, "path_prefix": path_prefix}),
        ),
        SubscriptionEvent::Disabled {
            id,
            path_prefix,
            reason,
        } => shaped(
            path_prefix.as_str(),
            json!({"subscription_id": id, "path_prefix": path_prefix, "reason": reason}),
        ),
    }
}

/// `subject`/`data` of a tenant storage ledger event (audit only): about the whole tenant.
pub(super) fn storage(event: StorageEvent) -> Shaped {
    match event {
        StorageEvent::QuotaSet { bytes, files } => {
            shaped("/", json!({"bytes": bytes, "files": files}))
        }
        StorageEvent::BlobsCollected { blobs, bytes } => {
            shaped("/", json!({"blobs": blobs, "bytes": bytes}))
        }
    }
}

/// `subject`/`data` of an event of an aggregate not modelled here: the stored payload as it
/// is, about its `path` field when it has one.
pub(super) fn generic(payload: Value) -> Shaped {
    let subject = payload
        .get("path")
        .and_then(Value::as_str)
        .and_then(|p| crate::FilePath::parse(p).ok())
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    shaped(subject, payload)
}

/// Copies the fields of object `extra` into object `data` (both built above as objects).
fn merge(data: &mut Value, extra: Value) {
    if let (Some(data), Value::Object(extra)) = (data.as_object_mut(), extra) {
        data.extend(extra);
    }
}

/// `data.within`: the root of the recursive command an entry's event goes with (absent on the
/// root's own event and on single-entry commands).
fn with_root(mut data: Value, within: Option<FilePath>) -> Value {
    if let (Some(root), Some(fields)) = (within, data.as_object_mut()) {
        fields.insert("within".into(), json!(root));
    }
    data
}
