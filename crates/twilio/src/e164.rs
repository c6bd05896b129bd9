//! E.164 phone numbers (<https://www.itu.int/rec/T-REC-E.164>, and Twilio's guide
//! <https://www.twilio.com/docs/glossary/what-e164>).
//!
//! Accepted input: a leading `+`, then 7 to 15 digits, the first of which (the country code) is
//! not `0`. Visual separators that people paste from address books (spaces, `-`, `.`, `(`, `)`)
//! are allowed after the `+` and removed, so `"+1 (415) 867-5309"` normalizes to
//! `"+14158675309"`.
//!
//! Rejected on purpose: numbers without `+`, including `"0014158675309"`. The `00` international
//! prefix is not universal (North America dials `011`, some countries `810`), so a number
//! without `+` is not self-describing and guessing its country would dial the wrong person.
//!
//! `Display` shows the full number (for Twilio requests); `Debug` and [`E164::masked`] hide the
//! middle digits (`+1415***5309`) because phone numbers are personal data and must be masked in
//! logs.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most digits in an E.164 number (ITU-T E.164 section 6.1).
pub const MAX_DIGITS: usize = 15;
/// Fewest digits accepted: the shortest numbers in service (e.g. Niue, `+683 4002`) have 7.
pub const MIN_DIGITS: usize = 7;

/// Why a string is not an E.164 number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E164Error {
    /// Empty or only whitespace.
    #[error("phone number is empty")]
    Empty,
    /// Does not start with `+` and a country code.
    #[error("phone number must start with '+' and the country code, e.g. +14155550100")]
    MissingCountryCode,
    /// A character that is neither a digit nor a separator.
    #[error("phone number contains {found:?} at byte {position}; only digits are allowed")]
    InvalidCharacter {
        /// The offending character.
        found: char,
        /// Its byte offset in the input.
        position: usize,
    },
    /// Fewer than [`MIN_DIGITS`] digits.
    #[error("phone number has {digits} digits; at least {MIN_DIGITS} are needed")]
    TooShort {
        /// Digits found.
        digits: usize,
    },
    /// More than [`MAX_DIGITS`] digits.
    #[error("phone number has {digits} digits; E.164 allows at most {MAX_DIGITS}")]
    TooLong {
        /// Digits found.
        digits: usize,
    },
    /// Country codes never start with 0.
    #[error("country code cannot start with 0")]
    LeadingZeroCountryCode,
}

/// A normalized E.164 number: `+` followed by 7 to 15 digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    /// Parses and normalizes a phone number. See the module docs for the accepted forms.
    pub fn parse(input: &str) -> Result<Self, E164Error> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(E164Error::Empty);
        }
        let offset = input.len() - input.trim_start().len();
        let Some(rest) = trimmed.strip_prefix('+') else {
            if let Some((position, found)) = trimmed
                .char_indices()
                .find(|(_, c)| !c.is_ascii_digit() && !is_separator(*c))
            {
                return Err(E164Error::InvalidCharacter {
                    found,
                    position: position + offset,
                });
            }
            return Err(E164Error::MissingCountryCode);
        };
        let mut normalized = String::with_capacity(MAX_DIGITS + 1);
        normalized.push('+');
        let mut digits = 0usize;
        for (position, c) in rest.char_indices() {
            if c.is_ascii_digit() {
                if digits == 0 && c == '0' {
                    return Err(E164Error::LeadingZeroCountryCode);
                }
                digits += 1;
                if digits <= MAX_DIGITS {
                    normalized.push(c);
                }
            } else if !is_separator(c) {
                return Err(E164Error::InvalidCharacter {
                    found: c,
                    position: position + offset + 1,
                });
            }
        }
        if digits > MAX_DIGITS {
            return Err(E164Error::TooLong { digits });
        }
        if digits < MIN_DIGITS {
            return Err(E164Error::TooShort { digits });
        }
        Ok(Self(normalized))
    }

    /// The normalized number, e.g. `+14158675309`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number with its middle digits hidden, for logs: `+14158675309` -> `+1415***5309`.
    ///
    /// Shows at most the first 4 and the last 4 digits and always hides at least 3.
    pub fn masked(&self) -> String {
        let digits = &self.0[1..];
        let n = digits.len();
        let head = n.saturating_sub(4 + 3).min(4);
        let tail = (n - head - 3).min(4);
        format!("+{}***{}", &digits[..head], &digits[n - tail..])
    }
}

fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '.' | '(' | ')')
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164({})", self.masked())
    }
}

impl std::str::FromStr for E164 {
    type Err = E164Error;
    fn from_str(s: &str) -> Result<Self, E164Error> {
        Self::parse(s)
    }
}

impl Serialize for E164 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for E164 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A call or message party: a phone number, or anything else Twilio puts in `From`/`To`
/// (`client:alice`, `sip:bob@example.com`, a WhatsApp address, an empty string...).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A phone number.
    Phone(E164),
    /// Any other address, kept verbatim.
    Other(String),
}

impl Address {
    /// Classifies `text`: a valid E.164 number becomes [`Address::Phone`].
    pub fn parse(text: &str) -> Self {
        match E164::parse(text) {
            Ok(number) => Self::Phone(number),
            Err(_) => Self::Other(text.to_owned()),
        }
    }

    /// The phone number, if this is one.
    pub fn phone(&self) -> Option<&E164> {
        match self {
            Self::Phone(number) => Some(number),
            Self::Other(_) => None,
        }
    }

    /// Text safe for logs: phone numbers masked; in other addresses (`sip:+1415...@trunk`,
    /// national formats such as `(415) 867-5309`) every digit of a run of 7 or more digits
    /// (spaces, `-`, `.`, `(` and `)` between them included) but the first 4 and last 4 becomes
    /// `*`, so a number never reaches the logs whole. Control characters (newlines, escape
    /// sequences) and bidirectional overrides are escaped (`\n`, `\u{1b}`), so a caller
    /// cannot forge a log line, and at most [`LOG_CHARS`] characters are shown (then `…`).
    pub fn masked(&self) -> String {
        match self {
            Self::Phone(number) => number.masked(),
            Self::Other(other) => log_safe(&mask_digit_runs(other)),
        }
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(deserializer)?))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Phone(number) => number.fmt(f),
            Self::Other(other) => f.write_str(other),
        }
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Phone(number) => number.fmt(f),
            Self::Other(other) => write!(f, "Other({other:?})"),
        }
    }
}

/// Characters of an [`Address::Other`] shown by [`Address::masked`].
pub const LOG_CHARS: usize = 80;

/// `text` with control characters and bidirectional formatting escaped, cut at [`LOG_CHARS`].
fn log_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(LOG_CHARS * 2));
    for (i, c) in text.chars().enumerate() {
        if i == LOG_CHARS {
            out.push('…');
            break;
        }
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `c` may sit between the digits of one written phone number (`(415) 867-5309`).
fn digit_separator(c: u8) -> bool {
    matches!(c, b' ' | b'-' | b'.' | b'(' | b')')
}

/// Masks the middle digits of every run of 7 or more ASCII digits, separators between them
/// allowed (keeping at most 4 digits at each end and always hiding at least 3).
fn mask_digit_runs(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            // The run: digits, and separators followed (eventually) by another digit.
            let start = i;
            let mut end = i;
            let mut j = i;
            while j < bytes.len() && (bytes[j].is_ascii_digit() || digit_separator(bytes[j])) {
                if bytes[j].is_ascii_digit() {
                    end = j + 1;
                }
                j += 1;
            }
            let run = &text[start..end];
            let digits = run.bytes().filter(u8::is_ascii_digit).count();
            if digits >= 7 {
                let keep = ((digits - 3) / 2).min(4);
                let mut seen = 0;
                for b in run.bytes() {
                    if b.is_ascii_digit() {
                        let hide = seen >= keep && seen < digits - keep;
                        out.push(if hide { '*' } else { char::from(b) });
                        seen += 1;
                    } else {
                        out.push(char::from(b));
                    }
                }
            } else {
                out.push_str(run);
            }
            i = end;
        } else {
            let ch = text[i..].chars().next().expect("i is on a char boundary");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn other_addresses_never_log_a_whole_number() {
        let masked = |s: &str| Address::Other(s.to_owned()).masked();
        assert_eq!(
            masked("sip:+14158675309@trunk.example"),
            "sip:+1415***5309@trunk.example"
        );
        assert_eq!(masked("14158675309"), "1415***5309");
        assert_eq!(masked("5551234"), "55***34");
        assert_eq!(masked("anonymous"), "anonymous");
        assert_eq!(masked("client:agent-42"), "client:agent-42");
        assert_eq!(
            masked("x123456y"),
            "x123456y",
            "six digits are not a phone number"
        );
        assert_eq!(masked("zürich 0441234567"), "zürich 044****567");
        assert_eq!(masked("(415) 867-5309"), "(415) ***-*309");
        assert_eq!(masked("call 555-1234 now"), "call 55*-**34 now");
        assert_eq!(masked("10.0.0.1:5060"), "10.0.0.1:5060");
    }

    #[test]
    fn other_addresses_cannot_forge_log_lines() {
        let masked = |s: &str| Address::Other(s.to_owned()).masked();
        assert_eq!(
            masked("a\nINFO b\r\u{1b}[2J\u{0}"),
            "a\\nINFO b\\r\\u{1b}[2J\\u{0}"
        );
        assert_eq!(masked("x\u{202e}y"), "x\\u{202e}y");
        let long = masked(&format!("sip:{}@example.com", "a".repeat(1_000)));
        assert_eq!(long.chars().count(), LOG_CHARS + 1);
        assert!(long.ends_with('…'));
    }
    use super::*;

    #[test]
    fn normalizes_formatted_us_number() {
        assert_eq!(
            E164::parse("+1 (415) 867-5309").unwrap().as_str(),
            "+14158675309"
        );
        assert_eq!(
            E164::parse("  +14158675309 ").unwrap().as_str(),
            "+14158675309"
        );
        assert_eq!(
            E164::parse("+44.20.7946.0958").unwrap().as_str(),
            "+442079460958"
        );
    }

    #[test]
    fn rejects_numbers_without_plus_including_00_prefix() {
        assert_eq!(
            E164::parse("0014158675309"),
            Err(E164Error::MissingCountryCode)
        );
        assert_eq!(
            E164::parse("4158675309"),
            Err(E164Error::MissingCountryCode)
        );
    }

    #[test]
    fn rejects_letters_with_position() {
        assert_eq!(
            E164::parse("+1415CALLNOW"),
            Err(E164Error::InvalidCharacter {
                found: 'C',
                position: 5
            })
        );
        assert!(matches!(
            E164::parse("1-800-FLOWERS"),
            Err(E164Error::InvalidCharacter { found: 'F', .. })
        ));
    }

    #[test]
    fn enforces_digit_count_bounds() {
        assert_eq!(
            E164::parse("+123456"),
            Err(E164Error::TooShort { digits: 6 })
        );
        assert!(E164::parse("+1234567").is_ok());
        assert!(E164::parse("+123456789012345").is_ok());
        assert_eq!(
            E164::parse("+1234567890123456"),
            Err(E164Error::TooLong { digits: 16 })
        );
        assert_eq!(E164::parse("+"), Err(E164Error::TooShort { digits: 0 }));
        assert_eq!(E164::parse("   "), Err(E164Error::Empty));
    }

    #[test]
    fn rejects_leading_zero_country_code() {
        assert_eq!(
            E164::parse("+0414158675309"),
            Err(E164Error::LeadingZeroCountryCode)
        );
    }

    #[test]
    fn masks_middle_digits_in_masked_and_debug_but_not_display() {
        let number = E164::parse("+14158675309").unwrap();
        assert_eq!(number.masked(), "+1415***5309");
        assert_eq!(format!("{number:?}"), "E164(+1415***5309)");
        assert_eq!(number.to_string(), "+14158675309");
        assert!(!format!("{:?}", Address::Phone(number)).contains("867"));
    }

    #[test]
    fn masking_hides_at_least_three_digits_of_short_numbers() {
        for (input, masked) in [
            ("+6834002", "+***4002"),
            ("+12345678", "+1***5678"),
            ("+123456789012345", "+1234***2345"),
        ] {
            assert_eq!(E164::parse(input).unwrap().masked(), masked);
        }
        // Every length hides >= 3 digits.
        for n in MIN_DIGITS..=MAX_DIGITS {
            let text = format!("+{}", "9".repeat(n));
            let masked = E164::parse(&text).unwrap().masked();
            let shown = masked.chars().filter(char::is_ascii_digit).count();
            assert!(n - shown >= 3, "{masked} shows too much");
        }
    }

    #[test]
    fn address_classifies_phone_and_client_identities() {
        assert!(Address::parse("+18005550100").phone().is_some());
        assert_eq!(
            Address::parse("client:alice"),
            Address::Other("client:alice".into())
        );
    }
}
