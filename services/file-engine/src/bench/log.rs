//! Event-log commit cost, each against baselines measured in the same run on the same servers:
//!
//! - a raw acknowledged JetStream publish of the same bytes to a stream with the same storage
//!   settings on the same server (`sync_interval: always`), at 1 and at 64 in flight: the
//!   ratio isolates our overhead (serialisation, headers, the optimistic-concurrency check);
//! - postgres-es (what a cqrs-es user picks instead) appending the same serialized events to
//!   its `events` table on the same PostgreSQL server, at the same concurrency.
//!
//! The commit measured is the one the API makes for a new task: `task.requested` appended
//! with expected subject sequence 0 (no load of an aggregate that cannot exist yet).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use chrono::Utc;
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::{Aggregate, EventEnvelope};
use events::task::{FileCommand, Task, TaskCommand, TaskSpec};
use events::{FilePath, TenantId};
use platform::event_log::{aggregate_id, Commit, EventLog};

use super::env::{self, Sync};
use super::load::{closed_loop, Outcome, Stop};
use super::report::{FigureBuilder, Latency, Report, Target};
use super::Options;
use crate::Role;

const RAW_STREAM: &str = "FE_BENCH_RAW";

/// postgres-es's documented table (its README), created in the scratch database.
const POSTGRES_ES_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS events (
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    sequence bigint CHECK (sequence >= 0) NOT NULL,
    event_type text NOT NULL,
    event_version text NOT NULL,
    payload json NOT NULL,
    metadata json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence))";

/// A stream like the event stream (file storage) for raw publishes.
pub async fn raw_stream(js: &jetstream::Context) -> anyhow::Result<()> {
    js.get_or_create_stream(stream::Config {
        name: RAW_STREAM.into(),
        subjects: vec!["fe-bench.raw.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Acked raw publishes of `body` by `concurrency` publishers.
pub async fn raw_publishes(
    js: &jetstream::Context,
    concurrency: usize,
    stop: Stop,
    body: bytes::Bytes,
) -> Outcome<()> {
    let js = js.clone();
    closed_loop(concurrency, stop, move |i| {
        let (js, body) = (js.clone(), body.clone());
        async move {
            js.publish(format!("fe-bench.raw.{i}"), body).await?.await?;
            Ok(())
        }
    })
    .await
}

pub async fn run(report: &mut Report, opts: &Options) -> anyhow::Result<()> {
    let app = env::spawn(Sync::Always, &[] as &[Role], false, &[]).await?;
    let js = app.platform.log.jetstream().clone();
    raw_stream(&js).await?;
    let pg = sqlx::postgres::PgPoolOptions::new()
        .max_connections(32)
        .connect(&app.db.url)
        .await?;
    sqlx::query(POSTGRES_ES_SCHEMA).execute(&pg).await?;
    let postgres_es = Arc::new(postgres_es::PostgresEventRepository::new(pg));
    let log = app.platform.log.clone();
    let tenant = TenantId::parse("bench")?;
    // The bytes a commit puts on the wire, for the raw baseline.
    let sample = new_task_events(&tenant, 0).await?;
    let body = bytes::Bytes::from(serde_json::to_vec(&Commit::from_new_events(&sample)?)?);
    let seconds = if opts.quick { 2 } else { 8 };
    for concurrency in [1usize, 64] {
        let stop = Stop::After(Duration::from_secs(seconds));
        let mut raw = raw_publishes(&js, concurrency, stop, body.clone()).await;
        let commits = {
            let (log, tenant) = (log.clone(), tenant.clone());
            closed_loop(concurrency, stop, move |i| {
                let (log, tenant) = (log.clone(), tenant.clone());
                async move { commit_new_task(&log, &tenant, i).await }
            })
            .await
        };
        let mut commits = commits;
        let mut loading = {
            let (log, tenant) = (log.clone(), tenant.clone());
            closed_loop(concurrency, stop, move |i| {
                let (log, tenant) = (log.clone(), tenant.clone());
                async move { commit_loading_first(&log, &tenant, i).await }
            })
            .await
        };
        let pes = {
            let (repo, tenant) = (postgres_es.clone(), tenant.clone());
            closed_loop(concurrency, stop, move |i| {
                let (repo, tenant) = (repo.clone(), tenant.clone());
                async move {
                    let events = new_task_events(&tenant, i).await?;
                    repo.persist::<Task>(&events, None)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))
                }
            })
            .await
        };
        let mut pes = pes;
        let note = format!("{} {}", commits.error_note(), raw.error_note());
        report.add(
            FigureBuilder::new(
                "log",
                format!("event-log commits/s, {concurrency} in flight"),
                "/s",
            )
            .measured(commits.rate(), Latency::of(&mut commits.latencies))
            .baseline(
                "raw acked publish/s (sync always)",
                raw.rate(),
                Latency::of(&mut raw.latencies),
            )
            .conditions(concurrency, body.len(), commits.results.len())
            .target(Target::RatioAtLeast { value: 0.7 })
            .note(note.trim().to_owned())
            .build(),
            opts.json,
        );
        report.add(
            FigureBuilder::new(
                "log",
                format!("new-task commit without load, {concurrency} in flight"),
                "/s",
            )
            .measured(commits.rate(), None)
            .baseline(
                "load + append commits/s",
                loading.rate(),
                Latency::of(&mut loading.latencies),
            )
            .conditions(concurrency, body.len(), loading.results.len())
            .note(loading.error_note())
            .build(),
            opts.json,
        );
        report.add(
            FigureBuilder::new(
                "log",
                format!("event-log vs postgres-es, {concurrency} in flight"),
                "/s",
            )
            .measured(commits.rate(), None)
            .baseline(
                "postgres-es appends/s",
                pes.rate(),
                Latency::of(&mut pes.latencies),
            )
            .conditions(concurrency, body.len(), pes.results.len())
            .target(Target::RatioAtLeast { value: 2.0 })
            .note(pes.error_note())
            .build(),
            opts.json,
        );
    }
    app.stop().await;
    Ok(())
}

fn request(tenant: &TenantId, task_id: uuid::Uuid, i: usize) -> anyhow::Result<TaskCommand> {
    Ok(TaskCommand::Request {
        task_id,
        tenant: tenant.clone(),
        principal: "bench".into(),
        roles: vec!["admin".into()],
        spec: TaskSpec::Command(FileCommand::Mkdir {
            path: FilePath::parse(&format!("/bench/d{i}"))?,
            parents: true,
        }),
        idempotency_key: None,
        body_hash: None,
        requested_at: Utc::now(),
    })
}

fn metadata() -> HashMap<String, String> {
    HashMap::from([
        ("principal".to_owned(), "bench".to_owned()),
        ("request_id".to_owned(), uuid::Uuid::now_v7().to_string()),
        (
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        ),
    ])
}

/// What the API does for a new task: append `task.requested` to a fresh aggregate.
async fn commit_new_task(log: &EventLog, tenant: &TenantId, i: usize) -> anyhow::Result<()> {
    let task_id = uuid::Uuid::now_v7();
    log.execute_new::<Task>(
        &aggregate_id(tenant, &task_id.to_string()),
        request(tenant, task_id, i)?,
        &(),
        metadata(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// The general path: load the aggregate (one subject lookup), then append.
async fn commit_loading_first(log: &EventLog, tenant: &TenantId, i: usize) -> anyhow::Result<()> {
    let task_id = uuid::Uuid::now_v7();
    log.execute::<Task>(
        &aggregate_id(tenant, &task_id.to_string()),
        request(tenant, task_id, i)?,
        &(),
        metadata(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// The serialized events of a new task's first commit, as cqrs-es would hand them to a
/// repository.
async fn new_task_events(tenant: &TenantId, i: usize) -> anyhow::Result<Vec<SerializedEvent>> {
    let task_id = uuid::Uuid::now_v7();
    let id = aggregate_id(tenant, &task_id.to_string());
    let mut task = Task::default();
    let sink = cqrs_es::event_sink::EventSink::<Task>::default();
    task.handle(request(tenant, task_id, i)?, &(), &sink)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let events = sink.collect().await;
    let metadata = metadata();
    events
        .into_iter()
        .enumerate()
        .map(|(offset, payload)| {
            let envelope = EventEnvelope::<Task> {
                aggregate_id: id.clone(),
                sequence: offset + 1,
                payload,
                metadata: metadata.clone(),
            };
            SerializedEvent::try_from(&envelope).map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect()
}
