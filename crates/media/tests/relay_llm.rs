//! The LLM screening agent behind `/relay`, over real sockets, with a stand-in chat model whose
//! streams the tests control.

mod common;
mod relay_common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::stream::{self, BoxStream, StreamExt};
use relay_common::{Relay, ScreeningOf, start_with};
use tokio::sync::oneshot;
use voxbridge_screening::llm::LlmScreeningAgent;
use voxbridge_screening::{AgentKind, LlmAgentConfig};
use voxbridge_speech::{ChatRequest, FinishReason, Llm, LlmEvent, ProviderError, Stage, ToolCall};

type Reply = BoxStream<'static, Result<LlmEvent, ProviderError>>;

/// A chat model that answers each request with the next queued stream.
#[derive(Default)]
struct StandInLlm {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<ChatRequest>>,
}

impl StandInLlm {
    fn push(&self, reply: Reply) {
        self.replies.lock().unwrap().push_back(reply);
    }
}

impl Llm for StandInLlm {
    fn name(&self) -> &'static str {
        "stand-in"
    }

    fn stream(&self, request: ChatRequest) -> Reply {
        self.requests.lock().unwrap().push(request);
        self.replies
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| stream::pending().boxed())
    }
}

#[allow(clippy::unnecessary_wraps)] // a stream item
fn token(text: &str) -> Result<LlmEvent, ProviderError> {
    Ok(LlmEvent::Token(text.to_owned()))
}

#[allow(clippy::unnecessary_wraps)] // a stream item
fn done() -> Result<LlmEvent, ProviderError> {
    Ok(LlmEvent::Done(FinishReason::Stop))
}

/// `first`, then waits for `gate`, then `rest` and Done.
fn gated(first: &str, gate: oneshot::Receiver<()>, rest: &str) -> Reply {
    let head = stream::iter([token(first)]);
    let rest = rest.to_owned();
    let tail = stream::once(async move {
        let _ = gate.await;
        stream::iter([token(&rest), done()])
    })
    .flatten();
    head.chain(tail).boxed()
}

/// Sets the flag when the stream is dropped (the request is cancelled).
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

async fn llm_server(llm: &Arc<StandInLlm>) -> relay_common::TestServer {
    let model: Arc<dyn Llm> = llm.clone();
    let screenings = relay_common::screenings().with_llm(Arc::new(move |script| {
        Box::new(LlmScreeningAgent::new(
            script,
            Arc::clone(&model),
            LlmAgentConfig {
                enabled: true,
                ..LlmAgentConfig::default()
            },
        ))
    }));
    start_with(Arc::new(screenings), relay_common::config()).await
}

#[tokio::test]
async fn tokens_reach_the_socket_before_the_llm_finishes() {
    let llm = Arc::new(StandInLlm::default());
    let (release, gate) = oneshot::channel();
    llm.push(gated(
        "Hi Ana, ",
        gate,
        "are you authorized to work in the US?",
    ));
    let server = llm_server(&llm).await;
    let mut twilio = Relay::open(&server).await;
    twilio
        .send(&relay_common::setup_json(
            "CA20000000000000000000000000000001",
            "default",
        ))
        .await;
    // The model has produced one token and is still generating: it is already on the socket.
    let first = twilio.next_json().await;
    assert_eq!(first["type"], "text");
    assert_eq!(first["token"], "Hi Ana, ");
    assert_eq!(first["last"], false);
    release.send(()).unwrap();
    // The model's last token and its end arrive together: one `last` token.
    let rest = twilio.next_json().await;
    assert_eq!(rest["token"], "are you authorized to work in the US?");
    assert_eq!(rest["last"], true);
    assert_eq!(server.state.registry().list()[0].agent, "screening-llm");
    twilio.close().await;
    let record = server.sessions.wait_one().await;
    assert_eq!(record.screening().unwrap().agent, AgentKind::Llm);
    server.stop().await;
}

#[tokio::test]
async fn interrupt_cancels_generation_at_once() {
    let llm = Arc::new(StandInLlm::default());
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(Arc::clone(&dropped));
    // A greeting that never finishes: one token, then the model hangs.
    llm.push(
        stream::iter([token("Hi Ana, this is Vox and I ")])
            .chain(stream::pending())
            .map(move |event| {
                let _keep = &flag;
                event
            })
            .boxed(),
    );
    let server = llm_server(&llm).await;
    let mut twilio = Relay::open(&server).await;
    twilio
        .send(&relay_common::setup_json(
            "CA20000000000000000000000000000002",
            "default",
        ))
        .await;
    assert_eq!(
        twilio.next_json().await["token"],
        "Hi Ana, this is Vox and I "
    );
    assert!(!dropped.load(Ordering::SeqCst));
    twilio
        .send(r#"{ "type": "interrupt", "utteranceUntilInterrupt": "Hi Ana, this is", "durationUntilInterruptMs": 900 }"#)
        .await;
    // The model's stream is dropped; the next prompt starts a new request.
    llm.push(stream::iter([token("Sure, go ahead."), done()]).boxed());
    assert_eq!(twilio.say("sorry, who is this?").await, "Sure, go ahead.");
    assert!(
        dropped.load(Ordering::SeqCst),
        "the interrupted request was cancelled"
    );
    twilio.close().await;
    let result = server.sessions.wait_one().await.screening().unwrap();
    let greeting = &result.transcript[0];
    assert!(greeting.interrupted, "{:?}", result.transcript);
    assert_eq!(greeting.text, "Hi Ana, this is");
    server.stop().await;
}

#[tokio::test]
async fn llm_failure_mid_call_falls_back_to_the_script_on_the_socket() {
    let llm = Arc::new(StandInLlm::default());
    llm.push(
        stream::iter([
            token("Hi Ana! Are you authorized to work in the US?"),
            done(),
        ])
        .boxed(),
    );
    llm.push(
        stream::iter([
            Ok(LlmEvent::ToolCall(ToolCall {
                id: "c1".into(),
                name: "record_answer".into(),
                arguments: r#"{"question_id":"work_authorization","value":true,"raw":"yes","confidence":0.95}"#.into(),
            })),
            Ok(LlmEvent::Done(FinishReason::ToolCalls)),
        ])
        .boxed(),
    );
    llm.push(
        stream::iter([Err(ProviderError::Transport {
            stage: Stage::Llm,
            message: "connection reset".into(),
        })])
        .boxed(),
    );
    let server = llm_server(&llm).await;
    let mut twilio = Relay::open(&server).await;
    twilio.setup("CA20000000000000000000000000000003").await;
    let next = twilio.say("yes").await;
    assert!(
        next.contains("at least 18"),
        "the script asks the next question: {next}"
    );
    assert!(twilio.say("yes").await.contains("forklift"));
    twilio.close().await;
    let result = server.sessions.wait_one().await.screening().unwrap();
    assert!(result.fallback.unwrap().reason.contains("connection reset"));
    assert_eq!(result.answers[0].agent, AgentKind::Llm);
    assert_eq!(result.answers[1].agent, AgentKind::Script);
    server.stop().await;
}
