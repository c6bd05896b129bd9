//! Per-turn latency: what one reply of the voice pipeline cost, stage by stage, and the
//! process-wide metrics built from it.
//!
//! A turn starts when the caller's utterance reaches the brain (the session's VAD has already
//! waited `hangover` of silence; [`TurnLatency::utterance_ended_at`] is the end of speech in
//! stream audio time) and ends when the first `media` frame of the reply is handed to the
//! socket ([`crate::BrainEvent::TurnStarted`]). In between:
//!
//! ```text
//! utterance ──asr──▶ transcript ──dialog──▶ first text ──chunker──▶ first sentence
//!   ──tts──▶ first audio byte ──session/driver──▶ first frame sent
//! ```
//!
//! Where the numbers go:
//! - logs: one `info` per turn, "turn latency", in the call's span, every stage in ms;
//! - metrics: [`PipelineMetrics`] (lock-free histograms and counters, shared by all calls,
//!   rendered in the Prometheus text format by [`PipelineMetrics::render_prometheus`]);
//! - the call record: each brain hands its list to the factory's [`TurnSink`] when the call
//!   ends, before the media driver builds the `CallRecord` (the driver awaits the brain
//!   first). [`LatencyLog`] is a sink keyed by call SID that a `CallSink` can `take` from.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::Stage;

/// How a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnOutcome {
    /// The reply was spoken (its first frame went out).
    Spoken,
    /// A provider failed: the spoken fallback (or the apology) was played instead.
    Fallback {
        /// The stage that failed.
        stage: Stage,
    },
    /// The caller spoke over the reply before it started or while it was being prepared.
    Interrupted,
    /// Nothing to say: an empty transcript, or the dialog stayed silent.
    NoReply,
    /// The call ended first.
    CallEnded,
}

/// The latency breakdown of one turn. Stage durations are `None` when the turn never got
/// there. Serialized with durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnLatency {
    /// The first bot turn of the reply, if one was started.
    pub turn: Option<u64>,
    /// End of the caller's speech, stream audio time (ms since the first media frame).
    #[serde(serialize_with = "ms")]
    pub utterance_ended_at: Duration,
    /// The VAD silence that had to pass before the utterance was delivered (configured).
    #[serde(serialize_with = "ms")]
    pub hangover: Duration,
    /// Utterance -> final transcript (ASR, retries included).
    #[serde(serialize_with = "opt_ms")]
    pub asr: Option<Duration>,
    /// Transcript -> first text from the dialog (LLM time to first token).
    #[serde(serialize_with = "opt_ms")]
    pub dialog_first_text: Option<Duration>,
    /// Transcript -> first complete sentence (what TTS waits for).
    #[serde(serialize_with = "opt_ms")]
    pub first_sentence: Option<Duration>,
    /// First sentence sent to TTS -> its first audio.
    #[serde(serialize_with = "opt_ms")]
    pub tts_first_byte: Option<Duration>,
    /// First audio from TTS -> first frame sent to Twilio (queueing, resampling, pacing).
    #[serde(serialize_with = "opt_ms")]
    pub first_frame: Option<Duration>,
    /// Utterance -> first frame sent: the whole turn.
    #[serde(serialize_with = "opt_ms")]
    pub total: Option<Duration>,
    /// Provider attempts retried during the turn.
    pub retries: u32,
    /// How it ended.
    pub outcome: TurnOutcome,
}

#[allow(clippy::ref_option, clippy::trivially_copy_pass_by_ref)] // serde's signature
fn opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_secs_f64() * 1000.0)),
        None => s.serialize_none(),
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

impl TurnLatency {
    /// Time spent waiting on providers on the critical path: ASR, the dialog up to the first
    /// sentence, and TTS up to its first byte. `total - provider_wait` is the pipeline's own
    /// overhead (and scheduling delays).
    pub fn provider_wait(&self) -> Duration {
        self.asr.unwrap_or_default()
            + self.first_sentence.unwrap_or_default()
            + self.tts_first_byte.unwrap_or_default()
    }
}

impl TurnLatency {
    /// Logs the turn (one `info` "turn latency" line in the call's span, every stage in ms,
    /// -1 for stages not reached) and records it in `metrics`.
    pub fn report(&self, metrics: &PipelineMetrics) {
        let ms = |d: Option<Duration>| d.map_or(-1.0, |d| d.as_secs_f64() * 1000.0);
        tracing::info!(
            turn = self.turn,
            outcome = ?self.outcome,
            total_ms = ms(self.total),
            asr_ms = ms(self.asr),
            dialog_first_text_ms = ms(self.dialog_first_text),
            first_sentence_ms = ms(self.first_sentence),
            tts_first_byte_ms = ms(self.tts_first_byte),
            first_frame_ms = ms(self.first_frame),
            speech_ended_at_ms = self.utterance_ended_at.as_millis() as u64,
            hangover_ms = self.hangover.as_millis() as u64,
            retries = self.retries,
            "turn latency"
        );
        metrics.record_turn(self);
    }
}

/// The time from `from` to `to`, when both happened.
pub(crate) fn since(
    from: Option<tokio::time::Instant>,
    to: Option<tokio::time::Instant>,
) -> Option<Duration> {
    match (from, to) {
        (Some(a), Some(b)) => Some(b.saturating_duration_since(a)),
        _ => None,
    }
}

/// Receives each call's turn latencies when the call ends.
pub trait TurnSink: Send + Sync + 'static {
    /// The call `call_sid` ended with these turns (oldest first).
    fn call_turns(&self, call_sid: &str, turns: Vec<TurnLatency>);
}

/// Values by call, and the calls in arrival order.
type Calls<T> = (HashMap<String, T>, std::collections::VecDeque<String>);

/// Keeps one value per call (its turn latencies, its transcript ...) until [`CallLog::take`]
/// (e.g. from the media bridge's `CallSink`, which runs after the brain has finished).
/// Entries not taken are kept up to `capacity` calls, oldest dropped first.
#[derive(Debug)]
pub struct CallLog<T> {
    calls: Mutex<Calls<T>>,
    capacity: usize,
}

/// A [`TurnSink`] keyed by call SID: each call's turn latencies.
pub type LatencyLog = CallLog<Vec<TurnLatency>>;

impl<T: Default> CallLog<T> {
    /// A log that holds at most `capacity` calls not yet taken.
    pub fn new(capacity: usize) -> Self {
        Self {
            calls: Mutex::new((HashMap::new(), std::collections::VecDeque::new())),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Calls<T>> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes and returns the value of `call_sid` (the default if none was recorded).
    pub fn take(&self, call_sid: &str) -> T {
        let mut guard = self.lock();
        let (map, order) = &mut *guard;
        order.retain(|c| c != call_sid);
        map.remove(call_sid).unwrap_or_default()
    }

    /// Stores `value` for `call_sid`, dropping the oldest calls beyond the capacity.
    pub fn put(&self, call_sid: &str, value: T) {
        let mut guard = self.lock();
        let (map, order) = &mut *guard;
        if map.insert(call_sid.to_owned(), value).is_none() {
            order.push_back(call_sid.to_owned());
        }
        while order.len() > self.capacity {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }
}

impl TurnSink for LatencyLog {
    fn call_turns(&self, call_sid: &str, turns: Vec<TurnLatency>) {
        self.put(call_sid, turns);
    }
}

/// Upper bounds (µs) of the histogram buckets: 1-2-5 steps from 100 µs to 20 s.
const BOUNDS_US: [u64; 16] = [
    100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 5_000_000, 20_000_000,
];

/// A lock-free latency histogram (fixed buckets, atomic counters): cheap to record from any
/// number of calls at once.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// One counter per bound, plus one for larger values.
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    /// Records one value.
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of the values.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_us.load(Ordering::Relaxed))
    }

    /// The bucket bound at or above quantile `q` (`0.0..=1.0`): an upper estimate. `None`
    /// when empty; [`Duration::MAX`] when it falls in the overflow bucket.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(
                    BOUNDS_US
                        .get(i)
                        .map_or(Duration::MAX, |&us| Duration::from_micros(us)),
                );
            }
        }
        Some(Duration::MAX)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            match BOUNDS_US.get(i) {
                Some(&us) => {
                    let le = us as f64 / 1e6;
                    let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let _ = writeln!(out, "{name}_sum {}", self.sum().as_secs_f64());
        let _ = writeln!(out, "{name}_count {}", self.count());
    }
}

/// Process-wide voice pipeline metrics: share one (`Arc`) among all calls' brains.
#[derive(Debug, Default)]
pub struct PipelineMetrics {
    /// Utterance -> first frame sent.
    pub turn_total: LatencyHistogram,
    /// Utterance -> transcript.
    pub asr: LatencyHistogram,
    /// Transcript -> first dialog text.
    pub dialog_first_text: LatencyHistogram,
    /// First sentence -> first TTS audio.
    pub tts_first_byte: LatencyHistogram,
    /// First TTS audio -> first frame sent.
    pub first_frame: LatencyHistogram,
    /// Turns measured.
    pub turns: AtomicU64,
    /// Turns where a provider failed (fallback spoken).
    pub failed_turns: AtomicU64,
    /// Provider attempts retried.
    pub retries: AtomicU64,
    /// Sentences spoken by the fallback TTS because the main one failed.
    pub tts_fallbacks: AtomicU64,
    /// Times the pre-rendered fallback audio (or the tone) had to be played.
    pub canned_fallbacks: AtomicU64,
    /// Calls hung up after repeated provider failures.
    pub provider_hangups: AtomicU64,
    /// Replies cancelled by a barge-in.
    pub barge_in_cancels: AtomicU64,
}

impl PipelineMetrics {
    /// Records one finished turn.
    pub fn record_turn(&self, t: &TurnLatency) {
        self.turns.fetch_add(1, Ordering::Relaxed);
        self.retries
            .fetch_add(u64::from(t.retries), Ordering::Relaxed);
        if matches!(t.outcome, TurnOutcome::Fallback { .. }) {
            self.failed_turns.fetch_add(1, Ordering::Relaxed);
        }
        let pairs = [
            (&self.turn_total, t.total),
            (&self.asr, t.asr),
            (&self.dialog_first_text, t.dialog_first_text),
            (&self.tts_first_byte, t.tts_first_byte),
            (&self.first_frame, t.first_frame),
        ];
        for (h, d) in pairs {
            if let Some(d) = d {
                h.record(d);
            }
        }
    }

    /// The metrics in the Prometheus text exposition format, names prefixed `voxbridge_voice_`.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let hists = [
            (
                &self.turn_total,
                "turn_seconds",
                "End of caller speech to first bot frame sent.",
            ),
            (&self.asr, "asr_seconds", "Utterance to final transcript."),
            (
                &self.dialog_first_text,
                "dialog_first_text_seconds",
                "Transcript to first dialog text.",
            ),
            (
                &self.tts_first_byte,
                "tts_first_byte_seconds",
                "First sentence to first TTS audio.",
            ),
            (
                &self.first_frame,
                "first_frame_seconds",
                "First TTS audio to first frame sent.",
            ),
        ];
        for (h, name, help) in hists {
            h.render(&mut out, &format!("voxbridge_voice_{name}"), help);
        }
        let counters = [
            (&self.turns, "turns_total", "Turns measured."),
            (
                &self.failed_turns,
                "failed_turns_total",
                "Turns with a provider failure.",
            ),
            (&self.retries, "retries_total", "Provider attempts retried."),
            (
                &self.tts_fallbacks,
                "tts_fallbacks_total",
                "Sentences spoken by the fallback TTS.",
            ),
            (
                &self.canned_fallbacks,
                "canned_fallbacks_total",
                "Pre-rendered fallback audio played.",
            ),
            (
                &self.provider_hangups,
                "provider_hangups_total",
                "Calls ended after repeated provider failures.",
            ),
            (
                &self.barge_in_cancels,
                "barge_in_cancels_total",
                "Replies cancelled by barge-in.",
            ),
        ];
        for (c, name, help) in counters {
            let _ = writeln!(out, "# HELP voxbridge_voice_{name} {help}");
            let _ = writeln!(out, "# TYPE voxbridge_voice_{name} counter");
            let _ = writeln!(out, "voxbridge_voice_{name} {}", c.load(Ordering::Relaxed));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(total_ms: u64) -> TurnLatency {
        TurnLatency {
            turn: Some(1),
            utterance_ended_at: Duration::from_secs(3),
            hangover: Duration::from_millis(600),
            asr: Some(Duration::from_millis(100)),
            dialog_first_text: Some(Duration::from_millis(200)),
            first_sentence: Some(Duration::from_millis(250)),
            tts_first_byte: Some(Duration::from_millis(80)),
            first_frame: Some(Duration::from_millis(2)),
            total: Some(Duration::from_millis(total_ms)),
            retries: 1,
            outcome: TurnOutcome::Spoken,
        }
    }

    #[test]
    fn histogram_buckets_and_quantiles() {
        let h = LatencyHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        for ms in [1, 1, 1, 1, 1, 1, 1, 1, 1, 30] {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 10);
        assert_eq!(h.sum(), Duration::from_millis(39));
        assert_eq!(h.quantile(0.5), Some(Duration::from_millis(1)));
        assert_eq!(h.quantile(0.99), Some(Duration::from_millis(50)));
        h.record(Duration::from_secs(60));
        assert_eq!(h.quantile(1.0), Some(Duration::MAX));
    }

    #[test]
    fn metrics_render_as_prometheus_text() {
        let m = PipelineMetrics::default();
        m.record_turn(&turn(432));
        let text = m.render_prometheus();
        assert!(
            text.contains("voxbridge_voice_turn_seconds_bucket{le=\"0.5\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("voxbridge_voice_turn_seconds_bucket{le=\"0.2\"} 0"),
            "{text}"
        );
        assert!(text.contains("voxbridge_voice_turn_seconds_count 1"));
        assert!(text.contains("voxbridge_voice_retries_total 1"));
        assert!(text.contains("voxbridge_voice_turns_total 1"));
    }

    #[test]
    fn latency_serializes_in_milliseconds_and_sums_provider_wait() {
        let t = turn(432);
        assert_eq!(t.provider_wait(), Duration::from_millis(430));
        let json = serde_json::to_value(&t).expect("serializes");
        assert_eq!(json["total"], 432.0);
        assert_eq!(json["hangover"], 600.0);
        assert_eq!(json["outcome"], "spoken");
        let failed = TurnLatency {
            outcome: TurnOutcome::Fallback { stage: Stage::Asr },
            total: None,
            ..t
        };
        let json = serde_json::to_value(&failed).expect("serializes");
        assert_eq!(json["outcome"]["fallback"]["stage"], "asr");
        assert!(json["total"].is_null());
    }

    #[test]
    fn latency_log_keeps_calls_until_taken_and_caps_them() {
        let log = LatencyLog::new(2);
        log.call_turns("CA1", vec![turn(1)]);
        log.call_turns("CA2", vec![turn(2)]);
        log.call_turns("CA3", vec![turn(3)]);
        assert!(log.take("CA1").is_empty(), "oldest dropped at capacity");
        assert_eq!(log.take("CA3").len(), 1);
        assert!(log.take("CA3").is_empty(), "taken once");
        assert_eq!(log.take("CA2")[0].total, Some(Duration::from_millis(2)));
    }
}
