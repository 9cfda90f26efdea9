//! `POST /v1/links` and `GET /v1/links/{token}`: signed, expiring links to one version of a
//! file, served without a bearer token. A link names a version, and serves exactly that
//! version's blob or nothing: after the path is overwritten (by an upload, a copy or a move
//! onto it) it keeps serving the linked bytes, never what occupies the path now; when the
//! linked file was moved away or deleted (even if the path was used again since), or its
//! bytes are no longer stored, it answers 404; a tampered or expired link answers 403.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use events::acl::Access;
use events::{FilePath, TenantId};
use serde::{Deserialize, Serialize};

use super::download::{lookup, serve, FileRow};
use super::token::{self, LinkClaims, TokenError};
use crate::authz::authorize;
use crate::error::ApiError;
use crate::extract::{Caller, JsonBody};
use crate::state::AppState;

pub const DEFAULT_EXPIRY_S: i64 = 3600;
pub const MAX_EXPIRY_S: i64 = 604_800;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    path: FilePath,
    expires_in_s: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Link {
    pub url: String,
    pub expires_at: DateTime<Utc>,
    pub path: String,
    pub version: String,
}

/// Create a signed link to the current version of a file (needs `read`).
#[utoipa::path(post, path = "/v1/links", tag = "files",
    request_body(content = serde_json::Value, description = r#"{"path": "/a/x", "expires_in_s": 300}"#),
    responses((status = 201, body = Link), (status = 400, body = crate::error::Problem),
              (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem),
              (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn create_link(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(req, _): JsonBody<LinkRequest>,
) -> Result<Response, ApiError> {
    let expires_in = req.expires_in_s.unwrap_or(DEFAULT_EXPIRY_S);
    if !(1..=MAX_EXPIRY_S).contains(&expires_in) {
        return Err(ApiError::BadRequest(format!(
            "expires_in_s must be between 1 and {MAX_EXPIRY_S}"
        )));
    }
    authorize(&state, &caller, Access::LinkCreate(&req.path)).await?;
    let row = lookup(&state, &caller.tenant, &req.path).await?;
    if row.kind != "file" {
        return Err(ApiError::Conflict("the path is a directory".into()));
    }
    if row.status != "available" {
        return Err(ApiError::FileNotAvailable(format!(
            "the file is {}",
            row.status
        )));
    }
    let version = row.version.unwrap_or_default();
    let expires_at = Utc::now() + chrono::Duration::seconds(expires_in);
    let claims = LinkClaims {
        tenant: caller.tenant.as_str().to_owned(),
        path: req.path.as_str().to_owned(),
        version: version.clone(),
        expires: expires_at.timestamp(),
    };
    let token = token::sign(&state.link_secrets, &claims)
        .map_err(|_| ApiError::Unavailable("FE_LINK_SECRET is not set".into()))?;
    // Recorded before the link exists for anyone: garbage collection keeps the linked
    // version's bytes until the link expires.
    platform::retention::record_link_grant(&state.pool, &caller.tenant, &version, expires_at)
        .await?;
    let link = Link {
        url: format!("/v1/links/{token}"),
        expires_at,
        path: req.path.as_str().to_owned(),
        version,
    };
    Ok((StatusCode::CREATED, Json(link)).into_response())
}

/// Serve the linked version of a file; no bearer token needed.
#[utoipa::path(get, path = "/v1/links/{token}", tag = "files",
    params(("token" = String, Path)),
    responses((status = 200, description = "the linked file version"), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem)))]
pub async fn follow_link(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let claims =
        token::verify(&state.link_secrets, &raw, Utc::now().timestamp()).map_err(|e| match e {
            TokenError::Expired => ApiError::Forbidden("the link has expired".into()),
            _ => ApiError::Forbidden("the link is not valid".into()),
        })?;
    let bad = || ApiError::Forbidden("the link is not valid".into());
    let tenant = TenantId::parse(&claims.tenant).map_err(|_| bad())?;
    let path = FilePath::parse(&claims.path).map_err(|_| bad())?;
    let gone = || ApiError::NotFound("the linked version is gone".into());
    let version = platform::catalogue::version(&state.pool, &tenant, &claims.version)
        .await?
        .ok_or_else(gone)?;
    // The linked file must still be there (in whatever version): a moved or deleted file
    // answers 404, and so does one deleted and uploaded again.
    if version.deleted
        || platform::catalogue::kind_of(&state.pool, &tenant, &path).await?
            != Some(platform::catalogue::EntryKind::File)
    {
        return Err(gone());
    }
    let row = FileRow {
        kind: "file".into(),
        status: "available".into(),
        size: Some(version.size),
        sha256: Some(version.sha256),
        content_type: Some(version.content_type),
        version: Some(version.version),
    };
    serve(
        &state,
        &tenant,
        &path,
        row,
        method == Method::HEAD,
        &headers,
    )
    .await
}
