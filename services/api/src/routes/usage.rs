//! `GET /v1/usage` and the API side of per-tenant quotas: what a tenant uses (logical size:
//! a copy counts what it holds) against its limits, and the up-front refusal (507
//! `quota_exceeded`) of an upload or copy whose size is known when it is asked for. The
//! worker checks again when the upload or copy takes effect (what was accepted meanwhile
//! counts too); the decision itself is `events::quota::admit`.

use axum::extract::State;
use axum::Json;
use events::quota::{self, Change};
use events::TenantId;
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::Caller;
use crate::state::AppState;

/// Used and limit of one dimension.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Measure {
    pub used: u64,
    pub limit: u64,
}

/// A tenant's usage against its quota.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UsageView {
    pub bytes: Measure,
    pub files: Measure,
}

/// The caller's tenant: bytes and files used (logical size) and their limits.
#[utoipa::path(get, path = "/v1/usage", tag = "reads",
    responses((status = 200, body = UsageView), (status = 401, body = crate::error::Problem),
              (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn usage(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<UsageView>, ApiError> {
    let platform::catalogue::Standing {
        used,
        limits: limit,
    } = platform::catalogue::standing(&state.pool, &caller.tenant, state.settings.quota).await?;
    Ok(Json(UsageView {
        bytes: Measure {
            used: used.bytes,
            limit: limit.bytes,
        },
        files: Measure {
            used: used.files,
            limit: limit.files,
        },
    }))
}

/// Refuses `change` with 507 `quota_exceeded` when it would pass the tenant's quota.
pub async fn admit(state: &AppState, tenant: &TenantId, change: Change) -> Result<(), ApiError> {
    let standing = platform::catalogue::standing(&state.pool, tenant, state.settings.quota).await?;
    quota::admit(standing.limits, standing.used, change).map_err(|e| {
        metrics::counter!("fe_quota_refusals_total").increment(1);
        ApiError::QuotaExceeded(e.to_string())
    })
}
