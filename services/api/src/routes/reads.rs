//! `GET /v1/stat/{path}` and `GET /v1/list/{path}`: the file catalogue read model.
//!
//! Listing is keyset-paginated on the entry name (byte order); the cursor is the opaque
//! base64url of the last name returned, so pages stay stable while entries are added.

use axum::extract::{Query, State};
use axum::http::Uri;
use axum::Json;
use base64::Engine;
use chrono::{DateTime, Utc};
use events::acl::Access;
use events::FilePath;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::authz::{authorize, Decider};
use crate::error::ApiError;
use crate::extract::{path_after, Caller};
use crate::state::AppState;

pub const DEFAULT_PAGE: i64 = 100;
pub const MAX_PAGE: i64 = 1000;

#[derive(Serialize, FromRow, Debug, utoipa::ToSchema)]
pub struct Stat {
    pub path: String,
    pub kind: String,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub content_type: Option<String>,
    pub status: String,
    pub version: Option<String>,
    pub modified_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Listing {
    pub entries: Vec<Stat>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

const STAT_COLUMNS: &str = "path, kind, size, sha256, content_type, status, version, modified_at";

fn root_stat() -> Stat {
    Stat {
        path: "/".into(),
        kind: "dir".into(),
        size: None,
        sha256: None,
        content_type: None,
        status: "available".into(),
        version: None,
        modified_at: None,
    }
}

/// Byte length of the longest catalogue path in the subtree of `root` (`root` included);
/// `None` when nothing is there. A range scan of the primary key over the subtree: the
/// request-time half of the rule that a move or copy may not push any descendant over the
/// path limit (the worker checks storage again when the task runs).
pub async fn longest_path_in_subtree(
    state: &AppState,
    tenant: &str,
    root: &FilePath,
) -> Result<Option<usize>, ApiError> {
    let (lo, hi) = if root.is_root() {
        ("/".to_owned(), "0".to_owned())
    } else {
        (format!("{root}/"), format!("{root}0"))
    };
    let longest: Option<i32> = sqlx::query_scalar(
        "SELECT max(octet_length(path)) FROM entries
         WHERE tenant = $1 AND (path = $2 OR (path >= $3 AND path < $4))",
    )
    .bind(tenant)
    .bind(root.as_str())
    .bind(lo)
    .bind(hi)
    .fetch_one(&state.pool)
    .await?;
    Ok(longest.and_then(|l| usize::try_from(l).ok()))
}

async fn stat_of(
    state: &AppState,
    tenant: &str,
    path: &FilePath,
) -> Result<Option<Stat>, ApiError> {
    if path.is_root() {
        return Ok(Some(root_stat()));
    }
    let sql = format!("SELECT {STAT_COLUMNS} FROM entries WHERE tenant = $1 AND path = $2");
    Ok(sqlx::query_as(&sql)
        .bind(tenant)
        .bind(path.as_str())
        .fetch_optional(&state.pool)
        .await?)
}

/// Metadata of one entry.
#[utoipa::path(get, path = "/v1/stat/{*path}", tag = "reads",
    params(("path" = String, Path, description = "tenant path, each segment percent-encoded")),
    responses((status = 200, body = Stat), (status = 400, body = crate::error::Problem),
              (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn stat(
    State(state): State<AppState>,
    Caller(caller): Caller,
    uri: Uri,
) -> Result<Json<Stat>, ApiError> {
    let path = path_after(&uri, "/v1/stat/")?;
    authorize(&state, &caller, Access::Stat(&path)).await?;
    stat_of(&state, caller.tenant.as_str(), &path)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("no such entry".into()))
}

/// Entries of a directory (`/v1/list/` is the root).
#[utoipa::path(get, path = "/v1/list/{*path}", tag = "reads",
    params(("path" = String, Path, description = "directory path, each segment percent-encoded; empty = root"),
           ("limit" = Option<i64>, Query, description = "1–1000, default 100"),
           ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, body = Listing), (status = 400, body = crate::error::Problem),
              (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    uri: Uri,
    Query(q): Query<ListQuery>,
) -> Result<Json<Listing>, ApiError> {
    let dir = path_after(&uri, "/v1/list/")?;
    let limit = parse_limit(q.limit.as_deref())?;
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    // One view of the rules for the directory and every entry shown.
    let acl = Decider::load(&state, &caller).await?;
    acl.check(Access::List(&dir))?;
    let tenant = caller.tenant.as_str();
    match stat_of(&state, tenant, &dir).await? {
        None => return Err(ApiError::NotFound("no such directory".into())),
        Some(s) if s.kind != "dir" => return Err(ApiError::Conflict("not a directory".into())),
        Some(_) => {}
    }
    let sql = format!(
        "SELECT {STAT_COLUMNS} FROM entries WHERE tenant = $1 AND parent = $2 AND name > $3
         ORDER BY name LIMIT $4"
    );
    let mut rows: Vec<Stat> = sqlx::query_as(&sql)
        .bind(tenant)
        .bind(dir.as_str())
        .bind(after.unwrap_or_default())
        .bind(limit + 1)
        .fetch_all(&state.pool)
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    // The cursor follows the last row scanned, not the last one shown, so hidden entries at
    // the end of a page are not scanned again.
    let next_cursor = if more {
        rows.last().map(|r| encode_cursor(&r.path))
    } else {
        None
    };
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let Ok(path) = FilePath::parse(&row.path) else {
            continue;
        };
        if acl.allows(Access::ListEntry(&path)) {
            entries.push(row);
        }
    }
    Ok(Json(Listing {
        entries,
        next_cursor,
    }))
}

fn parse_limit(raw: Option<&str>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(DEFAULT_PAGE),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {MAX_PAGE}"
            ))),
        },
    }
}

fn encode_cursor(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name)
}

fn decode_cursor(raw: &str) -> Result<String, ApiError> {
    let bad = || ApiError::BadRequest("invalid cursor".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| bad())?;
    String::from_utf8(bytes).map_err(|_| bad())
}
