//! Proves the Media Streams `media` hot path does not allocate per frame in steady state, in
//! both directions and on both sides (bridge and simulator).
//!
//! A counting `#[global_allocator]` is the only way to observe allocations from outside, and
//! implementing `GlobalAlloc` requires `unsafe`; the impl only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use voxbridge_twilio::media::{
    InboundDecoder, InboundEvent, OutboundDecoder, OutboundEncoder, OutboundEvent, Track,
    TwilioEncoder,
};
use voxbridge_twilio::sid::StreamSid;

struct CountingAllocator;

thread_local! {
    // Per thread, so the test harness's own threads do not disturb the count.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with` because the allocator can run while thread-locals are being torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";

/// 50 frames of Twilio's shape, built before counting starts.
fn twilio_frames() -> Vec<String> {
    let mut twilio = TwilioEncoder::new(StreamSid::new(SID).unwrap());
    (0..50u8)
        .map(|i| {
            let payload = [i; 160];
            twilio
                .media(
                    Track::Inbound,
                    u64::from(i) + 1,
                    u64::from(i) * 20,
                    &payload,
                )
                .to_owned()
        })
        .collect()
}

#[test]
fn steady_state_media_paths_do_not_allocate() {
    let frames = twilio_frames();
    let audio = [0x7fu8; 160];
    let mut decoder = InboundDecoder::new();
    let mut encoder = OutboundEncoder::new(StreamSid::new(SID).unwrap());
    let mut twilio = TwilioEncoder::new(StreamSid::new(SID).unwrap());
    let mut sim_decoder = OutboundDecoder::new();
    let mut outbound = String::with_capacity(512);

    // Warm up: buffers grow to frame size once.
    let InboundEvent::Media(frame) = decoder.decode(&frames[0]).unwrap() else {
        panic!("expected media");
    };
    assert_eq!(frame.payload.len(), 160);
    outbound.clear();
    outbound.push_str(encoder.media(&audio));
    sim_decoder.decode(&outbound).unwrap();
    let _ = twilio.media(Track::Inbound, 1, 0, &audio).len();

    let before = allocations();
    let mut checksum = 0u64;
    for (i, text) in frames.iter().enumerate() {
        let InboundEvent::Media(frame) = decoder.decode(text).unwrap() else {
            panic!("expected media");
        };
        assert_eq!(frame.chunk, i as u64 + 1);
        checksum += u64::from(frame.payload[0]);

        let json = encoder.media(frame.payload);
        checksum += json.len() as u64;
        outbound.clear();
        outbound.push_str(json);
        let OutboundEvent::Media { payload, .. } = sim_decoder.decode(&outbound).unwrap() else {
            panic!("expected media");
        };
        checksum += u64::from(payload[1]);

        checksum += twilio.media(Track::Inbound, i as u64, 0, &audio).len() as u64;
        checksum += encoder.mark("m").len() as u64 + encoder.clear().len() as u64;
    }
    let after = allocations();
    assert!(checksum > 0);
    assert_eq!(
        after - before,
        0,
        "media hot path allocated {} times",
        after - before
    );
}

#[test]
fn counting_allocator_does_observe_allocations() {
    // Guards the test above against a counter that never counts.
    let before = allocations();
    let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(64));
    drop(v);
    assert!(allocations() > before);
}
