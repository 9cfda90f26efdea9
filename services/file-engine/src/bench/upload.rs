//! Upload path figures, each against a raw baseline from the same run:
//! - a large upload (1 GiB by default, generated on the fly, never held in memory) through
//!   the real HTTP API vs a raw `write + fsync` of the same bytes to the same disk, with the
//!   growth of this process's resident memory while it streams (target: under 64 MiB);
//! - the scan step (upload accepted → file available) vs a direct clamd INSTREAM of the same
//!   bytes.
//!
//! Each figure gets its own scratch platform (`env.rs`): the large upload runs against the
//! API role alone and is stopped before the scan figure is taken, so the scan baseline never
//! runs while an oversized upload is still being refused by clamd in the background.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use rand::RngCore;

use super::env::{self, Sync};
use super::load::{task_id_of, wait_terminal};
use super::report::{FigureBuilder, Report, Target};
use super::Options;
use crate::Role;

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

pub async fn run(report: &mut Report, opts: &Options) -> anyhow::Result<()> {
    let (large, scan) = if opts.quick {
        (64 << 20, 16 << 20)
    } else {
        (1 << 30, 100 << 20)
    };
    large_upload(report, opts, large).await?;
    scan_overhead(report, opts, scan).await
}

/// The large upload runs against the API role alone: nothing scans (or refuses to scan) it in
/// the background, and the platform is stopped before the scan figure is taken.
async fn large_upload(
    report: &mut Report,
    opts: &Options,
    upload_bytes: u64,
) -> anyhow::Result<()> {
    let app = env::spawn(
        Sync::Always,
        &[Role::Api],
        false,
        &[("FE_MAX_UPLOAD_BYTES", (upload_bytes + 1).to_string())],
    )
    .await?;
    let storage_dir = app
        .platform
        .config
        .storage
        .strip_prefix("local:")
        .map(std::path::PathBuf::from)
        .context("the upload bench needs local storage")?;
    let bearer = app.token("bench", "bench", &["admin"]);
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
    let resp = app
        .http
        .put(app.url(&format!(
            "/v1/files/bench/large-{}.pdf",
            uuid::Uuid::now_v7()
        )))
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
    report.add(
        FigureBuilder::new(
            "upload",
            format!("{mib:.0} MiB streamed upload, MiB/s"),
            "MiB/s",
        )
        .measured(mib / took.as_secs_f64(), None)
        .baseline("raw write + fsync, MiB/s", mib / raw.as_secs_f64(), None)
        .conditions(1, upload_bytes as usize, 1)
        .note(format!(
            "RSS growth while streaming {:.1} MiB",
            growth as f64 / 1048576.0
        ))
        .build(),
        opts.json,
    );
    report.add(
        FigureBuilder::new("upload", "RSS growth while streaming, MiB", "MiB")
            .measured(growth as f64 / 1048576.0, None)
            .conditions(1, upload_bytes as usize, 1)
            .target(Target::AtMost { value: 64.0 })
            .build(),
        opts.json,
    );
    app.stop().await;
    Ok(())
}

/// Upload accepted → available vs a direct clamd INSTREAM of bytes of the same size, on a
/// fresh platform where this upload is the only work.
async fn scan_overhead(report: &mut Report, opts: &Options, bytes: u64) -> anyhow::Result<()> {
    let app = env::spawn(
        Sync::Always,
        &[Role::Api, Role::Projector, Role::Worker, Role::Scanner],
        true,
        &[("FE_MAX_UPLOAD_BYTES", (bytes + 1).to_string())],
    )
    .await?;
    let bearer = app.token("bench", "bench", &["admin"]);
    let clamd = scanner::ClamdClient::new(
        app.platform.config.clamd_addr.clone(),
        Duration::from_secs(300),
    );
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
    let resp = app
        .http
        .put(app.url(&format!(
            "/v1/files/bench/scan-{}.pdf",
            uuid::Uuid::now_v7()
        )))
        .bearer_auth(&bearer)
        .body(data)
        .send()
        .await?;
    let accepted = Instant::now();
    anyhow::ensure!(
        resp.status().as_u16() == 202,
        "upload answered {}",
        resp.status()
    );
    let task = task_id_of(resp).await?;
    let end = wait_terminal(
        &app.http,
        &app.base,
        &bearer,
        task,
        Duration::from_secs(300),
    )
    .await?;
    anyhow::ensure!(end == "succeeded", "scan bench task ended {end}");
    let pipeline = accepted.elapsed();
    let mib = bytes as f64 / 1048576.0;
    report.add(
        FigureBuilder::new(
            "upload",
            format!("{mib:.0} MiB accepted → available, s"),
            "s",
        )
        .measured(pipeline.as_secs_f64(), None)
        .baseline("direct clamd INSTREAM, s", direct.as_secs_f64(), None)
        .conditions(1, bytes as usize, 1)
        .note("scan + promote + projections; nothing else runs on this platform")
        .build(),
        opts.json,
    );
    app.stop().await;
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
