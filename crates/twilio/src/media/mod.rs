//! Media Streams WebSocket messages, both directions
//! (<https://www.twilio.com/docs/voice/media-streams/websocket-messages>).
//!
//! Server side (the bridge): [`InboundDecoder`] parses what Twilio sends (`connected`, `start`,
//! `media`, `dtmf`, `mark`, `stop`) and [`OutboundEncoder`] writes what we send back (`media`,
//! `mark`, `clear`). Twilio side (the simulator): [`TwilioEncoder`] writes Twilio's messages and
//! [`OutboundDecoder`] parses ours.
//!
//! The `media` hot path runs 50 times a second per call, so neither direction allocates per
//! frame once its buffers have grown: JSON strings are borrowed from the input, counters are
//! parsed from strings or numbers in place, and base64 is decoded into (or encoded from) a
//! buffer the decoder (encoder) owns. `tests/no_alloc.rs` proves it with a counting allocator.
//!
//! Parsing is tolerant where Twilio is loose (`sequenceNumber`, `chunk`, `timestamp` as string
//! or number; unknown fields ignored; `\/` escapes) and strict where it matters: a missing
//! `streamSid`, bad base64, a media format other than `audio/x-mulaw` 8000 Hz mono, or an
//! unknown event is a typed [`MediaStreamError`].

mod server;
mod simulator;
pub(crate) mod wire;

use std::collections::BTreeMap;
use std::fmt;

pub use server::{InboundDecoder, OutboundEncoder};
pub use simulator::{OutboundDecoder, TwilioEncoder};

use crate::sid::{AccountSid, CallSid, SidError, StreamSid};

/// The only media format Twilio streams: `audio/x-mulaw`, 8000 Hz, 1 channel.
pub const ENCODING: &str = "audio/x-mulaw";
/// Sample rate of every Media Streams payload.
pub const SAMPLE_RATE: u32 = 8000;
/// Channel count of every Media Streams payload.
pub const CHANNELS: u32 = 1;

/// Why a Media Streams message was rejected.
#[derive(Debug, thiserror::Error)]
pub enum MediaStreamError {
    /// Not JSON, or a field has the wrong JSON type.
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// No `event` discriminator.
    #[error("message has no \"event\" field")]
    MissingEvent,
    /// An `event` value this protocol does not define (truncated to 32 characters).
    #[error("unknown event {0:?}")]
    UnknownEvent(String),
    /// A known event that is only sent in the other direction (e.g. `clear` from Twilio).
    #[error("event {0:?} is not sent in this direction")]
    WrongDirection(&'static str),
    /// No `streamSid` on a message that must carry one.
    #[error("{0} message has no streamSid")]
    MissingStreamSid(&'static str),
    /// A required field is absent.
    #[error("{event} message is missing {field}")]
    MissingField {
        /// The event being parsed.
        event: &'static str,
        /// The JSON path of the missing field.
        field: &'static str,
    },
    /// A SID field does not have the expected shape.
    #[error("invalid {field}: {source}")]
    InvalidSid {
        /// The JSON path of the field.
        field: &'static str,
        /// What is wrong with it.
        #[source]
        source: SidError,
    },
    /// `media.payload` is not base64.
    #[error("media payload is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// `start.mediaFormat` is not `audio/x-mulaw`, 8000 Hz, 1 channel.
    #[error(
        "unsupported media format {encoding:?} at {sample_rate:?} Hz with {channels:?} channels; expected audio/x-mulaw 8000 Hz mono"
    )]
    UnsupportedMediaFormat {
        /// `mediaFormat.encoding`.
        encoding: String,
        /// `mediaFormat.sampleRate`.
        sample_rate: Option<u64>,
        /// `mediaFormat.channels`.
        channels: Option<u64>,
    },
    /// A track name other than `inbound`/`outbound` (truncated to 32 characters).
    #[error("unknown track {0:?}")]
    UnknownTrack(String),
    /// A DTMF digit other than `0-9`, `*`, `#`, `A-D` (truncated to 32 characters).
    #[error("invalid DTMF digit {0:?}")]
    InvalidDigit(String),
}

/// At most 32 characters of untrusted text, for error values.
pub(crate) fn excerpt(text: &str) -> String {
    text.chars().take(32).collect()
}

/// Which side of the call a media frame carries. On the wire `start.tracks` and `media.track`
/// use `inbound`/`outbound` (no `_track` suffix, unlike TwiML and `dtmf.track`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    /// Audio from the caller.
    Inbound,
    /// Audio played to the caller.
    Outbound,
}

impl Track {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }

    /// Parses `inbound`/`outbound`; the `_track` suffixed TwiML spelling is accepted as well.
    pub fn parse(text: &str) -> Result<Self, MediaStreamError> {
        match text {
            "inbound" | "inbound_track" => Ok(Self::Inbound),
            "outbound" | "outbound_track" => Ok(Self::Outbound),
            other => Err(MediaStreamError::UnknownTrack(excerpt(other))),
        }
    }
}

/// One DTMF key: `0-9`, `*`, `#` or `A-D`
/// (<https://www.twilio.com/docs/voice/twiml/gather#finishonkey> lists the keypad).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DtmfDigit(char);

impl DtmfDigit {
    /// Parses a one-character digit. Lower-case `a-d` are normalized to upper case.
    pub fn parse(text: &str) -> Option<Self> {
        let mut chars = text.chars();
        let (Some(c), None) = (chars.next(), chars.next()) else {
            return None;
        };
        Self::from_char(c)
    }

    /// Checks one character.
    pub fn from_char(c: char) -> Option<Self> {
        match c {
            '0'..='9' | '*' | '#' | 'A'..='D' => Some(Self(c)),
            'a'..='d' => Some(Self(c.to_ascii_uppercase())),
            _ => None,
        }
    }

    /// The key.
    pub fn as_char(self) -> char {
        self.0
    }
}

impl serde::Serialize for DtmfDigit {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DtmfDigit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("invalid DTMF digit {:?}", excerpt(&text)))
        })
    }
}

impl fmt::Display for DtmfDigit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `connected`: the first message on every stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// `protocol`, `"Call"` in practice.
    pub protocol: String,
    /// `version`, `"1.0.0"` in practice.
    pub version: String,
}

impl Default for Connected {
    fn default() -> Self {
        Self {
            protocol: "Call".into(),
            version: "1.0.0".into(),
        }
    }
}

/// `start`: stream metadata, sent once after `connected`. The media format is checked while
/// parsing (only `audio/x-mulaw` 8000 Hz mono exists), so it is not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// `sequenceNumber` (starts at 1).
    pub sequence_number: u64,
    /// `streamSid`.
    pub stream_sid: StreamSid,
    /// `start.accountSid`.
    pub account_sid: AccountSid,
    /// `start.callSid`.
    pub call_sid: CallSid,
    /// `start.tracks`.
    pub tracks: Vec<Track>,
    /// `start.customParameters`: the TwiML `<Parameter>` pairs.
    pub custom_parameters: BTreeMap<String, String>,
}

/// `media` from Twilio, borrowing the decoder's buffers: 20 ms of mu-law per frame in practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaFrame<'a> {
    /// `sequenceNumber`.
    pub sequence_number: u64,
    /// `streamSid`, checked to be an `MZ…` SID.
    pub stream_sid: &'a str,
    /// `media.track`.
    pub track: Track,
    /// `media.chunk`, counting from 1 per track.
    pub chunk: u64,
    /// `media.timestamp`: ms since the stream started.
    pub timestamp_ms: u64,
    /// Decoded mu-law bytes.
    pub payload: &'a [u8],
}

impl MediaFrame<'_> {
    /// Copies the frame out of the decoder's buffers.
    pub fn to_owned_frame(&self) -> Result<OwnedMediaFrame, MediaStreamError> {
        Ok(OwnedMediaFrame {
            sequence_number: self.sequence_number,
            stream_sid: StreamSid::new(self.stream_sid).map_err(|source| {
                MediaStreamError::InvalidSid {
                    field: "streamSid",
                    source,
                }
            })?,
            track: self.track,
            chunk: self.chunk,
            timestamp_ms: self.timestamp_ms,
            payload: self.payload.to_vec(),
        })
    }
}

/// An owned `media` message from Twilio, for the simulator and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedMediaFrame {
    /// `sequenceNumber`.
    pub sequence_number: u64,
    /// `streamSid`.
    pub stream_sid: StreamSid,
    /// `media.track`.
    pub track: Track,
    /// `media.chunk`.
    pub chunk: u64,
    /// `media.timestamp` in ms.
    pub timestamp_ms: u64,
    /// Raw mu-law bytes.
    pub payload: Vec<u8>,
}

/// `dtmf`: a key the caller pressed (bidirectional streams only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtmf {
    /// `sequenceNumber`.
    pub sequence_number: u64,
    /// `streamSid`.
    pub stream_sid: StreamSid,
    /// `dtmf.digit`. (`dtmf.track` is always `inbound_track` and is not stored.)
    pub digit: DtmfDigit,
}

/// `mark` from Twilio: the echo of a mark we sent, once the audio before it has played (or
/// was cleared, see [`OutboundEncoder::clear`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// `sequenceNumber`.
    pub sequence_number: u64,
    /// `streamSid`.
    pub stream_sid: StreamSid,
    /// `mark.name`.
    pub name: String,
}

/// `stop`: the stream stopped or the call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// `sequenceNumber`.
    pub sequence_number: u64,
    /// `streamSid`.
    pub stream_sid: StreamSid,
    /// `stop.accountSid`.
    pub account_sid: AccountSid,
    /// `stop.callSid`.
    pub call_sid: CallSid,
}

/// A message from Twilio, as decoded by [`InboundDecoder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundEvent<'a> {
    /// `connected`.
    Connected(Connected),
    /// `start`.
    Start(Start),
    /// `media` (borrowing the decoder's buffers).
    Media(MediaFrame<'a>),
    /// `dtmf`.
    Dtmf(Dtmf),
    /// `mark`.
    Mark(Mark),
    /// `stop`.
    Stop(Stop),
}

impl InboundEvent<'_> {
    /// Copies the event out of the decoder's buffers.
    pub fn to_owned_message(&self) -> Result<InboundMessage, MediaStreamError> {
        Ok(match self {
            Self::Connected(m) => InboundMessage::Connected(m.clone()),
            Self::Start(m) => InboundMessage::Start(m.clone()),
            Self::Media(frame) => InboundMessage::Media(frame.to_owned_frame()?),
            Self::Dtmf(m) => InboundMessage::Dtmf(m.clone()),
            Self::Mark(m) => InboundMessage::Mark(m.clone()),
            Self::Stop(m) => InboundMessage::Stop(m.clone()),
        })
    }
}

/// An owned message from Twilio: what the simulator sends. Serializes to Twilio's exact wire
/// shape (string counters, `start` with the fixed media format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundMessage {
    /// `connected`.
    Connected(Connected),
    /// `start`.
    Start(Start),
    /// `media`.
    Media(OwnedMediaFrame),
    /// `dtmf`.
    Dtmf(Dtmf),
    /// `mark`.
    Mark(Mark),
    /// `stop`.
    Stop(Stop),
}

impl InboundMessage {
    /// Parses a message from Twilio into an owned value.
    pub fn from_json(text: &str) -> Result<Self, MediaStreamError> {
        InboundDecoder::new().decode(text)?.to_owned_message()
    }

    /// The JSON text Twilio would send.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("serializing plain structs to a String cannot fail")
    }
}

impl serde::Serialize for InboundMessage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        use wire::{WireDtmf, WireMark, WireMedia, WireMediaFormat, WireOut, WireStart, WireStop};
        let mut out = WireOut {
            event: "",
            protocol: None,
            version: None,
            sequence_number: None,
            start: None,
            media: None,
            dtmf: None,
            mark: None,
            stop: None,
            stream_sid: None,
        };
        match self {
            Self::Connected(m) => {
                out.event = "connected";
                out.protocol = Some(&m.protocol);
                out.version = Some(&m.version);
            }
            Self::Start(m) => {
                out.event = "start";
                out.sequence_number = Some(m.sequence_number.to_string());
                out.stream_sid = Some(m.stream_sid.as_str());
                out.start = Some(WireStart {
                    account_sid: m.account_sid.as_str(),
                    stream_sid: m.stream_sid.as_str(),
                    call_sid: m.call_sid.as_str(),
                    tracks: m.tracks.iter().map(|t| t.as_str()).collect(),
                    media_format: WireMediaFormat {
                        encoding: ENCODING,
                        sample_rate: SAMPLE_RATE,
                        channels: CHANNELS,
                    },
                    custom_parameters: &m.custom_parameters,
                });
            }
            Self::Media(m) => {
                out.event = "media";
                out.sequence_number = Some(m.sequence_number.to_string());
                out.stream_sid = Some(m.stream_sid.as_str());
                out.media = Some(WireMedia {
                    track: Some(m.track.as_str()),
                    chunk: Some(m.chunk.to_string()),
                    timestamp: Some(m.timestamp_ms.to_string()),
                    payload: wire::BASE64.encode(&m.payload),
                });
            }
            Self::Dtmf(m) => {
                out.event = "dtmf";
                out.sequence_number = Some(m.sequence_number.to_string());
                out.stream_sid = Some(m.stream_sid.as_str());
                out.dtmf = Some(WireDtmf {
                    track: "inbound_track",
                    digit: m.digit.to_string(),
                });
            }
            Self::Mark(m) => {
                out.event = "mark";
                out.sequence_number = Some(m.sequence_number.to_string());
                out.stream_sid = Some(m.stream_sid.as_str());
                out.mark = Some(WireMark { name: &m.name });
            }
            Self::Stop(m) => {
                out.event = "stop";
                out.sequence_number = Some(m.sequence_number.to_string());
                out.stream_sid = Some(m.stream_sid.as_str());
                out.stop = Some(WireStop {
                    account_sid: m.account_sid.as_str(),
                    call_sid: m.call_sid.as_str(),
                });
            }
        }
        out.serialize(serializer)
    }
}

/// A message from our server to Twilio, as decoded by [`OutboundDecoder`] (simulator side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundEvent<'a> {
    /// `media`: audio to play, decoded mu-law bytes.
    Media {
        /// `streamSid`.
        stream_sid: &'a str,
        /// Decoded mu-law bytes.
        payload: &'a [u8],
    },
    /// `mark`: echo `name` back once the audio queued before it has played.
    Mark {
        /// `streamSid`.
        stream_sid: &'a str,
        /// `mark.name`.
        name: &'a str,
    },
    /// `clear`: drop all buffered audio and echo pending marks.
    Clear {
        /// `streamSid`.
        stream_sid: &'a str,
    },
}

impl OutboundEvent<'_> {
    /// Copies the event out of the decoder's buffers.
    pub fn to_owned_message(&self) -> Result<OutboundMessage, MediaStreamError> {
        let sid = |s: &str| {
            StreamSid::new(s).map_err(|source| MediaStreamError::InvalidSid {
                field: "streamSid",
                source,
            })
        };
        Ok(match *self {
            Self::Media {
                stream_sid,
                payload,
            } => OutboundMessage::Media {
                stream_sid: sid(stream_sid)?,
                payload: payload.to_vec(),
            },
            Self::Mark { stream_sid, name } => OutboundMessage::Mark {
                stream_sid: sid(stream_sid)?,
                name: name.to_owned(),
            },
            Self::Clear { stream_sid } => OutboundMessage::Clear {
                stream_sid: sid(stream_sid)?,
            },
        })
    }
}

/// An owned message from our server to Twilio. Serializes to the documented wire shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundMessage {
    /// `media`.
    Media {
        /// `streamSid`.
        stream_sid: StreamSid,
        /// Raw mu-law bytes (no WAV header).
        payload: Vec<u8>,
    },
    /// `mark`.
    Mark {
        /// `streamSid`.
        stream_sid: StreamSid,
        /// `mark.name`.
        name: String,
    },
    /// `clear`.
    Clear {
        /// `streamSid`.
        stream_sid: StreamSid,
    },
}

impl OutboundMessage {
    /// Parses a message our server sent into an owned value.
    pub fn from_json(text: &str) -> Result<Self, MediaStreamError> {
        OutboundDecoder::new().decode(text)?.to_owned_message()
    }

    /// The JSON text our server sends.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("serializing plain structs to a String cannot fail")
    }
}

impl serde::Serialize for OutboundMessage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        use wire::{WireMark, WireMedia, WireOut};
        let (event, stream_sid) = match self {
            Self::Media { stream_sid, .. } => ("media", stream_sid),
            Self::Mark { stream_sid, .. } => ("mark", stream_sid),
            Self::Clear { stream_sid } => ("clear", stream_sid),
        };
        WireOut {
            event,
            protocol: None,
            version: None,
            sequence_number: None,
            start: None,
            media: match self {
                Self::Media { payload, .. } => Some(WireMedia {
                    track: None,
                    chunk: None,
                    timestamp: None,
                    payload: wire::BASE64.encode(payload),
                }),
                _ => None,
            },
            dtmf: None,
            mark: match self {
                Self::Mark { name, .. } => Some(WireMark { name }),
                _ => None,
            },
            stop: None,
            stream_sid: Some(stream_sid.as_str()),
        }
        .serialize(serializer)
    }
}
