//! Translation of AWS SDK errors into [`StorageError`]s.
//!
//! What an error says: the short context of the operation (`staged upload <id>`,
//! `blob <sha256>`) and S3's error *code* (`NoSuchKey`, `AccessDenied`, …) with the HTTP
//! status. Never the request (headers carry the signature), never the SDK's full error chain
//! (it can quote the endpoint and request details), never S3's free-text message: credentials
//! and presigned URLs cannot reach a log through here.
//!
//! Classification: 404 is `NotFound` except `NoSuchBucket` (a configuration error: the
//! operator named a bucket that is not there, which no retry fixes); 412 (a conditional write
//! found the key) is `AlreadyExists`; 401/403 are configuration errors (credentials or bucket
//! policy); everything else, including timeouts and connection failures, is `Io`, which the
//! worker retries with backoff.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::storage::StorageError;

/// Maps an SDK error of the operation described by `ctx`.
pub(super) fn storage_err<E>(e: SdkError<E, HttpResponse>, ctx: &str) -> StorageError
where
    E: ProvideErrorMetadata,
{
    match &e {
        SdkError::ConstructionFailure(_) => {
            StorageError::Config(format!("{ctx}: the S3 request could not be built"))
        }
        SdkError::TimeoutError(_) => StorageError::Io(format!("{ctx}: S3 request timed out")),
        SdkError::DispatchFailure(d) => {
            let why = if d.is_timeout() {
                "timed out"
            } else if d.is_io() {
                "connection failed"
            } else {
                "request not sent"
            };
            StorageError::Io(format!("{ctx}: S3 unreachable ({why})"))
        }
        SdkError::ResponseError(_) => StorageError::Io(format!("{ctx}: unreadable S3 response")),
        _ => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            classify(ctx, status, e.code())
        }
    }
}

/// The error for an answer of S3 with HTTP `status` and error `code`.
fn classify(ctx: &str, status: Option<u16>, code: Option<&str>) -> StorageError {
    let code_text = code.unwrap_or("no error code");
    match (status, code) {
        (_, Some("NoSuchBucket")) => {
            StorageError::Config(format!("{ctx}: the configured bucket does not exist"))
        }
        (Some(404), _) | (_, Some("NoSuchKey" | "NoSuchUpload" | "NotFound")) => {
            StorageError::NotFound(ctx.to_owned())
        }
        (Some(412), _) | (_, Some("PreconditionFailed")) => {
            StorageError::AlreadyExists(ctx.to_owned())
        }
        (Some(401 | 403), _) => StorageError::Config(format!(
            "{ctx}: S3 refused access ({code_text}): check the credentials and the bucket policy"
        )),
        (Some(status), _) => {
            StorageError::Io(format!("{ctx}: S3 error {code_text} (HTTP {status})"))
        }
        (None, _) => StorageError::Io(format!("{ctx}: S3 error {code_text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_map_onto_storage_errors() {
        let c = "blob x";
        assert_eq!(
            classify(c, Some(404), None),
            StorageError::NotFound(c.into())
        );
        assert_eq!(
            classify(c, Some(404), Some("NoSuchKey")),
            StorageError::NotFound(c.into())
        );
        assert!(matches!(
            classify(c, Some(404), Some("NoSuchBucket")),
            StorageError::Config(_)
        ));
        assert_eq!(
            classify(c, Some(412), Some("PreconditionFailed")),
            StorageError::AlreadyExists(c.into())
        );
        assert!(matches!(
            classify(c, Some(403), Some("AccessDenied")),
            StorageError::Config(_)
        ));
        assert!(matches!(
            classify(c, Some(503), Some("SlowDown")),
            StorageError::Io(m) if m.contains("SlowDown") && m.contains("503")
        ));
    }
}
