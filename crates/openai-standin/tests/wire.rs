//! The stand-in's wire format seen by a plain HTTP client (the provider tests in
//! voxbridge-speech cover the paths async-openai uses): non-streamed chat, transcription
//! formats, WAV speech, OpenAI error bodies and statuses, expected-utterance checks.

use std::time::Duration;

use serde_json::{Value, json};
use voxbridge_openai_standin::{
    Endpoint, Fault, Reply, Standin, StandinConfig, StandinHandle, UtteranceCheck,
};

async fn standin(key: Option<&str>) -> StandinHandle {
    Standin::start(StandinConfig {
        api_key: key.map(str::to_owned),
        ..StandinConfig::default()
    })
    .await
    .expect("start")
}

fn client() -> reqwest::Client {
    voxbridge_config::tls::install_ring_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Checks the OpenAI error body shape and returns its message.
fn error_message(body: &Value) -> String {
    let error = &body["error"];
    for key in ["message", "type", "param", "code"] {
        assert!(error.get(key).is_some(), "error body lacks {key}: {body}");
    }
    error["message"].as_str().expect("message").to_owned()
}

#[tokio::test]
async fn non_streamed_chat_is_one_completion() {
    let s = standin(None).await;
    s.set_default_reply(Reply::text("Yes.").with_tool_call("end_call", r#"{"reason":"done"}"#));
    let body: Value = client()
        .post(format!("{}/chat/completions", s.base_url()))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "bye"}]}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(body["object"], "chat.completion");
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["content"], "Yes.");
    assert_eq!(
        choice["message"]["tool_calls"][0]["function"]["name"],
        "end_call"
    );
    assert_eq!(
        choice["message"]["tool_calls"][0]["function"]["arguments"],
        r#"{"reason":"done"}"#
    );
    assert_eq!(choice["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let s = standin(None).await;
    let c = client();
    let response = c
        .post(format!("{}/chat/completions", s.base_url()))
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    assert!(error_message(&response.json().await.expect("json")).contains("messages"));

    let response = c
        .post(format!("{}/audio/speech", s.base_url()))
        .json(&json!({"model": "tts-1", "voice": "alloy", "input": "hi", "response_format": "mp3"}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    assert!(error_message(&response.json().await.expect("json")).contains("mp3"));

    let form = reqwest::multipart::Form::new()
        .text("model", "whisper-1")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"not audio".to_vec()).file_name("x.wav"),
        );
    let response = c
        .post(format!("{}/audio/transcriptions", s.base_url()))
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    assert!(error_message(&response.json().await.expect("json")).contains("Invalid file format"));
}

#[tokio::test]
async fn keys_and_faults_answer_like_openai() {
    let s = standin(Some("sk-right-key-1234")).await;
    let c = client();
    let url = format!("{}/chat/completions", s.base_url());
    let request = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let missing = c.post(&url).json(&request).send().await.expect("send");
    let send_chat = || async {
        c.post(&url)
            .bearer_auth("sk-right-key-1234")
            .json(&request)
            .send()
            .await
            .expect("send")
    };
    assert_eq!(missing.status(), 401);
    assert!(
        error_message(&missing.json().await.expect("json")).contains("didn't provide an API key")
    );

    s.fail_next(
        Endpoint::ChatCompletions,
        1,
        Fault::RateLimited {
            retry_after: Duration::from_millis(2_500),
        },
    );
    let limited = send_chat().await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "3");
    assert_eq!(limited.headers()["retry-after-ms"], "2500");
    let body: Value = limited.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    s.fail_next(Endpoint::ChatCompletions, 1, Fault::ServerError);
    let failed = send_chat().await;
    assert_eq!(failed.status(), 500);
    assert_eq!(
        failed.json::<Value>().await.expect("json")["error"]["type"],
        "server_error"
    );

    let ok = send_chat().await;
    assert_eq!(ok.status(), 200);
    assert_eq!(s.requests_to(Endpoint::ChatCompletions).len(), 4);
}

#[tokio::test]
async fn transcription_formats_and_wav_speech() {
    let s = standin(None).await;
    let c = client();
    // A real WAV: 0.5 s at 16 kHz.
    let mut wav = std::io::Cursor::new(Vec::new());
    voxbridge_audio::wav::write_wav_to(&mut wav, &vec![100i16; 8_000], 16_000).expect("wav");
    let wav = wav.into_inner();
    s.push_transcript("first");
    s.push_transcript("second");
    let ask = |format: &str| {
        let form = reqwest::multipart::Form::new()
            .text("model", "whisper-1")
            .text("response_format", format.to_owned())
            .part(
                "file",
                reqwest::multipart::Part::bytes(wav.clone()).file_name("a.wav"),
            );
        c.post(format!("{}/audio/transcriptions", s.base_url()))
            .multipart(form)
            .send()
    };
    let text = ask("text").await.expect("send").text().await.expect("text");
    assert_eq!(text, "first\n");
    let verbose: Value = ask("verbose_json")
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(verbose["text"], "second");
    assert_eq!(verbose["duration"], 0.5);
    let default: Value = ask("json").await.expect("send").json().await.expect("json");
    assert_eq!(
        default["text"], "hello",
        "queue empty: the default transcript"
    );

    let body = c
        .post(format!("{}/audio/speech", s.base_url()))
        .json(&json!({"model": "tts-1", "voice": "alloy", "input": "Hello there", "response_format": "wav"}))
        .send()
        .await
        .expect("send")
        .bytes()
        .await
        .expect("body");
    let (pcm, rate) =
        voxbridge_audio::wav::read_wav_from(std::io::Cursor::new(body)).expect("valid wav");
    assert_eq!(rate, 24_000);
    assert_eq!(pcm.len(), 11 * 60 * 24, "60 ms per character");
}

/// A transcript queued with an `UtteranceCheck` is answered only for its utterance: silence
/// and a truncated clip get a 400 naming the mismatch, are recorded, and leave it queued.
#[tokio::test]
async fn expected_utterance_is_checked_before_the_transcript() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data");
    let (wav, labels) = (
        data.join("speech_clean_8k.wav"),
        data.join("speech_clean_8k.labels"),
    );
    let check = UtteranceCheck::from_fixture(&wav, &labels, 1).expect("fixture utterance");
    let (pcm, rate) = voxbridge_audio::wav::read_wav(&wav).expect("fixture");
    let utterance = &pcm[41_035..56_113];
    let s = standin(None).await;
    s.push_transcript_expecting("Yes, I am.", check);
    let c = client();
    let transcribe = |clip: &[i16]| {
        let mut file = std::io::Cursor::new(Vec::new());
        voxbridge_audio::wav::write_wav_to(&mut file, clip, rate).expect("wav");
        let form = reqwest::multipart::Form::new()
            .text("model", "whisper-1")
            .part(
                "file",
                reqwest::multipart::Part::bytes(file.into_inner()).file_name("a.wav"),
            );
        c.post(format!("{}/audio/transcriptions", s.base_url()))
            .multipart(form)
            .send()
    };

    let silence = vec![0i16; utterance.len()];
    let refused = transcribe(&silence).await.expect("send");
    assert_eq!(refused.status(), 400);
    let message = error_message(&refused.json().await.expect("json"));
    assert!(message.contains("not its utterance"), "{message}");
    let truncated = transcribe(&utterance[..utterance.len() / 3])
        .await
        .expect("send");
    assert_eq!(truncated.status(), 400);
    let mismatches = s.audio_mismatches();
    assert_eq!(mismatches.len(), 2, "{mismatches:?}");
    assert!(mismatches[0].contains("RMS"), "{mismatches:?}");
    assert!(mismatches[1].contains("long, expected"), "{mismatches:?}");

    let heard: Value = transcribe(utterance)
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        heard["text"], "Yes, I am.",
        "still queued after the refusals"
    );
    let requests = s.requests_to(Endpoint::Transcriptions);
    assert_eq!(requests[0].body["file"]["rms_dbfs"], Value::Null, "silence");
    let rms = requests[2].body["file"]["rms_dbfs"].as_f64().expect("rms");
    assert!((-26.0..-22.0).contains(&rms), "{rms}");
}
