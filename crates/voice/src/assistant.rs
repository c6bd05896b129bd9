//! `Assistant`: a general voice assistant [`Dialog`] for deployments without a screening
//! script. Each caller turn streams an [`Llm`] answer (system prompt from config, the chat so
//! far) so the speech pipeline's chunker gets tokens as they arrive.
//!
//! - An interrupted answer is kept in the history only as far as the caller heard it.
//! - The LLM is retried (jittered backoff, `Retry-After`) before its first token while the
//!   turn's deadline from the [`DialogContext`] allows; a failure is reported there (the
//!   brain then speaks its fallback line). After the first token, a failure ends the answer
//!   where it is.
//! - Silence: a prompt ("Are you still there?") up to `max_silences` times, then a goodbye and
//!   `End` with reason code `no-answer`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio::time::Instant;
use tracing::{info, warn};

pub use voxbridge_speech::config::AssistantConfig;

use crate::pipeline::{DialogContext, DialogSource};
use voxbridge_brain::conversation::{ConversationInput, EndReason, REASON_NO_ANSWER};
use voxbridge_brain::dialog::{Dialog, DialogEvent};
use voxbridge_brain::outcome::{CallOutcome, Speaker, TranscriptEntry};
use voxbridge_brain::{BrainError, CallInfo};
use voxbridge_speech::retry::Jitter;
use voxbridge_speech::{ChatMessage, ChatRequest, Llm, LlmEvent, ProviderError, Role, Stage};

/// Makes an [`Assistant`] per call.
#[derive(Clone)]
pub struct AssistantSource {
    llm: Arc<dyn Llm>,
    config: AssistantConfig,
}

impl std::fmt::Debug for AssistantSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssistantSource")
            .field("llm", &self.llm.name())
            .field("config", &self.config)
            .finish()
    }
}

impl AssistantSource {
    /// Assistants answering with `llm`.
    pub fn new(llm: Arc<dyn Llm>, config: AssistantConfig) -> Self {
        Self { llm, config }
    }
}

impl DialogSource for AssistantSource {
    fn dialog(
        &self,
        _call: &CallInfo,
        context: &DialogContext,
    ) -> Result<Box<dyn Dialog>, BrainError> {
        Ok(Box::new(Assistant::new(
            Arc::clone(&self.llm),
            self.config.clone(),
            context.clone(),
        )))
    }
}

/// The assistant dialog of one call.
pub struct Assistant {
    llm: Arc<dyn Llm>,
    config: AssistantConfig,
    context: DialogContext,
    history: Vec<ChatMessage>,
    silences: u32,
    ended: bool,
    outcome: CallOutcome,
    jitter: Jitter,
}

impl std::fmt::Debug for Assistant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assistant")
            .field("messages", &self.history.len())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Assistant {
    /// A fresh conversation.
    pub fn new(llm: Arc<dyn Llm>, config: AssistantConfig, context: DialogContext) -> Self {
        Self {
            llm,
            config,
            context,
            history: Vec::new(),
            silences: 0,
            ended: false,
            outcome: CallOutcome::default(),
            jitter: Jitter::new("assistant"),
        }
    }

    /// The chat so far (without the system prompt).
    pub fn history(&self) -> &[ChatMessage] {
        &self.history
    }

    fn note(&mut self, now_ms: u64, speaker: Speaker, text: &str, confidence: Option<f32>) {
        self.outcome.transcript.push(TranscriptEntry {
            at_ms: now_ms,
            speaker,
            text: text.to_owned(),
            interrupted: false,
            confidence,
        });
    }

    /// A fixed line as one bot turn.
    fn say(&mut self, now_ms: u64, text: &str, last: bool) -> Vec<DialogEvent> {
        self.history.push(ChatMessage::text(Role::Assistant, text));
        self.note(now_ms, Speaker::Bot, text, None);
        vec![
            DialogEvent::Text {
                text: text.to_owned(),
                interruptible: !last,
            },
            DialogEvent::TurnEnd { last },
        ]
    }

    fn request(&self) -> ChatRequest {
        let skip = self
            .history
            .len()
            .saturating_sub(self.config.max_history_messages);
        let mut messages = vec![ChatMessage::text(Role::System, &self.config.system_prompt)];
        messages.extend(self.history[skip..].iter().cloned());
        ChatRequest {
            messages,
            tools: Vec::new(),
            temperature: self.config.temperature,
            max_tokens: self.config.max_tokens,
        }
    }

    /// Streams the model's answer to the chat so far.
    fn answer(&mut self, now_ms: u64) -> BoxStream<'_, DialogEvent> {
        let request = self.request();
        self.history.push(ChatMessage::text(Role::Assistant, ""));
        self.note(now_ms, Speaker::Bot, "", None);
        let state = Answer {
            me: self,
            request,
            stream: None,
            failed: 0,
            got_token: false,
            done: false,
        };
        stream::unfold(state, |mut st| async move {
            let event = st.next().await?;
            Some((event, st))
        })
        .boxed()
    }

    /// The answer was dropped unfinished or failed: forget an empty assistant message.
    fn drop_empty_answer(&mut self) {
        if self
            .history
            .last()
            .is_some_and(|m| m.role == Role::Assistant && m.content.is_empty())
        {
            self.history.pop();
            if self
                .outcome
                .transcript
                .last()
                .is_some_and(|e| e.speaker == Speaker::Bot && e.text.is_empty())
            {
                self.outcome.transcript.pop();
            }
        }
    }
}

/// One streaming answer in progress.
struct Answer<'a> {
    me: &'a mut Assistant,
    request: ChatRequest,
    stream: Option<BoxStream<'static, Result<LlmEvent, ProviderError>>>,
    failed: u32,
    got_token: bool,
    done: bool,
}

impl Answer<'_> {
    async fn next(&mut self) -> Option<DialogEvent> {
        let config = self.me.context.config().clone();
        loop {
            if self.done {
                return None;
            }
            let llm = Arc::clone(&self.me.llm);
            let request = &self.request;
            let stream = self
                .stream
                .get_or_insert_with(|| llm.stream(request.clone()));
            let deadline = self
                .me
                .context
                .deadline()
                .unwrap_or_else(|| Instant::now() + config.turn_budget);
            let timeout = if self.got_token {
                config.stream_idle_timeout
            } else if self.failed == 0 {
                config.llm_first_token_timeout
            } else {
                config.llm_first_token_timeout.min(
                    deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(250)),
                )
            };
            let error = match tokio::time::timeout(timeout, stream.next()).await {
                Ok(Some(Ok(LlmEvent::Token(token)))) => {
                    if token.is_empty() {
                        continue;
                    }
                    self.got_token = true;
                    if let Some(m) = self.me.history.last_mut() {
                        m.content.push_str(&token);
                    }
                    if let Some(e) = self.me.outcome.transcript.last_mut() {
                        e.text.push_str(&token);
                    }
                    return Some(DialogEvent::Text {
                        text: token,
                        interruptible: true,
                    });
                }
                Ok(Some(Ok(LlmEvent::ToolCall(call)))) => {
                    info!(tool = %call.name, "the assistant has no tools; call ignored");
                    continue;
                }
                Ok(Some(Ok(LlmEvent::Done(_))) | None) => {
                    self.done = true;
                    if self.got_token {
                        return Some(DialogEvent::TurnEnd { last: false });
                    }
                    self.me.drop_empty_answer();
                    return None;
                }
                Ok(Some(Err(e))) => e,
                Err(_) => ProviderError::Timeout {
                    stage: Stage::Llm,
                    after: timeout,
                },
            };
            self.stream = None;
            if self.got_token {
                warn!(error = %error, "llm failed mid-answer; ending the answer here");
                self.me.context.report_failure(error);
                self.done = true;
                return Some(DialogEvent::TurnEnd { last: false });
            }
            self.failed += 1;
            let retry = config.retry.retry_after(
                &error,
                self.failed,
                Instant::now().into_std(),
                deadline.into_std(),
                Duration::from_millis(250),
                &mut self.me.jitter,
            );
            let Some(pause) = retry else {
                self.me.context.report_failure(error);
                self.me.drop_empty_answer();
                self.done = true;
                return None;
            };
            info!(error = %error, ?pause, "llm failed; retrying");
            self.me.context.count_retry();
            tokio::time::sleep(pause).await;
        }
    }
}

impl Dialog for Assistant {
    fn handle(&mut self, now_ms: u64, input: ConversationInput) -> BoxStream<'_, DialogEvent> {
        if self.ended {
            return stream::empty().boxed();
        }
        // A previous answer dropped before its first token leaves an empty message.
        self.drop_empty_answer();
        match input {
            ConversationInput::Started {
                call_sid: _,
                parameters,
            } => {
                self.outcome.parameters = parameters;
                self.outcome.started_at_ms = Some(now_ms);
                if self.config.greeting.is_empty() {
                    return stream::empty().boxed();
                }
                let greeting = self.config.greeting.clone();
                stream::iter(self.say(now_ms, &greeting, false)).boxed()
            }
            ConversationInput::UserSaid { text, confidence } => {
                self.silences = 0;
                self.note(now_ms, Speaker::Caller, &text, confidence);
                self.history.push(ChatMessage::text(Role::User, text));
                self.answer(now_ms)
            }
            ConversationInput::Dtmf(digit) => {
                self.silences = 0;
                self.note(now_ms, Speaker::Keypad, &digit.to_string(), None);
                self.history.push(ChatMessage::text(
                    Role::User,
                    format!("(The caller pressed {digit} on the keypad.)"),
                ));
                self.answer(now_ms)
            }
            ConversationInput::Interrupted { heard } => {
                if let Some(m) = self.history.last_mut()
                    && m.role == Role::Assistant
                {
                    m.content.clone_from(&heard);
                }
                if let Some(e) = self.outcome.transcript.last_mut()
                    && e.speaker == Speaker::Bot
                {
                    e.text = heard;
                    e.interrupted = true;
                }
                self.drop_empty_answer();
                stream::empty().boxed()
            }
            ConversationInput::Silence { .. } => {
                self.silences += 1;
                if self.silences > self.config.max_silences {
                    let goodbye = self.config.goodbye.clone();
                    let mut events = self.say(now_ms, &goodbye, true);
                    let reason = EndReason::new(REASON_NO_ANSWER, "The caller stopped answering");
                    self.outcome.end = Some(reason.clone());
                    self.outcome.ended_at_ms = Some(now_ms);
                    self.ended = true;
                    events.push(DialogEvent::End(reason));
                    return stream::iter(events).boxed();
                }
                let prompt = self.config.silence_prompt.clone();
                stream::iter(self.say(now_ms, &prompt, false)).boxed()
            }
            ConversationInput::Hangup => {
                self.ended = true;
                self.outcome.ended_at_ms = Some(now_ms);
                stream::empty().boxed()
            }
        }
    }

    fn silence_timeout_ms(&self) -> u64 {
        self.config.silence_timeout_ms
    }

    fn is_ended(&self) -> bool {
        self.ended
    }

    fn outcome(&self) -> CallOutcome {
        self.outcome.clone()
    }
}
