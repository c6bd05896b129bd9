//! Sans-IO per-call state machines for Twilio's two real-time voice transports. The crate root
//! is the one for a bidirectional Twilio Media Stream
//! (<https://www.twilio.com/docs/voice/media-streams/websocket-messages>): caller audio in,
//! voice activity and utterances out to the brain, bot audio paced out to Twilio with marks, and
//! barge-in; [`relay`] is the one for ConversationRelay (text in, streamed text out, driven
//! the same way). [`close`] has the WebSocket close codes both end with. No tokio, no
//! sockets, no clock reads: the driver passes `now` in and sleeps until
//! the [`Output::Timeout`] it gets.
//!
//! Changes from the draft:
//! - `handle_input` and `handle_timeout` return `()`: nothing they report needs the driver to
//!   act except through [`Session::poll_output`] (a run of bad messages becomes
//!   [`Output::Close`]). Bad input is logged with the `call_sid`, counted in the summary, and
//!   kept for inspection in [`Session::last_error`] (a [`SessionError`]). Do not write
//!   `handle_input(..)?`: one bad frame must not end a call.
//! - [`SessionConfig`] gained `max_utterance` (30 s) and `max_queued_audio` (60 s);
//!   [`Session::try_new`] validates a config ([`SessionConfig::validate`] too), and
//!   [`Session::new`] falls back to defaults for invalid fields (logged) instead of panicking.
//! - [`Input::SlowPeer`]: the driver could not write to Twilio in time; ends the call
//!   ([`EndReason::SlowPeer`], close 1008).
//! - [`Input::TooBig`]: the WebSocket layer refused a message beyond its hard limit; counted as
//!   a bad message, and ends the call ([`EndReason::MessageTooBig`], close 1009).
//! - [`CallSummary`] gained `stream_sid`, `dtmf`, `marks_sent`, `overflow_samples` and
//!   `dropped_brain_samples`; [`CallInfo`] is unchanged. Added derives: `Clone, Copy` on
//!   [`Input`] and [`BrainCommand`] (they only borrow), `PartialEq` on [`SessionConfig`] and
//!   [`CallSummary`].
//! - Extra accessors: [`Session::last_error`], [`Session::config`], [`Session::playout_ahead`],
//!   [`Session::is_playing`]. [`MAX_MESSAGE_SIZE`] is the 64 KiB frame limit (the session also
//!   applies it to `Input::Text`).
//!
//! # Driving (str0m / quinn-proto style)
//! ```text
//! loop {
//!     session.handle_input(now, input);          // a socket frame, a brain command, ...
//!     // or session.handle_timeout(now) when the last Timeout instant was reached
//!     loop { match session.poll_output() {
//!         Output::Send(text)      => socket.send(text),      // JSON text frame to Twilio
//!         Output::Brain(event)    => brain.send(event),      // event for the conversation brain
//!         Output::Close { code, reason } => { socket.close(code, reason); break 'call }
//!         Output::Timeout(at)     => { sleep_until(at) or next input; break }
//!     }}
//! }
//! ```
//! Always drain `poll_output` until `Timeout` after each `handle_*` call: outbound `media` is
//! produced lazily by `poll_output` against the `now` of the last `handle_*` call, so a `clear`
//! can never be overtaken by media that was computed before it. A `Timeout` instant may already
//! have passed; call `handle_timeout` at once then.
//!
//! # Raw caller audio (opt-in)
//! A brain that does its own listening (a speech-to-speech provider with its own turn
//! detection) asks for [`CallerAudio::Raw`] with [`Session::set_caller_audio`], normally right
//! after [`BrainEvent::CallStarted`] when the agent is chosen. Each inbound `media` payload is
//! then handed over unchanged as [`BrainEvent::CallerAudio`] (G.711 mu-law, 8 kHz, usually 160
//! bytes) and the local decode/resample/VAD path does not run: no utterances, no local
//! barge-in. Such a brain interrupts the bot with [`BrainCommand::Interrupt`] when its
//! provider hears the caller. The default, [`CallerAudio::Utterances`], costs nothing extra
//! per frame.
//!
//! # Inbound path
//! `connected` -> `start` (call facts, [`BrainEvent::CallStarted`]) -> each `media` frame:
//! base64 + mu-law (G.711) -> PCM16 8 kHz -> resampled to `pipeline_rate` -> VAD. Speech onset
//! (`min_speech` of speech) gives [`BrainEvent::SpeechStarted`] (and barge-in, see below); the
//! end of speech (`hangover` of silence) gives [`BrainEvent::Utterance`] with the audio from the
//! onset's first speech frame to one past its last speech frame (VAD boundaries, 10 ms
//! resolution). Times are stream audio time: samples since the first `media` frame. Nothing on
//! this path allocates per frame except the utterance buffer while speech is on.
//!
//! # Outbound path and pacing
//! Brain audio at any rate -> 8 kHz -> mu-law -> frames of 160 bytes (20 ms). The last frame of
//! a chunk carries the chunk's remainder (Twilio plays audio "of any size"), so the `mark` that
//! follows it ([`BrainCommand::ChunkEnd`], named `t{turn}c{chunk}`) is exact and consecutive
//! chunks join without padding. Twilio's playout buffer is modelled: it plays in real time from
//! when audio arrives, so `buffered_until = max(buffered_until, now) + frame`. A frame is sent
//! only if, after it, the buffer ahead of `now` is at most `playout_lead` (or the buffer is
//! empty); the send instant of the next frame is the `Timeout`.
//!
//! # Barge-in
//! A VAD onset while the bot is playing (audio queued here, audio in Twilio's modelled buffer, or
//! marks not yet echoed) sends `clear` in the same `handle_input` call, drops everything queued,
//! and reports [`BrainEvent::BargeIn`] for each unfinished turn with the text of the chunks whose
//! marks came back before the `clear`. Twilio echoes the pending marks after a `clear`; those
//! are known to be cleared and are not counted as heard. Later audio for those turns is dropped.
//! While a [`BrainCommand::Hangup`] is draining, caller speech does not interrupt the goodbye.
//! [`BrainCommand::Interrupt`] does the same on the brain's request.
//!
//! `BargeIn::heard_ms` is the audio of the turn whose marks came back before the `clear`: a
//! lower bound of what the caller heard. The true position lies between it and the end of the
//! chunk that was playing (marks are only echoed at chunk ends), so a brain that ends chunks
//! every 100 ms knows the heard position within 100 ms (plus the network delay of the echo).
//! Audio is counted at 8 kHz after conversion, so for 8 kHz or mu-law brain audio it is exact
//! in the brain's own sample count.
//!
//! # Ending
//! `stop`, socket close, timeouts, [`Input::Shutdown`], a run of bad messages, or a hangup end
//! the session: any open utterance is delivered, then [`BrainEvent::CallEnded`], then
//! [`Output::Close`]; nothing is sent after that. Close codes: `stop`, socket closed, hangup and
//! max duration 1000; start timeout, idle timeout and shutdown 1001; bad messages 1007/1008 (see
//! [`error`]); slow peer 1008; a message beyond the WebSocket layer's limit 1009.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub mod close;
pub mod error;
mod inbound;
mod outbound;
pub mod relay;
mod session;
mod turns;

pub use error::{ConfigError, SessionError};
pub use session::Session;

/// Largest WebSocket frame accepted from Twilio (64 KiB). A 20 ms `media` frame is ~300 bytes.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Identifies one bot turn (one reply); every audio chunk and mark belongs to a turn. Turn ids
/// must increase over a call: audio for a turn older than the newest one is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TurnId(pub u64);

/// Per-session settings. `Default` gives production defaults.
///
/// This struct is where each setting is declared: `[media]` flattens it, so its serde names
/// (`min_speech_ms = 200`, durations in whole milliseconds) are the configuration keys, its
/// `Default` is the default, and [`SessionConfig::validate`] names the key that is wrong.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct SessionConfig {
    /// Rate (Hz) caller audio is resampled to for the VAD and the brain: 8000, 16000, 24000
    /// or 48000. Default 16000.
    pub pipeline_rate: u32,
    /// How far ahead of Twilio's playout position we may have sent audio. Default 100 ms:
    /// enough to ride out scheduling jitter, little for `clear` to flush.
    #[serde(rename = "playout_lead_ms", with = "voxbridge_config::millis")]
    pub playout_lead: Duration,
    /// VAD: speech needed before it counts (the barge-in threshold; ignores coughs and
    /// "mm-hm"). Default 200 ms.
    #[serde(rename = "min_speech_ms", with = "voxbridge_config::millis")]
    pub min_speech: Duration,
    /// VAD: silence that ends an utterance. Default 600 ms.
    #[serde(rename = "hangover_ms", with = "voxbridge_config::millis")]
    pub hangover: Duration,
    /// Whether caller speech interrupts the bot. Default true.
    pub barge_in: bool,
    /// Consecutive bad messages before the session closes (1007/1008). Default 10.
    pub max_consecutive_errors: u32,
    /// Time allowed from socket open to `start`. Default 10 s.
    #[serde(rename = "start_timeout_ms", with = "voxbridge_config::millis")]
    pub start_timeout: Duration,
    /// No message from Twilio for this long means the peer is gone. Default 10 s
    /// (Twilio streams a media frame every 20 ms while the call is up).
    #[serde(rename = "idle_timeout_ms", with = "voxbridge_config::millis")]
    pub idle_timeout: Duration,
    /// Hard cap on the session's life (from socket open). Default 1 h.
    #[serde(rename = "max_call_duration_ms", with = "voxbridge_config::millis")]
    pub max_call_duration: Duration,
    /// Longest utterance delivered in one piece; longer speech is delivered in pieces of this
    /// length. Default 30 s (960 KB at 16 kHz while it is being built).
    #[serde(rename = "max_utterance_ms", with = "voxbridge_config::millis")]
    pub max_utterance: Duration,
    /// Most bot audio queued here (not yet sent); more is dropped and counted in
    /// [`CallSummary::overflow_samples`]. Default 60 s (480 KB of mu-law at most; a brain that
    /// streams TTS keeps a few seconds).
    #[serde(rename = "max_queued_audio_ms", with = "voxbridge_config::millis")]
    pub max_queued_audio: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            pipeline_rate: 16_000,
            playout_lead: Duration::from_millis(100),
            min_speech: Duration::from_millis(200),
            hangover: Duration::from_millis(600),
            barge_in: true,
            max_consecutive_errors: 10,
            start_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            max_call_duration: Duration::from_secs(3600),
            max_utterance: Duration::from_secs(30),
            max_queued_audio: Duration::from_secs(60),
        }
    }
}

/// Call facts from the `start` message, handed to the brain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub call_sid: String,
    pub stream_sid: String,
    pub account_sid: String,
    /// `<Parameter>`s from TwiML: choose the agent (`agent`) and carry candidate data.
    pub custom_parameters: BTreeMap<String, String>,
}

/// What the brain receives of the caller's audio; see [`Session::set_caller_audio`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallerAudio {
    /// The local VAD runs: [`BrainEvent::SpeechStarted`], [`BrainEvent::Utterance`] at
    /// `pipeline_rate`, and local barge-in. The default.
    #[default]
    Utterances,
    /// As `Utterances`, plus [`BrainEvent::Pause`] when the caller pauses, so the brain can
    /// start recognising during the hangover.
    UtterancesAndPauses,
    /// Every inbound `media` payload as [`BrainEvent::CallerAudio`], unchanged (mu-law); no
    /// local VAD, no utterances, no local barge-in (the brain sends
    /// [`BrainCommand::Interrupt`]).
    Raw,
}

/// What happens to the session; fed in by the driver.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A WebSocket text frame from Twilio.
    Text(&'a str),
    /// A WebSocket binary frame (Twilio never sends these): counted as a bad message.
    Binary { len: usize },
    /// A message larger than the limit (`max_message_bytes`) that was still read: counted as a
    /// bad message (the run policy decides whether the call goes on).
    Oversize { len: usize },
    /// A message of `len` bytes, so large that the WebSocket layer refused it (beyond its hard
    /// limit) and the socket cannot go on: counted as a bad message, and the call ends
    /// ([`EndReason::MessageTooBig`], close 1009).
    TooBig { len: usize },
    /// The socket closed or failed.
    SocketClosed,
    /// A command from the brain.
    Brain(BrainCommand<'a>),
    /// The server is shutting down and the drain deadline passed: end the call cleanly.
    Shutdown,
    /// Writing to Twilio timed out (the peer does not read): end the call.
    SlowPeer,
}

/// What the brain asks the session to do.
#[derive(Debug, Clone, Copy)]
pub enum BrainCommand<'a> {
    /// Audio to speak for `turn`, at any sample rate; appended to the turn's current chunk.
    Audio {
        turn: TurnId,
        pcm: &'a [i16],
        sample_rate: u32,
    },
    /// G.711 mu-law at 8 kHz to speak for `turn`, sent to Twilio byte for byte (no decoding,
    /// no resampling); otherwise like [`BrainCommand::Audio`].
    AudioMulaw { turn: TurnId, mulaw: &'a [u8] },
    /// Ends the current chunk of `turn`; `text` is what it says. The session sends a `mark`
    /// after the chunk's audio, so it knows when the caller has heard `text`.
    ChunkEnd { turn: TurnId, text: &'a str },
    /// `turn` has no more audio. Audio not closed by a `ChunkEnd` becomes a chunk with no text.
    TurnEnd { turn: TurnId },
    /// Hang up after the audio already queued has played (`reason` goes to the call record).
    Hangup { reason: &'a str },
    /// Stop the bot now, as a barge-in would: `clear` goes to Twilio in the same step if audio
    /// is playing, every unfinished turn gets a [`BrainEvent::BargeIn`], and audio for `turn`
    /// or any older turn is dropped from now on. If the session never had audio for `turn`,
    /// it still reports `BargeIn { turn, heard: "", heard_ms: 0 }`, so the brain gets exactly
    /// one answer per unfinished turn. Ignored while a hangup drains (like caller speech).
    Interrupt { turn: TurnId },
}

/// Events for the brain.
#[derive(Debug, Clone, PartialEq)]
pub enum BrainEvent {
    /// `start` arrived.
    CallStarted(CallInfo),
    /// The caller started speaking (VAD onset, after `min_speech`).
    SpeechStarted,
    /// One inbound `media` payload as Twilio sent it (G.711 mu-law, 8 kHz); only with
    /// [`CallerAudio::Raw`].
    CallerAudio { mulaw: Vec<u8> },
    /// The caller finished an utterance: its audio at `pipeline_rate`. `started_at`/`ended_at`
    /// are stream audio time (since the first `media` frame); `pcm` covers exactly that span.
    Utterance {
        pcm: Vec<i16>,
        sample_rate: u32,
        started_at: Duration,
        ended_at: Duration,
    },
    /// The caller paused inside an utterance (a third of the hangover, at most 200 ms, of
    /// silence): what they said so far, as in `Utterance`. If they say no more, an `Utterance`
    /// with the same `started_at` and `ended_at` (and the same audio) follows when the hangover
    /// runs out; a brain may recognise this audio meanwhile and use the result then. Only with
    /// [`CallerAudio::UtterancesAndPauses`].
    Pause {
        pcm: Vec<i16>,
        sample_rate: u32,
        started_at: Duration,
        ended_at: Duration,
    },
    /// A DTMF key.
    Dtmf(char),
    /// The caller interrupted `turn`: its unplayed audio was cleared. `heard` is the text of the
    /// chunks whose marks were echoed before the `clear` (what the caller actually heard), and
    /// `heard_ms` their audio in milliseconds (8 kHz samples / 8, rounded down; see the crate
    /// docs for its precision). The brain must stop producing audio for `turn`; any that still
    /// arrives is dropped.
    BargeIn {
        turn: TurnId,
        heard: String,
        heard_ms: u64,
    },
    /// The first `media` frame of `turn` was handed to the driver at `at` (the `now` of the
    /// step that sent it): the bot started speaking. Brains use it to measure the latency from
    /// the end of the caller's speech to the first audio on the wire; others ignore it.
    TurnStarted { turn: TurnId, at: Instant },
    /// Every chunk of `turn` has played (its last mark came back after `TurnEnd`).
    TurnPlayed { turn: TurnId },
    /// The call ended; the brain should finish up. Sent once, also when `start` never came.
    CallEnded { reason: EndReason },
}

/// Why the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// Twilio sent `stop` (caller hung up or the call ended).
    Stopped,
    SocketClosed,
    BrainHangup(String),
    StartTimeout,
    IdleTimeout,
    MaxDuration,
    TooManyBadMessages,
    SlowPeer,
    Shutdown,
    /// The peer sent a message beyond the WebSocket layer's limit ([`Input::TooBig`]).
    MessageTooBig,
}

impl EndReason {
    /// Every [`EndReason::label`], in [`EndReason::index`] order.
    pub const LABELS: [&'static str; 10] = [
        "stopped",
        "socket-closed",
        "brain-hangup",
        "start-timeout",
        "idle-timeout",
        "max-duration",
        "malformed-messages",
        "slow-peer",
        "shutdown",
        "message-too-big",
    ];

    /// The one name of this reason, used by the bridge's metrics (`reason` label) and by the
    /// stored call record (`end`) alike.
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }

    /// The position of this reason in [`EndReason::LABELS`] (for per-reason counters).
    pub fn index(&self) -> usize {
        match self {
            Self::Stopped => 0,
            Self::SocketClosed => 1,
            Self::BrainHangup(_) => 2,
            Self::StartTimeout => 3,
            Self::IdleTimeout => 4,
            Self::MaxDuration => 5,
            Self::TooManyBadMessages => 6,
            Self::SlowPeer => 7,
            Self::Shutdown => 8,
            Self::MessageTooBig => 9,
        }
    }
}

/// What the driver must do next.
#[derive(Debug, PartialEq)]
pub enum Output {
    /// Send this JSON text frame to Twilio.
    Send(String),
    /// Deliver this event to the brain.
    Brain(BrainEvent),
    /// Close the socket with this code and reason; the session is over.
    Close { code: u16, reason: &'static str },
    /// Nothing more until this instant (or the next input).
    Timeout(Instant),
}

/// A summary of the call for logs, metrics and (later) the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallSummary {
    pub call_sid: Option<String>,
    pub stream_sid: Option<String>,
    /// Inbound `media` frames processed.
    pub frames_in: u64,
    /// Outbound `media` frames sent.
    pub frames_out: u64,
    /// Outbound `mark`s sent.
    pub marks_sent: u64,
    /// Bad Twilio messages (all of them, not just the last run).
    pub bad_messages: u64,
    pub barge_ins: u64,
    pub utterances: u64,
    /// DTMF keys received.
    pub dtmf: u64,
    /// 8 kHz samples of bot audio dropped because the queue was full.
    pub overflow_samples: u64,
    /// Input samples of brain audio dropped because their turn was interrupted or finished.
    pub dropped_brain_samples: u64,
    pub end_reason: Option<EndReason>,
    /// Bot turns finished: played to the end, interrupted, or cut by the end of the call (a
    /// count, not a list: a long call's summary does not grow with its turns; the brain is told
    /// of each as [`BrainEvent::TurnPlayed`] or, with the text heard, [`BrainEvent::BargeIn`]).
    pub bot_turns: u64,
    /// Of [`CallSummary::bot_turns`], those interrupted (by barge-in or
    /// [`BrainCommand::Interrupt`], or by the call ending before they finished playing).
    pub interrupted_bot_turns: u64,
}
