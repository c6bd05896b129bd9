//! Hot-path DSP costs per 20 ms Twilio frame. Run with:
//! `cargo bench -p voxbridge-audio --bench dsp`
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use voxbridge_audio::vad::{Vad, VadConfig};
use voxbridge_audio::{mulaw, resample::StreamResampler};

fn tone(rate: u32, len: usize) -> Vec<i16> {
    (0..len)
        .map(|n| {
            let t = n as f64 / f64::from(rate);
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        })
        .collect()
}

fn mulaw_benches(c: &mut Criterion) {
    let pcm = tone(8000, 160);
    let mut codes = Vec::with_capacity(160);
    mulaw::encode(&pcm, &mut codes);
    let mut out_codes = Vec::with_capacity(160);
    c.bench_function("mulaw_encode_160", |b| {
        b.iter(|| {
            out_codes.clear();
            mulaw::encode(black_box(&pcm), &mut out_codes);
            black_box(&out_codes);
        });
    });
    let mut out_pcm = Vec::with_capacity(160);
    c.bench_function("mulaw_decode_160", |b| {
        b.iter(|| {
            out_pcm.clear();
            mulaw::decode(black_box(&codes), &mut out_pcm);
            black_box(&out_pcm);
        });
    });
}

fn resample_benches(c: &mut Criterion) {
    for (name, from, to) in [
        ("resample_20ms_8k_to_16k", 8000u32, 16000u32),
        ("resample_20ms_24k_to_8k", 24000, 8000),
        ("resample_20ms_16k_to_8k", 16000, 8000),
        ("resample_20ms_48k_to_8k", 48000, 8000),
    ] {
        let frame = tone(from, from as usize / 50);
        let mut r = StreamResampler::new(from, to).expect("supported rate pair");
        let mut out = Vec::with_capacity(to as usize / 25);
        c.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                r.process(black_box(&frame), &mut out);
                black_box(&out);
            });
        });
    }
}

/// One 20 ms frame through the VAD, on speech and on the digital silence (all-zero samples,
/// mu-law `0xFF`) that follows speech when a caller mutes: the second must not be slower.
fn vad_benches(c: &mut Criterion) {
    for rate in [8000_u32, 16000] {
        let speech = tone(rate, rate as usize / 50);
        let silence = vec![0_i16; rate as usize / 50];
        let mut events = Vec::with_capacity(8);
        let mut vad = Vad::new(VadConfig::new(rate)).expect("supported rate");
        c.bench_function(&format!("vad_20ms_{}k_speech", rate / 1000), |b| {
            b.iter(|| {
                events.clear();
                vad.process(black_box(&speech), &mut events);
            });
        });
        // Speech first, so the filters hold state that then decays in the silence.
        vad.process(&speech, &mut events);
        c.bench_function(
            &format!("vad_20ms_{}k_digital_silence_after_speech", rate / 1000),
            |b| {
                b.iter(|| {
                    events.clear();
                    vad.process(black_box(&silence), &mut events);
                });
            },
        );
    }
}

criterion_group!(benches, mulaw_benches, resample_benches, vad_benches);
criterion_main!(benches);
