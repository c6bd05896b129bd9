//! How many SMS segments a body takes, and in which encoding.
//!
//! A body made only of characters of the GSM 03.38 default alphabet (3GPP TS 23.038 §6.2.1)
//! and its extension table (§6.2.1.1: `^ { } \ [ ~ ] | €` and form feed, two septets each:
//! an escape and the character) is sent as GSM-7: 160 septets in one segment, 153 per segment
//! once it is split (the User Data Header takes 7). Anything else is sent as UCS-2 (really
//! UTF-16): 70 code units in one segment, 67 per segment once split; an emoji outside the
//! Basic Multilingual Plane is a surrogate pair, two units. A two-septet character and a
//! surrogate pair are never split across segments, so a segment can hold one unit less
//! (<https://www.twilio.com/docs/glossary/what-sms-character-limit>,
//! <https://www.twilio.com/docs/glossary/what-is-gsm-7-character-encoding>,
//! <https://www.twilio.com/docs/glossary/what-is-ucs-2-character-encoding>).
//!
//! Twilio's optional Smart Encoding (replacing curly quotes and the like with GSM-7 look-alikes)
//! is not modelled: a body is counted as it is written.

use serde::Serialize;

/// How a body is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Encoding {
    /// The GSM 03.38 7-bit default alphabet with its extension table.
    #[serde(rename = "GSM-7")]
    Gsm7,
    /// UCS-2 (UTF-16 code units).
    #[serde(rename = "UCS-2")]
    Ucs2,
}

impl Encoding {
    /// `GSM-7` or `UCS-2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gsm7 => "GSM-7",
            Self::Ucs2 => "UCS-2",
        }
    }

    /// Units (septets or UTF-16 code units) in a message sent as one segment.
    pub fn single_segment_units(self) -> usize {
        match self {
            Self::Gsm7 => 160,
            Self::Ucs2 => 70,
        }
    }

    /// Units in each segment of a split message.
    pub fn multi_segment_units(self) -> usize {
        match self {
            Self::Gsm7 => 153,
            Self::Ucs2 => 67,
        }
    }
}

/// The segments of one body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentCount {
    /// The encoding the body needs.
    pub encoding: Encoding,
    /// Segments (at least 1: an empty body is one empty segment).
    pub segments: usize,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
}

/// The GSM 03.38 default alphabet, in code order (0x1B, the escape, left out).
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The extension table: each is sent as the escape and a second septet.
const EXTENSION: &str = "\u{c}^{}\\[~]|€";

/// Septets `c` takes in GSM-7, or `None` when it has no GSM-7 form.
pub fn gsm7_septets(c: char) -> Option<usize> {
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Counts the segments of `body` (see the module docs).
pub fn count_segments(body: &str) -> SegmentCount {
    let gsm: Option<Vec<usize>> = body.chars().map(gsm7_septets).collect();
    match gsm {
        Some(widths) => pack(Encoding::Gsm7, widths.into_iter()),
        None => pack(Encoding::Ucs2, body.chars().map(char::len_utf16)),
    }
}

/// Fills segments with characters of `widths` units, never splitting one.
fn pack(encoding: Encoding, widths: impl Iterator<Item = usize> + Clone) -> SegmentCount {
    let units: usize = widths.clone().sum();
    if units <= encoding.single_segment_units() {
        return SegmentCount {
            encoding,
            segments: 1,
            units,
        };
    }
    let capacity = encoding.multi_segment_units();
    let (mut segments, mut fill) = (1, 0);
    for width in widths {
        if fill + width > capacity {
            segments += 1;
            fill = 0;
        }
        fill += width;
    }
    SegmentCount {
        encoding,
        segments,
        units,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(body: &str) -> (Encoding, usize, usize) {
        let c = count_segments(body);
        (c.encoding, c.segments, c.units)
    }

    #[test]
    fn gsm7_fits_160_then_splits_by_153() {
        assert_eq!(count(""), (Encoding::Gsm7, 1, 0));
        assert_eq!(count(&"a".repeat(160)), (Encoding::Gsm7, 1, 160));
        assert_eq!(count(&"a".repeat(161)), (Encoding::Gsm7, 2, 161));
        assert_eq!(count(&"a".repeat(306)), (Encoding::Gsm7, 2, 306));
        assert_eq!(count(&"a".repeat(307)), (Encoding::Gsm7, 3, 307));
        // Accented letters of the default alphabet stay GSM-7.
        assert_eq!(count("Ça sera génial à 9h"), (Encoding::Gsm7, 1, 19));
    }

    #[test]
    fn extension_characters_take_two_septets_and_are_not_split() {
        assert_eq!(count("€"), (Encoding::Gsm7, 1, 2));
        assert_eq!(count(&"€".repeat(80)), (Encoding::Gsm7, 1, 160));
        assert_eq!(count(&"€".repeat(81)), (Encoding::Gsm7, 2, 162));
        // 152 septets, then a two-septet character that would straddle the boundary.
        let body = format!("{}[{}", "a".repeat(152), "b".repeat(10));
        assert_eq!(count(&body), (Encoding::Gsm7, 2, 164));
        let body = format!("{}[{}", "a".repeat(152), "b".repeat(152));
        assert_eq!(count(&body), (Encoding::Gsm7, 3, 306));
        for c in "^{}\\[~]|€\u{c}".chars() {
            assert_eq!(gsm7_septets(c), Some(2), "{c:?}");
        }
    }

    #[test]
    fn anything_outside_gsm7_is_ucs2_by_70_then_67() {
        assert_eq!(count(&"ж".repeat(70)), (Encoding::Ucs2, 1, 70));
        assert_eq!(count(&"ж".repeat(71)), (Encoding::Ucs2, 2, 71));
        assert_eq!(count(&"ж".repeat(134)), (Encoding::Ucs2, 2, 134));
        assert_eq!(count(&"ж".repeat(135)), (Encoding::Ucs2, 3, 135));
        // One curly quote turns a whole GSM-7 body into UCS-2.
        assert_eq!(
            count(&format!("{}’", "a".repeat(69))),
            (Encoding::Ucs2, 1, 70)
        );
        assert_eq!(
            count(&format!("{}’", "a".repeat(70))),
            (Encoding::Ucs2, 2, 71)
        );
    }

    #[test]
    fn emoji_are_surrogate_pairs_never_split() {
        assert_eq!(count("😀"), (Encoding::Ucs2, 1, 2));
        assert_eq!(count(&"😀".repeat(35)), (Encoding::Ucs2, 1, 70));
        assert_eq!(count(&"😀".repeat(36)), (Encoding::Ucs2, 2, 72));
        // 66 units, then a pair that would straddle the first boundary.
        let body = format!("{}😀{}", "ж".repeat(66), "ж".repeat(10));
        assert_eq!(count(&body), (Encoding::Ucs2, 2, 78));
        let body = format!("{}😀{}", "ж".repeat(66), "ж".repeat(66));
        assert_eq!(count(&body), (Encoding::Ucs2, 3, 134));
    }
}
