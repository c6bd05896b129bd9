//! A virtual-time harness: drives a `Session` the way the media shell does, with a model of
//! Twilio on the other side (plays audio in real time, echoes marks when their audio has played
//! and every pending mark straight after a `clear`). Time only moves when a test moves it.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use voxbridge_audio::{mulaw, wav};
use voxbridge_session::{BrainEvent, Input, Output, Session, SessionConfig, TurnId};
use voxbridge_twilio::media::{OutboundDecoder, OutboundEvent, Track, TwilioEncoder};
use voxbridge_twilio::sid::{AccountSid, CallSid, StreamSid};

pub const STREAM_SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";
pub const CALL_SID: &str = "CA0123456789abcdef0123456789abcdef";
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const FRAME: Duration = Duration::from_millis(20);

/// What the session did, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Media(Vec<u8>),
    Mark(String),
    Clear,
    Brain(BrainEvent),
    Close(u16, &'static str),
    /// Input side, for the log only: Twilio echoed this mark.
    Echo(String),
}

/// Twilio's side of the socket: playout buffer and mark echoes.
#[derive(Debug)]
pub struct TwilioModel {
    pub buffered_until: Instant,
    /// Marks not yet echoed, with the instant their audio has played.
    pub pending_marks: VecDeque<(String, Instant)>,
    /// Every media payload received with the instant it arrived.
    pub media: Vec<(Instant, Vec<u8>)>,
    decoder: OutboundDecoder,
}

impl TwilioModel {
    pub fn new(now: Instant) -> Self {
        Self {
            buffered_until: now,
            pending_marks: VecDeque::new(),
            media: Vec::new(),
            decoder: OutboundDecoder::new(),
        }
    }

    /// Receives one text frame from the session.
    pub fn receive(&mut self, now: Instant, text: &str) -> Out {
        match self
            .decoder
            .decode(text)
            .expect("the session sends valid JSON")
        {
            OutboundEvent::Media {
                stream_sid,
                payload,
            } => {
                assert_eq!(stream_sid, STREAM_SID);
                self.buffered_until = self.buffered_until.max(now)
                    + Duration::from_nanos(payload.len() as u64 * 125_000);
                self.media.push((now, payload.to_vec()));
                Out::Media(payload.to_vec())
            }
            OutboundEvent::Mark { stream_sid, name } => {
                assert_eq!(stream_sid, STREAM_SID);
                let at = self.buffered_until.max(now);
                self.pending_marks.push_back((name.to_owned(), at));
                Out::Mark(name.to_owned())
            }
            OutboundEvent::Clear { stream_sid } => {
                assert_eq!(stream_sid, STREAM_SID);
                self.buffered_until = now;
                for m in &mut self.pending_marks {
                    m.1 = now;
                }
                Out::Clear
            }
        }
    }

    pub fn next_echo(&self) -> Option<Instant> {
        self.pending_marks.front().map(|m| m.1)
    }
}

/// One call under test.
#[derive(Debug)]
pub struct Call {
    pub session: Session,
    pub t0: Instant,
    pub now: Instant,
    pub twilio: TwilioEncoder,
    pub model: TwilioModel,
    /// Everything the session did, with the instant.
    pub log: Vec<(Instant, Out)>,
    /// The last `Timeout` the session asked for.
    pub timeout: Option<Instant>,
    /// Whether Twilio echoes marks by itself as time passes.
    pub auto_echo: bool,
    pub chunk: u64,
}

impl Call {
    pub fn new(config: SessionConfig) -> Self {
        let t0 = Instant::now();
        let mut call = Self {
            session: Session::new(config, t0),
            t0,
            now: t0,
            twilio: TwilioEncoder::new(StreamSid::new(STREAM_SID).unwrap()),
            model: TwilioModel::new(t0),
            log: Vec::new(),
            timeout: None,
            auto_echo: true,
            chunk: 0,
        };
        call.drain();
        call
    }

    /// Drains `poll_output` until `Timeout`; returns what came out.
    pub fn drain(&mut self) -> Vec<Out> {
        let mut outs: Vec<Out> = Vec::new();
        for _ in 0..100_000 {
            let out = match self.session.poll_output() {
                Output::Timeout(at) => {
                    self.timeout = Some(at);
                    let now = self.now;
                    self.log.extend(outs.iter().map(|o| (now, o.clone())));
                    return outs;
                }
                Output::Send(text) => {
                    assert!(
                        !self.log.iter().any(|(_, o)| matches!(o, Out::Close(..)))
                            && !outs.iter().any(|o| matches!(o, Out::Close(..))),
                        "Send after Close: {text}"
                    );
                    self.model.receive(self.now, &text)
                }
                Output::Brain(event) => Out::Brain(event),
                Output::Close { code, reason } => Out::Close(code, reason),
            };
            outs.push(out);
        }
        panic!("poll_output never returned Timeout");
    }

    pub fn input(&mut self, input: Input<'_>) -> Vec<Out> {
        self.session.handle_input(self.now, input);
        self.drain()
    }

    pub fn text(&mut self, text: &str) -> Vec<Out> {
        self.input(Input::Text(text))
    }

    pub fn start(&mut self) -> Vec<Out> {
        self.start_with(BTreeMap::from([("agent".to_owned(), "echo".to_owned())]))
    }

    pub fn start_with(&mut self, params: BTreeMap<String, String>) -> Vec<Out> {
        let connected = self.twilio.connected().to_owned();
        let mut outs = self.text(&connected);
        let start = self
            .twilio
            .start(
                AccountSid::new(ACCOUNT_SID).unwrap(),
                CallSid::new(CALL_SID).unwrap(),
                vec![Track::Inbound],
                params,
            )
            .to_owned();
        outs.extend(self.text(&start));
        outs
    }

    /// One inbound `media` frame at the current instant.
    pub fn media(&mut self, mulaw_frame: &[u8]) -> Vec<Out> {
        self.chunk += 1;
        let ts = (self.now - self.t0).as_millis() as u64;
        let text = self
            .twilio
            .media(Track::Inbound, self.chunk, ts, mulaw_frame)
            .to_owned();
        self.text(&text)
    }

    pub fn stop(&mut self) -> Vec<Out> {
        let text = self
            .twilio
            .stop(
                AccountSid::new(ACCOUNT_SID).unwrap(),
                CallSid::new(CALL_SID).unwrap(),
            )
            .to_owned();
        self.text(&text)
    }

    /// Echoes the oldest pending mark now.
    pub fn echo_next_mark(&mut self) -> Vec<Out> {
        let (name, _) = self
            .model
            .pending_marks
            .pop_front()
            .expect("a pending mark");
        self.log.push((self.now, Out::Echo(name.clone())));
        let text = self.twilio.mark(&name).to_owned();
        self.text(&text)
    }

    /// Moves time to `t`, firing every session timeout and (with `auto_echo`) every mark echo on
    /// the way at its exact instant. Returns what came out.
    pub fn advance_to(&mut self, t: Instant) -> Vec<Out> {
        let mut outs = Vec::new();
        while !self.session.is_ended() {
            let echo = if self.auto_echo {
                self.model.next_echo()
            } else {
                None
            };
            let next = match (echo, self.timeout) {
                (Some(e), Some(w)) => e.min(w),
                (Some(e), None) => e,
                (None, Some(w)) => w,
                (None, None) => break,
            };
            if next > t {
                break;
            }
            self.now = self.now.max(next);
            if echo == Some(next) {
                outs.extend(self.echo_next_mark());
            } else {
                self.session.handle_timeout(self.now);
                outs.extend(self.drain());
            }
        }
        self.now = self.now.max(t);
        outs
    }

    pub fn advance(&mut self, d: Duration) -> Vec<Out> {
        self.advance_to(self.now + d)
    }

    /// Feeds 8 kHz PCM as 20 ms `media` frames, one per 20 ms of virtual time (timeouts and
    /// echoes in between fire on time), calling `each` with the frame index and what that
    /// frame's own `handle_input` produced.
    pub fn feed_pcm(&mut self, pcm: &[i16], mut each: impl FnMut(usize, &[Out], &Session)) {
        for (i, frame) in pcm.chunks(160).enumerate() {
            let mut codes = Vec::with_capacity(160);
            mulaw::encode(frame, &mut codes);
            self.advance(FRAME);
            let outs = self.media(&codes);
            each(i, &outs, &self.session);
        }
    }

    /// Brain audio for `turn`, at the current instant.
    pub fn say(&mut self, turn: u64, pcm: &[i16], sample_rate: u32, text: &str) -> Vec<Out> {
        let turn = voxbridge_session::TurnId(turn);
        let mut outs = self.input(Input::Brain(voxbridge_session::BrainCommand::Audio {
            turn,
            pcm,
            sample_rate,
        }));
        outs.extend(
            self.input(Input::Brain(voxbridge_session::BrainCommand::ChunkEnd {
                turn,
                text,
            })),
        );
        outs
    }

    pub fn turn_end(&mut self, turn: u64) -> Vec<Out> {
        self.input(Input::Brain(voxbridge_session::BrainCommand::TurnEnd {
            turn: voxbridge_session::TurnId(turn),
        }))
    }

    pub fn sent(&self) -> impl Iterator<Item = &Out> {
        self.log.iter().map(|(_, o)| o)
    }

    /// The mark names Twilio echoed, in order.
    pub fn echoes(&self) -> Vec<&str> {
        self.sent()
            .filter_map(|o| match o {
                Out::Echo(name) => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Every [`BrainEvent::BargeIn`] the brain got: the turn and the text heard.
    pub fn barge_ins(&self) -> Vec<(TurnId, String)> {
        self.sent()
            .filter_map(|o| match o {
                Out::Brain(BrainEvent::BargeIn { turn, heard, .. }) => Some((*turn, heard.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn brain_events(&self) -> Vec<BrainEvent> {
        self.sent()
            .filter_map(|o| match o {
                Out::Brain(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

pub fn load(name: &str) -> Vec<i16> {
    let (pcm, rate) = wav::read_wav(fixture(name)).expect("wav fixture");
    assert_eq!(rate, 8000, "{name}");
    pcm
}

pub fn labels(name: &str) -> Vec<(u64, u64)> {
    std::fs::read_to_string(fixture(name))
        .expect("labels fixture")
        .lines()
        .map(|l| {
            let mut it = l.split_whitespace().map(|v| v.parse::<u64>().unwrap());
            (it.next().unwrap(), it.next().unwrap())
        })
        .collect()
}

/// `ms` of a speech-band tone at `rate`, as a bot's TTS might produce.
pub fn tone(rate: u32, ms: u32) -> Vec<i16> {
    let n = rate as usize * ms as usize / 1000;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (8000.0 * (std::f64::consts::TAU * 440.0 * t).sin()) as i16
        })
        .collect()
}

/// 20 ms of line silence (mu-law zero).
pub const SILENCE: [u8; 160] = [0xFF; 160];

/// A config with timeouts long enough for tests that do not send Twilio's 50 frames a second.
pub fn patient() -> SessionConfig {
    SessionConfig {
        idle_timeout: Duration::from_secs(3600),
        start_timeout: Duration::from_secs(3600),
        max_call_duration: Duration::from_secs(86_400),
        ..SessionConfig::default()
    }
}
