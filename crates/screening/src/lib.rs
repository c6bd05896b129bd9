//! The recruiter screening agent: scripted, sans-IO, the embedded default brain.
//!
//! - [`script`]: screening scripts loaded from `config/screenings/*.toml`.
//! - [`understand`]: spoken (ASR) and DTMF answers -> values with a confidence, and intents
//!   (handoff, callback, repeat, voicemail) anywhere in a turn.
//! - [`tools`]: the script as tools a model calls, checked before they count (the LLM and
//!   realtime agents).
//! - [`agent`]: [`ScreeningAgent`], the state machine implementing
//!   [`voxbridge_brain::conversation::Conversation`]: greeting, questions in order, re-asks, knock-outs,
//!   closing; it records a [`ScreeningResult`] for the store.

pub mod agent;
pub mod catalog;
pub mod llm;
mod numbers;
pub mod script;
pub mod tools;
pub mod understand;

use std::collections::BTreeMap;

use serde::Serialize;

pub use agent::ScreeningAgent;
pub use catalog::{AgentConfig, LlmAgentConfig, Screenings};
pub use script::{Script, ScriptError, ScriptLibrary};
pub use understand::{AnswerValue, Availability, Intent, Understood};

use voxbridge_brain::conversation::EndReason;
use voxbridge_brain::dialog::Dialog;
use voxbridge_brain::outcome::{CallOutcome, Payload};
pub use voxbridge_brain::outcome::{Speaker, TranscriptEntry};
use voxbridge_brain::relay::DialogFactory;

/// How a screening call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every answer accepted.
    Qualified,
    /// An answer was rejected (knock-out or flag).
    NotQualified,
    /// The caller hung up or answers stayed unclear.
    Incomplete,
    /// The caller asked to be called back.
    CallbackRequested,
    /// The caller asked for a person.
    Handoff,
    /// An answering machine picked up.
    Voicemail,
    /// The caller never answered.
    NoAnswer,
    /// The agent could not run (set by shells, e.g. unknown script).
    Failed,
}

/// Whether an answer was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerStatus {
    /// Understood and within the accepted values.
    Accepted,
    /// Understood but outside the accepted values (knock-out or flag).
    Rejected,
    /// Not understood after all re-asks.
    Unclear,
}

/// How an answer was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerSource {
    /// Spoken.
    Speech,
    /// Keypad.
    Dtmf,
}

/// Which agent produced an answer, or ran a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// The scripted agent ([`ScreeningAgent`]).
    #[default]
    Script,
    /// The LLM agent ([`llm::LlmScreeningAgent`]).
    Llm,
    /// A speech-to-speech model (the `realtime` agent on Media Streams) through
    /// [`tools::ScriptTools`].
    Realtime,
}

/// The LLM agent handed the call to the scripted agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fallback {
    /// When, ms.
    pub at_ms: u64,
    /// Why (LLM error, timeout, invalid tool calls...).
    pub reason: String,
}

/// One recorded answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerRecord {
    /// The question id.
    pub question_id: String,
    /// What the caller said (or the keys pressed).
    pub raw: String,
    /// The parsed value; `None` when unclear.
    pub value: Option<AnswerValue>,
    /// Confidence of the parse (ASR confidence folded in).
    pub confidence: f32,
    /// Accepted, rejected or unclear.
    pub status: AnswerStatus,
    /// Speech or keypad.
    pub source: AnswerSource,
    /// Re-asks it took (unclear answers only; repeats and interruptions do not count).
    pub reasks: u8,
    /// When it was given, ms.
    pub at_ms: u64,
    /// The agent that recorded it.
    pub agent: AgentKind,
}

/// Everything a screening call gathered: what the store persists (as JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScreeningResult {
    /// The script id.
    pub screening_id: String,
    /// The job title used.
    pub job_title: String,
    /// The call SID.
    pub call_sid: Option<String>,
    /// The `candidateId` parameter.
    pub candidate_id: Option<String>,
    /// All custom parameters.
    pub parameters: BTreeMap<String, String>,
    /// `None` while the call is running.
    pub outcome: Option<Outcome>,
    /// The `end` sent, if any (`None` when the caller hung up first).
    pub end: Option<EndReason>,
    /// Answers in question order.
    pub answers: Vec<AnswerRecord>,
    /// The whole conversation.
    pub transcript: Vec<TranscriptEntry>,
    /// When the call started, ms.
    pub started_at_ms: Option<u64>,
    /// When it ended, ms.
    pub ended_at_ms: Option<u64>,
    /// The agent the call started with.
    pub agent: AgentKind,
    /// Set when the LLM agent fell back to the script mid-call.
    pub fallback: Option<Fallback>,
}

impl ScreeningResult {
    /// The answer to `question_id`, if recorded.
    pub fn answer(&self, question_id: &str) -> Option<&AnswerRecord> {
        self.answers.iter().find(|a| a.question_id == question_id)
    }

    /// The neutral call outcome that carries this result as its payload.
    pub fn to_outcome(&self) -> CallOutcome {
        CallOutcome {
            transcript: self.transcript.clone(),
            end: self.end.clone(),
            parameters: self.parameters.clone(),
            started_at_ms: self.started_at_ms,
            ended_at_ms: self.ended_at_ms,
            payload: Some(Payload::new(self.clone())),
        }
    }
}

voxbridge_brain::domain_result!(ScreeningResult, "screening");

/// ConversationRelay sessions get their dialog from the screening catalog.
impl DialogFactory for Screenings {
    fn name(&self) -> &'static str {
        self.agent_name()
    }

    fn dialog(&self, parameters: &BTreeMap<String, String>) -> Result<Box<dyn Dialog>, String> {
        Screenings::dialog(self, parameters).map_err(|e| e.to_string())
    }
}
