//! End-to-end command latency and throughput (mkdir requested → succeeded, through API,
//! log, projector, worker and projector again), once with 1 projection partition and once with
//! `FE_PARTITIONS`, so the gain of partitioning is measured, not assumed.
//!
//! Each run rebuilds the read models with its partition count (`replay_with_partitions`): run
//! it against scratch servers only. Many tenants submit concurrently (each tenant's commands
//! go one after another, as a client would), so several partitions have work at once.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use platform::config::Config;
use rand::RngCore;

use super::report::{FigureBuilder, Latency, Report};
use super::Options;
use crate::{start, Platform, Role};

const TENANTS: usize = 16;

fn token(secret: &str, tenant: &str) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({"sub": "bench", "tenant": tenant, "roles": ["admin"],
        "iss": "fe-bench", "aud": "fe-bench", "exp": now + 3600});
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// One command end to end; its latency.
async fn mkdir_until_succeeded(
    http: &reqwest::Client,
    base: &str,
    bearer: &str,
    path: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let accepted: serde_json::Value = http
        .post(format!("{base}/v1/commands"))
        .bearer_auth(bearer)
        .json(&serde_json::json!({"op": "mkdir", "path": path, "parents": true}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = accepted["task_id"].as_str().context("task id")?.to_owned();
    loop {
        let task: serde_json::Value = http
            .get(format!("{base}/v1/tasks/{id}?wait=30"))
            .bearer_auth(bearer)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        match task["status"].as_str() {
            Some("succeeded") => return Ok(started.elapsed()),
            Some("failed" | "dead_lettered") => anyhow::bail!("task {id} ended {task}"),
            _ => {}
        }
    }
}

/// Runs `per_tenant` commands for each of [`TENANTS`] tenants with `partitions` partitions;
/// returns (commands per second, sorted latencies).
async fn measure(
    config: &Config,
    secret: &str,
    partitions: u32,
    per_tenant: usize,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let mut config = config.clone();
    config.partitions = partitions;
    let platform = Platform::connect(config).await?;
    projector::replay_with_partitions(platform.log.jetstream(), &platform.pool, partitions).await?;
    let services = start(&platform, &[Role::Api, Role::Projector, Role::Worker]).await?;
    let base = format!("http://{}", services.http_addr.context("api address")?);
    let http = reqwest::Client::new();
    let run = uuid::Uuid::now_v7().simple().to_string();
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for t in 0..TENANTS {
        let (http, base) = (http.clone(), base.clone());
        let bearer = token(secret, &format!("bench-e2e-{t}"))?;
        let run = run.clone();
        clients.spawn(async move {
            let mut latencies = Vec::with_capacity(per_tenant);
            for i in 0..per_tenant {
                let path = format!("/e2e-{run}/d{i}");
                latencies.push(mkdir_until_succeeded(&http, &base, &bearer, &path).await?);
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = clients.join_next().await {
        all.extend(done??);
    }
    let elapsed = started.elapsed();
    services.shutdown().await;
    all.sort_unstable();
    Ok((all.len() as f64 / elapsed.as_secs_f64(), all))
}

pub async fn run(
    report: &mut Report,
    opts: &Options,
    mut config: Config,
    per_tenant: usize,
) -> anyhow::Result<()> {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let secret = hex::encode(secret);
    config.jwt_dev_hs256_secret = Some(secret.clone());
    config.jwt_public_keys = None;
    config.jwt_issuer = Some("fe-bench".into());
    config.jwt_audience = Some("fe-bench".into());
    config.http_addr = "127.0.0.1:0".parse()?;
    config.rate_limit_per_min = 0;
    config.tenant_rate_limit_per_min = 0;
    let configured = config.partitions.max(1);
    let (one_rate, mut one) = measure(&config, &secret, 1, per_tenant).await?;
    let (rate, mut many) = measure(&config, &secret, configured, per_tenant).await?;
    let samples = many.len();
    report.add(
        FigureBuilder::new(
            "e2e",
            format!("mkdir requested → succeeded/s, {configured} partitions"),
            "/s",
        )
        .measured(rate, Latency::of(&mut many))
        .baseline("the same with 1 partition", one_rate, Latency::of(&mut one))
        .conditions(TENANTS, 0, samples)
        .note(format!(
            "{TENANTS} tenants, each a client sending its commands one after another"
        ))
        .build(),
        opts.json,
    );
    Ok(())
}
