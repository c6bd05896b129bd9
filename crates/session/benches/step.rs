//! One 20 ms step through the session, as the media shell drives it.
//!
//! - `session_inbound_media_frame`: a Twilio `media` text (160 bytes of mu-law) through
//!   `handle_input`, then `poll_output` drained to `Timeout`: JSON + base64, mu-law decode,
//!   8 -> 16 kHz, VAD, utterance bookkeeping.
//! - `session_outbound_media_frame`: 20 ms of brain audio at 24 kHz through `handle_input`,
//!   then `poll_output` drained: 24 -> 8 kHz, mu-law, pacing, one `media` JSON text out.
//!
//! Virtual time advances 20 ms per iteration, so pacing sends exactly one frame per step. The
//! inbound signal is speech-like, so the VAD is in speech and the utterance buffer grows, as on
//! a real call.
//!
//! Run: `cargo bench -p voxbridge-session --bench step` (medians in
//! `target/criterion/<name>/new/estimates.json`). On the 2-core AMD EPYC dev VM, shared with
//! other builds: inbound 4.0 us, outbound 2.5 us per frame (median), i.e. ~0.02% and ~0.01% of
//! one core per call.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use voxbridge_audio::mulaw;
use voxbridge_session::{BrainCommand, Input, Output, Session, SessionConfig, TurnId};
use voxbridge_twilio::media::{Track, TwilioEncoder};
use voxbridge_twilio::sid::{AccountSid, CallSid, StreamSid};

const STREAM_SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";
const STEP: Duration = Duration::from_millis(20);

/// A speech-like test signal: two tones with a slow amplitude envelope.
fn signal(rate: u32, len: usize, offset: usize) -> Vec<i16> {
    (offset..offset + len)
        .map(|n| {
            let t = n as f64 / f64::from(rate);
            let envelope = 0.5 + 0.5 * (std::f64::consts::TAU * 3.0 * t).sin();
            let s = (std::f64::consts::TAU * 440.0 * t).sin() * 0.6
                + (std::f64::consts::TAU * 1250.0 * t).sin() * 0.3;
            (s * envelope * 12_000.0) as i16
        })
        .collect()
}

/// A started session that never times out, and a Twilio encoder for its stream.
fn started(now: Instant) -> (Session, TwilioEncoder) {
    let forever = Duration::from_secs(u64::from(u32::MAX));
    let mut session = Session::new(
        SessionConfig {
            idle_timeout: forever,
            max_call_duration: forever,
            ..SessionConfig::default()
        },
        now,
    );
    let mut twilio = TwilioEncoder::new(StreamSid::new(STREAM_SID).expect("valid SID"));
    let start = twilio
        .start(
            AccountSid::new("AC0123456789abcdef0123456789abcdef").expect("valid SID"),
            CallSid::new("CA0123456789abcdef0123456789abcdef").expect("valid SID"),
            vec![Track::Inbound],
            BTreeMap::new(),
        )
        .to_owned();
    session.handle_input(now, Input::Text(&start));
    drain(&mut session);
    (session, twilio)
}

fn drain(session: &mut Session) -> usize {
    let mut sent = 0;
    loop {
        match session.poll_output() {
            Output::Timeout(_) => return sent,
            Output::Send(text) => {
                sent += 1;
                black_box(text);
            }
            other => {
                black_box(other);
            }
        }
    }
}

fn inbound(c: &mut Criterion) {
    let mut now = Instant::now();
    let (mut session, mut twilio) = started(now);
    let messages: Vec<String> = (0..50)
        .map(|i| {
            let mut frame = Vec::with_capacity(160);
            mulaw::encode(&signal(8000, 160, i * 160), &mut frame);
            twilio
                .media(Track::Inbound, i as u64 + 1, i as u64 * 20, &frame)
                .to_owned()
        })
        .collect();
    let mut i = 0;
    c.bench_function("session_inbound_media_frame", |b| {
        b.iter(|| {
            now += STEP;
            session.handle_input(now, Input::Text(black_box(&messages[i % messages.len()])));
            i += 1;
            drain(&mut session)
        });
    });
    assert!(!session.is_ended());
}

fn outbound(c: &mut Criterion) {
    let mut now = Instant::now();
    let (mut session, _) = started(now);
    let audio: Vec<Vec<i16>> = (0..50).map(|i| signal(24_000, 480, i * 480)).collect();
    let mut i = 0;
    // Fill the playout lead first, so every measured step sends exactly one frame.
    for _ in 0..10 {
        session.handle_input(
            now,
            Input::Brain(BrainCommand::Audio {
                turn: TurnId(1),
                pcm: &audio[0],
                sample_rate: 24_000,
            }),
        );
        drain(&mut session);
    }
    c.bench_function("session_outbound_media_frame", |b| {
        b.iter(|| {
            now += STEP;
            session.handle_input(
                now,
                Input::Brain(BrainCommand::Audio {
                    turn: TurnId(1),
                    pcm: black_box(&audio[i % audio.len()]),
                    sample_rate: 24_000,
                }),
            );
            i += 1;
            drain(&mut session)
        });
    });
    assert!(!session.is_ended());
    assert!(session.summary().frames_out > 0);
}

criterion_group!(benches, inbound, outbound);
criterion_main!(benches);
