//! Messages the bridge sends to ConversationRelay, validated with the rules in
//! <https://www.twilio.com/docs/voice/conversationrelay/websocket-messages#messages-your-app-sends>.
//! Twilio drops a message that fails its validation (error 64107) without closing the session,
//! so an invalid message would be silent; here it is a [`RelayError`] before it is written.

use serde::{Deserialize, Serialize, Serializer};

use super::{RelayError, excerpt, message_type};

/// `text`: a token for Twilio to speak. Do not trim LLM tokens; their spaces matter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    /// `token`: required, may be empty.
    pub token: String,
    /// `last`: marks the final token of the talk cycle.
    #[serde(default)]
    pub last: bool,
    /// `lang`: overrides the TTS language for this token (must not be empty if set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// `interruptible`: overrides the TwiML setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interruptible: Option<bool>,
    /// `preemptible`: overrides the TwiML setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemptible: Option<bool>,
}

impl Text {
    /// A token that more tokens will follow.
    pub fn partial(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            last: false,
            lang: None,
            interruptible: None,
            preemptible: None,
        }
    }

    /// The final token of a talk cycle.
    pub fn last(token: impl Into<String>) -> Self {
        Self {
            last: true,
            ..Self::partial(token)
        }
    }
}

/// `play.source`: an `http://` or `https://` URL without whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PlaySource(String);

impl PlaySource {
    /// Checks the URL shape.
    pub fn new(url: impl Into<String>) -> Result<Self, RelayError> {
        let url = url.into();
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        match rest {
            Some(rest) if !rest.is_empty() && !rest.chars().any(char::is_whitespace) => {
                Ok(Self(url))
            }
            _ => Err(RelayError::InvalidSource(excerpt(&url))),
        }
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `play.loop`: how many times to play, `0` to `1000`, where `0` means the maximum, 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PlayLoop(u16);

impl PlayLoop {
    /// The most plays Twilio allows; `loop: 0` also means this.
    pub const MAX: u16 = 1000;

    /// Checks the range.
    pub fn new(count: u64) -> Result<Self, RelayError> {
        match u16::try_from(count) {
            Ok(n) if n <= Self::MAX => Ok(Self(n)),
            _ => Err(RelayError::LoopOutOfRange(count)),
        }
    }

    /// The wire value.
    pub fn get(self) -> u16 {
        self.0
    }

    /// How many times the audio will play (`0` -> 1000).
    pub fn plays(self) -> u16 {
        if self.0 == 0 { Self::MAX } else { self.0 }
    }
}

impl Default for PlayLoop {
    fn default() -> Self {
        Self(1)
    }
}

/// `play`: play an audio file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Play {
    /// `source`.
    pub source: PlaySource,
    /// `loop` (default 1).
    #[serde(rename = "loop")]
    pub loop_count: PlayLoop,
    /// `preemptible` (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preemptible: Option<bool>,
    /// `interruptible`: overrides TwiML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interruptible: Option<bool>,
}

impl Play {
    /// Plays `source` once.
    pub fn new(source: PlaySource) -> Self {
        Self {
            source,
            loop_count: PlayLoop::default(),
            preemptible: None,
            interruptible: None,
        }
    }
}

/// `sendDigits.digits`: only `0-9`, `w` (half-second pause), `#` and `*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DigitSequence(String);

impl DigitSequence {
    /// Checks the alphabet.
    pub fn new(digits: impl Into<String>) -> Result<Self, RelayError> {
        let digits = digits.into();
        if digits.is_empty() {
            return Err(RelayError::EmptyDigits);
        }
        if let Some(bad) = digits
            .chars()
            .find(|c| !matches!(c, '0'..='9' | 'w' | '#' | '*'))
        {
            return Err(RelayError::InvalidDigit(bad));
        }
        Ok(Self(digits))
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `language`: switch TTS and/or STT language for what follows. At least one is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Language {
    #[serde(skip_serializing_if = "Option::is_none")]
    tts_language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transcription_language: Option<String>,
}

impl Language {
    /// Needs at least one non-empty language.
    pub fn new(
        tts_language: Option<String>,
        transcription_language: Option<String>,
    ) -> Result<Self, RelayError> {
        if tts_language.as_deref() == Some("") {
            return Err(RelayError::EmptyField("ttsLanguage"));
        }
        if transcription_language.as_deref() == Some("") {
            return Err(RelayError::EmptyField("transcriptionLanguage"));
        }
        if tts_language.is_none() && transcription_language.is_none() {
            return Err(RelayError::LanguageMissing);
        }
        Ok(Self {
            tts_language,
            transcription_language,
        })
    }

    /// `ttsLanguage`.
    pub fn tts_language(&self) -> Option<&str> {
        self.tts_language.as_deref()
    }

    /// `transcriptionLanguage`.
    pub fn transcription_language(&self) -> Option<&str> {
        self.transcription_language.as_deref()
    }
}

/// The `handoffData` convention: a JSON object with `reasonCode` and `reason` (plus anything
/// else the app wants), carried as a *string* and returned to the `<Connect action>` URL as
/// `HandoffData`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandoffData {
    /// `reasonCode`, e.g. `live-agent-handoff`.
    pub reason_code: String,
    /// `reason`, human-readable.
    pub reason: String,
    /// Any other fields.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl HandoffData {
    /// A handoff with a code and a reason.
    pub fn new(reason_code: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            reason_code: reason_code.into(),
            reason: reason.into(),
            extra: serde_json::Map::new(),
        }
    }

    /// The JSON string to put in `handoffData`.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self).expect("serializing plain structs to a String cannot fail")
    }

    /// Parses a `handoffData`/`HandoffData` string.
    pub fn parse(text: &str) -> Result<Self, RelayError> {
        serde_json::from_str(text).map_err(RelayError::HandoffData)
    }
}

/// `end`: finish the session; Twilio continues with the TwiML after `<Connect>` or calls the
/// `action` URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct End {
    /// `handoffData`: an optional string, JSON by convention (see [`HandoffData`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff_data: Option<String>,
}

impl End {
    /// `end` carrying typed handoff data.
    pub fn with_handoff(data: &HandoffData) -> Self {
        Self {
            handoff_data: Some(data.to_json_string()),
        }
    }

    /// The handoff data, if present, parsed with the `reasonCode`/`reason` convention.
    pub fn handoff(&self) -> Option<Result<HandoffData, RelayError>> {
        self.handoff_data.as_deref().map(HandoffData::parse)
    }
}

/// A message from the bridge to Twilio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundMessage {
    /// `text`.
    Text(Text),
    /// `play`.
    Play(Play),
    /// `sendDigits`.
    SendDigits(DigitSequence),
    /// `language`.
    Language(Language),
    /// `end`.
    End(End),
}

/// Wire shape for serialization: `type` first, then the message's own fields.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum WireOut<'a> {
    Text(&'a Text),
    Play(&'a Play),
    SendDigits { digits: &'a DigitSequence },
    Language(&'a Language),
    End(&'a End),
}

impl Serialize for OutboundMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Text(m) => WireOut::Text(m),
            Self::Play(m) => WireOut::Play(m),
            Self::SendDigits(digits) => WireOut::SendDigits { digits },
            Self::Language(m) => WireOut::Language(m),
            Self::End(m) => WireOut::End(m),
        }
        .serialize(serializer)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPlay {
    source: String,
    #[serde(rename = "loop", default)]
    loop_count: Option<u64>,
    preemptible: Option<bool>,
    interruptible: Option<bool>,
}

#[derive(Deserialize)]
struct RawDigits {
    digits: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLanguage {
    tts_language: Option<String>,
    transcription_language: Option<String>,
}

impl OutboundMessage {
    /// Parses and validates one text frame from the bridge (the simulator's view: what Twilio
    /// would reject with 64107 is an error here).
    pub fn parse(text: &str) -> Result<Self, RelayError> {
        let kind = message_type(text)?;
        let message = match kind.as_str() {
            "text" => Self::Text(serde_json::from_str(text)?),
            "play" => {
                let raw: RawPlay = serde_json::from_str(text)?;
                Self::Play(Play {
                    source: PlaySource::new(raw.source)?,
                    loop_count: raw
                        .loop_count
                        .map_or(Ok(PlayLoop::default()), PlayLoop::new)?,
                    preemptible: raw.preemptible,
                    interruptible: raw.interruptible,
                })
            }
            "sendDigits" => {
                let raw: RawDigits = serde_json::from_str(text)?;
                Self::SendDigits(DigitSequence::new(raw.digits)?)
            }
            "language" => {
                let raw: RawLanguage = serde_json::from_str(text)?;
                Self::Language(Language::new(raw.tts_language, raw.transcription_language)?)
            }
            "end" => Self::End(serde_json::from_str(text)?),
            "setup" => return Err(RelayError::WrongDirection("setup")),
            "prompt" => return Err(RelayError::WrongDirection("prompt")),
            "dtmf" => return Err(RelayError::WrongDirection("dtmf")),
            "interrupt" => return Err(RelayError::WrongDirection("interrupt")),
            "error" => return Err(RelayError::WrongDirection("error")),
            "info" => return Err(RelayError::WrongDirection("info")),
            other => return Err(RelayError::UnknownType(excerpt(other))),
        };
        message.validate()?;
        Ok(message)
    }

    /// Checks the rules the newtypes cannot carry (public `Text` fields).
    pub fn validate(&self) -> Result<(), RelayError> {
        if let Self::Text(text) = self
            && text.lang.as_deref() == Some("")
        {
            return Err(RelayError::EmptyField("lang"));
        }
        Ok(())
    }

    /// Validates and writes the JSON text.
    pub fn to_json(&self) -> Result<String, RelayError> {
        self.validate()?;
        Ok(serde_json::to_string(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(message: &OutboundMessage) -> serde_json::Value {
        serde_json::from_str(&message.to_json().unwrap()).unwrap()
    }

    #[test]
    fn text_matches_documented_shape() {
        let message = OutboundMessage::Text(Text {
            interruptible: Some(false),
            preemptible: Some(false),
            ..Text::partial("Hello world!")
        });
        assert_eq!(
            value(&message),
            json!({ "type": "text", "token": "Hello world!", "last": false, "interruptible": false, "preemptible": false })
        );
        let message = OutboundMessage::Text(Text {
            lang: Some(String::new()),
            ..Text::last(" keep spaces ")
        });
        assert!(matches!(
            message.to_json(),
            Err(RelayError::EmptyField("lang"))
        ));
    }

    #[test]
    fn play_matches_documented_shape_and_loop_zero_means_thousand() {
        let message = OutboundMessage::Play(Play {
            loop_count: PlayLoop::new(1).unwrap(),
            preemptible: Some(false),
            interruptible: Some(true),
            ..Play::new(PlaySource::new("https://api.twilio.com/cowbell.mp3").unwrap())
        });
        assert_eq!(
            value(&message),
            json!({ "type": "play", "source": "https://api.twilio.com/cowbell.mp3", "loop": 1, "preemptible": false, "interruptible": true })
        );
        assert_eq!(PlayLoop::new(0).unwrap().plays(), 1000);
        assert_eq!(PlayLoop::new(7).unwrap().plays(), 7);
        assert!(matches!(
            PlayLoop::new(1001),
            Err(RelayError::LoopOutOfRange(1001))
        ));
        assert!(matches!(
            OutboundMessage::parse(r#"{"type":"play","source":"https://a/b.mp3","loop":5000}"#),
            Err(RelayError::LoopOutOfRange(5000))
        ));
        assert!(matches!(
            PlaySource::new("ftp://x/y.mp3"),
            Err(RelayError::InvalidSource(_))
        ));
    }

    #[test]
    fn send_digits_accepts_only_documented_alphabet() {
        let message = OutboundMessage::SendDigits(DigitSequence::new("9www4085551212").unwrap());
        assert_eq!(
            value(&message),
            json!({ "type": "sendDigits", "digits": "9www4085551212" })
        );
        assert!(DigitSequence::new("12#*w").is_ok());
        assert!(matches!(
            DigitSequence::new("12W"),
            Err(RelayError::InvalidDigit('W'))
        ));
        assert!(matches!(
            DigitSequence::new("1A"),
            Err(RelayError::InvalidDigit('A'))
        ));
        assert!(matches!(
            DigitSequence::new(""),
            Err(RelayError::EmptyDigits)
        ));
        assert!(matches!(
            OutboundMessage::parse(r#"{"type":"sendDigits","digits":"12 3"}"#),
            Err(RelayError::InvalidDigit(' '))
        ));
    }

    #[test]
    fn language_needs_at_least_one_field() {
        let message = OutboundMessage::Language(
            Language::new(Some("sv-SE".into()), Some("en-US".into())).unwrap(),
        );
        assert_eq!(
            value(&message),
            json!({ "type": "language", "ttsLanguage": "sv-SE", "transcriptionLanguage": "en-US" })
        );
        assert!(matches!(
            Language::new(None, None),
            Err(RelayError::LanguageMissing)
        ));
        assert!(matches!(
            OutboundMessage::parse(r#"{"type":"language"}"#),
            Err(RelayError::LanguageMissing)
        ));
        assert!(Language::new(None, Some("en-US".into())).is_ok());
    }

    #[test]
    fn end_carries_handoff_data_as_a_json_string() {
        let handoff = HandoffData::new(
            "live-agent-handoff",
            "The caller wants to talk to a real person",
        );
        let message = OutboundMessage::End(End::with_handoff(&handoff));
        let wire = value(&message);
        assert_eq!(wire["type"], "end");
        let inner = wire["handoffData"]
            .as_str()
            .expect("handoffData is a string");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(inner).unwrap(),
            json!({"reasonCode":"live-agent-handoff","reason":"The caller wants to talk to a real person"})
        );
        let OutboundMessage::End(end) =
            OutboundMessage::parse(&message.to_json().unwrap()).unwrap()
        else {
            panic!("expected end");
        };
        assert_eq!(end.handoff().unwrap().unwrap(), handoff);
        // The documented example (with a space after the comma) parses too.
        let doc = r#"{ "type": "end", "handoffData": "{\"reasonCode\":\"live-agent-handoff\", \"reason\": \"The caller wants to talk to a real person\"}" }"#;
        let OutboundMessage::End(end) = OutboundMessage::parse(doc).unwrap() else {
            panic!("expected end");
        };
        assert_eq!(
            end.handoff().unwrap().unwrap().reason_code,
            "live-agent-handoff"
        );
        assert_eq!(
            value(&OutboundMessage::End(End::default())),
            json!({"type":"end"})
        );
    }

    #[test]
    fn outbound_parse_rejects_unknown_and_inbound_types() {
        assert!(matches!(
            OutboundMessage::parse(r#"{"type":"speak"}"#),
            Err(RelayError::UnknownType(_))
        ));
        assert!(matches!(
            OutboundMessage::parse(r#"{"type":"prompt","voicePrompt":"x"}"#),
            Err(RelayError::WrongDirection("prompt"))
        ));
        assert!(matches!(
            OutboundMessage::parse(r#"{"type":"text"}"#),
            Err(RelayError::Json(_))
        ));
    }
}
