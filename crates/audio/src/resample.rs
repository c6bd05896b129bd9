//! Streaming sample-rate conversion for the rates a call meets (8, 16, 22.05, 24, 48 kHz).
//!
//! [`StreamResampler`] wraps rubato's synchronous FFT resampler ([`rubato::Fft`]): each block
//! of input is transformed, multiplied by a windowed-sinc anti-aliasing filter
//! (Blackman-Harris window, `fft_size_in` taps) and transformed back at the output size, with
//! overlap-add carrying the filter tail into the next block. This is exact rational
//! resampling, so there is no drift, and it is cheap: one 20 ms Twilio frame costs two small
//! real FFTs.
//!
//! Block size and latency: blocks are the smallest even multiple of rubato's minimum block
//! (`rate / gcd(from, to)` on each side) that holds about 10 ms of input. The filter is linear
//! phase and centred, so the algorithmic delay is half an output block: **5 ms** for 8k<->16k,
//! 8k<->24k, 16k->8k, 16k->24k, 24k->8k and 48k->8k; **20 ms** for 22.05k->8k (its minimum
//! block is 441 input samples, doubled to 882 = 40 ms so the delay is a whole number of
//! samples). On top of that, up to one block of input waits in the internal buffer until the
//! block is complete; Twilio's 20 ms frames are a whole number of 10 ms blocks, so on the
//! inbound path that wait is zero.
//!
//! Output is *time-aligned with the input*: the leading `delay_samples()` of filter start-up
//! are dropped, so output sample `n` corresponds to input time `n / output_rate`. The stream
//! therefore lags by [`StreamResampler::delay`] (that many fewer output samples exist than the
//! input duration implies until [`StreamResampler::flush`] drains the filter), and after
//! `flush` the total output length is exactly `round(input_len * to / from)`.
//!
//! Chunking does not change the output: input is gathered into fixed blocks internally, so
//! any split of the same stream yields bit-identical samples. In steady state nothing is
//! allocated: `process` converts into preallocated scratch buffers and appends to the
//! caller's `Vec`.

use std::time::Duration;

use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

/// Errors from building a [`StreamResampler`].
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// A sample rate of zero was given.
    #[error("invalid sample rate {from_hz} Hz -> {to_hz} Hz: rates must be non-zero")]
    ZeroRate {
        /// Requested input rate.
        from_hz: u32,
        /// Requested output rate.
        to_hz: u32,
    },
    /// The rate pair's smallest exact (even) block is longer than 100 ms (the rates share only a
    /// small common divisor), which would make the delay unusable for a call.
    #[error(
        "rate pair {from_hz} Hz -> {to_hz} Hz needs {block} input samples per block (> 100 ms); \
         use rates with a larger common divisor"
    )]
    BlockTooLong {
        /// Requested input rate.
        from_hz: u32,
        /// Requested output rate.
        to_hz: u32,
        /// Input samples per block the pair would need.
        block: usize,
    },
    /// rubato rejected the configuration.
    #[error("resampler construction failed: {0}")]
    Construction(#[from] rubato::ResamplerConstructionError),
}

/// A mono PCM16 streaming resampler; see the [module docs](self) for latency and alignment.
pub struct StreamResampler {
    from_hz: u32,
    to_hz: u32,
    inner: Fft<f32>,
    block_in: usize,
    block_out: usize,
    /// Input gathered toward the next block (`pending_len` valid samples).
    pending: Vec<f32>,
    pending_len: usize,
    /// One block of resampler output.
    scratch_out: Vec<f32>,
    /// Start-up samples still to drop so output aligns with input.
    to_trim: usize,
    input_total: u64,
    output_total: u64,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("from_hz", &self.from_hz)
            .field("to_hz", &self.to_hz)
            .field("block_in", &self.block_in)
            .field("block_out", &self.block_out)
            .field("pending_len", &self.pending_len)
            .field("input_total", &self.input_total)
            .field("output_total", &self.output_total)
            .finish_non_exhaustive()
    }
}

/// Euclid's greatest common divisor.
fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl StreamResampler {
    /// Builds a resampler from `from_hz` to `to_hz`: any pair of non-zero rates whose smallest
    /// exact block (`from_hz / gcd(from_hz, to_hz)` input samples, doubled if odd) is at most
    /// 100 ms.
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, ResampleError> {
        if from_hz == 0 || to_hz == 0 {
            return Err(ResampleError::ZeroRate { from_hz, to_hz });
        }
        let g = gcd(u64::from(from_hz), u64::from(to_hz));
        let min_in = (u64::from(from_hz) / g) as usize;
        let min_out = (u64::from(to_hz) / g) as usize;
        // ~10 ms of input per block, rounded up to a whole number of minimum blocks.
        let target = (from_hz as usize / 100).max(1);
        let mut chunks = target.div_ceil(min_in).max(1);
        // The filter is centred on sample `block_in / 2`; with even blocks on both sides that
        // centre is a whole number of samples on both sides, so the delay can be removed
        // exactly. (An odd 441-sample block at 22.05 kHz would leave 0.18 samples of skew.)
        if (chunks * min_in) % 2 == 1 || (chunks * min_out) % 2 == 1 {
            chunks += 1;
        }
        let block_in = chunks * min_in;
        let block_out = chunks * min_out;
        // 100 ms keeps every common rate (8, 11.025, 16, 22.05, 24, 32, 44.1, 48 kHz) usable.
        if block_in * 10 > from_hz as usize {
            return Err(ResampleError::BlockTooLong {
                from_hz,
                to_hz,
                block: block_in,
            });
        }
        // One sub-chunk per call: the block is the FFT size, so rubato never buffers on its own.
        let inner = Fft::<f32>::new_custom(
            from_hz as usize,
            to_hz as usize,
            block_in,
            1,
            1,
            WindowFunction::BlackmanHarris,
            FixedSync::Both,
        )?;
        debug_assert_eq!(inner.fft_size_in(), block_in);
        debug_assert_eq!(inner.fft_size_out(), block_out);
        let delay = inner.output_delay();
        Ok(Self {
            from_hz,
            to_hz,
            inner,
            block_in,
            block_out,
            pending: vec![0.0; block_in],
            pending_len: 0,
            scratch_out: vec![0.0; block_out],
            to_trim: delay,
            input_total: 0,
            output_total: 0,
        })
    }

    /// Input sample rate in Hz.
    pub fn input_rate(&self) -> u32 {
        self.from_hz
    }

    /// Output sample rate in Hz.
    pub fn output_rate(&self) -> u32 {
        self.to_hz
    }

    /// Input samples per internal block; input waits until a block is complete.
    pub fn block_input_samples(&self) -> usize {
        self.block_in
    }

    /// Algorithmic delay of the filter, in output-rate samples (half an output block).
    pub fn delay_samples(&self) -> usize {
        self.inner.output_delay()
    }

    /// Algorithmic delay of the filter as a duration.
    pub fn delay(&self) -> Duration {
        let nanos = self.delay_samples() as u64 * 1_000_000_000 / u64::from(self.to_hz);
        Duration::from_nanos(nanos)
    }

    /// Resamples `input` (any length, including zero) and appends the output to `output`.
    pub fn process(&mut self, input: &[i16], output: &mut Vec<i16>) {
        self.input_total += input.len() as u64;
        let mut rest = input;
        while !rest.is_empty() {
            let take = (self.block_in - self.pending_len).min(rest.len());
            let (now, later) = rest.split_at(take);
            for (dst, &src) in self.pending[self.pending_len..self.pending_len + take]
                .iter_mut()
                .zip(now)
            {
                *dst = f32::from(src);
            }
            self.pending_len += take;
            rest = later;
            if self.pending_len == self.block_in {
                self.run_block(output, usize::MAX);
            }
        }
    }

    /// Ends the stream: drains the filter with silence and appends the remaining output, so
    /// that the total output since the last reset is `round(input_len * to / from)` samples.
    /// The resampler is then reset, ready for a new stream.
    pub fn flush(&mut self, output: &mut Vec<i16>) {
        let from = u64::from(self.from_hz);
        let expected = (self.input_total * u64::from(self.to_hz) + from / 2) / from;
        while self.output_total < expected {
            // Zero-pad the partial block (and, once it is drained, whole blocks of silence).
            self.pending[self.pending_len..].fill(0.0);
            self.pending_len = self.block_in;
            let limit = (expected - self.output_total) as usize;
            self.run_block(output, limit);
        }
        self.reset();
    }

    /// Forgets all state (filter history, pending input, counters).
    pub fn reset(&mut self) {
        self.inner.reset();
        self.pending_len = 0;
        self.to_trim = self.inner.output_delay();
        self.input_total = 0;
        self.output_total = 0;
    }

    /// Resamples the full pending block and appends at most `limit` output samples.
    fn run_block(&mut self, output: &mut Vec<i16>, limit: usize) {
        self.pending_len = 0;
        let input = SequentialSlice::new(&self.pending[..], 1, self.block_in);
        let out = SequentialSlice::new_mut(&mut self.scratch_out[..], 1, self.block_out);
        let (Ok(input), Ok(mut out)) = (input, out) else {
            unreachable!("scratch buffers are sized to exactly one block");
        };
        if let Err(e) = self.inner.process_into_buffer(&input, &mut out, None) {
            unreachable!("buffers are sized by construction: {e}");
        }
        let skip = self.to_trim.min(self.block_out);
        self.to_trim -= skip;
        let produced = &self.scratch_out[skip..];
        let produced = &produced[..produced.len().min(limit)];
        self.output_total += produced.len() as u64;
        // Round half away from zero; `as` saturates at the i16 range. (`f32::round` is a libm
        // call on baseline x86-64 and cost more than the FFTs.)
        output.extend(produced.iter().map(|&s| (s + 0.5f32.copysign(s)) as i16));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every rate pair a call meets.
    const PAIRS: [(u32, u32); 7] = [
        (8000, 16000),
        (16000, 8000),
        (8000, 24000),
        (24000, 8000),
        (48000, 8000),
        (22050, 8000),
        (16000, 24000),
    ];

    fn tone(rate: u32, hz: f64, amplitude: f64, len: usize) -> Vec<i16> {
        (0..len)
            .map(|n| {
                let t = n as f64 / f64::from(rate);
                (amplitude * (2.0 * std::f64::consts::PI * hz * t).sin()).round() as i16
            })
            .collect()
    }

    fn run_chunked(r: &mut StreamResampler, input: &[i16], chunk: usize) -> Vec<i16> {
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            r.process(c, &mut out);
        }
        r.flush(&mut out);
        out
    }

    fn snr_db(reference: &[i16], test: &[i16]) -> f64 {
        let (mut signal, mut noise) = (0.0f64, 0.0f64);
        for (&a, &b) in reference.iter().zip(test) {
            signal += f64::from(a).powi(2);
            noise += (f64::from(a) - f64::from(b)).powi(2);
        }
        10.0 * (signal / noise.max(1e-12)).log10()
    }

    #[test]
    fn tone_through_8k_16k_8k_keeps_snr_above_50_db() {
        let input = tone(8000, 1000.0, 16000.0, 8000);
        let mut up = StreamResampler::new(8000, 16000).unwrap();
        let mut down = StreamResampler::new(16000, 8000).unwrap();
        let mut wide = Vec::new();
        let mut back = Vec::new();
        for frame in input.chunks(160) {
            wide.clear();
            up.process(frame, &mut wide);
            down.process(&wide, &mut back);
        }
        wide.clear();
        up.flush(&mut wide);
        down.process(&wide, &mut back);
        down.flush(&mut back);
        assert_eq!(back.len(), input.len());
        // Output is delay-compensated (aligned with the input); skip 50 ms at each end where
        // the tone starts and stops abruptly and the filters ring.
        let steady = 400..input.len() - 400;
        let snr = snr_db(&input[steady.clone()], &back[steady]);
        assert!(snr >= 50.0, "round-trip SNR {snr:.1} dB");
    }

    #[test]
    fn impulse_lands_at_the_same_time_after_resampling() {
        // A click at 100 ms must come out at 100 ms: the reported delay is compensated exactly.
        for (from, to) in PAIRS {
            let mut input = vec![0i16; from as usize / 2];
            let at = from as usize / 10;
            input[at] = 20000;
            let mut r = StreamResampler::new(from, to).unwrap();
            let out = run_chunked(&mut r, &input, 160);
            let peak = out
                .iter()
                .enumerate()
                .max_by_key(|(_, s)| s.unsigned_abs())
                .map(|(i, _)| i)
                .unwrap();
            assert_eq!(peak, to as usize / 10, "{from} -> {to}");
        }
    }

    #[test]
    fn output_lags_input_by_exactly_the_reported_delay_before_flush() {
        for (from, to) in PAIRS {
            let mut r = StreamResampler::new(from, to).unwrap();
            let blocks = 7;
            let input = vec![1000i16; r.block_input_samples() * blocks];
            let mut out = Vec::new();
            r.process(&input, &mut out);
            let ideal = input.len() * to as usize / from as usize;
            assert_eq!(out.len(), ideal - r.delay_samples(), "{from} -> {to}");
        }
    }

    #[test]
    fn delays_are_5_ms_except_22050_which_is_20_ms() {
        for (from, to) in PAIRS {
            let r = StreamResampler::new(from, to).unwrap();
            let expected = if from == 22050 { 20 } else { 5 };
            assert_eq!(r.delay(), Duration::from_millis(expected), "{from} -> {to}");
            assert_eq!(
                r.delay_samples(),
                to as usize * expected as usize / 1000,
                "{from} -> {to}"
            );
        }
    }

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum / samples.len() as f64).sqrt()
    }

    #[test]
    fn telephone_band_keeps_its_level_and_shape() {
        // 300..3400 Hz is the telephone band: gain within 0.5 dB (G.712's channel mask allows
        // far more), and below 3 kHz the waveform itself is preserved (>= 40 dB SNR).
        for (from, to) in PAIRS {
            for hz in [300.0, 1000.0, 2000.0, 3000.0, 3400.0] {
                let input = tone(from, hz, 10000.0, from as usize / 2);
                let mut r = StreamResampler::new(from, to).unwrap();
                let out = run_chunked(&mut r, &input, 480);
                let expected = tone(to, hz, 10000.0, out.len());
                let steady = out.len() / 5..out.len() * 4 / 5;
                let gain_db =
                    20.0 * (rms(&out[steady.clone()]) / rms(&expected[steady.clone()])).log10();
                assert!(
                    gain_db.abs() <= 0.5,
                    "{from} -> {to} at {hz} Hz: {gain_db:.2} dB"
                );
                if hz <= 3000.0 {
                    let snr = snr_db(&expected[steady.clone()], &out[steady]);
                    assert!(snr >= 40.0, "{from} -> {to} at {hz} Hz: SNR {snr:.1} dB");
                }
            }
        }
    }

    #[test]
    fn downsampling_rejects_aliases() {
        // A 6 kHz tone cannot be represented at 8 kHz; it must be filtered, not folded to 2 kHz.
        for (from, to) in [(16000, 8000), (24000, 8000), (48000, 8000), (22050, 8000)] {
            let input = tone(from, 6000.0, 20000.0, from as usize / 2);
            let mut r = StreamResampler::new(from, to).unwrap();
            let out = run_chunked(&mut r, &input, 480);
            let steady = out.len() / 5..out.len() * 4 / 5;
            let level_db = 20.0 * (rms(&out[steady]) / rms(&input)).log10();
            assert!(
                level_db <= -60.0,
                "{from} -> {to}: alias at {level_db:.1} dB"
            );
        }
    }

    #[test]
    fn rejects_zero_and_coprime_rates() {
        assert!(matches!(
            StreamResampler::new(0, 8000),
            Err(ResampleError::ZeroRate { .. })
        ));
        assert!(matches!(
            StreamResampler::new(8000, 7919),
            Err(ResampleError::BlockTooLong { .. })
        ));
    }

    #[test]
    fn reset_starts_a_fresh_identical_stream() {
        let input = tone(8000, 440.0, 8000.0, 1234);
        let mut r = StreamResampler::new(8000, 16000).unwrap();
        let first = run_chunked(&mut r, &input, 100);
        let mut junk = Vec::new();
        r.process(&input[..333], &mut junk);
        r.reset();
        let second = run_chunked(&mut r, &input, 100);
        assert_eq!(first, second);
    }

    fn split_points(len: usize, cuts: &[usize]) -> Vec<usize> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
        points.push(0);
        points.push(len);
        points.sort_unstable();
        points
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn any_chunking_gives_identical_output_of_the_input_duration(
            pair in 0..PAIRS.len(),
            len in 0usize..6000,
            cuts in proptest::collection::vec(any::<usize>(), 0..40),
            seed in any::<u32>(),
        ) {
            let (from, to) = PAIRS[pair];
            // Deterministic pseudo-noise input so the content is not trivially periodic.
            let mut state = seed | 1;
            let input: Vec<i16> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    (state >> 20) as i16 - 2048
                })
                .collect();
            let mut whole = StreamResampler::new(from, to).unwrap();
            let reference = run_chunked(&mut whole, &input, usize::MAX);

            let points = split_points(len, &cuts);
            let mut r = StreamResampler::new(from, to).unwrap();
            let mut out = Vec::new();
            for w in points.windows(2) {
                r.process(&input[w[0]..w[1]], &mut out);
            }
            r.flush(&mut out);

            let expected_len = (len as u64 * u64::from(to) + u64::from(from) / 2) / u64::from(from);
            prop_assert_eq!(out.len() as u64, expected_len);
            prop_assert_eq!(out, reference);
        }
    }
}
