//! The `realtime` brain's turn latencies: provider `speech_stopped` -> first bot audio from
//! the provider (`tts_first_byte`, the provider's wait) -> first `media` frame sent
//! (`first_frame`).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use voxbridge_brain::TurnId;
use voxbridge_brain::turn::{PipelineMetrics, TurnLatency, TurnOutcome, since};
use voxbridge_speech::realtime::SERVER_VAD_SILENCE_MS;

/// One reply's measurements while under way.
#[derive(Debug, Clone, Copy)]
struct Draft {
    /// Provider `speech_stopped` reached the brain.
    received: Instant,
    /// Caller audio time at that point.
    ended_at: Duration,
    first_audio_at: Option<Instant>,
    turn: Option<TurnId>,
}

/// A call's replies: the one waiting for audio, those waiting for their first frame, and
/// the finished ones.
#[derive(Debug)]
pub(super) struct Latencies {
    metrics: Arc<PipelineMetrics>,
    awaiting: Option<Draft>,
    drafts: Vec<Draft>,
    finished: Vec<TurnLatency>,
}

impl Latencies {
    pub(super) fn new(metrics: Arc<PipelineMetrics>) -> Self {
        Self {
            metrics,
            awaiting: None,
            drafts: Vec::new(),
            finished: Vec::new(),
        }
    }

    /// The caller stopped speaking at caller-audio time `ended_at`: a reply is awaited.
    pub(super) fn speech_stopped(&mut self, ended_at: Duration) {
        if let Some(old) = self.awaiting.take() {
            self.record(old, None, TurnOutcome::NoReply);
        }
        self.awaiting = Some(Draft {
            received: Instant::now(),
            ended_at,
            first_audio_at: None,
            turn: None,
        });
    }

    /// The caller spoke again before the awaited reply came.
    pub(super) fn speech_started(&mut self) {
        if let Some(draft) = self.awaiting.take() {
            self.record(draft, None, TurnOutcome::Interrupted);
        }
    }

    /// The first provider audio of a new item, spoken as `turn`.
    pub(super) fn first_audio(&mut self, turn: TurnId) {
        if let Some(mut draft) = self.awaiting.take() {
            draft.first_audio_at = Some(Instant::now());
            draft.turn = Some(turn);
            self.drafts.push(draft);
        }
    }

    /// `turn`'s first frame went out at `at`.
    pub(super) fn turn_started(&mut self, turn: TurnId, at: Instant) {
        if let Some(i) = self.drafts.iter().position(|d| d.turn == Some(turn)) {
            let draft = self.drafts.swap_remove(i);
            self.record(draft, Some(at), TurnOutcome::Spoken);
        }
    }

    /// `turn` was cut before its first frame went out.
    pub(super) fn interrupted(&mut self, turn: TurnId) {
        while let Some(i) = self.drafts.iter().position(|d| d.turn == Some(turn)) {
            let draft = self.drafts.swap_remove(i);
            self.record(draft, None, TurnOutcome::Interrupted);
        }
    }

    /// The call ended: what is under way ends with it; every turn, oldest first.
    pub(super) fn finish(mut self) -> Vec<TurnLatency> {
        if let Some(draft) = self.awaiting.take() {
            self.record(draft, None, TurnOutcome::CallEnded);
        }
        for draft in std::mem::take(&mut self.drafts) {
            self.record(draft, None, TurnOutcome::CallEnded);
        }
        self.finished
    }

    fn record(&mut self, draft: Draft, first_frame_at: Option<Instant>, outcome: TurnOutcome) {
        let latency = TurnLatency {
            turn: draft.turn.map(|t| t.0),
            utterance_ended_at: draft.ended_at,
            hangover: Duration::from_millis(u64::from(SERVER_VAD_SILENCE_MS)),
            asr: None,
            dialog_first_text: None,
            first_sentence: None,
            tts_first_byte: since(Some(draft.received), draft.first_audio_at),
            first_frame: since(draft.first_audio_at, first_frame_at),
            total: since(Some(draft.received), first_frame_at),
            retries: 0,
            outcome,
        };
        latency.report(&self.metrics);
        self.finished.push(latency);
    }
}
