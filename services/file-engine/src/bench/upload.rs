//! Upload path figures, each against a raw baseline from the same run:
//! - a large upload (1 GiB by default, generated on the fly, never held in memory) through
//!   the real HTTP API vs a raw `write + fsync` of the same bytes to the same disk, with the
//!   growth of this process's resident memory while it streams (target: under 64 MiB);
//! - the scan step (upload accepted → file available) vs a direct clamd INSTREAM of the same
//!   bytes.
//!
//! It starts the whole platform in-process against the configured NATS, PostgreSQL and clamd
//! (`FE_*`), with a throwaway HS256 development key for its own token.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use platform::config::Config;
use rand::RngCore;

use crate::{start, Platform, Role};

const CHUNK: usize = 1 << 20;

/// Deterministic pseudo-random chunks (incompressible, no repetition a scanner could skip).
fn chunks(total: u64, seed: u64) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut left = total;
    futures::stream::iter(std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(CHUNK as u64) as usize;
        let mut buf = vec![0u8; n];
        rng.fill_bytes(&mut buf);
        if left == total {
            buf[..8].copy_from_slice(b"%PDF-1.7");
        }
        left -= n as u64;
        Some(Ok(buf))
    }))
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn raw_disk_write(dir: &std::path::Path, total: u64, seed: u64) -> anyhow::Result<Duration> {
    let path = dir.join(format!("fe-bench-raw-{seed}"));
    let started = Instant::now();
    let mut file = std::fs::File::create(&path)?;
    let mut stream = Box::pin(chunks(total, seed));
    while let Some(chunk) = futures::executor::block_on(stream.next()) {
        file.write_all(&chunk?)?;
    }
    file.sync_all()?;
    let took = started.elapsed();
    std::fs::remove_file(&path)?;
    Ok(took)
}

fn token(secret: &str) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({"sub": "bench", "tenant": "bench", "roles": ["admin"], "iss": "fe-bench", "aud": "fe-bench", "exp": now + 3600});
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

pub async fn run(mut config: Config, upload_bytes: u64, scan_bytes: u64) -> anyhow::Result<()> {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let secret = hex::encode(secret);
    config.jwt_dev_hs256_secret = Some(secret.clone());
    config.jwt_public_keys = None;
    config.jwt_issuer = Some("fe-bench".into());
    config.jwt_audience = Some("fe-bench".into());
    config.http_addr = "127.0.0.1:0".parse()?;
    config.max_upload_bytes = upload_bytes.max(scan_bytes) + 1;
    let storage_dir = config
        .storage
        .strip_prefix("local:")
        .map(std::path::PathBuf::from)
        .context("the upload bench needs local storage")?;
    let platform = Platform::connect(config).await?;
    let services = start(
        &platform,
        &[Role::Api, Role::Projector, Role::Worker, Role::Scanner],
    )
    .await?;
    let base = format!("http://{}", services.http_addr.context("api address")?);
    let http = reqwest::Client::new();
    let bearer = token(&secret)?;

    let raw = raw_disk_write(&storage_dir, upload_bytes, 1)?;
    let rss_before = rss_bytes();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss_before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_bytes(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let started = Instant::now();
    let resp = http
        .put(format!(
            "{base}/v1/files/bench/large-{}.pdf",
            uuid::Uuid::now_v7()
        ))
        .bearer_auth(&bearer)
        .body(reqwest::Body::wrap_stream(chunks(upload_bytes, 1)))
        .send()
        .await?;
    let took = started.elapsed();
    sampler.abort();
    anyhow::ensure!(
        resp.status().as_u16() == 202,
        "upload answered {}",
        resp.status()
    );
    let growth = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(rss_before);
    let mib = upload_bytes as f64 / (1024.0 * 1024.0);
    println!(
        "upload {mib:.0} MiB via API: {:.2?} ({:.0} MiB/s); raw write+fsync: {:.2?} ({:.0} MiB/s)",
        took,
        mib / took.as_secs_f64(),
        raw,
        mib / raw.as_secs_f64()
    );
    println!(
        "  ratio api/raw time: {:.2}x; RSS growth while streaming: {:.1} MiB (target < 64 MiB: {})",
        took.as_secs_f64() / raw.as_secs_f64(),
        growth as f64 / 1048576.0,
        if growth < 64 << 20 { "met" } else { "MISSED" }
    );

    scan_overhead(&platform, &http, &base, &bearer, scan_bytes).await?;
    services.shutdown().await;
    Ok(())
}

async fn scan_overhead(
    platform: &Platform,
    http: &reqwest::Client,
    base: &str,
    bearer: &str,
    bytes: u64,
) -> anyhow::Result<()> {
    let clamd =
        scanner::ClamdClient::new(platform.config.clamd_addr.clone(), Duration::from_secs(300));
    // clamd caches verdicts by content hash: the direct scan and the pipeline get different
    // bytes of the same size, so neither is answered from that cache.
    let direct_data = collect(bytes, 2).await?;
    let data = collect(bytes, 3).await?;
    let started = Instant::now();
    let verdict = clamd.scan(&direct_data[..]).await?;
    let direct = started.elapsed();
    anyhow::ensure!(
        matches!(verdict, scanner::Verdict::Clean),
        "the bench bytes were not clean"
    );

    let resp = http
        .put(format!(
            "{base}/v1/files/bench/scan-{}.pdf",
            uuid::Uuid::now_v7()
        ))
        .bearer_auth(bearer)
        .body(data)
        .send()
        .await?;
    let accepted = Instant::now();
    let body: serde_json::Value = resp.json().await?;
    let task = body["task_id"].as_str().context("task id")?.to_owned();
    loop {
        let t: serde_json::Value = http
            .get(format!("{base}/v1/tasks/{task}?wait=30"))
            .bearer_auth(bearer)
            .send()
            .await?
            .json()
            .await?;
        match t["status"].as_str() {
            Some("succeeded") => break,
            Some("failed" | "dead_lettered") => anyhow::bail!("scan bench task ended {t}"),
            _ => {}
        }
    }
    let pipeline = accepted.elapsed();
    let mib = bytes as f64 / 1048576.0;
    println!(
        "scan {mib:.0} MiB: accepted→available {:.2?}; direct clamd INSTREAM {:.2?}; ratio {:.2}x",
        pipeline,
        direct,
        pipeline.as_secs_f64() / direct.as_secs_f64()
    );
    Ok(())
}

async fn collect(bytes: u64, seed: u64) -> anyhow::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(bytes as usize);
    let mut stream = Box::pin(chunks(bytes, seed));
    while let Some(chunk) = stream.next().await {
        data.extend_from_slice(&chunk?);
    }
    Ok(data)
}
