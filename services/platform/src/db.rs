//! PostgreSQL: the connection pool, the embedded sqlx migrations of every read model, and the
//! projection watermark other services wait on.
//!
//! The projector commits each event together with the checkpoint `read_models` and then
//! `NOTIFY fe_projected, '<seq>'`; [`ProjectionWatermark`] turns those notifications into a
//! watch channel so that a request can wait (with a deadline) until the read models have seen
//! a given log position — the read-your-writes guarantee for ACL changes and task waits.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::watch;

pub const CHECKPOINT: &str = "read_models";
pub const PROJECTED_CHANNEL: &str = "fe_projected";

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

/// The log sequence the read models have applied up to (0 = nothing yet).
pub async fn checkpoint(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT last_seq FROM projection_checkpoints WHERE projection = $1")
            .bind(CHECKPOINT)
            .fetch_optional(pool)
            .await?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

/// Follows the projector's progress through LISTEN/NOTIFY, falling back to polling the
/// checkpoint so a lost notification or a reconnect can only delay, never stall, a waiter.
#[derive(Clone)]
pub struct ProjectionWatermark {
    rx: watch::Receiver<u64>,
}

impl ProjectionWatermark {
    pub async fn start(pool: PgPool) -> Result<Self, sqlx::Error> {
        let (tx, rx) = watch::channel(checkpoint(&pool).await?);
        tokio::spawn(follow(pool, tx));
        Ok(Self { rx })
    }

    pub fn current(&self) -> u64 {
        *self.rx.borrow()
    }

    /// Waits until the read models passed `seq`; false when the deadline came first.
    pub async fn wait_for(&self, seq: u64, deadline: Duration) -> bool {
        let mut rx = self.rx.clone();
        tokio::time::timeout(deadline, rx.wait_for(|s| *s >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits for any progress past `seen` (used by long polls); false on deadline.
    pub async fn changed_since(&self, seen: u64, deadline: Duration) -> bool {
        self.wait_for(seen + 1, deadline).await
    }
}

async fn follow(pool: PgPool, tx: watch::Sender<u64>) {
    loop {
        if tx.is_closed() {
            return;
        }
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if listener.listen(PROJECTED_CHANNEL).await.is_ok() {
                    listen_loop(&pool, &mut listener, &tx).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "projection watermark: listen failed"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn listen_loop(pool: &PgPool, listener: &mut PgListener, tx: &watch::Sender<u64>) {
    loop {
        // The periodic re-read covers notifications missed while reconnecting.
        match tokio::time::timeout(Duration::from_secs(1), listener.try_recv()).await {
            Ok(Ok(Some(n))) => {
                if let Ok(seq) = n.payload().parse::<u64>() {
                    tx.send_if_modified(|cur| advance(cur, seq));
                }
            }
            Ok(Ok(None)) | Ok(Err(_)) => return,
            Err(_) => {
                if tx.is_closed() {
                    return;
                }
                if let Ok(seq) = checkpoint(pool).await {
                    tx.send_if_modified(|cur| advance(cur, seq));
                }
            }
        }
    }
}

fn advance(cur: &mut u64, seq: u64) -> bool {
    if seq > *cur {
        *cur = seq;
        true
    } else {
        false
    }
}
