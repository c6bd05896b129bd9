//! Twilio resource identifiers (SIDs) as newtypes.
//!
//! A SID is a two-letter type prefix followed by 32 hexadecimal characters, e.g. `CA…` for a
//! call, `MZ…` for a media stream, `AC…` for an account and `VX…` for a ConversationRelay
//! session (<https://www.twilio.com/docs/glossary/what-is-a-sid>). Twilio's own documentation
//! examples use placeholders such as `MZXXXXXXXX…`, and simulators and tests use readable ids, so
//! parsing checks the prefix and that the rest is 1 to 62 ASCII letters or digits, not the exact
//! hex shape. That is enough to keep a `CallSid` from being confused with a `StreamSid` and to
//! make every SID safe to put into JSON, XML and log lines without escaping.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest body (after the prefix) accepted; real SIDs have 32.
const MAX_BODY: usize = 62;

/// Why a string is not a SID of the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidError {
    /// The string does not start with the type prefix.
    #[error("expected a SID starting with {expected:?}, got {found:?}")]
    WrongPrefix {
        /// The prefix this SID type requires.
        expected: &'static str,
        /// The first characters actually found (at most 8).
        found: String,
    },
    /// Nothing follows the prefix, or the SID is longer than 64 characters.
    #[error("SID {prefix}… has length {len}, expected 3 to 64 characters")]
    BadLength {
        /// The prefix this SID type requires.
        prefix: &'static str,
        /// The length found.
        len: usize,
    },
    /// A character other than an ASCII letter or digit.
    #[error("SID {prefix}… contains {found:?}; only ASCII letters and digits are allowed")]
    BadCharacter {
        /// The prefix this SID type requires.
        prefix: &'static str,
        /// The offending character.
        found: char,
    },
}

/// Checks `text` against the SID shape for `prefix` without allocating on success.
pub(crate) fn check(prefix: &'static str, text: &str) -> Result<(), SidError> {
    let Some(body) = text.strip_prefix(prefix) else {
        return Err(SidError::WrongPrefix {
            expected: prefix,
            found: text.chars().take(8).collect(),
        });
    };
    if body.is_empty() || body.len() > MAX_BODY {
        return Err(SidError::BadLength {
            prefix,
            len: text.len(),
        });
    }
    if let Some(found) = body.chars().find(|c| !c.is_ascii_alphanumeric()) {
        return Err(SidError::BadCharacter { prefix, found });
    }
    Ok(())
}

macro_rules! sid_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The two-letter type prefix.
            pub const PREFIX: &'static str = $prefix;

            /// Parses a SID, checking the prefix and character set.
            pub fn new(text: impl Into<String>) -> Result<Self, SidError> {
                let text = text.into();
                check($prefix, &text)?;
                Ok(Self(text))
            }

            /// Checks a borrowed string without allocating.
            pub fn check(text: &str) -> Result<(), SidError> {
                check($prefix, text)
            }

            /// The SID as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = SidError;
            fn from_str(s: &str) -> Result<Self, SidError> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::new(text).map_err(serde::de::Error::custom)
            }
        }
    };
}

sid_type!(
    /// A call, `CA…`.
    CallSid,
    "CA"
);
sid_type!(
    /// A Media Stream, `MZ…`.
    StreamSid,
    "MZ"
);
sid_type!(
    /// An account, `AC…`.
    AccountSid,
    "AC"
);
sid_type!(
    /// A ConversationRelay session, `VX…`.
    SessionSid,
    "VX"
);
sid_type!(
    /// A recording, `RE…`.
    RecordingSid,
    "RE"
);
sid_type!(
    /// A Messaging Service, `MG…`.
    MessagingServiceSid,
    "MG"
);
sid_type!(
    /// A TwiML application, `AP…`.
    ApplicationSid,
    "AP"
);

/// A message: `SM…` for SMS, `MM…` for MMS.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize)]
#[serde(transparent)]
pub struct MessageSid(String);

impl MessageSid {
    /// Parses an `SM…` or `MM…` SID.
    pub fn new(text: impl Into<String>) -> Result<Self, SidError> {
        let text = text.into();
        if text.starts_with("MM") {
            check("MM", &text)?;
        } else {
            check("SM", &text)?;
        }
        Ok(Self(text))
    }

    /// The SID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_and_placeholder_sids() {
        assert!(CallSid::new("CA1234567890abcdef1234567890abcdef").is_ok());
        assert!(StreamSid::new("MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX").is_ok());
        assert_eq!(
            AccountSid::new("AC123").unwrap().as_str(),
            "AC123",
            "short test ids are accepted"
        );
    }

    #[test]
    fn rejects_wrong_prefix_so_types_cannot_be_mixed() {
        assert_eq!(
            CallSid::new("MZ123"),
            Err(SidError::WrongPrefix {
                expected: "CA",
                found: "MZ123".into()
            })
        );
    }

    #[test]
    fn rejects_empty_body_overlong_and_punctuation() {
        assert!(matches!(
            StreamSid::new("MZ"),
            Err(SidError::BadLength { .. })
        ));
        assert!(matches!(
            StreamSid::new(format!("MZ{}", "a".repeat(63))),
            Err(SidError::BadLength { .. })
        ));
        assert_eq!(
            StreamSid::new("MZ12\"3"),
            Err(SidError::BadCharacter {
                prefix: "MZ",
                found: '"'
            })
        );
    }

    #[test]
    fn message_sid_accepts_sms_and_mms_prefixes() {
        assert!(MessageSid::new("SM123").is_ok());
        assert!(MessageSid::new("MM123").is_ok());
        assert!(MessageSid::new("CA123").is_err());
    }

    #[test]
    fn serde_rejects_invalid_sid() {
        assert!(serde_json::from_str::<CallSid>("\"CA1\"").is_ok());
        assert!(serde_json::from_str::<CallSid>("\"XX1\"").is_err());
    }
}
