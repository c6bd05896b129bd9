//! The screening script on a realtime call (`speech.realtime.mode = "screening"`): the script
//! becomes the session's instructions and tools ([`ScriptTools`], the same checks as the LLM
//! screening agent), and the call stores a [`voxbridge_screening::ScreeningResult`] as `/relay`
//! and the `screening` agent do.
//!
//! - **Tools.** `record_answer`, `end_screening`, `handoff`. Each call is checked against the
//!   script; the model gets `{"ok": true, ...}` with the next question to ask, or
//!   `{"error": ...}` saying what to fix.
//! - **Closing.** A tool call that ends the screening (all answered and `completed`, a
//!   knock-out, a handoff, a callback) takes effect when the model's response is done: the
//!   script's closing line is spoken by the model (a response whose instructions are that line)
//!   unless the model already said its own goodbye to a completed screening, then the call
//!   hangs up with the reason's code (`screening-complete`, `knock-out`, ...).
//! - **Keypad.** A key pressed reaches the model as a user line
//!   (`[the caller pressed the key 1]`), and answers recorded after it are `dtmf` answers.
//! - **Silence.** When the caller says nothing for the script's `silence_timeout_ms` after the
//!   bot has finished speaking, the model is told so and asks again; after `max_silences` the
//!   script's incomplete line closes the call (`no-answer`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tracing::{info, warn};

use voxbridge_brain::outcome::{CallOutcome, TranscriptEntry};
use voxbridge_screening::tools::{Closing, ScriptTools};
use voxbridge_screening::{AgentKind, AnswerSource, Outcome, Script, Speaker};
use voxbridge_speech::{ToolCall, ToolSpec};

/// Said to the model after the script's instructions: how a phone call through it works.
const ON_THE_PHONE: &str = "\n\nThis is a live phone call and the caller hears you: keep each \
     turn to one or two short sentences. Keys the caller presses reach you as \
     \"[the caller pressed the key N]\"; a key can answer the question you asked (1 for yes, 2 \
     for no, or the number itself). Call a tool as soon as you know what it records; when a \
     tool answers with an error, fix the call or ask the caller again.";

/// One realtime call's screening.
pub(super) struct Screening {
    tools: ScriptTools,
    /// Keys pressed, for the transcript (the realtime lines hold speech only), each with the
    /// number of realtime lines before it.
    keys: Vec<(usize, TranscriptEntry)>,
    /// A tool call ended the screening: close when the response is done.
    closing: Option<Closing>,
    /// The closing has been applied: later tool calls are refused.
    closed: bool,
    /// Silences in a row.
    silences: u8,
    /// The caller said or keyed something.
    heard_caller: bool,
    invalid_tool_calls: u32,
}

impl Screening {
    /// The screening of one call (`parameters`: the stream's custom parameters).
    pub(super) fn new(
        script: Arc<Script>,
        call_sid: &str,
        parameters: &BTreeMap<String, String>,
    ) -> Self {
        let mut tools = ScriptTools::new(script, AgentKind::Realtime);
        tools.start(0, call_sid.to_owned(), parameters.clone());
        Self {
            tools,
            keys: Vec::new(),
            closing: None,
            closed: false,
            silences: 0,
            heard_caller: false,
            invalid_tool_calls: 0,
        }
    }

    /// The script's id.
    pub(super) fn script_id(&self) -> &str {
        &self.tools.script().id
    }

    /// The session's instructions: the script, then how the phone call works.
    pub(super) fn instructions(&self) -> String {
        let mut text = self.tools.instructions();
        text.push_str(ON_THE_PHONE);
        text
    }

    /// The script's tools.
    pub(super) fn specs() -> Vec<ToolSpec> {
        ScriptTools::specs()
    }

    /// How long the caller may say nothing after the bot spoke.
    pub(super) fn silence_timeout(&self) -> Duration {
        Duration::from_millis(self.tools.script().silence_timeout_ms)
    }

    /// The provider hears the caller: answers from now on are spoken.
    pub(super) fn speech_started(&mut self) {
        self.tools.set_source(AnswerSource::Speech);
    }

    /// The caller said something (a transcript with words, not just noise).
    pub(super) fn caller_spoke(&mut self) {
        self.silences = 0;
        self.heard_caller = true;
    }

    /// For a reconnected session: the answers recorded and the keys pressed so far.
    pub(super) fn progress(&self) -> String {
        let mut text = String::from("\nAnswers recorded so far (do not ask these again):");
        let result = self.tools.result();
        if result.answers.is_empty() {
            text.push_str(" none");
        }
        for answer in &result.answers {
            let value = answer
                .value
                .as_ref()
                .and_then(|v| serde_json::to_string(v).ok())
                .unwrap_or_else(|| "unclear".to_owned());
            let _ = write!(text, "\n- {}: {value}", answer.question_id);
        }
        if !self.keys.is_empty() {
            let keys: String = self.keys.iter().map(|(_, k)| k.text.as_str()).collect();
            let _ = write!(text, "\nKeys the caller pressed: {keys}");
        }
        text.push('\n');
        text
    }

    /// A key was pressed after `lines` realtime transcript lines: the line for the model.
    pub(super) fn key(&mut self, now_ms: u64, lines: usize, digit: char) -> String {
        self.silences = 0;
        self.heard_caller = true;
        self.tools.set_source(AnswerSource::Dtmf);
        self.keys.push((
            lines,
            TranscriptEntry {
                at_ms: now_ms,
                speaker: Speaker::Keypad,
                text: digit.to_string(),
                interrupted: false,
                confidence: None,
            },
        ));
        format!("[the caller pressed the key {digit}]")
    }

    /// The caller said nothing for the timeout: the line for the model, or the closing when
    /// they have been silent too often.
    pub(super) fn silence(&mut self) -> Result<String, Closing> {
        self.silences += 1;
        if self.silences > self.tools.script().max_silences {
            return Err(self.tools.no_answer(self.heard_caller));
        }
        let seconds = self.tools.script().silence_timeout_ms / 1000;
        Ok(format!(
            "[the caller has said nothing for {seconds} seconds: check they are still there and \
             ask the question again]"
        ))
    }

    /// Checks and applies one tool call; the output for the model. A call that ends the
    /// screening is kept for [`Self::take_closing`].
    pub(super) fn on_tool_call(&mut self, now_ms: u64, call: &ToolCall) -> String {
        if self.closed || self.closing.is_some() {
            return json!({"error": "the screening is over: say nothing more"}).to_string();
        }
        match self.tools.apply(now_ms, call) {
            Ok(Some(closing)) => {
                info!(
                    tool = %call.name,
                    outcome = ?closing.outcome,
                    "the screening closes"
                );
                let output = match &closing.line {
                    Some(_) => json!({"ok": true, "next": "the call ends now: say nothing more"}),
                    None => json!({"ok": true, "next": "say goodbye"}),
                };
                self.closing = Some(closing);
                output.to_string()
            }
            Ok(None) => {
                let result = self.tools.result();
                let next = self
                    .tools
                    .script()
                    .questions
                    .iter()
                    .find(|q| result.answer(&q.id).is_none());
                match next {
                    Some(q) => json!({"ok": true, "next_question": {"id": q.id, "ask": self.tools.fill(&q.prompt)}}),
                    None => json!({"ok": true, "next": "every question is answered: call end_screening with outcome completed"}),
                }
                .to_string()
            }
            Err(e) => {
                self.invalid_tool_calls += 1;
                warn!(tool = %call.name, error = %e, "invalid tool call");
                json!({"error": e.to_string()}).to_string()
            }
        }
    }

    /// The closing a tool call decided, once; `spoke`: the response that made it said
    /// something. Returns the line the model must say last (`None`: hang up now) and the
    /// hang-up reason.
    pub(super) fn take_closing(
        &mut self,
        now_ms: u64,
        spoke: bool,
    ) -> Option<(Option<String>, String)> {
        let closing = self.closing.take()?;
        Some(self.close(now_ms, closing, spoke))
    }

    /// Ends the screening with `closing`; see [`Self::take_closing`].
    pub(super) fn close(
        &mut self,
        now_ms: u64,
        closing: Closing,
        spoke: bool,
    ) -> (Option<String>, String) {
        self.closed = true;
        self.closing = None;
        // The script's line, unless the model already said goodbye to a completed screening.
        let line = closing
            .line
            .clone()
            .or_else(|| (!spoke).then(|| self.tools.completed().line).flatten())
            .filter(|l| !l.trim().is_empty());
        let reason = format!("{}: {}", closing.reason.reason_code, closing.reason.reason);
        self.tools
            .finish(now_ms, closing.outcome, Some(closing.reason));
        (line, reason)
    }

    /// The call is over without a closing: `failed` when the provider failed, else incomplete
    /// (the caller said something) or no answer.
    pub(super) fn hung_up(&mut self, now_ms: u64, provider_failed: bool) {
        if let Some(closing) = self.closing.take() {
            // Decided by a tool call whose response had not ended: it stands.
            self.close(now_ms, closing, true);
            return;
        }
        if self.closed {
            return;
        }
        self.closed = true;
        let outcome = if provider_failed {
            Outcome::Failed
        } else if self.heard_caller {
            Outcome::Incomplete
        } else {
            Outcome::NoAnswer
        };
        self.tools.finish(now_ms, outcome, None);
    }

    /// Invalid tool calls the model made.
    pub(super) fn invalid_tool_calls(&self) -> u32 {
        self.invalid_tool_calls
    }

    /// The call's outcome: the screening result with `transcript` (the realtime lines) and the
    /// keys pressed, in the order they happened.
    pub(super) fn outcome(mut self, transcript: Vec<TranscriptEntry>) -> CallOutcome {
        let mut lines = Vec::with_capacity(transcript.len() + self.keys.len());
        let mut keys = std::mem::take(&mut self.keys).into_iter().peekable();
        for (i, line) in transcript.into_iter().enumerate() {
            while let Some((_, key)) = keys.next_if(|(before, _)| *before <= i) {
                lines.push(key);
            }
            lines.push(line);
        }
        lines.extend(keys.map(|(_, key)| key));
        let result = self.tools.result_mut();
        result.transcript = lines;
        result.to_outcome()
    }
}
