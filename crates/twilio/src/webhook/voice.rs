//! Voice webhooks: call progress (`StatusCallback`), asynchronous AMD, recording status and the
//! ConversationRelay `<Connect action>` callback.
//! (<https://www.twilio.com/docs/voice/api/call-resource#statuscallback>,
//! <https://www.twilio.com/docs/voice/answering-machine-detection>,
//! <https://www.twilio.com/docs/voice/api/recording#recordingstatuscallback>,
//! <https://www.twilio.com/docs/voice/twiml/connect/conversationrelay>)

use super::{FormParams, Rfc2822Timestamp, WebhookError};
use crate::call::{AnsweredBy, CallStatus, Direction, wire_enum};
use crate::e164::Address;
use crate::relay::{HandoffData, RelayError};
use crate::sid::{AccountSid, ApplicationSid, CallSid, RecordingSid, SessionSid};

/// A call progress event (`StatusCallback` with `StatusCallbackEvent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStatusCallback {
    /// Every parameter as received.
    pub params: FormParams,
    /// `CallSid`.
    pub call_sid: CallSid,
    /// `AccountSid`.
    pub account_sid: AccountSid,
    /// `From`.
    pub from: Address,
    /// `To`.
    pub to: Address,
    /// `CallStatus` (`answered` arrives as `in-progress`).
    pub call_status: CallStatus,
    /// `Direction`.
    pub direction: Option<Direction>,
    /// `ApiVersion`.
    pub api_version: Option<String>,
    /// `ForwardedFrom`.
    pub forwarded_from: Option<Address>,
    /// `CallerName`.
    pub caller_name: Option<String>,
    /// `ParentCallSid` (absent on first legs).
    pub parent_call_sid: Option<CallSid>,
    /// `SequenceNumber`: starts at 0; events may arrive out of order.
    pub sequence_number: Option<u64>,
    /// `Timestamp` (RFC 2822, UTC).
    pub timestamp: Option<Rfc2822Timestamp>,
    /// `CallbackSource` (`call-progress-events`).
    pub callback_source: Option<String>,
    /// `AnsweredBy` when AMD ran synchronously.
    pub answered_by: Option<AnsweredBy>,
    /// `Duration`: billed minutes (on `completed`).
    pub duration_minutes: Option<u32>,
    /// `CallDuration`: seconds (terminal events).
    pub call_duration_seconds: Option<u32>,
    /// `SipResponseCode` (terminal events; e.g. 487 when the dial timeout expired).
    pub sip_response_code: Option<u16>,
    /// `RecordingUrl` (on `completed` with `Record=true`).
    pub recording_url: Option<String>,
    /// `RecordingSid`.
    pub recording_sid: Option<RecordingSid>,
    /// `RecordingDuration` in seconds.
    pub recording_duration_seconds: Option<u32>,
    /// `StirStatus` (`A`, `B`, `C`).
    pub stir_status: Option<String>,
}

impl CallStatusCallback {
    /// Reads the typed fields; `CallSid`, `AccountSid`, `From`, `To` and `CallStatus` are
    /// required.
    pub fn from_params(params: FormParams) -> Result<Self, WebhookError> {
        let f = params.fields();
        let value = Self {
            call_sid: f.sid("CallSid", CallSid::new)?,
            account_sid: f.sid("AccountSid", AccountSid::new)?,
            from: f.address("From")?,
            to: f.address("To")?,
            call_status: f.parsed("CallStatus", CallStatus::parse)?,
            direction: f.optional("Direction").map(Direction::parse),
            api_version: f.optional_string("ApiVersion"),
            forwarded_from: f.optional_address("ForwardedFrom"),
            caller_name: f.optional_string("CallerName"),
            parent_call_sid: f.optional_sid("ParentCallSid", CallSid::new)?,
            sequence_number: f.optional_number("SequenceNumber")?,
            timestamp: f.optional_timestamp("Timestamp")?,
            callback_source: f.optional_string("CallbackSource"),
            answered_by: f.optional_parsed("AnsweredBy", AnsweredBy::parse)?,
            duration_minutes: f.optional_number("Duration")?,
            call_duration_seconds: f.optional_number("CallDuration")?,
            sip_response_code: f.optional_number("SipResponseCode")?,
            recording_url: f.optional_string("RecordingUrl"),
            recording_sid: f.optional_sid("RecordingSid", RecordingSid::new)?,
            recording_duration_seconds: f.optional_number("RecordingDuration")?,
            stir_status: f.optional_string("StirStatus"),
            params: FormParams::default(),
        };
        Ok(Self { params, ..value })
    }

    /// Parses a form body.
    pub fn parse(body: &[u8]) -> Result<Self, WebhookError> {
        Self::from_params(FormParams::parse(body))
    }
}

/// The `AsyncAmdStatusCallback` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmdCallback {
    /// Every parameter as received.
    pub params: FormParams,
    /// `CallSid`.
    pub call_sid: CallSid,
    /// `AccountSid`.
    pub account_sid: AccountSid,
    /// `AnsweredBy`.
    pub answered_by: AnsweredBy,
    /// `MachineDetectionDuration` in ms.
    pub machine_detection_duration_ms: Option<u32>,
}

impl AmdCallback {
    /// Reads the typed fields; all but the duration are required.
    pub fn from_params(params: FormParams) -> Result<Self, WebhookError> {
        let f = params.fields();
        let call_sid = f.sid("CallSid", CallSid::new)?;
        let account_sid = f.sid("AccountSid", AccountSid::new)?;
        let answered_by = f.parsed("AnsweredBy", AnsweredBy::parse)?;
        let machine_detection_duration_ms = f.optional_number("MachineDetectionDuration")?;
        Ok(Self {
            params,
            call_sid,
            account_sid,
            answered_by,
            machine_detection_duration_ms,
        })
    }

    /// Parses a form body.
    pub fn parse(body: &[u8]) -> Result<Self, WebhookError> {
        Self::from_params(FormParams::parse(body))
    }
}

wire_enum!(
    /// `RecordingStatus`.
    RecordingStatus {
        /// Recording started.
        InProgress = "in-progress",
        /// The recording is available.
        Completed = "completed",
        /// No audio was recorded.
        Absent = "absent",
    }
);

wire_enum!(
    /// `RecordingTrack`.
    RecordingTrack {
        /// Audio from the callee side into Twilio.
        Inbound = "inbound",
        /// Audio Twilio sent.
        Outbound = "outbound",
        /// Both.
        Both = "both",
    }
);

/// The `RecordingStatusCallback` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingStatusCallback {
    /// Every parameter as received.
    pub params: FormParams,
    /// `AccountSid`.
    pub account_sid: AccountSid,
    /// `CallSid` (always the parent leg).
    pub call_sid: CallSid,
    /// `RecordingSid`.
    pub recording_sid: RecordingSid,
    /// `RecordingUrl`.
    pub recording_url: Option<String>,
    /// `RecordingStatus`.
    pub recording_status: RecordingStatus,
    /// `RecordingDuration` in seconds.
    pub recording_duration_seconds: Option<u32>,
    /// `RecordingChannels`: 1 or 2.
    pub recording_channels: Option<u8>,
    /// `RecordingStartTime`, verbatim (its format is not documented).
    pub recording_start_time: Option<String>,
    /// `RecordingSource`, e.g. `OutboundAPI`, `StartCallRecordingAPI`.
    pub recording_source: Option<String>,
    /// `RecordingTrack`.
    pub recording_track: Option<RecordingTrack>,
}

impl RecordingStatusCallback {
    /// Reads the typed fields; SIDs and `RecordingStatus` are required.
    pub fn from_params(params: FormParams) -> Result<Self, WebhookError> {
        let f = params.fields();
        let recording_channels: Option<u8> = f.optional_number("RecordingChannels")?;
        if let Some(channels) = recording_channels
            && !(1..=2).contains(&channels)
        {
            return Err(WebhookError::InvalidNumber {
                field: "RecordingChannels",
                value: channels.to_string(),
            });
        }
        let value = Self {
            account_sid: f.sid("AccountSid", AccountSid::new)?,
            call_sid: f.sid("CallSid", CallSid::new)?,
            recording_sid: f.sid("RecordingSid", RecordingSid::new)?,
            recording_url: f.optional_string("RecordingUrl"),
            recording_status: f.parsed("RecordingStatus", RecordingStatus::parse)?,
            recording_duration_seconds: f.optional_number("RecordingDuration")?,
            recording_channels,
            recording_start_time: f.optional_string("RecordingStartTime"),
            recording_source: f.optional_string("RecordingSource"),
            recording_track: f.optional_parsed("RecordingTrack", RecordingTrack::parse)?,
            params: FormParams::default(),
        };
        Ok(Self { params, ..value })
    }

    /// Parses a form body.
    pub fn parse(body: &[u8]) -> Result<Self, WebhookError> {
        Self::from_params(FormParams::parse(body))
    }
}

wire_enum!(
    /// `SessionStatus` of a ConversationRelay session.
    SessionStatus {
        /// The app sent `end`.
        Ended = "ended",
        /// The session failed (see `ErrorCode`).
        Failed = "failed",
        /// The caller hung up.
        Completed = "completed",
    }
);

/// The `<Connect action>` request when a ConversationRelay session ends. Assumed
/// form-encoded like every other Twilio webhook (the doc prints it as JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySessionCallback {
    /// Every parameter as received.
    pub params: FormParams,
    /// `AccountSid`.
    pub account_sid: AccountSid,
    /// `CallSid`.
    pub call_sid: CallSid,
    /// `CallStatus` (`in-progress` after `end`, `completed` after a hang-up).
    pub call_status: Option<CallStatus>,
    /// `From`.
    pub from: Option<Address>,
    /// `To`.
    pub to: Option<Address>,
    /// `Direction`.
    pub direction: Option<Direction>,
    /// `ApplicationSid`.
    pub application_sid: Option<ApplicationSid>,
    /// `SessionId` (`VX…`).
    pub session_id: SessionSid,
    /// `SessionStatus`.
    pub session_status: SessionStatus,
    /// `SessionDuration` in seconds.
    pub session_duration_seconds: Option<u32>,
    /// `HandoffData`: the string the app sent with `end`.
    pub handoff_data: Option<String>,
    /// `ErrorCode`, e.g. 39001.
    pub error_code: Option<u32>,
    /// `ErrorMessage`.
    pub error_message: Option<String>,
}

impl RelaySessionCallback {
    /// Reads the typed fields; SIDs, `SessionId` and `SessionStatus` are required.
    pub fn from_params(params: FormParams) -> Result<Self, WebhookError> {
        let f = params.fields();
        let value = Self {
            account_sid: f.sid("AccountSid", AccountSid::new)?,
            call_sid: f.sid("CallSid", CallSid::new)?,
            call_status: f.optional_parsed("CallStatus", CallStatus::parse)?,
            from: f.optional_address("From"),
            to: f.optional_address("To"),
            direction: f.optional("Direction").map(Direction::parse),
            application_sid: f.optional_sid("ApplicationSid", ApplicationSid::new)?,
            session_id: f.sid("SessionId", SessionSid::new)?,
            session_status: f.parsed("SessionStatus", SessionStatus::parse)?,
            session_duration_seconds: f.optional_number("SessionDuration")?,
            handoff_data: f.optional_string("HandoffData"),
            error_code: f.optional_number("ErrorCode")?,
            error_message: f.optional_string("ErrorMessage"),
            params: FormParams::default(),
        };
        Ok(Self { params, ..value })
    }

    /// Parses a form body.
    pub fn parse(body: &[u8]) -> Result<Self, WebhookError> {
        Self::from_params(FormParams::parse(body))
    }

    /// `HandoffData` read with the `reasonCode`/`reason` convention.
    pub fn handoff(&self) -> Option<Result<HandoffData, RelayError>> {
        self.handoff_data.as_deref().map(HandoffData::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPLETED: &[u8] = b"AccountSid=AC123&ApiVersion=2010-04-01&CallSid=CA123&CallStatus=completed&Called=%2B18005550101&Caller=%2B14158675309&Direction=outbound-api&From=%2B14158675309&To=%2B18005550101&ForwardedFrom=&CallerName=&CallbackSource=call-progress-events&SequenceNumber=3&Timestamp=Tue%2C+31+Aug+2010+20%3A36%3A28+%2B0000&Duration=1&CallDuration=42&SipResponseCode=200&AnsweredBy=human&RecordingUrl=https%3A%2F%2Fapi.twilio.com%2Frec&RecordingSid=RE123&RecordingDuration=40&NewParam=future";

    #[test]
    fn parses_completed_status_callback_with_all_extras() {
        let cb = CallStatusCallback::parse(COMPLETED).unwrap();
        assert_eq!(cb.call_status, CallStatus::Completed);
        assert_eq!(cb.direction, Some(Direction::OutboundApi));
        assert_eq!(cb.sequence_number, Some(3));
        assert_eq!(cb.timestamp.unwrap().unix_seconds(), 1_283_286_988);
        assert_eq!(cb.answered_by, Some(AnsweredBy::Human));
        assert_eq!(
            (cb.duration_minutes, cb.call_duration_seconds),
            (Some(1), Some(42))
        );
        assert_eq!(cb.sip_response_code, Some(200));
        assert_eq!(cb.recording_sid.unwrap().as_str(), "RE123");
        assert_eq!(cb.recording_duration_seconds, Some(40));
        assert_eq!(cb.forwarded_from, None, "empty values are absent");
        assert_eq!(cb.from.phone().unwrap().as_str(), "+14158675309");
        assert_eq!(
            cb.params.get("NewParam"),
            Some("future"),
            "unknown params are kept"
        );
        assert_eq!(cb.params.len(), 22);
    }

    #[test]
    fn status_callback_accepts_initiated_and_rejects_unknown_status() {
        let cb = CallStatusCallback::parse(b"AccountSid=AC1&CallSid=CA1&From=client%3Aalice&To=%2B18005550101&CallStatus=initiated&SequenceNumber=0").unwrap();
        assert_eq!(cb.call_status, CallStatus::Initiated);
        assert_eq!(cb.from, Address::Other("client:alice".into()));
        assert_eq!(cb.sequence_number, Some(0));
        assert!(matches!(
            CallStatusCallback::parse(
                b"AccountSid=AC1&CallSid=CA1&From=a&To=b&CallStatus=answered"
            ),
            Err(WebhookError::UnknownValue {
                field: "CallStatus",
                ..
            })
        ));
    }

    #[test]
    fn status_callback_missing_or_invalid_fields_are_typed() {
        assert_eq!(
            CallStatusCallback::parse(b"AccountSid=AC1&From=a&To=b&CallStatus=ringing"),
            Err(WebhookError::MissingField("CallSid"))
        );
        assert!(matches!(
            CallStatusCallback::parse(b"AccountSid=AC1&CallSid=XX1&From=a&To=b&CallStatus=ringing"),
            Err(WebhookError::InvalidSid {
                field: "CallSid",
                ..
            })
        ));
        assert!(matches!(
            CallStatusCallback::parse(
                b"AccountSid=AC1&CallSid=CA1&From=a&To=b&CallStatus=ringing&SipResponseCode=99999"
            ),
            Err(WebhookError::InvalidNumber {
                field: "SipResponseCode",
                ..
            })
        ));
        assert!(matches!(
            CallStatusCallback::parse(
                b"AccountSid=AC1&CallSid=CA1&From=a&To=b&CallStatus=ringing&Timestamp=yesterday"
            ),
            Err(WebhookError::InvalidTimestamp {
                field: "Timestamp",
                ..
            })
        ));
    }

    #[test]
    fn parses_async_amd_result_for_every_answered_by_value() {
        for answered_by in AnsweredBy::ALL {
            let body = format!(
                "CallSid=CA1&AccountSid=AC1&AnsweredBy={}&MachineDetectionDuration=2430",
                answered_by.as_str()
            );
            let cb = AmdCallback::parse(body.as_bytes()).unwrap();
            assert_eq!(cb.answered_by, *answered_by);
            assert_eq!(cb.machine_detection_duration_ms, Some(2430));
        }
        assert_eq!(
            AmdCallback::parse(b"CallSid=CA1&AccountSid=AC1"),
            Err(WebhookError::MissingField("AnsweredBy"))
        );
    }

    #[test]
    fn parses_recording_status_callback() {
        let cb = RecordingStatusCallback::parse(b"AccountSid=AC1&CallSid=CA1&RecordingSid=RE1&RecordingUrl=https%3A%2F%2Fapi.twilio.com%2FRE1&RecordingStatus=completed&RecordingDuration=12&RecordingChannels=2&RecordingStartTime=Tue%2C+31+Aug+2010+20%3A36%3A28+%2B0000&RecordingSource=OutboundAPI&RecordingTrack=both").unwrap();
        assert_eq!(cb.recording_status, RecordingStatus::Completed);
        assert_eq!(cb.recording_channels, Some(2));
        assert_eq!(cb.recording_track, Some(RecordingTrack::Both));
        assert_eq!(cb.recording_source.as_deref(), Some("OutboundAPI"));
        assert!(matches!(
            RecordingStatusCallback::parse(b"AccountSid=AC1&CallSid=CA1&RecordingSid=RE1&RecordingStatus=completed&RecordingChannels=3"),
            Err(WebhookError::InvalidNumber { field: "RecordingChannels", .. })
        ));
    }

    #[test]
    fn parses_relay_session_end_with_handoff_and_failure() {
        let cb = RelaySessionCallback::parse(b"AccountSid=AC1&CallSid=CA1&CallStatus=in-progress&From=%2B18005550100&To=%2B18005550101&Direction=inbound&ApplicationSid=AP1&SessionId=VX1&SessionStatus=ended&SessionDuration=25&HandoffData=%7B%22reasonCode%22%3A%22live-agent-handoff%22%2C%22reason%22%3A%22wants+a+person%22%7D").unwrap();
        assert_eq!(cb.session_status, SessionStatus::Ended);
        assert_eq!(cb.session_duration_seconds, Some(25));
        assert_eq!(cb.handoff().unwrap().unwrap().reason, "wants a person");
        let failed = RelaySessionCallback::parse(b"AccountSid=AC1&CallSid=CA1&SessionId=VX1&SessionStatus=failed&ErrorCode=39001&ErrorMessage=Network+connection+to+WebSocket+server+failed.").unwrap();
        assert_eq!(failed.error_code, Some(39001));
        assert_eq!(failed.handoff_data, None);
        assert!(matches!(
            RelaySessionCallback::parse(
                b"AccountSid=AC1&CallSid=CA1&SessionId=CA1&SessionStatus=ended"
            ),
            Err(WebhookError::InvalidSid {
                field: "SessionId",
                ..
            })
        ));
    }
}
