//! Twilio's side of a Media Streams socket, for the simulator and load generator: encode what
//! Twilio sends, decode what the bridge sends back.
//! (<https://www.twilio.com/docs/voice/media-streams/websocket-messages>)

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;

use super::server::{decode_payload, text_ref};
use super::wire::{self, RawMessage};
use super::{
    Connected, Dtmf, DtmfDigit, InboundMessage, Mark, MediaStreamError, OutboundEvent, Start, Stop,
    Track, excerpt,
};
use crate::sid::{AccountSid, CallSid, StreamSid};

/// Writes the messages Twilio sends on one stream, numbering them as Twilio does
/// (`sequenceNumber` from 1, `connected` unnumbered). `media` frames reuse one buffer.
#[derive(Debug)]
pub struct TwilioEncoder {
    stream_sid: StreamSid,
    next_sequence: u64,
    buf: String,
}

impl TwilioEncoder {
    /// An encoder for one stream.
    pub fn new(stream_sid: StreamSid) -> Self {
        Self {
            stream_sid,
            next_sequence: 1,
            buf: String::with_capacity(400),
        }
    }

    /// The stream this encoder writes for.
    pub fn stream_sid(&self) -> &StreamSid {
        &self.stream_sid
    }

    fn sequence(&mut self) -> u64 {
        let n = self.next_sequence;
        self.next_sequence += 1;
        n
    }

    fn owned(&mut self, message: &InboundMessage) -> &str {
        self.buf.clear();
        self.buf.push_str(&message.to_json());
        &self.buf
    }

    /// `connected`.
    pub fn connected(&mut self) -> &str {
        self.owned(&InboundMessage::Connected(Connected::default()))
    }

    /// `start`, with the fixed mu-law 8 kHz mono media format.
    pub fn start(
        &mut self,
        account_sid: AccountSid,
        call_sid: CallSid,
        tracks: Vec<Track>,
        custom_parameters: BTreeMap<String, String>,
    ) -> &str {
        let message = InboundMessage::Start(Start {
            sequence_number: self.sequence(),
            stream_sid: self.stream_sid.clone(),
            account_sid,
            call_sid,
            tracks,
            custom_parameters,
        });
        self.owned(&message)
    }

    /// `media` with string counters, as in Twilio's examples. Does not allocate once the
    /// buffer has grown to the frame size.
    pub fn media(&mut self, track: Track, chunk: u64, timestamp_ms: u64, mulaw: &[u8]) -> &str {
        let sequence = self.sequence();
        self.buf.clear();
        // `write!` to a String cannot fail.
        let _ = write!(
            self.buf,
            r#"{{"event":"media","sequenceNumber":"{sequence}","media":{{"track":"{}","chunk":"{chunk}","timestamp":"{timestamp_ms}","payload":""#,
            track.as_str()
        );
        wire::BASE64.encode_string(mulaw, &mut self.buf);
        self.buf.push_str(r#""},"streamSid":"#);
        wire::push_json_string(&mut self.buf, self.stream_sid.as_str());
        self.buf.push('}');
        &self.buf
    }

    /// `dtmf` (always `inbound_track`).
    pub fn dtmf(&mut self, digit: DtmfDigit) -> &str {
        let message = InboundMessage::Dtmf(Dtmf {
            sequence_number: self.sequence(),
            stream_sid: self.stream_sid.clone(),
            digit,
        });
        self.owned(&message)
    }

    /// `mark`: the echo of a mark the bridge sent.
    pub fn mark(&mut self, name: &str) -> &str {
        let message = InboundMessage::Mark(Mark {
            sequence_number: self.sequence(),
            stream_sid: self.stream_sid.clone(),
            name: name.to_owned(),
        });
        self.owned(&message)
    }

    /// `stop`.
    pub fn stop(&mut self, account_sid: AccountSid, call_sid: CallSid) -> &str {
        let message = InboundMessage::Stop(Stop {
            sequence_number: self.sequence(),
            stream_sid: self.stream_sid.clone(),
            account_sid,
            call_sid,
        });
        self.owned(&message)
    }
}

/// Decodes the bridge's messages to Twilio (`media`, `mark`, `clear`), reusing a payload
/// buffer so the simulator's receive path does not allocate per frame.
#[derive(Debug, Default)]
pub struct OutboundDecoder {
    payload: Vec<u8>,
    stream_sid: String,
    name: String,
}

impl OutboundDecoder {
    /// A decoder with empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one WebSocket text frame sent by the bridge.
    pub fn decode<'a>(&'a mut self, text: &'a str) -> Result<OutboundEvent<'a>, MediaStreamError> {
        let raw: RawMessage<'a> = serde_json::from_str(text)?;
        let event = raw.event.as_ref().ok_or(MediaStreamError::MissingEvent)?;
        let event: &'static str = match event.0.as_ref() {
            "media" => "media",
            "mark" => "mark",
            "clear" => "clear",
            "connected" => return Err(MediaStreamError::WrongDirection("connected")),
            "start" => return Err(MediaStreamError::WrongDirection("start")),
            "dtmf" => return Err(MediaStreamError::WrongDirection("dtmf")),
            "stop" => return Err(MediaStreamError::WrongDirection("stop")),
            other => return Err(MediaStreamError::UnknownEvent(excerpt(other))),
        };
        let sid = raw
            .stream_sid
            .ok_or(MediaStreamError::MissingStreamSid(event))?;
        let stream_sid = text_ref(sid, &mut self.stream_sid);
        StreamSid::check(stream_sid).map_err(|source| MediaStreamError::InvalidSid {
            field: "streamSid",
            source,
        })?;
        match event {
            "media" => {
                let payload =
                    raw.media
                        .and_then(|m| m.payload)
                        .ok_or(MediaStreamError::MissingField {
                            event,
                            field: "media.payload",
                        })?;
                decode_payload(&payload.0, &mut self.payload)?;
                Ok(OutboundEvent::Media {
                    stream_sid,
                    payload: &self.payload,
                })
            }
            "mark" => {
                let name = raw
                    .mark
                    .and_then(|m| m.name)
                    .ok_or(MediaStreamError::MissingField {
                        event,
                        field: "mark.name",
                    })?;
                Ok(OutboundEvent::Mark {
                    stream_sid,
                    name: text_ref(name, &mut self.name),
                })
            }
            _ => Ok(OutboundEvent::Clear { stream_sid }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{InboundDecoder, InboundEvent, OutboundEncoder, OutboundMessage};
    use super::*;

    fn sid() -> StreamSid {
        StreamSid::new("MZ18ad3ab5a668481ce02b83e7395059f0").unwrap()
    }

    #[test]
    fn twilio_encoder_numbers_messages_from_one_after_connected() {
        let mut twilio = TwilioEncoder::new(sid());
        let mut decoder = InboundDecoder::new();
        assert!(matches!(
            decoder.decode(twilio.connected()).unwrap(),
            InboundEvent::Connected(_)
        ));
        let start = twilio
            .start(
                AccountSid::new("AC1").unwrap(),
                CallSid::new("CA1").unwrap(),
                vec![Track::Inbound],
                BTreeMap::from([("k".to_owned(), "v&\"<".to_owned())]),
            )
            .to_owned();
        let InboundEvent::Start(start) = decoder.decode(&start).unwrap() else {
            panic!("expected start");
        };
        assert_eq!(start.sequence_number, 1);
        assert_eq!(start.custom_parameters["k"], "v&\"<");
        let media = twilio.media(Track::Inbound, 1, 0, &[1, 2, 3]).to_owned();
        let InboundEvent::Media(frame) = decoder.decode(&media).unwrap() else {
            panic!("expected media");
        };
        assert_eq!(frame.sequence_number, 2);
        assert_eq!(frame.payload, &[1, 2, 3]);
        assert_eq!(frame.stream_sid, sid().as_str());
    }

    #[test]
    fn twilio_encoder_media_matches_serde_shape() {
        let mut twilio = TwilioEncoder::new(sid());
        let fast: serde_json::Value =
            serde_json::from_str(twilio.media(Track::Outbound, 7, 140, &[0xff; 5])).unwrap();
        let owned = InboundMessage::Media(super::super::OwnedMediaFrame {
            sequence_number: 1,
            stream_sid: sid(),
            track: Track::Outbound,
            chunk: 7,
            timestamp_ms: 140,
            payload: vec![0xff; 5],
        });
        assert_eq!(fast, serde_json::to_value(&owned).unwrap());
        assert_eq!(
            fast["sequenceNumber"], "1",
            "counters are strings as in the docs"
        );
    }

    #[test]
    fn outbound_decoder_reads_what_the_bridge_encoder_writes() {
        let mut bridge = OutboundEncoder::new(sid());
        let mut twilio = OutboundDecoder::new();
        assert_eq!(
            twilio.decode(bridge.media(&[9, 8, 7])).unwrap(),
            OutboundEvent::Media {
                stream_sid: sid().as_str(),
                payload: &[9, 8, 7]
            }
        );
        assert_eq!(
            twilio.decode(bridge.mark("turn-1\n")).unwrap(),
            OutboundEvent::Mark {
                stream_sid: sid().as_str(),
                name: "turn-1\n"
            }
        );
        assert_eq!(
            twilio.decode(bridge.clear()).unwrap(),
            OutboundEvent::Clear {
                stream_sid: sid().as_str()
            }
        );
    }

    #[test]
    fn outbound_decoder_rejects_twilio_only_events_and_missing_sid() {
        let mut twilio = OutboundDecoder::new();
        assert!(matches!(
            twilio.decode(r#"{"event":"stop","streamSid":"MZ1"}"#),
            Err(MediaStreamError::WrongDirection("stop"))
        ));
        assert!(matches!(
            twilio.decode(r#"{"event":"clear"}"#),
            Err(MediaStreamError::MissingStreamSid("clear"))
        ));
        assert!(matches!(
            twilio.decode(r#"{"event":"media","streamSid":"MZ1","media":{}}"#),
            Err(MediaStreamError::MissingField {
                field: "media.payload",
                ..
            })
        ));
    }

    #[test]
    fn outbound_message_serde_matches_documented_example() {
        let message = OutboundMessage::Mark {
            stream_sid: sid(),
            name: "my label".into(),
        };
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            serde_json::json!({"event":"mark","streamSid":sid().as_str(),"mark":{"name":"my label"}})
        );
        assert_eq!(
            OutboundMessage::from_json(&message.to_json()).unwrap(),
            message
        );
    }
}
