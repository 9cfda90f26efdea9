//! Burst and drain, then replay, on one platform (api, projector, worker; sync always):
//!
//! - 64 clients send N `mkdir` commands of distinct paths over 8 tenants as fast as the API
//!   accepts them; the log is followed live until every accepted task has an outcome event.
//!   Figures: time from the last acceptance to the last outcome (target ≤ 60 s), and tasks
//!   completed per second from the first request to the last outcome (target ≥ 1,000/s),
//!   beside the acceptance rate of the same burst.
//! - With the roles stopped, the read models are rebuilt from that log (`replay`) and
//!   compared with a raw ordered read of the same stream (events/s).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use futures::StreamExt;
use platform::event_log::event_types;
use platform::streams::EVENTS_STREAM;

use super::accept::{CLIENTS, TENANTS};
use super::census::follow_outcomes_counting;
use super::env::{self, Sync};
use super::load::{closed_loop, mkdir_body, submit, Stop};
use super::report::{FigureBuilder, Latency, Report, Target};
use super::Options;
use crate::Role;

pub async fn run(report: &mut Report, opts: &Options) -> anyhow::Result<()> {
    let n = if opts.quick { 2_000 } else { 50_000 };
    // How long the drain may take before the bench stops waiting: past the 60 s target the
    // verdict is decided; the full run waits longer to report the actual drain time.
    let drain_limit = Duration::from_secs(if opts.quick { 65 } else { 300 });
    let mut app = env::spawn(
        Sync::Always,
        &[Role::Api, Role::Projector, Role::Worker],
        false,
        &[],
    )
    .await?;
    let js = app.platform.log.jetstream().clone();
    let far = Instant::now() + Duration::from_secs(3600);
    let progress = Arc::new(AtomicUsize::new(0));
    let mut follower = {
        let (js, progress) = (js.clone(), progress.clone());
        tokio::spawn(async move { follow_outcomes_counting(&js, n, far, &progress).await })
    };
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..TENANTS)
            .map(|t| app.token("bench", &format!("t{t}"), &["admin"]))
            .collect(),
    );
    let (http, base) = (app.http.clone(), app.base.clone());
    let started = Instant::now();
    let mut burst = closed_loop(CLIENTS, Stop::Count(n), move |i| {
        let (http, base, tokens) = (http.clone(), base.clone(), tokens.clone());
        async move {
            let body = mkdir_body("burst", i);
            submit(&http, &base, &tokens[i % TENANTS], &body).await
        }
    })
    .await;
    let last_accepted = Instant::now();
    let accepted = burst.results.len();
    let drained = tokio::time::timeout(drain_limit, &mut follower).await;
    let (done, finished) = match drained {
        Ok(joined) => {
            let (done, _) = joined??;
            (done, Instant::now())
        }
        Err(_) => {
            follower.abort();
            (0, Instant::now())
        }
    };
    let all_done = done >= accepted;
    let drain = finished.duration_since(last_accepted);
    let completed_rate = if all_done {
        accepted as f64 / finished.duration_since(started).as_secs_f64()
    } else {
        0.0
    };
    let note = if all_done {
        burst.error_note()
    } else {
        format!(
            "NOT DRAINED: {} of {accepted} terminal {drain_limit:?} after the last acceptance; {}",
            progress.load(Ordering::Relaxed),
            burst.error_note()
        )
    };
    report.add(
        FigureBuilder::new("burst", "drain: last acceptance → all terminal", "s")
            .measured(
                if all_done {
                    drain.as_secs_f64()
                } else {
                    f64::INFINITY
                },
                None,
            )
            .baseline(
                "time to accept the burst (s)",
                last_accepted.duration_since(started).as_secs_f64(),
                None,
            )
            .conditions(CLIENTS, 0, accepted)
            .target(Target::AtMost { value: 60.0 })
            .note(note.clone())
            .build(),
        opts.json,
    );
    report.add(
        FigureBuilder::new("burst", "tasks completed/s (first request → last)", "/s")
            .measured(completed_rate, None)
            .baseline(
                "accepted/s in the burst",
                burst.rate(),
                Latency::of(&mut burst.latencies),
            )
            .conditions(CLIENTS, 0, accepted)
            .target(Target::AtLeast { value: 1000.0 })
            .note(note)
            .build(),
        opts.json,
    );

    app.stop_services().await;
    replay(report, opts, &app).await?;
    app.stop().await;
    Ok(())
}

/// Replays the burst's log into the read models and reads it raw, both timed.
async fn replay(report: &mut Report, opts: &Options, app: &env::BenchApp) -> anyhow::Result<()> {
    let js = app.platform.log.jetstream();
    let (messages, events, raw) = raw_ordered_read(js).await?;
    let started = Instant::now();
    projector::replay(js, &app.platform.pool).await?;
    let took = started.elapsed();
    let rate = events as f64 / took.as_secs_f64();
    let raw_rate = events as f64 / raw.as_secs_f64();
    report.add(
        FigureBuilder::new("replay", "replay of all read models, events/s", "/s")
            .measured(rate, None)
            .baseline("raw ordered read, events/s", raw_rate, None)
            .conditions(1, 0, events)
            .target(Target::AtLeast { value: 20_000.0 })
            .note(format!("{messages} commits, {events} events"))
            .build(),
        opts.json,
    );
    report.add(
        FigureBuilder::new("replay", "replay vs raw ordered read", "/s")
            .measured(rate, None)
            .baseline("raw ordered read, events/s", raw_rate, None)
            .conditions(1, 0, events)
            .target(Target::RatioAtLeast { value: 0.5 })
            .build(),
        opts.json,
    );
    Ok(())
}

/// Reads the whole event stream through an ordered consumer: commits, events (from the
/// `Fe-Event-Types` header) and the time it took.
async fn raw_ordered_read(
    js: &async_nats::jetstream::Context,
) -> anyhow::Result<(usize, usize, Duration)> {
    let mut stream = js.get_stream(EVENTS_STREAM).await?;
    let last = stream.info().await?.state.last_sequence;
    let started = Instant::now();
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let (mut commits, mut events) = (0usize, 0usize);
    while let Some(msg) = messages.next().await {
        let msg = msg?;
        commits += 1;
        events += event_types(msg.headers.as_ref()).len();
        if msg
            .info()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .stream_sequence
            >= last
        {
            break;
        }
    }
    Ok((commits, events, started.elapsed()))
}
