//! When to try again: the retry schedule of a failed delivery. Pure, so the schedule is
//! unit-tested exactly.
//!
//! After the n-th failed attempt the next one is due `2 s · 2^(n-1)` later (2 s, 4 s, 8 s, …)
//! capped at 10 minutes, plus up to 10 % jitter so that deliveries failing together do not
//! retry in lockstep. The first retry therefore comes after 2–2.2 s, inside the 5 s API.md
//! promises. A delivery whose next attempt would fall after its give-up deadline (queued +
//! `FE_WEBHOOK_GIVE_UP_S`, 24 h by default) is dead instead; at the default settings that is
//! about 150 attempts.

use std::time::Duration;

/// Delay before the first retry.
pub const FIRST_RETRY: Duration = Duration::from_secs(2);
/// Longest delay between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);
/// Largest jitter, as a fraction of the delay.
const JITTER: f64 = 0.1;

/// The delay after `failed_attempts` failed attempts (1 = the first attempt failed);
/// `jitter` in `[0, 1)` picks the point within the jitter band.
pub fn retry_delay(failed_attempts: u32, jitter: f64) -> Duration {
    let doublings = failed_attempts.saturating_sub(1).min(16);
    let base = FIRST_RETRY
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_DELAY);
    base.mul_f64(1.0 + JITTER * jitter.clamp(0.0, 1.0))
}

/// A random jitter point for [`retry_delay`].
pub fn random_jitter() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_retry_comes_within_five_seconds() {
        assert_eq!(retry_delay(1, 0.0), Duration::from_secs(2));
        assert!(retry_delay(1, 0.999) < Duration::from_secs(5));
    }

    #[test]
    fn delays_double_up_to_ten_minutes() {
        let secs: Vec<u64> = (1..=12).map(|n| retry_delay(n, 0.0).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600]);
        assert_eq!(retry_delay(u32::MAX, 0.0), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(0, 0.0), FIRST_RETRY);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for n in 1..20 {
            let low = retry_delay(n, 0.0);
            let high = retry_delay(n, 1.0);
            assert!(high >= low && high <= low.mul_f64(1.1) + Duration::from_millis(1));
        }
        assert_eq!(retry_delay(3, -5.0), retry_delay(3, 0.0));
    }
}
