//! Retry delays: how long a released delivery (or a failed subscription) waits before the
//! next attempt. One exponential schedule per use, built with `backon`, so the shapes of all
//! retries in the platform are declared in one way and tested once.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// A capped exponential schedule: `first`, `first * 2`, ... up to `cap`, without jitter (the
/// delays are handed to JetStream, which spreads redeliveries by itself).
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
}

impl Backoff {
    /// Doubles from `first` up to `cap`.
    pub const fn new(first: Duration, cap: Duration) -> Self {
        Backoff {
            builder: ExponentialBuilder::new()
                .with_min_delay(first)
                .with_max_delay(cap)
                .with_factor(2.0)
                .without_max_times(),
        }
    }

    /// The delay before attempt `attempt + 1` after `attempt` unsuccessful ones (1-based;
    /// 0 counts as 1). Never panics, whatever the count.
    pub fn delay(&self, attempt: i64) -> Duration {
        // Past 64 doublings every schedule is at its cap; bounding the walk keeps it cheap.
        let index = usize::try_from(attempt.saturating_sub(1).clamp(0, 64)).unwrap_or(0);
        self.builder
            .build()
            .nth(index)
            .unwrap_or_else(|| self.cap())
    }

    /// The longest delay of the schedule.
    pub fn cap(&self) -> Duration {
        self.builder.build().nth(64).unwrap_or(Duration::MAX)
    }

    /// The delays in order, for retry loops (`backon::Retryable`).
    pub fn builder(&self) -> ExponentialBuilder {
        self.builder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let secs: Vec<u64> = [0, 1, 2, 3, 4, 5, 6, 7, 1000, i64::MAX]
            .iter()
            .map(|a| b.delay(*a).as_secs())
            .collect();
        assert_eq!(secs, [1, 1, 2, 4, 8, 16, 30, 30, 30, 30]);
        assert_eq!(b.delay(i64::MIN), Duration::from_secs(1));
        assert_eq!(b.cap(), Duration::from_secs(30));
    }

    #[test]
    fn sub_second_schedules_keep_their_precision() {
        let b = Backoff::new(Duration::from_millis(250), Duration::from_secs(2));
        assert_eq!(b.delay(1), Duration::from_millis(250));
        assert_eq!(b.delay(2), Duration::from_millis(500));
        assert_eq!(b.delay(5), Duration::from_secs(2));
    }
}
