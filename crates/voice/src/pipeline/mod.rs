//! The voice pipeline brain for Media Streams calls: caller utterance -> ASR -> the call's
//! [`Dialog`] -> sentences -> TTS -> audio commands, with barge-in, retries, spoken fallbacks
//! and a per-turn latency breakdown.
//!
//! ```text
//!  BrainEvent::Utterance ──▶ Asr (retry, timeout) ──▶ Dialog::handle(UserSaid)
//!     ──DialogEvent::Text──▶ SentenceChunker ──sentence──▶ Tts (1 + lookahead in flight)
//!     ──AudioChunk──▶ Command::Audio .. ChunkEnd{sentence} .. TurnEnd [.. Hangup]
//! ```
//!
//! - **Order and overlap.** Sentences are spoken in order; synthesis of the next
//!   [`PipelineConfig::tts_lookahead`] sentences runs while the current one streams to the
//!   session (bounded by the brain's command channel and the driver's high-water mark).
//! - **Barge-in** ([`voxbridge_brain::BrainEvent::BargeIn`]): the running reply is dropped at once: the
//!   dialog stream (and with it an LLM request), every TTS stream and an ASR request still in
//!   flight. The dialog then gets [`ConversationInput::Interrupted`] with what the caller heard.
//! - **Inputs.** `CallStarted` -> `Started`, `Dtmf` -> `Dtmf`, no caller speech for the
//!   dialog's `silence_timeout_ms` after the last bot turn played -> `Silence`, `CallEnded` ->
//!   `Hangup`. Inputs arriving while a reply is being prepared wait their turn.
//!   [`voxbridge_brain::dialog::DialogEvent::End`] -> [`Command::Hangup`] after the last turn's audio.
//!   `SendDigits` and `Language` cannot be done on Media Streams: logged and ignored.
//! - **Faults.** Every stage has a timeout; transient errors are retried with jittered backoff
//!   (honouring `Retry-After`) while the turn budget allows. A sentence the TTS cannot speak is
//!   spoken by the fallback TTS. A turn that still fails gets the spoken fallback
//!   ([`PipelineConfig::fallback_text`], by the fallback TTS, else pre-rendered audio, else a
//!   tone: the caller is never left in silence). After [`PipelineConfig::max_failed_turns`]
//!   failed turns in a row the bot apologises and hangs up with a reason such as
//!   `provider_failures: asr timeout x3`, which lands in the call record's end reason.
//! - **Latency.** See [`voxbridge_brain::turn`]: one log line per turn, [`PipelineMetrics`]
//!   (also through [`BrainFactory::turn_metrics`], for the bridge's `/metrics`), and the call's
//!   [`voxbridge_brain::VoiceCallReport`] (its turn latencies and the dialog's outcome),
//!   which the brain returns when the call ends.
//!
//! Dialogs backed by providers (the [`super::assistant::Assistant`]) report their provider
//! failures and retries, and learn the turn's deadline, through the [`DialogContext`] the
//! factory hands them: [`voxbridge_brain::dialog::DialogEvent`] has no error event.

mod book;
mod brain;
mod reply;

pub(crate) use reply::{render, tone};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tracing::Span;

use voxbridge_brain::conversation::ConversationInput;
use voxbridge_brain::dialog::Dialog;
use voxbridge_brain::turn::PipelineMetrics;
use voxbridge_brain::{Brain, BrainError, BrainFactory, CallInfo, CallerAudio, Command};
use voxbridge_screening::Screenings;
use voxbridge_speech::config::ConfigError;
pub use voxbridge_speech::config::PipelineConfig;
use voxbridge_speech::{Asr, AudioChunk, ProviderError, Tts};

/// Why a voice agent cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// A provider the agent needs is not configured.
    #[error("agent {agent} needs {what}, but {key} is not configured; set {key} (e.g. \"openai\")")]
    MissingProvider {
        /// The agent.
        agent: &'static str,
        /// The config key to set.
        key: &'static str,
        /// What it is for.
        what: &'static str,
    },
    /// A `[speech.*]` value is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The providers a voice agent uses. `asr` and `tts` are required; `fallback_tts` (the local
/// espeak-ng in a deployment) speaks sentences the main TTS fails on and the fallback lines.
#[derive(Clone, Default)]
pub struct VoiceProviders {
    /// Speech recognition (`speech.asr`).
    pub asr: Option<Arc<dyn Asr>>,
    /// Speech synthesis (`speech.tts`).
    pub tts: Option<Arc<dyn Tts>>,
    /// Fallback speech synthesis.
    pub fallback_tts: Option<Arc<dyn Tts>>,
}

impl std::fmt::Debug for VoiceProviders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceProviders")
            .field("asr", &self.asr.as_ref().map(|a| a.name()))
            .field("tts", &self.tts.as_ref().map(|t| t.name()))
            .field(
                "fallback_tts",
                &self.fallback_tts.as_ref().map(|t| t.name()),
            )
            .finish()
    }
}

/// Shared between a brain and its dialog for one call: the current turn's deadline (for a
/// dialog's own retries), and the provider failures and retries the dialog reports.
#[derive(Debug, Clone)]
pub struct DialogContext {
    config: Arc<PipelineConfig>,
    state: Arc<Mutex<ContextState>>,
}

#[derive(Debug, Default)]
struct ContextState {
    deadline: Option<Instant>,
    error: Option<ProviderError>,
    retries: u32,
}

impl DialogContext {
    /// A context for one call.
    pub fn new(config: Arc<PipelineConfig>) -> Self {
        Self {
            config,
            state: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ContextState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pipeline settings (timeouts, retry policy).
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// The current turn's deadline for starting retries.
    pub fn deadline(&self) -> Option<Instant> {
        self.lock().deadline
    }

    /// A provider failed and the dialog gave up on it for this turn.
    pub fn report_failure(&self, error: ProviderError) {
        self.lock().error = Some(error);
    }

    /// One provider attempt was retried.
    pub fn count_retry(&self) {
        self.lock().retries += 1;
    }

    /// Starts a turn: sets its deadline, clears failures and retries.
    fn begin_turn(&self, deadline: Instant) {
        let mut s = self.lock();
        s.deadline = Some(deadline);
        s.error = None;
        s.retries = 0;
    }

    fn take_failure(&self) -> Option<ProviderError> {
        self.lock().error.take()
    }

    fn retries(&self) -> u32 {
        self.lock().retries
    }
}

/// Makes the [`Dialog`] of each voice call.
pub trait DialogSource: Send + Sync + 'static {
    /// A dialog for `call`; provider-backed dialogs keep `context`.
    fn dialog(
        &self,
        call: &CallInfo,
        context: &DialogContext,
    ) -> Result<Box<dyn Dialog>, BrainError>;
}

/// The screening catalog `voxbridge serve` loads (scripted, or the LLM agent when
/// `agent.llm.enabled`): the same interview on Media Streams as on ConversationRelay.
impl DialogSource for Screenings {
    fn dialog(
        &self,
        call: &CallInfo,
        _context: &DialogContext,
    ) -> Result<Box<dyn Dialog>, BrainError> {
        Screenings::dialog(self, &call.custom_parameters).map_err(|e| BrainError::Start {
            agent: "screening",
            reason: e.to_string(),
        })
    }
}

/// Extras of a [`VoiceFactory`] with working defaults.
#[derive(Clone)]
pub struct VoiceOptions {
    /// Metrics shared by all calls (and whoever renders them).
    pub metrics: Arc<PipelineMetrics>,
    /// The session's VAD hangover, reported with each turn (`media.hangover_ms`).
    pub hangover: Duration,
}

impl Default for VoiceOptions {
    fn default() -> Self {
        Self {
            metrics: Arc::default(),
            hangover: Duration::from_millis(600),
        }
    }
}

impl std::fmt::Debug for VoiceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceOptions")
            .field("hangover", &self.hangover)
            .finish_non_exhaustive()
    }
}

/// Fallback audio rendered once and shared by every call.
#[derive(Debug, Default)]
struct Canned {
    fallback: Vec<AudioChunk>,
    apology: Vec<AudioChunk>,
}

/// What every brain of a factory shares.
struct Shared {
    asr: Arc<dyn Asr>,
    tts: Arc<dyn Tts>,
    fallback_tts: Option<Arc<dyn Tts>>,
    source: Arc<dyn DialogSource>,
    config: Arc<PipelineConfig>,
    options: VoiceOptions,
    canned: tokio::sync::OnceCell<Canned>,
}

impl Shared {
    /// The TTS for fallback lines: the fallback one, else the main one.
    fn line_tts(&self) -> &Arc<dyn Tts> {
        self.fallback_tts.as_ref().unwrap_or(&self.tts)
    }

    /// Renders the fallback lines once (later calls share the result).
    async fn prerender(&self) -> Result<(), ProviderError> {
        self.canned
            .get_or_try_init(|| async {
                let timeout =
                    self.config.tts_first_byte_timeout + self.config.stream_idle_timeout * 4;
                let fallback = reply::render(self.line_tts(), &self.config.fallback_text, timeout);
                let apology = reply::render(self.line_tts(), &self.config.apology_text, timeout);
                let (fallback, apology) = futures::future::try_join(fallback, apology).await?;
                Ok(Canned { fallback, apology })
            })
            .await
            .map(|_| ())
    }
}

/// The `voice` agent: builds a pipeline brain per call.
#[derive(Clone)]
pub struct VoiceFactory {
    name: &'static str,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for VoiceFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceFactory")
            .field("name", &self.name)
            .field("asr", &self.shared.asr.name())
            .field("tts", &self.shared.tts.name())
            .finish_non_exhaustive()
    }
}

impl VoiceFactory {
    /// A voice agent named `name`. Refuses to build without an ASR (`speech.asr`) or a TTS
    /// (`speech.tts`), or with an invalid config.
    pub fn new(
        name: &'static str,
        config: PipelineConfig,
        providers: VoiceProviders,
        source: Arc<dyn DialogSource>,
        options: VoiceOptions,
    ) -> Result<Self, PipelineError> {
        config.validate()?;
        let asr = providers.asr.ok_or(PipelineError::MissingProvider {
            agent: name,
            key: "speech.asr",
            what: "speech recognition",
        })?;
        let tts = providers.tts.ok_or(PipelineError::MissingProvider {
            agent: name,
            key: "speech.tts",
            what: "speech synthesis",
        })?;
        Ok(Self {
            name,
            shared: Arc::new(Shared {
                asr,
                tts,
                fallback_tts: providers.fallback_tts,
                source,
                config: Arc::new(config),
                options,
                canned: tokio::sync::OnceCell::new(),
            }),
        })
    }

    /// The metrics of this agent's calls.
    pub fn metrics(&self) -> &Arc<PipelineMetrics> {
        &self.shared.options.metrics
    }

    /// Renders the fallback lines now (call at startup; brains also try when they start).
    pub async fn prerender(&self) -> Result<(), ProviderError> {
        self.shared.prerender().await
    }

    /// Whether the fallback lines are rendered.
    pub fn is_prerendered(&self) -> bool {
        self.shared.canned.initialized()
    }
}

impl BrainFactory for VoiceFactory {
    fn name(&self) -> &'static str {
        self.name
    }

    fn caller_audio(&self) -> CallerAudio {
        if self.shared.config.speculative_asr {
            CallerAudio::UtterancesAndPauses
        } else {
            CallerAudio::Utterances
        }
    }

    fn turn_metrics(&self) -> Option<Arc<PipelineMetrics>> {
        Some(Arc::clone(self.metrics()))
    }

    fn start(&self, call: &CallInfo) -> Result<Box<dyn Brain>, BrainError> {
        let context = DialogContext::new(Arc::clone(&self.shared.config));
        let dialog = self.shared.source.dialog(call, &context)?;
        Ok(Box::new(brain::VoiceBrain {
            agent: self.name,
            shared: Arc::clone(&self.shared),
            call: call.clone(),
            dialog,
            context,
            // The driver starts brains inside the call's span: keep logging in it.
            span: Span::current(),
        }))
    }
}

/// One input the brain feeds its dialog (and, for utterances, the ASR first).
#[derive(Debug)]
enum Job {
    Utterance {
        pcm: Vec<i16>,
        sample_rate: u32,
        ended_at: Duration,
        received: Instant,
        /// The recognition of this very audio, started when the caller paused.
        speculation: Option<reply::Speculation>,
    },
    Input(ConversationInput),
}

/// The parameters of a `Started` input.
fn started(call: &CallInfo) -> ConversationInput {
    ConversationInput::Started {
        call_sid: call.call_sid.clone(),
        parameters: call
            .custom_parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// Where a command would go: the brain's bounded channel to the session.
type Commands = tokio::sync::mpsc::Sender<Command>;

#[cfg(test)]
mod tests;
