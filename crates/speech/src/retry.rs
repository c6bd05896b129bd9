//! When to try a provider again (pure, no clock reads: times are passed in).
//!
//! Transient errors ([`ProviderError::is_retryable`]: timeouts, 429, 5xx, transport) are retried
//! with jittered exponential backoff, honouring a 429's `Retry-After`, but only while the
//! turn's budget allows: an attempt that could not even start before the deadline is not made.
//! The jitter ("equal jitter": half fixed, half random) keeps many calls that failed together
//! from retrying together.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ProviderError;

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// First backoff, before jitter (ms). Default 200.
    pub base_ms: u64,
    /// Longest backoff, before jitter (ms). Default 1000. A `Retry-After` above it is still
    /// honoured when the budget allows.
    pub max_ms: u64,
    /// Most attempts per request (the first one included). Default 4.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_ms: 200,
            max_ms: 1000,
            max_attempts: 4,
        }
    }
}

/// A small deterministic random source for jitter (xorshift64*), seeded per call.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// A source seeded from `seed` (e.g. the call SID).
    pub fn new(seed: &str) -> Self {
        // FNV-1a: spreads similar SIDs apart; never zero (xorshift's fixed point).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in seed.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Self(h | 1)
    }

    /// A number in `0.0..1.0`.
    pub fn next_unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl RetryPolicy {
    /// The backoff before attempt `failed + 1`, after `failed` failed attempts (1 = the first
    /// failed), for a jitter draw `unit` in `0.0..1.0`.
    pub fn backoff(&self, failed: u32, unit: f64) -> Duration {
        let exp = self
            .base_ms
            .saturating_mul(1u64 << failed.saturating_sub(1).min(20))
            .min(self.max_ms.max(self.base_ms));
        let half = exp / 2;
        Duration::from_millis(half + ((exp - half) as f64 * unit.clamp(0.0, 1.0)) as u64)
    }

    /// Whether to retry after `error` (the `failed`-th failed attempt) at `now`, and after what
    /// pause; `None` when the error is permanent, the attempts are used up, or the pause plus
    /// `min_attempt` (the least useful time for another attempt) would pass `deadline`.
    pub fn retry_after(
        &self,
        error: &ProviderError,
        failed: u32,
        now: Instant,
        deadline: Instant,
        min_attempt: Duration,
        jitter: &mut Jitter,
    ) -> Option<Duration> {
        if !error.is_retryable() || failed >= self.max_attempts.max(1) {
            return None;
        }
        let mut pause = self.backoff(failed, jitter.next_unit());
        if let ProviderError::RateLimited {
            retry_after: Some(after),
            ..
        } = error
        {
            pause = pause.max(*after);
        }
        let fits = now
            .checked_add(pause + min_attempt)
            .is_some_and(|t| t <= deadline);
        fits.then_some(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stage;

    fn server_error() -> ProviderError {
        ProviderError::Server {
            stage: Stage::Llm,
            status: 503,
            message: "busy".into(),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_equal_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(100));
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(2, 0.0), Duration::from_millis(200));
        assert_eq!(p.backoff(3, 1.0), Duration::from_millis(800));
        assert_eq!(p.backoff(4, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(60, 0.5), Duration::from_millis(750));
    }

    #[test]
    fn jitter_is_deterministic_per_seed_and_in_range() {
        let mut a = Jitter::new("CA1");
        let mut b = Jitter::new("CA1");
        let mut c = Jitter::new("CA2");
        let xs: Vec<f64> = (0..100).map(|_| a.next_unit()).collect();
        let ys: Vec<f64> = (0..100).map(|_| b.next_unit()).collect();
        let zs: Vec<f64> = (0..100).map(|_| c.next_unit()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / 100.0;
        assert!((0.3..0.7).contains(&mean), "{mean}");
    }

    #[test]
    fn retries_only_transient_errors_within_budget_and_attempts() {
        let p = RetryPolicy::default();
        let now = Instant::now();
        let deadline = now + Duration::from_secs(4);
        let mut j = Jitter::new("x");
        let min = Duration::from_millis(100);
        assert!(
            p.retry_after(&server_error(), 1, now, deadline, min, &mut j)
                .is_some()
        );
        let rejected = ProviderError::Rejected {
            stage: Stage::Llm,
            status: 401,
            message: "key".into(),
        };
        assert_eq!(
            p.retry_after(&rejected, 1, now, deadline, min, &mut j),
            None
        );
        assert_eq!(
            p.retry_after(&server_error(), 4, now, deadline, min, &mut j),
            None,
            "four attempts made"
        );
        let late = now + Duration::from_millis(3850);
        assert_eq!(
            p.retry_after(&server_error(), 1, late, deadline, min, &mut j),
            None,
            "no time left for an attempt after the pause"
        );
    }

    #[test]
    fn retry_after_header_is_honoured_and_can_exceed_the_budget() {
        let p = RetryPolicy::default();
        let now = Instant::now();
        let mut j = Jitter::new("x");
        let limited = |secs| ProviderError::RateLimited {
            stage: Stage::Tts,
            retry_after: Some(Duration::from_secs(secs)),
        };
        let deadline = now + Duration::from_secs(4);
        assert_eq!(
            p.retry_after(&limited(2), 1, now, deadline, Duration::ZERO, &mut j),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            p.retry_after(&limited(5), 1, now, deadline, Duration::ZERO, &mut j),
            None
        );
    }
}
