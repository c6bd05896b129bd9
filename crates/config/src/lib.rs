//! Configuration building blocks shared by every voxbridge crate that reads settings, so each
//! one is defined once:
//!
//! - [`Secret`]: an API key or auth token. Deserialises from a plain string; `Debug` prints
//!   `<redacted>` (or `<unset>`), never the value; surrounding whitespace (a stray newline
//!   from a secrets file) is not part of it.
//! - [`SecretUrl`]: a service URL that may carry a password (`postgres://user:pass@host/db`,
//!   `redis://:pass@host`); `Debug`, `Display` and `Serialize` mask the password.
//! - [`millis`]: a `Duration` field read from (and written as) whole milliseconds, so a key
//!   such as `hangover_ms = 600` is declared once, as the `Duration` the code uses.
//! - [`NoOtherKeys`]: `deny_unknown_fields` for a section that flattens another struct into
//!   itself (serde cannot combine the two), e.g. `[media]`, which holds the per-call session
//!   settings beside its own.
//!
//! - [`tls`] (feature `tls`): installs rustls' *ring* crypto provider once per process, which
//!   every reqwest client and TLS WebSocket in the workspace needs before it is built.
//!
//! No I/O, no async: plain data with serde (and, behind `tls`, one process-wide setting).

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// Written as `"<redacted>"` when set and `""` when not: configuration can be printed (e.g.
/// to compare it with the documented defaults) without leaking the value.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(if self.is_empty() { "" } else { "<redacted>" })
    }
}

/// A service URL that may carry credentials. `Debug`, `Display` and `Serialize` show it with
/// the password masked ([`redact_url`]); [`SecretUrl::expose`] gives the URL to connect with.
/// Surrounding whitespace is dropped.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL (trimmed).
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        Self(value.trim().to_owned())
    }

    /// The URL with its password, for the one place that connects. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no URL is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for SecretUrl {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for SecretUrl {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&redact_url(&self.0))
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`; a URL without
/// credentials is returned as it is.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(feature = "tls")]
pub mod tls;

/// A `Duration` setting in whole milliseconds: `#[serde(rename = "hangover_ms", with =
/// "voxbridge_config::millis")] hangover: Duration`.
pub mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Reads a non-negative integer number of milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }

    /// Writes whole milliseconds (saturating at `u64::MAX`).
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A `Duration` setting in whole seconds: `#[serde(rename = "window_secs", with =
/// "voxbridge_config::secs")] window: Duration`.
pub mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Reads a non-negative integer number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }

    /// Writes whole seconds (rounded down).
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }
}

/// The last `#[serde(flatten)]` field of a section that flattens another settings struct:
/// any key neither struct declared is an error naming it, as `deny_unknown_fields` would
/// give (serde does not support that attribute together with `flatten`).
///
/// ```
/// # use serde::Deserialize;
/// #[derive(Deserialize, Default)]
/// #[serde(default)]
/// struct Inner { depth: u32 }
/// #[derive(Deserialize)]
/// struct Section {
///     #[serde(default)]
///     name: String,
///     #[serde(flatten)]
///     inner: Inner,
///     #[serde(flatten)]
///     other_keys: voxbridge_config::NoOtherKeys,
/// }
/// assert!(toml::from_str::<Section>("name = \"a\"\ndepth = 3").is_ok());
/// let err = toml::from_str::<Section>("dpeth = 3").err().unwrap();
/// assert!(err.to_string().contains("unknown key `dpeth`"), "{err}");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoOtherKeys;

impl<'de> Deserialize<'de> for NoOtherKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Reject;
        impl<'de> Visitor<'de> for Reject {
            type Value = NoOtherKeys;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("no further keys")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoOtherKeys, A::Error> {
                match map.next_key::<String>()? {
                    Some(key) => Err(serde::de::Error::custom(format_args!(
                        "unknown key `{key}`"
                    ))),
                    None => Ok(NoOtherKeys),
                }
            }
        }
        deserializer.deserialize_map(Reject)
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

    #[test]
    fn serialising_never_shows_the_value() {
        #[derive(Serialize)]
        struct Out {
            set: Secret,
            unset: Secret,
        }
        let text = toml::to_string(&Out {
            set: "sk-live-123".into(),
            unset: Secret::default(),
        })
        .expect("serialisable");
        assert_eq!(text, "set = \"<redacted>\"\nunset = \"\"\n");
    }

    #[test]
    fn urls_never_show_their_password() {
        #[derive(Serialize)]
        struct Out {
            url: SecretUrl,
        }
        let url = SecretUrl::new(" redis://:hunter2@cache:6379/0\n");
        assert_eq!(url.expose(), "redis://:hunter2@cache:6379/0");
        assert_eq!(url.to_string(), "redis://:***@cache:6379/0");
        assert_eq!(format!("{url:?}"), "\"redis://:***@cache:6379/0\"");
        let pg = SecretUrl::from("postgres://app:pw@db/x");
        assert_eq!(pg.to_string(), "postgres://app:***@db/x");
        assert_eq!(
            SecretUrl::from("sqlite://data/v.db").to_string(),
            "sqlite://data/v.db"
        );
        let text = toml::to_string(&Out { url: pg }).expect("serialisable");
        assert!(!text.contains("pw"), "{text}");
    }

    #[test]
    fn millis_round_trip() {
        #[derive(Debug, Deserialize, Serialize, PartialEq)]
        struct Timing {
            #[serde(rename = "wait_ms", with = "millis")]
            wait: std::time::Duration,
        }
        let t: Timing = toml::from_str("wait_ms = 1500").expect("an integer");
        assert_eq!(t.wait, std::time::Duration::from_millis(1500));
        assert_eq!(
            toml::to_string(&t).expect("serialisable"),
            "wait_ms = 1500\n"
        );
        assert!(toml::from_str::<Timing>("wait_ms = -1").is_err());
        assert!(toml::from_str::<Timing>("wait_ms = \"1s\"").is_err());
    }
}
