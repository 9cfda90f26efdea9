//! Stream and consumer definitions as code, applied idempotently at start
//! (`file-engine migrate` or on boot).
//!
//! The event stream is the audit trail, so its protective settings are verified, not assumed:
//! after applying, the configuration the server echoes is compared with the declared one, and
//! a server that silently dropped `deny_delete` / `deny_purge` (older servers ignore settings
//! they do not know, INFRA.md) stops the service with [`StreamError::SettingIgnored`].
//!
//! Consumer redelivery: nats-server replaces a consumer's `ack_wait` with `backoff[0]` whenever
//! `backoff` is set, and applies `backoff` only to ack timeouts, never to naks. A spec whose
//! `backoff[0]` differs from its `ack_wait` would therefore not do what it says, and
//! [`ensure_durable`] refuses it. Consumers retry with `Nak(delay)` through
//! [`crate::consumer`] and keep `backoff` empty.

use std::time::Duration;

use async_nats::jetstream::consumer::{self, pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::CreateStreamErrorKind;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::Context;

/// The domain event stream.
pub const EVENTS_STREAM: &str = "FE_EVENTS";
/// Subjects captured by [`EVENTS_STREAM`]: `fe.ev.<tenant>.<aggregate type>.<id>`.
pub const EVENTS_SUBJECTS: &str = "fe.ev.>";
/// Window in which JetStream drops a message whose `Nats-Msg-Id` it has already stored.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("stream {stream}: {reason}")]
    Apply { stream: String, reason: String },
    #[error(
        "stream {stream} exists with settings the server will not change in place ({reason}); \
         migrate it explicitly (e.g. storage type, or replicas on a single server)"
    )]
    Incompatible { stream: String, reason: String },
    #[error("the server did not keep `{setting}` on stream {stream}; refusing to run without it (server too old?)")]
    SettingIgnored {
        stream: String,
        setting: &'static str,
    },
    #[error("consumer {name}: {reason}")]
    Consumer { name: String, reason: String },
    #[error("consumer spec {name} is invalid: {reason}")]
    InvalidSpec { name: String, reason: String },
}

/// Settings of the event stream that differ between deployments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// 1 for a single server, 3 for the cluster of `nats/cluster-node.conf`.
    pub replicas: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings { replicas: 1 }
    }
}

/// The declared configuration of [`EVENTS_STREAM`].
pub fn event_stream_config(settings: &StreamSettings) -> stream::Config {
    stream::Config {
        name: EVENTS_STREAM.to_string(),
        description: Some("File Engine domain events: the audit trail; never delete".into()),
        subjects: vec![EVENTS_SUBJECTS.to_string()],
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        num_replicas: settings.replicas,
        duplicate_window: DUPLICATE_WINDOW,
        deny_delete: true,
        deny_purge: true,
        allow_rollup: false,
        allow_direct: true,
        // No max_age / max_messages / max_bytes: 0 means unlimited.
        ..Default::default()
    }
}

/// Creates [`EVENTS_STREAM`] or updates it to the declared configuration, then verifies what
/// the server echoes.
pub async fn ensure_event_stream(
    js: &Context,
    settings: &StreamSettings,
) -> Result<stream::Stream, StreamError> {
    let declared = event_stream_config(settings);
    let stream_err = |reason: String| StreamError::Apply {
        stream: EVENTS_STREAM.to_string(),
        reason,
    };
    let info = match js.update_stream(&declared).await {
        Ok(info) => info,
        Err(e) if e.kind() == CreateStreamErrorKind::NotFound => js
            .create_stream(declared.clone())
            .await
            .map_err(|e| stream_err(e.to_string()))?
            .cached_info()
            .clone(),
        // The stream exists and the server refused the declared configuration.
        Err(e) if matches!(e.kind(), CreateStreamErrorKind::JetStream(_)) => {
            return Err(StreamError::Incompatible {
                stream: EVENTS_STREAM.to_string(),
                reason: e.to_string(),
            })
        }
        Err(e) => return Err(stream_err(e.to_string())),
    };
    verify_echoed(&declared, &info.config)?;
    js.get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| stream_err(e.to_string()))
}

/// Checks that [`EVENTS_STREAM`] exists with the declared protections, without changing it:
/// for services whose NATS user may not create or update streams (`nats/accounts.conf`);
/// `file-engine migrate` applies the configuration as `ops` with [`ensure_event_stream`].
pub async fn verify_event_stream(
    js: &Context,
    settings: &StreamSettings,
) -> Result<stream::Stream, StreamError> {
    let declared = event_stream_config(settings);
    let stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| StreamError::Apply {
            stream: EVENTS_STREAM.to_string(),
            reason: format!("{e} (has `file-engine migrate` run?)"),
        })?;
    verify_echoed(&declared, &stream.cached_info().config)?;
    Ok(stream)
}

/// Every protective setting must be present in the configuration the server echoes.
fn verify_echoed(declared: &stream::Config, echoed: &stream::Config) -> Result<(), StreamError> {
    let checks: [(&'static str, bool); 8] = [
        ("deny_delete", echoed.deny_delete),
        ("deny_purge", echoed.deny_purge),
        ("allow_direct", echoed.allow_direct),
        ("allow_rollup_hdrs = false", !echoed.allow_rollup),
        ("storage = file", echoed.storage == StorageType::File),
        ("max_age = 0", echoed.max_age.is_zero()),
        (
            "duplicate_window",
            echoed.duplicate_window == declared.duplicate_window,
        ),
        ("subjects", echoed.subjects == declared.subjects),
    ];
    match checks.iter().find(|(_, ok)| !ok) {
        Some((setting, _)) => Err(StreamError::SettingIgnored {
            stream: declared.name.clone(),
            setting,
        }),
        None => Ok(()),
    }
}

/// A durable pull consumer with explicit ack on the events stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableSpec {
    pub name: &'static str,
    pub filter_subject: String,
    /// How long a delivery may stay unacknowledged; long effects send `Progress`.
    pub ack_wait: Duration,
    /// Deliveries after which the message is given up on (the worker dead-letters it).
    pub max_deliver: i64,
    /// Server-side redelivery delays after ack timeouts; empty, or starting with `ack_wait`.
    pub backoff: Vec<Duration>,
    pub max_ack_pending: i64,
}

impl DurableSpec {
    fn check(&self) -> Result<(), StreamError> {
        let invalid = |reason: &str| StreamError::InvalidSpec {
            name: self.name.to_string(),
            reason: reason.to_string(),
        };
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid("name must be ASCII letters, digits, - and _"));
        }
        if self.ack_wait.is_zero() || self.max_deliver == 0 || self.max_ack_pending <= 0 {
            return Err(invalid(
                "ack_wait, max_deliver and max_ack_pending must be set",
            ));
        }
        if self
            .backoff
            .first()
            .is_some_and(|first| *first != self.ack_wait)
        {
            return Err(invalid(
                "the server replaces ack_wait with backoff[0]: they must be equal",
            ));
        }
        if self.max_deliver > 0 && self.backoff.len() as i64 > self.max_deliver {
            return Err(invalid("more backoff steps than deliveries"));
        }
        Ok(())
    }

    fn config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.name.to_string()),
            name: Some(self.name.to_string()),
            filter_subject: self.filter_subject.clone(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            backoff: self.backoff.clone(),
            max_ack_pending: self.max_ack_pending,
            ..Default::default()
        }
    }
}

/// Creates the durable consumer or updates it to `spec`, and checks what the server echoes.
pub async fn ensure_durable(
    stream: &stream::Stream,
    spec: &DurableSpec,
) -> Result<PullConsumer, StreamError> {
    spec.check()?;
    let consumer_err = |reason: String| StreamError::Consumer {
        name: spec.name.to_string(),
        reason,
    };
    let consumer: PullConsumer = stream
        .create_consumer(spec.config())
        .await
        .map_err(|e| consumer_err(e.to_string()))?;
    let echoed: &consumer::Config = &consumer.cached_info().config;
    let kept = echoed.ack_wait == spec.ack_wait
        && echoed.max_deliver == spec.max_deliver
        && echoed.backoff == spec.backoff
        && echoed.max_ack_pending == spec.max_ack_pending
        && echoed.filter_subject == spec.filter_subject
        && echoed.ack_policy == AckPolicy::Explicit;
    if !kept {
        return Err(consumer_err(
            "the server kept a different configuration than declared".into(),
        ));
    }
    Ok(consumer)
}

/// The worker's consumer: every task event of every tenant.
///
/// `backoff` is empty on purpose: with a backoff the server would replace the 60 s `ack_wait`
/// by its first step, and long effects would be redelivered while still running. The worker
/// retries transient failures with `Nak(delay)` instead. Work that waits (for its turn, a
/// tenant slot or the projection) is set aside in PostgreSQL and its delivery acknowledged, so
/// `max_ack_pending` counts only deliveries being handled and transient retries; `max_deliver`
/// is unlimited: the worker counts failed attempts itself and dead-letters after its limit.
pub fn worker_consumer() -> DurableSpec {
    DurableSpec {
        name: "fe-worker",
        filter_subject: "fe.ev.*.task.>".to_string(),
        ack_wait: Duration::from_secs(60),
        max_deliver: -1,
        backoff: Vec::new(),
        max_ack_pending: WORKER_MAX_ACK_PENDING,
    }
}

/// Deliveries of all tenants that may be in hand or waiting for a retry after a transient
/// failure at once before JetStream stops delivering new ones to the workers.
pub const WORKER_MAX_ACK_PENDING: i64 = 20_000;

/// The version the server announced when the client connected, e.g. `2.15.1`.
pub async fn server_version(client: &async_nats::Client) -> String {
    client.server_info().version
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_spec_is_valid_and_keeps_its_ack_wait() {
        let spec = worker_consumer();
        spec.check().unwrap();
        assert_eq!(spec.config().ack_wait, Duration::from_secs(60));
    }

    #[test]
    fn backoff_that_would_override_ack_wait_is_refused() {
        let mut spec = worker_consumer();
        spec.backoff = vec![Duration::from_secs(1), Duration::from_secs(2)];
        assert!(matches!(spec.check(), Err(StreamError::InvalidSpec { .. })));
        spec.backoff = vec![Duration::from_secs(60), Duration::from_secs(120)];
        spec.check().unwrap();
    }

    #[test]
    fn declared_stream_protects_the_log() {
        let config = event_stream_config(&StreamSettings::default());
        assert!(config.deny_delete && config.deny_purge && !config.allow_rollup);
        assert_eq!(config.max_age, Duration::ZERO);
        assert_eq!(config.num_replicas, 1);
        verify_echoed(&config, &config).unwrap();
        let mut dropped = config.clone();
        dropped.deny_purge = false;
        assert!(matches!(
            verify_echoed(&config, &dropped),
            Err(StreamError::SettingIgnored {
                setting: "deny_purge",
                ..
            })
        ));
    }
}
