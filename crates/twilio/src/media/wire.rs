//! Borrowing wire structs shared by both directions of the Media Streams protocol, plus the
//! small JSON writers used by the zero-allocation encoders.
//!
//! Shapes: <https://www.twilio.com/docs/voice/media-streams/websocket-messages>.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// Standard base64 as Twilio sends it. Decoding accepts a missing `=` padding too, because a
/// frame whose padding was lost is still unambiguous and dropping it would be a needless gap.
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A JSON string that borrows from the input unless it contains escapes (`\/` is legal JSON
/// and some encoders emit it), in which case `serde_json` hands us an owned copy.
#[derive(Debug)]
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// A non-negative counter that Twilio sends as a JSON string (`"4"`) in its examples and
/// documents as a number; both are accepted without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counter(pub(crate) u64);

impl<'de> Deserialize<'de> for Counter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CounterVisitor;
        impl Visitor<'_> for CounterVisitor {
            type Value = Counter;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer as a number or a string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Counter, E> {
                Ok(Counter(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Counter, E> {
                u64::try_from(v)
                    .map(Counter)
                    .map_err(|_| E::custom("counter is negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Counter, E> {
                v.parse::<u64>()
                    .map(Counter)
                    .map_err(|_| E::custom("counter string is not a non-negative integer"))
            }
        }
        deserializer.deserialize_any(CounterVisitor)
    }
}

/// `Option<u64>` from a string or number, for `#[serde(deserialize_with)]`.
pub(crate) fn optional_counter<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    Ok(Option::<Counter>::deserialize(deserializer)?.map(|c| c.0))
}

/// Every field any Media Streams message may carry, in either direction. Deserializing one
/// flat struct (rather than an internally tagged enum) keeps serde from buffering the input,
/// accepts the fields in any order, and ignores unknown fields.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawMessage<'a> {
    #[serde(borrow)]
    pub(crate) event: Option<Text<'a>>,
    pub(crate) sequence_number: Option<Counter>,
    #[serde(borrow)]
    pub(crate) stream_sid: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) media: Option<RawMedia<'a>>,
    #[serde(borrow)]
    pub(crate) mark: Option<RawMark<'a>>,
    pub(crate) start: Option<RawStart>,
    pub(crate) dtmf: Option<RawDtmf>,
    pub(crate) stop: Option<RawStop>,
    pub(crate) protocol: Option<String>,
    pub(crate) version: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawMedia<'a> {
    #[serde(borrow)]
    pub(crate) track: Option<Text<'a>>,
    pub(crate) chunk: Option<Counter>,
    pub(crate) timestamp: Option<Counter>,
    #[serde(borrow)]
    pub(crate) payload: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawMark<'a> {
    #[serde(borrow)]
    pub(crate) name: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawStart {
    pub(crate) account_sid: Option<String>,
    pub(crate) stream_sid: Option<String>,
    pub(crate) call_sid: Option<String>,
    pub(crate) tracks: Option<Vec<String>>,
    pub(crate) media_format: Option<RawMediaFormat>,
    pub(crate) custom_parameters: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawMediaFormat {
    pub(crate) encoding: Option<String>,
    pub(crate) sample_rate: Option<Counter>,
    pub(crate) channels: Option<Counter>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawDtmf {
    pub(crate) digit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawStop {
    pub(crate) account_sid: Option<String>,
    pub(crate) call_sid: Option<String>,
}

/// Owned-message wire shape for serde serialization (the simulator and tests).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireOut<'a> {
    pub(crate) event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) protocol: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sequence_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) start: Option<WireStart<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) media: Option<WireMedia<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dtmf: Option<WireDtmf<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mark: Option<WireMark<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stop: Option<WireStop<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stream_sid: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireStart<'a> {
    pub(crate) account_sid: &'a str,
    pub(crate) stream_sid: &'a str,
    pub(crate) call_sid: &'a str,
    pub(crate) tracks: Vec<&'a str>,
    pub(crate) media_format: WireMediaFormat,
    pub(crate) custom_parameters: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireMediaFormat {
    pub(crate) encoding: &'static str,
    pub(crate) sample_rate: u32,
    pub(crate) channels: u32,
}

#[derive(Serialize)]
pub(crate) struct WireMedia<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) track: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) chunk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) timestamp: Option<String>,
    pub(crate) payload: String,
}

#[derive(Serialize)]
pub(crate) struct WireDtmf<'a> {
    pub(crate) track: &'a str,
    pub(crate) digit: String,
}

#[derive(Serialize)]
pub(crate) struct WireMark<'a> {
    pub(crate) name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireStop<'a> {
    pub(crate) account_sid: &'a str,
    pub(crate) call_sid: &'a str,
}

/// Appends `value` as a JSON string literal (with quotes) to `out`, escaping as RFC 8259
/// requires. Never allocates beyond growing `out`.
pub(crate) fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    let mut start = 0;
    for (i, byte) in value.bytes().enumerate() {
        let escape: Option<&str> = match byte {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.push_str(&value[start..i]);
        if let Some(text) = escape {
            out.push_str(text);
        } else {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        start = i + 1;
    }
    out.push_str(&value[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_accepts_string_and_number_and_rejects_junk() {
        assert_eq!(
            serde_json::from_str::<Counter>("\"42\"").unwrap(),
            Counter(42)
        );
        assert_eq!(serde_json::from_str::<Counter>("42").unwrap(), Counter(42));
        assert!(serde_json::from_str::<Counter>("-1").is_err());
        assert!(serde_json::from_str::<Counter>("\"4x\"").is_err());
        assert!(serde_json::from_str::<Counter>("4.5").is_err());
        assert!(serde_json::from_str::<Counter>("null").is_err());
    }

    #[test]
    fn text_borrows_plain_strings_and_owns_escaped_ones() {
        let plain: Text<'_> = serde_json::from_str("\"abc/def\"").unwrap();
        assert!(matches!(plain.0, Cow::Borrowed("abc/def")));
        let escaped: Text<'_> = serde_json::from_str(r#""abc\/def""#).unwrap();
        assert!(matches!(escaped.0, Cow::Owned(ref s) if s == "abc/def"));
    }

    #[test]
    fn json_string_writer_round_trips_hostile_text() {
        let hostile = "a\"b\\c\n\r\t\u{0}\u{1f}é😀</script>";
        let mut out = String::new();
        push_json_string(&mut out, hostile);
        assert_eq!(serde_json::from_str::<String>(&out).unwrap(), hostile);
    }
}
