//! Promotion of clean uploads: once the scanner recorded a clean verdict, the staged bytes
//! become the file's new version atomically (storage: temp + fsync + rename, the previous
//! version retained for links made to it), and `file.available` + `task.succeeded` are
//! committed together, preceded by one `dir.created` per parent directory the upload brought
//! into existence (`created.rs`). Uploads take their turn in the per-path log order like commands.

use async_nats::jetstream;
use events::task::{Task, TaskCommand, TaskFailure, TaskSpec, UploadSpec};
use events::TenantId;
use platform::event_log::LoggedCommit;
use platform::storage::{EntryKind, Storage};
use tokio::sync::Semaphore;

use crate::effects::EffectError;
use crate::run::{execute, record_failure, take_turn, WorkerDeps};

pub async fn promote(
    deps: &WorkerDeps,
    permits: &Semaphore,
    message: &jetstream::Message,
    commit: &LoggedCommit,
) -> Result<(), String> {
    let task = deps
        .log
        .load::<Task>(&commit.aggregate_id)
        .await
        .map_err(|e| e.to_string())?
        .aggregate;
    let (Some(task_id), Some(TaskSpec::Upload(upload))) = (task.task_id, task.spec.clone()) else {
        return Ok(());
    };
    if task.status.is_terminal() || task.scanned_clean != Some(true) {
        return Ok(());
    }
    let spec = TaskSpec::Upload(upload.clone());
    let _permit = take_turn(deps, permits, message, commit, task_id, &spec).await?;
    let previous = current_version(deps, &commit.tenant, &upload).await?;
    // Decided before storage is touched and from the catalogue, so a redo reports the same.
    let created_parents =
        crate::created::missing_ancestors(&deps.pool, &commit.tenant, &upload.path)
            .await
            .map_err(|e| e.to_string())?;
    let storage = deps.storage.as_ref();
    match place(storage, &commit.tenant, &upload, previous.as_deref()).await {
        Ok(()) => {
            let command = TaskCommand::Promote {
                version: upload.upload_id.to_string(),
                previous_version: previous,
                created_parents,
            };
            execute(deps, commit, command).await?;
            // Only the promotion marker is left in staging; it served a redo, not any more.
            let _ = storage
                .discard_staged(&commit.tenant, upload.upload_id)
                .await;
            metrics::counter!("fe_uploads_promoted_total").increment(1);
            Ok(())
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
