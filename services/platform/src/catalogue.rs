//! Read access to the file catalogue (`entries`, `file_versions`) for the services that act
//! on it: the worker checks command preconditions here (the catalogue, not storage, is the
//! source of truth for paths since storage holds only blobs), and the API resolves paths and
//! link versions to blobs. The projector owns every write (`projector::catalogue`).
//!
//! Only `available` files and directories count as existing for commands: a file still being
//! scanned or quarantined is not something a move, copy or delete can act on.

use std::collections::HashMap;

use events::quota::Usage;
use events::task::mkdir::{self, FileState, Held};
use events::{FilePath, TenantId};
use sqlx::PgPool;

/// What kind of entry a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    File,
    Dir,
}

/// One version of a file and the blob holding its bytes.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct VersionRow {
    pub version: String,
    pub size: i64,
    pub sha256: String,
    pub content_type: String,
    /// Set once no entry shows this version any more.
    pub released_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Its file was deleted (not just overwritten): links to it answer 404.
    pub deleted: bool,
}

/// The bounds of the strict subtree of `p`: `[p/, p0)` in byte order ("C" collation); for
/// the root, everything.
pub fn below(p: &FilePath) -> (String, String) {
    if p.is_root() {
        ("/".into(), "0".into())
    } else {
        (format!("{}/", p.as_str()), format!("{}0", p.as_str()))
    }
}

/// The length in bytes of the longest path at or below `root` (any status), so a move or
/// copy can be refused when the rebased subtree would pass the path limit.
pub async fn longest_path_in_subtree(
    pool: &PgPool,
    t: &TenantId,
    root: &FilePath,
) -> Result<Option<usize>, sqlx::Error> {
    let (lo, hi) = below(root);
    let longest: Option<i32> = sqlx::query_scalar(
        "SELECT max(octet_length(path)) FROM entries
         WHERE tenant = $1 AND (path = $2 OR (path >= $3 AND path < $4))",
    )
    .bind(t.as_str())
    .bind(root.as_str())
    .bind(lo)
    .bind(hi)
    .fetch_one(pool)
    .await?;
    Ok(longest.and_then(|l| usize::try_from(l).ok()))
}

/// The lookup behind [`held_at`] and [`site`]: primary-key probes only.
const HELD_AT_SQL: &str =
    "SELECT path, kind, status, version, size FROM entries WHERE tenant = $1 AND path = ANY($2)";

/// One entry as [`HELD_AT_SQL`] reads it.
#[derive(sqlx::FromRow)]
struct HeldRow {
    path: String,
    kind: String,
    status: String,
    version: Option<String>,
    size: Option<i64>,
}

impl HeldRow {
    fn held(&self) -> Held {
        match (self.kind.as_str(), self.status.as_str()) {
            ("dir", _) => Held::Dir,
            (_, "available") => Held::File(FileState::Available),
            (_, "quarantined") => Held::File(FileState::Quarantined),
            // `scanning`, and any state a newer schema may add: not there yet.
            _ => Held::File(FileState::Scanning),
        }
    }
}

/// The entries at `paths` (whatever their status), in one query however many paths.
///
/// Planned at every call (an unnamed statement), never from a cached generic plan: a
/// generic plan cannot know how many paths `$2` holds, and one made while the catalogue was
/// small (a fresh deployment, statistics not refreshed yet) kept scanning every entry of the
/// tenant with a filter on `path` as the catalogue grew (auto_explain in a 50,000-`mkdir`
/// burst: 1,362 buffers and 1.9 ms per lookup, two thirds of all statement time; 27 µs
/// planned per call).
async fn rows_at<'e>(
    db: impl sqlx::PgExecutor<'e>,
    t: &TenantId,
    paths: &[FilePath],
) -> Result<Vec<HeldRow>, sqlx::Error> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = paths.iter().map(FilePath::as_str).collect();
    sqlx::query_as(HELD_AT_SQL)
        .bind(t.as_str())
        .bind(&names)
        .persistent(false)
        .fetch_all(db)
        .await
}

/// What the catalogue holds at each of `paths` (whatever its status), for decisions that
/// need a path and its ancestors at once: `mkdir` (`events::task::mkdir`) and access checks
/// (`access::existing_entries`).
pub async fn held_at<'e>(
    db: impl sqlx::PgExecutor<'e>,
    t: &TenantId,
    paths: &[FilePath],
) -> Result<HashMap<String, Held>, sqlx::Error> {
    Ok(rows_at(db, t, paths)
        .await?
        .into_iter()
        .map(|row| {
            let held = row.held();
            (row.path, held)
        })
        .collect())
}

/// The available file at a path: what an upload onto it replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvailableFile {
    pub version: Option<String>,
    pub size: u64,
}

/// A path and its ancestors as the catalogue holds them, from one lookup: everything an
/// upload's promotion decides from (what it replaces, whether a directory or a file is in
/// the way, which parents it creates).
#[derive(Clone, Debug, Default)]
pub struct Site {
    /// What the catalogue holds at the path and at each of its ancestors (never the root).
    pub held: HashMap<String, Held>,
    /// The available file at the path, if any.
    pub file: Option<AvailableFile>,
}

impl Site {
    /// The nearest strict ancestor of `p` that is a file (`events::task::mkdir::file_above`:
    /// upload placeholders do not count, for the reason given at [`has_children`]).
    pub fn file_ancestor(&self, p: &FilePath) -> Option<String> {
        mkdir::file_above(p, |a| self.held.get(a.as_str()).copied()).map(String::from)
    }
}

/// [`Site`] of `p` and its ancestors.
pub async fn site(pool: &PgPool, t: &TenantId, p: &FilePath) -> Result<Site, sqlx::Error> {
    let mut site = Site::default();
    for row in rows_at(pool, t, &mkdir::paths_to_look_up(p)).await? {
        let held = row.held();
        if row.path == p.as_str() && held == Held::File(FileState::Available) {
            site.file = Some(AvailableFile {
                version: row.version.clone(),
                size: row.size.unwrap_or(0).max(0) as u64,
            });
        }
        site.held.insert(row.path, held);
    }
    Ok(site)
}

/// The kind of the available entry at `p` (the root is always a directory).
pub async fn kind_of(
    pool: &PgPool,
    t: &TenantId,
    p: &FilePath,
) -> Result<Option<EntryKind>, sqlx::Error> {
    if p.is_root() {
        return Ok(Some(EntryKind::Dir));
    }
    let kind: Option<String> = sqlx::query_scalar(
        "SELECT kind FROM entries WHERE tenant = $1 AND path = $2 AND status = 'available'",
    )
    .bind(t.as_str())
    .bind(p.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(kind.map(|k| {
        if k == "dir" {
            EntryKind::Dir
        } else {
            EntryKind::File
        }
    }))
}

/// Whether anything lies below `p`. An upload's `scanning` placeholder does not count: it
/// is written when the upload is requested, ahead of the earlier tasks the worker still has
/// to run in log order, so it must not change their outcome.
pub async fn has_children(pool: &PgPool, t: &TenantId, p: &FilePath) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM entries
         WHERE tenant = $1 AND parent = $2 AND status <> 'scanning')",
    )
    .bind(t.as_str())
    .bind(p.as_str())
    .fetch_one(pool)
    .await
}

/// What the available files at and below `p` hold.
pub async fn usage_of(pool: &PgPool, t: &TenantId, p: &FilePath) -> Result<Usage, sqlx::Error> {
    let (lo, hi) = below(p);
    let (bytes, files): (Option<i64>, i64) = sqlx::query_as(
        "SELECT sum(size)::BIGINT, count(*) FROM entries
         WHERE tenant = $1 AND kind = 'file' AND status = 'available'
           AND (path = $2 OR (path >= $3 AND path < $4))",
    )
    .bind(t.as_str())
    .bind(p.as_str())
    .bind(lo)
    .bind(hi)
    .fetch_one(pool)
    .await?;
    Ok(Usage {
        bytes: bytes.unwrap_or(0).max(0) as u64,
        files: files.max(0) as u64,
    })
}

/// Where a tenant stands against its quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    /// What the tenant's available files hold (logical: a copy counts what it holds).
    /// Uploads still being scanned count once promoted; quarantined ones never. One row,
    /// kept by the triggers of `migrations/0013_tenant_usage.sql` in every transaction that
    /// changes `entries`: the same sum [`usage_of`] takes at the root, without reading every
    /// file.
    pub used: Usage,
    /// The tenant's quota: the operator's (`file-engine quota set`, table `tenant_quotas`)
    /// or else the default.
    pub limits: events::quota::Limits,
}

/// The tenant's [`Standing`] (`default` when no quota was set for it), in one query.
pub async fn standing(
    pool: &PgPool,
    t: &TenantId,
    default: events::quota::Limits,
) -> Result<Standing, sqlx::Error> {
    let (bytes, files, max_bytes, max_files): (Option<i64>, Option<i64>, Option<i64>, Option<i64>) =
        sqlx::query_as(
            "SELECT u.bytes, u.files, q.max_bytes, q.max_files
             FROM (SELECT $1::text AS tenant) t
             LEFT JOIN tenant_usage u ON u.tenant = t.tenant
             LEFT JOIN tenant_quotas q ON q.tenant = t.tenant",
        )
        .bind(t.as_str())
        .fetch_one(pool)
        .await?;
    let count = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
    Ok(Standing {
        used: Usage {
            bytes: count(bytes),
            files: count(files),
        },
        limits: match (max_bytes, max_files) {
            (Some(bytes), Some(files)) => events::quota::Limits {
                bytes: bytes.max(0) as u64,
                files: files.max(0) as u64,
            },
            _ => default,
        },
    })
}

/// What the available file at `p` holds (nothing for a directory or a missing path).
pub async fn file_usage(pool: &PgPool, t: &TenantId, p: &FilePath) -> Result<Usage, sqlx::Error> {
    let size: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT size FROM entries
         WHERE tenant = $1 AND path = $2 AND kind = 'file' AND status = 'available'",
    )
    .bind(t.as_str())
    .bind(p.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(match size {
        Some(size) => Usage {
            bytes: size.unwrap_or(0).max(0) as u64,
            files: 1,
        },
        None => Usage::default(),
    })
}

/// What copying `from` onto `to` would change (an overwrite replaces what `to` holds).
pub async fn copy_change(
    pool: &PgPool,
    t: &TenantId,
    from: &FilePath,
    to: &FilePath,
    overwrite: bool,
) -> Result<events::quota::Change, sqlx::Error> {
    Ok(events::quota::Change {
        adds: usage_of(pool, t, from).await?,
        replaces: if overwrite {
            usage_of(pool, t, to).await?
        } else {
            Usage::default()
        },
    })
}

/// One version of the tenant (whatever path shows it now, if any).
pub async fn version(
    pool: &PgPool,
    t: &TenantId,
    version: &str,
) -> Result<Option<VersionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT version, size, sha256, content_type, released_at, deleted
         FROM file_versions WHERE tenant = $1 AND version = $2",
    )
    .bind(t.as_str())
    .bind(version)
    .fetch_optional(pool)
    .await
}

/// Which entries of a tree a recursive command takes along: what the projector's range
/// operation on the catalogue takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakenAlong {
    /// Everything but upload placeholders (`scanning`): a move or a delete.
    AllButPlaceholders,
    /// Only `available` entries (a copy leaves quarantined files and placeholders behind).
    Available,
}

/// Where a page of [`entries_inside`] starts.
#[derive(Clone, Copy, Debug)]
pub enum PageStart<'a> {
    /// After the first `n` entries of the tree (what a task reported before a redo).
    Skipping(usize),
    /// After this entry (the last of the previous page): an index seek, however far in.
    After(&'a FilePath),
}

/// At most `limit` entries strictly inside the tree at `p` that a recursive command takes
/// along, in path order, from `start`: what it reports entry by entry. The order is the
/// catalogue's byte order ("C" collation), the same on every call while the worker's turn
/// keeps the tree unchanged.
pub async fn entries_inside(
    pool: &PgPool,
    t: &TenantId,
    p: &FilePath,
    taken: TakenAlong,
    start: PageStart<'_>,
    limit: usize,
) -> Result<Vec<FilePath>, sqlx::Error> {
    let (lo, hi) = below(p);
    let (skip, after) = match start {
        PageStart::Skipping(n) => (n, None),
        PageStart::After(entry) => (0, Some(entry.as_str())),
    };
    let paths: Vec<String> = sqlx::query_scalar(
        "SELECT path FROM entries
         WHERE tenant = $1 AND path >= $2 AND path < $3 AND status <> 'scanning'
           AND (NOT $5 OR status = 'available') AND ($6::text IS NULL OR path > $6)
         ORDER BY path OFFSET $4 LIMIT $7",
    )
    .bind(t.as_str())
    .bind(lo)
    .bind(hi)
    .bind(i64::try_from(skip).unwrap_or(i64::MAX))
    .bind(taken == TakenAlong::Available)
    .bind(after)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    // The catalogue holds only paths the domain accepted (its CHECKs); anything else is
    // reported, never skipped.
    paths
        .iter()
        .map(|p| FilePath::parse(p).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    fn path(p: &str) -> FilePath {
        FilePath::parse(p).unwrap()
    }

    /// A scratch database with the schema (dropped with the returned guard).
    async fn migrated() -> (testkit::postgres::TestDb, PgPool) {
        let db = testkit::postgres::TestDb::create().await.unwrap();
        let pool = db.pool().await.unwrap();
        crate::db::migrate(&pool).await.unwrap();
        (db, pool)
    }

    /// A connection that ran the lookup while the catalogue was small must still probe the
    /// asked paths once the catalogue has grown and no statistics were refreshed (a fresh
    /// deployment's first burst): a cached generic plan kept reading every entry of the
    /// tenant for each lookup.
    #[tokio::test]
    async fn held_at_stays_a_probe_as_the_catalogue_grows_without_fresh_statistics() {
        let (_db, pool) = migrated().await;
        let t = TenantId::parse("t").unwrap();
        let mut conn = pool.acquire().await.unwrap();
        let add_dirs = |from: i32, to: i32| {
            format!(
                "INSERT INTO entries (tenant, path, parent, name, kind, status, modified_at,
                                      updated_seq)
                 SELECT 't', '/d/' || i, '/d', i::text, 'dir', 'available', now(), i
                 FROM generate_series({from}, {to}) AS i"
            )
        };
        for sql in [
            "ALTER TABLE entries SET (autovacuum_enabled = false)".to_owned(),
            add_dirs(1, 40),
        ] {
            sqlx::query(&sql).execute(&mut *conn).await.unwrap();
        }
        let asked = [path("/d"), path("/d/7")];
        for _ in 0..8 {
            held_at(&mut *conn, &t, &asked).await.unwrap();
        }
        sqlx::query(&add_dirs(41, 20_000))
            .execute(&mut *conn)
            .await
            .unwrap();

        let mut tx = conn.begin().await.unwrap();
        let lookups = 20;
        for _ in 0..lookups {
            let held = held_at(&mut *tx, &t, &asked).await.unwrap();
            assert_eq!(held.get("/d/7"), Some(&Held::Dir));
        }
        let read: i64 = sqlx::query_scalar(
            "SELECT COALESCE(idx_tup_fetch, 0) + COALESCE(seq_tup_read, 0)
             FROM pg_stat_xact_user_tables WHERE relname = 'entries'",
        )
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        // A probe reads a handful of entries (17 here); the stale plan read all 20,000 of the
        // tenant's for every lookup.
        assert!(
            read < lookups * 100,
            "{read} entries read for {lookups} lookups"
        );
    }

    #[tokio::test]
    async fn held_at_answers_for_the_tenants_own_paths_only() {
        let (_db, pool) = migrated().await;
        for (tenant, p, kind, status) in [
            ("t", "/a", "dir", "available"),
            ("t", "/a/f", "file", "available"),
            ("t", "/a/q", "file", "quarantined"),
            ("t", "/a/s", "file", "scanning"),
            ("u", "/a/b", "dir", "available"),
        ] {
            insert_entry(&pool, tenant, p, kind, status, 1).await;
        }
        let t = TenantId::parse("t").unwrap();
        let asked = ["/a", "/a/f", "/a/q", "/a/s", "/a/b", "/nothing"].map(path);
        let held = held_at(&pool, &t, &asked).await.unwrap();
        assert_eq!(held.get("/a"), Some(&Held::Dir));
        assert_eq!(held.get("/a/f"), Some(&Held::File(FileState::Available)));
        assert_eq!(held.get("/a/q"), Some(&Held::File(FileState::Quarantined)));
        assert_eq!(held.get("/a/s"), Some(&Held::File(FileState::Scanning)));
        assert_eq!(held.get("/a/b"), None, "another tenant's directory");
        assert_eq!(held.len(), 4);
    }

    async fn insert_entry(
        pool: &PgPool,
        tenant: &str,
        p: &str,
        kind: &str,
        status: &str,
        size: i64,
    ) {
        sqlx::query(
            "INSERT INTO entries (tenant, path, parent, name, kind, status, size, version,
                                  modified_at, updated_seq)
             VALUES ($1, $2, '/', 'x', $3, $4, $5, $2 || '@v', now(), 1)",
        )
        .bind(tenant)
        .bind(p)
        .bind(kind)
        .bind(status)
        .bind((kind == "file").then_some(size))
        .execute(pool)
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_site_answers_what_an_upload_replaces_and_what_is_in_its_way() {
        let (_db, pool) = migrated().await;
        for (tenant, p, kind, status) in [
            ("t", "/a", "dir", "available"),
            ("t", "/a/f", "file", "available"),
            ("t", "/a/s", "file", "scanning"),
            ("t", "/a/s/x", "file", "scanning"),
            ("t", "/a/f2", "file", "available"),
            ("t", "/a/f2/g", "dir", "available"),
            ("u", "/b", "file", "available"),
        ] {
            insert_entry(&pool, tenant, p, kind, status, 7).await;
        }
        let t = TenantId::parse("t").unwrap();

        let over_a_file = site(&pool, &t, &path("/a/f")).await.unwrap();
        assert_eq!(
            over_a_file.file,
            Some(AvailableFile {
                version: Some("/a/f@v".into()),
                size: 7
            })
        );
        assert_eq!(over_a_file.held.get("/a"), Some(&Held::Dir));
        assert_eq!(over_a_file.file_ancestor(&path("/a/f")), None);

        // A placeholder at the path replaces nothing; one above it is not in the way.
        let below_a_placeholder = site(&pool, &t, &path("/a/s/x")).await.unwrap();
        assert_eq!(below_a_placeholder.file, None);
        assert_eq!(below_a_placeholder.file_ancestor(&path("/a/s/x")), None);

        // The nearest available file above is in the way, whatever lies between.
        let below_a_file = site(&pool, &t, &path("/a/f2/g/h")).await.unwrap();
        assert_eq!(
            below_a_file.file_ancestor(&path("/a/f2/g/h")).as_deref(),
            Some("/a/f2")
        );
        assert_eq!(below_a_file.held.get("/a/f2/g"), Some(&Held::Dir));
        assert_eq!(below_a_file.file, None);

        // Another tenant's file at the same path is not seen.
        let elsewhere = site(&pool, &t, &path("/b")).await.unwrap();
        assert_eq!(elsewhere.file, None);
        assert!(elsewhere.held.is_empty());
    }

    #[tokio::test]
    async fn standing_is_the_kept_usage_against_the_set_or_default_quota() {
        let (_db, pool) = migrated().await;
        let default = events::quota::Limits {
            bytes: 1000,
            files: 10,
        };
        let t = TenantId::parse("t").unwrap();
        let fresh = standing(&pool, &t, default).await.unwrap();
        assert_eq!(fresh.used, Usage::default());
        assert_eq!(fresh.limits, default);

        insert_entry(&pool, "t", "/f", "file", "available", 40).await;
        insert_entry(&pool, "t", "/g", "file", "scanning", 500).await;
        insert_entry(&pool, "u", "/h", "file", "available", 9).await;
        sqlx::query(
            "INSERT INTO tenant_quotas (tenant, max_bytes, max_files, updated_seq)
             VALUES ('t', 100, 2, 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let now = standing(&pool, &t, default).await.unwrap();
        assert_eq!(
            now.used,
            Usage {
                bytes: 40,
                files: 1
            }
        );
        assert_eq!(
            now.limits,
            Usage {
                bytes: 100,
                files: 2
            }
        );
        let other = standing(&pool, &TenantId::parse("u").unwrap(), default)
            .await
            .unwrap();
        assert_eq!(
            (other.used, other.limits),
            (Usage { bytes: 9, files: 1 }, default)
        );
    }
}
