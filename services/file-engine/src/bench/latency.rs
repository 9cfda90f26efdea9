//! End-to-end latency at half the maximum acceptance rate: `mkdir` requests are sent open-loop
//! (on a fixed schedule, whatever the answers do) at half the rate the acceptance scenario
//! measured, and each one is timed from the request to its task reading `succeeded` through
//! `GET /v1/tasks/{id}?wait=` — what a client sees. Baseline: the request → 202 latency of the
//! same requests.

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
    let total = (rate * seconds).ceil() as usize;
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
    let samples = Arc::new(Mutex::new(Samples::default()));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..total {
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
    let mut s = samples.lock().await;
    let end_to_end = Latency::of(&mut s.succeeded);
    let accepted = Latency::of(&mut s.accepted);
    let ms = |l: Option<Latency>, f: fn(&Latency) -> u64| {
        l.map_or(f64::INFINITY, |l| f(&l) as f64 / 1000.0)
    };
    let note = format!(
        "open loop at {rate:.0}/s{}; {}",
        if max_rate.is_none() {
            " (no measured maximum: fallback rate)"
        } else {
            " (half the measured maximum)"
        },
        match &s.first_error {
            Some(e) => format!("{} errors, first: {e}", s.errors),
            None => "no errors".into(),
        }
    );
    for (name, pick, target) in [
        (
            "request → succeeded p50",
            (|l: &Latency| l.p50_us) as fn(&Latency) -> u64,
            10.0,
        ),
        ("request → succeeded p99", |l: &Latency| l.p99_us, 50.0),
    ] {
        report.add(
            FigureBuilder::new("latency", name, "ms")
                .measured(ms(end_to_end, pick), end_to_end)
                .baseline("request → 202 (ms)", ms(accepted, pick), accepted)
                .conditions(rate.round() as usize, 0, s.succeeded.len())
                .target(Target::AtMost { value: target })
                .note(note.clone())
                .build(),
            opts.json,
        );
    }
    drop(s);
    app.stop().await;
    Ok(())
}
