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
//! stopped first, lock released after), so throughput grows with replicas. A replica follows
//! all its partitions with one reader of the log (`partition::follow`), restarted from the
//! checkpoints whenever its share changes. Should two
//! replicas ever follow one partition (a lock lost with its connection while the follower
//! still runs), the partition row lock and the checkpoint guard make the second one a no-op.

use std::collections::{BTreeMap, BTreeSet};
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
/// Pauses before a failed follower starts again from its checkpoints (the
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
    let mut share = Share::default();
    let mut conn: Option<PgConnection> = None;
    while !*shutdown.borrow() {
        if conn.is_none() {
            match join(&pool).await {
                Ok(c) => conn = Some(c),
                Err(e) => tracing::warn!(error = %e, "projector: cannot join the replicas"),
            }
        }
        if let Some(c) = conn.as_mut() {
            if let Err(e) = rebalance(c, &js, &pool, partitions, &mut share).await {
                // The session (and with it every lock) may be gone: stop following until
                // the locks are held again.
                tracing::warn!(error = %e, "projector: ownership connection failed");
                share.stop().await;
                share.owned.clear();
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
    share.stop().await;
    drop(conn);
}

/// The partitions this replica holds the locks of, and the follower reading them.
#[derive(Default)]
struct Share {
    owned: BTreeSet<u32>,
    follower: Option<Follower>,
}

impl Share {
    async fn stop(&mut self) {
        if let Some(follower) = self.follower.take() {
            let _ = follower.stop.send(true);
            let _ = follower.task.await;
        }
    }
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
    share: &mut Share,
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
    let fair = partitions.div_ceil(members) as usize;
    let before = share.owned.clone();
    // Hand back partitions above the share: stop the follower, then release the lock.
    if share.owned.len() > fair {
        share.stop().await;
    }
    while share.owned.len() > fair {
        let Some(p) = share.owned.pop_last() else {
            break;
        };
        sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(PARTITION_CLASS)
            .bind(p as i32)
            .execute(&mut *conn)
            .await?;
        tracing::info!(partition = p, "projector: partition handed over");
    }
    for p in 0..partitions {
        if share.owned.len() >= fair {
            break;
        }
        if share.owned.contains(&p) {
            continue;
        }
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(PARTITION_CLASS)
            .bind(p as i32)
            .fetch_one(&mut *conn)
            .await?;
        if got {
            tracing::info!(partition = p, "projector: following partition");
            share.owned.insert(p);
        }
    }
    // (Re)start the follower when the share changed or it ended (only on shutdown or a panic).
    let ended = share.follower.as_ref().is_none_or(|f| f.task.is_finished());
    if share.owned != before || ended {
        share.stop().await;
        if !share.owned.is_empty() {
            share.follower = Some(spawn(js, pool, &share.owned, partitions));
        }
    }
    metrics::gauge!("fe_projector_partitions_owned").set(share.owned.len() as f64);
    Ok(())
}

/// Follows the partitions of `owned` with one reader, retrying with backoff after transient
/// errors.
fn spawn(
    js: &jetstream::Context,
    pool: &PgPool,
    owned: &BTreeSet<u32>,
    partitions: u32,
) -> Follower {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let group: Vec<Partition> = owned
        .iter()
        .map(|&partition| Partition {
            js: js.clone(),
            pool: pool.clone(),
            partition,
            partitions,
        })
        .collect();
    let task = tokio::spawn(async move {
        let mut failures = 0;
        while !*stop_rx.borrow() {
            let began = std::time::Instant::now();
            match partition::follow(&group, &mut stop_rx).await {
                Ok(()) => break,
                Err(e) => {
                    // A follower that ran for a while before failing starts its backoff over.
                    if began.elapsed() > Duration::from_secs(30) {
                        failures = 0;
                    }
                    failures += 1;
                    metrics::counter!("fe_projector_errors_total").increment(1);
                    let owned: Vec<u32> = group.iter().map(|p| p.partition).collect();
                    tracing::error!(partitions = ?owned, error = %e, "projector: follower stopped, retrying");
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
