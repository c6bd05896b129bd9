//! Call vocabulary shared by webhooks and ConversationRelay: status, direction, answering
//! machine detection (<https://www.twilio.com/docs/voice/api/call-resource>,
//! <https://www.twilio.com/docs/voice/answering-machine-detection>).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that is not one of the documented ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    /// What was being parsed, e.g. `CallStatus`.
    pub kind: &'static str,
    /// The value found (truncated to 32 characters).
    pub value: String,
}

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in documentation order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire),+
                }
            }

            /// Parses the wire spelling, ignoring ASCII case (ConversationRelay's `setup`
            /// sends `"RINGING"` where webhooks send `ringing`).
            pub fn parse(text: &str) -> Result<Self, $crate::call::UnknownValue> {
                $(if text.eq_ignore_ascii_case($wire) {
                    return Ok(Self::$variant);
                })+
                Err($crate::call::UnknownValue {
                    kind: stringify!($name),
                    value: text.chars().take(32).collect(),
                })
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as ::serde::Deserialize>::deserialize(deserializer)?;
                Self::parse(&text).map_err(<D::Error as ::serde::de::Error>::custom)
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum!(
    /// `CallStatus` in status callbacks (`initiated` appears only there, never on the
    /// resource).
    CallStatus {
        /// Waiting to be dialled.
        Queued = "queued",
        /// Dialling started (callbacks only).
        Initiated = "initiated",
        /// The far end is ringing.
        Ringing = "ringing",
        /// Answered (the `answered` event arrives as this).
        InProgress = "in-progress",
        /// Ended normally.
        Completed = "completed",
        /// The far end was busy.
        Busy = "busy",
        /// Could not be placed.
        Failed = "failed",
        /// Not answered, or rejected with `<Reject>`.
        NoAnswer = "no-answer",
        /// Canceled while queued or ringing.
        Canceled = "canceled",
    }
);

impl CallStatus {
    /// Whether no further progress events follow.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Busy | Self::Failed | Self::NoAnswer | Self::Canceled
        )
    }
}

wire_enum!(
    /// `AnsweredBy` from answering machine detection. `Enable` yields `human`,
    /// `machine_start`, `fax`, `unknown`; `DetectMessageEnd` yields `human`, the three
    /// `machine_end_*` values, `fax`, `unknown`.
    AnsweredBy {
        /// A person answered.
        Human = "human",
        /// A machine answered (`Enable` mode, decided at the greeting's start).
        MachineStart = "machine_start",
        /// A machine; its greeting ended with a beep.
        MachineEndBeep = "machine_end_beep",
        /// A machine; its greeting ended in silence.
        MachineEndSilence = "machine_end_silence",
        /// A machine; its greeting ended some other way.
        MachineEndOther = "machine_end_other",
        /// A fax machine.
        Fax = "fax",
        /// Detection could not decide.
        Unknown = "unknown",
    }
);

impl AnsweredBy {
    /// Whether an answering machine (of any kind) answered.
    pub fn is_machine(self) -> bool {
        matches!(
            self,
            Self::MachineStart
                | Self::MachineEndBeep
                | Self::MachineEndSilence
                | Self::MachineEndOther
        )
    }
}

/// A call's `Direction`. Values outside the documented set are kept in [`Direction::Other`]
/// rather than failing the whole message, because Twilio adds directions (trunking) over time
/// and the field is informational.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `inbound`.
    Inbound,
    /// `outbound-api`: placed with the REST API.
    OutboundApi,
    /// `outbound-dial`: placed by `<Dial>`.
    OutboundDial,
    /// `trunking-terminating`.
    TrunkingTerminating,
    /// `trunking-originating`.
    TrunkingOriginating,
    /// Anything else, verbatim.
    Other(String),
}

impl Direction {
    /// Parses the wire spelling (case-insensitively); never fails.
    pub fn parse(text: &str) -> Self {
        for (wire, value) in [
            ("inbound", Self::Inbound),
            ("outbound-api", Self::OutboundApi),
            ("outbound-dial", Self::OutboundDial),
            ("trunking-terminating", Self::TrunkingTerminating),
            ("trunking-originating", Self::TrunkingOriginating),
        ] {
            if text.eq_ignore_ascii_case(wire) {
                return value;
            }
        }
        Self::Other(text.to_owned())
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Inbound => "inbound",
            Self::OutboundApi => "outbound-api",
            Self::OutboundDial => "outbound-dial",
            Self::TrunkingTerminating => "trunking-terminating",
            Self::TrunkingOriginating => "trunking-originating",
            Self::Other(other) => other,
        }
    }
}

impl Serialize for Direction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Direction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_status_parses_every_documented_value_and_relay_upper_case() {
        for status in CallStatus::ALL {
            assert_eq!(CallStatus::parse(status.as_str()), Ok(*status));
        }
        assert_eq!(CallStatus::parse("RINGING"), Ok(CallStatus::Ringing));
        assert_eq!(
            CallStatus::parse("answered"),
            Err(UnknownValue {
                kind: "CallStatus",
                value: "answered".into()
            })
        );
        assert!(CallStatus::NoAnswer.is_terminal());
        assert!(!CallStatus::Initiated.is_terminal());
    }

    #[test]
    fn answered_by_covers_all_amd_values() {
        let wire: Vec<&str> = AnsweredBy::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            wire,
            [
                "human",
                "machine_start",
                "machine_end_beep",
                "machine_end_silence",
                "machine_end_other",
                "fax",
                "unknown"
            ]
        );
        assert!(AnsweredBy::MachineEndBeep.is_machine());
        assert!(!AnsweredBy::Fax.is_machine());
    }

    #[test]
    fn direction_keeps_unknown_values() {
        assert_eq!(Direction::parse("outbound-api"), Direction::OutboundApi);
        assert_eq!(
            Direction::parse("sideways"),
            Direction::Other("sideways".into())
        );
        assert_eq!(Direction::parse("sideways").as_str(), "sideways");
    }
}
