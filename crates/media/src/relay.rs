//! ConversationRelay (`relay_path`, default `/relay`): Twilio does speech recognition and
//! synthesis and exchanges *text* with us over a WebSocket
//! (<https://www.twilio.com/docs/voice/conversationrelay/websocket-messages>).
//!
//! ```text
//! Twilio ──ws──▶ /relay (signature, drain) ──▶ drive_relay(): one task per session
//!                                                │ select! { frame, dialog event, control,
//!                                                │   session timeout, shutdown,
//!                                                │   held-up writes } + Outbox
//!                                                ▼
//!      RelaySession (sans-IO) ◀──▶ DialogFactory::dialog(customParameters) ──▶ Box<dyn Dialog>
//! ```
//!
//! The protocol state, turns, interrupts, timers and the bad-message policy live in the
//! sans-IO [`voxbridge_session::relay::RelaySession`]; the driver reads frames, runs the
//! dialog's (async) answer streams the session asks for, and writes the session's output.
//!
//! - `setup` creates the session: the [`DialogFactory`] builds the call's [`Dialog`] from
//!   `customParameters` (`screening`, `candidateId`, `firstName`, `jobTitle`), and the session
//!   is registered in the [`crate::Registry`] (the session SID `VX…` takes the stream SID's
//!   place) so `/healthz` counts it and shutdown drains it.
//! - `prompt` with `last: true` is one caller turn; partial prompts (`last: false`) only stop
//!   the silence timer (Twilio repeats the whole text in the final prompt). The dialog's
//!   answer is streamed as `text` tokens as it is produced; the final token of a turn carries
//!   `last: true`. `dtmf` is a key press. Inputs that arrive while a turn is still being
//!   generated wait for it (at most [`MAX_PENDING_INPUTS`]).
//! - `interrupt` cancels the running turn at once (its stream is dropped) and tells the dialog
//!   what the caller heard (`utteranceUntilInterrupt`).
//! - Silence: once a turn's last token is sent, the caller gets the time Twilio needs to speak
//!   it (estimated at `relay_speech_ms_per_word` per word, cut short by an `info`
//!   `agentSpeaking: off` event when Twilio sends those) plus the dialog's silence timeout;
//!   then the dialog gets [`ConversationInput::Silence`].
//! - The dialog's end becomes `end` with `handoffData`, sent once the closing line has had
//!   time to play (same estimate); Twilio then closes the socket.
//! - Malformed messages are counted; `max_consecutive_errors` in a row close the socket with
//!   1007, as Twilio itself does. A dropped socket is a hang-up: the dialog gets
//!   [`ConversationInput::Hangup`] and what was gathered is kept.
//! - At the end the [`RelayRecord`] (with the dialog's [`CallOutcome`]) goes to the
//!   [`ScreeningSink`] (the store plugs in here).
//!
//! [`ConversationInput::Silence`]: voxbridge_brain::conversation::ConversationInput::Silence
//! [`ConversationInput::Hangup`]: voxbridge_brain::conversation::ConversationInput::Hangup

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use voxbridge_brain::outcome::CallOutcome;
pub use voxbridge_brain::relay::DialogFactory;

pub use crate::relay_driver::drive_relay;
pub use voxbridge_session::relay::MAX_PENDING_INPUTS;

/// Why a relay session ended: the sans-IO session's own reason (an agent's end carries the
/// `handoffData` that was sent).
pub use voxbridge_session::relay::RelayEndReason as RelayEnd;

/// Everything the bridge records about a finished ConversationRelay session.
#[derive(Debug, Clone)]
pub struct RelayRecord {
    /// `callSid` (empty if `setup` never came).
    pub call_sid: String,
    /// `sessionId` (`VX…`, empty if `setup` never came).
    pub session_id: String,
    /// `from`, verbatim (a phone number or another address). Mask it before logging.
    pub from: String,
    /// `to`, verbatim.
    pub to: String,
    /// `direction`, e.g. `inbound` or `outbound-api`.
    pub direction: Option<String>,
    /// The agent that ran the session.
    pub agent: Option<String>,
    /// What the dialog gathered (`None` if no dialog ran); a screening's answers and outcome
    /// are its payload.
    pub outcome: Option<CallOutcome>,
    /// Why it ended.
    pub end: RelayEnd,
    /// When `setup` arrived (transcript and answer times are milliseconds from socket open).
    pub started_at: Option<SystemTime>,
    /// When the socket opened.
    pub opened_at: SystemTime,
    /// From socket open to teardown.
    pub duration: Duration,
    /// Malformed messages received.
    pub bad_messages: u32,
    /// Caller turns (final prompts and key presses).
    pub caller_turns: u32,
    /// Bot turns sent.
    pub bot_turns: u32,
}

/// Where finished relay sessions go (the store implements this). Called once per session, from
/// its task, after it is unregistered: must not block; spawn for slow I/O.
pub trait ScreeningSink: Send + Sync + 'static {
    /// One relay session has ended.
    fn relay_ended(&self, record: &RelayRecord);
}

/// The default relay sink: the session is already logged.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOnlyScreenings;

impl ScreeningSink for LogOnlyScreenings {
    fn relay_ended(&self, _record: &RelayRecord) {}
}

/// What the `/relay` route needs: who builds dialogs and where results go.
#[derive(Clone)]
pub struct RelayService {
    pub(crate) dialogs: Arc<dyn DialogFactory>,
    pub(crate) sink: Arc<dyn ScreeningSink>,
}

impl std::fmt::Debug for RelayService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayService")
            .field("agent", &self.dialogs.name())
            .finish_non_exhaustive()
    }
}

impl RelayService {
    /// Sessions get dialogs from `dialogs` and are handed to `sink` when they end.
    pub fn new(dialogs: Arc<dyn DialogFactory>, sink: Arc<dyn ScreeningSink>) -> Self {
        Self { dialogs, sink }
    }

    /// Dialogs from `dialogs` (e.g. the screening catalog), results logged only.
    pub fn logged(dialogs: impl DialogFactory) -> Self {
        Self::new(Arc::new(dialogs), Arc::new(LogOnlyScreenings))
    }

    /// The agent's name.
    pub fn agent(&self) -> &'static str {
        self.dialogs.name()
    }
}
