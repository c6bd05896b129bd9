//! Caller audio: mu-law -> PCM16 8 kHz -> pipeline rate -> VAD -> utterances.
//!
//! Every buffer here is allocated once per call and reused; the only per-frame growth is the
//! utterance buffer while speech is on (it becomes [`BrainEvent::Utterance`]'s `pcm`).
//!
//! The VAD confirms an onset `min_speech` after its first speech frame, so the audio from that
//! frame on is kept in a small pre-roll ring (`min_speech` + 300 ms) and copied into the
//! utterance when the onset is confirmed.

use std::time::Duration;

use voxbridge_audio::mulaw;
use voxbridge_audio::resample::StreamResampler;
use voxbridge_audio::vad::{Vad, VadConfig, VadEvent};

use crate::BrainEvent;

/// Twilio's rate.
const WIRE_RATE: u32 = 8000;
/// Extra pre-roll beyond `min_speech`: an onset run may contain gaps (up to the VAD's 60 ms
/// onset gap between speech frames), so it can span more than `min_speech`.
const PREROLL_SLACK_MS: u64 = 300;

/// What the caller's audio produced.
#[derive(Debug)]
pub(crate) enum Speech {
    /// VAD onset confirmed.
    Started,
    /// An utterance ended (or was cut at `max_utterance`, or by the end of the call).
    Utterance(BrainEvent),
    /// The caller paused ([`BrainEvent::Pause`]: what they said so far); only when pauses are
    /// asked for ([`InboundAudio::set_pauses`]).
    Pause(BrainEvent),
}

/// An utterance being built: `pcm[0]` is pipeline sample `start`.
#[derive(Debug)]
struct Building {
    start: u64,
    pcm: Vec<i16>,
}

pub(crate) struct InboundAudio {
    rate: u32,
    /// 8 kHz -> pipeline rate; `None` when the pipeline runs at 8 kHz.
    resampler: Option<StreamResampler>,
    pcm8: Vec<i16>,
    pipe: Vec<i16>,
    vad: Vad,
    vad_events: Vec<VadEvent>,
    /// Pre-roll ring of the most recent pipeline samples; sample `n` lives at `n % len`.
    ring: Vec<i16>,
    /// Pipeline samples seen (== the VAD's position).
    position: u64,
    utterance: Option<Building>,
    max_utterance: usize,
    /// VAD hangover in samples.
    hangover: usize,
    /// Samples fed to the VAD at a time, so events come no more than 20 ms apart in the stream
    /// and the ring never has to hold more than one piece beyond the pre-roll.
    piece: usize,
    /// Whether the VAD's pauses become [`Speech::Pause`] (a copy of the utterance so far).
    pauses: bool,
}

impl std::fmt::Debug for InboundAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundAudio")
            .field("rate", &self.rate)
            .field("position", &self.position)
            .field("speaking", &self.vad.is_speaking())
            .field(
                "utterance",
                &self.utterance.as_ref().map(|u| (u.start, u.pcm.len())),
            )
            .finish_non_exhaustive()
    }
}

/// Samples at `rate` in `d`, rounded down.
pub(crate) fn samples_in(d: Duration, rate: u32) -> u64 {
    (d.as_nanos() * u128::from(rate) / 1_000_000_000).min(u128::from(u64::MAX)) as u64
}

/// The silence that reports a pause: a third of the hangover, at most 200 ms, in whole 10 ms
/// frames (a hangover of 600 ms pauses at 200 ms; none below 30 ms).
fn pause_ms(hangover_ms: u32) -> u32 {
    (hangover_ms / 3).min(200) / 10 * 10
}

/// Duration of `samples` at `rate`.
pub(crate) fn duration_of(samples: u64, rate: u32) -> Duration {
    let nanos = u128::from(samples) * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64)
}

impl InboundAudio {
    /// Builds the pipeline; the caller has validated the settings (see `SessionConfig::validate`).
    pub(crate) fn new(
        rate: u32,
        min_speech: Duration,
        hangover: Duration,
        max_utterance: Duration,
    ) -> Result<Self, String> {
        let resampler = if rate == WIRE_RATE {
            None
        } else {
            Some(StreamResampler::new(WIRE_RATE, rate).map_err(|e| e.to_string())?)
        };
        let min_speech_ms = min_speech.as_millis().min(u128::from(u32::MAX)) as u32;
        let hangover_ms = hangover.as_millis().min(u128::from(u32::MAX)) as u32;
        let vad = Vad::new(VadConfig {
            min_speech_ms,
            hangover_ms,
            pause_ms: pause_ms(hangover_ms),
            ..VadConfig::new(rate)
        })
        .map_err(|e| e.to_string())?;
        let piece = (rate / 50) as usize;
        let preroll =
            samples_in(min_speech + Duration::from_millis(PREROLL_SLACK_MS), rate) as usize;
        Ok(Self {
            rate,
            resampler,
            pcm8: Vec::with_capacity(160),
            pipe: Vec::with_capacity(piece),
            vad,
            vad_events: Vec::with_capacity(4),
            ring: vec![0; preroll + piece],
            position: 0,
            utterance: None,
            max_utterance: (samples_in(max_utterance, rate) as usize).max(piece),
            hangover: samples_in(hangover, rate) as usize,
            piece,
            pauses: false,
        })
    }

    /// Reports pauses ([`Speech::Pause`]) from now on, or stops reporting them.
    pub(crate) fn set_pauses(&mut self, on: bool) {
        self.pauses = on;
    }

    /// Whether the VAD is inside an utterance.
    pub(crate) fn is_speaking(&self) -> bool {
        self.vad.is_speaking()
    }

    /// Processes one `media` payload (mu-law, 8 kHz), appending what it produced to `out`.
    pub(crate) fn process(&mut self, mulaw_payload: &[u8], out: &mut Vec<Speech>) {
        self.pcm8.clear();
        mulaw::decode(mulaw_payload, &mut self.pcm8);
        let mut pipe = std::mem::take(&mut self.pipe);
        pipe.clear();
        match &mut self.resampler {
            Some(r) => r.process(&self.pcm8, &mut pipe),
            None => pipe.extend_from_slice(&self.pcm8),
        }
        for piece in pipe.chunks(self.piece) {
            self.feed(piece, out);
        }
        self.pipe = pipe;
    }

    /// Delivers an utterance still being built (the call is ending).
    pub(crate) fn finish(&mut self, out: &mut Vec<Speech>) {
        if let Some(u) = self.utterance.take() {
            let end = u.start + u.pcm.len() as u64;
            self.emit(u, end, out);
        }
    }

    fn feed(&mut self, piece: &[i16], out: &mut Vec<Speech>) {
        self.vad_events.clear();
        self.vad.process(piece, &mut self.vad_events);
        self.ring_push(piece);
        if let Some(u) = &mut self.utterance {
            u.pcm.extend_from_slice(piece);
        }
        for i in 0..self.vad_events.len() {
            match self.vad_events[i] {
                VadEvent::SpeechStart { at_sample } => {
                    if let Some(u) = self.utterance.take() {
                        // Cannot happen (starts and ends alternate); deliver rather than lose.
                        let end = u.start + u.pcm.len() as u64;
                        self.emit(u, end, out);
                    }
                    self.utterance = Some(self.collect_ring(at_sample));
                    out.push(Speech::Started);
                }
                VadEvent::Pause { at_sample } => {
                    if self.pauses
                        && let Some(u) = &self.utterance
                    {
                        // What was said up to the pause; the utterance goes on being built.
                        let len = at_sample.saturating_sub(u.start).min(u.pcm.len() as u64);
                        if len > 0 {
                            out.push(Speech::Pause(BrainEvent::Pause {
                                pcm: u.pcm[..len as usize].to_vec(),
                                sample_rate: self.rate,
                                started_at: duration_of(u.start, self.rate),
                                ended_at: duration_of(u.start + len, self.rate),
                            }));
                        }
                    }
                }
                VadEvent::SpeechEnd { at_sample } => {
                    if let Some(u) = self.utterance.take() {
                        self.emit(u, at_sample, out);
                    }
                }
            }
        }
        // Long speech is delivered in `max_utterance` pieces. A piece is cut only once the
        // buffer is a hangover longer than that: the VAD reports an end a hangover late, so by
        // then any end inside the piece would have been seen, and the rest holds speech.
        while let Some(u) = &mut self.utterance {
            if u.pcm.len() < self.max_utterance + self.hangover {
                break;
            }
            let rest = u.pcm.split_off(self.max_utterance);
            let start = u.start + self.max_utterance as u64;
            let whole = std::mem::replace(u, Building { start, pcm: rest });
            let end = whole.start + whole.pcm.len() as u64;
            self.emit(whole, end, out);
        }
    }

    /// Emits `u` cut to end at pipeline sample `end` (nothing if that leaves it empty).
    fn emit(&self, mut u: Building, end: u64, out: &mut Vec<Speech>) {
        let len = end.saturating_sub(u.start).min(u.pcm.len() as u64);
        if len == 0 {
            return;
        }
        u.pcm.truncate(len as usize);
        out.push(Speech::Utterance(BrainEvent::Utterance {
            pcm: u.pcm,
            sample_rate: self.rate,
            started_at: duration_of(u.start, self.rate),
            ended_at: duration_of(u.start + len, self.rate),
        }));
    }

    fn ring_push(&mut self, piece: &[i16]) {
        // A piece is never longer than the ring (it holds the pre-roll plus one piece).
        let len = self.ring.len();
        let skipped = piece.len().saturating_sub(len);
        let tail = &piece[skipped..];
        let at = ((self.position + skipped as u64) % len as u64) as usize;
        let first = tail.len().min(len - at);
        self.ring[at..at + first].copy_from_slice(&tail[..first]);
        self.ring[..tail.len() - first].copy_from_slice(&tail[first..]);
        self.position += piece.len() as u64;
    }

    /// A new utterance holding the ring's samples from `start` (or the oldest it still has) to
    /// the current position.
    fn collect_ring(&self, start: u64) -> Building {
        let len = self.ring.len() as u64;
        let oldest = self.position.saturating_sub(len);
        let start = start.clamp(oldest, self.position);
        // One second of headroom so the first frames of speech do not reallocate.
        let mut pcm = Vec::with_capacity((self.position - start) as usize + self.rate as usize);
        for n in start..self.position {
            pcm.push(self.ring[(n % len) as usize]);
        }
        Building { start, pcm }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(rate: u32) -> InboundAudio {
        InboundAudio::new(
            rate,
            Duration::from_millis(200),
            Duration::from_millis(600),
            Duration::from_secs(30),
        )
        .unwrap()
    }

    /// 20 ms mu-law frames: `lead_ms` of near-silence, `tone_ms` of loud 700 Hz syllables,
    /// silence.
    fn frames(lead_ms: u32, tone_ms: u32, tail_ms: u32) -> Vec<Vec<u8>> {
        let total = (lead_ms + tone_ms + tail_ms) * 8;
        let pcm: Vec<i16> = (0..total)
            .map(|n| {
                // Syllables: 200 ms on, 50 ms off, so the noise floor does not rise to the tone.
                let on = (lead_ms * 8..(lead_ms + tone_ms) * 8).contains(&n)
                    && (n - lead_ms * 8) % 2000 < 1600;
                let dither = ((n * 7919) % 7) as i16 - 3;
                let t = n as f32 / 8000.0;
                let tone = if on {
                    6000.0 * (t * 700.0 * std::f32::consts::TAU).sin()
                } else {
                    0.0
                };
                tone as i16 + dither
            })
            .collect();
        pcm.chunks(160)
            .map(|c| {
                let mut out = Vec::new();
                mulaw::encode(c, &mut out);
                out
            })
            .collect()
    }

    #[test]
    fn tone_burst_becomes_one_utterance_with_vad_boundaries() {
        for rate in [8000, 16000] {
            let mut inbound = pipeline(rate);
            let mut out = Vec::new();
            for f in frames(500, 600, 1000) {
                inbound.process(&f, &mut out);
            }
            assert!(matches!(out[0], Speech::Started), "{rate}: {out:?}");
            let Speech::Utterance(BrainEvent::Utterance {
                pcm,
                sample_rate,
                started_at,
                ended_at,
            }) = &out[1]
            else {
                panic!("{rate}: {out:?}");
            };
            assert_eq!(out.len(), 2);
            assert_eq!(*sample_rate, rate);
            assert_eq!(*started_at, Duration::from_millis(500), "{rate}");
            let end_ms = ended_at.as_millis();
            assert!((1100..=1110).contains(&end_ms), "{rate}: ended {end_ms} ms");
            assert_eq!(
                pcm.len() as u64,
                samples_in(ended_at.saturating_sub(*started_at), rate)
            );
        }
    }

    #[test]
    fn utterance_samples_are_exactly_the_pipeline_stream() {
        // Several utterances, so the pre-roll ring wraps many times before each onset.
        let mut input = Vec::new();
        for _ in 0..4 {
            input.extend(frames(730, 900, 700));
        }
        for rate in [8000, 16000] {
            let mut inbound = pipeline(rate);
            let mut reference = StreamResampler::new(8000, rate).unwrap();
            let mut stream = Vec::new();
            let mut out = Vec::new();
            for f in &input {
                inbound.process(f, &mut out);
                let mut pcm8 = Vec::new();
                mulaw::decode(f, &mut pcm8);
                if rate == 8000 {
                    stream.extend(pcm8);
                } else {
                    reference.process(&pcm8, &mut stream);
                }
            }
            let mut found = 0;
            for s in &out {
                if let Speech::Utterance(BrainEvent::Utterance {
                    pcm, started_at, ..
                }) = s
                {
                    let start = samples_in(*started_at, rate) as usize;
                    assert_eq!(
                        pcm[..],
                        stream[start..start + pcm.len()],
                        "{rate} Hz at {start}"
                    );
                    found += 1;
                }
            }
            assert_eq!(found, 4, "{rate} Hz");
        }
    }

    #[test]
    fn long_speech_is_split_at_max_utterance() {
        let mut inbound = InboundAudio::new(
            8000,
            Duration::from_millis(200),
            Duration::from_millis(600),
            Duration::from_secs(1),
        )
        .unwrap();
        let mut out = Vec::new();
        for f in frames(500, 2500, 1000) {
            inbound.process(&f, &mut out);
        }
        let spans: Vec<(Duration, Duration, usize)> = out
            .iter()
            .filter_map(|s| match s {
                Speech::Utterance(BrainEvent::Utterance {
                    pcm,
                    started_at,
                    ended_at,
                    ..
                }) => Some((*started_at, *ended_at, pcm.len())),
                _ => None,
            })
            .collect();
        assert_eq!(spans.len(), 3, "{spans:?}");
        assert_eq!(spans[0].0, Duration::from_millis(500));
        assert_eq!(spans[0].1, Duration::from_millis(1500));
        assert_eq!(spans[1].0, Duration::from_millis(1500));
        assert_eq!(spans[1].2, 8000);
        assert_eq!(spans[2].0, Duration::from_millis(2500));
        // The last syllable of 2500 ms of syllables ends at 500 + 2450 ms.
        let end = spans[2].1.as_millis();
        assert!((2950..=2960).contains(&end), "{spans:?}");
    }

    #[test]
    fn finish_delivers_speech_in_progress() {
        let mut inbound = pipeline(16000);
        let mut out = Vec::new();
        for f in frames(500, 1000, 0) {
            inbound.process(&f, &mut out);
        }
        assert!(inbound.is_speaking());
        assert_eq!(out.len(), 1);
        inbound.finish(&mut out);
        assert!(matches!(
            out[1],
            Speech::Utterance(BrainEvent::Utterance { .. })
        ));
    }
}
