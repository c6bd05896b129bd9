//! The settings of the voice brains (`voxbridge-voice`): `[speech.pipeline]`,
//! `[speech.assistant]`, `[speech.realtime]` and the sentence chunker. They are plain data
//! declared here, beside the provider settings, so the whole `[speech]` section deserialises
//! (and rejects unknown keys) in one place; the brains that read them depend on this crate, never
//! the other way round.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;

/// A setting with a value it cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The key, e.g. `speech.pipeline.turn_budget_ms`.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

fn bad(key: &'static str, message: &str) -> Result<(), ConfigError> {
    Err(ConfigError {
        key,
        message: message.to_owned(),
    })
}

/// `[speech.pipeline]`: how the voice pipeline paces, retries and falls back. `Default` gives
/// the documented defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Time from the caller's utterance reaching the brain within which retries may still be
    /// started. Default 4000 ms.
    #[serde(rename = "turn_budget_ms", with = "voxbridge_config::millis")]
    pub turn_budget: Duration,
    /// One ASR attempt, request to final transcript. Default 3000 ms.
    #[serde(rename = "asr_timeout_ms", with = "voxbridge_config::millis")]
    pub asr_timeout: Duration,
    /// One LLM attempt, request to first token. Default 3000 ms.
    #[serde(
        rename = "llm_first_token_timeout_ms",
        with = "voxbridge_config::millis"
    )]
    pub llm_first_token_timeout: Duration,
    /// One TTS attempt, request to first audio. Default 2000 ms.
    #[serde(
        rename = "tts_first_byte_timeout_ms",
        with = "voxbridge_config::millis"
    )]
    pub tts_first_byte_timeout: Duration,
    /// Longest gap between two LLM tokens or two TTS chunks of a stream. Default 3000 ms.
    #[serde(rename = "stream_idle_timeout_ms", with = "voxbridge_config::millis")]
    pub stream_idle_timeout: Duration,
    /// Backoff between attempts.
    pub retry: RetryPolicy,
    /// Failed turns in a row before the bot apologises and hangs up. Default 3.
    pub max_failed_turns: u32,
    /// Said when a turn fails. Default "Sorry, I didn't catch that. Could you say it again?".
    pub fallback_text: String,
    /// Said before hanging up after `max_failed_turns`. Default "I'm sorry, we're having
    /// technical difficulties. Please try again later. Goodbye."
    pub apology_text: String,
    /// Sentences synthesised ahead of the one playing. Default 1.
    pub tts_lookahead: usize,
    /// How bot text is cut into sentences.
    pub chunker: ChunkerConfig,
    /// Pass the bot's last reply (the question the caller is answering) to the recogniser as
    /// its prompt: Whisper then keeps short answers it otherwise drops words of ("Yes, I am."
    /// heard as "I am."). Default true.
    pub asr_prompt: bool,
    /// Start recognising when the caller pauses (a third of the VAD hangover, at most 200 ms,
    /// of silence) and keep the result if they say no more, so most of the hangover is not
    /// added to the reply's latency. A pause they talk through costs one recognition that is
    /// thrown away. Default true.
    pub speculative_asr: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            turn_budget: Duration::from_secs(4),
            asr_timeout: Duration::from_secs(3),
            llm_first_token_timeout: Duration::from_secs(3),
            tts_first_byte_timeout: Duration::from_secs(2),
            stream_idle_timeout: Duration::from_secs(3),
            retry: RetryPolicy::default(),
            max_failed_turns: 3,
            fallback_text: "Sorry, I didn't catch that. Could you say it again?".to_owned(),
            apology_text: "I'm sorry, we're having technical difficulties. Please try again \
                           later. Goodbye."
                .to_owned(),
            tts_lookahead: 1,
            chunker: ChunkerConfig::default(),
            asr_prompt: true,
            speculative_asr: true,
        }
    }
}

impl PipelineConfig {
    /// Checks the settings; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("speech.pipeline.turn_budget_ms", self.turn_budget),
            ("speech.pipeline.asr_timeout_ms", self.asr_timeout),
            (
                "speech.pipeline.llm_first_token_timeout_ms",
                self.llm_first_token_timeout,
            ),
            (
                "speech.pipeline.tts_first_byte_timeout_ms",
                self.tts_first_byte_timeout,
            ),
            (
                "speech.pipeline.stream_idle_timeout_ms",
                self.stream_idle_timeout,
            ),
        ] {
            if value < Duration::from_millis(1) {
                return bad(key, "must be at least 1");
            }
        }
        for (key, value) in [
            ("speech.pipeline.max_failed_turns", self.max_failed_turns),
            (
                "speech.pipeline.retry.max_attempts",
                self.retry.max_attempts,
            ),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if self.retry.max_ms < self.retry.base_ms {
            return bad("speech.pipeline.retry.max_ms", "must be >= retry.base_ms");
        }
        if self.fallback_text.trim().is_empty() {
            return bad(
                "speech.pipeline.fallback_text",
                "must not be empty: it is what the caller hears when a provider fails",
            );
        }
        if self.apology_text.trim().is_empty() {
            return bad("speech.pipeline.apology_text", "must not be empty");
        }
        if self.tts_lookahead > 8 {
            return bad("speech.pipeline.tts_lookahead", "0 ..= 8");
        }
        Ok(())
    }
}

/// `[speech.assistant]`: the LLM assistant dialog. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssistantConfig {
    /// The system prompt. Default: a short, friendly phone assistant that answers in one or
    /// two sentences without lists or markup.
    pub system_prompt: String,
    /// Said when the call connects; empty waits for the caller. Default "Hello! How can I
    /// help you today?".
    pub greeting: String,
    /// Said after a silence. Default "Are you still there?".
    pub silence_prompt: String,
    /// Said before hanging up after `max_silences`. Default "It seems you're not there
    /// anymore. Goodbye!".
    pub goodbye: String,
    /// Silence prompts before hanging up. Default 2.
    pub max_silences: u32,
    /// Caller silence after a bot turn before the silence prompt (ms). Default 8000.
    pub silence_timeout_ms: u64,
    /// Chat messages sent besides the system prompt (oldest dropped). Default 20.
    pub max_history_messages: usize,
    /// Sampling temperature; provider default when unset.
    pub temperature: Option<f32>,
    /// Cap on generated tokens. Default 300.
    pub max_tokens: Option<u32>,
}

impl Default for AssistantConfig {
    fn default() -> Self {
        Self {
            system_prompt: "You are a friendly voice assistant on a phone call. Answer in one \
                            or two short spoken sentences. No lists, no markup, no emoji."
                .to_owned(),
            greeting: "Hello! How can I help you today?".to_owned(),
            silence_prompt: "Are you still there?".to_owned(),
            goodbye: "It seems you're not there anymore. Goodbye!".to_owned(),
            max_silences: 2,
            silence_timeout_ms: 8000,
            max_history_messages: 20,
            temperature: None,
            max_tokens: Some(300),
        }
    }
}

/// What a `realtime` call runs (`speech.realtime.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RealtimeMode {
    /// The call's screening script (its `screening` parameter, else `agent.default_screening`)
    /// as instructions, with tools that record answers, end the screening and hand off, checked
    /// against the script; the call stores a screening result as `/relay` does.
    #[default]
    Screening,
    /// `speech.realtime.instructions` and the `end_call` tool: a free conversation.
    Instructions,
}

/// `[speech.realtime]`: the `realtime` agent. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeConfig {
    /// What a call runs: the screening script (default) or [`Self::instructions`].
    pub mode: RealtimeMode,
    /// `mode = "instructions"`: system instructions of every call; `{name}` is replaced by the call's custom parameter
    /// `name` (e.g. `{firstName}`).
    pub instructions: String,
    /// `mode = "instructions"`: instructions for the first response, so the bot speaks first;
    /// empty: wait for the caller.
    pub greeting: String,
    /// Bot audio per mark (ms): the precision of the heard position on barge-in. Default 100.
    pub chunk_ms: u64,
    /// Tries per (re)connection, for retryable errors (timeouts, 429, 5xx, transport).
    /// Default 2.
    pub connect_attempts: u32,
    /// Reconnections per call after the provider drops the session. Default 1.
    pub max_reconnects: u32,
    /// Said (by the fallback TTS, pre-rendered) before hanging up when the provider is gone.
    pub apology_text: String,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            mode: RealtimeMode::Screening,
            instructions: "You are Vox, a friendly phone assistant for a recruiting team. This is \
                           a phone call: speak in short, natural sentences. When the caller wants \
                           to end the call, or the conversation is complete, say goodbye and then \
                           call end_call."
                .to_owned(),
            greeting: "Greet the caller in one short sentence and ask how you can help.".to_owned(),
            chunk_ms: 100,
            connect_attempts: 2,
            max_reconnects: 1,
            apology_text: "I'm sorry, we're having technical difficulties. Please try again \
                           later. Goodbye."
                .to_owned(),
        }
    }
}

impl RealtimeConfig {
    /// Checks the settings; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(20..=1000).contains(&self.chunk_ms) {
            return bad("speech.realtime.chunk_ms", "20 ..= 1000 milliseconds");
        }
        if self.connect_attempts == 0 || self.connect_attempts > 10 {
            return bad("speech.realtime.connect_attempts", "1 ..= 10");
        }
        if self.max_reconnects > 10 {
            return bad("speech.realtime.max_reconnects", "0 ..= 10");
        }
        if self.instructions.trim().is_empty() {
            return bad("speech.realtime.instructions", "must not be empty");
        }
        if self.apology_text.trim().is_empty() {
            return bad(
                "speech.realtime.apology_text",
                "must not be empty: it is what the caller hears when the provider fails",
            );
        }
        Ok(())
    }

    /// The instructions for a call with these custom parameters.
    pub fn instructions_for(&self, parameters: &BTreeMap<String, String>) -> String {
        let mut text = self.instructions.clone();
        for (name, value) in parameters {
            let placeholder = format!("{{{name}}}");
            if text.contains(&placeholder) {
                text = text.replace(&placeholder, value);
            }
        }
        text
    }
}

/// How the chunker cuts. `Default` gives the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkerConfig {
    /// The first chunk of a turn is cut at a clause boundary once it is longer than this
    /// (characters); 0 turns early cuts off. Default 60.
    pub first_chunk_chars: usize,
    /// A clause cut of the first chunk leaves at least this many characters. Default 12.
    pub min_clause_chars: usize,
    /// Any chunk longer than this is cut at the last clause boundary or space. Default 240.
    pub max_chunk_chars: usize,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        Self {
            first_chunk_chars: 60,
            min_clause_chars: 12,
            max_chunk_chars: 240,
        }
    }
}
