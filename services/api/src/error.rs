//! The one place where errors become HTTP responses: RFC 9457 `application/problem+json`
//! with a stable `code` and the request id. Server-side failures are logged with their cause
//! and answered with a generic detail, so no SQL, stack or host path ever reaches a client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::context;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PathInvalid(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the idempotency key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("{0}")]
    FileNotAvailable(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("too many requests")]
    RateLimited { retry_after_s: u64 },
    #[error("a dependency is unavailable")]
    Unavailable(String),
    /// 503 `unavailable` whose detail is safe to show, e.g. "recorded but not yet in force".
    #[error("{0}")]
    NotYetApplied(String),
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    pub request_id: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::PathInvalid(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) | Self::IdempotencyKeyReused | Self::FileNotAvailable(_) => {
                StatusCode::CONFLICT
            }
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::QuotaExceeded(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Unavailable(_) | Self::NotYetApplied(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::PathInvalid(_) => "path_invalid",
            Self::BadRequest(_) => "bad_request",
            Self::Conflict(_) => "conflict",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::FileNotAvailable(_) => "file_not_available",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::RateLimited { .. } => "rate_limited",
            Self::QuotaExceeded(_) => "quota_exceeded",
            Self::Unavailable(_) | Self::NotYetApplied(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        self.status().canonical_reason().unwrap_or("Error")
    }

    /// What the client is told; server-side causes stay in the log.
    fn public_detail(&self) -> String {
        match self {
            Self::Internal(_) => "the server failed to handle the request".into(),
            Self::Unavailable(_) => "a dependency is unavailable, retry later".into(),
            other => other.to_string(),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }

    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(cause) => tracing::error!(%cause, "internal error"),
            Self::Unavailable(cause) => tracing::warn!(%cause, "dependency unavailable"),
            _ => {}
        }
        let status = self.status();
        let problem = Problem {
            kind: format!("https://file-engine.dev/problems/{}", self.code()),
            title: self.title(),
            status: status.as_u16(),
            detail: self.public_detail(),
            code: self.code(),
            request_id: context::request_id(),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            Self::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::RateLimited { retry_after_s } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
                    headers.insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        response
    }
}

impl From<events::PathError> for ApiError {
    fn from(e: events::PathError) -> Self {
        Self::PathInvalid(e.to_string())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Self::unavailable(e)
            }
            other => Self::internal(other),
        }
    }
}
