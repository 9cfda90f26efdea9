//! Many small uploads: 32 clients each upload distinct small files through `PUT /v1/files`
//! and wait until each is available (scan included: api, projector, worker and scanner run,
//! with their own clamd). Figure: files/s from the first request to the last file available,
//! measured after a warm-up of a quarter as many uploads and `ANALYZE` (a tenant that already
//! holds files, on a database with planner statistics).
//! Baseline: the same number of distinct files of the same size scanned directly with clamd
//! INSTREAM by 32 clients (clamd caches verdicts by content hash, so no two files are equal).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rand::{RngCore, SeedableRng};

use super::env::{self, Sync};
use super::load::{closed_loop, task_id_of, wait_terminal, Stop};
use super::report::{FigureBuilder, Latency, Report, Target};
use super::Options;
use crate::Role;

const CLIENTS: usize = 32;
const FILE_BYTES: usize = 4096;

/// A distinct small PDF-looking file (random bytes behind the PDF magic).
fn file(seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut buf = vec![0u8; FILE_BYTES];
    rng.fill_bytes(&mut buf);
    buf[..8].copy_from_slice(b"%PDF-1.7");
    buf
}

/// One client: uploads a file and waits until it is available.
#[derive(Clone)]
struct Uploader {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Uploader {
    async fn upload(self, i: usize) -> anyhow::Result<()> {
        let resp = self
            .http
            .put(format!("{}/v1/files/bench/u{i}.pdf", self.base))
            .bearer_auth(&self.token)
            .body(file(i as u64))
            .send()
            .await?;
        let status = resp.status();
        anyhow::ensure!(status.as_u16() == 202, "upload answered {status}");
        let task = task_id_of(resp).await.context("upload task")?;
        let end = wait_terminal(
            &self.http,
            &self.base,
            &self.token,
            task,
            Duration::from_secs(120),
        )
        .await?;
        anyhow::ensure!(end == "succeeded", "upload task {task} ended {end}");
        Ok(())
    }
}

pub async fn run(report: &mut Report, opts: &Options) -> anyhow::Result<()> {
    let n = if opts.quick { 200 } else { 3_000 };
    let app = env::spawn(
        Sync::Always,
        &[Role::Api, Role::Projector, Role::Worker, Role::Scanner],
        true,
        &[],
    )
    .await?;
    let clamd = Arc::new(scanner::ClamdClient::new(
        app.platform.config.clamd_addr.clone(),
        Duration::from_secs(60),
    ));
    let mut direct = closed_loop(CLIENTS, Stop::Count(n), move |i| {
        let clamd = clamd.clone();
        async move {
            let bytes = file(1_000_000 + i as u64);
            match clamd.scan(&bytes[..]).await? {
                scanner::Verdict::Clean => Ok(()),
                other => anyhow::bail!("bench bytes not clean: {other:?}"),
            }
        }
    })
    .await;

    let uploader = Uploader {
        http: app.http.clone(),
        base: app.base.clone(),
        token: app.token("bench", "uploads", &["admin"]),
    };
    // A tenant that already holds files, with planner statistics as autovacuum keeps them on
    // a live database: without them, statements prepared while the tables were empty keep
    // a plan that scans the tenant's rows (see `env::analyze`).
    let warming = uploader.clone();
    let warm_up = closed_loop(CLIENTS, Stop::Count(n / 4), move |i| {
        warming.clone().upload(n + i)
    })
    .await;
    anyhow::ensure!(
        warm_up.errors == 0,
        "warm-up uploads failed: {}",
        warm_up.error_note()
    );
    env::analyze(&app.platform.pool).await?;
    let mut uploads =
        closed_loop(CLIENTS, Stop::Count(n), move |i| uploader.clone().upload(i)).await;
    report.add(
        FigureBuilder::new("uploads", "small files accepted → available/s", "/s")
            .measured(uploads.rate(), Latency::of(&mut uploads.latencies))
            .baseline(
                "direct clamd INSTREAM scans/s",
                direct.rate(),
                Latency::of(&mut direct.latencies),
            )
            .conditions(CLIENTS, FILE_BYTES, uploads.results.len())
            .target(Target::AtLeast { value: 500.0 })
            .note(format!(
                "FE_SCANNER_CONCURRENCY {}; {} {}",
                app.platform.config.scanner_concurrency,
                uploads.error_note(),
                direct.error_note()
            ))
            .build(),
        opts.json,
    );
    app.stop().await;
    Ok(())
}
