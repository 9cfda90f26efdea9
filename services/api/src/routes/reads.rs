//! `GET /v1/stat/{path}` and `GET /v1/list/{path}`: the file catalogue read model.
//!
//! Listing is keyset-paginated on the entry name (byte order) over the entries the caller may
//! see: the ACL filter (`events::acl::visible_children`) is part of the query, so pages are
//! full and the cursor (sealed by `crate::cursor`) holds the last name shown, never a hidden
//! one. Pages stay stable while entries are added.

use axum::extract::{Query, State};
use axum::http::Uri;
use axum::Json;
use chrono::{DateTime, Utc};
use events::acl::{Access, VisibleChildren};
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
    let tenant = caller.tenant.as_str();
    let context = [tenant, caller.subject.as_str(), dir.as_str()];
    let after = q
        .cursor
        .as_deref()
        .map(|c| state.cursor_key.open(&context, c))
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // One view of the rules for the directory and every entry shown.
    let acl = Decider::load(&state, &caller).await?;
    acl.check(Access::List(&dir))?;
    match stat_of(&state, tenant, &dir).await? {
        None => return Err(ApiError::NotFound("no such directory".into())),
        Some(s) if s.kind != "dir" => return Err(ApiError::Conflict("not a directory".into())),
        Some(_) => {}
    }
    let visible = acl.visible_children(&dir);
    let mut rows = visible_page(&state, tenant, &dir, &visible, after.as_deref(), limit).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    // The filter ran before the LIMIT: the page is full unless it is the last, and the
    // cursor seals the last name shown, never one the caller may not see.
    let next_cursor = if more {
        rows.last()
            .map(|r| state.cursor_key.seal(&context, name_of(&r.path)))
    } else {
        None
    };
    Ok(Json(Listing {
        entries: rows,
        next_cursor,
    }))
}

fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or_default()
}

/// Up to `limit + 1` visible children of `dir` after the name `after`, in name order.
async fn visible_page(
    state: &AppState,
    tenant: &str,
    dir: &FilePath,
    visible: &VisibleChildren,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Stat>, ApiError> {
    let (filter, names) = match visible {
        VisibleChildren::AllExcept(hidden) => ("NOT (name = ANY($5))", hidden),
        VisibleChildren::Only(shown) => ("name = ANY($5)", shown),
    };
    let sql = format!(
        "SELECT {STAT_COLUMNS} FROM entries
         WHERE tenant = $1 AND parent = $2 AND name > $3 AND {filter}
         ORDER BY name LIMIT $4"
    );
    Ok(sqlx::query_as(&sql)
        .bind(tenant)
        .bind(dir.as_str())
        .bind(after.unwrap_or_default())
        .bind(limit + 1)
        .bind(names)
        .fetch_all(&state.pool)
        .await?)
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
