//! Per-request context: the request id and the W3C trace context, validated at the edge and
//! available to everything the request runs (handlers, error rendering, event metadata)
//! through a task-local scope set by [`middleware`].

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

#[derive(Clone, Debug)]
pub struct RequestContext {
    pub request_id: String,
    /// The request's `traceparent`: the incoming trace id with a new span id, or a new trace.
    pub traceparent: String,
}

tokio::task_local! {
    static CONTEXT: RequestContext;
}

/// The current request id ("" outside a request).
pub fn request_id() -> String {
    CONTEXT
        .try_with(|c| c.request_id.clone())
        .unwrap_or_default()
}

pub fn current() -> Option<RequestContext> {
    CONTEXT.try_with(Clone::clone).ok()
}

/// A request id is echoed when it is 1–128 chars of `[A-Za-z0-9._-]`, else replaced.
pub fn valid_request_id(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The trace id of a valid W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, ids not all zero).
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    match parts.as_slice() {
        [version, trace, span, flags]
            if hex(version, 2)
                && *version != "ff"
                && hex(trace, 32)
                && hex(span, 16)
                && hex(flags, 2)
                && trace.bytes().any(|b| b != b'0')
                && span.bytes().any(|b| b != b'0') =>
        {
            Some(trace)
        }
        _ => None,
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

fn traceparent_for(incoming: Option<&str>) -> String {
    let trace = incoming
        .and_then(trace_id_of)
        .map(str::to_owned)
        .unwrap_or_else(|| random_hex(16));
    format!("00-{trace}-{}-01", random_hex(8))
}

/// Where signed links are served; what follows is a bearer credential.
const LINKS_PREFIX: &str = "/v1/links/";

/// The request path as it may appear in spans and logs: a signed link's token is a
/// credential (whoever holds it downloads the file), so `/v1/links/<token>` is recorded as
/// `/v1/links/<redacted>`. The query string is never recorded (cursors, waits).
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix(LINKS_PREFIX) {
        Some(token) if !token.is_empty() => format!("{LINKS_PREFIX}<redacted>").into(),
        _ => path.into(),
    }
}

pub async fn middleware(req: Request, next: Next) -> Response {
    let (incoming_id, incoming_trace) = {
        let header = |name: &HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (header(&REQUEST_ID), header(&TRACEPARENT))
    };
    let request_id = incoming_id
        .filter(|v| valid_request_id(v))
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let traceparent = traceparent_for(incoming_trace.as_deref());
    let ctx = RequestContext {
        request_id: request_id.clone(),
        traceparent,
    };
    let route = loggable_path(req.uri().path());
    let span = tracing::info_span!("request", request_id = %request_id, method = %req.method(), route = %route);
    // Exported spans join the caller's trace; an invalid header starts a new trace.
    if let Some(incoming) = incoming_trace
        .as_deref()
        .filter(|t| trace_id_of(t).is_some())
    {
        platform::telemetry::set_parent_from_traceparent(&span, incoming);
    }
    let mut response = CONTEXT
        .scope(ctx, tracing::Instrument::instrument(next.run(req), span))
        .await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_tokens_are_redacted_from_logged_paths() {
        let token = "eyJwYXRoIjoiL2EifQ.c2lnbmF0dXJl";
        let path = format!("/v1/links/{token}");
        let logged = loggable_path(&path);
        assert_eq!(logged, "/v1/links/<redacted>");
        assert!(!logged.contains(token));
        assert_eq!(loggable_path("/v1/links"), "/v1/links");
        assert_eq!(loggable_path("/v1/files/a/b.txt"), "/v1/files/a/b.txt");
    }

    #[test]
    fn request_ids_are_validated() {
        assert!(valid_request_id("abc-DEF_1.2"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id(&"a".repeat(129)));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id("a\nb"));
        assert!(!valid_request_id("<script>"));
    }

    #[test]
    fn the_incoming_trace_id_is_kept() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id_of(tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(traceparent_for(Some(tp)).starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert_eq!(
            trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id_of("garbage"), None);
        assert_eq!(traceparent_for(Some("garbage")).len(), 55);
    }
}
