//! One Media Streams frame through each direction of the bridge, as the server runs it.
//!
//! - inbound: a `media` JSON text from Twilio -> parse + base64 -> mu-law decode ->
//!   resample 8 kHz -> 16 kHz (the pipeline rate).
//! - outbound: 20 ms of PCM16 at 24 kHz (what TTS providers send) -> resample to 8 kHz ->
//!   mu-law encode -> outbound `media` JSON text.
//!
//! Target: <= 5 us median per frame each way on a 2-core machine (README performance table).
//! Run: `cargo bench --bench frame`

use std::hint::black_box;

use base64::Engine;
use criterion::{Criterion, criterion_group, criterion_main};
use voxbridge_audio::{mulaw, resample::StreamResampler};
use voxbridge_twilio::media::{InboundDecoder, InboundEvent, OutboundEncoder};
use voxbridge_twilio::sid::StreamSid;

const STREAM_SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";

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

fn inbound_messages(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let mut mulaw_frame = Vec::with_capacity(160);
            mulaw::encode(&signal(8000, 160, i * 160), &mut mulaw_frame);
            format!(
                r#"{{"event":"media","sequenceNumber":"{}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":"{}"}},"streamSid":"{STREAM_SID}"}}"#,
                i + 2,
                i + 1,
                i * 20,
                base64::engine::general_purpose::STANDARD.encode(&mulaw_frame)
            )
        })
        .collect()
}

fn inbound(c: &mut Criterion) {
    let messages = inbound_messages(50);
    let mut decoder = InboundDecoder::new();
    let mut resampler = StreamResampler::new(8000, 16000).expect("8k -> 16k is supported");
    let mut pcm = Vec::with_capacity(160);
    let mut out = Vec::with_capacity(640);
    let mut i = 0;
    c.bench_function("inbound_media_json_to_pcm16_16k", |b| {
        b.iter(|| {
            let text = &messages[i % messages.len()];
            i += 1;
            let Ok(InboundEvent::Media(frame)) = decoder.decode(black_box(text)) else {
                panic!("bench input is a valid media message");
            };
            pcm.clear();
            mulaw::decode(frame.payload, &mut pcm);
            out.clear();
            resampler.process(&pcm, &mut out);
            black_box(out.len())
        });
    });
}

fn outbound(c: &mut Criterion) {
    // 50 consecutive 20 ms chunks of 24 kHz audio, replayed in a loop.
    let chunks: Vec<Vec<i16>> = (0..50).map(|i| signal(24_000, 480, i * 480)).collect();
    let mut resampler = StreamResampler::new(24_000, 8000).expect("24k -> 8k is supported");
    let mut encoder = OutboundEncoder::new(StreamSid::new(STREAM_SID).expect("valid stream sid"));
    let mut pcm8k = Vec::with_capacity(320);
    let mut wire = Vec::with_capacity(320);
    let mut i = 0;
    c.bench_function("outbound_pcm16_24k_to_media_json", |b| {
        b.iter(|| {
            let chunk = &chunks[i % chunks.len()];
            i += 1;
            pcm8k.clear();
            resampler.process(black_box(chunk), &mut pcm8k);
            wire.clear();
            mulaw::encode(&pcm8k, &mut wire);
            black_box(encoder.media(&wire).len())
        });
    });
}

criterion_group!(benches, inbound, outbound);
criterion_main!(benches);
