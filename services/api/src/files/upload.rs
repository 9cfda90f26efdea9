//! `PUT /v1/files/{path}`: the body streams into a staged upload while it is hashed and its
//! first bytes sniffed; the size limit is enforced as the bytes arrive (and up front from
//! `Content-Length`). Only a complete, allowed upload becomes a task; anything else discards
//! the staged bytes and records nothing.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Uri};
use axum::response::Response;
use events::acl::Access;
use events::quota::{Change, Usage};
use events::task::{request_fingerprint, TaskSpec, UploadSpec};
use events::{FilePath, TenantId};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::sniff::{sniff, SNIFF_BYTES};
use crate::authz::authorize;
use crate::error::ApiError;
use crate::extract::{path_after, Caller};
use crate::routes::commands::{accepted, idempotency_key, request_task};
use crate::state::AppState;

/// What arrived, once the body is complete.
struct Received {
    upload_id: Uuid,
    size: u64,
    sha256: String,
    content_type: String,
}

/// Upload a file (streamed). It becomes downloadable after a clean malware scan.
#[utoipa::path(put, path = "/v1/files/{*path}", tag = "files",
    params(("path" = String, Path, description = "tenant path, each segment percent-encoded"),
           ("Idempotency-Key" = Option<String>, Header, description = "same key + same content = same task"),
           ("If-None-Match" = Option<String>, Header, description = "`*`: fail with 409 when the file exists")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 202, body = crate::routes::commands::Accepted), (status = 400, body = crate::error::Problem),
              (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
              (status = 409, body = crate::error::Problem), (status = 413, body = crate::error::Problem),
              (status = 415, body = crate::error::Problem), (status = 507, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn put_file(
    State(state): State<AppState>,
    Caller(caller): Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let path = path_after(&uri, "/v1/files/")?;
    if path.is_root() {
        return Err(ApiError::Conflict("the root is a directory".into()));
    }
    let key = idempotency_key(&headers)?;
    authorize(&state, &caller, Access::Upload(&path)).await?;
    let limit = state.settings.max_upload_bytes;
    if declared_length(&headers).is_some_and(|n| n > limit) {
        metrics::counter!("fe_uploads_rejected_total", "reason" => "too_large").increment(1);
        return Err(too_large(limit));
    }
    check_target(&state, &caller.tenant, &path, &headers).await?;
    if let Some(len) = declared_length(&headers) {
        // Known size: refuse before a byte is accepted. Unknown size: the promotion checks.
        let change = Change {
            adds: Usage {
                bytes: len,
                files: 1,
            },
            replaces: platform::catalogue::file_usage(&state.pool, &caller.tenant, &path).await?,
        };
        crate::routes::usage::admit(&state, &caller.tenant, change).await?;
    }
    let received = receive(&state, &caller.tenant, body, limit).await?;
    let discard = || async {
        let _ = state
            .storage
            .discard_staged(&caller.tenant, received.upload_id)
            .await;
    };
    if !state
        .settings
        .allowed_types
        .iter()
        .any(|t| t == &received.content_type)
    {
        discard().await;
        metrics::counter!("fe_uploads_rejected_total", "reason" => "type").increment(1);
        return Err(ApiError::UnsupportedMediaType(format!(
            "content of type {} is not accepted",
            received.content_type
        )));
    }
    // The key binds the method, the target path and the content.
    let fingerprint = key
        .as_ref()
        .map(|_| request_fingerprint("PUT", path.as_str(), &received.sha256));
    let spec = TaskSpec::Upload(UploadSpec {
        path,
        upload_id: received.upload_id,
        size: received.size,
        sha256: received.sha256.clone(),
        content_type: received.content_type.clone(),
    });
    match request_task(&state, &caller, spec, key, fingerprint).await {
        Ok(requested) => {
            if requested.replay {
                // The task already holds the first copy of these bytes.
                discard().await;
            } else {
                metrics::counter!("fe_upload_bytes_total").increment(received.size);
            }
            Ok(accepted(requested.task_id))
        }
        Err(e) => {
            discard().await;
            Err(e)
        }
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!("uploads are limited to {limit} bytes"))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Uploading onto a directory is a conflict; with `If-None-Match: *` so is any existing file,
/// scanning and quarantined ones included.
async fn check_target(
    state: &AppState,
    tenant: &TenantId,
    path: &FilePath,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let existing: Option<String> =
        sqlx::query_scalar("SELECT kind FROM entries WHERE tenant = $1 AND path = $2")
            .bind(tenant.as_str())
            .bind(path.as_str())
            .fetch_optional(&state.pool)
            .await?;
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    match (existing.as_deref(), if_none_match) {
        (Some("dir"), _) => Err(ApiError::Conflict("the path is a directory".into())),
        (Some(_), Some("*")) => Err(ApiError::Conflict(
            "the file exists (If-None-Match: *)".into(),
        )),
        (_, Some(v)) if v != "*" => Err(ApiError::BadRequest(
            "only If-None-Match: * is supported on upload".into(),
        )),
        _ => Ok(()),
    }
}

/// Streams the body into staging; on any failure the staged bytes are removed.
async fn receive(
    state: &AppState,
    tenant: &TenantId,
    body: Body,
    limit: u64,
) -> Result<Received, ApiError> {
    let upload_id = Uuid::now_v7();
    let mut writer = state
        .storage
        .create_staged(tenant, upload_id)
        .await
        .map_err(ApiError::unavailable)?;
    let mut stream = body.into_data_stream();
    let mut hasher = Sha256::new();
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    let mut size: u64 = 0;
    let failure = loop {
        let chunk = match stream.next().await {
            None => break None,
            Some(Ok(chunk)) => chunk,
            Some(Err(_)) => {
                break Some(ApiError::BadRequest(
                    "the upload body was interrupted".into(),
                ))
            }
        };
        size += chunk.len() as u64;
        if size > limit {
            metrics::counter!("fe_uploads_rejected_total", "reason" => "too_large").increment(1);
            break Some(too_large(limit));
        }
        hasher.update(&chunk);
        if head.len() < SNIFF_BYTES {
            head.extend_from_slice(&chunk[..chunk.len().min(SNIFF_BYTES - head.len())]);
        }
        if let Err(e) = writer.write(&chunk).await {
            break Some(ApiError::unavailable(e));
        }
    };
    if let Some(err) = failure {
        drop(writer);
        let _ = state.storage.discard_staged(tenant, upload_id).await;
        return Err(err);
    }
    writer.finish().await.map_err(ApiError::unavailable)?;
    Ok(Received {
        upload_id,
        size,
        sha256: hex::encode(hasher.finalize()),
        content_type: sniff(&head),
    })
}
