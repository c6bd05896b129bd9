//! A Media Streams echo call end to end: the simulator places a signed call to the real
//! bridge, streams a recorded utterance in real time and records what the caller heard; the
//! echo that comes back must be bit-exact what was sent, with its mark echoed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ACCOUNT_SID, AUTH_TOKEN, decode, start_bridge, utterance_mulaw};
use tokio_util::sync::CancellationToken;
use voxbridge_sim::media_call::{MediaCall, MediaCallOptions, run_media_call};
use voxbridge_sim::ws::Route;
use voxbridge_sim::{Action, CallEnd, Recorder, Speaker, Step, TranscriptTap, Trigger};
use voxbridge_twilio::sid::{AccountSid, CallSid, StreamSid};

/// The lag of `needle` in `haystack` with the largest normalized correlation.
fn best_lag(haystack: &[f64], needle: &[f64]) -> usize {
    let needle_energy: f64 = needle.iter().map(|x| x * x).sum();
    (0..haystack.len().saturating_sub(needle.len()))
        .step_by(1)
        .map(|lag| {
            let window = &haystack[lag..lag + needle.len()];
            let dot: f64 = window.iter().zip(needle).map(|(a, b)| a * b).sum();
            let energy: f64 = window.iter().map(|x| x * x).sum();
            (lag, dot / (energy * needle_energy).sqrt().max(1.0))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(lag, _)| lag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_call_heard_audio_matches_what_was_sent() {
    let bridge = start_bridge(|_| {}).await;
    let utterance = utterance_mulaw(0);
    let steps: Arc<[Step]> = vec![
        Step {
            trigger: Trigger::Start,
            delay_us: 400_000,
            action: Action::Say {
                text: "Yes, I am authorized to work in the United States.".into(),
                audio: Some(utterance.clone().into()),
            },
        },
        Step {
            trigger: Trigger::BotDone,
            delay_us: 200_000,
            action: Action::Hangup,
        },
    ]
    .into();
    let call = MediaCall {
        url: format!("wss://{}/media", bridge.addr),
        route: Route::default(),
        auth_token: Some(AUTH_TOKEN.into()),
        account_sid: AccountSid::new(ACCOUNT_SID).unwrap(),
        call_sid: CallSid::new("CA00000000000000000000000000000e2e").unwrap(),
        stream_sid: StreamSid::new("MZ00000000000000000000000000000e2e").unwrap(),
        parameters: [("agent".to_owned(), "echo".to_owned())].into(),
        steps,
        options: MediaCallOptions {
            record: true,
            max_duration: Duration::from_secs(20),
            ..MediaCallOptions::default()
        },
    };
    let recorder = Recorder::new();
    let outcome = run_media_call(
        &call,
        &recorder,
        &TranscriptTap::none(),
        &CancellationToken::new(),
    )
    .await
    .expect("call runs");
    assert_eq!(outcome.end, Some(CallEnd::CallerHungUp), "{outcome:?}");
    assert_eq!(outcome.bot_turns, 1, "{:?}", outcome.transcript);
    assert!(outcome.marks_echoed >= 1, "the echo turn ends with a mark");
    assert_eq!(outcome.clears, 0);
    let bot_lines: Vec<_> = outcome
        .transcript
        .iter()
        .filter(|l| l.speaker == Speaker::Bot)
        .collect();
    assert_eq!(bot_lines.len(), 1);
    assert!(!bot_lines[0].interrupted);

    // The heard timeline: silence, then the echo. Align the sent utterance to it.
    let heard = decode(outcome.heard.as_deref().expect("recorded"));
    let sent = decode(&utterance);
    let lag = best_lag(&heard, &sent);
    // Compare the middle 80% (the VAD may trim a few ms at either edge).
    let edge = sent.len() / 10;
    let reference = &sent[edge..sent.len() - edge];
    let echoed = &heard[lag + edge..lag + sent.len() - edge];
    let signal: f64 = reference.iter().map(|x| x * x).sum();
    let noise: f64 = reference
        .iter()
        .zip(echoed)
        .map(|(a, b)| (a - b) * (a - b))
        .sum();
    let snr_db = 10.0 * (signal / noise.max(1.0)).log10();
    eprintln!(
        "echo SNR {snr_db:.1} dB at lag {lag} samples; recorder {:?}",
        recorder.turn_latency_us.summary()
    );
    // The promise (README, "Agents"): echo takes Twilio's 8 kHz, nothing is resampled either
    // way, so the caller hears back exactly what was received. Bit-exact, not "close": a
    // resampler creeping back into the echo path scored 22.8 dB.
    assert!(
        noise == 0.0,
        "the echo is not bit-exact: SNR {snr_db:.1} dB (resampling in the echo path?)"
    );
    // The echo came after the utterance had been sent (no audio from the future).
    let sent_at = 400 * 8;
    assert!(lag > sent_at + sent.len(), "lag {lag}");
    // Server side: one utterance, one bot turn heard in full.
    let records = bridge.records.wait_for(1).await;
    assert_eq!(records.len(), 1);
    let summary = &records[0].summary;
    assert_eq!(summary.utterances, 1);
    assert_eq!(summary.bot_turns, 1);
    assert_eq!(
        summary.interrupted_bot_turns, 0,
        "the echo was heard to the end"
    );
    bridge.shutdown.cancel();
}
