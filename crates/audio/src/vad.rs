//! Voice activity detector for telephone audio (8 or 16 kHz PCM16), used for barge-in and for
//! cutting caller utterances.
//!
//! How it decides, per 10 ms frame:
//! 1. **Band-limit** to the telephone speech band, 300..3400 Hz (ITU-T G.712's channel band):
//!    a 4th-order Butterworth high-pass at 300 Hz (two RBJ-cookbook biquads) removes 50/60 Hz
//!    mains hum and its low harmonics (-56 dB at 60 Hz), a 2nd-order low-pass at 3400 Hz
//!    removes hiss above the band (and makes 16 kHz input behave like 8 kHz input).
//! 2. **Frame energy** in dBFS (0 dBFS = mean square of a full-scale square wave).
//! 3. **Adaptive noise floor** by minimum statistics (R. Martin, 2001, simplified): the floor is
//!    the minimum of the lightly smoothed frame energy over the last
//!    [`VadConfig::noise_window_ms`]. Speech has gaps between syllables, so the minimum tracks
//!    the line noise even while someone talks, and it follows a rising noise level within one
//!    window plus one eighth (the window slides in eighths). Smoothing (about 30 ms) keeps a single dropped frame from dragging it down.
//! 4. A frame is **speech-like** if its energy exceeds the floor by
//!    [`VadConfig::threshold_db`] (1.5 dB less while already speaking: hysteresis) and is above
//!    the absolute gate [`VadConfig::min_level_dbfs`].
//! 5. **Onset**: speech starts once [`VadConfig::min_speech_ms`] of speech-like frames have
//!    accumulated, with gaps of at most [`VadConfig::onset_gap_ms`] between them. Coughs,
//!    clicks and "mm-hm" back-channels are shorter than the default 200 ms and are ignored.
//!    **Offset**: speech ends after [`VadConfig::hangover_ms`] without a speech-like frame.
//!
//! Events carry sample offsets since the stream started (or since [`Vad::reset`]):
//! `SpeechStart.at_sample` is the first sample of the first speech-like frame of the onset
//! run (the event itself is emitted `min_speech_ms` later, when the onset is confirmed), and
//! `SpeechEnd.at_sample` is one past the last sample of the last speech-like frame (emitted
//! `hangover_ms` later). Both are therefore frame-aligned (10 ms).
//!
//! [`Vad::process`] accepts chunks of any size and appends every event the chunk produced to
//! a caller-provided `Vec` (a long chunk can hold several utterances); splitting the same
//! audio differently yields the same events.

/// Errors from building a [`Vad`].
#[derive(Debug, thiserror::Error)]
pub enum VadError {
    /// The sample rate cannot carry the 300..3400 Hz band or does not split into 10 ms frames.
    #[error(
        "unsupported VAD sample rate {0} Hz: use 8000 or 16000 (any multiple of 100 Hz from \
         8000 to 48000 works)"
    )]
    SampleRate(u32),
    /// A tuning value is out of its range.
    #[error("invalid VAD setting `{field}` = {value}: {expected}")]
    Setting {
        /// The offending `VadConfig` field.
        field: &'static str,
        /// Its value.
        value: f64,
        /// What is accepted.
        expected: &'static str,
    },
}

/// A speech boundary, in samples since the start of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech began at `at_sample` (confirmed `min_speech_ms` later).
    SpeechStart {
        /// First sample of the onset.
        at_sample: u64,
    },
    /// Speech paused at `at_sample`: [`VadConfig::pause_ms`] of silence so far, before the
    /// hangover has run out. A `SpeechEnd` with the same `at_sample` follows unless speech
    /// resumes first. Only when `pause_ms` is set; at most once per silence.
    Pause {
        /// One past the last speech sample.
        at_sample: u64,
    },
    /// Speech ended at `at_sample` (confirmed `hangover_ms` later).
    SpeechEnd {
        /// One past the last speech sample.
        at_sample: u64,
    },
}

/// VAD configuration. Start from [`VadConfig::new`] (or `Default`, 8 kHz) and adjust.
#[derive(Debug, Clone, PartialEq)]
pub struct VadConfig {
    /// Input sample rate in Hz (8000 or 16000 on calls). Default 8000.
    pub sample_rate: u32,
    /// Speech-like time needed before `SpeechStart`. Default 200 ms: long enough to ignore a
    /// cough or an "mm-hm", short enough for barge-in to feel immediate.
    pub min_speech_ms: u32,
    /// Silence needed before `SpeechEnd`. Default 600 ms: spans the pauses people make
    /// between phrases of one answer without holding the turn long after they stop.
    pub hangover_ms: u32,
    /// How far above the noise floor a frame must be to count as speech. Default 6 dB: on the
    /// noisy fixtures (white/pink noise at 12-15 dB SNR, hum, hiss) 3 dB still gives no false
    /// onsets, and 9 dB already misses a short "Yes," at 12 dB SNR.
    pub threshold_db: f32,
    /// Frames quieter than this never count as speech. Default -55 dBFS, about 30 dB below
    /// normal telephone speech levels.
    pub min_level_dbfs: f32,
    /// Window of the noise-floor minimum. Default 2000 ms: longer than the longest run of
    /// continuous voicing, short enough to follow a change in line noise.
    pub noise_window_ms: u32,
    /// Longest gap between speech-like frames that still counts as one onset. Default 60 ms
    /// (the closure of a stop consonant).
    pub onset_gap_ms: u32,
    /// Silence after speech that reports a [`VadEvent::Pause`] (a likely end, for work that
    /// may start early: speculative recognition), shorter than `hangover_ms`. Default 0: none.
    pub pause_ms: u32,
}

impl VadConfig {
    /// Defaults (see each field) at `sample_rate`.
    pub fn new(sample_rate: u32) -> Self {
        Self {
            sample_rate,
            min_speech_ms: 200,
            hangover_ms: 600,
            threshold_db: 6.0,
            min_level_dbfs: -55.0,
            noise_window_ms: 2000,
            onset_gap_ms: 60,
            pause_ms: 0,
        }
    }
}

impl Default for VadConfig {
    fn default() -> Self {
        Self::new(8000)
    }
}

const FRAME_MS: u32 = 10;
/// Sub-windows of the minimum-statistics search (the window slides in these steps).
const SUBWINDOWS: usize = 8;
/// Hysteresis: once speaking, frames may be this much quieter and still count. Kept small:
/// the floor is a minimum, about 1 dB under the mean noise level, and with a 3 dB hysteresis
/// 1-5% of pure-noise frames still counted as speech, so 600 ms of unbroken "silence" (and
/// with it `SpeechEnd`) rarely came.
const HYSTERESIS_DB: f32 = 1.5;
/// Weight of the newest frame in the smoothed energy used for the noise floor.
const FLOOR_SMOOTHING: f32 = 0.3;
/// 0 dBFS reference: mean square of a full-scale square wave.
const FULL_SCALE_SQ: f32 = 32768.0 * 32768.0;

/// Filter state smaller than this (in 16-bit sample units, about -250 dBFS) is set to zero at
/// the end of every chunk. Without it, digital silence after speech (mu-law `0xFF`, a muted
/// caller) lets the state decay into f32 subnormals, where rounding holds it in a limit cycle
/// around 1e-45 for good, and every operation on a subnormal is 50-100x slower on Intel cores
/// (60 us instead of 1 us per 20 ms frame at 8 kHz). The fastest pole decays by about 8 decades
/// per 10 ms chunk, so state above this threshold at a chunk's end stays far above the
/// subnormal range (1.2e-38) until the next check.
const FLUSH_BELOW: f32 = 1e-10;

/// A biquad section, transposed direct form II (RBJ Audio EQ Cookbook coefficients).
#[derive(Debug, Clone, Copy)]
struct Biquad {
    b0: f32,
    b1: f32,
    b2: f32,
    a1: f32,
    a2: f32,
    z1: f32,
    z2: f32,
}

impl Biquad {
    fn new(rate: u32, hz: f32, q: f32, high_pass: bool) -> Self {
        let w0 = 2.0 * std::f32::consts::PI * hz / rate as f32;
        let (sin, cos) = w0.sin_cos();
        let alpha = sin / (2.0 * q);
        let a0 = 1.0 + alpha;
        let (b0, b1) = if high_pass {
            (f32::midpoint(1.0, cos), -(1.0 + cos))
        } else {
            ((1.0 - cos) / 2.0, 1.0 - cos)
        };
        Self {
            b0: b0 / a0,
            b1: b1 / a0,
            b2: b0 / a0,
            a1: -2.0 * cos / a0,
            a2: (1.0 - alpha) / a0,
            z1: 0.0,
            z2: 0.0,
        }
    }

    #[inline]
    fn run(&mut self, x: f32) -> f32 {
        let y = self.b0 * x + self.z1;
        self.z1 = self.b1 * x - self.a1 * y + self.z2;
        self.z2 = self.b2 * x - self.a2 * y;
        y
    }

    /// Sets a decayed state to exactly zero (see [`FLUSH_BELOW`]); zero input then keeps it
    /// there at full speed.
    #[inline]
    fn flush_tiny(&mut self) {
        if self.z1.abs() < FLUSH_BELOW && self.z2.abs() < FLUSH_BELOW {
            self.z1 = 0.0;
            self.z2 = 0.0;
        }
    }
}

/// The detector; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Vad {
    cfg: VadConfig,
    frame_len: usize,
    filters: [Biquad; 3],
    // Current partial frame.
    frame_fill: usize,
    frame_energy: f32,
    /// Samples consumed since start (end of the last complete frame + `frame_fill`).
    position: u64,
    // Noise floor (minimum statistics) over smoothed linear power.
    smoothed: f32,
    sub_len: usize,
    sub_fill: usize,
    sub_min: f32,
    sub_mins: [f32; SUBWINDOWS],
    sub_index: usize,
    // Decision state.
    speaking: bool,
    onset_start: Option<u64>,
    onset_frames: u32,
    gap_frames: u32,
    silent_frames: u32,
    last_speech_end: u64,
}

fn check(
    field: &'static str,
    value: f64,
    ok: bool,
    expected: &'static str,
) -> Result<(), VadError> {
    if ok {
        Ok(())
    } else {
        Err(VadError::Setting {
            field,
            value,
            expected,
        })
    }
}

impl Vad {
    /// Builds a detector, validating the configuration.
    pub fn new(cfg: VadConfig) -> Result<Self, VadError> {
        let rate = cfg.sample_rate;
        if !(8000..=48000).contains(&rate) || !rate.is_multiple_of(100) {
            return Err(VadError::SampleRate(rate));
        }
        check(
            "min_speech_ms",
            f64::from(cfg.min_speech_ms),
            (FRAME_MS..=10_000).contains(&cfg.min_speech_ms),
            "10..=10000 ms",
        )?;
        check(
            "hangover_ms",
            f64::from(cfg.hangover_ms),
            (FRAME_MS..=10_000).contains(&cfg.hangover_ms),
            "10..=10000 ms",
        )?;
        check(
            "threshold_db",
            f64::from(cfg.threshold_db),
            (1.0..=40.0).contains(&cfg.threshold_db),
            "1..=40 dB",
        )?;
        check(
            "min_level_dbfs",
            f64::from(cfg.min_level_dbfs),
            (-100.0..=0.0).contains(&cfg.min_level_dbfs),
            "-100..=0 dBFS",
        )?;
        check(
            "noise_window_ms",
            f64::from(cfg.noise_window_ms),
            (FRAME_MS * SUBWINDOWS as u32..=60_000).contains(&cfg.noise_window_ms),
            "80..=60000 ms",
        )?;
        check(
            "onset_gap_ms",
            f64::from(cfg.onset_gap_ms),
            cfg.onset_gap_ms <= 1000,
            "0..=1000 ms",
        )?;
        check(
            "pause_ms",
            f64::from(cfg.pause_ms),
            cfg.pause_ms == 0 || cfg.pause_ms < cfg.hangover_ms,
            "0 (none), or less than hangover_ms",
        )?;
        let frame_len = (rate / 100) as usize;
        // 4th-order Butterworth high-pass = two biquads with Q = 1/(2 cos(pi/8)), 1/(2 cos(3pi/8)).
        let filters = [
            Biquad::new(rate, 300.0, 0.541_196_1, true),
            Biquad::new(rate, 300.0, 1.306_563, true),
            Biquad::new(rate, 3400.0, std::f32::consts::FRAC_1_SQRT_2, false),
        ];
        let sub_len = ((cfg.noise_window_ms / FRAME_MS) as usize / SUBWINDOWS).max(1);
        Ok(Self {
            cfg,
            frame_len,
            filters,
            frame_fill: 0,
            frame_energy: 0.0,
            position: 0,
            smoothed: 0.0,
            sub_len,
            sub_fill: 0,
            sub_min: f32::INFINITY,
            sub_mins: [f32::INFINITY; SUBWINDOWS],
            sub_index: 0,
            speaking: false,
            onset_start: None,
            onset_frames: 0,
            gap_frames: 0,
            silent_frames: 0,
            last_speech_end: 0,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &VadConfig {
        &self.cfg
    }

    /// Whether speech is currently in progress (between `SpeechStart` and `SpeechEnd`).
    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// Samples consumed since the stream started.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Current noise-floor estimate in dBFS (band-limited), `None` before the first frame.
    pub fn noise_floor_dbfs(&self) -> Option<f32> {
        let floor = self.floor_power();
        floor.is_finite().then(|| power_db(floor))
    }

    /// Forgets all state; sample offsets restart at zero.
    pub fn reset(&mut self) {
        if let Ok(fresh) = Self::new(self.cfg.clone()) {
            *self = fresh;
        }
    }

    /// Consumes `samples` (any length) and appends the events they complete to `events`, in
    /// order. Returns how many events were appended.
    pub fn process(&mut self, samples: &[i16], events: &mut Vec<VadEvent>) -> usize {
        let before = events.len();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (self.frame_len - self.frame_fill).min(rest.len());
            let (now, later) = rest.split_at(take);
            let mut energy = self.frame_energy;
            for &s in now {
                let mut x = f32::from(s);
                for f in &mut self.filters {
                    x = f.run(x);
                }
                energy += x * x;
            }
            for f in &mut self.filters {
                f.flush_tiny();
            }
            self.frame_energy = energy;
            self.frame_fill += take;
            self.position += take as u64;
            rest = later;
            if self.frame_fill == self.frame_len {
                let power = self.frame_energy / self.frame_len as f32 / FULL_SCALE_SQ;
                self.frame_fill = 0;
                self.frame_energy = 0.0;
                self.handle_frame(power, events);
            }
        }
        events.len() - before
    }

    fn floor_power(&self) -> f32 {
        self.sub_mins.iter().copied().fold(self.sub_min, f32::min)
    }

    fn update_floor(&mut self, power: f32) {
        self.smoothed = if self.smoothed == 0.0 && self.sub_min.is_infinite() {
            power
        } else {
            FLOOR_SMOOTHING * power + (1.0 - FLOOR_SMOOTHING) * self.smoothed
        };
        self.sub_min = self.sub_min.min(self.smoothed);
        self.sub_fill += 1;
        if self.sub_fill == self.sub_len {
            self.sub_mins[self.sub_index] = self.sub_min;
            self.sub_index = (self.sub_index + 1) % SUBWINDOWS;
            self.sub_min = f32::INFINITY;
            self.sub_fill = 0;
        }
    }

    fn handle_frame(&mut self, power: f32, events: &mut Vec<VadEvent>) {
        // Decide against the floor learned from *previous* frames, then learn from this one.
        let level = power_db(power);
        let floor = self.floor_power();
        let floor_db = if floor.is_finite() {
            power_db(floor)
        } else {
            level
        };
        let threshold = if self.speaking {
            self.cfg.threshold_db - HYSTERESIS_DB
        } else {
            self.cfg.threshold_db
        };
        let speech_like = level >= floor_db + threshold && level >= self.cfg.min_level_dbfs;
        self.update_floor(power);

        let frame_end = self.position;
        let frame_start = frame_end - self.frame_len as u64;
        if self.speaking {
            if speech_like {
                self.silent_frames = 0;
                self.last_speech_end = frame_end;
            } else {
                self.silent_frames += 1;
                let silent_ms = self.silent_frames * FRAME_MS;
                let pause = self.cfg.pause_ms;
                // Once per silence: the frame that reaches `pause_ms` (frames are 10 ms).
                if pause > 0 && silent_ms >= pause && silent_ms - FRAME_MS < pause {
                    events.push(VadEvent::Pause {
                        at_sample: self.last_speech_end,
                    });
                }
                if silent_ms >= self.cfg.hangover_ms {
                    self.speaking = false;
                    self.silent_frames = 0;
                    events.push(VadEvent::SpeechEnd {
                        at_sample: self.last_speech_end,
                    });
                }
            }
            return;
        }
        if speech_like {
            let start = *self.onset_start.get_or_insert(frame_start);
            self.onset_frames += 1;
            self.gap_frames = 0;
            if self.onset_frames * FRAME_MS >= self.cfg.min_speech_ms {
                self.speaking = true;
                self.onset_start = None;
                self.onset_frames = 0;
                self.last_speech_end = frame_end;
                events.push(VadEvent::SpeechStart { at_sample: start });
            }
        } else if self.onset_start.is_some() {
            self.gap_frames += 1;
            if self.gap_frames * FRAME_MS > self.cfg.onset_gap_ms {
                self.onset_start = None;
                self.onset_frames = 0;
                self.gap_frames = 0;
            }
        }
    }
}

/// Power (relative to full scale) in dB, floored at -120 dB so silence stays finite.
fn power_db(power: f32) -> f32 {
    10.0 * power.max(1e-12).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lead_ms` of a tiny dither floor, then `tone_ms` of a 1 kHz tone, then `tail_ms` floor.
    fn burst(rate: u32, lead_ms: u32, tone_ms: u32, tail_ms: u32) -> Vec<i16> {
        let per_ms = rate / 1000;
        let total = (lead_ms + tone_ms + tail_ms) * per_ms;
        (0..total)
            .map(|n| {
                let on = (lead_ms * per_ms..(lead_ms + tone_ms) * per_ms).contains(&n);
                // A deterministic +-3 LSB dither keeps the floor finite, like a real line.
                let floor = f32::from((n * 7919 % 7) as i16 - 3);
                let t = n as f32 / rate as f32;
                let tone = if on {
                    3000.0 * (2.0 * std::f32::consts::PI * 1000.0 * t).sin()
                } else {
                    0.0
                };
                (tone + floor) as i16
            })
            .collect()
    }

    #[test]
    fn digital_silence_after_speech_settles_the_filters_at_exact_zero() {
        for rate in [8000, 16000, 48000] {
            let mut vad = Vad::new(VadConfig::new(rate)).unwrap();
            let mut events = Vec::new();
            let speech = burst(rate, 0, 300, 0);
            vad.process(&speech, &mut events);
            assert!(
                vad.filters.iter().any(|f| f.z1 != 0.0),
                "{rate} Hz: no state"
            );
            // 200 ms of digital silence in 10 ms chunks: the state decays, never becomes
            // subnormal (slow on Intel cores) and ends at exactly zero.
            let chunk = vec![0_i16; rate as usize / 100];
            for i in 0..20 {
                vad.process(&chunk, &mut events);
                for (n, f) in vad.filters.iter().enumerate() {
                    assert!(
                        !f.z1.is_subnormal() && !f.z2.is_subnormal(),
                        "{rate} Hz, chunk {i}, filter {n}: subnormal state {} {}",
                        f.z1,
                        f.z2
                    );
                }
            }
            for f in &vad.filters {
                assert_eq!((f.z1, f.z2), (0.0, 0.0), "{rate} Hz");
            }
        }
    }

    #[test]
    fn tone_burst_reports_its_onset_and_its_end() {
        for rate in [8000, 16000] {
            let pcm = burst(rate, 500, 400, 1000);
            let mut vad = Vad::new(VadConfig::new(rate)).unwrap();
            let mut events = Vec::new();
            let mut speaking_at_600ms = false;
            for (i, chunk) in pcm.chunks(rate as usize / 100).enumerate() {
                vad.process(chunk, &mut events);
                if i == 59 {
                    speaking_at_600ms = vad.is_speaking();
                }
            }
            let r = u64::from(rate);
            assert_eq!(events.len(), 2, "{rate} Hz: {events:?}");
            assert_eq!(events[0], VadEvent::SpeechStart { at_sample: r / 2 });
            // The band-pass filters ring for a few ms after the tone stops: the end may fall
            // one 10 ms frame late, never early.
            let VadEvent::SpeechEnd { at_sample: end } = events[1] else {
                panic!("{events:?}");
            };
            assert!(
                (r * 9 / 10..=r * 9 / 10 + r / 100).contains(&end),
                "{rate} Hz: {events:?}"
            );
            // 100 ms into the tone the 200 ms minimum has not elapsed yet.
            assert!(!speaking_at_600ms);
            assert!(!vad.is_speaking());
        }
    }

    #[test]
    fn a_pause_comes_before_the_end_with_the_same_sample_and_once_per_silence() {
        let cfg = VadConfig {
            pause_ms: 200,
            ..VadConfig::new(8000)
        };
        // Two bursts 300 ms apart (a pause, no end), then silence (a pause, then the end).
        let mut pcm = burst(8000, 500, 400, 300);
        pcm.extend(burst(8000, 0, 400, 1000));
        let mut vad = Vad::new(cfg).unwrap();
        let mut events = Vec::new();
        for chunk in pcm.chunks(80) {
            vad.process(chunk, &mut events);
        }
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                VadEvent::SpeechStart { .. } => "start",
                VadEvent::Pause { .. } => "pause",
                VadEvent::SpeechEnd { .. } => "end",
            })
            .collect();
        assert_eq!(kinds, ["start", "pause", "pause", "end"], "{events:?}");
        let (VadEvent::Pause { at_sample: first }, VadEvent::Pause { at_sample: last }) =
            (events[1], events[2])
        else {
            unreachable!()
        };
        assert!((7200..=7280).contains(&first), "{events:?}");
        assert_eq!(events[3], VadEvent::SpeechEnd { at_sample: last });
        // Off by default; and it must be shorter than the hangover.
        assert_eq!(VadConfig::default().pause_ms, 0);
        assert!(
            Vad::new(VadConfig {
                pause_ms: 600,
                ..VadConfig::default()
            })
            .is_err()
        );
    }

    #[test]
    fn burst_shorter_than_min_speech_is_ignored_but_longer_one_is_not() {
        let mut events = Vec::new();
        let mut vad = Vad::new(VadConfig::new(8000)).unwrap();
        // 170 ms of tone plus up to 10 ms of filter ringing stays under 200 ms.
        vad.process(&burst(8000, 500, 170, 1000), &mut events);
        assert!(events.is_empty(), "{events:?}");
        let mut vad = Vad::new(VadConfig::new(8000)).unwrap();
        vad.process(&burst(8000, 500, 200, 1000), &mut events);
        assert_eq!(events.len(), 2, "{events:?}");
    }

    #[test]
    fn one_chunk_can_return_several_events() {
        let mut pcm = burst(8000, 500, 400, 1000);
        pcm.extend(burst(8000, 0, 400, 1000));
        let mut vad = Vad::new(VadConfig::new(8000)).unwrap();
        let mut events = Vec::new();
        assert_eq!(vad.process(&pcm, &mut events), 4);
        assert_eq!(vad.position(), pcm.len() as u64);
    }

    #[test]
    fn reset_restarts_sample_offsets() {
        let pcm = burst(8000, 500, 400, 1000);
        let mut vad = Vad::new(VadConfig::new(8000)).unwrap();
        let mut first = Vec::new();
        vad.process(&pcm, &mut first);
        vad.reset();
        let mut second = Vec::new();
        vad.process(&pcm, &mut second);
        assert_eq!(first, second);
    }

    #[test]
    fn bad_configuration_is_rejected_with_the_field_name() {
        assert!(matches!(
            Vad::new(VadConfig::new(8001)),
            Err(VadError::SampleRate(8001))
        ));
        assert!(matches!(
            Vad::new(VadConfig::new(4000)),
            Err(VadError::SampleRate(4000))
        ));
        let err = Vad::new(VadConfig {
            threshold_db: 0.0,
            ..VadConfig::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("threshold_db"), "{err}");
        let err = Vad::new(VadConfig {
            hangover_ms: 0,
            ..VadConfig::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("hangover_ms"), "{err}");
    }
}
