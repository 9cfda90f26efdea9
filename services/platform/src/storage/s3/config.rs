//! Configuration of [`super::S3Storage`]: parsing `FE_STORAGE=s3://bucket[/prefix]` and the
//! standard `AWS_*` variables, and building the SDK client (timeouts, retries) from them.
//!
//! The client is built directly from `aws_sdk_s3::config::Builder` rather than `aws-config`:
//! credentials come from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`
//! only (no profile files, no instance metadata, no web identity), which keeps the dependency
//! tree small and makes the credential source explicit. Building is synchronous, so
//! `from_config` stays synchronous; nothing is sent until the first request.

use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, ResponseChecksumValidation};

use crate::storage::StorageError;

/// Bytes buffered per multipart part: the memory bound of one upload in flight. S3 wants at
/// least 5 MiB per part except the last, and at most 10 000 parts (80 GiB at 8 MiB).
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// S3's minimum size of a part that is not the last.
pub const MIN_PART_SIZE: usize = 5 << 20;
/// The largest object one `CopyObject` may copy on S3; larger ones are copied in parts.
pub const MAX_SINGLE_COPY: u64 = 5 << 30;
/// Region when neither `AWS_REGION` nor `AWS_DEFAULT_REGION` is set.
const DEFAULT_REGION: &str = "us-east-1";
/// Establishing a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One attempt of one request, up to its response headers (a whole part upload included).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);
/// One request with its retries. Streamed response bodies are not covered: a stalled
/// download is ended by the SDK's stalled-stream protection instead.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);
/// Attempts per request (standard retry mode: exponential backoff with jitter, throttling and
/// 5xx and connection errors retried); the worker retries whole tasks on top of this.
const MAX_ATTEMPTS: u32 = 4;

/// Everything needed to reach the bucket. `Debug` never shows the secret key or the session
/// token (the SDK's `Credentials` redacts them).
#[derive(Clone, Debug)]
pub struct S3Settings {
    pub bucket: String,
    /// Key prefix of everything this platform stores, empty or ending with `/`.
    pub prefix: String,
    pub region: String,
    /// An S3-compatible endpoint (`FE_S3_ENDPOINT`); `None` = AWS.
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    pub credentials: Credentials,
    /// See [`DEFAULT_PART_SIZE`]; never below [`MIN_PART_SIZE`].
    pub part_size: usize,
    /// Objects larger than this are copied in parts ([`MAX_SINGLE_COPY`]; tests lower it).
    pub copy_limit: u64,
}

impl S3Settings {
    /// Parses `s3://bucket[/prefix]` with the process environment.
    pub fn from_env(spec: &str) -> Result<Self, StorageError> {
        Self::parse(spec, env_var)
    }

    /// Parses `s3://bucket[/prefix]`, reading variables through `var` (tests pass their own).
    pub fn parse(spec: &str, var: impl Fn(&str) -> Option<String>) -> Result<Self, StorageError> {
        let rest = spec.strip_prefix("s3://").ok_or_else(|| {
            StorageError::Config("FE_STORAGE for S3 must start with s3://".into())
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StorageError::Config(
                "FE_STORAGE=s3:// needs a bucket".into(),
            ));
        }
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok {
            return Err(StorageError::Config(
                "FE_STORAGE: the bucket name must be 3-63 characters of a-z, 0-9, '.', '-'".into(),
            ));
        }
        let prefix = parse_prefix(prefix)?;
        let (Some(key_id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(StorageError::Config(
                "FE_STORAGE=s3:// needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            ));
        };
        let credentials = Credentials::new(
            key_id,
            secret,
            var("AWS_SESSION_TOKEN"),
            None,
            "file-engine-environment",
        );
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let endpoint = var("FE_S3_ENDPOINT")
            .or_else(|| var("AWS_ENDPOINT_URL_S3"))
            .or_else(|| var("AWS_ENDPOINT_URL"));
        if let Some(e) = &endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(StorageError::Config(
                    "FE_S3_ENDPOINT must be an http:// or https:// URL".into(),
                ));
            }
        }
        // S3-compatible servers rarely have wildcard DNS for virtual-hosted buckets; AWS
        // itself prefers virtual-hosted style.
        let force_path_style = match var("FE_S3_FORCE_PATH_STYLE").as_deref() {
            None => endpoint.is_some(),
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(_) => {
                return Err(StorageError::Config(
                    "FE_S3_FORCE_PATH_STYLE must be true or false".into(),
                ))
            }
        };
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix,
            region,
            endpoint,
            force_path_style,
            credentials,
            part_size: DEFAULT_PART_SIZE,
            copy_limit: MAX_SINGLE_COPY,
        })
    }

    /// The same settings with another part size (at least [`MIN_PART_SIZE`]).
    pub fn with_part_size(mut self, part_size: usize) -> Self {
        self.part_size = part_size.max(MIN_PART_SIZE);
        self
    }

    /// The same settings with another single-copy limit (at most [`MAX_SINGLE_COPY`]), so
    /// that tests can exercise the multipart copy with small objects.
    pub fn with_copy_limit(mut self, limit: u64) -> Self {
        self.copy_limit = limit.min(MAX_SINGLE_COPY);
        self
    }

    /// The SDK client for these settings.
    pub(super) fn client(&self) -> aws_sdk_s3::Client {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let mut builder = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(self.credentials.clone())
            .force_path_style(self.force_path_style)
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            // Whole-object reads ask for the checksum themselves (`ChecksumMode::Enabled`);
            // ranged reads must not: S3 sends none for a range, and a server that sends the
            // whole object's (moto) would fail every ranged read.
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        aws_sdk_s3::Client::from_conf(builder.build())
    }
}

/// A variable of the process environment; blank counts as unset (as for every `FE_*`).
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `a/b` (or `a/b/`) → `a/b/`; empty → empty. Segments are restricted to `[A-Za-z0-9._-]`
/// (no `.`/`..`, no empty segment), so keys never need escaping, not even in `CopySource`.
fn parse_prefix(prefix: &str) -> Result<String, StorageError> {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return Ok(String::new());
    }
    let ok = prefix.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    });
    if !ok {
        return Err(StorageError::Config(
            "FE_STORAGE: the S3 prefix must be segments of A-Z, a-z, 0-9, '.', '_', '-'".into(),
        ));
    }
    Ok(format!("{prefix}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const CREDS: [(&str, &str); 2] = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "very-secret-key"),
    ];

    #[test]
    fn bucket_prefix_region_endpoint_and_path_style() {
        let s = S3Settings::parse("s3://files/prod/eu", env(&CREDS)).unwrap();
        assert_eq!(
            (s.bucket.as_str(), s.prefix.as_str()),
            ("files", "prod/eu/")
        );
        assert_eq!(s.region, "us-east-1");
        assert_eq!(s.endpoint, None);
        assert!(!s.force_path_style, "AWS itself: virtual-hosted style");
        assert_eq!(s.part_size, DEFAULT_PART_SIZE);

        let mut vars = CREDS.to_vec();
        vars.extend([
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("FE_S3_ENDPOINT", "http://127.0.0.1:9000"),
        ]);
        let s = S3Settings::parse("s3://files/", env(&vars)).unwrap();
        assert_eq!(s.prefix, "");
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s.force_path_style, "an endpoint defaults to path style");
        vars.extend([
            ("AWS_REGION", "eu-central-1"),
            ("FE_S3_FORCE_PATH_STYLE", "false"),
        ]);
        let s = S3Settings::parse("s3://files", env(&vars)).unwrap();
        assert_eq!(s.region, "eu-central-1");
        assert!(!s.force_path_style);
        assert_eq!(s.with_part_size(1).part_size, MIN_PART_SIZE);
    }

    #[test]
    fn bad_specs_and_missing_credentials_are_config_errors() {
        for spec in [
            "s3://",
            "s3:///prefix",
            "s3://UPPER",
            "s3://b",
            "s3://bucket/../up",
            "s3://bucket/a//b",
            "s3://bucket/a b",
            "s3://bucket/a?x",
        ] {
            assert!(
                matches!(
                    S3Settings::parse(spec, env(&CREDS)),
                    Err(StorageError::Config(_))
                ),
                "{spec} accepted"
            );
        }
        assert!(matches!(
            S3Settings::parse("s3://bucket", env(&CREDS[..1])),
            Err(StorageError::Config(_))
        ));
        let mut vars = CREDS.to_vec();
        vars.push(("FE_S3_ENDPOINT", "127.0.0.1:9000"));
        assert!(S3Settings::parse("s3://bucket", env(&vars)).is_err());
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let mut vars = CREDS.to_vec();
        vars.push(("AWS_SESSION_TOKEN", "session-token-value"));
        let s = S3Settings::parse("s3://bucket", env(&vars)).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("very-secret-key"), "{shown}");
        assert!(!shown.contains("session-token-value"), "{shown}");
    }
}
