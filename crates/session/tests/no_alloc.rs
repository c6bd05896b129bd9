//! The inbound `media` path allocates nothing per frame in steady state, the outbound path
//! only the `String` that `Output::Send` hands over, and a call's heap stays small.
//!
//! A counting `#[global_allocator]` is the only way to observe allocations from outside, and
//! implementing `GlobalAlloc` requires `unsafe`; the impl only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use voxbridge_audio::mulaw;
use voxbridge_session::{BrainCommand, Input, Output, Session, SessionConfig, TurnId};
use voxbridge_twilio::media::{Track, TwilioEncoder};
use voxbridge_twilio::sid::{AccountSid, CallSid, StreamSid};

struct CountingAllocator;

thread_local! {
    // Per thread, so the test harness's own threads do not disturb the count.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static LIVE_BYTES: Cell<i64> = const { Cell::new(0) };
}

fn record(allocs: u64, bytes: i64) {
    // `try_with` because the allocator can run while thread-locals are being torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + allocs));
    let _ = LIVE_BYTES.try_with(|n| n.set(n.get() + bytes));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(1, layout.size() as i64);
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(1, layout.size() as i64);
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(1, new_size as i64 - layout.size() as i64);
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record(0, -(layout.size() as i64));
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn live_bytes() -> i64 {
    LIVE_BYTES.with(Cell::get)
}

const SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";
const STEP: Duration = Duration::from_millis(20);

fn started(t0: Instant) -> (Session, TwilioEncoder) {
    let mut session = Session::new(SessionConfig::default(), t0);
    let mut twilio = TwilioEncoder::new(StreamSid::new(SID).unwrap());
    let start = twilio
        .start(
            AccountSid::new("AC0123456789abcdef0123456789abcdef").unwrap(),
            CallSid::new("CA0123456789abcdef0123456789abcdef").unwrap(),
            vec![Track::Inbound],
            BTreeMap::from([("agent".to_owned(), "echo".to_owned())]),
        )
        .to_owned();
    session.handle_input(t0, Input::Text(&start));
    drain(&mut session);
    (session, twilio)
}

/// Drains to `Timeout`; returns the number of `Send`s.
fn drain(session: &mut Session) -> usize {
    let mut sends = 0;
    loop {
        match session.poll_output() {
            Output::Timeout(_) => return sends,
            Output::Send(_) => sends += 1,
            Output::Brain(_) => {}
            Output::Close { code, reason } => panic!("closed {code} {reason}"),
        }
    }
}

/// 50 frames of quiet line noise (no speech, so no utterance buffer), built up front.
fn line_noise(twilio: &mut TwilioEncoder) -> Vec<String> {
    let mut state = 0x1234_5678u32;
    (0..50u64)
        .map(|i| {
            let pcm: Vec<i16> = (0..160)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    (state >> 24) as i16 - 128
                })
                .collect();
            let mut frame = Vec::new();
            mulaw::encode(&pcm, &mut frame);
            twilio
                .media(Track::Inbound, i + 1, i * 20, &frame)
                .to_owned()
        })
        .collect()
}

#[test]
fn inbound_media_frames_do_not_allocate_in_steady_state() {
    let t0 = Instant::now();
    let (mut session, mut twilio) = started(t0);
    let frames = line_noise(&mut twilio);
    let mut now = t0;
    // Warm up: buffers reach their steady size.
    for f in &frames {
        now += STEP;
        session.handle_input(now, Input::Text(f));
        drain(&mut session);
    }
    let before = allocations();
    for _ in 0..10 {
        for f in &frames {
            now += STEP;
            session.handle_input(now, Input::Text(f));
            drain(&mut session);
        }
    }
    assert_eq!(allocations() - before, 0, "allocations on the inbound path");
    assert_eq!(session.summary().frames_in, 550);
}

#[test]
fn outbound_frames_allocate_only_the_sent_string() {
    let t0 = Instant::now();
    let (mut session, mut twilio) = started(t0);
    let frames = line_noise(&mut twilio);
    let audio = vec![1000i16; 480];
    let mut now = t0;
    let step = |session: &mut Session, now: Instant, i: usize| {
        session.handle_input(now, Input::Text(&frames[i % frames.len()]));
        drain(session);
        session.handle_input(
            now,
            Input::Brain(BrainCommand::Audio {
                turn: TurnId(1),
                pcm: &audio,
                sample_rate: 24_000,
            }),
        );
        drain(session)
    };
    for i in 0..100 {
        now += STEP;
        step(&mut session, now, i);
    }
    let before = allocations();
    let mut sent = 0;
    for i in 0..500 {
        now += STEP;
        sent += step(&mut session, now, i);
    }
    assert_eq!(sent, 500, "one frame per 20 ms");
    assert_eq!(allocations() - before, 500, "one String per Output::Send");
}

#[test]
fn a_call_holds_little_memory() {
    let t0 = Instant::now();
    let reply = vec![1000i16; 48_000];
    let frames = line_noise(&mut TwilioEncoder::new(StreamSid::new(SID).unwrap()));
    let base = live_bytes();
    let (mut session, twilio) = started(t0);
    drop(twilio);
    let mut now = t0;
    for f in frames.iter().cycle().take(500) {
        now += STEP;
        session.handle_input(now, Input::Text(f));
        drain(&mut session);
    }
    let listening = live_bytes() - base;
    // The bot speaks a 2 s reply it got all at once (TTS is faster than real time).
    session.handle_input(
        now,
        Input::Brain(BrainCommand::Audio {
            turn: TurnId(1),
            pcm: &reply,
            sample_rate: 24_000,
        }),
    );
    session.handle_input(
        now,
        Input::Brain(BrainCommand::ChunkEnd {
            turn: TurnId(1),
            text: "A two second reply.",
        }),
    );
    drain(&mut session);
    let speaking = live_bytes() - base;
    let session_size = std::mem::size_of::<Session>() as i64;
    eprintln!(
        "per-call memory: Session {session_size} B inline, heap {listening} B listening, \
         {speaking} B with a 2 s reply queued"
    );
    // Heap plus the struct itself; the shell adds socket buffers on top.
    assert!(listening + session_size < 48 * 1024, "{listening} B");
    assert!(speaking + session_size < 80 * 1024, "{speaking} B");
    drop(session);
}
