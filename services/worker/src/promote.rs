//! Promotion of clean uploads: once the scanner recorded a clean verdict, the staged bytes
//! become the file's new version atomically (storage: temp + fsync + rename, the previous
//! version retained for links made to it), and `file.available` + `task.succeeded` are
//! committed together. Uploads take their turn in the per-path log order like commands.

use events::task::{TaskCommand, TaskFailure, TaskSpec, UploadSpec};
use events::TenantId;
use platform::event_log::LoggedCommit;
use platform::storage::{EntryKind, Storage};

use crate::effects::EffectError;
use crate::run::{execute, record_failure, Step, Worker, WorkerDeps};

pub(crate) async fn promote(worker: &Worker, commit: &LoggedCommit) -> Result<Step, String> {
    let deps = &worker.deps;
    let task = worker.load_task(commit).await?;
    let (Some(task_id), Some(TaskSpec::Upload(upload))) = (task.task_id, task.spec.clone()) else {
        return Ok(Step::Settled);
    };
    if task.status.is_terminal() || task.scanned_clean != Some(true) {
        return Ok(Step::Settled);
    }
    let spec = TaskSpec::Upload(upload.clone());
    let Some(_turn) = worker.take_turn(commit, task_id, &spec).await? else {
        return Ok(Step::NotMyTurn);
    };
    let previous = current_version(deps, &commit.tenant, &upload).await?;
    let storage = deps.storage.as_ref();
    match place(storage, &commit.tenant, &upload, previous.as_deref()).await {
        Ok(()) => {
            let command = TaskCommand::Promote {
                version: upload.upload_id.to_string(),
                previous_version: previous,
            };
            execute(deps, commit, command).await?;
            // Only the promotion marker is left in staging; it served a redo, not any more.
            let _ = storage
                .discard_staged(&commit.tenant, upload.upload_id)
                .await;
            metrics::counter!("fe_uploads_promoted_total").increment(1);
            Ok(Step::Settled)
        }
        Err(EffectError::Permanent(failure)) => {
            let _ = storage
                .discard_staged(&commit.tenant, upload.upload_id)
                .await;
            record_failure(deps, commit, EffectError::Permanent(failure)).await
        }
        Err(transient) => record_failure(deps, commit, transient).await,
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

/// Creates missing parent directories, refuses to replace a directory, then promotes.
async fn place(
    storage: &dyn Storage,
    tenant: &TenantId,
    upload: &UploadSpec,
    previous: Option<&str>,
) -> Result<(), EffectError> {
    if let Some(meta) = storage.stat(tenant, &upload.path).await? {
        if meta.kind == EntryKind::Dir {
            return Err(EffectError::Permanent(TaskFailure::new(
                "conflict",
                format!("{} is a directory", upload.path),
            )));
        }
    }
    if let Some(parent) = upload.path.parent() {
        storage.create_dir_all(tenant, &parent).await?;
    }
    storage
        .promote(tenant, upload.upload_id, &upload.path, previous)
        .await?;
    Ok(())
}
