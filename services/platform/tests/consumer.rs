//! The consumer runtime against a real nats-server: outcomes become Ack / Nak(delay) / Term,
//! and shutdown releases deliveries still in flight at the drain deadline for prompt
//! redelivery (long before `ack_wait` would).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use cqrs_es::persist::SerializedEvent;
use platform::consumer::{self, ConsumerSettings, Delivery, Handler, Outcome};
use platform::event_log::EventLog;
use platform::streams::{self, DurableSpec, StreamSettings};
use testkit::nats::NatsServer;
use tokio_util::sync::CancellationToken;

fn added(aggregate_id: &str) -> SerializedEvent {
    SerializedEvent::new(
        aggregate_id.into(),
        1,
        "counter".into(),
        "Added".into(),
        "1".into(),
        serde_json::json!({ "Added": { "by": 1 } }),
        serde_json::json!({}),
    )
}

fn settings(name: &'static str, ack_wait: Duration, drain: Duration) -> ConsumerSettings {
    ConsumerSettings {
        spec: DurableSpec {
            name,
            filter_subject: "fe.ev.>".into(),
            ack_wait,
            max_deliver: -1,
            backoff: Vec::new(),
            max_ack_pending: 64,
        },
        concurrency: 4,
        drain,
    }
}

async fn log() -> (NatsServer, jetstream::Context, EventLog) {
    let server = NatsServer::start().await.unwrap();
    let js = jetstream::new(server.client().await.unwrap());
    streams::ensure_event_stream(&js, &StreamSettings::default())
        .await
        .unwrap();
    let log = EventLog::new(js.clone());
    (server, js, log)
}

/// Deliveries seen: (aggregate id, delivery count).
type Seen = Arc<Mutex<Vec<(String, i64)>>>;

/// Retries `acme.retry` once, rejects `acme.poison`, finishes everything else.
struct Scripted {
    seen: Seen,
}

impl Handler for Scripted {
    type Events = ();

    async fn handle(&self, d: &Delivery<()>) -> Outcome {
        let id = d.commit.aggregate_id.clone();
        self.seen.lock().unwrap().push((id.clone(), d.delivered));
        match id.as_str() {
            "acme.retry" if d.delivered == 1 => {
                Outcome::retry("not yet", Duration::from_millis(200))
            }
            "acme.poison" => Outcome::Reject {
                reason: "never processable".into(),
            },
            _ => Outcome::Done,
        }
    }
}

async fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to 10 s) until the durable consumer `name` is in the state `settled` asks for.
async fn until_consumer(
    js: &jetstream::Context,
    name: &str,
    what: &str,
    settled: impl Fn(&jetstream::consumer::Info) -> bool,
) {
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_stream(streams::EVENTS_STREAM)
        .await
        .unwrap()
        .get_consumer(name)
        .await
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let info = consumer.info().await.unwrap();
        if settled(info) {
            return;
        }
        assert!(Instant::now() < end, "{what}: {info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn outcomes_become_acks_naks_and_terms() {
    let (_server, js, log) = log().await;
    for id in ["acme.ok", "acme.retry", "acme.poison"] {
        log.append(&[added(id)]).await.unwrap();
    }
    let seen = Seen::default();
    let stop = CancellationToken::new();
    let run = tokio::spawn(consumer::run(
        js.clone(),
        settings(
            "t-outcomes",
            Duration::from_secs(30),
            Duration::from_secs(1),
        ),
        Arc::new(Scripted { seen: seen.clone() }),
        stop.clone(),
    ));
    until(
        "the retried commit to come back",
        Duration::from_secs(10),
        || seen.lock().unwrap().contains(&("acme.retry".into(), 2)),
    )
    .await;
    until_consumer(&js, "t-outcomes", "deliveries still pending", |info| {
        info.num_ack_pending == 0 && info.num_pending == 0
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    let count = |id: &str| seen.iter().filter(|(a, _)| a == id).count();
    assert_eq!(
        (count("acme.ok"), count("acme.retry"), count("acme.poison")),
        (1, 2, 1)
    );
    stop.cancel();
    run.await.unwrap();
}

/// Never finishes its first delivery; finishes every later one.
struct Stuck {
    seen: Seen,
}

impl Handler for Stuck {
    type Events = ();

    async fn handle(&self, d: &Delivery<()>) -> Outcome {
        self.seen
            .lock()
            .unwrap()
            .push((d.commit.aggregate_id.clone(), d.delivered));
        if d.delivered == 1 {
            std::future::pending::<()>().await;
        }
        Outcome::Done
    }
}

#[tokio::test]
async fn shutdown_releases_work_in_flight_for_prompt_redelivery() {
    let (_server, js, log) = log().await;
    log.append(&[added("acme.long")]).await.unwrap();
    let seen = Seen::default();
    // ack_wait is long: a redelivery within seconds can only come from the release.
    let ack_wait = Duration::from_secs(60);
    let drain = Duration::from_millis(500);
    let stop = CancellationToken::new();
    let first = tokio::spawn(consumer::run(
        js.clone(),
        settings("t-release", ack_wait, drain),
        Arc::new(Stuck { seen: seen.clone() }),
        stop.clone(),
    ));
    until("the first delivery", Duration::from_secs(10), || {
        !seen.lock().unwrap().is_empty()
    })
    .await;
    let stopping = Instant::now();
    stop.cancel();
    first.await.unwrap();
    let took = stopping.elapsed();
    assert!(
        took >= drain && took < drain + Duration::from_secs(3),
        "{took:?}"
    );

    let again = CancellationToken::new();
    let second = tokio::spawn(consumer::run(
        js.clone(),
        settings("t-release", ack_wait, drain),
        Arc::new(Stuck { seen: seen.clone() }),
        again.clone(),
    ));
    until(
        "the released delivery to come back",
        Duration::from_secs(10),
        || seen.lock().unwrap().contains(&("acme.long".into(), 2)),
    )
    .await;
    again.cancel();
    second.await.unwrap();
}

/// Wants only `Blocked` commits, and never finishes one.
struct Picky {
    seen: Seen,
}

impl Handler for Picky {
    type Events = ();

    fn wants(&self, event_types: &[&str]) -> bool {
        event_types.contains(&"Blocked")
    }

    async fn handle(&self, d: &Delivery<()>) -> Outcome {
        self.seen
            .lock()
            .unwrap()
            .push((d.commit.aggregate_id.clone(), d.delivered));
        std::future::pending::<Outcome>().await
    }
}

/// Commits a handler skips (by their `Fe-Event-Types` header) are acknowledged by the intake
/// itself and never reach the handler, also while work that never ends holds a slot: nothing
/// is left unacknowledged but that work.
#[tokio::test]
async fn skipped_commits_are_acknowledged_at_intake_and_never_handled() {
    let (_server, js, log) = log().await;
    let blocked = SerializedEvent::new(
        "acme.blocked".into(),
        1,
        "counter".into(),
        "Blocked".into(),
        "1".into(),
        serde_json::json!({ "Blocked": {} }),
        serde_json::json!({}),
    );
    log.append(&[blocked]).await.unwrap();
    let skipped = 40;
    for i in 0..skipped {
        log.append(&[added(&format!("acme.skipped{i}"))])
            .await
            .unwrap();
    }
    let seen = Seen::default();
    let stop = CancellationToken::new();
    let mut two_slots = settings(
        "t-skipped",
        Duration::from_secs(60),
        Duration::from_millis(200),
    );
    two_slots.concurrency = 2;
    let run = tokio::spawn(consumer::run(
        js.clone(),
        two_slots,
        Arc::new(Picky { seen: seen.clone() }),
        stop.clone(),
    ));
    until("the blocking delivery", Duration::from_secs(10), || {
        !seen.lock().unwrap().is_empty()
    })
    .await;
    // Everything delivered; only the blocking commit left unacknowledged.
    until_consumer(
        &js,
        "t-skipped",
        "skipped commits not acknowledged",
        |info| info.num_pending == 0 && info.num_ack_pending == 1,
    )
    .await;
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![("acme.blocked".to_owned(), 1)],
        "skipped commits never reach the handler"
    );
    stop.cancel();
    run.await.unwrap();
}
