//! ACL administration (role `admin` of the caller's tenant, else 403):
//! `POST /v1/acl/rules`, `DELETE /v1/acl/rules/{rule_id}`, `GET /v1/acl/rules[?path=]` and
//! `GET /v1/acl/check?subject=&path=&permission=[&at=]`.
//!
//! Changes go through the tenant's ACL aggregate (`fe.ev.<tenant>.acl.<tenant>`), carrying the
//! admin in the event metadata (audit). A change is answered only once the projection has
//! passed its log position, so every later request is decided with it (read-your-writes); if
//! the projection does not catch up within [`APPLY_DEADLINE`] the answer is 503 `unavailable`
//! and says the change is recorded but not yet in force. Rule ids are per tenant: another
//! tenant's id is simply unknown (404). `check` reports what the rules say (no admin bypass):
//! now from the enforced read model, or with `at` from the log, folding the tenant's ACL
//! commits whose JetStream time (to the microsecond, the precision `granted_at` is shown
//! with) is at or before `at`.
//!
//! `input.rs` validates bodies and query parameters; `store.rs` holds the reads (read model
//! and log).

mod input;
mod store;

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use events::acl::{AclAggregate, AclCommand, AclError, Permission, Subject};
use events::{FilePath, Principal};
use platform::event_log::{aggregate_id, ExecuteError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::authz::tenant_index;
use crate::error::ApiError;
use crate::extract::{Caller, JsonBody};
use crate::routes::commands::event_metadata;
use crate::state::AppState;
use input::{effect_name, parse_instant, rule_from, Params};
use store::{granted_at, index_at, load_rule_views};

/// How long a change waits for the ACL projection before answering 503.
pub const APPLY_DEADLINE: Duration = Duration::from_secs(10);

/// Body of `POST /v1/acl/rules`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// `user:<sub>`, `role:<role>` or `*`.
    pub subject: String,
    /// The rule applies to this path and everything below it.
    pub path: String,
    /// A non-empty subset of list, read, write, mkdir, move, copy, delete.
    pub permissions: Vec<String>,
    /// `allow` or `deny`.
    pub effect: String,
}

/// One rule as recorded.
#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RuleView {
    pub rule_id: Uuid,
    pub subject: String,
    pub path: String,
    pub permissions: Vec<String>,
    pub effect: String,
    pub granted_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<DateTime<Utc>>,
    /// Log position of the grant.
    pub seq: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RuleList {
    pub rules: Vec<RuleView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CheckResult {
    pub allowed: bool,
    /// The rules that decided: the denying ones for a deny, the allowing ones for an allow.
    pub rule_ids: Vec<Uuid>,
}

type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// Grant a rule.
#[utoipa::path(post, path = "/v1/acl/rules", tag = "acl", request_body = GrantRequest,
    responses((status = 201, body = RuleView), (status = 400, body = crate::error::Problem),
              (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
              (status = 409, body = crate::error::Problem), (status = 413, body = crate::error::Problem),
              (status = 415, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn grant(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(req, _): JsonBody<GrantRequest>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let rule = rule_from(req)?;
    let view = RuleView {
        rule_id: rule.rule_id,
        subject: rule.subject.to_string(),
        path: rule.path.as_str().to_owned(),
        permissions: rule
            .permissions
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        effect: effect_name(rule.effect).to_owned(),
        granted_by: caller.subject.clone(),
        granted_at: None,
        seq: 0,
    };
    let command = AclCommand::Grant {
        rule,
        principal: caller.clone(),
    };
    crate::waits::refuse_if_parked(&state, &caller.tenant)?;
    let seq = execute(&state, &caller, command).await?;
    metrics::counter!("fe_acl_changes_total", "change" => "grant").increment(1);
    wait_applied(
        &state,
        &caller.tenant,
        seq,
        &format!("the rule {} was recorded", view.rule_id),
    )
    .await?;
    let granted_at = granted_at(&state, &caller, view.rule_id).await?;
    let location = HeaderValue::from_str(&format!("/v1/acl/rules/{}", view.rule_id)).ok();
    let view = RuleView {
        granted_at,
        seq: seq as i64,
        ..view
    };
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Revoke a rule.
#[utoipa::path(delete, path = "/v1/acl/rules/{rule_id}", tag = "acl",
    params(("rule_id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = crate::error::Problem),
              (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
              (status = 409, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    // A malformed id names no rule: the same answer as an unknown one.
    let rule_id = Uuid::parse_str(&raw_id).map_err(|_| no_such_rule())?;
    let command = AclCommand::Revoke {
        rule_id,
        principal: caller.clone(),
    };
    crate::waits::refuse_if_parked(&state, &caller.tenant)?;
    let seq = execute(&state, &caller, command).await?;
    metrics::counter!("fe_acl_changes_total", "change" => "revoke").increment(1);
    let what = format!("the revocation of rule {rule_id} was recorded");
    wait_applied(&state, &caller.tenant, seq, &what).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List the tenant's rules, optionally only those on a path or below it.
#[utoipa::path(get, path = "/v1/acl/rules", tag = "acl",
    params(("path" = Option<String>, Query, description = "only rules on this path or below it")),
    responses((status = 200, body = RuleList), (status = 400, body = crate::error::Problem),
              (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn list_rules(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: QueryPairs,
) -> Result<Json<RuleList>, ApiError> {
    require_admin(&caller)?;
    let params = Params::new(query)?;
    let path = params.get("path")?.map(FilePath::parse).transpose()?;
    let rules = load_rule_views(&state, &caller, path.as_ref()).await?;
    Ok(Json(RuleList { rules }))
}

/// What the rules say for a subject, a permission and a path, now or at an instant.
#[utoipa::path(get, path = "/v1/acl/check", tag = "acl",
    params(("subject" = String, Query, description = "user:<sub>, role:<role> or *"),
           ("path" = String, Query),
           ("permission" = String, Query, description = "list, read, write, mkdir, move, copy or delete"),
           ("at" = Option<String>, Query, description = "RFC 3339 instant; answers from the log as of then")),
    responses((status = 200, body = CheckResult), (status = 400, body = crate::error::Problem),
              (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
              (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn check(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: QueryPairs,
) -> Result<Json<CheckResult>, ApiError> {
    require_admin(&caller)?;
    let params = Params::new(query)?;
    let subject = Subject::parse(params.require("subject")?)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let path = FilePath::parse(params.require("path")?)?;
    let permission: Permission = params
        .require("permission")?
        .parse()
        .map_err(|e: events::acl::UnknownPermission| ApiError::BadRequest(e.to_string()))?;
    let at = params.get("at")?.map(parse_instant).transpose()?;
    let decision = match at {
        None => tenant_index(&state, &caller.tenant)
            .await?
            .decide_for_subject(&subject, permission, &path),
        Some(at) => index_at(&state, &caller, at)
            .await?
            .decide_for_subject(&subject, permission, &path),
    };
    Ok(Json(CheckResult {
        allowed: decision.allowed,
        rule_ids: decision.rule_ids,
    }))
}

fn require_admin(caller: &Principal) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "ACL administration needs the role admin".into(),
        ))
    }
}

fn no_such_rule() -> ApiError {
    ApiError::NotFound("no such ACL rule".into())
}

/// The id of the caller's tenant ACL aggregate (one per tenant).
fn acl_aggregate_id(caller: &Principal) -> String {
    aggregate_id(&caller.tenant, caller.tenant.as_str())
}

/// Runs an ACL command; returns the stream sequence of the recorded change.
async fn execute(
    state: &AppState,
    caller: &Principal,
    command: AclCommand,
) -> Result<u64, ApiError> {
    let id = acl_aggregate_id(caller);
    let executed = state
        .log
        .execute::<AclAggregate>(&id, command, &(), event_metadata(caller))
        .await
        .map_err(|e| match e {
            ExecuteError::Domain(AclError::NotAdmin) => {
                ApiError::Forbidden("ACL administration needs the role admin".into())
            }
            ExecuteError::Domain(AclError::RuleNotFound) => no_such_rule(),
            ExecuteError::Domain(AclError::DuplicateRule) => {
                ApiError::Conflict("an ACL rule with this id already exists".into())
            }
            ExecuteError::Conflict => {
                ApiError::Conflict("the ACL was changed concurrently; retry".into())
            }
            ExecuteError::Log(e) => ApiError::unavailable(e),
        })?;
    executed
        .stream_seq
        .ok_or_else(|| ApiError::internal("an ACL command recorded no event"))
}

/// Waits until the tenant's read models (hence enforcement) include `seq`.
async fn wait_applied(
    state: &AppState,
    tenant: &events::TenantId,
    seq: u64,
    what: &str,
) -> Result<(), ApiError> {
    crate::waits::wait_applied(state, tenant, seq, APPLY_DEADLINE, what).await
}
