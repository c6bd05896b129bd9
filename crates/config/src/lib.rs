//! Configuration building blocks shared by every voxbridge crate that reads settings, so each
//! one is defined once:
//!
//! - [`Secret`]: an API key or auth token. Deserialises from a plain string; `Debug` prints
//!   `<redacted>` (or `<unset>`), never the value; surrounding whitespace (a stray newline
//!   from a secrets file) is not part of it.
//!
//! No I/O, no async: plain data with serde.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A secret string (API key, auth token): never shown by `Debug`. Leading and trailing
/// whitespace is dropped when it is made or deserialised, so `"token\n"` from a file is
/// `"token"`, and a blank value is unset.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret (trimmed).
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        let trimmed = value.trim();
        if trimmed.len() == value.len() {
            Self(value)
        } else {
            Self(trimmed.to_owned())
        }
    }

    /// The secret itself, for the one place that sends it. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no secret is set (empty or only whitespace).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Section {
        key: Secret,
    }

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("sk-live-123");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Secret::default()), "<unset>");
        assert_eq!(secret.expose(), "sk-live-123");
    }

    #[test]
    fn whitespace_is_not_part_of_the_secret() {
        let section: Section = toml::from_str("key = \"  token\\n\"").expect("a string");
        assert_eq!(section.key.expose(), "token");
        assert!(!section.key.is_empty());
        let blank: Section = toml::from_str("key = \" \\n \"").expect("a string");
        assert!(blank.key.is_empty());
        assert_eq!(format!("{section:?}"), "Section { key: <redacted> }");
    }
}
