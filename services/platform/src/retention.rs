//! What must keep its bytes: the mark side of garbage collection, and the record of signed
//! links that extends it (`link_grants`, written by the API when it signs a link).
//!
//! A blob of a tenant is needed while any of these names it:
//! - a version some entry shows (`file_versions.released_at IS NULL`);
//! - a released version within the retention (`FE_VERSION_RETENTION_DAYS`);
//! - a version a live signed link points at (whatever the retention);
//! - an upload task still open (its blob may be published before the catalogue shows it).
//!
//! Quarantined uploads are not blobs (they live in their own area) and are never collected.
//! Everything here errs on the side of keeping: a blob that cannot be proven unneeded stays.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use events::TenantId;
use sqlx::PgPool;

/// Records that a link to `version` is live until `expires_at`.
pub async fn record_link_grant(
    pool: &PgPool,
    t: &TenantId,
    version: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO link_grants (tenant, version, expires_at) VALUES ($1, $2, $3)")
        .bind(t.as_str())
        .bind(version)
        .bind(expires_at)
        .execute(pool)
        .await?;
    Ok(())
}

const NEEDED: &str = "
    SELECT sha256 FROM file_versions
     WHERE tenant = $1 AND (released_at IS NULL OR released_at > $2)
    UNION
    SELECT fv.sha256 FROM file_versions fv
      JOIN link_grants l ON l.tenant = fv.tenant AND l.version = fv.version
     WHERE fv.tenant = $1 AND l.expires_at > $3
    UNION
    SELECT spec->>'sha256' FROM tasks
     WHERE tenant = $1 AND op = 'upload' AND status IN ('pending', 'running')";

/// The SHA-256 of every blob of the tenant that must be kept, given that released versions
/// are kept until `retained_after` and links live past `now`.
pub async fn needed_blobs(
    pool: &PgPool,
    t: &TenantId,
    retained_after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<HashSet<String>, sqlx::Error> {
    let rows: Vec<Option<String>> = sqlx::query_scalar(NEEDED)
        .bind(t.as_str())
        .bind(retained_after)
        .bind(now)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().flatten().collect())
}

/// Forgets link grants that expired before `now` (they protect nothing any more).
pub async fn drop_expired_grants(pool: &PgPool, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM link_grants WHERE expires_at <= $1")
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
