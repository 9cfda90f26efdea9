//! `GET`/`HEAD /v1/files/{path}`: streams an available file with a strong ETag (its SHA-256),
//! single byte ranges (206/416) and an attachment disposition. A file that is still being
//! scanned or is quarantined is never served (409 `file_not_available`).
//!
//! Bytes are always read from the blob the served version names (its SHA-256), never by path:
//! what is served is exactly the version the catalogue (or a link) resolved, whatever the
//! path holds meanwhile. A version whose blob is gone answers 404, never other bytes.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use events::acl::Access;
use events::{FilePath, TenantId};
use platform::storage::{BlobId, StorageError};
use tokio_util::io::ReaderStream;

use super::disposition::attachment;
use crate::authz::authorize;
use crate::error::ApiError;
use crate::extract::{path_after, Caller};
use crate::state::AppState;

/// The catalogue's view of one servable file version.
#[derive(sqlx::FromRow)]
pub struct FileRow {
    pub kind: String,
    pub status: String,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub content_type: Option<String>,
    pub version: Option<String>,
}

/// Download a file (`Range` supported). `HEAD` answers the same headers without a body.
#[utoipa::path(get, path = "/v1/files/{*path}", tag = "files",
    params(("path" = String, Path, description = "tenant path, each segment percent-encoded"),
           ("Range" = Option<String>, Header, description = "one byte range, e.g. bytes=0-99")),
    responses((status = 200, description = "the file", content_type = "application/octet-stream"),
              (status = 206, description = "the requested range"), (status = 304, description = "not modified"),
              (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem),
              (status = 416, description = "range not satisfiable")),
    security(("bearer" = [])))]
pub async fn get_file(
    State(state): State<AppState>,
    Caller(caller): Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path = path_after(&uri, "/v1/files/")?;
    authorize(&state, &caller, Access::Download(&path)).await?;
    let row = lookup(&state, &caller.tenant, &path).await?;
    serve(
        &state,
        &caller.tenant,
        &path,
        row,
        method == Method::HEAD,
        &headers,
    )
    .await
}

/// The headers `GET` would answer, without a body (errors have no body either).
#[utoipa::path(head, path = "/v1/files/{*path}", tag = "files",
    params(("path" = String, Path, description = "tenant path, each segment percent-encoded")),
    responses((status = 200, description = "headers of the file"), (status = 304, description = "not modified"),
              (status = 403, description = "not allowed"), (status = 404, description = "no such file"),
              (status = 409, description = "not available")),
    security(("bearer" = [])))]
pub async fn head_file(
    state: State<AppState>,
    caller: Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    get_file(state, caller, method, uri, headers).await
}

pub async fn lookup(
    state: &AppState,
    tenant: &TenantId,
    path: &FilePath,
) -> Result<FileRow, ApiError> {
    let row: Option<FileRow> = sqlx::query_as(
        "SELECT kind, status, size, sha256, content_type, version FROM entries WHERE tenant = $1 AND path = $2",
    )
    .bind(tenant.as_str())
    .bind(path.as_str())
    .fetch_optional(&state.pool)
    .await?;
    row.ok_or_else(|| ApiError::NotFound("no such file".into()))
}

/// Serves the version `row` describes from its blob; `path` only names the download.
pub async fn serve(
    state: &AppState,
    tenant: &TenantId,
    path: &FilePath,
    row: FileRow,
    head_only: bool,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if row.kind != "file" {
        return Err(ApiError::Conflict("the path is a directory".into()));
    }
    if row.status != "available" {
        return Err(ApiError::FileNotAvailable(format!(
            "the file is {}",
            row.status
        )));
    }
    let size = row.size.unwrap_or(0).max(0) as u64;
    let blob = row
        .sha256
        .as_deref()
        .and_then(|sha| BlobId::parse(sha).ok())
        .ok_or_else(|| ApiError::NotFound("no such file".into()))?;
    let etag = format!("\"{blob}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(raw) => match parse_range(raw, size) {
            RangeAsk::Whole => None,
            RangeAsk::Part(a, b) => Some((a, b)),
            RangeAsk::Unsatisfiable => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                )
                    .into_response());
            }
        },
    };
    let mut builder = Response::builder()
        .header(
            header::CONTENT_TYPE,
            row.content_type
                .unwrap_or_else(|| "application/octet-stream".into()),
        )
        .header(
            header::CONTENT_DISPOSITION,
            attachment(path.name().unwrap_or("download")),
        )
        .header(header::ETAG, etag)
        .header(header::ACCEPT_RANGES, "bytes");
    let (status, length) = match range {
        Some((start, end)) => {
            builder = builder.header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{size}", end - 1),
            );
            (StatusCode::PARTIAL_CONTENT, end - start)
        }
        None => (StatusCode::OK, size),
    };
    builder = builder
        .status(status)
        .header(header::CONTENT_LENGTH, HeaderValue::from(length));
    if head_only {
        return builder.body(Body::empty()).map_err(ApiError::internal);
    }
    let (reader, _) = state
        .storage
        .open_blob(tenant, &blob, range)
        .await
        .map_err(|e| match e {
            StorageError::NotFound(_) => {
                ApiError::NotFound("the bytes of this version are no longer stored".into())
            }
            other => ApiError::unavailable(other),
        })?;
    metrics::counter!("fe_download_bytes_total").increment(length);
    builder
        .body(Body::from_stream(ReaderStream::with_capacity(
            reader,
            64 * 1024,
        )))
        .map_err(ApiError::internal)
}

#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    Whole,
    /// `[start, end)`
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range; several ranges or an unparsable header serve the whole file
/// (RFC 9110 allows ignoring `Range`).
pub fn parse_range(raw: &str, size: u64) -> RangeAsk {
    let Some(spec) = raw.trim().strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (None, Some(_)) if !a.is_empty() => RangeAsk::Whole,
        (None, Some(0)) => RangeAsk::Unsatisfiable,
        (None, Some(n)) if a.is_empty() => {
            RangeAsk::Part(size.saturating_sub(n), size).nonempty(size)
        }
        (Some(s), None) if b.is_empty() => RangeAsk::Part(s, size).nonempty(size),
        (Some(s), Some(e)) if e >= s => {
            RangeAsk::Part(s, e.saturating_add(1).min(size)).nonempty(size)
        }
        (Some(_), Some(_)) => RangeAsk::Whole,
        _ => RangeAsk::Whole,
    }
}

impl RangeAsk {
    fn nonempty(self, size: u64) -> Self {
        match self {
            Self::Part(s, e) if s < e && s < size => self,
            Self::Part(..) => Self::Unsatisfiable,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_range, RangeAsk::*};

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), Part(0, 10));
        assert_eq!(parse_range("bytes=90-", 100), Part(90, 100));
        assert_eq!(parse_range("bytes=-10", 100), Part(90, 100));
        assert_eq!(parse_range("bytes=-500", 100), Part(0, 100));
        assert_eq!(parse_range("bytes=50-500", 100), Part(50, 100));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Whole);
        assert_eq!(parse_range("items=0-1", 100), Whole);
        assert_eq!(parse_range("bytes=x-y", 100), Whole);
        assert_eq!(
            parse_range("bytes=18446744073709551615-", 100),
            Unsatisfiable
        );
    }
}
