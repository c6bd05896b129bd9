//! The LLM screening agent: the same script, run through an OpenAI-compatible chat model with
//! tool calls, for a more natural conversation. Implements [`Dialog`]: the model's tokens are
//! streamed as they arrive.
//!
//! The model speaks; the script still rules. Tool calls are checked against the script before
//! they count:
//!
//! - `record_answer{question_id, value, raw, confidence}`: the question must exist; `value` is
//!   read with the same understander the scripted agent uses, so it must fit the answer type
//!   (a yes/no, a number, one of the option ids, a start date); `confidence` is in `0..=1`.
//!   The script's rule decides accepted or rejected, and a rejected knock-out answer ends the
//!   call with the script's reject line, whatever the model says next.
//! - `end_screening{outcome, reason}`: `completed` only once every question has an answer (the
//!   outcome is then computed from the answers), else `callback_requested`, `voicemail` or
//!   `not_interested`.
//! - `handoff{reason}`: the caller wants a person (`live-agent-handoff`).
//!
//! A tool call that fails these checks gets an error result the model can correct; more than
//! `max_invalid_tool_calls` of them, an LLM error, a stall longer than `timeout_ms`, an empty
//! answer or a loop of tool rounds hand the call to the scripted agent
//! ([`ScreeningAgent::resume`]): it continues from the first unanswered question with the
//! answers gathered so far. [`ScreeningResult::fallback`] records that, and each answer says
//! which agent recorded it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};
use serde::Deserialize;
use serde_json::json;

use super::agent::accepts;
use super::script::{AnswerType, RejectAction, Script};
use super::understand::{self, AnswerValue};
use super::{
    AgentKind, AnswerRecord, AnswerSource, AnswerStatus, Fallback, LlmAgentConfig, Outcome,
    ScreeningAgent, ScreeningResult, Speaker, TranscriptEntry,
};
use voxbridge_brain::conversation::{
    Conversation, ConversationInput, EndReason, REASON_CALLBACK_REQUESTED, REASON_INCOMPLETE,
    REASON_KNOCK_OUT, REASON_LIVE_AGENT_HANDOFF, REASON_NO_ANSWER, REASON_SCREENING_COMPLETE,
    REASON_VOICEMAIL,
};
use voxbridge_brain::dialog::{Dialog, DialogEvent, events_of};
use voxbridge_brain::outcome::CallOutcome;
use voxbridge_speech::{
    ChatMessage, ChatRequest, FinishReason, Llm, LlmEvent, ProviderError, Role, ToolCall, ToolSpec,
};

/// Tool rounds (model answers with tool calls, gets results, continues) in one caller turn
/// before the agent stops trusting the model.
const MAX_TOOL_ROUNDS: u8 = 4;
/// Said when the scripted agent takes over.
const FALLBACK_PREFIX: &str = "Sorry about that, let me continue.";

/// Why a tool call was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    /// Not one of the three tools.
    #[error("unknown tool {0:?}")]
    UnknownTool(String),
    /// The arguments are not the expected JSON object.
    #[error("invalid arguments: {0}")]
    Arguments(String),
    /// No question has this id.
    #[error("no question has the id {0:?}")]
    UnknownQuestion(String),
    /// The value does not fit the question's answer type.
    #[error("value {value} does not fit question {question_id} ({expected})")]
    Value {
        /// The question.
        question_id: String,
        /// The value given.
        value: String,
        /// What the question takes.
        expected: String,
    },
    /// `confidence` outside `0..=1`.
    #[error("confidence must be between 0 and 1, got {0}")]
    Confidence(f64),
    /// `end_screening` with an outcome the script does not allow now.
    #[error("outcome {0:?} is not allowed: {1}")]
    Outcome(String, &'static str),
}

#[derive(Deserialize)]
struct RecordAnswer {
    question_id: String,
    value: serde_json::Value,
    #[serde(default)]
    raw: String,
    confidence: f64,
}

#[derive(Deserialize)]
struct EndScreening {
    outcome: String,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct Handoff {
    #[serde(default)]
    reason: String,
}

/// How the call should close after this turn's text.
#[derive(Debug, Clone)]
struct Closing {
    line: Option<String>,
    outcome: Outcome,
    reason: EndReason,
}

/// The LLM screening agent of one call.
pub struct LlmScreeningAgent {
    script: Arc<Script>,
    llm: Arc<dyn Llm>,
    config: LlmAgentConfig,
    messages: Vec<ChatMessage>,
    result: ScreeningResult,
    started: bool,
    ended: bool,
    silences: u8,
    invalid_tool_calls: u32,
    last_source: AnswerSource,
    /// Index of the last bot line in the transcript.
    last_bot: Option<usize>,
    /// Text streamed in the current model round; kept here (not in the turn) so a turn
    /// cancelled by an interruption still reaches the transcript and the chat history.
    streamed: String,
    fallback: Option<ScreeningAgent>,
}

impl std::fmt::Debug for LlmScreeningAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmScreeningAgent")
            .field("script", &self.script.id)
            .field("llm", &self.llm.name())
            .field("answers", &self.result.answers.len())
            .field("fallback", &self.fallback.is_some())
            .finish_non_exhaustive()
    }
}

impl LlmScreeningAgent {
    /// What was gathered so far (the scripted agent's, after a fallback).
    pub fn result(&self) -> ScreeningResult {
        match &self.fallback {
            Some(agent) => agent.result(),
            None => self.result.clone(),
        }
    }

    /// An agent that runs `script` through `llm` once it gets
    /// [`ConversationInput::Started`].
    pub fn new(script: Arc<Script>, llm: Arc<dyn Llm>, config: LlmAgentConfig) -> Self {
        let mut result = ScreeningAgent::new(Arc::clone(&script)).result();
        result.agent = AgentKind::Llm;
        Self {
            script,
            llm,
            config,
            messages: Vec::new(),
            result,
            started: false,
            ended: false,
            silences: 0,
            invalid_tool_calls: 0,
            last_source: AnswerSource::Speech,
            last_bot: None,
            streamed: String::new(),
            fallback: None,
        }
    }

    /// Whether the scripted agent has taken over.
    pub fn has_fallen_back(&self) -> bool {
        self.fallback.is_some()
    }

    fn fill(&self, text: &str) -> String {
        self.script.fill(
            text,
            self.result.parameters.get("firstName").map(String::as_str),
            self.result
                .parameters
                .get("jobTitle")
                .map(String::as_str)
                .filter(|j| !j.trim().is_empty()),
        )
    }

    fn system_prompt(&self) -> String {
        let mut questions = String::new();
        for q in &self.script.questions {
            let kind = match &q.answer {
                AnswerType::YesNo { .. } => "yes/no (value: true or false)".to_owned(),
                AnswerType::Number { unit, .. } => format!(
                    "a number{} (value: the number)",
                    unit.as_deref()
                        .map(|u| format!(" of {u}"))
                        .unwrap_or_default()
                ),
                AnswerType::Choice { options, .. } => format!(
                    "one of: {} (value: the option id)",
                    options
                        .iter()
                        .map(|o| o.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                AnswerType::FreeText => "free text (value: the answer)".to_owned(),
                AnswerType::Availability { .. } => {
                    "when they can start (value: their words, e.g. \"in two weeks\")".to_owned()
                }
            };
            let _ = writeln!(questions, "- {}: \"{}\" -> {kind}", q.id, q.prompt);
        }
        format!(
            "You are Vox, a friendly phone recruiting assistant screening a candidate for the {job} \
             position. Speak in short, natural sentences; this is a phone call. Start with: \"{greeting}\"\n\
             Ask these questions one at a time, in order, and do not skip any:\n{questions}\
             As soon as the caller answers a question, call record_answer with the question id, \
             the value, the caller's words as raw, and your confidence (0 to 1). Never invent an \
             answer; if unclear, ask again. If the caller asks for a person, call handoff. If they \
             ask to be called back, or you reached voicemail, call end_screening with outcome \
             callback_requested or voicemail. When every question is answered, call end_screening \
             with outcome completed and say goodbye.",
            job = self.fill("{jobTitle}"),
            greeting = self.fill(&self.script.greeting),
        )
    }

    fn tools() -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "record_answer".into(),
                description: "Record the caller's answer to one screening question.".into(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "question_id": {"type": "string"},
                        "value": {"description": "true/false, a number, an option id or text"},
                        "raw": {"type": "string", "description": "the caller's words"},
                        "confidence": {"type": "number", "minimum": 0, "maximum": 1}
                    },
                    "required": ["question_id", "value", "raw", "confidence"]
                }),
            },
            ToolSpec {
                name: "end_screening".into(),
                description: "End the call.".into(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "outcome": {"type": "string", "enum": ["completed", "callback_requested", "voicemail", "not_interested"]},
                        "reason": {"type": "string"}
                    },
                    "required": ["outcome", "reason"]
                }),
            },
            ToolSpec {
                name: "handoff".into(),
                description: "Transfer the caller to a human recruiter.".into(),
                parameters: json!({
                    "type": "object",
                    "properties": {"reason": {"type": "string"}},
                    "required": ["reason"]
                }),
            },
        ]
    }

    fn request(&self) -> ChatRequest {
        ChatRequest {
            messages: self.messages.clone(),
            tools: Self::tools(),
            temperature: Some(self.config.temperature),
            max_tokens: Some(300),
        }
    }

    fn transcript(&mut self, now_ms: u64, speaker: Speaker, text: String) {
        self.result.transcript.push(TranscriptEntry {
            at_ms: now_ms,
            speaker,
            text,
            interrupted: false,
            confidence: None,
        });
        if speaker == Speaker::Bot {
            self.last_bot = Some(self.result.transcript.len() - 1);
        }
    }

    /// Checks and applies one tool call; `Ok(Some)` when it closes the call.
    fn apply_tool(&mut self, now_ms: u64, call: &ToolCall) -> Result<Option<Closing>, ToolError> {
        let args = |e: serde_json::Error| ToolError::Arguments(e.to_string());
        match call.name.as_str() {
            "record_answer" => {
                let answer: RecordAnswer = serde_json::from_str(&call.arguments).map_err(args)?;
                self.record_answer(now_ms, answer)
            }
            "end_screening" => {
                let end: EndScreening = serde_json::from_str(&call.arguments).map_err(args)?;
                self.end_screening(&end).map(Some)
            }
            "handoff" => {
                let handoff: Handoff = serde_json::from_str(&call.arguments).map_err(args)?;
                let reason = if handoff.reason.trim().is_empty() {
                    "The caller asked to talk to a person".to_owned()
                } else {
                    handoff.reason
                };
                Ok(Some(Closing {
                    line: Some(self.fill(&self.script.closing.handoff)),
                    outcome: Outcome::Handoff,
                    reason: EndReason::new(REASON_LIVE_AGENT_HANDOFF, reason),
                }))
            }
            other => Err(ToolError::UnknownTool(other.chars().take(32).collect())),
        }
    }

    fn record_answer(
        &mut self,
        now_ms: u64,
        answer: RecordAnswer,
    ) -> Result<Option<Closing>, ToolError> {
        let script = Arc::clone(&self.script);
        let question = script
            .questions
            .iter()
            .find(|q| q.id == answer.question_id)
            .ok_or_else(|| ToolError::UnknownQuestion(answer.question_id.clone()))?;
        if !(0.0..=1.0).contains(&answer.confidence) {
            return Err(ToolError::Confidence(answer.confidence));
        }
        let text = match &answer.value {
            serde_json::Value::Bool(true) => "yes".to_owned(),
            serde_json::Value::Bool(false) => "no".to_owned(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let value = understand::understand(&question.answer, &text)
            .map(|u| u.value)
            .filter(|v| !matches!(v, AnswerValue::Number { value, .. } if !value.is_finite()))
            .ok_or_else(|| ToolError::Value {
                question_id: question.id.clone(),
                value: answer.value.to_string(),
                expected: format!("{:?}", question.answer),
            })?;
        let accepted = accepts(&question.answer, &value);
        let raw = if answer.raw.trim().is_empty() {
            text
        } else {
            answer.raw
        };
        self.result.answers.retain(|a| a.question_id != question.id);
        self.result.answers.push(AnswerRecord {
            question_id: question.id.clone(),
            raw,
            value: Some(value),
            confidence: answer.confidence as f32,
            status: if accepted {
                AnswerStatus::Accepted
            } else {
                AnswerStatus::Rejected
            },
            source: self.last_source,
            reasks: 0,
            at_ms: now_ms,
            agent: AgentKind::Llm,
        });
        // Keep the script's question order.
        let order = |id: &str| script.questions.iter().position(|q| q.id == id);
        self.result.answers.sort_by_key(|a| order(&a.question_id));
        if !accepted && question.on_reject == RejectAction::KnockOut {
            let line = question
                .reject_line
                .as_deref()
                .unwrap_or(&script.closing.not_qualified);
            return Ok(Some(Closing {
                line: Some(self.fill(line)),
                outcome: Outcome::NotQualified,
                reason: EndReason::new(
                    REASON_KNOCK_OUT,
                    format!("Answer to {} is not accepted", question.id),
                ),
            }));
        }
        Ok(None)
    }

    fn all_answered(&self) -> bool {
        self.script
            .questions
            .iter()
            .all(|q| self.result.answer(&q.id).is_some())
    }

    /// The closing of a completed screening, by the script's rules.
    fn completed(&self) -> Closing {
        let rejected = self
            .result
            .answers
            .iter()
            .any(|a| a.status == AnswerStatus::Rejected);
        let (line, outcome) = if rejected {
            (&self.script.closing.not_qualified, Outcome::NotQualified)
        } else {
            (&self.script.closing.qualified, Outcome::Qualified)
        };
        Closing {
            line: Some(self.fill(line)),
            outcome,
            reason: EndReason::new(
                REASON_SCREENING_COMPLETE,
                format!("All {} questions asked", self.script.questions.len()),
            ),
        }
    }

    fn end_screening(&self, end: &EndScreening) -> Result<Closing, ToolError> {
        let reason = |default: &str| {
            if end.reason.trim().is_empty() {
                default.to_owned()
            } else {
                end.reason.clone()
            }
        };
        let closing = &self.script.closing;
        Ok(match end.outcome.as_str() {
            "completed" if self.all_answered() => Closing {
                // The model's own goodbye is spoken when it gave one.
                line: None,
                ..self.completed()
            },
            "completed" => {
                return Err(ToolError::Outcome(
                    end.outcome.clone(),
                    "some questions have no recorded answer yet",
                ));
            }
            "callback_requested" => Closing {
                line: Some(self.fill(&closing.callback)),
                outcome: Outcome::CallbackRequested,
                reason: EndReason::new(
                    REASON_CALLBACK_REQUESTED,
                    reason("The caller asked to be called back later"),
                ),
            },
            "voicemail" => Closing {
                line: Some(self.fill(&closing.voicemail)),
                outcome: Outcome::Voicemail,
                reason: EndReason::new(REASON_VOICEMAIL, reason("An answering machine picked up")),
            },
            "not_interested" => Closing {
                line: Some(self.fill(&closing.incomplete)),
                outcome: Outcome::Incomplete,
                reason: EndReason::new(REASON_INCOMPLETE, reason("The caller ended the screening")),
            },
            other => {
                return Err(ToolError::Outcome(
                    other.chars().take(32).collect(),
                    "use completed, callback_requested, voicemail or not_interested",
                ));
            }
        })
    }

    fn finish(&mut self, now_ms: u64, outcome: Outcome, end: Option<EndReason>) {
        self.result.outcome = Some(outcome);
        self.result.ended_at_ms = Some(now_ms);
        self.result.end = end;
        self.ended = true;
    }

    /// Hands the call to the scripted agent; returns its first events.
    fn fall_back(&mut self, now_ms: u64, reason: String) -> Vec<DialogEvent> {
        tracing::warn!(%reason, "LLM screening agent falling back to the script");
        let mut result = std::mem::replace(
            &mut self.result,
            ScreeningAgent::new(Arc::clone(&self.script)).result(),
        );
        result.fallback = Some(Fallback {
            at_ms: now_ms,
            reason,
        });
        let mut agent = ScreeningAgent::resume(&self.script, result, now_ms, FALLBACK_PREFIX);
        let events = drain(&mut agent);
        self.fallback = Some(agent);
        events
    }

    fn turn(&mut self, now_ms: u64) -> BoxStream<'_, DialogEvent> {
        let turn = Turn {
            llm_stream: None,
            agent: self,
            now_ms,
            rounds: 0,
            tool_calls: Vec::new(),
            out: VecDeque::new(),
            done: false,
        };
        stream::unfold(turn, |mut turn| async move {
            let event = turn.next_event().await?;
            Some((event, turn))
        })
        .boxed()
    }
}

fn drain(agent: &mut ScreeningAgent) -> Vec<DialogEvent> {
    std::iter::from_fn(|| agent.poll())
        .flat_map(events_of)
        .collect()
}

/// One caller turn in progress: the model's stream and what it produced so far.
struct Turn<'a> {
    agent: &'a mut LlmScreeningAgent,
    now_ms: u64,
    llm_stream: Option<BoxStream<'static, Result<LlmEvent, ProviderError>>>,
    rounds: u8,
    tool_calls: Vec<ToolCall>,
    out: VecDeque<DialogEvent>,
    done: bool,
}

impl Turn<'_> {
    async fn next_event(&mut self) -> Option<DialogEvent> {
        loop {
            if let Some(event) = self.out.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            if self.llm_stream.is_none() {
                if self.rounds >= MAX_TOOL_ROUNDS {
                    self.fall_back("too many tool rounds in one turn".into());
                    continue;
                }
                self.rounds += 1;
                self.llm_stream = Some(self.agent.llm.stream(self.agent.request()));
            }
            let timeout = self.agent.config.timeout;
            let stream = self.llm_stream.as_mut().expect("set just above");
            match tokio::time::timeout(timeout, stream.next()).await {
                Err(_) => self.fall_back(format!("LLM stalled for {timeout:?}")),
                Ok(None) => self.fall_back("LLM stream ended without Done".into()),
                Ok(Some(Err(e))) => self.fall_back(format!("LLM failed: {e}")),
                Ok(Some(Ok(LlmEvent::Token(token)))) => {
                    if token.is_empty() {
                        continue;
                    }
                    self.agent.streamed.push_str(&token);
                    return Some(DialogEvent::Text {
                        text: token,
                        interruptible: true,
                    });
                }
                Ok(Some(Ok(LlmEvent::ToolCall(call)))) => self.tool_calls.push(call),
                Ok(Some(Ok(LlmEvent::Done(reason)))) => self.round_done(reason),
            }
        }
    }

    fn fall_back(&mut self, reason: String) {
        self.llm_stream = None;
        let spoken = std::mem::take(&mut self.agent.streamed);
        if !spoken.trim().is_empty() {
            self.agent
                .transcript(self.now_ms, Speaker::Bot, spoken.trim().to_owned());
        }
        let events = self.agent.fall_back(self.now_ms, reason);
        self.out.extend(events);
        self.done = true;
    }

    /// The model finished a round: apply its tool calls, then continue, close or end the turn.
    fn round_done(&mut self, reason: FinishReason) {
        self.llm_stream = None;
        let text = std::mem::take(&mut self.agent.streamed);
        let calls = std::mem::take(&mut self.tool_calls);
        let agent = &mut *self.agent;
        agent.messages.push(ChatMessage {
            role: Role::Assistant,
            content: text.clone(),
            tool_calls: calls.clone(),
            tool_call_id: None,
        });
        if !text.trim().is_empty() {
            agent.transcript(self.now_ms, Speaker::Bot, text.trim().to_owned());
        }
        let mut closing = None;
        for call in &calls {
            let outcome = match agent.apply_tool(self.now_ms, call) {
                Ok(found) => {
                    closing = closing.or(found);
                    "ok".to_owned()
                }
                Err(e) => {
                    tracing::warn!(tool = %call.name, error = %e, "invalid tool call");
                    agent.invalid_tool_calls += 1;
                    format!("error: {e}")
                }
            };
            agent.messages.push(ChatMessage {
                role: Role::Tool,
                content: outcome,
                tool_calls: Vec::new(),
                tool_call_id: Some(call.id.clone()),
            });
        }
        let invalid = agent.invalid_tool_calls;
        if invalid > agent.config.max_invalid_tool_calls {
            self.fall_back(format!("{invalid} invalid tool calls"));
            return;
        }
        if closing.is_none() && calls.is_empty() && agent.all_answered() {
            // The model forgot to end a finished screening: the script closes it.
            closing = Some(agent.completed());
        }
        if let Some(closing) = closing {
            self.close(closing, !text.trim().is_empty());
            return;
        }
        if text.trim().is_empty() {
            if calls.is_empty() {
                self.fall_back(format!("LLM answered with nothing to say ({reason:?})"));
            }
            // Otherwise the model waits for the tool results: another round.
            return;
        }
        self.out.push_back(DialogEvent::TurnEnd { last: false });
        self.done = true;
    }

    fn close(&mut self, closing: Closing, spoke: bool) {
        let agent = &mut *self.agent;
        // The script's line unless the model already said goodbye on its own.
        let line = closing
            .line
            .or_else(|| (!spoke).then(|| agent.completed().line.unwrap_or_default()));
        if let Some(line) = line.filter(|l| !l.trim().is_empty()) {
            if spoke {
                self.out.push_back(DialogEvent::TurnEnd { last: false });
            }
            agent.transcript(self.now_ms, Speaker::Bot, line.clone());
            self.out.push_back(DialogEvent::Text {
                text: line,
                interruptible: false,
            });
        }
        self.out.push_back(DialogEvent::TurnEnd { last: true });
        self.out.push_back(DialogEvent::End(closing.reason.clone()));
        agent.finish(self.now_ms, closing.outcome, Some(closing.reason));
        self.done = true;
    }
}

impl Dialog for LlmScreeningAgent {
    fn handle(&mut self, now_ms: u64, input: ConversationInput) -> BoxStream<'_, DialogEvent> {
        self.settle_cancelled_turn(now_ms);
        if let Some(agent) = self.fallback.as_mut() {
            agent.handle(now_ms, input);
            return stream::iter(drain(agent)).boxed();
        }
        if self.ended {
            return stream::empty().boxed();
        }
        match input {
            ConversationInput::Started {
                call_sid,
                parameters,
            } if !self.started => {
                self.started = true;
                self.start(now_ms, call_sid, parameters);
                self.turn(now_ms)
            }
            ConversationInput::UserSaid { text, confidence } if self.started => {
                self.silences = 0;
                self.last_source = AnswerSource::Speech;
                self.result.transcript.push(TranscriptEntry {
                    at_ms: now_ms,
                    speaker: Speaker::Caller,
                    text: text.clone(),
                    interrupted: false,
                    confidence,
                });
                self.messages.push(ChatMessage::text(Role::User, text));
                self.turn(now_ms)
            }
            ConversationInput::Dtmf(digit) if self.started => {
                self.silences = 0;
                self.last_source = AnswerSource::Dtmf;
                self.transcript(now_ms, Speaker::Keypad, digit.to_string());
                self.messages.push(ChatMessage::text(
                    Role::User,
                    format!("[the caller pressed the key {digit}]"),
                ));
                self.turn(now_ms)
            }
            ConversationInput::Interrupted { heard } => {
                if let Some(entry) = self
                    .last_bot
                    .and_then(|i| self.result.transcript.get_mut(i))
                {
                    heard.trim().clone_into(&mut entry.text);
                    entry.interrupted = true;
                }
                if let Some(message) = self
                    .messages
                    .iter_mut()
                    .rev()
                    .find(|m| m.role == Role::Assistant && !m.content.is_empty())
                {
                    message.content = format!("{} [interrupted by the caller]", heard.trim());
                }
                stream::empty().boxed()
            }
            ConversationInput::Silence { ms } if self.started => {
                self.silences += 1;
                if self.silences > self.script.max_silences {
                    let outcome = if self.caller_spoke() {
                        Outcome::Incomplete
                    } else {
                        Outcome::NoAnswer
                    };
                    let line = self.fill(&self.script.closing.incomplete);
                    let reason = EndReason::new(REASON_NO_ANSWER, "The caller stopped answering");
                    self.transcript(now_ms, Speaker::Bot, line.clone());
                    self.finish(now_ms, outcome, Some(reason.clone()));
                    return stream::iter([
                        DialogEvent::Text {
                            text: line,
                            interruptible: false,
                        },
                        DialogEvent::TurnEnd { last: true },
                        DialogEvent::End(reason),
                    ])
                    .boxed();
                }
                self.messages.push(ChatMessage::text(
                    Role::User,
                    format!("[the caller has said nothing for {} seconds]", ms / 1000),
                ));
                self.turn(now_ms)
            }
            ConversationInput::Hangup => {
                let outcome = if self.caller_spoke() {
                    Outcome::Incomplete
                } else {
                    Outcome::NoAnswer
                };
                self.finish(now_ms, outcome, None);
                stream::empty().boxed()
            }
            _ => stream::empty().boxed(),
        }
    }

    fn silence_timeout_ms(&self) -> u64 {
        self.script.silence_timeout_ms
    }

    fn is_ended(&self) -> bool {
        match &self.fallback {
            Some(agent) => agent.is_ended(),
            None => self.ended,
        }
    }

    fn outcome(&self) -> CallOutcome {
        self.result().to_outcome()
    }
}

impl LlmScreeningAgent {
    /// A turn whose stream was dropped mid-round (barge-in): what it had streamed becomes the
    /// bot's line and the assistant message, so an `Interrupted` can cut it to what was heard.
    fn settle_cancelled_turn(&mut self, now_ms: u64) {
        let text = std::mem::take(&mut self.streamed);
        if text.trim().is_empty() {
            return;
        }
        self.messages
            .push(ChatMessage::text(Role::Assistant, text.trim()));
        self.transcript(now_ms, Speaker::Bot, text.trim().to_owned());
    }

    fn caller_spoke(&self) -> bool {
        self.result
            .transcript
            .iter()
            .any(|e| e.speaker != Speaker::Bot)
    }

    fn start(&mut self, now_ms: u64, call_sid: String, parameters: BTreeMap<String, String>) {
        if let Some(job) = parameters.get("jobTitle").filter(|j| !j.trim().is_empty()) {
            self.result.job_title.clone_from(job);
        }
        self.result.call_sid = Some(call_sid);
        self.result.candidate_id = parameters.get("candidateId").cloned();
        self.result.parameters = parameters;
        self.result.started_at_ms = Some(now_ms);
        self.messages = vec![
            ChatMessage::text(Role::System, self.system_prompt()),
            ChatMessage::text(Role::User, "[the call is connected]"),
        ];
    }
}

#[cfg(test)]
mod tests;
