//! Incoming message webhook and opt-out keywords
//! (<https://www.twilio.com/docs/messaging/guides/webhook-request>,
//! <https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out>).

use super::{FormParams, WebhookError};
use crate::e164::Address;
use crate::sid::{AccountSid, MessageSid, MessagingServiceSid};

/// Twilio attaches at most 10 media items to one message.
const MAX_MEDIA: u32 = 10;

/// The keyword classes Twilio's default STOP filtering reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmsKeyword {
    /// `STOP`, `STOPALL`, `UNSUBSCRIBE`, `CANCEL`, `END`, `QUIT`, and since 2025-05-14
    /// (FCC rule) `REVOKE` and `OPTOUT`.
    OptOut,
    /// `START`, `YES`, `UNSTOP`.
    OptIn,
    /// `HELP`, `INFO`.
    Help,
}

impl SmsKeyword {
    /// Opt-out keywords. `OPT OUT` with a space is not one.
    pub const OPT_OUT: &'static [&'static str] = &[
        "STOP",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "REVOKE",
        "OPTOUT",
    ];
    /// Opt-in keywords.
    pub const OPT_IN: &'static [&'static str] = &["START", "YES", "UNSTOP"];
    /// Help keywords.
    pub const HELP: &'static [&'static str] = &["HELP", "INFO"];

    /// Classifies a message body as Twilio does: the whole trimmed body must be exactly one
    /// keyword, case-insensitively ("stop" yes, "STOP PLEASE" no).
    pub fn classify(body: &str) -> Option<Self> {
        let word = body.trim();
        if word.is_empty() || word.contains(char::is_whitespace) {
            return None;
        }
        let is = |list: &[&str]| list.iter().any(|k| k.eq_ignore_ascii_case(word));
        if is(Self::OPT_OUT) {
            Some(Self::OptOut)
        } else if is(Self::OPT_IN) {
            Some(Self::OptIn)
        } else if is(Self::HELP) {
            Some(Self::Help)
        } else {
            None
        }
    }
}

/// One `MediaUrl{N}` / `MediaContentType{N}` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaAttachment {
    /// `MediaUrl{N}`.
    pub url: String,
    /// `MediaContentType{N}`.
    pub content_type: Option<String>,
}

/// An incoming SMS/MMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingSms {
    /// Every parameter as received.
    pub params: FormParams,
    /// `MessageSid` (falls back to the deprecated `SmsSid`).
    pub message_sid: MessageSid,
    /// `AccountSid`.
    pub account_sid: AccountSid,
    /// `MessagingServiceSid`.
    pub messaging_service_sid: Option<MessagingServiceSid>,
    /// `From`.
    pub from: Address,
    /// `To`.
    pub to: Address,
    /// `Body` (empty for media-only messages).
    pub body: String,
    /// `NumMedia`.
    pub num_media: u32,
    /// `NumSegments`.
    pub num_segments: Option<u32>,
    /// `MediaUrl{N}`/`MediaContentType{N}` for N below `NumMedia` (at most 10).
    pub media: Vec<MediaAttachment>,
    /// `OptOutType` (`STOP`/`START`/`HELP`) when Advanced Opt-Out matched; seen in the wild,
    /// not in the official table, so kept verbatim.
    pub opt_out_type: Option<String>,
    /// [`SmsKeyword::classify`] of the body.
    pub keyword: Option<SmsKeyword>,
}

impl IncomingSms {
    /// Reads the typed fields; `MessageSid` (or `SmsSid`), `AccountSid`, `From` and `To` are
    /// required.
    pub fn from_params(params: FormParams) -> Result<Self, WebhookError> {
        let f = params.fields();
        let message_sid = match f.optional("MessageSid") {
            Some(_) => f.sid("MessageSid", MessageSid::new)?,
            None if f.optional("SmsSid").is_some() => f.sid("SmsSid", MessageSid::new)?,
            None => return Err(WebhookError::MissingField("MessageSid")),
        };
        let body = params.get("Body").unwrap_or_default().to_owned();
        let num_media: u32 = f.optional_number("NumMedia")?.unwrap_or(0);
        let media = (0..num_media.min(MAX_MEDIA))
            .filter_map(|n| {
                let url = params.get(&format!("MediaUrl{n}"))?.to_owned();
                let content_type = f.optional_string(&format!("MediaContentType{n}"));
                Some(MediaAttachment { url, content_type })
            })
            .collect();
        let value = Self {
            message_sid,
            account_sid: f.sid("AccountSid", AccountSid::new)?,
            messaging_service_sid: f
                .optional_sid("MessagingServiceSid", MessagingServiceSid::new)?,
            from: f.address("From")?,
            to: f.address("To")?,
            keyword: SmsKeyword::classify(&body),
            body,
            num_media,
            num_segments: f.optional_number("NumSegments")?,
            media,
            opt_out_type: f.optional_string("OptOutType"),
            params: FormParams::default(),
        };
        Ok(Self { params, ..value })
    }

    /// Parses a form body.
    pub fn parse(body: &[u8]) -> Result<Self, WebhookError> {
        Self::from_params(FormParams::parse(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_documented_keyword_case_insensitively_and_trimmed() {
        for word in SmsKeyword::OPT_OUT {
            assert_eq!(
                SmsKeyword::classify(word),
                Some(SmsKeyword::OptOut),
                "{word}"
            );
            let lower = format!("  {}\n", word.to_lowercase());
            assert_eq!(
                SmsKeyword::classify(&lower),
                Some(SmsKeyword::OptOut),
                "{lower:?}"
            );
        }
        for word in SmsKeyword::OPT_IN {
            assert_eq!(
                SmsKeyword::classify(word),
                Some(SmsKeyword::OptIn),
                "{word}"
            );
        }
        for word in SmsKeyword::HELP {
            assert_eq!(SmsKeyword::classify(word), Some(SmsKeyword::Help), "{word}");
        }
        assert_eq!(SmsKeyword::classify("Revoke"), Some(SmsKeyword::OptOut));
        assert_eq!(SmsKeyword::classify("optOut"), Some(SmsKeyword::OptOut));
    }

    #[test]
    fn multi_word_and_spaced_messages_are_not_keywords() {
        for body in [
            "STOP PLEASE",
            "OPT OUT",
            "please stop",
            "",
            "   ",
            "STOPP",
            "stop.",
        ] {
            assert_eq!(SmsKeyword::classify(body), None, "{body:?}");
        }
    }

    #[test]
    fn parses_incoming_mms_with_media_and_keeps_unknown_params() {
        let sms = IncomingSms::parse(b"MessageSid=MM1&SmsSid=MM1&AccountSid=AC1&MessagingServiceSid=MG1&From=%2B14158675309&To=%2B18005550101&Body=+stop+&NumMedia=2&NumSegments=1&MediaUrl0=https%3A%2F%2Fa%2F0&MediaContentType0=image%2Fjpeg&MediaUrl1=https%3A%2F%2Fa%2F1&FromCity=SF&OptOutType=STOP").unwrap();
        assert_eq!(sms.message_sid.as_str(), "MM1");
        assert_eq!(sms.keyword, Some(SmsKeyword::OptOut));
        assert_eq!(sms.body, " stop ");
        assert_eq!(sms.media.len(), 2);
        assert_eq!(sms.media[0].content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(sms.media[1].content_type, None);
        assert_eq!(sms.opt_out_type.as_deref(), Some("STOP"));
        assert_eq!(sms.params.get("FromCity"), Some("SF"));
    }

    #[test]
    fn falls_back_to_sms_sid_and_reports_missing_fields() {
        let sms = IncomingSms::parse(
            b"SmsSid=SM9&AccountSid=AC1&From=%2B14158675309&To=%2B18005550101&Body=hi",
        )
        .unwrap();
        assert_eq!(sms.message_sid.as_str(), "SM9");
        assert_eq!(sms.keyword, None);
        assert_eq!(sms.num_media, 0);
        assert_eq!(
            IncomingSms::parse(b"AccountSid=AC1&From=a&To=b"),
            Err(WebhookError::MissingField("MessageSid"))
        );
        assert_eq!(
            IncomingSms::parse(b"MessageSid=SM1&AccountSid=AC1&To=b"),
            Err(WebhookError::MissingField("From"))
        );
    }
}
