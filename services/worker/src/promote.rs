//! Promotion of clean uploads: once the scanner recorded a clean verdict, the staged bytes
//! are published as the tenant's blob named by their SHA-256 (atomically: rename of the
//! fsynced staged file, then fsync of the directories; an existing blob of the same content
//! is kept, never rewritten), and `file.available` + `task.succeeded` are committed together;
//! the projection then points the path at the new version and the version at the blob. The
//! previous version keeps its blob (links to it go on serving exactly it). Uploads take their
//! turn in the per-path log order like commands. The commit is preceded by one `dir.created`
//! per parent directory the upload brought into existence (`created.rs`).
//!
//! Crash safety: killed before the rename, the redelivery publishes again; killed after it,
//! the redelivery finds the blob and records the outcome. A blob published for an upload
//! whose task then failed is unreferenced and left to garbage collection.

use events::quota::{self, Change, Usage};
use events::task::{Task, TaskCommand, TaskFailure, TaskSpec, UploadSpec};
use events::TenantId;
use platform::catalogue::{self, EntryKind};
use platform::event_log::{Loaded, LoggedCommit};
use platform::storage::{BlobId, Storage};

use crate::effects::EffectError;
use crate::run::{execute, record_failure, Step, Worker, WorkerDeps};

/// Promotes the upload `task` (as loaded for `commit`) when it was scanned clean and is not
/// terminal yet; anything else is settled as it is.
pub(crate) async fn promote(
    worker: &Worker,
    commit: &LoggedCommit,
    mut loaded: Loaded<Task>,
) -> Result<Step, String> {
    let deps = &worker.deps;
    let task = loaded.aggregate.clone();
    let (Some(task_id), Some(TaskSpec::Upload(upload))) = (task.task_id, task.spec.clone()) else {
        return Ok(Step::Settled);
    };
    if task.status.is_terminal() || task.scanned_clean != Some(true) {
        return Ok(Step::Settled);
    }
    let spec = TaskSpec::Upload(upload.clone());
    let _turn = match worker.take_turn(commit, task_id, &spec).await? {
        Ok(turn) => turn,
        Err(not_yet) => return Ok(Step::NotYet(not_yet)),
    };
    let previous = current_version(deps, &commit.tenant, &upload).await?;
    // Decided before storage is touched and from the catalogue, so a redo reports the same.
    let created_parents =
        crate::created::missing_ancestors(&deps.pool, &commit.tenant, &upload.path)
            .await
            .map_err(|e| e.to_string())?;
    let storage = deps.storage.as_ref();
    match place(deps, storage, &commit.tenant, &upload).await {
        Ok(()) => {
            let command = TaskCommand::Promote {
                version: upload.upload_id.to_string(),
                previous_version: previous,
                created_parents,
            };
            execute(deps, commit, Some(&mut loaded), command).await?;
            metrics::counter!("fe_uploads_promoted_total").increment(1);
            Ok(Step::Settled)
        }
        Err(EffectError::Permanent(failure)) => {
            let _ = storage
                .discard_staged(&commit.tenant, upload.upload_id)
                .await;
            let failure = EffectError::Permanent(failure);
            record_failure(deps, commit, Some(&mut loaded), failure).await
        }
        Err(transient) => record_failure(deps, commit, Some(&mut loaded), transient).await,
    }
}

/// The version the catalogue shows as available at the path (kept for links to it).
async fn current_version(
    deps: &WorkerDeps,
    tenant: &TenantId,
    upload: &UploadSpec,
) -> Result<Option<String>, String> {
    sqlx::query_scalar(
        "SELECT version FROM entries WHERE tenant = $1 AND path = $2 AND kind = 'file' AND status = 'available'",
    )
    .bind(tenant.as_str())
    .bind(upload.path.as_str())
    .fetch_optional(&deps.pool)
    .await
    .map(Option::flatten)
    .map_err(|e| e.to_string())
}

/// Refuses to replace a directory, to put a file below a file, or to pass the tenant's quota
/// (uploads of unknown size are only checked here), then publishes the blob.
async fn place(
    deps: &WorkerDeps,
    storage: &dyn Storage,
    tenant: &TenantId,
    upload: &UploadSpec,
) -> Result<(), EffectError> {
    let conflict = |what: String| {
        EffectError::Permanent(TaskFailure::new(
            "conflict",
            format!("{what} is a directory"),
        ))
    };
    if catalogue::kind_of(&deps.pool, tenant, &upload.path).await? == Some(EntryKind::Dir) {
        return Err(conflict(upload.path.to_string()));
    }
    if let Some(file) = catalogue::file_ancestor(&deps.pool, tenant, &upload.path).await? {
        return Err(EffectError::Permanent(TaskFailure::new(
            "conflict",
            format!("{file} is not a directory"),
        )));
    }
    let change = Change {
        adds: Usage {
            bytes: upload.size,
            files: 1,
        },
        replaces: catalogue::file_usage(&deps.pool, tenant, &upload.path).await?,
    };
    let used = catalogue::tenant_usage(&deps.pool, tenant).await?;
    let limits = catalogue::limits(&deps.pool, tenant, deps.quota).await?;
    quota::admit(limits, used, change)
        .map_err(|e| EffectError::Permanent(TaskFailure::new("quota_exceeded", e.to_string())))?;
    let blob = BlobId::parse(&upload.sha256).map_err(|_| {
        EffectError::Permanent(TaskFailure::new(
            "storage_error",
            "the upload has no valid hash",
        ))
    })?;
    storage.publish(tenant, upload.upload_id, &blob).await?;
    Ok(())
}
