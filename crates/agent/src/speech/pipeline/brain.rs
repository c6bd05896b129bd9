//! The voice brain's task: takes session events, runs one reply at a time, cancels it on
//! barge-in, detects caller silence, and keeps the per-turn latency book.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::time::Instant;
use tracing::{Instrument, Span, debug};

use super::reply::{self, Reply};
use super::{DialogContext, Job, Shared, started};
use crate::conversation::ConversationInput;
use crate::dialog::Dialog;
use crate::speech::Stage;
use crate::speech::turn::{TurnLatency, TurnOutcome, VoiceCallReport, since};
use crate::{BoxFuture, Brain, BrainError, BrainEvent, BrainIo, CallInfo, TurnId};

/// How long the dialog gets to take `Hangup` at the end of the call.
const HANGUP_GRACE: Duration = Duration::from_millis(500);

/// One call's voice brain.
pub(super) struct VoiceBrain {
    pub(super) agent: &'static str,
    pub(super) shared: Arc<Shared>,
    pub(super) call: CallInfo,
    pub(super) dialog: Box<dyn Dialog>,
    pub(super) context: DialogContext,
    pub(super) span: Span,
}

impl Brain for VoiceBrain {
    fn run(self: Box<Self>, io: BrainIo) -> BoxFuture<Result<(), BrainError>> {
        let span = self.span.clone();
        Box::pin(self.run_loop(io).instrument(span))
    }
}

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
    kinds: Vec<(Stage, &'static str)>,
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
    shared: Arc<Shared>,
    next_turn: u64,
    /// The newest bot turn used.
    pub(super) last_turn: Option<TurnId>,
    /// The newest bot turn that has played.
    played: Option<TurnId>,
    /// The running reply's measurements (utterance replies only).
    pub(super) current: Option<Draft>,
    /// Replies whose first audio was sent, waiting for their first frame.
    waiting: Vec<Draft>,
    finished: Vec<TurnLatency>,
    pub(super) failures: FailureRun,
    /// A hangup was sent: nothing more is said.
    pub(super) hung_up: bool,
}

impl Book {
    fn new(shared: Arc<Shared>) -> Self {
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

    fn turn_started(&mut self, turn: TurnId, at: Instant) {
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

    fn interrupt(&mut self, turn: TurnId) {
        self.finish_current(TurnOutcome::Interrupted);
        while let Some(i) = self.waiting.iter().position(|d| d.turn == Some(turn)) {
            let draft = self.waiting.swap_remove(i);
            self.finish(draft, None, TurnOutcome::Interrupted);
        }
    }

    fn finish(&mut self, draft: Draft, first_frame_at: Option<Instant>, outcome: TurnOutcome) {
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

/// The reply future the loop polls; dropping it cancels every provider request in it.
type ReplyFuture = BoxFuture<reply::Ended>;

impl VoiceBrain {
    #[allow(clippy::too_many_lines)] // one select loop reads best in one place
    async fn run_loop(self, mut io: BrainIo) -> Result<(), BrainError> {
        let Self {
            agent,
            shared,
            call,
            dialog,
            context,
            span: _,
        } = self;
        let silence_ms = dialog.silence_timeout_ms();
        let dialog = Arc::new(tokio::sync::Mutex::new(dialog));
        let book: SharedBook = Arc::new(Mutex::new(Book::new(Arc::clone(&shared))));
        let origin = Instant::now();
        let started_at = SystemTime::now();
        let mut queue: VecDeque<Job> = VecDeque::new();
        let mut running: Option<ReplyFuture> = None;
        let mut silence_at: Option<Instant> = None;
        let mut replies = 0u64;
        let mut prerender: Option<BoxFuture<()>> = (!shared.canned.initialized()).then(|| {
            let shared = Arc::clone(&shared);
            Box::pin(async move {
                if let Err(e) = shared.prerender().await {
                    tracing::warn!(error = %e, "could not pre-render the fallback lines");
                }
            }) as BoxFuture<()>
        });

        loop {
            if running.is_none()
                && !lock(&book).hung_up
                && let Some(job) = queue.pop_front()
            {
                silence_at = None;
                replies += 1;
                let reply = Reply::new(
                    Arc::clone(&shared),
                    context.clone(),
                    Arc::clone(&dialog),
                    io.commands.clone(),
                    Arc::clone(&book),
                    origin,
                    &format!("{}/{replies}", call.call_sid),
                );
                running = Some(Box::pin(reply.run(job)));
            }
            tokio::select! {
                biased;
                () = io.cancel.cancelled() => break,
                event = io.events.recv() => {
                    let Some(event) = event else { break };
                    match event {
                        BrainEvent::CallStarted(info) => queue.push_back(Job::Input(started(&info))),
                        BrainEvent::SpeechStarted => silence_at = None,
                        // Only for brains that ask for raw audio (this one does not).
                        BrainEvent::CallerAudio { .. } => {}
                        BrainEvent::Utterance { pcm, sample_rate, ended_at, .. } => {
                            silence_at = None;
                            if !pcm.is_empty() && !lock(&book).hung_up {
                                queue.push_back(Job::Utterance {
                                    pcm,
                                    sample_rate,
                                    ended_at,
                                    received: Instant::now(),
                                });
                            }
                        }
                        BrainEvent::Dtmf(digit) => {
                            silence_at = None;
                            queue.push_back(Job::Input(ConversationInput::Dtmf(digit)));
                        }
                        BrainEvent::BargeIn { turn, heard, .. } => {
                            if running.take().is_some() {
                                // Dropping the reply drops the dialog stream, every TTS stream
                                // and any ASR request: no provider work continues.
                                shared
                                    .options
                                    .metrics
                                    .barge_in_cancels
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                debug!(turn = turn.0, "barge-in: reply cancelled");
                            }
                            lock(&book).interrupt(turn);
                            silence_at = None;
                            merge_interrupted(&mut queue, &heard);
                        }
                        BrainEvent::TurnStarted { turn, at } => {
                            lock(&book).turn_started(turn, Instant::from_std(at));
                        }
                        BrainEvent::TurnPlayed { turn } => {
                            let mut b = lock(&book);
                            b.played = Some(turn);
                            if running.is_none()
                                && queue.is_empty()
                                && b.last_turn == Some(turn)
                                && !b.hung_up
                            {
                                silence_at = Some(Instant::now() + Duration::from_millis(silence_ms));
                            }
                        }
                        BrainEvent::CallEnded { .. } => break,
                    }
                }
                ended = async { running.as_mut().expect("guarded by is_some").await }, if running.is_some() => {
                    running = None;
                    let b = lock(&book);
                    // Nothing was said (empty transcript, a silent dialog): keep waiting for
                    // the caller as if the last turn had just played.
                    if !ended.spoke && queue.is_empty() && !b.hung_up && b.played == b.last_turn {
                        silence_at = Some(Instant::now() + Duration::from_millis(silence_ms));
                    }
                }
                () = sleep_until(silence_at), if silence_at.is_some() && running.is_none() && queue.is_empty() => {
                    silence_at = None;
                    queue.push_back(Job::Input(ConversationInput::Silence { ms: silence_ms }));
                }
                () = async { prerender.as_mut().expect("guarded by is_some").await }, if prerender.is_some() => {
                    prerender = None;
                }
            }
        }

        // The call is over: stop the reply, close the dialog, hand over the measurements.
        drop(running);
        let turns = {
            let mut b = lock(&book);
            b.finish_current(TurnOutcome::CallEnded);
            let waiting = std::mem::take(&mut b.waiting);
            for draft in waiting {
                let outcome = match draft.failed {
                    Some(stage) => TurnOutcome::Fallback { stage },
                    None => TurnOutcome::CallEnded,
                };
                b.finish(draft, None, outcome);
            }
            std::mem::take(&mut b.finished)
        };
        let now_ms = u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        let closing = async {
            let mut d = dialog.lock().await;
            let mut events = d.handle(now_ms, ConversationInput::Hangup);
            while events.next().await.is_some() {}
        };
        if tokio::time::timeout(HANGUP_GRACE, closing).await.is_err() {
            debug!("dialog did not take the hangup in time");
        }
        if let Some(sink) = &shared.options.turn_sink {
            // The reply and the closing future are gone: nothing else holds the dialog.
            let result = dialog.lock().await.result();
            sink.call_report(VoiceCallReport {
                call_sid: call.call_sid.clone(),
                agent,
                started_at,
                turns,
                result,
            });
        }
        Ok(())
    }
}

/// Adds `Interrupted { heard }` at the front of the queue, merged with one already there (the
/// session reports each unfinished turn of one barge-in separately).
fn merge_interrupted(queue: &mut VecDeque<Job>, heard: &str) {
    if let Some(Job::Input(ConversationInput::Interrupted { heard: first })) = queue.front_mut() {
        if !heard.trim().is_empty() {
            if !first.is_empty() {
                first.push(' ');
            }
            first.push_str(heard.trim());
        }
        return;
    }
    queue.push_front(Job::Input(ConversationInput::Interrupted {
        heard: heard.trim().to_owned(),
    }));
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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

    #[test]
    fn interruptions_of_one_barge_in_merge() {
        let mut q = VecDeque::new();
        q.push_back(Job::Input(ConversationInput::Dtmf('1')));
        merge_interrupted(&mut q, "Hello. ");
        merge_interrupted(&mut q, "");
        merge_interrupted(&mut q, "How");
        assert_eq!(q.len(), 2);
        assert!(matches!(
            &q[0],
            Job::Input(ConversationInput::Interrupted { heard }) if heard == "Hello. How"
        ));
    }
}
