//! One call's driver: owns the sans-IO [`Session`], and `select!`s over socket frames, brain
//! commands, registry control, the session's next timeout and the shutdown token. Generic over
//! `Sink`/`Stream` of [`Message`]s so tests can drive it without a socket.
//!
//! Outbound frames are written from the driver's own task through a bounded [`Outbox`]. A peer
//! that stops reading fills the socket (its kernel send buffer is bounded, see
//! [`crate::SEND_BUFFER_BYTES`]); once the socket has taken none of our frames for
//! `send_timeout`, the call ends as [`Input::SlowPeer`]: memory per call stays bounded. While
//! the outbox is full the driver takes no output from the session but keeps reading: caller
//! audio, marks and `stop` are still handled, so the call ends for what the caller did, or as
//! a slow peer, never as an idle timeout of a caller that kept talking.
//!
//! Close handshake (RFC 6455 5.5.1): when we end the call we send a close frame and wait
//! briefly for the peer's; when the peer closes first, its close frame is answered (the
//! WebSocket layer echoes its code) and the connection is closed.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::future::poll_fn;
use std::task::Poll;

use axum::extract::ws::{CloseFrame, Message};
use futures::{Sink, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, Span, debug, error, field, info, info_span, warn};
use voxbridge_brain::{
    AGENT_PARAMETER, BrainCommand, BrainError, BrainHandle, FromBrain, VoiceCallReport, spawn_brain,
};
use voxbridge_session::{
    BrainEvent, CallInfo, CallSummary, EndReason, Input, Output, Session, close,
};

use crate::metrics::{ActiveCall, Transport};
use crate::outbox::{CLOSE_HANDSHAKE_GRACE, CONTROL_QUEUE, Outbox, WriteError};
use crate::registry::{CallEntry, Control, Registration};
use crate::socket::{SocketEnd, message_or_end};
use crate::{CallRecord, MediaState, ReadError};

/// Bot audio queued in the session (not yet sent to Twilio) above which the driver stops
/// taking brain commands, so a faster-than-real-time brain waits instead of buffering.
const BRAIN_HIGH_WATER: Duration = Duration::from_secs(1);
/// How long a stopped brain gets to return before its task is aborted.
const BRAIN_GRACE: Duration = Duration::from_secs(1);

/// What the shell itself decided about the call end, overriding the session's reason.
#[derive(Debug)]
struct ShellEnd {
    reason: EndReason,
    close: (u16, &'static str),
}

struct Call<W> {
    state: MediaState,
    session: Session,
    outbox: Outbox<W>,
    brain: Option<BrainHandle>,
    registration: Option<Registration>,
    /// Counts the call in `voxbridge_calls_active` from `start` to teardown.
    active: Option<ActiveCall>,
    control_tx: mpsc::Sender<Control>,
    agent: Option<String>,
    started_at: Option<SystemTime>,
    shell_end: Option<ShellEnd>,
    /// The brain's report, once its task has returned.
    report: Option<VoiceCallReport>,
    /// The peer stopped reading: do not wait for it to take the close frame.
    slow_peer: bool,
    /// The peer sent its close frame first: answer it, send no other.
    peer_closed: bool,
    /// Events the brain did not take (its queue was full).
    dropped_events: u64,
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Drives one Media Streams connection to its end and returns the call summary (also logged
/// and handed to the state's [`crate::CallSink`]). `sink` and `stream` are the two halves of
/// the socket. Never panics on peer input; errors are logged in the call's span.
pub async fn drive_call<W, R, E>(state: MediaState, sink: W, stream: R) -> CallSummary
where
    W: Sink<Message> + Unpin + Send,
    W::Error: fmt::Display,
    R: Stream<Item = Result<Message, E>> + Unpin + Send,
    E: ReadError,
{
    let span = info_span!(
        "call",
        call_sid = field::Empty,
        stream_sid = field::Empty,
        agent = field::Empty
    );
    run(state, sink, stream).instrument(span).await
}

#[allow(clippy::too_many_lines)] // one select loop reads best in one place
async fn run<W, R, E>(state: MediaState, sink: W, mut stream: R) -> CallSummary
where
    W: Sink<Message> + Unpin + Send,
    W::Error: fmt::Display,
    R: Stream<Item = Result<Message, E>> + Unpin + Send,
    E: ReadError,
{
    let opened = Instant::now();
    let config = state.config();
    let send_timeout = config.send_timeout;
    let max_message = config.max_message_bytes;
    let outbox = Outbox::new(sink, config.send_queue_frames, send_timeout);
    let (control_tx, mut control_rx) = mpsc::channel(CONTROL_QUEUE);
    let force_close = state.force_close_token();

    let mut call = Call {
        session: Session::new(state.config().session.clone(), now()),
        state,
        outbox,
        brain: None,
        registration: None,
        active: None,
        control_tx,
        agent: None,
        started_at: None,
        shell_end: None,
        report: None,
        slow_peer: false,
        peer_closed: false,
        dropped_events: 0,
    };
    let mut stream_done = false;
    let mut shutdown_fed = false;
    debug!("media stream connected");
    // The loop turns 50+ times a second per call: keep one shutdown waiter and one timer
    // for the whole call. A fresh `cancelled()` per turn would add and remove a waiter on the
    // token every call shares (under its lock), and a fresh `sleep_until` would insert and
    // remove a timer-wheel entry; `Sleep::reset` to a later deadline only updates it.
    let force_closed = force_close.cancelled();
    let wake = tokio::time::sleep_until(Instant::now());
    tokio::pin!(force_closed, wake);

    let close = loop {
        // Drain the session until it says when to wake up, the send queue is full, or the
        // call is over.
        let session_wake = match call.drain() {
            Drained::Wait(at) => Some(at),
            Drained::Full => None,
            Drained::Close(code, reason) => break (code, reason),
        };
        call.write_now().await;
        // The socket took the full queue at once: take more output.
        let blocked = session_wake.is_none();
        if blocked && !call.outbox.is_full() {
            continue;
        }
        // Frames held up by the socket: wake up in time to give up on a peer that stopped
        // reading. (A full queue is always held up: the session's next deadline is not known
        // then, inputs and this wake-up drive it.)
        let stall_deadline = call.outbox.stall_deadline().filter(|_| !call.slow_peer);
        let wake_at = [session_wake, stall_deadline]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + send_timeout);
        if wake.deadline() != wake_at {
            wake.as_mut().reset(wake_at);
        }
        tokio::select! {
            biased;
            () = &mut force_closed, if !shutdown_fed => {
                shutdown_fed = true;
                info!("drain deadline passed: ending call");
                call.session.handle_input(now(), Input::Shutdown);
            }
            Some(control) = control_rx.recv() => match control {
                Control::Shutdown => call.session.handle_input(now(), Input::Shutdown),
                Control::Hangup { reason } => {
                    info!(%reason, "hangup requested");
                    call.session.handle_input(
                        now(),
                        Input::Brain(BrainCommand::Hangup { reason: &reason }),
                    );
                }
            },
            // Frames are held up: keep writing as the socket takes them, and take output from
            // the session again as soon as a full queue has room.
            written = poll_fn(|cx| if blocked {
                call.outbox.poll_room(cx)
            } else {
                call.outbox.poll_write(cx)
            }), if stall_deadline.is_some() => {
                if let Err(e) = written {
                    call.on_write_error(&e);
                }
            }
            // Read on while output is held up: what the caller sends still counts.
            frame = stream.next(), if !stream_done => {
                stream_done = call.on_frame(frame, max_message);
            }
            // Backpressure: above the high-water mark the brain's bounded channel fills and
            // its sends wait until playout drains the queue (checked again at every wake-up).
            // Interruptions overtake queued commands and ignore backpressure: the `clear` must
            // go out now, and the audio queued behind it is for the interrupted turn anyway.
            input = next_from_brain(
                call.brain.as_mut(),
                call.session.queued_audio() < BRAIN_HIGH_WATER,
            ), if call.brain.is_some() => match input {
                FromBrain::Interrupt(turn) => call
                    .session
                    .handle_input(now(), Input::Brain(BrainCommand::Interrupt { turn })),
                FromBrain::Command(command) => call.session.handle_input(now(), Input::Brain(command.as_input())),
                FromBrain::Finished => call.on_brain_stopped().await,
            },
            () = &mut wake => {
                // Read the deadline again: frames the socket took since it was set move it.
                let stalled_out = call.outbox.stall_deadline().is_some_and(|at| at <= Instant::now());
                if stalled_out && !call.slow_peer {
                    call.on_write_timeout();
                } else {
                    call.session.handle_timeout(now());
                }
            }
        }
    };

    let (code, reason) = call.shell_end.as_ref().map_or(close, |end| end.close);
    if call.peer_closed {
        // RFC 6455 5.5.1: answer the peer's close frame. The WebSocket layer has queued its
        // echo (same code) and refuses any other frame now: closing the sink flushes it.
        call.answer_close().await;
    } else {
        // The session is over: send the close frame, wait briefly for the peer's reply. A
        // peer that does not read would only hold the close frame up: do not wait for it.
        let close_sent = !call.slow_peer && call.send_close(code, reason).await;
        if close_sent && !stream_done {
            // RFC 6455 7.1.1: read until the peer's close reply so the TCP close is clean.
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE_GRACE, async {
                while let Some(Ok(_)) = stream.next().await {}
            })
            .await;
        }
    }
    call.finish(opened.elapsed()).await
}

async fn next_from_brain(brain: Option<&mut BrainHandle>, take_commands: bool) -> FromBrain {
    match brain {
        Some(brain) => brain.next_from_brain(take_commands).await,
        None => std::future::pending().await,
    }
}

enum Drained {
    /// Nothing more until this instant (or the next event).
    Wait(Instant),
    /// `send_queue_frames` wait for the socket: no more output until it takes some.
    Full,
    Close(u16, &'static str),
}

impl<W> Call<W>
where
    W: Sink<Message> + Unpin,
    W::Error: fmt::Display,
{
    /// Takes the session's output until it says when to wake up, or until `send_queue_frames`
    /// wait for the socket. Then the session keeps its audio (it paces from its own clock and
    /// the brain is held back by the high-water mark) while the driver reads on; once the
    /// session has ended, its last outputs (events and the close, never a frame) are taken.
    fn drain(&mut self) -> Drained {
        loop {
            if self.outbox.is_full() && !self.session.is_ended() {
                return Drained::Full;
            }
            match self.session.poll_output() {
                Output::Send(text) => self.send(text),
                Output::Brain(event) => self.on_brain_event(event),
                Output::Close { code, reason } => return Drained::Close(code, reason),
                Output::Timeout(at) => return Drained::Wait(Instant::from_std(at)),
            }
        }
    }

    fn send(&mut self, text: String) {
        if self.outbox.has_failed() || self.slow_peer || self.shell_end.is_some() {
            return;
        }
        self.outbox.push(Message::Text(text.into()));
    }

    /// Feeds one socket read to the session; whether the stream is done.
    fn on_frame<E: ReadError>(
        &mut self,
        read: Option<Result<Message, E>>,
        max_message: usize,
    ) -> bool {
        let input_now = now();
        let message = match message_or_end(read) {
            Ok(message) => message,
            Err(end) => {
                self.peer_closed = end == SocketEnd::PeerClosed;
                let input = match end {
                    SocketEnd::TooBig(len) => Input::TooBig { len },
                    SocketEnd::PeerClosed | SocketEnd::Gone => Input::SocketClosed,
                };
                self.session.handle_input(input_now, input);
                return true;
            }
        };
        let input = match &message {
            Message::Text(text) if text.len() > max_message => Input::Oversize { len: text.len() },
            Message::Text(text) => Input::Text(text.as_str()),
            Message::Binary(data) if data.len() > max_message => {
                Input::Oversize { len: data.len() }
            }
            Message::Binary(data) => Input::Binary { len: data.len() },
            // The WebSocket layer answers pings itself; neither is a Twilio message.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return false,
        };
        self.session.handle_input(input_now, input);
        false
    }

    /// Writes what the session queued, without waiting: a socket that does not take it all
    /// leaves the rest for the select loop (see `stall_deadline`).
    async fn write_now(&mut self) {
        let written = poll_fn(|cx| Poll::Ready(self.outbox.poll_write(cx))).await;
        if let Poll::Ready(Err(e)) = written {
            self.on_write_error(&e);
        }
    }

    /// Answers the peer's close frame: drops what is still queued (the WebSocket layer sends
    /// nothing but its echo of the peer's close now) and closes the sink, which flushes that
    /// echo, within one `send_timeout`.
    async fn answer_close(&mut self) {
        let timeout = self.state.config().send_timeout;
        if tokio::time::timeout(timeout, self.outbox.close_unsent())
            .await
            .is_err()
        {
            warn!("close reply did not flush within the send timeout");
        }
    }

    /// Queues the close frame, waits for it to go out and closes the sink, all within one
    /// `send_timeout` (and sooner if the socket already took nothing for that long). Whether
    /// the close frame went out.
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

    fn on_write_timeout(&mut self) {
        let timeout = self.state.config().send_timeout;
        warn!(?timeout, "write to Twilio timed out: peer is not reading");
        self.end_slow_peer();
    }

    fn on_write_error(&mut self, error: &WriteError) {
        warn!(%error, "socket write failed");
        self.session.handle_input(now(), Input::SocketClosed);
    }

    fn end_slow_peer(&mut self) {
        self.slow_peer = true;
        if self.shell_end.is_none() {
            self.session.handle_input(now(), Input::SlowPeer);
        }
    }

    fn on_brain_event(&mut self, event: BrainEvent) {
        if let BrainEvent::CallStarted(info) = &event
            && let Err(refusal) = self.start_call(info)
        {
            self.refuse(&refusal);
            return;
        }
        let Some(brain) = &self.brain else { return };
        let kind = event_kind(&event);
        if let Err(e) = brain.deliver(event) {
            // Raw caller audio comes 50 times a second: log a stuck brain sparingly.
            self.dropped_events += 1;
            let n = self.dropped_events;
            if n <= 10 || n.is_power_of_two() {
                warn!(event = kind, error = %e, dropped = n, "brain did not take an event; dropped");
            }
        }
    }

    /// Picks the agent, starts its brain and registers the call.
    fn start_call(&mut self, info: &CallInfo) -> Result<(), BrainError> {
        let span = Span::current();
        span.record("call_sid", info.call_sid.as_str());
        span.record("stream_sid", info.stream_sid.as_str());
        let requested = info
            .custom_parameters
            .get(AGENT_PARAMETER)
            .map(String::as_str)
            .filter(|name| !name.is_empty());
        let name = requested.unwrap_or(&self.state.config().default_agent);
        span.record("agent", name);
        let factory = Arc::clone(self.state.agents().get(name)?);
        let brain = factory.start(info)?;
        if let Some(rate) = factory.pipeline_rate()
            && let Err(e) = self.session.set_pipeline_rate(rate)
        {
            warn!(error = %e, "agent's pipeline rate not applied; keeping the configured one");
        }
        // Before the next `media` frame is handled: this runs while `start` is drained.
        self.session.set_caller_audio(factory.caller_audio());
        self.brain = Some(spawn_brain(
            factory.name(),
            brain,
            self.state.brain_channels(),
        ));
        let started_at = SystemTime::now();
        self.started_at = Some(started_at);
        self.agent = Some(factory.name().to_owned());
        self.registration = Some(self.state.registry().register(
            CallEntry {
                call_sid: info.call_sid.clone(),
                stream_sid: info.stream_sid.clone(),
                agent: factory.name().to_owned(),
                started_at,
            },
            self.control_tx.clone(),
        ));
        self.active = Some(self.state.bridge_metrics().call_started(Transport::Media));
        info!(
            custom_parameters = info.custom_parameters.len(),
            "call started"
        );
        Ok(())
    }

    fn refuse(&mut self, refusal: &BrainError) {
        let close = match refusal {
            BrainError::UnknownAgent { .. } => (close::POLICY, "unknown agent"),
            BrainError::Start { .. } | BrainError::Failed { .. } => {
                (close::INTERNAL_ERROR, "agent failed to start")
            }
        };
        error!(error = %refusal, code = close.0, "refusing call");
        self.shell_end = Some(ShellEnd {
            reason: EndReason::BrainHangup(format!("refused: {refusal}")),
            close,
        });
        // End the session without sending anything more; its Close is replaced by ours.
        self.session.handle_input(now(), Input::SocketClosed);
    }

    async fn on_brain_stopped(&mut self) {
        let Some(brain) = self.brain.take() else {
            return;
        };
        let agent = brain.agent();
        match brain.finish(BRAIN_GRACE).await {
            Ok(report) => {
                debug!(agent, "brain finished before the call");
                self.report = report;
            }
            Err(e) => {
                error!(error = %e, "brain failed; hanging up");
                self.session.handle_input(
                    now(),
                    Input::Brain(BrainCommand::Hangup {
                        reason: "agent failed",
                    }),
                );
            }
        }
    }

    async fn finish(mut self, duration: Duration) -> CallSummary {
        if let Some(brain) = self.brain.take() {
            match brain.finish(BRAIN_GRACE).await {
                Ok(report) => self.report = report,
                Err(e) => warn!(error = %e, "brain did not stop cleanly"),
            }
        }
        let mut summary = self.session.summary().clone();
        let refused = self.shell_end.is_some();
        if let Some(end) = self.shell_end.take() {
            summary.end_reason = Some(end.reason);
        }
        self.state
            .bridge_metrics()
            .media_ended(summary.end_reason.as_ref(), refused);
        info!(
            frames_in = summary.frames_in,
            frames_out = summary.frames_out,
            marks_sent = summary.marks_sent,
            utterances = summary.utterances,
            barge_ins = summary.barge_ins,
            bad_messages = summary.bad_messages,
            end_reason = ?summary.end_reason,
            duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            "call ended"
        );
        // Unregister before the sink runs, so "ended" calls are never listed as live.
        drop(self.registration.take());
        drop(self.active.take());
        let record = CallRecord {
            summary,
            agent: self.agent.take(),
            started_at: self.started_at,
            duration,
            report: self.report.take(),
        };
        self.state.call_sink().call_ended(&record);
        record.summary
    }
}

fn event_kind(event: &BrainEvent) -> &'static str {
    match event {
        BrainEvent::CallStarted(_) => "call_started",
        BrainEvent::SpeechStarted => "speech_started",
        BrainEvent::CallerAudio { .. } => "caller_audio",
        BrainEvent::Pause { .. } => "pause",
        BrainEvent::Utterance { .. } => "utterance",
        BrainEvent::Dtmf(_) => "dtmf",
        BrainEvent::BargeIn { .. } => "barge_in",
        BrainEvent::TurnStarted { .. } => "turn_started",
        BrainEvent::TurnPlayed { .. } => "turn_played",
        BrainEvent::CallEnded { .. } => "call_ended",
    }
}
