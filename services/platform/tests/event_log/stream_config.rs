//! The event stream's configuration and protections, durable consumers, and the NATS user
//! permissions of `nats/accounts.conf`.

use std::time::Duration;

use async_nats::jetstream;
use platform::event_log::EventLog;
use platform::streams::{self, StreamSettings};
use testkit::nats::NatsServer;

use crate::support::*;

#[tokio::test]
async fn the_stream_refuses_purge_and_delete() {
    let h = harness().await;
    let seq = add(&h.log, "acme.keep", 1).await;
    let mut stream = streams::ensure_event_stream(&h.js, &StreamSettings::default())
        .await
        .unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert!(config.deny_delete && config.deny_purge && config.allow_direct && !config.allow_rollup);
    assert_eq!(config.duplicate_window, Duration::from_secs(120));
    assert!(stream.purge().await.is_err(), "purge must be refused");
    assert!(
        stream.delete_message(seq).await.is_err(),
        "delete must be refused"
    );
    // Once set, the server refuses to take either protection away again (2.9 and 2.15).
    for unset_purge in [true, false] {
        let mut relaxed = streams::event_stream_config(&StreamSettings::default());
        relaxed.deny_purge = !unset_purge;
        relaxed.deny_delete = unset_purge;
        assert!(h.js.update_stream(&relaxed).await.is_err());
    }
    let loaded = h.log.load::<Counter>("acme.keep").await.unwrap();
    assert_eq!((loaded.sequence, h.message_count().await), (1, 1));
}

#[tokio::test]
async fn an_incompatible_existing_stream_is_reported() {
    let server = NatsServer::start().await.unwrap();
    let js = jetstream::new(server.client().await.unwrap());
    let mut memory = streams::event_stream_config(&StreamSettings::default());
    memory.storage = jetstream::stream::StorageType::Memory;
    js.create_stream(memory).await.unwrap();
    let err = streams::ensure_event_stream(&js, &StreamSettings::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, streams::StreamError::Incompatible { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn durable_consumers_are_applied_idempotently() {
    let h = harness().await;
    let stream = h.js.get_stream(streams::EVENTS_STREAM).await.unwrap();
    let mut spec = streams::worker_consumer();
    let consumer = streams::ensure_durable(&stream, &spec).await.unwrap();
    assert_eq!(
        consumer.cached_info().config.ack_wait,
        Duration::from_secs(60)
    );
    streams::ensure_durable(&stream, &spec).await.unwrap();
    spec.max_ack_pending = 64;
    let updated = streams::ensure_durable(&stream, &spec).await.unwrap();
    assert_eq!(updated.cached_info().config.max_ack_pending, 64);
    spec.backoff = vec![Duration::from_secs(1)];
    assert!(streams::ensure_durable(&stream, &spec).await.is_err());

    // Why such a spec is refused: the server silently replaces ack_wait by backoff[0].
    let raw = jetstream::consumer::pull::Config {
        durable_name: Some("raw-backoff".into()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(60),
        max_deliver: 10,
        backoff: vec![Duration::from_secs(1), Duration::from_secs(2)],
        ..Default::default()
    };
    let created = stream.create_consumer(raw).await.unwrap();
    assert_eq!(
        created.cached_info().config.ack_wait,
        Duration::from_secs(1)
    );
}

#[tokio::test]
async fn service_users_of_nats_accounts_conf_cannot_tamper_with_the_log() {
    let accounts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../nats/accounts.conf");
    let env = [
        ("FE_NATS_OPS_PASSWORD", "ops-pw"),
        ("FE_NATS_API_PASSWORD", "api-pw"),
        ("FE_NATS_WORKER_PASSWORD", "worker-pw"),
        ("FE_NATS_PROJECTOR_PASSWORD", "projector-pw"),
        ("FE_NATS_SCANNER_PASSWORD", "scanner-pw"),
        ("FE_NATS_NOTIFIER_PASSWORD", "notifier-pw"),
        ("FE_NATS_SYS_PASSWORD", "sys-pw"),
    ];
    let server = NatsServer::start_with_config(&accounts, &env)
        .await
        .unwrap();
    let js_as = |user: &'static str, password: &'static str| {
        let url = server.url.clone();
        async move {
            let client =
                async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
                    .connect(url)
                    .await
                    .unwrap();
            // Refused requests get no answer: keep the wait short.
            jetstream::ContextBuilder::new()
                .timeout(Duration::from_millis(500))
                .build(client)
        }
    };
    let ops = js_as("ops", "ops-pw").await;
    streams::ensure_event_stream(&ops, &StreamSettings::default())
        .await
        .unwrap();

    // The services can do their work: append, load (12 commits: through a consumer), durables.
    let api = js_as("api", "api-pw").await;
    let api_log = EventLog::new(api.clone());
    for _ in 0..12 {
        add(&api_log, "acme.perm", 1).await;
    }
    let projector_log = EventLog::new(js_as("projector", "projector-pw").await);
    assert_eq!(
        projector_log
            .load::<Counter>("acme.perm")
            .await
            .unwrap()
            .aggregate
            .value,
        12
    );
    assert!(
        projector_log
            .append(&[added("acme.perm", 13, 1)])
            .await
            .is_err(),
        "projector must not write"
    );
    let worker = js_as("worker", "worker-pw").await;
    let worker_stream = worker.get_stream(streams::EVENTS_STREAM).await.unwrap();
    streams::verify_event_stream(&worker, &StreamSettings::default())
        .await
        .unwrap();
    streams::ensure_durable(&worker_stream, &streams::worker_consumer())
        .await
        .unwrap();

    // No service can purge or delete messages; api (same permissions as worker) cannot
    // reconfigure or delete the stream either.
    let refused = |js: &jetstream::Context| {
        let js = js.clone();
        async move {
            let stream = js.get_stream(streams::EVENTS_STREAM).await.unwrap();
            stream.purge().await.is_err() && stream.delete_message(1).await.is_err()
        }
    };
    assert!(refused(&api).await && refused(projector_log.jetstream()).await);
    let mut aged = streams::event_stream_config(&StreamSettings::default());
    aged.max_age = Duration::from_secs(1);
    assert!(api.update_stream(&aged).await.is_err());
    assert!(api.delete_stream(streams::EVENTS_STREAM).await.is_err());
    assert_eq!(
        api_log.load::<Counter>("acme.perm").await.unwrap().sequence,
        12
    );
    // Only permissions stand between a user and deleting the stream: ops can.
    assert!(
        ops.delete_stream(streams::EVENTS_STREAM)
            .await
            .unwrap()
            .success
    );
}
