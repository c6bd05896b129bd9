//! The `realtime` brain's task: one speech-to-speech session per call, bot audio as mu-law
//! turns, barge-in with truncation at the heard position, reconnection and the spoken
//! apology. See the [module docs](super).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, Span, debug, info, warn};

use super::latency::Latencies;
use super::screening::Screening;
use super::{
    AGENT, END_CALL, RealtimeTranscript, Shared, Speaker, TranscriptLine, instruction_tools,
};
use crate::pipeline::tone;
use voxbridge_brain::outcome::{CallOutcome, Payload};
use voxbridge_brain::{
    BoxFuture, Brain, BrainEvent, BrainIo, BrainResult, Command, TurnId, VoiceCallReport,
};
use voxbridge_speech::{
    ProviderError, SpeechInput, SpeechOutput, SpeechSession, SpeechSessionSetup, Stage, ToolCall,
};

/// Longest wait for the provider to take one input before it counts as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between connection attempts (a 429's `Retry-After` is honoured up to 2 s).
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Bot audio held here until the session takes it (providers send faster than real time):
/// two minutes of mu-law at most.
const MAX_PENDING_BYTES: usize = 8000 * 120;
/// The first response after a reconnection.
const RESUME_INSTRUCTIONS: &str = "The phone line dropped for a moment and is back. Apologise \
                                   in a few words and continue the conversation where it \
                                   stopped.";
/// How much of the conversation so far a reconnected session is told (characters).
const CONTEXT_CHARS: usize = 4000;
/// Follow-ups asked in a row for responses of tool calls only (as the LLM screening agent's
/// tool rounds per turn).
const MAX_TOOL_ROUNDS: u8 = 4;

/// Response instructions that make the model say `line` word for word.
fn say_exactly(line: &str) -> String {
    format!("Say exactly these words, and nothing else: \"{line}\"")
}

/// One call's realtime brain.
pub(super) struct RealtimeBrain {
    pub(super) shared: Arc<Shared>,
    pub(super) instructions: String,
    /// `mode = "screening"`: the call's script.
    pub(super) screening: Option<Screening>,
    pub(super) call_sid: String,
    pub(super) span: Span,
}

impl Brain for RealtimeBrain {
    fn run(self: Box<Self>, io: BrainIo) -> BoxFuture<BrainResult> {
        let span = self.span.clone();
        Box::pin(run(*self, io).instrument(span))
    }
}

/// The assistant item whose audio is arriving.
#[derive(Debug)]
struct Item {
    id: String,
    turn: TurnId,
    /// Bytes queued since the last chunk end.
    unmarked: usize,
    transcript: Option<String>,
}

type Connecting = BoxFuture<Result<Box<dyn SpeechSession>, (ProviderError, u32)>>;

/// Whether the call is being ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    No,
    /// `end_call` came: hang up once the response is done.
    AfterResponse(String),
    /// The hangup was sent: nothing more is said.
    HungUp,
}

/// The brain's state; the channels live in [`run`].
// Independent flags of the provider's protocol (session closing, response open, audio seen,
// tool results owed, input waiting, provider gone): an enum would not fit them.
#[allow(clippy::struct_excessive_bools)]
struct Live {
    shared: Arc<Shared>,
    instructions: String,
    screening: Option<Screening>,
    call_sid: String,
    interrupts: mpsc::Sender<TurnId>,
    session: Option<Box<dyn SpeechSession>>,
    /// The session refused an input (its socket is gone): nothing more is sent, and what it
    /// still has buffered is read until it ends.
    closing: bool,
    connecting: Option<Connecting>,
    /// The connection being made replaces a lost one.
    resuming: bool,
    reconnects: u32,
    last_error: Option<ProviderError>,
    /// Commands waiting for room in the session's channel.
    pending: VecDeque<Command>,
    pending_bytes: usize,
    next_turn: u64,
    current: Option<Item>,
    /// Turns the session has not finished (played or interrupted), with their item, oldest
    /// first.
    unfinished: Vec<(TurnId, String)>,
    /// Items cut by barge-in: their late audio is dropped.
    cut: HashSet<String>,
    /// A response is producing audio (seen audio, no `response.done` yet).
    responding: bool,
    /// A response was asked for or started (by us or the server VAD), not yet done: another
    /// `response.create` now would be refused.
    response_open: bool,
    /// Tool results were sent during the open response: the model continues after it.
    tool_answered: bool,
    /// Input the model must answer came during an open response: respond after it.
    respond_after: bool,
    /// Audio came after the open response's last tool call (a response that only spoke
    /// before it still owes the model's follow-up).
    spoke_after_tool: bool,
    /// The provider's VAD hears the caller now: the response to their turn comes by itself
    /// when they stop (and sees every tool result and key line sent meanwhile).
    caller_speaking: bool,
    /// Follow-ups asked in a row for responses of tool calls only (a model that never speaks
    /// is not asked forever).
    tool_rounds: u8,
    /// The closing line being said (asked again if the session is lost before it is done).
    closing_line: Option<String>,
    /// Screening: the bot finished speaking and the caller has said nothing since.
    quiet_since: Option<Instant>,
    /// The provider is gone for good (the apology was queued).
    provider_failed: bool,
    ending: Ending,
    latency: Latencies,
    lines: Vec<TranscriptLine>,
    /// Bot line index by item.
    bot_lines: HashMap<String, usize>,
    /// Heard ms of cut items (their transcript may come later).
    heard: HashMap<String, u64>,
    caller_bytes: u64,
    unsent_caller_frames: u64,
    /// When the brain started: transcript `at_ms` count from here.
    started: Instant,
    /// The same instant on the wall clock, for the report.
    started_at: SystemTime,
}

async fn run(brain: RealtimeBrain, io: BrainIo) -> BrainResult {
    let BrainIo {
        mut events,
        commands,
        interrupts,
        cancel,
    } = io;
    let mut live = Live::new(brain, interrupts);
    if let Some(screening) = &live.screening {
        info!(
            screening = %screening.script_id(),
            "realtime screening: the script runs through the model's tools"
        );
    }
    live.connecting = Some(live.connect(live.setup(None)));
    let mut prerender: Option<BoxFuture<()>> = (live.shared.options.fallback_tts.is_some()
        && !live.shared.apology.initialized())
    .then(|| {
        let shared = Arc::clone(&live.shared);
        Box::pin(async move {
            if let Err(e) = shared.prerender().await {
                warn!(error = %e, "could not pre-render the apology");
            }
        }) as BoxFuture<()>
    });
    loop {
        let silence_at = live.silence_deadline();
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            event = events.recv() => {
                let Some(event) = event else { break };
                if !live.on_event(event).await {
                    break;
                }
            }
            output = next_output(live.session.as_mut()), if live.session.is_some() => {
                live.on_output(output).await;
            }
            connected = async { live.connecting.as_mut().expect("guarded by is_some").await },
                if live.connecting.is_some() => {
                live.connecting = None;
                live.on_connected(connected).await;
            }
            permit = commands.reserve(), if !live.pending.is_empty() => {
                let Ok(permit) = permit else { break };
                if let Some(command) = live.pending.pop_front() {
                    live.pending_bytes -= audio_len(&command);
                    permit.send(command);
                }
            }
            () = async { prerender.as_mut().expect("guarded by is_some").await },
                if prerender.is_some() => prerender = None,
            () = sleep_until(silence_at) => live.on_silence().await,
        }
    }
    Ok(Some(live.finish()))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn next_output(
    session: Option<&mut Box<dyn SpeechSession>>,
) -> BoxFuture<Option<Result<SpeechOutput, ProviderError>>> {
    match session {
        Some(session) => session.next(),
        None => Box::pin(std::future::pending()),
    }
}

fn audio_len(command: &Command) -> usize {
    match command {
        Command::AudioMulaw { mulaw, .. } => mulaw.len(),
        _ => 0,
    }
}

fn turn_of(command: &Command) -> Option<TurnId> {
    match command {
        Command::Audio { turn, .. }
        | Command::AudioMulaw { turn, .. }
        | Command::ChunkEnd { turn, .. }
        | Command::TurnEnd { turn } => Some(*turn),
        Command::Hangup { .. } | Command::Interrupt { .. } => None,
    }
}

impl Live {
    fn new(brain: RealtimeBrain, interrupts: mpsc::Sender<TurnId>) -> Self {
        let metrics = Arc::clone(&brain.shared.options.metrics);
        Self {
            shared: brain.shared,
            instructions: brain.instructions,
            screening: brain.screening,
            call_sid: brain.call_sid,
            interrupts,
            session: None,
            closing: false,
            connecting: None,
            resuming: false,
            reconnects: 0,
            last_error: None,
            pending: VecDeque::new(),
            pending_bytes: 0,
            next_turn: 1,
            current: None,
            unfinished: Vec::new(),
            cut: HashSet::new(),
            responding: false,
            response_open: false,
            tool_answered: false,
            respond_after: false,
            spoke_after_tool: false,
            caller_speaking: false,
            tool_rounds: 0,
            closing_line: None,
            quiet_since: None,
            provider_failed: false,
            ending: Ending::No,
            latency: Latencies::new(metrics),
            lines: Vec::new(),
            bot_lines: HashMap::new(),
            heard: HashMap::new(),
            caller_bytes: 0,
            unsent_caller_frames: 0,
            started: Instant::now(),
            started_at: SystemTime::now(),
        }
    }

    /// Milliseconds since the brain started (transcript times).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn hung_up(&self) -> bool {
        self.ending == Ending::HungUp
    }

    /// The session setup; after a reconnection the instructions carry the conversation.
    fn setup(&self, context: Option<String>) -> SpeechSessionSetup {
        let (mut instructions, tools) = match &self.screening {
            Some(screening) => (screening.instructions(), Screening::specs()),
            None => (self.instructions.clone(), instruction_tools()),
        };
        if let Some(context) = context {
            instructions.push_str(
                "\n\nThe call was cut off by a technical problem and has been reconnected. \
                 The conversation so far:\n",
            );
            instructions.push_str(&context);
            if let Some(screening) = &self.screening {
                instructions.push_str(&screening.progress());
            }
        }
        SpeechSessionSetup {
            instructions,
            voice: None,
            tools,
        }
    }

    /// The transcript so far as `Caller:` / `You:` lines, the most recent `CONTEXT_CHARS`.
    fn context(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            let who = match line.speaker {
                Speaker::Caller => "Caller",
                Speaker::Bot => "You",
            };
            let _ = writeln!(text, "{who}: {}", line.text);
        }
        if text.len() > CONTEXT_CHARS {
            let mut cut = text.len() - CONTEXT_CHARS;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text.drain(..cut);
        }
        text
    }

    /// Connects with up to `connect_attempts` tries (retryable errors only).
    fn connect(&self, setup: SpeechSessionSetup) -> Connecting {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let attempts = shared.config.connect_attempts.max(1);
            let mut tried = 0;
            loop {
                tried += 1;
                match shared.provider.connect(setup.clone()).await {
                    Ok(session) => return Ok(session),
                    Err(e) if tried < attempts && e.is_retryable() => {
                        let pause = match &e {
                            ProviderError::RateLimited {
                                retry_after: Some(after),
                                ..
                            } => (*after).min(Duration::from_secs(2)),
                            _ => RETRY_PAUSE,
                        };
                        warn!(error = %e, attempt = tried, "realtime connect failed; retrying");
                        tokio::time::sleep(pause).await;
                    }
                    Err(e) => return Err((e, tried)),
                }
            }
        })
    }

    async fn on_connected(&mut self, result: Result<Box<dyn SpeechSession>, (ProviderError, u32)>) {
        match result {
            Ok(session) => {
                info!(
                    provider = self.shared.provider.name(),
                    resumed = self.resuming,
                    "realtime session open"
                );
                self.session = Some(session);
                self.response_open = false;
                let now_ms = self.now_ms();
                let closing = self
                    .screening
                    .as_mut()
                    .and_then(|s| s.take_closing(now_ms, false));
                if let Some((line, reason)) = closing {
                    // The screening ended just before the session was lost: close now.
                    self.say_then_hang_up(line, reason).await;
                } else if let (Ending::AfterResponse(_), Some(line)) =
                    (&self.ending, self.closing_line.clone())
                {
                    // The closing line was being said: say it on the new session.
                    self.respond(Some(say_exactly(&line))).await;
                } else if self.resuming {
                    self.respond(Some(RESUME_INSTRUCTIONS.to_owned())).await;
                } else if self.screening.is_some() {
                    // The script's instructions say how to start (its greeting).
                    self.respond(None).await;
                } else if let Some(greeting) =
                    Some(self.shared.config.greeting.clone()).filter(|g| !g.trim().is_empty())
                {
                    self.respond(Some(greeting)).await;
                }
            }
            Err((error, attempts)) => self.fail(&error, attempts),
        }
    }

    /// Returns `false` when the call is over.
    async fn on_event(&mut self, event: BrainEvent) -> bool {
        match event {
            BrainEvent::CallerAudio { mulaw } => {
                self.caller_bytes += mulaw.len() as u64;
                if self.session.is_some() && !self.closing {
                    self.send(SpeechInput::CallerAudio(mulaw)).await;
                } else {
                    self.unsent_caller_frames += 1;
                }
            }
            BrainEvent::BargeIn { turn, heard_ms, .. } => self.on_barge_in(turn, heard_ms).await,
            BrainEvent::TurnStarted { turn, at } => {
                self.latency.turn_started(turn, Instant::from_std(at));
            }
            BrainEvent::TurnPlayed { turn } => {
                self.unfinished.retain(|(t, _)| *t != turn);
                self.maybe_quiet();
            }
            BrainEvent::Dtmf(digit) => self.on_key(digit).await,
            BrainEvent::CallEnded { .. } => return false,
            BrainEvent::CallStarted(_)
            | BrainEvent::SpeechStarted
            | BrainEvent::Pause { .. }
            | BrainEvent::Utterance { .. } => {}
        }
        true
    }

    async fn on_output(&mut self, output: Option<Result<SpeechOutput, ProviderError>>) {
        let output = match output {
            None => {
                let error = self.last_error.take().unwrap_or(ProviderError::Transport {
                    stage: Stage::SpeechToSpeech,
                    message: "the provider closed the session".to_owned(),
                });
                self.lost(&error);
                return;
            }
            Some(Err(e)) => {
                // The session stays open after an `error` event; a closed one ends with `None`.
                warn!(error = %e, "realtime provider reported an error");
                self.last_error = Some(e);
                return;
            }
            Some(Ok(output)) => output,
        };
        match output {
            SpeechOutput::SpeechStarted => {
                self.quiet_since = None;
                self.caller_speaking = true;
                if let Some(screening) = self.screening.as_mut() {
                    screening.speech_started();
                }
                self.on_speech_started();
            }
            SpeechOutput::SpeechStopped => {
                self.latency
                    .speech_stopped(Duration::from_millis(self.caller_bytes / 8));
                // The server VAD answers the caller's turn with a response, which sees every
                // tool result and key line sent so far: nothing more to ask for.
                self.caller_speaking = false;
                self.response_open = true;
                self.respond_after = false;
                self.tool_rounds = 0;
            }
            SpeechOutput::BotAudio { item_id, mulaw } => self.on_bot_audio(item_id, &mulaw),
            SpeechOutput::CallerTranscript(text) => {
                if !text.trim().is_empty() {
                    if let Some(screening) = self.screening.as_mut() {
                        screening.caller_spoke();
                    }
                    debug!(%text, "caller said");
                    let at_ms = self.now_ms();
                    self.lines.push(TranscriptLine {
                        at_ms,
                        speaker: Speaker::Caller,
                        text,
                        heard_ms: None,
                    });
                }
            }
            SpeechOutput::BotTranscript { item_id, text } => {
                debug!(%text, item = %item_id, "bot said");
                if let Some(item) = self.current.as_mut().filter(|c| c.id == item_id) {
                    item.transcript = Some(text.clone());
                }
                self.bot_lines.insert(item_id.clone(), self.lines.len());
                let at_ms = self.now_ms();
                self.lines.push(TranscriptLine {
                    at_ms,
                    speaker: Speaker::Bot,
                    text,
                    heard_ms: self.heard.get(&item_id).copied(),
                });
            }
            SpeechOutput::ToolCall(call) => self.on_tool_call(call).await,
            SpeechOutput::ResponseDone => self.on_response_done().await,
            SpeechOutput::ResponseBusy => {
                // Our `response.create` met one the server had started: ask after it.
                debug!("a response is active already; asking again after it");
                self.response_open = true;
                self.respond_after = true;
            }
        }
    }

    /// The provider heard the caller: stop the bot now if it is speaking.
    fn on_speech_started(&mut self) {
        self.latency.speech_started();
        let newest = self
            .current
            .as_ref()
            .map(|c| c.turn)
            .or_else(|| self.unfinished.last().map(|(t, _)| *t));
        let Some(turn) = newest else { return };
        if self.ending != Ending::No {
            // The goodbye plays out (the session ignores interruptions while hanging up).
            return;
        }
        if let Some(item) = self.current.take() {
            self.cut.insert(item.id);
        }
        for (_, item) in &self.unfinished {
            self.cut.insert(item.clone());
        }
        self.pending.retain(|c| turn_of(c).is_none_or(|t| t > turn));
        self.pending_bytes = self.pending.iter().map(audio_len).sum();
        debug!(turn = turn.0, "caller speech: interrupting the bot");
        if self.interrupts.try_send(turn).is_err() {
            // Four interruptions queued already: this one waits behind the queued commands.
            self.pending.push_front(Command::Interrupt { turn });
        }
    }

    /// The session cleared `turn`; the caller heard its first `heard_ms`.
    async fn on_barge_in(&mut self, turn: TurnId, heard_ms: u64) {
        self.latency.interrupted(turn);
        if self.current.as_ref().is_some_and(|c| c.turn == turn)
            && let Some(item) = self.current.take()
        {
            self.cut.insert(item.id);
        }
        let Some(i) = self.unfinished.iter().position(|(t, _)| *t == turn) else {
            return;
        };
        let (_, item_id) = self.unfinished.remove(i);
        if item_id.is_empty() {
            // An item of a session that was lost.
            return;
        }
        self.cut.insert(item_id.clone());
        self.heard.insert(item_id.clone(), heard_ms);
        if let Some(&line) = self.bot_lines.get(&item_id) {
            self.lines[line].heard_ms = Some(heard_ms);
        }
        info!(
            turn = turn.0,
            heard_ms, "barge-in: truncating the bot's item"
        );
        self.shared.options.metrics.barge_in_cancels.inc();
        self.send(SpeechInput::Truncate {
            item_id,
            audio_end_ms: heard_ms,
        })
        .await;
        if self.responding {
            // With server VAD's `interrupt_response` the provider has usually ended it.
            self.responding = false;
            self.send(SpeechInput::Cancel).await;
        }
    }

    fn on_bot_audio(&mut self, item_id: String, mulaw: &[u8]) {
        if self.hung_up() || self.cut.contains(&item_id) {
            return;
        }
        self.responding = true;
        self.response_open = true;
        self.spoke_after_tool = true;
        self.quiet_since = None;
        if self.current.as_ref().is_none_or(|c| c.id != item_id) {
            self.end_item();
            let turn = TurnId(self.next_turn);
            self.next_turn += 1;
            self.unfinished.push((turn, item_id.clone()));
            self.latency.first_audio(turn);
            self.current = Some(Item {
                id: item_id,
                turn,
                unmarked: 0,
                transcript: None,
            });
        }
        if self.pending_bytes + mulaw.len() > MAX_PENDING_BYTES {
            warn!(
                bytes = mulaw.len(),
                "bot audio arrives far faster than it plays; dropping"
            );
            return;
        }
        let chunk = usize::try_from(self.shared.config.chunk_ms * 8).unwrap_or(800);
        let Some(item) = self.current.as_mut() else {
            return;
        };
        let mut rest = mulaw;
        while !rest.is_empty() {
            let take = (chunk - item.unmarked).min(rest.len());
            self.pending.push_back(Command::AudioMulaw {
                turn: item.turn,
                mulaw: rest[..take].to_vec(),
            });
            self.pending_bytes += take;
            item.unmarked += take;
            rest = &rest[take..];
            if item.unmarked == chunk {
                item.unmarked = 0;
                self.pending.push_back(Command::ChunkEnd {
                    turn: item.turn,
                    text: String::new(),
                });
            }
        }
    }

    /// Ends the item being spoken: its last chunk carries the transcript.
    fn end_item(&mut self) {
        let Some(item) = self.current.take() else {
            return;
        };
        let text = item.transcript.unwrap_or_default();
        if item.unmarked > 0 || !text.is_empty() {
            self.pending.push_back(Command::ChunkEnd {
                turn: item.turn,
                text: if text.is_empty() { text } else { text + " " },
            });
        }
        self.pending.push_back(Command::TurnEnd { turn: item.turn });
    }

    async fn on_tool_call(&mut self, call: ToolCall) {
        let now_ms = self.now_ms();
        if let Some(screening) = self.screening.as_mut() {
            let output = screening.on_tool_call(now_ms, &call);
            self.tool_answered = true;
            self.spoke_after_tool = false;
            self.send(SpeechInput::ToolResult {
                call_id: call.id,
                output,
            })
            .await;
            return;
        }
        let output = if call.name == END_CALL {
            let reason = serde_json::from_str::<serde_json::Value>(&call.arguments)
                .ok()
                .and_then(|v| v["reason"].as_str().map(str::to_owned))
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| "conversation over".to_owned());
            info!(%reason, "the model ends the call");
            if self.ending == Ending::No {
                self.ending = Ending::AfterResponse(format!("end_call: {reason}"));
            }
            serde_json::json!({"ok": true})
        } else {
            warn!(tool = %call.name, "the model called an unknown tool");
            serde_json::json!({"error": format!("unknown function {}", call.name)})
        };
        if call.name != END_CALL {
            // The model continues after this response (see `on_response_done`).
            self.tool_answered = true;
            self.spoke_after_tool = false;
        }
        self.send(SpeechInput::ToolResult {
            call_id: call.id,
            output: output.to_string(),
        })
        .await;
    }

    /// The open response is done: hang up after a goodbye, close a finished screening, or let
    /// the model answer what came during the response (tool results, a key, a silence).
    async fn on_response_done(&mut self) {
        self.responding = false;
        self.response_open = false;
        let spoke_after_tool = std::mem::take(&mut self.spoke_after_tool);
        let answered = std::mem::take(&mut self.tool_answered);
        self.end_item();
        if let Ending::AfterResponse(reason) = &self.ending {
            let reason = reason.clone();
            if std::mem::take(&mut self.respond_after)
                && let Some(line) = self.closing_line.clone()
            {
                // The closing line met another response (refused as busy): ask for it now.
                self.response_open = true;
                self.send(SpeechInput::Respond {
                    instructions: Some(say_exactly(&line)),
                })
                .await;
                return;
            }
            self.hang_up(reason);
            return;
        }
        if self.hung_up() {
            return;
        }
        let now_ms = self.now_ms();
        if let Some((line, reason)) = self
            .screening
            .as_mut()
            .and_then(|s| s.take_closing(now_ms, spoke_after_tool))
        {
            self.say_then_hang_up(line, reason).await;
            return;
        }
        // Tool results the model has not spoken after (a response of tool calls only, or one
        // that spoke before them) get a follow-up: it asks the next question or fixes the call.
        let mut follow_up = std::mem::take(&mut self.respond_after);
        if answered && !spoke_after_tool {
            if self.tool_rounds < MAX_TOOL_ROUNDS {
                self.tool_rounds += 1;
                follow_up = true;
            } else {
                warn!(
                    rounds = self.tool_rounds,
                    "the model keeps answering with tool calls only; waiting for the caller"
                );
            }
        }
        if follow_up {
            self.respond(None).await;
        }
        self.maybe_quiet();
    }

    /// Asks for a response now, or after the open one.
    async fn respond(&mut self, instructions: Option<String>) {
        if self.caller_speaking {
            // The server's response to the caller's turn comes when they stop.
            return;
        }
        if self.response_open {
            self.respond_after = true;
            return;
        }
        self.response_open = true;
        self.send(SpeechInput::Respond { instructions }).await;
    }

    /// The model says `line` (the script's closing words), then the call hangs up with
    /// `reason`; without a line it hangs up now.
    async fn say_then_hang_up(&mut self, line: Option<String>, reason: String) {
        info!(%reason, "the screening is over");
        match line {
            Some(line) if self.session.is_some() && !self.closing => {
                self.ending = Ending::AfterResponse(reason);
                self.respond_after = false;
                let instructions = say_exactly(&line);
                self.closing_line = Some(line);
                if self.response_open {
                    self.respond_after = true;
                } else {
                    // Not deferred while the caller speaks: the call is ending.
                    self.response_open = true;
                    self.send(SpeechInput::Respond {
                        instructions: Some(instructions),
                    })
                    .await;
                }
            }
            _ => self.hang_up(reason),
        }
    }

    /// A key pressed: the model hears of it and answers.
    async fn on_key(&mut self, digit: char) {
        let now_ms = self.now_ms();
        self.quiet_since = None;
        let line = match self.screening.as_mut() {
            Some(screening) => screening.key(now_ms, self.lines.len(), digit),
            None => format!("[the caller pressed the key {digit}]"),
        };
        debug!(%digit, "key pressed: telling the model");
        if self.hung_up() || self.ending != Ending::No {
            return;
        }
        self.tool_rounds = 0;
        self.send(SpeechInput::UserText(line)).await;
        self.respond(None).await;
    }

    /// Screening: starts the silence clock when the bot has finished and nothing is pending.
    fn maybe_quiet(&mut self) {
        if self.screening.is_some()
            && self.quiet_since.is_none()
            && self.ending == Ending::No
            && !self.response_open
            && self.current.is_none()
            && self.unfinished.is_empty()
            && self.session.is_some()
        {
            self.quiet_since = Some(Instant::now());
        }
    }

    /// When the caller's silence counts (screening only).
    fn silence_deadline(&self) -> Option<Instant> {
        let screening = self.screening.as_ref()?;
        Some(self.quiet_since? + screening.silence_timeout())
    }

    /// The caller said nothing for the script's timeout: the model asks again, or the
    /// screening closes after too many silences.
    async fn on_silence(&mut self) {
        self.quiet_since = None;
        let now_ms = self.now_ms();
        let Some(screening) = self.screening.as_mut() else {
            return;
        };
        match screening.silence() {
            Ok(line) => {
                info!("the caller is silent: asking again");
                self.tool_rounds = 0;
                self.send(SpeechInput::UserText(line)).await;
                self.respond(None).await;
            }
            Err(closing) => {
                let (line, reason) = screening.close(now_ms, closing, false);
                self.say_then_hang_up(line, reason).await;
            }
        }
    }

    fn hang_up(&mut self, reason: String) {
        if self.hung_up() {
            return;
        }
        self.end_item();
        self.ending = Ending::HungUp;
        self.pending.push_back(Command::Hangup { reason });
    }

    /// Sends one input; a provider that does not take it is gone.
    async fn send(&mut self, input: SpeechInput) {
        let Some(session) = self.session.as_mut().filter(|_| !self.closing) else {
            return;
        };
        match tokio::time::timeout(SEND_TIMEOUT, session.send(input)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // The socket is gone, but audio it delivered may still be queued: play that,
                // and handle the loss when the outputs end.
                debug!(error = %e, "realtime session refused an input; draining it");
                self.closing = true;
                self.last_error = Some(e);
            }
            Err(_) => self.lost(&ProviderError::Timeout {
                stage: Stage::SpeechToSpeech,
                after: SEND_TIMEOUT,
            }),
        }
    }

    /// The session is gone: reconnect if allowed, else apologise and hang up.
    fn lost(&mut self, error: &ProviderError) {
        self.session = None;
        self.closing = false;
        self.responding = false;
        self.response_open = false;
        self.spoke_after_tool = false;
        self.tool_answered = false;
        self.respond_after = false;
        self.caller_speaking = false;
        self.tool_rounds = 0;
        self.quiet_since = None;
        self.end_item();
        // The old session's items are gone: nothing of theirs can be truncated, and a new
        // session may reuse their ids.
        self.cut.clear();
        for (_, item) in &mut self.unfinished {
            item.clear();
        }
        if self.hung_up() {
            return;
        }
        if self.reconnects < self.shared.config.max_reconnects {
            self.reconnects += 1;
            warn!(error = %error, reconnect = self.reconnects, "realtime session lost; reconnecting");
            self.resuming = true;
            self.connecting = Some(self.connect(self.setup(Some(self.context()))));
        } else {
            self.fail(error, 1);
        }
    }

    /// No provider: the apology (pre-rendered, else a tone), then hang up with the reason.
    fn fail(&mut self, error: &ProviderError, attempts: u32) {
        if self.hung_up() {
            return;
        }
        let reason = format!(
            "provider_failures: {} {} x{attempts}",
            Stage::SpeechToSpeech,
            error.kind()
        );
        warn!(error = %error, %reason, "realtime provider unavailable; apologising and hanging up");
        self.provider_failed = true;
        let metrics = &self.shared.options.metrics;
        metrics.provider_hangups.inc();
        let chunks = self
            .shared
            .apology
            .get()
            .filter(|c| !c.is_empty())
            .cloned()
            .unwrap_or_else(|| {
                metrics.canned_fallbacks.inc();
                vec![tone()]
            });
        self.end_item();
        let turn = TurnId(self.next_turn);
        self.next_turn += 1;
        for chunk in chunks {
            self.pending.push_back(Command::Audio {
                turn,
                pcm: chunk.pcm,
                sample_rate: chunk.sample_rate,
            });
        }
        self.pending.push_back(Command::ChunkEnd {
            turn,
            text: format!("{} ", self.shared.config.apology_text),
        });
        self.pending.push_back(Command::TurnEnd { turn });
        self.hang_up(reason);
    }

    /// The call is over: its report (turn latencies, transcript).
    fn finish(mut self) -> VoiceCallReport {
        let ended_at_ms = self.now_ms();
        let turns = self.latency.finish();
        if self.unsent_caller_frames > 0 {
            debug!(
                frames = self.unsent_caller_frames,
                "caller audio not sent while no provider session was open"
            );
        }
        // Dropping the session closes the provider socket.
        self.session = None;
        let lines = std::mem::take(&mut self.lines);
        let outcome = match self.screening.take() {
            Some(mut screening) => {
                screening.hung_up(ended_at_ms, self.provider_failed);
                if screening.invalid_tool_calls() > 0 {
                    info!(
                        invalid = screening.invalid_tool_calls(),
                        "the model made invalid tool calls"
                    );
                }
                screening.outcome(lines.iter().map(TranscriptLine::entry).collect())
            }
            None => CallOutcome {
                transcript: lines.iter().map(TranscriptLine::entry).collect(),
                started_at_ms: Some(0),
                ended_at_ms: Some(ended_at_ms),
                payload: Some(Payload::new(RealtimeTranscript(lines))),
                ..CallOutcome::default()
            },
        };
        VoiceCallReport {
            call_sid: std::mem::take(&mut self.call_sid),
            agent: AGENT,
            started_at: self.started_at,
            turns,
            outcome,
        }
    }
}
