//! Barge-in end to end: the simulated candidate talks over the echo agent's reply; the bridge
//! must `clear` (Twilio flushes its buffer and echoes any pending mark), nothing of the cut
//! turn may play afterwards, and both transcripts show the bot turn as interrupted.

mod common;

use std::time::Duration;

use common::{ACCOUNT_SID, AUTH_TOKEN, start_bridge};
use tokio_util::sync::CancellationToken;
use voxbridge_sim::media_call::{MediaCall, MediaCallOptions, run_media_call};
use voxbridge_sim::playout::MULAW_SILENCE;
use voxbridge_sim::ws::Route;
use voxbridge_sim::{CallEnd, Recorder, Scenario, Speaker, TranscriptTap};
use voxbridge_twilio::sid::{AccountSid, CallSid, StreamSid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_clears_the_bot_and_truncates_its_turn() {
    let bridge = start_bridge(|_| {}).await;
    let scenario = Scenario::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/scenarios/barge-in-media.toml"),
    )
    .expect("scenario loads");
    let call = MediaCall {
        url: format!("wss://{}/media", bridge.addr),
        route: Route::default(),
        auth_token: Some(AUTH_TOKEN.into()),
        account_sid: AccountSid::new(ACCOUNT_SID).unwrap(),
        call_sid: CallSid::new("CA0000000000000000000000000000ba12").unwrap(),
        stream_sid: StreamSid::new("MZ0000000000000000000000000000ba12").unwrap(),
        parameters: [("agent".to_owned(), "echo".to_owned())].into(),
        steps: scenario.steps.into(),
        options: MediaCallOptions {
            record: true,
            max_duration: Duration::from_secs(30),
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
    assert_eq!(
        outcome.end,
        Some(CallEnd::CallerHungUp),
        "{:?}",
        outcome.transcript
    );
    assert_eq!(outcome.clears, 1, "{:?}", outcome.transcript);

    // Client side: the echo turn was cut short.
    let bot: Vec<_> = outcome
        .transcript
        .iter()
        .filter(|l| l.speaker == Speaker::Bot)
        .collect();
    assert_eq!(bot.len(), 1, "{:?}", outcome.transcript);
    assert!(bot[0].interrupted);
    let talk_over = outcome
        .transcript
        .iter()
        .find(|l| l.speaker == Speaker::Caller && l.text.starts_with("Sorry, hold on"))
        .expect("the candidate talked over the bot");
    // 800 ms into the bot's turn, as the scenario says.
    assert!(
        talk_over.at_ms >= bot[0].at_ms + 780,
        "{:?}",
        outcome.transcript
    );

    assert_clear_in_time(&recorder);

    // Nothing of the cut turn plays after the clear.
    let heard = outcome.heard.as_deref().expect("recorded");
    let clear_at_ms = talk_over.at_ms + recorder.barge_in_us.summary().max / 1000;
    let after = (clear_at_ms as usize + 20) * 8;
    assert!(after < heard.len());
    assert!(
        heard[after..].iter().all(|&b| b == MULAW_SILENCE),
        "bot audio after the clear"
    );
    // And the bot had played something before it.
    let before = (bot[0].at_ms as usize) * 8..(talk_over.at_ms as usize) * 8;
    assert!(heard[before].iter().any(|&b| b != MULAW_SILENCE));

    // Server side: one barge-in, the turn recorded as interrupted.
    let records = bridge.records.wait_for(1).await;
    assert_eq!(records.len(), 1);
    let summary = &records[0].summary;
    assert_eq!(summary.barge_ins, 1, "{summary:?}");
    assert!(summary.interrupted_bot_turns >= 1, "{summary:?}");
    bridge.shutdown.cancel();
}

/// Speech onset -> clear, in caller audio and in wall time.
fn assert_clear_in_time(recorder: &Recorder) {
    // The bridge needs min_speech_ms (200 ms) of speech audio to
    // decide, and the clear goes out in the same step. Counted in audio: the caller had sent
    // at least 200 ms of talk-over (frames leave at the start of their 20 ms, so in wall time
    // the tenth frame goes 180 ms after the first) and not much more.
    let latency = recorder.barge_in_us.summary();
    let audio = recorder.barge_in_audio_us.summary();
    assert_eq!(latency.count, 1);
    assert_eq!(audio.count, 1);
    eprintln!(
        "barge-in: speech onset -> clear {} ms, after {} ms of caller audio",
        latency.max / 1000,
        audio.max / 1000
    );
    assert!(
        audio.max >= 200_000,
        "cleared before 200 ms of speech audio: {audio:?}"
    );
    assert!(
        latency.max >= 180_000,
        "cleared before the tenth frame of speech was sent: {latency:?}"
    );
    // The promise: the clear goes out with the frame that completes min_speech_ms (200 ms) of
    // speech; allow 3 frames (60 ms) for the VAD's frame alignment, counted in caller audio,
    // which a busy machine cannot stretch. Wall clock gets a separate, generous bound.
    assert!(
        audio.max <= 260_000,
        "clear later than min_speech_ms + 3 frames of caller audio: {audio:?}"
    );
    assert!(
        latency.max <= 1_000_000,
        "clear too late in wall time: {latency:?}"
    );
}
