//! WAV (RIFF/WAVE) reading and writing for fixtures, recordings and tools, over `hound`.
//!
//! Reading accepts any PCM integer width (8..=32 bits), 32-bit float or G.711 mu-law (format
//! tag 7: the 8 KB/s telephone files `sox -e u-law` writes), any channel count, and returns mono
//! PCM16: channels are averaged, integer samples are rescaled to 16 bits, float samples are
//! clamped to [-1, 1] and scaled by 32767, mu-law codes are decoded as the Media Streams path
//! decodes them. Writing produces mono 16-bit PCM.

use std::fs::File;
use std::io::{BufReader, BufWriter, Cursor, Read, Seek, Write};
use std::path::Path;

use crate::mulaw;

/// The `fmt ` format tag of G.711 mu-law.
const FORMAT_MULAW: u16 = 7;

/// Errors from reading or writing WAV data.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// I/O or format error reported by `hound` (bad header, truncated data, ...).
    #[error("WAV error: {0}")]
    Hound(#[from] hound::Error),
    /// The file declares zero channels.
    #[error("WAV file declares zero channels")]
    NoChannels,
    /// A sample rate of zero cannot be written.
    #[error("invalid WAV sample rate 0 Hz")]
    ZeroRate,
    /// A mu-law file whose chunks are malformed.
    #[error("malformed mu-law WAV: {0}")]
    MuLaw(&'static str),
}

/// Reads a WAV file as mono PCM16; returns the samples and the sample rate in Hz.
pub fn read_wav(path: impl AsRef<Path>) -> Result<(Vec<i16>, u32), WavError> {
    let file = File::open(path).map_err(hound::Error::IoError)?;
    read_wav_from(BufReader::new(file))
}

/// Reads WAV data from any reader as mono PCM16; returns the samples and the sample rate.
pub fn read_wav_from<R: Read>(mut reader: R) -> Result<(Vec<i16>, u32), WavError> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(hound::Error::IoError)?;
    if let Some(decoded) = read_mulaw(&bytes)? {
        return Ok(decoded);
    }
    let mut wav = hound::WavReader::new(Cursor::new(bytes))?;
    let spec = wav.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 {
        return Err(WavError::NoChannels);
    }
    let frames = wav.duration() as usize;
    let mut mono = Vec::with_capacity(frames);
    match spec.sample_format {
        hound::SampleFormat::Int => {
            // Rescale any integer width to 16 bits (exact for 8 and 16 bits).
            let bits = i32::from(spec.bits_per_sample);
            let to_16 = |v: i32| -> i64 {
                if bits >= 16 {
                    i64::from(v >> (bits - 16))
                } else {
                    i64::from(v << (16 - bits))
                }
            };
            mix(
                wav.samples::<i32>().map(|s| s.map(to_16)),
                channels,
                &mut mono,
            )?;
        }
        hound::SampleFormat::Float => {
            let to_16 = |v: f32| -> i64 { (v.clamp(-1.0, 1.0) * 32767.0).round() as i64 };
            mix(
                wav.samples::<f32>().map(|s| s.map(to_16)),
                channels,
                &mut mono,
            )?;
        }
    }
    Ok((mono, spec.sample_rate))
}

/// A RIFF/WAVE file in G.711 mu-law as mono PCM16 and its rate; `None` for any other
/// format (left to `hound`).
fn read_mulaw(bytes: &[u8]) -> Result<Option<(Vec<i16>, u32)>, WavError> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Ok(None);
    }
    let le16 = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]);
    let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut format: Option<(u16, u32)> = None;
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = le32(&bytes[at + 4..at + 8]) as usize;
        let body = &bytes[at + 8..];
        match id {
            b"fmt " => {
                if size < 16 || body.len() < 16 {
                    return Err(WavError::MuLaw("short fmt chunk"));
                }
                if le16(body) != FORMAT_MULAW {
                    return Ok(None);
                }
                if le16(&body[14..]) != 8 {
                    return Err(WavError::MuLaw("mu-law samples must be 8 bits"));
                }
                format = Some((le16(&body[2..]), le32(&body[4..])));
            }
            b"data" => {
                let Some((channels, rate)) = format else {
                    return Err(WavError::MuLaw("data before the fmt chunk"));
                };
                if channels == 0 {
                    return Err(WavError::NoChannels);
                }
                // A data size past the end (a stream written without seeking) reads what is there.
                let codes = &body[..size.min(body.len())];
                let mut pcm = Vec::with_capacity(codes.len());
                mulaw::decode(codes, &mut pcm);
                let mut mono = Vec::with_capacity(pcm.len() / usize::from(channels));
                mix(
                    pcm.into_iter().map(|s| Ok(i64::from(s))),
                    usize::from(channels),
                    &mut mono,
                )?;
                return Ok(Some((mono, rate)));
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = at
            .saturating_add(8)
            .saturating_add(size)
            .saturating_add(size % 2);
    }
    match format {
        Some(_) => Err(WavError::MuLaw("no data chunk")),
        None => Ok(None),
    }
}

/// Averages groups of `channels` samples into `out` (a trailing partial frame is dropped).
fn mix(
    samples: impl Iterator<Item = Result<i64, hound::Error>>,
    channels: usize,
    out: &mut Vec<i16>,
) -> Result<(), WavError> {
    let mut sum = 0i64;
    let mut n = 0usize;
    for s in samples {
        sum += s?;
        n += 1;
        if n == channels {
            let avg = sum / channels as i64;
            out.push(avg.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16);
            sum = 0;
            n = 0;
        }
    }
    Ok(())
}

/// Writes mono 16-bit PCM at `rate` Hz to `path`.
pub fn write_wav(path: impl AsRef<Path>, samples: &[i16], rate: u32) -> Result<(), WavError> {
    let file = File::create(path).map_err(hound::Error::IoError)?;
    write_wav_to(BufWriter::new(file), samples, rate)
}

/// Writes mono 16-bit PCM at `rate` Hz to any seekable writer (e.g. `Cursor<Vec<u8>>`).
pub fn write_wav_to<W: Write + Seek>(
    writer: W,
    samples: &[i16],
    rate: u32,
) -> Result<(), WavError> {
    if rate == 0 {
        return Err(WavError::ZeroRate);
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::new(writer, spec)?;
    {
        let mut w = wav.get_i16_writer(samples.len() as u32);
        for &s in samples {
            w.write_sample(s);
        }
        w.flush()?;
    }
    wav.finalize()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn mono_pcm16_round_trips_exactly() {
        let samples: Vec<i16> = (0..1000)
            .map(|i| ((i * 97) % 65536 - 32768) as i16)
            .collect();
        let mut buf = Cursor::new(Vec::new());
        write_wav_to(&mut buf, &samples, 8000).unwrap();
        let (back, rate) = read_wav_from(Cursor::new(buf.into_inner())).unwrap();
        assert_eq!(rate, 8000);
        assert_eq!(back, samples);
    }

    fn write_spec(
        spec: hound::WavSpec,
        write: impl FnOnce(&mut hound::WavWriter<&mut Cursor<Vec<u8>>>),
    ) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut buf, spec).unwrap();
        write(&mut w);
        w.finalize().unwrap();
        buf.into_inner()
    }

    #[test]
    fn stereo_is_mixed_down_to_the_channel_average() {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let bytes = write_spec(spec, |w| {
            for (l, r) in [(1000i16, 3000i16), (-32768, -32768), (32767, 1)] {
                w.write_sample(l).unwrap();
                w.write_sample(r).unwrap();
            }
        });
        let (mono, rate) = read_wav_from(Cursor::new(bytes)).unwrap();
        assert_eq!(rate, 16000);
        assert_eq!(mono, [2000, -32768, 16384]);
    }

    #[test]
    fn float_and_24_bit_and_8_bit_inputs_scale_to_16_bits() {
        let float = hound::WavSpec {
            channels: 1,
            sample_rate: 24000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let bytes = write_spec(float, |w| {
            for v in [0.5f32, -1.0, 2.0] {
                w.write_sample(v).unwrap();
            }
        });
        assert_eq!(
            read_wav_from(Cursor::new(bytes)).unwrap().0,
            [16384, -32767, 32767]
        );

        let int24 = hound::WavSpec {
            bits_per_sample: 24,
            sample_format: hound::SampleFormat::Int,
            ..float
        };
        let bytes = write_spec(int24, |w| {
            for v in [0x12_3456i32, -0x80_0000, 0x7F_FFFF] {
                w.write_sample(v).unwrap();
            }
        });
        assert_eq!(
            read_wav_from(Cursor::new(bytes)).unwrap().0,
            [0x1234, -32768, 32767]
        );

        let int8 = hound::WavSpec {
            bits_per_sample: 8,
            ..int24
        };
        let bytes = write_spec(int8, |w| {
            for v in [1i8, -128, 127] {
                w.write_sample(v).unwrap();
            }
        });
        assert_eq!(
            read_wav_from(Cursor::new(bytes)).unwrap().0,
            [256, -32768, 32512]
        );
    }

    /// A mu-law file as `sox -e u-law` writes it: an 18-byte `fmt `, a `fact` chunk, the codes.
    fn mulaw_wav(channels: u16, codes: &[u8]) -> Vec<u8> {
        let mut fmt = Vec::new();
        fmt.extend(FORMAT_MULAW.to_le_bytes());
        fmt.extend(channels.to_le_bytes());
        fmt.extend(8000u32.to_le_bytes());
        fmt.extend((8000 * u32::from(channels)).to_le_bytes());
        fmt.extend(channels.to_le_bytes());
        fmt.extend(8u16.to_le_bytes());
        fmt.extend(0u16.to_le_bytes());
        let mut body = b"WAVE".to_vec();
        for (id, chunk) in [
            (b"fmt ", fmt),
            (b"fact", 3u32.to_le_bytes().to_vec()),
            (b"data", codes.to_vec()),
        ] {
            body.extend(id);
            body.extend((chunk.len() as u32).to_le_bytes());
            body.extend(&chunk);
            if chunk.len() % 2 == 1 {
                body.push(0);
            }
        }
        let mut file = b"RIFF".to_vec();
        file.extend((body.len() as u32).to_le_bytes());
        file.extend(body);
        file
    }

    #[test]
    fn mulaw_files_decode_as_the_media_path_decodes() {
        let codes = [0x00u8, 0x7F, 0xFF, 0x80, 0x35];
        let (pcm, rate) = read_wav_from(Cursor::new(mulaw_wav(1, &codes))).unwrap();
        assert_eq!(rate, 8000);
        let mut expected = Vec::new();
        mulaw::decode(&codes, &mut expected);
        assert_eq!(pcm, expected);
        // Stereo is averaged like PCM.
        let (mono, _) =
            read_wav_from(Cursor::new(mulaw_wav(2, &[0x00, 0x80, 0xFF, 0xFF]))).unwrap();
        assert_eq!(mono, [0, 0]);
        // Broken mu-law files are errors.
        let mut no_data = mulaw_wav(1, &codes);
        no_data.truncate(no_data.len() - codes.len() - 9);
        assert!(matches!(
            read_wav_from(Cursor::new(no_data)),
            Err(WavError::MuLaw(_))
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(read_wav_from(Cursor::new(b"RIFF\x04\0\0\0WAVEjunk".to_vec())).is_err());
        assert!(read_wav_from(Cursor::new(Vec::new())).is_err());
        assert!(matches!(
            write_wav_to(Cursor::new(Vec::new()), &[0], 0),
            Err(WavError::ZeroRate)
        ));
    }
}
