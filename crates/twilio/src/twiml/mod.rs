//! TwiML builder (<https://www.twilio.com/docs/voice/twiml>).
//!
//! Build a [`Response`] from verbs and render it with [`Response::to_xml`]. Inputs Twilio would
//! reject are refused when the builder is made (a `<Stream url>` that is not `wss://` or has a
//! query string, a `<Parameter>` over 500 characters), so rendering cannot fail. Text and
//! attribute values are escaped for XML 1.0: `& < > " '` as entities; tab, newline and carriage
//! return in attributes as character references (so attribute normalization keeps them);
//! C0 controls that XML 1.0 cannot carry at all, and U+FFFE/U+FFFF, become U+FFFD.

/// Generates `pub fn field(self, value) -> Self` setters for `Option<T>` fields.
macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, value: impl Into<$ty>) -> Self {
                self.$field = Some(value.into());
                self
            }
        )*
    };
}

mod stream;
mod verbs;
pub(crate) mod xml;

pub use stream::{
    Connect, ConversationRelay, DebugChannel, InterruptMode, InterruptSensitivity, Parameter,
    RelayLanguage, SpeechTimeout, Start, StopStream, Stream, StreamTrack, TextNormalization,
    TranscriptionProvider, TtsProvider,
};
pub use verbs::{
    Dial, DialRecord, Hangup, HttpMethod, Number, Pause, Play, Record, RecordTrim, RecordingEvent,
    Redirect, Reject, RejectReason, Say,
};

use xml::Element;

/// Why a TwiML element could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwimlError {
    /// `<Stream url>` must use `wss://` (Twilio error 31922).
    #[error("<Stream url> must start with wss://, got {0:?}")]
    StreamUrlNotWss(String),
    /// `<Stream url>` must not carry a query string (use `<Parameter>` instead).
    #[error("<Stream url> must not have a query string or fragment; use <Parameter>")]
    StreamUrlHasQuery,
    /// `<ConversationRelay url>` must start with `wss://`.
    #[error("<ConversationRelay url> must start with wss://, got {0:?}")]
    RelayUrlNotWss(String),
    /// `<Parameter>` name plus value must be under 500 characters.
    #[error("<Parameter> name and value are {0} characters; they must total under 500")]
    ParameterTooLong(usize),
    /// `<Parameter name>` must not be empty.
    #[error("<Parameter> name must not be empty")]
    EmptyParameterName,
    /// `<Play digits>` may contain only `0-9`, `w`, `#`, `*`.
    #[error("<Play digits> may only contain 0-9, w, # and *; found {0:?}")]
    InvalidDigits(String),
    /// A required value is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
}

/// A TwiML verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// `<Say>`.
    Say(Say),
    /// `<Play>`.
    Play(Play),
    /// `<Pause>`.
    Pause(Pause),
    /// `<Hangup>`.
    Hangup(Hangup),
    /// `<Reject>`.
    Reject(Reject),
    /// `<Dial>`.
    Dial(Dial),
    /// `<Record>`.
    Record(Record),
    /// `<Redirect>`.
    Redirect(Redirect),
    /// `<Connect>`.
    Connect(Connect),
    /// `<Start>`.
    Start(Start),
    /// `<Stop>`.
    Stop(StopStream),
}

macro_rules! verb_from {
    ($($variant:ident),+) => {
        $(impl From<$variant> for Verb {
            fn from(value: $variant) -> Self {
                Self::$variant(value)
            }
        })+
    };
}
verb_from!(
    Say, Play, Pause, Hangup, Reject, Dial, Record, Redirect, Connect, Start
);

impl From<StopStream> for Verb {
    fn from(value: StopStream) -> Self {
        Self::Stop(value)
    }
}

impl Verb {
    fn element(&self) -> Element {
        match self {
            Self::Say(v) => v.element(),
            Self::Play(v) => v.element(),
            Self::Pause(v) => v.element(),
            Self::Hangup(v) => v.element(),
            Self::Reject(v) => v.element(),
            Self::Dial(v) => v.element(),
            Self::Record(v) => v.element(),
            Self::Redirect(v) => v.element(),
            Self::Connect(v) => v.element(),
            Self::Start(v) => v.element(),
            Self::Stop(v) => v.element(),
        }
    }
}

/// `<Response>`: the root of a voice TwiML document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Response {
    verbs: Vec<Verb>,
}

impl Response {
    /// An empty response (Twilio hangs up after it).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a verb.
    pub fn push(mut self, verb: impl Into<Verb>) -> Self {
        self.verbs.push(verb.into());
        self
    }

    /// The verbs so far.
    pub fn verbs(&self) -> &[Verb] {
        &self.verbs
    }

    /// The document, starting with `<?xml version="1.0" encoding="UTF-8"?>`.
    pub fn to_xml(&self) -> String {
        let mut root = Element::new("Response");
        root.children = self.verbs.iter().map(Verb::element).collect();
        let mut out = String::with_capacity(256);
        out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        root.write(&mut out);
        out
    }
}

#[cfg(test)]
mod tests;
