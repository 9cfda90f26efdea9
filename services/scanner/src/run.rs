//! The scanner's handler on the consumer runtime ([`platform::consumer`]): take an upload
//! commit, scan it, and settle the delivery.
//!
//! The runtime pulls a delivery only for a free scan slot (scans are long; a message waiting
//! in a local buffer would let other scanner processes idle and risk redelivery while queued)
//! and heartbeats it for as long as the scan runs, so a long scan is never redelivered
//! meanwhile. A scan that cannot finish now is released with a capped exponential delay
//! ([`RETRY`]); shutdown releases scans still running at the drain deadline.

use std::sync::Arc;
use std::time::Duration;

use events::task::TaskEvent;
use platform::consumer::{self, Backoff, ConsumerSettings, Delivery, Handler, Outcome};
use platform::streams::DurableSpec;
use tokio_util::sync::CancellationToken;

use crate::scan;
use crate::ScannerDeps;

/// Name of the scanner's durable consumer.
pub const CONSUMER_NAME: &str = "fe-scanner";
/// Delays between attempts while clamd (or the log, or storage) stays unreachable: 1 s
/// doubling to 30 s.
pub const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

/// The scanner's durable consumer: every task commit of every tenant.
///
/// `max_deliver` is unlimited (-1): while clamd is down files must wait, not fail, and every
/// retry is a `Nak` with a capped delay ([`RETRY`]). `backoff` stays empty because the server
/// would replace `ack_wait` with its first step and redeliver long scans mid-way.
pub fn consumer_spec(ack_wait: Duration) -> DurableSpec {
    DurableSpec {
        name: CONSUMER_NAME,
        filter_subject: "fe.ev.*.task.>".to_string(),
        ack_wait,
        max_deliver: -1,
        backoff: Vec::new(),
        max_ack_pending: 256,
    }
}

/// Consumes until `shutdown` is cancelled, then drains (see [`platform::consumer`]).
pub async fn run(deps: ScannerDeps, shutdown: CancellationToken) {
    let settings = ConsumerSettings {
        spec: consumer_spec(deps.ack_wait),
        concurrency: deps.concurrency.max(1),
        drain: deps.drain,
    };
    let js = deps.log.jetstream().clone();
    consumer::run(js, settings, Arc::new(Scanner { deps }), shutdown).await;
}

struct Scanner {
    deps: ScannerDeps,
}

impl Handler for Scanner {
    type Events = Vec<TaskEvent>;

    fn wants(&self, event_types: &[&str]) -> bool {
        event_types
            .iter()
            .any(|t| matches!(*t, "file.uploaded" | "task.retried"))
    }

    async fn handle(&self, delivery: &Delivery<Vec<TaskEvent>>) -> Outcome {
        if !scan::wants_scan(&delivery.events) {
            return Outcome::Done;
        }
        match scan::process(&self.deps, &delivery.commit).await {
            scan::Outcome::Done => Outcome::Done,
            scan::Outcome::Retry(reason) => {
                tracing::warn!(%reason, delivered = delivery.delivered, "scanner: no verdict yet, will retry");
                Outcome::retry(reason, RETRY.delay(delivery.delivered))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_then_cap() {
        let secs = |d: i64| RETRY.delay(d).as_secs();
        assert_eq!(
            [0, 1, 2, 3, 4, 5, 6, 7, 1000].map(secs),
            [1, 1, 2, 4, 8, 16, 30, 30, 30]
        );
        assert_eq!(RETRY.delay(i64::MAX), Duration::from_secs(30));
    }

    #[test]
    fn consumer_never_gives_up_and_keeps_its_ack_wait() {
        let spec = consumer_spec(Duration::from_secs(60));
        assert_eq!(spec.max_deliver, -1);
        assert!(spec.backoff.is_empty());
        assert_eq!(spec.ack_wait, Duration::from_secs(60));
    }
}
