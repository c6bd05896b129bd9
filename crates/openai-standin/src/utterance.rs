//! Checks that the audio of a transcription request is the caller's utterance.
//!
//! A stand-in that answers queued transcripts whatever audio arrives lets a bridge that sends
//! silence, a truncated clip or the wrong stretch of the call pass its tests. A queued
//! transcript can therefore carry an [`UtteranceCheck`], made from the fixture the caller
//! speaks (`tests/data/*.wav` and the `.labels` file beside it: one line per utterance,
//! `start end` in samples at the WAV's rate). The transcription endpoint then measures the WAV
//! it receives ([`AudioStats`]) and answers 400 with the mismatch, which it also records
//! ([`crate::StandinHandle::audio_mismatches`]), instead of the transcript.
//!
//! What is compared, with the margins a real bridge needs:
//! - **Duration** within [`DURATION_EARLY`] shorter and [`DURATION_LATE`] longer than the label:
//!   the VAD may start up to 60 ms late in noise and end a sentence-final decay up to 150 ms
//!   early (the bridge sends 3.03 s for the 3.13 s first utterance of `speech_clean_8k`), and
//!   the later bound leaves room for a short pre-roll. The fixture's second and third
//!   utterances (1.88 s, 1.61 s) are told apart.
//! - **Voiced time**, the 20 ms windows louder than [`VOICED_BELOW_REFERENCE`] under the
//!   reference's RMS, at least [`MIN_VOICED_SHARE`] of the reference's: a clip of the right
//!   length that is half silence (a truncated clip padded out) fails here.
//! - **RMS** at most [`RMS_DROP_DB`] below the reference's: silence and a wrong gain fail here.

use std::io;
use std::path::Path;
use std::time::Duration;

/// How much shorter than its label an utterance may reach ASR.
pub const DURATION_EARLY: Duration = Duration::from_millis(250);
/// How much longer than its label an utterance may reach ASR.
pub const DURATION_LATE: Duration = Duration::from_millis(300);
/// A 20 ms window counts as voiced when its RMS is at most this far under the reference's.
pub const VOICED_BELOW_REFERENCE: f64 = 20.0;
/// The share of the reference's voiced time the received audio must have.
pub const MIN_VOICED_SHARE: f64 = 0.85;
/// How far the received RMS may fall under the reference's, in dB.
pub const RMS_DROP_DB: f64 = 6.0;

/// Window of the voiced-time measure.
const WINDOW: Duration = Duration::from_millis(20);

/// What was measured on a clip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioStats {
    /// Length in seconds.
    pub seconds: f64,
    /// RMS in dBFS (full scale = 32768; `-inf` for digital silence).
    pub rms_dbfs: f64,
    /// Seconds of 20 ms windows at or above the voiced threshold it was measured with.
    pub voiced_seconds: f64,
}

impl AudioStats {
    /// Measures `pcm` at `rate`, counting windows at or above `voiced_dbfs` as voiced.
    pub fn measure(pcm: &[i16], rate: u32, voiced_dbfs: f64) -> Self {
        let window = (u64::from(rate) * WINDOW.as_millis() as u64 / 1000).max(1) as usize;
        let voiced = pcm
            .chunks_exact(window)
            .filter(|w| rms_dbfs(w) >= voiced_dbfs)
            .count();
        Self {
            seconds: pcm.len() as f64 / f64::from(rate.max(1)),
            rms_dbfs: rms_dbfs(pcm),
            voiced_seconds: voiced as f64 * WINDOW.as_secs_f64(),
        }
    }
}

/// RMS of `pcm` in dBFS.
fn rms_dbfs(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return f64::NEG_INFINITY;
    }
    let mean_square = pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64;
    10.0 * (mean_square / 32768.0_f64.powi(2)).log10()
}

/// The audio a queued transcript expects: the utterance it transcribes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UtteranceCheck {
    /// The reference utterance's length.
    pub duration: Duration,
    /// The reference's RMS, dBFS.
    pub rms_dbfs: f64,
    /// Windows at or above this level count as voiced, dBFS.
    pub voiced_dbfs: f64,
    /// The reference's voiced time, seconds.
    pub voiced_seconds: f64,
}

impl UtteranceCheck {
    /// The check for `reference`, the utterance as the caller speaks it, at `rate`.
    pub fn of(reference: &[i16], rate: u32) -> Self {
        let rms = rms_dbfs(reference);
        let voiced_dbfs = rms - VOICED_BELOW_REFERENCE;
        let stats = AudioStats::measure(reference, rate, voiced_dbfs);
        Self {
            duration: Duration::from_secs_f64(stats.seconds),
            rms_dbfs: rms,
            voiced_dbfs,
            voiced_seconds: stats.voiced_seconds,
        }
    }

    /// The check for utterance `index` (0-based line) of `labels` in the fixture `wav`.
    pub fn from_fixture(wav: &Path, labels: &Path, index: usize) -> io::Result<Self> {
        let (pcm, rate) = voxbridge_audio::wav::read_wav(wav).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", wav.display()),
            )
        })?;
        let (start, end) = label(&std::fs::read_to_string(labels)?, index).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", labels.display()),
            )
        })?;
        let clip = pcm.get(start..end).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} line {}: {start}..{end} is outside {} ({} samples)",
                    labels.display(),
                    index + 1,
                    wav.display(),
                    pcm.len()
                ),
            )
        })?;
        Ok(Self::of(clip, rate))
    }

    /// The accepted length range.
    pub fn duration_range(&self) -> (Duration, Duration) {
        (
            self.duration.saturating_sub(DURATION_EARLY),
            self.duration + DURATION_LATE,
        )
    }

    /// Measures `pcm` at `rate` and compares it with the reference; the error says what
    /// differs and by how much.
    pub fn check(&self, pcm: &[i16], rate: u32) -> Result<AudioStats, String> {
        let stats = AudioStats::measure(pcm, rate, self.voiced_dbfs);
        let (shortest, longest) = self.duration_range();
        let mut problems = Vec::new();
        if stats.seconds < shortest.as_secs_f64() || stats.seconds > longest.as_secs_f64() {
            problems.push(format!(
                "{:.2} s long, expected {:.2}..{:.2} s (the utterance is {:.2} s)",
                stats.seconds,
                shortest.as_secs_f64(),
                longest.as_secs_f64(),
                self.duration.as_secs_f64()
            ));
        }
        let min_voiced = self.voiced_seconds * MIN_VOICED_SHARE;
        if stats.voiced_seconds < min_voiced {
            problems.push(format!(
                "{:.2} s voiced (20 ms windows >= {:.1} dBFS), expected >= {min_voiced:.2} s",
                stats.voiced_seconds, self.voiced_dbfs
            ));
        }
        let min_rms = self.rms_dbfs - RMS_DROP_DB;
        if stats.rms_dbfs < min_rms {
            problems.push(format!(
                "RMS {:.1} dBFS, expected >= {min_rms:.1} dBFS (the utterance's is {:.1})",
                stats.rms_dbfs, self.rms_dbfs
            ));
        }
        if problems.is_empty() {
            Ok(stats)
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Line `index` of a `.labels` file: `start end` sample indices.
fn label(text: &str, index: usize) -> Result<(usize, usize), String> {
    let line = text
        .lines()
        .nth(index)
        .ok_or_else(|| format!("no line {}", index + 1))?;
    let bounds: Vec<usize> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("line {}: {e}", index + 1))?;
    match bounds[..] {
        [start, end] if start < end => Ok((start, end)),
        _ => Err(format!(
            "line {}: expected \"start end\", got {line:?}",
            index + 1
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 16_000;

    /// A voiced-like clip: a 200 Hz tone whose loudness follows syllables (on 160 ms, soft
    /// 40 ms), `seconds` long.
    fn speech_like(seconds: f64) -> Vec<i16> {
        let n = (seconds * f64::from(RATE)) as usize;
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(RATE);
                let gain = if (t * 5.0).fract() < 0.8 {
                    6_000.0
                } else {
                    200.0
                };
                (gain * (2.0 * std::f64::consts::PI * 200.0 * t).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn the_utterance_itself_and_within_the_margins_pass() {
        let reference = speech_like(2.0);
        let check = UtteranceCheck::of(&reference, RATE);
        assert_eq!(check.duration, Duration::from_secs(2));
        assert!(check.check(&reference, RATE).is_ok());
        let mut with_silence = vec![0i16; 3_200]; // 200 ms pre-roll
        with_silence.extend(&reference[..reference.len() - 2_400]); // ends 150 ms early
        let stats = check
            .check(&with_silence, RATE)
            .expect("within the margins");
        assert!((stats.seconds - 2.05).abs() < 1e-9);
        let mut long = reference.clone();
        long.extend(vec![0i16; 9_600]); // the whole 600 ms hangover
        assert!(check.check(&long, RATE).is_err());
    }

    #[test]
    fn silence_a_truncated_clip_and_a_padded_half_fail() {
        let reference = speech_like(2.0);
        let check = UtteranceCheck::of(&reference, RATE);
        let silence = vec![0i16; reference.len()];
        let error = check.check(&silence, RATE).expect_err("silence");
        assert!(error.contains("voiced") && error.contains("RMS"), "{error}");
        let truncated = &reference[..reference.len() / 2];
        let error = check.check(truncated, RATE).expect_err("truncated");
        assert!(error.contains("1.00 s long"), "{error}");
        let mut padded = truncated.to_vec();
        padded.resize(reference.len(), 0);
        let error = check.check(&padded, RATE).expect_err("half silence");
        assert!(error.contains("voiced"), "{error}");
        let quiet: Vec<i16> = reference.iter().map(|s| s / 8).collect();
        let error = check.check(&quiet, RATE).expect_err("18 dB down");
        assert!(error.contains("RMS"), "{error}");
    }

    #[test]
    fn labels_parse_and_bad_lines_are_named() {
        assert_eq!(label("6400 31435\n41035 56113\n", 1), Ok((41035, 56113)));
        assert!(label("6400 31435\n", 1).is_err_and(|e| e.contains("no line 2")));
        assert!(label("6400\n", 0).is_err_and(|e| e.contains("start end")));
        assert!(label("9 3\n", 0).is_err());
        assert!(label("a b\n", 0).is_err_and(|e| e.contains("line 1")));
    }

    #[test]
    fn the_fixture_utterances_are_told_apart() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data");
        let wav = data.join("speech_clean_8k.wav");
        let labels = data.join("speech_clean_8k.labels");
        let first = UtteranceCheck::from_fixture(&wav, &labels, 0).expect("first utterance");
        let second = UtteranceCheck::from_fixture(&wav, &labels, 1).expect("second utterance");
        assert!((first.duration.as_secs_f64() - 3.129).abs() < 0.001);
        let (pcm, rate) = voxbridge_audio::wav::read_wav(&wav).expect("fixture");
        assert!(first.check(&pcm[6400..31435], rate).is_ok());
        assert!(first.check(&pcm[41035..56113], rate).is_err(), "the second");
        assert!(second.check(&pcm[41035..56113], rate).is_ok());
        assert!(second.check(&pcm[65713..78601], rate).is_err(), "the third");
        assert!(UtteranceCheck::from_fixture(&wav, &labels, 3).is_err());
    }
}
