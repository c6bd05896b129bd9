//! One reply: transcribe (for an utterance), run the dialog, cut its text into sentences,
//! synthesise them (the next ones while the current one streams) and send the audio in order;
//! on provider failure, speak the fallback line or, after too many, the apology and hang up.
//!
//! Everything a reply starts lives inside its future: dropping it (barge-in, end of call)
//! drops the dialog stream, the TTS streams and the ASR request with it.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio::time::Instant;
use tracing::{info, warn};

use super::book::{Draft, SharedBook, lock};
use super::{Commands, DialogContext, Job, PipelineConfig, Shared};
use crate::chunker::SentenceChunker;
use voxbridge_brain::conversation::ConversationInput;
use voxbridge_brain::dialog::{Dialog, DialogEvent};
use voxbridge_brain::turn::TurnOutcome;
use voxbridge_brain::{Command, TurnId};
use voxbridge_speech::retry::Jitter;
use voxbridge_speech::{AsrEvent, AsrRequest, AudioChunk, ProviderError, Stage, Tts, TtsRequest};

/// The least time worth giving a retry: one is not started closer to the deadline.
const MIN_ATTEMPT: Duration = Duration::from_millis(250);
/// Most synthesised audio buffered per sentence ahead of playout.
const MAX_BUFFERED: Duration = Duration::from_secs(30);
/// The tone played when no fallback audio can be had at all (Hz, length, rate).
const TONE: (f64, Duration, u32) = (660.0, Duration::from_millis(400), 8000);

/// Longest recogniser prompt taken from the bot's reply, in characters: its end (the
/// question) is what matters, and Whisper keeps about 220 prompt tokens at most.
const MAX_ASR_PROMPT_CHARS: usize = 400;

/// A recognition started when the caller paused ([`voxbridge_brain::BrainEvent::Pause`]), kept
/// for the utterance that ends where the pause began (the same audio). Dropping it cancels the
/// request.
#[derive(Debug)]
pub(super) struct Speculation {
    /// The paused audio's span (stream time).
    pub(super) span: (Duration, Duration),
    task: tokio::task::JoinHandle<Option<(String, Option<f32>)>>,
}

impl Drop for Speculation {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Speculation {
    /// Starts recognising `pcm` (the audio from `started_at` to `ended_at`) now: one attempt,
    /// with the prompt a reply would use, within the ASR timeout. A failure is not retried: the
    /// utterance is then recognised as usual.
    pub(super) fn start(
        shared: &Arc<Shared>,
        book: &SharedBook,
        pcm: Vec<i16>,
        sample_rate: u32,
        span: (Duration, Duration),
    ) -> Self {
        let config = &shared.config;
        let prompt = if config.asr_prompt {
            asr_prompt(&lock(book).last_reply)
        } else {
            None
        };
        let timeout = config.asr_timeout;
        let request = AsrRequest {
            audio: AudioChunk { pcm, sample_rate },
            language: None,
            prompt,
            deadline: Some((Instant::now() + timeout).into_std()),
        };
        let mut events = shared.asr.transcribe(request);
        let task = tokio::spawn(async move {
            let attempt = async {
                while let Some(event) = events.next().await {
                    if let Ok(AsrEvent::Final { text, confidence }) = event {
                        return Some((text, confidence));
                    }
                }
                None
            };
            tokio::time::timeout(timeout, attempt).await.ok().flatten()
        });
        Self { span, task }
    }

    /// Its transcript, once done (`None`: it failed, or took longer than the ASR timeout).
    async fn result(mut self) -> Option<(String, Option<f32>)> {
        (&mut self.task).await.ok().flatten()
    }
}

/// The recogniser's prompt from the bot's last reply: its last [`MAX_ASR_PROMPT_CHARS`]
/// characters, cut at a word; `None` when there is no reply yet.
pub(super) fn asr_prompt(reply: &str) -> Option<String> {
    let reply = reply.trim();
    if reply.is_empty() {
        return None;
    }
    let count = reply.chars().count();
    if count <= MAX_ASR_PROMPT_CHARS {
        return Some(reply.to_owned());
    }
    let tail: String = reply.chars().skip(count - MAX_ASR_PROMPT_CHARS).collect();
    let tail = tail.split_once(' ').map_or(tail.as_str(), |(_, rest)| rest);
    Some(tail.trim().to_owned())
}

/// How a reply ended.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ended {
    /// Audio was sent to the caller.
    pub(super) spoke: bool,
}

/// One reply's handles.
pub(super) struct Reply {
    shared: Arc<Shared>,
    context: DialogContext,
    dialog: Arc<tokio::sync::Mutex<Box<dyn Dialog>>>,
    commands: Commands,
    book: SharedBook,
    origin: Instant,
    jitter: Jitter,
}

/// Why a reply could not go on.
enum Stop {
    /// The session is gone (the command channel closed).
    CallOver,
    /// A provider failed before anything was said.
    Failed(ProviderError),
}

impl Reply {
    pub(super) fn new(
        shared: Arc<Shared>,
        context: DialogContext,
        dialog: Arc<tokio::sync::Mutex<Box<dyn Dialog>>>,
        commands: Commands,
        book: SharedBook,
        origin: Instant,
        seed: &str,
    ) -> Self {
        Self {
            shared,
            context,
            dialog,
            commands,
            book,
            origin,
            jitter: Jitter::new(seed),
        }
    }

    fn config(&self) -> &PipelineConfig {
        &self.shared.config
    }

    fn budget(&self) -> Duration {
        self.config().turn_budget
    }

    fn draft(&self, f: impl FnOnce(&mut Draft)) {
        if let Some(d) = lock(&self.book).current.as_mut() {
            f(d);
        }
    }

    async fn send(&self, command: Command) -> Result<(), Stop> {
        self.commands
            .send(command)
            .await
            .map_err(|_| Stop::CallOver)
    }

    pub(super) async fn run(mut self, job: Job) -> Ended {
        let (input, deadline) = match job {
            Job::Utterance {
                pcm,
                sample_rate,
                ended_at,
                received,
                speculation,
            } => {
                lock(&self.book).current = Some(Draft::new(received, ended_at));
                let deadline = received + self.budget();
                self.context.begin_turn(deadline);
                // Recognised since the caller paused: the hangover did not wait for it.
                let speculated = speculation.is_some();
                let early = match speculation {
                    Some(speculation) => speculation.result().await,
                    None => None,
                };
                if early.is_some() {
                    self.shared.options.metrics.speculative_hits.inc();
                }
                let transcript = match early {
                    Some(done) => Ok(done),
                    // A failed speculation used part of the turn: what follows gets what is
                    // left of it, not a fresh full timeout.
                    None => {
                        self.transcribe(pcm, sample_rate, deadline, speculated)
                            .await
                    }
                };
                match transcript {
                    Ok((text, confidence)) => {
                        self.draft(|d| d.transcript_at = Some(Instant::now()));
                        if text.trim().is_empty() {
                            lock(&self.book).finish_current(TurnOutcome::NoReply);
                            return Ended { spoke: false };
                        }
                        (ConversationInput::UserSaid { text, confidence }, deadline)
                    }
                    Err(e) => return self.fail(e).await,
                }
            }
            Job::Input(input) => {
                let deadline = Instant::now() + self.budget();
                self.context.begin_turn(deadline);
                (input, deadline)
            }
        };
        match self.speak_dialog(input, deadline).await {
            Ok(spoke) => {
                let mut book = lock(&self.book);
                book.finish_current(TurnOutcome::NoReply);
                if let Some(e) = self.context.take_failure() {
                    // Failed after part of the reply was said: counts, no fallback line.
                    let n = book.failures.push(e.stage(), e.kind());
                    warn!(error = %e, failed_turns = n, "provider failed mid-reply");
                } else {
                    book.failures.reset();
                }
                Ended { spoke }
            }
            Err(Stop::CallOver) => Ended { spoke: false },
            Err(Stop::Failed(e)) => self.fail(e).await,
        }
    }

    // ---- ASR ----

    async fn transcribe(
        &mut self,
        pcm: Vec<i16>,
        sample_rate: u32,
        deadline: Instant,
        after_speculation: bool,
    ) -> Result<(String, Option<f32>), ProviderError> {
        let prompt = if self.config().asr_prompt {
            asr_prompt(&lock(&self.book).last_reply)
        } else {
            None
        };
        let request = AsrRequest {
            audio: AudioChunk { pcm, sample_rate },
            language: None,
            prompt,
            deadline: Some(deadline.into_std()),
        };
        let limit = self.config().asr_timeout;
        // A failed speculation counts as the first attempt: the next one is cut to the deadline.
        let mut failed = u32::from(after_speculation);
        loop {
            let timeout = attempt_timeout(limit, failed, deadline);
            let mut events = self.shared.asr.transcribe(request.clone());
            let attempt = async {
                while let Some(event) = events.next().await {
                    if let AsrEvent::Final { text, confidence } = event? {
                        return Ok((text, confidence));
                    }
                }
                Err(ProviderError::Protocol {
                    stage: Stage::Asr,
                    message: "the transcript stream ended without a final result".into(),
                })
            };
            let error = match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(done)) => return Ok(done),
                Ok(Err(e)) => e,
                Err(_) => ProviderError::Timeout {
                    stage: Stage::Asr,
                    after: timeout,
                },
            };
            failed += 1;
            let policy = self.config().retry;
            match policy.retry_after(
                &error,
                failed,
                Instant::now().into_std(),
                deadline.into_std(),
                MIN_ATTEMPT,
                &mut self.jitter,
            ) {
                Some(pause) => {
                    info!(error = %error, ?pause, "asr failed; retrying");
                    self.context.count_retry();
                    tokio::time::sleep(pause).await;
                }
                None => return Err(error),
            }
        }
    }

    // ---- dialog -> sentences -> TTS -> commands ----

    #[allow(clippy::too_many_lines)] // one select loop reads best in one place
    async fn speak_dialog(
        &mut self,
        input: ConversationInput,
        deadline: Instant,
    ) -> Result<bool, Stop> {
        let dialog = Arc::clone(&self.dialog);
        let mut dialog = dialog.lock_owned().await;
        let now_ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut events = dialog.handle(now_ms, input);
        let mut events_done = false;
        let mut chunker = SentenceChunker::new(self.config().chunker);
        let mut segments: VecDeque<Segment> = VecDeque::new();
        let mut open_turn: Option<TurnId> = None;
        let mut outgoing: Option<Command> = None;
        let mut spoke = false;
        let mut sentences = 0usize;
        // Whether this reply has produced text yet (its first text replaces the last reply).
        let mut replied = false;
        loop {
            self.start_synths(&mut segments, sentences == 0, deadline);
            while outgoing.is_none() {
                match self.next_command(&mut segments, spoke)? {
                    Next::Command(c) => {
                        if let Command::Audio { turn, .. } = &c
                            && !spoke
                        {
                            spoke = true;
                            let retries = self.context.retries();
                            let mut book = lock(&self.book);
                            if let Some(d) = book.current.as_mut() {
                                d.retries = retries;
                            }
                            book.audio_starts(*turn);
                        }
                        outgoing = Some(c);
                    }
                    Next::Again => {}
                    Next::Wait => break,
                }
            }
            if outgoing.is_none() && events_done && segments.is_empty() {
                return Ok(spoke);
            }
            let synthesising = segments.iter().any(Segment::is_synthesising);
            tokio::select! {
                biased;
                permit = self.commands.reserve(), if outgoing.is_some() => {
                    let permit = permit.map_err(|_| Stop::CallOver)?;
                    if let Some(c) = outgoing.take() {
                        permit.send(c);
                    }
                }
                () = poll_synths(&mut segments), if synthesising => {}
                event = events.next(), if !events_done => {
                    let book = &self.book;
                    let push_sentence = |segments: &mut VecDeque<Segment>, sentences: &mut usize, turn, text: String| {
                        if *sentences == 0 && let Some(d) = lock(book).current.as_mut() {
                            d.first_sentence_at = Some(Instant::now());
                        }
                        *sentences += 1;
                        segments.push_back(Segment::Sentence(Sentence::new(turn, text)));
                    };
                    match event {
                        Some(DialogEvent::Text { text, interruptible }) => {
                            if !interruptible {
                                tracing::debug!("uninterruptible text: barge-in is the session's setting");
                            }
                            {
                                let mut book = lock(&self.book);
                                if !replied {
                                    book.last_reply.clear();
                                }
                                book.last_reply.push_str(&text);
                            }
                            replied = true;
                            let turn = if let Some(t) = open_turn { t } else {
                                if segments.is_empty() && !spoke && sentences == 0 {
                                    self.draft(|d| d.first_text_at = Some(Instant::now()));
                                }
                                let t = lock(&self.book).alloc_turn();
                                open_turn = Some(t);
                                t
                            };
                            for s in chunker.push(&text) {
                                push_sentence(&mut segments, &mut sentences, turn, s);
                            }
                        }
                        Some(DialogEvent::TurnEnd { .. }) | None => {
                            if let Some(turn) = open_turn.take() {
                                if let Some(s) = chunker.finish() {
                                    push_sentence(&mut segments, &mut sentences, turn, s);
                                }
                                segments.push_back(Segment::TurnEnd(turn));
                            }
                            if event.is_none() {
                                events_done = true;
                            }
                        }
                        Some(DialogEvent::End(reason)) => {
                            if let Some(turn) = open_turn.take() {
                                if let Some(s) = chunker.finish() {
                                    push_sentence(&mut segments, &mut sentences, turn, s);
                                }
                                segments.push_back(Segment::TurnEnd(turn));
                            }
                            segments.push_back(Segment::Hangup(format!(
                                "{}: {}",
                                reason.reason_code, reason.reason
                            )));
                        }
                        Some(DialogEvent::SendDigits(digits)) => {
                            info!(digits = digits.len(), "the dialog asked to send DTMF; not possible on Media Streams, ignored");
                        }
                        Some(DialogEvent::Language { tts, transcription }) => {
                            info!(?tts, ?transcription, "the dialog asked to switch languages; ignored on Media Streams");
                        }
                    }
                }
            }
            if events_done && !spoke && segments.is_empty() && outgoing.is_none() {
                // The dialog said nothing: a provider behind it may have failed.
                if let Some(e) = self.context.take_failure() {
                    return Err(Stop::Failed(e));
                }
            }
        }
    }

    /// Starts synthesis for the sentences that may run now: the first one not yet done and
    /// `tts_lookahead` after it.
    fn start_synths(&mut self, segments: &mut VecDeque<Segment>, first: bool, deadline: Instant) {
        let window = 1 + self.config().tts_lookahead;
        let mut seen = 0;
        for segment in segments.iter_mut() {
            let Segment::Sentence(s) = segment else {
                continue;
            };
            seen += 1;
            if seen > window {
                break;
            }
            if s.started {
                continue;
            }
            s.started = true;
            let now = Instant::now();
            s.requested_at = Some(now);
            // The reply's first sentence must fit the turn budget; later ones get their own.
            let sentence_deadline = if first && seen == 1 {
                deadline
            } else {
                now + self.budget()
            };
            s.stream = Some(synthesize(
                Arc::clone(&self.shared),
                self.context.clone(),
                s.text.clone(),
                sentence_deadline,
                Jitter::new(&s.text),
            ));
        }
    }

    /// The next command from the front segment.
    fn next_command(&self, segments: &mut VecDeque<Segment>, spoke: bool) -> Result<Next, Stop> {
        let Some(front) = segments.front_mut() else {
            return Ok(Next::Wait);
        };
        match front {
            Segment::Sentence(s) => {
                if let Some(chunk) = s.buffer.pop_front() {
                    s.buffered = s.buffered.saturating_sub(chunk_duration(&chunk));
                    if !s.sent_audio {
                        s.sent_audio = true;
                        let (requested, first) = (s.requested_at, s.first_audio_at);
                        self.draft(|d| {
                            if d.tts_requested_at.is_none() {
                                d.tts_requested_at = requested;
                                d.first_audio_at = first;
                            }
                        });
                    }
                    return Ok(Next::Command(Command::Audio {
                        turn: s.turn,
                        pcm: chunk.pcm,
                        sample_rate: chunk.sample_rate,
                    }));
                }
                if !s.done {
                    return Ok(Next::Wait);
                }
                let Some(Segment::Sentence(s)) = segments.pop_front() else {
                    unreachable!("the front is a sentence")
                };
                if let Some(e) = s.failed {
                    if !spoke && !s.sent_audio {
                        return Err(Stop::Failed(e));
                    }
                    warn!(error = %e, "a sentence could not be spoken; skipped");
                    self.context.report_failure(e);
                }
                if s.sent_audio {
                    return Ok(Next::Command(Command::ChunkEnd {
                        turn: s.turn,
                        text: format!("{} ", s.text),
                    }));
                }
                Ok(Next::Again)
            }
            Segment::TurnEnd(turn) => {
                let turn = *turn;
                segments.pop_front();
                Ok(Next::Command(Command::TurnEnd { turn }))
            }
            Segment::Hangup(reason) => {
                let reason = std::mem::take(reason);
                segments.pop_front();
                lock(&self.book).hung_up = true;
                Ok(Next::Command(Command::Hangup { reason }))
            }
        }
    }

    // ---- failures ----

    /// A turn failed before anything was said: the fallback line, or the apology and hangup.
    async fn fail(&mut self, error: ProviderError) -> Ended {
        let stage = error.stage();
        let retries = self.context.retries();
        let (count, give_up, reason) = {
            let mut book = lock(&self.book);
            let n = book.failures.push(stage, error.kind());
            if let Some(d) = book.current.as_mut() {
                d.failed = Some(stage);
                d.retries = retries;
            }
            let give_up = n >= self.config().max_failed_turns as usize;
            (n, give_up, book.failures.reason())
        };
        warn!(error = %error, failed_turns = count, "turn failed; speaking the fallback");
        let text = if give_up {
            self.config().apology_text.clone()
        } else {
            self.config().fallback_text.clone()
        };
        let turn = lock(&self.book).alloc_turn();
        let spoke = self.speak_line(turn, &text, give_up).await;
        lock(&self.book).finish_current(TurnOutcome::Fallback { stage });
        if spoke.is_err() {
            return Ended { spoke: false };
        }
        if give_up {
            self.shared.options.metrics.provider_hangups.inc();
            lock(&self.book).hung_up = true;
            warn!(%reason, "hanging up after repeated provider failures");
            let _ = self.send(Command::Hangup { reason }).await;
        }
        Ended { spoke: true }
    }

    /// Speaks a fixed line as `turn`: live from the fallback TTS, else the pre-rendered audio,
    /// else a tone.
    async fn speak_line(&self, turn: TurnId, text: &str, apology: bool) -> Result<(), Stop> {
        let tts = self.shared.line_tts();
        let first_byte = self.config().tts_first_byte_timeout;
        let idle = self.config().stream_idle_timeout;
        let requested = Instant::now();
        let mut stream = tts.synthesize(TtsRequest {
            text: text.to_owned(),
            voice: None,
            language: None,
        });
        let mut sent = false;
        loop {
            let timeout = if sent { idle } else { first_byte };
            match tokio::time::timeout(timeout, stream.next()).await {
                Ok(Some(Ok(chunk))) => {
                    if !sent {
                        sent = true;
                        self.first_audio(turn, requested);
                    }
                    self.send(audio(turn, chunk)).await?;
                }
                // Ended, or failed midway: what was said stays said.
                _ if sent => break,
                Ok(Some(Err(e))) => {
                    warn!(error = %e, "fallback TTS failed; playing pre-rendered audio");
                    break;
                }
                Ok(None) | Err(_) => {
                    warn!("fallback TTS gave no audio; playing pre-rendered audio");
                    break;
                }
            }
        }
        drop(stream);
        if !sent {
            self.shared.options.metrics.canned_fallbacks.inc();
            let canned = self.shared.canned.get().map(|c| {
                if apology {
                    c.apology.clone()
                } else {
                    c.fallback.clone()
                }
            });
            let chunks = canned
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| vec![tone()]);
            self.first_audio(turn, requested);
            for chunk in chunks {
                self.send(audio(turn, chunk)).await?;
            }
        }
        self.send(Command::ChunkEnd {
            turn,
            text: format!("{text} "),
        })
        .await?;
        self.send(Command::TurnEnd { turn }).await
    }

    fn first_audio(&self, turn: TurnId, requested: Instant) {
        let now = Instant::now();
        let retries = self.context.retries();
        self.draft(|d| {
            d.retries = retries;
            d.tts_requested_at = Some(requested);
            d.first_audio_at = Some(now);
        });
        lock(&self.book).audio_starts(turn);
    }
}

fn audio(turn: TurnId, chunk: AudioChunk) -> Command {
    Command::Audio {
        turn,
        pcm: chunk.pcm,
        sample_rate: chunk.sample_rate,
    }
}

/// The last-resort sound: a short tone, so the caller hears that the line is alive.
pub(crate) fn tone() -> AudioChunk {
    let (freq, length, rate) = TONE;
    let n = (u128::from(rate) * length.as_millis() / 1000) as usize;
    let step = std::f64::consts::TAU * freq / f64::from(rate);
    AudioChunk {
        pcm: (0..n)
            .map(|i| (6000.0 * (step * i as f64).sin()) as i16)
            .collect(),
        sample_rate: rate,
    }
}

fn chunk_duration(chunk: &AudioChunk) -> Duration {
    Duration::from_nanos(
        (chunk.pcm.len() as u64).saturating_mul(1_000_000_000)
            / u64::from(chunk.sample_rate.max(1)),
    )
}

/// The timeout of attempt `failed + 1`: the stage limit, and for retries no later than the
/// deadline (but at least [`MIN_ATTEMPT`]).
fn attempt_timeout(limit: Duration, failed: u32, deadline: Instant) -> Duration {
    if failed == 0 {
        limit
    } else {
        limit.min(
            deadline
                .saturating_duration_since(Instant::now())
                .max(MIN_ATTEMPT),
        )
    }
}

/// Renders `text` completely (for the pre-rendered fallback lines).
pub(crate) async fn render(
    tts: &Arc<dyn Tts>,
    text: &str,
    timeout: Duration,
) -> Result<Vec<AudioChunk>, ProviderError> {
    let mut stream = tts.synthesize(TtsRequest {
        text: text.to_owned(),
        voice: None,
        language: None,
    });
    let collect = async {
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.next().await {
            chunks.push(chunk?);
        }
        Ok(chunks)
    };
    tokio::time::timeout(timeout, collect)
        .await
        .unwrap_or(Err(ProviderError::Timeout {
            stage: Stage::Tts,
            after: timeout,
        }))
}

// ---- sentences in flight ----

enum Next {
    Command(Command),
    /// The front segment was consumed without a command: look again.
    Again,
    /// Nothing to send until something arrives.
    Wait,
}

enum Segment {
    Sentence(Sentence),
    TurnEnd(TurnId),
    Hangup(String),
}

impl Segment {
    fn is_synthesising(&self) -> bool {
        matches!(self, Self::Sentence(s) if s.stream.is_some())
    }
}

struct Sentence {
    turn: TurnId,
    text: String,
    started: bool,
    stream: Option<BoxStream<'static, Result<AudioChunk, ProviderError>>>,
    buffer: VecDeque<AudioChunk>,
    buffered: Duration,
    done: bool,
    failed: Option<ProviderError>,
    requested_at: Option<Instant>,
    first_audio_at: Option<Instant>,
    sent_audio: bool,
}

impl Sentence {
    fn new(turn: TurnId, text: String) -> Self {
        Self {
            turn,
            text,
            started: false,
            stream: None,
            buffer: VecDeque::new(),
            buffered: Duration::ZERO,
            done: false,
            failed: None,
            requested_at: None,
            first_audio_at: None,
            sent_audio: false,
        }
    }
}

/// Polls every running synthesis; ready once any of them produced something.
async fn poll_synths(segments: &mut VecDeque<Segment>) {
    poll_fn(|cx| {
        let mut progressed = false;
        for segment in segments.iter_mut() {
            let Segment::Sentence(s) = segment else {
                continue;
            };
            let Some(stream) = s.stream.as_mut() else {
                continue;
            };
            while s.buffered < MAX_BUFFERED {
                match stream.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(chunk))) => {
                        if s.first_audio_at.is_none() {
                            s.first_audio_at = Some(Instant::now());
                        }
                        s.buffered += chunk_duration(&chunk);
                        s.buffer.push_back(chunk);
                        progressed = true;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        s.failed = Some(e);
                        s.done = true;
                        s.stream = None;
                        progressed = true;
                        break;
                    }
                    Poll::Ready(None) => {
                        s.done = true;
                        s.stream = None;
                        progressed = true;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        if progressed {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// One sentence's audio with timeouts, retries within `deadline`, and the fallback TTS when
/// the main one fails before any audio. Ends with one `Err` if it cannot be spoken (or fails
/// midway).
fn synthesize(
    shared: Arc<Shared>,
    context: DialogContext,
    text: String,
    deadline: Instant,
    jitter: Jitter,
) -> BoxStream<'static, Result<AudioChunk, ProviderError>> {
    struct State {
        shared: Arc<Shared>,
        context: DialogContext,
        text: String,
        deadline: Instant,
        jitter: Jitter,
        stream: Option<BoxStream<'static, Result<AudioChunk, ProviderError>>>,
        failed: u32,
        got_audio: bool,
        on_fallback: bool,
        done: bool,
    }
    let state = State {
        shared,
        context,
        text,
        deadline,
        jitter,
        stream: None,
        failed: 0,
        got_audio: false,
        on_fallback: false,
        done: false,
    };
    stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let config = Arc::clone(&st.shared.config);
        loop {
            let tts = if st.on_fallback {
                Arc::clone(st.shared.line_tts())
            } else {
                Arc::clone(&st.shared.tts)
            };
            let stream = st.stream.get_or_insert_with(|| {
                tts.synthesize(TtsRequest {
                    text: st.text.clone(),
                    voice: None,
                    language: None,
                })
            });
            let timeout = if st.got_audio {
                config.stream_idle_timeout
            } else if st.on_fallback {
                config.tts_first_byte_timeout
            } else {
                attempt_timeout(config.tts_first_byte_timeout, st.failed, st.deadline)
            };
            let error = match tokio::time::timeout(timeout, stream.next()).await {
                Ok(Some(Ok(chunk))) => {
                    st.got_audio = true;
                    return Some((Ok(chunk), st));
                }
                Ok(None) => return None,
                Ok(Some(Err(e))) => e,
                Err(_) => ProviderError::Timeout {
                    stage: Stage::Tts,
                    after: timeout,
                },
            };
            st.stream = None;
            if st.got_audio || st.on_fallback {
                st.done = true;
                return Some((Err(error), st));
            }
            st.failed += 1;
            let retry = config.retry.retry_after(
                &error,
                st.failed,
                Instant::now().into_std(),
                st.deadline.into_std(),
                MIN_ATTEMPT,
                &mut st.jitter,
            );
            if let Some(pause) = retry {
                info!(error = %error, ?pause, "tts failed; retrying");
                st.context.count_retry();
                tokio::time::sleep(pause).await;
                continue;
            }
            if st.shared.fallback_tts.is_some() {
                warn!(error = %error, "tts failed; speaking the sentence with the fallback TTS");
                st.shared.options.metrics.tts_fallbacks.inc();
                st.on_fallback = true;
                continue;
            }
            st.done = true;
            return Some((Err(error), st));
        }
    })
    .boxed()
}
