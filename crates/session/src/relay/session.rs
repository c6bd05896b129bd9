//! The ConversationRelay state machine: see the [module docs](super) for how it is driven.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::{debug, error, warn};
use voxbridge_twilio::relay::{
    DigitSequence, End, HandoffData, InboundMessage, Language, OutboundMessage, Setup, Text,
};

use super::{
    CLOSE_REASON_MALFORMED, CLOSE_REASON_NORMAL, CLOSE_REASON_POLICY, CLOSE_REASON_SHUTDOWN,
    CLOSE_REASON_TOO_BIG, DialogEvent, DialogRequest, FrameError, Handoff, MAX_PENDING_INPUTS,
    REASON_AGENT_UNAVAILABLE, REASON_HANGUP, REASON_MAX_DURATION, RelayConfig, RelayEndReason,
    RelayInput, RelayOutput, RelayState, RelaySummary,
};
use crate::close;

/// Where the dialog is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DialogState {
    /// No dialog (before `setup`, or it was refused).
    None,
    /// `SetupReceived` went out; the shell is building it.
    Building,
    /// Built: turns run.
    Ready,
    /// It ended on its own (reported by the shell): no more turns.
    Ended,
}

/// One ConversationRelay session; see the [module docs](super).
#[derive(Debug)]
pub struct RelaySession {
    cfg: RelayConfig,
    /// When the socket opened.
    created: Instant,
    /// Latest `now` passed in (never goes back).
    now: Instant,
    setup: Option<Box<Setup>>,
    dialog: DialogState,
    silence_timeout: Duration,
    /// Caller inputs waiting for the dialog.
    pending: VecDeque<DialogRequest>,
    /// The newest partial prompt (Twilio's partials carry the text so far, not a delta).
    partial: String,
    in_turn: bool,
    /// A text piece of the running turn, held until what follows it is known.
    held: Option<(String, bool)>,
    bad_in_a_row: u32,
    /// Words of the current bot turn (the speaking-time estimate).
    turn_words: WordCount,
    /// Whether the last `text` sent had `last: true`.
    turn_closed: bool,
    /// When the last bot turn is expected to have been spoken.
    spoken_at: Option<Instant>,
    /// `end` waiting for the closing line to be spoken.
    pending_end: Option<Handoff>,
    /// When `end` went out; Twilio closes the socket next.
    end_sent_at: Option<Instant>,
    /// Why the session ends once Twilio has closed after our `end`.
    after_end: Option<RelayEndReason>,
    ended: bool,
    summary: RelaySummary,
    out: VecDeque<RelayOutput>,
    last_error: Option<FrameError>,
}

impl RelaySession {
    /// A session for a socket that opened at `now`.
    pub fn new(config: RelayConfig, now: Instant) -> Self {
        Self {
            cfg: config,
            created: now,
            now,
            setup: None,
            dialog: DialogState::None,
            silence_timeout: Duration::ZERO,
            pending: VecDeque::new(),
            partial: String::new(),
            in_turn: false,
            held: None,
            bad_in_a_row: 0,
            turn_words: WordCount::default(),
            turn_closed: true,
            spoken_at: None,
            pending_end: None,
            end_sent_at: None,
            after_end: None,
            ended: false,
            summary: RelaySummary::default(),
            out: VecDeque::with_capacity(8),
            last_error: None,
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &RelayConfig {
        &self.cfg
    }

    /// The `setup` message, once it came.
    pub fn setup(&self) -> Option<&Setup> {
        self.setup.as_deref()
    }

    /// Where the session is.
    pub fn state(&self) -> RelayState {
        if self.ended {
            RelayState::Closed
        } else if self.in_turn {
            RelayState::InTurn
        } else if self.pending_end.is_some() || self.end_sent_at.is_some() {
            RelayState::Ending
        } else if self.setup.is_none() {
            RelayState::AwaitingSetup
        } else if self.dialog == DialogState::Building {
            RelayState::SetupReceived
        } else {
            RelayState::Listening
        }
    }

    /// Whether the session is over (a `Close` was or is about to be returned).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The session so far.
    pub fn summary(&self) -> &RelaySummary {
        &self.summary
    }

    /// Caller inputs waiting for the dialog.
    pub fn pending_inputs(&self) -> usize {
        self.pending.len()
    }

    /// Why the latest `handle_input` frame was malformed, `None` if it was fine.
    pub fn last_error(&self) -> Option<&FrameError> {
        self.last_error.as_ref()
    }

    /// Feeds one input at `now`. Never panics on peer input: malformed frames are logged,
    /// counted and skipped (see [`RelaySession::last_error`]); a run of them ends the session
    /// through `poll_output`. Inputs after the end are ignored.
    pub fn handle_input(&mut self, now: Instant, input: RelayInput<'_>) {
        self.now = now.max(self.now);
        self.last_error = None;
        if self.ended {
            return;
        }
        if !matches!(
            input,
            RelayInput::Dialog(_) | RelayInput::DialogWaiting | RelayInput::TurnFinished
        ) {
            // A held piece never waits on anything but its own turn's stream.
            self.flush_held(false);
        }
        match input {
            RelayInput::Text(text) => self.on_text(text),
            RelayInput::Binary { len } => self.bad(FrameError::Binary(len)),
            RelayInput::TooBig { len } => {
                // Counted like any malformed message, but the socket cannot go on after it.
                self.count_bad(FrameError::TooBig(len));
                self.stop(
                    RelayEndReason::MessageTooBig,
                    close::MESSAGE_TOO_BIG,
                    CLOSE_REASON_TOO_BIG,
                );
            }
            RelayInput::SocketClosed => self.peer_closed(),
            RelayInput::Shutdown => self.stop(
                RelayEndReason::Shutdown,
                close::GOING_AWAY,
                CLOSE_REASON_SHUTDOWN,
            ),
            RelayInput::SlowPeer => {
                self.stop(RelayEndReason::SlowPeer, close::POLICY, CLOSE_REASON_POLICY);
            }
            RelayInput::Hangup { reason } => {
                self.end_now(
                    RelayEndReason::Hangup(reason.to_owned()),
                    Handoff::new(REASON_HANGUP, reason),
                );
                // `end` is out: the running turn has nothing more to say.
                self.cancel_turn();
            }
            RelayInput::DialogReady { silence_timeout } => self.dialog_ready(silence_timeout),
            RelayInput::DialogRefused { reason } => {
                if self.dialog == DialogState::Building {
                    self.dialog = DialogState::None;
                }
                self.end_now(
                    RelayEndReason::Refused(reason.to_owned()),
                    Handoff::new(REASON_AGENT_UNAVAILABLE, reason),
                );
            }
            RelayInput::DialogEnded => {
                self.in_turn = false;
                self.dialog = DialogState::Ended;
                self.pending.clear();
            }
            RelayInput::Dialog(event) => self.on_event(event),
            RelayInput::DialogWaiting => self.flush_held(false),
            RelayInput::TurnFinished => self.turn_finished(),
        }
    }

    /// The timer from the last [`RelayOutput::Timeout`] fired (calling it early is harmless).
    /// Fires at most one deadline; the next `Timeout` says when to call again.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now.max(self.now);
        if self.ended || self.in_turn {
            return;
        }
        let now = self.now;
        let due = |at: Option<Instant>| at.is_some_and(|at| now >= at);
        if due(self.end_at()) {
            if let Some(handoff) = self.pending_end.take() {
                self.end_now(RelayEndReason::Agent(handoff.clone()), handoff);
            }
        } else if due(self.linger_at()) {
            debug!("Twilio did not close after end; closing");
            let why = self
                .after_end
                .take()
                .unwrap_or(RelayEndReason::CallerHungUp);
            self.stop(why, close::NORMAL, CLOSE_REASON_NORMAL);
        } else if due(self.silence_at()) {
            let ms = self
                .spoken_at
                .map_or(0, |at| millis(now.saturating_duration_since(at)));
            self.spoken_at = None;
            self.queue(DialogRequest::Silence { ms });
        } else if due(self.setup_deadline()) {
            warn!("no setup message in time");
            self.stop(
                RelayEndReason::SetupTimeout,
                close::POLICY,
                CLOSE_REASON_POLICY,
            );
        } else if due(self.max_deadline()) {
            warn!("maximum call duration reached");
            self.end_now(
                RelayEndReason::MaxDuration,
                Handoff::new(REASON_MAX_DURATION, "Maximum call duration reached"),
            );
        }
    }

    /// The next thing the shell must do; call until it returns [`RelayOutput::Timeout`]. After
    /// [`RelayOutput::Close`] only `Timeout`s far in the future come back.
    pub fn poll_output(&mut self) -> RelayOutput {
        if let Some(output) = self.out.pop_front() {
            return output;
        }
        if let Some(output) = self.next_turn() {
            return output;
        }
        RelayOutput::Timeout(self.next_timeout())
    }

    // ---- time ----

    fn end_at(&self) -> Option<Instant> {
        self.pending_end.as_ref().and(self.spoken_at)
    }

    fn linger_at(&self) -> Option<Instant> {
        self.end_sent_at
            .and_then(|at| at.checked_add(self.cfg.end_linger))
    }

    fn silence_at(&self) -> Option<Instant> {
        if self.pending_end.is_some() || self.end_sent_at.is_some() || !self.pending.is_empty() {
            return None;
        }
        self.spoken_at
            .and_then(|at| at.checked_add(self.silence_timeout))
    }

    fn setup_deadline(&self) -> Option<Instant> {
        if self.setup.is_some() {
            return None;
        }
        self.created.checked_add(self.cfg.start_timeout)
    }

    fn max_deadline(&self) -> Option<Instant> {
        if self.end_sent_at.is_some() {
            return None;
        }
        self.created.checked_add(self.cfg.max_call_duration)
    }

    fn next_timeout(&self) -> Instant {
        if self.ended || self.in_turn {
            return far_future(self.now);
        }
        [
            self.end_at(),
            self.linger_at(),
            self.silence_at(),
            self.setup_deadline(),
            self.max_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| far_future(self.now))
    }

    fn at_ms(&self) -> u64 {
        millis(self.now.saturating_duration_since(self.created))
    }

    fn speaking_time(&self, words: usize) -> Duration {
        self.cfg
            .speech_per_word
            .saturating_mul(u32::try_from(words).unwrap_or(u32::MAX))
    }

    // ---- Twilio -> session ----

    /// Parses one text frame and acts on it.
    fn on_text(&mut self, text: &str) {
        if text.len() > self.cfg.max_message_bytes {
            self.bad(FrameError::Oversize(text.len()));
            return;
        }
        let message = match InboundMessage::parse(text) {
            Ok(message) => message,
            Err(e) => {
                self.bad(FrameError::Protocol(e));
                return;
            }
        };
        let started = self.setup.is_some();
        match message {
            InboundMessage::Setup(_) if started => {
                self.bad(FrameError::OutOfOrder("a second setup"));
                return;
            }
            InboundMessage::Setup(setup) => self.on_setup(setup),
            _ if !started => {
                self.bad(FrameError::OutOfOrder("a message before setup"));
                return;
            }
            InboundMessage::Prompt(prompt) => {
                // The caller is speaking: no silence now.
                self.spoken_at = None;
                if prompt.last {
                    let partial = std::mem::take(&mut self.partial);
                    let text = if prompt.voice_prompt.trim().is_empty() {
                        partial
                    } else {
                        prompt.voice_prompt
                    };
                    self.summary.caller_turns += 1;
                    self.queue(DialogRequest::UserSaid { text });
                } else {
                    self.partial = prompt.voice_prompt;
                }
            }
            InboundMessage::Dtmf(dtmf) => {
                self.spoken_at = None;
                self.summary.caller_turns += 1;
                self.queue(DialogRequest::Dtmf(dtmf.digit.as_char()));
            }
            InboundMessage::Interrupt(interrupt) => {
                self.spoken_at = None;
                let heard = interrupt.utterance_until_interrupt;
                if self.in_turn {
                    debug!(heard = %heard, "bot turn interrupted");
                    self.cancel_turn();
                    self.turn_closed = true;
                }
                self.queue_front(DialogRequest::Interrupted { heard });
            }
            InboundMessage::Error(report) => {
                warn!(description = %report.description, "Twilio reported an error");
            }
            InboundMessage::Info(info) => {
                debug!(name = %info.name, value = ?info.value, "info");
                let off = info.value.as_ref().and_then(|v| v.as_str()) == Some("off");
                match info.name.as_str() {
                    "agentSpeaking" if off => self.on_agent_silent(),
                    "clientSpeaking" if !off => self.spoken_at = None,
                    _ => {}
                }
            }
        }
        self.bad_in_a_row = 0;
    }

    fn on_setup(&mut self, setup: Box<Setup>) {
        self.summary = RelaySummary {
            call_sid: setup.call_sid.as_str().to_owned(),
            session_id: setup.session_id.as_str().to_owned(),
            from: setup.from.to_string(),
            to: setup.to.to_string(),
            direction: setup.direction.as_ref().map(|d| d.as_str().to_owned()),
            ..std::mem::take(&mut self.summary)
        };
        self.setup = Some(setup);
        self.dialog = DialogState::Building;
        self.out.push_back(RelayOutput::SetupReceived);
    }

    /// Counts a malformed message; a run of `max_consecutive_errors` ends the session (1007).
    fn bad(&mut self, error: FrameError) {
        self.count_bad(error);
        if self.bad_in_a_row >= self.cfg.max_consecutive_errors {
            self.stop(
                RelayEndReason::Malformed,
                close::INVALID_PAYLOAD,
                CLOSE_REASON_MALFORMED,
            );
        }
    }

    fn count_bad(&mut self, error: FrameError) {
        self.bad_in_a_row += 1;
        self.summary.bad_messages += 1;
        warn!(error = %error, in_a_row = self.bad_in_a_row, "malformed relay message");
        self.last_error = Some(error);
    }

    /// Twilio says it stopped speaking (`info agentSpeaking off`): the turn has played.
    fn on_agent_silent(&mut self) {
        if self.turn_closed && self.spoken_at.is_some_and(|at| at > self.now) {
            self.spoken_at = Some(self.now);
        }
    }

    fn queue(&mut self, input: DialogRequest) {
        if self.pending.len() >= MAX_PENDING_INPUTS {
            warn!("caller inputs are piling up; dropping the oldest");
            self.pending.pop_front();
        }
        self.pending.push_back(input);
    }

    fn queue_front(&mut self, input: DialogRequest) {
        self.pending.push_front(input);
        self.pending.truncate(MAX_PENDING_INPUTS);
    }

    // ---- dialog -> session ----

    fn dialog_ready(&mut self, silence_timeout: Duration) {
        if self.dialog != DialogState::Building {
            debug!("dialog ready without a setup waiting for it; ignored");
            return;
        }
        let Some(setup) = &self.setup else {
            return;
        };
        let start = DialogRequest::Start {
            call_sid: setup.call_sid.as_str().to_owned(),
            parameters: setup.custom_parameters.clone(),
        };
        self.dialog = DialogState::Ready;
        self.silence_timeout = silence_timeout;
        self.queue_front(start);
    }

    /// The next queued input as a turn, if the dialog can take one now.
    fn next_turn(&mut self) -> Option<RelayOutput> {
        if self.ended || self.in_turn || self.pending_end.is_some() || self.end_sent_at.is_some() {
            return None;
        }
        match self.dialog {
            DialogState::Ready => {}
            DialogState::Ended => {
                self.pending.clear();
                return None;
            }
            DialogState::None | DialogState::Building => return None,
        }
        let request = self.pending.pop_front()?;
        self.in_turn = true;
        Some(RelayOutput::Dialog {
            at_ms: self.at_ms(),
            request,
        })
    }

    fn on_event(&mut self, event: DialogEvent) {
        if !self.in_turn {
            debug!(?event, "dialog event outside a turn; ignored");
            return;
        }
        // A held piece directly followed by its TurnEnd goes out as one `last` token.
        if self.held.is_some() {
            if matches!(event, DialogEvent::TurnEnd { .. }) {
                self.flush_held(true);
                return;
            }
            self.flush_held(false);
        }
        match event {
            DialogEvent::Text {
                text,
                interruptible,
            } => {
                if self.turn_closed {
                    self.turn_closed = false;
                    self.turn_words = WordCount::default();
                    self.spoken_at = None;
                }
                self.turn_words.add(&text);
                self.held = Some((text, interruptible));
            }
            DialogEvent::TurnEnd { .. } => self.close_turn(),
            DialogEvent::End(handoff) => {
                self.pending_end = Some(handoff);
                if self.spoken_at.is_none() {
                    self.spoken_at = Some(self.now);
                }
            }
            DialogEvent::SendDigits(digits) => match DigitSequence::new(digits) {
                Ok(digits) => self.send(&OutboundMessage::SendDigits(digits)),
                Err(e) => warn!(error = %e, "dialog asked for invalid digits; not sent"),
            },
            DialogEvent::Language { tts, transcription } => {
                match Language::new(tts, transcription) {
                    Ok(language) => self.send(&OutboundMessage::Language(language)),
                    Err(e) => warn!(error = %e, "dialog asked for an invalid language; not sent"),
                }
            }
        }
    }

    /// Sends the held piece, as the turn's `last` token or not.
    fn flush_held(&mut self, last: bool) {
        if let Some((text, interruptible)) = self.held.take() {
            self.send_text(text, last, interruptible);
            if last {
                self.turn_spoken();
            }
        }
    }

    /// The turn's stream ended: a talk cycle left open is closed with an empty `last` token.
    fn turn_finished(&mut self) {
        if !self.in_turn {
            return;
        }
        self.flush_held(false);
        self.close_turn();
        self.in_turn = false;
    }

    /// Closes an open talk cycle with an empty `last` token.
    fn close_turn(&mut self) {
        if !self.turn_closed {
            self.send_text(String::new(), true, true);
            self.turn_spoken();
        }
    }

    /// The turn's last token is out: from now on Twilio speaks it.
    fn turn_spoken(&mut self) {
        self.turn_closed = true;
        self.summary.bot_turns += 1;
        let speaking = self.speaking_time(self.turn_words.words);
        self.spoken_at = Some(
            self.now
                .checked_add(speaking)
                .unwrap_or_else(|| far_future(self.now)),
        );
    }

    fn cancel_turn(&mut self) {
        if self.in_turn {
            self.held = None;
            self.in_turn = false;
            self.out.push_back(RelayOutput::CancelTurn);
        }
    }

    // ---- session -> Twilio ----

    fn send_text(&mut self, token: String, last: bool, interruptible: bool) {
        let text = Text {
            interruptible: Some(interruptible),
            // Closing lines (not interruptible) must not be cut by a following talk cycle.
            preemptible: Some(interruptible),
            ..if last {
                Text::last(token)
            } else {
                Text::partial(token)
            }
        };
        self.send(&OutboundMessage::Text(text));
    }

    fn send(&mut self, message: &OutboundMessage) {
        match message.to_json() {
            Ok(text) => self.out.push_back(RelayOutput::Send(text)),
            Err(e) => error!(error = %e, "refusing to send an invalid relay message"),
        }
    }

    /// Sends `end` with `handoff` now; `why` is recorded once Twilio closes.
    fn end_now(&mut self, why: RelayEndReason, handoff: Handoff) {
        if self.end_sent_at.is_some() {
            return;
        }
        let end = End::with_handoff(&HandoffData::new(handoff.reason_code, handoff.reason));
        self.pending_end = None;
        self.spoken_at = None;
        self.send(&OutboundMessage::End(end));
        self.end_sent_at = Some(self.now);
        self.after_end = Some(why);
    }

    // ---- teardown ----

    fn peer_closed(&mut self) {
        // After our `end`, Twilio closing is the normal finish.
        let why = self
            .after_end
            .take()
            .unwrap_or(RelayEndReason::CallerHungUp);
        self.stop(why, close::NORMAL, CLOSE_REASON_NORMAL);
    }

    fn stop(&mut self, why: RelayEndReason, code: u16, reason: &'static str) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.cancel_turn();
        self.pending.clear();
        if self.dialog == DialogState::Ready {
            self.out.push_back(RelayOutput::Dialog {
                at_ms: self.at_ms(),
                request: DialogRequest::Hangup,
            });
        }
        self.summary.end = Some(why);
        self.out.push_back(RelayOutput::Ended(self.summary.clone()));
        self.out.push_back(RelayOutput::Close { code, reason });
    }
}

/// The words of a bot turn streamed in pieces, counted as one text: the model's tokens split
/// words (`Hel` `lo`) and punctuation (`Hi` `,`), and counting each piece on its own would
/// stretch the speaking-time estimate.
#[derive(Debug, Default)]
struct WordCount {
    words: usize,
    /// The text so far ends inside a word: a piece that goes on without a space continues it.
    in_word: bool,
}

impl WordCount {
    fn add(&mut self, piece: &str) {
        for c in piece.chars() {
            let in_word = !c.is_whitespace();
            if in_word && !self.in_word {
                self.words += 1;
            }
            self.in_word = in_word;
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An instant so far ahead that a shell sleeping until it will be woken by something else.
fn far_future(now: Instant) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    now.checked_add(YEAR)
        .or_else(|| now.checked_add(Duration::from_secs(3600)))
        .unwrap_or(now)
}
