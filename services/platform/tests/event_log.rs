//! The JetStream event log against a real, spawned nats-server (testkit).
//!
//! A tiny counter aggregate (`event_log/support.rs`) stands in for the domain; each test owns
//! its server, so tests run in parallel. Stream and consumer configuration, and the NATS user
//! permissions of `nats/accounts.conf`, are tested in `event_log/stream_config.rs`. Run against
//! the Debian 2.9 server too: `FE_TEST_NATS_SERVER=/usr/sbin/nats-server`.

#[path = "event_log/stream_config.rs"]
mod stream_config;
#[path = "event_log/support.rs"]
mod support;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use async_nats::jetstream;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore, PersistenceError};
use cqrs_es::CqrsFramework;
use futures::StreamExt;
use platform::event_log::{self, EventLog, EventLogError, ExecuteError, LoggedCommit};
use platform::streams;
use support::*;

// ---- tests --------------------------------------------------------------------------------

#[tokio::test]
async fn round_trip_restores_state_and_writes_headers() {
    let h = harness().await;
    let tenant = events::TenantId::parse("acme").unwrap();
    let id = event_log::aggregate_id(&tenant, "c1");
    let first = add(&h.log, &id, 2).await;
    let second = h
        .log
        .execute::<Counter>(
            &id,
            CounterCommand::Add(3),
            &Interloper::default(),
            metadata(),
        )
        .await
        .unwrap();
    assert_eq!(second.aggregate.value, 5);
    assert_eq!(second.events, vec![CounterEvent::Added { by: 3 }]);
    let second_seq = second.stream_seq.unwrap();

    let loaded = h.log.load::<Counter>(&id).await.unwrap();
    assert_eq!(
        (
            loaded.aggregate.value,
            loaded.sequence,
            loaded.last_stream_seq
        ),
        (5, 2, second_seq)
    );
    let fresh = h.log.load::<Counter>("acme.unknown").await.unwrap();
    assert_eq!(
        (fresh.aggregate, fresh.sequence, fresh.last_stream_seq),
        (Counter::default(), 0, 0)
    );

    let stream = h.js.get_stream(streams::EVENTS_STREAM).await.unwrap();
    let raw = stream.get_raw_message(second_seq).await.unwrap();
    assert_eq!(raw.subject.as_str(), "fe.ev.acme.counter.c1");
    let header = |name: &str| raw.headers.get(name).map(|v| v.as_str().to_string());
    assert_eq!(header("Nats-Msg-Id").as_deref(), Some("counter:acme.c1:2"));
    assert_eq!(
        header("Nats-Expected-Last-Subject-Sequence"),
        Some(first.to_string())
    );
    assert_eq!(header("Fe-Aggregate-Type").as_deref(), Some("counter"));
    assert_eq!(header("Fe-Event-Types").as_deref(), Some("Added"));
    assert_eq!(header("Fe-Request-Id").as_deref(), Some("req-1"));
    assert_eq!(header("Fe-Principal").as_deref(), Some("alice"));
    assert!(header("traceparent").unwrap().starts_with("00-0af765"));

    // Projectors read the same commit through a consumer.
    let consumer = h.consumer("fe.ev.*.counter.>").await;
    let mut batch = consumer.fetch().max_messages(2).messages().await.unwrap();
    let mut logged = Vec::new();
    while let Some(msg) = batch.next().await {
        logged.push(LoggedCommit::from_message(&msg.unwrap()).unwrap());
    }
    assert_eq!(logged.len(), 2);
    let last = &logged[1];
    assert_eq!(
        (
            last.stream_seq,
            last.tenant.as_str(),
            last.aggregate_id.as_str()
        ),
        (second_seq, "acme", "acme.c1")
    );
    assert_eq!(last.headers.principal.as_deref(), Some("alice"));
    assert_eq!(last.events[0].sequence, 2);
    assert!((chrono::Utc::now() - last.time).num_seconds().abs() < 60);
}

#[tokio::test]
async fn cqrs_es_framework_runs_on_the_log() {
    let h = harness().await;
    let store = PersistedEventStore::<EventLog, Counter>::new_event_store(h.log.clone());
    let cqrs = CqrsFramework::new(store, vec![], Interloper::default());
    for by in [1, 2, 3] {
        cqrs.execute("acme.fw", CounterCommand::Add(by))
            .await
            .unwrap();
    }
    cqrs.execute("acme.fw", CounterCommand::Nothing)
        .await
        .unwrap();
    assert_eq!(
        h.log
            .load::<Counter>("acme.fw")
            .await
            .unwrap()
            .aggregate
            .value,
        6
    );
    let tail = h
        .log
        .get_last_events::<Counter>("acme.fw", 1)
        .await
        .unwrap();
    assert_eq!(tail.iter().map(|e| e.sequence).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(
        h.log.get_snapshot::<Counter>("acme.fw").await.unwrap(),
        None
    );

    add(&h.log, "other.x", 10).await;
    let mut replay = h.log.stream_all_events::<Counter>().await.unwrap();
    let mut total = 0;
    while let Some(event) = replay.next::<Counter>(&[]).await {
        let CounterEvent::Added { by } = event.unwrap().payload;
        total += by;
    }
    assert_eq!(
        total, 16,
        "all counters of all tenants, then the stream ends"
    );
}

#[tokio::test]
async fn one_commit_is_one_message_holding_all_its_events() {
    let h = harness().await;
    let done = h
        .log
        .execute::<Counter>(
            "acme.three",
            CounterCommand::AddThree,
            &Interloper::default(),
            HashMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(done.events.len(), 3);
    assert_eq!(h.message_count().await, 1);
    let stream = h.js.get_stream(streams::EVENTS_STREAM).await.unwrap();
    let raw = stream
        .get_raw_message(done.stream_seq.unwrap())
        .await
        .unwrap();
    let commit: event_log::Commit = serde_json::from_slice(&raw.payload).unwrap();
    assert_eq!(
        commit.events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        raw.headers.get("Fe-Event-Types").unwrap().as_str(),
        "Added,Added,Added"
    );
    let loaded = h.log.load::<Counter>("acme.three").await.unwrap();
    assert_eq!((loaded.aggregate.value, loaded.sequence), (6, 3));

    // No events, no message; a refused command writes nothing either.
    let none = h
        .log
        .execute::<Counter>(
            "acme.three",
            CounterCommand::Nothing,
            &Interloper::default(),
            HashMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(none.stream_seq, None);
    let refused = h
        .log
        .execute::<Counter>(
            "acme.three",
            CounterCommand::Refuse,
            &Interloper::default(),
            HashMap::new(),
        )
        .await;
    assert!(matches!(refused, Err(ExecuteError::Domain(Refused))));
    assert_eq!(h.message_count().await, 1);
}

#[tokio::test]
async fn concurrent_writers_lose_no_increment() {
    const WRITERS: u64 = 4;
    const INCREMENTS: u64 = 10;
    let h = harness().await;
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        // Each writer has its own connection, like separate API replicas.
        let log = EventLog::new(jetstream::new(h.server.client().await.unwrap()));
        tasks.push(tokio::spawn(async move {
            for _ in 0..INCREMENTS {
                add(&log, "acme.hot", 1).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let loaded = h.log.load::<Counter>("acme.hot").await.unwrap();
    assert_eq!(loaded.aggregate.value, WRITERS * INCREMENTS);
    let sequences: Vec<usize> = h
        .log
        .get_events::<Counter>("acme.hot")
        .await
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(
        sequences,
        (1..=(WRITERS * INCREMENTS) as usize).collect::<Vec<_>>()
    );
    assert_eq!(h.message_count().await, WRITERS * INCREMENTS);
}

#[tokio::test]
async fn racing_appends_on_the_same_state_have_one_winner() {
    let h = harness().await;
    // Both commits are built on the same (empty) state and share Nats-Msg-Id "counter:acme.r:1".
    let (one, five) = ([added("acme.r", 1, 1)], [added("acme.r", 1, 5)]);
    let (a, b) = tokio::join!(h.log.append(&one), h.log.append(&five));
    let lost = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Err(PersistenceError::OptimisticLockError)))
        .count();
    assert_eq!(
        (a.is_ok() as u8 + b.is_ok() as u8, lost),
        (1, 1),
        "{a:?} {b:?}"
    );
    // Sequentially, a stale append is refused before it is published.
    let stale = h.log.append(&[added("acme.r", 1, 7)]).await;
    assert!(matches!(stale, Err(PersistenceError::OptimisticLockError)));
    assert_eq!(h.message_count().await, 1);
}

#[tokio::test]
async fn a_commit_slipped_in_between_load_and_append_forces_a_retry() {
    let h = harness().await;
    add(&h.log, "acme.c1", 1).await;
    // The interloper appends sequence 2 after our load; our commit claims sequence 2 too, with
    // the same Nats-Msg-Id and an identical body. nats-server 2.9 answers it as a duplicate of
    // the interloper's message: it must still count as a lost race, and be retried.
    let services = Interloper {
        log: Some(h.log.clone()),
        fired: AtomicBool::new(false),
    };
    let done = h
        .log
        .execute::<Counter>("acme.c1", CounterCommand::Add(5), &services, HashMap::new())
        .await
        .unwrap();
    assert_eq!(done.aggregate.value, 11);
    let loaded = h.log.load::<Counter>("acme.c1").await.unwrap();
    assert_eq!((loaded.aggregate.value, loaded.sequence), (11, 3));
}

#[tokio::test]
async fn commands_on_loaded_state_chain_without_reloading_and_survive_stale_state() {
    let h = harness().await;
    let none = Interloper::default();
    add(&h.log, "acme.on", 1).await;
    let mut loaded = h.log.load::<Counter>("acme.on").await.unwrap();
    // Two commands in a row on the state loaded once: the second builds on the first.
    for by in [2, 3] {
        let cmd = CounterCommand::Add(by);
        let done = h
            .log
            .execute_on("acme.on", &mut loaded, cmd, &none, HashMap::new());
        done.await.unwrap();
    }
    assert_eq!((loaded.aggregate.value, loaded.sequence), (6, 3));
    // Another writer commits meanwhile: the stale state's append is refused by JetStream and
    // the command is decided again on fresh state; nothing is lost or applied twice.
    add(&h.log, "acme.on", 10).await;
    let cmd = CounterCommand::Add(100);
    let done = h
        .log
        .execute_on("acme.on", &mut loaded, cmd, &none, HashMap::new());
    assert_eq!(done.await.unwrap().aggregate.value, 116);
    assert_eq!((loaded.aggregate.value, loaded.sequence), (116, 5));
    let fresh = h.log.load::<Counter>("acme.on").await.unwrap();
    assert_eq!((fresh.aggregate.value, fresh.sequence), (116, 5));
    assert_eq!(fresh.last_stream_seq, loaded.last_stream_seq);
    // A refusal is a refusal on fresh state too.
    let refused = h
        .log
        .execute_on(
            "acme.on",
            &mut loaded,
            CounterCommand::Refuse,
            &none,
            HashMap::new(),
        )
        .await;
    assert!(
        matches!(refused, Err(ExecuteError::Domain(Refused))),
        "{refused:?}"
    );
    assert_eq!(h.message_count().await, 5);
}

#[tokio::test]
async fn aggregates_of_two_types_with_one_id_both_commit_back_to_back() {
    // A tenant's ACL and its subscriptions share the aggregate id (the tenant): the first
    // commit of the second type must not be taken for a retry of the first type's.
    let h = harness().await;
    let counter = h.log.append(&[added("acme.shared", 1, 1)]).await.unwrap();
    let mut other = added("acme.shared", 1, 1);
    other.aggregate_type = "gauge".into();
    let gauge = h.log.append(&[other]).await.unwrap();
    assert_ne!(counter, gauge);
    assert_eq!(h.message_count().await, 2);
    let stream = h.js.get_stream(streams::EVENTS_STREAM).await.unwrap();
    let raw = stream.get_raw_message(gauge).await.unwrap();
    assert_eq!(raw.subject.as_str(), "fe.ev.acme.gauge.shared");
    let id = raw
        .headers
        .get("Nats-Msg-Id")
        .map(|v| v.as_str().to_string());
    assert_eq!(id.as_deref(), Some("gauge:acme.shared:1"));
}

#[tokio::test]
async fn a_retried_publish_is_stored_once() {
    let h = harness().await;
    let commit = [added("acme.d", 1, 4), added("acme.d", 2, 4)];
    let first = h.log.append(&commit).await.unwrap();
    let again = h.log.append(&commit).await.unwrap();
    assert_eq!(first, again);
    // A retry of the very same publish is not stored again: 2.9 answers it as a duplicate
    // of the stored message, newer servers check the (now stale) expected subject sequence
    // first and answer 10071. Our append turns either answer into "already stored".
    let body = serde_json::to_vec(&event_log::Commit {
        events: commit.iter().cloned().map(Into::into).collect(),
    })
    .unwrap();
    let retry = |expected: Option<u64>| {
        let publish = jetstream::message::PublishMessage::build()
            .payload(body.clone().into())
            .message_id("counter:acme.d:1");
        let publish = match expected {
            Some(seq) => publish.expected_last_subject_sequence(seq),
            None => publish,
        };
        let js = h.js.clone();
        async move {
            js.send_publish("fe.ev.acme.counter.d", publish)
                .await
                .unwrap()
                .await
        }
    };
    match retry(Some(0)).await {
        Ok(ack) => assert!(ack.duplicate && ack.sequence == first, "{ack:?}"),
        Err(e) => assert_eq!(
            e.kind(),
            jetstream::context::PublishErrorKind::WrongLastSequence
        ),
    }
    // Without an expectation, the Nats-Msg-Id alone makes JetStream drop it (2 min window).
    let ack = retry(None).await.unwrap();
    assert!(ack.duplicate && ack.sequence == first, "{ack:?}");
    assert_eq!(h.message_count().await, 1);
}

#[tokio::test]
async fn acknowledged_commits_survive_kill_9() {
    let mut h = harness().await;
    let mut last = 0;
    for by in 1..=12 {
        last = add(&h.log, "acme.durable", by).await;
    }
    h.server.stop().await;
    h.server.restart().await.unwrap();
    let log = EventLog::new(jetstream::new(h.server.client().await.unwrap()));
    let loaded = log.load::<Counter>("acme.durable").await.unwrap();
    assert_eq!(
        (
            loaded.aggregate.value,
            loaded.sequence,
            loaded.last_stream_seq
        ),
        (78, 12, last)
    );
    // The stream and its protections came back too.
    let info = log
        .jetstream()
        .get_stream(streams::EVENTS_STREAM)
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert!(info.config.deny_purge && info.config.deny_delete);
}

#[tokio::test]
async fn invalid_aggregate_ids_are_errors_not_panics() {
    let h = harness().await;
    for bad in [
        "acme.x.y", "Acme.x", "", "acme", "acme.", ".x", "acme.*", "acme.a b",
    ] {
        let load = h.log.load::<Counter>(bad).await;
        assert!(
            matches!(load, Err(EventLogError::InvalidAggregateId(_))),
            "{bad:?}: {load:?}"
        );
        let run = h
            .log
            .execute::<Counter>(
                bad,
                CounterCommand::Add(1),
                &Interloper::default(),
                HashMap::new(),
            )
            .await;
        assert!(
            matches!(
                run,
                Err(ExecuteError::Log(EventLogError::InvalidAggregateId(_)))
            ),
            "{bad:?}"
        );
        assert!(h.log.append(&[added(bad, 1, 1)]).await.is_err(), "{bad:?}");
        assert!(h.log.get_events::<Counter>(bad).await.is_err(), "{bad:?}");
    }
    assert_eq!(h.message_count().await, 0);
}
