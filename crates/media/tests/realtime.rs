//! The `realtime` agent end to end over real sockets on 127.0.0.1: a Twilio stand-in speaks
//! Media Streams to `/media`, the bridge runs the real `OpenAiRealtime` client against the
//! OpenAI stand-in's Realtime WebSocket. The Twilio side models playout: it plays what it
//! receives in real time and echoes each mark when the audio before it has played (and every
//! pending mark at once after a `clear`), so echoed marks mean what they mean on a real call.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use common::{
    BRIDGE_SHARE_BOUND, FromBridge, Records, Twilio, config, connect_signed, decode_outbound,
    eventually,
};
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use voxbridge_brain::Agents;
use voxbridge_brain::turn::TurnOutcome;
use voxbridge_media::{MediaState, serve_with_state};
use voxbridge_openai_standin::{Endpoint, RealtimeScript, Standin, StandinConfig, StandinHandle};
use voxbridge_session::EndReason;
use voxbridge_speech::config::OpenAiRealtimeConfig;
use voxbridge_speech::fake::FakeTts;
use voxbridge_speech::openai::OpenAiEndpoint;
use voxbridge_speech::realtime::OpenAiRealtime;
use voxbridge_speech::{SpeechToSpeech, Tts};
use voxbridge_voice::realtime_brain::{
    RealtimeConfig, RealtimeFactory, RealtimeOptions, RealtimeTranscript, Speaker,
};

const LIMIT: Duration = Duration::from_secs(20);
/// Bot audio per mark in these tests (the default).
const CHUNK_MS: u64 = 100;

/// A quiet, recognisable caller frame (below the stand-in's VAD threshold): frame `i` is
/// distinct from its neighbours, so a dropped, repeated or altered frame shows.
fn quiet_frame(i: usize) -> Vec<u8> {
    (0..160).map(|j| 0xF8 + ((i * 7 + j) % 8) as u8).collect()
}

/// Two seconds of the first utterance of the clean speech fixture, as Twilio frames.
fn speech_frames() -> Vec<Vec<u8>> {
    let speech = common::speech_8k_mulaw();
    speech[6400..6400 + 16_000]
        .chunks(160)
        .map(<[u8]>::to_vec)
        .collect()
}

struct Rig {
    standin: StandinHandle,
    records: Records,
    addr: std::net::SocketAddr,
    _shutdown: CancellationToken,
}

async fn rig(script: RealtimeScript) -> Rig {
    rig_with(script, RealtimeOptions::default()).await
}

async fn rig_with(script: RealtimeScript, options: RealtimeOptions) -> Rig {
    let standin = Standin::start(StandinConfig::default())
        .await
        .expect("stand-in starts");
    standin.set_realtime_script(script);
    let provider = OpenAiRealtime::new(
        &OpenAiEndpoint::new(standin.base_url(), "sk-test"),
        &OpenAiRealtimeConfig::default(),
    )
    .expect("provider");
    let mut apology = FakeTts::new(Duration::from_millis(5), Duration::ZERO);
    apology.audio_per_char = Duration::from_millis(5);
    let factory = RealtimeFactory::new(
        RealtimeConfig::default(),
        Arc::new(provider) as Arc<dyn SpeechToSpeech>,
        RealtimeOptions {
            fallback_tts: Some(Arc::new(apology) as Arc<dyn Tts>),
            ..options
        },
    )
    .expect("factory");
    factory.prerender().await.expect("apology renders");
    let records = Records::default();
    let state = MediaState::with_call_sink(
        config(),
        Agents::builtin().with(factory),
        Arc::new(records.clone()),
    )
    .expect("valid config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("bound address");
    let shutdown = CancellationToken::new();
    tokio::spawn(serve_with_state(state, listener, shutdown.clone()));
    Rig {
        standin,
        records,
        addr,
        _shutdown: shutdown,
    }
}

impl Rig {
    /// The first finished call's record, once the bridge has handed it over.
    async fn first_record(&self) -> voxbridge_media::CallRecord {
        eventually(LIMIT, "the call record", || {
            !self.records.0.lock().unwrap().is_empty()
        })
        .await;
        self.records.0.lock().unwrap()[0].clone()
    }
}

/// Twilio's side of the call with a playout model.
struct Phone {
    twilio: Twilio,
    /// Caller frames to send next (silence-like quiet frames when empty).
    script: VecDeque<Vec<u8>>,
    /// Every caller byte sent.
    sent: Vec<u8>,
    frames_sent: usize,
    /// End of the bot audio in the modelled playout buffer.
    buffered_until: Instant,
    /// Marks not yet echoed, with when their audio has played.
    pending: VecDeque<(String, Instant)>,
    /// Bot audio received, and the marks received (in order), with the audio before each.
    media: Vec<u8>,
    /// When each media frame arrived.
    media_times: Vec<Instant>,
    frame_sizes: Vec<usize>,
    marks: Vec<(String, usize)>,
    echoed: Vec<String>,
    /// Each `clear`: media bytes received before it and the ms of them played by then.
    clears: Vec<(usize, u64)>,
    closed: Option<u16>,
    pace: tokio::time::Interval,
}

impl Phone {
    async fn call(addr: std::net::SocketAddr) -> Self {
        Self::call_with(addr, &[]).await
    }

    /// A call to `realtime` with more custom parameters.
    async fn call_with(addr: std::net::SocketAddr, params: &[(&str, &str)]) -> Self {
        let mut twilio = Twilio::new(connect_signed(addr).await);
        let mut all = vec![("agent", "realtime")];
        all.extend_from_slice(params);
        twilio.begin(&all).await;
        Self {
            twilio,
            script: VecDeque::new(),
            sent: Vec::new(),
            frames_sent: 0,
            buffered_until: Instant::now(),
            pending: VecDeque::new(),
            media: Vec::new(),
            media_times: Vec::new(),
            frame_sizes: Vec::new(),
            marks: Vec::new(),
            echoed: Vec::new(),
            clears: Vec::new(),
            closed: None,
            pace: tokio::time::interval(Duration::from_millis(20)),
        }
    }

    /// Bot audio the model has played by `now` (ms).
    fn played_ms(&self, now: Instant) -> u64 {
        let ahead = self.buffered_until.saturating_duration_since(now);
        (self.media.len() as u64 / 8).saturating_sub(ahead.as_millis() as u64)
    }

    /// Plays the call (20 ms caller frames, playout, mark echoes) until `done` or the socket
    /// closes; panics after `LIMIT`.
    async fn run_until(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + LIMIT;
        while !done(self) && self.closed.is_none() {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            let echo_at = self.pending.front().map(|(_, at)| *at);
            tokio::select! {
                _ = self.pace.tick() => {
                    let frame = self
                        .script
                        .pop_front()
                        .unwrap_or_else(|| quiet_frame(self.frames_sent));
                    self.twilio.media(&frame).await;
                    self.sent.extend_from_slice(&frame);
                    self.frames_sent += 1;
                }
                () = sleep_until(echo_at) => {
                    if let Some((name, _)) = self.pending.pop_front() {
                        self.twilio.mark(&name).await;
                        self.echoed.push(name);
                    }
                }
                message = self.twilio.ws.next() => match message {
                    Some(Ok(Message::Text(text))) => self.receive(text.as_str()).await,
                    Some(Ok(Message::Close(frame))) => {
                        self.closed = Some(frame.map_or(1005, |f| u16::from(f.code)));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => panic!("socket error: {e}"),
                    None => panic!("socket ended without a close frame"),
                },
            }
        }
    }

    async fn receive(&mut self, text: &str) {
        let now = Instant::now();
        match decode_outbound(text) {
            FromBridge::Media(payload) => {
                self.buffered_until = self.buffered_until.max(now)
                    + Duration::from_micros(payload.len() as u64 * 125);
                self.frame_sizes.push(payload.len());
                self.media_times.push(now);
                self.media.extend(payload);
            }
            FromBridge::Mark(name) => {
                self.marks.push((name.clone(), self.media.len()));
                self.pending.push_back((name, self.buffered_until.max(now)));
            }
            FromBridge::Clear => {
                self.clears.push((self.media.len(), self.played_ms(now)));
                self.buffered_until = now;
                // Twilio echoes every pending mark right after a clear.
                while let Some((name, _)) = self.pending.pop_front() {
                    self.twilio.mark(&name).await;
                    self.echoed.push(name);
                }
            }
        }
    }

    fn marks_of(&self, turn: u64) -> usize {
        let prefix = format!("t{turn}c");
        self.marks
            .iter()
            .filter(|(m, _)| m.starts_with(&prefix))
            .count()
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `received` (what the stand-in got) is the end of `sent` (what the phone sent), byte for
/// byte, but for up to 5 frames still in flight: no frame lost, repeated or altered.
fn assert_received_unchanged(sent: &[u8], received: &[u8]) {
    assert!(received.len().is_multiple_of(160) && received.len() > 160 * 100);
    assert!(received.len() <= sent.len());
    let matched = (0..=5).find(|late| {
        let end = sent.len() - late * 160;
        end >= received.len() && sent[end - received.len()..end] == received[..]
    });
    assert!(
        matched.is_some(),
        "the stand-in did not receive a contiguous run of the caller's bytes ({} of {})",
        received.len(),
        sent.len()
    );
}

#[tokio::test]
async fn realtime_call_greets_passes_audio_through_and_truncates_on_barge_in() {
    let rig = rig(RealtimeScript {
        // 62 characters at 60 ms: a 3.7 s greeting and reply.
        reply_text: "Hello, this is Vox. I am calling about the Rust engineer job.".into(),
        caller_transcript: "Sorry, who is this?".into(),
        ..RealtimeScript::default()
    })
    .await;
    let mut phone = Phone::call(rig.addr).await;

    // The greeting: the session was asked to speak first, and its audio arrives as media
    // frames of at most 20 ms with a mark every 100 ms.
    phone
        .run_until("half a second of greeting played", |p| p.echoed.len() >= 5)
        .await;
    let respond = rig
        .standin
        .wait_for_realtime_event("response.create", LIMIT)
        .await
        .expect("greeting requested");
    assert!(
        respond["response"]["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("Greet")),
        "{respond}"
    );
    let update = rig
        .standin
        .wait_for_realtime_event("session.update", LIMIT)
        .await
        .expect("session configured");
    assert_eq!(
        update["session"]["audio"]["input"]["format"]["type"],
        "audio/pcmu"
    );
    assert_eq!(
        update["session"]["audio"]["output"]["format"]["type"],
        "audio/pcmu"
    );
    assert!(phone.frame_sizes.iter().all(|&n| n <= 160));
    assert_eq!(&phone.marks[0], &("t1c0".to_owned(), 800));
    assert_eq!(&phone.marks[1], &("t1c1".to_owned(), 1600));
    assert!(phone.clears.is_empty());

    // The caller talks over the greeting.
    phone.script.extend(speech_frames());
    phone
        .run_until("the bridge clears the greeting", |p| !p.clears.is_empty())
        .await;
    let (media_at_clear, played_at_clear) = phone.clears[0];
    let truncate = rig
        .standin
        .wait_for_realtime_event("conversation.item.truncate", LIMIT)
        .await
        .expect("the stand-in is told what was heard");
    let audio_end_ms = truncate["audio_end_ms"].as_u64().expect("audio_end_ms");
    assert_eq!(truncate["content_index"], 0);
    assert!(
        truncate["item_id"]
            .as_str()
            .is_some_and(|i| i.starts_with("item_")),
        "{truncate}"
    );
    // What was heard, from the marks, is what the phone played, to within one chunk (plus the
    // time the mark echo and the clear spend on the sockets).
    assert!(
        audio_end_ms <= played_at_clear && played_at_clear - audio_end_ms <= CHUNK_MS + 20,
        "truncated at {audio_end_ms} ms, played {played_at_clear} ms"
    );
    assert_eq!(audio_end_ms % CHUNK_MS, 0, "a whole number of chunks");
    assert!(
        (media_at_clear as u64 / 8) < 3700,
        "the clear came before the greeting was all sent"
    );
    // No more greeting after the clear; the reply to the caller comes as turn 2.
    phone
        .run_until("the reply to the caller plays", |p| p.marks_of(2) >= 3)
        .await;
    assert!(
        !phone
            .marks
            .iter()
            .any(|(m, at)| m.starts_with("t1c") && *at > media_at_clear),
        "no greeting mark after the clear"
    );

    // Every caller byte the stand-in received is what the phone sent, unchanged (the frames
    // before the provider session opened are not sent).
    phone.script.clear();
    phone
        .run_until("quiet for a moment", {
            let until = Instant::now() + Duration::from_millis(300);
            move |_| Instant::now() >= until
        })
        .await;
    assert_received_unchanged(&phone.sent, &rig.standin.realtime_input_audio());

    phone.twilio.stop().await;
    let code = phone.twilio.expect_close(LIMIT).await;
    assert_eq!(code, 1000);
    eventually(LIMIT, "the call record", || {
        !rig.records.0.lock().unwrap().is_empty()
    })
    .await;
    assert_records(&rig, phone.twilio.call_sid.as_str(), audio_end_ms);
}

/// The call record, turn latencies and transcript of the barge-in call.
fn assert_records(rig: &Rig, call_sid: &str, audio_end_ms: u64) {
    let record = rig.records.0.lock().unwrap()[0].clone();
    assert_eq!(record.agent.as_deref(), Some("realtime"));
    assert_eq!(record.summary.barge_ins, 1);
    assert_eq!(record.summary.utterances, 0, "no local VAD on this agent");
    // The greeting cut by the caller (its heard position is the truncate's, checked above and
    // in the transcript below), and the reply still playing when the phone hung up.
    assert_eq!(
        (
            record.summary.bot_turns,
            record.summary.interrupted_bot_turns
        ),
        (2, 2)
    );
    // The reply's latency: provider speech stop -> first frame sent.
    let report = record.report.as_ref().expect("the realtime brain's report");
    assert_eq!(report.call_sid, call_sid);
    assert_eq!(report.agent, "realtime");
    let turns = &report.turns;
    let spoken: Vec<_> = turns
        .iter()
        .filter(|t| t.outcome == TurnOutcome::Spoken)
        .collect();
    assert_eq!(spoken.len(), 1, "{turns:?}");
    let total = spoken[0].total.expect("measured");
    let provider = spoken[0].tts_first_byte.expect("provider wait measured");
    // The stand-in adds no configured latency, so the whole turn (its socket hops included)
    // is held to the bridge's promise; the bridge's part alone (first provider audio -> first
    // frame) too.
    assert!(total >= provider, "{turns:?}");
    assert!(
        total <= BRIDGE_SHARE_BOUND,
        "speech stop -> first frame took {total:?}, over {BRIDGE_SHARE_BOUND:?}: {turns:?}"
    );
    let bridge = spoken[0].first_frame.expect("first frame measured");
    assert!(bridge <= BRIDGE_SHARE_BOUND, "{turns:?}");
    assert_eq!(spoken[0].turn, Some(2));
    // The transcript: the greeting (cut, with what was heard), the caller, the reply.
    let transcript = &report
        .outcome
        .payload::<RealtimeTranscript>()
        .expect("the transcript with heard positions")
        .0;
    // The neutral transcript has the same lines, the cut bot line marked.
    assert_eq!(report.outcome.transcript.len(), transcript.len());
    assert!(
        report
            .outcome
            .transcript
            .iter()
            .any(|e| e.interrupted && e.speaker == voxbridge_brain::Speaker::Bot),
        "{:?}",
        report.outcome.transcript
    );
    assert!(
        transcript
            .iter()
            .any(|l| l.speaker == Speaker::Caller && l.text == "Sorry, who is this?"),
        "{transcript:?}"
    );
    let bot: Vec<_> = transcript
        .iter()
        .filter(|l| l.speaker == Speaker::Bot)
        .collect();
    assert!(
        bot.iter().any(|l| l.heard_ms == Some(audio_end_ms)),
        "{transcript:?}"
    );
}

#[tokio::test]
async fn provider_disconnects_are_never_silence() {
    let rig = rig(RealtimeScript {
        reply_text: "Hello there, how can I help?".into(),
        // Every session drops right after its first response.
        drop_after_responses: Some(1),
        ..RealtimeScript::default()
    })
    .await;
    let mut phone = Phone::call(rig.addr).await;
    // Greeting (turn 1), the stand-in drops; the bridge reconnects and the model speaks
    // again (turn 2); it drops again, no reconnections are left: apology (turn 3), hang-up.
    phone.run_until("the bridge hangs up", |_| false).await;
    assert_eq!(phone.closed, Some(1000), "closed normally");
    assert!(phone.marks_of(1) > 0, "greeting heard");
    assert!(phone.marks_of(2) > 0, "the resumed session spoke");
    assert!(
        phone.marks_of(3) > 0,
        "the apology was heard: {:?}",
        phone.marks
    );
    assert!(
        rig.standin
            .wait_for_requests(Endpoint::Realtime, 2, LIMIT)
            .await
    );
    let sessions = rig.standin.requests_to(Endpoint::Realtime).len();
    assert_eq!(sessions, 2, "one reconnection");
    let resumed: Vec<_> = rig
        .standin
        .realtime_events()
        .into_iter()
        .filter(|e| e["type"] == "response.create")
        .collect();
    assert!(
        resumed[1]["response"]["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("Apologise")),
        "{resumed:?}"
    );
    // The whole apology played before the close: every mark came back.
    assert_eq!(phone.echoed.len(), phone.marks.len());
    let record = rig.first_record().await;
    assert_eq!(
        record.summary.end_reason,
        Some(EndReason::BrainHangup(
            "provider_failures: speech_to_speech transport x1".into()
        ))
    );
    // No silence on the line: from the first bot frame to the last, frames never stopped for
    // long (the reconnection and the apology fill the gaps).
    let longest_gap = phone
        .media_times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .expect("frames");
    assert!(longest_gap < Duration::from_millis(500), "{longest_gap:?}");
}

/// The realtime agent's test screening (two questions, shared with its unit tests).
const SCRIPT: &str = include_str!("../../../tests/data/screenings/realtime-short.toml");

/// The `realtime` agent runs the screening script over real sockets: the session's
/// instructions and tools come from the script, the model's `record_answer` calls are checked
/// and recorded (a spoken answer, then a keyed one: the key reaches the model as a user line),
/// `end_screening` completes it, the call hangs up after the goodbye has played, and the call
/// record carries the same screening result `/relay` stores.
#[tokio::test]
async fn realtime_screening_records_spoken_and_keyed_answers_and_stores_the_result() {
    use voxbridge_screening::{Screenings, ScriptLibrary};
    let greeting = "Hi Ana, this is Vox about the Picker job. Are you allowed to work here?";
    let question = "How many years have you picked orders?";
    let goodbye = "Seven years, great. You qualify, Ana. Goodbye!";
    // The default silence timeout: this call's pauses are the test's own (a busy machine's),
    // not a silent caller's, and must not bring the model a silence line.
    let script = SCRIPT.replace("silence_timeout_ms = 1000", "silence_timeout_ms = 8000");
    let library =
        ScriptLibrary::from_sources([("short.toml", script.as_str())]).expect("script loads");
    let rig = rig_with(
        screening_script(greeting, question, goodbye),
        RealtimeOptions {
            screenings: Some(Screenings::new(library, "short").expect("default script")),
            ..RealtimeOptions::default()
        },
    )
    .await;
    let mut phone = Phone::call_with(rig.addr, &[("firstName", "Ana")]).await;
    let played = |chars: usize| {
        move |p: &Phone| {
            p.media.len() as u64 >= chars as u64 * MS_PER_CHAR * 8
                && p.pending.is_empty()
                && !p.marks.is_empty()
        }
    };
    phone
        .run_until("the greeting plays", played(greeting.len()))
        .await;
    let update = rig
        .standin
        .wait_for_realtime_event("session.update", LIMIT)
        .await
        .expect("session configured");
    let instructions = update["session"]["instructions"]
        .as_str()
        .unwrap_or_default();
    for expected in [
        "Hi Ana, this is Vox about the Picker job.",
        "Are you allowed to work here?",
        "How many years have you picked orders?",
    ] {
        assert!(
            instructions.contains(expected),
            "{expected:?} in {instructions}"
        );
    }
    let tools: Vec<&str> = update["session"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(tools, ["record_answer", "end_screening", "handoff"]);

    // The caller answers; the model records it, gets the result and asks the next question.
    phone.script.extend(speech_frames());
    phone
        .run_until(
            "the second question plays",
            played(greeting.len() + question.len()),
        )
        .await;
    // The caller keys the answer.
    phone.twilio.dtmf('7').await;
    phone
        .run_until("the bridge hangs up after the goodbye", |_| false)
        .await;
    assert_eq!(phone.closed, Some(1000));
    assert_eq!(
        rig.standin.realtime_errors(),
        Vec::<String>::new(),
        "the bridge kept to the protocol (no response.create while one was active)"
    );
    assert!(
        phone.media.len() as u64
            >= (greeting.len() + question.len() + goodbye.len()) as u64 * MS_PER_CHAR * 8,
        "the goodbye played in full before the hang-up"
    );
    let events = rig.standin.realtime_events();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "conversation.item.create"
                && e["item"]["role"] == "user"
                && e["item"]["content"][0]["text"] == "[the caller pressed the key 7]"),
        "the key reached the model"
    );
    let outputs: Vec<&str> = events
        .iter()
        .filter(|e| e["item"]["type"] == "function_call_output")
        .filter_map(|e| e["item"]["output"].as_str())
        .collect();
    assert_eq!(outputs.len(), 3, "{outputs:?}");
    assert!(
        outputs.iter().all(|o| o.contains("\"ok\":true")),
        "{outputs:?}"
    );

    assert_stored_screening(&rig, [greeting, question, goodbye]).await;
}

/// Bot audio per character of the realtime screening's stand-in replies.
const MS_PER_CHAR: u64 = 20;

/// The stand-in model of the realtime screening: the greeting, a response of one
/// `record_answer` call (the caller said yes), the next question, then (after the key) the
/// keyed answer, `end_screening` and its own goodbye.
fn screening_script(greeting: &str, question: &str, goodbye: &str) -> RealtimeScript {
    use voxbridge_openai_standin::Reply;
    RealtimeScript {
        responses: vec![
            Reply::text(greeting),
            Reply::default().with_tool_call(
                "record_answer",
                r#"{"question_id":"authorized","value":true,"raw":"Yes, I am.","confidence":0.9}"#,
            ),
            Reply::text(question),
            Reply::text(goodbye)
                .with_tool_call(
                    "record_answer",
                    r#"{"question_id":"years","value":7,"raw":"7","confidence":1}"#,
                )
                .with_tool_call(
                    "end_screening",
                    r#"{"outcome":"completed","reason":"all answered"}"#,
                ),
        ],
        caller_transcripts: vec!["Yes, I am.".into()],
        ms_per_char: MS_PER_CHAR as u32,
        ..RealtimeScript::default()
    }
}

/// The realtime screening's call record: the hang-up reason, and the screening result with
/// the spoken and keyed answers and the transcript of `bot` lines, the answer and the key.
async fn assert_stored_screening(rig: &Rig, bot: [&str; 3]) {
    use voxbridge_screening::{
        AgentKind, AnswerSource, AnswerValue, Outcome, ScreeningResult, Speaker as S,
    };
    let [greeting, question, goodbye] = bot;
    let record = rig.first_record().await;
    assert_eq!(
        record.summary.end_reason,
        Some(EndReason::BrainHangup(
            "screening-complete: All 2 questions asked".into()
        ))
    );
    let report = record.report.expect("the brain's report");
    let result = report
        .outcome
        .payload::<ScreeningResult>()
        .expect("a screening result");
    assert_eq!(result.outcome, Some(Outcome::Qualified));
    assert_eq!(result.agent, AgentKind::Realtime);
    assert_eq!(result.screening_id, "short");
    assert_eq!(
        result.parameters.get("firstName").map(String::as_str),
        Some("Ana")
    );
    let answers: Vec<_> = result
        .answers
        .iter()
        .map(|a| (a.question_id.as_str(), a.value.clone(), a.source))
        .collect();
    assert_eq!(
        answers,
        [
            (
                "authorized",
                Some(AnswerValue::YesNo { value: true }),
                AnswerSource::Speech
            ),
            (
                "years",
                Some(AnswerValue::Number {
                    value: 7.0,
                    unit: Some("years".into())
                }),
                AnswerSource::Dtmf
            ),
        ]
    );
    let transcript: Vec<_> = result
        .transcript
        .iter()
        .map(|e| (e.speaker, e.text.as_str()))
        .collect();
    assert_eq!(
        transcript,
        [
            (S::Bot, greeting),
            (S::Caller, "Yes, I am."),
            (S::Bot, question),
            (S::Keypad, "7"),
            (S::Bot, goodbye),
        ]
    );
    assert!(
        report.turns.iter().any(|t| t.total.is_some()),
        "the reply to the caller's speech has a latency"
    );
}
