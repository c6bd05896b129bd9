//! The OpenAI-compatible providers (real async-openai / reqwest code) against the OpenAI
//! stand-in on 127.0.0.1: streaming order, tool calls, multipart hints, TTS formats, timeouts,
//! HTTP error mapping and cancellation.

use std::time::Duration;

use futures::StreamExt;
use voxbridge_openai_standin::{
    Endpoint, Fault, Latency, Reply, SPEECH_RATE, Standin, StandinConfig, StandinHandle,
    synthetic_speech,
};
use voxbridge_speech::config::{
    OpenAiAsrConfig, OpenAiLlmConfig, OpenAiTtsConfig, StageTimeouts, TtsFormat,
};
use voxbridge_speech::openai::{OpenAiAsr, OpenAiEndpoint, OpenAiLlm, OpenAiTts};
use voxbridge_speech::{
    Asr, AsrEvent, AsrRequest, AudioChunk, ChatMessage, ChatRequest, FinishReason, Llm, LlmEvent,
    ProviderError, Role, Stage, ToolCall, ToolSpec, Tts, TtsRequest,
};

const KEY: &str = "sk-standin-test-key";

/// Generous limits: the machine is shared, and no test here depends on them being tight
/// except the timeout tests, which set their own.
fn timeouts() -> StageTimeouts {
    StageTimeouts {
        connect: Duration::from_secs(5),
        first_byte: Duration::from_secs(20),
        idle: Duration::from_secs(20),
    }
}

async fn standin() -> StandinHandle {
    standin_with_chunks(StandinConfig::default().tts_chunk_bytes).await
}

async fn standin_with_chunks(tts_chunk_bytes: usize) -> StandinHandle {
    Standin::start(StandinConfig {
        api_key: Some(KEY.to_owned()),
        tts_chunk_bytes,
        ..StandinConfig::default()
    })
    .await
    .expect("stand-in starts")
}

fn endpoint(s: &StandinHandle) -> OpenAiEndpoint {
    OpenAiEndpoint::new(s.base_url(), KEY)
}

fn llm_with(s: &StandinHandle, key: &str, timeouts: StageTimeouts) -> OpenAiLlm {
    OpenAiLlm::new(
        &OpenAiEndpoint::new(s.base_url(), key),
        &OpenAiLlmConfig {
            model: "gpt-4o-mini".into(),
            timeouts,
            ..OpenAiLlmConfig::default()
        },
    )
    .expect("llm")
}

fn llm(s: &StandinHandle) -> OpenAiLlm {
    llm_with(s, KEY, timeouts())
}

fn tts(s: &StandinHandle, format: TtsFormat, timeouts: StageTimeouts) -> OpenAiTts {
    OpenAiTts::new(
        endpoint(s),
        &OpenAiTtsConfig {
            format,
            timeouts,
            ..OpenAiTtsConfig::default()
        },
    )
    .expect("tts")
}

fn asr(s: &StandinHandle) -> OpenAiAsr {
    OpenAiAsr::new(
        &endpoint(s),
        &OpenAiAsrConfig {
            timeouts: timeouts(),
            ..OpenAiAsrConfig::default()
        },
    )
    .expect("asr")
}

fn ask(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::text(Role::System, "You screen candidates."),
            ChatMessage::text(Role::User, text),
        ],
        ..ChatRequest::default()
    }
}

async fn collect<T>(
    stream: futures::stream::BoxStream<'static, Result<T, ProviderError>>,
) -> Vec<Result<T, ProviderError>> {
    tokio::time::timeout(Duration::from_secs(60), stream.collect())
        .await
        .expect("stream ends")
}

#[tokio::test]
async fn llm_streams_tokens_in_order_then_done() {
    let s = standin().await;
    s.set_reply(
        "salary",
        Reply::text("The range is forty to fifty thousand."),
    );
    s.set_latency(Latency {
        token_gap: Duration::from_millis(2),
        ..Latency::default()
    });
    let events = collect(llm(&s).stream(ask("What is the salary?"))).await;
    let events: Vec<LlmEvent> = events.into_iter().map(|e| e.expect("ok")).collect();
    let tokens: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            LlmEvent::Token(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        tokens,
        [
            "The",
            " range",
            " is",
            " forty",
            " to",
            " fifty",
            " thousand."
        ]
    );
    assert_eq!(events.last(), Some(&LlmEvent::Done(FinishReason::Stop)));

    // What went on the wire: model, stream flag, both messages, the bearer key.
    let sent = s.requests_to(Endpoint::ChatCompletions);
    assert_eq!(sent.len(), 1);
    let body = &sent[0].body;
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["stream"], true);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["content"], "What is the salary?");
    assert_eq!(
        sent[0].authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
}

#[tokio::test]
async fn llm_assembles_streamed_tool_calls() {
    let s = standin().await;
    let args_a = r#"{"question_id": "experience", "answer": "five years of Rust"}"#;
    s.set_default_reply(
        Reply::text("Noted.")
            .with_tool_call("record_answer", args_a)
            .with_tool_call("end_call", "{}"),
    );
    let request = ChatRequest {
        tools: vec![ToolSpec {
            name: "record_answer".into(),
            description: "Store an answer".into(),
            parameters: serde_json::json!({"type": "object", "properties": {}}),
        }],
        ..ask("I have five years of Rust")
    };
    let events: Vec<LlmEvent> = collect(llm(&s).stream(request))
        .await
        .into_iter()
        .map(|e| e.expect("ok"))
        .collect();
    let id = s.requests()[0].id;
    assert_eq!(
        events,
        [
            LlmEvent::Token("Noted.".into()),
            LlmEvent::ToolCall(ToolCall {
                id: format!("call_{id}_0"),
                name: "record_answer".into(),
                arguments: args_a.into(),
            }),
            LlmEvent::ToolCall(ToolCall {
                id: format!("call_{id}_1"),
                name: "end_call".into(),
                arguments: "{}".into(),
            }),
            LlmEvent::Done(FinishReason::ToolCalls),
        ]
    );
    let body = &s.requests()[0].body;
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "record_answer");
}

#[tokio::test]
async fn asr_sends_wav_and_hints_as_multipart() {
    let s = standin().await;
    s.push_transcript("I am available on Monday.");
    let asr = asr(&s);
    let pcm: Vec<i16> = (0..16_000).map(|i| ((i % 50) * 300) as i16).collect();
    let events = collect(asr.transcribe(AsrRequest {
        audio: AudioChunk {
            pcm,
            sample_rate: 16_000,
        },
        language: Some("en".into()),
        prompt: Some("Software engineer, Rust, Kubernetes".into()),
        deadline: None,
    }))
    .await;
    assert_eq!(
        events,
        [Ok(AsrEvent::Final {
            text: "I am available on Monday.".into(),
            confidence: None
        })]
    );
    let body = &s.requests_to(Endpoint::Transcriptions)[0].body;
    assert_eq!(body["model"], "whisper-1");
    assert_eq!(body["language"], "en");
    assert_eq!(body["prompt"], "Software engineer, Rust, Kubernetes");
    assert_eq!(body["response_format"], "json");
    assert_eq!(body["file"]["sample_rate"], 16_000);
    assert_eq!(body["file"]["samples"], 16_000);
    assert_eq!(body["file"]["name"], "utterance.wav");
}

async fn synthesize_all(tts: &OpenAiTts, text: &str) -> (Vec<i16>, usize, u32) {
    let chunks = collect(tts.synthesize(TtsRequest {
        text: text.into(),
        voice: Some("coral".into()),
        language: None,
    }))
    .await;
    let mut pcm = Vec::new();
    let mut rate = 0;
    let n = chunks.len();
    for c in chunks {
        let c = c.expect("audio chunk");
        rate = c.sample_rate;
        pcm.extend(c.pcm);
    }
    (pcm, n, rate)
}

#[tokio::test]
async fn tts_pcm_streams_chunks_of_the_expected_duration() {
    // An odd chunk size splits samples across HTTP chunks.
    let s = standin_with_chunks(4_801).await;
    let text = "Thanks for taking the call today.";
    let (pcm, chunks, rate) = synthesize_all(&tts(&s, TtsFormat::Pcm, timeouts()), text).await;
    let expected = synthetic_speech(text, StandinConfig::default().tts_ms_per_char);
    assert_eq!(rate, SPEECH_RATE);
    assert_eq!(pcm, expected, "pcm arrives bit-exact");
    assert!(chunks > 5, "audio is streamed in pieces, got {chunks}");
    let body = &s.requests_to(Endpoint::Speech)[0].body;
    assert_eq!(body["response_format"], "pcm");
    assert_eq!(body["voice"], "coral");
    assert_eq!(body["model"], "gpt-4o-mini-tts");
    assert_eq!(body["input"], text);
}

#[tokio::test]
async fn tts_opus_decodes_to_the_expected_duration() {
    let s = standin_with_chunks(700).await;
    let text = "Could you tell me about your last role?";
    let (pcm, chunks, rate) = synthesize_all(&tts(&s, TtsFormat::Opus, timeouts()), text).await;
    let expected = synthetic_speech(text, StandinConfig::default().tts_ms_per_char);
    assert_eq!(rate, SPEECH_RATE);
    assert_eq!(
        pcm.len(),
        expected.len(),
        "Ogg Opus end trimming gives exact length"
    );
    assert!(chunks > 1, "decoded as pages arrive, got {chunks} chunks");
    // Lossy, but the tone is there: compare energy.
    let energy = |v: &[i16]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / v.len() as f64;
    let ratio = energy(&pcm) / energy(&expected);
    assert!((0.5..2.0).contains(&ratio), "energy ratio {ratio}");
    assert_eq!(
        s.requests_to(Endpoint::Speech)[0].body["response_format"],
        "opus"
    );
}

#[tokio::test]
async fn hang_before_first_token_is_a_timeout() {
    let s = standin().await;
    s.fail_next(Endpoint::ChatCompletions, 1, Fault::Hang);
    let short = StageTimeouts {
        connect: Duration::from_secs(5),
        first_byte: Duration::from_millis(300),
        idle: Duration::from_secs(20),
    };
    let events = collect(llm_with(&s, KEY, short).stream(ask("hi"))).await;
    assert_eq!(
        events,
        [Err(ProviderError::Timeout {
            stage: Stage::Llm,
            after: Duration::from_millis(300)
        })]
    );
    // The fault is used up: the next request answers.
    let events = collect(llm(&s).stream(ask("hi"))).await;
    assert!(matches!(
        events.last(),
        Some(Ok(LlmEvent::Done(FinishReason::Stop)))
    ));
}

#[tokio::test]
async fn stall_mid_stream_is_an_idle_timeout_and_the_request_is_closed() {
    let s = standin().await;
    s.fail_next(Endpoint::Speech, 1, Fault::StallAfterFirstChunk);
    let short = StageTimeouts {
        connect: Duration::from_secs(5),
        first_byte: Duration::from_secs(20),
        idle: Duration::from_millis(300),
    };
    let chunks = collect(tts(&s, TtsFormat::Pcm, short).synthesize(TtsRequest {
        text: "A sentence long enough for several chunks of audio.".into(),
        voice: None,
        language: None,
    }))
    .await;
    assert!(matches!(chunks.first(), Some(Ok(_))), "first chunk arrives");
    assert_eq!(
        chunks.last(),
        Some(&Err(ProviderError::Timeout {
            stage: Stage::Tts,
            after: Duration::from_millis(300)
        }))
    );
    let id = s.requests_to(Endpoint::Speech)[0].id;
    assert!(
        s.wait_for_cancel(id, Duration::from_secs(10)).await,
        "the stand-in sees the abandoned stream"
    );
}

#[tokio::test]
async fn http_errors_map_to_provider_errors() {
    let s = standin().await;
    s.fail_next(
        Endpoint::ChatCompletions,
        1,
        Fault::RateLimited {
            retry_after: Duration::from_millis(1_500),
        },
    );
    let events = collect(llm(&s).stream(ask("hi"))).await;
    assert_eq!(
        events,
        [Err(ProviderError::RateLimited {
            stage: Stage::Llm,
            retry_after: Some(Duration::from_millis(1_500))
        })]
    );
    // Exactly one attempt: async-openai's own retry is off.
    assert_eq!(s.requests_to(Endpoint::ChatCompletions).len(), 1);

    s.fail_next(Endpoint::Speech, 1, Fault::ServerError);
    let chunks = collect(tts(&s, TtsFormat::Pcm, timeouts()).synthesize(TtsRequest {
        text: "hello".into(),
        voice: None,
        language: None,
    }))
    .await;
    match chunks.as_slice() {
        [
            Err(ProviderError::Server {
                stage: Stage::Tts,
                status: 500,
                message,
            }),
        ] => assert!(message.contains("The server had an error"), "{message}"),
        other => panic!("expected one Server error, got {other:?}"),
    }
    assert_eq!(s.requests_to(Endpoint::Speech).len(), 1);

    s.fail_next(Endpoint::Transcriptions, 1, Fault::ServerError);
    let asr = asr(&s);
    let events = collect(asr.transcribe(AsrRequest {
        audio: AudioChunk {
            pcm: vec![0; 1_600],
            sample_rate: 16_000,
        },
        language: None,
        prompt: None,
        deadline: None,
    }))
    .await;
    assert!(
        matches!(
            events.as_slice(),
            [Err(ProviderError::Server {
                stage: Stage::Asr,
                status: 500,
                ..
            })]
        ),
        "{events:?}"
    );
    assert_eq!(s.requests_to(Endpoint::Transcriptions).len(), 1);
}

#[tokio::test]
async fn wrong_key_is_rejected_with_the_providers_message() {
    let s = standin().await;
    let events = collect(llm_with(&s, "sk-wrong-key-123456", timeouts()).stream(ask("hi"))).await;
    match events.as_slice() {
        [
            Err(
                e @ ProviderError::Rejected {
                    stage: Stage::Llm,
                    status: 401,
                    message,
                },
            ),
        ] => {
            assert!(
                message.starts_with("Incorrect API key provided"),
                "{message}"
            );
            assert!(
                !message.contains("sk-wrong-key-123456"),
                "the key is masked: {message}"
            );
            assert!(!e.is_retryable());
        }
        other => panic!("expected Rejected 401, got {other:?}"),
    }
    assert_eq!(
        s.requests_to(Endpoint::ChatCompletions).len(),
        1,
        "one attempt, no retry"
    );
    let wrong_tts = OpenAiTts::new(
        OpenAiEndpoint::new(s.base_url(), "sk-nope"),
        &OpenAiTtsConfig::default(),
    )
    .expect("tts");
    let chunks = collect(wrong_tts.synthesize(TtsRequest {
        text: "hi".into(),
        voice: None,
        language: None,
    }))
    .await;
    assert!(
        matches!(
            chunks.as_slice(),
            [Err(ProviderError::Rejected { status: 401, .. })]
        ),
        "{chunks:?}"
    );
}

#[tokio::test]
async fn dropping_an_llm_stream_closes_the_request() {
    let s = standin().await;
    s.set_default_reply(Reply::text("word ".repeat(200)));
    s.set_latency(Latency {
        token_gap: Duration::from_millis(20),
        ..Latency::default()
    });
    let mut stream = llm(&s).stream(ask("talk a lot"));
    let first = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("first token in time");
    assert!(matches!(first, Some(Ok(LlmEvent::Token(_)))), "{first:?}");
    drop(stream);
    let id = s.requests_to(Endpoint::ChatCompletions)[0].id;
    assert!(
        s.wait_for_cancel(id, Duration::from_secs(20)).await,
        "the stand-in sees the cancel"
    );
    assert!(!s.completed().contains(&id));
}

#[tokio::test]
async fn dropping_a_tts_stream_closes_the_request() {
    let s = Standin::start(StandinConfig {
        latency: Latency {
            speech_chunk_gap: Duration::from_millis(20),
            ..Latency::default()
        },
        ..StandinConfig::default()
    })
    .await
    .expect("start");
    let tts = OpenAiTts::new(
        OpenAiEndpoint::new(s.base_url(), ""),
        &OpenAiTtsConfig {
            timeouts: timeouts(),
            ..OpenAiTtsConfig::default()
        },
    )
    .expect("tts");
    let mut stream = tts.synthesize(TtsRequest {
        text: "long ".repeat(100),
        voice: None,
        language: None,
    });
    let first = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("first chunk in time");
    assert!(matches!(first, Some(Ok(_))));
    drop(stream);
    let id = s.requests_to(Endpoint::Speech)[0].id;
    assert!(s.wait_for_cancel(id, Duration::from_secs(20)).await);
    // No key configured: none sent.
    assert_eq!(s.requests_to(Endpoint::Speech)[0].authorization, None);
}
