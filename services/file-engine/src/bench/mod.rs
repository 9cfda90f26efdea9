//! `file-engine bench`: every scenario of the throughput issue, each figure measured beside a
//! raw baseline taken in the same run, so numbers stay comparable across noisy machines.
//!
//! | section | figure | baseline |
//! |---|---|---|
//! | `accept` | `mkdir` accepted/s at 64 connections, default sync and sync always | raw acked publishes of the same size |
//! | `burst` | N `mkdir` then drain: last acceptance → all terminal; completed/s | the burst's acceptance |
//! | `replay` (with `burst`) | read models rebuilt from that log, events/s | raw ordered read of the stream |
//! | `latency` | request → `succeeded` p50/p99 at half the measured maximum rate | request → 202 |
//! | `uploads` | 32 clients, small files, accepted → available/s | direct clamd INSTREAM |
//! | `log` | event-log commits/s at 1 and 64 in flight | raw acked publish; postgres-es appends |
//! | `acl` | decision p99 in-process and over HTTP for a non-admin, 10,000 rules | `GET /healthz` |
//! | `upload` | 1 GiB streamed upload; scan of 100 MiB accepted → available | raw write + fsync; clamd INSTREAM |
//! | `s3` | S3 backend: staged upload + publish, blob download (MiB/s), on moto | the same SDK's plain `PutObject` / `GetObject` |
//!
//! Every scenario starts its own scratch servers through the test kit (`env.rs`): nothing is
//! read from or written to a real installation. `--quick` shrinks samples (under 2 minutes),
//! `--json` prints one JSON document, `--check` exits non-zero when a target is missed.

mod accept;
mod acl;
mod burst;
pub mod census;
mod env;
mod latency;
mod load;
mod log;
mod projection;
pub mod report;
mod s3;
mod upload;
mod uploads;

/// How the bench runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub quick: bool,
    pub json: bool,
    pub check: bool,
}

/// The sections in the order they run; `latency` uses the rate `accept` measured.
pub const SECTIONS: [&str; 9] = [
    "accept", "latency", "burst", "uploads", "log", "acl", "upload", "s3", "e2e",
];

/// Runs the chosen sections (all when `which` is empty) and prints the report; with `check`,
/// an error when any target was missed.
pub async fn run(which: &[String], opts: Options) -> anyhow::Result<()> {
    for w in which {
        anyhow::ensure!(
            SECTIONS.contains(&w.as_str()),
            "unknown bench section {w:?}; sections: {}",
            SECTIONS.join(", ")
        );
    }
    let wants = |n: &str| which.is_empty() || which.iter().any(|w| w == n);
    let mut report = report::Report {
        machine: report::machine(),
        quick: opts.quick,
        figures: Vec::new(),
    };
    if !opts.json {
        println!(
            "file-engine bench on {}{}",
            report.machine,
            if opts.quick { " (quick)" } else { "" }
        );
    }
    let mut max_rate = None;
    if wants("accept") {
        max_rate = Some(accept::run(&mut report, &opts).await?);
    }
    if wants("latency") {
        latency::run(&mut report, &opts, max_rate).await?;
    }
    if wants("burst") {
        burst::run(&mut report, &opts).await?;
    }
    if wants("uploads") {
        uploads::run(&mut report, &opts).await?;
    }
    if wants("log") {
        log::run(&mut report, &opts).await?;
    }
    if wants("acl") {
        acl::run(&mut report, &opts).await?;
    }
    if wants("upload") {
        upload::run(&mut report, &opts).await?;
    }
    if wants("s3") {
        s3::run(&mut report, &opts).await?;
    }
    if wants("e2e") {
        // mkdir requested → succeeded with 1 and with FE_PARTITIONS projection partitions, on
        // scratch servers of its own (it rebuilds the read models between the two runs).
        let scratch = env::spawn(env::Sync::Always, &[], false, &[]).await?;
        let config = scratch.platform.config.clone();
        projection::run(
            &mut report,
            &opts,
            config,
            if opts.quick { 10 } else { 100 },
        )
        .await?;
        scratch.stop().await;
    }
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print_summary();
    }
    let missed = report.missed();
    if opts.check && !missed.is_empty() {
        let names: Vec<&str> = missed.iter().map(|f| f.name.as_str()).collect();
        anyhow::bail!("{} target(s) missed: {}", missed.len(), names.join("; "));
    }
    Ok(())
}
