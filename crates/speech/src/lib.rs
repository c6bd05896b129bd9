//! Speech providers: the interfaces a voice brain uses to hear (ASR), think (LLM) and speak
//! (TTS), or to do all three at once (speech-to-speech, e.g. the OpenAI Realtime API).
//!
//! Every provider call is a stream, so a brain can act on the first piece of a result while
//! the rest is still on its way (the first LLM sentence goes to TTS while later tokens stream;
//! the first TTS bytes go to the caller while the rest is synthesised). Dropping a stream
//! cancels the request: a brain that sees barge-in drops its LLM and TTS streams and no work
//! continues after that.
//!
//! Implementations are async shells around HTTP or WebSocket clients; nothing here reads a
//! clock. Providers are shared by all calls (`Arc<dyn Asr>` ...), so they must be `Send + Sync`
//! and keep per-request state inside the returned stream.

pub mod config;
pub mod espeak;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod local;
pub mod openai;
pub mod providers;
pub mod realtime;
pub mod retry;
pub mod voice_config;
pub mod wav_stream;

use std::time::Duration;

use futures::stream::BoxStream;
pub use voxbridge_brain::{BoxFuture, Stage};

/// What can go wrong talking to a provider. [`ProviderError::is_retryable`] tells the turn
/// logic whether another attempt inside the turn budget may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The stage did not answer (or stalled mid-stream) within its timeout.
    #[error("{stage} timed out after {after:?}")]
    Timeout {
        /// The stage.
        stage: Stage,
        /// The timeout that expired.
        after: Duration,
    },
    /// HTTP 429: the provider asks us to slow down.
    #[error("{stage} rate limited (retry after {retry_after:?})")]
    RateLimited {
        /// The stage.
        stage: Stage,
        /// The provider's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// HTTP 5xx or an error the provider reports as transient.
    #[error("{stage} server error {status}: {message}")]
    Server {
        /// The stage.
        stage: Stage,
        /// HTTP status (0 when the error came over a WebSocket).
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// HTTP 4xx other than 429: our request or our credentials are wrong. Not retried.
    #[error("{stage} rejected the request ({status}): {message}")]
    Rejected {
        /// The stage.
        stage: Stage,
        /// HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// Connecting or reading failed (refused, reset, TLS ...).
    #[error("{stage} transport error: {message}")]
    Transport {
        /// The stage.
        stage: Stage,
        /// What failed.
        message: String,
    },
    /// The provider answered something we cannot use (bad JSON, unknown audio format ...).
    #[error("{stage} protocol error: {message}")]
    Protocol {
        /// The stage.
        stage: Stage,
        /// What was wrong.
        message: String,
    },
    /// The provider is not usable as configured (missing key, local binary not found ...).
    #[error("{stage} unavailable: {message}")]
    Unavailable {
        /// The stage.
        stage: Stage,
        /// Why, naming the config key to fix when there is one.
        message: String,
    },
}

impl ProviderError {
    /// The stage this error came from.
    pub fn stage(&self) -> Stage {
        match self {
            Self::Timeout { stage, .. }
            | Self::RateLimited { stage, .. }
            | Self::Server { stage, .. }
            | Self::Rejected { stage, .. }
            | Self::Transport { stage, .. }
            | Self::Protocol { stage, .. }
            | Self::Unavailable { stage, .. } => *stage,
        }
    }

    /// A short name of the kind of failure, for logs and hang-up reasons (`timeout`,
    /// `rate_limited`, `server_error`, `rejected`, `transport`, `protocol`, `unavailable`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server_error",
            Self::Rejected { .. } => "rejected",
            Self::Transport { .. } => "transport",
            Self::Protocol { .. } => "protocol",
            Self::Unavailable { .. } => "unavailable",
        }
    }

    /// Whether another attempt may succeed: timeouts, 429, 5xx and transport errors.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. }
                | Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Transport { .. }
        )
    }
}

/// A block of mono PCM16 audio with its sample rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioChunk {
    /// Mono PCM16 samples.
    pub pcm: Vec<i16>,
    /// Their sample rate in Hz.
    pub sample_rate: u32,
}

// ---------------------------------------------------------------------------------------------
// ASR

/// One caller utterance to transcribe (VAD-segmented by the session).
#[derive(Debug, Clone, PartialEq)]
pub struct AsrRequest {
    /// The utterance audio.
    pub audio: AudioChunk,
    /// Language hint (ISO-639-1, e.g. `en`), when known.
    pub language: Option<String>,
    /// Prompt hint: words to expect (job title, names), or the bot's last question.
    pub prompt: Option<String>,
    /// When the transcript stops being useful (the turn budget's end, wall clock). The local
    /// recogniser does not start a request it cannot finish by then and gives up waiting at it;
    /// remote providers are bounded by the caller's timeout instead.
    pub deadline: Option<std::time::Instant>,
}

/// What a recogniser reports for one utterance.
#[derive(Debug, Clone, PartialEq)]
pub enum AsrEvent {
    /// An interim hypothesis; later events may change it.
    Partial(String),
    /// The final transcript. Always the last event of a successful stream.
    Final {
        /// What the caller said (may be empty: nothing intelligible).
        text: String,
        /// Recogniser confidence in `0.0..=1.0`, when it reports one.
        confidence: Option<f32>,
    },
}

/// Streaming speech recognition.
pub trait Asr: Send + Sync + 'static {
    /// The provider's name for logs and metrics (`openai`, ...).
    fn name(&self) -> &'static str;
    /// Transcribes one utterance: zero or more [`AsrEvent::Partial`]s, then one
    /// [`AsrEvent::Final`]. Dropping the stream cancels the request.
    fn transcribe(
        &self,
        request: AsrRequest,
    ) -> BoxStream<'static, Result<AsrEvent, ProviderError>>;
}

// ---------------------------------------------------------------------------------------------
// LLM

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The caller.
    User,
    /// The bot.
    Assistant,
    /// A tool result.
    Tool,
}

/// A tool call the model made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    /// The provider's id for the call (tool results refer to it).
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments, a JSON object as text (as the model produced it; may be invalid JSON).
    pub arguments: String,
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// The author.
    pub role: Role,
    /// The text (empty for an assistant message that only calls tools).
    pub content: String,
    /// Tool calls of an assistant message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For [`Role::Tool`] messages: the call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A message with text only.
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolSpec {
    /// Function name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// A streaming chat completion request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The conversation so far, system prompt first.
    pub messages: Vec<ChatMessage>,
    /// Functions the model may call.
    pub tools: Vec<ToolSpec>,
    /// Sampling temperature, provider default when `None`.
    pub temperature: Option<f32>,
    /// Cap on generated tokens.
    pub max_tokens: Option<u32>,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model finished its answer.
    Stop,
    /// The token cap was hit.
    Length,
    /// The model called tools and waits for their results.
    ToolCalls,
    /// Anything else the provider reported.
    Other,
}

/// What a language model streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmEvent {
    /// A piece of the answer text.
    Token(String),
    /// A complete tool call (arguments fully streamed).
    ToolCall(ToolCall),
    /// Generation finished. Always the last event of a successful stream.
    Done(FinishReason),
}

/// Streaming chat completion.
pub trait Llm: Send + Sync + 'static {
    /// The provider's name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Streams the answer: tokens and tool calls in order, then [`LlmEvent::Done`]. Dropping
    /// the stream cancels the request.
    fn stream(&self, request: ChatRequest) -> BoxStream<'static, Result<LlmEvent, ProviderError>>;
}

// ---------------------------------------------------------------------------------------------
// TTS

/// Text to speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtsRequest {
    /// What to say (one sentence or a few).
    pub text: String,
    /// Provider voice name; provider default when `None`.
    pub voice: Option<String>,
    /// Language (BCP-47, e.g. `en-US`), when the provider needs it.
    pub language: Option<String>,
}

/// Streaming speech synthesis.
pub trait Tts: Send + Sync + 'static {
    /// The provider's name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Streams audio as it is synthesised (any rate; the session resamples to 8 kHz). The
    /// stream ends when the text is fully spoken. Dropping it cancels synthesis.
    fn synthesize(
        &self,
        request: TtsRequest,
    ) -> BoxStream<'static, Result<AudioChunk, ProviderError>>;
}

// ---------------------------------------------------------------------------------------------
// Speech-to-speech

/// How to open a speech-to-speech session for one call.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechSessionSetup {
    /// System instructions.
    pub instructions: String,
    /// Provider voice.
    pub voice: Option<String>,
    /// Functions the model may call.
    pub tools: Vec<ToolSpec>,
}

/// Sent to a speech-to-speech session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpeechInput {
    /// Caller audio: G.711 mu-law at 8 kHz, as Twilio sends it (no transcoding).
    CallerAudio(Vec<u8>),
    /// The caller heard only the first `audio_end_ms` of assistant item `item_id`: drop the
    /// rest from the model's context.
    Truncate {
        /// The assistant item.
        item_id: String,
        /// Milliseconds of it that were played.
        audio_end_ms: u64,
    },
    /// Cancel the response being generated.
    Cancel,
    /// The result of a tool call.
    ToolResult {
        /// The call id.
        call_id: String,
        /// The result, JSON text.
        output: String,
    },
    /// A line of text from the caller's side of the conversation (what the model should know
    /// that it cannot hear, e.g. a key pressed on the keypad); no response is asked for.
    UserText(String),
    /// Ask the model to speak now (e.g. the greeting), with extra instructions.
    Respond {
        /// Instructions for this response only.
        instructions: Option<String>,
    },
}

/// Received from a speech-to-speech session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpeechOutput {
    /// The provider's VAD heard the caller start speaking: barge-in.
    SpeechStarted,
    /// The caller stopped speaking.
    SpeechStopped,
    /// Bot audio for assistant item `item_id`: G.711 mu-law at 8 kHz.
    BotAudio {
        /// The assistant item the audio belongs to.
        item_id: String,
        /// Mu-law bytes.
        mulaw: Vec<u8>,
    },
    /// A transcript of the caller's speech.
    CallerTranscript(String),
    /// A transcript (or text) of what the bot says in `item_id`.
    BotTranscript {
        /// The assistant item.
        item_id: String,
        /// The text.
        text: String,
    },
    /// The model called a tool.
    ToolCall(ToolCall),
    /// A response finished.
    ResponseDone,
    /// The provider refused a `response.create` because a response is already active
    /// (`conversation_already_has_active_response`): ask again once it is done.
    ResponseBusy,
}

/// An open speech-to-speech session for one call.
pub trait SpeechSession: Send + 'static {
    /// Sends one input.
    fn send(&mut self, input: SpeechInput) -> BoxFuture<Result<(), ProviderError>>;
    /// The next output; `None` when the provider closed the session. Cancel-safe.
    fn next(&mut self) -> BoxFuture<Option<Result<SpeechOutput, ProviderError>>>;
}

/// Opens speech-to-speech sessions (one per call).
pub trait SpeechToSpeech: Send + Sync + 'static {
    /// The provider's name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Connects a session.
    fn connect(
        &self,
        setup: SpeechSessionSetup,
    ) -> BoxFuture<Result<Box<dyn SpeechSession>, ProviderError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_errors_are_retried() {
        let stage = Stage::Llm;
        assert!(
            ProviderError::RateLimited {
                stage,
                retry_after: None
            }
            .is_retryable()
        );
        assert!(
            ProviderError::Server {
                stage,
                status: 503,
                message: "overloaded".into()
            }
            .is_retryable()
        );
        assert!(
            ProviderError::Timeout {
                stage,
                after: Duration::from_secs(1)
            }
            .is_retryable()
        );
        assert!(
            !ProviderError::Rejected {
                stage,
                status: 401,
                message: "bad key".into()
            }
            .is_retryable()
        );
        assert!(
            !ProviderError::Unavailable {
                stage,
                message: "no key".into()
            }
            .is_retryable()
        );
        assert_eq!(
            ProviderError::Protocol {
                stage: Stage::Tts,
                message: "x".into()
            }
            .stage(),
            Stage::Tts
        );
    }
}
