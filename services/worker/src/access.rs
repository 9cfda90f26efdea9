//! Access decided again when a task runs (API.md: "Permission is decided when the command is
//! accepted and checked again when it runs"): a rule revoked or a deny granted between the
//! 202 and the execution makes the task fail with `forbidden`, and nothing is done.
//!
//! The decision is the API's ([`FileCommand::access`], `events::acl::authorize_tree`) against
//! the ACL and catalogue read models as they stand when the task's turn has come (earlier
//! tasks on overlapping paths are projected by then), for the requester's subject and the
//! roles recorded with the request. A read model that cannot be read is a transient failure
//! (retried), never an allow.

use events::acl::{authorize, authorize_tree, entries_to_look_up};
use events::task::{CommandAccess, FileCommand, Task, TaskFailure};
use events::{Principal, TenantId};
use sqlx::PgPool;

use crate::effects::EffectError;

/// Whether the task's requester may still run `cmd`.
pub async fn recheck(
    pool: &PgPool,
    tenant: &TenantId,
    task: &Task,
    cmd: &FileCommand,
) -> Result<(), EffectError> {
    let forbidden = || {
        EffectError::Permanent(TaskFailure::new(
            "forbidden",
            "permission for this command was withdrawn before it ran",
        ))
    };
    let principal = Principal::new(task.principal.clone(), tenant.clone(), task.roles.clone())
        .map_err(|_| forbidden())?;
    if principal.is_admin() {
        return Ok(());
    }
    let transient = |e: platform::access::AccessReadError| EffectError::Transient(e.to_string());
    let (_, index) = platform::access::acl_rules(pool, tenant)
        .await
        .map_err(transient)?;
    let decision = match cmd.access() {
        CommandAccess::Named(access) => authorize(&index, &principal, access),
        CommandAccess::Tree(access) => {
            let lookups = entries_to_look_up(&index, &principal, access);
            let existing = platform::access::existing_entries(pool, tenant, &lookups)
                .await
                .map_err(transient)?;
            authorize_tree(&index, &principal, access, |p| existing.get(p).copied())
        }
    };
    decision.map_err(|denied| {
        tracing::info!(permission = %denied.permission, "worker: access withdrawn, task refused");
        forbidden()
    })
}
