//! The per-turn latency book of a voice call: the measurements of each turn while it is under
//! way ([`Draft`]), the run of failed turns, and the finished [`TurnLatency`] list. Shared by
//! the brain's loop ([`super::brain`]) and the running reply ([`super::reply`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use voxbridge_brain::TurnId;
use voxbridge_brain::turn::{Stage, TurnLatency, TurnOutcome, since};

use super::Shared;

/// The measurements of one turn while it is under way.
#[derive(Debug, Clone, Copy)]
pub(super) struct Draft {
    pub(super) received: Instant,
    pub(super) ended_at: Duration,
    pub(super) transcript_at: Option<Instant>,
    pub(super) first_text_at: Option<Instant>,
    pub(super) first_sentence_at: Option<Instant>,
    pub(super) tts_requested_at: Option<Instant>,
    pub(super) first_audio_at: Option<Instant>,
    pub(super) turn: Option<TurnId>,
    pub(super) retries: u32,
    pub(super) failed: Option<Stage>,
}

impl Draft {
    pub(super) fn new(received: Instant, ended_at: Duration) -> Self {
        Self {
            received,
            ended_at,
            transcript_at: None,
            first_text_at: None,
            first_sentence_at: None,
            tts_requested_at: None,
            first_audio_at: None,
            turn: None,
            retries: 0,
            failed: None,
        }
    }
}

/// Consecutive failed turns and what failed.
#[derive(Debug, Default)]
pub(super) struct FailureRun {
    pub(super) kinds: Vec<(Stage, &'static str)>,
}

impl FailureRun {
    pub(super) fn push(&mut self, stage: Stage, kind: &'static str) -> usize {
        self.kinds.push((stage, kind));
        self.kinds.len()
    }

    pub(super) fn reset(&mut self) {
        self.kinds.clear();
    }

    /// `provider_failures: asr timeout x3` (kinds in first-seen order).
    pub(super) fn reason(&self) -> String {
        let mut groups: Vec<((Stage, &str), usize)> = Vec::new();
        for k in &self.kinds {
            match groups.iter_mut().find(|(g, _)| g == k) {
                Some((_, n)) => *n += 1,
                None => groups.push((*k, 1)),
            }
        }
        let parts: Vec<String> = groups
            .iter()
            .map(|((stage, kind), n)| format!("{stage} {kind} x{n}"))
            .collect();
        format!("provider_failures: {}", parts.join(", "))
    }
}

/// Per-call bookkeeping shared by the brain loop and its running reply. Locked briefly,
/// never across an `.await`.
pub(super) struct Book {
    pub(super) shared: Arc<Shared>,
    pub(super) next_turn: u64,
    /// The newest bot turn used.
    pub(super) last_turn: Option<TurnId>,
    /// The newest bot turn that has played.
    pub(super) played: Option<TurnId>,
    /// The running reply's measurements (utterance replies only).
    pub(super) current: Option<Draft>,
    /// Replies whose first audio was sent, waiting for their first frame.
    pub(super) waiting: Vec<Draft>,
    pub(super) finished: Vec<TurnLatency>,
    pub(super) failures: FailureRun,
    /// A hangup was sent: nothing more is said.
    pub(super) hung_up: bool,
    /// The text of the dialog's latest reply: what the caller's next utterance answers (the
    /// recogniser's prompt, `speech.pipeline.asr_prompt`).
    pub(super) last_reply: String,
}

impl Book {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            next_turn: 1,
            last_turn: None,
            played: None,
            current: None,
            waiting: Vec::new(),
            finished: Vec::new(),
            failures: FailureRun::default(),
            hung_up: false,
            last_reply: String::new(),
        }
    }

    pub(super) fn alloc_turn(&mut self) -> TurnId {
        let turn = TurnId(self.next_turn);
        self.next_turn += 1;
        self.last_turn = Some(turn);
        turn
    }

    /// The running reply's first audio (of `turn`) is about to be sent.
    pub(super) fn audio_starts(&mut self, turn: TurnId) {
        if let Some(mut draft) = self.current.take() {
            draft.turn = Some(turn);
            self.waiting.push(draft);
        }
    }

    pub(super) fn turn_started(&mut self, turn: TurnId, at: Instant) {
        if let Some(i) = self.waiting.iter().position(|d| d.turn == Some(turn)) {
            let draft = self.waiting.swap_remove(i);
            let outcome = match draft.failed {
                Some(stage) => TurnOutcome::Fallback { stage },
                None => TurnOutcome::Spoken,
            };
            self.finish(draft, Some(at), outcome);
        }
    }

    /// Ends the running reply's measurement without a frame.
    pub(super) fn finish_current(&mut self, outcome: TurnOutcome) {
        if let Some(draft) = self.current.take() {
            self.finish(draft, None, outcome);
        }
    }

    pub(super) fn interrupt(&mut self, turn: TurnId) {
        self.finish_current(TurnOutcome::Interrupted);
        while let Some(i) = self.waiting.iter().position(|d| d.turn == Some(turn)) {
            let draft = self.waiting.swap_remove(i);
            self.finish(draft, None, TurnOutcome::Interrupted);
        }
    }

    pub(super) fn finish(
        &mut self,
        draft: Draft,
        first_frame_at: Option<Instant>,
        outcome: TurnOutcome,
    ) {
        let latency = TurnLatency {
            turn: draft.turn.map(|t| t.0),
            utterance_ended_at: draft.ended_at,
            hangover: self.shared.options.hangover,
            asr: since(Some(draft.received), draft.transcript_at),
            dialog_first_text: since(draft.transcript_at, draft.first_text_at),
            first_sentence: since(draft.transcript_at, draft.first_sentence_at),
            tts_first_byte: since(draft.tts_requested_at, draft.first_audio_at),
            first_frame: since(draft.first_audio_at, first_frame_at),
            total: since(Some(draft.received), first_frame_at),
            retries: draft.retries,
            outcome,
        };
        latency.report(&self.shared.options.metrics);
        self.finished.push(latency);
    }
}

impl std::fmt::Debug for Book {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Book")
            .field("next_turn", &self.next_turn)
            .field("last_turn", &self.last_turn)
            .field("played", &self.played)
            .field("hung_up", &self.hung_up)
            .finish_non_exhaustive()
    }
}

pub(super) type SharedBook = Arc<Mutex<Book>>;

pub(super) fn lock(book: &SharedBook) -> std::sync::MutexGuard<'_, Book> {
    book.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reason_groups_kinds_in_order() {
        let mut run = FailureRun::default();
        assert_eq!(run.push(Stage::Asr, "timeout"), 1);
        run.push(Stage::Asr, "timeout");
        run.push(Stage::Tts, "server_error");
        run.push(Stage::Asr, "timeout");
        assert_eq!(
            run.reason(),
            "provider_failures: asr timeout x3, tts server_error x1"
        );
        run.reset();
        run.push(Stage::Llm, "rate_limited");
        assert_eq!(run.reason(), "provider_failures: llm rate_limited x1");
    }
}
