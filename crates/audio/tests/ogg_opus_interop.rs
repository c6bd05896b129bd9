//! Ogg Opus interoperability: our recordings must play in an independent decoder (`opusdec`
//! from opus-tools), and `opusenc`'s output (the committed `tests/data/tts_sample.opus`) must
//! decode with our push reader, identically however the bytes are chunked.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use voxbridge_audio::ogg_opus::{OggOpusReader, OggOpusWriter};
use voxbridge_audio::wav::{read_wav, write_wav};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

fn tts_bytes() -> Vec<u8> {
    std::fs::read(fixture("tts_sample.opus")).expect("tts_sample.opus fixture")
}

fn decode_whole(bytes: &[u8], rate: u32) -> Vec<i16> {
    let mut r = OggOpusReader::new(rate).unwrap();
    r.push(bytes).unwrap();
    assert!(r.is_finished());
    let mut out = Vec::new();
    r.pull(&mut out);
    out
}

fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        xy += x * y;
        xx += x * x;
        yy += y * y;
    }
    xy / (xx * yy).sqrt().max(1e-9)
}

/// Runs `opusdec --rate RATE --no-dither in out.wav`; `None` (a counted skip, a failure under
/// CI) if opusdec is not installed.
fn opusdec(input: &Path, rate: u32, out: &Path) -> Option<(Vec<i16>, u32)> {
    if !voxbridge_testkit::require_tool("ogg_opus_interop: independent decoder", "opusdec") {
        return None;
    }
    let status = Command::new("opusdec")
        .args(["--quiet", "--no-dither", "--rate", &rate.to_string()])
        .arg(input)
        .arg(out)
        .status();
    match status {
        Ok(s) if s.success() => Some(read_wav(out).expect("opusdec wrote a WAV")),
        Ok(s) => panic!("opusdec failed on {}: {s}", input.display()),
        Err(e) => panic!("opusdec is installed but does not run: {e}"),
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("voxbridge-audio-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn opusdec_plays_our_recording_with_exact_length_and_alignment() {
    let (speech, rate) = read_wav(fixture("speech_clean_8k.wav")).unwrap();
    let mut writer = OggOpusWriter::new(Vec::new(), rate).unwrap();
    for frame in speech.chunks(160) {
        writer.write_pcm(frame).unwrap();
    }
    let bytes = writer.finish().unwrap();
    let dir = temp_dir("opusdec");
    let path = dir.join("recording.opus");
    std::fs::write(&path, &bytes).unwrap();

    let Some((decoded, out_rate)) = opusdec(&path, rate, &dir.join("decoded.wav")) else {
        return;
    };
    assert_eq!(out_rate, rate);
    // opusdec honours pre-skip and the end-trimming granule: same length as what we wrote.
    assert_eq!(decoded.len(), speech.len());
    // Aligned: the correlation peaks at lag 0, i.e. pre-skip is exactly the codec delay.
    let at = |lag: usize| correlation(&speech, &decoded[lag..]);
    let back = |lag: usize| correlation(&speech[lag..], &decoded);
    let c = at(0);
    for lag in 1..=3 {
        assert!(
            c > at(lag) && c > back(lag),
            "misaligned: lag 0 {c:.3}, +-{lag} better"
        );
    }
    // SILK at 16 kbit/s is not waveform-exact (noise-feedback LPC coding): ~0.9 on this
    // speech. Silence, garbage or misalignment by one sample score far lower.
    assert!(c >= 0.85, "correlation with the input {c:.3}");
    // And our reader agrees with opusdec. Compared at 48 kHz, where both run libopus without
    // any resampling (asked for 8 kHz, opusdec decodes at 48 kHz and resamples): identical up
    // to float rounding.
    let Some((theirs48, _)) = opusdec(&path, 48000, &dir.join("decoded48.wav")) else {
        return;
    };
    let ours48 = decode_whole(&bytes, 48000);
    assert_eq!(ours48.len(), theirs48.len());
    let c = correlation(&ours48, &theirs48);
    assert!(c >= 0.9999, "correlation with opusdec at 48 kHz {c:.5}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn opusenc_fixture_has_the_expected_headers_and_length() {
    let bytes = tts_bytes();
    let mut r = OggOpusReader::new(24000).unwrap();
    r.push(&bytes).unwrap();
    let head = *r.head().expect("OpusHead parsed");
    assert_eq!(
        (head.channels, head.input_sample_rate, head.pre_skip),
        (1, 24000, 312)
    );
    assert!(r.is_finished());
    let mut out = Vec::new();
    r.pull(&mut out);
    // Length = (final granule - pre-skip) at 24 kHz (RFC 7845 section 4.5), with the final
    // granule read straight from the last page header.
    let last = bytes.windows(4).rposition(|w| w == b"OggS").unwrap();
    let granule = u64::from_le_bytes(bytes[last + 6..last + 14].try_into().unwrap());
    assert_eq!(out.len() as u64, (granule - u64::from(head.pre_skip)) / 2);
    // About 1.61 s (opusinfo: "Playback length: 0m:01.610s").
    assert!(
        (38_500..38_800).contains(&out.len()),
        "{} samples",
        out.len()
    );
    let peak = out.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!(peak > 8000, "decoded audio is near-silent (peak {peak})");
}

#[test]
fn opusenc_fixture_matches_opusdec_at_every_call_rate() {
    let bytes = tts_bytes();
    let dir = temp_dir("fixture");
    for rate in [8000, 16000, 24000, 48000] {
        let ours = decode_whole(&bytes, rate);
        let Some((theirs, _)) = opusdec(&fixture("tts_sample.opus"), rate, &dir.join("tts.wav"))
        else {
            return;
        };
        assert_eq!(ours.len(), theirs.len(), "{rate} Hz");
        let c = correlation(&ours, &theirs);
        // At 24 and 48 kHz both are libopus decoding the same packets: identical up to float
        // rounding. At 8/16 kHz opusdec decodes at 48 kHz and resamples (speex),
        // while we let libopus decode natively at the target rate, which band-limits inside
        // the codec; measured 0.992 (8 kHz) and 0.961 (16 kHz). (Checked against the source
        // audio, the native decode is the closer of the two.)
        let bound = if rate >= 24000 { 0.9999 } else { 0.95 };
        assert!(c >= bound, "{rate} Hz: correlation with opusdec {c:.5}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn write_wav_of_decoded_tts_round_trips() {
    // The decoded TTS is what the bridge plays; keeping it as WAV must be lossless.
    let pcm = decode_whole(&tts_bytes(), 8000);
    let dir = temp_dir("wav");
    let path = dir.join("tts.wav");
    write_wav(&path, &pcm, 8000).unwrap();
    assert_eq!(read_wav(&path).unwrap(), (pcm, 8000));
    std::fs::remove_dir_all(dir).ok();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn opusenc_fixture_decodes_identically_for_any_chunking(
        sizes in proptest::collection::vec(1usize..3000, 1..200),
    ) {
        let bytes = tts_bytes();
        let reference = decode_whole(&bytes, 16000);
        let mut r = OggOpusReader::new(16000).unwrap();
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, later) = rest.split_at((*size).min(rest.len()));
            r.push(chunk).unwrap();
            r.pull(&mut out);
            rest = later;
        }
        prop_assert!(r.is_finished());
        prop_assert_eq!(out.len(), reference.len());
        prop_assert!(out == reference);
    }
}
