//! The voice brain against fake providers on paused tokio time.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::assistant::{AssistantConfig, AssistantSource};
use voxbridge_brain::VoiceCallReport;
use voxbridge_brain::turn::TurnOutcome;
use voxbridge_brain::{BrainChannels, BrainEvent, BrainHandle, EndReason, TurnId, spawn_brain};
use voxbridge_screening::ScriptLibrary;
use voxbridge_speech::fake::{FakeAsr, FakeLlm, FakeTts, Fault};

const CALL_SID: &str = "CA00000000000000000000000000000042";

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn attempts(max_attempts: u32) -> voxbridge_speech::retry::RetryPolicy {
    voxbridge_speech::retry::RetryPolicy {
        max_attempts,
        ..Default::default()
    }
}

fn server_error(stage: voxbridge_speech::Stage, status: u16) -> ProviderError {
    ProviderError::Server {
        stage,
        status,
        message: "provider trouble".into(),
    }
}

fn call() -> CallInfo {
    CallInfo {
        call_sid: CALL_SID.into(),
        stream_sid: "MZ00000000000000000000000000000042".into(),
        account_sid: "AC00000000000000000000000000000042".into(),
        custom_parameters: BTreeMap::from([("firstName".into(), "Ana".into())]),
    }
}

fn screening() -> Arc<dyn DialogSource> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/screenings");
    let library = ScriptLibrary::load_dir(&dir).expect("the shipped scripts load");
    Arc::new(Screenings::new(library, "default").expect("the default script exists"))
}

struct Rig {
    asr: Arc<FakeAsr>,
    llm: Arc<FakeLlm>,
    tts: Arc<FakeTts>,
    fallback: Arc<FakeTts>,
    factory: VoiceFactory,
}

fn rig(config: PipelineConfig, assistant: bool) -> Rig {
    let asr = Arc::new(FakeAsr::new(ms(100), "yes"));
    let llm = Arc::new(FakeLlm::new(ms(300), ms(50), "Okay."));
    let tts = Arc::new(FakeTts::new(ms(80), ms(20)));
    let fallback = Arc::new(FakeTts::new(ms(30), ms(5)));
    let source: Arc<dyn DialogSource> = if assistant {
        Arc::new(AssistantSource::new(
            Arc::clone(&llm) as Arc<dyn voxbridge_speech::Llm>,
            AssistantConfig::default(),
        ))
    } else {
        screening()
    };
    let factory = VoiceFactory::new(
        "voice",
        config,
        VoiceProviders {
            asr: Some(Arc::clone(&asr) as Arc<dyn Asr>),
            tts: Some(Arc::clone(&tts) as Arc<dyn Tts>),
            fallback_tts: Some(Arc::clone(&fallback) as Arc<dyn Tts>),
        },
        source,
        VoiceOptions::default(),
    )
    .expect("valid voice agent");
    Rig {
        asr,
        llm,
        tts,
        fallback,
        factory,
    }
}

impl Rig {
    fn start(&self, commands: usize) -> BrainHandle {
        let brain = self.factory.start(&call()).expect("brain starts");
        let handle = spawn_brain(
            "voice",
            brain,
            BrainChannels {
                events: 32,
                commands,
            },
        );
        handle
            .deliver(BrainEvent::CallStarted(call()))
            .expect("room");
        handle
    }
}

fn utterance() -> BrainEvent {
    BrainEvent::Utterance {
        pcm: vec![100; 16_000],
        sample_rate: 16_000,
        started_at: ms(1000),
        ended_at: ms(2000),
    }
}

/// Commands up to and including the next `TurnEnd` (or a `Hangup`).
async fn next_turn(handle: &mut BrainHandle) -> Vec<Command> {
    let mut out = Vec::new();
    loop {
        let command = tokio::time::timeout(Duration::from_secs(60), handle.next_command())
            .await
            .expect("a command within 60 s")
            .expect("brain running");
        let end = matches!(command, Command::TurnEnd { .. } | Command::Hangup { .. });
        out.push(command);
        if end {
            return out;
        }
    }
}

fn texts(commands: &[Command]) -> Vec<String> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::ChunkEnd { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn turn_of(commands: &[Command]) -> TurnId {
    match commands.last() {
        Some(Command::TurnEnd { turn }) => *turn,
        other => panic!("not a turn: {other:?}"),
    }
}

/// Ends the call and returns the report the brain returned.
async fn end_call(handle: BrainHandle) -> VoiceCallReport {
    handle
        .deliver(BrainEvent::CallEnded {
            reason: EndReason::Stopped,
        })
        .expect("room");
    let report = handle
        .finish(Duration::from_secs(2))
        .await
        .expect("clean exit")
        .expect("a voice brain returns its report");
    assert_eq!(report.call_sid, CALL_SID);
    report
}

fn audio_len(commands: &[Command]) -> Duration {
    commands
        .iter()
        .map(|c| match c {
            Command::Audio {
                pcm, sample_rate, ..
            } => Duration::from_secs_f64(pcm.len() as f64 / f64::from(*sample_rate)),
            _ => Duration::ZERO,
        })
        .sum()
}

#[test]
fn factory_refuses_to_build_without_asr() {
    let err = VoiceFactory::new(
        "voice",
        PipelineConfig::default(),
        VoiceProviders {
            tts: Some(Arc::new(FakeTts::new(ms(1), ms(1)))),
            ..VoiceProviders::default()
        },
        screening(),
        VoiceOptions::default(),
    )
    .expect_err("no ASR");
    assert!(err.to_string().contains("speech.asr"), "{err}");
    let bad = PipelineConfig {
        fallback_text: " ".into(),
        ..PipelineConfig::default()
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("fallback_text")
    );
}

#[test]
fn config_defaults_round_trip_through_toml() {
    let text = toml::to_string(&PipelineConfig::default()).expect("serializes");
    let back: PipelineConfig = toml::from_str(&text).expect("parses");
    assert_eq!(back, PipelineConfig::default());
    let partial: PipelineConfig =
        toml::from_str("turn_budget_ms = 2500\n[retry]\nbase_ms = 50").expect("partial config");
    assert_eq!(partial.turn_budget, Duration::from_millis(2500));
    assert_eq!(partial.retry.base_ms, 50);
    assert_eq!(partial.retry.max_ms, 1000);
    assert!(toml::from_str::<PipelineConfig>("turn_budget = 1").is_err());
}

#[tokio::test(start_paused = true)]
async fn first_sentence_is_spoken_while_the_llm_still_streams() {
    let rig = rig(PipelineConfig::default(), true);
    rig.llm.script([
        "Sure, I can help. The warehouse opens at 9 a.m. every day of the week. Anything else?",
    ]);
    // A small command queue and a consumer that "plays" audio in real time, like the session.
    let mut handle = rig.start(2);
    let greeting = next_turn(&mut handle).await;
    assert_eq!(texts(&greeting), ["Hello! ", "How can I help you today? "]);
    assert_eq!(turn_of(&greeting), TurnId(1));

    let t0 = Instant::now();
    handle.deliver(utterance()).expect("room");
    let first = tokio::time::timeout(Duration::from_secs(10), handle.next_command())
        .await
        .expect("in time")
        .expect("running");
    assert!(
        matches!(
            first,
            Command::Audio {
                turn: TurnId(2),
                ..
            }
        ),
        "{first:?}"
    );
    // ASR 100 + first token "Sure," 300 + " I", " can", " help." and " The" (which shows
    // that "help." ended the sentence) 4 x 50 + TTS first byte 80.
    assert_eq!(t0.elapsed(), ms(680));
    assert_eq!(
        rig.tts.texts().last().map(String::as_str),
        Some("Sure, I can help.")
    );
    assert_eq!(rig.llm.stats().open(), 1, "the LLM is still streaming");

    let mut turn = vec![first];
    let mut second_requested_during_first = false;
    loop {
        let c = handle.next_command().await.expect("running");
        match &c {
            Command::Audio { .. } => {
                tokio::time::sleep(audio_len(std::slice::from_ref(&c))).await;
            }
            Command::ChunkEnd { text, .. } if text.starts_with("Sure") => {
                second_requested_during_first = rig.tts.texts().len() >= 3;
            }
            _ => {}
        }
        let end = matches!(c, Command::TurnEnd { .. });
        turn.push(c);
        if end {
            break;
        }
    }
    assert_eq!(
        texts(&turn),
        [
            "Sure, I can help. ",
            "The warehouse opens at 9 a.m. every day of the week. ",
            "Anything else? "
        ]
    );
    assert!(
        second_requested_during_first,
        "sentence 2 was synthesised while sentence 1 played: {:?}",
        rig.tts.texts()
    );
    // Every piece of audio belongs to the turn and comes before its TurnEnd.
    assert!(turn.iter().all(|c| match c {
        Command::Audio { turn, .. }
        | Command::ChunkEnd { turn, .. }
        | Command::TurnEnd { turn } => *turn == TurnId(2),
        Command::Hangup { .. } | Command::AudioMulaw { .. } | Command::Interrupt { .. } => false,
    }));
    assert_eq!(rig.tts.stats().cancelled(), 0);
    end_call(handle).await;
}

#[tokio::test(start_paused = true)]
async fn barge_in_cancels_the_llm_and_tts_streams_at_once() {
    let rig = rig(PipelineConfig::default(), true);
    rig.llm.script([
        "Sure, I can help. The warehouse opens at 9 a.m. every day of the week. Anything else?",
        "Noted.",
    ]);
    let mut handle = rig.start(64);
    next_turn(&mut handle).await;
    handle.deliver(utterance()).expect("room");
    let first = handle.next_command().await.expect("running");
    assert!(matches!(
        first,
        Command::Audio {
            turn: TurnId(2),
            ..
        }
    ));
    // Take what is already queued: from here on, nothing may come for turn 2.
    while let Ok(Some(_)) = tokio::time::timeout(ms(1), handle.next_command()).await {}
    assert_eq!(rig.llm.stats().open(), 1);
    assert_eq!(rig.tts.stats().open(), 1);
    let (tokens, chunks) = (rig.llm.stats().pieces(), rig.tts.stats().pieces());

    handle
        .deliver(BrainEvent::BargeIn {
            turn: TurnId(2),
            heard: "Sure, I can help. ".into(),
            heard_ms: 0,
        })
        .expect("room");
    tokio::task::yield_now().await;
    tokio::time::sleep(ms(1)).await;
    assert_eq!(rig.llm.stats().open(), 0, "LLM stream dropped");
    assert_eq!(rig.llm.stats().cancelled(), 1);
    assert_eq!(rig.tts.stats().open(), 0, "TTS streams dropped");
    assert!(rig.tts.stats().cancelled() >= 1);
    assert!(
        tokio::time::timeout(Duration::from_secs(5), handle.next_command())
            .await
            .is_err(),
        "no command after the barge-in"
    );
    assert_eq!(
        rig.llm.stats().pieces(),
        tokens,
        "no token after the cancel"
    );
    assert_eq!(
        rig.tts.stats().pieces(),
        chunks,
        "no audio after the cancel"
    );

    // The interrupted answer stays in the history as far as it was heard.
    handle.deliver(utterance()).expect("room");
    let reply = next_turn(&mut handle).await;
    assert_eq!(texts(&reply), ["Noted. "]);
    let request = rig.llm.requests().pop().expect("a second request");
    let assistant: Vec<_> = request
        .messages
        .iter()
        .filter(|m| m.role == voxbridge_speech::Role::Assistant)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(
        assistant,
        ["Hello! How can I help you today?", "Sure, I can help."]
    );

    // A barge-in while the ASR is still working drops the ASR request too.
    handle.deliver(utterance()).expect("room");
    tokio::time::sleep(ms(50)).await;
    assert_eq!(rig.asr.stats().open(), 1);
    handle
        .deliver(BrainEvent::BargeIn {
            turn: TurnId(3),
            heard: String::new(),
            heard_ms: 0,
        })
        .expect("room");
    tokio::time::sleep(ms(1)).await;
    assert_eq!(rig.asr.stats().open(), 0);
    assert_eq!(rig.asr.stats().cancelled(), 1);
    assert_eq!(rig.factory.metrics().barge_in_cancels.get(), 2);
    end_call(handle).await;
}

#[tokio::test(start_paused = true)]
async fn turn_latency_is_measured_to_the_first_frame() {
    let rig = rig(PipelineConfig::default(), false);
    let mut handle = rig.start(64);
    let greeting = next_turn(&mut handle).await;
    assert!(texts(&greeting)[0].contains("Ana"), "{greeting:?}");
    let t0 = Instant::now();
    handle.deliver(utterance()).expect("room");
    let reply = next_turn(&mut handle).await;
    // The screening agent acknowledges and asks the next question.
    assert!(
        texts(&reply).iter().any(|t| t.contains("at least 18")),
        "{:?}",
        texts(&reply)
    );
    let turn = turn_of(&reply);
    // The session sends the first frame 5 ms after the brain's first audio.
    let frame_at = t0 + ms(100 + 80 + 5);
    handle
        .deliver(BrainEvent::TurnStarted {
            turn,
            at: frame_at.into_std(),
        })
        .expect("room");
    tokio::time::sleep(ms(1)).await;
    let turns = end_call(handle).await.turns;
    assert_eq!(turns.len(), 1, "{turns:?}");
    let t = &turns[0];
    assert_eq!(t.outcome, TurnOutcome::Spoken);
    assert_eq!(t.turn, Some(turn.0));
    assert_eq!(t.utterance_ended_at, ms(2000));
    assert_eq!(t.asr, Some(ms(100)));
    assert_eq!(t.dialog_first_text, Some(Duration::ZERO));
    assert_eq!(t.tts_first_byte, Some(ms(80)));
    assert_eq!(t.first_frame, Some(ms(5)));
    assert_eq!(t.total, Some(ms(185)));
    assert_eq!(rig.factory.metrics().turn_total.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_is_retried_after_retry_after_then_succeeds() {
    let rig = rig(PipelineConfig::default(), false);
    rig.asr.fail_next(
        Fault::Fail(ProviderError::RateLimited {
            stage: voxbridge_speech::Stage::Asr,
            retry_after: Some(ms(700)),
        }),
        1,
    );
    let mut handle = rig.start(64);
    next_turn(&mut handle).await;
    let t0 = Instant::now();
    handle.deliver(utterance()).expect("room");
    let reply = next_turn(&mut handle).await;
    // 100 (429) + 700 (Retry-After) + 100 (ASR) + 80 (TTS) before the first audio.
    assert!(t0.elapsed() >= ms(980), "{:?}", t0.elapsed());
    assert!(texts(&reply).iter().any(|t| t.contains("at least 18")));
    assert_eq!(rig.asr.stats().requests(), 2);
    let turns = end_call(handle).await.turns;
    assert_eq!(turns[0].retries, 1);
}

#[tokio::test(start_paused = true)]
async fn tts_server_errors_fall_back_to_the_fallback_tts_for_that_sentence() {
    let config = PipelineConfig {
        retry: attempts(2),
        // One sentence at a time, so both faults hit the first sentence.
        tts_lookahead: 0,
        ..PipelineConfig::default()
    };
    let rig = rig(config, false);
    let mut handle = rig.start(64);
    next_turn(&mut handle).await;
    let server = server_error(voxbridge_speech::Stage::Tts, 503);
    rig.tts.fail_next(Fault::Fail(server), 2);
    handle.deliver(utterance()).expect("room");
    let reply = next_turn(&mut handle).await;
    let said = texts(&reply);
    assert!(said.iter().any(|t| t.contains("at least 18")), "{said:?}");
    let first_sentence = said[0].trim();
    assert!(
        rig.fallback.texts().iter().any(|t| t == first_sentence),
        "the fallback TTS spoke {first_sentence:?}: {:?}",
        rig.fallback.texts()
    );
    assert_eq!(rig.factory.metrics().tts_fallbacks.get(), 1);
    end_call(handle).await;
}

#[tokio::test(start_paused = true)]
async fn llm_server_errors_twice_give_the_spoken_fallback_line() {
    let config = PipelineConfig {
        retry: attempts(2),
        ..PipelineConfig::default()
    };
    let rig = rig(config, true);
    let server = server_error(voxbridge_speech::Stage::Llm, 500);
    let mut handle = rig.start(64);
    next_turn(&mut handle).await;
    rig.llm.fail_next(Fault::Fail(server), 2);
    handle.deliver(utterance()).expect("room");
    let reply = next_turn(&mut handle).await;
    assert_eq!(
        texts(&reply),
        ["Sorry, I didn't catch that. Could you say it again? "]
    );
    assert_eq!(rig.llm.stats().requests(), 2);
    assert!(
        rig.fallback
            .texts()
            .iter()
            .filter(|t| t.starts_with("Sorry"))
            .count()
            >= 2,
        "pre-rendered once and spoken once by the fallback TTS: {:?}",
        rig.fallback.texts()
    );
    handle
        .deliver(BrainEvent::TurnStarted {
            turn: turn_of(&reply),
            at: Instant::now().into_std(),
        })
        .expect("room");
    tokio::time::sleep(ms(1)).await;
    let turns = end_call(handle).await.turns;
    assert_eq!(
        turns[0].outcome,
        TurnOutcome::Fallback {
            stage: voxbridge_speech::Stage::Llm
        }
    );
}

#[tokio::test(start_paused = true)]
async fn three_failed_turns_in_a_row_apologise_and_hang_up_with_the_reason() {
    let config = PipelineConfig {
        asr_timeout: Duration::from_secs(1),
        retry: attempts(1),
        ..PipelineConfig::default()
    };
    let rig = rig(config, false);
    // The fallback TTS is down too: the pre-rendered audio (rendered at start) is played.
    let mut handle = rig.start(64);
    next_turn(&mut handle).await;
    assert!(rig.factory.is_prerendered());
    rig.asr.fail_next(Fault::Hang, 3);
    rig.fallback.fail_next(Fault::Hang, 1);
    for strike in 1..=2 {
        let t0 = Instant::now();
        handle.deliver(utterance()).expect("room");
        let reply = next_turn(&mut handle).await;
        assert!(
            t0.elapsed() >= ms(1000),
            "strike {strike} waited for the ASR timeout"
        );
        assert_eq!(
            texts(&reply),
            ["Sorry, I didn't catch that. Could you say it again? "]
        );
        assert!(audio_len(&reply) > ms(500), "the line has audio");
    }
    assert_eq!(
        rig.factory.metrics().canned_fallbacks.get(),
        1,
        "the first fallback line came pre-rendered"
    );
    handle.deliver(utterance()).expect("room");
    let mut last = next_turn(&mut handle).await;
    assert_eq!(
        texts(&last),
        ["I'm sorry, we're having technical difficulties. Please try again later. Goodbye. "]
    );
    last = next_turn(&mut handle).await;
    assert_eq!(
        last,
        [Command::Hangup {
            reason: "provider_failures: asr timeout x3".into()
        }]
    );
    // Nothing more is said after the hangup.
    handle.deliver(utterance()).expect("room");
    assert!(
        tokio::time::timeout(Duration::from_secs(5), handle.next_command())
            .await
            .is_err()
    );
    assert_eq!(rig.asr.stats().requests(), 3);
    assert_eq!(rig.factory.metrics().provider_hangups.get(), 1);
    let turns = end_call(handle).await.turns;
    assert_eq!(turns.len(), 3);
    assert!(turns.iter().all(|t| t.outcome
        == TurnOutcome::Fallback {
            stage: voxbridge_speech::Stage::Asr
        }));
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_failure_count() {
    let config = PipelineConfig {
        retry: attempts(1),
        ..PipelineConfig::default()
    };
    let rig = rig(config, false);
    let mut handle = rig.start(64);
    next_turn(&mut handle).await;
    let server = || Fault::Fail(server_error(voxbridge_speech::Stage::Asr, 502));
    for round in 0..2 {
        rig.asr.fail_next(server(), 2);
        for _ in 0..2 {
            handle.deliver(utterance()).expect("room");
            let reply = next_turn(&mut handle).await;
            assert_eq!(
                texts(&reply),
                ["Sorry, I didn't catch that. Could you say it again? "],
                "round {round}"
            );
        }
        handle.deliver(utterance()).expect("room");
        let reply = next_turn(&mut handle).await;
        assert!(
            !texts(&reply)[0].starts_with("Sorry"),
            "round {round}: a real answer resets the count: {:?}",
            texts(&reply)
        );
    }
    assert_eq!(rig.factory.metrics().provider_hangups.get(), 0);
    end_call(handle).await;
}

#[tokio::test(start_paused = true)]
async fn silence_after_the_turn_played_prompts_and_speech_cancels_it() {
    let rig = rig(PipelineConfig::default(), false);
    let mut handle = rig.start(64);
    let greeting = next_turn(&mut handle).await;
    let t0 = Instant::now();
    handle
        .deliver(BrainEvent::TurnPlayed {
            turn: turn_of(&greeting),
        })
        .expect("room");
    // The default script waits 8 s; then the TTS takes 80 ms.
    let first = handle.next_command().await.expect("running");
    assert_eq!(t0.elapsed(), ms(8080));
    let mut prompt = vec![first];
    prompt.extend(next_turn(&mut handle).await);
    assert!(
        texts(&prompt)[0].starts_with("Are you still there?"),
        "{:?}",
        texts(&prompt)
    );

    // Caller speech stops the clock.
    handle
        .deliver(BrainEvent::TurnPlayed {
            turn: turn_of(&prompt),
        })
        .expect("room");
    tokio::time::sleep(ms(4000)).await;
    handle.deliver(BrainEvent::SpeechStarted).expect("room");
    assert!(
        tokio::time::timeout(Duration::from_secs(20), handle.next_command())
            .await
            .is_err(),
        "no silence prompt while the caller speaks"
    );
    end_call(handle).await;
}

#[tokio::test(start_paused = true)]
async fn dtmf_answers_and_the_dialog_end_hangs_up_after_the_last_turn() {
    let rig = rig(PipelineConfig::default(), false);
    let mut handle = rig.start(64);
    next_turn(&mut handle).await;
    handle.deliver(BrainEvent::Dtmf('1')).expect("room");
    let reply = next_turn(&mut handle).await;
    assert!(
        texts(&reply).iter().any(|t| t.contains("at least 18")),
        "{:?}",
        texts(&reply)
    );
    // "No" to the age question ends the screening: the closing line, then the hangup.
    rig.asr.script(["no"]);
    handle.deliver(utterance()).expect("room");
    let closing = next_turn(&mut handle).await;
    assert!(
        texts(&closing).join("").contains("18 or older"),
        "{:?}",
        texts(&closing)
    );
    let hangup = next_turn(&mut handle).await;
    assert!(
        matches!(&hangup[..], [Command::Hangup { reason }] if reason.starts_with("screening-complete") || reason.starts_with("knock-out")),
        "{hangup:?}"
    );
    end_call(handle).await;
}

/// The recogniser hears each answer with the question it answers as its prompt (the bot's
/// last reply), and with no prompt when `asr_prompt` is off.
#[tokio::test(start_paused = true)]
async fn the_question_being_answered_is_the_recognisers_prompt() {
    let on = rig(PipelineConfig::default(), false);
    on.asr.script(["Yes, I am.", "Yes."]);
    let mut handle = on.start(64);
    let greeting = texts(&next_turn(&mut handle).await).concat();
    assert!(
        greeting.ends_with("Are you legally authorized to work in the United States? "),
        "{greeting}"
    );
    handle.deliver(utterance()).expect("room");
    let second = texts(&next_turn(&mut handle).await).concat();
    assert!(
        second.contains("Are you at least 18 years old?"),
        "{second}"
    );
    handle.deliver(utterance()).expect("room");
    next_turn(&mut handle).await;
    end_call(handle).await;
    let prompts: Vec<Option<String>> = on.asr.requests().into_iter().map(|r| r.prompt).collect();
    assert_eq!(prompts.len(), 2);
    assert_eq!(prompts[0].as_deref(), Some(greeting.trim()));
    assert_eq!(prompts[1].as_deref(), Some(second.trim()));

    let off = rig(
        PipelineConfig {
            asr_prompt: false,
            ..PipelineConfig::default()
        },
        false,
    );
    let mut handle = off.start(64);
    next_turn(&mut handle).await;
    handle.deliver(utterance()).expect("room");
    next_turn(&mut handle).await;
    end_call(handle).await;
    assert_eq!(off.asr.requests()[0].prompt, None);
}

fn pause(ended_ms: u64) -> BrainEvent {
    BrainEvent::Pause {
        pcm: vec![100; 16_000],
        sample_rate: 16_000,
        started_at: ms(1000),
        ended_at: ms(ended_ms),
    }
}

#[tokio::test(start_paused = true)]
async fn recognition_starts_at_the_pause_and_the_hangover_does_not_wait_for_it() {
    let rig = rig(PipelineConfig::default(), false);
    assert_eq!(
        rig.factory.caller_audio(),
        voxbridge_brain::CallerAudio::UtterancesAndPauses
    );
    rig.asr.script(["Yes, I am."]);
    let mut handle = rig.start(64);
    next_turn(&mut handle).await;
    // The caller pauses; the hangover (here 400 ms after the pause) ends the same utterance.
    handle.deliver(pause(2000)).expect("room");
    tokio::time::sleep(ms(400)).await;
    handle.deliver(utterance()).expect("room");
    let reply = next_turn(&mut handle).await;
    assert!(
        texts(&reply).iter().any(|t| t.contains("at least 18")),
        "{:?}",
        texts(&reply)
    );
    let turns = end_call(handle).await.turns;
    // One recognition, done (100 ms) before the utterance came: none of it was waited for.
    assert_eq!(rig.asr.stats().requests(), 1);
    assert_eq!(turns[0].asr, Some(Duration::ZERO), "{turns:?}");
    assert_eq!(rig.factory.metrics().speculative_hits.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_pause_talked_through_is_recognised_again_whole() {
    let rig = rig(PipelineConfig::default(), false);
    rig.asr.script(["Yes", "Yes, I am."]);
    let mut handle = rig.start(64);
    next_turn(&mut handle).await;
    // Paused at 1.5 s, went on to 2 s: the early result is for other audio.
    handle.deliver(pause(1500)).expect("room");
    tokio::time::sleep(ms(400)).await;
    handle.deliver(utterance()).expect("room");
    next_turn(&mut handle).await;
    let turns = end_call(handle).await.turns;
    assert_eq!(rig.asr.stats().requests(), 2);
    assert_eq!(turns[0].asr, Some(ms(100)), "{turns:?}");
    assert_eq!(rig.factory.metrics().speculative_hits.get(), 0);

    // Off: no pauses asked for.
    let off = rig_with(PipelineConfig {
        speculative_asr: false,
        ..PipelineConfig::default()
    });
    assert_eq!(
        off.factory.caller_audio(),
        voxbridge_brain::CallerAudio::Utterances
    );
}

fn rig_with(config: PipelineConfig) -> Rig {
    rig(config, false)
}

#[test]
fn a_long_reply_is_cut_to_its_end_at_a_word() {
    assert_eq!(super::reply::asr_prompt("  "), None);
    assert_eq!(
        super::reply::asr_prompt(" Ready? ").as_deref(),
        Some("Ready?")
    );
    let long = format!("{} Are you at least 18 years old?", "word ".repeat(200));
    let prompt = super::reply::asr_prompt(&long).expect("a prompt");
    assert!(prompt.chars().count() <= 400, "{}", prompt.len());
    assert!(prompt.starts_with("word "), "{prompt}");
    assert!(
        prompt.ends_with("Are you at least 18 years old?"),
        "{prompt}"
    );
}
