//! The voice brain's task: takes session events, runs one reply at a time, cancels it on
//! barge-in, detects caller silence, and keeps the per-turn latency book.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::time::Instant;
use tracing::{Instrument, Span, debug};

use super::book::{Book, SharedBook, lock};
use super::reply::{self, Reply, Speculation};
use super::{DialogContext, Job, Shared, started};
use voxbridge_brain::conversation::ConversationInput;
use voxbridge_brain::dialog::Dialog;
use voxbridge_brain::turn::{TurnOutcome, VoiceCallReport};
use voxbridge_brain::{BoxFuture, Brain, BrainEvent, BrainIo, BrainResult, CallInfo};

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
    fn run(self: Box<Self>, io: BrainIo) -> BoxFuture<BrainResult> {
        let span = self.span.clone();
        Box::pin(self.run_loop(io).instrument(span))
    }
}

/// The reply future the loop polls; dropping it cancels every provider request in it.
type ReplyFuture = BoxFuture<reply::Ended>;

impl VoiceBrain {
    #[allow(clippy::too_many_lines)] // one select loop reads best in one place
    async fn run_loop(self, mut io: BrainIo) -> BrainResult {
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
        let mut speculation: Option<Speculation> = None;
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
                        BrainEvent::Pause { pcm, sample_rate, started_at, ended_at } => {
                            // Replaces (and cancels) the one of an earlier pause the caller
                            // talked through. Only while no reply is running or waiting: the
                            // prompt (the question being answered) is settled then.
                            let idle = running.is_none() && queue.is_empty();
                            speculation = (idle && !pcm.is_empty() && !lock(&book).hung_up).then(|| {
                                Speculation::start(&shared, &book, pcm, sample_rate, (started_at, ended_at))
                            });
                        }
                        BrainEvent::Utterance { pcm, sample_rate, started_at, ended_at } => {
                            silence_at = None;
                            // Kept only for exactly the audio it recognised.
                            let speculation = speculation
                                .take()
                                .filter(|s| s.span == (started_at, ended_at));
                            if !pcm.is_empty() && !lock(&book).hung_up {
                                queue.push_back(Job::Utterance {
                                    pcm,
                                    sample_rate,
                                    ended_at,
                                    received: Instant::now(),
                                    speculation,
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
                                    .inc();
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

        // The call is over: stop the reply and any recognition, close the dialog, hand over
        // the measurements.
        drop(running);
        drop(speculation);
        queue.clear();
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
        // The reply and the closing future are gone: nothing else holds the dialog.
        let outcome = dialog.lock().await.outcome();
        Ok(Some(VoiceCallReport {
            call_sid: call.call_sid.clone(),
            agent,
            started_at,
            turns,
            outcome,
        }))
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
