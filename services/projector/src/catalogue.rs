//! The file catalogue: one row per visible entry (directory or file) of a tenant, maintained
//! from the domain facts (`DirCreated`, `EntryMoved`, `EntryCopied`, `EntryDeleted`, ...).
//!
//! An upload's `scanning` placeholder is written when the upload is requested, ahead of the
//! effects of earlier tasks on the same path that the worker has yet to run (they run in log
//! order). So a placeholder found by a later fact always belongs to an upload requested after
//! it: a directory created there replaces it (the upload will fail on the directory), and
//! moves and copies leave placeholders where they are (copying one would show a `scanning`
//! file no task will ever finish). Found by the fault suite's `worker_kill` model comparison.
//!
//! Subtrees are byte ranges thanks to the "C" collation: everything below `/a` lies in
//! `['/a/', '/a0')` because `0` is the byte after `/`. Moves and copies rewrite the prefix of
//! the whole range in one statement.
//!
//! This is the whole effect of a move, copy, delete or overwrite: storage holds immutable
//! blobs by SHA-256, and an entry points at its version (`entries.version`), the version at its
//! blob (`file_versions.sha256`). A copy shares the version (and so the blob) of what it
//! copies. When the last entry showing a version goes away, the version is *released*
//! (`released_at`, and `deleted` when a delete rather than an overwrite removed it): that
//! starts its retention for garbage collection and decides what a signed link to it answers.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use events::task::{TaskEvent, UploadSpec};
use events::FilePath;
use platform::catalogue::below;
use platform::event_log::LoggedCommit;
use sqlx::{Postgres, Transaction};

use crate::ProjectorError;

type Tx<'a, 'b> = &'a mut Transaction<'b, Postgres>;

/// Applies one task event to the catalogue. Directories created are gathered in `dirs` (one
/// statement for a run of `DirCreated` facts, e.g. a batch of `mkdir`s); every other fact
/// that touches the catalogue writes them first, so each statement sees the log's order.
/// The caller flushes `dirs` before its transaction ends.
pub async fn apply(
    tx: Tx<'_, '_>,
    commit: &LoggedCommit,
    event: &TaskEvent,
    dirs: &mut PendingDirs,
) -> Result<(), ProjectorError> {
    let tenant = commit.tenant.as_str();
    match event {
        // An entry reported inside the tree of a recursive command: the root's own event
        // changes the whole range.
        entry if entry.reports_an_entry() => return Ok(()),
        TaskEvent::DirCreated { path, parents } => {
            let created: Vec<FilePath> = if *parents {
                path.ancestors_and_self().filter(|p| !p.is_root()).collect()
            } else {
                vec![path.clone()]
            };
            dirs.push(tenant, &created, commit);
            return Ok(());
        }
        TaskEvent::EntryDeleted { .. }
        | TaskEvent::EntryMoved { .. }
        | TaskEvent::EntryCopied { .. }
        | TaskEvent::TaskFailed { .. }
        | TaskEvent::TaskDeadLettered { .. }
        | TaskEvent::FileUploaded { .. }
        | TaskEvent::FileQuarantined { .. }
        | TaskEvent::FileAvailable { .. } => dirs.flush(tx).await?,
        _ => return Ok(()),
    }
    match event {
        TaskEvent::EntryDeleted { path, .. } => {
            let gone = delete_subtree(tx, tenant, path).await?;
            release(tx, tenant, &gone, commit).await?;
            mark_deleted(tx, tenant, path).await?;
        }
        // Whatever the catalogue still holds at the target was replaced on storage (the worker
        // checked `overwrite` before acting), so it goes first; this also keeps a catalogue
        // that drifted from storage from blocking the projector on a unique violation.
        TaskEvent::EntryMoved { from, to, .. } => {
            let replaced = delete_subtree(tx, tenant, to).await?;
            move_subtree(tx, tenant, from, to, commit).await?;
            release(tx, tenant, &replaced, commit).await?;
        }
        TaskEvent::EntryCopied { from, to, .. } => {
            let replaced = delete_subtree(tx, tenant, to).await?;
            copy_subtree(tx, tenant, from, to, commit).await?;
            release(tx, tenant, &replaced, commit).await?;
        }
        // A failed upload (timeout, promotion refused) leaves no `scanning` placeholder behind;
        // a quarantined one keeps its `quarantined` entry.
        TaskEvent::TaskFailed { .. } | TaskEvent::TaskDeadLettered { .. } => {
            let task_id = crate::tasks::task_uuid(commit)?;
            sqlx::query(
                "DELETE FROM entries e USING tasks t
                 WHERE t.tenant = $1 AND t.task_id = $2 AND t.op = 'upload'
                   AND e.tenant = t.tenant AND e.path = t.spec->>'path'
                   AND e.version = t.spec->>'upload_id' AND e.status = 'scanning'",
            )
            .bind(tenant)
            .bind(task_id)
            .execute(&mut **tx)
            .await?;
        }
        TaskEvent::FileUploaded { upload } => {
            upload_placeholder(tx, tenant, upload, commit).await?
        }
        TaskEvent::FileQuarantined { upload, .. } => {
            sqlx::query(
                "UPDATE entries SET status = 'quarantined', updated_seq = $4
                 WHERE tenant = $1 AND path = $2 AND version = $3 AND status = 'scanning'",
            )
            .bind(tenant)
            .bind(upload.path.as_str())
            .bind(upload.upload_id.to_string())
            .bind(commit.stream_seq as i64)
            .execute(&mut **tx)
            .await?;
        }
        TaskEvent::FileAvailable {
            upload, version, ..
        } => {
            if let Some(parent) = upload.path.parent() {
                let above: Vec<FilePath> = parent
                    .ancestors_and_self()
                    .filter(|p| !p.is_root())
                    .collect();
                dirs.push(tenant, &above, commit);
                dirs.flush(tx).await?;
            }
            file_available(tx, tenant, upload, version, commit).await?;
        }
        _ => {}
    }
    Ok(())
}

fn parent_of(path: &FilePath) -> Option<String> {
    path.parent().map(|p| p.as_str().to_owned())
}

/// Directories to create, gathered from consecutive facts and written in one statement by
/// [`PendingDirs::flush`]: an existing directory stays as it was, an upload's `scanning`
/// placeholder is replaced. A directory named again before the flush keeps its first
/// appearance (the later one would have changed nothing), which also keeps one statement
/// from touching a row twice.
#[derive(Debug, Default)]
pub struct PendingDirs {
    rows: Vec<DirRow>,
    seen: HashSet<(String, String)>,
}

#[derive(Debug)]
struct DirRow {
    tenant: String,
    path: String,
    parent: Option<String>,
    name: String,
    time: DateTime<Utc>,
    seq: i64,
}

impl PendingDirs {
    fn push(&mut self, tenant: &str, dirs: &[FilePath], commit: &LoggedCommit) {
        for dir in dirs {
            if !self
                .seen
                .insert((tenant.to_owned(), dir.as_str().to_owned()))
            {
                continue;
            }
            self.rows.push(DirRow {
                tenant: tenant.to_owned(),
                path: dir.as_str().to_owned(),
                parent: parent_of(dir),
                name: dir.name().unwrap_or("").to_owned(),
                time: commit.time,
                seq: i64::try_from(commit.stream_seq).unwrap_or(i64::MAX),
            });
        }
    }

    /// Writes the gathered directories (nothing when there are none).
    pub async fn flush(&mut self, tx: Tx<'_, '_>) -> Result<(), ProjectorError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        self.seen.clear();
        sqlx::query(
            "INSERT INTO entries (tenant, path, parent, name, kind, status, modified_at, updated_seq)
             SELECT d.tenant, d.path, d.parent, d.name, 'dir', 'available', d.time, d.seq
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                         $6::bigint[]) AS d(tenant, path, parent, name, time, seq)
             ON CONFLICT (tenant, path) DO UPDATE SET kind = 'dir', status = 'available',
                size = NULL, sha256 = NULL, content_type = NULL, version = NULL,
                modified_at = EXCLUDED.modified_at, updated_seq = EXCLUDED.updated_seq
             WHERE entries.status = 'scanning'",
        )
        .bind(rows.iter().map(|r| r.tenant.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.path.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.parent.as_deref()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.time).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.seq).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// A file version an entry showed at a path.
type Shown = (String, String);

/// Removes `p` and everything below it; returns the (version, path) of each removed file.
async fn delete_subtree(
    tx: Tx<'_, '_>,
    tenant: &str,
    p: &FilePath,
) -> Result<Vec<Shown>, ProjectorError> {
    let (lo, hi) = below(p);
    let shown: Vec<(Option<String>, String)> = sqlx::query_as(
        "DELETE FROM entries WHERE tenant = $1 AND (path = $2 OR (path >= $3 AND path < $4))
         RETURNING CASE WHEN kind = 'file' THEN version END, path",
    )
    .bind(tenant)
    .bind(p.as_str())
    .bind(lo)
    .bind(hi)
    .fetch_all(&mut **tx)
    .await?;
    Ok(shown
        .into_iter()
        .filter_map(|(v, path)| v.map(|v| (v, path)))
        .collect())
}

/// Marks each shown version that no entry shows any more as released at the commit's time,
/// where it was last shown. A version already released stays as it was.
async fn release(
    tx: Tx<'_, '_>,
    tenant: &str,
    shown: &[Shown],
    commit: &LoggedCommit,
) -> Result<(), ProjectorError> {
    if shown.is_empty() {
        return Ok(());
    }
    let (versions, paths): (Vec<&str>, Vec<&str>) =
        shown.iter().map(|(v, p)| (v.as_str(), p.as_str())).unzip();
    sqlx::query(
        "UPDATE file_versions fv SET released_at = $4, released_path = g.path
         FROM unnest($2::TEXT[], $3::TEXT[]) AS g(version, path)
         WHERE fv.tenant = $1 AND fv.version = g.version AND fv.released_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM entries e
                           WHERE e.tenant = $1 AND e.kind = 'file' AND e.version = fv.version)",
    )
    .bind(tenant)
    .bind(versions)
    .bind(paths)
    .bind(commit.time)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// After a delete of `p`: every released version last shown at or below `p` belonged to a
/// deleted file (links to it answer 404 from now on, even if the path is used again).
async fn mark_deleted(tx: Tx<'_, '_>, tenant: &str, p: &FilePath) -> Result<(), ProjectorError> {
    let (lo, hi) = below(p);
    sqlx::query(
        "UPDATE file_versions SET deleted = true
         WHERE tenant = $1 AND released_at IS NOT NULL AND NOT deleted
           AND (released_path = $2 OR (released_path >= $3 AND released_path < $4))",
    )
    .bind(tenant)
    .bind(p.as_str())
    .bind(lo)
    .bind(hi)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn move_subtree(
    tx: Tx<'_, '_>,
    tenant: &str,
    from: &FilePath,
    to: &FilePath,
    commit: &LoggedCommit,
) -> Result<(), ProjectorError> {
    let (lo, hi) = below(from);
    sqlx::query(
        "UPDATE entries SET
            path = $5 || substr(path, char_length($2) + 1),
            parent = CASE WHEN path = $2 THEN $6 ELSE $5 || substr(parent, char_length($2) + 1) END,
            name = CASE WHEN path = $2 THEN $7 ELSE name END,
            modified_at = CASE WHEN path = $2 THEN $8 ELSE modified_at END,
            updated_seq = $9
         WHERE tenant = $1 AND (path = $2 OR (path >= $3 AND path < $4))
           AND status <> 'scanning'",
    )
    .bind(tenant)
    .bind(from.as_str())
    .bind(lo)
    .bind(hi)
    .bind(to.as_str())
    .bind(parent_of(to))
    .bind(to.name().unwrap_or(""))
    .bind(commit.time)
    .bind(commit.stream_seq as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn copy_subtree(
    tx: Tx<'_, '_>,
    tenant: &str,
    from: &FilePath,
    to: &FilePath,
    commit: &LoggedCommit,
) -> Result<(), ProjectorError> {
    let (lo, hi) = below(from);
    sqlx::query(
        "INSERT INTO entries (tenant, path, parent, name, kind, size, sha256, content_type, status,
                              version, modified_at, updated_seq)
         SELECT tenant,
                $5 || substr(path, char_length($2) + 1),
                CASE WHEN path = $2 THEN $6 ELSE $5 || substr(parent, char_length($2) + 1) END,
                CASE WHEN path = $2 THEN $7 ELSE name END,
                kind, size, sha256, content_type, status, version, $8, $9
         FROM entries WHERE tenant = $1 AND (path = $2 OR (path >= $3 AND path < $4))
           AND status = 'available'
         ON CONFLICT (tenant, path) DO NOTHING",
    )
    .bind(tenant)
    .bind(from.as_str())
    .bind(lo)
    .bind(hi)
    .bind(to.as_str())
    .bind(parent_of(to))
    .bind(to.name().unwrap_or(""))
    .bind(commit.time)
    .bind(commit.stream_seq as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A new upload shows as `scanning` where nothing is yet; an existing file keeps serving its
/// available version until the new one is promoted (a quarantined one is replaced).
async fn upload_placeholder(
    tx: Tx<'_, '_>,
    tenant: &str,
    upload: &UploadSpec,
    commit: &LoggedCommit,
) -> Result<(), ProjectorError> {
    let version = upload.upload_id.to_string();
    upsert_file(tx, tenant, upload, &version, "scanning", commit).await
}

async fn file_available(
    tx: Tx<'_, '_>,
    tenant: &str,
    upload: &UploadSpec,
    version: &str,
    commit: &LoggedCommit,
) -> Result<(), ProjectorError> {
    let replaced: Option<Option<String>> = sqlx::query_scalar(
        "SELECT version FROM entries WHERE tenant = $1 AND path = $2 AND kind = 'file'",
    )
    .bind(tenant)
    .bind(upload.path.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    upsert_file(tx, tenant, upload, version, "available", commit).await?;
    let replaced: Vec<Shown> = replaced
        .flatten()
        .filter(|v| v != version)
        .map(|v| (v, upload.path.as_str().to_owned()))
        .into_iter()
        .collect();
    release(tx, tenant, &replaced, commit).await?;
    sqlx::query(
        "INSERT INTO file_versions (tenant, version, path, size, sha256, content_type, available_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant, version) DO NOTHING",
    )
    .bind(tenant)
    .bind(version)
    .bind(upload.path.as_str())
    .bind(upload.size as i64)
    .bind(&upload.sha256)
    .bind(&upload.content_type)
    .bind(commit.time)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes the file entry of an upload. An `available` version always wins; a `scanning`
/// placeholder only takes a path that is free or holds a quarantined upload.
async fn upsert_file(
    tx: Tx<'_, '_>,
    tenant: &str,
    upload: &UploadSpec,
    version: &str,
    status: &str,
    commit: &LoggedCommit,
) -> Result<(), ProjectorError> {
    sqlx::query(
        "INSERT INTO entries (tenant, path, parent, name, kind, size, sha256, content_type,
                              status, version, modified_at, updated_seq)
         VALUES ($1, $2, $3, $4, 'file', $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (tenant, path) DO UPDATE SET kind = 'file', size = EXCLUDED.size,
            sha256 = EXCLUDED.sha256, content_type = EXCLUDED.content_type,
            status = EXCLUDED.status, version = EXCLUDED.version,
            modified_at = EXCLUDED.modified_at, updated_seq = EXCLUDED.updated_seq
         WHERE EXCLUDED.status = 'available' OR entries.status = 'quarantined'",
    )
    .bind(tenant)
    .bind(upload.path.as_str())
    .bind(parent_of(&upload.path))
    .bind(upload.path.name().unwrap_or(""))
    .bind(upload.size as i64)
    .bind(&upload.sha256)
    .bind(&upload.content_type)
    .bind(status)
    .bind(version)
    .bind(commit.time)
    .bind(commit.stream_seq as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
