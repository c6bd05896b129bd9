//! `voxbridge replay`: the inbound half of a Media Streams call, offline.
//!
//! The WAV is resampled to 8 kHz, mu-law encoded and cut into 20 ms frames, each wrapped in a
//! `media` message exactly as Twilio sends it. The frames then go, after Twilio's `connected`
//! and `start`, into the call's real sans-IO [`Session`] with `[media]`'s settings (parse +
//! base64 -> mu-law decode -> resample to the pipeline rate -> VAD -> utterances), as the
//! `/media` driver feeds it. The report lists the utterances the brain would get and what each
//! frame cost.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use voxbridge_audio::{mulaw, resample::StreamResampler, wav};
use voxbridge_session::{BrainEvent, Input, Output, Session};

use crate::config::Config;

/// 20 ms of mu-law at 8 kHz: the frame size Twilio sends.
const FRAME_BYTES: usize = 160;
const TWILIO_RATE: u32 = 8000;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// WAV file with the caller's audio (any sample rate, mono or stereo).
    wav: PathBuf,
    /// Also write the utterances as the brain gets them (after mu-law, resampling and VAD, at
    /// the pipeline rate, one after another) to this WAV.
    #[arg(long)]
    write_heard: Option<PathBuf>,
    /// Print each frame's `media` JSON as Twilio would send it (JSON lines) to this file.
    #[arg(long)]
    write_frames: Option<PathBuf>,
}

pub(crate) fn run(config: &Config, args: &Args) -> Result<()> {
    let (samples, rate) =
        wav::read_wav(&args.wav).with_context(|| format!("cannot read {}", args.wav.display()))?;
    if samples.is_empty() {
        bail!("{} holds no audio", args.wav.display());
    }
    let mut replayed = inbound(config, &samples, rate)?;
    if let Some(path) = &args.write_frames {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        for m in &replayed.messages {
            writeln!(file, "{m}")?;
        }
        file.flush()?;
    }
    let pipeline_rate = replayed.pipeline_rate;
    if let Some(path) = &args.write_heard {
        let mut heard: Vec<i16> = Vec::new();
        for utterance in &replayed.utterances {
            if let Some(pcm) = &utterance.pcm {
                heard.extend_from_slice(pcm);
            }
        }
        wav::write_wav(path, &heard, pipeline_rate)?;
    }

    let audio = Duration::from_secs_f64(replayed.wire_samples as f64 / f64::from(TWILIO_RATE));
    let resampler_delay = StreamResampler::new(TWILIO_RATE, pipeline_rate)?.delay();
    report(
        &args.wav,
        audio,
        pipeline_rate,
        &replayed.utterances,
        &mut replayed.costs,
        resampler_delay,
    )
}

/// What the inbound path made of a file.
pub(crate) struct Replayed {
    /// The `media` messages Twilio would have sent.
    messages: Vec<String>,
    /// Samples on the wire (8 kHz mu-law).
    wire_samples: usize,
    /// The utterances the session handed the brain.
    pub(crate) utterances: Vec<Heard>,
    /// What each frame cost the session.
    costs: Vec<Duration>,
    /// The rate of the utterances' audio.
    pub(crate) pipeline_rate: u32,
}

/// Pushes `samples` (at `rate`) through the inbound Media Streams path: resampled to 8 kHz,
/// mu-law encoded in 20 ms `media` messages, then into the call's real [`Session`] with
/// `[media]`'s settings (decode, resample to the pipeline rate, VAD).
pub(crate) fn inbound(config: &Config, samples: &[i16], rate: u32) -> Result<Replayed> {
    // What Twilio would put on the wire: 8 kHz mu-law in 20 ms frames.
    let mut to_8k = StreamResampler::new(rate, TWILIO_RATE)?;
    let mut pcm8k = Vec::with_capacity(samples.len() * TWILIO_RATE as usize / rate as usize + 1);
    to_8k.process(samples, &mut pcm8k);
    to_8k.flush(&mut pcm8k);
    let mut wire = Vec::with_capacity(pcm8k.len());
    mulaw::encode(&pcm8k, &mut wire);
    let messages = twilio_media_messages(&wire);

    // The production inbound path: the call's real sans-IO `Session`, fed `connected`, `start`
    // and one `media` message per 20 ms of stream time, as the `/media` driver feeds it.
    let session_config = config.media.session.clone();
    let pipeline_rate = session_config.pipeline_rate;
    let origin = Instant::now();
    let mut session = Session::try_new(session_config, origin)
        .context("invalid [media] configuration for the session")?;
    let mut utterances = Vec::new();
    for text in [CONNECTED, START] {
        session.handle_input(origin, Input::Text(text));
        drain(&mut session, Duration::ZERO, &mut utterances);
    }
    let mut costs = Vec::with_capacity(messages.len());
    for (i, text) in messages.iter().enumerate() {
        let at = Duration::from_millis(20 * i as u64);
        let started = Instant::now();
        session.handle_input(origin + at, Input::Text(text));
        drain(&mut session, at, &mut utterances);
        costs.push(started.elapsed());
    }
    if let Some(error) = session.last_error() {
        bail!("the session refused a replayed frame: {error}");
    }
    Ok(Replayed {
        messages,
        wire_samples: wire.len(),
        utterances,
        costs,
        pipeline_rate,
    })
}

/// Twilio's `connected` message, as the Media Streams docs show it.
const CONNECTED: &str = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;

/// Twilio's `start` message for the replayed stream (inbound track, 8 kHz mu-law).
const START: &str = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC00000000000000000000000000000001","streamSid":"MZ00000000000000000000000000000001","callSid":"CA00000000000000000000000000000001","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{}},"streamSid":"MZ00000000000000000000000000000001"}"#;

/// One utterance as the brain would get it.
#[derive(Debug)]
pub(crate) struct Heard {
    /// When the session reported speech (stream time of the frame that triggered it).
    onset: Duration,
    /// The utterance's audio boundaries; `None` while still speaking at the end.
    pub(crate) span: Option<(Duration, Duration)>,
    /// Its audio at the pipeline rate.
    pub(crate) pcm: Option<Vec<i16>>,
}

/// Takes the session's output after one input: brain events become [`Heard`] entries;
/// frames for Twilio (none on an inbound-only replay) and timeouts are ignored.
fn drain(session: &mut Session, at: Duration, utterances: &mut Vec<Heard>) {
    loop {
        match session.poll_output() {
            Output::Brain(BrainEvent::SpeechStarted) => utterances.push(Heard {
                onset: at,
                span: None,
                pcm: None,
            }),
            Output::Brain(BrainEvent::Utterance {
                pcm,
                started_at,
                ended_at,
                ..
            }) => {
                if utterances.last().is_none_or(|u| u.span.is_some()) {
                    // An utterance whose onset came before the replay's first frame.
                    utterances.push(Heard {
                        onset: at,
                        span: None,
                        pcm: None,
                    });
                }
                let entry = utterances.last_mut().expect("one is open");
                entry.span = Some((started_at, ended_at));
                entry.pcm = Some(pcm);
            }
            Output::Timeout(_) | Output::Close { .. } => return,
            Output::Send(_) | Output::Brain(_) => {}
        }
    }
}

/// Builds Twilio's inbound `media` messages (the shape from the Media Streams docs, with the
/// string-typed counters Twilio's examples use).
fn twilio_media_messages(wire: &[u8]) -> Vec<String> {
    let stream_sid = "MZ00000000000000000000000000000001";
    wire.chunks(FRAME_BYTES)
        .enumerate()
        .map(|(i, chunk)| {
            serde_json::json!({
                "event": "media",
                "sequenceNumber": (i + 2).to_string(),
                "media": {
                    "track": "inbound",
                    "chunk": (i + 1).to_string(),
                    "timestamp": (i * 20).to_string(),
                    "payload": base64::engine::general_purpose::STANDARD.encode(chunk),
                },
                "streamSid": stream_sid,
            })
            .to_string()
        })
        .collect()
}

fn report(
    path: &std::path::Path,
    audio: Duration,
    pipeline_rate: u32,
    utterances: &[Heard],
    costs: &mut [Duration],
    resampler_delay: Duration,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "replayed {} ({:.2} s of audio, {} frames of 20 ms)",
        path.display(),
        audio.as_secs_f64(),
        costs.len()
    )?;
    writeln!(
        out,
        "utterances the session hands the brain (VAD boundaries):"
    )?;
    for (i, utterance) in utterances.iter().enumerate() {
        let count = i + 1;
        match utterance.span {
            Some((start, end)) => writeln!(
                out,
                "  #{count:<3} {:>7} ms .. {:>7} ms  ({} ms, reported at {} ms)",
                start.as_millis(),
                end.as_millis(),
                end.saturating_sub(start).as_millis(),
                utterance.onset.as_millis()
            )?,
            None => writeln!(
                out,
                "  #{count:<3} onset reported at {:>7} ms .. (still speaking at end of file)",
                utterance.onset.as_millis()
            )?,
        }
    }
    if utterances.is_empty() {
        writeln!(out, "  none")?;
    }
    costs.sort_unstable();
    let pct = |p: usize| costs[(costs.len() - 1) * p / 100];
    writeln!(
        out,
        "inbound cost per frame (session: parse, base64, mu-law, resample to {} Hz, VAD): p50 {:?}, p99 {:?}, max {:?}",
        pipeline_rate,
        pct(50),
        pct(99),
        costs[costs.len() - 1]
    )?;
    writeln!(
        out,
        "resampler delay 8000 -> {pipeline_rate} Hz: {resampler_delay:?}"
    )?;
    Ok(())
}
