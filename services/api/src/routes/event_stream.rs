//! `GET /v1/events`: the tenant's public events as Server-Sent Events, live, filtered to what
//! the caller may `list`, resumable with `Last-Event-ID`.
//!
//! Each connection reads the log through its own ordered JetStream consumer filtered on
//! `fe.ev.<caller's tenant>.>`: from the start of the live tail without `Last-Event-ID`, else
//! from the commit holding the event after it. The log is the only source of order, so replay
//! and live delivery are one ordered pass over the same messages: no gap and no duplicate at
//! the seam. Frames are `id: <seq>`, `event: <short type>`, `data: <CloudEvent JSON>` where
//! `seq` is the event's own position in the tenant's history, so `Last-Event-ID: <seq>`
//! resumes exactly after that event, even in the middle of a commit (the rest of the commit
//! follows, events at or before `seq` are skipped). An id past the tenant's last event (one
//! this history never issued, e.g. seen before a restore from backup) resumes at the live
//! tail and delivers every event from there on: it is taken as the tenant's last event.
//!
//! Before a commit is shown, the connection waits (bounded) until the projection has passed
//! it: read models then already reflect what the event says (a `file.available` can be
//! downloaded at once), ACL changes are in force, and the audit projection has stored the
//! commit's events, which are what is sent (`platform::public_events`: the audit index's
//! bytes, so SSE, webhooks and the audit API agree). If the projection does not get there in
//! time the stream ends and the client resumes with `Last-Event-ID`. An event is shown
//! when the caller may `list` (or `read`) every path it names: its subject and, for moves
//! and copies, the target; one naming no known path is shown to admins only, and so are rule
//! and subscription events (`events::public::is_admin_only`), whatever their path.
//!
//! Back-pressure: at most [`BUFFER`] frames wait for a client; a client that takes none for
//! [`SLOW_CLIENT`] is disconnected (it resumes with `Last-Event-ID`) rather than buffered
//! without limit. A comment is sent every [`KEEP_ALIVE`] so proxies keep idle streams open.
//! The stream ends at server shutdown, and on a log or database error (the client resumes).
//!
//! Caps ([`crate::stream_slots`]): per process (503), per tenant and per principal (429).

use std::convert::Infallible;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use events::acl::Access;
use events::public::{is_admin_only, is_public};
use events::Principal;
use futures::StreamExt;
use platform::event_log::{event_types, LoggedCommit};
use platform::projection::Projected;
use platform::public_events::{logseq_of, public_events, tenant_head, PublicEvent};
use platform::streams::EVENTS_STREAM;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::authz::Decider;
use crate::error::ApiError;
use crate::extract::Caller;
use crate::state::AppState;
use crate::stream_slots::Full;

/// Frames buffered per connection.
pub const BUFFER: usize = 64;
/// How long a full buffer may wait for the client before it is disconnected.
pub const SLOW_CLIENT: Duration = Duration::from_secs(10);
/// Interval of keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// `Retry-After` when the tenant's or the principal's share of open streams is taken.
const CAP_RETRY_AFTER_S: u64 = 5;
/// How long a commit waits for the projection before it is shown anyway.
const PROJECTION_WAIT: Duration = Duration::from_secs(10);

/// Stream the tenant's events.
#[utoipa::path(get, path = "/v1/events", tag = "notifications",
    params(("Last-Event-ID" = Option<u64>, Header, description = "resume after this event (its `seq`)")),
    responses((status = 200, content_type = "text/event-stream",
               description = "frames `id: <seq>`, `event: <short type>`, `data: <CloudEvent JSON>`"),
              (status = 400, body = crate::error::Problem), (status = 401, body = crate::error::Problem),
              (status = 503, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let after = match last_event_id(&headers)? {
        // An id this history never issued must not hide the events it will issue.
        Some(seq) => Some(seq.min(tenant_head(&state.pool, &caller.tenant).await?.0)),
        None => None,
    };
    let slot = state
        .sse_slots
        .try_open(&caller)
        .map_err(|full| match full {
            Full::Process => {
                ApiError::Unavailable("too many open event streams on this server".into())
            }
            // The caller holds its share; one of its streams has to close first.
            Full::Tenant | Full::Principal => ApiError::RateLimited {
                retry_after_s: CAP_RETRY_AFTER_S,
            },
        })?;
    let messages = subscribe(&state, &caller, after).await?;
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        pump(state, caller, messages, after.unwrap_or(0), tx).await;
        drop(slot);
    });
    let frames = ReceiverStream::new(rx).map(Ok::<Event, Infallible>);
    let sse = Sse::new(frames).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"));
    let mut response = sse.into_response();
    // Reverse proxies (nginx) must not buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The `Last-Event-ID` header as an event position (absent or empty = live only).
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = value.to_str().map(str::trim).unwrap_or("-");
    if text.is_empty() {
        return Ok(None);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_id());
    }
    text.parse::<u64>().map(Some).map_err(|_| bad_id())
}

fn bad_id() -> ApiError {
    ApiError::BadRequest("Last-Event-ID must be an event seq (a non-negative integer)".into())
}

/// An ordered consumer on the caller's tenant, from the commit of the event after `after`
/// or from now on.
async fn subscribe(
    state: &AppState,
    caller: &Principal,
    after: Option<u64>,
) -> Result<pull::Ordered, ApiError> {
    let deliver_policy = match after {
        Some(seq) => DeliverPolicy::ByStartSequence {
            start_sequence: resume_point(state, caller, seq).await?,
        },
        None => DeliverPolicy::New,
    };
    let stream = state
        .log
        .jetstream()
        .get_stream_no_info(EVENTS_STREAM)
        .await
        .map_err(ApiError::unavailable)?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: format!("fe.ev.{}.>", caller.tenant.as_str()),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(ApiError::unavailable)?;
    consumer.messages().await.map_err(ApiError::unavailable)
}

/// The log position to read from to resume after the tenant's event `after`: the commit
/// holding event `after + 1` when it is indexed, else the commit after the tenant's last
/// indexed one (`after` is at or past the head: what follows is not indexed yet).
async fn resume_point(state: &AppState, caller: &Principal, after: u64) -> Result<u64, ApiError> {
    let next = after.checked_add(1).ok_or_else(bad_id)?;
    if let Some(logseq) = logseq_of(&state.pool, &caller.tenant, next).await? {
        return Ok(logseq);
    }
    let (_, head_logseq) = tenant_head(&state.pool, &caller.tenant).await?;
    Ok(head_logseq + 1)
}

/// Counts open streams in `fe_sse_connections` for as long as it lives.
struct Connected;

impl Connected {
    fn new() -> Self {
        metrics::gauge!("fe_sse_connections").increment(1.0);
        Connected
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        metrics::gauge!("fe_sse_connections").decrement(1.0);
    }
}

/// Moves commits from the log to the client until it leaves, is too slow, the server shuts
/// down, or the log fails.
async fn pump(
    state: AppState,
    caller: Principal,
    mut messages: pull::Ordered,
    after: u64,
    tx: mpsc::Sender<Event>,
) {
    let _connected = Connected::new();
    let mut shutdown = state.shutdown.clone();
    loop {
        let next = tokio::select! {
            next = messages.next() => next,
            _ = tx.closed() => return,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "sse: reading the log failed; closing the stream");
                return;
            }
            None => return,
        };
        let wanted = event_types(message.headers.as_ref())
            .into_iter()
            .any(is_public);
        if !wanted {
            continue;
        }
        let commit = match LoggedCommit::from_message(&message) {
            Ok(commit) if commit.tenant == caller.tenant => commit,
            Ok(_) => continue,
            Err(e) => {
                tracing::error!(error = %e, "sse: unreadable commit skipped");
                continue;
            }
        };
        if send_commit(&state, &caller, &commit, after, &tx)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Why a stream stops while sending.
struct Stop;

async fn send_commit(
    state: &AppState,
    caller: &Principal,
    commit: &LoggedCommit,
    after: u64,
    tx: &mpsc::Sender<Event>,
) -> Result<(), Stop> {
    // The commit is the caller's tenant's: only its own partition must have passed it.
    let projected = state
        .watermark
        .wait_for_tenant(&caller.tenant, commit.stream_seq, PROJECTION_WAIT)
        .await;
    if projected != Projected::Applied {
        tracing::warn!(
            seq = commit.stream_seq,
            "sse: projection behind; closing the stream"
        );
        return Err(Stop);
    }
    let mut events = public_events(&state.pool, commit).await.map_err(|e| {
        tracing::warn!(error = %e, "sse: reading stored events failed; closing the stream");
        Stop
    })?;
    events.retain(|e| e.seq > after);
    if events.is_empty() {
        return Ok(());
    }
    let decider = Decider::load(state, caller).await.map_err(|_| Stop)?;
    for event in events.iter().filter(|e| visible(&decider, caller, e)) {
        if tx.send_timeout(frame(event), SLOW_CLIENT).await.is_err() {
            metrics::counter!("fe_sse_disconnects_total", "reason" => "slow_or_gone").increment(1);
            return Err(Stop);
        }
    }
    Ok(())
}

/// Whether the caller may see the event: rule and subscription events go to admins only, and
/// every path an event names must be listable.
fn visible(decider: &Decider<'_>, caller: &Principal, event: &PublicEvent) -> bool {
    if caller.is_admin() {
        return true;
    }
    !is_admin_only(&event.short_type)
        && !event.paths.is_empty()
        && event
            .paths
            .iter()
            .all(|p| decider.allows(Access::ListEntry(p)))
}

/// One frame: the event's own position as id, the stored event bytes as data.
fn frame(event: &PublicEvent) -> Event {
    Event::default()
        .id(event.seq.to_string())
        .event(event.short_type.as_str())
        .data(event.body.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("last-event-id", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn last_event_id_is_a_sequence() {
        assert_eq!(last_event_id(&HeaderMap::new()).unwrap(), None);
        assert_eq!(last_event_id(&headers("")).unwrap(), None);
        assert_eq!(last_event_id(&headers("42")).unwrap(), Some(42));
        for bad in ["-1", "1.5", "abc", "99999999999999999999999", "+3"] {
            assert!(last_event_id(&headers(bad)).is_err(), "{bad}");
        }
    }
}
