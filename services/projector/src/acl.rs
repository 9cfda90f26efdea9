//! The ACL read model: `acl_rules` (the rules in force per tenant) and `acl_versions` (the
//! stream sequence of each tenant's latest ACL event), maintained from `acl.rule_granted` and
//! `acl.rule_revoked`.
//!
//! The API enforces from these tables: it reads the tenant's version on every decision and
//! reloads the rules only when it changed, so the version is bumped by every ACL event, in the
//! same transaction as the rule change and the checkpoint. A grant with an id that already
//! exists replaces the rule, like `AclIndex::insert` (the aggregate refuses duplicates, so this
//! only matters for a log written by something else); a revoke of an unknown id changes no
//! rule but still bumps the version. Every value comes from the log (event data, the commit's
//! JetStream time and sequence), so a replay writes identical rows.

use events::acl::AclEvent;
use platform::event_log::LoggedCommit;
use sqlx::{Postgres, Transaction};

use crate::ProjectorError;

/// Applies every event of an `acl` commit.
pub async fn apply_commit(
    tx: &mut Transaction<'_, Postgres>,
    commit: &LoggedCommit,
) -> Result<(), ProjectorError> {
    for stored in &commit.events {
        let event: AclEvent = serde_json::from_value(stored.payload.clone()).map_err(|e| {
            ProjectorError::Corrupt {
                seq: commit.stream_seq,
                reason: format!("not an ACL event: {e}"),
            }
        })?;
        apply(tx, commit, &event).await?;
    }
    bump_version(tx, commit).await
}

async fn apply(
    tx: &mut Transaction<'_, Postgres>,
    commit: &LoggedCommit,
    event: &AclEvent,
) -> Result<(), ProjectorError> {
    let tenant = commit.tenant.as_str();
    match event {
        AclEvent::RuleGranted { rule, by } => {
            let permissions: Vec<&str> = rule.permissions.iter().map(|p| p.as_str()).collect();
            let effect = match rule.effect {
                events::acl::Effect::Allow => "allow",
                events::acl::Effect::Deny => "deny",
            };
            sqlx::query(
                "INSERT INTO acl_rules (tenant, rule_id, subject, path, permissions, effect,
                                        granted_by, granted_at, seq)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (tenant, rule_id) DO UPDATE SET
                    subject = EXCLUDED.subject, path = EXCLUDED.path,
                    permissions = EXCLUDED.permissions, effect = EXCLUDED.effect,
                    granted_by = EXCLUDED.granted_by, granted_at = EXCLUDED.granted_at,
                    seq = EXCLUDED.seq",
            )
            .bind(tenant)
            .bind(rule.rule_id)
            .bind(rule.subject.to_string())
            .bind(rule.path.as_str())
            .bind(permissions)
            .bind(effect)
            .bind(by)
            .bind(commit.time)
            .bind(commit.stream_seq as i64)
            .execute(&mut **tx)
            .await?;
        }
        AclEvent::RuleRevoked { rule_id, .. } => {
            sqlx::query("DELETE FROM acl_rules WHERE tenant = $1 AND rule_id = $2")
                .bind(tenant)
                .bind(rule_id)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

/// Records that the tenant's rules changed at this commit (never moves backwards).
async fn bump_version(
    tx: &mut Transaction<'_, Postgres>,
    commit: &LoggedCommit,
) -> Result<(), ProjectorError> {
    sqlx::query(
        "INSERT INTO acl_versions (tenant, seq) VALUES ($1, $2)
         ON CONFLICT (tenant) DO UPDATE SET seq = GREATEST(acl_versions.seq, EXCLUDED.seq)",
    )
    .bind(commit.tenant.as_str())
    .bind(commit.stream_seq as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
