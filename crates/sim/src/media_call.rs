//! Twilio's side of one Media Streams call, in real time over a real socket.
//!
//! Sends `connected` and `start` (with the TwiML `<Parameter>`s), then one 160-byte mu-law
//! `media` frame every 20 ms on a monotonic schedule (the scenario's recordings, silence in
//! between), `dtmf` for key presses and `stop` on hang-up. The bot's audio goes through the
//! [`Playout`] model: marks are echoed only when playback reaches them, `clear` flushes the
//! buffer and echoes pending marks. Every measurement lands in the shared [`Recorder`].
//! (<https://www.twilio.com/docs/voice/media-streams/websocket-messages>)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use voxbridge_twilio::media::{DtmfDigit, OutboundDecoder, OutboundEvent, Track, TwilioEncoder};
use voxbridge_twilio::sid::{AccountSid, CallSid, StreamSid};

use crate::call::{CallEnd, CallOutcome, Speaker, TranscriptLine, TranscriptTap, us};
use crate::playout::{FRAME_US, MULAW_SILENCE, PlayedMark, Playout};
use crate::scenario::{Action, Director, Step};
use crate::stats::Recorder;
use crate::ws::{self, ConnectError, FrameBuf, Route};

/// Why a Media Streams call failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaCallError {
    /// The WebSocket could not be opened.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The socket failed mid-call.
    #[error("socket error: {0}")]
    Socket(String),
}

/// Timing knobs of a simulated Media Streams caller.
#[derive(Debug, Clone)]
pub struct MediaCallOptions {
    /// Keep the heard and sent audio (tests, `voxbridge sim`); off for load tests.
    pub record: bool,
    /// A pause in bot audio longer than this separates two bot turns. Default 500 ms.
    pub turn_gap: Duration,
    /// Bot audio idle this long means the bot finished its turn. Default 400 ms.
    pub bot_done_after: Duration,
    /// Hang up (send `stop`) at this call time even if the scenario has not.
    pub hangup_at: Option<Duration>,
    /// Upper bound on the call's length. Default 10 minutes.
    pub max_duration: Duration,
    /// WebSocket connect timeout. Default 10 s.
    pub connect_timeout: Duration,
    /// After the caller hangs up (`stop` and a Close frame), keep reading until the bridge's
    /// Close, at most this long, counting the `media` it had already sent in
    /// [`Recorder::media_received`] and [`Recorder::media_after_hangup`]: every frame the
    /// bridge sent is then accounted for. A bridge that does not close in time is counted as
    /// an error. `None` (the default): return as soon as the Close frame is sent.
    pub drain_after_hangup: Option<Duration>,
}

impl Default for MediaCallOptions {
    fn default() -> Self {
        Self {
            record: false,
            turn_gap: Duration::from_millis(500),
            bot_done_after: Duration::from_millis(400),
            hangup_at: None,
            max_duration: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            drain_after_hangup: None,
        }
    }
}

/// One Media Streams call to place.
#[derive(Debug, Clone)]
pub struct MediaCall {
    /// The `<Stream url>` from the TwiML (`wss://`); signed as is.
    pub url: String,
    /// Where to actually dial.
    pub route: Route,
    /// Auth token for `X-Twilio-Signature` (`None`: unsigned).
    pub auth_token: Option<String>,
    /// `start.accountSid`.
    pub account_sid: AccountSid,
    /// `start.callSid`.
    pub call_sid: CallSid,
    /// The stream's SID.
    pub stream_sid: StreamSid,
    /// `start.customParameters` (the `<Parameter>`s).
    pub parameters: BTreeMap<String, String>,
    /// The scripted caller.
    pub steps: Arc<[Step]>,
    /// Timing knobs.
    pub options: MediaCallOptions,
}

struct Caller<'a> {
    call: &'a MediaCall,
    recorder: &'a Recorder,
    tap: &'a TranscriptTap,
    encoder: TwilioEncoder,
    frames: FrameBuf,
    playout: Playout,
    director: Director,
    outcome: CallOutcome,
    marks: Vec<PlayedMark>,
    /// The utterance being sent: audio and position.
    speaking: Option<(Arc<[u8]>, usize)>,
    utterance_end_us: Option<u64>,
    barge_in_at_us: Option<u64>,
    /// Frames sent since `barge_in_at_us`.
    barge_in_frames: u64,
    bot_turn_start_us: Option<u64>,
    bot_turn_bytes: u64,
    bot_done_reported: bool,
    first_audio: bool,
    chunk: u64,
    dropped_reported: u64,
    silence: [u8; 160],
    frame: [u8; 160],
}

impl Caller<'_> {
    fn line(&mut self, now_us: u64, speaker: Speaker, text: String, interrupted: bool) {
        let line = TranscriptLine {
            at_ms: now_us / 1000,
            speaker,
            text,
            interrupted,
        };
        self.outcome
            .say(self.tap, self.call.call_sid.as_str(), line);
    }

    fn end_bot_turn(&mut self, interrupted: bool) {
        if let Some(start) = self.bot_turn_start_us.take() {
            let seconds = self.bot_turn_bytes as f64 / 8000.0;
            self.bot_turn_bytes = 0;
            self.line(
                start,
                Speaker::Bot,
                format!("(bot audio {seconds:.1} s)"),
                interrupted,
            );
            if !interrupted && self.barge_in_at_us.take().is_some() {
                self.recorder.error("barge-in not honoured (no clear)");
            }
        }
    }

    /// Advances playout to `now_us` and returns the mark echoes to send.
    fn advance(&mut self, now_us: u64) {
        self.playout.advance(now_us, &mut self.marks);
        if self.bot_turn_start_us.is_some()
            && !self.bot_done_reported
            && let Some(idle) = self.playout.idle_since_us()
            && now_us.saturating_sub(idle) >= us(self.call.options.bot_done_after)
        {
            self.bot_done_reported = true;
            self.end_bot_turn(false);
            self.director.handle_bot_done(idle);
        }
    }

    /// Handles one message from the bridge; returns mark echoes via `self.marks`.
    fn handle_text(&mut self, decoder: &mut OutboundDecoder, text: &str, now_us: u64) {
        self.advance(now_us);
        match decoder.decode(text) {
            Ok(OutboundEvent::Media { payload, .. }) => {
                Recorder::bump(&self.recorder.media_received);
                let arrival = self.playout.push_media(now_us, payload);
                self.bot_turn_bytes += payload.len() as u64;
                self.recorder
                    .playout_lateness_us
                    .record(arrival.lateness_us);
                let dropped = self.playout.dropped_frames();
                if dropped > self.dropped_reported {
                    self.recorder
                        .dropped_frames
                        .fetch_add(dropped - self.dropped_reported, Ordering::Relaxed);
                    self.dropped_reported = dropped;
                }
                if arrival.turn_start {
                    self.bot_done_reported = false;
                    self.end_bot_turn(false);
                    self.bot_turn_start_us = Some(now_us);
                    self.bot_turn_bytes = payload.len() as u64;
                    self.outcome.bot_turns += 1;
                    if !self.first_audio {
                        self.first_audio = true;
                        self.recorder.first_audio_us.record(now_us);
                    }
                    if let Some(end) = self.utterance_end_us.take() {
                        self.recorder
                            .turn_latency_us
                            .record(now_us.saturating_sub(end));
                    }
                    self.director.handle_bot_started(now_us);
                }
            }
            Ok(OutboundEvent::Mark { name, .. }) => {
                self.playout.push_mark(name);
                self.playout.advance(now_us, &mut self.marks);
            }
            Ok(OutboundEvent::Clear { .. }) => {
                Recorder::bump(&self.recorder.clears);
                self.outcome.clears += 1;
                self.playout.clear(now_us, &mut self.marks);
                if let Some(at) = self.barge_in_at_us.take() {
                    self.recorder.barge_in_us.record(now_us.saturating_sub(at));
                    self.recorder
                        .barge_in_audio_us
                        .record(self.barge_in_frames * FRAME_US);
                }
                if self.bot_turn_start_us.is_some() {
                    self.bot_done_reported = true;
                    self.end_bot_turn(true);
                    self.director.handle_bot_done(now_us);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "bad message from the bridge");
                self.recorder.error("bad message from bridge");
            }
        }
    }

    /// The next inbound frame's payload; runs due scenario actions first. Returns the DTMF
    /// digits to send and whether to hang up.
    fn next_frame(&mut self, now_us: u64, dtmf: &mut Vec<DtmfDigit>) -> bool {
        let mut hangup = false;
        while let Some(action) = self.director.poll(now_us) {
            match action {
                Action::Say { text, audio } => {
                    if self.playout.is_playing()
                        || self.bot_turn_start_us.is_some() && !self.bot_done_reported
                    {
                        self.barge_in_at_us = Some(now_us);
                        self.barge_in_frames = 0;
                    }
                    self.line(now_us, Speaker::Caller, text, false);
                    match audio {
                        Some(audio) => self.speaking = Some((audio, 0)),
                        None => self
                            .recorder
                            .error("say step without audio on Media Streams"),
                    }
                }
                Action::Dtmf(digits) => {
                    self.line(
                        now_us,
                        Speaker::Caller,
                        format!("(presses {digits})"),
                        false,
                    );
                    dtmf.extend(digits.chars().filter_map(DtmfDigit::from_char));
                }
                Action::Silence => {}
                Action::Hangup => hangup = true,
            }
        }
        let mut done = false;
        match &mut self.speaking {
            Some((audio, pos)) => {
                let end = (*pos + 160).min(audio.len());
                let n = end - *pos;
                self.frame[..n].copy_from_slice(&audio[*pos..end]);
                self.frame[n..].fill(MULAW_SILENCE);
                *pos = end;
                done = end >= audio.len();
            }
            None => self.frame = self.silence,
        }
        if done {
            self.speaking = None;
            self.utterance_end_us = Some(now_us + FRAME_US);
        }
        if let Some(sent) = &mut self.outcome.sent {
            sent.extend_from_slice(&self.frame);
        }
        hangup
    }
}

/// Places `call`: connects, runs the scenario in real time until the caller hangs up, the
/// server closes, `cancel` fires or the maximum length passes.
pub async fn run_media_call(
    call: &MediaCall,
    recorder: &Recorder,
    tap: &TranscriptTap,
    cancel: &CancellationToken,
) -> Result<CallOutcome, MediaCallError> {
    let span = tracing::info_span!("sim_media_call", call_sid = %call.call_sid.as_str());
    run(call, recorder, tap, cancel).instrument(span).await
}

#[allow(clippy::too_many_lines)] // one select loop; its arms are short
async fn run(
    call: &MediaCall,
    recorder: &Recorder,
    tap: &TranscriptTap,
    cancel: &CancellationToken,
) -> Result<CallOutcome, MediaCallError> {
    let mut socket = crate::call::open(
        &call.url,
        &call.route,
        call.auth_token.as_deref(),
        call.options.connect_timeout,
        recorder,
    )
    .await?;
    // One socket, not split halves: `select!` drops the pending `next()` before a branch's
    // body runs, so the body can write, and no per-frame lock guards the two halves.
    let mut caller = Caller {
        call,
        recorder,
        tap,
        encoder: TwilioEncoder::new(call.stream_sid.clone()),
        frames: FrameBuf::new(),
        playout: Playout::new(us(call.options.turn_gap), call.options.record),
        director: Director::new(call.steps.clone()),
        outcome: CallOutcome {
            sent: call.options.record.then(Vec::new),
            ..CallOutcome::default()
        },
        marks: Vec::new(),
        speaking: None,
        utterance_end_us: None,
        barge_in_at_us: None,
        barge_in_frames: 0,
        bot_turn_start_us: None,
        bot_turn_bytes: 0,
        bot_done_reported: true,
        first_audio: false,
        chunk: 0,
        dropped_reported: 0,
        silence: [MULAW_SILENCE; 160],
        frame: [MULAW_SILENCE; 160],
    };
    let mut decoder = OutboundDecoder::new();
    let mut dtmf = Vec::new();
    let start = Instant::now();
    let start_std = start.into_std();
    let now_us = || us(start.elapsed());

    let result: Result<CallEnd, MediaCallError> = async {
        let connected = caller.frames.text(caller.encoder.connected());
        send(&mut socket, connected).await?;
        let start_message = caller.encoder.start(
            call.account_sid.clone(),
            call.call_sid.clone(),
            vec![Track::Inbound],
            call.parameters.clone(),
        );
        let start_message = caller.frames.text(start_message);
        send(&mut socket, start_message).await?;
        caller.director.handle_connected(0);
        let mut ticker = tokio::time::interval_at(start, Duration::from_micros(FRAME_US));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let hangup_at = call.options.hangup_at.map(us);
        let max_us = us(call.options.max_duration);
        // One waiter on the token all calls share, not a new one per frame.
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);
        loop {
            tokio::select! {
                biased;
                () = &mut cancelled => {
                    let stop = caller.encoder.stop(call.account_sid.clone(), call.call_sid.clone());
                    let stop = caller.frames.text(stop);
                    let _ = send(&mut socket, stop).await;
                    let _ = SinkExt::close(&mut socket).await;
                    return Ok(CallEnd::Cancelled);
                }
                message = socket.next() => {
                    // The kernel's receive time, not when this busy generator got round to
                    // reading: the bridge is judged by when its audio arrived (see `stamped`
                    // for the limits: a stall longer than a frame still over-counts). If a
                    // tick already advanced playout past it, `advance` keeps the later time.
                    let now = socket
                        .get_ref()
                        .last_arrival()
                        .map_or_else(now_us, |at| us(at.saturating_duration_since(start_std)));
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            caller.handle_text(&mut decoder, text.as_str(), now);
                            send_marks(&mut caller, &mut socket).await?;
                        }
                        Some(Ok(Message::Close(frame))) => {
                            let code = frame.map_or(1005, |f| u16::from(f.code));
                            return Ok(CallEnd::ServerClosed(code));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(MediaCallError::Socket(e.to_string())),
                        None => return Ok(CallEnd::ServerClosed(1006)),
                    }
                }
                tick = ticker.tick() => {
                    let now = now_us();
                    let due = us(tick.duration_since(start));
                    let late = now.saturating_sub(due);
                    recorder.send_lateness_us.record(late);
                    recorder.send_lateness_window_max_us.fetch_max(late, Ordering::Relaxed);
                    if late > FRAME_US {
                        Recorder::bump(&recorder.frames_sent_late);
                    }
                    caller.advance(now);
                    send_marks(&mut caller, &mut socket).await?;
                    let scripted_hangup = caller.next_frame(due, &mut dtmf);
                    for digit in dtmf.drain(..) {
                        let message = caller.encoder.dtmf(digit);
                        let message = caller.frames.text(message);
                        send(&mut socket, message).await?;
                    }
                    if scripted_hangup || hangup_at.is_some_and(|at| due >= at) {
                        caller.line(now, Speaker::Caller, "(hangs up)".to_owned(), false);
                        let stop = caller.encoder.stop(call.account_sid.clone(), call.call_sid.clone());
                        let stop = caller.frames.text(stop);
                        send(&mut socket, stop).await?;
                        let _ = socket
                            .send(Message::Close(Some(CloseFrame {
                                code: CloseCode::Normal,
                                reason: "".into(),
                            })))
                            .await;
                        if let Some(limit) = call.options.drain_after_hangup {
                            drain(&mut socket, &mut decoder, recorder, limit).await;
                        }
                        return Ok(CallEnd::CallerHungUp);
                    }
                    if due >= max_us {
                        return Ok(CallEnd::MaxDuration);
                    }
                    caller.chunk += 1;
                    let timestamp_ms = (caller.chunk - 1) * 20;
                    let frame = caller.frame;
                    let media = caller.encoder.media(Track::Inbound, caller.chunk, timestamp_ms, &frame);
                    let media = caller.frames.text(media);
                    send(&mut socket, media).await?;
                    Recorder::bump(&recorder.frames_sent);
                    if caller.barge_in_at_us.is_some() {
                        caller.barge_in_frames += 1;
                    }
                }
            }
        }
    }
    .await;

    let now = now_us();
    caller.advance(now);
    caller.end_bot_turn(false);
    let mut outcome = caller.outcome;
    outcome.duration = start.elapsed();
    outcome.heard = caller.playout.take_heard();
    crate::call::finish(result, outcome, recorder)
}

/// Reads what the bridge sent before it saw the caller's `stop`, until its Close frame (or
/// the socket ends) or `limit` passes, counting each `media` as received.
async fn drain(
    socket: &mut ws::Socket,
    decoder: &mut OutboundDecoder,
    recorder: &Recorder,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => {
                recorder.error("bridge did not close after the caller hung up");
                return;
            }
            Ok(Some(Ok(Message::Text(text)))) => {
                if let Ok(OutboundEvent::Media { .. }) = decoder.decode(text.as_str()) {
                    Recorder::bump(&recorder.media_received);
                    Recorder::bump(&recorder.media_after_hangup);
                }
            }
            Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => return,
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn send(socket: &mut ws::Socket, message: Message) -> Result<(), MediaCallError> {
    socket
        .send(message)
        .await
        .map_err(|e| MediaCallError::Socket(e.to_string()))
}

async fn send_marks(
    caller: &mut Caller<'_>,
    socket: &mut ws::Socket,
) -> Result<(), MediaCallError> {
    if caller.marks.is_empty() {
        return Ok(());
    }
    let marks = std::mem::take(&mut caller.marks);
    for mark in &marks {
        let echo = caller.encoder.mark(&mark.name);
        let echo = caller.frames.text(echo);
        send(socket, echo).await?;
        Recorder::bump(&caller.recorder.marks_echoed);
        caller.outcome.marks_echoed += 1;
    }
    // Keep the allocation for the next marks.
    caller.marks = marks;
    caller.marks.clear();
    Ok(())
}
