//! The `realtime` brain: a Media Streams call served by one speech-to-speech session (the
//! OpenAI Realtime API), G.711 mu-law in and out, no transcoding, no resampling.
//!
//! ```text
//!  Twilio media payload ──BrainEvent::CallerAudio──▶ SpeechInput::CallerAudio (same bytes)
//!  SpeechOutput::BotAudio{item} ──▶ Command::AudioMulaw{turn} .. ChunkEnd every chunk_ms
//!       .. ChunkEnd{transcript} TurnEnd        (one TurnId per assistant item)
//!  SpeechOutput::SpeechStarted ──▶ BrainIo::interrupts (clear now) ──▶ BrainEvent::BargeIn
//!       {turn, heard_ms} ──▶ SpeechInput::Truncate{item, audio_end_ms = heard_ms}, Cancel
//! ```
//!
//! - **Listening.** The factory asks the session for raw caller audio
//!   ([`voxbridge_brain::CallerAudio::Raw`]): the provider's server VAD is the only judge of turns and
//!   barge-in (a second, local VAD could interrupt the bot when the provider heard nothing and
//!   then no reply would come). Audio that arrives before the provider session is open (the
//!   first few hundred ms of the call) is not sent.
//! - **Speaking.** Each assistant item is one bot turn. Its audio goes to the session as
//!   mu-law, cut into chunks of [`RealtimeConfig::chunk_ms`] with a mark each, so the echoed
//!   marks tell how far the caller got to within one chunk. The item's transcript is the text
//!   of its last chunk (so the call record's bot turns hold it when it played in full).
//! - **Barge-in.** The provider's `speech_started` sends an interruption for the newest
//!   unfinished turn on [`voxbridge_brain::BrainIo::interrupts`], which the shell handles ahead of
//!   queued audio: `clear` goes to Twilio at once. The session answers with
//!   `BargeIn { turn, heard_ms }` (audio of the chunks whose marks came back) and the brain
//!   truncates the item at `heard_ms`, so the model's context holds what was heard, then
//!   cancels the response if the provider has not ended it already.
//! - **Screening** ([`RealtimeMode::Screening`], the default, with
//!   [`RealtimeOptions::screenings`]): the call's screening script is the session's
//!   instructions and tools (`record_answer`, `end_screening`, `handoff`, checked against the
//!   script as for the LLM screening agent); keys pressed and silences reach the model as user
//!   lines; the script's closing line is said before hanging up; the report's outcome is a
//!   [`voxbridge_screening::ScreeningResult`], stored as `/relay` stores it. See `screening.rs`.
//! - **Instructions** ([`RealtimeMode::Instructions`]): [`RealtimeConfig::instructions`] with
//!   `{name}` placeholders filled from the call's custom parameters (`{firstName}`,
//!   `{jobTitle}` ...), then `response.create` with [`RealtimeConfig::greeting`] so the bot
//!   speaks first. Tool `end_call` (the model calls it after saying goodbye): the call hangs up
//!   once the response has played, with `end_call: <reason>` in the call record. Unknown tools
//!   get an error result and the model continues. Keys pressed reach the model as user lines.
//! - **Faults.** Connecting is tried [`RealtimeConfig::connect_attempts`] times (retryable
//!   errors only). A session lost mid-call is reconnected up to
//!   [`RealtimeConfig::max_reconnects`] times with the conversation so far in the
//!   instructions, and the model is asked to apologise and go on. When that fails the caller
//!   hears [`RealtimeConfig::apology_text`] (pre-rendered by the fallback TTS, else a tone)
//!   and the call ends with `provider_failures: speech_to_speech <kind> x<n>` as the reason:
//!   never silence.
//! - **Latency.** Per reply to caller speech: provider `speech_stopped` -> first bot audio
//!   from the provider (`tts_first_byte` in [`TurnLatency`]) -> first `media` frame sent
//!   (`first_frame`); `total` is the sum. `hangover` is the server VAD's silence
//!   ([`super::realtime::SERVER_VAD_SILENCE_MS`]). Logged, recorded in
//!   [`RealtimeOptions::metrics`] and returned in the call's report.
//! - **Transcripts.** Caller and bot lines go into the report's outcome (bot lines cut by
//!   barge-in are `interrupted`; the payload, a [`RealtimeTranscript`], keeps each one's
//!   `heard_ms`); their text is logged only at debug (it is personal data).

mod brain;
mod latency;
mod screening;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing::Span;

pub use voxbridge_speech::config::{RealtimeConfig, RealtimeMode};

use crate::pipeline::{PipelineError, render};
use voxbridge_brain::outcome::{self, TranscriptEntry};
use voxbridge_brain::turn::PipelineMetrics;
use voxbridge_brain::{Brain, BrainError, BrainFactory, CallInfo, CallerAudio};
use voxbridge_screening::Screenings;
use voxbridge_speech::{AudioChunk, ProviderError, SpeechToSpeech, ToolSpec, Tts};

/// The agent name.
pub const AGENT: &str = "realtime";

/// Who said a transcript line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    /// The caller (the provider's input transcription).
    Caller,
    /// The bot (the transcript of an assistant item).
    Bot,
}

/// One line of a call's transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TranscriptLine {
    /// When, ms since the brain started.
    pub at_ms: u64,
    /// Who said it.
    pub speaker: Speaker,
    /// What was said (for the bot: the whole item, even if it was cut off).
    pub text: String,
    /// Bot lines cut by barge-in: the ms of the item the caller heard (it was truncated there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heard_ms: Option<u64>,
}

impl TranscriptLine {
    /// The line as a neutral transcript entry (a cut bot line is `interrupted`; its text is
    /// the whole item, since only the audio position of the cut is known).
    pub fn entry(&self) -> TranscriptEntry {
        TranscriptEntry {
            at_ms: self.at_ms,
            speaker: match self.speaker {
                Speaker::Caller => outcome::Speaker::Caller,
                Speaker::Bot => outcome::Speaker::Bot,
            },
            text: self.text.clone(),
            interrupted: self.heard_ms.is_some(),
            confidence: None,
        }
    }
}

/// A realtime call's transcript with the heard positions of cut bot lines: the payload of its
/// [`voxbridge_brain::CallOutcome`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RealtimeTranscript(pub Vec<TranscriptLine>);

voxbridge_brain::domain_result!(RealtimeTranscript, "realtime_transcript");

/// Extras of a [`RealtimeFactory`] with working defaults.
#[derive(Clone, Default)]
pub struct RealtimeOptions {
    /// Metrics shared by all calls (`voice` metric names: turn, `tts_first_byte` = provider
    /// wait, `first_frame`).
    pub metrics: Arc<PipelineMetrics>,
    /// Speaks the apology when the provider is gone (espeak-ng in a deployment); a tone
    /// without it.
    pub fallback_tts: Option<Arc<dyn Tts>>,
    /// The screening scripts, for `mode = "screening"` (without them every call runs
    /// `instructions`).
    pub screenings: Option<Screenings>,
}

impl std::fmt::Debug for RealtimeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeOptions")
            .field(
                "fallback_tts",
                &self.fallback_tts.as_ref().map(|t| t.name()),
            )
            .field("screenings", &self.screenings.is_some())
            .finish_non_exhaustive()
    }
}

/// What every brain of a factory shares.
struct Shared {
    provider: Arc<dyn SpeechToSpeech>,
    config: RealtimeConfig,
    options: RealtimeOptions,
    /// The apology, rendered once.
    apology: tokio::sync::OnceCell<Vec<AudioChunk>>,
}

impl Shared {
    async fn prerender(&self) -> Result<(), ProviderError> {
        let Some(tts) = &self.options.fallback_tts else {
            return Ok(());
        };
        self.apology
            .get_or_try_init(|| render(tts, &self.config.apology_text, Duration::from_secs(20)))
            .await
            .map(|_| ())
    }
}

/// The `realtime` agent: one speech-to-speech session per call.
#[derive(Clone)]
pub struct RealtimeFactory {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RealtimeFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeFactory")
            .field("provider", &self.shared.provider.name())
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl RealtimeFactory {
    /// The `realtime` agent over `provider` (`speech.speech_to_speech`).
    pub fn new(
        config: RealtimeConfig,
        provider: Arc<dyn SpeechToSpeech>,
        options: RealtimeOptions,
    ) -> Result<Self, PipelineError> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared {
                provider,
                config,
                options,
                apology: tokio::sync::OnceCell::new(),
            }),
        })
    }

    /// The metrics of this agent's calls.
    pub fn metrics(&self) -> &Arc<PipelineMetrics> {
        &self.shared.options.metrics
    }

    /// Renders the apology with the fallback TTS now (call at startup; brains also try when
    /// they start if it has not happened).
    pub async fn prerender(&self) -> Result<(), ProviderError> {
        self.shared.prerender().await
    }
}

impl BrainFactory for RealtimeFactory {
    fn name(&self) -> &'static str {
        AGENT
    }

    fn start(&self, call: &CallInfo) -> Result<Box<dyn Brain>, BrainError> {
        let screening = match (&self.shared.config.mode, &self.shared.options.screenings) {
            (RealtimeMode::Screening, Some(screenings)) => {
                let script = screenings
                    .script_for(&call.custom_parameters)
                    .map_err(|e| BrainError::Start {
                        agent: AGENT,
                        reason: e.to_string(),
                    })?;
                Some(screening::Screening::new(
                    script,
                    &call.call_sid,
                    &call.custom_parameters,
                ))
            }
            _ => None,
        };
        Ok(Box::new(brain::RealtimeBrain {
            shared: Arc::clone(&self.shared),
            instructions: self.shared.config.instructions_for(&call.custom_parameters),
            screening,
            call_sid: call.call_sid.clone(),
            // The driver starts brains inside the call's span: keep logging in it.
            span: Span::current(),
        }))
    }

    fn caller_audio(&self) -> CallerAudio {
        CallerAudio::Raw
    }

    fn turn_metrics(&self) -> Option<Arc<PipelineMetrics>> {
        Some(Arc::clone(self.metrics()))
    }
}

/// The tools of a call in `instructions` mode.
fn instruction_tools() -> Vec<ToolSpec> {
    vec![ToolSpec {
        name: END_CALL.to_owned(),
        description: "Hang up the phone call. Say goodbye before calling this.".to_owned(),
        parameters: serde_json::json!({
            "type": "object",
            "properties": {
                "reason": {"type": "string", "description": "why the call ends, in a few words"}
            },
            "required": ["reason"]
        }),
    }]
}

/// The hang-up tool.
const END_CALL: &str = "end_call";
