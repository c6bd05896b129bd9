//! The neutral record of a finished conversation: what any dialog, on either transport,
//! reports when its call ends.
//!
//! The generic interfaces ([`crate::conversation::Conversation::outcome`],
//! [`crate::dialog::Dialog::outcome`], [`crate::turn::VoiceCallReport`]) return a
//! [`CallOutcome`]: the transcript, how the conversation ended, when, and an optional domain
//! [`Payload`]. A domain crate (the recruiting screening, say) puts its own result type in the
//! payload and reads it back with [`Payload::downcast_ref`]; nothing here knows that type.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// Why a conversation ended: the relay `end` message's `handoffData`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndReason {
    /// `reasonCode`, e.g. [`crate::conversation::REASON_LIVE_AGENT_HANDOFF`].
    pub reason_code: String,
    /// `reason`, human-readable.
    pub reason: String,
}

impl EndReason {
    /// A reason with a code and a human-readable explanation.
    pub fn new(reason_code: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            reason_code: reason_code.into(),
            reason: reason.into(),
        }
    }

    /// The `handoffData` string: `{"reasonCode":"..","reason":".."}`.
    pub fn handoff_data_json(&self) -> String {
        serde_json::to_string(self).expect("a struct of two strings always serializes")
    }
}

/// Who spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    /// The agent.
    Bot,
    /// The caller, spoken.
    Caller,
    /// The caller, keypad.
    Keypad,
}

/// One transcript line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TranscriptEntry {
    /// When, ms.
    pub at_ms: u64,
    /// Who.
    pub speaker: Speaker,
    /// What; for an interrupted bot turn, only what the caller heard.
    pub text: String,
    /// A bot turn cut by the caller.
    pub interrupted: bool,
    /// ASR confidence, when reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
}

/// A domain's own result of a call, carried opaquely by [`CallOutcome::payload`].
pub trait DomainResult: Any + fmt::Debug + Send + Sync {
    /// What kind of result this is (e.g. `"screening"`), for logs and records.
    fn kind(&self) -> &'static str;

    /// The result as JSON, for records that keep it whole.
    fn to_json(&self) -> serde_json::Value;

    /// Equality with another payload of any type (false across types).
    fn eq_dyn(&self, other: &dyn DomainResult) -> bool;
}

/// Implements [`DomainResult`] for a `Serialize + PartialEq` type: `kind` as given, `to_json`
/// through serde, equality through `PartialEq` (false across types).
///
/// ```ignore
/// voxbridge_brain::domain_result!(ScreeningResult, "screening");
/// ```
#[macro_export]
macro_rules! domain_result {
    ($ty:ty, $kind:literal) => {
        impl $crate::outcome::DomainResult for $ty {
            fn kind(&self) -> &'static str {
                $kind
            }

            fn to_json(&self) -> $crate::outcome::JsonValue {
                $crate::outcome::json_of(self)
            }

            fn eq_dyn(&self, other: &dyn $crate::outcome::DomainResult) -> bool {
                $crate::outcome::same_as(self, other)
            }
        }
    };
}

/// The JSON value type of [`DomainResult::to_json`].
pub use serde_json::Value as JsonValue;

/// `value` as JSON (`Null` if it cannot be represented): what [`domain_result!`] uses.
pub fn json_of<T: Serialize>(value: &T) -> JsonValue {
    serde_json::to_value(value).unwrap_or_default()
}

/// Whether `other` is a `T` equal to `this`: what [`domain_result!`] uses.
pub fn same_as<T: DomainResult + PartialEq>(this: &T, other: &dyn DomainResult) -> bool {
    let other: &dyn Any = other;
    other.downcast_ref::<T>() == Some(this)
}

/// A shared, type-erased [`DomainResult`]. Cheap to clone.
#[derive(Clone)]
pub struct Payload(Arc<dyn DomainResult>);

impl Payload {
    /// Wraps a domain result.
    pub fn new(result: impl DomainResult) -> Self {
        Self(Arc::new(result))
    }

    /// The result's [`DomainResult::kind`].
    pub fn kind(&self) -> &'static str {
        self.0.kind()
    }

    /// The result as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        self.0.to_json()
    }

    /// The result, if it is a `T`.
    pub fn downcast_ref<T: DomainResult>(&self) -> Option<&T> {
        let any: &dyn Any = &*self.0;
        any.downcast_ref::<T>()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_dyn(&*other.0)
    }
}

/// What a conversation gathered, complete once it has ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallOutcome {
    /// The whole conversation, oldest first.
    pub transcript: Vec<TranscriptEntry>,
    /// How the dialog ended the call (the relay `end`'s `handoffData`); `None` when the
    /// caller hung up first or the call is still running.
    pub end: Option<EndReason>,
    /// The call's custom parameters (`candidateId`, `firstName`, ...), as the dialog got them.
    pub parameters: BTreeMap<String, String>,
    /// When the conversation started, ms (same origin as the transcript's `at_ms`).
    pub started_at_ms: Option<u64>,
    /// When it ended, ms.
    pub ended_at_ms: Option<u64>,
    /// The domain's own result (a screening's answers and outcome, ...), if the dialog has
    /// one.
    pub payload: Option<Payload>,
}

impl CallOutcome {
    /// The payload, if there is one and it is a `T`.
    pub fn payload<T: DomainResult>(&self) -> Option<&T> {
        self.payload.as_ref()?.downcast_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize)]
    struct Score {
        score: u32,
    }

    crate::domain_result!(Score, "score");

    fn score(score: u32) -> Score {
        Score { score }
    }

    #[derive(Debug)]
    struct Other;

    impl DomainResult for Other {
        fn kind(&self) -> &'static str {
            "other"
        }
        fn to_json(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
        fn eq_dyn(&self, _other: &dyn DomainResult) -> bool {
            false
        }
    }

    #[test]
    fn payload_reads_back_as_its_own_type_only() {
        let outcome = CallOutcome {
            payload: Some(Payload::new(score(7))),
            ..CallOutcome::default()
        };
        assert_eq!(outcome.payload::<Score>(), Some(&score(7)));
        assert!(outcome.payload::<Other>().is_none());
        let payload = outcome.payload.as_ref().expect("set above");
        assert_eq!(payload.kind(), "score");
        assert_eq!(payload.to_json()["score"], 7);
        assert_eq!(payload, &Payload::new(score(7)));
        assert_ne!(payload, &Payload::new(score(8)));
        assert_ne!(payload, &Payload::new(Other));
        assert!(CallOutcome::default().payload::<Score>().is_none());
    }
}
