//! The LLM screening agent: the same script, run through an OpenAI-compatible chat model with
//! tool calls, for a more natural conversation. Implements [`Dialog`]: the model's tokens are
//! streamed as they arrive.
//!
//! The model speaks; the script still rules: tool calls are checked against the script before
//! they count ([`crate::tools`]: `record_answer`, `end_screening`, `handoff`).
//!
//! A tool call that fails these checks gets an error result the model can correct; more than
//! `max_invalid_tool_calls` of them, an LLM error, a stall longer than `timeout_ms`, an empty
//! answer or a loop of tool rounds hand the call to the scripted agent
//! ([`ScreeningAgent::resume`]): it continues from the first unanswered question with the
//! answers gathered so far. [`ScreeningResult::fallback`] records that, and each answer says
//! which agent recorded it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};

use super::script::Script;
use super::tools::{Closing, ScriptTools};
use super::{
    AgentKind, AnswerSource, Fallback, LlmAgentConfig, Outcome, ScreeningAgent, ScreeningResult,
    Speaker, TranscriptEntry,
};
use voxbridge_brain::conversation::{Conversation, ConversationInput, EndReason};
use voxbridge_brain::dialog::{Dialog, DialogEvent, events_of};
use voxbridge_brain::outcome::CallOutcome;
use voxbridge_speech::{
    ChatMessage, ChatRequest, FinishReason, Llm, LlmEvent, ProviderError, Role, ToolCall,
};

pub use super::tools::ToolError;

/// Tool rounds (model answers with tool calls, gets results, continues) in one caller turn
/// before the agent stops trusting the model.
const MAX_TOOL_ROUNDS: u8 = 4;
/// Said when the scripted agent takes over.
const FALLBACK_PREFIX: &str = "Sorry about that, let me continue.";

/// The LLM screening agent of one call.
pub struct LlmScreeningAgent {
    tools: ScriptTools,
    llm: Arc<dyn Llm>,
    config: LlmAgentConfig,
    messages: Vec<ChatMessage>,
    started: bool,
    ended: bool,
    silences: u8,
    invalid_tool_calls: u32,
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
            .field("script", &self.tools.script().id)
            .field("llm", &self.llm.name())
            .field("answers", &self.tools.result().answers.len())
            .field("fallback", &self.fallback.is_some())
            .finish_non_exhaustive()
    }
}

impl LlmScreeningAgent {
    /// What was gathered so far (the scripted agent's, after a fallback).
    pub fn result(&self) -> ScreeningResult {
        match &self.fallback {
            Some(agent) => agent.result(),
            None => self.tools.result().clone(),
        }
    }

    /// An agent that runs `script` through `llm` once it gets
    /// [`ConversationInput::Started`].
    pub fn new(script: Arc<Script>, llm: Arc<dyn Llm>, config: LlmAgentConfig) -> Self {
        Self {
            tools: ScriptTools::new(script, AgentKind::Llm),
            llm,
            config,
            messages: Vec::new(),
            started: false,
            ended: false,
            silences: 0,
            invalid_tool_calls: 0,
            last_bot: None,
            streamed: String::new(),
            fallback: None,
        }
    }

    /// Whether the scripted agent has taken over.
    pub fn has_fallen_back(&self) -> bool {
        self.fallback.is_some()
    }

    fn request(&self) -> ChatRequest {
        ChatRequest {
            messages: self.messages.clone(),
            tools: ScriptTools::specs(),
            temperature: Some(self.config.temperature),
            max_tokens: Some(300),
        }
    }

    fn transcript(&mut self, now_ms: u64, speaker: Speaker, text: String) {
        self.tools.result.transcript.push(TranscriptEntry {
            at_ms: now_ms,
            speaker,
            text,
            interrupted: false,
            confidence: None,
        });
        if speaker == Speaker::Bot {
            self.last_bot = Some(self.tools.result.transcript.len() - 1);
        }
    }

    fn finish(&mut self, now_ms: u64, outcome: Outcome, end: Option<EndReason>) {
        self.tools.finish(now_ms, outcome, end);
        self.ended = true;
    }

    /// Hands the call to the scripted agent; returns its first events.
    fn fall_back(&mut self, now_ms: u64, reason: String) -> Vec<DialogEvent> {
        tracing::warn!(%reason, "LLM screening agent falling back to the script");
        let fresh = ScreeningAgent::new(Arc::clone(self.tools.script())).result();
        let mut result = std::mem::replace(&mut self.tools.result, fresh);
        result.fallback = Some(Fallback {
            at_ms: now_ms,
            reason,
        });
        let mut agent =
            ScreeningAgent::resume(self.tools.script(), result, now_ms, FALLBACK_PREFIX);
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
            let outcome = match agent.tools.apply(self.now_ms, call) {
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
        if closing.is_none() && calls.is_empty() && agent.tools.all_answered() {
            // The model forgot to end a finished screening: the script closes it.
            closing = Some(agent.tools.completed());
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
            .or_else(|| (!spoke).then(|| agent.tools.completed().line.unwrap_or_default()));
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
                self.tools.set_source(AnswerSource::Speech);
                self.tools.result.transcript.push(TranscriptEntry {
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
                self.tools.set_source(AnswerSource::Dtmf);
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
                    .and_then(|i| self.tools.result.transcript.get_mut(i))
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
                if self.silences > self.tools.script().max_silences {
                    let closing = self.tools.no_answer(self.tools.caller_spoke());
                    let line = closing.line.unwrap_or_default();
                    let reason = closing.reason;
                    self.transcript(now_ms, Speaker::Bot, line.clone());
                    self.finish(now_ms, closing.outcome, Some(reason.clone()));
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
                let outcome = if self.tools.caller_spoke() {
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
        self.tools.script().silence_timeout_ms
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

    fn start(&mut self, now_ms: u64, call_sid: String, parameters: BTreeMap<String, String>) {
        self.tools.start(now_ms, call_sid, parameters);
        self.messages = vec![
            ChatMessage::text(Role::System, self.tools.instructions()),
            ChatMessage::text(Role::User, "[the call is connected]"),
        ];
    }
}

#[cfg(test)]
mod tests;
