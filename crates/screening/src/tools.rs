//! The screening script as tools a model calls: the instructions that describe the script, the
//! three tool definitions, and the checks every call passes before it counts. The LLM agent
//! ([`crate::llm`]) and the realtime agent (`voxbridge-voice`) share them, so a screening gives
//! the same [`ScreeningResult`] whichever model runs it.
//!
//! - `record_answer{question_id, value, raw, confidence}`: the question must exist; `value` is
//!   read with the scripted agent's understander, so it must fit the answer type (a yes/no, a
//!   number, one of the option ids, a start date); `confidence` is in `0..=1`. The script's
//!   rule decides accepted or rejected, and a rejected knock-out answer closes the call with
//!   the script's reject line.
//! - `end_screening{outcome, reason}`: `completed` only once every question has an answer (the
//!   outcome is then computed from the answers), else `callback_requested`, `voicemail` or
//!   `not_interested`.
//! - `handoff{reason}`: the caller wants a person (`live-agent-handoff`).
//!
//! Sans-IO: [`ScriptTools::apply`] takes the call and the time, and says whether the call
//! closes ([`Closing`]); the caller of it speaks and hangs up.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::agent::accepts;
use super::script::{AnswerType, RejectAction, Script};
use super::understand::{self, AnswerValue};
use super::{
    AgentKind, AnswerRecord, AnswerSource, AnswerStatus, Outcome, ScreeningAgent, ScreeningResult,
    Speaker,
};
use voxbridge_brain::conversation::{
    EndReason, REASON_CALLBACK_REQUESTED, REASON_INCOMPLETE, REASON_KNOCK_OUT,
    REASON_LIVE_AGENT_HANDOFF, REASON_SCREENING_COMPLETE, REASON_VOICEMAIL,
};
use voxbridge_speech::{ToolCall, ToolSpec};

/// Why a tool call was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    /// Not one of the screening tools.
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

/// How the call closes after a tool call ended it.
#[derive(Debug, Clone, PartialEq)]
pub struct Closing {
    /// The script's line to say last (`None`: the model's own goodbye stands).
    pub line: Option<String>,
    /// The screening's outcome.
    pub outcome: Outcome,
    /// The `end` reason (`screening-complete`, `live-agent-handoff`, ...).
    pub reason: EndReason,
}

/// One call's screening, run by a model through tools: the script and what was gathered.
#[derive(Debug, Clone)]
pub struct ScriptTools {
    script: Arc<Script>,
    pub(crate) result: ScreeningResult,
    /// How the caller gave their last input (answers recorded now get it).
    source: AnswerSource,
}

impl ScriptTools {
    /// The tools of `script`; answers are recorded as given to `agent`.
    pub fn new(script: Arc<Script>, agent: AgentKind) -> Self {
        let mut result = ScreeningAgent::new(Arc::clone(&script)).result();
        result.agent = agent;
        Self {
            script,
            result,
            source: AnswerSource::Speech,
        }
    }

    /// The script.
    pub fn script(&self) -> &Arc<Script> {
        &self.script
    }

    /// What was gathered so far.
    pub fn result(&self) -> &ScreeningResult {
        &self.result
    }

    /// The result, for transcript lines and the end.
    pub fn result_mut(&mut self) -> &mut ScreeningResult {
        &mut self.result
    }

    /// The call started: its SID and custom parameters (`jobTitle`, `candidateId`, ...).
    pub fn start(&mut self, now_ms: u64, call_sid: String, parameters: BTreeMap<String, String>) {
        if let Some(job) = parameters.get("jobTitle").filter(|j| !j.trim().is_empty()) {
            self.result.job_title.clone_from(job);
        }
        self.result.call_sid = Some(call_sid);
        self.result.candidate_id = parameters.get("candidateId").cloned();
        self.result.parameters = parameters;
        self.result.started_at_ms = Some(now_ms);
    }

    /// Answers recorded from now on were given this way (speech or keypad).
    pub fn set_source(&mut self, source: AnswerSource) {
        self.source = source;
    }

    /// Whether the transcript has a caller or keypad line.
    pub fn caller_spoke(&self) -> bool {
        self.result
            .transcript
            .iter()
            .any(|e| e.speaker != Speaker::Bot)
    }

    /// The call is over with `outcome`.
    pub fn finish(&mut self, now_ms: u64, outcome: Outcome, end: Option<EndReason>) {
        self.result.outcome = Some(outcome);
        self.result.ended_at_ms = Some(now_ms);
        self.result.end = end;
    }

    /// The closing when the caller stopped answering (`no-answer`): incomplete if they said
    /// (or keyed) anything, else no answer.
    pub fn no_answer(&self, caller_spoke: bool) -> Closing {
        Closing {
            line: Some(self.fill(&self.script.closing.incomplete)),
            outcome: if caller_spoke {
                Outcome::Incomplete
            } else {
                Outcome::NoAnswer
            },
            reason: EndReason::new(
                voxbridge_brain::conversation::REASON_NO_ANSWER,
                "The caller stopped answering",
            ),
        }
    }

    /// `text` with `{firstName}` and `{jobTitle}` filled from the call's parameters.
    pub fn fill(&self, text: &str) -> String {
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

    /// The model's instructions: who it is, the questions in order with what each takes, and
    /// when to call which tool.
    pub fn instructions(&self) -> String {
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

    /// The three tools, for the model.
    pub fn specs() -> Vec<ToolSpec> {
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

    /// Checks and applies one tool call; `Ok(Some)` when it closes the call.
    pub fn apply(&mut self, now_ms: u64, call: &ToolCall) -> Result<Option<Closing>, ToolError> {
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
            source: self.source,
            reasks: 0,
            at_ms: now_ms,
            agent: self.result.agent,
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

    /// Whether every question has a recorded answer.
    pub fn all_answered(&self) -> bool {
        self.script
            .questions
            .iter()
            .all(|q| self.result.answer(&q.id).is_some())
    }

    /// The closing of a completed screening, by the script's rules.
    pub fn completed(&self) -> Closing {
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
}
