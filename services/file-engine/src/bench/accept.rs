//! API acceptance: 64 HTTP clients send `mkdir` commands of distinct paths (8 tenants,
//! ES256 tokens verified on every request) for a fixed time; only the API role runs, so the
//! figure is what one API process accepts (202 after JetStream's ack). Baseline: raw acked
//! JetStream publishes of messages of the size the API's commits have, 64 in flight, on the
//! same server — once with JetStream's default fsync policy and once with
//! `sync_interval: always`.

use std::time::Duration;

use super::env::{self, Sync};
use super::load::{closed_loop, mkdir_body, submit, Stop};
use super::log::{raw_publishes, raw_stream};
use super::report::{FigureBuilder, Latency, Report, Target};
use super::Options;
use crate::Role;

pub const CLIENTS: usize = 64;
pub const TENANTS: usize = 8;

/// Runs both settings; returns the acceptance rate with `sync_interval: always`.
pub async fn run(report: &mut Report, opts: &Options) -> anyhow::Result<f64> {
    let seconds = if opts.quick { 3 } else { 15 };
    let mut always_rate = 0.0;
    for sync in [Sync::Default, Sync::Always] {
        let app = env::spawn(sync, &[Role::Api], false, &[]).await?;
        let tokens: Vec<String> = (0..TENANTS)
            .map(|t| app.token("bench", &format!("t{t}"), &["admin"]))
            .collect();
        let (http, base) = (app.http.clone(), app.base.clone());
        let run_id = uuid::Uuid::now_v7().simple().to_string();
        let send = move |i: usize| {
            let (http, base) = (http.clone(), base.clone());
            let token = tokens[i % TENANTS].clone();
            let body = mkdir_body(&run_id, i);
            async move { submit(&http, &base, &token, &body).await }
        };
        // Warm-up: connections, the JWT key cache, the stream's first blocks.
        let send = std::sync::Arc::new(send);
        let warm = send.clone();
        closed_loop(CLIENTS, Stop::Count(CLIENTS * 4), move |i| {
            warm(usize::MAX / 2 + i)
        })
        .await;
        let timed = send.clone();
        let mut api = closed_loop(
            CLIENTS,
            Stop::After(Duration::from_secs(seconds)),
            move |i| timed(i),
        )
        .await;
        let js = app.platform.log.jetstream().clone();
        let payload = last_commit_size(&js).await?;
        raw_stream(&js).await?;
        let mut raw = raw_publishes(
            &js,
            CLIENTS,
            Stop::After(Duration::from_secs(seconds)),
            bytes::Bytes::from(vec![b'x'; payload]),
        )
        .await;
        let target = match sync {
            Sync::Default => Target::AtLeast { value: 5000.0 },
            Sync::Always => Target::RatioAtLeast { value: 0.7 },
        };
        if sync == Sync::Always {
            always_rate = api.rate();
        }
        report.add(
            FigureBuilder::new(
                "accept",
                format!("mkdir accepted/s ({})", sync.label()),
                "/s",
            )
            .measured(api.rate(), Latency::of(&mut api.latencies))
            .baseline(
                format!("raw acked publish/s ({})", sync.label()),
                raw.rate(),
                Latency::of(&mut raw.latencies),
            )
            .conditions(CLIENTS, payload, api.results.len())
            .target(target)
            .note(format!(
                "api role only, {TENANTS} tenants, ES256 tokens; {} {}",
                api.error_note(),
                raw.error_note()
            ))
            .build(),
            opts.json,
        );
        app.stop().await;
    }
    Ok(always_rate)
}

/// Size of the body of the last commit in the event stream.
async fn last_commit_size(js: &async_nats::jetstream::Context) -> anyhow::Result<usize> {
    let mut stream = js.get_stream(platform::streams::EVENTS_STREAM).await?;
    let last = stream.info().await?.state.last_sequence;
    let msg = stream.get_raw_message(last).await?;
    Ok(msg.payload.len())
}
