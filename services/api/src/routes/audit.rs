//! The audit API (role `auditor` or `admin`, scoped to the caller's tenant, else 403):
//! `GET /v1/audit` (filtered, cursor-paginated events in log order), `GET /v1/audit/export`
//! (the same events as NDJSON, streamed) and `GET /v1/audit/verify` (the tenant's index proven
//! against the log).
//!
//! Events are read from the audit index (`projector::audit`): each row holds the event's
//! CloudEvent exactly as hashed into the tenant's chain. `filter.rs` parses the parameters and
//! builds the statement; `export.rs` streams.

pub mod export;
mod filter;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use events::Principal;
use projector::audit::verify::{verify as verify_index, Mode, Problem, Scope, VerifyError};
use serde::Serialize;
use sqlx::FromRow;

use crate::error::ApiError;
use crate::extract::Caller;
use crate::state::AppState;

type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// Parameters of `GET /v1/audit`.
const QUERY_PARAMS: &[&str] = &[
    "path",
    "ancestors",
    "principal",
    "type",
    "from",
    "to",
    "limit",
    "cursor",
];

/// One page of audit events.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// CloudEvents 1.0 objects (see `schemas/cloudevent.json`), in log order.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
    pub next_cursor: Option<String>,
}

/// The result of `GET /v1/audit/verify`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditVerification {
    pub ok: bool,
    /// The tenant's events are proven through this `seq`.
    pub verified_through_seq: u64,
    /// The log was compared with the index up to this stream sequence.
    pub verified_through_logseq: u64,
    /// This check continued from this `seq` (the previous verified head; 0 = genesis).
    pub verified_from_seq: u64,
    /// Hex SHA-256 head of the tenant's chain, recomputed from the log.
    pub head_hash: String,
    /// Events read from the log and compared by this check (only what was new).
    pub events: u64,
    /// The first differences found (`seq`, `logseq`, `idx`, `kind`, `detail`).
    #[schema(value_type = Vec<Object>)]
    pub problems: Vec<Problem>,
    pub problems_total: u64,
}

#[derive(FromRow)]
struct EventRow {
    seq: i64,
    event: String,
    hash: Vec<u8>,
}

pub(crate) fn require_auditor(caller: &Principal) -> Result<(), ApiError> {
    if caller.is_auditor() || caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "the audit API needs the auditor or admin role".into(),
        ))
    }
}

pub(crate) fn query_pairs(q: QueryPairs) -> Result<Vec<(String, String)>, ApiError> {
    q.map(|Query(pairs)| pairs)
        .map_err(|_| ApiError::BadRequest("malformed query string".into()))
}

/// Events of the caller's tenant matching the filters, in log order.
#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    params(("path" = Option<String>, Query, description = "the path, everything below it, and moves/copies from or to it"),
           ("ancestors" = Option<bool>, Query, description = "true: `path` also matches moves, copies and deletes of its ancestors' trees (default false)"),
           ("principal" = Option<String>, Query, description = "the `sub` that caused the event"),
           ("type" = Option<String>, Query, description = "comma-separated short types, e.g. dir.created,entry.moved"),
           ("from" = Option<String>, Query, description = "RFC 3339, inclusive"),
           ("to" = Option<String>, Query, description = "RFC 3339, exclusive"),
           ("limit" = Option<i64>, Query, description = "1–1000, default 100"),
           ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, body = AuditPage), (status = 400, body = crate::error::Problem),
              (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn query(
    State(state): State<AppState>,
    Caller(caller): Caller,
    q: QueryPairs,
) -> Result<Json<AuditPage>, ApiError> {
    require_auditor(&caller)?;
    let page = filter::parse(&query_pairs(q)?, QUERY_PARAMS)?;
    let mut rows: Vec<EventRow> = filter::select(caller.tenant.as_str(), &page, None)
        .build_query_as()
        .fetch_all(&state.pool)
        .await?;
    let more = rows.len() as i64 > page.limit;
    rows.truncate(page.limit as usize);
    let next_cursor = match more {
        true => rows.last().map(|r| filter::encode_cursor(r.seq)),
        false => None,
    };
    let events = rows
        .iter()
        .map(|r| serde_json::from_str(&r.event))
        .collect::<Result<Vec<serde_json::Value>, _>>()
        .map_err(ApiError::internal)?;
    Ok(Json(AuditPage {
        events,
        next_cursor,
    }))
}

/// Proves the caller's tenant's audit index against the log, continuing from the last
/// verified head; one verification per tenant at a time (429 `rate_limited` otherwise).
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = AuditVerification), (status = 401, body = crate::error::Problem),
              (status = 403, body = crate::error::Problem), (status = 429, body = crate::error::Problem),
              (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn verify(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<AuditVerification>, ApiError> {
    require_auditor(&caller)?;
    let scope = Scope::Tenant(caller.tenant.clone());
    let v = verify_index(
        state.log.jetstream(),
        &state.pool,
        &scope,
        Mode::Incremental,
    )
    .await
    .map_err(|e| match e {
        VerifyError::Busy { retry_after_s } => ApiError::RateLimited { retry_after_s },
        other => ApiError::unavailable(other),
    })?;
    if !v.ok {
        tracing::warn!(tenant = %caller.tenant, problems = v.problems_total, "audit verification failed");
    }
    Ok(Json(AuditVerification {
        ok: v.ok,
        verified_through_seq: v.verified_through_seq,
        verified_through_logseq: v.verified_through_logseq,
        verified_from_seq: v.verified_from_seq,
        head_hash: v.head_hash,
        events: v.events,
        problems: v.problems,
        problems_total: v.problems_total,
    }))
}
