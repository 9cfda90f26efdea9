//! `GET /v1/audit/export`: the events of `GET /v1/audit` (same filters, no page size) as
//! `application/x-ndjson`, one CloudEvent per line, streamed from the database in keyset pages
//! so memory stays constant however long the trail is.
//!
//! **Offline verification.** Each line is the stored event plus the `chainhash` extension (the
//! tenant's chain hash through that event); the last line is the trailer
//! `{"export": {"tenant", "first_seq", "last_seq", "head_hash", "prev_hash"}}` where
//! `prev_hash` is the chain hash before `first_seq` (zeros from the genesis). From these lines
//! alone `file-engine audit-verify --file` recomputes the chain (`events::audit_export`) and
//! names the first `seq` that does not fit; `head_hash` can be compared with
//! `GET /v1/audit/verify`. An export filtered by `path`, `principal` or `type` has gaps: each
//! line still proves itself against its own `chainhash`, but only an unfiltered (optionally
//! time-bounded) export proves completeness.
//!
//! The export ends at the tenant's projection checkpoint read when it starts, so it is a consistent
//! prefix of the log even while new events arrive. A database failure mid-stream aborts the
//! response (the client sees a truncated chunked body, never a partial line passed off as
//! complete).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use events::audit_chain::{canonical_json, to_hex, GENESIS};
use events::audit_export::CHAIN_HASH_FIELD;
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
const EXPORT_PARAMS: &[&str] = &["path", "ancestors", "principal", "type", "from", "to"];

/// Every event of the caller's tenant matching the filters, as NDJSON.
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit",
    params(("path" = Option<String>, Query, description = "as for /v1/audit"),
           ("ancestors" = Option<bool>, Query, description = "as for /v1/audit"),
           ("principal" = Option<String>, Query, description = "as for /v1/audit"),
           ("type" = Option<String>, Query, description = "as for /v1/audit"),
           ("from" = Option<String>, Query, description = "RFC 3339, inclusive"),
           ("to" = Option<String>, Query, description = "RFC 3339, exclusive")),
    responses((status = 200, content_type = "application/x-ndjson", body = String,
               description = "one CloudEvent JSON object per line (with `chainhash`), in log order, then the trailer `{\"export\": {tenant, first_seq, last_seq, head_hash, prev_hash}}`"),
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
    let through =
        platform::projection::tenant_checkpoint(&state.pool, caller.tenant.as_str()).await? as i64;
    let cursor = Cursor {
        pool: state.pool.clone(),
        tenant: caller.tenant.as_str().to_owned(),
        page,
        through,
        done: false,
        trailer: Trailer::default(),
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
    trailer: Trailer,
}

/// What the trailer line will say, gathered while streaming.
#[derive(Default)]
struct Trailer {
    first_seq: Option<i64>,
    last_seq: Option<i64>,
    prev_hash: Option<String>,
    head_hash: Option<String>,
    written: bool,
}

/// The next page as one chunk of lines; the trailer after the last page; `None` at the end.
async fn next_chunk(mut c: Cursor) -> Result<Option<(Bytes, Cursor)>, std::io::Error> {
    if c.done {
        if c.trailer.written {
            return Ok(None);
        }
        c.trailer.written = true;
        let line = trailer_line(&c.tenant, &c.trailer);
        return Ok(Some((Bytes::from(line), c)));
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
        c.done = true;
        return Ok(Some((Bytes::new(), c)));
    };
    c.page.after = Some(last.seq);
    if c.trailer.first_seq.is_none() {
        let first = rows[0].seq;
        let prev = previous_hash(&c.pool, &c.tenant, first)
            .await
            .map_err(|e| abort(&e.to_string()))?;
        c.trailer.first_seq = Some(first);
        c.trailer.prev_hash = Some(to_hex(&prev));
    }
    c.trailer.last_seq = Some(last.seq);
    c.trailer.head_hash = Some(to_hex(&last.hash));
    let mut chunk = Vec::with_capacity(rows.iter().map(|r| r.event.len() + 90).sum());
    for row in &rows {
        chunk.extend_from_slice(export_line(row)?.as_bytes());
        chunk.push(b'\n');
    }
    Ok(Some((Bytes::from(chunk), c)))
}

/// The stored event with its chain hash as the `chainhash` extension, canonical JSON.
fn export_line(row: &EventRow) -> Result<String, std::io::Error> {
    let mut event: serde_json::Value =
        serde_json::from_str(&row.event).map_err(|e| abort(&e.to_string()))?;
    let Some(object) = event.as_object_mut() else {
        return Err(abort("a stored event is not an object"));
    };
    object.insert(CHAIN_HASH_FIELD.into(), to_hex(&row.hash).into());
    Ok(canonical_json(&event))
}

/// The chain hash before the tenant's event `seq` (the genesis before the first).
async fn previous_hash(pool: &PgPool, tenant: &str, seq: i64) -> Result<[u8; 32], sqlx::Error> {
    let hash: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT hash FROM audit_events WHERE tenant = $1 AND seq = $2")
            .bind(tenant)
            .bind(seq - 1)
            .fetch_optional(pool)
            .await?;
    Ok(hash.and_then(|h| h.try_into().ok()).unwrap_or(GENESIS))
}

fn trailer_line(tenant: &str, t: &Trailer) -> String {
    let trailer = serde_json::json!({"export": {
        "tenant": tenant,
        "first_seq": t.first_seq,
        "last_seq": t.last_seq,
        "head_hash": t.head_hash,
        "prev_hash": t.prev_hash,
    }});
    format!("{}\n", canonical_json(&trailer))
}

/// Logs why an export stopped; the client only sees the stream end abnormally.
fn abort(cause: &str) -> std::io::Error {
    tracing::error!(%cause, "audit export aborted");
    std::io::Error::other("audit export aborted")
}
