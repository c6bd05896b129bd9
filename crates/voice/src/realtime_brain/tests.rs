//! The realtime brain against a scripted in-memory speech-to-speech provider: what it asks of
//! the provider and what it tells the session (the end-to-end path over sockets, with the
//! OpenAI stand-in, is in crates/media/tests/realtime.rs).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

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
