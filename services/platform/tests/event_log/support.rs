//! Test support for the event log tests: a counter aggregate and a harness owning a
//! spawned nats-server with the event stream applied.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate, DomainEvent};
use platform::event_log::EventLog;
use platform::streams::{self, DurableSpec, StreamSettings};
use serde::{Deserialize, Serialize};
use testkit::nats::NatsServer;

// ---- the test aggregate -------------------------------------------------------------------

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub value: u64,
    pub events: usize,
}

#[derive(Debug, Clone)]
pub enum CounterCommand {
    Add(u64),
    /// One command, three events (one commit).
    AddThree,
    Nothing,
    Refuse,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CounterEvent {
    Added { by: u64 },
}

impl DomainEvent for CounterEvent {
    fn event_type(&self) -> String {
        "Added".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
pub struct Refused;

/// Optionally slips a competing commit in between a command's load and its append: the very
/// commit `Add(5)` would make, so only the publish's identity tells the two apart.
#[derive(Default)]
pub struct Interloper {
    pub log: Option<EventLog>,
    pub fired: AtomicBool,
}

impl Aggregate for Counter {
    const TYPE: &'static str = "counter";
    type Command = CounterCommand;
    type Event = CounterEvent;
    type Error = Refused;
    type Services = Interloper;

    async fn handle(
        &mut self,
        command: CounterCommand,
        services: &Interloper,
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Refused> {
        if let Some(log) = &services.log {
            if !services.fired.swap(true, Ordering::SeqCst) {
                log.append(&[added("acme.c1", self.events + 1, 5)])
                    .await
                    .unwrap();
            }
        }
        match command {
            CounterCommand::Add(by) => sink.write(CounterEvent::Added { by }, self).await,
            CounterCommand::AddThree => {
                for by in [1, 2, 3] {
                    sink.write(CounterEvent::Added { by }, self).await;
                }
            }
            CounterCommand::Nothing => {}
            CounterCommand::Refuse => return Err(Refused),
        }
        Ok(())
    }

    fn apply(&mut self, CounterEvent::Added { by }: CounterEvent) {
        self.value += by;
        self.events += 1;
    }
}

pub fn added(aggregate_id: &str, sequence: usize, by: u64) -> SerializedEvent {
    SerializedEvent::new(
        aggregate_id.into(),
        sequence,
        "counter".into(),
        "Added".into(),
        "1".into(),
        serde_json::json!({ "Added": { "by": by } }),
        serde_json::json!({}),
    )
}

// ---- harness ------------------------------------------------------------------------------

pub struct Harness {
    pub server: NatsServer,
    pub js: jetstream::Context,
    pub log: EventLog,
}

pub async fn harness() -> Harness {
    let server = NatsServer::start().await.unwrap();
    let js = jetstream::new(server.client().await.unwrap());
    streams::ensure_event_stream(&js, &StreamSettings::default())
        .await
        .unwrap();
    let log = EventLog::new(js.clone());
    Harness { server, js, log }
}

impl Harness {
    pub async fn message_count(&self) -> u64 {
        let mut stream = self.js.get_stream(streams::EVENTS_STREAM).await.unwrap();
        stream.info().await.unwrap().state.messages
    }

    pub async fn consumer(&self, filter: &str) -> PullConsumer {
        let stream = self.js.get_stream(streams::EVENTS_STREAM).await.unwrap();
        let spec = DurableSpec {
            name: "test-reader",
            filter_subject: filter.into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 3,
            backoff: vec![],
            max_ack_pending: 100,
        };
        streams::ensure_durable(&stream, &spec).await.unwrap()
    }
}

pub fn metadata() -> HashMap<String, String> {
    HashMap::from([
        (
            "traceparent".into(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        ),
        ("request_id".into(), "req-1".into()),
        ("principal".into(), "alice".into()),
    ])
}

pub async fn add(log: &EventLog, id: &str, by: u64) -> u64 {
    let done = log
        .execute::<Counter>(
            id,
            CounterCommand::Add(by),
            &Interloper::default(),
            HashMap::new(),
        )
        .await
        .unwrap();
    done.stream_seq.unwrap()
}
