//! The per-call state machine: see the [crate docs](crate) for how it is driven.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use voxbridge_twilio::media::{
    InboundDecoder, InboundEvent, InboundMessage, OutboundEncoder, Track,
};

use crate::close::{GOING_AWAY as CLOSE_GOING_AWAY, NORMAL as CLOSE_NORMAL};
use crate::error::{ConfigError, SessionError, excerpt};
use crate::inbound::{InboundAudio, Speech};
use crate::outbound::{Next, Playout};
use crate::turns::{Admit, Turns, write_mark_name};
use crate::{
    BrainCommand, BrainEvent, CallInfo, CallSummary, CallerAudio, EndReason, Input,
    MAX_MESSAGE_SIZE, Output, SessionConfig, TurnId,
};

/// After a hangup's audio has played, how long to wait for its last marks to come back.
const MARK_ECHO_GRACE: Duration = Duration::from_secs(1);

impl SessionConfig {
    /// Checks every setting; the error names the configuration key and the accepted range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check(
            ok: bool,
            key: &'static str,
            value: impl std::fmt::Debug,
            expected: &'static str,
        ) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError {
                    key,
                    value: format!("{value:?}"),
                    expected,
                })
            }
        }
        let ms = |d: Duration| d.as_millis();
        check(
            matches!(self.pipeline_rate, 8000 | 16_000 | 24_000 | 48_000),
            "pipeline_rate",
            self.pipeline_rate,
            "8000, 16000, 24000 or 48000 Hz",
        )?;
        check(
            (10..=10_000).contains(&ms(self.min_speech)),
            "min_speech_ms",
            self.min_speech,
            "10 ms ..= 10 s",
        )?;
        check(
            (10..=10_000).contains(&ms(self.hangover)),
            "hangover_ms",
            self.hangover,
            "10 ms ..= 10 s",
        )?;
        check(
            ms(self.playout_lead) <= 10_000,
            "playout_lead_ms",
            self.playout_lead,
            "0 ..= 10 s",
        )?;
        check(
            self.max_consecutive_errors >= 1,
            "max_consecutive_errors",
            self.max_consecutive_errors,
            "at least 1",
        )?;
        check(
            (20..=600_000).contains(&ms(self.max_utterance)),
            "max_utterance_ms",
            self.max_utterance,
            "20 ms ..= 10 min",
        )?;
        check(
            ms(self.max_queued_audio) <= 600_000,
            "max_queued_audio_ms",
            self.max_queued_audio,
            "0 ..= 10 min (Twilio discards beyond 10 min, error 31931)",
        )?;
        Ok(())
    }

    /// This config with every invalid field replaced by its default.
    fn sanitized(&self) -> Self {
        let copies: [fn(&mut Self, &Self); 11] = [
            |c, s| c.pipeline_rate = s.pipeline_rate,
            |c, s| c.playout_lead = s.playout_lead,
            |c, s| c.min_speech = s.min_speech,
            |c, s| c.hangover = s.hangover,
            |c, s| c.barge_in = s.barge_in,
            |c, s| c.max_consecutive_errors = s.max_consecutive_errors,
            |c, s| c.start_timeout = s.start_timeout,
            |c, s| c.idle_timeout = s.idle_timeout,
            |c, s| c.max_call_duration = s.max_call_duration,
            |c, s| c.max_utterance = s.max_utterance,
            |c, s| c.max_queued_audio = s.max_queued_audio,
        ];
        let mut config = Self::default();
        for copy in copies {
            let mut candidate = config.clone();
            copy(&mut candidate, self);
            if candidate.validate().is_ok() {
                config = candidate;
            }
        }
        config
    }
}

/// Per-call state machine; see the [crate docs](crate).
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    span: tracing::Span,
    created: Instant,
    /// Latest `now` passed in (never goes back).
    now: Instant,
    /// Last frame of any kind from Twilio.
    last_rx: Instant,
    decoder: InboundDecoder,
    inbound: InboundAudio,
    /// Reused buffer for what one `media` frame produced.
    speech: Vec<Speech>,
    playout: Playout,
    turns: Turns,
    encoder: Option<OutboundEncoder>,
    call: Option<CallInfo>,
    hangup: Option<String>,
    ended: bool,
    pending: VecDeque<Output>,
    consecutive_errors: u32,
    last_error: Option<SessionError>,
    summary: CallSummary,
    mark_name: String,
    /// The newest turn whose first audio was queued (for [`BrainEvent::TurnStarted`]).
    announced_turn: Option<TurnId>,
    /// What the brain gets of the caller's audio.
    caller_audio: CallerAudio,
}

impl Session {
    /// A session for a socket that opened at `now`. Invalid settings fall back to their defaults
    /// (logged); use [`Session::try_new`] or [`SessionConfig::validate`] to reject them instead.
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        let config = match config.validate() {
            Ok(()) => config,
            Err(e) => {
                tracing::error!(error = %e, "invalid session config; using defaults for bad fields");
                config.sanitized()
            }
        };
        Self::try_new(config, now)
            .or_else(|_| Self::try_new(SessionConfig::default(), now))
            .expect("the default session config is valid")
    }

    /// A session for a socket that opened at `now`, or why `config` is unusable.
    pub fn try_new(config: SessionConfig, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let inbound = Self::inbound_for(&config)?;
        Ok(Self {
            span: tracing::info_span!("call", call_sid = tracing::field::Empty),
            created: now,
            now,
            last_rx: now,
            decoder: InboundDecoder::new(),
            inbound,
            speech: Vec::with_capacity(4),
            playout: Playout::new(config.playout_lead, config.max_queued_audio, now),
            turns: Turns::default(),
            encoder: None,
            call: None,
            hangup: None,
            ended: false,
            pending: VecDeque::with_capacity(8),
            consecutive_errors: 0,
            last_error: None,
            summary: CallSummary::default(),
            mark_name: String::with_capacity(24),
            announced_turn: None,
            caller_audio: CallerAudio::default(),
            cfg: config,
        })
    }

    fn inbound_for(config: &SessionConfig) -> Result<InboundAudio, ConfigError> {
        InboundAudio::new(
            config.pipeline_rate,
            config.min_speech,
            config.hangover,
            config.max_utterance,
        )
        .map_err(|_| ConfigError {
            key: "pipeline_rate",
            value: config.pipeline_rate.to_string(),
            expected: "a rate the resampler and VAD support",
        })
    }

    /// Switches the rate caller audio is delivered at (see [`SessionConfig::pipeline_rate`])
    /// for the agent picked at `start`: an agent that works on Twilio's own 8 kHz (echo) then
    /// pays for no resampling and half the buffers. Only before the first `media` frame;
    /// later the rate stays and this fails.
    pub fn set_pipeline_rate(&mut self, rate: u32) -> Result<(), ConfigError> {
        if rate == self.cfg.pipeline_rate {
            return Ok(());
        }
        let config = SessionConfig {
            pipeline_rate: rate,
            ..self.cfg.clone()
        };
        config.validate()?;
        if self.summary.frames_in > 0 {
            return Err(ConfigError {
                key: "pipeline_rate",
                value: rate.to_string(),
                expected: "a change before the first media frame",
            });
        }
        self.inbound = Self::inbound_for(&config)?;
        self.cfg = config;
        Ok(())
    }

    /// Chooses what the brain gets of the caller's audio from the next `media` frame on
    /// (shells set it when they pick the agent, on [`BrainEvent::CallStarted`]). With
    /// [`CallerAudio::Raw`] each payload becomes [`BrainEvent::CallerAudio`] and the local VAD
    /// stops; an utterance it was building is dropped.
    pub fn set_caller_audio(&mut self, mode: CallerAudio) {
        self.caller_audio = mode;
        self.inbound
            .set_pauses(mode == CallerAudio::UtterancesAndPauses);
    }

    /// What the brain gets of the caller's audio.
    pub fn caller_audio(&self) -> CallerAudio {
        self.caller_audio
    }

    /// The settings in use.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// `start.callSid`, once `start` arrived.
    pub fn call_sid(&self) -> Option<&str> {
        self.call.as_ref().map(|c| c.call_sid.as_str())
    }

    /// `streamSid`, once `start` arrived.
    pub fn stream_sid(&self) -> Option<&str> {
        self.call.as_ref().map(|c| c.stream_sid.as_str())
    }

    /// Whether the session has ended (a `Close` was or is about to be returned).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The call so far.
    pub fn summary(&self) -> &CallSummary {
        &self.summary
    }

    /// The error of the latest `handle_input` call, `None` if that input was fine.
    pub fn last_error(&self) -> Option<&SessionError> {
        self.last_error.as_ref()
    }

    /// Whether the caller is speaking (between VAD onset and the end of the utterance).
    pub fn caller_speaking(&self) -> bool {
        self.inbound.is_speaking()
    }

    /// Bot audio accepted from the brain but not yet sent to Twilio. Shells stop taking brain
    /// commands above a high-water mark, so a brain that produces audio faster than real time
    /// waits on its bounded channel instead of filling this queue (per-call memory stays small
    /// and a barge-in throws little synthesized audio away).
    pub fn queued_audio(&self) -> Duration {
        self.playout.queued()
    }

    /// Bot audio in Twilio's modelled playout buffer ahead of the latest `now`.
    pub fn playout_ahead(&self) -> Duration {
        self.playout.ahead(self.now)
    }

    /// Whether the bot is playing: audio queued here, in Twilio's modelled buffer, or marks not
    /// yet echoed.
    pub fn is_playing(&self) -> bool {
        !self.playout.is_empty()
            || !self.playout.ahead(self.now).is_zero()
            || self.turns.outstanding_marks() > 0
    }

    /// Feeds one input at `now`. Never panics; bad input is logged, counted and skipped (see
    /// [`Session::last_error`]), and a run of it ends the session through `poll_output`.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        let span = self.span.clone();
        let _entered = span.enter();
        self.last_error = None;
        let now = now.max(self.now);
        if matches!(
            input,
            Input::Text(_) | Input::Binary { .. } | Input::Oversize { .. } | Input::TooBig { .. }
        ) {
            // Any frame proves the peer is alive, even a bad one (bad ones have their own limit).
            self.last_rx = now;
        }
        self.advance(now);
        if self.ended {
            return;
        }
        match input {
            Input::Text(text) => self.handle_text(text),
            Input::Binary { len } => self.bad_message(SessionError::Binary { len }),
            Input::Oversize { len } => self.bad_message(SessionError::Oversize { len }),
            Input::TooBig { len } => {
                // Counted like any bad message, but the socket cannot go on after it.
                self.count_bad_message(SessionError::TooBig { len });
                self.end(
                    EndReason::MessageTooBig,
                    crate::close::MESSAGE_TOO_BIG,
                    "message too big",
                );
            }
            Input::SocketClosed => self.end(EndReason::SocketClosed, CLOSE_NORMAL, "socket closed"),
            Input::Shutdown => self.end(EndReason::Shutdown, CLOSE_GOING_AWAY, "going away"),
            Input::SlowPeer => self.end(
                EndReason::SlowPeer,
                crate::close::POLICY,
                "peer is not reading",
            ),
            Input::Brain(command) => self.handle_brain(command),
        }
    }

    /// The timer from the last [`Output::Timeout`] fired (calling it early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        let span = self.span.clone();
        let _entered = span.enter();
        self.advance(now.max(self.now));
    }

    /// The next thing the driver must do; call until it returns [`Output::Timeout`]. After
    /// [`Output::Close`] only `Timeout`s far in the future come back.
    pub fn poll_output(&mut self) -> Output {
        loop {
            if let Some(output) = self.pending.pop_front() {
                return output;
            }
            if self.ended {
                return Output::Timeout(far_future(self.now));
            }
            if let Some(text) = self.pump() {
                return Output::Send(text);
            }
            if self.hangup_done() {
                let reason = self.hangup.clone().unwrap_or_default();
                self.end(EndReason::BrainHangup(reason), CLOSE_NORMAL, "hangup");
                continue;
            }
            return Output::Timeout(self.next_timeout());
        }
    }

    // ---- time ----

    /// Moves the clock to `now` and fires the deadlines that passed.
    fn advance(&mut self, now: Instant) {
        self.now = now;
        if self.ended {
            return;
        }
        let passed = |deadline: Option<Instant>| deadline.is_some_and(|d| now >= d);
        if passed(self.created.checked_add(self.cfg.max_call_duration)) {
            self.end(EndReason::MaxDuration, CLOSE_NORMAL, "max call duration");
        } else if self.call.is_none() && passed(self.created.checked_add(self.cfg.start_timeout)) {
            self.end(EndReason::StartTimeout, CLOSE_GOING_AWAY, "start timeout");
        } else if passed(self.last_rx.checked_add(self.cfg.idle_timeout)) {
            self.end(EndReason::IdleTimeout, CLOSE_GOING_AWAY, "idle timeout");
        } else if self.hangup_done() {
            let reason = self.hangup.clone().unwrap_or_default();
            self.end(EndReason::BrainHangup(reason), CLOSE_NORMAL, "hangup");
        }
    }

    fn next_timeout(&self) -> Instant {
        let mut at: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        consider(self.created.checked_add(self.cfg.max_call_duration));
        if self.call.is_none() {
            consider(self.created.checked_add(self.cfg.start_timeout));
        }
        consider(self.last_rx.checked_add(self.cfg.idle_timeout));
        if self.encoder.is_some() {
            consider(self.playout.next_send_at(self.now));
        }
        if self.hangup.is_some() && self.playout.is_empty() {
            let until = self.playout.buffered_until();
            consider(Some(if self.turns.outstanding_marks() == 0 {
                until
            } else {
                until + MARK_ECHO_GRACE
            }));
        }
        at.unwrap_or_else(|| far_future(self.now))
    }

    /// A hangup is pending and its audio has played (and its marks came back, or the grace for
    /// them passed).
    fn hangup_done(&self) -> bool {
        if self.hangup.is_none() || self.ended {
            return false;
        }
        if self.call.is_none() {
            return true;
        }
        let until = self.playout.buffered_until();
        self.playout.is_empty()
            && self.now >= until
            && (self.turns.outstanding_marks() == 0 || self.now >= until + MARK_ECHO_GRACE)
    }

    // ---- Twilio -> session ----

    fn handle_text(&mut self, text: &str) {
        if text.len() > MAX_MESSAGE_SIZE {
            self.bad_message(SessionError::Oversize { len: text.len() });
            return;
        }
        // `media` is handled while it borrows the decoder's buffers; every other event is owned
        // data and is handled after the borrow ends.
        let event = match self.decoder.decode(text) {
            Err(e) => Err(SessionError::Decode(e)),
            Ok(InboundEvent::Media(frame)) => {
                let result = match &self.call {
                    None => Err(SessionError::BeforeStart { event: "media" }),
                    Some(call) if call.stream_sid != frame.stream_sid => {
                        Err(SessionError::StreamSidMismatch {
                            expected: call.stream_sid.clone(),
                            found: excerpt(frame.stream_sid),
                        })
                    }
                    Some(_) => {
                        // Bidirectional streams carry only the caller's track; anything else
                        // is not the caller and must not reach the VAD.
                        if frame.track == Track::Inbound {
                            match self.caller_audio {
                                CallerAudio::Utterances | CallerAudio::UtterancesAndPauses => {
                                    self.inbound.process(frame.payload, &mut self.speech);
                                }
                                CallerAudio::Raw => {
                                    self.pending.push_back(Output::Brain(
                                        BrainEvent::CallerAudio {
                                            mulaw: frame.payload.to_vec(),
                                        },
                                    ));
                                }
                            }
                            self.summary.frames_in += 1;
                        }
                        Ok(())
                    }
                };
                match result {
                    Ok(()) => {
                        self.good_message();
                        self.handle_speech();
                    }
                    Err(e) => self.bad_message(e),
                }
                return;
            }
            // Move the owned payload out so the decoder's borrow ends.
            Ok(InboundEvent::Connected(_)) => Ok(()),
            Ok(InboundEvent::Start(m)) => self.handle_event(InboundMessage::Start(m)),
            Ok(InboundEvent::Dtmf(m)) => self.handle_event(InboundMessage::Dtmf(m)),
            Ok(InboundEvent::Mark(m)) => self.handle_event(InboundMessage::Mark(m)),
            Ok(InboundEvent::Stop(m)) => self.handle_event(InboundMessage::Stop(m)),
        };
        match event {
            Ok(()) => self.good_message(),
            Err(e) => self.bad_message(e),
        }
    }

    /// Every event but `media` (which `handle_text` handles in place).
    fn handle_event(&mut self, event: InboundMessage) -> Result<(), SessionError> {
        match event {
            InboundMessage::Media(_) | InboundMessage::Connected(_) => Ok(()),
            InboundMessage::Start(start) => {
                if self.call.is_some() {
                    return Err(SessionError::DuplicateStart);
                }
                let info = CallInfo {
                    call_sid: start.call_sid.as_str().to_owned(),
                    stream_sid: start.stream_sid.as_str().to_owned(),
                    account_sid: start.account_sid.as_str().to_owned(),
                    custom_parameters: start.custom_parameters,
                };
                self.span.record("call_sid", info.call_sid.as_str());
                info!(call_sid = %info.call_sid, stream_sid = %info.stream_sid, "stream started");
                self.summary.call_sid = Some(info.call_sid.clone());
                self.summary.stream_sid = Some(info.stream_sid.clone());
                self.encoder = Some(OutboundEncoder::new(start.stream_sid));
                self.pending
                    .push_back(Output::Brain(BrainEvent::CallStarted(info.clone())));
                self.call = Some(info);
                Ok(())
            }
            InboundMessage::Dtmf(dtmf) => {
                self.check_stream("dtmf", dtmf.stream_sid.as_str())?;
                self.summary.dtmf += 1;
                self.pending
                    .push_back(Output::Brain(BrainEvent::Dtmf(dtmf.digit.as_char())));
                Ok(())
            }
            InboundMessage::Mark(mark) => {
                self.check_stream("mark", mark.stream_sid.as_str())?;
                self.turns
                    .echo(&mark.name)
                    .map_err(|_| SessionError::UnknownMark {
                        name: excerpt(&mark.name),
                    })?;
                self.finish_played_turns();
                Ok(())
            }
            InboundMessage::Stop(stop) => {
                // `stop` before `start` is still the end of the stream.
                if self.call.is_some() {
                    self.check_stream("stop", stop.stream_sid.as_str())?;
                }
                self.end(EndReason::Stopped, CLOSE_NORMAL, "stream stopped");
                Ok(())
            }
        }
    }

    /// `event` may only come after `start`, for this stream.
    fn check_stream(&self, event: &'static str, stream_sid: &str) -> Result<(), SessionError> {
        match &self.call {
            None => Err(SessionError::BeforeStart { event }),
            Some(call) if call.stream_sid != stream_sid => Err(SessionError::StreamSidMismatch {
                expected: call.stream_sid.clone(),
                found: excerpt(stream_sid),
            }),
            Some(_) => Ok(()),
        }
    }

    fn good_message(&mut self) {
        self.consecutive_errors = 0;
    }

    /// Counts and logs a bad input; a run of `max_consecutive_errors` bad Twilio messages ends
    /// the session with the close code of the last one.
    fn bad_message(&mut self, error: SessionError) {
        let Some(code) = self.count_bad_message(error) else {
            return;
        };
        if self.consecutive_errors >= self.cfg.max_consecutive_errors.max(1) {
            self.end(EndReason::TooManyBadMessages, code, "too many bad messages");
        }
    }

    /// Counts and logs a bad input and keeps it as the last error; its close code, or `None`
    /// for brain-side errors (not counted: the peer did nothing wrong).
    fn count_bad_message(&mut self, error: SessionError) -> Option<u16> {
        let call_sid = self.call_sid().unwrap_or("-").to_owned();
        let Some(code) = error.close_code() else {
            warn!(call_sid = %call_sid, kind = error.kind(), error = %error, "skipping brain input");
            self.last_error = Some(error);
            return None;
        };
        self.summary.bad_messages += 1;
        self.consecutive_errors += 1;
        // Log the first few in full, then only at powers of two, so a flood cannot flood logs.
        let n = self.summary.bad_messages;
        if n <= 10 || n.is_power_of_two() {
            warn!(
                call_sid = %call_sid,
                kind = error.kind(),
                error = %error,
                bad_messages = n,
                run = self.consecutive_errors,
                "skipping bad Media Streams message"
            );
        } else {
            debug!(call_sid = %call_sid, kind = error.kind(), error = %error, "skipping bad Media Streams message");
        }
        self.last_error = Some(error);
        Some(code)
    }

    /// Turns what the last `media` frame produced into brain events (and barge-in).
    fn handle_speech(&mut self) {
        if self.speech.is_empty() {
            return;
        }
        let mut speech = std::mem::take(&mut self.speech);
        for s in speech.drain(..) {
            match s {
                Speech::Started => {
                    self.pending
                        .push_back(Output::Brain(BrainEvent::SpeechStarted));
                    self.barge_in();
                }
                Speech::Utterance(event) => {
                    self.summary.utterances += 1;
                    self.pending.push_back(Output::Brain(event));
                }
                Speech::Pause(event) => self.pending.push_back(Output::Brain(event)),
            }
        }
        self.speech = speech;
    }

    /// Caller speech onset: if the bot is playing, `clear` now and interrupt its turns.
    fn barge_in(&mut self) {
        if !self.cfg.barge_in || self.hangup.is_some() || !self.is_playing() {
            return;
        }
        self.interrupt();
    }

    /// [`BrainCommand::Interrupt`]: like a barge-in, on the brain's word, and `turn` and older
    /// turns take no more audio.
    fn brain_interrupt(&mut self, turn: TurnId) {
        if self.hangup.is_some() || self.encoder.is_none() {
            return;
        }
        let playing = self.is_playing();
        let interrupted = self.interrupt();
        if self.turns.retire_through(turn) {
            // No audio of `turn` ever came: it was heard for 0 ms.
            self.pending.push_back(Output::Brain(BrainEvent::BargeIn {
                turn,
                heard: String::new(),
                heard_ms: 0,
            }));
        } else if !playing && !interrupted {
            debug!(
                call_sid = self.call_sid().unwrap_or("-"),
                turn = turn.0,
                "interrupt: nothing was playing"
            );
        }
    }

    /// `clear` if anything is playing, then every unfinished turn is interrupted and reported
    /// with what was heard. Whether there was a turn to interrupt.
    fn interrupt(&mut self) -> bool {
        if self.encoder.is_none() {
            return false;
        }
        if self.is_playing()
            && let Some(encoder) = &mut self.encoder
        {
            // Before any further media: media is only produced by `poll_output`, after this.
            self.pending
                .push_back(Output::Send(encoder.clear().to_owned()));
            self.playout.clear(self.now);
            self.summary.barge_ins += 1;
        }
        let interrupted: Vec<_> = self.turns.interrupt_all().collect();
        let any = !interrupted.is_empty();
        for record in interrupted {
            // What the bot said can carry a candidate's personal data: its length at info, the
            // text itself only at debug.
            let heard_ms = record.heard_samples / 8;
            info!(
                call_sid = self.call_sid().unwrap_or("-"),
                turn = record.id.0,
                heard_chars = record.heard.chars().count(),
                heard_ms,
                "barge-in"
            );
            tracing::debug!(call_sid = self.call_sid().unwrap_or("-"), heard = %record.heard, "barge-in: text the caller heard");
            self.count_bot_turn(true);
            self.pending.push_back(Output::Brain(BrainEvent::BargeIn {
                turn: record.id,
                heard: record.heard,
                heard_ms,
            }));
        }
        any
    }

    fn finish_played_turns(&mut self) {
        while let Some(record) = self.turns.take_played() {
            self.count_bot_turn(false);
            self.pending
                .push_back(Output::Brain(BrainEvent::TurnPlayed { turn: record.id }));
        }
    }

    /// A bot turn finished: played out, or `interrupted`.
    fn count_bot_turn(&mut self, interrupted: bool) {
        self.summary.bot_turns += 1;
        self.summary.interrupted_bot_turns += u64::from(interrupted);
    }

    // ---- brain -> session ----

    fn handle_brain(&mut self, command: BrainCommand<'_>) {
        match command {
            BrainCommand::Audio {
                turn,
                pcm,
                sample_rate,
            } => {
                if !self.admit_audio(turn, pcm.len()) {
                    return;
                }
                match self.playout.push_audio(pcm, sample_rate) {
                    Ok(dropped) => self.count_overflow(dropped),
                    Err(source) => {
                        self.summary.dropped_brain_samples += pcm.len() as u64;
                        self.bad_message(SessionError::BrainAudio {
                            sample_rate,
                            source,
                        });
                    }
                }
            }
            BrainCommand::AudioMulaw { turn, mulaw } => {
                if self.admit_audio(turn, mulaw.len()) {
                    let dropped = self.playout.push_mulaw(mulaw);
                    self.count_overflow(dropped);
                }
            }
            BrainCommand::Interrupt { turn } => self.brain_interrupt(turn),
            BrainCommand::ChunkEnd { turn, text } => {
                if self.hangup.is_some() || !self.admit(turn) {
                    return;
                }
                let chunk = self.turns.next_chunk(turn);
                self.playout.push_mark(turn, chunk, text.to_owned());
            }
            BrainCommand::TurnEnd { turn } => match self.turns.admit(turn) {
                Admit::Open => self.end_open_turn(),
                Admit::New { .. } if self.hangup.is_none() => {
                    // A turn without audio: it has played, trivially.
                    self.admit(turn);
                    self.end_open_turn();
                }
                Admit::New { .. } | Admit::Stale => {}
            },
            BrainCommand::Hangup { reason } => {
                if self.hangup.is_none() {
                    info!(
                        call_sid = self.call_sid().unwrap_or("-"),
                        reason, "brain hangs up"
                    );
                    self.end_open_turn();
                    self.hangup = Some(reason.to_owned());
                }
            }
        }
    }

    /// Whether `len` samples of audio for `turn` are taken (counted as dropped if not); notes
    /// the start of a turn's audio for [`BrainEvent::TurnStarted`].
    fn admit_audio(&mut self, turn: TurnId, len: usize) -> bool {
        if self.hangup.is_some() || !self.admit(turn) {
            self.summary.dropped_brain_samples += len as u64;
            return false;
        }
        if len > 0 && self.announced_turn != Some(turn) {
            self.announced_turn = Some(turn);
            self.playout.note_turn_start(turn);
        }
        true
    }

    fn count_overflow(&mut self, dropped: u64) {
        if dropped == 0 {
            return;
        }
        if self.summary.overflow_samples == 0 {
            warn!(
                call_sid = self.call_sid().unwrap_or("-"),
                "outbound audio queue full; dropping bot audio"
            );
        }
        self.summary.overflow_samples += dropped;
    }

    /// Whether `turn` takes audio; opens it (ending the open one) if it is new.
    fn admit(&mut self, turn: TurnId) -> bool {
        match self.turns.admit(turn) {
            Admit::Open => true,
            Admit::New { end } => {
                if end.is_some() {
                    self.end_open_turn();
                }
                self.turns.open(turn);
                true
            }
            Admit::Stale => false,
        }
    }

    /// Ends the open turn; audio after its last `ChunkEnd` becomes a chunk with no text.
    fn end_open_turn(&mut self) {
        let Some(turn) = self.turns.open_turn() else {
            return;
        };
        if self.playout.has_unmarked_audio() {
            let chunk = self.turns.next_chunk(turn);
            self.playout.push_mark(turn, chunk, String::new());
        }
        self.turns.end_open();
        self.finish_played_turns();
    }

    // ---- session -> Twilio ----

    /// The next `media` or `mark` text that may go at `self.now`.
    fn pump(&mut self) -> Option<String> {
        let encoder = self.encoder.as_mut()?;
        match self.playout.next(self.now) {
            Next::Wait => None,
            Next::Frame(mulaw) => {
                self.summary.frames_out += 1;
                let text = encoder.media(mulaw).to_owned();
                // Returned before the event: `pending` is drained on the next poll.
                while let Some(turn) = self.playout.take_started() {
                    self.pending
                        .push_back(Output::Brain(BrainEvent::TurnStarted {
                            turn,
                            at: self.now,
                        }));
                }
                Some(text)
            }
            Next::Mark(mark) => {
                write_mark_name(&mut self.mark_name, mark.turn, mark.chunk);
                let text = encoder.mark(&self.mark_name).to_owned();
                self.turns
                    .mark_sent(mark.turn, mark.chunk, mark.text, mark.samples);
                self.summary.marks_sent += 1;
                Some(text)
            }
        }
    }

    // ---- teardown ----

    fn end(&mut self, reason: EndReason, code: u16, close_reason: &'static str) {
        if self.ended {
            return;
        }
        self.ended = true;
        let mut speech = std::mem::take(&mut self.speech);
        self.inbound.finish(&mut speech);
        for s in speech.drain(..) {
            if let Speech::Utterance(event) = s {
                self.summary.utterances += 1;
                self.pending.push_back(Output::Brain(event));
            }
        }
        // Nothing more goes to Twilio once the call is over.
        self.pending.retain(|o| !matches!(o, Output::Send(_)));
        self.playout.clear(self.now);
        let drained = matches!(reason, EndReason::BrainHangup(_));
        if self.turns.has_unfinished() {
            let unfinished = self.turns.interrupt_all().count() as u64;
            self.summary.bot_turns += unfinished;
            if !drained {
                self.summary.interrupted_bot_turns += unfinished;
            }
        }
        info!(
            call_sid = self.call_sid().unwrap_or("-"),
            reason = ?reason,
            code,
            frames_in = self.summary.frames_in,
            frames_out = self.summary.frames_out,
            bad_messages = self.summary.bad_messages,
            barge_ins = self.summary.barge_ins,
            "session ended"
        );
        self.summary.end_reason = Some(reason.clone());
        self.pending
            .push_back(Output::Brain(BrainEvent::CallEnded { reason }));
        self.pending.push_back(Output::Close {
            code,
            reason: close_reason,
        });
    }
}

/// An instant so far ahead that a driver sleeping until it will be woken by something else.
fn far_future(now: Instant) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    now.checked_add(YEAR)
        .or_else(|| now.checked_add(Duration::from_secs(3600)))
        .unwrap_or(now)
}
