//! `voxbridge replay`: the inbound half of a Media Streams call, offline.
//!
//! The WAV is resampled to 8 kHz, mu-law encoded and cut into 20 ms frames, each wrapped in a
//! `media` message exactly as Twilio sends it. Every frame then takes the production path:
//! parse + base64 (voxbridge-twilio) -> mu-law decode -> resample to the pipeline rate -> VAD
//! (voxbridge-audio). The report lists the utterances the VAD found and what each frame cost.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use voxbridge_audio::{mulaw, resample::StreamResampler, vad, wav};
use voxbridge_twilio::media::{InboundDecoder, InboundEvent};

use crate::config::Config;

/// 20 ms of mu-law at 8 kHz: the frame size Twilio sends.
const FRAME_BYTES: usize = 160;
const TWILIO_RATE: u32 = 8000;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// WAV file with the caller's audio (any sample rate, mono or stereo).
    wav: PathBuf,
    /// Also write the audio as the pipeline hears it (after mu-law and resampling) to this WAV.
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

    // What Twilio would put on the wire: 8 kHz mu-law in 20 ms frames.
    let mut to_8k = StreamResampler::new(rate, TWILIO_RATE)?;
    let mut pcm8k = Vec::with_capacity(samples.len() * TWILIO_RATE as usize / rate as usize + 1);
    to_8k.process(&samples, &mut pcm8k);
    to_8k.flush(&mut pcm8k);
    let mut wire = Vec::with_capacity(pcm8k.len());
    mulaw::encode(&pcm8k, &mut wire);
    let messages = twilio_media_messages(&wire);
    if let Some(path) = &args.write_frames {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        for m in &messages {
            writeln!(file, "{m}")?;
        }
        file.flush()?;
    }

    // The production inbound path, one frame at a time.
    let media = &config.media;
    let pipeline_rate = media.pipeline_rate;
    let mut decoder = InboundDecoder::new();
    let mut to_pipeline = StreamResampler::new(TWILIO_RATE, pipeline_rate)?;
    let mut detector = vad::Vad::new(vad::VadConfig {
        sample_rate: pipeline_rate,
        min_speech_ms: u32::try_from(media.min_speech_ms)
            .context("media.min_speech_ms is too large")?,
        hangover_ms: u32::try_from(media.hangover_ms).context("media.hangover_ms is too large")?,
        ..vad::VadConfig::new(pipeline_rate)
    })?;
    let mut pcm = Vec::with_capacity(FRAME_BYTES);
    let mut resampled = Vec::with_capacity(FRAME_BYTES * 3);
    let mut heard: Vec<i16> = Vec::new();
    let mut events = Vec::new();
    let mut costs = Vec::with_capacity(messages.len());
    for text in &messages {
        let started = Instant::now();
        let InboundEvent::Media(frame) = decoder.decode(text)? else {
            bail!("replay produced a non-media message");
        };
        pcm.clear();
        mulaw::decode(frame.payload, &mut pcm);
        resampled.clear();
        to_pipeline.process(&pcm, &mut resampled);
        detector.process(&resampled, &mut events);
        costs.push(started.elapsed());
        if args.write_heard.is_some() {
            heard.extend_from_slice(&resampled);
        }
    }
    if let Some(path) = &args.write_heard {
        wav::write_wav(path, &heard, pipeline_rate)?;
    }

    let audio = Duration::from_secs_f64(wire.len() as f64 / f64::from(TWILIO_RATE));
    report(
        &args.wav,
        audio,
        pipeline_rate,
        &events,
        &mut costs,
        to_pipeline.delay(),
    )
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
    events: &[vad::VadEvent],
    costs: &mut [Duration],
    resampler_delay: Duration,
) -> Result<()> {
    let ms = |sample: u64| sample * 1000 / u64::from(pipeline_rate);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "replayed {} ({:.2} s of audio, {} frames of 20 ms)",
        path.display(),
        audio.as_secs_f64(),
        costs.len()
    )?;
    writeln!(out, "utterances detected by the VAD:")?;
    let mut open: Option<u64> = None;
    let mut count = 0;
    for event in events {
        match *event {
            vad::VadEvent::SpeechStart { at_sample } => open = Some(ms(at_sample)),
            vad::VadEvent::SpeechEnd { at_sample } => {
                count += 1;
                let start = open.take().unwrap_or(0);
                let end = ms(at_sample);
                writeln!(
                    out,
                    "  #{count:<3} {start:>7} ms .. {end:>7} ms  ({} ms)",
                    end.saturating_sub(start)
                )?;
            }
        }
    }
    if let Some(start) = open {
        count += 1;
        writeln!(
            out,
            "  #{count:<3} {start:>7} ms .. (still speaking at end of file)"
        )?;
    }
    if count == 0 {
        writeln!(out, "  none")?;
    }
    costs.sort_unstable();
    let pct = |p: usize| costs[(costs.len() - 1) * p / 100];
    writeln!(
        out,
        "inbound cost per frame (parse, base64, mu-law, resample to {} Hz, VAD): p50 {:?}, p99 {:?}, max {:?}",
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
