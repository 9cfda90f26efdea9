//! Promotion of clean uploads: once the scanner recorded a clean verdict, the staged bytes
//! are published as the tenant's blob named by their SHA-256 (atomically: rename of the
//! fsynced staged file, then fsync of the directories; an existing blob of the same content
//! is kept, never rewritten), and `file.available` + `task.succeeded` are committed together;
//! the projection then points the path at the new version and the version at the blob. The
//! previous version keeps its blob (links to it go on serving exactly it). Uploads take their
//! turn in the per-path log order like commands. The commit is preceded by one `dir.created`
//! per parent directory the upload brought into existence (API.md Events: "every entry that
//! comes into existence ... has its own event"; the rule is `events::task::mkdir`'s).
//!
//! Everything promotion decides (what the upload replaces, a directory or file in its way,
//! the parents it creates) comes from one catalogue lookup of the path and its ancestors,
//! not from storage: storage may already hold the directories of an interrupted earlier
//! attempt, the catalogue does not (it changes only when this task's success is committed).
//! The turn-taking keeps every other task touching an ancestor from running in between, so
//! a redo decides the same: the events are deterministic and redo-safe.
//!
//! Crash safety: killed before the rename, the redelivery publishes again; killed after it,
//! the redelivery finds the blob and records the outcome. A blob published for an upload
//! whose task then failed is unreferenced and left to garbage collection.

use events::quota::{self, Change, Usage};
use events::task::mkdir::{self, Held};
use events::task::{Task, TaskCommand, TaskFailure, TaskSpec, UploadSpec};
use events::TenantId;
use platform::catalogue;
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
    // Decided before storage is touched and from the catalogue, so a redo decides the same:
    // the path and its ancestors in one lookup answer what it replaces, what is in its way
    // and which parents it creates.
    let site = catalogue::site(&deps.pool, &commit.tenant, &upload.path)
        .await
        .map_err(|e| e.to_string())?;
    let previous = site.file.as_ref().and_then(|f| f.version.clone());
    let created_parents =
        mkdir::missing_parents(&upload.path, |p| site.held.get(p.as_str()).copied());
    let storage = deps.storage.as_ref();
    match place(deps, storage, &commit.tenant, &upload, &site).await {
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

/// Refuses to replace a directory, to put a file below a file, or to pass the tenant's quota
/// (uploads of unknown size are only checked here), then publishes the blob.
async fn place(
    deps: &WorkerDeps,
    storage: &dyn Storage,
    tenant: &TenantId,
    upload: &UploadSpec,
    site: &catalogue::Site,
) -> Result<(), EffectError> {
    if site.held.get(upload.path.as_str()) == Some(&Held::Dir) {
        return Err(EffectError::Permanent(TaskFailure::new(
            "conflict",
            format!("{} is a directory", upload.path),
        )));
    }
    if let Some(file) = site.file_ancestor(&upload.path) {
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
        replaces: site.file.as_ref().map_or_else(Usage::default, |f| Usage {
            bytes: f.size,
            files: 1,
        }),
    };
    let standing = catalogue::standing(&deps.pool, tenant, deps.quota).await?;
    quota::admit(standing.limits, standing.used, change)
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
