//! A virtual-time harness for `RelaySession`: drives it the way the relay shell does (drains
//! `poll_output` after every step, fires deadlines when the clock reaches them) and decodes
//! what it sends with the Twilio crate's own outbound parser. Time only moves when a test
//! moves it.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use voxbridge_session::relay::{
    DialogEvent, DialogRequest, Handoff, RelayConfig, RelayInput, RelayOutput, RelaySession,
    RelaySummary,
};
use voxbridge_twilio::relay::OutboundMessage;

pub const CALL_SID: &str = "CA0123456789abcdef0123456789abcdef";
pub const SESSION_ID: &str = "VX00000000000000000000000000000000";
pub const SILENCE: Duration = Duration::from_secs(8);

/// What the session did, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// A `text` token.
    Text {
        token: String,
        last: bool,
        interruptible: bool,
    },
    /// `end` with its `handoffData` (reasonCode, reason).
    End(String, String),
    /// `sendDigits`.
    Digits(String),
    /// `language` (tts, transcription).
    Language(Option<String>, Option<String>),
    SetupReceived,
    Dialog(u64, DialogRequest),
    CancelTurn,
    Ended(RelaySummary),
    Close(u16, &'static str),
}

pub fn text(token: &str, last: bool) -> Out {
    Out::Text {
        token: token.to_owned(),
        last,
        interruptible: true,
    }
}

pub fn end(code: &str, reason: &str) -> Out {
    Out::End(code.to_owned(), reason.to_owned())
}

/// The documented `setup` example with screening parameters.
pub fn setup_json() -> String {
    format!(
        r#"{{
  "type": "setup",
  "sessionId": "{SESSION_ID}",
  "accountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
  "parentCallSid": "",
  "callSid": "{CALL_SID}",
  "from": "+18005550100",
  "to": "+18005550101",
  "callType": "PSTN",
  "callerName": "",
  "direction": "outbound-api",
  "callStatus": "RINGING",
  "customParameters": {{ "candidateId": "cand-42", "firstName": "Ana" }}
}}"#
    )
}

pub fn parameters() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("candidateId".to_owned(), "cand-42".to_owned()),
        ("firstName".to_owned(), "Ana".to_owned()),
    ])
}

pub fn prompt(words: &str) -> String {
    format!(r#"{{ "type": "prompt", "voicePrompt": "{words}", "lang": "en-US", "last": true }}"#)
}

pub fn partial(words: &str) -> String {
    format!(r#"{{ "type": "prompt", "voicePrompt": "{words}", "lang": "en-US", "last": false }}"#)
}

pub fn interrupt(heard: &str) -> String {
    format!(
        r#"{{ "type": "interrupt", "utteranceUntilInterrupt": "{heard}", "durationUntilInterruptMs": 460 }}"#
    )
}

pub fn say(text: &str) -> RelayInput<'static> {
    RelayInput::Dialog(DialogEvent::Text {
        text: text.to_owned(),
        interruptible: true,
    })
}

pub fn turn_end() -> RelayInput<'static> {
    RelayInput::Dialog(DialogEvent::TurnEnd { last: false })
}

pub fn dialog_end(code: &str, reason: &str) -> RelayInput<'static> {
    RelayInput::Dialog(DialogEvent::End(Handoff::new(code, reason)))
}

/// Test settings: 100 ms per word, so speaking times are easy to count.
pub fn config() -> RelayConfig {
    RelayConfig {
        speech_per_word: Duration::from_millis(100),
        ..RelayConfig::default()
    }
}

#[derive(Debug)]
pub struct Relay {
    pub session: RelaySession,
    pub opened: Instant,
    pub now: Instant,
    /// The last `Timeout` the session asked for.
    pub wake: Instant,
}

impl Relay {
    pub fn new(config: RelayConfig) -> Self {
        let opened = Instant::now();
        let mut relay = Self {
            session: RelaySession::new(config, opened),
            opened,
            now: opened,
            wake: opened,
        };
        assert_eq!(relay.drain(), []);
        relay
    }

    /// A session past `setup` with its dialog built: the greeting turn is running.
    pub fn started(config: RelayConfig) -> Self {
        let mut relay = Self::new(config);
        assert_eq!(relay.frame(&setup_json()), [Out::SetupReceived]);
        assert_eq!(
            relay.input(RelayInput::DialogReady {
                silence_timeout: SILENCE
            }),
            [Out::Dialog(
                0,
                DialogRequest::Start {
                    call_sid: CALL_SID.to_owned(),
                    parameters: parameters(),
                }
            )]
        );
        relay
    }

    /// Milliseconds since the socket opened.
    pub fn ms(&self) -> u64 {
        u64::try_from(self.now.duration_since(self.opened).as_millis()).unwrap()
    }

    /// Drains the session until it asks to wait; records the wake-up.
    pub fn drain(&mut self) -> Vec<Out> {
        let mut outs = Vec::new();
        loop {
            match self.session.poll_output() {
                RelayOutput::Timeout(at) => {
                    self.wake = at;
                    return outs;
                }
                RelayOutput::Send(json) => outs.push(decode(&json)),
                RelayOutput::SetupReceived => outs.push(Out::SetupReceived),
                RelayOutput::Dialog { at_ms, request } => outs.push(Out::Dialog(at_ms, request)),
                RelayOutput::CancelTurn => outs.push(Out::CancelTurn),
                RelayOutput::Ended(summary) => outs.push(Out::Ended(summary)),
                RelayOutput::Close { code, reason } => outs.push(Out::Close(code, reason)),
            }
        }
    }

    pub fn input(&mut self, input: RelayInput<'_>) -> Vec<Out> {
        self.session.handle_input(self.now, input);
        self.drain()
    }

    pub fn frame(&mut self, text: &str) -> Vec<Out> {
        self.input(RelayInput::Text(text))
    }

    /// Moves the clock by `by`, firing every deadline that passes on the way, each at its own
    /// instant, as a shell sleeping on `Timeout` would.
    pub fn advance(&mut self, by: Duration) -> Vec<Out> {
        let target = self.now + by;
        let mut outs = Vec::new();
        while self.wake <= target {
            self.now = self.now.max(self.wake);
            self.session.handle_timeout(self.now);
            let step = self.drain();
            let stuck = step.is_empty() && self.wake <= self.now;
            outs.extend(step);
            if stuck {
                break;
            }
        }
        self.now = target;
        outs
    }

    /// Runs one whole turn the way a scripted dialog answers: one text and its turn end ready
    /// at once, then the stream ends. Returns what went out.
    pub fn answer(&mut self, line: &str) -> Vec<Out> {
        let mut outs = self.input(say(line));
        outs.extend(self.input(turn_end()));
        outs.extend(self.input(RelayInput::TurnFinished));
        outs
    }
}

/// Decodes one frame the session sent; panics on anything Twilio would reject.
pub fn decode(json: &str) -> Out {
    match OutboundMessage::parse(json).unwrap_or_else(|e| panic!("invalid message {json}: {e}")) {
        OutboundMessage::Text(t) => {
            assert_eq!(
                t.interruptible, t.preemptible,
                "preemptible follows interruptible: {json}"
            );
            Out::Text {
                token: t.token,
                last: t.last,
                interruptible: t.interruptible.expect("interruptible is always set"),
            }
        }
        OutboundMessage::End(e) => {
            let data = e
                .handoff()
                .expect("end carries handoffData")
                .expect("handoffData is JSON");
            Out::End(data.reason_code, data.reason)
        }
        OutboundMessage::SendDigits(d) => Out::Digits(d.as_str().to_owned()),
        OutboundMessage::Language(l) => Out::Language(
            l.tts_language().map(str::to_owned),
            l.transcription_language().map(str::to_owned),
        ),
        OutboundMessage::Play(p) => panic!("the session never plays: {p:?}"),
    }
}
