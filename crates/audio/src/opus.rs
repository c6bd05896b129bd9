//! Opus (RFC 6716) encoding and decoding of 20 ms mono frames at 8, 12, 16, 24 or 48 kHz,
//! over libopus through `audiopus`, with packet-loss concealment for missing packets.
//!
//! 20 ms is Opus's default frame duration (RFC 6716 section 2.1.4) and Twilio's media frame,
//! so one frame in is one packet out. The encoder is configured for `VoIP` (speech-optimised
//! SILK/hybrid modes). Decoded samples are appended to a caller-provided `Vec`.

use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Bitrate, Channels, SampleRate, packet::Packet};

/// Errors from the Opus encoder and decoder.
#[derive(Debug, thiserror::Error)]
pub enum OpusError {
    /// Opus only runs at 8, 12, 16, 24 or 48 kHz (RFC 6716 section 2).
    #[error("unsupported Opus sample rate {0} Hz: use 8000, 12000, 16000, 24000 or 48000")]
    SampleRate(u32),
    /// `encode` was given a frame that is not exactly 20 ms long.
    #[error("Opus frame must be {expected} samples (20 ms), got {got}")]
    FrameSize {
        /// Samples in 20 ms at the encoder's rate.
        expected: usize,
        /// Samples given.
        got: usize,
    },
    /// The bitrate is outside Opus's 500..=512000 bit/s range.
    #[error("Opus bitrate {0} bit/s is outside 500..=512000")]
    Bitrate(i32),
    /// libopus reported an error (for decoding: a corrupt packet).
    #[error("libopus: {0}")]
    Codec(#[from] audiopus::Error),
}

/// Maps a rate in Hz to an Opus rate.
pub(crate) fn opus_rate(hz: u32) -> Result<SampleRate, OpusError> {
    match hz {
        8000 => Ok(SampleRate::Hz8000),
        12000 => Ok(SampleRate::Hz12000),
        16000 => Ok(SampleRate::Hz16000),
        24000 => Ok(SampleRate::Hz24000),
        48000 => Ok(SampleRate::Hz48000),
        other => Err(OpusError::SampleRate(other)),
    }
}

/// Largest packet libopus can emit for one frame (RFC 6716 section 3.2.1: 1275 bytes per
/// frame); rounded up for headroom.
const MAX_PACKET: usize = 1500;

/// Encodes 20 ms mono PCM16 frames into Opus packets.
#[derive(Debug)]
pub struct OpusEncoder {
    inner: Encoder,
    sample_rate: u32,
    frame_len: usize,
    packet: Box<[u8; MAX_PACKET]>,
}

impl OpusEncoder {
    /// `VoIP` encoder at `sample_rate` with libopus's default bitrate for that rate.
    pub fn new(sample_rate: u32) -> Result<Self, OpusError> {
        let inner = Encoder::new(opus_rate(sample_rate)?, Channels::Mono, Application::Voip)?;
        Ok(Self {
            inner,
            sample_rate,
            frame_len: sample_rate as usize / 50,
            packet: Box::new([0; MAX_PACKET]),
        })
    }

    /// `VoIP` encoder with an explicit target bitrate in bit/s.
    pub fn with_bitrate(sample_rate: u32, bits_per_second: i32) -> Result<Self, OpusError> {
        if !(500..=512_000).contains(&bits_per_second) {
            return Err(OpusError::Bitrate(bits_per_second));
        }
        let mut encoder = Self::new(sample_rate)?;
        encoder
            .inner
            .set_bitrate(Bitrate::BitsPerSecond(bits_per_second))?;
        Ok(encoder)
    }

    /// Sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Samples per 20 ms frame.
    pub fn frame_samples(&self) -> usize {
        self.frame_len
    }

    /// Encoder lookahead in samples at the encoder's rate: the decoder output lags the input
    /// by this much (Ogg Opus calls it pre-skip, RFC 7845 section 4.2).
    pub fn lookahead(&self) -> Result<u32, OpusError> {
        Ok(self.inner.lookahead()?)
    }

    /// Encodes exactly one 20 ms frame and appends the packet to `packet`; returns its length.
    pub fn encode(&mut self, frame: &[i16], packet: &mut Vec<u8>) -> Result<usize, OpusError> {
        if frame.len() != self.frame_len {
            return Err(OpusError::FrameSize {
                expected: self.frame_len,
                got: frame.len(),
            });
        }
        let n = self.inner.encode(frame, &mut self.packet[..])?;
        packet.extend_from_slice(&self.packet[..n]);
        Ok(n)
    }
}

/// Decodes Opus packets (any frame duration up to 120 ms) into mono PCM16.
#[derive(Debug)]
pub struct OpusDecoder {
    inner: Decoder,
    sample_rate: u32,
    scratch: Vec<i16>,
}

impl OpusDecoder {
    /// Mono decoder producing `sample_rate` Hz (Opus decodes any stream at any of its rates).
    pub fn new(sample_rate: u32) -> Result<Self, OpusError> {
        let inner = Decoder::new(opus_rate(sample_rate)?, Channels::Mono)?;
        Ok(Self {
            inner,
            sample_rate,
            // The longest Opus packet is 120 ms (RFC 6716 section 3.2.5).
            scratch: vec![0; sample_rate as usize * 120 / 1000],
        })
    }

    /// Output sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Decodes one packet and appends its samples to `out`; returns how many. An empty packet
    /// is treated as lost (RFC 7845 allows zero-length packets for missing data) and
    /// concealed.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<i16>) -> Result<usize, OpusError> {
        if packet.is_empty() {
            return self.decode_lost(out);
        }
        let packet = Packet::try_from(packet)?;
        let signals = (&mut self.scratch[..]).try_into()?;
        let n = self.inner.decode(Some(packet), signals, false)?;
        out.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }

    /// Conceals one lost 20 ms packet (libopus PLC: extrapolates the last pitch period and
    /// fades out) and appends the 20 ms of samples to `out`.
    pub fn decode_lost(&mut self, out: &mut Vec<i16>) -> Result<usize, OpusError> {
        let frame = self.sample_rate as usize / 50;
        let signals = (&mut self.scratch[..frame]).try_into()?;
        let n = self.inner.decode(None, signals, false)?;
        out.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A linear chirp from 200 Hz to 3 kHz: speech-band and aperiodic, so the correlation
    /// peak identifies the codec delay unambiguously.
    pub(crate) fn chirp(rate: u32, len: usize) -> Vec<i16> {
        let duration = len as f64 / f64::from(rate);
        (0..len)
            .map(|n| {
                let t = n as f64 / f64::from(rate);
                let phase = 2.0 * std::f64::consts::PI * (200.0 * t + 1400.0 * t * t / duration);
                (8000.0 * phase.sin()) as i16
            })
            .collect()
    }

    fn tone(rate: u32, hz: f64, len: usize) -> Vec<i16> {
        (0..len)
            .map(|n| {
                (8000.0 * (2.0 * std::f64::consts::PI * hz * n as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    /// Best normalised cross-correlation over lags `0..=max_lag` (Opus output lags by its
    /// lookahead).
    pub(crate) fn best_correlation(
        reference: &[i16],
        decoded: &[i16],
        max_lag: usize,
    ) -> (f64, usize) {
        let mut best = (f64::MIN, 0);
        for lag in 0..=max_lag {
            let n = reference.len().min(decoded.len().saturating_sub(lag));
            let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
            for i in 0..n {
                let x = f64::from(reference[i]);
                let y = f64::from(decoded[i + lag]);
                xy += x * y;
                xx += x * x;
                yy += y * y;
            }
            let c = xy / (xx * yy).sqrt().max(1e-9);
            if c > best.0 {
                best = (c, lag);
            }
        }
        best
    }

    #[test]
    fn chirp_survives_encode_decode_at_every_call_rate() {
        for rate in [8000, 16000, 24000, 48000] {
            let input = chirp(rate, rate as usize); // 1 s
            let mut enc = OpusEncoder::with_bitrate(rate, 32_000).unwrap();
            let mut dec = OpusDecoder::new(rate).unwrap();
            let mut out = Vec::new();
            let mut packet = Vec::new();
            for frame in input.chunks(enc.frame_samples()) {
                packet.clear();
                enc.encode(frame, &mut packet).unwrap();
                assert_eq!(dec.decode(&packet, &mut out).unwrap(), enc.frame_samples());
            }
            assert_eq!(out.len(), input.len());
            let lookahead = enc.lookahead().unwrap() as usize;
            // Skip the first 100 ms while the codec converges.
            let skip = rate as usize / 10;
            let (c, lag) = best_correlation(
                &input[skip..input.len() - lookahead],
                &out[skip..],
                2 * lookahead,
            );
            // Opus is perceptual: at 32 kbit/s the waveform match is ~0.99 in SILK modes (8,
            // 16 kHz) and ~0.97 in hybrid/CELT (24, 48 kHz). Silence, a wrong rate or a
            // misaligned frame scores far below 0.95.
            assert!(c >= 0.95, "{rate} Hz: correlation {c:.3}");
            // The output lags by the reported lookahead; in CELT/hybrid modes the correlation
            // peak may sit up to 50 us off it (the MDCT window is not linear phase).
            let tolerance = rate as usize / 20_000;
            assert!(
                lag.abs_diff(lookahead) <= tolerance,
                "{rate} Hz: lag {lag}, lookahead {lookahead}"
            );
        }
    }

    #[test]
    fn lost_packets_are_concealed_with_a_full_frame() {
        let rate = 16000;
        let input = tone(rate, 300.0, rate as usize / 5);
        let mut enc = OpusEncoder::new(rate).unwrap();
        let mut dec = OpusDecoder::new(rate).unwrap();
        let mut out = Vec::new();
        let mut packet = Vec::new();
        for frame in input.chunks(enc.frame_samples()) {
            packet.clear();
            enc.encode(frame, &mut packet).unwrap();
            dec.decode(&packet, &mut out).unwrap();
        }
        let before = out.len();
        assert_eq!(dec.decode_lost(&mut out).unwrap(), 320);
        assert_eq!(dec.decode(&[], &mut out).unwrap(), 320);
        // Concealment continues the tone rather than dropping to silence.
        let concealed = &out[before..before + 320];
        let energy: f64 = concealed.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 320.0;
        assert!(energy.sqrt() > 1000.0, "PLC rms {}", energy.sqrt());
    }

    #[test]
    fn wrong_frame_size_and_rate_are_errors() {
        assert!(matches!(
            OpusEncoder::new(44100),
            Err(OpusError::SampleRate(44100))
        ));
        assert!(matches!(
            OpusDecoder::new(11025),
            Err(OpusError::SampleRate(11025))
        ));
        assert!(matches!(
            OpusEncoder::with_bitrate(8000, 10),
            Err(OpusError::Bitrate(10))
        ));
        let mut enc = OpusEncoder::new(8000).unwrap();
        let err = enc.encode(&[0; 100], &mut Vec::new()).unwrap_err();
        assert!(matches!(
            err,
            OpusError::FrameSize {
                expected: 160,
                got: 100
            }
        ));
    }

    #[test]
    fn corrupt_packets_are_errors_not_panics() {
        let mut dec = OpusDecoder::new(8000).unwrap();
        let mut out = Vec::new();
        // TOC byte for code 3 with a frame count of 0 is invalid (RFC 6716 section 3.2.5).
        assert!(dec.decode(&[0x03, 0x00], &mut out).is_err());
        assert!(dec.decode(&[0xFF; 2000], &mut out).is_err());
    }
}
