//! The brain runtime of voxbridge: the [`Brain`]/[`BrainFactory`] interface, the [`Agents`]
//! registry, the built-in `echo` brain, the generic text [`conversation`] and streaming
//! [`dialog`] traits both transports drive, the neutral [`CallOutcome`] every conversation
//! reports, and the per-turn latency report of voice brains ([`turn`]).
//!
//! This crate knows nothing of speech providers (`voxbridge-speech`), the recruiting domain
//! (`voxbridge-screening`) or the voice brains built from them (`voxbridge-voice`): the media
//! shell depends on this crate alone.
//!
//! A *brain* decides what the bot says. The media shell (voxbridge-media) owns the sans-IO
//! [`voxbridge_session::Session`] of each call; when the call starts it picks an agent by name
//! (the `agent` custom parameter of the Media Stream, or the configured default) from an
//! [`Agents`] registry, asks its [`BrainFactory`] for a [`Brain`], and runs that brain as its
//! own tokio task with [`spawn_brain`]:
//!
//! ```text
//!  driver task (owns Session)                      brain task
//!  Output::Brain(BrainEvent) ──bounded mpsc──▶ BrainIo::events
//!  Input::Brain(cmd.as_input()) ◀──bounded mpsc── BrainIo::commands (owned Command)
//!  teardown ───────────────── CancellationToken ──▶ BrainIo::cancel
//! ```
//!
//! Brains never see sockets or the session; they get [`BrainEvent`]s and answer with owned
//! [`Command`]s. A brain must stop producing audio for a turn on [`BrainEvent::BargeIn`] (the
//! session drops late audio anyway) and must return promptly once `cancel` fires, the events
//! channel closes, or [`BrainEvent::CallEnded`] arrives.
//!
//! Built in: [`echo::EchoFactory`] (`echo`), which repeats each caller utterance back: a
//! diagnostic and the load-test workload. The speech-pipeline and screening brains plug into
//! the same traits.

pub mod conversation;
pub mod dialog;
pub mod echo;
pub mod outcome;
pub mod relay;
pub mod turn;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use outcome::{CallOutcome, Payload, Speaker, TranscriptEntry};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
pub use turn::{Stage, VoiceCallReport};
pub use voxbridge_session::{BrainCommand, BrainEvent, CallInfo, CallerAudio, EndReason, TurnId};

/// The custom parameter (`<Parameter name="agent" value="echo"/>`) that selects the agent.
pub const AGENT_PARAMETER: &str = "agent";

/// A boxed, sendable future: what [`Brain::run`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a brain's task ends with: its call report, or why it failed.
pub type BrainResult = Result<Option<VoiceCallReport>, BrainError>;

/// What can go wrong when choosing, starting or running a brain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrainError {
    /// No agent is registered under this name.
    #[error("unknown agent {name:?} (registered: {known})")]
    UnknownAgent {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// The factory could not build a brain for this call (bad parameters, provider down...).
    #[error("agent {agent} could not start: {reason}")]
    Start {
        /// The agent's name.
        agent: &'static str,
        /// Why.
        reason: String,
    },
    /// The brain failed while the call was running.
    #[error("agent {agent} failed: {reason}")]
    Failed {
        /// The agent's name.
        agent: &'static str,
        /// Why.
        reason: String,
    },
}

/// An owned command from a brain to its session; [`Command::as_input`] borrows it as the
/// session's [`BrainCommand`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Audio to speak for `turn`, at any sample rate.
    Audio {
        /// The turn this audio belongs to.
        turn: TurnId,
        /// Mono PCM16 samples.
        pcm: Vec<i16>,
        /// Their sample rate in Hz.
        sample_rate: u32,
    },
    /// G.711 mu-law at 8 kHz for `turn`, sent to Twilio unchanged.
    AudioMulaw {
        /// The turn this audio belongs to.
        turn: TurnId,
        /// Mu-law bytes (one per 8 kHz sample).
        mulaw: Vec<u8>,
    },
    /// Ends the current chunk of `turn`; `text` is what it says.
    ChunkEnd {
        /// The turn.
        turn: TurnId,
        /// What the chunk says (kept as "heard" once its mark comes back).
        text: String,
    },
    /// `turn` has no more audio.
    TurnEnd {
        /// The turn.
        turn: TurnId,
    },
    /// Hang up after the queued audio has played.
    Hangup {
        /// Goes to the call record.
        reason: String,
    },
    /// Stop the bot now (`clear`), as a barge-in would; `turn` and older turns take no more
    /// audio. Sent on [`BrainIo::interrupts`] it overtakes queued audio commands; here it
    /// waits its turn behind them.
    Interrupt {
        /// The newest turn to stop.
        turn: TurnId,
    },
}

impl Command {
    /// The session input for this command.
    pub fn as_input(&self) -> BrainCommand<'_> {
        match self {
            Self::Audio {
                turn,
                pcm,
                sample_rate,
            } => BrainCommand::Audio {
                turn: *turn,
                pcm,
                sample_rate: *sample_rate,
            },
            Self::AudioMulaw { turn, mulaw } => BrainCommand::AudioMulaw { turn: *turn, mulaw },
            Self::ChunkEnd { turn, text } => BrainCommand::ChunkEnd { turn: *turn, text },
            Self::TurnEnd { turn } => BrainCommand::TurnEnd { turn: *turn },
            Self::Hangup { reason } => BrainCommand::Hangup { reason },
            Self::Interrupt { turn } => BrainCommand::Interrupt { turn: *turn },
        }
    }
}

/// The brain's side of its channels.
#[derive(Debug)]
pub struct BrainIo {
    /// Events from the session. `None` from `recv` means the call is over.
    pub events: mpsc::Receiver<BrainEvent>,
    /// Commands to the session. A send error means the call is over.
    pub commands: mpsc::Sender<Command>,
    /// Urgent interruptions ([`BrainCommand::Interrupt`] of this turn and older ones): the
    /// shell takes them ahead of `commands` and even while it holds those back for
    /// backpressure, so the `clear` is not stuck behind a second of queued audio.
    pub interrupts: mpsc::Sender<TurnId>,
    /// Fired when the call is torn down; stop work (provider requests, synthesis) at once.
    pub cancel: CancellationToken,
}

/// One call's conversation logic, run as its own task by [`spawn_brain`].
pub trait Brain: Send + 'static {
    /// Runs until the call ends (events closed, `CallEnded`, or `cancel`) and returns the
    /// call's report (voice brains: turn latencies and the dialog's outcome; `None` for brains
    /// that keep nothing). An `Err` is logged by the shell and hangs the call up.
    fn run(self: Box<Self>, io: BrainIo) -> BoxFuture<BrainResult>;
}

/// Builds a brain for each call; registered by name in [`Agents`].
pub trait BrainFactory: Send + Sync + 'static {
    /// The agent name callers select with the `agent` custom parameter.
    fn name(&self) -> &'static str;
    /// A brain for this call. Must not block: do slow setup inside [`Brain::run`].
    fn start(&self, call: &CallInfo) -> Result<Box<dyn Brain>, BrainError>;
    /// The rate this agent wants caller audio at, if not the configured
    /// `media.pipeline_rate` (e.g. 8000 for an agent that has no use for 16 kHz).
    fn pipeline_rate(&self) -> Option<u32> {
        None
    }
    /// The per-turn latency metrics of this agent's calls, for the bridge's `/metrics`
    /// (speech-pipeline agents have them; others return `None`).
    fn turn_metrics(&self) -> Option<Arc<turn::PipelineMetrics>> {
        None
    }
    /// What the brain gets of the caller's audio: VAD utterances (the default) or every raw
    /// mu-law payload ([`CallerAudio::Raw`], for brains whose provider listens itself).
    fn caller_audio(&self) -> CallerAudio {
        CallerAudio::Utterances
    }
}

/// The agents this process offers, by name. Cheap to clone.
#[derive(Clone, Default)]
pub struct Agents {
    factories: Arc<BTreeMap<&'static str, Arc<dyn BrainFactory>>>,
}

impl fmt::Debug for Agents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

impl Agents {
    /// No agents.
    pub fn new() -> Self {
        Self::default()
    }

    /// The agents that need no configuration: `echo`.
    pub fn builtin() -> Self {
        Self::new().with(echo::EchoFactory::default())
    }

    /// Adds (or replaces) the factory under its [`BrainFactory::name`].
    #[must_use]
    pub fn with(self, factory: impl BrainFactory) -> Self {
        self.with_arc(Arc::new(factory))
    }

    /// Adds (or replaces) a shared factory.
    #[must_use]
    pub fn with_arc(self, factory: Arc<dyn BrainFactory>) -> Self {
        let mut map = Arc::unwrap_or_clone(self.factories);
        map.insert(factory.name(), factory);
        Self {
            factories: Arc::new(map),
        }
    }

    /// The factory registered as `name`.
    pub fn get(&self, name: &str) -> Result<&Arc<dyn BrainFactory>, BrainError> {
        self.factories
            .get(name)
            .ok_or_else(|| BrainError::UnknownAgent {
                name: name.to_owned(),
                known: self.names().collect::<Vec<_>>().join(", "),
            })
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// Registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.factories.keys().copied()
    }

    /// Registered factories by name, sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Arc<dyn BrainFactory>)> + '_ {
        self.factories
            .iter()
            .map(|(name, factory)| (*name, factory))
    }
}

/// Channel sizes for [`spawn_brain`].
#[derive(Debug, Clone, Copy)]
pub struct BrainChannels {
    /// Events queued for the brain before the shell starts dropping them (brain stuck).
    pub events: usize,
    /// Commands queued for the session; the brain waits when full (backpressure).
    pub commands: usize,
}

/// Interruptions queued for the session (a brain sends one per barge-in).
const INTERRUPT_QUEUE: usize = 4;

impl Default for BrainChannels {
    fn default() -> Self {
        Self {
            events: 32,
            // Small on purpose: with the shell's high-water mark on queued audio, this bounds
            // how far a brain can run ahead of playout (8 commands, e.g. 800 ms of echo).
            commands: 8,
        }
    }
}

/// Why an event could not be handed to the brain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    /// The brain's event queue is full: it is not keeping up.
    #[error("brain event queue full")]
    Full,
    /// The brain task has ended.
    #[error("brain has stopped")]
    Stopped,
}

/// What [`BrainHandle::next_from_brain`] got.
#[derive(Debug)]
pub enum FromBrain {
    /// Interrupt this turn and older ones now ([`BrainCommand::Interrupt`]).
    Interrupt(TurnId),
    /// The next command, in order.
    Command(Command),
    /// The brain has finished and every command was taken.
    Finished,
}

/// The shell's side of a running brain.
#[derive(Debug)]
pub struct BrainHandle {
    agent: &'static str,
    events: Option<mpsc::Sender<BrainEvent>>,
    commands: mpsc::Receiver<Command>,
    interrupts: mpsc::Receiver<TurnId>,
    cancel: CancellationToken,
    task: JoinHandle<BrainResult>,
}

/// Runs `brain` as its own task. Must be called inside a tokio runtime.
pub fn spawn_brain(
    agent: &'static str,
    brain: Box<dyn Brain>,
    sizes: BrainChannels,
) -> BrainHandle {
    let (event_tx, event_rx) = mpsc::channel(sizes.events.max(1));
    let (command_tx, command_rx) = mpsc::channel(sizes.commands.max(1));
    let (interrupt_tx, interrupt_rx) = mpsc::channel(INTERRUPT_QUEUE);
    let cancel = CancellationToken::new();
    let io = BrainIo {
        events: event_rx,
        commands: command_tx,
        interrupts: interrupt_tx,
        cancel: cancel.clone(),
    };
    let task = tokio::spawn(brain.run(io));
    BrainHandle {
        agent,
        events: Some(event_tx),
        commands: command_rx,
        interrupts: interrupt_rx,
        cancel,
        task,
    }
}

impl BrainHandle {
    /// The agent name.
    pub fn agent(&self) -> &'static str {
        self.agent
    }

    /// Hands an event to the brain without waiting (the driver must never block on a brain).
    pub fn deliver(&self, event: BrainEvent) -> Result<(), DeliverError> {
        let Some(events) = &self.events else {
            return Err(DeliverError::Stopped);
        };
        events.try_send(event).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => DeliverError::Full,
            mpsc::error::TrySendError::Closed(_) => DeliverError::Stopped,
        })
    }

    /// The next command; `None` once the brain has finished and its queue is empty.
    /// Cancel-safe (usable in `select!`).
    pub async fn next_command(&mut self) -> Option<Command> {
        self.commands.recv().await
    }

    /// The next urgent interruption (see [`BrainIo::interrupts`]); pending forever once the
    /// brain has dropped its sender. Cancel-safe.
    pub async fn next_interrupt(&mut self) -> TurnId {
        match self.interrupts.recv().await {
            Some(turn) => turn,
            None => std::future::pending().await,
        }
    }

    /// The next thing from the brain for the shell: an interruption first, then (only when
    /// `take_commands`, i.e. the session has room for more audio) a command. Cancel-safe.
    pub async fn next_from_brain(&mut self, take_commands: bool) -> FromBrain {
        tokio::select! {
            biased;
            Some(turn) = self.interrupts.recv() => FromBrain::Interrupt(turn),
            command = self.commands.recv(), if take_commands => match command {
                Some(command) => FromBrain::Command(command),
                None => FromBrain::Finished,
            },
            else => std::future::pending().await,
        }
    }

    /// Ends the brain: closes its events, fires `cancel`, and waits up to `grace` for the task
    /// (aborting it after). Returns the brain's own result (its report), or a `Failed` error if
    /// it panicked or overran the grace period.
    pub async fn finish(mut self, grace: std::time::Duration) -> BrainResult {
        self.events = None;
        self.cancel.cancel();
        let agent = self.agent;
        match tokio::time::timeout(grace, &mut self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(BrainError::Failed {
                agent,
                reason: if join.is_panic() {
                    "brain task panicked".to_owned()
                } else {
                    "brain task was cancelled".to_owned()
                },
            }),
            Err(_) => {
                self.task.abort();
                Err(BrainError::Failed {
                    agent,
                    reason: format!("brain did not stop within {grace:?} of cancellation"),
                })
            }
        }
    }
}

impl Drop for BrainHandle {
    fn drop(&mut self) {
        // Whatever path drops the handle (even a driver future dropped before `finish`), the
        // brain must not outlive its call: cancel it, and abort it in case it ignores that.
        self.cancel.cancel();
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_agent_lists_known_names() {
        let agents = Agents::builtin();
        let err = agents.get("nope").err().expect("nope is not registered");
        assert_eq!(
            err,
            BrainError::UnknownAgent {
                name: "nope".into(),
                known: "echo".into()
            }
        );
        assert!(agents.get("echo").is_ok());
        assert_eq!(agents.names().collect::<Vec<_>>(), ["echo"]);
    }

    #[test]
    fn command_borrows_as_session_input() {
        let cmd = Command::Audio {
            turn: TurnId(3),
            pcm: vec![1, 2, 3],
            sample_rate: 16_000,
        };
        match cmd.as_input() {
            BrainCommand::Audio {
                turn,
                pcm,
                sample_rate,
            } => {
                assert_eq!(turn, TurnId(3));
                assert_eq!(pcm, &[1, 2, 3]);
                assert_eq!(sample_rate, 16_000);
            }
            other => panic!("unexpected {other:?}"),
        }
        let hangup = Command::Hangup {
            reason: "done".into(),
        };
        assert!(matches!(
            hangup.as_input(),
            BrainCommand::Hangup { reason: "done" }
        ));
    }
}
