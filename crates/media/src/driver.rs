//! One call's driver: owns the sans-IO [`Session`], and `select!`s over socket frames, brain
//! commands, registry control, the session's next timeout and the shutdown token. Generic over
//! `Sink`/`Stream` of [`Message`]s so tests can drive it without a socket.
//!
//! Outbound frames go through a bounded queue to a writer task; each write has `send_timeout`.
//! A peer that stops reading fills the socket, the write times out (or the queue stays full for
//! `send_timeout`), and the call ends as [`Input::SlowPeer`]: memory per call stays bounded.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::ws::{CloseFrame, Message};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, Span, debug, error, field, info, info_span, warn};
use voxbridge_agent::{
    AGENT_PARAMETER, BrainCommand, BrainError, BrainHandle, FromBrain, spawn_brain,
};
use voxbridge_session::{BrainEvent, CallInfo, CallSummary, EndReason, Input, Output, Session};

use crate::metrics::{ActiveCall, Transport};
use crate::registry::{CallEntry, Control, Registration};
use crate::{CallRecord, MediaState};

/// Bot audio queued in the session (not yet sent to Twilio) above which the driver stops
/// taking brain commands, so a faster-than-real-time brain waits instead of buffering.
const BRAIN_HIGH_WATER: Duration = Duration::from_secs(1);
/// How long a stopped brain gets to return before its task is aborted.
const BRAIN_GRACE: Duration = Duration::from_secs(1);
/// After our close frame, how long to wait for the peer's close reply.
const CLOSE_HANDSHAKE_GRACE: Duration = Duration::from_secs(1);
/// Control messages queued per call (hangup / shutdown requests).
const CONTROL_QUEUE: usize = 4;
/// Close code when the requested agent does not exist (policy violation).
const CLOSE_UNKNOWN_AGENT: u16 = 1008;
/// Close code when the agent exists but could not start (internal error).
const CLOSE_AGENT_FAILED: u16 = 1011;

/// Why the writer task stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WriteError {
    /// A write did not complete within `send_timeout`: the peer is not reading.
    #[error("write to Twilio timed out after {0:?}")]
    Timeout(Duration),
    /// The socket failed.
    #[error("socket write failed: {0}")]
    Socket(String),
}

/// Writes queued frames, batching whatever is queued into one flush. Ends after a close frame
/// or when the queue closes.
pub(crate) async fn write_frames<W>(
    mut sink: W,
    mut queue: mpsc::Receiver<Message>,
    send_timeout: Duration,
) -> Result<(), WriteError>
where
    W: Sink<Message> + Unpin,
    W::Error: fmt::Display,
{
    while let Some(first) = queue.recv().await {
        let mut closing = matches!(first, Message::Close(_));
        let batch = async {
            sink.feed(first).await?;
            while !closing {
                let Ok(next) = queue.try_recv() else { break };
                closing = matches!(next, Message::Close(_));
                sink.feed(next).await?;
            }
            sink.flush().await
        };
        match tokio::time::timeout(send_timeout, batch).await {
            Err(_) => return Err(WriteError::Timeout(send_timeout)),
            Ok(Err(e)) => return Err(WriteError::Socket(e.to_string())),
            Ok(Ok(())) => {}
        }
        if closing {
            break;
        }
    }
    // Best effort: the close frame (if any) is already flushed.
    let _ = tokio::time::timeout(send_timeout, sink.close()).await;
    Ok(())
}

/// Queues the close frame, closes the queue (so the writer ends even if the frame did not
/// fit) and waits up to `send_timeout` for the writer. Whether the close frame went out.
pub(crate) async fn close_writer(
    out: mpsc::Sender<Message>,
    mut writer: JoinHandle<Result<(), WriteError>>,
    (code, reason): (u16, &'static str),
    send_timeout: Duration,
) -> bool {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    if out.try_send(frame).is_err() {
        debug!("send queue full at close; dropping the close frame");
    }
    drop(out);
    match tokio::time::timeout(send_timeout, &mut writer).await {
        Ok(Ok(Ok(()))) => true,
        Ok(Ok(Err(e))) => {
            debug!(error = %e, "writer failed while closing");
            false
        }
        Ok(Err(e)) => {
            error!(error = %e, "writer task failed");
            false
        }
        Err(_) => {
            warn!("close did not flush within the send timeout");
            writer.abort();
            false
        }
    }
}

/// What the shell itself decided about the call end, overriding the session's reason.
#[derive(Debug)]
struct ShellEnd {
    reason: EndReason,
    close: (u16, &'static str),
}

struct Call {
    state: MediaState,
    session: Session,
    out: mpsc::Sender<Message>,
    writer_alive: bool,
    brain: Option<BrainHandle>,
    registration: Option<Registration>,
    /// Counts the call in `voxbridge_calls_active` from `start` to teardown.
    active: Option<ActiveCall>,
    control_tx: mpsc::Sender<Control>,
    agent: Option<String>,
    started_at: Option<SystemTime>,
    shell_end: Option<ShellEnd>,
    /// The peer stopped reading: do not wait for the writer at close.
    slow_peer: bool,
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
    W: Sink<Message> + Unpin + Send + 'static,
    W::Error: fmt::Display,
    R: Stream<Item = Result<Message, E>> + Unpin + Send,
    E: fmt::Display,
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
    W: Sink<Message> + Unpin + Send + 'static,
    W::Error: fmt::Display,
    R: Stream<Item = Result<Message, E>> + Unpin + Send,
    E: fmt::Display,
{
    let opened = Instant::now();
    let config = state.config();
    let send_timeout = config.send_timeout();
    let max_message = config.max_message_bytes;
    let (out, queue) = mpsc::channel(config.send_queue_frames);
    let mut writer = tokio::spawn(write_frames(sink, queue, send_timeout));
    let (control_tx, mut control_rx) = mpsc::channel(CONTROL_QUEUE);
    let force_close = state.force_close_token();

    let mut call = Call {
        session: Session::new(state.session_config().clone(), now()),
        state,
        out,
        writer_alive: true,
        brain: None,
        registration: None,
        active: None,
        control_tx,
        agent: None,
        started_at: None,
        shell_end: None,
        slow_peer: false,
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
        // Drain the session until it says when to wake up (or that the call is over).
        let wake_at = match call.drain().await {
            Drained::Wait(at) => at,
            Drained::Close(code, reason) => break (code, reason),
        };
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
            result = &mut writer, if call.writer_alive => {
                call.writer_alive = false;
                call.on_writer_end(result.unwrap_or_else(|e| Err(WriteError::Socket(e.to_string()))));
            }
            frame = stream.next(), if !stream_done => {
                let input_now = now();
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        let input = if text.len() > max_message {
                            Input::Oversize { len: text.len() }
                        } else {
                            Input::Text(text.as_str())
                        };
                        call.session.handle_input(input_now, input);
                    }
                    Some(Ok(Message::Binary(data))) => {
                        let input = if data.len() > max_message {
                            Input::Oversize { len: data.len() }
                        } else {
                            Input::Binary { len: data.len() }
                        };
                        call.session.handle_input(input_now, input);
                    }
                    // The WebSocket layer answers pings itself; neither is a Twilio message.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        debug!(?frame, "peer closed the socket");
                        stream_done = true;
                        call.session.handle_input(input_now, Input::SocketClosed);
                    }
                    Some(Err(e)) => {
                        warn!(error = %e, "socket read failed");
                        stream_done = true;
                        call.session.handle_input(input_now, Input::SocketClosed);
                    }
                    None => {
                        debug!("socket ended");
                        stream_done = true;
                        call.session.handle_input(input_now, Input::SocketClosed);
                    }
                }
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
            () = &mut wake => call.session.handle_timeout(now()),
        }
    };

    // The session is over: close the socket, let the writer flush, wait briefly for the reply.
    let (code, reason) = call.shell_end.as_ref().map_or(close, |end| end.close);
    let close_sent = if call.writer_alive && call.slow_peer {
        // The writer is stuck in a write to a peer that does not read: do not wait for it.
        writer.abort();
        false
    } else if call.writer_alive {
        close_writer(
            std::mem::replace(&mut call.out, mpsc::channel(1).0),
            writer,
            (code, reason),
            send_timeout,
        )
        .await
    } else {
        false
    };
    if close_sent && !stream_done {
        // RFC 6455 7.1.1: read until the peer's close reply so the TCP close is clean.
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE_GRACE, async {
            while let Some(Ok(_)) = stream.next().await {}
        })
        .await;
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
    Wait(Instant),
    Close(u16, &'static str),
}

impl Call {
    async fn drain(&mut self) -> Drained {
        loop {
            match self.session.poll_output() {
                Output::Send(text) => self.send(text).await,
                Output::Brain(event) => self.on_brain_event(event),
                Output::Close { code, reason } => return Drained::Close(code, reason),
                Output::Timeout(at) => return Drained::Wait(Instant::from_std(at)),
            }
        }
    }

    async fn send(&mut self, text: String) {
        if !self.writer_alive || self.shell_end.is_some() {
            return;
        }
        let message = Message::Text(text.into());
        let message = match self.out.try_send(message) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The writer has stopped; its result arrives through the select loop.
                return;
            }
            Err(mpsc::error::TrySendError::Full(message)) => message,
        };
        let timeout = self.state.config().send_timeout();
        // An `Err` inside means the writer stopped; its result arrives through the select loop.
        if tokio::time::timeout(timeout, self.out.send(message))
            .await
            .is_err()
        {
            warn!(?timeout, "send queue stayed full: peer is not reading");
            self.end_slow_peer();
        }
    }

    fn end_slow_peer(&mut self) {
        self.slow_peer = true;
        if self.shell_end.is_none() {
            self.session.handle_input(now(), Input::SlowPeer);
        }
    }

    fn on_writer_end(&mut self, result: Result<(), WriteError>) {
        match result {
            Err(WriteError::Timeout(timeout)) => {
                warn!(?timeout, "write to Twilio timed out: peer is not reading");
                self.end_slow_peer();
            }
            Err(WriteError::Socket(e)) => {
                warn!(error = %e, "socket write failed");
                self.session.handle_input(now(), Input::SocketClosed);
            }
            Ok(()) => {
                // Only after a close frame, which the session never asks for twice.
                self.session.handle_input(now(), Input::SocketClosed);
            }
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
            BrainError::UnknownAgent { .. } => (CLOSE_UNKNOWN_AGENT, "unknown agent"),
            BrainError::Start { .. } | BrainError::Failed { .. } => {
                (CLOSE_AGENT_FAILED, "agent failed to start")
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
            Ok(()) => debug!(agent, "brain finished before the call"),
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
        if let Some(brain) = self.brain.take()
            && let Err(e) = brain.finish(BRAIN_GRACE).await
        {
            warn!(error = %e, "brain did not stop cleanly");
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
        BrainEvent::Utterance { .. } => "utterance",
        BrainEvent::Dtmf(_) => "dtmf",
        BrainEvent::BargeIn { .. } => "barge_in",
        BrainEvent::TurnStarted { .. } => "turn_started",
        BrainEvent::TurnPlayed { .. } => "turn_played",
        BrainEvent::CallEnded { .. } => "call_ended",
    }
}
