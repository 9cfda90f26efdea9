//! Reads behind the ACL admin API: listing rules from the read model, and the tenant's rules
//! as of an instant, folded from its ACL commits in the log.

use chrono::{DateTime, SubsecRound, Utc};
use events::acl::{rules_as_of, AclEvent, AclIndex};
use events::{FilePath, Principal};
use uuid::Uuid;

use super::{acl_aggregate_id, RuleView};
use crate::error::ApiError;
use crate::state::AppState;

pub(super) async fn granted_at(
    state: &AppState,
    caller: &Principal,
    rule_id: Uuid,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    Ok(
        sqlx::query_scalar("SELECT granted_at FROM acl_rules WHERE tenant = $1 AND rule_id = $2")
            .bind(caller.tenant.as_str())
            .bind(rule_id)
            .fetch_optional(&state.pool)
            .await?,
    )
}

pub(super) async fn load_rule_views(
    state: &AppState,
    caller: &Principal,
    under: Option<&FilePath>,
) -> Result<Vec<RuleView>, ApiError> {
    // The subtree of '/a' is the byte range ['/a/', '/a0') under the "C" collation.
    let under = under.filter(|p| !p.is_root());
    let (exact, lower, upper) = match under {
        Some(p) => (
            Some(p.as_str().to_owned()),
            Some(format!("{p}/")),
            Some(format!("{p}0")),
        ),
        None => (None, None, None),
    };
    Ok(sqlx::query_as(
        "SELECT rule_id, subject, path, permissions, effect, granted_by, granted_at, seq
         FROM acl_rules
         WHERE tenant = $1
           AND ($2::text IS NULL OR path = $2 OR (path >= $3 AND path < $4))
         ORDER BY path, rule_id",
    )
    .bind(caller.tenant.as_str())
    .bind(exact)
    .bind(lower)
    .bind(upper)
    .fetch_all(&state.pool)
    .await?)
}

/// The tenant's rules as of `at`, folded from its ACL commits in the log.
pub(super) async fn index_at(
    state: &AppState,
    caller: &Principal,
    at: DateTime<Utc>,
) -> Result<AclIndex, ApiError> {
    let commits = state
        .log
        .load_commits("acl", &acl_aggregate_id(caller))
        .await
        .map_err(ApiError::unavailable)?;
    let mut timed = Vec::new();
    for commit in commits {
        for stored in commit.events {
            let event: AclEvent = serde_json::from_value(stored.payload).map_err(|_| {
                ApiError::internal(format!("ACL commit {} does not parse", commit.stream_seq))
            })?;
            // Times are shown (`granted_at`) at the microseconds PostgreSQL keeps; compare at
            // that precision so `at = granted_at` includes the grant it names.
            timed.push((commit.time.trunc_subsecs(6), event));
        }
    }
    Ok(rules_as_of(timed, at))
}
