//! `file-engine bench`: performance figures measured as ratios against raw baselines taken in
//! the same run, so numbers stay comparable across noisy machines.
//!
//! - `acl`: in-process ACL decision latency (10,000 rules, 32-segment paths), p50/p99.
//! - `upload`: a 1 GiB streamed upload vs a raw disk write (and memory growth), and the scan
//!   step vs a direct clamd INSTREAM.
//! - `log`: committing a task through the event log (load + optimistic append) vs a raw
//!   JetStream publish of the same bytes to a stream with the same storage settings.
//!
//! - `e2e`: mkdir requested → succeeded through the whole platform, commands/s and p50/p99,
//!   with 1 projection partition and with `FE_PARTITIONS` (rebuilds the read models: scratch
//!   servers only).
//!
//! The log bench writes to the configured NATS server: point `FE_NATS_URL` at a scratch
//! server (the README's bench command starts one), never at production.

mod acl;
mod log;
mod projection;
mod upload;

use std::time::Duration;

/// Percentile of sorted samples (nearest rank).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn report(name: &str, samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort_unstable();
    let (p50, p99) = (percentile(samples, 50.0), percentile(samples, 99.0));
    println!(
        "{name:<40} n={:<8} p50={:>10.2?} p99={:>10.2?}",
        samples.len(),
        p50,
        p99
    );
    (p50, p99)
}

pub async fn run(
    config: platform::config::Config,
    which: &[String],
    quick: bool,
) -> anyhow::Result<()> {
    let nats_url = config.nats_url.clone();
    let all = which.is_empty();
    let wants = |n: &str| all || which.iter().any(|w| w == n);
    if wants("acl") {
        acl::run(if quick { 20_000 } else { 200_000 });
    }
    if wants("log") {
        log::run(&nats_url, if quick { 200 } else { 2_000 }).await?;
    }
    if wants("e2e") {
        projection::run(config.clone(), if quick { 10 } else { 100 }).await?;
    }
    if wants("upload") {
        let (large, scan) = if quick {
            (64 << 20, 16 << 20)
        } else {
            (1 << 30, 100 << 20)
        };
        upload::run(config, large, scan).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&s, 50.0), Duration::from_micros(50));
        assert_eq!(percentile(&s, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&s, 100.0), Duration::from_micros(100));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }
}
