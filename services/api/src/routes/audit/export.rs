//! `GET /v1/audit/export`: the events of `GET /v1/audit` (same filters, no page size) as
//! `application/x-ndjson`, one CloudEvent per line, streamed from the database in keyset pages
//! so memory stays constant however long the trail is.
//!
//! The export ends at the projector's checkpoint read when it starts, so it is a consistent
//! prefix of the log even while new events arrive. A database failure mid-stream aborts the
//! response (the client sees a truncated chunked body, never a partial line passed off as
//! complete).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::stream;
use sqlx::PgPool;

use super::filter::{self, PageRequest};
use super::{query_pairs, require_auditor, EventRow, QueryPairs};
use crate::error::ApiError;
use crate::extract::Caller;
use crate::state::AppState;

/// Rows per database round trip.
const EXPORT_PAGE: i64 = 1000;
/// A page that takes longer than this aborts the export.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);
const EXPORT_PARAMS: &[&str] = &["path", "principal", "type", "from", "to"];

/// Every event of the caller's tenant matching the filters, as NDJSON.
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit",
    params(("path" = Option<String>, Query, description = "as for /v1/audit"),
           ("principal" = Option<String>, Query, description = "as for /v1/audit"),
           ("type" = Option<String>, Query, description = "as for /v1/audit"),
           ("from" = Option<String>, Query, description = "RFC 3339, inclusive"),
           ("to" = Option<String>, Query, description = "RFC 3339, exclusive")),
    responses((status = 200, content_type = "application/x-ndjson", body = String,
               description = "one CloudEvent JSON object per line, in log order"),
              (status = 400, body = crate::error::Problem), (status = 401, body = crate::error::Problem),
              (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    Caller(caller): Caller,
    q: QueryPairs,
) -> Result<Response, ApiError> {
    require_auditor(&caller)?;
    let mut page = filter::parse(&query_pairs(q)?, EXPORT_PARAMS)?;
    page.limit = EXPORT_PAGE;
    let through = platform::db::checkpoint(&state.pool).await? as i64;
    let cursor = Cursor {
        pool: state.pool.clone(),
        tenant: caller.tenant.as_str().to_owned(),
        page,
        through,
        done: false,
    };
    let body = Body::from_stream(stream::try_unfold(cursor, next_chunk));
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

/// Position of a running export.
struct Cursor {
    pool: PgPool,
    tenant: String,
    page: PageRequest,
    through: i64,
    done: bool,
}

/// The next page as one chunk of lines; `None` at the end.
async fn next_chunk(mut c: Cursor) -> Result<Option<(Bytes, Cursor)>, std::io::Error> {
    if c.done {
        return Ok(None);
    }
    let fetch = async {
        filter::select(&c.tenant, &c.page, Some(c.through))
            .build_query_as::<EventRow>()
            .fetch_all(&c.pool)
            .await
    };
    let mut rows = tokio::time::timeout(PAGE_TIMEOUT, fetch)
        .await
        .map_err(|_| abort("an export page timed out"))?
        .map_err(|e| abort(&e.to_string()))?;
    c.done = rows.len() as i64 <= c.page.limit;
    rows.truncate(c.page.limit as usize);
    let Some(last) = rows.last() else {
        return Ok(None);
    };
    c.page.after = Some((last.seq, last.idx));
    let mut chunk = Vec::with_capacity(rows.iter().map(|r| r.event.len() + 1).sum());
    for row in &rows {
        chunk.extend_from_slice(row.event.as_bytes());
        chunk.push(b'\n');
    }
    Ok(Some((Bytes::from(chunk), c)))
}

/// Logs why an export stopped; the client only sees the stream end abnormally.
fn abort(cause: &str) -> std::io::Error {
    tracing::error!(%cause, "audit export aborted");
    std::io::Error::other("audit export aborted")
}
