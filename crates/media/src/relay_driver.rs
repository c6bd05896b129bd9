//! One ConversationRelay session's shell: owns the sans-IO [`RelaySession`] and the session's
//! [`Dialog`], and `select!`s over socket frames, the running turn's dialog stream, registry
//! control, the session's next timeout and the shutdown token. Generic over `Sink`/`Stream`
//! of [`Message`]s so tests and benches can drive it without a socket. See [`crate::relay`]
//! for the protocol decisions and [`voxbridge_session::relay`] for the session.
//!
//! The dialog's answer stream borrows the dialog, so a turn runs in its own loop
//! ([`Shell::run_turn`]) that waits on the same events plus the stream; when the session
//! cancels the turn (an `interrupt`, the end) the stream is dropped at once.
//!
//! Outbound frames are written from the shell's own task through the same bounded [`Outbox`]
//! as `/media`'s driver: once the socket has taken none of our frames for `send_timeout`, the
//! session ends as a slow peer (close 1008). While the outbox is full the shell takes no output
//! from the session and does not poll the dialog, but keeps reading the socket. A peer's
//! close frame is answered (the WebSocket layer echoes its code), as on `/media`.

use std::fmt;
use std::future::poll_fn;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use axum::extract::ws::{CloseFrame, Message};
use futures::stream::BoxStream;
use futures::{FutureExt, Sink, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, debug, error, field, info, info_span, warn};
use voxbridge_brain::conversation::ConversationInput;
use voxbridge_brain::dialog::{Dialog, DialogEvent as AgentEvent};
use voxbridge_brain::outcome::Payload;
use voxbridge_session::relay::{
    DialogEvent, DialogRequest, Handoff, RelayConfig, RelayInput, RelayOutput, RelaySession,
    RelaySummary,
};

use crate::metrics::{ActiveCall, Transport};
use crate::outbox::{CLOSE_HANDSHAKE_GRACE, CONTROL_QUEUE, Outbox, WriteError};
use crate::registry::{CallEntry, Control, Registration};
use crate::relay::{RelayEnd, RelayRecord, RelayService};
use crate::socket::{SocketEnd, message_or_end};
use crate::{MediaConfig, MediaState, ReadError};

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The session's settings from the `[media]` config.
fn relay_config(config: &MediaConfig) -> RelayConfig {
    RelayConfig {
        start_timeout: config.session.start_timeout,
        max_call_duration: config.session.max_call_duration,
        max_consecutive_errors: config.session.max_consecutive_errors,
        max_message_bytes: config.max_message_bytes,
        speech_per_word: config.relay_speech_per_word,
        ..RelayConfig::default()
    }
}

/// What the session asks of the shell next.
enum Step {
    /// Nothing until this instant (or the next event).
    Wait(Instant),
    /// `send_queue_frames` wait for the socket: no more output until it takes some.
    Full,
    /// Build the dialog from `setup`.
    Setup,
    /// Run a dialog turn.
    Turn(u64, ConversationInput),
    /// Tell the dialog the session is over.
    Hangup(u64),
    /// Drop the running turn's stream.
    CancelTurn,
    /// Close the socket; the session is over.
    Close(u16, &'static str),
}

/// One thing that happened while the shell waited.
enum Event<E> {
    ForceClose,
    Control(Control),
    Written(Result<(), WriteError>),
    Frame(Option<Result<Message, E>>),
    Dialog(Option<AgentEvent>),
    Wake,
}

/// The reading side of the connection and the other things the shell waits on.
struct Io<R> {
    stream: R,
    stream_done: bool,
    /// The peer sent its close frame first: answer it, send no other.
    peer_closed: bool,
    control_rx: mpsc::Receiver<Control>,
    force_close: CancellationToken,
    shutdown_fed: bool,
}

struct Shell<W> {
    state: MediaState,
    service: RelayService,
    session: RelaySession,
    outbox: Outbox<W>,
    control_tx: mpsc::Sender<Control>,
    registration: Option<Registration>,
    /// Counts the session in `voxbridge_calls_active` from `setup` to teardown.
    active: Option<ActiveCall>,
    agent: Option<&'static str>,
    started_at: Option<SystemTime>,
    /// The session's record, once it ended.
    summary: Option<RelaySummary>,
    /// The peer stopped reading: do not wait for it to take the close frame.
    slow_peer: bool,
    /// When the caller's last prompt (or key press) reached the dialog, until its first `text`
    /// token is queued (`voxbridge_relay_prompt_first_text_seconds`).
    prompt_at: Option<std::time::Instant>,
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
    E: ReadError,
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

async fn run<W, R, E>(state: MediaState, service: RelayService, sink: W, stream: R) -> RelayRecord
where
    W: Sink<Message> + Unpin + Send,
    W::Error: fmt::Display,
    R: Stream<Item = Result<Message, E>> + Unpin + Send,
    E: ReadError,
{
    let opened = Instant::now();
    let opened_at = SystemTime::now();
    let config = state.config();
    let outbox = Outbox::new(sink, config.send_queue_frames, config.send_timeout);
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let mut io = Io {
        stream,
        stream_done: false,
        peer_closed: false,
        control_rx,
        force_close: state.force_close_token(),
        shutdown_fed: false,
    };
    let mut shell = Shell {
        session: RelaySession::new(relay_config(config), now()),
        state,
        service,
        outbox,
        control_tx,
        registration: None,
        active: None,
        agent: None,
        started_at: None,
        summary: None,
        slow_peer: false,
        prompt_at: None,
    };
    let mut dialog: Option<Box<dyn Dialog>> = None;
    debug!("relay connected");

    let mut next = None;
    let (code, reason) = loop {
        let step = match next.take() {
            Some(step) => step,
            None => shell.drain(),
        };
        match step {
            Step::Close(code, reason) => break (code, reason),
            Step::Setup => dialog = shell.start(),
            Step::Turn(at_ms, input) => match dialog.as_mut() {
                Some(d) if !d.is_ended() => {
                    next = shell.run_turn(&mut io, d.handle(at_ms, input)).await;
                }
                _ => shell.session.handle_input(now(), RelayInput::DialogEnded),
            },
            Step::Hangup(at_ms) => {
                if let Some(d) = dialog.as_mut()
                    && !d.is_ended()
                {
                    // Nothing more can be said; only the result matters.
                    drop(d.handle(at_ms, ConversationInput::Hangup));
                }
            }
            Step::CancelTurn => {}
            Step::Wait(at) => {
                shell.wait(&mut io, Some(at), None).await;
            }
            Step::Full => {
                shell.wait(&mut io, None, None).await;
            }
        }
    };
    shell
        .finish(code, reason, dialog, io, opened, opened_at)
        .await
}

async fn next_dialog_event(events: Option<&mut BoxStream<'_, AgentEvent>>) -> Option<AgentEvent> {
    match events {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}

impl<W> Shell<W>
where
    W: Sink<Message> + Unpin,
    W::Error: fmt::Display,
{
    /// Drains the session until it asks for something only the caller can do, or until
    /// `send_queue_frames` wait for the socket (once the session has ended, its last outputs
    /// are taken regardless).
    fn drain(&mut self) -> Step {
        loop {
            if self.outbox.is_full() && !self.session.is_ended() {
                return Step::Full;
            }
            match self.session.poll_output() {
                RelayOutput::Send(text) => self.send(text),
                RelayOutput::Ended(summary) => self.summary = Some(summary),
                RelayOutput::SetupReceived => return Step::Setup,
                RelayOutput::Dialog {
                    at_ms,
                    request: DialogRequest::Hangup,
                } => return Step::Hangup(at_ms),
                RelayOutput::Dialog { at_ms, request } => {
                    self.prompt_at = matches!(
                        request,
                        DialogRequest::UserSaid { .. } | DialogRequest::Dtmf(_)
                    )
                    .then(std::time::Instant::now);
                    return Step::Turn(at_ms, conversation_input(request));
                }
                RelayOutput::CancelTurn => {
                    self.prompt_at = None;
                    return Step::CancelTurn;
                }
                RelayOutput::Close { code, reason } => return Step::Close(code, reason),
                RelayOutput::Timeout(at) => return Step::Wait(Instant::from_std(at)),
            }
        }
    }

    /// Runs one dialog turn: feeds its events to the session while handling everything else;
    /// returns when the session cancels it (`None`) or when its stream has ended, with the
    /// step the session asked for next.
    async fn run_turn<R, E>(
        &mut self,
        io: &mut Io<R>,
        mut events: BoxStream<'_, AgentEvent>,
    ) -> Option<Step>
    where
        R: Stream<Item = Result<Message, E>> + Unpin + Send,
        E: ReadError,
    {
        let mut finished = false;
        loop {
            match self.drain() {
                // Dropping the stream cancels whatever the dialog was still producing.
                Step::CancelTurn => return None,
                Step::Wait(at) if !finished => {
                    finished = self.wait(io, Some(at), Some(&mut events)).await;
                }
                // The dialog is not polled while its output cannot go out.
                Step::Full if !finished => {
                    self.wait(io, None, None).await;
                }
                step => return Some(step),
            }
        }
    }

    /// Writes what the session queued, then waits for the next thing to happen and feeds it
    /// to the session (see [`Shell::next_event`]); whether the turn's stream has ended.
    /// `session_wake` is `None` while the send queue is full.
    async fn wait<R, E>(
        &mut self,
        io: &mut Io<R>,
        session_wake: Option<Instant>,
        mut events: Option<&mut BoxStream<'_, AgentEvent>>,
    ) -> bool
    where
        R: Stream<Item = Result<Message, E>> + Unpin + Send,
        E: ReadError,
    {
        self.write_now().await;
        if session_wake.is_none() && !self.outbox.is_full() {
            // The socket took the full queue at once: take more output.
            return false;
        }
        let event = self
            .next_event(io, session_wake, events.as_deref_mut())
            .await;
        self.on_event(io, event, events)
    }

    /// Waits for the next thing to happen: shutdown, control, held-up writes (room in a full
    /// queue), a frame, the running turn's next event, the session's timeout.
    async fn next_event<R, E>(
        &mut self,
        io: &mut Io<R>,
        session_wake: Option<Instant>,
        events: Option<&mut BoxStream<'_, AgentEvent>>,
    ) -> Event<E>
    where
        R: Stream<Item = Result<Message, E>> + Unpin + Send,
    {
        // Frames held up by the socket: wake up in time to give up on a peer that stopped
        // reading. (A full queue is always held up.)
        let stall_deadline = self.outbox.stall_deadline().filter(|_| !self.slow_peer);
        let blocked = session_wake.is_none();
        let wake_at = [session_wake, stall_deadline]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + self.state.config().send_timeout);
        tokio::select! {
            biased;
            () = io.force_close.cancelled(), if !io.shutdown_fed => Event::ForceClose,
            Some(control) = io.control_rx.recv() => Event::Control(control),
            written = poll_fn(|cx| if blocked {
                self.outbox.poll_room(cx)
            } else {
                self.outbox.poll_write(cx)
            }), if stall_deadline.is_some() => {
                Event::Written(written)
            }
            frame = io.stream.next(), if !io.stream_done => Event::Frame(frame),
            event = next_dialog_event(events) => Event::Dialog(event),
            () = tokio::time::sleep_until(wake_at) => Event::Wake,
        }
    }

    /// Feeds what happened to the session; whether the turn's stream has ended.
    fn on_event<R, E: ReadError>(
        &mut self,
        io: &mut Io<R>,
        event: Event<E>,
        events: Option<&mut BoxStream<'_, AgentEvent>>,
    ) -> bool {
        match event {
            Event::ForceClose => {
                io.shutdown_fed = true;
                info!("drain deadline passed: ending session");
                self.session.handle_input(now(), RelayInput::Shutdown);
            }
            Event::Control(Control::Shutdown) => {
                self.session.handle_input(now(), RelayInput::Shutdown);
            }
            Event::Control(Control::Hangup { reason }) => {
                info!(%reason, "hangup requested");
                self.session
                    .handle_input(now(), RelayInput::Hangup { reason: &reason });
            }
            Event::Written(written) => {
                if let Err(e) = written {
                    self.on_write_error(&e);
                }
            }
            Event::Frame(frame) => self.on_frame(io, frame),
            Event::Dialog(Some(event)) => {
                if let Some(events) = events {
                    return self.on_dialog_event(event, events);
                }
            }
            Event::Dialog(None) => {
                self.session.handle_input(now(), RelayInput::TurnFinished);
                return true;
            }
            Event::Wake => {
                // Read the deadline again: frames the socket took since it was set move it.
                let stalled_out = self
                    .outbox
                    .stall_deadline()
                    .is_some_and(|at| at <= Instant::now());
                if stalled_out && !self.slow_peer {
                    self.on_write_timeout();
                } else {
                    self.session.handle_timeout(now());
                }
            }
        }
        false
    }

    fn on_frame<R, E: ReadError>(&mut self, io: &mut Io<R>, read: Option<Result<Message, E>>) {
        let input_now = now();
        let message = match message_or_end(read) {
            Ok(message) => message,
            Err(end) => {
                io.stream_done = true;
                io.peer_closed = end == SocketEnd::PeerClosed;
                let input = match end {
                    SocketEnd::TooBig(len) => RelayInput::TooBig { len },
                    SocketEnd::PeerClosed | SocketEnd::Gone => RelayInput::SocketClosed,
                };
                self.session.handle_input(input_now, input);
                return;
            }
        };
        let input = match &message {
            Message::Text(text) => RelayInput::Text(text.as_str()),
            Message::Binary(data) => RelayInput::Binary { len: data.len() },
            // The WebSocket layer answers pings itself; neither is a Twilio message.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return,
        };
        self.session.handle_input(input_now, input);
    }

    /// Feeds one dialog event; after a piece of text, also what the dialog has ready right
    /// behind it (so a piece directly followed by its turn end goes out as one `last` token).
    /// Whether the stream has ended.
    fn on_dialog_event(
        &mut self,
        event: AgentEvent,
        events: &mut BoxStream<'_, AgentEvent>,
    ) -> bool {
        let mut event = event;
        loop {
            let text = matches!(event, AgentEvent::Text { .. });
            self.session
                .handle_input(now(), RelayInput::Dialog(session_event(event)));
            if !text {
                return false;
            }
            match events.next().now_or_never() {
                None => {
                    self.session.handle_input(now(), RelayInput::DialogWaiting);
                    return false;
                }
                Some(None) => {
                    self.session.handle_input(now(), RelayInput::TurnFinished);
                    return true;
                }
                Some(Some(next)) => event = next,
            }
        }
    }

    /// `setup`: build the dialog, register the session; the session greets.
    fn start(&mut self) -> Option<Box<dyn Dialog>> {
        let setup = self.session.setup()?;
        let span = Span::current();
        span.record("call_sid", setup.call_sid.as_str());
        span.record("session_id", setup.session_id.as_str());
        span.record("from", setup.from.masked());
        span.record("agent", self.service.agent());
        let parameters = setup.custom_parameters.clone();
        let call_sid = setup.call_sid.as_str().to_owned();
        let session_id = setup.session_id.as_str().to_owned();
        let started_at = SystemTime::now();
        self.started_at = Some(started_at);
        let dialog = match self.service.dialogs.dialog(&parameters) {
            Ok(dialog) => dialog,
            Err(reason) => {
                error!(%reason, "cannot serve this session");
                self.session
                    .handle_input(now(), RelayInput::DialogRefused { reason: &reason });
                return None;
            }
        };
        self.agent = Some(self.service.agent());
        self.registration = Some(self.state.registry().register(
            CallEntry {
                call_sid,
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
        self.session.handle_input(
            now(),
            RelayInput::DialogReady {
                silence_timeout: Duration::from_millis(dialog.silence_timeout_ms()),
            },
        );
        Some(dialog)
    }

    fn send(&mut self, text: String) {
        if self.outbox.has_failed() || self.slow_peer {
            return;
        }
        // The session writes `type` first (an internally tagged enum).
        if text.starts_with(r#"{"type":"text""#)
            && let Some(prompt_at) = self.prompt_at.take()
        {
            self.state
                .bridge_metrics()
                .relay_first_text(prompt_at.elapsed());
        }
        self.outbox.push(Message::Text(text.into()));
    }

    /// Writes what the session queued, without waiting: a socket that does not take it all
    /// leaves the rest for the select loop (see `stall_deadline`).
    async fn write_now(&mut self) {
        let written = poll_fn(|cx| Poll::Ready(self.outbox.poll_write(cx))).await;
        if let Poll::Ready(Err(e)) = written {
            self.on_write_error(&e);
        }
    }

    fn on_write_timeout(&mut self) {
        let timeout = self.state.config().send_timeout;
        warn!(?timeout, "write to Twilio timed out: peer is not reading");
        self.slow_peer = true;
        self.session.handle_input(now(), RelayInput::SlowPeer);
    }

    fn on_write_error(&mut self, error: &WriteError) {
        warn!(%error, "socket write failed");
        self.session.handle_input(now(), RelayInput::SocketClosed);
    }

    /// Queues the close frame, waits for it to go out and closes the sink, all within one
    /// `send_timeout`. Whether the close frame went out.
    async fn send_close(&mut self, code: u16, reason: &'static str) -> bool {
        if self.outbox.has_failed() {
            return false;
        }
        self.outbox.push(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })));
        let timeout = self.state.config().send_timeout;
        let closed = tokio::time::timeout(timeout, async {
            self.outbox.write_by_deadline().await?;
            self.outbox.close().await;
            Ok(())
        });
        match closed.await.unwrap_or(Err(WriteError::Timeout(timeout))) {
            Ok(()) => true,
            Err(WriteError::Timeout(_)) => {
                warn!("close did not flush within the send timeout");
                false
            }
            Err(e) => {
                debug!(error = %e, "write failed while closing");
                false
            }
        }
    }

    /// Closes the socket, unregisters and hands the record to the sink.
    async fn finish<R, E>(
        mut self,
        code: u16,
        reason: &'static str,
        dialog: Option<Box<dyn Dialog>>,
        mut io: Io<R>,
        opened: Instant,
        opened_at: SystemTime,
    ) -> RelayRecord
    where
        R: Stream<Item = Result<Message, E>> + Unpin + Send,
    {
        let summary = self
            .summary
            .take()
            .unwrap_or_else(|| self.session.summary().clone());
        let end = summary.end.unwrap_or(RelayEnd::CallerHungUp);
        // The session has already told the dialog (`Hangup`); only the outcome matters.
        let outcome = dialog.map(|dialog| dialog.outcome());
        if io.peer_closed {
            // RFC 6455 5.5.1: answer the peer's close frame. The WebSocket layer has queued
            // its echo (same code) and refuses any other frame now: closing flushes it.
            let timeout = self.state.config().send_timeout;
            if tokio::time::timeout(timeout, self.outbox.close_unsent())
                .await
                .is_err()
            {
                warn!("close reply did not flush within the send timeout");
            }
        } else {
            // A peer that does not read would only hold the close frame up: do not wait.
            let close_sent = !self.slow_peer && self.send_close(code, reason).await;
            if close_sent && !io.stream_done {
                // RFC 6455 7.1.1: read until the peer's close reply so the TCP close is clean.
                let _ = tokio::time::timeout(CLOSE_HANDSHAKE_GRACE, async {
                    while let Some(Ok(_)) = io.stream.next().await {}
                })
                .await;
            }
        }
        let duration = opened.elapsed();
        info!(
            end = ?end,
            payload = outcome
                .as_ref()
                .and_then(|o| o.payload.as_ref())
                .map(Payload::kind),
            transcript_lines = outcome.as_ref().map_or(0, |o| o.transcript.len()),
            caller_turns = summary.caller_turns,
            bot_turns = summary.bot_turns,
            bad_messages = summary.bad_messages,
            duration_ms = millis(duration),
            "relay session ended"
        );
        // Unregister before the sink runs, so ended sessions are never listed as live.
        drop(self.registration.take());
        drop(self.active.take());
        self.state.bridge_metrics().relay_ended(&end);
        let record = RelayRecord {
            call_sid: summary.call_sid,
            session_id: summary.session_id,
            from: summary.from,
            to: summary.to,
            direction: summary.direction,
            agent: self.agent.map(str::to_owned),
            outcome,
            end,
            started_at: self.started_at,
            opened_at,
            duration,
            bad_messages: summary.bad_messages,
            caller_turns: summary.caller_turns,
            bot_turns: summary.bot_turns,
        };
        self.service.sink.relay_ended(&record);
        record
    }
}

/// What the dialog gets for a session request.
fn conversation_input(request: DialogRequest) -> ConversationInput {
    match request {
        DialogRequest::Start {
            call_sid,
            parameters,
        } => ConversationInput::Started {
            call_sid,
            parameters,
        },
        DialogRequest::UserSaid { text } => ConversationInput::UserSaid {
            text,
            confidence: None,
        },
        DialogRequest::Dtmf(digit) => ConversationInput::Dtmf(digit),
        DialogRequest::Interrupted { heard } => ConversationInput::Interrupted { heard },
        DialogRequest::Silence { ms } => ConversationInput::Silence { ms },
        DialogRequest::Hangup => ConversationInput::Hangup,
    }
}

/// A dialog event for the session.
fn session_event(event: AgentEvent) -> DialogEvent {
    match event {
        AgentEvent::Text {
            text,
            interruptible,
        } => DialogEvent::Text {
            text,
            interruptible,
        },
        AgentEvent::TurnEnd { last } => DialogEvent::TurnEnd { last },
        AgentEvent::End(reason) => {
            DialogEvent::End(Handoff::new(reason.reason_code, reason.reason))
        }
        AgentEvent::SendDigits(digits) => DialogEvent::SendDigits(digits),
        AgentEvent::Language { tts, transcription } => DialogEvent::Language { tts, transcription },
    }
}
