//! Per-caller sliding-window rate limit for incoming calls.
//!
//! [`SlidingWindow`] is the sans-IO rule: a call at `now` is allowed when fewer than
//! `max_calls` allowed calls happened in `(now - window, now]`. Time is an argument, so tests
//! move a virtual clock. Two backends keep the per-number state: [`MemoryLimiter`] (this
//! process) and [`RedisLimiter`] (shared by instances: one Lua script per decision over a sorted
//! set, the keys expiring with the window). [`RateLimiter`] picks one at run time.

mod memory;
mod redis;

use std::collections::VecDeque;

use serde::Serialize;

pub use memory::MemoryLimiter;
pub use redis::RedisLimiter;

/// The limiter key of a caller: its E.164 number; any other `From` (a SIP URI of any length, a
/// client name, nothing) as `other:` and the first 32 hex digits of its SHA-256, so keys stay
/// short (Redis keys, audit rows) and odd callers still get their own window.
pub fn caller_key(from: &voxbridge_twilio::e164::Address) -> String {
    use sha2::{Digest as _, Sha256};
    use std::fmt::Write as _;
    if let Some(number) = from.phone() {
        return number.as_str().to_owned();
    }
    let digest = Sha256::digest(from.to_string().as_bytes());
    let mut key = String::with_capacity(6 + 32);
    key.push_str("other:");
    for byte in &digest[..16] {
        let _ = write!(key, "{byte:02x}");
    }
    key
}

/// Why a decision could not be made (the caller fails open).
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    /// Redis refused the command or could not be reached.
    #[error("rate-limit store error: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// Redis did not answer in time.
    #[error("rate-limit store timed out after {0} ms")]
    Timeout(u64),
    /// Redis answered with something the script never returns.
    #[error("rate-limit store returned an unexpected reply: {0}")]
    Reply(String),
}

/// The outcome of one call attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Whether the call may proceed.
    pub allowed: bool,
    /// Allowed calls in the window after this decision.
    pub count: u32,
    /// The limit.
    pub limit: u32,
}

/// What a number's state looks like now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NumberStats {
    /// Allowed calls inside the window, oldest first (Unix ms).
    pub recent: Vec<i64>,
    /// The last allowed call (Unix ms).
    pub last_allowed: Option<i64>,
    /// Calls allowed since the state was created (in Redis: since the keys last expired).
    pub total_allowed: u64,
    /// Calls blocked since the state was created (in Redis: since the keys last expired).
    pub total_blocked: u64,
}

/// The sliding-window rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindow {
    /// Calls allowed per window.
    pub max_calls: u32,
    /// Window length in ms.
    pub window_ms: i64,
}

/// One number's state for [`SlidingWindow`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumberState {
    recent: VecDeque<i64>,
    last_allowed: Option<i64>,
    total_allowed: u64,
    total_blocked: u64,
}

impl SlidingWindow {
    /// Decides a call at `now_ms` and updates `state`.
    pub fn decide(&self, state: &mut NumberState, now_ms: i64) -> Decision {
        self.evict(state, now_ms);
        let count = u32::try_from(state.recent.len()).unwrap_or(u32::MAX);
        if count < self.max_calls {
            state.recent.push_back(now_ms);
            state.last_allowed = Some(now_ms);
            state.total_allowed += 1;
            Decision {
                allowed: true,
                count: count + 1,
                limit: self.max_calls,
            }
        } else {
            state.total_blocked += 1;
            Decision {
                allowed: false,
                count,
                limit: self.max_calls,
            }
        }
    }

    /// The state as seen at `now_ms` (expired entries dropped).
    pub fn stats(&self, state: &mut NumberState, now_ms: i64) -> NumberStats {
        self.evict(state, now_ms);
        NumberStats {
            recent: state.recent.iter().copied().collect(),
            last_allowed: state.last_allowed,
            total_allowed: state.total_allowed,
            total_blocked: state.total_blocked,
        }
    }

    fn evict(&self, state: &mut NumberState, now_ms: i64) {
        let horizon = now_ms.saturating_sub(self.window_ms);
        while state.recent.front().is_some_and(|&t| t <= horizon) {
            state.recent.pop_front();
        }
    }
}

/// A rate limiter with either backend.
#[derive(Debug, Clone)]
pub enum RateLimiter {
    /// In this process.
    Memory(MemoryLimiter),
    /// In Redis.
    Redis(Box<RedisLimiter>),
}

impl RateLimiter {
    /// Decides a call from `key` (the caller's number) at `now_ms`.
    pub async fn check(&self, key: &str, now_ms: i64) -> Result<Decision, LimiterError> {
        match self {
            Self::Memory(limiter) => Ok(limiter.check(key, now_ms)),
            Self::Redis(limiter) => limiter.check(key, now_ms).await,
        }
    }

    /// The state of `key` at `now_ms`.
    pub async fn stats(&self, key: &str, now_ms: i64) -> Result<NumberStats, LimiterError> {
        match self {
            Self::Memory(limiter) => Ok(limiter.stats(key, now_ms)),
            Self::Redis(limiter) => limiter.stats(key, now_ms).await,
        }
    }

    /// The rule in force.
    pub fn window(&self) -> SlidingWindow {
        match self {
            Self::Memory(limiter) => limiter.window(),
            Self::Redis(limiter) => limiter.window(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn odd_callers_get_short_distinct_keys_and_numbers_their_own() {
        use voxbridge_twilio::e164::Address;
        let long = format!("sip:{}@trunk.example.com", "a".repeat(478));
        let key = caller_key(&Address::parse(&long));
        assert_eq!(key.len(), 38, "{key}");
        assert!(key.starts_with("other:"));
        assert_ne!(key, caller_key(&Address::parse("anonymous")));
        assert_eq!(key, caller_key(&Address::parse(&long)));
        assert_eq!(
            caller_key(&Address::parse("+1 415 867 5309")),
            "+14158675309"
        );
    }

    #[test]
    fn sixth_call_in_the_window_is_blocked_and_expiry_frees_a_slot() {
        let rule = SlidingWindow {
            max_calls: 5,
            window_ms: HOUR,
        };
        let mut state = NumberState::default();
        for i in 0..5 {
            let d = rule.decide(&mut state, i * 60_000);
            assert!(d.allowed);
            assert_eq!(d.count, u32::try_from(i + 1).unwrap());
        }
        assert!(!rule.decide(&mut state, 10 * 60_000).allowed);
        // The first call (t=0) leaves the window exactly one hour later.
        assert!(!rule.decide(&mut state, HOUR - 1).allowed);
        let d = rule.decide(&mut state, HOUR);
        assert!(d.allowed);
        assert_eq!(d.count, 5);
        let snapshot = rule.stats(&mut state, HOUR);
        assert_eq!((snapshot.total_allowed, snapshot.total_blocked), (6, 2));
        assert_eq!(snapshot.last_allowed, Some(HOUR));
    }

    proptest! {
        /// However calls are spaced, no window ever holds more than `max_calls` allowed calls,
        /// and a call is blocked only when the window is full.
        #[test]
        fn never_more_than_max_in_any_window(
            max in 1u32..8,
            window in 1i64..10_000,
            gaps in proptest::collection::vec(0i64..3_000, 1..200),
        ) {
            let rule = SlidingWindow { max_calls: max, window_ms: window };
            let mut state = NumberState::default();
            let mut now = 0;
            let mut allowed: Vec<i64> = Vec::new();
            for gap in gaps {
                now += gap;
                let in_window = allowed.iter().filter(|&&t| t > now - window).count();
                let d = rule.decide(&mut state, now);
                prop_assert_eq!(d.allowed, in_window < max as usize);
                if d.allowed {
                    allowed.push(now);
                }
                let after = allowed.iter().filter(|&&t| t > now - window).count();
                prop_assert!(after <= max as usize);
            }
        }
    }
}
