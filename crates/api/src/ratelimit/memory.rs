//! In-process backend: one [`NumberState`] per number in a sharded concurrent map. A decision
//! locks one shard for a few hundred nanoseconds and never across an `.await`.

use std::sync::Arc;

use dashmap::DashMap;

use super::{Decision, NumberState, NumberStats, SlidingWindow};

/// Rate-limit state in this process. Cheap to clone (shared map).
#[derive(Debug, Clone)]
pub struct MemoryLimiter {
    rule: SlidingWindow,
    numbers: Arc<DashMap<String, NumberState>>,
}

impl MemoryLimiter {
    /// A limiter with `rule`.
    pub fn new(rule: SlidingWindow) -> Self {
        Self {
            rule,
            numbers: Arc::new(DashMap::new()),
        }
    }

    /// Decides a call from `key` at `now_ms`.
    pub fn check(&self, key: &str, now_ms: i64) -> Decision {
        if let Some(mut state) = self.numbers.get_mut(key) {
            return self.rule.decide(&mut state, now_ms);
        }
        let mut state = self.numbers.entry(key.to_owned()).or_default();
        self.rule.decide(&mut state, now_ms)
    }

    /// The state of `key` at `now_ms` (all zero for an unknown number).
    pub fn stats(&self, key: &str, now_ms: i64) -> NumberStats {
        match self.numbers.get_mut(key) {
            Some(mut state) => self.rule.stats(&mut state, now_ms),
            None => self.rule.stats(&mut NumberState::default(), now_ms),
        }
    }

    /// The rule in force.
    pub fn window(&self) -> SlidingWindow {
        self.rule
    }
}
