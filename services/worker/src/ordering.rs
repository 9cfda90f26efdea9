//! Log order per path: a task may start only when every earlier open task (lower
//! `queued_seq`) whose paths overlap its own is terminal.
//!
//! The task read model answers the question once the projector has passed the task's own
//! log position (then every earlier task is in it), which makes the rule hold across any
//! number of worker processes without a distributed lock.

use std::time::Duration;

use events::task::TaskSpec;
use events::TenantId;
use platform::db::ProjectionWatermark;
use sqlx::PgPool;
use uuid::Uuid;

/// Whether an earlier open task on an overlapping path exists right now.
pub async fn blocked_by_earlier(
    pool: &PgPool,
    tenant: &TenantId,
    task_id: Uuid,
    queued_seq: u64,
    spec: &TaskSpec,
) -> Result<bool, sqlx::Error> {
    let open: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT spec FROM tasks
         WHERE tenant = $1 AND status IN ('pending', 'running') AND queued_seq < $2 AND task_id <> $3",
    )
    .bind(tenant.as_str())
    .bind(queued_seq as i64)
    .bind(task_id)
    .fetch_all(pool)
    .await?;
    Ok(open
        .into_iter()
        .filter_map(|v| serde_json::from_value::<TaskSpec>(v).ok())
        .any(|other| other.overlaps(spec)))
}

/// Waits (with growing pauses, woken early by projector progress) until the task may run.
pub async fn wait_for_turn(
    pool: &PgPool,
    watermark: &ProjectionWatermark,
    tenant: &TenantId,
    task_id: Uuid,
    queued_seq: u64,
    spec: &TaskSpec,
) -> Result<(), sqlx::Error> {
    let mut pause = Duration::from_millis(20);
    loop {
        let projected = watermark.wait_for(queued_seq, pause).await;
        if projected && !blocked_by_earlier(pool, tenant, task_id, queued_seq, spec).await? {
            return Ok(());
        }
        if projected {
            // Blocked: wake up on the next projected commit (an earlier task finishing) or soon.
            let _ = watermark.changed_since(watermark.current(), pause).await;
        }
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}
