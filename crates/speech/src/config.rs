//! The `[speech]` configuration section: which provider does each stage, where it lives, and
//! how long each stage may take. [`SpeechConfig::build`] (in [`super::providers`]) turns it
//! into shared providers, and `SpeechProviders::for_call` applies a call's custom parameters
//! (`tts=espeak`, `voice=...`) to choose among them.
//!
//! Every key has a documented default; unknown keys are rejected (`deny_unknown_fields`), so a
//! typo is an error that names the key instead of a silently ignored setting. The defaults need
//! no account: ASR and LLM are off (`none`) and TTS is the local espeak-ng.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::voice_config::{
    AssistantConfig, ChunkerConfig, ConfigError, PipelineConfig, RealtimeConfig, RealtimeMode,
};

/// Errors from validating the `[speech]` section or choosing providers for a call. Each message
/// names the key to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpeechConfigError {
    /// A value is out of range or malformed.
    #[error("speech.{key}: {problem}")]
    Invalid {
        /// The key below `speech.`, e.g. `openai.llm.model`.
        key: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// An agent needs a stage that is configured as `none`.
    #[error(
        "speech.{stage} = \"none\" but agent {agent} needs {what}; set speech.{stage} = \"openai\" and speech.openai.base_url (and speech.openai.api_key or OPENAI_API_KEY)"
    )]
    Missing {
        /// The stage key (`asr`, `llm`, `tts`, `speech_to_speech`).
        stage: &'static str,
        /// The agent asking.
        agent: String,
        /// What the stage is, for the message (`ASR`, `an LLM` ...).
        what: &'static str,
    },
    /// A call's custom parameter asks for something not configured.
    #[error("custom parameter {name}={value:?}: {problem}")]
    Parameter {
        /// The parameter name.
        name: String,
        /// Its value.
        value: String,
        /// Why it cannot be honoured.
        problem: String,
    },
}

pub use voxbridge_config::Secret;

/// Which recogniser to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AsrKind {
    /// `/v1/audio/transcriptions` of an OpenAI-compatible server.
    Openai,
    /// The embedded Whisper recogniser (`[speech.local]`); startup fails naming the model
    /// directory when its model is missing.
    Local,
    /// `local` when its model is installed (and the binary was built with the `whisper`
    /// feature), else `none`. The default: a machine set up with `scripts/setup.sh` hears
    /// speech with no account.
    #[default]
    Auto,
    /// No ASR: agents that need one fail to start with a message naming this key.
    None,
}

/// Which language model to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmKind {
    /// Streaming `/v1/chat/completions` of an OpenAI-compatible server.
    Openai,
    /// No LLM.
    #[default]
    None,
}

/// Which synthesiser to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TtsKind {
    /// `/v1/audio/speech` of an OpenAI-compatible server.
    Openai,
    /// The local `espeak-ng` binary (no account, robotic voice).
    #[default]
    Espeak,
    /// No TTS.
    None,
}

/// Which speech-to-speech provider to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpeechToSpeechKind {
    /// The OpenAI Realtime API over WebSocket (G.711 mu-law in and out).
    Openai,
    /// None.
    #[default]
    None,
}

/// TTS audio format asked of `/v1/audio/speech`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TtsFormat {
    /// Raw 24 kHz signed 16-bit little-endian mono: no decoding cost, 384 kbit/s.
    #[default]
    Pcm,
    /// Ogg Opus, decoded here: about a tenth of the bytes.
    Opus,
}

/// Per-stage time limits. Exceeding one ends the stream with `ProviderError::Timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StageTimeouts {
    /// TCP (and TLS) connect. Key `connect_ms`.
    #[serde(rename = "connect_ms", with = "voxbridge_config::millis")]
    pub connect: Duration,
    /// From sending the request to the first piece of the answer (first token, first audio
    /// bytes). For ASR, whose answer is one JSON object, this bounds the whole request. Key
    /// `first_byte_ms`.
    #[serde(rename = "first_byte_ms", with = "voxbridge_config::millis")]
    pub first_byte: Duration,
    /// Longest gap between two pieces of a streamed answer. Key `idle_ms`.
    #[serde(rename = "idle_ms", with = "voxbridge_config::millis")]
    pub idle: Duration,
}

impl StageTimeouts {
    const fn new(connect_ms: u64, first_byte_ms: u64, idle_ms: u64) -> Self {
        Self {
            connect: Duration::from_millis(connect_ms),
            first_byte: Duration::from_millis(first_byte_ms),
            idle: Duration::from_millis(idle_ms),
        }
    }

    pub(crate) fn validate(&self, key: &str) -> Result<(), SpeechConfigError> {
        for (name, value) in [
            ("connect_ms", self.connect),
            ("first_byte_ms", self.first_byte),
            ("idle_ms", self.idle),
        ] {
            let value = value.as_millis();
            if value == 0 || value > 600_000 {
                return Err(SpeechConfigError::Invalid {
                    key: format!("{key}.timeouts.{name}"),
                    problem: format!("{value} is out of range; use 1..=600000 milliseconds"),
                });
            }
        }
        Ok(())
    }
}

/// The `[speech]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpeechConfig {
    /// Recogniser: `openai`, `local`, `auto` or `none` (default `auto`: `local` when its model
    /// is installed, else `none`).
    pub asr: AsrKind,
    /// Language model: `openai` or `none` (default `none`).
    pub llm: LlmKind,
    /// Synthesiser: `openai`, `espeak` or `none` (default `espeak`).
    pub tts: TtsKind,
    /// Speech-to-speech: `openai` (Realtime API) or `none` (default `none`).
    pub speech_to_speech: SpeechToSpeechKind,
    /// OpenAI-compatible servers.
    pub openai: OpenAiConfig,
    /// `[speech.local]`: the embedded Whisper recogniser.
    pub local: LocalAsrConfig,
    /// The local espeak-ng synthesiser (also the spoken fallback when it is installed).
    pub espeak: EspeakConfig,
    /// `[speech.pipeline]`: turn budget, stage timeouts, retries and fallbacks of the `voice`
    /// agent (Media Streams through ASR -> dialog -> TTS).
    pub pipeline: PipelineConfig,
    /// `[speech.assistant]`: the free-form LLM `assistant` agent.
    pub assistant: AssistantConfig,
    /// `[speech.realtime]`: the `realtime` agent (Media Streams through the
    /// speech-to-speech provider).
    pub realtime: RealtimeConfig,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            asr: AsrKind::Auto,
            llm: LlmKind::None,
            tts: TtsKind::Espeak,
            speech_to_speech: SpeechToSpeechKind::None,
            openai: OpenAiConfig::default(),
            local: LocalAsrConfig::default(),
            espeak: EspeakConfig::default(),
            pipeline: PipelineConfig::default(),
            assistant: AssistantConfig::default(),
            realtime: RealtimeConfig::default(),
        }
    }
}

/// `[speech.openai]`: shared connection settings, overridable per stage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiConfig {
    /// API base URL including `/v1` (default `https://api.openai.com/v1`). Self-hosted
    /// servers: e.g. `http://127.0.0.1:8000/v1` (vLLM), `http://127.0.0.1:11434/v1` (Ollama).
    pub base_url: String,
    /// API key. Empty: read from the environment variable named by `api_key_env`.
    pub api_key: Secret,
    /// Environment variable holding the key when `api_key` is empty (default `OPENAI_API_KEY`).
    pub api_key_env: String,
    /// `[speech.openai.asr]`.
    pub asr: OpenAiAsrConfig,
    /// `[speech.openai.llm]`.
    pub llm: OpenAiLlmConfig,
    /// `[speech.openai.tts]`.
    pub tts: OpenAiTtsConfig,
    /// `[speech.openai.realtime]`.
    pub realtime: OpenAiRealtimeConfig,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".to_owned(),
            api_key: Secret::default(),
            api_key_env: "OPENAI_API_KEY".to_owned(),
            asr: OpenAiAsrConfig::default(),
            llm: OpenAiLlmConfig::default(),
            tts: OpenAiTtsConfig::default(),
            realtime: OpenAiRealtimeConfig::default(),
        }
    }
}

/// `[speech.openai.asr]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiAsrConfig {
    /// Base URL for this stage only; empty = `speech.openai.base_url` (e.g. a separate
    /// faster-whisper server).
    pub base_url: String,
    /// Key for this stage only; empty = the shared key.
    pub api_key: Secret,
    /// Model (default `whisper-1`).
    pub model: String,
    /// Default language hint (ISO-639-1, e.g. `en`); empty = let the model detect it.
    pub language: String,
    /// Time limits (defaults: connect 2 s, whole request 10 s, idle 10 s).
    pub timeouts: StageTimeouts,
}

impl Default for OpenAiAsrConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            api_key: Secret::default(),
            model: "whisper-1".to_owned(),
            language: String::new(),
            timeouts: StageTimeouts::new(2_000, 10_000, 10_000),
        }
    }
}

/// `[speech.openai.llm]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiLlmConfig {
    /// Base URL for this stage only; empty = `speech.openai.base_url`.
    pub base_url: String,
    /// Key for this stage only; empty = the shared key.
    pub api_key: Secret,
    /// Model (default `gpt-4o-mini`).
    pub model: String,
    /// Default sampling temperature; a negative value means the server's default (default -1).
    pub temperature: f32,
    /// Default cap on generated tokens, sent as `max_completion_tokens`; 0 = no cap (default 0).
    pub max_tokens: u32,
    /// Time limits (defaults: connect 2 s, first token 5 s, between tokens 5 s).
    pub timeouts: StageTimeouts,
}

impl Default for OpenAiLlmConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            api_key: Secret::default(),
            model: "gpt-4o-mini".to_owned(),
            temperature: -1.0,
            max_tokens: 0,
            timeouts: StageTimeouts::new(2_000, 5_000, 5_000),
        }
    }
}

/// `[speech.openai.tts]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiTtsConfig {
    /// Base URL for this stage only; empty = `speech.openai.base_url`.
    pub base_url: String,
    /// Key for this stage only; empty = the shared key.
    pub api_key: Secret,
    /// Model (default `gpt-4o-mini-tts`).
    pub model: String,
    /// Default voice (default `alloy`).
    pub voice: String,
    /// `pcm` (24 kHz s16le, default) or `opus` (Ogg Opus).
    pub format: TtsFormat,
    /// Voice instructions (only `gpt-4o-mini-tts` style models); empty = none.
    pub instructions: String,
    /// Time limits (defaults: connect 2 s, first audio 3 s, between chunks 3 s).
    pub timeouts: StageTimeouts,
}

impl Default for OpenAiTtsConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            api_key: Secret::default(),
            model: "gpt-4o-mini-tts".to_owned(),
            voice: "alloy".to_owned(),
            format: TtsFormat::Pcm,
            instructions: String::new(),
            timeouts: StageTimeouts::new(2_000, 3_000, 3_000),
        }
    }
}

/// `[speech.openai.realtime]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiRealtimeConfig {
    /// Base URL for this stage only; empty = `speech.openai.base_url`. `http(s)` is turned into
    /// `ws(s)` and `/realtime?model=...` appended.
    pub base_url: String,
    /// Key for this stage only; empty = the shared key.
    pub api_key: Secret,
    /// Model (default `gpt-realtime`).
    pub model: String,
    /// Default voice (default `alloy`).
    pub voice: String,
    /// Model transcribing the caller's speech (`CallerTranscript` events), default
    /// `gpt-4o-mini-transcribe`; empty = no caller transcripts.
    pub transcription_model: String,
    /// Time limits: `connect_ms` for the WebSocket handshake, `first_byte_ms` for the
    /// `session.created` event; `idle_ms` bounds a response's gap between events
    /// (defaults 5 s, 5 s, 10 s).
    pub timeouts: StageTimeouts,
}

impl Default for OpenAiRealtimeConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            api_key: Secret::default(),
            model: "gpt-realtime".to_owned(),
            voice: "alloy".to_owned(),
            transcription_model: "gpt-4o-mini-transcribe".to_owned(),
            timeouts: StageTimeouts::new(5_000, 5_000, 10_000),
        }
    }
}

/// `[speech.local]`: the embedded Whisper recogniser (`speech.asr = "local"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalAsrConfig {
    /// A `CTranslate2` Whisper model directory (`model.bin`, `config.json`, `tokenizer.json`). Empty =
    /// `$VOXBRIDGE_MODEL_DIR/whisper-tiny.en`, else `~/.cache/voxbridge/models/whisper-tiny.en`,
    /// where `scripts/setup.sh` installs Whisper tiny.en.
    pub model_dir: String,
    /// Worker threads decoding at once, each with its own copy of the model (1..=64, default 1:
    /// one decode already uses both cores of a small machine).
    pub workers: usize,
    /// `CTranslate2` threads per decode (0 = its default, 0..=64).
    pub threads_per_worker: usize,
    /// Utterances waiting for a worker (1..=1024, default 8); when full, a request is refused at
    /// once and the turn retries or speaks the fallback line. The wait counts against the turn
    /// budget (`speech.pipeline.turn_budget_ms`).
    pub queue: usize,
    /// Beam width (1 = greedy, 1..=16, default 5: greedy decoding of tiny.en loops on some
    /// noisy answers, "our ex-wife, our ex-wife, ...").
    pub beam_size: usize,
    /// Text put before every utterance as previous context (names, vocabulary); a request's own
    /// prompt follows it. Empty = none.
    pub initial_prompt: String,
    /// Language hint (ISO-639-1) for multilingual models (default `en`); English-only `.en`
    /// models ignore it.
    pub language: String,
    /// `CTranslate2` compute type: `int8` (default: the fastest here, as accurate as the others
    /// on the accuracy set), `int8_float32` or `float32`.
    pub compute_type: String,
    /// Let Whisper predict timestamp tokens (default false: the `<|notimestamps|>` prompt; the
    /// timestamps are discarded either way, the pipeline has the VAD's boundaries).
    pub timestamps: bool,
    /// Silence put before each utterance (0..=2000 ms, default 500). The pipeline cuts an
    /// utterance at the VAD's first speech frame, and Whisper drops or mishears the first word
    /// of audio that starts with speech: on the accuracy set 500 ms of lead-in cut tiny.en's
    /// word error rate by about a tenth (README, accuracy table).
    pub lead_in_ms: u32,
}

/// The accepted `speech.local.compute_type` values.
pub const COMPUTE_TYPES: [&str; 3] = ["int8", "int8_float32", "float32"];

impl Default for LocalAsrConfig {
    fn default() -> Self {
        Self {
            model_dir: String::new(),
            workers: 1,
            threads_per_worker: 0,
            queue: 8,
            beam_size: 5,
            initial_prompt: String::new(),
            language: "en".to_owned(),
            compute_type: "int8".to_owned(),
            timestamps: false,
            lead_in_ms: 500,
        }
    }
}

impl LocalAsrConfig {
    pub(crate) fn validate(&self) -> Result<(), SpeechConfigError> {
        for (key, value, lo, hi) in [
            ("workers", self.workers, 1, 64),
            ("threads_per_worker", self.threads_per_worker, 0, 64),
            ("queue", self.queue, 1, 1024),
            ("beam_size", self.beam_size, 1, 16),
        ] {
            if !(lo..=hi).contains(&value) {
                return Err(SpeechConfigError::Invalid {
                    key: format!("local.{key}"),
                    problem: format!("{value} is out of range; use {lo}..={hi}"),
                });
            }
        }
        if self.lead_in_ms > 2000 {
            return Err(SpeechConfigError::Invalid {
                key: "local.lead_in_ms".to_owned(),
                problem: format!("{} is out of range; use 0..=2000", self.lead_in_ms),
            });
        }
        if !COMPUTE_TYPES.contains(&self.compute_type.as_str()) {
            return Err(SpeechConfigError::Invalid {
                key: "local.compute_type".to_owned(),
                problem: format!(
                    "{:?} is not one of {}",
                    self.compute_type,
                    COMPUTE_TYPES.join(", ")
                ),
            });
        }
        Ok(())
    }
}

/// `[speech.espeak]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EspeakConfig {
    /// The binary, looked up in `PATH` unless it contains a `/` (default `espeak-ng`).
    pub binary: String,
    /// Voice (default `en-us`); a call's `voice` parameter overrides it.
    pub voice: String,
    /// Speed in words per minute, 80..=450 (default 170).
    pub rate_wpm: u32,
    /// Pitch, 0..=99 (default 50).
    pub pitch: u32,
    /// Amplitude, 0..=200 (default 100).
    pub amplitude: u32,
    /// Time limits (connect is unused; first audio 3 s, between chunks 3 s).
    pub timeouts: StageTimeouts,
}

impl Default for EspeakConfig {
    fn default() -> Self {
        Self {
            binary: "espeak-ng".to_owned(),
            voice: "en-us".to_owned(),
            rate_wpm: 170,
            pitch: 50,
            amplitude: 100,
            timeouts: StageTimeouts::new(1_000, 3_000, 3_000),
        }
    }
}

impl EspeakConfig {
    pub(crate) fn validate(&self) -> Result<(), SpeechConfigError> {
        let range = |key: &str, value: u32, lo: u32, hi: u32| {
            if (lo..=hi).contains(&value) {
                Ok(())
            } else {
                Err(SpeechConfigError::Invalid {
                    key: format!("espeak.{key}"),
                    problem: format!("{value} is out of range; use {lo}..={hi}"),
                })
            }
        };
        range("rate_wpm", self.rate_wpm, 80, 450)?;
        range("pitch", self.pitch, 0, 99)?;
        range("amplitude", self.amplitude, 0, 200)?;
        if self.binary.trim().is_empty() {
            return Err(SpeechConfigError::Invalid {
                key: "espeak.binary".into(),
                problem: "empty; set it to \"espeak-ng\" or a path".into(),
            });
        }
        self.timeouts.validate("espeak")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<SpeechConfig, toml::de::Error> {
        toml::from_str(toml_text)
    }

    #[test]
    fn an_empty_section_is_the_defaults() {
        let config: SpeechConfig = parse("").expect("empty section");
        assert_eq!(config, SpeechConfig::default());
        assert_eq!(config.tts, TtsKind::Espeak);
        assert_eq!(config.openai.llm.model, "gpt-4o-mini");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = parse("[openai.llm]\nmodle = \"x\"\n").expect_err("typo");
        assert!(err.to_string().contains("modle"), "{err}");
        let err = parse("asr = \"whisper\"\n").expect_err("bad kind");
        assert!(err.to_string().contains("whisper"), "{err}");
    }
}
