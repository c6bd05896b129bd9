//! Outbound messaging vocabulary, sans-IO: how many segments a body takes ([`segments`]), the
//! recipient's local time for quiet hours ([`zones`]), what a Twilio messaging error code
//! means and whether to retry it ([`errors`]), and the kind of sender a `From` is, which sets
//! how fast it may send ([`SenderKind`]).

pub mod errors;
pub mod segments;
pub mod zones;

pub use errors::{Retry, describe as describe_error};
pub use segments::{Encoding, SegmentCount, count_segments};
pub use zones::{CallingWindow, SendWindow, Zone, ZoneGuess};

/// The kind of number a message is sent from, which sets its throughput
/// (<https://help.twilio.com/articles/115002943027>: long code 1 message/s, toll-free 3/s,
/// short code 100/s in the US; a Messaging Service pools its numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenderKind {
    /// A local 10-digit (or international) number.
    LongCode,
    /// A NANP toll-free number (800, 833, 844, 855, 866, 877, 888).
    TollFree,
    /// A 5- or 6-digit short code.
    ShortCode,
    /// A Messaging Service SID (`MG…`).
    MessagingService,
}

impl SenderKind {
    /// The kind of `from`: `MG…`, 5-6 digits, `+1` and a toll-free area code, or a long code.
    pub fn of(from: &str) -> Self {
        const TOLL_FREE: [&str; 7] = ["800", "833", "844", "855", "866", "877", "888"];
        if from.starts_with("MG") {
            Self::MessagingService
        } else if (5..=6).contains(&from.len()) && from.bytes().all(|b| b.is_ascii_digit()) {
            Self::ShortCode
        } else if from
            .strip_prefix("+1")
            .and_then(|national| national.get(..3))
            .is_some_and(|area| TOLL_FREE.contains(&area))
        {
            Self::TollFree
        } else {
            Self::LongCode
        }
    }

    /// `long_code`, `toll_free`, `short_code`, `messaging_service`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LongCode => "long_code",
            Self::TollFree => "toll_free",
            Self::ShortCode => "short_code",
            Self::MessagingService => "messaging_service",
        }
    }
}

/// The messaging TwiML answer to an incoming message: `<Response/>` (no reply), or one
/// `<Message>` with `reply`, escaped
/// (<https://www.twilio.com/docs/messaging/twiml/message>).
pub fn reply_twiml(reply: Option<&str>) -> String {
    let mut out = String::from(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    match reply.filter(|r| !r.is_empty()) {
        None => out.push_str("<Response/>"),
        Some(text) => {
            out.push_str("<Response><Message>");
            crate::twiml::xml::escape(&mut out, text, false);
            out.push_str("</Message></Response>");
        }
    }
    out
}

/// Whether `sid` is a Content API template SID: `HX` and 32 hex digits (the `ContentSid` of a
/// WhatsApp template).
pub fn is_content_sid(sid: &str) -> bool {
    sid.len() == 34 && sid.starts_with("HX") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_kinds() {
        assert_eq!(SenderKind::of("+14155550100"), SenderKind::LongCode);
        assert_eq!(SenderKind::of("+18885550100"), SenderKind::TollFree);
        assert_eq!(SenderKind::of("12345"), SenderKind::ShortCode);
        assert_eq!(SenderKind::of("MG0123"), SenderKind::MessagingService);
        assert_eq!(SenderKind::of("+442071234567"), SenderKind::LongCode);
    }

    #[test]
    fn replies_are_escaped_messages() {
        assert!(reply_twiml(None).ends_with("<Response/>"));
        assert!(reply_twiml(Some("")).ends_with("<Response/>"));
        assert!(
            reply_twiml(Some("Reply <STOP> & go"))
                .ends_with("<Response><Message>Reply &lt;STOP&gt; &amp; go</Message></Response>")
        );
    }

    #[test]
    fn permanent_codes_are_never_retried() {
        for code in [
            21211, 21610, 21614, 30003, 30004, 30005, 30006, 30007, 30008,
        ] {
            assert_eq!(
                describe_error(code).map(|d| d.1),
                Some(Retry::Never),
                "{code}"
            );
        }
        assert_eq!(describe_error(20429).map(|d| d.1), Some(Retry::Later));
        assert_eq!(describe_error(1), None);
    }
}
