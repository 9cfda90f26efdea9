//! Extractors that turn requests into domain values or problem responses: the authenticated
//! principal, JSON bodies with bounded size, and tenant paths from the raw URL.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use events::{FilePath, Principal};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// The verified caller. Every `/v1` handler takes one, so no route is reachable anonymously.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match state.verifier.verify_header(header) {
            Ok(principal) => {
                state.rate_limits.check(&principal)?;
                tracing::Span::current().record("principal", principal.subject.as_str());
                Ok(Caller(principal))
            }
            Err(e) => {
                tracing::info!(reason = %e, "authentication failed");
                metrics::counter!("fe_auth_failures_total").increment(1);
                Err(ApiError::Unauthorized)
            }
        }
    }
}

/// A JSON body: `application/json` required (415), size bounded by the route's body limit
/// (413), syntax and shape errors are 400 `bad_request`, path errors 400 `path_invalid`.
pub struct JsonBody<T>(pub T, pub serde_json::Value);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "the body must be application/json".into(),
            ));
        }
        let limit = state.settings.max_command_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|e| body_error(e, limit))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
        check_path_fields(&value)?;
        let parsed = T::deserialize(&value)
            .map_err(|e| ApiError::BadRequest(format!("invalid request: {e}")))?;
        Ok(JsonBody(parsed, value))
    }
}

/// A body that could not be read: over the limit (413), or stalled past the body idle
/// timeout or cut off by the client (400).
fn body_error(error: axum::Error, limit: usize) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return ApiError::PayloadTooLarge(format!("the body exceeds {limit} bytes"));
        }
        source = e.source();
    }
    ApiError::BadRequest("the request body stalled or was cut off".into())
}

/// Path-valued fields (`path`, `from`, `to`) that are strings must be valid tenant paths; this
/// runs before the shape check so a bad path is answered `path_invalid`, not `bad_request`.
fn check_path_fields(value: &serde_json::Value) -> Result<(), ApiError> {
    for field in ["path", "from", "to", "path_prefix"] {
        if let Some(serde_json::Value::String(s)) = value.get(field) {
            FilePath::parse(s)?;
        }
    }
    Ok(())
}

/// The tenant path after a route prefix (e.g. `/v1/stat/`), parsed from the raw,
/// still-encoded URL so that `%2F` and `%252e` keep their meaning.
pub fn path_after(parts_uri: &axum::http::Uri, prefix: &str) -> Result<FilePath, ApiError> {
    let raw = parts_uri.path();
    let tail = raw
        .strip_prefix(prefix)
        .or_else(|| (raw == prefix.trim_end_matches('/')).then_some(""));
    let tail = tail.ok_or_else(|| ApiError::PathInvalid("path is not under the route".into()))?;
    Ok(FilePath::from_url_tail(tail)?)
}
