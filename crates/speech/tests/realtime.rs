//! The OpenAI Realtime provider (real tokio-tungstenite client, async-openai event types)
//! against the stand-in's Realtime WebSocket on 127.0.0.1: session setup with G.711 mu-law,
//! caller audio in, `speech_started` -> `SpeechStarted` (barge-in), audio deltas -> `BotAudio`,
//! tool calls, truncate with `audio_end_ms`, errors.

use std::time::Duration;

use voxbridge_openai_standin::{
    Endpoint, Fault, RealtimeScript, ScriptedToolCall, Standin, StandinConfig, StandinHandle,
};
use voxbridge_speech::config::{OpenAiRealtimeConfig, StageTimeouts};
use voxbridge_speech::openai::OpenAiEndpoint;
use voxbridge_speech::realtime::OpenAiRealtime;
use voxbridge_speech::{
    ProviderError, SpeechInput, SpeechOutput, SpeechSession, SpeechSessionSetup, SpeechToSpeech,
    Stage, ToolCall, ToolSpec,
};

const KEY: &str = "sk-realtime-test";
const LIMIT: Duration = Duration::from_secs(30);

async fn standin(script: RealtimeScript) -> StandinHandle {
    let s = Standin::start(StandinConfig {
        api_key: Some(KEY.into()),
        ..StandinConfig::default()
    })
    .await
    .expect("stand-in starts");
    s.set_realtime_script(script);
    s
}

fn provider(s: &StandinHandle, key: &str) -> OpenAiRealtime {
    OpenAiRealtime::new(
        &OpenAiEndpoint::new(s.base_url(), key),
        &OpenAiRealtimeConfig {
            timeouts: StageTimeouts {
                connect: Duration::from_secs(5),
                first_byte: Duration::from_secs(10),
                idle: Duration::from_secs(20),
            },
            ..OpenAiRealtimeConfig::default()
        },
    )
    .expect("provider")
}

fn setup() -> SpeechSessionSetup {
    SpeechSessionSetup {
        instructions: "You screen candidates for a Rust job.".into(),
        voice: Some("marin".into()),
        tools: vec![ToolSpec {
            name: "record_answer".into(),
            description: "Store an answer".into(),
            parameters: serde_json::json!({"type": "object", "properties": {}}),
        }],
    }
}

/// 20 ms of mu-law: silence, or a loud 300 Hz tone.
fn frame(loud: bool, index: usize) -> Vec<u8> {
    let pcm: Vec<i16> = (0..160)
        .map(|i| {
            if loud {
                let t = (index * 160 + i) as f32 / 8_000.0;
                (f32::sin(2.0 * std::f32::consts::PI * 300.0 * t) * 8_000.0) as i16
            } else {
                0
            }
        })
        .collect();
    let mut out = Vec::new();
    voxbridge_audio::mulaw::encode(&pcm, &mut out);
    out
}

async fn send_frames(session: &mut Box<dyn SpeechSession>, loud: bool, count: usize) {
    for i in 0..count {
        session
            .send(SpeechInput::CallerAudio(frame(loud, i)))
            .await
            .expect("send audio");
    }
}

/// Collects outputs until one matches `done` (inclusive).
async fn until(
    session: &mut Box<dyn SpeechSession>,
    done: impl Fn(&Result<SpeechOutput, ProviderError>) -> bool,
) -> Vec<Result<SpeechOutput, ProviderError>> {
    let mut seen = Vec::new();
    loop {
        let next = tokio::time::timeout(LIMIT, session.next())
            .await
            .unwrap_or_else(|_| panic!("no matching output; saw {seen:?}"))
            .unwrap_or_else(|| panic!("session closed; saw {seen:?}"));
        let stop = done(&next);
        seen.push(next);
        if stop {
            return seen;
        }
    }
}

/// The session is configured for G.711 mu-law both ways, with our voice, prompt and tools.
async fn assert_session_configured(s: &StandinHandle) {
    let update = s
        .wait_for_realtime_event("session.update", LIMIT)
        .await
        .expect("session.update sent");
    let session_json = &update["session"];
    assert_eq!(session_json["type"], "realtime");
    assert_eq!(
        session_json["audio"]["input"]["format"]["type"],
        "audio/pcmu"
    );
    assert_eq!(
        session_json["audio"]["output"]["format"]["type"],
        "audio/pcmu"
    );
    assert_eq!(session_json["audio"]["output"]["voice"], "marin");
    assert_eq!(
        session_json["audio"]["input"]["turn_detection"]["type"],
        "server_vad"
    );
    assert_eq!(
        session_json["instructions"],
        "You screen candidates for a Rust job."
    );
    assert_eq!(session_json["tools"][0]["type"], "function");
    assert_eq!(session_json["tools"][0]["name"], "record_answer");
    assert_eq!(
        s.requests_to(Endpoint::Realtime)[0].body["model"],
        "gpt-realtime"
    );
    assert_eq!(
        s.requests_to(Endpoint::Realtime)[0]
            .authorization
            .as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
}

#[tokio::test]
async fn a_turn_with_mulaw_in_and_out() {
    let s = standin(RealtimeScript {
        reply_text: "Sure, tell me more.".into(),
        caller_transcript: "I have five years of Rust.".into(),
        tool_call: Some(ScriptedToolCall {
            name: "record_answer".into(),
            arguments: r#"{"years": 5}"#.into(),
        }),
        ..RealtimeScript::default()
    })
    .await;
    let mut session = provider(&s, KEY).connect(setup()).await.expect("connect");

    assert_session_configured(&s).await;

    // Caller speaks: silence, speech -> SpeechStarted.
    send_frames(&mut session, false, 10).await;
    send_frames(&mut session, true, 30).await;
    let seen = until(&mut session, |o| {
        matches!(o, Ok(SpeechOutput::SpeechStarted))
    })
    .await;
    assert_eq!(seen, [Ok(SpeechOutput::SpeechStarted)]);
    // The audio arrived as raw mu-law bytes (160 per 20 ms frame), not transcoded.
    let appends: Vec<_> = s
        .realtime_events()
        .into_iter()
        .filter(|e| e["type"] == "input_audio_buffer.append")
        .collect();
    assert!(
        appends.iter().all(|e| e["audio_bytes"] == 160),
        "{appends:?}"
    );

    // Caller stops: the model answers with a tool call, audio and a transcript.
    send_frames(&mut session, false, 40).await;
    let seen = until(&mut session, |o| {
        matches!(o, Ok(SpeechOutput::ResponseDone))
    })
    .await;
    let outputs: Vec<SpeechOutput> = seen.into_iter().map(|o| o.expect("no errors")).collect();
    assert_eq!(outputs[0], SpeechOutput::SpeechStopped);
    assert_eq!(
        outputs[1],
        SpeechOutput::CallerTranscript("I have five years of Rust.".into())
    );
    assert!(matches!(
        &outputs[2],
        SpeechOutput::ToolCall(ToolCall { name, arguments, .. })
            if name == "record_answer" && arguments == r#"{"years": 5}"#
    ));
    let mut item = None;
    let mut audio = Vec::new();
    for o in &outputs {
        if let SpeechOutput::BotAudio { item_id, mulaw } = o {
            item = Some(item_id.clone());
            audio.extend_from_slice(mulaw);
        }
    }
    let item = item.expect("bot audio arrived");
    // "Sure, tell me more." is 19 characters x 60 ms = 1140 ms of 8 kHz mu-law.
    assert_eq!(audio.len(), 1_140 * 8);
    assert!(outputs.contains(&SpeechOutput::BotTranscript {
        item_id: item.clone(),
        text: "Sure, tell me more.".into()
    }));

    truncate_and_recover(&s, &mut session, item).await;
}

/// Truncates what the caller heard, then checks a bad truncate is a recoverable error.
async fn truncate_and_recover(
    s: &StandinHandle,
    session: &mut Box<dyn SpeechSession>,
    item: String,
) {
    // The caller heard 640 ms of it: truncate.
    session
        .send(SpeechInput::Truncate {
            item_id: item.clone(),
            audio_end_ms: 640,
        })
        .await
        .expect("truncate");
    let truncate = s
        .wait_for_realtime_event("conversation.item.truncate", LIMIT)
        .await
        .expect("truncate sent");
    assert_eq!(truncate["item_id"], item.as_str());
    assert_eq!(truncate["audio_end_ms"], 640);
    assert_eq!(truncate["content_index"], 0);

    // A bad truncate is a recoverable error: the session stays usable.
    session
        .send(SpeechInput::Truncate {
            item_id: item,
            audio_end_ms: 60_000,
        })
        .await
        .expect("send");
    let seen = until(session, Result::is_err).await;
    assert!(
        matches!(
            seen.last(),
            Some(Err(ProviderError::Rejected { stage: Stage::SpeechToSpeech, status: 0, message }))
                if message.contains("shorter than")
        ),
        "{seen:?}"
    );
    session
        .send(SpeechInput::Respond {
            instructions: Some("Ask the next question.".into()),
        })
        .await
        .expect("respond");
    until(session, |o| matches!(o, Ok(SpeechOutput::ResponseDone))).await;
    let create = s
        .wait_for_realtime_event("response.create", LIMIT)
        .await
        .expect("response.create");
    assert_eq!(create["response"]["instructions"], "Ask the next question.");
}

#[tokio::test]
async fn caller_speech_interrupts_a_response() {
    // A long, slowly streamed answer, so the caller can barge in while it plays.
    let s = standin(RealtimeScript {
        reply_text: "word ".repeat(100),
        delta_gap: Duration::from_millis(20),
        ..RealtimeScript::default()
    })
    .await;
    let mut session = provider(&s, KEY).connect(setup()).await.expect("connect");
    session
        .send(SpeechInput::Respond { instructions: None })
        .await
        .expect("respond");
    until(&mut session, |o| {
        matches!(o, Ok(SpeechOutput::BotAudio { .. }))
    })
    .await;
    send_frames(&mut session, true, 5).await;
    let seen = until(&mut session, |o| {
        matches!(o, Ok(SpeechOutput::SpeechStarted))
    })
    .await;
    assert!(matches!(seen.last(), Some(Ok(SpeechOutput::SpeechStarted))));
    // The stand-in cancels the response on speech (interrupt_response); the brain also sends
    // response.cancel, as a Media Streams brain does on barge-in.
    session.send(SpeechInput::Cancel).await.expect("cancel");
    let seen = until(&mut session, |o| {
        matches!(o, Ok(SpeechOutput::ResponseDone))
    })
    .await;
    let audio_after: usize = seen
        .iter()
        .filter(|o| matches!(o, Ok(SpeechOutput::BotAudio { .. })))
        .count();
    // 500 words x 60 ms would be 30 s of deltas; only what was already queued may follow.
    assert!(audio_after < 10, "{audio_after} deltas after barge-in");
    assert!(
        s.wait_for_realtime_event("response.cancel", LIMIT)
            .await
            .is_some()
    );
}

#[tokio::test]
async fn dropping_the_session_closes_the_socket() {
    let s = standin(RealtimeScript::default()).await;
    let session = provider(&s, KEY).connect(setup()).await.expect("connect");
    s.wait_for_realtime_event("session.update", LIMIT)
        .await
        .expect("configured");
    let id = s.requests_to(Endpoint::Realtime)[0].id;
    assert_eq!(
        s.wait_for_end(id, Duration::from_millis(200)).await,
        None,
        "still open"
    );
    drop(session);
    assert_eq!(
        s.wait_for_end(id, LIMIT).await,
        Some(true),
        "the client sent a close frame"
    );
}

#[tokio::test]
async fn connect_errors_map_like_http_errors() {
    let s = standin(RealtimeScript::default()).await;
    let err = provider(&s, "sk-wrong-key-0000")
        .connect(setup())
        .await
        .err()
        .expect("wrong key");
    assert!(
        matches!(&err, ProviderError::Rejected { stage: Stage::SpeechToSpeech, status: 401, message } if message.starts_with("Incorrect API key")),
        "{err:?}"
    );

    s.fail_next(
        Endpoint::Realtime,
        1,
        Fault::RateLimited {
            retry_after: Duration::from_secs(3),
        },
    );
    let err = provider(&s, KEY).connect(setup()).await.err().expect("429");
    assert_eq!(
        err,
        ProviderError::RateLimited {
            stage: Stage::SpeechToSpeech,
            retry_after: Some(Duration::from_secs(3))
        }
    );

    s.fail_next(Endpoint::Realtime, 1, Fault::Hang);
    let hanging = OpenAiRealtime::new(
        &OpenAiEndpoint::new(s.base_url(), KEY),
        &OpenAiRealtimeConfig {
            timeouts: StageTimeouts {
                connect: Duration::from_millis(300),
                first_byte: Duration::from_millis(300),
                idle: Duration::from_millis(300),
            },
            ..OpenAiRealtimeConfig::default()
        },
    )
    .expect("provider");
    let err = hanging.connect(setup()).await.err().expect("hang");
    assert!(
        matches!(
            err,
            ProviderError::Timeout {
                stage: Stage::SpeechToSpeech,
                ..
            }
        ),
        "{err:?}"
    );
}
