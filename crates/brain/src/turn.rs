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
//! - metrics: [`PipelineMetrics`] (`prometheus-client` histograms and counters, shared by
//!   all calls of an agent), registered for several agents at once, labelled `agent`, by
//!   [`register_agents`]; the bridge serves them on `/metrics`;
//! - the call record: a voice brain returns its [`VoiceCallReport`] (its turns and what the
//!   dialog gathered) from [`crate::Brain::run`]; the media driver awaits the brain and puts
//!   the report in the `CallRecord` it hands its `CallSink`.

use std::fmt;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;
use voxbridge_metrics::Series;

use crate::outcome::CallOutcome;

/// A pipeline stage, for errors, timeouts and the per-turn latency breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Speech recognition.
    Asr,
    /// The language model.
    Llm,
    /// Speech synthesis.
    Tts,
    /// A speech-to-speech session.
    SpeechToSpeech,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Asr => "asr",
            Self::Llm => "llm",
            Self::Tts => "tts",
            Self::SpeechToSpeech => "speech_to_speech",
        })
    }
}

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

impl TurnOutcome {
    /// Every outcome's label, in [`TurnOutcome::index`] order.
    pub const LABELS: [&'static str; 5] = [
        "spoken",
        "fallback",
        "interrupted",
        "no_reply",
        "call_ended",
    ];

    /// The outcome's name: `spoken`, `fallback`, `interrupted`, `no_reply`, `call_ended`
    /// (metrics label and stored value; the failed stage of a fallback is kept apart).
    pub fn label(self) -> &'static str {
        Self::LABELS[self.index()]
    }

    /// The stage that failed, for [`TurnOutcome::Fallback`].
    pub fn failed_stage(self) -> Option<Stage> {
        match self {
            Self::Fallback { stage } => Some(stage),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Spoken => 0,
            Self::Fallback { .. } => 1,
            Self::Interrupted => 2,
            Self::NoReply => 3,
            Self::CallEnded => 4,
        }
    }
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

/// Everything a voice brain leaves behind when its call ends.
#[derive(Debug, Clone)]
pub struct VoiceCallReport {
    /// The call.
    pub call_sid: String,
    /// The agent that ran it (`voice`, `assistant`, ...).
    pub agent: &'static str,
    /// Wall-clock time of the brain's start: the dialog's times (transcript and answer
    /// `at_ms`) count milliseconds from here.
    pub started_at: SystemTime,
    /// The turns, oldest first.
    pub turns: Vec<TurnLatency>,
    /// What the dialog gathered: transcript (bot lines cut by a barge-in are marked
    /// `interrupted` and hold what the caller heard), end, and the domain payload (e.g. a
    /// screening's answers and outcome).
    pub outcome: CallOutcome,
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
pub fn since(
    from: Option<tokio::time::Instant>,
    to: Option<tokio::time::Instant>,
) -> Option<Duration> {
    match (from, to) {
        (Some(a), Some(b)) => Some(b.saturating_duration_since(a)),
        _ => None,
    }
}

pub use voxbridge_metrics::latency_histogram;

/// Voice pipeline metrics: share one (`Arc`) among all calls' brains of an agent. Each field is
/// a `prometheus-client` handle: counters are relaxed atomics, a histogram observation takes
/// the histogram's own short lock (once per turn and stage, never per frame). Exposed through
/// a registry by [`register_agents`].
#[derive(Debug)]
pub struct PipelineMetrics {
    /// Utterance -> first frame sent.
    pub turn_total: Histogram,
    /// Utterance -> transcript.
    pub asr: Histogram,
    /// Transcript -> first dialog text.
    pub dialog_first_text: Histogram,
    /// First sentence -> first TTS audio.
    pub tts_first_byte: Histogram,
    /// First TTS audio -> first frame sent.
    pub first_frame: Histogram,
    /// Turns measured.
    pub turns: Counter,
    /// Turns where a provider failed (fallback spoken).
    pub failed_turns: Counter,
    /// Provider attempts retried.
    pub retries: Counter,
    /// Sentences spoken by the fallback TTS because the main one failed.
    pub tts_fallbacks: Counter,
    /// Times the pre-rendered fallback audio (or the tone) had to be played.
    pub canned_fallbacks: Counter,
    /// Calls hung up after repeated provider failures.
    pub provider_hangups: Counter,
    /// Replies cancelled by a barge-in.
    pub barge_in_cancels: Counter,
    /// Utterances whose transcript was ready from the recognition started at the caller's
    /// pause (`speech.pipeline.speculative_asr`).
    pub speculative_hits: Counter,
    /// Turns by [`TurnOutcome`], in [`TurnOutcome::LABELS`] order.
    pub turn_outcomes: [Counter; TurnOutcome::LABELS.len()],
}

impl Default for PipelineMetrics {
    fn default() -> Self {
        Self {
            turn_total: latency_histogram(),
            asr: latency_histogram(),
            dialog_first_text: latency_histogram(),
            tts_first_byte: latency_histogram(),
            first_frame: latency_histogram(),
            turns: Counter::default(),
            failed_turns: Counter::default(),
            retries: Counter::default(),
            tts_fallbacks: Counter::default(),
            canned_fallbacks: Counter::default(),
            provider_hangups: Counter::default(),
            barge_in_cancels: Counter::default(),
            speculative_hits: Counter::default(),
            turn_outcomes: Default::default(),
        }
    }
}

impl PipelineMetrics {
    /// Records one finished turn.
    pub fn record_turn(&self, t: &TurnLatency) {
        self.turns.inc();
        self.retries.inc_by(u64::from(t.retries));
        if matches!(t.outcome, TurnOutcome::Fallback { .. }) {
            self.failed_turns.inc();
        }
        self.turn_outcomes[t.outcome.index()].inc();
        let pairs = [
            (&self.turn_total, t.total),
            (&self.asr, t.asr),
            (&self.dialog_first_text, t.dialog_first_text),
            (&self.tts_first_byte, t.tts_first_byte),
            (&self.first_frame, t.first_frame),
        ];
        for (h, d) in pairs {
            if let Some(d) = d {
                h.observe(d.as_secs_f64());
            }
        }
    }
}

/// The histograms: accessor, name (after `voxbridge_voice_`), help (the registry adds the
/// final full stop).
type HistogramFamily = (
    fn(&PipelineMetrics) -> &Histogram,
    &'static str,
    &'static str,
);

const HISTOGRAMS: [HistogramFamily; 5] = [
    (
        |m| &m.turn_total,
        "turn_seconds",
        "End of caller speech (utterance at the brain) to first bot frame sent",
    ),
    (|m| &m.asr, "asr_seconds", "Utterance to final transcript"),
    (
        |m| &m.dialog_first_text,
        "dialog_first_text_seconds",
        "Transcript to first dialog text (LLM first token)",
    ),
    (
        |m| &m.tts_first_byte,
        "tts_first_byte_seconds",
        "First sentence to first TTS audio",
    ),
    (
        |m| &m.first_frame,
        "first_frame_seconds",
        "First TTS audio to first frame sent",
    ),
];

/// The plain counters: accessor, name (after `voxbridge_voice_`, before the `_total` the
/// registry adds), help (without its final full stop, which the registry adds).
type CounterFamily = (fn(&PipelineMetrics) -> &Counter, &'static str, &'static str);

const COUNTERS: [CounterFamily; 8] = [
    (|m| &m.turns, "turns", "Turns measured"),
    (
        |m| &m.failed_turns,
        "failed_turns",
        "Turns with a provider failure (spoken fallback)",
    ),
    (|m| &m.retries, "retries", "Provider attempts retried"),
    (
        |m| &m.tts_fallbacks,
        "tts_fallbacks",
        "Sentences spoken by the fallback TTS",
    ),
    (
        |m| &m.canned_fallbacks,
        "canned_fallbacks",
        "Pre-rendered fallback audio played",
    ),
    (
        |m| &m.provider_hangups,
        "provider_hangups",
        "Calls ended after repeated provider failures (the three-strike hang-up)",
    ),
    (
        |m| &m.barge_in_cancels,
        "barge_in_cancels",
        "Replies cancelled by barge-in",
    ),
    (
        |m| &m.speculative_hits,
        "speculative_asr_hits",
        "Utterances recognised from the caller's pause, before the VAD hangover ended",
    ),
];

/// Registers the voice pipeline metrics of several agents in `registry`: each family once,
/// with one series per agent (in the order given) labelled `agent="<name>"`. The registry
/// holds handles to the same atomics, so it shows every later turn; with no agents, no
/// family is exposed.
pub fn register_agents(registry: &mut Registry, agents: &[(&str, &PipelineMetrics)]) {
    let agent = |agent: &str| ("agent", agent.to_owned());
    for (histogram, name, help) in HISTOGRAMS {
        let series = agents
            .iter()
            .map(|(a, m)| ([agent(a)], histogram(m).clone()));
        registry.register(format!("voxbridge_voice_{name}"), help, Series::new(series));
    }
    for (counter, name, help) in COUNTERS {
        let series = agents.iter().map(|(a, m)| ([agent(a)], counter(m).clone()));
        registry.register(format!("voxbridge_voice_{name}"), help, Series::new(series));
    }
    let outcomes = agents.iter().flat_map(|(a, m)| {
        TurnOutcome::LABELS
            .iter()
            .zip(&m.turn_outcomes)
            .map(|(outcome, count)| {
                let labels = [agent(a), ("outcome", (*outcome).to_owned())];
                (labels, count.clone())
            })
    });
    registry.register(
        "voxbridge_voice_turn_outcomes",
        "Turns by outcome (spoken, fallback, interrupted, no_reply, call_ended)",
        Series::new(outcomes),
    );
}

#[cfg(test)]
mod tests {
    use voxbridge_metrics::Format;

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

    /// The Prometheus text exposition of `agents`' voice metrics.
    fn exposition(agents: &[(&str, &PipelineMetrics)]) -> String {
        let mut registry = Registry::default();
        register_agents(&mut registry, agents);
        Format::PrometheusText.encode(&registry)
    }

    /// The value of the sample `series` (name and labels exactly).
    fn sample<T: std::str::FromStr>(text: &str, series: &str) -> T {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
            .parse()
            .unwrap_or_else(|_| panic!("{series}: not a number"))
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_the_overflow() {
        let m = PipelineMetrics::default();
        for ms in [1, 1, 1, 1, 1, 1, 1, 1, 1, 30] {
            m.turn_total
                .observe(Duration::from_millis(ms).as_secs_f64());
        }
        let text = exposition(&[("a", &m)]);
        let count = |s: &str| sample::<u64>(&text, &format!("voxbridge_voice_turn_seconds{s}"));
        assert_eq!(count("_count{agent=\"a\"}"), 10);
        let sum: f64 = sample(&text, "voxbridge_voice_turn_seconds_sum{agent=\"a\"}");
        assert!((sum - 0.039).abs() < 1e-9, "{text}");
        // Half the values are at most 1 ms, 99% at most 50 ms.
        assert_eq!(count("_bucket{agent=\"a\",le=\"0.0005\"}"), 0);
        assert_eq!(count("_bucket{agent=\"a\",le=\"0.001\"}"), 9);
        assert_eq!(count("_bucket{agent=\"a\",le=\"0.02\"}"), 9);
        assert_eq!(count("_bucket{agent=\"a\",le=\"0.05\"}"), 10);
        m.turn_total.observe(60.0);
        let text = exposition(&[("a", &m)]);
        let count = |s: &str| sample::<u64>(&text, &format!("voxbridge_voice_turn_seconds{s}"));
        assert_eq!(count("_bucket{agent=\"a\",le=\"20\"}"), 10);
        assert_eq!(count("_bucket{agent=\"a\",le=\"+Inf\"}"), 11);
    }

    #[test]
    fn one_agents_turn_is_exposed_in_the_prometheus_text_format() {
        let m = PipelineMetrics::default();
        m.record_turn(&turn(432));
        let text = exposition(&[("voice", &m)]);
        for line in [
            "voxbridge_voice_turn_seconds_bucket{agent=\"voice\",le=\"0.5\"} 1",
            "voxbridge_voice_turn_seconds_bucket{agent=\"voice\",le=\"0.2\"} 0",
            "voxbridge_voice_turn_seconds_count{agent=\"voice\"} 1",
            "voxbridge_voice_retries_total{agent=\"voice\"} 1",
            "voxbridge_voice_turns_total{agent=\"voice\"} 1",
            "# HELP voxbridge_voice_turns_total Turns measured.",
            "# TYPE voxbridge_voice_turns_total counter",
            "# HELP voxbridge_voice_turn_seconds End of caller speech (utterance at the brain) \
             to first bot frame sent.",
            "# TYPE voxbridge_voice_turn_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        // No agents, no families.
        assert_eq!(exposition(&[]), "");
    }

    #[test]
    fn agents_render_as_one_exposition_with_agent_labels() {
        let voice = PipelineMetrics::default();
        voice.record_turn(&turn(432));
        voice.record_turn(&TurnLatency {
            outcome: TurnOutcome::Fallback { stage: Stage::Asr },
            total: Some(Duration::from_secs(30)),
            ..turn(0)
        });
        let assistant = PipelineMetrics::default();
        let text = exposition(&[("voice", &voice), ("assistant", &assistant)]);
        // Each family is introduced once, before its samples.
        for family in ["turn_seconds", "turns_total", "turn_outcomes_total"] {
            let name = format!("voxbridge_voice_{family}");
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{text}"
            );
            let help = text.find(&format!("# HELP {name} ")).expect("help line");
            let first = text.find(&format!("\n{name}")).expect("a sample");
            assert!(help < first, "{text}");
        }
        for line in [
            "voxbridge_voice_turn_seconds_bucket{agent=\"voice\",le=\"0.5\"} 1",
            "voxbridge_voice_turn_seconds_bucket{agent=\"voice\",le=\"+Inf\"} 2",
            "voxbridge_voice_turn_seconds_count{agent=\"voice\"} 2",
            "voxbridge_voice_turn_seconds_count{agent=\"assistant\"} 0",
            "voxbridge_voice_failed_turns_total{agent=\"voice\"} 1",
            "voxbridge_voice_turn_outcomes_total{agent=\"voice\",outcome=\"spoken\"} 1",
            "voxbridge_voice_turn_outcomes_total{agent=\"voice\",outcome=\"fallback\"} 1",
            "voxbridge_voice_turn_outcomes_total{agent=\"assistant\",outcome=\"call_ended\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        // Buckets are cumulative and end at the count.
        let buckets: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("voxbridge_voice_turn_seconds_bucket{agent=\"voice\""))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            buckets.len(),
            voxbridge_metrics::LATENCY_BOUNDS_US.len() + 1
        );
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        assert_eq!(buckets.last(), Some(&2));
    }

    #[test]
    fn the_registry_sees_turns_recorded_after_registration() {
        let voice = PipelineMetrics::default();
        let mut registry = Registry::default();
        register_agents(&mut registry, &[("voice", &voice)]);
        voice.record_turn(&turn(432));
        voice.barge_in_cancels.inc();
        let text = Format::PrometheusText.encode(&registry);
        let count = |series: &str| sample::<u64>(&text, series);
        assert_eq!(count("voxbridge_voice_turns_total{agent=\"voice\"}"), 1);
        assert_eq!(
            count("voxbridge_voice_barge_in_cancels_total{agent=\"voice\"}"),
            1
        );
        let sum: f64 = sample(&text, "voxbridge_voice_turn_seconds_sum{agent=\"voice\"}");
        assert!((sum - 0.432).abs() < 1e-9, "{text}");
    }

    #[test]
    fn outcome_labels_match_their_serialized_names() {
        for outcome in [
            TurnOutcome::Spoken,
            TurnOutcome::Fallback { stage: Stage::Tts },
            TurnOutcome::Interrupted,
            TurnOutcome::NoReply,
            TurnOutcome::CallEnded,
        ] {
            let json = serde_json::to_value(outcome).expect("serializes");
            let name = json
                .as_str()
                .map(str::to_owned)
                .or_else(|| json.as_object().and_then(|o| o.keys().next().cloned()))
                .expect("a name");
            assert_eq!(outcome.label(), name);
        }
        assert_eq!(
            TurnOutcome::Fallback { stage: Stage::Tts }.failed_stage(),
            Some(Stage::Tts)
        );
        assert_eq!(TurnOutcome::Spoken.failed_stage(), None);
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
}
