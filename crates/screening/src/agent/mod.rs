//! The scripted screening state machine.
//!
//! Greeting and first question in one turn, then one question per turn. A clear answer moves
//! on (with a short acknowledgement); an unclear one is re-asked up to the question's
//! `max_reasks`, then recorded as unclear. A rejected answer either knocks out (polite close,
//! `not_qualified`) or flags. Handoff, callback and voicemail intents end the call at once;
//! "repeat that" and an interrupted question are re-asked without using up a re-ask (at most
//! [`FREE_REASKS`] times per question, so a caller cannot loop the agent forever).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::script::{AnswerType, RejectAction, Script, UnclearAction};
use super::understand::{self, AnswerValue, Intent, Utterance};
use super::{
    AgentKind, AnswerRecord, AnswerSource, AnswerStatus, Outcome, ScreeningResult, Speaker,
    TranscriptEntry,
};
use voxbridge_brain::conversation::{
    Conversation, ConversationInput, ConversationOutput, EndReason, REASON_CALLBACK_REQUESTED,
    REASON_INCOMPLETE, REASON_KNOCK_OUT, REASON_LIVE_AGENT_HANDOFF, REASON_NO_ANSWER,
    REASON_SCREENING_COMPLETE, REASON_VOICEMAIL,
};
use voxbridge_brain::outcome::CallOutcome;

/// Re-asks per question that do not count against `max_reasks` ("repeat that", a question
/// cut by an interruption) before such turns count as unclear.
pub const FREE_REASKS: u8 = 3;

/// Longest keypad number buffered before `#`.
const MAX_DTMF_DIGITS: usize = 6;

/// Share of a question's words the caller must have heard for an interrupted question to
/// count as asked.
const HEARD_PERCENT: usize = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NotStarted,
    Asking,
    Ended,
}

#[derive(Debug, Clone, Copy)]
struct BotTurn {
    /// Index in the transcript.
    entry: usize,
    /// Words the caller must have heard for the question to count as asked (0 = not a
    /// question turn).
    required_words: usize,
}

/// The scripted screening agent of one call.
// Independent per-call flags, each read in one place; an enum would not make them clearer.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug)]
pub struct ScreeningAgent {
    script: Arc<Script>,
    phase: Phase,
    outputs: VecDeque<ConversationOutput>,
    index: usize,
    reasks: u8,
    free_reasks: u8,
    silences: u8,
    pending_reask: bool,
    dtmf: String,
    flagged: bool,
    unclear_skipped: bool,
    caller_spoke: bool,
    last_bot: Option<BotTurn>,
    first_name: Option<String>,
    job_title: Option<String>,
    result: ScreeningResult,
}

impl ScreeningAgent {
    /// An agent that will run `script` once it gets [`ConversationInput::Started`].
    pub fn new(script: Arc<Script>) -> Self {
        let result = ScreeningResult {
            screening_id: script.id.clone(),
            job_title: script.job_title.clone(),
            call_sid: None,
            candidate_id: None,
            parameters: BTreeMap::new(),
            outcome: None,
            end: None,
            answers: Vec::new(),
            transcript: Vec::new(),
            started_at_ms: None,
            ended_at_ms: None,
            agent: AgentKind::Script,
            fallback: None,
        };
        Self {
            script,
            phase: Phase::NotStarted,
            outputs: VecDeque::new(),
            index: 0,
            reasks: 0,
            free_reasks: 0,
            silences: 0,
            pending_reask: false,
            dtmf: String::new(),
            flagged: false,
            unclear_skipped: false,
            caller_spoke: false,
            last_bot: None,
            first_name: None,
            job_title: None,
            result,
        }
    }

    /// Continues a call another agent started (the LLM agent's fallback): `result` holds the
    /// answers and transcript so far. Asks the first question without an answer, after
    /// `prefix`, or closes the call if every question has one. Knock-outs and flags already
    /// recorded keep their effect on the outcome.
    pub fn resume(
        script: &Arc<Script>,
        result: ScreeningResult,
        now_ms: u64,
        prefix: &str,
    ) -> Self {
        let mut agent = Self::new(Arc::clone(script));
        agent.first_name = result.parameters.get("firstName").cloned();
        agent.job_title = result
            .parameters
            .get("jobTitle")
            .filter(|j| !j.trim().is_empty())
            .cloned();
        agent.caller_spoke = result.transcript.iter().any(|e| e.speaker != Speaker::Bot);
        agent.flagged = result.answers.iter().any(|a| {
            a.status == AnswerStatus::Rejected
                && script
                    .questions
                    .iter()
                    .any(|q| q.id == a.question_id && q.on_reject == RejectAction::Flag)
        });
        agent.unclear_skipped = result
            .answers
            .iter()
            .any(|a| a.status == AnswerStatus::Unclear);
        agent.result = result;
        agent.phase = Phase::Asking;
        let next = script
            .questions
            .iter()
            .position(|q| agent.result.answer(&q.id).is_none());
        if let Some(index) = next {
            agent.index = index;
            agent.ask(now_ms, prefix, false);
        } else {
            // Every question has an answer: `advance` from the last one closes the call.
            agent.index = script.questions.len() - 1;
            agent.advance(now_ms, true);
        }
        agent
    }

    /// The script being run.
    pub fn script(&self) -> &Script {
        &self.script
    }

    fn fill(&self, text: &str) -> String {
        self.script
            .fill(text, self.first_name.as_deref(), self.job_title.as_deref())
    }

    fn say(&mut self, now_ms: u64, text: String, required_words: usize, last: bool) {
        self.result.transcript.push(TranscriptEntry {
            at_ms: now_ms,
            speaker: Speaker::Bot,
            text: text.clone(),
            interrupted: false,
            confidence: None,
        });
        self.last_bot = Some(BotTurn {
            entry: self.result.transcript.len() - 1,
            required_words,
        });
        self.outputs.push_back(ConversationOutput::Say {
            text,
            interruptible: !last,
            last,
        });
    }

    /// Asks the current question after `prefix` ("Thanks.", a re-ask line, the greeting);
    /// `hint` adds the DTMF hint.
    fn ask(&mut self, now_ms: u64, prefix: &str, hint: bool) {
        let question = &self.script.questions[self.index];
        let prompt = question.prompt.clone();
        let hint_text = question.dtmf_hint.clone().filter(|_| hint);
        let prefix_words = word_count(prefix);
        let prompt_words = word_count(&prompt);
        let required = prefix_words + (prompt_words * HEARD_PERCENT).div_ceil(100);
        let mut text = String::new();
        for part in [prefix, &prompt, hint_text.as_deref().unwrap_or("")] {
            if !part.is_empty() {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(part);
            }
        }
        self.pending_reask = false;
        self.say(now_ms, text, required, false);
    }

    fn close(
        &mut self,
        now_ms: u64,
        line: &str,
        outcome: Outcome,
        reason_code: &str,
        reason: String,
    ) {
        let line = self.fill(line);
        if !line.trim().is_empty() {
            self.say(now_ms, line, 0, true);
        }
        let end = EndReason::new(reason_code, reason);
        self.outputs.push_back(ConversationOutput::End(end.clone()));
        self.result.end = Some(end);
        self.finish(now_ms, outcome);
    }

    fn finish(&mut self, now_ms: u64, outcome: Outcome) {
        self.result.outcome = Some(outcome);
        self.result.ended_at_ms = Some(now_ms);
        self.phase = Phase::Ended;
    }

    fn start(&mut self, now_ms: u64, call_sid: String, parameters: BTreeMap<String, String>) {
        self.first_name = parameters.get("firstName").cloned();
        self.job_title = parameters
            .get("jobTitle")
            .filter(|j| !j.trim().is_empty())
            .cloned();
        if let Some(job) = &self.job_title {
            self.result.job_title.clone_from(job);
        }
        self.result.call_sid = Some(call_sid);
        self.result.candidate_id = parameters.get("candidateId").cloned();
        self.result.parameters = parameters;
        self.result.started_at_ms = Some(now_ms);
        self.phase = Phase::Asking;
        let greeting = self.fill(&self.script.greeting);
        self.ask(now_ms, &greeting, false);
    }

    fn record(
        &mut self,
        now_ms: u64,
        raw: String,
        value: Option<AnswerValue>,
        confidence: f32,
        status: AnswerStatus,
        source: AnswerSource,
    ) {
        self.result.answers.push(AnswerRecord {
            question_id: self.script.questions[self.index].id.clone(),
            raw,
            value,
            confidence,
            status,
            source,
            reasks: self.reasks,
            at_ms: now_ms,
            agent: AgentKind::Script,
        });
    }

    fn advance(&mut self, now_ms: u64, acknowledge: bool) {
        self.index += 1;
        self.reasks = 0;
        self.free_reasks = 0;
        self.silences = 0;
        self.dtmf.clear();
        if self.index < self.script.questions.len() {
            let ack = if acknowledge {
                let acks = &self.script.acknowledgements;
                acks[(self.index - 1) % acks.len()].clone()
            } else {
                "Let's move on.".to_owned()
            };
            self.ask(now_ms, &ack, false);
            return;
        }
        let script = Arc::clone(&self.script);
        let (line, outcome, code) = if self.flagged {
            (
                &script.closing.not_qualified,
                Outcome::NotQualified,
                REASON_SCREENING_COMPLETE,
            )
        } else if self.unclear_skipped {
            (
                &script.closing.incomplete,
                Outcome::Incomplete,
                REASON_INCOMPLETE,
            )
        } else {
            (
                &script.closing.qualified,
                Outcome::Qualified,
                REASON_SCREENING_COMPLETE,
            )
        };
        self.close(
            now_ms,
            line,
            outcome,
            code,
            format!("All {} questions asked", script.questions.len()),
        );
    }

    /// An understood answer: accept or reject it by the question's rule.
    fn answer(
        &mut self,
        now_ms: u64,
        raw: String,
        value: AnswerValue,
        confidence: f32,
        source: AnswerSource,
    ) {
        let script = Arc::clone(&self.script);
        let question = &script.questions[self.index];
        let accepted = accepts(&question.answer, &value);
        let status = if accepted {
            AnswerStatus::Accepted
        } else {
            AnswerStatus::Rejected
        };
        self.record(now_ms, raw, Some(value), confidence, status, source);
        if accepted {
            self.advance(now_ms, true);
            return;
        }
        match question.on_reject {
            RejectAction::KnockOut => {
                let line = question
                    .reject_line
                    .as_deref()
                    .unwrap_or(&script.closing.not_qualified);
                self.close(
                    now_ms,
                    line,
                    Outcome::NotQualified,
                    REASON_KNOCK_OUT,
                    format!("Answer to {} is not accepted", question.id),
                );
            }
            RejectAction::Flag => {
                self.flagged = true;
                self.advance(now_ms, true);
            }
        }
    }

    /// Not understood: re-ask while the budget lasts, then record as unclear.
    fn unclear(&mut self, now_ms: u64, raw: String, source: AnswerSource) {
        let script = Arc::clone(&self.script);
        let question = &script.questions[self.index];
        if self.reasks < question.max_reasks {
            self.reasks += 1;
            self.ask(now_ms, &script.reask_prefix, true);
            return;
        }
        self.record(now_ms, raw, None, 0.0, AnswerStatus::Unclear, source);
        match question.on_unclear {
            UnclearAction::Skip => {
                self.unclear_skipped = true;
                self.advance(now_ms, false);
            }
            UnclearAction::End => self.close(
                now_ms,
                &script.closing.incomplete,
                Outcome::Incomplete,
                REASON_INCOMPLETE,
                format!("No clear answer to {}", question.id),
            ),
        }
    }

    /// A re-ask that does not use up `max_reasks`; past [`FREE_REASKS`] it counts as unclear.
    fn free_reask(&mut self, now_ms: u64, raw: String, prefix: &str) {
        if self.free_reasks < FREE_REASKS {
            self.free_reasks += 1;
            self.ask(now_ms, prefix, false);
        } else {
            self.unclear(now_ms, raw, AnswerSource::Speech);
        }
    }

    fn handle_user_said(&mut self, now_ms: u64, text: String, asr: Option<f32>) {
        self.result.transcript.push(TranscriptEntry {
            at_ms: now_ms,
            speaker: Speaker::Caller,
            text: text.clone(),
            interrupted: false,
            confidence: asr,
        });
        self.silences = 0;
        let first_turn = !self.caller_spoke;
        self.caller_spoke = true;
        let script = Arc::clone(&self.script);
        let voicemail_possible = first_turn && self.index == 0;
        match understand::detect_intent(&text, voicemail_possible) {
            Some(Intent::Handoff) => {
                return self.close(
                    now_ms,
                    &script.closing.handoff,
                    Outcome::Handoff,
                    REASON_LIVE_AGENT_HANDOFF,
                    "The caller asked to talk to a person".into(),
                );
            }
            Some(Intent::Callback) => {
                return self.close(
                    now_ms,
                    &script.closing.callback,
                    Outcome::CallbackRequested,
                    REASON_CALLBACK_REQUESTED,
                    "The caller asked to be called back later".into(),
                );
            }
            Some(Intent::Voicemail) => {
                return self.close(
                    now_ms,
                    &script.closing.voicemail,
                    Outcome::Voicemail,
                    REASON_VOICEMAIL,
                    "An answering machine picked up".into(),
                );
            }
            Some(Intent::Repeat) => return self.free_reask(now_ms, text, "Sure."),
            None => {}
        }
        if self.pending_reask {
            return self.free_reask(now_ms, text, "Sorry, let me finish the question.");
        }
        let question = &script.questions[self.index];
        let asr_factor = asr
            .filter(|c| c.is_finite())
            .map_or(1.0, |c| 0.5 + 0.5 * c.clamp(0.0, 1.0));
        match understand::understand(&question.answer, &text) {
            Some(u) if u.confidence * asr_factor >= script.min_confidence => {
                let confidence = u.confidence * asr_factor;
                self.answer(now_ms, text, u.value, confidence, AnswerSource::Speech);
            }
            _ => self.unclear(now_ms, text, AnswerSource::Speech),
        }
    }

    fn handle_dtmf(&mut self, now_ms: u64, digit: char) {
        self.result.transcript.push(TranscriptEntry {
            at_ms: now_ms,
            speaker: Speaker::Keypad,
            text: digit.to_string(),
            interrupted: false,
            confidence: None,
        });
        self.silences = 0;
        self.caller_spoke = true;
        self.pending_reask = false;
        let script = Arc::clone(&self.script);
        let question = &script.questions[self.index];
        let raw = format!("dtmf:{digit}");
        match &question.answer {
            AnswerType::YesNo { .. } => match understand::dtmf_yes_no(digit) {
                Some(value) => self.answer(
                    now_ms,
                    raw,
                    AnswerValue::YesNo { value },
                    1.0,
                    AnswerSource::Dtmf,
                ),
                None => self.unclear(now_ms, raw, AnswerSource::Dtmf),
            },
            AnswerType::Number { unit, .. } => match digit {
                '0'..='9' if self.dtmf.len() < MAX_DTMF_DIGITS => self.dtmf.push(digit),
                '*' => self.dtmf.clear(),
                '#' => {
                    let keys = std::mem::take(&mut self.dtmf);
                    let raw = format!("dtmf:{keys}#");
                    match keys.parse::<u32>() {
                        Ok(n) => self.answer(
                            now_ms,
                            raw,
                            AnswerValue::Number {
                                value: f64::from(n),
                                unit: unit.clone(),
                            },
                            1.0,
                            AnswerSource::Dtmf,
                        ),
                        Err(_) => self.unclear(now_ms, raw, AnswerSource::Dtmf),
                    }
                }
                _ => {
                    self.dtmf.clear();
                    self.unclear(now_ms, raw, AnswerSource::Dtmf);
                }
            },
            AnswerType::Choice { options, .. } => {
                let picked = digit
                    .to_digit(10)
                    .and_then(|d| (d as usize).checked_sub(1))
                    .and_then(|i| options.get(i));
                match picked {
                    Some(option) => self.answer(
                        now_ms,
                        raw,
                        AnswerValue::Choice {
                            option: option.id.clone(),
                        },
                        1.0,
                        AnswerSource::Dtmf,
                    ),
                    None => self.unclear(now_ms, raw, AnswerSource::Dtmf),
                }
            }
            AnswerType::FreeText | AnswerType::Availability { .. } => {
                self.unclear(now_ms, raw, AnswerSource::Dtmf);
            }
        }
    }

    fn handle_interrupted(&mut self, heard: &str) {
        let Some(turn) = self.last_bot else { return };
        if let Some(entry) = self.result.transcript.get_mut(turn.entry) {
            heard.trim().clone_into(&mut entry.text);
            entry.interrupted = true;
        }
        if self.phase == Phase::Asking && word_count(heard) < turn.required_words {
            self.pending_reask = true;
        }
    }

    fn handle_silence(&mut self, now_ms: u64) {
        let script = Arc::clone(&self.script);
        self.silences += 1;
        if self.silences <= script.max_silences {
            self.ask(now_ms, &script.silence_prefix, true);
            return;
        }
        let outcome = if self.caller_spoke {
            Outcome::Incomplete
        } else {
            Outcome::NoAnswer
        };
        self.close(
            now_ms,
            &script.closing.incomplete,
            outcome,
            REASON_NO_ANSWER,
            "The caller stopped answering".into(),
        );
    }
}

/// Whether `value` is within the question's accepted values.
pub(crate) fn accepts(answer: &AnswerType, value: &AnswerValue) -> bool {
    match (answer, value) {
        (AnswerType::YesNo { expected }, AnswerValue::YesNo { value }) => {
            expected.is_none_or(|e| e == *value)
        }
        (AnswerType::Number { min, max, .. }, AnswerValue::Number { value, .. }) => {
            min.is_none_or(|m| *value >= m) && max.is_none_or(|m| *value <= m)
        }
        (AnswerType::Choice { accepted, .. }, AnswerValue::Choice { option }) => {
            accepted.is_empty() || accepted.contains(option)
        }
        (
            AnswerType::Availability {
                max_days: Some(max),
            },
            AnswerValue::Availability {
                availability: understand::Availability::InDays { days },
            },
        ) => days <= max,
        _ => true,
    }
}

fn word_count(text: &str) -> usize {
    Utterance::new(text).as_str().split_whitespace().count()
}

impl Conversation for ScreeningAgent {
    fn handle(&mut self, now_ms: u64, input: ConversationInput) {
        match (self.phase, input) {
            (
                Phase::NotStarted,
                ConversationInput::Started {
                    call_sid,
                    parameters,
                },
            ) => {
                self.start(now_ms, call_sid, parameters);
            }
            (Phase::NotStarted, ConversationInput::Hangup) => {
                self.finish(now_ms, Outcome::NoAnswer);
            }
            (Phase::Asking, ConversationInput::UserSaid { text, confidence }) => {
                self.handle_user_said(now_ms, text, confidence);
            }
            (Phase::Asking, ConversationInput::Dtmf(digit)) => self.handle_dtmf(now_ms, digit),
            (Phase::Asking | Phase::Ended, ConversationInput::Interrupted { heard }) => {
                self.handle_interrupted(&heard);
            }
            (Phase::Asking, ConversationInput::Silence { .. }) => self.handle_silence(now_ms),
            (Phase::Asking, ConversationInput::Hangup) => {
                let outcome = if self.caller_spoke {
                    Outcome::Incomplete
                } else {
                    Outcome::NoAnswer
                };
                self.finish(now_ms, outcome);
            }
            // Before the start or after the end: nothing to do.
            _ => {}
        }
    }

    fn poll(&mut self) -> Option<ConversationOutput> {
        self.outputs.pop_front()
    }

    fn silence_timeout_ms(&self) -> u64 {
        self.script.silence_timeout_ms
    }

    fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    fn outcome(&self) -> CallOutcome {
        self.result.to_outcome()
    }
}

impl ScreeningAgent {
    /// What was gathered so far (complete once the conversation has ended).
    pub fn result(&self) -> ScreeningResult {
        self.result.clone()
    }
}

#[cfg(test)]
mod tests;
