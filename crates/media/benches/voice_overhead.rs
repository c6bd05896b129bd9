//! Voice pipeline overhead at many concurrent calls.
//!
//! Runs `VOICE_CALLS` (default 500) concurrent calls through the real driver and session
//! (`drive_call` over in-memory socket halves), each with the `voice` brain (screening dialog,
//! fake ASR and TTS with fixed latencies). Each simulated Twilio streams the speech fixture
//! (three utterances) in 20 ms frames at real-time pace and echoes marks. For every spoken
//! turn the brain measures utterance arrival -> first media frame sent; the overhead is that
//! minus the fake providers' fixed latencies on the critical path (ASR + TTS first byte; the
//! scripted dialog answers at once). The fakes run on [`Clock::Wall`], so each reply is
//! released at its exact deadline, as from a network provider; tokio's 1 ms timer rounding
//! is not counted as overhead, while the runtime's delay in picking the reply up is. Prints
//! p50/p90/p99/max.
//!
//! `cargo bench -p voxbridge-media --bench voice_overhead` (`VOICE_CALLS=50` for a quick run).
//!
//! `cargo test --benches` runs this binary without `--bench`: then it runs [`TEST_CALLS`]
//! calls of one utterance each (about 4 s) and asserts the p99 target, [`P99_TARGET`] (the
//! README's Performance table: p99 <= 10 ms at 500 calls), so the target is checked on every
//! test run, not only when someone benches.

#![allow(clippy::print_stdout)] // a benchmark report

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message;
use futures::StreamExt;
use futures::channel::mpsc::unbounded;
use voxbridge_brain::Agents;
use voxbridge_brain::turn::{TurnLatency, TurnOutcome};
use voxbridge_media::{CallRecord, CallSink, MediaConfig, MediaState, drive_call};
use voxbridge_screening::{Screenings, ScriptLibrary};
use voxbridge_speech::fake::{Clock, FakeAsr, FakeTts};
use voxbridge_speech::{Asr, Tts};
use voxbridge_twilio::media::{OutboundDecoder, OutboundEvent, Track, TwilioEncoder};
use voxbridge_twilio::sid::{AccountSid, CallSid, StreamSid};
use voxbridge_voice::pipeline::{PipelineConfig, VoiceFactory, VoiceOptions, VoiceProviders};

const ASR_LATENCY: Duration = Duration::from_millis(200);
const TTS_FIRST_BYTE: Duration = Duration::from_millis(100);
/// The promised p99 overhead per turn (README, Performance: at 500 calls).
const P99_TARGET: Duration = Duration::from_millis(10);
/// Concurrent calls in test mode.
const TEST_CALLS: usize = 20;
/// Test mode's caller audio: 1 s of the fixture's silence, then its third utterance
/// (`speech_clean_8k.labels`: samples 65,713..78,601), as 8 kHz mu-law sample indices.
const TEST_CLIP: std::ops::Range<usize> = 57_713..79_400;

fn speech() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/speech_clean_8k.wav");
    let (pcm, _) = voxbridge_audio::wav::read_wav(path).expect("fixture");
    let mut mulaw = Vec::new();
    voxbridge_audio::mulaw::encode(&pcm, &mut mulaw);
    mulaw
}

#[allow(clippy::unnecessary_wraps)] // the stream's item type
fn text(s: &str) -> Result<Message, Infallible> {
    Ok(Message::Text(s.to_owned().into()))
}

/// One simulated Twilio stream: `connected`, `start`, `audio` then `tail_frames` of silence
/// at 20 ms pace, marks echoed as they come, then `stop`.
async fn twilio_side(
    state: MediaState,
    n: usize,
    audio: Arc<Vec<u8>>,
    tail_frames: usize,
) -> String {
    let call_sid = format!("CA{n:032x}");
    let (in_tx, in_rx) = unbounded::<Result<Message, Infallible>>();
    let (out_tx, mut out_rx) = unbounded::<Message>();
    let driver = tokio::spawn(drive_call(state, out_tx, in_rx));
    let mut enc = TwilioEncoder::new(StreamSid::new(format!("MZ{n:032x}")).expect("sid"));
    let _ = in_tx.unbounded_send(text(enc.connected()));
    let params = BTreeMap::from([("agent".to_owned(), "voice".to_owned())]);
    let start = enc
        .start(
            AccountSid::new(format!("AC{:032x}", 1)).expect("sid"),
            CallSid::new(call_sid.clone()).expect("sid"),
            vec![Track::Inbound],
            params,
        )
        .to_owned();
    let _ = in_tx.unbounded_send(text(&start));
    let silence = [0xFFu8; 160];
    let frames = audio.len() / 160 + tail_frames;
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    let mut decoder = OutboundDecoder::new();
    let mut sent = 0usize;
    while sent < frames {
        tokio::select! {
            _ = pace.tick() => {
                let frame = audio.get(sent * 160..(sent + 1) * 160).unwrap_or(&silence);
                sent += 1;
                let media = enc.media(Track::Inbound, sent as u64, sent as u64 * 20, frame).to_owned();
                let _ = in_tx.unbounded_send(text(&media));
            }
            Some(message) = out_rx.next() => {
                if let Message::Text(t) = message
                    && let Ok(OutboundEvent::Mark { name, .. }) = decoder.decode(t.as_str())
                {
                    let mark = enc.mark(name).to_owned();
                    let _ = in_tx.unbounded_send(text(&mark));
                }
            }
        }
    }
    let stop = enc
        .stop(
            AccountSid::new(format!("AC{:032x}", 1)).expect("sid"),
            CallSid::new(call_sid.clone()).expect("sid"),
        )
        .to_owned();
    let _ = in_tx.unbounded_send(text(&stop));
    tokio::spawn(async move { while out_rx.next().await.is_some() {} });
    let _ = driver.await;
    call_sid
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches`: a short run that asserts the target.
        let audio = speech()[TEST_CLIP].to_vec();
        // 1 ms apart: a handful of calls whose utterances all end in the same instant would
        // measure one burst, not a spread of turns.
        let run = runtime.block_on(run_calls(TEST_CALLS, audio, 50, Duration::from_millis(1)));
        run.print();
        assert_eq!(run.overheads.len(), TEST_CALLS, "one spoken turn per call");
        let p99 = percentile(&run.overheads, 0.99);
        assert!(
            p99 <= P99_TARGET,
            "voice pipeline overhead p99 {p99:?} over the {P99_TARGET:?} target \
             ({TEST_CALLS} calls)"
        );
        return;
    }
    let calls: usize = std::env::var("VOICE_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    runtime
        .block_on(run_calls(calls, speech(), 100, Duration::ZERO))
        .print();
}

/// What a run measured, each list sorted.
struct Run {
    calls: usize,
    /// Utterance -> first frame, minus the fakes' latencies on the critical path.
    overheads: Vec<Duration>,
    /// Utterance -> first frame.
    totals: Vec<Duration>,
    /// Turns that were not spoken or not measured.
    other: usize,
    elapsed: Duration,
}

impl Run {
    fn print(&self) {
        let Run {
            calls,
            overheads,
            totals,
            other,
            elapsed,
        } = self;
        if overheads.is_empty() {
            println!("no turns measured");
            return;
        }
        println!(
            "voice pipeline overhead: {calls} concurrent calls, {} spoken turns ({other} other) in {:.1} s",
            overheads.len(),
            elapsed.as_secs_f64()
        );
        println!(
            "  providers on the critical path: ASR {ASR_LATENCY:?} + TTS first byte {TTS_FIRST_BYTE:?}"
        );
        for (name, v) in [("overhead", overheads), ("utterance->first frame", totals)] {
            println!(
                "  {name}: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
                percentile(v, 0.5).as_secs_f64() * 1e3,
                percentile(v, 0.9).as_secs_f64() * 1e3,
                percentile(v, 0.99).as_secs_f64() * 1e3,
                v[v.len() - 1].as_secs_f64() * 1e3,
            );
        }
    }
}

/// Runs `calls` concurrent calls, each streaming `audio` then `tail_frames` of silence, in
/// groups of 50 that start 100 ms apart, the calls of a group `spacing` apart.
async fn run_calls(calls: usize, audio: Vec<u8>, tail_frames: usize, spacing: Duration) -> Run {
    let mut asr = FakeAsr::new(ASR_LATENCY, "yes");
    asr.clock = Clock::Wall;
    let asr = Arc::new(asr);
    let mut tts = FakeTts::new(TTS_FIRST_BYTE, Duration::from_millis(2));
    tts.audio_per_char = Duration::from_millis(2);
    tts.clock = Clock::Wall;
    let tts = Arc::new(tts);
    let reports = Reports::default();
    let library = ScriptLibrary::load_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/screenings"),
    )
    .expect("scripts");
    let voice = VoiceFactory::new(
        "voice",
        PipelineConfig::default(),
        VoiceProviders {
            asr: Some(asr as Arc<dyn Asr>),
            tts: Some(Arc::clone(&tts) as Arc<dyn Tts>),
            fallback_tts: Some(tts as Arc<dyn Tts>),
        },
        Arc::new(Screenings::new(library, "default").expect("the default script exists")),
        VoiceOptions::default(),
    )
    .expect("voice agent");
    voice.prerender().await.expect("prerender");
    let state = MediaState::with_call_sink(
        MediaConfig {
            insecure_skip_signature: true,
            ..MediaConfig::default()
        },
        Agents::builtin().with(voice),
        Arc::new(reports.clone()),
    )
    .expect("config");
    let audio = Arc::new(audio);
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for n in 0..calls {
        tasks.push(tokio::spawn(twilio_side(
            state.clone(),
            n + 1,
            Arc::clone(&audio),
            tail_frames,
        )));
        // Stagger starts over about a second, as real calls would be.
        if n % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        } else if !spacing.is_zero() {
            tokio::time::sleep(spacing).await;
        }
    }
    let mut run = Run {
        calls,
        overheads: Vec::new(),
        totals: Vec::new(),
        other: 0,
        elapsed: Duration::ZERO,
    };
    let mut sids = Vec::new();
    for task in tasks {
        sids.push(task.await.expect("call task"));
    }
    reports.wait_for(sids.len()).await;
    for sid in &sids {
        for t in reports.take(sid) {
            match (t.outcome, t.total) {
                (TurnOutcome::Spoken, Some(total)) => {
                    run.totals.push(total);
                    run.overheads
                        .push(total.saturating_sub(ASR_LATENCY + TTS_FIRST_BYTE));
                }
                _ => run.other += 1,
            }
        }
    }
    run.overheads.sort();
    run.totals.sort();
    run.elapsed = started.elapsed();
    run
}

/// The turn latencies of each finished call, from the reports its brain returned.
#[derive(Debug, Clone, Default)]
struct Reports(Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<TurnLatency>>>>);

impl Reports {
    /// Waits (10 s at most) until `calls` records came: each call's record, with its brain's
    /// report, is handed over at the driver's teardown.
    async fn wait_for(&self, calls: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.0.lock().expect("not poisoned").len() < calls
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn take(&self, call_sid: &str) -> Vec<TurnLatency> {
        self.0
            .lock()
            .expect("not poisoned")
            .remove(call_sid)
            .unwrap_or_default()
    }
}

impl CallSink for Reports {
    fn call_ended(&self, record: &CallRecord) {
        if let (Some(sid), Some(report)) = (&record.summary.call_sid, &record.report) {
            self.0
                .lock()
                .expect("not poisoned")
                .insert(sid.clone(), report.turns.clone());
        }
    }
}
