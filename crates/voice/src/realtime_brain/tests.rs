//! The realtime brain against a scripted in-memory speech-to-speech provider: what it asks of
//! the provider and what it tells the session (the end-to-end path over sockets, with the
//! OpenAI stand-in, is in crates/media/tests/realtime.rs).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use voxbridge_brain::{
    BoxFuture, BrainChannels, BrainEvent, BrainHandle, Command, TurnId, spawn_brain,
};
use voxbridge_speech::{SpeechInput, SpeechOutput, SpeechSession, SpeechSessionSetup, Stage};

/// The test's end of one provider session.
struct Remote {
    inputs: mpsc::UnboundedReceiver<SpeechInput>,
    outputs: mpsc::UnboundedSender<Result<SpeechOutput, ProviderError>>,
    setup: SpeechSessionSetup,
}

struct FakeSession {
    inputs: mpsc::UnboundedSender<SpeechInput>,
    outputs: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Result<SpeechOutput, ProviderError>>>>,
}

impl SpeechSession for FakeSession {
    fn send(&mut self, input: SpeechInput) -> BoxFuture<Result<(), ProviderError>> {
        let sent = self
            .inputs
            .send(input)
            .map_err(|_| ProviderError::Transport {
                stage: Stage::SpeechToSpeech,
                message: "closed".into(),
            });
        Box::pin(async move { sent })
    }

    fn next(&mut self) -> BoxFuture<Option<Result<SpeechOutput, ProviderError>>> {
        let outputs = Arc::clone(&self.outputs);
        Box::pin(async move { outputs.lock().await.recv().await })
    }
}

/// Connects sessions whose other end goes to the test; fails while `failures` has entries.
#[derive(Default)]
struct FakeProvider {
    remotes: Mutex<Vec<Remote>>,
    /// Signalled (a stored permit) at each connect.
    connected: tokio::sync::Notify,
    failures: Mutex<VecDeque<ProviderError>>,
    connects: Mutex<u32>,
}

impl SpeechToSpeech for FakeProvider {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn connect(
        &self,
        setup: SpeechSessionSetup,
    ) -> BoxFuture<Result<Box<dyn SpeechSession>, ProviderError>> {
        *self.connects.lock().unwrap() += 1;
        if let Some(e) = self.failures.lock().unwrap().pop_front() {
            return Box::pin(async move { Err(e) });
        }
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        self.remotes.lock().unwrap().push(Remote {
            inputs: in_rx,
            outputs: out_tx,
            setup,
        });
        self.connected.notify_one();
        let session = FakeSession {
            inputs: in_tx,
            outputs: Arc::new(tokio::sync::Mutex::new(out_rx)),
        };
        Box::pin(async move { Ok(Box::new(session) as Box<dyn SpeechSession>) })
    }
}

impl FakeProvider {
    /// The oldest session not yet taken, waiting (up to [`LIMIT`]) for the brain to connect
    /// one. A connect between the check and the wait leaves a permit, so none is missed.
    async fn remote(&self) -> Remote {
        loop {
            {
                let mut remotes = self.remotes.lock().unwrap();
                if !remotes.is_empty() {
                    return remotes.remove(0);
                }
            }
            tokio::time::timeout(LIMIT, self.connected.notified())
                .await
                .expect("a session connected in time");
        }
    }
}

const LIMIT: Duration = Duration::from_secs(5);

async fn next_input(remote: &mut Remote) -> SpeechInput {
    tokio::time::timeout(LIMIT, remote.inputs.recv())
        .await
        .expect("an input in time")
        .expect("session open")
}

async fn next_command(handle: &mut BrainHandle) -> Command {
    tokio::time::timeout(LIMIT, handle.next_command())
        .await
        .expect("a command in time")
        .expect("brain running")
}

fn call(params: &[(&str, &str)]) -> CallInfo {
    CallInfo {
        call_sid: "CA00000000000000000000000000000001".into(),
        stream_sid: "MZ00000000000000000000000000000001".into(),
        account_sid: "AC00000000000000000000000000000001".into(),
        custom_parameters: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn start(
    provider: &Arc<FakeProvider>,
    config: RealtimeConfig,
    options: RealtimeOptions,
) -> BrainHandle {
    let factory = RealtimeFactory::new(
        config,
        Arc::clone(provider) as Arc<dyn SpeechToSpeech>,
        options,
    )
    .expect("valid config");
    assert_eq!(factory.caller_audio(), CallerAudio::Raw);
    let info = call(&[("firstName", "Ada")]);
    let brain = factory.start(&info).expect("starts");
    let handle = spawn_brain(AGENT, brain, BrainChannels::default());
    handle.deliver(BrainEvent::CallStarted(info)).expect("room");
    handle
}

/// A call with the defaults whose greeting request has been taken.
async fn greeted(provider: &Arc<FakeProvider>) -> (BrainHandle, Remote) {
    let handle = start(
        provider,
        RealtimeConfig::default(),
        RealtimeOptions::default(),
    );
    let mut remote = provider.remote().await;
    let greeting = next_input(&mut remote).await;
    assert!(matches!(greeting, SpeechInput::Respond { .. }));
    (handle, remote)
}

fn audio(item: &str, bytes: usize) -> SpeechOutput {
    SpeechOutput::BotAudio {
        item_id: item.into(),
        mulaw: (0..bytes).map(|i| (i % 256) as u8).collect(),
    }
}

#[tokio::test]
async fn greets_then_speaks_each_item_as_a_turn_of_mulaw_chunks() {
    let provider = Arc::new(FakeProvider::default());
    let config = RealtimeConfig {
        instructions: "Screen {firstName} for the job.".into(),
        ..RealtimeConfig::default()
    };
    let mut handle = start(&provider, config.clone(), RealtimeOptions::default());
    let mut remote = provider.remote().await;
    assert_eq!(remote.setup.instructions, "Screen Ada for the job.");
    assert!(remote.setup.tools.iter().any(|t| t.name == "end_call"));
    assert_eq!(
        next_input(&mut remote).await,
        SpeechInput::Respond {
            instructions: Some(config.greeting.clone())
        }
    );
    // 250 ms of audio in deltas of 120 and 130 ms: chunks of exactly 100 ms.
    remote.outputs.send(Ok(audio("item_1", 960))).unwrap();
    remote.outputs.send(Ok(audio("item_1", 1040))).unwrap();
    remote
        .outputs
        .send(Ok(SpeechOutput::BotTranscript {
            item_id: "item_1".into(),
            text: "Hello Ada.".into(),
        }))
        .unwrap();
    remote.outputs.send(Ok(SpeechOutput::ResponseDone)).unwrap();
    let mut chunks = Vec::new();
    let mut bytes = Vec::new();
    loop {
        match next_command(&mut handle).await {
            Command::AudioMulaw { turn, mulaw } => {
                assert_eq!(turn, TurnId(1));
                bytes.extend(mulaw);
            }
            Command::ChunkEnd { turn, text } => {
                assert_eq!(turn, TurnId(1));
                chunks.push((bytes.len(), text));
            }
            Command::TurnEnd { turn } => {
                assert_eq!(turn, TurnId(1));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let expected: Vec<u8> = (0..960)
        .chain(0..1040)
        .map(|i: usize| (i % 256) as u8)
        .collect();
    assert_eq!(bytes, expected, "mu-law passes through unchanged");
    assert_eq!(
        chunks,
        vec![
            (800, String::new()),
            (1600, String::new()),
            (2000, "Hello Ada. ".into())
        ]
    );
    // Caller audio goes to the provider byte for byte.
    handle
        .deliver(BrainEvent::CallerAudio {
            mulaw: vec![1, 2, 3],
        })
        .unwrap();
    assert_eq!(
        next_input(&mut remote).await,
        SpeechInput::CallerAudio(vec![1, 2, 3])
    );
}

// Paused time: the "nothing more comes" wait below ends when every task is idle (time only
// advances then), not after 200 ms of a busy machine's wall clock.
#[tokio::test(start_paused = true)]
async fn provider_speech_interrupts_at_once_and_truncates_at_the_heard_ms() {
    let provider = Arc::new(FakeProvider::default());
    let (mut handle, mut remote) = greeted(&provider).await;
    remote.outputs.send(Ok(audio("item_1", 8000))).unwrap();
    assert!(matches!(
        next_command(&mut handle).await,
        Command::AudioMulaw {
            turn: TurnId(1),
            ..
        }
    ));
    remote
        .outputs
        .send(Ok(SpeechOutput::SpeechStarted))
        .unwrap();
    let turn = tokio::time::timeout(LIMIT, handle.next_interrupt())
        .await
        .expect("an interruption");
    assert_eq!(turn, TurnId(1));
    // The session cleared and reports what was heard.
    handle
        .deliver(BrainEvent::BargeIn {
            turn: TurnId(1),
            heard: String::new(),
            heard_ms: 300,
        })
        .unwrap();
    assert_eq!(
        next_input(&mut remote).await,
        SpeechInput::Truncate {
            item_id: "item_1".into(),
            audio_end_ms: 300
        }
    );
    assert_eq!(next_input(&mut remote).await, SpeechInput::Cancel);
    // Audio of the cut item that still arrives is dropped; the next item is a new turn.
    remote.outputs.send(Ok(audio("item_1", 800))).unwrap();
    remote.outputs.send(Ok(audio("item_2", 800))).unwrap();
    // The commands already in the channel (8) still come (the session drops them as stale);
    // the brain's own queue for the cut turn, and the late audio, never do.
    let mut first_turn_bytes = 800;
    let mut second_turn_bytes = 0;
    while let Ok(Some(command)) =
        tokio::time::timeout(Duration::from_millis(200), handle.next_command()).await
    {
        match command {
            Command::AudioMulaw {
                turn: TurnId(1),
                mulaw,
            } => {
                assert_eq!(second_turn_bytes, 0, "turn 1 after turn 2");
                first_turn_bytes += mulaw.len();
            }
            Command::AudioMulaw { turn, mulaw } => {
                assert_eq!(turn, TurnId(2));
                second_turn_bytes += mulaw.len();
            }
            Command::ChunkEnd { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(first_turn_bytes <= 800 * 5, "{first_turn_bytes}");
    assert_eq!(second_turn_bytes, 800);
}

#[tokio::test]
async fn end_call_hangs_up_after_the_response() {
    let provider = Arc::new(FakeProvider::default());
    let (mut handle, mut remote) = greeted(&provider).await;
    remote.outputs.send(Ok(audio("item_1", 400))).unwrap();
    remote
        .outputs
        .send(Ok(SpeechOutput::ToolCall(voxbridge_speech::ToolCall {
            id: "call_1".into(),
            name: "end_call".into(),
            arguments: r#"{"reason":"caller is done"}"#.into(),
        })))
        .unwrap();
    match next_input(&mut remote).await {
        SpeechInput::ToolResult { call_id, output } => {
            assert_eq!(call_id, "call_1");
            assert_eq!(output, r#"{"ok":true}"#);
        }
        other => panic!("unexpected {other:?}"),
    }
    remote.outputs.send(Ok(SpeechOutput::ResponseDone)).unwrap();
    let mut last = None;
    for _ in 0..4 {
        last = Some(next_command(&mut handle).await);
        if matches!(last, Some(Command::Hangup { .. })) {
            break;
        }
    }
    assert_eq!(
        last,
        Some(Command::Hangup {
            reason: "end_call: caller is done".into()
        })
    );
}

#[tokio::test]
async fn a_lost_session_is_resumed_with_the_conversation_so_far() {
    let provider = Arc::new(FakeProvider::default());
    let (_handle, remote) = greeted(&provider).await;
    remote
        .outputs
        .send(Ok(SpeechOutput::CallerTranscript("I am Ada".into())))
        .unwrap();
    // The session is lost right after: the channel hands the brain the transcript before it
    // reports the close, so the brain must have heard it before it resumes (no grace time).
    drop(remote);
    let mut second = provider.remote().await;
    assert!(
        second.setup.instructions.contains("Caller: I am Ada"),
        "{}",
        second.setup.instructions
    );
    assert!(matches!(
        next_input(&mut second).await,
        SpeechInput::Respond { instructions: Some(i) } if i.contains("Apologise")
    ));
}

#[tokio::test]
async fn a_dead_session_still_plays_what_it_delivered() {
    let provider = Arc::new(FakeProvider::default());
    let (mut handle, remote) = greeted(&provider).await;
    // Audio, then the socket dies; caller audio is already waiting, so the brain learns of
    // the death from a refused input before it reads the audio (this test runs on one
    // thread: nothing runs until the test awaits).
    remote.outputs.send(Ok(audio("item_1", 800))).unwrap();
    drop(remote);
    handle
        .deliver(BrainEvent::CallerAudio {
            mulaw: vec![0xFF; 160],
        })
        .unwrap();
    assert_eq!(
        next_command(&mut handle).await,
        Command::AudioMulaw {
            turn: TurnId(1),
            mulaw: (0..800).map(|i| (i % 256) as u8).collect(),
        }
    );
    // Then the loss is handled: a new session.
    let _second = provider.remote().await;
}

#[tokio::test]
async fn no_provider_means_an_apology_and_a_hangup_with_the_reason() {
    let provider = Arc::new(FakeProvider::default());
    provider.failures.lock().unwrap().extend([
        ProviderError::Server {
            stage: Stage::SpeechToSpeech,
            status: 503,
            message: "overloaded".into(),
        },
        ProviderError::Server {
            stage: Stage::SpeechToSpeech,
            status: 503,
            message: "overloaded".into(),
        },
    ]);
    let options = RealtimeOptions::default();
    let metrics = Arc::clone(&options.metrics);
    let mut handle = start(&provider, RealtimeConfig::default(), options);
    let mut audio_samples = 0;
    let mut spoken = String::new();
    let reason = loop {
        match next_command(&mut handle).await {
            Command::Audio { pcm, .. } => audio_samples += pcm.len(),
            Command::ChunkEnd { text, .. } => spoken.push_str(&text),
            Command::TurnEnd { .. } => {}
            Command::Hangup { reason } => break reason,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(audio_samples > 0, "the caller hears something");
    assert!(spoken.starts_with("I'm sorry"), "{spoken}");
    assert_eq!(
        reason,
        "provider_failures: speech_to_speech server_error x2"
    );
    assert_eq!(*provider.connects.lock().unwrap(), 2);
    assert_eq!(metrics.provider_hangups.get(), 1);
}

#[test]
fn config_is_validated_with_the_key() {
    let bad = RealtimeConfig {
        chunk_ms: 5,
        ..RealtimeConfig::default()
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("speech.realtime.chunk_ms")
    );
    let empty = RealtimeConfig {
        apology_text: " ".into(),
        ..RealtimeConfig::default()
    };
    assert!(
        empty
            .validate()
            .unwrap_err()
            .to_string()
            .contains("speech.realtime.apology_text")
    );
    assert!(RealtimeConfig::default().validate().is_ok());
}

/// A two-question script: a knock-out yes/no, then a number the keypad can answer (shared
/// with the socket-level test in crates/media/tests/realtime.rs).
const SCRIPT: &str = include_str!("../../../../tests/data/screenings/realtime-short.toml");

fn screening_options() -> RealtimeOptions {
    let library = voxbridge_screening::ScriptLibrary::from_sources([("short.toml", SCRIPT)])
        .expect("the test script loads");
    RealtimeOptions {
        screenings: Some(Screenings::new(library, "short").expect("default script")),
        ..RealtimeOptions::default()
    }
}

/// A screening call whose first request (the greeting, from the script's instructions) has
/// been taken.
async fn screening_call(provider: &Arc<FakeProvider>) -> (BrainHandle, Remote) {
    let handle = start(provider, RealtimeConfig::default(), screening_options());
    let mut remote = provider.remote().await;
    let instructions = &remote.setup.instructions;
    for expected in [
        "Hi Ada, this is Vox about the Picker job.",
        "authorized: \"Are you allowed to work here?\" -> yes/no",
        "years: \"How many years have you picked orders?\" -> a number of years",
        "[the caller pressed the key N]",
    ] {
        assert!(
            instructions.contains(expected),
            "{expected:?} in {instructions}"
        );
    }
    let tools: Vec<&str> = remote.setup.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tools, ["record_answer", "end_screening", "handoff"]);
    assert_eq!(
        next_input(&mut remote).await,
        SpeechInput::Respond { instructions: None }
    );
    (handle, remote)
}

/// The model calls a tool.
fn model_calls(remote: &Remote, id: &str, name: &str, arguments: &str) {
    let call = voxbridge_speech::ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
    };
    remote
        .outputs
        .send(Ok(SpeechOutput::ToolCall(call)))
        .unwrap();
}

/// The provider's VAD hears the caller start and stop (it then answers with a response).
fn caller_speaks(remote: &Remote) {
    remote
        .outputs
        .send(Ok(SpeechOutput::SpeechStarted))
        .unwrap();
    remote
        .outputs
        .send(Ok(SpeechOutput::SpeechStopped))
        .unwrap();
}

/// The output of the next input, which must be the result of tool call `id`.
async fn tool_result(remote: &mut Remote, id: &str) -> serde_json::Value {
    match next_input(remote).await {
        SpeechInput::ToolResult { call_id, output } => {
            assert_eq!(call_id, id);
            serde_json::from_str(&output).expect("JSON output")
        }
        other => panic!("expected the result of {id}, got {other:?}"),
    }
}

/// Reads commands up to the hang-up; returns its reason.
async fn hangup_reason(handle: &mut BrainHandle) -> String {
    for _ in 0..64 {
        if let Command::Hangup { reason } = next_command(handle).await {
            return reason;
        }
    }
    panic!("no hang-up");
}

/// One bot item: audio, its transcript, then the end of the response.
fn say(remote: &Remote, item: &str, text: &str) {
    remote.outputs.send(Ok(audio(item, 800))).unwrap();
    remote
        .outputs
        .send(Ok(SpeechOutput::BotTranscript {
            item_id: item.into(),
            text: text.into(),
        }))
        .unwrap();
    remote.outputs.send(Ok(SpeechOutput::ResponseDone)).unwrap();
}

/// Reads commands until bot turn `turn` ends, then tells the brain it has played.
async fn played(handle: &mut BrainHandle, turn: u64) {
    loop {
        if next_command(handle).await == (Command::TurnEnd { turn: TurnId(turn) }) {
            break;
        }
    }
    handle
        .deliver(BrainEvent::TurnPlayed { turn: TurnId(turn) })
        .unwrap();
}

async fn screening_result(handle: BrainHandle) -> voxbridge_screening::ScreeningResult {
    let report = handle
        .finish(LIMIT)
        .await
        .expect("the brain ends cleanly")
        .expect("a report");
    assert_eq!(report.agent, AGENT);
    report
        .outcome
        .payload::<voxbridge_screening::ScreeningResult>()
        .expect("a screening result, stored as /relay's")
        .clone()
}

/// The model records a spoken answer (a response of tool calls only: the brain sends the
/// result and asks it to go on), the caller keys the next answer (it reaches the model as a
/// user line), the model completes the screening and says goodbye itself: the call hangs up
/// with `screening-complete` and the result holds both answers with their sources.
#[tokio::test]
async fn screening_records_answers_through_the_tools_and_keys_reach_the_model() {
    let provider = Arc::new(FakeProvider::default());
    let (mut handle, mut remote) = screening_call(&provider).await;
    say(&remote, "item_1", "Hi Ada. Are you allowed to work here?");
    played(&mut handle, 1).await;
    caller_speaks(&remote);
    remote
        .outputs
        .send(Ok(SpeechOutput::CallerTranscript("Yes, I am.".into())))
        .unwrap();
    model_calls(
        &remote,
        "call_1",
        "record_answer",
        r#"{"question_id":"authorized","value":true,"raw":"Yes, I am.","confidence":0.9}"#,
    );
    let result = tool_result(&mut remote, "call_1").await;
    assert_eq!(result["ok"], true);
    assert_eq!(result["next_question"]["id"], "years");
    // The response made only the tool call: the model is asked to continue.
    remote.outputs.send(Ok(SpeechOutput::ResponseDone)).unwrap();
    assert_eq!(
        next_input(&mut remote).await,
        SpeechInput::Respond { instructions: None }
    );
    say(&remote, "item_2", "How many years have you picked orders?");
    played(&mut handle, 2).await;
    handle.deliver(BrainEvent::Dtmf('7')).unwrap();
    assert_eq!(
        next_input(&mut remote).await,
        SpeechInput::UserText("[the caller pressed the key 7]".into())
    );
    assert_eq!(
        next_input(&mut remote).await,
        SpeechInput::Respond { instructions: None }
    );
    // A value that does not fit is refused with what to fix.
    model_calls(
        &remote,
        "call_2",
        "record_answer",
        r#"{"question_id":"years","value":"lots","raw":"7","confidence":0.9}"#,
    );
    let refused = tool_result(&mut remote, "call_2").await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("years")),
        "{refused}"
    );
    // Completing before every answer is in is refused too.
    model_calls(
        &remote,
        "call_3",
        "end_screening",
        r#"{"outcome":"completed","reason":"done"}"#,
    );
    assert!(tool_result(&mut remote, "call_3").await["error"].is_string());
    model_calls(
        &remote,
        "call_4",
        "record_answer",
        r#"{"question_id":"years","value":7,"raw":"7","confidence":1}"#,
    );
    assert_eq!(
        tool_result(&mut remote, "call_4").await["next"],
        "every question is answered: call end_screening with outcome completed"
    );
    model_calls(
        &remote,
        "call_5",
        "end_screening",
        r#"{"outcome":"completed","reason":"all answered"}"#,
    );
    assert_eq!(tool_result(&mut remote, "call_5").await["ok"], true);
    // The model says its own goodbye in the same response: no script line is added.
    say(&remote, "item_3", "Thanks Ada, you qualify. Goodbye!");
    assert_eq!(
        hangup_reason(&mut handle).await,
        "screening-complete: All 2 questions asked"
    );
    assert_spoken_and_keyed(&screening_result(handle).await);
}

/// The result of the call above: qualified, one spoken and one keyed answer, the key in the
/// transcript where it was pressed.
fn assert_spoken_and_keyed(result: &voxbridge_screening::ScreeningResult) {
    use voxbridge_screening::Speaker as S;
    use voxbridge_screening::{AnswerSource, AnswerStatus};
    assert_eq!(
        result.outcome,
        Some(voxbridge_screening::Outcome::Qualified)
    );
    assert_eq!(result.agent, voxbridge_screening::AgentKind::Realtime);
    assert_eq!(
        result.call_sid.as_deref(),
        Some("CA00000000000000000000000000000001")
    );
    let end = result.end.as_ref().expect("an end reason");
    assert_eq!(end.reason_code, "screening-complete");
    let answers: Vec<_> = result
        .answers
        .iter()
        .map(|a| (a.question_id.as_str(), a.raw.as_str(), a.source, a.status))
        .collect();
    assert_eq!(
        answers,
        [
            (
                "authorized",
                "Yes, I am.",
                AnswerSource::Speech,
                AnswerStatus::Accepted
            ),
            ("years", "7", AnswerSource::Dtmf, AnswerStatus::Accepted),
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
            (S::Bot, "Hi Ada. Are you allowed to work here?"),
            (S::Caller, "Yes, I am."),
            (S::Bot, "How many years have you picked orders?"),
            (S::Keypad, "7"),
            (S::Bot, "Thanks Ada, you qualify. Goodbye!"),
        ]
    );
}

/// A rejected knock-out answer closes the call with the script's reject line, which the model
/// is told to say word for word; the call hangs up after that response.
#[tokio::test]
async fn a_knock_out_answer_closes_with_the_scripts_line() {
    let provider = Arc::new(FakeProvider::default());
    let (mut handle, mut remote) = screening_call(&provider).await;
    say(&remote, "item_1", "Are you allowed to work here?");
    played(&mut handle, 1).await;
    caller_speaks(&remote);
    model_calls(
        &remote,
        "call_1",
        "record_answer",
        r#"{"question_id":"authorized","value":false,"raw":"No.","confidence":0.95}"#,
    );
    assert_eq!(
        tool_result(&mut remote, "call_1").await["next"],
        "the call ends now: say nothing more"
    );
    remote.outputs.send(Ok(SpeechOutput::ResponseDone)).unwrap();
    match next_input(&mut remote).await {
        SpeechInput::Respond {
            instructions: Some(instructions),
        } => assert!(
            instructions.contains("\"Sorry, this job needs work authorization. Goodbye.\""),
            "{instructions}"
        ),
        other => panic!("expected the closing line, got {other:?}"),
    }
    // A tool call after the closing is refused.
    model_calls(&remote, "call_2", "handoff", r#"{"reason":"x"}"#);
    assert!(tool_result(&mut remote, "call_2").await["error"].is_string());
    say(
        &remote,
        "item_2",
        "Sorry, this job needs work authorization. Goodbye.",
    );
    assert_eq!(
        hangup_reason(&mut handle).await,
        "knock-out: Answer to authorized is not accepted"
    );
    let result = screening_result(handle).await;
    assert_eq!(
        result.outcome,
        Some(voxbridge_screening::Outcome::NotQualified)
    );
    assert_eq!(
        result.answers[0].status,
        voxbridge_screening::AnswerStatus::Rejected
    );
}

/// A caller who says nothing after the bot has spoken: the model is told after the script's
/// silence timeout and asks again; after `max_silences` the script's incomplete line closes the
/// call as no answer. Paused time: the timeouts pass without waiting.
#[tokio::test(start_paused = true)]
async fn silence_is_told_to_the_model_then_closes_as_no_answer() {
    let provider = Arc::new(FakeProvider::default());
    let (mut handle, mut remote) = screening_call(&provider).await;
    say(&remote, "item_1", "Are you allowed to work here?");
    let asked = Instant::now();
    played(&mut handle, 1).await;
    match next_input(&mut remote).await {
        SpeechInput::UserText(text) => {
            assert!(text.contains("said nothing for 1 seconds"), "{text}");
        }
        other => panic!("expected the silence line, got {other:?}"),
    }
    assert!(asked.elapsed() >= Duration::from_secs(1));
    assert_eq!(
        next_input(&mut remote).await,
        SpeechInput::Respond { instructions: None }
    );
    say(&remote, "item_2", "Are you still there?");
    played(&mut handle, 2).await;
    match next_input(&mut remote).await {
        SpeechInput::Respond {
            instructions: Some(instructions),
        } => assert!(
            instructions.contains("We'll follow up later, Ada. Goodbye."),
            "{instructions}"
        ),
        other => panic!("expected the closing line, got {other:?}"),
    }
    say(&remote, "item_3", "We'll follow up later, Ada. Goodbye.");
    assert_eq!(
        hangup_reason(&mut handle).await,
        "no-answer: The caller stopped answering"
    );
    let result = screening_result(handle).await;
    assert_eq!(result.outcome, Some(voxbridge_screening::Outcome::NoAnswer));
}

/// In `instructions` mode a key pressed reaches the model too.
#[tokio::test]
async fn keys_reach_the_model_in_instructions_mode() {
    let provider = Arc::new(FakeProvider::default());
    let (mut handle, mut remote) = greeted(&provider).await;
    say(&remote, "item_1", "Hello, how can I help?");
    played(&mut handle, 1).await;
    handle.deliver(BrainEvent::Dtmf('#')).unwrap();
    assert_eq!(
        next_input(&mut remote).await,
        SpeechInput::UserText("[the caller pressed the key #]".into())
    );
    assert_eq!(
        next_input(&mut remote).await,
        SpeechInput::Respond { instructions: None }
    );
}

/// A key pressed while a response is playing reaches the model at once, but the model is asked
/// to answer only after that response is done (a second `response.create` would be refused).
#[tokio::test]
async fn a_key_during_a_response_is_answered_after_it() {
    let provider = Arc::new(FakeProvider::default());
    let (handle, mut remote) = screening_call(&provider).await;
    remote.outputs.send(Ok(audio("item_1", 800))).unwrap();
    handle.deliver(BrainEvent::Dtmf('1')).unwrap();
    assert_eq!(
        next_input(&mut remote).await,
        SpeechInput::UserText("[the caller pressed the key 1]".into())
    );
    assert!(
        remote.inputs.try_recv().is_err(),
        "no response.create while a response is active"
    );
    remote.outputs.send(Ok(SpeechOutput::ResponseDone)).unwrap();
    assert_eq!(
        next_input(&mut remote).await,
        SpeechInput::Respond { instructions: None }
    );
}

/// The usual shape of a real model's turn: a few words, then the tool call. The results still
/// get a follow-up (the model asks the next question), once the response is done; and a
/// `response.create` the provider refused as busy is asked again after the active one.
#[tokio::test]
async fn tool_results_after_the_audio_get_a_follow_up_and_busy_is_retried() {
    let provider = Arc::new(FakeProvider::default());
    let (mut handle, mut remote) = screening_call(&provider).await;
    say(&remote, "item_1", "Are you allowed to work here?");
    played(&mut handle, 1).await;
    caller_speaks(&remote);
    remote.outputs.send(Ok(audio("item_2", 400))).unwrap();
    model_calls(
        &remote,
        "call_1",
        "record_answer",
        r#"{"question_id":"authorized","value":true,"raw":"yes","confidence":0.9}"#,
    );
    assert_eq!(tool_result(&mut remote, "call_1").await["ok"], true);
    remote.outputs.send(Ok(SpeechOutput::ResponseDone)).unwrap();
    assert_eq!(
        next_input(&mut remote).await,
        SpeechInput::Respond { instructions: None }
    );
    remote.outputs.send(Ok(SpeechOutput::ResponseBusy)).unwrap();
    remote.outputs.send(Ok(audio("item_3", 400))).unwrap();
    remote.outputs.send(Ok(SpeechOutput::ResponseDone)).unwrap();
    assert_eq!(
        next_input(&mut remote).await,
        SpeechInput::Respond { instructions: None }
    );
}

/// How a screening ends without its closing: the caller hanging up after saying something is
/// `incomplete`; a closing a tool call decided stands even if the caller hangs up before the
/// response is done; a provider that never answers is `failed`.
#[tokio::test]
async fn screenings_that_end_early_keep_the_right_outcome() {
    use voxbridge_screening::Outcome;
    let provider = Arc::new(FakeProvider::default());
    let (handle, mut remote) = screening_call(&provider).await;
    remote
        .outputs
        .send(Ok(SpeechOutput::CallerTranscript("Who is this?".into())))
        .unwrap();
    // Outputs are taken in order: once this refused call's result is back, the transcript
    // has been heard.
    model_calls(
        &remote,
        "call_0",
        "record_answer",
        r#"{"question_id":"nope","value":true,"raw":"x","confidence":1}"#,
    );
    assert!(tool_result(&mut remote, "call_0").await["error"].is_string());
    assert_eq!(
        screening_result(handle).await.outcome,
        Some(Outcome::Incomplete)
    );

    let (handle, mut remote) = screening_call(&provider).await;
    model_calls(
        &remote,
        "call_1",
        "record_answer",
        r#"{"question_id":"authorized","value":false,"raw":"no","confidence":0.9}"#,
    );
    tool_result(&mut remote, "call_1").await;
    let result = screening_result(handle).await;
    assert_eq!(result.outcome, Some(Outcome::NotQualified));
    assert_eq!(
        result.end.map(|e| e.reason_code),
        Some("knock-out".to_owned())
    );

    provider.failures.lock().unwrap().extend([
        ProviderError::Server {
            stage: Stage::SpeechToSpeech,
            status: 503,
            message: "down".into(),
        },
        ProviderError::Server {
            stage: Stage::SpeechToSpeech,
            status: 503,
            message: "down".into(),
        },
    ]);
    let mut handle = start(&provider, RealtimeConfig::default(), screening_options());
    hangup_reason(&mut handle).await;
    assert_eq!(
        screening_result(handle).await.outcome,
        Some(Outcome::Failed)
    );
}
