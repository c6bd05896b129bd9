//! What Twilio's messaging error codes mean, and whether sending again can help
//! (<https://www.twilio.com/docs/api/errors>).

/// Whether a failed send may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The same request can succeed later (throttling, a queue that was full).
    Later,
    /// It will fail the same way: record it and stop.
    Never,
}

/// The meaning of a Twilio messaging error code and whether to retry, or `None` for a code
/// this table does not know (callers treat an unknown 4xx as permanent and a 5xx as
/// retryable).
pub fn describe(code: u32) -> Option<(&'static str, Retry)> {
    use Retry::{Later, Never};
    Some(match code {
        14107 => ("message rate limit exceeded", Later),
        20429 => ("too many requests", Later),
        21211 => ("invalid 'To' phone number", Never),
        21408 => ("permission to send to this region is not enabled", Never),
        21602 => ("message body is required", Never),
        21603 => ("a 'From' number or messaging service is required", Never),
        21604 => ("a 'To' number is required", Never),
        21606 => ("the 'From' number cannot send messages", Never),
        21610 => (
            "the recipient replied STOP: unsubscribed from this sender",
            Never,
        ),
        21612 => (
            "the 'To' number cannot be reached from the 'From' number",
            Never,
        ),
        21614 => ("'To' number is not a valid mobile number", Never),
        21617 => ("the body exceeds 1600 characters", Never),
        30001 => (
            "queue overflow: too many messages queued for the sender",
            Later,
        ),
        30002 => ("account suspended", Never),
        30003 => ("unreachable destination handset", Never),
        30004 => ("message blocked (the recipient blocks this sender)", Never),
        30005 => ("unknown destination handset (number does not exist)", Never),
        30006 => ("landline or unreachable carrier", Never),
        30007 => (
            "message filtered by the carrier as spam or violating rules",
            Never,
        ),
        30008 => ("unknown error from the carrier", Never),
        30034 => ("message from an unregistered number (US A2P 10DLC)", Never),
        63016 => (
            "WhatsApp: outside the 24-hour session window; use a template",
            Never,
        ),
        _ => return None,
    })
}
