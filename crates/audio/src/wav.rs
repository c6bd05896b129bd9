//! WAV (RIFF/WAVE) reading and writing for fixtures, recordings and tools, over `hound`.
//!
//! Reading accepts any PCM integer width (8..=32 bits) or 32-bit float, any channel count, and
//! returns mono PCM16: channels are averaged, integer samples are rescaled to 16 bits, float
//! samples are clamped to [-1, 1] and scaled by 32767. Writing produces mono 16-bit PCM.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

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
}

/// Reads a WAV file as mono PCM16; returns the samples and the sample rate in Hz.
pub fn read_wav(path: impl AsRef<Path>) -> Result<(Vec<i16>, u32), WavError> {
    let file = File::open(path).map_err(hound::Error::IoError)?;
    read_wav_from(BufReader::new(file))
}

/// Reads WAV data from any reader as mono PCM16; returns the samples and the sample rate.
pub fn read_wav_from<R: Read>(reader: R) -> Result<(Vec<i16>, u32), WavError> {
    let mut wav = hound::WavReader::new(reader)?;
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
