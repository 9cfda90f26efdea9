//! Which projector replica follows which partition.
//!
//! Advisory locks are per database, so deployments (and tests) sharing a PostgreSQL server
//! never see each other's replicas. Each replica holds one PostgreSQL connection detached from the pool (its *ownership
//! connection*). On it, it takes a member lock (advisory lock `(MEMBER_CLASS, slot)`) that
//! says it is alive, and one advisory lock `(PARTITION_CLASS, p)` per partition it follows.
//! Locks live exactly as long as that session: when a replica dies (kill -9, lost network),
//! PostgreSQL closes the session and its partitions are free for the others at their next
//! tick. Every tick (1 s) a replica counts the live members, takes free partitions up to its
//! fair share `ceil(partitions / members)`, and hands back the ones above it (follower
//! stopped first, lock released after), so throughput grows with replicas. Should two
//! replicas ever follow one partition (a lock lost with its connection while the follower
//! still runs), the partition row lock and the checkpoint guard make the second one a no-op.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use platform::consumer::Backoff;
use platform::projection;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::partition::{self, Partition};

/// First key of the member locks ("fe" + 1).
pub const MEMBER_CLASS: i32 = 0x6665_0001;
/// First key of the partition locks ("fe" + 2).
pub const PARTITION_CLASS: i32 = 0x6665_0002;
/// Highest number of replicas that can be members at once.
const MAX_MEMBERS: i32 = 1024;
const TICK: Duration = Duration::from_secs(1);
/// Pauses before a failed partition follower starts again from its checkpoint (the
/// platform's one retry schedule, [`platform::consumer::Backoff`]).
const FOLLOWER_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

struct Follower {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Runs this replica's share of the partitions until `shutdown` turns true.
pub(crate) async fn run(
    js: jetstream::Context,
    pool: PgPool,
    partitions: u32,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut followers: BTreeMap<u32, Follower> = BTreeMap::new();
    let mut conn: Option<PgConnection> = None;
    while !*shutdown.borrow() {
        if conn.is_none() {
            match join(&pool).await {
                Ok(c) => conn = Some(c),
                Err(e) => tracing::warn!(error = %e, "projector: cannot join the replicas"),
            }
        }
        if let Some(c) = conn.as_mut() {
            if let Err(e) = rebalance(c, &js, &pool, partitions, &mut followers).await {
                // The session (and with it every lock) may be gone: stop following until
                // the locks are held again.
                tracing::warn!(error = %e, "projector: ownership connection failed");
                stop_all(&mut followers).await;
                conn = None;
            }
        }
        if let Ok(parked) = projection::parked_tenants(&pool).await {
            metrics::gauge!("fe_projection_parked_tenants").set(parked.len() as f64);
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => {}
        }
    }
    stop_all(&mut followers).await;
    drop(conn);
}

/// Opens the ownership connection and takes a member slot on it.
async fn join(pool: &PgPool) -> Result<PgConnection, sqlx::Error> {
    let mut conn = pool.acquire().await?.detach();
    let name = format!(
        "fe-projector {}:{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into()),
        std::process::id()
    );
    sqlx::query("SELECT set_config('application_name', $1, false)")
        .bind(name)
        .execute(&mut conn)
        .await?;
    for slot in 0..MAX_MEMBERS {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(MEMBER_CLASS)
            .bind(slot)
            .fetch_one(&mut conn)
            .await?;
        if got {
            return Ok(conn);
        }
    }
    Err(sqlx::Error::Protocol(
        "no free projector member slot".into(),
    ))
}

async fn rebalance(
    conn: &mut PgConnection,
    js: &jetstream::Context,
    pool: &PgPool,
    partitions: u32,
    followers: &mut BTreeMap<u32, Follower>,
) -> Result<(), sqlx::Error> {
    // A cheap round trip that fails when the session is gone.
    let members: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
           AND classid::int8 = $1 AND objsubid = 2
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(i64::from(MEMBER_CLASS))
    .fetch_one(&mut *conn)
    .await?;
    let members = u32::try_from(members.max(1)).unwrap_or(1);
    let share = partitions.div_ceil(members) as usize;
    // Hand back partitions above the share: stop the follower, then release the lock.
    while followers.len() > share {
        let Some((p, follower)) = followers.pop_last() else {
            break;
        };
        stop(follower).await;
        sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(PARTITION_CLASS)
            .bind(p as i32)
            .execute(&mut *conn)
            .await?;
        tracing::info!(partition = p, "projector: partition handed over");
    }
    // Restart followers that ended (they only end on shutdown or a panic).
    for (p, follower) in followers.iter_mut() {
        if follower.task.is_finished() {
            *follower = spawn(js, pool, *p, partitions);
        }
    }
    for p in 0..partitions {
        if followers.len() >= share {
            break;
        }
        if followers.contains_key(&p) {
            continue;
        }
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(PARTITION_CLASS)
            .bind(p as i32)
            .fetch_one(&mut *conn)
            .await?;
        if got {
            tracing::info!(partition = p, "projector: following partition");
            followers.insert(p, spawn(js, pool, p, partitions));
        }
    }
    metrics::gauge!("fe_projector_partitions_owned").set(followers.len() as f64);
    Ok(())
}

async fn stop(follower: Follower) {
    let _ = follower.stop.send(true);
    let _ = follower.task.await;
}

async fn stop_all(followers: &mut BTreeMap<u32, Follower>) {
    while let Some((_, follower)) = followers.pop_first() {
        stop(follower).await;
    }
}

/// Follows one partition, retrying with backoff after transient errors.
fn spawn(js: &jetstream::Context, pool: &PgPool, p: u32, partitions: u32) -> Follower {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let part = Partition {
        js: js.clone(),
        pool: pool.clone(),
        partition: p,
        partitions,
    };
    let task = tokio::spawn(async move {
        let mut failures = 0;
        while !*stop_rx.borrow() {
            let began = std::time::Instant::now();
            match partition::follow(&part, &mut stop_rx).await {
                Ok(()) => break,
                Err(e) => {
                    // A follower that ran for a while before failing starts its backoff over.
                    if began.elapsed() > Duration::from_secs(30) {
                        failures = 0;
                    }
                    failures += 1;
                    metrics::counter!("fe_projector_errors_total").increment(1);
                    tracing::error!(partition = p, error = %e, "projector: partition stopped, retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOWER_BACKOFF.delay(failures)) => {}
                changed = stop_rx.changed() => {
                    // The owner is gone (its task ended without stopping us): stop too, or we
                    // would spin on a closed channel for the life of the process.
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
    });
    Follower {
        stop: stop_tx,
        task,
    }
}

/// Which replica (its PostgreSQL `application_name`) follows each partition right now.
pub async fn partition_owners(pool: &PgPool) -> Result<BTreeMap<u32, String>, sqlx::Error> {
    let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT l.objid::int8, a.application_name
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid::int8 = $1 AND l.objsubid = 2
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(i64::from(PARTITION_CLASS))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(p, name)| (p.max(0) as u32, name.unwrap_or_default()))
        .collect())
}
