//! `voxbridge demo --mode voice`: the screening over Media Streams, heard and spoken on this
//! machine. The parts [`super::demo`] adds for it: the `/media` agents with the embedded
//! recogniser and espeak-ng, and the report of what the candidate said beside what the
//! bridge recognised, each turn's latency, and the verdict (exit 0 only when qualified).

use std::io::Write;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use voxbridge_brain::Agents;
use voxbridge_screening::Screenings;
use voxbridge_sim::twilio_api::FinishedCall;
use voxbridge_sim::{Speaker, TranscriptLine};
use voxbridge_speech::providers::SpeechProviders;
use voxbridge_store::{Store, TurnLatencyRecord};
use voxbridge_voice::agents::{MediaAgentOptions, SCREENING, media_agents};

use crate::config::Config;

/// The `/media` agents with the screening interview on `[speech]`'s recogniser and
/// synthesiser (defaults: the embedded Whisper model and espeak-ng), fallback lines rendered.
pub(crate) async fn agents(
    config: &Config,
    providers: &SpeechProviders,
    screenings: &Screenings,
) -> Result<Agents> {
    let set = media_agents(
        &config.speech,
        providers,
        screenings,
        &MediaAgentOptions {
            default_agent: SCREENING.to_owned(),
            hangover: config.media.session.hangover,
        },
    )
    .context(
        "the voice demo recognises speech locally: run scripts/setup.sh to install the \
         Whisper model (or set speech.asr and speech.tts)",
    )?;
    set.prerender().await;
    Ok(set.agents)
}

/// What the candidate said (the scenario's words and key presses), in order.
fn said(finished: &FinishedCall) -> Vec<&str> {
    finished
        .outcome
        .transcript
        .iter()
        .filter(|l: &&TranscriptLine| l.speaker == Speaker::Caller)
        .map(|l| l.text.as_str())
        .filter(|t| *t != "(hangs up)")
        .collect()
}

fn ms(us: Option<i64>) -> String {
    us.map_or_else(|| "-".to_owned(), |us| format!("{}", us / 1000))
}

/// Prints the candidate's words beside what was recognised (the stored transcript's caller
/// and keypad lines), each turn's latency as the bridge stored it, and fails unless the
/// stored outcome is `qualified`.
pub(crate) async fn report(
    out: &mut impl Write,
    store: &Store,
    call_sid: &str,
    finished: &FinishedCall,
    stored: &Value,
) -> Result<()> {
    let heard: Vec<String> = stored["call"]["transcript"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["role"] == "caller" || l["role"] == "keypad")
        .map(|l| match l["role"].as_str() {
            Some("keypad") => format!("(keys {})", l["text"].as_str().unwrap_or_default()),
            _ => l["text"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    let said = said(finished);
    writeln!(out, "--- candidate said -> bridge recognised ---")?;
    for i in 0..said.len().max(heard.len()) {
        writeln!(
            out,
            "  {:<32} -> {}",
            said.get(i)
                .map_or_else(|| "-".to_owned(), |s| format!("{s:?}")),
            heard
                .get(i)
                .map_or_else(|| "-".to_owned(), |s| format!("{s:?}"))
        )?;
    }
    let turns = store
        .turn_latencies(call_sid)
        .await
        .context("cannot read the stored turn latencies")?;
    writeln!(
        out,
        "--- turn latency, ms (end of speech -> first bot frame = hangover + total) ---"
    )?;
    writeln!(
        out,
        "  turn  hangover  asr  dialog  tts-first-byte  total  voice-to-voice  outcome"
    )?;
    for turn in &turns {
        print_turn(out, turn)?;
    }
    let outcome = stored["call"]["screening"]["outcome"]
        .as_str()
        .unwrap_or("none");
    if outcome != "qualified" {
        bail!("the voice screening ended {outcome}, not qualified");
    }
    writeln!(out, "voice screening qualified")?;
    Ok(())
}

fn print_turn(out: &mut impl Write, turn: &TurnLatencyRecord) -> Result<()> {
    let voice_to_voice = turn.total_us.map(|t| t + turn.hangover_ms * 1000);
    writeln!(
        out,
        "  {:>4}  {:>8}  {:>4}  {:>6}  {:>14}  {:>5}  {:>14}  {}",
        turn.turn_index,
        turn.hangover_ms,
        ms(turn.asr_us),
        ms(turn.dialog_first_text_us),
        ms(turn.tts_first_byte_us),
        ms(turn.total_us),
        ms(voice_to_voice),
        turn.outcome
    )?;
    Ok(())
}
