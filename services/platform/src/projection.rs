//! The state of the partitioned projection, and the one place its SQL lives: per-partition
//! checkpoints (`projection_partitions`), parked tenants (`projection_parked`), and the
//! [`ProjectionWatermark`] every waiter uses.
//!
//! The log is split into partitions by tenant ([`events::partition`]). A partition's
//! checkpoint is the last log sequence its projector has passed; it is written in the same
//! transaction as the effects, followed by `NOTIFY fe_projected, '<partition>:<seq>'`.
//! A tenant whose commit cannot be applied for a reason retrying will not fix is *parked*:
//! its later commits are held (not applied, in order) while the checkpoint moves on for every
//! other tenant, until an operator asks to resume it (`NOTIFY fe_parked` on every change).
//!
//! Waiting for the projection therefore means "has *this tenant's* partition passed `seq`, and
//! is the tenant not parked at or before `seq`": [`ProjectionWatermark::wait_for_tenant`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use events::partition::partition_of_str;
use events::TenantId;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;

use crate::settled::{SettledTasks, SettledWatch, SETTLED_CHANNEL};

/// `NOTIFY` channel of checkpoint progress; payload `<partition>:<seq>`.
pub const PROJECTED_CHANNEL: &str = "fe_projected";
/// `NOTIFY` channel of parking changes (park, progress of a resume, unpark); no payload.
pub const PARKED_CHANNEL: &str = "fe_parked";
/// Longest parking reason stored (it is an internal error text, never shown to clients).
const MAX_REASON_BYTES: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(
        "the read models were built with {built} partitions but FE_PARTITIONS is {configured}; \
         keep FE_PARTITIONS={built}, or stop every projector and run `file-engine replay` to \
         rebuild the read models with {configured} partitions"
    )]
    Mismatch { built: u32, configured: u32 },
}

/// Creates the partition rows on first use (each starting at the checkpoint of the former
/// single projector, so an upgrade re-applies nothing), or checks that the read models were
/// built with `partitions` partitions. A different count is refused: the tenants of a partition
/// would move while their commits are half applied.
pub async fn ensure_layout(pool: &PgPool, partitions: u32) -> Result<(), LayoutError> {
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE projection_partitions IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let built: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_partitions")
        .fetch_one(&mut *tx)
        .await?;
    if built == 0 {
        let legacy: Option<i64> = sqlx::query_scalar(
            "SELECT last_seq FROM projection_checkpoints WHERE projection = 'read_models'",
        )
        .fetch_optional(&mut *tx)
        .await?;
        insert_partitions(&mut tx, partitions, legacy.unwrap_or(0).max(0)).await?;
    } else if built != i64::from(partitions) {
        return Err(LayoutError::Mismatch {
            built: u32::try_from(built).unwrap_or(u32::MAX),
            configured: partitions,
        });
    }
    tx.commit().await?;
    Ok(())
}

/// Drops every partition row and parking, and starts `partitions` partitions at 0 (replay).
pub async fn reset_layout(conn: &mut PgConnection, partitions: u32) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM projection_partitions")
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM projection_parked")
        .execute(&mut *conn)
        .await?;
    insert_partitions(conn, partitions, 0).await
}

async fn insert_partitions(
    conn: &mut PgConnection,
    partitions: u32,
    start: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_partitions (partition, last_seq)
         SELECT p, $2 FROM generate_series(0, $1 - 1) AS p",
    )
    .bind(i32::try_from(partitions).unwrap_or(i32::MAX))
    .bind(start)
    .execute(conn)
    .await?;
    Ok(())
}

/// The checkpoint of one partition (0 = nothing yet).
pub async fn partition_checkpoint(pool: &PgPool, partition: u32) -> Result<u64, sqlx::Error> {
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT last_seq FROM projection_partitions WHERE partition = $1")
            .bind(partition as i32)
            .fetch_optional(pool)
            .await?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

/// The log position up to which `tenant`'s read models are complete: its partition's
/// checkpoint, but never into the held commits of a parked tenant.
pub async fn tenant_checkpoint(pool: &PgPool, tenant: &str) -> Result<u64, sqlx::Error> {
    let partitions = partition_checkpoints(pool).await?;
    if partitions.is_empty() {
        return Ok(0);
    }
    let p = partition_of_str(tenant, partitions.len() as u32);
    let mut through = partitions
        .iter()
        .find(|(q, _)| *q == p)
        .map_or(0, |(_, s)| *s);
    if let Some(parked) = parked_tenant(pool, tenant).await? {
        through = through.min((parked.seq.max(1) - 1) as u64);
    }
    Ok(through)
}

/// Every partition with its checkpoint, by partition.
pub async fn partition_checkpoints(pool: &PgPool) -> Result<Vec<(u32, u64)>, sqlx::Error> {
    let rows: Vec<(i32, i64)> =
        sqlx::query_as("SELECT partition, last_seq FROM projection_partitions ORDER BY partition")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(p, s)| (p.max(0) as u32, s.max(0) as u64))
        .collect())
}

/// What [`lock_partitions`] found under its locks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LockedPartitions {
    /// Each locked partition's checkpoint.
    pub checkpoints: HashMap<u32, u64>,
    /// The parked tenants of the locked partitions, with their parked sequence.
    pub parked: HashMap<String, u64>,
}

/// Locks the rows of `parts` (of `partitions`) for the transaction, in partition order so
/// that two transactions over overlapping sets never deadlock, and returns their
/// checkpoints and parked tenants, in one round trip. Two projectors that both believe they
/// own a partition serialise here, and the later one sees the commits as already passed.
pub async fn lock_partitions(
    conn: &mut PgConnection,
    parts: &[u32],
    partitions: u32,
) -> Result<LockedPartitions, sqlx::Error> {
    let ids: Vec<i32> = parts.iter().map(|&p| p as i32).collect();
    let rows: Vec<(i32, i64, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT p.partition, p.last_seq, k.tenant, k.seq
         FROM projection_partitions p LEFT JOIN projection_parked k ON true
         WHERE p.partition = ANY($1)
         ORDER BY p.partition
         FOR UPDATE OF p",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    let mut locked = LockedPartitions::default();
    for (partition, last_seq, tenant, seq) in rows {
        let partition = partition.max(0) as u32;
        locked.checkpoints.insert(partition, last_seq.max(0) as u64);
        if let (Some(tenant), Some(seq)) = (tenant, seq) {
            if partition_of_str(&tenant, partitions) == partition {
                locked.parked.insert(tenant, seq.max(0) as u64);
            }
        }
    }
    Ok(locked)
}

/// Moves the checkpoints of `parts` to `seq` (never back) and announces those of `announce`
/// when the transaction commits, in one round trip. A checkpoint moved without an
/// announcement is seen by the next announcement of its partition or the next reload.
pub async fn advance_partitions(
    conn: &mut PgConnection,
    parts: &[u32],
    seq: u64,
    announce: &[u32],
) -> Result<(), sqlx::Error> {
    let ids: Vec<i32> = parts.iter().map(|&p| p as i32).collect();
    let announced: Vec<i32> = announce.iter().map(|&p| p as i32).collect();
    // A data-modifying CTE runs exactly once whatever the main query reads.
    sqlx::query(
        "WITH advanced AS (
             UPDATE projection_partitions SET last_seq = GREATEST(last_seq, $2::bigint),
                                              updated_at = now()
             WHERE partition = ANY($1::int[]))
         SELECT pg_notify($3, p::text || ':' || $2::bigint::text) FROM unnest($4::int[]) AS p",
    )
    .bind(ids)
    .bind(seq as i64)
    .bind(PROJECTED_CHANNEL)
    .bind(announced)
    .execute(conn)
    .await?;
    Ok(())
}

/// A tenant whose projection is parked.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ParkedTenant {
    pub tenant: String,
    /// First commit of the tenant not applied.
    pub seq: i64,
    /// Why it was parked (internal error text: for operators, never for clients).
    pub reason: String,
    pub parked_at: DateTime<Utc>,
    pub attempts: i32,
    pub resume_requested_at: Option<DateTime<Utc>>,
}

/// Every parked tenant, by tenant.
pub async fn parked_tenants(pool: &PgPool) -> Result<Vec<ParkedTenant>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tenant, seq, reason, parked_at, attempts, resume_requested_at
         FROM projection_parked ORDER BY tenant",
    )
    .fetch_all(pool)
    .await
}

/// One parked tenant, if parked.
pub async fn parked_tenant(
    pool: &PgPool,
    tenant: &str,
) -> Result<Option<ParkedTenant>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tenant, seq, reason, parked_at, attempts, resume_requested_at
         FROM projection_parked WHERE tenant = $1",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await
}

fn bounded(reason: &str) -> String {
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

async fn notify_parked(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(PARKED_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// Parks `tenant` at commit `seq` (in the caller's transaction).
pub async fn park(
    conn: &mut PgConnection,
    tenant: &str,
    seq: u64,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_parked (tenant, seq, reason) VALUES ($1, $2, $3)
         ON CONFLICT (tenant) DO NOTHING",
    )
    .bind(tenant)
    .bind(seq as i64)
    .bind(bounded(reason))
    .execute(&mut *conn)
    .await?;
    notify_parked(conn).await
}

/// The tenants of one partition whose resume was requested, with their parked sequence.
pub async fn resume_requests(
    pool: &PgPool,
    partition: u32,
    partitions: u32,
) -> Result<Vec<(String, u64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT tenant, seq FROM projection_parked WHERE resume_requested_at IS NOT NULL
         ORDER BY tenant",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|(t, _)| partition_of_str(t, partitions) == partition)
        .map(|(t, s)| (t, s.max(0) as u64))
        .collect())
}

/// Asks the projector owning the tenant's partition to retry it; false when it is not parked.
pub async fn request_resume(pool: &PgPool, tenant: &str) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let updated =
        sqlx::query("UPDATE projection_parked SET resume_requested_at = now() WHERE tenant = $1")
            .bind(tenant)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    notify_parked(&mut tx).await?;
    tx.commit().await?;
    Ok(updated > 0)
}

/// Locks the tenant's parking row for a resume step; its parked sequence, if still parked.
pub async fn lock_parked(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<Option<u64>, sqlx::Error> {
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM projection_parked WHERE tenant = $1 FOR UPDATE")
            .bind(tenant)
            .fetch_optional(conn)
            .await?;
    Ok(seq.map(|s| s.max(0) as u64))
}

/// Records that a resume applied everything of the tenant before `next_seq`.
pub async fn parked_progress(
    conn: &mut PgConnection,
    tenant: &str,
    next_seq: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE projection_parked SET seq = $2 WHERE tenant = $1")
        .bind(tenant)
        .bind(next_seq as i64)
        .execute(&mut *conn)
        .await?;
    notify_parked(conn).await
}

/// A resume met a commit that still cannot be applied: the tenant stays parked there.
pub async fn repark(
    conn: &mut PgConnection,
    tenant: &str,
    seq: u64,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE projection_parked SET seq = $2, reason = $3, attempts = attempts + 1,
                resume_requested_at = NULL, parked_at = now()
         WHERE tenant = $1",
    )
    .bind(tenant)
    .bind(seq as i64)
    .bind(bounded(reason))
    .execute(&mut *conn)
    .await?;
    notify_parked(conn).await
}

/// The tenant caught up: it is projected like every other from now on.
pub async fn unpark(conn: &mut PgConnection, tenant: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM projection_parked WHERE tenant = $1")
        .bind(tenant)
        .execute(&mut *conn)
        .await?;
    notify_parked(conn).await
}

/// Where the projection stands for one tenant's log position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projected {
    /// The read models reflect the tenant's commits up to that position.
    Applied,
    /// The tenant is parked at `seq` (at or before the position): nothing of it moves until
    /// an operator resumes it.
    Parked { seq: u64 },
    /// Not yet (or the deadline came first).
    Pending,
}

/// A consistent picture of the projection: every partition's checkpoint and the parked
/// tenants, read in one snapshot so a parking is never missed next to the checkpoint that
/// passed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    partitions: Vec<u64>,
    parked: HashMap<String, u64>,
}

impl Progress {
    /// The position of `tenant` relative to its log position `seq`.
    pub fn position(&self, tenant: &str, seq: u64) -> Projected {
        if let Some(&parked) = self.parked.get(tenant) {
            if parked <= seq {
                return Projected::Parked { seq: parked };
            }
        }
        if self.partitions.is_empty() {
            return Projected::Pending;
        }
        if self.checkpoint_of(tenant) >= seq {
            Projected::Applied
        } else {
            Projected::Pending
        }
    }

    /// The checkpoint of the partition `tenant` belongs to (0 before the layout exists).
    pub fn checkpoint_of(&self, tenant: &str) -> u64 {
        if self.partitions.is_empty() {
            return 0;
        }
        let p = partition_of_str(tenant, self.partitions.len() as u32) as usize;
        self.partitions.get(p).copied().unwrap_or(0)
    }

    /// Merges a newer snapshot: checkpoints never go back (a notification may overtake a
    /// poll), parkings are taken as they are now.
    fn merge(&mut self, newer: Progress) -> bool {
        let mut changed = false;
        if newer.partitions.len() != self.partitions.len() {
            self.partitions = newer.partitions;
            changed = true;
        } else {
            for (cur, new) in self.partitions.iter_mut().zip(newer.partitions) {
                if new > *cur {
                    *cur = new;
                    changed = true;
                }
            }
        }
        if newer.parked != self.parked {
            self.parked = newer.parked;
            changed = true;
        }
        changed
    }

    fn advance(&mut self, partition: usize, seq: u64) -> bool {
        match self.partitions.get_mut(partition) {
            Some(cur) if seq > *cur => {
                *cur = seq;
                true
            }
            _ => false,
        }
    }
}

async fn snapshot(pool: &PgPool) -> Result<Progress, sqlx::Error> {
    let rows: Vec<(Option<i32>, i64, Option<String>)> = sqlx::query_as(
        "SELECT partition, last_seq, NULL::text FROM projection_partitions
         UNION ALL SELECT NULL, seq, tenant FROM projection_parked",
    )
    .fetch_all(pool)
    .await?;
    let mut progress = Progress::default();
    let mut partitions: Vec<(i32, u64)> = Vec::new();
    for (partition, seq, tenant) in rows {
        let seq = seq.max(0) as u64;
        match (partition, tenant) {
            (Some(p), _) => partitions.push((p, seq)),
            (None, Some(t)) => {
                progress.parked.insert(t, seq);
            }
            (None, None) => {}
        }
    }
    partitions.sort_unstable();
    progress.partitions = partitions.into_iter().map(|(_, s)| s).collect();
    Ok(progress)
}

/// Follows the projection through LISTEN/NOTIFY, falling back to re-reading the state every
/// second, so a lost notification or a reconnect can only delay, never stall, a waiter.
/// It also relays the announcements of settled tasks ([`crate::settled`]).
#[derive(Clone)]
pub struct ProjectionWatermark {
    rx: watch::Receiver<Arc<Progress>>,
    settled: SettledTasks,
}

impl ProjectionWatermark {
    /// Reads the state and starts listening before it returns, so that no notification sent
    /// after `start` is missed (a waiter registered then is woken by the first one).
    pub async fn start(pool: PgPool) -> Result<Self, sqlx::Error> {
        let listener = listen(&pool).await?;
        let (tx, rx) = watch::channel(Arc::new(snapshot(&pool).await?));
        let settled = SettledTasks::default();
        tokio::spawn(follow(pool, tx, settled.clone(), listener));
        Ok(Self { rx, settled })
    }

    /// Registers a waiter for the announcement that `task_id` of `tenant` is terminal.
    pub fn watch_task(&self, tenant: &TenantId, task_id: uuid::Uuid) -> SettledWatch {
        self.settled.watch(tenant, task_id)
    }

    /// Every settled task announced from now on (see [`SettledTasks::feed`]).
    pub fn settled_feed(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.settled.feed()
    }

    /// The checkpoint of `tenant`'s partition: every commit of the tenant up to it is applied
    /// (unless the tenant is parked; see [`Self::parked`]).
    pub fn tenant_checkpoint(&self, tenant: &TenantId) -> u64 {
        self.rx.borrow().checkpoint_of(tenant.as_str())
    }

    /// Where `tenant` stands relative to its log position `seq`, right now.
    pub fn position(&self, tenant: &TenantId, seq: u64) -> Projected {
        self.rx.borrow().position(tenant.as_str(), seq)
    }

    /// The sequence `tenant` is parked at, if it is parked.
    pub fn parked(&self, tenant: &TenantId) -> Option<u64> {
        self.rx.borrow().parked.get(tenant.as_str()).copied()
    }

    /// Waits until the tenant's partition passed `seq` (read-your-writes of that tenant's own
    /// commit), or the tenant turns out parked at or before it, or the deadline comes.
    pub async fn wait_for_tenant(
        &self,
        tenant: &TenantId,
        seq: u64,
        deadline: Duration,
    ) -> Projected {
        let mut rx = self.rx.clone();
        let settled = |p: &Arc<Progress>| p.position(tenant.as_str(), seq) != Projected::Pending;
        let _ = tokio::time::timeout(deadline, rx.wait_for(settled)).await;
        self.position(tenant, seq)
    }
}

/// A listener on every channel the watermark follows.
async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([PROJECTED_CHANNEL, PARKED_CHANNEL, SETTLED_CHANNEL])
        .await?;
    Ok(listener)
}

/// Follows the notifications with `first` (listening since before [`ProjectionWatermark::start`]
/// returned), then with a new listener after every loss of the connection.
async fn follow(
    pool: PgPool,
    tx: watch::Sender<Arc<Progress>>,
    settled: SettledTasks,
    first: PgListener,
) {
    let mut next = Some(first);
    loop {
        if tx.is_closed() {
            return;
        }
        let listener = match next.take() {
            Some(listener) => Ok(listener),
            None => listen(&pool).await,
        };
        match listener {
            Ok(mut listener) => listen_loop(&pool, &mut listener, &tx, &settled).await,
            Err(e) => tracing::warn!(error = %e, "projection watermark: listen failed"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn reload(pool: &PgPool, tx: &watch::Sender<Arc<Progress>>) {
    if let Ok(newer) = snapshot(pool).await {
        tx.send_if_modified(|cur| Arc::make_mut(cur).merge(newer));
    }
}

async fn listen_loop(
    pool: &PgPool,
    listener: &mut PgListener,
    tx: &watch::Sender<Arc<Progress>>,
    settled: &SettledTasks,
) {
    // Notifications sent before LISTEN took effect are covered by this first read.
    reload(pool, tx).await;
    loop {
        match tokio::time::timeout(Duration::from_secs(1), listener.try_recv()).await {
            Ok(Ok(Some(n))) if n.channel() == PROJECTED_CHANNEL => {
                let parsed = n
                    .payload()
                    .split_once(':')
                    .and_then(|(p, s)| Some((p.parse::<usize>().ok()?, s.parse::<u64>().ok()?)));
                let known = tx.borrow().partitions.len();
                match parsed {
                    Some((p, seq)) if p < known => {
                        tx.send_if_modified(|cur| Arc::make_mut(cur).advance(p, seq));
                    }
                    _ => reload(pool, tx).await,
                }
            }
            Ok(Ok(Some(n))) if n.channel() == SETTLED_CHANNEL => settled.announce(n.payload()),
            Ok(Ok(Some(_))) => reload(pool, tx).await,
            Ok(Ok(None)) | Ok(Err(_)) => return,
            Err(_) => {
                if tx.is_closed() {
                    return;
                }
                reload(pool, tx).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(partitions: &[u64], parked: &[(&str, u64)]) -> Progress {
        Progress {
            partitions: partitions.to_vec(),
            parked: parked.iter().map(|(t, s)| ((*t).to_owned(), *s)).collect(),
        }
    }

    #[test]
    fn a_tenant_waits_for_its_own_partition_only() {
        let n = 4;
        let tenant = "acme";
        let own = partition_of_str(tenant, n) as usize;
        let mut cps = vec![0; n as usize];
        cps[own] = 10;
        let p = progress(&cps, &[]);
        assert_eq!(p.position(tenant, 10), Projected::Applied);
        assert_eq!(p.position(tenant, 11), Projected::Pending);
        assert_eq!(p.checkpoint_of(tenant), 10);
    }

    #[test]
    fn a_parked_tenant_is_never_reported_applied_past_its_parking() {
        let p = progress(&[100], &[("acme", 7)]);
        assert_eq!(p.position("acme", 6), Projected::Applied);
        assert_eq!(p.position("acme", 7), Projected::Parked { seq: 7 });
        assert_eq!(p.position("acme", 50), Projected::Parked { seq: 7 });
        assert_eq!(p.position("other", 50), Projected::Applied);
    }

    #[test]
    fn merging_never_moves_a_checkpoint_back() {
        let mut p = progress(&[5, 9], &[("acme", 3)]);
        assert!(p.merge(progress(&[6, 8], &[])));
        assert_eq!(p, progress(&[6, 9], &[]));
        assert!(!p.merge(progress(&[6, 9], &[])));
    }

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        let reason = "é".repeat(MAX_REASON_BYTES);
        let cut = bounded(&reason);
        assert!(cut.len() <= MAX_REASON_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
