//! PostgreSQL: the connection pool and the embedded sqlx migrations of every read model.
//!
//! The state of the (partitioned) projection and the watermark waiters use live in
//! [`crate::projection`]; [`ProjectionWatermark`] is re-exported here for the services.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

pub use crate::projection::{ProjectionWatermark, PROJECTED_CHANNEL};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// The process pool (16 connections).
pub async fn connect(url: &str) -> Result<PgPool, sqlx::Error> {
    pool_options(16).connect(url).await
}

/// Pool settings shared by every pool of the platform. A connection is pinged before it is
/// handed out only when it has been idle for [`PING_WHEN_IDLE`]: sqlx's default pings at
/// every acquire, one more round trip for every single-statement call (most of them), while a
/// connection in steady use proves itself with every statement. A connection that died while
/// in use (a PostgreSQL restart) fails its next statement like any lost connection: a
/// transient error its caller retries, and sqlx discards the connection.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// Idle time after which a pooled connection is checked before use.
pub const PING_WHEN_IDLE: Duration = Duration::from_secs(1);

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
