//! ConversationRelay WebSocket messages, both directions
//! (<https://www.twilio.com/docs/voice/conversationrelay/websocket-messages>).
//!
//! Twilio speaks and transcribes; the bridge exchanges text. The discriminator is `type`.
//! [`InboundMessage`] is what Twilio sends (`setup`, `prompt`, `dtmf`, `interrupt`, `error`,
//! `info`); [`OutboundMessage`] is what the bridge sends (`text`, `play`, `sendDigits`,
//! `language`, `end`). Both parse and serialize, so the simulator can play Twilio's side.
//!
//! Unknown fields are ignored; an unknown `type` is [`RelayError::UnknownType`] (the server
//! counts malformed messages: Twilio closes with 1007 after ten in a row the other way).
//! Outbound messages are validated with the documented rules before they are written, because
//! Twilio silently drops an invalid one (error 64107).

mod outbound;

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

pub use outbound::{
    DigitSequence, End, HandoffData, Language, OutboundMessage, Play, PlayLoop, PlaySource, Text,
};

use crate::call::{CallStatus, Direction};
use crate::e164::Address;
use crate::media::DtmfDigit;
use crate::media::wire::optional_counter;
use crate::sid::{AccountSid, CallSid, SessionSid};

/// Why a ConversationRelay message was rejected.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Not JSON, or a field is missing or has the wrong type or shape.
    #[error("malformed message: {0}")]
    Json(#[from] serde_json::Error),
    /// No `type` field.
    #[error("message has no \"type\" field")]
    MissingType,
    /// A `type` value this protocol does not define (truncated to 32 characters).
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A known type that only travels in the other direction.
    #[error("message type {0:?} is not sent in this direction")]
    WrongDirection(&'static str),
    /// `sendDigits.digits` contains something other than `0-9`, `w`, `#`, `*`.
    #[error("digits may only contain 0-9, w, # and *; found {0:?}")]
    InvalidDigit(char),
    /// `sendDigits.digits` is empty.
    #[error("sendDigits needs at least one digit")]
    EmptyDigits,
    /// A `language` message without `ttsLanguage` or `transcriptionLanguage`.
    #[error("language message needs ttsLanguage or transcriptionLanguage")]
    LanguageMissing,
    /// A field that must not be empty is.
    #[error("{0} must not be empty")]
    EmptyField(&'static str),
    /// `play.loop` above 1000 (0 already means 1000).
    #[error("play loop {0} is out of range 0..=1000 (0 means 1000)")]
    LoopOutOfRange(u64),
    /// `play.source` is not an http(s) URL.
    #[error("play source must be an http:// or https:// URL, got {0:?}")]
    InvalidSource(String),
    /// `handoffData` is not the `{"reasonCode":…,"reason":…}` JSON convention.
    #[error("handoffData is not JSON with reasonCode and reason: {0}")]
    HandoffData(#[source] serde_json::Error),
}

/// Reads only the discriminator.
#[derive(Deserialize)]
struct Tag {
    #[serde(rename = "type")]
    kind: Option<String>,
}

pub(crate) fn message_type(text: &str) -> Result<String, RelayError> {
    serde_json::from_str::<Tag>(text)?
        .kind
        .ok_or(RelayError::MissingType)
}

pub(crate) fn excerpt(text: &str) -> String {
    text.chars().take(32).collect()
}

/// `""` means "absent" for SID-like fields (`parentCallSid` on a first leg).
fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

fn default_true() -> bool {
    true
}

/// `setup`: sent once, right after the socket opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Setup {
    /// `sessionId` (`VX…`).
    pub session_id: SessionSid,
    /// `accountSid`.
    pub account_sid: AccountSid,
    /// `parentCallSid`; Twilio sends `""` on a first leg, read as `None`.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub parent_call_sid: Option<CallSid>,
    /// `callSid`.
    pub call_sid: CallSid,
    /// `from`.
    pub from: Address,
    /// `to`.
    pub to: Address,
    /// `forwardedFrom`, when the call was forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_from: Option<Address>,
    /// `callType`, e.g. `PSTN`, `SIP`, `CLIENT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_type: Option<String>,
    /// `callerName` (often empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_name: Option<String>,
    /// `direction`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// `callStatus`, upper-case on the wire (`RINGING`), parsed case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_status: Option<CallStatus>,
    /// `customParameters`: the `<Parameter>` children of `<ConversationRelay>`.
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
}

/// `prompt`: what the caller said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Prompt {
    /// `voicePrompt`: the transcript.
    pub voice_prompt: String,
    /// `lang`, e.g. `en-US` (`en` with `multi` detection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// `last`: `false` for a partial prompt (`partialPrompts`); absent means final.
    #[serde(default = "default_true")]
    pub last: bool,
}

/// `dtmf`: a key press (only with `dtmfDetection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dtmf {
    /// `digit`.
    pub digit: DtmfDigit,
}

/// `interrupt`: the caller spoke over the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interrupt {
    /// `utteranceUntilInterrupt`: the text that was spoken before the interruption.
    #[serde(default)]
    pub utterance_until_interrupt: String,
    /// `durationUntilInterruptMs`, a number (a numeric string is accepted too).
    #[serde(
        default,
        deserialize_with = "optional_counter",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration_until_interrupt_ms: Option<u64>,
}

/// `error`: Twilio reports a problem (e.g. a message of ours it could not process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// `description`.
    #[serde(default)]
    pub description: String,
}

/// `info`: debug/event subscriptions (`agentSpeaking`, `clientSpeaking`, `tokensPlayed`).
/// Not in the official message reference; shapes from Twilio-employee demos.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// `name`, e.g. `agentSpeaking`.
    #[serde(default)]
    pub name: String,
    /// `value`: `"on"`/`"off"` or the played text; kept as JSON since it is undocumented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// `ts`: epoch milliseconds.
    #[serde(
        default,
        deserialize_with = "optional_counter",
        skip_serializing_if = "Option::is_none"
    )]
    pub ts: Option<u64>,
}

/// A message from Twilio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum InboundMessage {
    /// `setup` (boxed: it is much larger than the per-turn messages).
    Setup(Box<Setup>),
    /// `prompt`.
    Prompt(Prompt),
    /// `dtmf`.
    Dtmf(Dtmf),
    /// `interrupt`.
    Interrupt(Interrupt),
    /// `error`.
    Error(ErrorReport),
    /// `info`.
    Info(Info),
}

impl InboundMessage {
    /// Parses one text frame from Twilio.
    pub fn parse(text: &str) -> Result<Self, RelayError> {
        let kind = message_type(text)?;
        Ok(match kind.as_str() {
            "setup" => Self::Setup(Box::new(serde_json::from_str(text)?)),
            "prompt" => Self::Prompt(serde_json::from_str(text)?),
            "dtmf" => Self::Dtmf(serde_json::from_str(text)?),
            "interrupt" => Self::Interrupt(serde_json::from_str(text)?),
            "error" => Self::Error(serde_json::from_str(text)?),
            "info" => Self::Info(serde_json::from_str(text)?),
            "text" => return Err(RelayError::WrongDirection("text")),
            "play" => return Err(RelayError::WrongDirection("play")),
            "sendDigits" => return Err(RelayError::WrongDirection("sendDigits")),
            "language" => return Err(RelayError::WrongDirection("language")),
            "end" => return Err(RelayError::WrongDirection("end")),
            other => return Err(RelayError::UnknownType(excerpt(other))),
        })
    }

    /// The JSON text Twilio would send (used by the simulator).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("serializing plain structs to a String cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETUP: &str = r#"{
      "type": "setup",
      "sessionId": "VX00000000000000000000000000000000",
      "accountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
      "parentCallSid": "",
      "callSid": "CA00000000000000000000000000000000",
      "from": "+18005550100",
      "to": "+18005550101",
      "forwardedFrom": "+18005550102",
      "callType": "PSTN",
      "callerName": "",
      "direction": "inbound",
      "callStatus": "RINGING",
      "customParameters": { "callReference": "bar" }
    }"#;

    #[test]
    fn parses_documented_setup_example() {
        let InboundMessage::Setup(setup) = InboundMessage::parse(SETUP).unwrap() else {
            panic!("expected setup");
        };
        assert_eq!(
            setup.session_id.as_str(),
            "VX00000000000000000000000000000000"
        );
        assert_eq!(setup.parent_call_sid, None);
        assert_eq!(setup.from.phone().unwrap().as_str(), "+18005550100");
        assert_eq!(setup.direction, Some(Direction::Inbound));
        assert_eq!(setup.call_status, Some(CallStatus::Ringing));
        assert_eq!(setup.custom_parameters["callReference"], "bar");
    }

    #[test]
    fn setup_with_wrong_sid_prefix_is_malformed() {
        let text = SETUP.replace("\"VX0", "\"CA0");
        assert!(matches!(
            InboundMessage::parse(&text),
            Err(RelayError::Json(_))
        ));
    }

    #[test]
    fn parses_documented_prompt_dtmf_interrupt_error_info() {
        assert_eq!(
            InboundMessage::parse(r#"{ "type": "prompt", "voicePrompt": "Hi! Can you tell me about life?", "lang": "en-US", "last": true }"#).unwrap(),
            InboundMessage::Prompt(Prompt {
                voice_prompt: "Hi! Can you tell me about life?".into(),
                lang: Some("en-US".into()),
                last: true
            })
        );
        assert_eq!(
            InboundMessage::parse(r#"{ "type": "dtmf", "digit": "1" }"#).unwrap(),
            InboundMessage::Dtmf(Dtmf {
                digit: DtmfDigit::parse("1").unwrap()
            })
        );
        assert_eq!(
            InboundMessage::parse(r#"{ "type": "interrupt", "utteranceUntilInterrupt": "Life is a complex set of", "durationUntilInterruptMs": 460 }"#).unwrap(),
            InboundMessage::Interrupt(Interrupt {
                utterance_until_interrupt: "Life is a complex set of".into(),
                duration_until_interrupt_ms: Some(460)
            })
        );
        assert_eq!(
            InboundMessage::parse(r#"{ "type": "error", "description": "Invalid message received: { \"foo\" : \"bar\" }" }"#).unwrap(),
            InboundMessage::Error(ErrorReport {
                description: "Invalid message received: { \"foo\" : \"bar\" }".into()
            })
        );
        assert_eq!(
            InboundMessage::parse(
                r#"{"type":"info","name":"agentSpeaking","value":"on","ts":1752091234567}"#
            )
            .unwrap(),
            InboundMessage::Info(Info {
                name: "agentSpeaking".into(),
                value: Some(serde_json::json!("on")),
                ts: Some(1_752_091_234_567)
            })
        );
    }

    #[test]
    fn prompt_without_last_is_final_and_unknown_fields_are_ignored() {
        let InboundMessage::Prompt(prompt) =
            InboundMessage::parse(r#"{"type":"prompt","voicePrompt":"hi","confidence":0.9}"#)
                .unwrap()
        else {
            panic!("expected prompt");
        };
        assert!(prompt.last);
        assert_eq!(prompt.lang, None);
    }

    #[test]
    fn unknown_missing_and_wrong_direction_types_are_typed_errors() {
        assert!(matches!(
            InboundMessage::parse(r#"{"type":"bogus"}"#),
            Err(RelayError::UnknownType(t)) if t == "bogus"
        ));
        assert!(matches!(
            InboundMessage::parse(r#"{"voicePrompt":"x"}"#),
            Err(RelayError::MissingType)
        ));
        assert!(matches!(
            InboundMessage::parse(r#"{"type":"text","token":"x"}"#),
            Err(RelayError::WrongDirection("text"))
        ));
        assert!(matches!(
            InboundMessage::parse(r#"{"type":"prompt"}"#),
            Err(RelayError::Json(_))
        ));
        assert!(matches!(
            InboundMessage::parse("[1,2]"),
            Err(RelayError::Json(_))
        ));
    }

    #[test]
    fn setup_round_trips_through_json() {
        let message = InboundMessage::parse(SETUP).unwrap();
        assert_eq!(InboundMessage::parse(&message.to_json()).unwrap(), message);
    }
}
