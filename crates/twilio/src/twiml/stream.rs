//! Streaming nouns: `<Connect>`/`<Start>`/`<Stop>` with `<Stream>`
//! (<https://www.twilio.com/docs/voice/twiml/stream>) and `<Connect><ConversationRelay>`
//! (<https://www.twilio.com/docs/voice/twiml/connect/conversationrelay>), with their
//! `<Parameter>` and `<Language>` children.

use std::fmt;

use super::TwimlError;
use super::verbs::HttpMethod;
use super::xml::Element;
use crate::call::wire_enum;

/// Longest combined `<Parameter>` name + value, exclusive.
const PARAMETER_LIMIT: usize = 500;

/// `<Parameter name value/>`: arrives in `start.customParameters` (Media Streams) or
/// `setup.customParameters` (ConversationRelay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    name: String,
    value: String,
}

impl Parameter {
    /// Name and value must total under 500 characters; the name must not be empty.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Result<Self, TwimlError> {
        let (name, value) = (name.into(), value.into());
        if name.is_empty() {
            return Err(TwimlError::EmptyParameterName);
        }
        let total = name.chars().count() + value.chars().count();
        if total >= PARAMETER_LIMIT {
            return Err(TwimlError::ParameterTooLong(total));
        }
        Ok(Self { name, value })
    }

    fn element(&self) -> Element {
        let mut e = Element::new("Parameter");
        e.attr("name", &self.name);
        e.attr("value", &self.value);
        e
    }
}

wire_enum!(
    /// `<Stream track>` (meaningful for `<Start>` only; `<Connect>` streams inbound).
    StreamTrack {
        /// The caller's audio (default).
        InboundTrack = "inbound_track",
        /// Audio played to the caller.
        OutboundTrack = "outbound_track",
        /// Both.
        BothTracks = "both_tracks",
    }
);

/// `<Stream>`: a Media Streams WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Stream {
    url: String,
    name: Option<String>,
    track: Option<StreamTrack>,
    status_callback: Option<String>,
    status_callback_method: Option<HttpMethod>,
    connector_name: Option<String>,
    parameters: Vec<Parameter>,
}

impl Stream {
    /// A stream to `url`, which must be `wss://` with no query string (Twilio rejects both:
    /// errors 31922 and 31920); pass data with [`Stream::parameter`] instead.
    pub fn new(url: impl Into<String>) -> Result<Self, TwimlError> {
        let url = url.into();
        let has_scheme = url
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("wss://"));
        if !has_scheme || url.len() == 6 || url.contains(char::is_whitespace) {
            return Err(TwimlError::StreamUrlNotWss(url.chars().take(64).collect()));
        }
        if url.contains(['?', '#']) {
            return Err(TwimlError::StreamUrlHasQuery);
        }
        Ok(Self {
            url,
            name: None,
            track: None,
            status_callback: None,
            status_callback_method: None,
            connector_name: None,
            parameters: Vec::new(),
        })
    }

    setters!(
        /// `name`: unique per call; lets `<Stop>` or the REST API stop it.
        name: String,
        /// `track`.
        track: StreamTrack,
        /// `statusCallback` (absolute URL).
        status_callback: String,
        /// `statusCallbackMethod`.
        status_callback_method: HttpMethod,
        /// `connectorName` (Stream Connectors).
        connector_name: String,
    );

    /// Adds a `<Parameter>`.
    pub fn parameter(mut self, parameter: Parameter) -> Self {
        self.parameters.push(parameter);
        self
    }

    fn element(&self) -> Element {
        let mut e = Element::new("Stream");
        e.attr("url", &self.url);
        e.opt("name", self.name.as_ref());
        e.opt("track", self.track.as_ref());
        e.opt("statusCallback", self.status_callback.as_ref());
        e.opt("statusCallbackMethod", self.status_callback_method.as_ref());
        e.opt("connectorName", self.connector_name.as_ref());
        e.children = self.parameters.iter().map(Parameter::element).collect();
        e
    }
}

/// `<Start><Stream>`: a unidirectional fork; TwiML continues immediately.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Start {
    stream: Stream,
    action: Option<String>,
    method: Option<HttpMethod>,
}

impl Start {
    /// Starts `stream`.
    pub fn stream(stream: Stream) -> Self {
        Self {
            stream,
            action: None,
            method: None,
        }
    }

    setters!(
        /// `action`.
        action: String,
        /// `method`.
        method: HttpMethod,
    );

    pub(super) fn element(&self) -> Element {
        let mut e = Element::new("Start");
        e.opt("action", self.action.as_ref());
        e.opt("method", self.method.as_ref());
        e.children.push(self.stream.element());
        e
    }
}

/// `<Stop><Stream name/>`: stops a unidirectional stream by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopStream {
    name: String,
}

impl StopStream {
    /// Stops the stream called `name`.
    pub fn named(name: impl Into<String>) -> Result<Self, TwimlError> {
        let name = name.into();
        if name.is_empty() {
            return Err(TwimlError::Empty("<Stop><Stream name>"));
        }
        Ok(Self { name })
    }

    pub(super) fn element(&self) -> Element {
        let mut e = Element::new("Stop");
        let mut stream = Element::new("Stream");
        stream.attr("name", &self.name);
        e.children.push(stream);
        e
    }
}

/// What `<Connect>` connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ConnectTarget {
    Stream(Stream),
    ConversationRelay(Box<ConversationRelay>),
}

/// `<Connect>`: a bidirectional session; TwiML after it runs only when the session ends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Connect {
    target: ConnectTarget,
    action: Option<String>,
    method: Option<HttpMethod>,
}

impl Connect {
    /// `<Connect><Stream>`: bidirectional Media Streams.
    pub fn stream(stream: Stream) -> Self {
        Self {
            target: ConnectTarget::Stream(stream),
            action: None,
            method: None,
        }
    }

    /// `<Connect><ConversationRelay>`.
    pub fn conversation_relay(relay: ConversationRelay) -> Self {
        Self {
            target: ConnectTarget::ConversationRelay(Box::new(relay)),
            action: None,
            method: None,
        }
    }

    setters!(
        /// `action`: called when the session ends (ConversationRelay sends `SessionStatus`,
        /// `HandoffData`...).
        action: String,
        /// `method` for `action`.
        method: HttpMethod,
    );

    pub(super) fn element(&self) -> Element {
        let mut e = Element::new("Connect");
        e.opt("action", self.action.as_ref());
        e.opt("method", self.method.as_ref());
        e.children.push(match &self.target {
            ConnectTarget::Stream(stream) => stream.element(),
            ConnectTarget::ConversationRelay(relay) => relay.element(),
        });
        e
    }
}

wire_enum!(
    /// `interruptible`, `welcomeGreetingInterruptible`, `reportInputDuringAgentSpeech`.
    InterruptMode {
        /// Never.
        None = "none",
        /// Key presses only.
        Dtmf = "dtmf",
        /// Speech only.
        Speech = "speech",
        /// Speech or keys.
        Any = "any",
    }
);

wire_enum!(
    /// `ttsProvider`.
    TtsProvider {
        /// Google.
        Google = "Google",
        /// Amazon Polly.
        Amazon = "Amazon",
        /// ElevenLabs (default).
        ElevenLabs = "ElevenLabs",
    }
);

wire_enum!(
    /// `transcriptionProvider`.
    TranscriptionProvider {
        /// Google.
        Google = "Google",
        /// Deepgram (default for accounts new to ConversationRelay since 2025-09-12).
        Deepgram = "Deepgram",
    }
);

wire_enum!(
    /// `interruptSensitivity`.
    InterruptSensitivity {
        /// Low.
        Low = "low",
        /// Medium.
        Medium = "medium",
        /// High (default).
        High = "high",
    }
);

wire_enum!(
    /// One `debug` channel (the attribute is space-separated).
    DebugChannel {
        /// General debugging messages.
        Debugging = "debugging",
        /// `info` messages for `agentSpeaking`/`clientSpeaking`.
        SpeakerEvents = "speaker-events",
        /// `info` messages for `tokensPlayed`.
        TokensPlayed = "tokens-played",
    }
);

wire_enum!(
    /// `elevenlabsTextNormalization` (`auto` behaves like `off`).
    TextNormalization {
        /// On.
        On = "on",
        /// Auto.
        Auto = "auto",
        /// Off (default).
        Off = "off",
    }
);

/// `speechTimeout`: `auto`, or milliseconds (reportedly 600 to 5000; below 600 Twilio reports
/// error 64101). Only the SDKs and third parties document it, so the range is not enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeechTimeout {
    /// `auto`.
    Auto,
    /// A fixed timeout in milliseconds.
    Millis(u32),
}

impl fmt::Display for SpeechTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Millis(ms) => write!(f, "{ms}"),
        }
    }
}

/// `<Language>` inside `<ConversationRelay>`: one language the session may switch to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct RelayLanguage {
    code: String,
    tts_provider: Option<TtsProvider>,
    voice: Option<String>,
    transcription_provider: Option<TranscriptionProvider>,
    speech_model: Option<String>,
}

impl RelayLanguage {
    /// `code`, e.g. `sv-SE`, or `multi` for automatic detection.
    pub fn new(code: impl Into<String>) -> Result<Self, TwimlError> {
        let code = code.into();
        if code.is_empty() {
            return Err(TwimlError::Empty("<Language code>"));
        }
        Ok(Self {
            code,
            tts_provider: None,
            voice: None,
            transcription_provider: None,
            speech_model: None,
        })
    }

    setters!(
        /// `ttsProvider`.
        tts_provider: TtsProvider,
        /// `voice`.
        voice: String,
        /// `transcriptionProvider`.
        transcription_provider: TranscriptionProvider,
        /// `speechModel`.
        speech_model: String,
    );

    fn element(&self) -> Element {
        let mut e = Element::new("Language");
        e.attr("code", &self.code);
        e.opt("ttsProvider", self.tts_provider.as_ref());
        e.opt("voice", self.voice.as_ref());
        e.opt(
            "transcriptionProvider",
            self.transcription_provider.as_ref(),
        );
        e.opt("speechModel", self.speech_model.as_ref());
        e
    }
}

/// `<ConversationRelay>` with every attribute of the late-2025 documentation, plus the newer
/// SDK-only ones, written in the documented camelCase.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ConversationRelay {
    url: String,
    welcome_greeting: Option<String>,
    welcome_greeting_interruptible: Option<InterruptMode>,
    language: Option<String>,
    tts_language: Option<String>,
    tts_provider: Option<TtsProvider>,
    voice: Option<String>,
    transcription_language: Option<String>,
    transcription_provider: Option<TranscriptionProvider>,
    speech_model: Option<String>,
    deepgram_smart_format: Option<bool>,
    interruptible: Option<InterruptMode>,
    interrupt_sensitivity: Option<InterruptSensitivity>,
    dtmf_detection: Option<bool>,
    report_input_during_agent_speech: Option<InterruptMode>,
    preemptible: Option<bool>,
    hints: Vec<String>,
    debug: Vec<DebugChannel>,
    elevenlabs_text_normalization: Option<TextNormalization>,
    intelligence_service: Option<String>,
    partial_prompts: Option<bool>,
    profanity_filter: Option<bool>,
    background_noise_reduction: Option<bool>,
    speech_timeout: Option<SpeechTimeout>,
    ignore_backchannel: Option<bool>,
    events: Option<String>,
    eot_threshold: Option<String>,
    conversation_configuration: Option<String>,
    languages: Vec<RelayLanguage>,
    parameters: Vec<Parameter>,
}

impl ConversationRelay {
    /// A session with the app at `url`, which must start with `wss://`.
    pub fn new(url: impl Into<String>) -> Result<Self, TwimlError> {
        let url = url.into();
        let ok = url
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("wss://"))
            && url.len() > 6
            && !url.contains(char::is_whitespace);
        if !ok {
            return Err(TwimlError::RelayUrlNotWss(url.chars().take(64).collect()));
        }
        Ok(Self {
            url,
            welcome_greeting: None,
            welcome_greeting_interruptible: None,
            language: None,
            tts_language: None,
            tts_provider: None,
            voice: None,
            transcription_language: None,
            transcription_provider: None,
            speech_model: None,
            deepgram_smart_format: None,
            interruptible: None,
            interrupt_sensitivity: None,
            dtmf_detection: None,
            report_input_during_agent_speech: None,
            preemptible: None,
            hints: Vec::new(),
            debug: Vec::new(),
            elevenlabs_text_normalization: None,
            intelligence_service: None,
            partial_prompts: None,
            profanity_filter: None,
            background_noise_reduction: None,
            speech_timeout: None,
            ignore_backchannel: None,
            events: None,
            eot_threshold: None,
            conversation_configuration: None,
            languages: Vec::new(),
            parameters: Vec::new(),
        })
    }

    setters!(
        /// `welcomeGreeting`: spoken after answering.
        welcome_greeting: String,
        /// `welcomeGreetingInterruptible` (default `any`).
        welcome_greeting_interruptible: InterruptMode,
        /// `language`: TTS and STT (default `en-US`).
        language: String,
        /// `ttsLanguage`.
        tts_language: String,
        /// `ttsProvider`.
        tts_provider: TtsProvider,
        /// `voice` (provider-specific).
        voice: String,
        /// `transcriptionLanguage`.
        transcription_language: String,
        /// `transcriptionProvider`.
        transcription_provider: TranscriptionProvider,
        /// `speechModel`.
        speech_model: String,
        /// `deepgramSmartFormat` (default true).
        deepgram_smart_format: bool,
        /// `interruptible` (default `any`).
        interruptible: InterruptMode,
        /// `interruptSensitivity` (default `high`).
        interrupt_sensitivity: InterruptSensitivity,
        /// `dtmfDetection`: send `dtmf` messages.
        dtmf_detection: bool,
        /// `reportInputDuringAgentSpeech` (default `none` since May 2025).
        report_input_during_agent_speech: InterruptMode,
        /// `preemptible` (default false).
        preemptible: bool,
        /// `elevenlabsTextNormalization`.
        elevenlabs_text_normalization: TextNormalization,
        /// `intelligenceService`: Conversational Intelligence Service SID or unique name.
        intelligence_service: String,
        /// `partialPrompts` (SDK-documented).
        partial_prompts: bool,
        /// `profanityFilter` (SDK-documented).
        profanity_filter: bool,
        /// `backgroundNoiseReduction` (SDK-documented).
        background_noise_reduction: bool,
        /// `speechTimeout` (SDK-documented).
        speech_timeout: SpeechTimeout,
        /// `ignoreBackchannel` (SDK-documented).
        ignore_backchannel: bool,
        /// `events` (SDK-documented; semantics unconfirmed, written verbatim).
        events: String,
        /// `eotThreshold` (third-party only, written verbatim).
        eot_threshold: String,
        /// `conversationConfiguration` (third-party only, written verbatim).
        conversation_configuration: String,
    );

    /// `hints`: phrases that help STT, written comma-separated.
    pub fn hints<I: IntoIterator<Item = S>, S: Into<String>>(mut self, hints: I) -> Self {
        self.hints = hints.into_iter().map(Into::into).collect();
        self
    }

    /// `debug`: channels, written space-separated.
    pub fn debug(mut self, channels: &[DebugChannel]) -> Self {
        self.debug = channels.to_vec();
        self
    }

    /// Adds a `<Language>` child (it does not make the language active).
    pub fn language_option(mut self, language: RelayLanguage) -> Self {
        self.languages.push(language);
        self
    }

    /// Adds a `<Parameter>` child (arrives in `setup.customParameters`).
    pub fn parameter(mut self, parameter: Parameter) -> Self {
        self.parameters.push(parameter);
        self
    }

    fn element(&self) -> Element {
        let mut e = Element::new("ConversationRelay");
        e.attr("url", &self.url);
        e.opt("welcomeGreeting", self.welcome_greeting.as_ref());
        e.opt(
            "welcomeGreetingInterruptible",
            self.welcome_greeting_interruptible.as_ref(),
        );
        e.opt("language", self.language.as_ref());
        e.opt("ttsLanguage", self.tts_language.as_ref());
        e.opt("ttsProvider", self.tts_provider.as_ref());
        e.opt("voice", self.voice.as_ref());
        e.opt(
            "transcriptionLanguage",
            self.transcription_language.as_ref(),
        );
        e.opt(
            "transcriptionProvider",
            self.transcription_provider.as_ref(),
        );
        e.opt("speechModel", self.speech_model.as_ref());
        e.opt("deepgramSmartFormat", self.deepgram_smart_format.as_ref());
        e.opt("interruptible", self.interruptible.as_ref());
        e.opt("interruptSensitivity", self.interrupt_sensitivity.as_ref());
        e.opt("dtmfDetection", self.dtmf_detection.as_ref());
        e.opt(
            "reportInputDuringAgentSpeech",
            self.report_input_during_agent_speech.as_ref(),
        );
        e.opt("preemptible", self.preemptible.as_ref());
        e.list("hints", &self.hints, ",");
        e.list("debug", &self.debug, " ");
        e.opt(
            "elevenlabsTextNormalization",
            self.elevenlabs_text_normalization.as_ref(),
        );
        e.opt("intelligenceService", self.intelligence_service.as_ref());
        e.opt("partialPrompts", self.partial_prompts.as_ref());
        e.opt("profanityFilter", self.profanity_filter.as_ref());
        e.opt(
            "backgroundNoiseReduction",
            self.background_noise_reduction.as_ref(),
        );
        e.opt("speechTimeout", self.speech_timeout.as_ref());
        e.opt("ignoreBackchannel", self.ignore_backchannel.as_ref());
        e.opt("events", self.events.as_ref());
        e.opt("eotThreshold", self.eot_threshold.as_ref());
        e.opt(
            "conversationConfiguration",
            self.conversation_configuration.as_ref(),
        );
        e.children = self
            .languages
            .iter()
            .map(RelayLanguage::element)
            .chain(self.parameters.iter().map(Parameter::element))
            .collect();
        e
    }
}
