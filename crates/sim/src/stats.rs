//! Lock-free measurements shared by every simulated call: log-linear histograms (about 1.6%
//! precision) and counters. Recording is a few relaxed atomic adds, so a thousand calls on one
//! core can record every frame without allocating or locking.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Values below this are their own bucket.
const LINEAR: u64 = 128;
/// Sub-buckets per power of two above `LINEAR`.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Powers of two covered above `LINEAR` (up to 2^47 us, far beyond any call).
const OCTAVES: u64 = 40;
const BUCKETS: usize = (LINEAR + OCTAVES * SUB) as usize;

fn bucket(value: u64) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    let exponent = u64::from(value.ilog2());
    let octave = (exponent - u64::from(LINEAR.trailing_zeros())).min(OCTAVES - 1);
    let sub = (value >> (exponent - u64::from(SUB_BITS))) & (SUB - 1);
    (LINEAR + octave * SUB + sub) as usize
}

/// The smallest value that lands in bucket `index`.
fn bucket_floor(index: usize) -> u64 {
    let index = index as u64;
    if index < LINEAR {
        return index;
    }
    let octave = (index - LINEAR) / SUB;
    let sub = (index - LINEAR) % SUB;
    let exponent = octave + u64::from(LINEAR.trailing_zeros());
    (1 << exponent) + (sub << (exponent - u64::from(SUB_BITS)))
}

/// A concurrent histogram of non-negative integers (microseconds, by convention).
#[derive(Debug)]
pub struct Histogram {
    counts: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// A histogram's summary, in the recorded unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest value.
    pub max: u64,
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    /// Records one value.
    pub fn record(&self, value: u64) {
        self.counts[bucket(value)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.max.fetch_max(value, Ordering::Relaxed);
    }

    /// Values recorded so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The value at quantile `q` (0..=1): the floor of its bucket, so within 1.6% below the
    /// true value; the maximum is exact.
    pub fn quantile(&self, q: f64) -> u64 {
        let count = self.count();
        if count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, bucket) in self.counts.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= rank {
                return bucket_floor(index).min(self.max.load(Ordering::Relaxed));
            }
        }
        self.max.load(Ordering::Relaxed)
    }

    /// Count, mean, p50/p95/p99 and max.
    pub fn summary(&self) -> Summary {
        let count = self.count();
        Summary {
            count,
            mean: if count == 0 {
                0.0
            } else {
                self.sum.load(Ordering::Relaxed) as f64 / count as f64
            },
            p50: self.quantile(0.50),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
            max: self.max.load(Ordering::Relaxed),
        }
    }

    /// Non-empty buckets as `(floor, count)`, for plotting.
    pub fn buckets(&self) -> Vec<(u64, u64)> {
        self.counts
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let c = c.load(Ordering::Relaxed);
                (c > 0).then(|| (bucket_floor(i), c))
            })
            .collect()
    }
}

/// Everything the simulated calls of one run measure. Shared by reference (`Arc`).
#[derive(Debug, Default)]
pub struct Recorder {
    /// From dialing the WebSocket to the upgrade completing.
    pub connect_us: Histogram,
    /// From `start`/`setup` to the first bot audio (Media Streams) or token (relay).
    pub first_audio_us: Histogram,
    /// From the end of a caller utterance to the first bot audio of the reply.
    pub turn_latency_us: Histogram,
    /// Relay: from a `prompt` to the first `text` token of the reply.
    pub first_token_us: Histogram,
    /// How late each outbound `media` message arrived inside a bot turn (0 when the playout
    /// buffer still held audio).
    pub playout_lateness_us: Histogram,
    /// From the caller starting to talk over the bot to the `clear` (Media Streams) or to
    /// the bot's next reply (relay).
    pub barge_in_us: Histogram,
    /// Media Streams: caller audio sent from talking over the bot to the `clear` (20 ms per
    /// frame): the stream-time view of `barge_in_us`. Frames go out at the start of their
    /// 20 ms, so the wall-clock figure can be one frame shorter than the audio it carried.
    pub barge_in_audio_us: Histogram,
    /// How late the generator sent each inbound frame against its 20 ms schedule.
    pub send_lateness_us: Histogram,
    /// The largest send lateness since the load test's last once-a-second sample (it swaps
    /// this back to 0): the generator's own stalls, second by second.
    pub send_lateness_window_max_us: AtomicU64,
    /// Calls started.
    pub calls_started: AtomicU64,
    /// Calls that connected.
    pub calls_connected: AtomicU64,
    /// Calls that ended normally.
    pub calls_completed: AtomicU64,
    /// Calls that failed (connect error, protocol error, unexpected close).
    pub calls_failed: AtomicU64,
    /// Inbound `media` frames sent.
    pub frames_sent: AtomicU64,
    /// Inbound frames sent more than one frame (20 ms) late.
    pub frames_sent_late: AtomicU64,
    /// Outbound `media` messages received (including those read after hanging up, see
    /// [`crate::media_call::MediaCallOptions::drain_after_hangup`]).
    pub media_received: AtomicU64,
    /// Of those, the ones the bridge had sent before it read the caller's `stop`, read while
    /// waiting for its Close.
    pub media_after_hangup: AtomicU64,
    /// 20 ms slots of silence inside bot turns (underruns the caller heard).
    pub dropped_frames: AtomicU64,
    /// Marks echoed.
    pub marks_echoed: AtomicU64,
    /// `clear` messages received.
    pub clears: AtomicU64,
    /// Relay `text` tokens received.
    pub tokens_received: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one error by its kind (a short, stable description).
    pub fn error(&self, kind: &str) {
        let mut errors = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *errors.entry(kind.to_owned()).or_default() += 1;
    }

    /// Errors by kind.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_floors_round_trip() {
        let mut last = 0;
        for v in (0..10_000_000u64).step_by(997) {
            let b = bucket(v);
            assert!(b >= last);
            last = b;
            let floor = bucket_floor(b);
            assert!(floor <= v, "{v} -> {b} -> {floor}");
            assert!(v - floor <= v / 60 + 1, "precision at {v}: floor {floor}");
        }
        for b in 0..BUCKETS - 1 {
            assert_eq!(bucket(bucket_floor(b)), b);
        }
    }

    #[test]
    fn quantiles_of_a_uniform_range() {
        let h = Histogram::new();
        for v in 1..=10_000 {
            h.record(v);
        }
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.max, 10_000);
        assert!((s.mean - 5000.5).abs() < 1e-9);
        for (q, got) in [(0.5, s.p50), (0.95, s.p95), (0.99, s.p99)] {
            let want = (q * 10_000.0) as u64;
            assert!(
                got <= want && got >= want - want / 60,
                "q{q}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn empty_histogram_is_zero() {
        let s = Histogram::new().summary();
        assert_eq!((s.count, s.p99, s.max), (0, 0, 0));
    }

    #[test]
    fn errors_are_counted_by_kind() {
        let r = Recorder::new();
        r.error("connect refused");
        r.error("connect refused");
        r.error("closed 1008");
        assert_eq!(r.errors()["connect refused"], 2);
        assert_eq!(r.errors().len(), 2);
    }
}
