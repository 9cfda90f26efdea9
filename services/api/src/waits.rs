//! Waiting for the projection, tenant by tenant: read-your-writes of ACL and subscription
//! changes, task long polls and retries wait for the caller's own partition only
//! ([`platform::projection`]), and a tenant whose projection is parked gets 503 `unavailable`
//! saying so, instead of an answer the read models cannot back.

use std::time::Duration;

use events::TenantId;
use platform::projection::Projected;

use crate::error::ApiError;
use crate::state::AppState;

/// The 503 a parked tenant gets; the detail is safe for clients (no internal reason).
pub fn parked(seq: u64) -> ApiError {
    ApiError::NotYetApplied(format!(
        "this tenant's read models are parked at log position {seq} after a commit could not be \
         applied; nothing is lost, and requests that need them are refused until an operator \
         resumes the tenant (file-engine projection resume)"
    ))
}

/// Refuses, before anything is recorded, a request of a parked tenant that needs the
/// projection.
pub fn refuse_if_parked(state: &AppState, tenant: &TenantId) -> Result<(), ApiError> {
    match state.watermark.parked(tenant) {
        Some(seq) => Err(parked(seq)),
        None => Ok(()),
    }
}

/// Waits until the tenant's own log position `seq` is projected; `what` describes what was
/// recorded, for the 503 when the deadline comes first.
pub async fn wait_applied(
    state: &AppState,
    tenant: &TenantId,
    seq: u64,
    deadline: Duration,
    what: &str,
) -> Result<(), ApiError> {
    match state.watermark.wait_for_tenant(tenant, seq, deadline).await {
        Projected::Applied => Ok(()),
        Projected::Parked { seq } => Err(parked(seq)),
        Projected::Pending => Err(ApiError::NotYetApplied(format!(
            "{what} (log position {seq}) but is not in force yet: the projection is behind; \
             it takes effect once projected"
        ))),
    }
}
