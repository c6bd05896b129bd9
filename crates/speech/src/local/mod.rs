//! The embedded recogniser (`speech.asr = "local"`): speech recognition in this process, on a
//! bounded pool of worker threads.
//!
//! Recognition is CPU-heavy and blocking (a Whisper decode takes most of a second on this
//! class of machine), so it must not run on the async runtime, where it would stall every call's
//! frame pacing. [`LocalAsr`] hands each utterance to a fixed set of std threads through a
//! bounded queue: a full queue refuses at once (`RateLimited`, which the turn logic may retry
//! inside its budget), and a request carries the turn's deadline, so time spent waiting counts
//! against the budget. A worker that takes a request whose deadline has passed, or cannot be met
//! at the recent decode speed, answers `Timeout` without decoding it, and one whose caller has
//! gone (barge-in, hang-up, the caller's own timeout) skips it: a late transcript is no use, and
//! decoding it would only delay the requests queued behind it.
//!
//! The recogniser itself is a [`Recognizer`]: the Whisper engine (`whisper` feature, see
//! [`whisper`]) in production, anything (a fake that sleeps) in tests.

#[cfg(feature = "whisper")]
pub mod whisper;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;
use voxbridge_audio::resample::StreamResampler;

use crate::{Asr, AsrEvent, AsrRequest, AudioChunk, ProviderError, Stage};

/// The sample rate recognisers get: Whisper's.
pub const RECOGNIZER_RATE: u32 = 16_000;

/// The files a `CTranslate2` Whisper model directory must hold.
pub const MODEL_FILES: [&str; 3] = ["model.bin", "config.json", "tokenizer.json"];

/// The command that installs the default model.
pub const SETUP_COMMAND: &str = "scripts/setup.sh";

/// A blocking speech recogniser, owned by one worker thread.
pub trait Recognizer: Send {
    /// Transcribes `audio` (mono, [`RECOGNIZER_RATE`], samples in `-1.0..=1.0`). `prompt` is
    /// text that came before (the question being asked), `language` an ISO-639-1 hint. Returns
    /// the text, empty when nothing intelligible was said, or what went wrong.
    fn recognize(
        &mut self,
        audio: &[f32],
        prompt: Option<&str>,
        language: Option<&str>,
    ) -> Result<String, String>;
}

/// Builds one worker's recogniser (loads the model); called on the worker's own thread.
pub type RecognizerFactory = Arc<dyn Fn() -> Result<Box<dyn Recognizer>, String> + Send + Sync>;

/// Sizes of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSize {
    /// Worker threads, each with its own recogniser (at least 1).
    pub workers: usize,
    /// Requests waiting for a worker beyond the ones being decoded (at least 1).
    pub queue: usize,
}

/// Whether `dir` holds a `CTranslate2` Whisper model: `Err` names the first missing file.
pub fn check_model_dir(dir: &Path) -> Result<(), String> {
    for file in MODEL_FILES {
        if !dir.join(file).is_file() {
            return Err(format!(
                "no Whisper model in {} ({file} is missing); run {SETUP_COMMAND} to install \
                 Whisper tiny.en there, or set speech.local.model_dir to a CTranslate2 Whisper model directory",
                dir.display()
            ));
        }
    }
    Ok(())
}

/// The default model directory: `$VOXBRIDGE_MODEL_DIR/whisper-tiny.en`, else
/// `$HOME/.cache/voxbridge/models/whisper-tiny.en` (where `scripts/setup.sh` installs it).
pub fn default_model_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let base = env("VOXBRIDGE_MODEL_DIR")
        .filter(|d| !d.trim().is_empty())
        .map_or_else(
            || {
                PathBuf::from(env("HOME").unwrap_or_else(|| ".".to_owned()))
                    .join(".cache/voxbridge/models")
            },
            PathBuf::from,
        );
    base.join("whisper-tiny.en")
}

/// The recogniser `[speech.local]` configures: Whisper from `dir` on the configured pool.
#[cfg(feature = "whisper")]
pub fn start_whisper(
    dir: PathBuf,
    config: &crate::config::LocalAsrConfig,
) -> Result<LocalAsr, String> {
    check_model_dir(&dir)?;
    let settings = whisper::WhisperSettings {
        beam_size: config.beam_size,
        threads: config.threads_per_worker,
        compute_type: config.compute_type.clone(),
        timestamps: config.timestamps,
        lead_in_ms: config.lead_in_ms,
    };
    let factory: RecognizerFactory = Arc::new(move || {
        whisper::WhisperRecognizer::load(&dir, &settings)
            .map(|r| Box::new(r) as Box<dyn Recognizer>)
    });
    LocalAsr::start(
        &factory,
        PoolSize {
            workers: config.workers,
            queue: config.queue,
        },
        Some(config.language.clone()),
        Some(config.initial_prompt.clone()),
    )
}

/// One queued utterance.
struct Job {
    audio: AudioChunk,
    prompt: Option<String>,
    language: Option<String>,
    deadline: Option<Instant>,
    queued: Instant,
    reply: oneshot::Sender<Result<String, ProviderError>>,
}

/// The recogniser's queue wait and decode time, for `/metrics`
/// (`voxbridge_asr_local_queue_wait_seconds`, `voxbridge_asr_local_decode_seconds`): every
/// request a worker takes, speculative ones included, so they show what the turns'
/// `asr` time (which is what is left after the hangover) does not.
#[derive(Debug, Clone)]
pub struct LocalAsrMetrics {
    /// Queued -> taken by a worker (requests decoded or refused for their deadline).
    pub queue_wait: Histogram,
    /// One decode, resampling included.
    pub decode: Histogram,
}

impl Default for LocalAsrMetrics {
    fn default() -> Self {
        // 10 ms .. ~6.5 s in steps of a quarter.
        let buckets = || Histogram::new(exponential_buckets(0.01, 1.25, 30));
        Self {
            queue_wait: buckets(),
            decode: buckets(),
        }
    }
}

impl LocalAsrMetrics {
    /// Registers both histograms.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "voxbridge_asr_local_queue_wait_seconds",
            "Local recogniser: time a request waited for a worker",
            self.queue_wait.clone(),
        );
        registry.register(
            "voxbridge_asr_local_decode_seconds",
            "Local recogniser: time one decode took",
            self.decode.clone(),
        );
    }
}

/// State shared by the workers.
struct Workers {
    jobs: Mutex<Receiver<Job>>,
    metrics: LocalAsrMetrics,
    /// Recent decode time (exponentially weighted, microseconds; 0 = none yet): a job that
    /// cannot finish before its deadline at this speed is not started.
    decode_us: AtomicU64,
}

/// The embedded recogniser: [`Asr`] over a bounded pool of worker threads.
#[derive(Clone)]
pub struct LocalAsr {
    queue: SyncSender<Job>,
    metrics: LocalAsrMetrics,
    language: Option<String>,
    initial_prompt: Option<String>,
    capacity: usize,
}

impl fmt::Debug for LocalAsr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalAsr")
            .field("capacity", &self.capacity)
            .field("language", &self.language)
            .finish_non_exhaustive()
    }
}

impl LocalAsr {
    /// Starts `size.workers` threads, each building its recogniser with `factory` (a model
    /// load failure is logged and every request that worker takes answers `Unavailable` with
    /// it). `language` is the default hint; `initial_prompt` goes before a request's prompt.
    /// The threads end when the last clone of the returned value is dropped.
    pub fn start(
        factory: &RecognizerFactory,
        size: PoolSize,
        language: Option<String>,
        initial_prompt: Option<String>,
    ) -> Result<Self, String> {
        let (queue, jobs) = std::sync::mpsc::sync_channel(size.queue.max(1));
        let metrics = LocalAsrMetrics::default();
        let shared = Arc::new(Workers {
            jobs: Mutex::new(jobs),
            metrics: metrics.clone(),
            decode_us: AtomicU64::new(0),
        });
        for n in 0..size.workers.max(1) {
            let shared = Arc::clone(&shared);
            let factory = Arc::clone(factory);
            std::thread::Builder::new()
                .name(format!("asr-local-{n}"))
                .spawn(move || work(&shared, &*factory))
                .map_err(|e| format!("cannot start recogniser thread {n}: {e}"))?;
        }
        Ok(Self {
            queue,
            metrics,
            language: language.filter(|l| !l.trim().is_empty()),
            initial_prompt: initial_prompt.filter(|p| !p.trim().is_empty()),
            capacity: size.queue.max(1),
        })
    }

    /// Its queue wait and decode histograms (register them once, at startup).
    pub fn metrics(&self) -> &LocalAsrMetrics {
        &self.metrics
    }

    /// The prompt a request is decoded with: the configured one, then the request's.
    fn prompt(&self, request: Option<&str>) -> Option<String> {
        let parts: Vec<&str> = [self.initial_prompt.as_deref(), request]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

impl Asr for LocalAsr {
    fn name(&self) -> &'static str {
        "local"
    }

    fn transcribe(
        &self,
        request: AsrRequest,
    ) -> BoxStream<'static, Result<AsrEvent, ProviderError>> {
        let (reply, answer) = oneshot::channel();
        let queued = Instant::now();
        let deadline = request.deadline;
        let job = Job {
            prompt: self.prompt(request.prompt.as_deref()),
            language: request.language.or_else(|| self.language.clone()),
            audio: request.audio,
            deadline,
            queued,
            reply,
        };
        let sent = match self.queue.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                tracing::warn!(
                    capacity = self.capacity,
                    "local recogniser queue full; request refused"
                );
                Err(ProviderError::RateLimited {
                    stage: Stage::Asr,
                    retry_after: None,
                })
            }
            Err(TrySendError::Disconnected(_)) => Err(ProviderError::Unavailable {
                stage: Stage::Asr,
                message: "the local recogniser's workers have stopped".into(),
            }),
        };
        futures::stream::once(async move {
            sent?;
            let text = match deadline {
                Some(deadline) => {
                    tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), answer)
                        .await
                        .map_err(|_| ProviderError::Timeout {
                            stage: Stage::Asr,
                            after: deadline.saturating_duration_since(queued),
                        })?
                }
                None => answer.await,
            }
            .map_err(|_| ProviderError::Unavailable {
                stage: Stage::Asr,
                message: "a local recogniser worker stopped during the request".into(),
            })??;
            Ok(AsrEvent::Final {
                text,
                confidence: None,
            })
        })
        .boxed()
    }
}

/// One worker: builds its recogniser, then takes jobs until the pool is dropped.
fn work(
    shared: &Workers,
    factory: &(dyn Fn() -> Result<Box<dyn Recognizer>, String> + Send + Sync),
) {
    let started = Instant::now();
    let mut recognizer = match factory() {
        Ok(r) => {
            tracing::info!(load = ?started.elapsed(), "local recogniser ready");
            Ok(r)
        }
        Err(problem) => {
            tracing::error!(%problem, "local recogniser failed to load");
            Err(problem)
        }
    };
    loop {
        let job = {
            let Ok(jobs) = shared.jobs.lock() else { return };
            match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if job.reply.is_closed() {
            tracing::debug!(waited = ?job.queued.elapsed(), "local ASR request dropped by its caller while queued");
            continue;
        }
        let result = match &mut recognizer {
            Ok(r) => run(shared, r.as_mut(), &job),
            Err(problem) => Err(ProviderError::Unavailable {
                stage: Stage::Asr,
                message: problem.clone(),
            }),
        };
        // The caller may have gone meanwhile; nothing to do then.
        let _ = job.reply.send(result);
    }
}

/// Decodes one job unless its deadline cannot be met.
fn run(
    shared: &Workers,
    recognizer: &mut dyn Recognizer,
    job: &Job,
) -> Result<String, ProviderError> {
    let now = Instant::now();
    let waited = now.saturating_duration_since(job.queued);
    shared.metrics.queue_wait.observe(waited.as_secs_f64());
    let expected = Duration::from_micros(shared.decode_us.load(Ordering::Relaxed));
    if let Some(deadline) = job.deadline
        && now + expected > deadline
    {
        tracing::info!(
            ?waited,
            ?expected,
            "local ASR request cannot finish before the turn deadline; not decoded"
        );
        return Err(ProviderError::Timeout {
            stage: Stage::Asr,
            after: waited,
        });
    }
    let audio = to_recognizer_rate(&job.audio)?;
    let text = recognizer
        .recognize(&audio, job.prompt.as_deref(), job.language.as_deref())
        .map_err(|message| ProviderError::Server {
            stage: Stage::Asr,
            status: 0,
            message,
        })?;
    let took = now.elapsed();
    shared.metrics.decode.observe(took.as_secs_f64());
    let took_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    // EWMA with weight 1/4 on the newest decode.
    let _ = shared
        .decode_us
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            Some(if old == 0 {
                took_us
            } else {
                (old * 3 + took_us) / 4
            })
        });
    tracing::debug!(
        ?waited,
        ?took,
        audio_ms = audio.len() / 16,
        "local ASR decoded"
    );
    Ok(text.trim().to_owned())
}

/// The utterance as normalised f32 at [`RECOGNIZER_RATE`].
fn to_recognizer_rate(audio: &AudioChunk) -> Result<Vec<f32>, ProviderError> {
    let pcm: std::borrow::Cow<'_, [i16]> = if audio.sample_rate == RECOGNIZER_RATE {
        std::borrow::Cow::Borrowed(&audio.pcm)
    } else {
        let mut resampler =
            StreamResampler::new(audio.sample_rate, RECOGNIZER_RATE).map_err(|e| {
                ProviderError::Protocol {
                    stage: Stage::Asr,
                    message: format!(
                        "cannot resample the utterance from {} Hz to {RECOGNIZER_RATE} Hz: {e}",
                        audio.sample_rate
                    ),
                }
            })?;
        let mut out = Vec::with_capacity(audio.pcm.len() * 2);
        resampler.process(&audio.pcm, &mut out);
        resampler.flush(&mut out);
        std::borrow::Cow::Owned(out)
    };
    Ok(pcm.iter().map(|&s| f32::from(s) / 32768.0).collect())
}
