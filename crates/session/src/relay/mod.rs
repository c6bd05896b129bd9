//! Sans-IO state machine for one ConversationRelay session
//! (<https://www.twilio.com/docs/voice/conversationrelay/websocket-messages>): Twilio does the
//! speech recognition and synthesis and exchanges *text* with us. Caller turns in, the
//! dialog's answer streamed out as `text` tokens, interrupts, silence, `end` with
//! `handoffData`. No tokio, no sockets, no clock reads, no agent types: the shell passes `now`
//! in, runs the (async) dialog the session asks for, feeds its events back, and sleeps until
//! the [`RelayOutput::Timeout`] it gets.
//!
//! # Driving
//! ```text
//! loop {
//!     session.handle_input(now, input);       // a frame, a dialog event, a control request
//!     // or session.handle_timeout(now) when the last Timeout instant was reached
//!     loop { match session.poll_output() {
//!         RelayOutput::Send(text)        => socket.send(text),   // JSON text frame to Twilio
//!         RelayOutput::SetupReceived     => build the dialog from session.setup(), then
//!                                           handle_input(DialogReady | DialogRefused)
//!         RelayOutput::Dialog { at_ms, request } => start the dialog's turn for `request`
//!                                           (Hangup: tell the dialog, stream nothing)
//!         RelayOutput::CancelTurn        => drop the running turn's stream
//!         RelayOutput::Ended(summary)    => keep it for the record
//!         RelayOutput::Close { code, reason } => { socket.close(code, reason); break 'session }
//!         RelayOutput::Timeout(at)       => { sleep_until(at) or next input; break }
//!     }}
//! }
//! ```
//! Drain `poll_output` until `Timeout` after each `handle_*` call. A `Timeout` instant may
//! already have passed; call `handle_timeout` at once then. Deadlines fire only in
//! `handle_timeout`, one per call (an input that arrives at the same instant is handled
//! first), and never while a turn runs: a turn that is streaming holds the session's timers
//! until it finishes.
//!
//! # Lifecycle ([`RelayState`])
//! `AwaitingSetup` -> `setup` -> `SetupReceived` ([`RelayOutput::SetupReceived`]: the shell
//! builds the dialog from [`RelaySession::setup`]'s `customParameters`) -> `DialogReady`
//! queues [`DialogRequest::Start`] -> `InTurn` / `Listening` alternately -> `Ending` (the
//! dialog's `end` waits for the closing line to be spoken; `end` sent, Twilio closes next) ->
//! `Closed`. A dialog that cannot be built ([`RelayInput::DialogRefused`]) gets `end` at once
//! with `reasonCode` [`REASON_AGENT_UNAVAILABLE`].
//!
//! # Turns
//! One dialog turn runs at a time. Caller inputs (final `prompt`s, `dtmf`) that arrive while a
//! turn runs are queued, at most [`MAX_PENDING_INPUTS`] (the oldest is dropped). A `prompt`
//! with `last: false` only stops the silence timer and is kept: Twilio repeats the whole text
//! in the final prompt, and a final prompt with blank text falls back to the last partial.
//!
//! The dialog's events come back as [`RelayInput::Dialog`]. A piece of text directly followed
//! by its [`DialogEvent::TurnEnd`] goes out as one `last: true` token, so the session holds
//! each [`DialogEvent::Text`] until it learns what follows: the shell must feed, right after a
//! `Text`, the next event if the dialog already has one ready, else
//! [`RelayInput::DialogWaiting`] (nothing ready: the token goes out with `last: false`) or
//! [`RelayInput::TurnFinished`] (the stream ended). A turn whose stream ends without a
//! `TurnEnd` is closed with an empty `last` token.
//!
//! `interrupt` cancels the running turn ([`RelayOutput::CancelTurn`]: its stream is dropped,
//! no `last` token is sent) and queues [`DialogRequest::Interrupted`] with what the caller
//! heard (`utteranceUntilInterrupt`) ahead of every other input.
//!
//! # Silence and `end`
//! Once a turn's last token is out, Twilio is assumed to take
//! [`RelayConfig::speech_per_word`] per word to speak it (cut short by an `info`
//! `agentSpeaking: off`); the silence timeout (the dialog's, given in
//! [`RelayInput::DialogReady`]) runs from then and ends with [`DialogRequest::Silence`]. Caller
//! activity (any prompt, `dtmf`, `interrupt`, `clientSpeaking: on`) stops it. The dialog's
//! [`DialogEvent::End`] goes out as `end` with `handoffData` once its closing line has had the
//! same time to play; Twilio then closes the socket, and if it has not after
//! [`RelayConfig::end_linger`] the session closes it (1000).
//!
//! # Ending and close codes
//! | cause | [`RelayEndReason`] | close |
//! |---|---|---|
//! | socket closed or failed before our `end` | `CallerHungUp` | 1000 `session ended` |
//! | socket closed after our `end` (Twilio's normal finish), or not within `end_linger` | why `end` was sent: `Agent`, `Refused`, `Hangup`, `MaxDuration` | 1000 `session ended` |
//! | `max_consecutive_errors` malformed messages in a row | `Malformed` | 1007 `Too many consecutive malformed messages` |
//! | no `setup` within `start_timeout` | `SetupTimeout` | 1008 `policy violation` |
//! | the peer does not read ([`RelayInput::SlowPeer`]) | `SlowPeer` | 1008 `policy violation` |
//! | a message beyond the WebSocket layer's limit ([`RelayInput::TooBig`]; counted as malformed) | `MessageTooBig` | 1009 `message too big` |
//! | [`RelayInput::Shutdown`] (drain deadline, operator) | `Shutdown` | 1001 `server shutting down` |
//!
//! `max_call_duration`, an operator hangup ([`RelayInput::Hangup`]) and a refused dialog do
//! not close: they send `end` (reason codes [`REASON_MAX_DURATION`], [`REASON_HANGUP`],
//! [`REASON_AGENT_UNAVAILABLE`]) and Twilio closes. At the end the running turn is cancelled,
//! a built dialog gets [`DialogRequest::Hangup`], then [`RelayOutput::Ended`] and
//! [`RelayOutput::Close`]; nothing follows.
//!
//! Malformed messages: not JSON, unknown or wrong-direction `type`, missing fields, a binary
//! frame, a text frame over [`RelayConfig::max_message_bytes`], a second `setup`, anything but
//! `setup` before `setup` ([`FrameError`]). Each is logged, counted and skipped; a good
//! message resets the run. A message beyond the WebSocket layer's hard limit
//! ([`RelayInput::TooBig`]) is counted too, but ends the session: the socket cannot go on.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use voxbridge_twilio::relay::RelayError;

mod session;

pub use session::RelaySession;

/// Caller inputs queued while a turn is being generated; beyond this the oldest is dropped (a
/// caller cannot usefully get further ahead of the agent).
pub const MAX_PENDING_INPUTS: usize = 16;
/// `handoffData.reasonCode` when the dialog could not be built.
pub const REASON_AGENT_UNAVAILABLE: &str = "agent-unavailable";
/// `handoffData.reasonCode` when an operator ended the session.
pub const REASON_HANGUP: &str = "hangup";
/// `handoffData.reasonCode` at `max_call_duration`.
pub const REASON_MAX_DURATION: &str = "max-duration";
/// Close reason of a normal end (socket closed, linger after `end` passed).
pub const CLOSE_REASON_NORMAL: &str = "session ended";
/// Close reason at shutdown (1001).
pub const CLOSE_REASON_SHUTDOWN: &str = "server shutting down";
/// Close reason of a run of malformed messages (1007); Twilio closes with the same words.
pub const CLOSE_REASON_MALFORMED: &str = "Too many consecutive malformed messages";
/// Close reason of a setup timeout or a slow peer (1008).
pub const CLOSE_REASON_POLICY: &str = "policy violation";
/// Close reason of a message beyond the WebSocket layer's limit (1009).
pub const CLOSE_REASON_TOO_BIG: &str = "message too big";

/// Per-session settings. `Default` gives the production defaults of the `[media]` config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Time allowed from socket open to `setup` (close 1008 after). Default 10 s.
    pub start_timeout: Duration,
    /// From socket open until `end` is sent with [`REASON_MAX_DURATION`]. Default 1 h.
    pub max_call_duration: Duration,
    /// Malformed messages in a row that close the session (1007). Default 10.
    pub max_consecutive_errors: u32,
    /// Largest text frame accepted; longer ones are malformed. Default 64 KiB.
    pub max_message_bytes: usize,
    /// How long Twilio takes to speak one word of bot text. Default 400 ms.
    pub speech_per_word: Duration,
    /// After `end`, how long Twilio gets to close the socket before the session does.
    /// Default 5 s.
    pub end_linger: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            start_timeout: Duration::from_secs(10),
            max_call_duration: Duration::from_secs(3600),
            max_consecutive_errors: 10,
            max_message_bytes: crate::MAX_MESSAGE_SIZE,
            speech_per_word: Duration::from_millis(400),
            end_linger: Duration::from_secs(5),
        }
    }
}

/// `handoffData` of `end`: why the dialog (or the bridge) ended the session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Handoff {
    /// `reasonCode`, e.g. `live-agent-handoff`.
    pub reason_code: String,
    /// `reason`, human-readable.
    pub reason: String,
}

impl Handoff {
    /// A handoff with a code and a human-readable reason.
    pub fn new(reason_code: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            reason_code: reason_code.into(),
            reason: reason.into(),
        }
    }
}

/// What happens to the session; fed in by the shell.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayInput<'a> {
    /// A WebSocket text frame from Twilio.
    Text(&'a str),
    /// A WebSocket binary frame (ConversationRelay only sends text): malformed.
    Binary {
        /// Frame length in bytes.
        len: usize,
    },
    /// A message of `len` bytes, so large that the WebSocket layer refused it (beyond its hard
    /// limit) and the socket cannot go on: counted as malformed, and the session ends
    /// ([`RelayEndReason::MessageTooBig`], close 1009).
    TooBig {
        /// Message length in bytes, as the frame header declared it.
        len: usize,
    },
    /// The socket closed or failed (read or write).
    SocketClosed,
    /// The server is shutting down and the drain deadline passed: close with 1001.
    Shutdown,
    /// Writing to Twilio timed out (the peer does not read): close with 1008.
    SlowPeer,
    /// An operator ended the session: `end` with [`REASON_HANGUP`] and this reason.
    Hangup {
        /// Why, human-readable.
        reason: &'a str,
    },
    /// Answer to [`RelayOutput::SetupReceived`]: the dialog is built; it waits this long for
    /// the caller after a bot turn has played.
    DialogReady {
        /// The dialog's silence timeout.
        silence_timeout: Duration,
    },
    /// Answer to [`RelayOutput::SetupReceived`]: no dialog can serve this session (e.g. an
    /// unknown screening); `end` goes out with [`REASON_AGENT_UNAVAILABLE`] and `reason`.
    DialogRefused {
        /// Why, human-readable.
        reason: &'a str,
    },
    /// Answer to a [`RelayOutput::Dialog`] turn request: the dialog has already ended, so the
    /// turn did not run and queued caller inputs are dropped. No more turns are requested.
    DialogEnded,
    /// An event of the running turn's stream.
    Dialog(DialogEvent),
    /// The running turn's stream has nothing ready right now (fed right after a
    /// [`DialogEvent::Text`], see the [module docs](self)).
    DialogWaiting,
    /// The running turn's stream ended.
    TurnFinished,
}

/// One piece of what the dialog does in answer to a [`DialogRequest`] (the agent's
/// `DialogEvent`, without the agent types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogEvent {
    /// Text of the current bot turn, in order; pieces carry their own spacing.
    Text {
        /// The piece.
        text: String,
        /// Whether the caller may barge in (`interruptible`, and `preemptible`).
        interruptible: bool,
    },
    /// The current bot turn is complete.
    TurnEnd {
        /// It was the closing turn (an [`DialogEvent::End`] follows).
        last: bool,
    },
    /// Hang up or hand off: `end` with this `handoffData`, once the closing line has played.
    End(Handoff),
    /// Play DTMF tones (`sendDigits`); invalid digits are logged and not sent.
    SendDigits(String),
    /// Switch languages (`language`); a message with neither is logged and not sent.
    Language {
        /// TTS language, e.g. `en-US`.
        tts: Option<String>,
        /// Transcription language.
        transcription: Option<String>,
    },
}

/// What the dialog must be told (the agent's `ConversationInput`, without the agent types).
#[derive(Debug, Clone, PartialEq)]
pub enum DialogRequest {
    /// The session started: greet. `parameters` are `setup.customParameters`.
    Start {
        /// `setup.callSid`.
        call_sid: String,
        /// `setup.customParameters`.
        parameters: BTreeMap<String, String>,
    },
    /// A final prompt: what the caller said.
    UserSaid {
        /// The transcript.
        text: String,
    },
    /// A key press.
    Dtmf(char),
    /// The caller cut the bot off; `heard` is what was spoken of its turn.
    Interrupted {
        /// `utteranceUntilInterrupt`.
        heard: String,
    },
    /// The caller said nothing for `ms` after the last bot turn played.
    Silence {
        /// How long the silence lasted, in milliseconds.
        ms: u64,
    },
    /// The session is over: the dialog records the hang-up if it had not ended. Not a turn:
    /// nothing it answers is sent.
    Hangup,
}

/// What the shell must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayOutput {
    /// Send this JSON text frame to Twilio.
    Send(String),
    /// `setup` arrived ([`RelaySession::setup`]): build the dialog, answer with
    /// [`RelayInput::DialogReady`] or [`RelayInput::DialogRefused`].
    SetupReceived,
    /// Run the dialog on `request` at `at_ms` (milliseconds since the socket opened) and feed
    /// its events back; [`DialogRequest::Hangup`] streams nothing.
    Dialog {
        /// Milliseconds since the socket opened.
        at_ms: u64,
        /// What happened.
        request: DialogRequest,
    },
    /// Drop the running turn's stream now (interrupt, or the session is ending).
    CancelTurn,
    /// The session is over; the record of it. [`RelayOutput::Close`] follows.
    Ended(RelaySummary),
    /// Close the socket with this code and reason; the session is over.
    Close {
        /// WebSocket close code ([`crate::close`]).
        code: u16,
        /// Close reason.
        reason: &'static str,
    },
    /// Nothing more until this instant (or the next input).
    Timeout(Instant),
}

/// Why a relay session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEndReason {
    /// The dialog ended the session: `end` was sent with this `handoffData`.
    Agent(Handoff),
    /// The socket closed or failed before `end`: the caller hung up (or Twilio dropped it).
    CallerHungUp,
    /// `max_consecutive_errors` malformed messages in a row (close 1007).
    Malformed,
    /// No `setup` within `start_timeout` (close 1008).
    SetupTimeout,
    /// The dialog could not be built: `end` was sent at once.
    Refused(String),
    /// Ended by an operator: `end` was sent.
    Hangup(String),
    /// `max_call_duration` passed: `end` was sent.
    MaxDuration,
    /// Server shutdown (close 1001).
    Shutdown,
    /// The peer stopped reading (close 1008).
    SlowPeer,
    /// The peer sent a message beyond the WebSocket layer's limit (close 1009).
    MessageTooBig,
}

impl RelayEndReason {
    /// Every [`RelayEndReason::label`], in [`RelayEndReason::index`] order.
    pub const LABELS: [&'static str; 10] = [
        "agent",
        "caller-hung-up",
        "malformed-messages",
        "setup-timeout",
        "agent-unavailable",
        "hangup",
        "max-duration",
        "shutdown",
        "slow-peer",
        "message-too-big",
    ];

    /// The one name of this end, used by the bridge's metrics (`reason` label) and by the
    /// stored record (`end`; there an agent's end is stored as its `handoffData.reasonCode`,
    /// which metrics leave out to keep their labels bounded).
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }

    /// The position of this end in [`RelayEndReason::LABELS`] (for per-reason counters).
    pub fn index(&self) -> usize {
        match self {
            Self::Agent(_) => 0,
            Self::CallerHungUp => 1,
            Self::Malformed => 2,
            Self::SetupTimeout => 3,
            Self::Refused(_) => 4,
            Self::Hangup(_) => 5,
            Self::MaxDuration => 6,
            Self::Shutdown => 7,
            Self::SlowPeer => 8,
            Self::MessageTooBig => 9,
        }
    }
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    /// The socket is open; `setup` has not come.
    AwaitingSetup,
    /// `setup` came; the shell is building the dialog.
    SetupReceived,
    /// Between turns: waiting for the caller (or the silence timer).
    Listening,
    /// A dialog turn is running.
    InTurn,
    /// `end` is waiting for the closing line to play, or was sent and Twilio closes next.
    Ending,
    /// Over: `Close` was (or is about to be) returned.
    Closed,
}

/// What the session records, for logs, metrics and the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelaySummary {
    /// `callSid` (empty if `setup` never came).
    pub call_sid: String,
    /// `sessionId` (`VX…`, empty if `setup` never came).
    pub session_id: String,
    /// `from`, verbatim. Mask it before logging.
    pub from: String,
    /// `to`, verbatim.
    pub to: String,
    /// `direction`, e.g. `inbound` or `outbound-api`.
    pub direction: Option<String>,
    /// Why it ended (`None` while it runs).
    pub end: Option<RelayEndReason>,
    /// Malformed messages received (all of them, not just the last run).
    pub bad_messages: u32,
    /// Caller turns (final prompts and key presses).
    pub caller_turns: u32,
    /// Bot turns sent (talk cycles closed with a `last` token).
    pub bot_turns: u32,
}

/// A message from Twilio that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Not a ConversationRelay message (bad JSON, unknown type, wrong direction...).
    #[error(transparent)]
    Protocol(#[from] RelayError),
    /// A binary frame: ConversationRelay only sends text.
    #[error("binary frame of {0} bytes")]
    Binary(usize),
    /// Larger than `max_message_bytes`.
    #[error("message of {0} bytes is over the limit")]
    Oversize(usize),
    /// Beyond the WebSocket layer's hard limit: refused unread.
    #[error("message of {0} bytes is beyond what the WebSocket layer accepts")]
    TooBig(usize),
    /// `setup` twice, or another message before `setup`.
    #[error("{0} is not valid in this state")]
    OutOfOrder(&'static str),
}
