//! VAD against the committed speech/noise fixtures (`tests/data`, made by
//! `scripts/gen-fixtures.sh`; ground truth in the `.labels` files next to them).
//!
//! Tolerances, in 8 kHz terms (the same durations apply at 16 kHz):
//! - **Start**: at most one 10 ms frame early (events are frame-aligned and the frame holding
//!   the first speech sample counts) and at most 20 ms late on clean speech, 60 ms late at
//!   12-15 dB SNR: the labels mark where espeak's output first exceeds -50 dBFS, and a gliding
//!   onset such as the "y" of "Yes" stays under the noise for a few frames.
//! - **End**: at most 10 ms late, up to 150 ms early: sentence-final fricatives and releases
//!   ("...States.") decay over ~100 ms far below vowel level, under the noise or the -55 dBFS
//!   gate. The hangover (600 ms) is what keeps a turn together, so an early end mark is
//!   harmless for turn-taking.
//! - Everything else is exact: one detected segment per labelled sentence, none on noise-only
//!   audio, none for bursts shorter than `min_speech_ms`.

use std::path::PathBuf;

use voxbridge_audio::resample::StreamResampler;
use voxbridge_audio::vad::{Vad, VadConfig, VadEvent};
use voxbridge_audio::wav::read_wav;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

fn load(name: &str) -> (Vec<i16>, u32) {
    read_wav(fixture(name)).expect("wav fixture")
}

fn labels(name: &str) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(fixture(name)).expect("labels fixture");
    text.lines()
        .map(|l| {
            let mut it = l
                .split_whitespace()
                .map(|v| v.parse::<u64>().expect("sample index"));
            (it.next().expect("start"), it.next().expect("end"))
        })
        .collect()
}

fn events(pcm: &[i16], cfg: VadConfig, chunk: usize) -> Vec<VadEvent> {
    let mut vad = Vad::new(cfg).expect("valid config");
    let mut events = Vec::new();
    for c in pcm.chunks(chunk.max(1)) {
        vad.process(c, &mut events);
    }
    events
}

/// Pairs events into (start, end) segments; a segment open at the end of input ends there.
fn segments(events: &[VadEvent], len: usize) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut open = None;
    for e in events {
        match *e {
            VadEvent::SpeechStart { at_sample } => {
                assert!(open.is_none(), "two starts in a row: {events:?}");
                open = Some(at_sample);
            }
            VadEvent::Pause { .. } => {}
            VadEvent::SpeechEnd { at_sample } => {
                let start = open.take().expect("end without start");
                assert!(at_sample > start, "empty segment: {events:?}");
                out.push((start, at_sample));
            }
        }
    }
    if let Some(start) = open {
        out.push((start, len as u64));
    }
    out
}

fn assert_matches_labels(
    name: &str,
    found: &[(u64, u64)],
    truth: &[(u64, u64)],
    rate: u32,
    late_start_ms: u64,
) {
    let ms = |v: u64| v * 1000 / u64::from(rate);
    let frame = u64::from(rate) / 100;
    assert_eq!(
        found.len(),
        truth.len(),
        "{name}: found {found:?}, labels {truth:?}"
    );
    for (&(fs, fe), &(ts, te)) in found.iter().zip(truth) {
        assert!(
            fs + frame > ts && ms(fs.saturating_sub(ts)) <= late_start_ms,
            "{name}: start {fs} vs label {ts} (found {found:?})"
        );
        assert!(
            fe <= te + frame && ms(te.saturating_sub(fe)) <= 150,
            "{name}: end {fe} vs label {te} (found {found:?})"
        );
    }
}

#[test]
fn clean_speech_segments_match_the_labels() {
    let (pcm, rate) = load("speech_clean_8k.wav");
    assert_eq!(rate, 8000);
    let found = segments(&events(&pcm, VadConfig::new(rate), 160), pcm.len());
    assert_matches_labels(
        "clean 8k",
        &found,
        &labels("speech_clean_8k.labels"),
        rate,
        20,
    );
}

#[test]
fn speech_in_white_noise_and_hum_matches_the_labels() {
    let (pcm, rate) = load("speech_noisy_8k.wav");
    let found = segments(&events(&pcm, VadConfig::new(rate), 160), pcm.len());
    assert_matches_labels(
        "noisy 8k",
        &found,
        &labels("speech_clean_8k.labels"),
        rate,
        60,
    );
}

#[test]
fn speech_at_16k_in_pink_noise_matches_the_labels() {
    let (pcm, rate) = load("speech_16k.wav");
    assert_eq!(rate, 16000);
    let found = segments(&events(&pcm, VadConfig::new(rate), 320), pcm.len());
    assert_matches_labels("pink 16k", &found, &labels("speech_16k.labels"), rate, 60);
}

#[test]
fn upsampled_8k_speech_gives_the_same_segments_at_16k() {
    // The inbound path runs the VAD after 8k -> 16k; the band-limited features must not care.
    let (pcm, _) = load("speech_noisy_8k.wav");
    let mut up = StreamResampler::new(8000, 16000).unwrap();
    let mut wide = Vec::new();
    up.process(&pcm, &mut wide);
    up.flush(&mut wide);
    let at_8k = segments(&events(&pcm, VadConfig::new(8000), 160), pcm.len());
    let at_16k = segments(&events(&wide, VadConfig::new(16000), 320), wide.len());
    assert_eq!(at_8k.len(), at_16k.len(), "{at_8k:?} vs {at_16k:?}");
    for (a, b) in at_8k.iter().zip(&at_16k) {
        // Within 30 ms (3 frames): the resampler's anti-imaging filter removes the 3.6-4 kHz
        // noise that the 8 kHz path's gentle 3.4 kHz low-pass only attenuates, so the noise
        // floor differs slightly and a gliding onset crosses the threshold a frame or two apart.
        assert!((a.0 * 2).abs_diff(b.0) <= 480, "{at_8k:?} vs {at_16k:?}");
        assert!((a.1 * 2).abs_diff(b.1) <= 480, "{at_8k:?} vs {at_16k:?}");
    }
}

fn band_level_dbfs(pcm: &[i16]) -> f64 {
    let ms: f64 = pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64;
    10.0 * (ms / 32768.0f64.powi(2)).log10()
}

#[test]
fn line_noise_alone_never_starts_speech() {
    let (pcm, rate) = load("noise_only_8k.wav");
    let cfg = VadConfig::new(rate);
    // The noise is far above the absolute gate, so only the adaptive floor can reject it.
    assert!(band_level_dbfs(&pcm) > f64::from(cfg.min_level_dbfs) + 15.0);
    for chunk in [160, 37] {
        let ev = events(&pcm, cfg.clone(), chunk);
        assert!(ev.is_empty(), "noise triggered: {ev:?}");
    }
}

#[test]
fn bursts_shorter_than_min_speech_do_not_start_speech() {
    let (pcm, rate) = load("cough_8k.wav");
    let ev = events(&pcm, VadConfig::new(rate), 160);
    assert!(ev.is_empty(), "burst triggered: {ev:?}");
    // The bursts are loud and detectable: with a shorter minimum, both are reported where the
    // labels put them. This proves it is the 200 ms rule, not deafness, that ignores them.
    let eager = VadConfig {
        min_speech_ms: 80,
        ..VadConfig::new(rate)
    };
    let found = segments(&events(&pcm, eager, 160), pcm.len());
    let truth = labels("cough_8k.labels");
    assert_eq!(found.len(), truth.len(), "{found:?} vs {truth:?}");
    for (f, t) in found.iter().zip(&truth) {
        assert!(f.0.abs_diff(t.0) <= 400, "{found:?} vs {truth:?}");
    }
}

#[test]
fn chunking_does_not_change_events() {
    let (pcm, rate) = load("speech_noisy_8k.wav");
    let reference = events(&pcm, VadConfig::new(rate), pcm.len());
    assert_eq!(reference.len(), 6);
    for chunk in [1, 7, 80, 160, 161, 4096] {
        assert_eq!(
            events(&pcm, VadConfig::new(rate), chunk),
            reference,
            "chunk {chunk}"
        );
    }
}

#[test]
fn a_noise_level_jump_is_absorbed_within_the_noise_window() {
    // Line noise that suddenly gets 12 dB louder may look like speech at first, but the floor
    // must catch up within 9/8 noise_window_ms (the window slides in eighths), ending any
    // false segment one hangover later.
    let (noise, rate) = load("noise_only_8k.wav");
    let mut pcm = noise.clone();
    pcm.extend(noise.iter().map(|&s| (f32::from(s) * 4.0) as i16));
    pcm.extend(noise.iter().map(|&s| (f32::from(s) * 4.0) as i16));
    let cfg = VadConfig::new(rate);
    let limit =
        (cfg.noise_window_ms * 9 / 8 + cfg.hangover_ms + 100) as usize * rate as usize / 1000;
    let mut vad = Vad::new(cfg).unwrap();
    let mut ev = Vec::new();
    vad.process(&pcm[..noise.len() + limit], &mut ev);
    assert!(
        !vad.is_speaking(),
        "still speaking {limit} samples after the jump: {ev:?}"
    );
    vad.process(&pcm[noise.len() + limit..], &mut ev);
    assert!(!vad.is_speaking());
    assert!(
        !ev.iter()
            .any(|e| matches!(e, VadEvent::SpeechStart { at_sample } if *at_sample as usize > noise.len() + limit)),
        "{ev:?}"
    );
}
