//! End-to-end latency at half the maximum acceptance rate: `mkdir` requests are sent open-loop
//! (on a fixed schedule, whatever the answers do) at half the rate the acceptance scenario
//! measured, and each one is timed from the request to its task reading `succeeded` through
//! `GET /v1/tasks/{id}?wait=` — what a client sees. Baseline: the request → 202 latency of the
//! same requests. The same is then measured at a light load ([`LIGHT_RATE`], no target): the
//! pipeline's own latency (two projection passes, the turn check and the effect) without the
//! queueing a rate near the drain rate adds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::accept::TENANTS;
use super::env::{self, Sync};
use super::load::{mkdir_body, submit, wait_terminal};
use super::report::{FigureBuilder, Latency, Report, Target};
use super::Options;
use crate::Role;

/// Without a measured maximum (the acceptance scenario did not run), this rate is used.
const FALLBACK_RATE: f64 = 200.0;

/// The light load: requests/s, far below what drains.
const LIGHT_RATE: f64 = 20.0;

#[derive(Default)]
struct Samples {
    accepted: Vec<Duration>,
    succeeded: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

pub async fn run(report: &mut Report, opts: &Options, max_rate: Option<f64>) -> anyhow::Result<()> {
    let rate = max_rate.map_or(FALLBACK_RATE, |r| (r / 2.0).max(1.0));
    let seconds = if opts.quick { 3.0 } else { 15.0 };
    // A request not done by then counts as an error (the platform could not keep up).
    let give_up = Duration::from_secs(if opts.quick { 30 } else { 120 });
    let app = env::spawn(
        Sync::Always,
        &[Role::Api, Role::Projector, Role::Worker],
        false,
        &[],
    )
    .await?;
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..TENANTS)
            .map(|t| app.token("bench", &format!("l{t}"), &["admin"]))
            .collect(),
    );
    let loaded = open_loop(&app, &tokens, rate, seconds, give_up, 0).await;
    let rate_note = if max_rate.is_none() {
        " (no measured maximum: fallback rate)"
    } else {
        " (half the measured maximum)"
    };
    add_figures(
        report,
        opts,
        "",
        rate,
        rate_note,
        &loaded,
        [Some(10.0), Some(50.0)],
    );
    let light = open_loop(
        &app,
        &tokens,
        LIGHT_RATE,
        seconds,
        give_up,
        loaded.succeeded.len() + loaded.errors,
    )
    .await;
    add_figures(
        report,
        opts,
        " at light load",
        LIGHT_RATE,
        "",
        &light,
        [None, None],
    );
    app.stop().await;
    Ok(())
}

/// Sends `mkdir`s at `rate` for `seconds` (numbered from `first`, spread over the bench
/// tenants) and times each to `succeeded`.
async fn open_loop(
    app: &env::BenchApp,
    tokens: &Arc<Vec<String>>,
    rate: f64,
    seconds: f64,
    give_up: Duration,
    first: usize,
) -> Samples {
    let total = (rate * seconds).ceil() as usize;
    let samples = Arc::new(Mutex::new(Samples::default()));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = tokio::task::JoinSet::new();
    for i in first..first + total {
        ticker.tick().await;
        let (http, base, tokens, samples) = (
            app.http.clone(),
            app.base.clone(),
            tokens.clone(),
            samples.clone(),
        );
        requests.spawn(async move {
            let token = &tokens[i % TENANTS];
            let sent = Instant::now();
            let result = async {
                let task = submit(&http, &base, token, &mkdir_body("latency", i)).await?;
                let accepted = sent.elapsed();
                let status = wait_terminal(&http, &base, token, task, give_up).await?;
                anyhow::ensure!(status == "succeeded", "task {task} ended {status}");
                Ok((accepted, sent.elapsed()))
            }
            .await;
            let mut s = samples.lock().await;
            match result {
                Ok((accepted, succeeded)) => {
                    s.accepted.push(accepted);
                    s.succeeded.push(succeeded);
                }
                Err(e) => {
                    s.errors += 1;
                    s.first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        });
    }
    while requests.join_next().await.is_some() {}
    let all = std::mem::take(&mut *samples.lock().await);
    all
}

/// Picks one quantile of a [`Latency`], in µs.
type Quantile = fn(&Latency) -> u64;

/// Reports p50 and p99 of `samples`, with their targets (none at light load).
fn add_figures(
    report: &mut Report,
    opts: &Options,
    load: &str,
    rate: f64,
    rate_note: &str,
    samples: &Samples,
    targets: [Option<f64>; 2],
) {
    let (mut succeeded, mut accepted) = (samples.succeeded.clone(), samples.accepted.clone());
    let end_to_end = Latency::of(&mut succeeded);
    let accepted = Latency::of(&mut accepted);
    let ms = |l: Option<Latency>, f: Quantile| l.map_or(f64::INFINITY, |l| f(&l) as f64 / 1000.0);
    let note = format!(
        "open loop at {rate:.0}/s{rate_note}; {}",
        match &samples.first_error {
            Some(e) => format!("{} errors, first: {e}", samples.errors),
            None => "no errors".into(),
        }
    );
    let picks: [(&str, Quantile); 2] = [("p50", |l| l.p50_us), ("p99", |l| l.p99_us)];
    for ((quantile, pick), target) in picks.into_iter().zip(targets) {
        report.add(
            FigureBuilder::new(
                "latency",
                format!("request → succeeded {quantile}{load}"),
                "ms",
            )
            .measured(ms(end_to_end, pick), end_to_end)
            .baseline("request → 202 (ms)", ms(accepted, pick), accepted)
            .conditions(rate.round() as usize, 0, samples.succeeded.len())
            .target(target.map_or(Target::None, |value| Target::AtMost { value }))
            .note(note.clone())
            .build(),
            opts.json,
        );
    }
}
