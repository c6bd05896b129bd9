//! The bridge's side of a Media Streams socket: decode Twilio's messages, encode ours.
//! (<https://www.twilio.com/docs/voice/media-streams/websocket-messages>)

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine as _;

use super::wire::{self, Counter, RawMessage, RawStart, Text};
use super::{
    CHANNELS, Connected, Dtmf, DtmfDigit, ENCODING, InboundEvent, Mark, MediaFrame,
    MediaStreamError, SAMPLE_RATE, Start, Stop, Track, excerpt,
};
use crate::sid::{AccountSid, CallSid, StreamSid};

/// Decodes messages from Twilio. Owns the buffers the `media` hot path reuses, so steady-state
/// decoding does not allocate.
#[derive(Debug, Default)]
pub struct InboundDecoder {
    payload: Vec<u8>,
    /// Holds a JSON-unescaped `streamSid` in the rare case it was sent with escapes.
    stream_sid: String,
}

impl InboundDecoder {
    /// A decoder with a payload buffer sized for one 20 ms frame.
    pub fn new() -> Self {
        Self {
            payload: Vec::with_capacity(160),
            stream_sid: String::new(),
        }
    }

    /// Parses one WebSocket text frame from Twilio.
    pub fn decode<'a>(&'a mut self, text: &'a str) -> Result<InboundEvent<'a>, MediaStreamError> {
        let raw: RawMessage<'a> = serde_json::from_str(text)?;
        let event = raw.event.as_ref().ok_or(MediaStreamError::MissingEvent)?;
        match event.0.as_ref() {
            "media" => {
                let frame = decode_media_frame(raw, &mut self.payload, &mut self.stream_sid)?;
                Ok(InboundEvent::Media(frame))
            }
            "connected" => Ok(InboundEvent::Connected(Connected {
                protocol: raw.protocol.unwrap_or_default(),
                version: raw.version.unwrap_or_default(),
            })),
            "start" => decode_start(raw).map(InboundEvent::Start),
            "dtmf" => {
                let sequence_number = sequence("dtmf", raw.sequence_number)?;
                let stream_sid = stream_sid("dtmf", raw.stream_sid.as_ref())?;
                let dtmf = raw.dtmf.ok_or(MediaStreamError::MissingField {
                    event: "dtmf",
                    field: "dtmf",
                })?;
                let digit = dtmf.digit.ok_or(MediaStreamError::MissingField {
                    event: "dtmf",
                    field: "dtmf.digit",
                })?;
                let digit = DtmfDigit::parse(&digit)
                    .ok_or_else(|| MediaStreamError::InvalidDigit(excerpt(&digit)))?;
                Ok(InboundEvent::Dtmf(Dtmf {
                    sequence_number,
                    stream_sid,
                    digit,
                }))
            }
            "mark" => {
                let sequence_number = sequence("mark", raw.sequence_number)?;
                let stream_sid = stream_sid("mark", raw.stream_sid.as_ref())?;
                let name = raw
                    .mark
                    .and_then(|m| m.name)
                    .ok_or(MediaStreamError::MissingField {
                        event: "mark",
                        field: "mark.name",
                    })?;
                Ok(InboundEvent::Mark(Mark {
                    sequence_number,
                    stream_sid,
                    name: name.0.into_owned(),
                }))
            }
            "stop" => {
                let sequence_number = sequence("stop", raw.sequence_number)?;
                let stream_sid = stream_sid("stop", raw.stream_sid.as_ref())?;
                let stop = raw.stop.ok_or(MediaStreamError::MissingField {
                    event: "stop",
                    field: "stop",
                })?;
                Ok(InboundEvent::Stop(Stop {
                    sequence_number,
                    stream_sid,
                    account_sid: account_sid("stop", "stop.accountSid", stop.account_sid)?,
                    call_sid: call_sid("stop", "stop.callSid", stop.call_sid)?,
                }))
            }
            "clear" => Err(MediaStreamError::WrongDirection("clear")),
            other => Err(MediaStreamError::UnknownEvent(excerpt(other))),
        }
    }
}

fn decode_media_frame<'a>(
    raw: RawMessage<'a>,
    payload_buf: &'a mut Vec<u8>,
    sid_buf: &'a mut String,
) -> Result<MediaFrame<'a>, MediaStreamError> {
    const EVENT: &str = "media";
    let missing = |field| MediaStreamError::MissingField {
        event: EVENT,
        field,
    };
    let sequence_number = sequence(EVENT, raw.sequence_number)?;
    let sid = raw
        .stream_sid
        .ok_or(MediaStreamError::MissingStreamSid(EVENT))?;
    let stream_sid = text_ref(sid, sid_buf);
    StreamSid::check(stream_sid).map_err(|source| MediaStreamError::InvalidSid {
        field: "streamSid",
        source,
    })?;
    let media = raw.media.ok_or_else(|| missing("media"))?;
    let track = Track::parse(&media.track.ok_or_else(|| missing("media.track"))?.0)?;
    let chunk = media.chunk.ok_or_else(|| missing("media.chunk"))?.0;
    let timestamp_ms = media.timestamp.ok_or_else(|| missing("media.timestamp"))?.0;
    let payload = media.payload.ok_or_else(|| missing("media.payload"))?;
    decode_payload(&payload.0, payload_buf)?;
    Ok(MediaFrame {
        sequence_number,
        stream_sid,
        track,
        chunk,
        timestamp_ms,
        payload: payload_buf,
    })
}

/// Decodes base64 into `buf`, reusing its capacity.
pub(crate) fn decode_payload(payload: &str, buf: &mut Vec<u8>) -> Result<(), MediaStreamError> {
    buf.clear();
    wire::BASE64.decode_vec(payload, buf)?;
    Ok(())
}

/// Borrows `text` from the input, or parks an unescaped copy in `buf` and borrows that.
pub(crate) fn text_ref<'a>(text: Text<'a>, buf: &'a mut String) -> &'a str {
    match text.0 {
        Cow::Borrowed(s) => s,
        Cow::Owned(s) => {
            *buf = s;
            buf.as_str()
        }
    }
}

fn sequence(event: &'static str, value: Option<Counter>) -> Result<u64, MediaStreamError> {
    value.map(|c| c.0).ok_or(MediaStreamError::MissingField {
        event,
        field: "sequenceNumber",
    })
}

pub(crate) fn stream_sid(
    event: &'static str,
    value: Option<&Text<'_>>,
) -> Result<StreamSid, MediaStreamError> {
    let text = value.ok_or(MediaStreamError::MissingStreamSid(event))?;
    StreamSid::new(text.0.as_ref()).map_err(|source| MediaStreamError::InvalidSid {
        field: "streamSid",
        source,
    })
}

fn account_sid(
    event: &'static str,
    field: &'static str,
    value: Option<String>,
) -> Result<AccountSid, MediaStreamError> {
    let text = value.ok_or(MediaStreamError::MissingField { event, field })?;
    AccountSid::new(text).map_err(|source| MediaStreamError::InvalidSid { field, source })
}

fn call_sid(
    event: &'static str,
    field: &'static str,
    value: Option<String>,
) -> Result<CallSid, MediaStreamError> {
    let text = value.ok_or(MediaStreamError::MissingField { event, field })?;
    CallSid::new(text).map_err(|source| MediaStreamError::InvalidSid { field, source })
}

fn decode_start(raw: RawMessage<'_>) -> Result<Start, MediaStreamError> {
    const EVENT: &str = "start";
    let sequence_number = sequence(EVENT, raw.sequence_number)?;
    let start: RawStart = raw.start.ok_or(MediaStreamError::MissingField {
        event: EVENT,
        field: "start",
    })?;
    // `streamSid` is sent twice in `start`; either copy will do.
    let stream_sid = match (raw.stream_sid.as_ref(), start.stream_sid.as_deref()) {
        (Some(top), _) => stream_sid(EVENT, Some(top))?,
        (None, Some(inner)) => {
            StreamSid::new(inner).map_err(|source| MediaStreamError::InvalidSid {
                field: "start.streamSid",
                source,
            })?
        }
        (None, None) => return Err(MediaStreamError::MissingStreamSid(EVENT)),
    };
    let format = start.media_format.ok_or(MediaStreamError::MissingField {
        event: EVENT,
        field: "start.mediaFormat",
    })?;
    let sample_rate = format.sample_rate.map(|c| c.0);
    let channels = format.channels.map(|c| c.0);
    if format.encoding.as_deref() != Some(ENCODING)
        || sample_rate != Some(u64::from(SAMPLE_RATE))
        || channels != Some(u64::from(CHANNELS))
    {
        return Err(MediaStreamError::UnsupportedMediaFormat {
            encoding: excerpt(format.encoding.as_deref().unwrap_or_default()),
            sample_rate,
            channels,
        });
    }
    let tracks = start
        .tracks
        .unwrap_or_default()
        .iter()
        .map(|t| Track::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Start {
        sequence_number,
        stream_sid,
        account_sid: account_sid(EVENT, "start.accountSid", start.account_sid)?,
        call_sid: call_sid(EVENT, "start.callSid", start.call_sid)?,
        tracks,
        custom_parameters: start.custom_parameters.unwrap_or_default(),
    })
}

/// Encodes the bridge's messages to Twilio into one reusable `String`: after the first frame of
/// a given size, [`OutboundEncoder::media`] does not allocate.
#[derive(Debug)]
pub struct OutboundEncoder {
    stream_sid: StreamSid,
    buf: String,
}

impl OutboundEncoder {
    /// An encoder for one stream.
    pub fn new(stream_sid: StreamSid) -> Self {
        Self {
            stream_sid,
            // 160 bytes of mu-law is 216 base64 characters plus ~80 of JSON.
            buf: String::with_capacity(320),
        }
    }

    /// The stream this encoder writes to.
    pub fn stream_sid(&self) -> &StreamSid {
        &self.stream_sid
    }

    /// `{"event":"media","streamSid":…,"media":{"payload":…}}` with `mulaw` base64-encoded.
    /// The payload must be raw 8 kHz mu-law with no file header.
    pub fn media(&mut self, mulaw: &[u8]) -> &str {
        self.begin("media");
        self.buf.push_str(r#","media":{"payload":""#);
        wire::BASE64.encode_string(mulaw, &mut self.buf);
        self.buf.push_str("\"}}");
        &self.buf
    }

    /// `{"event":"mark","streamSid":…,"mark":{"name":…}}`. Twilio echoes it back when the audio
    /// sent before it has played.
    pub fn mark(&mut self, name: &str) -> &str {
        self.begin("mark");
        self.buf.push_str(r#","mark":{"name":"#);
        wire::push_json_string(&mut self.buf, name);
        self.buf.push_str("}}");
        &self.buf
    }

    /// `{"event":"clear","streamSid":…}`: drop all buffered audio. Twilio then echoes every
    /// pending mark, so an echo after a clear does not prove that audio was heard.
    pub fn clear(&mut self) -> &str {
        self.begin("clear");
        self.buf.push('}');
        &self.buf
    }

    fn begin(&mut self, event: &str) {
        self.buf.clear();
        // `write!` to a String cannot fail.
        let _ = write!(self.buf, r#"{{"event":"{event}","streamSid":"#);
        wire::push_json_string(&mut self.buf, self.stream_sid.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEDIA: &str = r#"{
      "event": "media",
      "sequenceNumber": "4",
      "media": { "track": "inbound", "chunk": "2", "timestamp": "5", "payload": "no+JhoaJjpw=" },
      "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    }"#;

    #[test]
    fn decodes_documented_media_example() {
        let mut decoder = InboundDecoder::new();
        let InboundEvent::Media(frame) = decoder.decode(MEDIA).unwrap() else {
            panic!("expected media");
        };
        assert_eq!(frame.sequence_number, 4);
        assert_eq!(frame.stream_sid, "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX");
        assert_eq!(frame.track, Track::Inbound);
        assert_eq!((frame.chunk, frame.timestamp_ms), (2, 5));
        assert_eq!(
            frame.payload,
            &[0x9e, 0x8f, 0x89, 0x86, 0x86, 0x89, 0x8e, 0x9c]
        );
    }

    #[test]
    fn media_counters_may_be_numbers_and_fields_unordered() {
        let text = r#"{"streamSid":"MZ1","media":{"payload":"AAE=","timestamp":40,"chunk":3,"track":"outbound","extra":[1,{"x":null}]},"sequenceNumber":9,"event":"media","future":true}"#;
        let mut decoder = InboundDecoder::new();
        let InboundEvent::Media(frame) = decoder.decode(text).unwrap() else {
            panic!("expected media");
        };
        assert_eq!(
            (frame.sequence_number, frame.chunk, frame.timestamp_ms),
            (9, 3, 40)
        );
        assert_eq!(frame.track, Track::Outbound);
        assert_eq!(frame.payload, &[0, 1]);
    }

    #[test]
    fn escaped_slashes_in_payload_and_sid_are_unescaped() {
        // "//8=" is [0xff, 0xff]; JSON may escape '/' as "\/".
        let text = r#"{"event":"media","sequenceNumber":"2","streamSid":"MZ\u0041B","media":{"track":"inbound","chunk":"1","timestamp":"0","payload":"\/\/8="}}"#;
        let mut decoder = InboundDecoder::new();
        let InboundEvent::Media(frame) = decoder.decode(text).unwrap() else {
            panic!("expected media");
        };
        assert_eq!(frame.stream_sid, "MZAB");
        assert_eq!(frame.payload, &[0xff, 0xff]);
    }

    #[test]
    fn media_without_stream_sid_is_a_typed_error() {
        let text = r#"{"event":"media","sequenceNumber":"2","media":{"track":"inbound","chunk":"1","timestamp":"0","payload":"AA=="}}"#;
        assert!(matches!(
            InboundDecoder::new().decode(text),
            Err(MediaStreamError::MissingStreamSid("media"))
        ));
    }

    #[test]
    fn bad_base64_is_a_typed_error() {
        let text = MEDIA.replace("no+JhoaJjpw=", "no+J*oaJjpw=");
        assert!(matches!(
            InboundDecoder::new().decode(&text),
            Err(MediaStreamError::Base64(_))
        ));
    }

    #[test]
    fn unknown_event_and_wrong_direction_are_typed_errors() {
        let mut decoder = InboundDecoder::new();
        assert!(matches!(
            decoder.decode(r#"{"event":"bogus","streamSid":"MZ1"}"#),
            Err(MediaStreamError::UnknownEvent(e)) if e == "bogus"
        ));
        assert!(matches!(
            decoder.decode(r#"{"event":"clear","streamSid":"MZ1"}"#),
            Err(MediaStreamError::WrongDirection("clear"))
        ));
        assert!(matches!(
            decoder.decode(r#"{"streamSid":"MZ1"}"#),
            Err(MediaStreamError::MissingEvent)
        ));
        assert!(matches!(
            decoder.decode("not json"),
            Err(MediaStreamError::Json(_))
        ));
    }

    #[test]
    fn media_with_unknown_track_or_missing_counter_is_rejected() {
        let mut decoder = InboundDecoder::new();
        let text = MEDIA.replace("\"inbound\"", "\"sideways\"");
        assert!(matches!(
            decoder.decode(&text),
            Err(MediaStreamError::UnknownTrack(t)) if t == "sideways"
        ));
        let text = MEDIA.replace("\"chunk\": \"2\",", "");
        assert!(matches!(
            decoder.decode(&text),
            Err(MediaStreamError::MissingField {
                field: "media.chunk",
                ..
            })
        ));
        let text = MEDIA.replace("\"sequenceNumber\": \"4\"", "\"sequenceNumber\": \"four\"");
        assert!(matches!(
            decoder.decode(&text),
            Err(MediaStreamError::Json(_))
        ));
    }

    const START: &str = r#"{
      "event": "start",
      "sequenceNumber": "1",
      "start": {
        "accountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "callSid": "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "tracks": [ "inbound" ],
        "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 },
        "customParameters": { "FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob" }
      },
      "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    }"#;

    #[test]
    fn decodes_documented_start_example() {
        let mut decoder = InboundDecoder::new();
        let InboundEvent::Start(start) = decoder.decode(START).unwrap() else {
            panic!("expected start");
        };
        assert_eq!(start.sequence_number, 1);
        assert_eq!(
            start.call_sid.as_str(),
            "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
        );
        assert_eq!(
            start.account_sid.as_str(),
            "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
        );
        assert_eq!(start.tracks, vec![Track::Inbound]);
        assert_eq!(start.custom_parameters["RemoteParty"], "Bob");
        assert_eq!(start.custom_parameters.len(), 3);
    }

    #[test]
    fn start_with_other_media_format_is_rejected() {
        let mut decoder = InboundDecoder::new();
        for (from, to) in [
            ("audio/x-mulaw", "audio/l16"),
            ("\"sampleRate\": 8000", "\"sampleRate\": 16000"),
            ("\"channels\": 1", "\"channels\": 2"),
        ] {
            let text = START.replace(from, to);
            assert!(
                matches!(
                    decoder.decode(&text),
                    Err(MediaStreamError::UnsupportedMediaFormat { .. })
                ),
                "{to} must be rejected"
            );
        }
        let text = START.replace("\"callSid\": \"CA", "\"callSid\": \"MZ");
        assert!(matches!(
            decoder.decode(&text),
            Err(MediaStreamError::InvalidSid {
                field: "start.callSid",
                ..
            })
        ));
    }

    #[test]
    fn decodes_documented_connected_dtmf_mark_stop_examples() {
        let mut decoder = InboundDecoder::new();
        assert_eq!(
            decoder
                .decode(r#"{ "event": "connected", "protocol": "Call", "version": "1.0.0" }"#)
                .unwrap(),
            InboundEvent::Connected(Connected::default())
        );
        let InboundEvent::Dtmf(dtmf) = decoder
            .decode(r#"{ "event": "dtmf", "streamSid": "MZ1", "sequenceNumber": "5", "dtmf": { "track": "inbound_track", "digit": "1" } }"#)
            .unwrap()
        else {
            panic!("expected dtmf");
        };
        assert_eq!((dtmf.sequence_number, dtmf.digit.as_char()), (5, '1'));
        let InboundEvent::Mark(mark) = decoder
            .decode(r#"{ "event": "mark", "sequenceNumber": "4", "streamSid": "MZ1", "mark": { "name": "my label" } }"#)
            .unwrap()
        else {
            panic!("expected mark");
        };
        assert_eq!(mark.name, "my label");
        let InboundEvent::Stop(stop) = decoder
            .decode(r#"{ "event": "stop", "sequenceNumber": "5", "stop": { "accountSid": "AC1", "callSid": "CA1" }, "streamSid": "MZ1" }"#)
            .unwrap()
        else {
            panic!("expected stop");
        };
        assert_eq!(stop.call_sid.as_str(), "CA1");
        assert!(matches!(
            decoder.decode(r#"{ "event": "dtmf", "streamSid": "MZ1", "sequenceNumber": "5", "dtmf": { "digit": "x" } }"#),
            Err(MediaStreamError::InvalidDigit(d)) if d == "x"
        ));
    }

    #[test]
    fn encoder_writes_documented_shapes() {
        let mut encoder = OutboundEncoder::new(StreamSid::new("MZ1").unwrap());
        let media: serde_json::Value = serde_json::from_str(encoder.media(&[0, 1, 2])).unwrap();
        assert_eq!(
            media,
            serde_json::json!({"event":"media","streamSid":"MZ1","media":{"payload":"AAEC"}})
        );
        let mark: serde_json::Value = serde_json::from_str(encoder.mark("a\"b")).unwrap();
        assert_eq!(
            mark,
            serde_json::json!({"event":"mark","streamSid":"MZ1","mark":{"name":"a\"b"}})
        );
        let clear: serde_json::Value = serde_json::from_str(encoder.clear()).unwrap();
        assert_eq!(
            clear,
            serde_json::json!({"event":"clear","streamSid":"MZ1"})
        );
    }
}
