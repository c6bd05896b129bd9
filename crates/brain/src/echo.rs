//! The `echo` agent: repeats each caller utterance back once it ends.
//!
//! A diagnostic (does audio make the round trip? are marks echoed?) and the load-test
//! workload: it exercises the whole media path without any provider. Each utterance becomes
//! one bot turn: its audio, unchanged and at the pipeline rate it arrived at, in
//! [`EchoFactory::chunk`]-long [`Command::Audio`] pieces, then one
//! `ChunkEnd { text: "(echo of 1.2 s)" }` and `TurnEnd`.
//!
//! It asks for caller audio at Twilio's own 8 kHz ([`BrainFactory::pipeline_rate`]): nothing
//! is resampled either way, so the caller hears back exactly what was received, and a call
//! holds half the audio it would at 16 kHz. Pieces are cut from the utterance only as the
//! session takes them, so the utterance is held once, not twice.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::{
    BoxFuture, Brain, BrainError, BrainEvent, BrainFactory, BrainIo, BrainResult, CallInfo,
    Command, TurnId,
};

/// Builds [`Echo`] brains.
#[derive(Debug, Clone, Copy)]
pub struct EchoFactory {
    /// Length of each audio command (default 100 ms): small enough that a barge-in drops most
    /// of a long echo before it is handed to the session.
    pub chunk: Duration,
}

impl Default for EchoFactory {
    fn default() -> Self {
        Self {
            chunk: Duration::from_millis(100),
        }
    }
}

impl BrainFactory for EchoFactory {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn pipeline_rate(&self) -> Option<u32> {
        Some(8000)
    }

    fn start(&self, _call: &CallInfo) -> Result<Box<dyn Brain>, BrainError> {
        Ok(Box::new(Echo {
            chunk: self.chunk,
            next_turn: 1,
            pending: VecDeque::new(),
        }))
    }
}

/// The echo brain of one call.
#[derive(Debug)]
pub struct Echo {
    chunk: Duration,
    next_turn: u64,
    /// Work not yet accepted by the session's queue, oldest first.
    pending: VecDeque<Pending>,
}

/// Queued work: a command, or an utterance still to be cut into audio pieces.
#[derive(Debug)]
enum Pending {
    Command(Command),
    Audio {
        turn: TurnId,
        pcm: Vec<i16>,
        /// The first sample not yet handed out.
        next: usize,
        per_chunk: usize,
        sample_rate: u32,
    },
}

impl Pending {
    fn turn(&self) -> Option<TurnId> {
        match self {
            Self::Command(
                Command::Audio { turn, .. }
                | Command::AudioMulaw { turn, .. }
                | Command::ChunkEnd { turn, .. }
                | Command::TurnEnd { turn },
            )
            | Self::Audio { turn, .. } => Some(*turn),
            Self::Command(Command::Hangup { .. } | Command::Interrupt { .. }) => None,
        }
    }
}

/// The text of an echo turn: `(echo of 1.2 s)`.
pub fn echo_text(samples: usize, sample_rate: u32) -> String {
    let seconds = samples as f64 / f64::from(sample_rate.max(1));
    format!("(echo of {seconds:.1} s)")
}

impl Echo {
    fn handle_event(&mut self, event: BrainEvent) -> bool {
        match event {
            BrainEvent::Utterance {
                pcm, sample_rate, ..
            } => {
                if pcm.is_empty() {
                    return true;
                }
                let turn = TurnId(self.next_turn);
                self.next_turn += 1;
                let text = echo_text(pcm.len(), sample_rate);
                let per_chunk = (u128::from(sample_rate) * self.chunk.as_millis() / 1000).max(1);
                let per_chunk = usize::try_from(per_chunk).unwrap_or(usize::MAX);
                self.pending.push_back(Pending::Audio {
                    turn,
                    pcm,
                    next: 0,
                    per_chunk,
                    sample_rate,
                });
                self.pending
                    .push_back(Pending::Command(Command::ChunkEnd { turn, text }));
                self.pending
                    .push_back(Pending::Command(Command::TurnEnd { turn }));
                true
            }
            BrainEvent::BargeIn { turn, .. } => {
                // The caller talked over the echo: forget what is left of that turn.
                self.pending.retain(|p| p.turn() != Some(turn));
                true
            }
            BrainEvent::CallEnded { .. } => false,
            BrainEvent::CallStarted(_)
            | BrainEvent::SpeechStarted
            | BrainEvent::CallerAudio { .. }
            | BrainEvent::Pause { .. }
            | BrainEvent::Dtmf(_)
            | BrainEvent::TurnStarted { .. }
            | BrainEvent::TurnPlayed { .. } => true,
        }
    }

    /// The next command to hand over: a queued one, or the next piece of an utterance.
    fn next_command(&mut self) -> Option<Command> {
        match self.pending.front_mut()? {
            Pending::Command(_) => match self.pending.pop_front() {
                Some(Pending::Command(c)) => Some(c),
                _ => None,
            },
            Pending::Audio {
                turn,
                pcm,
                next,
                per_chunk,
                sample_rate,
            } => {
                let end = (*next + *per_chunk).min(pcm.len());
                let command = Command::Audio {
                    turn: *turn,
                    pcm: pcm[*next..end].to_vec(),
                    sample_rate: *sample_rate,
                };
                *next = end;
                if end >= pcm.len() {
                    self.pending.pop_front();
                }
                Some(command)
            }
        }
    }

    /// Echo keeps nothing of a call: its result is always `Ok(None)`.
    async fn run_loop(mut self, mut io: BrainIo) -> BrainResult {
        loop {
            tokio::select! {
                biased;
                () = io.cancel.cancelled() => return Ok(None),
                event = io.events.recv() => match event {
                    Some(event) => {
                        if !self.handle_event(event) {
                            return Ok(None);
                        }
                    }
                    None => return Ok(None),
                },
                permit = reserve(&io.commands), if !self.pending.is_empty() => {
                    let Ok(permit) = permit else { return Ok(None) };
                    if let Some(command) = self.next_command() {
                        permit.send(command);
                    }
                }
            }
        }
    }
}

async fn reserve(
    commands: &mpsc::Sender<Command>,
) -> Result<mpsc::Permit<'_, Command>, mpsc::error::SendError<()>> {
    commands.reserve().await
}

impl Brain for Echo {
    fn run(self: Box<Self>, io: BrainIo) -> BoxFuture<BrainResult> {
        Box::pin(self.run_loop(io))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{BrainChannels, EndReason, spawn_brain};

    fn call() -> CallInfo {
        CallInfo {
            call_sid: "CA00000000000000000000000000000001".into(),
            stream_sid: "MZ00000000000000000000000000000001".into(),
            account_sid: "AC00000000000000000000000000000001".into(),
            custom_parameters: BTreeMap::new(),
        }
    }

    fn utterance(samples: usize) -> BrainEvent {
        BrainEvent::Utterance {
            pcm: (0..samples).map(|i| (i % 100) as i16).collect(),
            sample_rate: 16_000,
            started_at: Duration::ZERO,
            ended_at: Duration::from_millis(1200),
        }
    }

    #[test]
    fn echo_text_rounds_to_a_tenth() {
        assert_eq!(echo_text(19_200, 16_000), "(echo of 1.2 s)");
        assert_eq!(echo_text(8_000, 8_000), "(echo of 1.0 s)");
        assert_eq!(echo_text(5, 0), "(echo of 5.0 s)");
    }

    #[tokio::test]
    async fn utterance_comes_back_as_one_turn_in_100ms_chunks() {
        let brain = EchoFactory::default().start(&call()).expect("echo starts");
        let mut handle = spawn_brain("echo", brain, BrainChannels::default());
        handle
            .deliver(BrainEvent::CallStarted(call()))
            .expect("queue has room");
        let original = utterance(19_200);
        let BrainEvent::Utterance { pcm: sent, .. } = original.clone() else {
            unreachable!("built as an utterance")
        };
        handle.deliver(original).expect("queue has room");

        let mut echoed = Vec::new();
        let mut audio_commands = 0;
        loop {
            match handle.next_command().await.expect("brain is running") {
                Command::Audio {
                    turn,
                    pcm,
                    sample_rate,
                } => {
                    assert_eq!(turn, TurnId(1));
                    assert_eq!(sample_rate, 16_000);
                    assert_eq!(pcm.len(), 1600);
                    audio_commands += 1;
                    echoed.extend(pcm);
                }
                Command::ChunkEnd { turn, text } => {
                    assert_eq!(turn, TurnId(1));
                    assert_eq!(text, "(echo of 1.2 s)");
                }
                Command::TurnEnd { turn } => {
                    assert_eq!(turn, TurnId(1));
                    break;
                }
                other @ (Command::Hangup { .. }
                | Command::AudioMulaw { .. }
                | Command::Interrupt { .. }) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(audio_commands, 12);
        assert_eq!(echoed, sent);

        handle
            .deliver(BrainEvent::CallEnded {
                reason: EndReason::Stopped,
            })
            .expect("queue has room");
        assert_eq!(handle.next_command().await, None, "brain ends on CallEnded");
        let report = handle
            .finish(Duration::from_secs(1))
            .await
            .expect("clean exit");
        assert!(report.is_none(), "echo keeps no report");
    }

    #[tokio::test]
    async fn barge_in_drops_the_rest_of_the_turn() {
        let brain = EchoFactory::default().start(&call()).expect("echo starts");
        // A one-slot command queue keeps most of the turn pending inside the brain.
        let sizes = BrainChannels {
            events: 8,
            commands: 1,
        };
        let mut handle = spawn_brain("echo", brain, sizes);
        handle.deliver(utterance(160_000)).expect("queue has room");
        let first = handle.next_command().await.expect("first chunk");
        assert!(matches!(
            first,
            Command::Audio {
                turn: TurnId(1),
                ..
            }
        ));
        handle
            .deliver(BrainEvent::BargeIn {
                turn: TurnId(1),
                heard: String::new(),
                heard_ms: 0,
            })
            .expect("queue has room");
        // The next utterance must come through after at most the one in-flight chunk.
        handle.deliver(utterance(1600)).expect("queue has room");
        let mut stale = 0;
        loop {
            match handle.next_command().await.expect("brain is running") {
                Command::Audio {
                    turn: TurnId(1), ..
                } => stale += 1,
                Command::TurnEnd { turn: TurnId(2) } => break,
                Command::Audio {
                    turn: TurnId(2), ..
                }
                | Command::ChunkEnd {
                    turn: TurnId(2), ..
                } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(stale <= 2, "{stale} stale chunks after barge-in");
        handle
            .finish(Duration::from_secs(1))
            .await
            .expect("clean exit");
    }

    #[tokio::test]
    async fn cancel_stops_the_brain() {
        let brain = EchoFactory::default().start(&call()).expect("echo starts");
        let handle = spawn_brain("echo", brain, BrainChannels::default());
        handle
            .finish(Duration::from_secs(1))
            .await
            .expect("stops on cancel");
    }
}
