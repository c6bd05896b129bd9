use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::json;

use super::*;
use crate::ScriptLibrary;
use crate::catalog::SHIPPED_SCRIPTS;
use crate::{AnswerRecord, AnswerStatus, AnswerValue};
use voxbridge_brain::conversation::{
    REASON_KNOCK_OUT, REASON_LIVE_AGENT_HANDOFF, REASON_SCREENING_COMPLETE,
};

/// A chat model that plays back canned answers, one per request, and keeps the requests.
/// With no answer left it stalls (never yields), like a hung provider.
#[derive(Default)]
struct FakeLlm {
    replies: Mutex<VecDeque<Vec<Result<LlmEvent, ProviderError>>>>,
    requests: Mutex<Vec<ChatRequest>>,
}

impl FakeLlm {
    fn reply(&self, events: Vec<Result<LlmEvent, ProviderError>>) {
        self.replies.lock().unwrap().push_back(events);
    }

    fn last_request(&self) -> ChatRequest {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

impl Llm for FakeLlm {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn stream(&self, request: ChatRequest) -> BoxStream<'static, Result<LlmEvent, ProviderError>> {
        self.requests.lock().unwrap().push(request);
        match self.replies.lock().unwrap().pop_front() {
            Some(events) => stream::iter(events).boxed(),
            None => stream::pending().boxed(),
        }
    }
}

fn say(text: &str) -> Vec<Result<LlmEvent, ProviderError>> {
    let mut events: Vec<_> = text
        .split_inclusive(' ')
        .map(|t| Ok(LlmEvent::Token(t.to_owned())))
        .collect();
    events.push(Ok(LlmEvent::Done(FinishReason::Stop)));
    events
}

#[allow(clippy::unnecessary_wraps, clippy::needless_pass_by_value)] // reads like the stream items
fn tool(id: &str, name: &str, arguments: serde_json::Value) -> Result<LlmEvent, ProviderError> {
    Ok(LlmEvent::ToolCall(ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.to_string(),
    }))
}

#[allow(clippy::needless_pass_by_value)]
fn answer(
    question: &str,
    value: serde_json::Value,
    raw: &str,
) -> Vec<Result<LlmEvent, ProviderError>> {
    vec![
        tool(
            "call_1",
            "record_answer",
            json!({"question_id": question, "value": value, "raw": raw, "confidence": 0.9}),
        ),
        Ok(LlmEvent::Done(FinishReason::ToolCalls)),
    ]
}

struct Call {
    agent: LlmScreeningAgent,
    llm: Arc<FakeLlm>,
    now: u64,
}

impl Call {
    fn new(config: LlmAgentConfig) -> Self {
        let library = ScriptLibrary::from_sources(SHIPPED_SCRIPTS).unwrap();
        let llm = Arc::new(FakeLlm::default());
        let agent = LlmScreeningAgent::new(
            library.get("default").unwrap(),
            Arc::clone(&llm) as Arc<dyn Llm>,
            config,
        );
        Self { agent, llm, now: 0 }
    }

    async fn send(&mut self, input: ConversationInput) -> Vec<DialogEvent> {
        self.now += 1_000;
        self.agent.handle(self.now, input).collect().await
    }

    async fn start(&mut self) -> Vec<DialogEvent> {
        self.llm.reply(say(
            "Hi Ana, this is Vox. Are you legally authorized to work in the US?",
        ));
        self.send(ConversationInput::Started {
            call_sid: "CA00000000000000000000000000000001".into(),
            parameters: BTreeMap::from([("firstName".to_owned(), "Ana".to_owned())]),
        })
        .await
    }

    async fn say(&mut self, text: &str) -> Vec<DialogEvent> {
        self.send(ConversationInput::UserSaid {
            text: text.into(),
            confidence: None,
        })
        .await
    }
}

fn spoken(events: &[DialogEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            DialogEvent::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn tokens_stream_and_tool_calls_are_recorded() {
    let mut call = Call::new(LlmAgentConfig::default());
    let greeting = call.start().await;
    assert!(
        greeting
            .iter()
            .filter(|e| matches!(e, DialogEvent::Text { .. }))
            .count()
            > 3,
        "tokens arrive one by one: {greeting:?}"
    );
    assert_eq!(greeting.last(), Some(&DialogEvent::TurnEnd { last: false }));
    let request = call.llm.last_request();
    assert_eq!(request.tools.len(), 3);
    assert!(request.messages[0].content.contains("work_authorization"));

    call.llm
        .reply(answer("work_authorization", json!(true), "yes I am"));
    call.llm.reply(say("Great. Are you at least 18 years old?"));
    let events = call.say("yes I am").await;
    assert_eq!(spoken(&events), "Great. Are you at least 18 years old?");
    // The second request carries the tool result.
    let request = call.llm.last_request();
    let result = request.messages.last().unwrap();
    assert_eq!(result.role, Role::Tool);
    assert_eq!(result.content, "ok");
    assert_eq!(result.tool_call_id.as_deref(), Some("call_1"));

    let result = call.agent.result();
    let answer = result.answer("work_authorization").unwrap();
    assert_eq!(answer.value, Some(AnswerValue::YesNo { value: true }));
    assert_eq!(answer.raw, "yes I am");
    assert_eq!(answer.agent, AgentKind::Llm);
    assert_eq!(answer.status, AnswerStatus::Accepted);
    assert_eq!(result.agent, AgentKind::Llm);
    assert!(result.fallback.is_none());
}

#[tokio::test]
async fn a_rejected_knock_out_answer_ends_by_the_script() {
    let mut call = Call::new(LlmAgentConfig::default());
    call.start().await;
    call.llm
        .reply(answer("work_authorization", json!(false), "no I'm not"));
    let events = call.say("no I'm not").await;
    assert!(
        spoken(&events).contains("requires work authorization"),
        "{events:?}"
    );
    assert!(
        matches!(events.last(), Some(DialogEvent::End(r)) if r.reason_code == REASON_KNOCK_OUT)
    );
    assert!(call.agent.is_ended());
    assert_eq!(call.agent.result().outcome, Some(Outcome::NotQualified));
}

#[tokio::test]
async fn invalid_tool_calls_get_errors_then_fall_back_to_the_script() {
    let mut call = Call::new(LlmAgentConfig {
        max_invalid_tool_calls: 1,
        ..LlmAgentConfig::default()
    });
    call.start().await;
    // Unknown question: the model gets an error and tries again.
    call.llm
        .reply(answer("favourite_colour", json!("blue"), "blue"));
    call.llm.reply(say("Sorry, could you say that again?"));
    call.say("yes").await;
    let request = call.llm.last_request();
    assert!(
        request
            .messages
            .last()
            .unwrap()
            .content
            .starts_with("error: no question")
    );
    assert!(!call.agent.has_fallen_back());
    // A value of the wrong type is the second invalid call: the script takes over.
    call.llm
        .reply(answer("forklift_years", json!("purple"), "purple"));
    let events = call.say("purple").await;
    assert!(call.agent.has_fallen_back());
    let text = spoken(&events);
    assert!(text.starts_with(FALLBACK_PREFIX), "{text}");
    assert!(
        text.contains("legally authorized"),
        "first unanswered question: {text}"
    );
    let result = call.agent.result();
    assert!(
        result
            .fallback
            .unwrap()
            .reason
            .contains("invalid tool calls")
    );
}

#[tokio::test]
async fn llm_failure_mid_call_resumes_the_script_at_the_next_question() {
    let mut call = Call::new(LlmAgentConfig::default());
    call.start().await;
    call.llm
        .reply(answer("work_authorization", json!(true), "yes"));
    call.llm.reply(say("Thanks! Are you at least 18?"));
    call.say("yes").await;
    call.llm.reply(vec![
        Ok(LlmEvent::Token("Great, ".into())),
        Err(ProviderError::Server {
            stage: voxbridge_speech::Stage::Llm,
            status: 503,
            message: "overloaded".into(),
        }),
    ]);
    let events = call.say("yes I am 19").await;
    let text = spoken(&events);
    assert!(
        text.starts_with("Great, "),
        "tokens before the failure were streamed: {text}"
    );
    assert!(
        text.contains("at least 18"),
        "the script re-asks the open question: {text}"
    );
    // From now on the script answers, with the answers gathered so far.
    let events = call.say("yes").await;
    assert!(spoken(&events).contains("forklift"));
    let result = call.agent.result();
    assert_eq!(result.answers[0].agent, AgentKind::Llm);
    assert_eq!(result.answers[1].agent, AgentKind::Script);
    assert_eq!(result.answers[1].question_id, "age_18_plus");
    assert!(result.fallback.unwrap().reason.contains("overloaded"));
}

#[tokio::test(start_paused = true)]
async fn a_stalled_llm_times_out_into_the_script() {
    let mut call = Call::new(LlmAgentConfig {
        timeout: std::time::Duration::from_millis(500),
        ..LlmAgentConfig::default()
    });
    // No canned reply: the greeting request stalls.
    let events = call
        .send(ConversationInput::Started {
            call_sid: "CA00000000000000000000000000000001".into(),
            parameters: BTreeMap::new(),
        })
        .await;
    assert!(call.agent.has_fallen_back());
    assert!(spoken(&events).contains("legally authorized"));
    assert!(
        call.agent
            .result()
            .fallback
            .unwrap()
            .reason
            .contains("stalled")
    );
}

#[tokio::test]
async fn completed_needs_every_answer_and_then_the_script_decides_the_outcome() {
    let mut call = Call::new(LlmAgentConfig::default());
    call.start().await;
    call.llm.reply(vec![
        tool(
            "c1",
            "end_screening",
            json!({"outcome": "completed", "reason": "done"}),
        ),
        Ok(LlmEvent::Done(FinishReason::ToolCalls)),
    ]);
    call.llm.reply(say(
        "Sorry, one more thing: are you authorized to work here?",
    ));
    call.say("that's all").await;
    assert!(!call.agent.is_ended());
    assert!(
        call.llm
            .last_request()
            .messages
            .last()
            .unwrap()
            .content
            .contains("not allowed")
    );

    let answers = [
        ("work_authorization", json!(true)),
        ("age_18_plus", json!(true)),
        ("forklift_years", json!(70)),
        ("shift_preference", json!("night")),
        ("start_availability", json!("in two weeks")),
        ("reliable_transport", json!(true)),
    ];
    let calls: Vec<_> = answers
        .iter()
        .enumerate()
        .map(|(i, (q, v))| {
            tool(
                &format!("a{i}"),
                "record_answer",
                json!({"question_id": q, "value": v, "raw": "x", "confidence": 1.0}),
            )
        })
        .chain([
            tool(
                "end",
                "end_screening",
                json!({"outcome": "completed", "reason": "all asked"}),
            ),
            Ok(LlmEvent::Token("Thanks, that's everything!".into())),
            Ok(LlmEvent::Done(FinishReason::ToolCalls)),
        ])
        .collect();
    call.llm.reply(calls);
    let events = call.say("everything at once").await;
    assert!(
        matches!(events.last(), Some(DialogEvent::End(r)) if r.reason_code == REASON_SCREENING_COMPLETE)
    );
    let result = call.agent.result();
    // 70 years is outside the script's 0..=60: flagged, so not qualified.
    assert_eq!(
        result.answer("forklift_years").unwrap().status,
        AnswerStatus::Rejected
    );
    assert_eq!(result.outcome, Some(Outcome::NotQualified));
    assert_eq!(
        result.answer("shift_preference").unwrap().value,
        Some(AnswerValue::Choice {
            option: "night".into()
        })
    );
}

#[tokio::test]
async fn handoff_tool_ends_with_live_agent_handoff() {
    let mut call = Call::new(LlmAgentConfig::default());
    call.start().await;
    call.llm.reply(vec![
        tool("h", "handoff", json!({"reason": "wants a recruiter"})),
        Ok(LlmEvent::Done(FinishReason::ToolCalls)),
    ]);
    let events = call.say("can I talk to a person").await;
    assert!(spoken(&events).contains("connect you"));
    assert!(
        matches!(events.last(), Some(DialogEvent::End(r)) if r.reason_code == REASON_LIVE_AGENT_HANDOFF)
    );
    assert_eq!(call.agent.result().outcome, Some(Outcome::Handoff));
}

#[test]
fn resume_with_every_answer_closes_by_the_rules() {
    let library = ScriptLibrary::from_sources(SHIPPED_SCRIPTS).unwrap();
    let script = library.get("default").unwrap();
    let mut result = ScreeningAgent::new(Arc::clone(&script)).result();
    for q in &script.questions {
        result.answers.push(AnswerRecord {
            question_id: q.id.clone(),
            raw: "x".into(),
            value: None,
            confidence: 1.0,
            status: if q.id == "reliable_transport" {
                AnswerStatus::Rejected
            } else {
                AnswerStatus::Accepted
            },
            source: AnswerSource::Speech,
            reasks: 0,
            at_ms: 0,
            agent: AgentKind::Llm,
        });
    }
    let mut agent = ScreeningAgent::resume(&script, result, 5_000, "Let me continue.");
    let events = drain(&mut agent);
    assert!(
        matches!(events.last(), Some(DialogEvent::End(r)) if r.reason_code == REASON_SCREENING_COMPLETE)
    );
    assert_eq!(
        agent.result().outcome,
        Some(Outcome::NotQualified),
        "a flagged answer"
    );
}
