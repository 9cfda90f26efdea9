//! PostgreSQL: the connection pool and the embedded sqlx migrations of every read model.
//!
//! The state of the (partitioned) projection and the watermark waiters use live in
//! [`crate::projection`]; [`ProjectionWatermark`] is re-exported here for the services.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

pub use crate::projection::{ProjectionWatermark, PROJECTED_CHANNEL};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

pub async fn connect(url: &str) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// The log sequence every partition of the read models has passed (0 = nothing yet).
/// Commits of parked tenants up to it are held, not applied (see [`crate::projection`]).
pub async fn checkpoint(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT min(last_seq) FROM projection_partitions")
        .fetch_one(pool)
        .await?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}
