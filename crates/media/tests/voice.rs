//! The voice pipeline brain end to end through the real `/media` WebSocket on 127.0.0.1: the
//! screening agent as the dialog, a fake ASR with scripted transcripts and a fake TTS that
//! speaks tones; the caller's audio is the speech fixture, paced like Twilio.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{
    BRIDGE_SHARE_BOUND, FromBridge, Records, Twilio, config, connect_signed, decode_outbound,
    speech_8k_mulaw,
};
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use voxbridge_brain::Agents;
use voxbridge_brain::turn::{TurnLatency, TurnOutcome};
use voxbridge_media::{MediaState, serve_with_state};
use voxbridge_openai_standin::UtteranceCheck;
use voxbridge_screening::{Screenings, ScriptLibrary};
use voxbridge_speech::fake::{FakeAsr, FakeTts};
use voxbridge_speech::{Asr, Tts};
use voxbridge_voice::pipeline::{PipelineConfig, VoiceFactory, VoiceOptions, VoiceProviders};

/// mu-law silence.
const SILENCE: [u8; 160] = [0xFF; 160];
/// The fake ASR's latency.
const ASR_LATENCY: Duration = Duration::from_millis(150);
/// The fake TTS's time to first audio.
const TTS_FIRST_BYTE: Duration = Duration::from_millis(60);

/// What the bridge sent during one bot turn.
#[derive(Debug, Default)]
struct Heard {
    media_bytes: usize,
    loud_bytes: usize,
    marks: Vec<String>,
}

/// Streams `caller` (then silence) at Twilio's 20 ms pace, echoing marks like Twilio, until
/// `done` holds for the marks echoed; returns what the bridge sent meanwhile.
async fn play_until(
    twilio: &mut Twilio,
    caller: &[u8],
    mut done: impl FnMut(&[String]) -> bool,
) -> Heard {
    let mut heard = Heard::default();
    let mut frames = caller.chunks(160);
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done(&heard.marks) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {heard:?} within 20 s"
        );
        tokio::select! {
            _ = pace.tick() => {
                let frame = frames.next().unwrap_or(&SILENCE);
                twilio.media(frame).await;
            }
            message = twilio.ws.next() => match message.expect("socket open").expect("frame") {
                Message::Text(text) => match decode_outbound(text.as_str()) {
                    FromBridge::Media(payload) => {
                        heard.media_bytes += payload.len();
                        heard.loud_bytes += payload.iter().filter(|&&b| b & 0x7F < 0x60).count();
                    }
                    FromBridge::Mark(name) => {
                        twilio.mark(&name).await;
                        heard.marks.push(name);
                    }
                    FromBridge::Clear => panic!("no barge-in expected"),
                },
                other => panic!("unexpected frame {other:?}"),
            },
        }
    }
    heard
}

/// Serves `/media` with the builtin agents plus `voice` on 127.0.0.1 (port 0).
async fn serve(
    voice: VoiceFactory,
    records: &Records,
) -> (
    std::net::SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), voxbridge_media::MediaError>>,
) {
    let state = MediaState::with_call_sink(
        config(),
        Agents::builtin().with(voice),
        Arc::new(records.clone()),
    )
    .expect("valid config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("bound address");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_with_state(state, listener, shutdown.clone()));

    (addr, shutdown, server)
}

#[tokio::test]
async fn screening_call_through_the_voice_pipeline() {
    let asr = Arc::new(FakeAsr::new(ASR_LATENCY, "yes"));
    let mut tts = FakeTts::new(TTS_FIRST_BYTE, Duration::from_millis(5));
    // Short tones keep the call short: 5 ms of audio per character.
    tts.audio_per_char = Duration::from_millis(5);
    let tts = Arc::new(tts);
    let fallback = Arc::new(FakeTts::new(Duration::from_millis(10), Duration::ZERO));
    let library = ScriptLibrary::load_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/screenings"),
    )
    .expect("the shipped scripts load");
    let voice = VoiceFactory::new(
        "voice",
        // Recognition from the utterance, not from the pause: the turn's breakdown is then
        // ASR + TTS first byte + the bridge's share, which `assert_bridge_share` holds to its
        // bound (speculation is covered by the pipeline's own tests and the voice demo).
        PipelineConfig {
            speculative_asr: false,
            ..PipelineConfig::default()
        },
        VoiceProviders {
            asr: Some(Arc::clone(&asr) as Arc<dyn Asr>),
            tts: Some(Arc::clone(&tts) as Arc<dyn Tts>),
            fallback_tts: Some(fallback as Arc<dyn Tts>),
        },
        Arc::new(Screenings::new(library, "default").expect("the default script exists")),
        VoiceOptions::default(),
    )
    .expect("voice agent builds");
    voice.prerender().await.expect("fallback lines render");
    let records = Records::default();
    let (addr, shutdown, server) = serve(voice.clone(), &records).await;
    let mut twilio = Twilio::new(connect_signed(addr).await);
    twilio
        .begin(&[("agent", "voice"), ("firstName", "Ana")])
        .await;

    // The greeting, one mark per sentence synthesised, played while the line is silent.
    let greeting = play_until(&mut twilio, &[], |marks| {
        !marks.is_empty() && marks.len() == tts.texts().len()
    })
    .await;
    let sentences = greeting.marks.len();
    assert!(sentences >= 3, "{greeting:?}");
    let expected: Vec<String> = (0..sentences).map(|c| format!("t1c{c}")).collect();
    assert_eq!(greeting.marks, expected);
    assert!(greeting.media_bytes > 4000, "{greeting:?}");
    assert!(
        greeting.loud_bytes > greeting.media_bytes / 2,
        "{greeting:?}"
    );
    let spoken = tts.texts();
    assert!(spoken[0].starts_with("Hi Ana"), "{spoken:?}");
    assert!(
        spoken.iter().any(|t| t.contains("authorized to work")),
        "{spoken:?}"
    );

    // The caller answers with real speech (0.8 s .. 3.93 s of the fixture); the fake ASR
    // hears "yes" and the next question comes back as media with marks.
    let speech = speech_8k_mulaw();
    let answer = play_until(&mut twilio, &speech[..5 * 8000], |marks| {
        !marks.is_empty() && marks.len() + sentences == tts.texts().len()
    })
    .await;
    // An acknowledgement and the next question.
    assert_eq!(answer.marks, ["t2c0", "t2c1"]);
    assert!(answer.loud_bytes > 1000, "{answer:?}");
    assert!(
        tts.texts()
            .iter()
            .any(|t| t == "Are you at least 18 years old?"),
        "{:?}",
        tts.texts()
    );
    assert_asr_heard_the_first_utterance(&asr);

    twilio.stop().await;
    assert_eq!(twilio.expect_close(Duration::from_secs(3)).await, 1000);
    common::eventually(Duration::from_secs(3), "the call record", || {
        !records.0.lock().expect("not poisoned").is_empty()
    })
    .await;
    let record = records.0.lock().expect("not poisoned")[0].clone();
    assert_eq!(record.agent.as_deref(), Some("voice"));
    assert_eq!(record.summary.utterances, 1);
    // The brain returned its report before the record was built.
    let report = record.report.as_ref().expect("the voice brain's report");
    assert_eq!(report.call_sid, twilio.call_sid.as_str());
    assert_eq!(report.agent, "voice");
    let screening = report
        .outcome
        .payload::<voxbridge_screening::ScreeningResult>()
        .expect("the screening dialog's result");
    assert_eq!(screening.answers[0].raw, "yes", "{screening:?}");
    let turns = &report.turns;
    assert_eq!(turns.len(), 1, "{turns:?}");
    assert_eq!(turns[0].outcome, TurnOutcome::Spoken);
    assert_eq!(turns[0].turn, Some(2));
    assert_bridge_share(&turns[0]);
    assert_eq!(voice.metrics().turn_total.count(), 1);

    shutdown.cancel();
    server.await.expect("server task").expect("clean stop");
}

/// What reached ASR is the caller's first utterance (`speech_clean_8k.labels` line 1): its
/// length within a margin of the label, its voiced time and loudness, not silence or a cut
/// clip (the check the OpenAI stand-in applies to queued transcripts).
fn assert_asr_heard_the_first_utterance(asr: &FakeAsr) {
    let requests = asr.requests();
    assert_eq!(requests.len(), 1);
    let audio = &requests[0].audio;
    assert_eq!(audio.sample_rate, 16_000);
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data");
    let utterance = UtteranceCheck::from_fixture(
        &data.join("speech_clean_8k.wav"),
        &data.join("speech_clean_8k.labels"),
        0,
    )
    .expect("the fixture utterance");
    if let Err(mismatch) = utterance.check(&audio.pcm, audio.sample_rate) {
        panic!("ASR got something else than the utterance: {mismatch}");
    }
}

/// The fakes' latencies are on the critical path (the scripted dialog answers at once); the
/// rest of the turn is the bridge's own share, held to its promise.
fn assert_bridge_share(turn: &TurnLatency) {
    let total = turn.total.expect("first frame measured");
    let providers = ASR_LATENCY + TTS_FIRST_BYTE;
    let share = total
        .checked_sub(providers)
        .unwrap_or_else(|| panic!("shorter than ASR + TTS first byte: {turn:?}"));
    assert!(
        share <= BRIDGE_SHARE_BOUND,
        "the bridge's share of the turn is {share:?} (total {total:?} minus the providers' \
         {providers:?}), over {BRIDGE_SHARE_BOUND:?}: {turn:?}"
    );
}
