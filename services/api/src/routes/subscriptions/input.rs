//! Input of the subscriptions API, validated into domain values: the creation body (URL
//! syntax and SSRF rules, event types, path prefix) and the delivery-log query. Details
//! never echo the input (a URL may carry tokens).

use std::collections::BTreeSet;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use events::public::{is_public, short_type, PUBLIC_TYPES};
use events::subscription::Subscription;
use events::FilePath;
use platform::webhook::{resolve_checked, TargetError, WebhookUrl};
use uuid::Uuid;

use super::CreateRequest;
use crate::error::ApiError;

/// Most deliveries one page of the delivery log returns.
pub(super) const MAX_PAGE: i64 = 200;
const DEFAULT_PAGE: i64 = 50;

/// Validates a creation request into a subscription with a fresh id. The target must be
/// allowed now (every address it resolves to); delivery checks it again each time.
pub(super) async fn subscription_from(
    req: CreateRequest,
    allow_private: bool,
) -> Result<Subscription, ApiError> {
    let url = WebhookUrl::parse(&req.url).map_err(target_error)?;
    let types = parse_types(req.types.unwrap_or_default())?;
    let path_prefix = match req.path_prefix {
        Some(p) => FilePath::parse(&p)?,
        None => FilePath::root(),
    };
    resolve_checked(&url, allow_private)
        .await
        .map_err(target_error)?;
    Ok(Subscription {
        id: Uuid::now_v7(),
        url: url.as_str().to_owned(),
        types,
        path_prefix,
    })
}

fn target_error(e: TargetError) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

/// Public event types, short (`dir.created`) or full (`io.file-engine.dir.created.v1`),
/// stored short; empty means all.
fn parse_types(raw: Vec<String>) -> Result<BTreeSet<String>, ApiError> {
    raw.iter()
        .map(|t| {
            let short = short_type(t).unwrap_or(t);
            if is_public(short) {
                Ok(short.to_owned())
            } else {
                Err(ApiError::BadRequest(format!(
                    "types must name public event types: {}",
                    PUBLIC_TYPES.join(", ")
                )))
            }
        })
        .collect()
}

/// `limit` and `cursor` of the delivery log.
pub(super) struct Page {
    pub limit: i64,
    /// Deliveries with ids below this one (the log is newest first).
    pub before: Option<i64>,
}

pub(super) fn page(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Page, ApiError> {
    let Query(pairs) = query.map_err(|_| ApiError::BadRequest("malformed query string".into()))?;
    let mut page = Page {
        limit: DEFAULT_PAGE,
        before: None,
    };
    for (key, value) in pairs {
        match key.as_str() {
            "limit" => {
                page.limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!("limit must be 1 to {MAX_PAGE}"))
                    })?;
            }
            "cursor" => {
                let cursor = value.parse::<i64>().ok().filter(|c| *c > 0);
                page.before =
                    Some(cursor.ok_or_else(|| ApiError::BadRequest("invalid cursor".into()))?);
            }
            _ => {
                return Err(ApiError::BadRequest(
                    "unknown query parameter (expected limit, cursor)".into(),
                ))
            }
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_accept_short_and_full_public_names() {
        let types = parse_types(vec![
            "dir.created".into(),
            "io.file-engine.file.available.v1".into(),
            "dir.created".into(),
        ])
        .unwrap();
        assert_eq!(
            types.into_iter().collect::<Vec<_>>(),
            ["dir.created", "file.available"]
        );
    }

    #[test]
    fn types_refuse_unknown_and_internal_names() {
        for bad in [
            "nope",
            "task.requested",
            "subscription.created",
            "io.file-engine.nope.v1",
            "",
        ] {
            assert!(parse_types(vec![bad.into()]).is_err(), "{bad}");
        }
    }
}
