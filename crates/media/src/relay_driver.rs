//! One ConversationRelay session's driver: parses Twilio's frames into dialog inputs, streams
//! the dialog's answers back as `text` tokens, and keeps the silence, `end` and setup
//! deadlines. Generic over `Sink`/`Stream` of [`Message`]s so tests and benches can drive it
//! without a socket. See [`crate::relay`] for the protocol decisions.
//!
//! The dialog's answer stream borrows the dialog, so a turn runs in its own loop
//! ([`Relay::run_turn`]) that also reads frames: an `interrupt` drops the stream at once.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, SystemTime};

use axum::extract::ws::Message;
use futures::stream::BoxStream;
use futures::{FutureExt, Sink, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, Span, debug, error, field, info, info_span, warn};
use voxbridge_brain::conversation::{ConversationInput, EndReason};
use voxbridge_brain::dialog::{Dialog, DialogEvent};
use voxbridge_twilio::relay::{
    DigitSequence, End, HandoffData, InboundMessage, Language, OutboundMessage, RelayError, Setup,
    Text,
};

use crate::MediaState;
use crate::metrics::{ActiveCall, Transport};
use crate::registry::{CallEntry, Control, Registration};
use crate::relay::{RelayEnd, RelayRecord, RelayService};
use crate::writer::{WriteError, close_writer, write_frames};

/// Caller inputs (final prompts, key presses) queued while a turn is being generated; beyond
/// this the oldest is dropped (a caller cannot usefully get further ahead of the agent).
pub const MAX_PENDING_INPUTS: usize = 16;
/// Control messages queued per session.
const CONTROL_QUEUE: usize = 4;
/// After `end`, how long Twilio gets to close the socket before we do.
const END_LINGER: Duration = Duration::from_secs(5);
/// After our close frame, how long to wait for the peer's close reply.
const CLOSE_HANDSHAKE_GRACE: Duration = Duration::from_secs(1);
/// Twilio closes with this after ten malformed messages in a row; we mirror it.
const CLOSE_MALFORMED: (u16, &str) = (1007, "Too many consecutive malformed messages");
const CLOSE_NORMAL: (u16, &str) = (1000, "session ended");
const CLOSE_SHUTDOWN: (u16, &str) = (1001, "server shutting down");
const CLOSE_POLICY: (u16, &str) = (1008, "policy violation");
/// `handoffData.reasonCode` when the dialog could not be built.
pub(crate) const REASON_AGENT_UNAVAILABLE: &str = "agent-unavailable";
/// `handoffData.reasonCode` when an operator ended the session.
pub(crate) const REASON_HANGUP: &str = "hangup";
/// `handoffData.reasonCode` at `max_call_duration_ms`.
pub(crate) const REASON_MAX_DURATION: &str = "max-duration";

/// A message from Twilio that could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// Not a ConversationRelay message (bad JSON, unknown type, wrong direction...).
    #[error(transparent)]
    Protocol(#[from] RelayError),
    /// A binary frame: ConversationRelay only sends text.
    #[error("binary frame of {0} bytes")]
    Binary(usize),
    /// Larger than `max_message_bytes`.
    #[error("message of {0} bytes is over the limit")]
    Oversize(usize),
    /// `setup` twice, or another message before `setup`.
    #[error("{0} is not valid in this state")]
    OutOfOrder(&'static str),
}

/// What a frame means for the session.
enum Frame {
    /// Nothing to do (info, error report, partial prompt, ping).
    Nothing,
    /// The session starts.
    Setup(Box<Setup>),
    /// A caller input for the dialog.
    Input(ConversationInput),
    /// The caller cut the bot off.
    Interrupt(String),
    /// Twilio has finished speaking the bot's text.
    AgentSilent,
    /// The socket is closed or failed.
    Closed,
    /// Too many malformed messages: close.
    TooManyErrors,
}

/// How a turn finished.
enum TurnEnd {
    /// The stream ended.
    Done,
    /// An `interrupt` cancelled it.
    Interrupted(String),
    /// The session must end now.
    Stop,
}

struct Relay {
    state: MediaState,
    service: RelayService,
    opened: Instant,
    opened_at: SystemTime,
    out: mpsc::Sender<Message>,
    writer: Option<JoinHandle<Result<(), WriteError>>>,
    control_tx: mpsc::Sender<Control>,
    control_rx: mpsc::Receiver<Control>,
    registration: Option<Registration>,
    /// Counts the session in `voxbridge_calls_active` from `setup` to teardown.
    active: Option<ActiveCall>,
    setup: Option<Box<Setup>>,
    agent: Option<&'static str>,
    started_at: Option<SystemTime>,
    pending: VecDeque<ConversationInput>,
    /// The newest partial prompt (Twilio's partials carry the text so far, not a delta).
    partial: String,
    bad_in_a_row: u32,
    bad_total: u32,
    caller_turns: u32,
    bot_turns: u32,
    /// Words of the current bot turn (the speaking-time estimate).
    turn_words: usize,
    /// Whether the last `text` sent had `last: true`.
    turn_closed: bool,
    /// When the last bot turn is expected to have been spoken.
    spoken_at: Option<Instant>,
    silence_timeout: Duration,
    /// `end` waiting for the closing line to be spoken.
    pending_end: Option<EndReason>,
    /// When `end` went out; Twilio closes the socket next.
    end_sent_at: Option<Instant>,
    /// Why the session ends once Twilio has closed after our `end`.
    after_end: Option<RelayEnd>,
    /// Why the session is over, once it is.
    ended: Option<RelayEnd>,
    close: (u16, &'static str),
    stream_done: bool,
    slow_peer: bool,
}

/// Drives one ConversationRelay connection to its end and returns its record (also logged and
/// handed to the relay's [`crate::relay::ScreeningSink`]). `sink` and `stream` are the two
/// halves of the socket. Never panics on peer input.
pub async fn drive_relay<W, R, E>(
    state: MediaState,
    service: RelayService,
    sink: W,
    stream: R,
) -> RelayRecord
where
    W: Sink<Message> + Unpin + Send + 'static,
    W::Error: fmt::Display,
    R: Stream<Item = Result<Message, E>> + Unpin + Send,
    E: fmt::Display,
{
    let span = info_span!(
        "relay",
        call_sid = field::Empty,
        session_id = field::Empty,
        from = field::Empty,
        agent = field::Empty
    );
    run(state, service, sink, stream).instrument(span).await
}

async fn run<W, R, E>(
    state: MediaState,
    service: RelayService,
    sink: W,
    mut stream: R,
) -> RelayRecord
where
    W: Sink<Message> + Unpin + Send + 'static,
    W::Error: fmt::Display,
    R: Stream<Item = Result<Message, E>> + Unpin + Send,
    E: fmt::Display,
{
    let config = state.config();
    let (out, queue) = mpsc::channel(config.send_queue_frames);
    let writer = tokio::spawn(write_frames(sink, queue, config.send_timeout()));
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let opened = Instant::now();
    let setup_deadline = opened + Duration::from_millis(config.start_timeout_ms);
    let max_deadline = opened + Duration::from_millis(config.max_call_duration_ms);
    let force_close = state.force_close_token();
    let mut relay = Relay {
        state,
        service,
        opened,
        opened_at: SystemTime::now(),
        out,
        writer: Some(writer),
        control_tx,
        control_rx,
        registration: None,
        active: None,
        setup: None,
        agent: None,
        started_at: None,
        pending: VecDeque::new(),
        partial: String::new(),
        bad_in_a_row: 0,
        bad_total: 0,
        caller_turns: 0,
        bot_turns: 0,
        turn_words: 0,
        turn_closed: true,
        spoken_at: None,
        silence_timeout: Duration::ZERO,
        pending_end: None,
        end_sent_at: None,
        after_end: None,
        ended: None,
        close: CLOSE_NORMAL,
        stream_done: false,
        slow_peer: false,
    };
    let mut dialog: Option<Box<dyn Dialog>> = None;
    debug!("relay connected");

    while relay.ended.is_none() {
        if let Some(d) = dialog.as_mut()
            && relay.pending_end.is_none()
            && relay.end_sent_at.is_none()
            && let Some(input) = relay.pending.pop_front()
        {
            if d.is_ended() {
                relay.pending.clear();
                continue;
            }
            relay.run_turn(d.as_mut(), input, &mut stream).await;
            continue;
        }
        let now = Instant::now();
        let silence_at = relay.silence_deadline();
        let end_at = relay.pending_end.as_ref().and(relay.spoken_at);
        let linger_at = relay.end_sent_at.map(|at| at + END_LINGER);
        tokio::select! {
            biased;
            () = force_close.cancelled() => relay.stop(RelayEnd::Shutdown, CLOSE_SHUTDOWN),
            Some(control) = relay.control_rx.recv() => relay.on_control(control).await,
            result = join_writer(&mut relay.writer) => relay.on_writer_end(result),
            frame = stream.next(), if !relay.stream_done => {
                match relay.on_frame(frame) {
                    Frame::Setup(setup) => dialog = relay.start(setup).await,
                    Frame::Input(input) => relay.queue(input),
                    Frame::Interrupt(heard) => relay.queue_front(ConversationInput::Interrupted { heard }),
                    Frame::AgentSilent => relay.on_agent_silent(now),
                    Frame::Closed => relay.peer_closed(),
                    Frame::TooManyErrors => relay.stop(RelayEnd::Malformed, CLOSE_MALFORMED),
                    Frame::Nothing => {}
                }
            }
            () = sleep_until(end_at) => relay.send_end().await,
            () = sleep_until(linger_at) => {
                debug!("Twilio did not close after end; closing");
                let why = relay.after_end.take().unwrap_or(RelayEnd::CallerHungUp);
                relay.stop(why, CLOSE_NORMAL);
            }
            () = sleep_until(silence_at) => {
                let ms = relay.spoken_at.map_or(0, |at| millis(now.saturating_duration_since(at)));
                relay.spoken_at = None;
                relay.queue(ConversationInput::Silence { ms });
            }
            () = tokio::time::sleep_until(setup_deadline), if relay.setup.is_none() => {
                warn!("no setup message in time");
                relay.stop(RelayEnd::SetupTimeout, CLOSE_POLICY);
            }
            () = tokio::time::sleep_until(max_deadline), if relay.end_sent_at.is_none() => {
                warn!("maximum call duration reached");
                relay.end_now(RelayEnd::MaxDuration, EndReason::new(REASON_MAX_DURATION, "Maximum call duration reached")).await;
            }
        }
    }
    relay.finish(dialog, stream).await
}

async fn join_writer(
    writer: &mut Option<JoinHandle<Result<(), WriteError>>>,
) -> Result<(), WriteError> {
    match writer {
        Some(handle) => {
            let result = handle
                .await
                .unwrap_or_else(|e| Err(WriteError::Socket(e.to_string())));
            *writer = None;
            result
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// What the dialog has ready right after a piece of text.
enum Ahead {
    /// Nothing yet (an LLM still generating).
    Pending,
    /// The stream ended.
    Ended,
    /// This event.
    Next(DialogEvent),
}

fn look_ahead(events: &mut BoxStream<'_, DialogEvent>) -> Ahead {
    match events.next().now_or_never() {
        None => Ahead::Pending,
        Some(None) => Ahead::Ended,
        Some(Some(event)) => Ahead::Next(event),
    }
}

impl Relay {
    fn now_ms(&self) -> u64 {
        millis(self.opened.elapsed())
    }

    fn silence_deadline(&self) -> Option<Instant> {
        if self.pending_end.is_some() || self.end_sent_at.is_some() || !self.pending.is_empty() {
            return None;
        }
        self.spoken_at.map(|at| at + self.silence_timeout)
    }

    fn speaking_time(&self, words: usize) -> Duration {
        let per_word = self.state.config().relay_speech_ms_per_word;
        Duration::from_millis(per_word.saturating_mul(words as u64))
    }

    fn queue(&mut self, input: ConversationInput) {
        if self.pending.len() >= MAX_PENDING_INPUTS {
            warn!("caller inputs are piling up; dropping the oldest");
            self.pending.pop_front();
        }
        self.pending.push_back(input);
    }

    fn queue_front(&mut self, input: ConversationInput) {
        self.pending.push_front(input);
        self.pending.truncate(MAX_PENDING_INPUTS);
    }

    fn stop(&mut self, end: RelayEnd, close: (u16, &'static str)) {
        if self.ended.is_none() {
            self.ended = Some(end);
            self.close = close;
        }
    }

    /// Parses one frame and counts malformed ones.
    fn on_frame<E: fmt::Display>(&mut self, frame: Option<Result<Message, E>>) -> Frame {
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(data))) => return self.bad(&FrameError::Binary(data.len())),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Frame::Nothing,
            Some(Ok(Message::Close(frame))) => {
                debug!(?frame, "peer closed the socket");
                return Frame::Closed;
            }
            Some(Err(e)) => {
                warn!(error = %e, "socket read failed");
                return Frame::Closed;
            }
            None => return Frame::Closed,
        };
        if text.len() > self.state.config().max_message_bytes {
            return self.bad(&FrameError::Oversize(text.len()));
        }
        let message = match InboundMessage::parse(text.as_str()) {
            Ok(message) => message,
            Err(e) => return self.bad(&FrameError::Protocol(e)),
        };
        let started = self.setup.is_some();
        let frame = match message {
            InboundMessage::Setup(_) if started => {
                return self.bad(&FrameError::OutOfOrder("a second setup"));
            }
            InboundMessage::Setup(setup) => Frame::Setup(setup),
            _ if !started => return self.bad(&FrameError::OutOfOrder("a message before setup")),
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
                    self.caller_turns += 1;
                    Frame::Input(ConversationInput::UserSaid {
                        text,
                        confidence: None,
                    })
                } else {
                    self.partial = prompt.voice_prompt;
                    Frame::Nothing
                }
            }
            InboundMessage::Dtmf(dtmf) => {
                self.spoken_at = None;
                self.caller_turns += 1;
                Frame::Input(ConversationInput::Dtmf(dtmf.digit.as_char()))
            }
            InboundMessage::Interrupt(interrupt) => {
                self.spoken_at = None;
                Frame::Interrupt(interrupt.utterance_until_interrupt)
            }
            InboundMessage::Error(report) => {
                warn!(description = %report.description, "Twilio reported an error");
                Frame::Nothing
            }
            InboundMessage::Info(info) => {
                debug!(name = %info.name, value = ?info.value, "info");
                let off = info.value.as_ref().and_then(|v| v.as_str()) == Some("off");
                match info.name.as_str() {
                    "agentSpeaking" if off => Frame::AgentSilent,
                    "clientSpeaking" if !off => {
                        self.spoken_at = None;
                        Frame::Nothing
                    }
                    _ => Frame::Nothing,
                }
            }
        };
        self.bad_in_a_row = 0;
        frame
    }

    fn bad(&mut self, error: &FrameError) -> Frame {
        self.bad_in_a_row += 1;
        self.bad_total += 1;
        warn!(error = %error, in_a_row = self.bad_in_a_row, "malformed relay message");
        if self.bad_in_a_row >= self.state.config().max_consecutive_errors {
            Frame::TooManyErrors
        } else {
            Frame::Nothing
        }
    }

    /// `setup`: build the dialog, register the session, greet.
    async fn start(&mut self, setup: Box<Setup>) -> Option<Box<dyn Dialog>> {
        let span = Span::current();
        span.record("call_sid", setup.call_sid.as_str());
        span.record("session_id", setup.session_id.as_str());
        span.record("from", setup.from.masked());
        span.record("agent", self.service.agent());
        let parameters = setup.custom_parameters.clone();
        let call_sid = setup.call_sid.as_str().to_owned();
        let session_id = setup.session_id.as_str().to_owned();
        self.setup = Some(setup);
        let started_at = SystemTime::now();
        self.started_at = Some(started_at);
        let dialog = match self.service.dialogs.dialog(&parameters) {
            Ok(dialog) => dialog,
            Err(reason) => {
                error!(%reason, "cannot serve this session");
                self.end_now(
                    RelayEnd::Refused(reason.clone()),
                    EndReason::new(REASON_AGENT_UNAVAILABLE, reason),
                )
                .await;
                return None;
            }
        };
        self.agent = Some(self.service.agent());
        self.silence_timeout = Duration::from_millis(dialog.silence_timeout_ms());
        self.registration = Some(self.state.registry().register(
            CallEntry {
                call_sid: call_sid.clone(),
                stream_sid: session_id,
                agent: self.service.agent().to_owned(),
                started_at,
            },
            self.control_tx.clone(),
        ));
        self.active = Some(self.state.bridge_metrics().call_started(Transport::Relay));
        info!(
            custom_parameters = parameters.len(),
            "relay session started"
        );
        self.queue_front(ConversationInput::Started {
            call_sid,
            parameters,
        });
        Some(dialog)
    }

    /// Runs one dialog turn: streams its events to Twilio while reading frames; an
    /// `interrupt` cancels it.
    async fn run_turn<R, E>(
        &mut self,
        dialog: &mut dyn Dialog,
        input: ConversationInput,
        stream: &mut R,
    ) where
        R: Stream<Item = Result<Message, E>> + Unpin + Send,
        E: fmt::Display,
    {
        let now_ms = self.now_ms();
        let force_close = self.state.force_close_token();
        let mut events = dialog.handle(now_ms, input);
        let outcome = loop {
            tokio::select! {
                biased;
                () = force_close.cancelled() => {
                    self.stop(RelayEnd::Shutdown, CLOSE_SHUTDOWN);
                    break TurnEnd::Stop;
                }
                Some(control) = self.control_rx.recv() => {
                    self.on_control(control).await;
                    if self.ended.is_some() || self.end_sent_at.is_some() {
                        break TurnEnd::Stop;
                    }
                }
                result = join_writer(&mut self.writer) => {
                    self.on_writer_end(result);
                    break TurnEnd::Stop;
                }
                frame = stream.next(), if !self.stream_done => match self.on_frame(frame) {
                    Frame::Interrupt(heard) => break TurnEnd::Interrupted(heard),
                    Frame::Input(input) => self.queue(input),
                    Frame::Closed => {
                        self.peer_closed();
                        break TurnEnd::Stop;
                    }
                    Frame::TooManyErrors => {
                        self.stop(RelayEnd::Malformed, CLOSE_MALFORMED);
                        break TurnEnd::Stop;
                    }
                    Frame::AgentSilent => self.on_agent_silent(Instant::now()),
                    Frame::Setup(_) | Frame::Nothing => {}
                },
                event = events.next() => match event {
                    Some(event) => {
                        let mut next = Some(event);
                        while let Some(event) = next.take() {
                            next = self.on_event(event, &mut events).await;
                        }
                        if self.ended.is_some() {
                            break TurnEnd::Stop;
                        }
                    }
                    None => break TurnEnd::Done,
                },
            }
        };
        // Dropping the stream cancels whatever the dialog was still producing.
        drop(events);
        match outcome {
            TurnEnd::Interrupted(heard) => {
                debug!(heard = %heard, "bot turn interrupted");
                self.turn_closed = true;
                self.queue_front(ConversationInput::Interrupted { heard });
            }
            TurnEnd::Done => {
                if !self.turn_closed {
                    // The dialog stopped without a TurnEnd: close the talk cycle anyway.
                    self.send_text(String::new(), true, true).await;
                    self.turn_spoken();
                }
            }
            TurnEnd::Stop => {}
        }
    }

    /// Handles one dialog event; returns an event it read ahead and did not use.
    async fn on_event(
        &mut self,
        event: DialogEvent,
        events: &mut BoxStream<'_, DialogEvent>,
    ) -> Option<DialogEvent> {
        match event {
            DialogEvent::Text {
                text,
                interruptible,
            } => {
                if self.turn_closed {
                    self.turn_closed = false;
                    self.turn_words = 0;
                    self.spoken_at = None;
                }
                self.turn_words += word_count(&text);
                // A piece directly followed by its TurnEnd goes out as one `last` token.
                match look_ahead(events) {
                    Ahead::Next(DialogEvent::TurnEnd { .. }) => {
                        self.send_text(text, true, interruptible).await;
                        self.turn_spoken();
                        None
                    }
                    Ahead::Next(next) => {
                        self.send_text(text, false, interruptible).await;
                        Some(next)
                    }
                    Ahead::Pending | Ahead::Ended => {
                        self.send_text(text, false, interruptible).await;
                        None
                    }
                }
            }
            DialogEvent::TurnEnd { .. } => {
                if !self.turn_closed {
                    self.send_text(String::new(), true, true).await;
                    self.turn_spoken();
                }
                None
            }
            DialogEvent::End(reason) => {
                self.pending_end = Some(reason);
                if self.spoken_at.is_none() {
                    self.spoken_at = Some(Instant::now());
                }
                None
            }
            DialogEvent::SendDigits(digits) => {
                match DigitSequence::new(digits) {
                    Ok(digits) => self.send(&OutboundMessage::SendDigits(digits)).await,
                    Err(e) => warn!(error = %e, "dialog asked for invalid digits; not sent"),
                }
                None
            }
            DialogEvent::Language { tts, transcription } => {
                match Language::new(tts, transcription) {
                    Ok(language) => self.send(&OutboundMessage::Language(language)).await,
                    Err(e) => warn!(error = %e, "dialog asked for an invalid language; not sent"),
                }
                None
            }
        }
    }

    /// The turn's last token is out: from now on Twilio speaks it.
    fn turn_spoken(&mut self) {
        self.turn_closed = true;
        self.bot_turns += 1;
        self.spoken_at = Some(Instant::now() + self.speaking_time(self.turn_words));
    }

    /// Twilio says it stopped speaking (`info agentSpeaking off`): the turn has played.
    fn on_agent_silent(&mut self, now: Instant) {
        if self.turn_closed && self.spoken_at.is_some_and(|at| at > now) {
            self.spoken_at = Some(now);
        }
    }

    async fn send_text(&mut self, token: String, last: bool, interruptible: bool) {
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
        self.send(&OutboundMessage::Text(text)).await;
    }

    /// Sends the dialog's `end` once its closing line has been spoken.
    async fn send_end(&mut self) {
        if let Some(reason) = self.pending_end.take() {
            self.end_now(RelayEnd::Agent(reason.clone()), reason).await;
        }
    }

    /// Sends `end` with `reason` now; `why` is recorded once Twilio closes.
    async fn end_now(&mut self, why: RelayEnd, reason: EndReason) {
        if self.end_sent_at.is_some() {
            return;
        }
        let end = End::with_handoff(&HandoffData::new(reason.reason_code, reason.reason));
        self.pending_end = None;
        self.spoken_at = None;
        self.send(&OutboundMessage::End(end)).await;
        self.end_sent_at = Some(Instant::now());
        self.after_end = Some(why);
    }

    async fn on_control(&mut self, control: Control) {
        match control {
            Control::Shutdown => self.stop(RelayEnd::Shutdown, CLOSE_SHUTDOWN),
            Control::Hangup { reason } => {
                info!(%reason, "hangup requested");
                self.end_now(
                    RelayEnd::Hangup(reason.clone()),
                    EndReason::new(REASON_HANGUP, reason),
                )
                .await;
            }
        }
    }

    fn on_writer_end(&mut self, result: Result<(), WriteError>) {
        match result {
            Err(WriteError::Timeout(timeout)) => {
                warn!(?timeout, "write to Twilio timed out: peer is not reading");
                self.slow_peer = true;
                self.stop(RelayEnd::SlowPeer, CLOSE_POLICY);
            }
            Err(WriteError::Socket(e)) => {
                warn!(error = %e, "socket write failed");
                self.peer_closed();
            }
            Ok(()) => self.peer_closed(),
        }
    }

    fn peer_closed(&mut self) {
        self.stream_done = true;
        // After our `end`, Twilio closing is the normal finish.
        let why = self.after_end.take().unwrap_or(RelayEnd::CallerHungUp);
        self.stop(why, CLOSE_NORMAL);
    }

    async fn send(&mut self, message: &OutboundMessage) {
        if self.writer.is_none() || self.slow_peer {
            return;
        }
        let text = match message.to_json() {
            Ok(text) => text,
            Err(e) => {
                error!(error = %e, "refusing to send an invalid relay message");
                return;
            }
        };
        let message = match self.out.try_send(Message::Text(text.into())) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return,
            Err(mpsc::error::TrySendError::Full(message)) => message,
        };
        let timeout = self.state.config().send_timeout();
        if tokio::time::timeout(timeout, self.out.send(message))
            .await
            .is_err()
        {
            warn!(?timeout, "send queue stayed full: peer is not reading");
            self.slow_peer = true;
            self.stop(RelayEnd::SlowPeer, CLOSE_POLICY);
        }
    }
}

impl Relay {
    /// Finishes the dialog (a hang-up if it had not ended), closes the socket, unregisters and
    /// hands the record to the sink.
    async fn finish<R, E>(mut self, dialog: Option<Box<dyn Dialog>>, mut stream: R) -> RelayRecord
    where
        R: Stream<Item = Result<Message, E>> + Unpin + Send,
        E: fmt::Display,
    {
        let end = self.ended.take().unwrap_or(RelayEnd::CallerHungUp);
        let outcome = dialog.map(|mut dialog| {
            if !dialog.is_ended() {
                let now_ms = self.now_ms();
                // Nothing more can be said; only the outcome matters.
                drop(dialog.handle(now_ms, ConversationInput::Hangup));
            }
            dialog.outcome()
        });
        let close_sent = self.close_socket().await;
        if close_sent && !self.stream_done {
            // RFC 6455 7.1.1: read until the peer's close reply so the TCP close is clean.
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE_GRACE, async {
                while let Some(Ok(_)) = stream.next().await {}
            })
            .await;
        }
        let duration = self.opened.elapsed();
        info!(
            end = ?end,
            payload = outcome
                .as_ref()
                .and_then(|o| o.payload.as_ref())
                .map(voxbridge_brain::outcome::Payload::kind),
            transcript_lines = outcome.as_ref().map_or(0, |o| o.transcript.len()),
            caller_turns = self.caller_turns,
            bot_turns = self.bot_turns,
            bad_messages = self.bad_total,
            duration_ms = millis(duration),
            "relay session ended"
        );
        // Unregister before the sink runs, so ended sessions are never listed as live.
        drop(self.registration.take());
        drop(self.active.take());
        self.state.bridge_metrics().relay_ended(&end);
        let setup = self.setup.take();
        let record = RelayRecord {
            call_sid: setup
                .as_ref()
                .map(|s| s.call_sid.as_str().to_owned())
                .unwrap_or_default(),
            session_id: setup
                .as_ref()
                .map(|s| s.session_id.as_str().to_owned())
                .unwrap_or_default(),
            from: setup
                .as_ref()
                .map(|s| s.from.to_string())
                .unwrap_or_default(),
            to: setup.as_ref().map(|s| s.to.to_string()).unwrap_or_default(),
            direction: setup
                .as_ref()
                .and_then(|s| s.direction.as_ref())
                .map(|d| d.as_str().to_owned()),
            agent: self.agent.map(str::to_owned),
            outcome,
            end,
            started_at: self.started_at,
            opened_at: self.opened_at,
            duration,
            bad_messages: self.bad_total,
            caller_turns: self.caller_turns,
            bot_turns: self.bot_turns,
        };
        self.service.sink.relay_ended(&record);
        record
    }

    /// Sends the close frame and waits for the writer; whether the close went out.
    async fn close_socket(&mut self) -> bool {
        let Some(writer) = self.writer.take() else {
            return false;
        };
        if self.slow_peer {
            // The writer is stuck on a peer that does not read: do not wait for it.
            writer.abort();
            return false;
        }
        let out = std::mem::replace(&mut self.out, mpsc::channel(1).0);
        close_writer(out, writer, self.close, self.state.config().send_timeout()).await
    }
}
