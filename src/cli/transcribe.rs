//! `voxbridge transcribe`: WAV files through the inbound Media Streams path and the configured
//! recogniser, offline.
//!
//! Each file takes the path `voxbridge replay` takes (8 kHz mu-law in 20 ms `media` messages
//! as Twilio sends them -> the call's real `Session`: decode, resample to the pipeline rate,
//! VAD), then each utterance the session hands the brain goes to `[speech]`'s recogniser as the
//! voice pipeline sends it (`speech.asr`: the embedded Whisper with `local`/`auto`). It prints
//! each utterance's span in the file, its text and how long recognition took (queue included),
//! and the median recognition time.
//!
//! `--accuracy MANIFEST` runs the ASR accuracy set instead (see [`accuracy`]).

mod accuracy;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use voxbridge_audio::wav;
use voxbridge_speech::{Asr, AsrEvent, AsrRequest, AudioChunk};

use super::replay;
use crate::config::Config;

/// Silence put before each file: on a call the caller is quiet while the question plays, and
/// the VAD's noise floor is learnt there; a file that starts with speech would otherwise lose
/// its first words to the floor estimate. Spans are reported in the file's own time.
const LEAD_SILENCE: Duration = Duration::from_secs(1);
/// Silence appended to each file so an answer that runs to the end of it is closed by the VAD
/// (longer than `media.hangover_ms` at its maximum useful values).
const TRAILING_SILENCE: Duration = Duration::from_secs(2);

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// WAV files with caller audio (any sample rate, mono or stereo; PCM, float or mu-law).
    #[arg(required_unless_present = "accuracy")]
    files: Vec<PathBuf>,
    /// Text the caller is answering (the question), passed to the recogniser as its prompt.
    /// With `--accuracy`, replaces each answer's question.
    #[arg(long)]
    prompt: Option<String>,
    /// One JSON object per utterance (`file`, `index`, `start_ms`, `end_ms`, `recognition_ms`, `text`)
    /// instead of the text report; with `--accuracy`, one per answer and condition, then the
    /// summary.
    #[arg(long)]
    json: bool,
    /// Runs an ASR accuracy set (e.g. `tests/data/asr-accuracy/manifest.toml`): every answer,
    /// clean and at 15 dB SNR, through the inbound path and the recogniser, prompted with the
    /// question it answers; prints word error rate, parsed answers correct and recognition time.
    #[arg(long, value_name = "MANIFEST", conflicts_with = "files")]
    accuracy: Option<PathBuf>,
    /// With `--accuracy`: no prompt (not the question, not `--prompt`).
    #[arg(long, requires = "accuracy")]
    no_prompt: bool,
    /// With `--accuracy`: score the manifest's own texts instead of recognising the audio (no
    /// recogniser needed; checks the manifest and the scoring: everything must be correct).
    #[arg(long, requires = "accuracy")]
    reference: bool,
}

/// One recognised utterance.
struct Recognised {
    start: Duration,
    end: Duration,
    took: Duration,
    text: String,
}

pub(crate) fn run(config: &Config, args: &Args) -> Result<()> {
    if let Some(manifest) = &args.accuracy {
        let options = accuracy::Options {
            prompt: if args.no_prompt {
                accuracy::Prompt::None
            } else {
                args.prompt
                    .clone()
                    .map_or(accuracy::Prompt::Question, accuracy::Prompt::Fixed)
            },
            reference: args.reference,
            json: args.json,
        };
        return accuracy::run(config, manifest, &options);
    }
    let recogniser = Recogniser::start(config)?;
    let mut out = std::io::stdout().lock();
    let mut times = Vec::new();
    for path in &args.files {
        let results = recogniser.file(config, path, args.prompt.as_deref())?;
        times.extend(results.iter().map(|r| r.took));
        print_file(&mut out, path, &results, args.json)?;
    }
    if !args.json {
        times.sort_unstable();
        match times.get(times.len() / 2) {
            Some(median) => writeln!(
                out,
                "recognition time ({}): median {} ms over {} utterances, max {} ms",
                recogniser.name(),
                median.as_millis(),
                times.len(),
                times.last().copied().unwrap_or_default().as_millis()
            )?,
            None => writeln!(out, "no utterances")?,
        }
    }
    Ok(())
}

/// The configured recogniser, loaded and warmed up, with a runtime to drive it.
struct Recogniser {
    asr: Arc<dyn Asr>,
    runtime: tokio::runtime::Runtime,
}

impl Recogniser {
    fn start(config: &Config) -> Result<Self> {
        let providers = config
            .speech
            .build()
            .context("invalid [speech] configuration")?;
        let asr = providers.asr("transcribe").context(
            "no recogniser: run scripts/setup.sh to install the embedded Whisper model, or set speech.asr",
        )?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // The first decode pays for loading the model: done before anything is timed.
        runtime
            .block_on(recognise(&asr, vec![0; 16_000], 16_000, None))
            .context("warm-up recognition")?;
        Ok(Self { asr, runtime })
    }

    fn name(&self) -> &'static str {
        self.asr.name()
    }

    /// `path` through the inbound path and each utterance through the recogniser.
    fn file(
        &self,
        config: &Config,
        path: &std::path::Path,
        prompt: Option<&str>,
    ) -> Result<Vec<Recognised>> {
        let (mut samples, rate) =
            wav::read_wav(path).with_context(|| format!("cannot read {}", path.display()))?;
        if samples.is_empty() {
            bail!("{} holds no audio", path.display());
        }
        let silence = |d: Duration| vec![0i16; d.as_millis() as usize * rate as usize / 1000];
        samples = [silence(LEAD_SILENCE), samples, silence(TRAILING_SILENCE)].concat();
        let replayed = replay::inbound(config, &samples, rate)?;
        let mut recognised = Vec::new();
        for utterance in replayed.utterances {
            let (Some((start, end)), Some(pcm)) = (utterance.span, utterance.pcm) else {
                continue;
            };
            let started = Instant::now();
            let text = self
                .runtime
                .block_on(recognise(
                    &self.asr,
                    pcm,
                    replayed.pipeline_rate,
                    prompt.map(str::to_owned),
                ))
                .with_context(|| format!("recognising {}", path.display()))?;
            recognised.push(Recognised {
                start: start.saturating_sub(LEAD_SILENCE),
                end: end.saturating_sub(LEAD_SILENCE),
                took: started.elapsed(),
                text,
            });
        }
        Ok(recognised)
    }
}

/// One utterance through the recogniser, as the voice pipeline sends it.
async fn recognise(
    asr: &Arc<dyn Asr>,
    pcm: Vec<i16>,
    sample_rate: u32,
    prompt: Option<String>,
) -> Result<String> {
    let mut events = asr.transcribe(AsrRequest {
        audio: AudioChunk { pcm, sample_rate },
        language: None,
        prompt,
        deadline: None,
    });
    while let Some(event) = events.next().await {
        if let AsrEvent::Final { text, .. } = event? {
            return Ok(text);
        }
    }
    bail!("the recogniser ended without a final transcript")
}

fn print_file(
    out: &mut impl Write,
    path: &std::path::Path,
    recognised: &[Recognised],
    json: bool,
) -> Result<()> {
    if json {
        for (i, r) in recognised.iter().enumerate() {
            let line = serde_json::json!({
                "file": path.display().to_string(),
                "index": i,
                "start_ms": r.start.as_millis() as u64,
                "end_ms": r.end.as_millis() as u64,
                "recognition_ms": r.took.as_millis() as u64,
                "text": r.text,
            });
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    writeln!(out, "{}", path.display())?;
    if recognised.is_empty() {
        writeln!(out, "  no utterances")?;
    }
    for (i, r) in recognised.iter().enumerate() {
        writeln!(
            out,
            "  #{:<2} {:>6.2} s .. {:>6.2} s  recognised in {:>4} ms: {:?}",
            i + 1,
            r.start.as_secs_f64(),
            r.end.as_secs_f64(),
            r.took.as_millis(),
            r.text
        )?;
    }
    Ok(())
}
