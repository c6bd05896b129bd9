//! Twilio's side of one ConversationRelay session, in real time over a real socket.
//!
//! Sends `setup`, then plays a scripted candidate: each answer becomes a `prompt` after the
//! time the candidate takes to say it plus Twilio's end-of-speech detection; key presses are
//! `dtmf`; talking over the bot sends `interrupt` with the text heard so far. The bot's `text`
//! tokens are "spoken" by a TTS model at a fixed rate per character, so the candidate answers
//! only after the bot has finished talking, and an interrupt knows how much was heard. `end`
//! closes the session with its `handoffData`.
//! (<https://www.twilio.com/docs/voice/conversationrelay/websocket-messages>)

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use voxbridge_twilio::relay::{InboundMessage, Interrupt, OutboundMessage, Prompt};

use crate::call::{CallEnd, CallOutcome, Speaker, TranscriptLine, TranscriptTap, us};
use crate::scenario::{Action, Director, Step};
use crate::stats::Recorder;
use crate::ws::{self, ConnectError, Route};

/// Why a ConversationRelay session failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayCallError {
    /// The WebSocket could not be opened.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The socket failed mid-call.
    #[error("socket error: {0}")]
    Socket(String),
}

/// Timing of the simulated speech on both sides.
#[derive(Debug, Clone)]
pub struct RelayCallOptions {
    /// How long Twilio's TTS takes per character of bot text. Default 60 ms (about 170 words
    /// a minute).
    pub tts_ms_per_char: u64,
    /// How long the candidate takes per word. Default 350 ms.
    pub caller_ms_per_word: u64,
    /// Twilio's end-of-speech detection before it sends the `prompt`. Default 500 ms.
    pub endpoint_ms: u64,
    /// Hang up at this session time even if the scenario has not.
    pub hangup_at: Option<Duration>,
    /// Upper bound on the session's length. Default 10 minutes.
    pub max_duration: Duration,
    /// WebSocket connect timeout. Default 10 s.
    pub connect_timeout: Duration,
}

impl Default for RelayCallOptions {
    fn default() -> Self {
        Self {
            tts_ms_per_char: 60,
            caller_ms_per_word: 350,
            endpoint_ms: 500,
            hangup_at: None,
            max_duration: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl RelayCallOptions {
    /// No speaking time on either side: prompts go out as soon as the bot's talk cycle ends
    /// (load tests of the server's own latency).
    pub fn instant() -> Self {
        Self {
            tts_ms_per_char: 0,
            caller_ms_per_word: 0,
            endpoint_ms: 0,
            ..Self::default()
        }
    }
}

/// One ConversationRelay session to open.
#[derive(Debug, Clone)]
pub struct RelayCall {
    /// The `<ConversationRelay url>` from the TwiML (`wss://`); signed as is.
    pub url: String,
    /// Where to actually dial.
    pub route: Route,
    /// Auth token for `X-Twilio-Signature` (`None`: unsigned).
    pub auth_token: Option<String>,
    /// The `setup` message (JSON object).
    pub setup: serde_json::Value,
    /// `welcomeGreeting`, spoken by Twilio before any token.
    pub welcome_greeting: Option<String>,
    /// The scripted candidate.
    pub steps: Arc<[Step]>,
    /// Timing.
    pub options: RelayCallOptions,
}

impl RelayCall {
    /// The call SID from `setup`.
    pub fn call_sid(&self) -> &str {
        self.setup["callSid"].as_str().unwrap_or("")
    }
}

/// Builds a `setup` message as Twilio sends it for an answered outbound API call.
pub fn setup_message(
    session_id: &str,
    account_sid: &str,
    call_sid: &str,
    from: &str,
    to: &str,
    custom_parameters: &std::collections::BTreeMap<String, String>,
) -> serde_json::Value {
    json!({
        "type": "setup",
        "sessionId": session_id,
        "accountSid": account_sid,
        "parentCallSid": "",
        "callSid": call_sid,
        "from": from,
        "to": to,
        "forwardedFrom": "",
        "callType": "PSTN",
        "callerName": "",
        "direction": "outbound-api",
        "callStatus": "IN-PROGRESS",
        "customParameters": custom_parameters,
    })
}

/// The bot's current talk cycle as the TTS model speaks it.
#[derive(Debug, Default)]
struct BotSpeech {
    /// Text received in this cycle.
    text: String,
    /// When speaking of the cycle started.
    started_us: u64,
    /// When the text received so far will have been spoken.
    finish_us: u64,
    /// `(start time, char offset, char count)` of each token as spoken.
    pieces: Vec<(u64, usize, usize)>,
    /// The cycle's last token has arrived.
    complete: bool,
    active: bool,
}

impl BotSpeech {
    fn push(&mut self, now_us: u64, token: &str, last: bool, us_per_char: u64) {
        if !self.active {
            *self = Self {
                started_us: now_us,
                finish_us: now_us,
                active: true,
                ..Self::default()
            };
        }
        let start = self.finish_us.max(now_us);
        let chars = token.chars().count();
        self.pieces.push((start, self.text.chars().count(), chars));
        self.text.push_str(token);
        self.finish_us = start + chars as u64 * us_per_char;
        self.complete |= last;
    }

    /// The text spoken by `now_us`.
    fn heard(&self, now_us: u64, us_per_char: u64) -> String {
        let mut spoken = 0;
        for &(start, offset, count) in &self.pieces {
            if now_us < start {
                break;
            }
            let done = (now_us - start)
                .checked_div(us_per_char)
                .map_or(count, |n| (n as usize).min(count));
            spoken = offset + done;
        }
        self.text.chars().take(spoken).collect()
    }

    fn done(&self, now_us: u64) -> bool {
        self.active && self.complete && now_us >= self.finish_us
    }
}

struct Session<'a> {
    call: &'a RelayCall,
    recorder: &'a Recorder,
    tap: &'a TranscriptTap,
    director: Director,
    outcome: CallOutcome,
    bot: BotSpeech,
    us_per_char: u64,
    /// A prompt waiting for the candidate to finish speaking: (due, text).
    pending_prompt: Option<(u64, String)>,
    /// When the last prompt was sent (for prompt -> first token).
    prompt_sent_us: Option<u64>,
    /// When the candidate started talking over the bot.
    barge_in_at_us: Option<u64>,
    first_token: bool,
}

impl Session<'_> {
    fn line(&mut self, at_us: u64, speaker: Speaker, text: String, interrupted: bool) {
        let line = TranscriptLine {
            at_ms: at_us / 1000,
            speaker,
            text,
            interrupted,
        };
        self.outcome.say(self.tap, self.call.call_sid(), line);
    }

    fn bot_finished(&mut self, now_us: u64) {
        let started = self.bot.started_us;
        let text = std::mem::take(&mut self.bot.text);
        self.bot.active = false;
        self.outcome.bot_turns += 1;
        self.line(started, Speaker::Bot, text, false);
        self.director
            .handle_bot_done(now_us.max(self.bot.finish_us));
    }

    fn handle_token(&mut self, now_us: u64, token: &str, last: bool) {
        Recorder::bump(&self.recorder.tokens_received);
        if !self.bot.active {
            if !self.first_token {
                self.first_token = true;
                self.recorder.first_audio_us.record(now_us);
            }
            if let Some(at) = self.barge_in_at_us.take() {
                self.recorder.barge_in_us.record(now_us.saturating_sub(at));
            }
            self.director.handle_bot_started(now_us);
        }
        if let Some(sent) = self.prompt_sent_us.take() {
            self.recorder
                .first_token_us
                .record(now_us.saturating_sub(sent));
        }
        self.bot.push(now_us, token, last, self.us_per_char);
    }

    /// Runs due actions; returns the messages to send and whether to hang up.
    fn poll(&mut self, now_us: u64, out: &mut Vec<String>) -> bool {
        if self.bot.done(now_us) {
            self.bot_finished(now_us);
        }
        if let Some((due, _)) = &self.pending_prompt
            && now_us >= *due
            && let Some((_, text)) = self.pending_prompt.take()
        {
            out.push(
                InboundMessage::Prompt(Prompt {
                    voice_prompt: text,
                    lang: Some("en-US".to_owned()),
                    last: true,
                })
                .to_json(),
            );
            self.prompt_sent_us = Some(now_us);
        }
        let mut hangup = false;
        while let Some(action) = self.director.poll(now_us) {
            match action {
                Action::Say { text, .. } => {
                    if self.bot.active {
                        // Talking over the bot: Twilio stops the TTS and reports what was
                        // spoken.
                        let heard = self.bot.heard(now_us, self.us_per_char);
                        let duration = now_us.saturating_sub(self.bot.started_us) / 1000;
                        out.push(
                            InboundMessage::Interrupt(Interrupt {
                                utterance_until_interrupt: heard.clone(),
                                duration_until_interrupt_ms: Some(duration),
                            })
                            .to_json(),
                        );
                        let started = self.bot.started_us;
                        self.bot = BotSpeech::default();
                        self.outcome.bot_turns += 1;
                        self.line(started, Speaker::Bot, heard, true);
                        self.barge_in_at_us = Some(now_us);
                    }
                    let words = text.split_whitespace().count() as u64;
                    let due = now_us
                        + words * self.call.options.caller_ms_per_word * 1000
                        + self.call.options.endpoint_ms * 1000;
                    self.line(now_us, Speaker::Caller, text.clone(), false);
                    self.pending_prompt = Some((due, text));
                }
                Action::Dtmf(digits) => {
                    self.line(
                        now_us,
                        Speaker::Caller,
                        format!("(presses {digits})"),
                        false,
                    );
                    for digit in digits.chars() {
                        out.push(json!({"type": "dtmf", "digit": digit.to_string()}).to_string());
                    }
                }
                Action::Silence => {}
                Action::Hangup => hangup = true,
            }
        }
        hangup
    }

    fn next_due(&self) -> Option<u64> {
        let bot = (self.bot.active && self.bot.complete).then_some(self.bot.finish_us);
        [
            bot,
            self.pending_prompt.as_ref().map(|(due, _)| *due),
            self.director.next_due_us(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Opens the session and runs the scenario until the server sends `end`, the caller hangs
/// up, the server closes, `cancel` fires or the maximum length passes.
pub async fn run_relay_call(
    call: &RelayCall,
    recorder: &Recorder,
    tap: &TranscriptTap,
    cancel: &CancellationToken,
) -> Result<CallOutcome, RelayCallError> {
    let span = tracing::info_span!("sim_relay_call", call_sid = %call.call_sid());
    run(call, recorder, tap, cancel).instrument(span).await
}

#[allow(clippy::too_many_lines)] // one select loop; its arms are short
async fn run(
    call: &RelayCall,
    recorder: &Recorder,
    tap: &TranscriptTap,
    cancel: &CancellationToken,
) -> Result<CallOutcome, RelayCallError> {
    let socket = crate::call::open(
        &call.url,
        &call.route,
        call.auth_token.as_deref(),
        call.options.connect_timeout,
        recorder,
    )
    .await?;
    let (mut sink, mut stream) = socket.split();
    let mut session = Session {
        call,
        recorder,
        tap,
        director: Director::new(call.steps.clone()),
        outcome: CallOutcome::default(),
        bot: BotSpeech::default(),
        us_per_char: call.options.tts_ms_per_char * 1000,
        pending_prompt: None,
        prompt_sent_us: None,
        barge_in_at_us: None,
        first_token: false,
    };
    let start = Instant::now();
    let now_us = || us(start.elapsed());
    let mut out = Vec::new();
    let result: Result<CallEnd, RelayCallError> = async {
        send(&mut sink, call.setup.to_string()).await?;
        session.director.handle_connected(0);
        if let Some(greeting) = &call.welcome_greeting {
            session.handle_token(0, greeting, true);
            // The greeting is Twilio's, not a reply: no latency sample.
            session.first_token = false;
        }
        let hangup_at = call.options.hangup_at.map(us);
        let max_us = us(call.options.max_duration);
        let sleep = tokio::time::sleep_until(start);
        tokio::pin!(sleep);
        loop {
            let now = now_us();
            let hangup = session.poll(now, &mut out);
            for message in out.drain(..) {
                send(&mut sink, message).await?;
            }
            if hangup || hangup_at.is_some_and(|at| now >= at) {
                session.line(now, Speaker::Caller, "(hangs up)".to_owned(), false);
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    })))
                    .await;
                return Ok(CallEnd::CallerHungUp);
            }
            if now >= max_us {
                return Ok(CallEnd::MaxDuration);
            }
            let next = session
                .next_due()
                .into_iter()
                .chain(hangup_at)
                .chain([max_us])
                .min()
                .unwrap_or(max_us);
            sleep
                .as_mut()
                .reset(start + Duration::from_micros(next.max(now)));
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    let now = now_us();
                    if session.bot.active {
                        // Cut off by a redirect or hang-up: keep what was heard.
                        let heard = session.bot.heard(now, session.us_per_char);
                        let started = session.bot.started_us;
                        session.bot = BotSpeech::default();
                        session.line(started, Speaker::Bot, heard, true);
                    }
                    let _ = sink.close().await;
                    return Ok(CallEnd::Cancelled);
                }
                message = stream.next() => {
                    let now = now_us();
                    match message {
                        Some(Ok(Message::Text(text))) => match OutboundMessage::parse(text.as_str()) {
                            Ok(OutboundMessage::Text(t)) => session.handle_token(now, &t.token, t.last),
                            Ok(OutboundMessage::End(end)) => {
                                if session.bot.active {
                                    session.bot_finished(now);
                                }
                                session.line(now, Speaker::Bot, "(ends the session)".to_owned(), false);
                                session.outcome.handoff_data = end.handoff_data;
                                let _ = sink.close().await;
                                return Ok(CallEnd::SessionEnded);
                            }
                            Ok(OutboundMessage::Play(play)) => {
                                session.handle_token(now, &format!("(plays {})", play.source.as_str()), true);
                            }
                            Ok(OutboundMessage::SendDigits(_) | OutboundMessage::Language(_)) => {}
                            Err(e) => {
                                // Twilio reports an invalid message with an `error` and error 64107.
                                tracing::warn!(error = %e, "invalid message from the server");
                                recorder.error("invalid relay message from server");
                                let report = json!({"type": "error", "description": format!("Invalid message received: {e}")});
                                send(&mut sink, report.to_string()).await?;
                            }
                        },
                        Some(Ok(Message::Close(frame))) => {
                            let code = frame.map_or(1005, |f| u16::from(f.code));
                            return Ok(CallEnd::ServerClosed(code));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(RelayCallError::Socket(e.to_string())),
                        None => return Ok(CallEnd::ServerClosed(1006)),
                    }
                }
                () = &mut sleep => {}
            }
        }
    }
    .await;
    let mut outcome = session.outcome;
    outcome.duration = start.elapsed();
    crate::call::finish(result, outcome, recorder)
}

type Sink = futures::stream::SplitSink<ws::Socket, Message>;

async fn send(sink: &mut Sink, text: String) -> Result<(), RelayCallError> {
    sink.send(Message::text(text))
        .await
        .map_err(|e| RelayCallError::Socket(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    #[test]
    fn tts_model_speaks_tokens_in_order_at_its_rate() {
        let mut bot = BotSpeech::default();
        bot.push(0, "Hello ", false, 10 * MS);
        bot.push(20 * MS, "there.", true, 10 * MS);
        assert_eq!(bot.heard(0, 10 * MS), "");
        assert_eq!(bot.heard(35 * MS, 10 * MS), "Hel");
        // The second token queues behind the first (60 ms), not from its arrival.
        assert_eq!(bot.heard(65 * MS, 10 * MS), "Hello ");
        assert_eq!(bot.heard(85 * MS, 10 * MS), "Hello th");
        assert!(!bot.done(119 * MS));
        assert!(bot.done(120 * MS));
    }

    #[test]
    fn setup_message_parses_as_twilio_setup() {
        let params =
            std::collections::BTreeMap::from([("candidateId".to_owned(), "c-1".to_owned())]);
        let setup = setup_message(
            "VX00000000000000000000000000000001",
            "AC00000000000000000000000000000001",
            "CA00000000000000000000000000000001",
            "+14155550100",
            "+14155550123",
            &params,
        );
        let InboundMessage::Setup(setup) = InboundMessage::parse(&setup.to_string()).unwrap()
        else {
            panic!("expected setup");
        };
        assert_eq!(setup.custom_parameters["candidateId"], "c-1");
        assert_eq!(setup.parent_call_sid, None);
        assert_eq!(setup.to.phone().unwrap().as_str(), "+14155550123");
    }
}
