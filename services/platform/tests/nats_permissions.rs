//! Least privilege per service user of `nats/accounts.conf`, against a real nats-server
//! started with that file: appends are limited by aggregate type (a leaked scanner or
//! notifier credential cannot forge an ACL grant) and each service may only create, update
//! or pull from its own durable consumer.

use std::time::Duration;

use async_nats::jetstream;
use platform::streams::{self, DurableSpec, StreamSettings};
use testkit::nats::NatsServer;

const USERS: [(&str, &str); 7] = [
    ("FE_NATS_OPS_PASSWORD", "ops-pw"),
    ("FE_NATS_API_PASSWORD", "api-pw"),
    ("FE_NATS_WORKER_PASSWORD", "worker-pw"),
    ("FE_NATS_PROJECTOR_PASSWORD", "projector-pw"),
    ("FE_NATS_SCANNER_PASSWORD", "scanner-pw"),
    ("FE_NATS_NOTIFIER_PASSWORD", "notifier-pw"),
    ("FE_NATS_SYS_PASSWORD", "sys-pw"),
];

async fn server() -> NatsServer {
    let accounts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../nats/accounts.conf");
    NatsServer::start_with_config(&accounts, &USERS)
        .await
        .unwrap()
}

async fn js_as(server: &NatsServer, user: &str) -> jetstream::Context {
    let client =
        async_nats::ConnectOptions::with_user_and_password(user.to_owned(), format!("{user}-pw"))
            .connect(server.url.clone())
            .await
            .unwrap();
    // Refused requests get no answer: keep the wait short.
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(500))
        .build(client)
}

/// Whether `js` can append one message on `subject` (JetStream acknowledged it).
async fn appends(js: &jetstream::Context, subject: &str) -> bool {
    match js.publish(subject.to_owned(), "{}".into()).await {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    }
}

/// Whether a message is stored on `subject` (read as ops).
async fn stored(ops: &jetstream::Context, subject: &str) -> bool {
    let stream = ops.get_stream(streams::EVENTS_STREAM).await.unwrap();
    stream
        .get_last_raw_message_by_subject(subject)
        .await
        .is_ok()
}

#[tokio::test]
async fn appends_are_limited_to_each_service_s_aggregate_types() {
    let server = server().await;
    let ops = js_as(&server, "ops").await;
    streams::ensure_event_stream(&ops, &StreamSettings::default())
        .await
        .unwrap();
    let grant = "fe.ev.acme.acl.acme";
    for user in ["scanner", "notifier", "worker", "projector"] {
        let js = js_as(&server, user).await;
        assert!(!appends(&js, grant).await, "{user} forged an ACL grant");
    }
    assert!(
        !stored(&ops, grant).await,
        "a refused grant must not be stored"
    );
    let allowed = [
        ("scanner", "fe.ev.acme.task.t1", true),
        ("scanner", "fe.ev.acme.subscription.s1", false),
        ("worker", "fe.ev.acme.task.t2", true),
        ("worker", "fe.ev.acme.subscription.s2", false),
        ("notifier", "fe.ev.acme.subscription.s3", true),
        ("notifier", "fe.ev.acme.task.t3", false),
        ("projector", "fe.ev.acme.task.t4", false),
        ("api", "fe.ev.acme.acl.acme", true),
        ("api", "fe.ev.acme.task.t5", true),
    ];
    for (user, subject, expected) in allowed {
        let js = js_as(&server, user).await;
        assert_eq!(appends(&js, subject).await, expected, "{user} on {subject}");
        assert_eq!(stored(&ops, subject).await, expected, "{user} on {subject}");
    }
}

fn durable(name: &'static str) -> DurableSpec {
    DurableSpec {
        name,
        ..streams::worker_consumer()
    }
}

#[tokio::test]
async fn each_service_may_only_manage_and_pull_its_own_durable_consumer() {
    let server = server().await;
    let ops = js_as(&server, "ops").await;
    streams::ensure_event_stream(&ops, &StreamSettings::default())
        .await
        .unwrap();
    let owners = [
        ("worker", "fe-worker"),
        ("scanner", "fe-scanner"),
        ("notifier", "fe-notifier"),
    ];
    for (user, own) in owners {
        let js = js_as(&server, user).await;
        let stream = js.get_stream(streams::EVENTS_STREAM).await.unwrap();
        streams::ensure_durable(&stream, &durable(own))
            .await
            .unwrap_or_else(|e| panic!("{user} on its own {own}: {e}"));
    }
    // A pending message on every durable, so that a pull would have something to take.
    assert!(appends(&ops, "fe.ev.acme.task.pending").await);
    // Everybody else's durable consumer is out of reach: no update, no delete, no pulling.
    for (user, _) in owners.iter().chain(&[("api", ""), ("projector", "")]) {
        let js = js_as(&server, user).await;
        let stream = js.get_stream(streams::EVENTS_STREAM).await.unwrap();
        for (owner, other) in owners {
            if owner == *user {
                continue;
            }
            let mut changed = durable(other);
            changed.max_deliver = 1;
            assert!(
                streams::ensure_durable(&stream, &changed).await.is_err(),
                "{user} updated {other}"
            );
            assert!(
                stream.delete_consumer(other).await.is_err(),
                "{user} deleted {other}"
            );
            let foreign = js
                .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(
                    other,
                    streams::EVENTS_STREAM,
                )
                .await;
            if let Ok(foreign) = foreign {
                let batch = foreign
                    .fetch()
                    .max_messages(1)
                    .expires(Duration::from_millis(200))
                    .messages()
                    .await;
                let pulled = match batch {
                    Ok(mut messages) => {
                        use futures::StreamExt;
                        matches!(
                            tokio::time::timeout(Duration::from_secs(2), messages.next()).await,
                            Ok(Some(Ok(_)))
                        )
                    }
                    Err(_) => false,
                };
                assert!(!pulled, "{user} pulled from {other}");
            }
            // The owner's consumer is untouched and still holds its message.
            let mut consumer: jetstream::consumer::PullConsumer = ops
                .get_consumer_from_stream(other, streams::EVENTS_STREAM)
                .await
                .unwrap();
            let info = consumer.info().await.unwrap();
            assert_eq!(
                info.config.max_deliver,
                durable(other).max_deliver,
                "{other}"
            );
            assert_eq!(info.num_pending + info.num_ack_pending as u64, 1, "{other}");
        }
    }
}
