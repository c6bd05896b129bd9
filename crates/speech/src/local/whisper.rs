//! Whisper through `CTranslate2` (`ct2rs`): the [`Recognizer`] behind `speech.asr = "local"`.
//!
//! ct2rs's high-level `Whisper` is not used, for three reasons that cost words on short phone
//! answers: it always puts a language and task token in the prompt (English-only `.en` models
//! are trained without them), it has no previous-text prompt (the question being asked), and its
//! features are normalised frame by frame with the 30 s padding left at zero, where Whisper
//! normalises over the whole window and pads with silence. So the features are computed here as
//! Whisper's own `log_mel_spectrogram` does, and the prompt is built here; `CTranslate2` does the
//! encoder and the decoding (int8, no timestamps, configurable beam).

use std::path::Path;
use std::sync::Arc;

use ct2rs::Tokenizer as _;
use ct2rs::sys::{ComputeType, Config, Device, Whisper, WhisperOptions};
use ct2rs::tokenizers::hf::Tokenizer;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use super::{Recognizer, check_model_dir};

/// Whisper's feature extractor (its `preprocessor_config.json`): 16 kHz, 25 ms windows every
/// 10 ms, 30 s windows of 3000 frames.
const N_FFT: usize = 400;
const HOP: usize = 160;
const CHUNK_SAMPLES: usize = 480_000;
const CHUNK_FRAMES: usize = CHUNK_SAMPLES / HOP;
/// Most previous-text tokens Whisper takes (half its 448-token context, less one).
const MAX_PROMPT_TOKENS: usize = 223;
/// Whisper's silence rule: a window whose no-speech probability is above this and whose
/// average log-probability is below [`SILENCE_LOGPROB`] is taken as no speech.
const NO_SPEECH_THRESHOLD: f32 = 0.6;
const SILENCE_LOGPROB: f32 = -1.0;

/// How to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhisperSettings {
    /// Beam width (1 = greedy).
    pub beam_size: usize,
    /// `CTranslate2` threads for one decode (0 = its default).
    pub threads: usize,
    /// `int8`, `int8_float32` or `float32` (`speech.local.compute_type`).
    pub compute_type: String,
    /// Predict timestamp tokens (discarded) instead of prompting `<|notimestamps|>`.
    pub timestamps: bool,
    /// Silence decoded before each utterance (`speech.local.lead_in_ms`).
    pub lead_in_ms: u32,
}

/// One loaded model with its tokenizer and feature extractor. Not shared: each pool worker
/// loads its own (tiny.en in int8 is about 40 MB).
pub struct WhisperRecognizer {
    model: Whisper,
    tokenizer: Tokenizer,
    mel: MelFilters,
    fft: Arc<dyn Fft<f32>>,
    window: Vec<f32>,
    options: WhisperOptions,
    multilingual: bool,
    timestamps: bool,
    /// Samples of silence before each utterance.
    lead_in: usize,
}

impl std::fmt::Debug for WhisperRecognizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperRecognizer")
            .field("model", &self.model)
            .field("multilingual", &self.multilingual)
            .field("beam_size", &self.options.beam_size)
            .finish_non_exhaustive()
    }
}

impl WhisperRecognizer {
    /// Loads the `CTranslate2` Whisper model in `dir` for inference on the CPU (int8 unless
    /// `settings` say otherwise).
    pub fn load(dir: &Path, settings: &WhisperSettings) -> Result<Self, String> {
        check_model_dir(dir)?;
        let compute_type = match settings.compute_type.as_str() {
            "int8" => ComputeType::INT8,
            "int8_float32" => ComputeType::INT8_FLOAT32,
            "float32" => ComputeType::FLOAT32,
            other => return Err(format!("unknown compute type {other:?}")),
        };
        let config = Config {
            device: Device::CPU,
            compute_type,
            num_threads_per_replica: settings.threads,
            ..Config::default()
        };
        let model = Whisper::new(dir, config)
            .map_err(|e| format!("cannot load the Whisper model in {}: {e}", dir.display()))?;
        let mut tokenizer = Tokenizer::new(dir)
            .map_err(|e| format!("cannot load {}/tokenizer.json: {e}", dir.display()))?;
        // Prompt text is encoded as plain tokens: the special ones are placed by `prompt`.
        tokenizer.disable_spacial_token();
        let n_mels = model.n_mels();
        let mut planner = FftPlanner::new();
        Ok(Self {
            multilingual: model.is_multilingual(),
            timestamps: settings.timestamps,
            lead_in: settings.lead_in_ms as usize * (super::RECOGNIZER_RATE as usize / 1000),
            model,
            tokenizer,
            mel: MelFilters::new(n_mels),
            fft: planner.plan_fft_forward(N_FFT),
            window: (0..N_FFT)
                .map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / N_FFT as f32).cos())
                .collect(),
            options: WhisperOptions {
                beam_size: settings.beam_size.max(1),
                return_scores: true,
                return_no_speech_prob: true,
                ..WhisperOptions::default()
            },
        })
    }

    /// The decoder's start: previous text (when given), then the start-of-transcript sequence
    /// (language and task tokens only for multilingual models), no timestamps unless configured.
    fn prompt(
        &self,
        previous: Option<&str>,
        language: Option<&str>,
    ) -> Result<Vec<String>, String> {
        let mut prompt = Vec::new();
        if let Some(text) = previous.map(str::trim).filter(|t| !t.is_empty()) {
            let tokens = self
                .tokenizer
                .encode(&format!(" {text}"))
                .map_err(|e| format!("cannot tokenize the prompt: {e}"))?;
            prompt.push("<|startofprev|>".to_owned());
            let skip = tokens.len().saturating_sub(MAX_PROMPT_TOKENS);
            prompt.extend(tokens.into_iter().skip(skip));
        }
        prompt.push("<|startoftranscript|>".to_owned());
        if self.multilingual {
            prompt.push(format!("<|{}|>", language.unwrap_or("en")));
            prompt.push("<|transcribe|>".to_owned());
        }
        if !self.timestamps {
            prompt.push("<|notimestamps|>".to_owned());
        }
        Ok(prompt)
    }

    /// Whisper's log-mel features of one window of up to 30 s, zero-padded to 30 s, as
    /// `[n_mels, 3000]` row-major.
    fn features(&self, audio: &[f32]) -> Vec<f32> {
        let mut padded = vec![0.0f32; CHUNK_SAMPLES];
        let n = audio.len().min(CHUNK_SAMPLES);
        padded[..n].copy_from_slice(&audio[..n]);
        let n_mels = self.mel.rows.len();
        let mut out = vec![0.0f32; n_mels * CHUNK_FRAMES];
        let mut buffer = vec![Complex::new(0.0f32, 0.0); N_FFT];
        let mut scratch = vec![Complex::new(0.0f32, 0.0); self.fft.get_inplace_scratch_len()];
        let mut power = vec![0.0f32; N_FFT / 2 + 1];
        for frame in 0..CHUNK_FRAMES {
            // torch.stft(center=True, pad_mode="reflect"): frame t is centred on sample t*HOP.
            let centre = (frame * HOP) as isize;
            for (k, slot) in buffer.iter_mut().enumerate() {
                let at = reflect(centre + k as isize - (N_FFT / 2) as isize, CHUNK_SAMPLES);
                *slot = Complex::new(padded[at] * self.window[k], 0.0);
            }
            self.fft.process_with_scratch(&mut buffer, &mut scratch);
            for (p, c) in power.iter_mut().zip(&buffer) {
                *p = c.norm_sqr();
            }
            for (m, row) in self.mel.rows.iter().enumerate() {
                let energy: f32 = row
                    .weights
                    .iter()
                    .zip(&power[row.start..])
                    .map(|(w, p)| w * p)
                    .sum();
                out[m * CHUNK_FRAMES + frame] = energy.max(1e-10).log10();
            }
        }
        let top = out.iter().copied().fold(f32::NEG_INFINITY, f32::max) - 8.0;
        for v in &mut out {
            *v = (v.max(top) + 4.0) / 4.0;
        }
        out
    }

    /// Decodes one 30 s window.
    fn window_text(&self, audio: &[f32], prompt: &[String]) -> Result<String, String> {
        let n_mels = self.mel.rows.len();
        let started = std::time::Instant::now();
        let mut features = self.features(audio);
        let features_took = started.elapsed();
        let view =
            ct2rs::sys::StorageView::new(&[1, n_mels, CHUNK_FRAMES], &mut features, Device::CPU)
                .map_err(|e| format!("cannot pass the features to CTranslate2: {e}"))?;
        let mut options = self.options.clone();
        // A bound on the words the audio can hold (fast speech is about 4 tokens a second):
        // keeps a hallucination loop on noise from running to the 448-token limit.
        options.max_length = (prompt.len() + 16 + audio.len() * 8 / 16_000).min(448);
        let result = self
            .model
            .generate(&view, &[prompt.to_vec()], &options)
            .map_err(|e| format!("Whisper decoding failed: {e}"))?
            .into_iter()
            .next()
            .ok_or("Whisper returned no result")?;
        tracing::debug!(
            ?features_took,
            decode = ?started.elapsed().saturating_sub(features_took),
            "whisper window decoded"
        );
        let score = result.scores.first().copied().unwrap_or(0.0);
        if result.no_speech_prob > NO_SPEECH_THRESHOLD && score < SILENCE_LOGPROB {
            return Ok(String::new());
        }
        let tokens: Vec<String> = result
            .sequences
            .into_iter()
            .next()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !(t.starts_with("<|") && t.ends_with("|>")))
            .collect();
        self.tokenizer
            .decode(tokens)
            .map(|t| t.trim().to_owned())
            .map_err(|e| format!("cannot detokenize Whisper's output: {e}"))
    }
}

impl Recognizer for WhisperRecognizer {
    fn recognize(
        &mut self,
        audio: &[f32],
        prompt: Option<&str>,
        language: Option<&str>,
    ) -> Result<String, String> {
        let prompt = self.prompt(prompt, language)?;
        // Whisper was trained on windows where speech rarely starts at the first sample; an
        // utterance cut at the VAD's onset loses or mishears its first word without a lead-in.
        let padded;
        let audio = if self.lead_in == 0 {
            audio
        } else {
            let mut with_lead_in = vec![0.0f32; self.lead_in + audio.len()];
            with_lead_in[self.lead_in..].copy_from_slice(audio);
            padded = with_lead_in;
            &padded[..]
        };
        let mut texts = Vec::new();
        // Utterances longer than Whisper's window are decoded window by window.
        for window in audio.chunks(CHUNK_SAMPLES) {
            let text = self.window_text(window, &prompt)?;
            if !text.is_empty() {
                texts.push(text);
            }
        }
        Ok(texts.join(" "))
    }
}

/// `index` reflected into `0..len` (numpy's "reflect": the edge sample is not repeated).
fn reflect(index: isize, len: usize) -> usize {
    let last = len as isize - 1;
    let mut i = index;
    if i < 0 {
        i = -i;
    }
    if i > last {
        i = 2 * last - i;
    }
    i.clamp(0, last) as usize
}

/// One mel filter: its non-zero weights from FFT bin `start`.
struct MelRow {
    start: usize,
    weights: Vec<f32>,
}

/// Whisper's Slaney-normalised mel filterbank (librosa's), stored sparsely.
struct MelFilters {
    rows: Vec<MelRow>,
}

impl MelFilters {
    fn new(n_mels: usize) -> Self {
        let dense = slaney_mel(16_000.0, N_FFT, n_mels);
        let rows = dense
            .iter()
            .map(|row| {
                let start = row.iter().position(|&w| w > 0.0).unwrap_or(0);
                let end = row.iter().rposition(|&w| w > 0.0).map_or(start, |e| e + 1);
                MelRow {
                    start,
                    weights: row
                        .iter()
                        .skip(start)
                        .take(end - start)
                        .map(|&w| w as f32)
                        .collect(),
                }
            })
            .collect();
        Self { rows }
    }
}

/// Slaney's mel scale (librosa's default, `htk=False`): linear below 1 kHz, logarithmic above.
fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ {
        MIN_LOG_HZ / F_SP + (hz / MIN_LOG_HZ).ln() / logstep
    } else {
        hz / F_SP
    }
}

/// The inverse of [`hz_to_mel`].
fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let logstep = 6.4f64.ln() / 27.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    if mel >= min_log_mel {
        MIN_LOG_HZ * (logstep * (mel - min_log_mel)).exp()
    } else {
        F_SP * mel
    }
}

/// librosa's `filters.mel(sr, n_fft, n_mels, fmin=0, fmax=sr/2, htk=False, norm="slaney")`,
/// the filterbank Whisper's feature extractor uses: `n_mels` triangles over `n_fft / 2 + 1`
/// FFT bins, their centres evenly spaced in mels, each scaled to unit area.
fn slaney_mel(sample_rate: f64, n_fft: usize, n_mels: usize) -> Vec<Vec<f64>> {
    let bins = n_fft / 2 + 1;
    let bin_hz = sample_rate / n_fft as f64;
    // n_mels + 2 edges: each filter rises from edge i to i + 1 and falls to i + 2.
    let (low, high) = (hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0));
    let step = (high - low) / (n_mels + 1) as f64;
    let edges: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(low + step * i as f64))
        .collect();
    (0..n_mels)
        .map(|i| {
            let (left, centre, right) = (edges[i], edges[i + 1], edges[i + 2]);
            let area = 2.0 / (right - left);
            (0..bins)
                .map(|bin| {
                    let hz = bin_hz * bin as f64;
                    let rising = ((hz - left) / (centre - left)).clamp(0.0, 1.0);
                    let falling = ((right - hz) / (right - centre)).clamp(0.0, 1.0);
                    rising.min(falling) * area
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflection_mirrors_without_repeating_the_edge() {
        assert_eq!(reflect(-1, 10), 1);
        assert_eq!(reflect(-3, 10), 3);
        assert_eq!(reflect(0, 10), 0);
        assert_eq!(reflect(9, 10), 9);
        assert_eq!(reflect(10, 10), 8);
        assert_eq!(reflect(12, 10), 6);
    }

    #[test]
    fn the_filterbank_is_librosas() {
        // Values from librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) (htk=False, Slaney
        // norm), the filterbank Whisper was trained with; this implementation matched the
        // mel_spec crate's port of it bit for bit on 80 and 128 mels before replacing it.
        let mel = slaney_mel(16_000.0, N_FFT, 80);
        assert_eq!((mel.len(), mel[0].len()), (80, 201));
        let nonzero = |row: &[f64]| -> Vec<(usize, f64)> {
            row.iter()
                .enumerate()
                .filter(|(_, w)| **w > 1e-12)
                .map(|(i, w)| (i, *w))
                .collect()
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-15;
        let first = nonzero(&mel[0]);
        assert_eq!(first.len(), 1);
        assert!(first[0].0 == 1 && close(first[0].1, 0.024_862_593_984_176_087));
        let tenth = nonzero(&mel[10]);
        assert_eq!(tenth.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [10, 11]);
        assert!(close(tenth[0].1, 0.019_908_218_880_980_696));
        assert!(close(tenth[1].1, 0.004_954_375_103_195_403));
        let last = nonzero(&mel[79]);
        assert_eq!((last[0].0, last.last().unwrap().0), (186, 199));
        assert!(close(last[6].1, 0.003_164_711_739_176_441_6));
        let sum79: f64 = mel[79].iter().sum();
        assert!(close(sum79, 0.024_925_339_738_858_847));
        let sum40_of_128: f64 = slaney_mel(16_000.0, N_FFT, 128)[40].iter().sum();
        assert!(close(sum40_of_128, 0.040_376_364_759_334_11));
    }

    #[test]
    fn the_filterbank_covers_the_band_once() {
        let mel = MelFilters::new(80);
        assert_eq!(mel.rows.len(), 80);
        assert!(mel.rows.iter().all(|r| !r.weights.is_empty()));
        assert!(mel.rows.windows(2).all(|w| w[0].start <= w[1].start));
        assert!(
            mel.rows
                .iter()
                .all(|r| r.start + r.weights.len() <= N_FFT / 2 + 1)
        );
    }
}
