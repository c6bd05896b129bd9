//! Call-control verbs: `<Say>` (<https://www.twilio.com/docs/voice/twiml/say>), `<Play>`
//! (<https://www.twilio.com/docs/voice/twiml/play>), `<Pause>`, `<Hangup>`, `<Reject>`
//! (<https://www.twilio.com/docs/voice/twiml/reject>), `<Dial>`/`<Number>`
//! (<https://www.twilio.com/docs/voice/twiml/dial>), `<Record>`
//! (<https://www.twilio.com/docs/voice/twiml/record>) and `<Redirect>`.

use super::TwimlError;
use super::xml::Element;
use crate::call::wire_enum;
use crate::e164::E164;

wire_enum!(
    /// HTTP method for a callback.
    HttpMethod {
        /// `GET`.
        Get = "GET",
        /// `POST` (Twilio's default).
        Post = "POST",
    }
);

wire_enum!(
    /// `<Reject reason>`.
    RejectReason {
        /// Plays a "not in service" message (the default).
        Rejected = "rejected",
        /// Plays a busy signal.
        Busy = "busy",
    }
);

wire_enum!(
    /// `<Dial record>`.
    DialRecord {
        /// No recording (default).
        DoNotRecord = "do-not-record",
        /// Record from answer, mono.
        RecordFromAnswer = "record-from-answer",
        /// Record from ringing, mono.
        RecordFromRinging = "record-from-ringing",
        /// Record from answer, one channel per leg.
        RecordFromAnswerDual = "record-from-answer-dual",
        /// Record from ringing, one channel per leg.
        RecordFromRingingDual = "record-from-ringing-dual",
    }
);

wire_enum!(
    /// `trim` on `<Record>` and `<Dial>`.
    RecordTrim {
        /// Remove leading and trailing silence.
        TrimSilence = "trim-silence",
        /// Keep silence.
        DoNotTrim = "do-not-trim",
    }
);

wire_enum!(
    /// `recordingStatusCallbackEvent` values.
    RecordingEvent {
        /// Recording started.
        InProgress = "in-progress",
        /// Recording available.
        Completed = "completed",
        /// No audio recorded.
        Absent = "absent",
    }
);

/// `<Say>`: text-to-speech.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Say {
    text: String,
    voice: Option<String>,
    language: Option<String>,
    loop_count: Option<u32>,
}

impl Say {
    /// Speaks `text` (escaped; SSML is not interpreted).
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            voice: None,
            language: None,
            loop_count: None,
        }
    }

    setters!(
        /// `voice`, e.g. `Polly.Joanna-Neural`.
        voice: String,
        /// `language`, e.g. `en-US`.
        language: String,
        /// `loop` (0 repeats until the call ends).
        loop_count: u32,
    );

    pub(super) fn element(&self) -> Element {
        let mut e = Element::new("Say");
        e.opt("voice", self.voice.as_ref());
        e.opt("language", self.language.as_ref());
        e.opt("loop", self.loop_count.as_ref());
        e.text = Some(self.text.clone());
        e
    }
}

/// `<Play>`: an audio URL, or DTMF tones with `digits`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Play {
    url: Option<String>,
    digits: Option<String>,
    loop_count: Option<u32>,
}

impl Play {
    /// Plays the audio at `url`.
    pub fn url(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            digits: None,
            loop_count: None,
        }
    }

    /// Plays DTMF tones: `0-9`, `#`, `*`, and `w` for a half-second pause.
    pub fn digits(digits: impl Into<String>) -> Result<Self, TwimlError> {
        let digits = digits.into();
        if digits.is_empty()
            || digits
                .chars()
                .any(|c| !matches!(c, '0'..='9' | 'w' | '#' | '*'))
        {
            return Err(TwimlError::InvalidDigits(digits.chars().take(32).collect()));
        }
        Ok(Self {
            url: None,
            digits: Some(digits),
            loop_count: None,
        })
    }

    setters!(
        /// `loop` (0 repeats until the call ends).
        loop_count: u32,
    );

    pub(super) fn element(&self) -> Element {
        let mut e = Element::new("Play");
        e.opt("loop", self.loop_count.as_ref());
        e.opt("digits", self.digits.as_ref());
        e.text.clone_from(&self.url);
        e
    }
}

/// `<Pause>`: silence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Pause {
    length: Option<u32>,
}

impl Pause {
    /// One second (Twilio's default).
    pub fn new() -> Self {
        Self::default()
    }

    setters!(
        /// `length` in seconds.
        length: u32,
    );

    pub(super) fn element(&self) -> Element {
        let mut e = Element::new("Pause");
        e.opt("length", self.length.as_ref());
        e
    }
}

/// `<Hangup>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hangup;

impl Hangup {
    #[allow(clippy::unused_self)]
    pub(super) fn element(self) -> Element {
        Element::new("Hangup")
    }
}

/// `<Reject>`: decline an incoming call without answering (no charge).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct Reject {
    reason: Option<RejectReason>,
}

impl Reject {
    /// Reject with the default reason.
    pub fn new() -> Self {
        Self::default()
    }

    setters!(
        /// `reason`.
        reason: RejectReason,
    );

    pub(super) fn element(self) -> Element {
        let mut e = Element::new("Reject");
        e.opt("reason", self.reason.as_ref());
        e
    }
}

/// `<Number>` inside `<Dial>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Number {
    e164: E164,
    send_digits: Option<String>,
    url: Option<String>,
    method: Option<HttpMethod>,
    status_callback: Option<String>,
    status_callback_method: Option<HttpMethod>,
    status_callback_event: Vec<String>,
}

impl Number {
    /// Dials `number`.
    pub fn new(number: E164) -> Self {
        Self {
            e164: number,
            send_digits: None,
            url: None,
            method: None,
            status_callback: None,
            status_callback_method: None,
            status_callback_event: Vec::new(),
        }
    }

    setters!(
        /// `sendDigits` after the call connects.
        send_digits: String,
        /// `url`: TwiML run for the called party before connecting (whisper).
        url: String,
        /// `method` for `url`.
        method: HttpMethod,
        /// `statusCallback`.
        status_callback: String,
        /// `statusCallbackMethod`.
        status_callback_method: HttpMethod,
    );

    /// `statusCallbackEvent` (space-separated: `initiated ringing answered completed`).
    pub fn status_callback_events<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        events: I,
    ) -> Self {
        self.status_callback_event = events.into_iter().map(Into::into).collect();
        self
    }

    fn element(&self) -> Element {
        let mut e = Element::new("Number");
        e.opt("sendDigits", self.send_digits.as_ref());
        e.opt("url", self.url.as_ref());
        e.opt("method", self.method.as_ref());
        e.opt("statusCallback", self.status_callback.as_ref());
        e.opt("statusCallbackMethod", self.status_callback_method.as_ref());
        e.list("statusCallbackEvent", &self.status_callback_event, " ");
        e.text = Some(self.e164.to_string());
        e
    }
}

/// `<Dial>`: connect the caller to another party.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Dial {
    numbers: Vec<Number>,
    action: Option<String>,
    method: Option<HttpMethod>,
    timeout: Option<u32>,
    caller_id: Option<String>,
    record: Option<DialRecord>,
    trim: Option<RecordTrim>,
    time_limit: Option<u32>,
    hang_up_on_star: Option<bool>,
    answer_on_bridge: Option<bool>,
    ring_tone: Option<String>,
    recording_status_callback: Option<String>,
    recording_status_callback_method: Option<HttpMethod>,
    recording_status_callback_event: Vec<RecordingEvent>,
}

impl Dial {
    /// A `<Dial>` with no target yet; add [`Number`]s.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a `<Number>` (several ring simultaneously; the first to answer wins).
    pub fn number(mut self, number: Number) -> Self {
        self.numbers.push(number);
        self
    }

    setters!(
        /// `action`: called when the dialled call ends.
        action: String,
        /// `method` for `action`.
        method: HttpMethod,
        /// `timeout` in seconds to ring (default 30).
        timeout: u32,
        /// `callerId`: a Twilio number or verified caller ID.
        caller_id: String,
        /// `record`.
        record: DialRecord,
        /// `trim`.
        trim: RecordTrim,
        /// `timeLimit` in seconds.
        time_limit: u32,
        /// `hangupOnStar`.
        hang_up_on_star: bool,
        /// `answerOnBridge`: keep ringing the caller until the callee answers.
        answer_on_bridge: bool,
        /// `ringTone`, e.g. `us`.
        ring_tone: String,
        /// `recordingStatusCallback`.
        recording_status_callback: String,
        /// `recordingStatusCallbackMethod`.
        recording_status_callback_method: HttpMethod,
    );

    /// `recordingStatusCallbackEvent` (space-separated).
    pub fn recording_status_callback_events(mut self, events: &[RecordingEvent]) -> Self {
        self.recording_status_callback_event = events.to_vec();
        self
    }

    pub(super) fn element(&self) -> Element {
        let mut e = Element::new("Dial");
        e.opt("action", self.action.as_ref());
        e.opt("method", self.method.as_ref());
        e.opt("timeout", self.timeout.as_ref());
        e.opt("callerId", self.caller_id.as_ref());
        e.opt("record", self.record.as_ref());
        e.opt("trim", self.trim.as_ref());
        e.opt("timeLimit", self.time_limit.as_ref());
        e.opt("hangupOnStar", self.hang_up_on_star.as_ref());
        e.opt("answerOnBridge", self.answer_on_bridge.as_ref());
        e.opt("ringTone", self.ring_tone.as_ref());
        e.opt(
            "recordingStatusCallback",
            self.recording_status_callback.as_ref(),
        );
        e.opt(
            "recordingStatusCallbackMethod",
            self.recording_status_callback_method.as_ref(),
        );
        e.list(
            "recordingStatusCallbackEvent",
            &self.recording_status_callback_event,
            " ",
        );
        e.children = self.numbers.iter().map(Number::element).collect();
        e
    }
}

/// `<Record>`: record the caller's voice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Record {
    action: Option<String>,
    method: Option<HttpMethod>,
    timeout: Option<u32>,
    finish_on_key: Option<String>,
    max_length: Option<u32>,
    play_beep: Option<bool>,
    trim: Option<RecordTrim>,
    recording_status_callback: Option<String>,
    recording_status_callback_method: Option<HttpMethod>,
    recording_status_callback_event: Vec<RecordingEvent>,
    transcribe: Option<bool>,
    transcribe_callback: Option<String>,
}

impl Record {
    /// A `<Record>` with Twilio's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    setters!(
        /// `action`: receives the recording when done.
        action: String,
        /// `method` for `action`.
        method: HttpMethod,
        /// `timeout`: seconds of silence that end the recording (default 5).
        timeout: u32,
        /// `finishOnKey`: keys that end the recording (default `1234567890*#`).
        finish_on_key: String,
        /// `maxLength` in seconds (default 3600).
        max_length: u32,
        /// `playBeep` (default true).
        play_beep: bool,
        /// `trim`.
        trim: RecordTrim,
        /// `recordingStatusCallback`.
        recording_status_callback: String,
        /// `recordingStatusCallbackMethod`.
        recording_status_callback_method: HttpMethod,
        /// `transcribe`.
        transcribe: bool,
        /// `transcribeCallback`.
        transcribe_callback: String,
    );

    /// `recordingStatusCallbackEvent` (space-separated).
    pub fn recording_status_callback_events(mut self, events: &[RecordingEvent]) -> Self {
        self.recording_status_callback_event = events.to_vec();
        self
    }

    pub(super) fn element(&self) -> Element {
        let mut e = Element::new("Record");
        e.opt("action", self.action.as_ref());
        e.opt("method", self.method.as_ref());
        e.opt("timeout", self.timeout.as_ref());
        e.opt("finishOnKey", self.finish_on_key.as_ref());
        e.opt("maxLength", self.max_length.as_ref());
        e.opt("playBeep", self.play_beep.as_ref());
        e.opt("trim", self.trim.as_ref());
        e.opt(
            "recordingStatusCallback",
            self.recording_status_callback.as_ref(),
        );
        e.opt(
            "recordingStatusCallbackMethod",
            self.recording_status_callback_method.as_ref(),
        );
        e.list(
            "recordingStatusCallbackEvent",
            &self.recording_status_callback_event,
            " ",
        );
        e.opt("transcribe", self.transcribe.as_ref());
        e.opt("transcribeCallback", self.transcribe_callback.as_ref());
        e
    }
}

/// `<Redirect>`: continue with TwiML from another URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Redirect {
    url: String,
    method: Option<HttpMethod>,
}

impl Redirect {
    /// Fetch TwiML from `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            method: None,
        }
    }

    setters!(
        /// `method`.
        method: HttpMethod,
    );

    pub(super) fn element(&self) -> Element {
        let mut e = Element::new("Redirect");
        e.opt("method", self.method.as_ref());
        e.text = Some(self.url.clone());
        e
    }
}
