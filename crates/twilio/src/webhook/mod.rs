//! Typed Twilio webhook payloads from `application/x-www-form-urlencoded` bodies.
//!
//! Every payload keeps all raw pairs in `params` ([`FormParams`], in arrival order) next to the
//! typed fields: Twilio adds parameters without notice, and every one of them is covered by
//! `X-Twilio-Signature`, so the validator must see them all
//! (<https://www.twilio.com/docs/usage/webhooks/webhooks-security>).
//! Empty values (`ForwardedFrom=`) count as absent for optional fields.

mod sms;
pub(crate) mod time;
mod voice;

use std::fmt;
use std::str::FromStr;

pub use sms::{IncomingSms, MediaAttachment, SmsKeyword};
pub use time::{Rfc2822Timestamp, TimestampError};
pub use voice::{
    AmdCallback, CallStatusCallback, RecordingStatus, RecordingStatusCallback, RecordingTrack,
    RelaySessionCallback, SessionStatus,
};

use crate::call::UnknownValue;
use crate::e164::{Address, E164};
use crate::sid::SidError;

/// Why a webhook payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// A required parameter is absent.
    #[error("missing required parameter {0}")]
    MissingField(&'static str),
    /// A SID parameter has the wrong prefix or shape.
    #[error("invalid {field}: {source}")]
    InvalidSid {
        /// The parameter name.
        field: &'static str,
        /// What is wrong.
        #[source]
        source: SidError,
    },
    /// A numeric parameter is not a number in range.
    #[error("{field} is not a valid number: {value:?}")]
    InvalidNumber {
        /// The parameter name.
        field: &'static str,
        /// The value (truncated to 32 characters).
        value: String,
    },
    /// An enumerated parameter has an undocumented value.
    #[error("invalid {field}: {source}")]
    UnknownValue {
        /// The parameter name.
        field: &'static str,
        /// The value found.
        #[source]
        source: UnknownValue,
    },
    /// A date-time parameter is not RFC 2822.
    #[error("invalid {field}: {source}")]
    InvalidTimestamp {
        /// The parameter name.
        field: &'static str,
        /// What is wrong.
        #[source]
        source: TimestampError,
    },
}

/// All pairs of a form body, in order, repeated names kept. `Debug` masks values that are
/// phone numbers, so a payload can be logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FormParams(Vec<(String, String)>);

impl FormParams {
    /// Decodes an `application/x-www-form-urlencoded` body (`+` is a space, `%XX` a byte;
    /// invalid UTF-8 becomes U+FFFD). Never fails: malformed pairs decode as best they can,
    /// and the signature check then decides whether to trust them.
    pub fn parse(body: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// Wraps pairs that were already decoded (e.g. by a web framework).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All pairs, for [`crate::signature::RequestValidator::validate_form`].
    pub fn as_pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds a pair (for building simulator requests).
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// The form-encoded body (for the simulator).
    pub fn to_body(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.0)
            .finish()
    }

    pub(crate) fn fields(&self) -> Fields<'_> {
        Fields(self)
    }
}

/// Parameters that name a caller or callee: masked in `Debug` even when they are not E.164.
const PARTY_FIELDS: [&str; 6] = [
    "From",
    "To",
    "Caller",
    "Called",
    "ForwardedFrom",
    "CallerName",
];

impl fmt::Debug for FormParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in &self.0 {
            match E164::parse(v) {
                Ok(number) => map.entry(k, &number.masked()),
                // The call's parties, whatever their shape (SIP URIs, national formats).
                Err(_) if PARTY_FIELDS.contains(&k.as_str()) => {
                    map.entry(k, &Address::Other(v.clone()).masked())
                }
                Err(_) => map.entry(k, v),
            };
        }
        map.finish()
    }
}

/// Typed access to parameters with [`WebhookError`]s that name the field.
pub(crate) struct Fields<'a>(&'a FormParams);

impl Fields<'_> {
    /// Present and non-empty.
    pub(crate) fn optional(&self, name: &str) -> Option<&str> {
        self.0.get(name).filter(|v| !v.is_empty())
    }

    pub(crate) fn required(&self, name: &'static str) -> Result<&str, WebhookError> {
        self.0.get(name).ok_or(WebhookError::MissingField(name))
    }

    pub(crate) fn optional_string(&self, name: &str) -> Option<String> {
        self.optional(name).map(str::to_owned)
    }

    pub(crate) fn sid<T>(
        &self,
        name: &'static str,
        new: fn(String) -> Result<T, SidError>,
    ) -> Result<T, WebhookError> {
        new(self.required(name)?.to_owned()).map_err(|source| WebhookError::InvalidSid {
            field: name,
            source,
        })
    }

    pub(crate) fn optional_sid<T>(
        &self,
        name: &'static str,
        new: fn(String) -> Result<T, SidError>,
    ) -> Result<Option<T>, WebhookError> {
        self.optional(name)
            .map(|v| {
                new(v.to_owned()).map_err(|source| WebhookError::InvalidSid {
                    field: name,
                    source,
                })
            })
            .transpose()
    }

    pub(crate) fn optional_number<T: FromStr>(
        &self,
        name: &'static str,
    ) -> Result<Option<T>, WebhookError> {
        self.optional(name)
            .map(|v| {
                v.trim().parse().map_err(|_| WebhookError::InvalidNumber {
                    field: name,
                    value: v.chars().take(32).collect(),
                })
            })
            .transpose()
    }

    pub(crate) fn parsed<T>(
        &self,
        name: &'static str,
        parse: fn(&str) -> Result<T, UnknownValue>,
    ) -> Result<T, WebhookError> {
        parse(self.required(name)?).map_err(|source| WebhookError::UnknownValue {
            field: name,
            source,
        })
    }

    pub(crate) fn optional_parsed<T>(
        &self,
        name: &'static str,
        parse: fn(&str) -> Result<T, UnknownValue>,
    ) -> Result<Option<T>, WebhookError> {
        self.optional(name)
            .map(|v| {
                parse(v).map_err(|source| WebhookError::UnknownValue {
                    field: name,
                    source,
                })
            })
            .transpose()
    }

    pub(crate) fn optional_timestamp(
        &self,
        name: &'static str,
    ) -> Result<Option<Rfc2822Timestamp>, WebhookError> {
        self.optional(name)
            .map(|v| {
                Rfc2822Timestamp::parse(v).map_err(|source| WebhookError::InvalidTimestamp {
                    field: name,
                    source,
                })
            })
            .transpose()
    }

    pub(crate) fn address(&self, name: &'static str) -> Result<Address, WebhookError> {
        self.required(name).map(Address::parse)
    }

    pub(crate) fn optional_address(&self, name: &str) -> Option<Address> {
        self.optional(name).map(Address::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_params_decode_plus_percent_and_keep_order_and_repeats() {
        let params = FormParams::parse(
            b"To=%2B18005551212&Body=It%27s+amazing&Digits=5&Digits=1&Empty=&Odd%ZZ=x",
        );
        assert_eq!(params.get("To"), Some("+18005551212"));
        assert_eq!(params.get("Body"), Some("It's amazing"));
        assert_eq!(params.get_all("Digits").collect::<Vec<_>>(), ["5", "1"]);
        assert_eq!(params.get("Empty"), Some(""));
        assert_eq!(
            params.get("Odd%ZZ"),
            Some("x"),
            "bad escapes are kept literally"
        );
        assert_eq!(params.len(), 6);
        assert_eq!(params.as_pairs()[0].0, "To");
    }

    #[test]
    fn form_params_body_round_trips() {
        let mut params = FormParams::default();
        params.push("Body", "a&b=c +é");
        params.push("From", "+14158675309");
        assert_eq!(FormParams::parse(params.to_body().as_bytes()), params);
    }

    #[test]
    fn form_params_debug_masks_phone_numbers() {
        let params = FormParams::parse(b"From=%2B14158675309&CallSid=CA1");
        let shown = format!("{params:?}");
        assert!(shown.contains("+1415***5309"), "{shown}");
        assert!(!shown.contains("8675309"), "{shown}");
        assert!(shown.contains("CA1"));
    }

    #[test]
    fn form_params_feed_the_signature_validator() {
        use crate::signature::RequestValidator;
        let body = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
        let params = FormParams::parse(body);
        assert_eq!(
            RequestValidator::new("12345").validate_form(
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                params.as_pairs(),
                "RSOYDt4T1cUTdK1PDd93/VVr8B8="
            ),
            Ok(())
        );
    }
}
