//! A push-based (sans-IO) WAV reader for audio that arrives as a stream, e.g. `espeak-ng
//! --stdout`: the header is parsed as soon as it is complete and samples are handed out as
//! bytes come in, without waiting for the end.
//!
//! A streamed WAV cannot know its length up front, so writers put a placeholder in the RIFF and
//! `data` sizes (espeak-ng writes `0x7ffff000`); the reader ignores both sizes and reads
//! samples until the input ends. Supported: RIFF/WAVE, `fmt ` with PCM (format 1, or
//! `WAVE_FORMAT_EXTENSIBLE` with a PCM subformat), 16 bits, any channel count (mixed to mono).

/// What can be wrong with a streamed WAV header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavStreamError {
    /// Not `RIFF....WAVE`.
    #[error("not a RIFF/WAVE stream")]
    NotWav,
    /// A format this reader does not decode.
    #[error("unsupported WAV format: {0}")]
    Unsupported(String),
    /// A chunk header claims an absurd size before the `data` chunk.
    #[error("malformed WAV header: {0}")]
    Malformed(&'static str),
}

/// The format of the stream, from its `fmt ` chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavFormat {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
}

/// Push-based WAV reader (see the [module docs](self)).
#[derive(Debug, Default)]
pub struct WavStreamReader {
    pending: Vec<u8>,
    format: Option<WavFormat>,
    phase: Phase,
}

/// Where in the stream the reader is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for `RIFF....WAVE`.
    #[default]
    Riff,
    /// Reading chunks before `data`.
    Chunks,
    /// Reading samples.
    Data,
}

/// Largest header chunk accepted before `data` (LIST/INFO chunks are small).
const MAX_HEADER_CHUNK: u32 = 64 * 1024;

impl WavStreamReader {
    /// A reader waiting for the header.
    pub fn new() -> Self {
        Self::default()
    }

    /// The format, once the `fmt ` chunk has been read.
    pub fn format(&self) -> Option<WavFormat> {
        self.format
    }

    /// Feeds bytes; appends every complete mono sample they finish to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<i16>) -> Result<(), WavStreamError> {
        self.pending.extend_from_slice(bytes);
        if self.phase != Phase::Data {
            self.parse_header()?;
            if self.phase != Phase::Data {
                return Ok(());
            }
        }
        let Some(format) = self.format else {
            return Err(WavStreamError::Malformed("data chunk before fmt chunk"));
        };
        let frame = 2 * usize::from(format.channels);
        let whole = self.pending.len() / frame * frame;
        for f in self.pending[..whole].chunks_exact(frame) {
            let sum: i32 = f
                .chunks_exact(2)
                .map(|s| i32::from(i16::from_le_bytes([s[0], s[1]])))
                .sum();
            out.push((sum / i32::from(format.channels)) as i16);
        }
        self.pending.drain(..whole);
        Ok(())
    }

    /// Consumes header chunks from `pending` until `data` starts or more bytes are needed.
    fn parse_header(&mut self) -> Result<(), WavStreamError> {
        let mut at = 0usize;
        if self.phase == Phase::Riff {
            let head = &self.pending[..self.pending.len().min(4)];
            if !b"RIFF".starts_with(head) {
                return Err(WavStreamError::NotWav);
            }
            if self.pending.len() < 12 {
                return Ok(());
            }
            if &self.pending[8..12] != b"WAVE" {
                return Err(WavStreamError::NotWav);
            }
            at = 12;
            self.phase = Phase::Chunks;
        }
        while let Some(header) = self.pending.get(at..at + 8) {
            let id: [u8; 4] = header[..4].try_into().unwrap_or_default();
            let size = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default());
            if &id == b"data" {
                if self.format.is_none() {
                    return Err(WavStreamError::Malformed("data chunk before fmt chunk"));
                }
                at += 8;
                self.phase = Phase::Data;
                break;
            }
            if size > MAX_HEADER_CHUNK {
                return Err(WavStreamError::Malformed("header chunk too large"));
            }
            // Chunks are padded to an even length (RIFF).
            let body_len = size as usize + (size as usize & 1);
            let Some(body) = self.pending.get(at + 8..at + 8 + body_len) else {
                break;
            };
            if &id == b"fmt " {
                self.format = Some(parse_fmt(&body[..size as usize])?);
            }
            at += 8 + body_len;
        }
        self.pending.drain(..at);
        Ok(())
    }
}

fn parse_fmt(body: &[u8]) -> Result<WavFormat, WavStreamError> {
    if body.len() < 16 {
        return Err(WavStreamError::Malformed("fmt chunk shorter than 16 bytes"));
    }
    let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
    let mut tag = u16_at(0);
    if tag == 0xFFFE && body.len() >= 26 {
        // WAVE_FORMAT_EXTENSIBLE: the subformat GUID starts with the real tag.
        tag = u16_at(24);
    }
    let channels = u16_at(2);
    let sample_rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
    let bits = u16_at(14);
    if tag != 1 || bits != 16 {
        return Err(WavStreamError::Unsupported(format!(
            "format tag {tag}, {bits} bits (only 16-bit PCM)"
        )));
    }
    if channels == 0 || sample_rate == 0 {
        return Err(WavStreamError::Malformed("zero channels or sample rate"));
    }
    Ok(WavFormat {
        sample_rate,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed_wav(samples: &[i16], rate: u32, channels: u16, extra_chunk: bool) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&0x7fff_f000u32.to_le_bytes());
        v.extend_from_slice(b"WAVE");
        if extra_chunk {
            v.extend_from_slice(b"LIST");
            v.extend_from_slice(&5u32.to_le_bytes());
            v.extend_from_slice(b"abcde\0");
        }
        v.extend_from_slice(b"fmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
        v.extend_from_slice(&(2 * channels).to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&0x7fff_f000u32.to_le_bytes());
        for s in samples {
            for _ in 0..channels {
                v.extend_from_slice(&s.to_le_bytes());
            }
        }
        v
    }

    #[test]
    fn samples_come_out_whatever_the_split() {
        let samples: Vec<i16> = (0..500).map(|i| (i * 61 - 15_000) as i16).collect();
        for (channels, extra) in [(1, false), (2, true)] {
            let wav = streamed_wav(&samples, 22_050, channels, extra);
            for split in [1usize, 2, 5, 13, 44, 4096] {
                let mut r = WavStreamReader::new();
                let mut out = Vec::new();
                for piece in wav.chunks(split) {
                    r.push(piece, &mut out).expect("valid");
                }
                assert_eq!(out, samples, "channels {channels} split {split}");
                assert_eq!(
                    r.format(),
                    Some(WavFormat {
                        sample_rate: 22_050,
                        channels
                    })
                );
            }
        }
    }

    #[test]
    fn rejects_what_it_cannot_decode() {
        let mut out = Vec::new();
        assert_eq!(
            WavStreamReader::new().push(b"ID3\x04garbage", &mut out),
            Err(WavStreamError::NotWav)
        );
        let mut wav = streamed_wav(&[1, 2], 8_000, 1, false);
        wav[34] = 8; // 8 bits per sample
        assert!(matches!(
            WavStreamReader::new().push(&wav, &mut out),
            Err(WavStreamError::Unsupported(_))
        ));
    }
}
