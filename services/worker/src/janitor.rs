//! The staging janitor: removes staged upload bytes that no open task will ever use (an
//! upload interrupted by a crash, a promotion that failed), and fails upload tasks whose
//! staged bytes vanished, so no task waits forever. An upload that could not be scanned for
//! [`UPLOAD_GIVE_UP`] (clamd down for a day) fails with `timeout` and its bytes are removed:
//! it is never released unscanned, and it does not stay `scanning` for ever either. Every
//! pass also runs garbage collection of blobs ([`crate::gc`]). Runs in every worker; the work
//! is idempotent, so replicas may overlap.

use std::time::Duration;

use events::task::{Task, TaskCommand, TaskFailure};
use platform::event_log::aggregate_id;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::run::WorkerDeps;

/// Staged data younger than this is left alone: an upload may still be streaming in.
pub const STAGING_GRACE: Duration = Duration::from_secs(3600);
const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// How long an upload may wait for its scan before it fails with `timeout`.
pub const UPLOAD_GIVE_UP: Duration = Duration::from_secs(24 * 3600);

pub async fn run(deps: WorkerDeps, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(e) = sweep(&deps, STAGING_GRACE).await {
            tracing::warn!(error = %e, "janitor: sweep failed");
        }
        if let Err(e) = give_up_unscanned(&deps, UPLOAD_GIVE_UP).await {
            tracing::warn!(error = %e, "janitor: giving up stale uploads failed");
        }
        if let Err(e) =
            crate::gc::collect(&deps, deps.version_retention, crate::gc::BLOB_GRACE).await
        {
            tracing::warn!(error = %e, "janitor: garbage collection failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One pass; returns how many staged uploads were removed.
pub async fn sweep(deps: &WorkerDeps, older_than: Duration) -> Result<usize, String> {
    let stale = deps
        .storage
        .stale_staged(older_than)
        .await
        .map_err(|e| e.to_string())?;
    let mut removed = 0;
    for (tenant, upload_id) in stale {
        if !has_open_task(&deps.pool, tenant.as_str(), upload_id)
            .await
            .map_err(|e| e.to_string())?
        {
            deps.storage
                .discard_staged(&tenant, upload_id)
                .await
                .map_err(|e| e.to_string())?;
            metrics::counter!("fe_staging_removed_total").increment(1);
            removed += 1;
        }
    }
    fail_orphans(deps, older_than).await?;
    Ok(removed)
}

/// Open upload tasks untouched for longer than `older_than` whose staged bytes are gone.
async fn fail_orphans(deps: &WorkerDeps, older_than: Duration) -> Result<(), String> {
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(older_than).unwrap_or_default();
    let open: Vec<(String, uuid::Uuid, String)> = sqlx::query_as(
        "SELECT tenant, task_id, spec->>'upload_id' FROM tasks
         WHERE op = 'upload' AND status IN ('pending', 'running') AND updated_at < $1",
    )
    .bind(cutoff)
    .fetch_all(&deps.pool)
    .await
    .map_err(|e| e.to_string())?;
    for (tenant, task_id, upload_id) in open {
        let (Ok(tenant), Ok(upload_id)) = (
            events::TenantId::parse(&tenant),
            uuid::Uuid::parse_str(&upload_id),
        ) else {
            continue;
        };
        if let Err(platform::storage::StorageError::NotFound(_)) =
            deps.storage.open_staged(&tenant, upload_id).await
        {
            tracing::warn!(%task_id, "janitor: failing an upload whose staged bytes are gone");
            fail_orphaned_upload(deps, &tenant, task_id).await?;
        }
    }
    Ok(())
}

async fn has_open_task(
    pool: &PgPool,
    tenant: &str,
    upload_id: uuid::Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM tasks WHERE tenant = $1 AND op = 'upload'
                        AND spec->>'upload_id' = $2 AND status IN ('pending', 'running'))",
    )
    .bind(tenant)
    .bind(upload_id.to_string())
    .fetch_one(pool)
    .await
}

/// Fails an open upload task whose staged bytes are gone (nothing left to scan or promote).
async fn fail_orphaned_upload(
    deps: &WorkerDeps,
    tenant: &events::TenantId,
    task_id: uuid::Uuid,
) -> Result<(), String> {
    let failure = TaskFailure::new("storage_error", "the staged upload is no longer available");
    let id = aggregate_id(tenant, &task_id.to_string());
    deps.log
        .execute::<Task>(
            &id,
            TaskCommand::Fail { error: failure },
            &(),
            Default::default(),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Fails uploads still waiting for their scan after `max_age` with `timeout` and removes
/// their staged bytes; returns how many were given up.
pub async fn give_up_unscanned(deps: &WorkerDeps, max_age: Duration) -> Result<usize, String> {
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(max_age).unwrap_or_default();
    let stale: Vec<(String, uuid::Uuid, String)> = sqlx::query_as(
        "SELECT tenant, task_id, spec->>'upload_id' FROM tasks
         WHERE op = 'upload' AND status = 'pending' AND created_at <= $1",
    )
    .bind(cutoff)
    .fetch_all(&deps.pool)
    .await
    .map_err(|e| e.to_string())?;
    let mut given_up = 0;
    for (tenant, task_id, upload_id) in stale {
        let (Ok(tenant), Ok(upload_id)) = (
            events::TenantId::parse(&tenant),
            uuid::Uuid::parse_str(&upload_id),
        ) else {
            continue;
        };
        let failure = TaskFailure::new("timeout", "the upload could not be scanned in time");
        let id = aggregate_id(&tenant, &task_id.to_string());
        match deps
            .log
            .execute::<Task>(
                &id,
                TaskCommand::Fail { error: failure },
                &(),
                Default::default(),
            )
            .await
        {
            Ok(_)
            | Err(platform::event_log::ExecuteError::Domain(
                events::task::TaskError::AlreadyTerminal,
            )) => {}
            Err(e) => return Err(e.to_string()),
        }
        deps.storage
            .discard_staged(&tenant, upload_id)
            .await
            .map_err(|e| e.to_string())?;
        metrics::counter!("fe_uploads_given_up_total").increment(1);
        given_up += 1;
    }
    Ok(given_up)
}
