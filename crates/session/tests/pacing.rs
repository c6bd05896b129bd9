//! Outbound pacing against a model of Twilio's playout buffer, on virtual time.

mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::patient;
use proptest::prelude::*;
use voxbridge_audio::mulaw;
use voxbridge_audio::resample::StreamResampler;
use voxbridge_session::{BrainCommand, Input, Output, Session, SessionConfig, TurnId};
use voxbridge_twilio::media::{OutboundDecoder, OutboundEvent, Track, TwilioEncoder};
use voxbridge_twilio::sid::{AccountSid, CallSid, StreamSid};

const RATES: [u32; 5] = [8000, 16_000, 22_050, 24_000, 48_000];

/// One chunk from the brain: pieces of audio at one rate, arriving `gap` after the previous
/// chunk, then `ChunkEnd`.
#[derive(Debug, Clone)]
struct Chunk {
    rate: u32,
    pieces: Vec<Vec<i16>>,
    gap: Duration,
}

fn wire(samples: usize) -> Duration {
    Duration::from_nanos(samples as u64 * 125_000)
}

/// What the caller must hear for `chunk`: its audio resampled to 8 kHz as one stream, mu-law.
fn expected_mulaw(chunk: &Chunk) -> Vec<u8> {
    let pcm: Vec<i16> = chunk.pieces.concat();
    let mut at_8k = Vec::new();
    if chunk.rate == 8000 {
        at_8k = pcm;
    } else {
        let mut r = StreamResampler::new(chunk.rate, 8000).unwrap();
        r.process(&pcm, &mut at_8k);
        r.flush(&mut at_8k);
    }
    let mut out = Vec::new();
    mulaw::encode(&at_8k, &mut out);
    out
}

/// A started session with `lead`.
fn started(lead: Duration, t0: Instant) -> Session {
    let mut session = Session::new(
        SessionConfig {
            playout_lead: lead,
            ..patient()
        },
        t0,
    );
    let mut twilio = TwilioEncoder::new(StreamSid::new(common::STREAM_SID).unwrap());
    let start = twilio
        .start(
            AccountSid::new(common::ACCOUNT_SID).unwrap(),
            CallSid::new(common::CALL_SID).unwrap(),
            vec![Track::Inbound],
            std::collections::BTreeMap::default(),
        )
        .to_owned();
    session.handle_input(t0, Input::Text(&start));
    session
}

/// The brain hands `chunk` over at `now`: its pieces, then `ChunkEnd`.
fn deliver(session: &mut Session, now: Instant, chunk: &Chunk) {
    for piece in &chunk.pieces {
        session.handle_input(
            now,
            Input::Brain(BrainCommand::Audio {
                turn: TurnId(1),
                pcm: piece,
                sample_rate: chunk.rate,
            }),
        );
    }
    session.handle_input(
        now,
        Input::Brain(BrainCommand::ChunkEnd {
            turn: TurnId(1),
            text: "x",
        }),
    );
}

/// Drives one call through `chunks` with the driver waking exactly at each requested Timeout,
/// checking the pacing invariants at every step. Returns the payload bytes, the marks with the
/// byte count sent before each, and the total time Twilio's buffer ran dry between frames.
fn run(chunks: &[Chunk], lead: Duration) -> (Vec<u8>, Vec<(String, usize)>, Duration) {
    let t0 = Instant::now();
    let mut session = started(lead, t0);

    // Brain arrivals.
    let mut arrivals: VecDeque<(Instant, usize)> = VecDeque::new();
    let mut at = t0;
    for (i, c) in chunks.iter().enumerate() {
        at += c.gap;
        arrivals.push_back((at, i));
    }
    let total: usize = chunks.iter().map(|c| expected_mulaw(c).len()).sum();
    let horizon = at + wire(total) + Duration::from_secs(2);

    let mut decoder = OutboundDecoder::new();
    let mut buffered_until = t0;
    let mut payload = Vec::new();
    let mut marks = Vec::new();
    let mut now = t0;
    let mut timeout: Option<Instant>;
    let mut woke_by_timer = false;
    let mut dry = Duration::ZERO;
    loop {
        // Drain, checking every frame against the model.
        loop {
            match session.poll_output() {
                Output::Timeout(t) => {
                    timeout = Some(t);
                    break;
                }
                Output::Send(text) => match decoder.decode(&text).unwrap() {
                    OutboundEvent::Media { payload: p, .. } => {
                        let d = wire(p.len());
                        assert!(!p.is_empty() && p.len() <= 160, "frame of {}", p.len());
                        if woke_by_timer {
                            // The frame was ready before this wake-up, so it must go at the
                            // first instant the lead allows: never late.
                            let due = buffered_until
                                .checked_sub(lead.saturating_sub(d))
                                .unwrap_or(buffered_until);
                            assert_eq!(now, due, "frame sent at {now:?}, allowed at {due:?}");
                        }
                        if !payload.is_empty() && now > buffered_until {
                            dry += now - buffered_until;
                        }
                        buffered_until = buffered_until.max(now) + d;
                        let ahead = buffered_until - now;
                        assert!(
                            ahead <= lead + Duration::from_millis(20),
                            "{ahead:?} ahead with a {lead:?} lead"
                        );
                        payload.extend_from_slice(p);
                        woke_by_timer = false;
                    }
                    OutboundEvent::Mark { name, .. } => {
                        marks.push((name.to_owned(), payload.len()));
                    }
                    OutboundEvent::Clear { .. } => panic!("no clear without caller speech"),
                },
                Output::Brain(_) => {}
                Output::Close { code, reason } => panic!("closed {code} {reason}"),
            }
        }
        let next_arrival = arrivals.front().map(|a| a.0);
        let t = match (next_arrival, timeout) {
            (Some(a), Some(w)) => a.min(w),
            (Some(a), None) => a,
            (None, Some(w)) => w,
            (None, None) => break,
        };
        if t > horizon {
            break;
        }
        assert!(t >= now, "time went back");
        now = t;
        if next_arrival == Some(t) {
            let (_, i) = arrivals.pop_front().unwrap();
            deliver(&mut session, now, &chunks[i]);
            woke_by_timer = false;
        } else {
            session.handle_timeout(now);
            woke_by_timer = true;
        }
    }
    assert!(!session.is_ended());
    (payload, marks, dry)
}

fn chunk_strategy() -> impl Strategy<Value = Chunk> {
    (
        0..RATES.len(),
        proptest::collection::vec(1usize..3000, 1..5),
        0u64..600,
        any::<u16>(),
    )
        .prop_map(|(rate, sizes, gap_ms, seed)| {
            let mut state = u32::from(seed) | 1;
            let pieces = sizes
                .into_iter()
                .map(|n| {
                    (0..n)
                        .map(|_| {
                            state ^= state << 13;
                            state ^= state >> 17;
                            state ^= state << 5;
                            (state >> 18) as i16 - 8192
                        })
                        .collect()
                })
                .collect();
            Chunk {
                rate: RATES[rate],
                pieces,
                gap: Duration::from_millis(gap_ms),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn pacing_lead_stays_bounded_and_output_is_the_input_in_order(
        chunks in proptest::collection::vec(chunk_strategy(), 1..10),
        lead_ms in prop_oneof![Just(0u64), Just(10), Just(20), Just(100), Just(250), 1u64..400],
    ) {
        let lead = Duration::from_millis(lead_ms);
        let (payload, marks, _) = run(&chunks, lead);
        let mut expected = Vec::new();
        let mut expected_marks = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            expected.extend(expected_mulaw(c));
            expected_marks.push((format!("t1c{i}"), expected.len()));
        }
        prop_assert_eq!(payload.len(), expected.len());
        prop_assert!(payload == expected, "audio differs");
        prop_assert_eq!(marks, expected_marks);
    }
}

#[test]
fn real_time_tts_plays_without_gaps_after_the_first_frame() {
    // A TTS that streams 20 ms of 24 kHz audio every 20 ms: the caller hears it continuously.
    let chunks: Vec<Chunk> = (0..100)
        .map(|i| Chunk {
            rate: 24_000,
            pieces: vec![vec![(i * 37 % 2000) as i16; 480]],
            gap: Duration::from_millis(if i == 0 { 0 } else { 20 }),
        })
        .collect();
    let (payload, marks, dry) = run(&chunks, Duration::from_millis(100));
    assert_eq!(dry, Duration::ZERO);
    assert_eq!(payload.len(), 100 * 160);
    assert_eq!(marks.len(), 100);
}

#[test]
fn audio_queued_ahead_never_runs_dry_for_any_lead() {
    // Everything arrives at once: whatever the lead, waking at each Timeout keeps Twilio's
    // buffer from running dry.
    let chunk = Chunk {
        rate: 22_050,
        pieces: vec![vec![500; 22_050 * 3]],
        gap: Duration::ZERO,
    };
    for lead_ms in [0, 5, 20, 35, 100, 400] {
        let (payload, _, dry) = run(std::slice::from_ref(&chunk), Duration::from_millis(lead_ms));
        assert_eq!(payload.len(), 24_000);
        assert_eq!(dry, Duration::ZERO, "lead {lead_ms} ms");
    }
}

#[test]
fn a_burst_of_audio_is_sent_lead_first_then_in_real_time() {
    let t0 = Instant::now();
    let mut session = started(Duration::from_millis(100), t0);
    let pcm = vec![1000i16; 8000 * 5];
    session.handle_input(
        t0,
        Input::Brain(BrainCommand::Audio {
            turn: TurnId(1),
            pcm: &pcm,
            sample_rate: 8000,
        }),
    );
    let mut sends = 0;
    let timeout = loop {
        match session.poll_output() {
            Output::Send(_) => sends += 1,
            Output::Timeout(at) => break at,
            Output::Brain(_) => {}
            Output::Close { .. } => panic!(),
        }
    };
    assert_eq!(sends, 5, "100 ms lead = 5 frames up front");
    assert_eq!(timeout, t0 + Duration::from_millis(20));
    assert_eq!(session.playout_ahead(), Duration::from_millis(100));
    // Waking late by 50 ms sends enough to restore the lead (the buffer did not run dry).
    session.handle_timeout(t0 + Duration::from_millis(70));
    let mut late = 0;
    while let Output::Send(_) = session.poll_output() {
        late += 1;
    }
    assert_eq!(late, 3);
    assert_eq!(session.playout_ahead(), Duration::from_millis(90));
}
