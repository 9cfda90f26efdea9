//! The reads that decide access, shared by the API (at request time) and the worker (when a
//! task runs): a tenant's ACL rules with their version (`acl_rules`, `acl_versions`, written
//! by the projector's ACL module) and which of a few paths exist in the file catalogue
//! (`entries`), the one catalogue query a recursive command needs (see
//! `events::acl::authorize_tree`).
//!
//! A rule row that does not parse is an error, never skipped: a skipped deny would open
//! access. Callers fail closed on every error here.

use std::collections::HashMap;

use events::acl::{AclIndex, AclRule, Effect, Existing, Permission, Subject};
use events::task::mkdir::Held;
use events::{FilePath, TenantId};
use sqlx::PgPool;
use uuid::Uuid;

/// Why the access read models could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AccessReadError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("ACL rule {0} in the read model is corrupt")]
    CorruptRule(Uuid),
}

/// The stream sequence of the tenant's latest ACL event (0 when it has none): the version
/// an in-process cache of the rules is keyed on.
pub async fn acl_version(pool: &PgPool, tenant: &TenantId) -> Result<u64, AccessReadError> {
    let version: Option<i64> = sqlx::query_scalar("SELECT seq FROM acl_versions WHERE tenant = $1")
        .bind(tenant.as_str())
        .fetch_optional(pool)
        .await?;
    Ok(version.unwrap_or(0).max(0) as u64)
}

/// One row of [`acl_rules`]: the version (null if the tenant has no ACL events) and a rule
/// (all null if the tenant has no rules).
#[derive(sqlx::FromRow)]
struct RuleRow {
    version: Option<i64>,
    rule_id: Option<Uuid>,
    subject: Option<String>,
    path: Option<String>,
    permissions: Option<Vec<String>>,
    effect: Option<String>,
}

/// The tenant's version and rules, read in one statement, hence from one snapshot: an index
/// is never labelled with a newer version than the rules it holds.
pub async fn acl_rules(
    pool: &PgPool,
    tenant: &TenantId,
) -> Result<(u64, AclIndex), AccessReadError> {
    let rows: Vec<RuleRow> = sqlx::query_as(
        "SELECT v.seq AS version, r.rule_id, r.subject, r.path, r.permissions, r.effect
         FROM (SELECT $1::text AS tenant) t
         LEFT JOIN acl_versions v ON v.tenant = t.tenant
         LEFT JOIN acl_rules r ON r.tenant = t.tenant",
    )
    .bind(tenant.as_str())
    .fetch_all(pool)
    .await?;
    let version = rows.first().and_then(|r| r.version).unwrap_or(0).max(0) as u64;
    let mut rules = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(rule) = rule_of(row)? {
            rules.push(rule);
        }
    }
    Ok((version, AclIndex::from_rules(rules)))
}

fn rule_of(row: RuleRow) -> Result<Option<AclRule>, AccessReadError> {
    let RuleRow {
        rule_id: Some(rule_id),
        subject: Some(subject),
        path: Some(path),
        permissions: Some(permissions),
        effect: Some(effect),
        ..
    } = row
    else {
        return Ok(None);
    };
    let corrupt = || AccessReadError::CorruptRule(rule_id);
    let permissions = permissions
        .iter()
        .map(|p| p.parse::<Permission>())
        .collect::<Result<_, _>>()
        .map_err(|_| corrupt())?;
    let effect = match effect.as_str() {
        "allow" => Effect::Allow,
        "deny" => Effect::Deny,
        _ => return Err(corrupt()),
    };
    Ok(Some(AclRule {
        rule_id,
        subject: Subject::parse(&subject).map_err(|_| corrupt())?,
        path: FilePath::parse(&path).map_err(|_| corrupt())?,
        permissions,
        effect,
    }))
}

/// Which of `paths` exist in the tenant's catalogue, and as what: one query however many
/// paths (none at all for an empty list), the catalogue's own ([`crate::catalogue::held_at`]).
/// A file still being scanned or quarantined exists here: rules are about paths.
pub async fn existing_entries(
    pool: &PgPool,
    tenant: &TenantId,
    paths: &[FilePath],
) -> Result<HashMap<FilePath, Existing>, AccessReadError> {
    let held = crate::catalogue::held_at(pool, tenant, paths).await?;
    Ok(paths
        .iter()
        .filter_map(|p| {
            let kind = match held.get(p.as_str())? {
                Held::Dir => Existing::Dir,
                Held::File(_) => Existing::File,
            };
            Some((p.clone(), kind))
        })
        .collect())
}
