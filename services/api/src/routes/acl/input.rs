//! Input of the ACL admin API: the grant body and the query parameters, validated into
//! domain values (400 `bad_request` / `path_invalid` with a detail that never echoes input).

use std::collections::BTreeSet;

use axum::extract::Query;
use chrono::{DateTime, Utc};
use events::acl::{AclRule, Effect, Permission, Subject};
use events::FilePath;
use uuid::Uuid;

use super::{GrantRequest, QueryPairs};
use crate::error::ApiError;

/// Validates a grant request into a rule with a fresh id.
pub(super) fn rule_from(req: GrantRequest) -> Result<AclRule, ApiError> {
    let subject = Subject::parse(&req.subject).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let path = FilePath::parse(&req.path)?;
    if req.permissions.is_empty() {
        return Err(ApiError::BadRequest(
            "permissions must name at least one permission".into(),
        ));
    }
    let permissions: BTreeSet<Permission> = req
        .permissions
        .iter()
        .map(|p| p.parse::<Permission>())
        .collect::<Result<_, _>>()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let effect = match req.effect.as_str() {
        "allow" => Effect::Allow,
        "deny" => Effect::Deny,
        _ => {
            return Err(ApiError::BadRequest(
                "effect must be \"allow\" or \"deny\"".into(),
            ))
        }
    };
    Ok(AclRule {
        rule_id: Uuid::now_v7(),
        subject,
        path,
        permissions,
        effect,
    })
}

pub(super) fn effect_name(effect: Effect) -> &'static str {
    match effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    }
}

/// An RFC 3339 instant. A `+` offset sent unencoded in a query arrives as a space; it is
/// read back as `+` (a space is never valid there).
pub(super) fn parse_instant(raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(&raw.replace(' ', "+"))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::BadRequest("at must be an RFC 3339 time".into()))
}

/// Query parameters; a parameter given twice is refused (which one would count?).
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn new(query: QueryPairs) -> Result<Self, ApiError> {
        let Query(pairs) =
            query.map_err(|_| ApiError::BadRequest("malformed query string".into()))?;
        Ok(Self(pairs))
    }

    pub(super) fn get(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.0.iter().filter(|(k, _)| k == name);
        let first = values.next().map(|(_, v)| v.as_str());
        if values.next().is_some() {
            return Err(ApiError::BadRequest(format!(
                "query parameter {name} given more than once"
            )));
        }
        Ok(first)
    }

    pub(super) fn require(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)?
            .ok_or_else(|| ApiError::BadRequest(format!("query parameter {name} is required")))
    }
}
