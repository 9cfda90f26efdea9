//! Event-log commit cost against a raw JetStream publish baseline, measured in the same run
//! on the same server with the same stream storage settings (file storage; the server's own
//! fsync policy applies to both, so the ratio isolates our overhead: the load before append,
//! the optimistic-concurrency header, serialisation).

use std::time::Instant;

use async_nats::jetstream::{self, stream};
use chrono::Utc;
use events::task::{FileCommand, Task, TaskCommand, TaskSpec};
use events::{FilePath, TenantId};
use platform::event_log::{aggregate_id, EventLog};

const RAW_STREAM: &str = "FE_BENCH_RAW";

pub async fn run(nats_url: &str, n: usize) -> anyhow::Result<()> {
    let client = platform::nats_client::connect(nats_url, "file-engine-bench").await?;
    println!(
        "nats-server {}",
        platform::streams::server_version(&client).await
    );
    let js = jetstream::new(client);
    platform::streams::ensure_event_stream(&js, &platform::streams::StreamSettings { replicas: 1 })
        .await?;
    let raw = js
        .get_or_create_stream(stream::Config {
            name: RAW_STREAM.into(),
            subjects: vec!["fe-bench.raw.>".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let log = EventLog::new(js.clone());
    let tenant = TenantId::parse("bench")?;
    let body = sample_body(&tenant)?;

    let mut raw_times = Vec::with_capacity(n);
    let mut log_times = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        js.publish(format!("fe-bench.raw.{i}"), body.clone().into())
            .await?
            .await?;
        raw_times.push(start.elapsed());

        let task_id = uuid::Uuid::now_v7();
        let cmd = request(&tenant, task_id, i)?;
        let start = Instant::now();
        log.execute::<Task>(
            &aggregate_id(&tenant, &task_id.to_string()),
            cmd,
            &(),
            Default::default(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        log_times.push(start.elapsed());
    }
    let (raw50, raw99) = super::report("raw JetStream publish (acked)", &mut raw_times);
    let (log50, log99) = super::report("event-log commit (load + append)", &mut log_times);
    println!(
        "  ratio event-log/raw: p50 {:.2}x, p99 {:.2}x",
        log50.as_secs_f64() / raw50.as_secs_f64().max(1e-9),
        log99.as_secs_f64() / raw99.as_secs_f64().max(1e-9)
    );
    let _ = js
        .delete_stream(raw.cached_info().config.name.clone())
        .await;
    Ok(())
}

fn request(tenant: &TenantId, task_id: uuid::Uuid, i: usize) -> anyhow::Result<TaskCommand> {
    Ok(TaskCommand::Request {
        task_id,
        tenant: tenant.clone(),
        principal: "bench".into(),
        roles: vec![],
        spec: TaskSpec::Command(FileCommand::Mkdir {
            path: FilePath::parse(&format!("/bench/d{i}"))?,
            parents: true,
        }),
        idempotency_key: None,
        body_hash: None,
        requested_at: Utc::now(),
    })
}

fn sample_body(tenant: &TenantId) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(
        &serde_json::json!({"events": [{"tenant": tenant.as_str(), "payload": "x".repeat(400)}]}),
    )?)
}
