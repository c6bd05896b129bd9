use std::path::PathBuf;

use super::*;
use crate::script::ScriptLibrary;
use crate::script::{self, ScriptError};

fn library() -> ScriptLibrary {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/screenings");
    ScriptLibrary::load_dir(&dir).expect("shipped scripts load")
}

struct Call {
    agent: ScreeningAgent,
    now: u64,
}

impl Call {
    fn start(script: &str) -> (Self, Vec<ConversationOutput>) {
        let script = library().get(script).expect("script exists");
        let mut call = Self {
            agent: ScreeningAgent::new(script),
            now: 0,
        };
        let parameters = [
            ("candidateId", "cand-42"),
            ("firstName", "Ana"),
            ("screening", "default"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let out = call.send(ConversationInput::Started {
            call_sid: "CA00000000000000000000000000000000".into(),
            parameters,
        });
        (call, out)
    }

    fn send(&mut self, input: ConversationInput) -> Vec<ConversationOutput> {
        self.now += 1_000;
        self.agent.handle(self.now, input);
        std::iter::from_fn(|| self.agent.poll()).collect()
    }

    fn say(&mut self, text: &str) -> Vec<ConversationOutput> {
        self.send(ConversationInput::UserSaid {
            text: text.into(),
            confidence: Some(0.92),
        })
    }
}

fn spoken(out: &[ConversationOutput]) -> String {
    out.iter()
        .filter_map(|o| match o {
            ConversationOutput::Say { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn end_code(out: &[ConversationOutput]) -> Option<&str> {
    out.iter().find_map(|o| match o {
        ConversationOutput::End(reason) => Some(reason.reason_code.as_str()),
        _ => None,
    })
}

#[test]
fn happy_path_is_qualified() {
    let (mut call, out) = Call::start("default");
    let greeting = spoken(&out);
    assert!(greeting.starts_with("Hi Ana, this is Vox"), "{greeting}");
    assert!(greeting.contains("Warehouse Associate"));
    assert!(greeting.ends_with("Are you legally authorized to work in the United States?"));
    assert!(spoken(&call.say("yep, I am")).contains("at least 18"));
    assert!(spoken(&call.say("yes")).contains("forklift"));
    assert!(spoken(&call.say("about five years")).contains("shift"));
    assert!(spoken(&call.say("nights")).contains("start"));
    assert!(spoken(&call.say("in two weeks")).contains("transportation"));
    let out = call.say("absolutely");
    assert_eq!(end_code(&out), Some(REASON_SCREENING_COMPLETE));
    assert!(matches!(
        out.first(),
        Some(ConversationOutput::Say {
            last: true,
            interruptible: false,
            ..
        })
    ));
    assert!(spoken(&out).contains("You meet the requirements"));
    assert!(call.agent.is_ended());
    let result = call.agent.result();
    assert_eq!(result.outcome, Some(Outcome::Qualified));
    assert_eq!(result.candidate_id.as_deref(), Some("cand-42"));
    assert_eq!(result.answers.len(), 6);
    let forklift = result.answer("forklift_years").expect("recorded");
    assert_eq!(forklift.raw, "about five years");
    assert!(
        matches!(forklift.value, Some(AnswerValue::Number { value, .. }) if (value - 5.0).abs() < 1e-9)
    );
    assert!(forklift.confidence < 0.8, "hedged: {}", forklift.confidence);
    assert_eq!(
        result
            .answer("shift_preference")
            .and_then(|a| a.value.clone()),
        Some(AnswerValue::Choice {
            option: "night".into()
        })
    );
    // 7 bot turns + 6 caller turns, timestamps increasing.
    assert_eq!(result.transcript.len(), 13);
    assert!(
        result
            .transcript
            .windows(2)
            .all(|w| w[0].at_ms <= w[1].at_ms)
    );
    let json = serde_json::to_value(&result).expect("serializes");
    assert_eq!(json["outcome"], "qualified");
    assert_eq!(json["answers"][0]["value"]["type"], "yes_no");
    // Inputs after the end are ignored.
    assert!(call.say("hello?").is_empty());
}

#[test]
fn knock_out_closes_politely() {
    let (mut call, _) = Call::start("default");
    let out = call.say("no, I'm not authorized");
    assert_eq!(end_code(&out), Some(REASON_KNOCK_OUT));
    assert!(spoken(&out).contains("requires work authorization"));
    let result = call.agent.result();
    assert_eq!(result.outcome, Some(Outcome::NotQualified));
    assert_eq!(result.answers[0].status, AnswerStatus::Rejected);
}

#[test]
fn flagged_answer_continues_then_not_qualified() {
    let (mut call, _) = Call::start("default");
    for answer in ["yes", "yes", "3", "days", "right away"] {
        call.say(answer);
    }
    let out = call.say("no I don't have a car");
    assert_eq!(end_code(&out), Some(REASON_SCREENING_COMPLETE));
    assert_eq!(call.agent.result().outcome, Some(Outcome::NotQualified));
}

#[test]
fn unclear_answer_is_reasked_then_parsed() {
    let (mut call, _) = Call::start("default");
    let out = call.say("the weather is lovely");
    let text = spoken(&out);
    assert!(
        text.starts_with("Sorry, I didn't quite catch that."),
        "{text}"
    );
    assert!(
        text.contains("press 1 for yes"),
        "re-ask carries the DTMF hint: {text}"
    );
    let out = call.say("yeah");
    assert!(spoken(&out).contains("at least 18"));
    let answer = call.agent.result().answers[0].clone();
    assert_eq!(answer.reasks, 1);
    assert_eq!(answer.status, AnswerStatus::Accepted);
}

#[test]
fn unclear_after_all_reasks_is_recorded_and_skipped() {
    let (mut call, _) = Call::start("default");
    call.say("banana");
    call.say("banana");
    let out = call.say("banana");
    assert!(spoken(&out).contains("Let's move on."), "{}", spoken(&out));
    let result = call.agent.result();
    assert_eq!(result.answers[0].status, AnswerStatus::Unclear);
    assert_eq!(result.answers[0].value, None);
    assert_eq!(result.answers[0].reasks, 2);
}

#[test]
fn interrupted_question_is_reasked_without_counting() {
    let (mut call, _) = Call::start("default");
    call.say("yes");
    // The caller cuts "Are you at least 18 years old?" after "Thanks. Are you".
    call.send(ConversationInput::Interrupted {
        heard: "Thanks. Are you".into(),
    });
    let out = call.say("hello?");
    let text = spoken(&out);
    assert!(text.contains("let me finish"), "{text}");
    assert!(text.contains("at least 18"), "{text}");
    let result = call.agent.result();
    let cut = &result.transcript[2];
    assert!(cut.interrupted);
    assert_eq!(cut.text, "Thanks. Are you");
    // Answered after the re-ask: no re-ask counted.
    call.say("yes I am");
    let answer = call.agent.result().answers[1].clone();
    assert_eq!(answer.reasks, 0);
    assert_eq!(answer.status, AnswerStatus::Accepted);
}

#[test]
fn interruption_after_the_question_was_heard_takes_the_answer() {
    let (mut call, _) = Call::start("default");
    call.say("yes");
    call.send(ConversationInput::Interrupted {
        heard: "Got it. Are you at least 18 years".into(),
    });
    let out = call.say("yes");
    assert!(spoken(&out).contains("forklift"));
}

#[test]
fn dtmf_answers() {
    let (mut call, _) = Call::start("default");
    assert!(spoken(&call.send(ConversationInput::Dtmf('1'))).contains("18"));
    assert!(spoken(&call.send(ConversationInput::Dtmf('1'))).contains("forklift"));
    assert!(call.send(ConversationInput::Dtmf('1')).is_empty());
    assert!(call.send(ConversationInput::Dtmf('2')).is_empty());
    assert!(spoken(&call.send(ConversationInput::Dtmf('#'))).contains("shift"));
    assert!(spoken(&call.send(ConversationInput::Dtmf('4'))).contains("start"));
    let result = call.agent.result();
    let years = result.answer("forklift_years").expect("recorded");
    assert_eq!(years.raw, "dtmf:12#");
    assert_eq!(years.source, AnswerSource::Dtmf);
    assert!(
        matches!(years.value, Some(AnswerValue::Number { value, .. }) if (value - 12.0).abs() < 1e-9)
    );
    assert_eq!(
        result
            .answer("shift_preference")
            .and_then(|a| a.value.clone()),
        Some(AnswerValue::Choice {
            option: "flexible".into()
        })
    );
    // Availability has no keypad answer: re-asked.
    let out = call.send(ConversationInput::Dtmf('2'));
    assert!(spoken(&out).starts_with("Sorry"), "{}", spoken(&out));
}

#[test]
fn handoff_ends_with_live_agent_handoff() {
    let (mut call, _) = Call::start("default");
    call.say("yes");
    let out = call.say("actually can I talk to a real person");
    assert_eq!(end_code(&out), Some(REASON_LIVE_AGENT_HANDOFF));
    assert!(spoken(&out).contains("connect you"));
    let result = call.agent.result();
    assert_eq!(result.outcome, Some(Outcome::Handoff));
    assert_eq!(result.answers.len(), 1);
    let end = result.end.expect("end recorded");
    assert_eq!(
        end.handoff_data_json(),
        r#"{"reasonCode":"live-agent-handoff","reason":"The caller asked to talk to a person"}"#
    );
}

#[test]
fn callback_request_closes_politely() {
    let (mut call, _) = Call::start("driver");
    let out = call.say("sorry, I'm driving, can you call me later");
    assert_eq!(end_code(&out), Some(REASON_CALLBACK_REQUESTED));
    assert!(spoken(&out).contains("call you back"));
    assert_eq!(
        call.agent.result().outcome,
        Some(Outcome::CallbackRequested)
    );
}

#[test]
fn hangup_mid_interview_keeps_answers() {
    let (mut call, _) = Call::start("default");
    call.say("yes");
    call.say("yes");
    assert!(call.send(ConversationInput::Hangup).is_empty());
    let result = call.agent.result();
    assert_eq!(result.outcome, Some(Outcome::Incomplete));
    assert_eq!(result.answers.len(), 2);
    assert_eq!(result.end, None);
    assert!(result.ended_at_ms.is_some());
}

#[test]
fn silence_reprompts_then_no_answer() {
    let (mut call, _) = Call::start("default");
    let out = call.send(ConversationInput::Silence { ms: 8_000 });
    assert!(spoken(&out).starts_with("Are you still there?"));
    call.send(ConversationInput::Silence { ms: 8_000 });
    let out = call.send(ConversationInput::Silence { ms: 8_000 });
    assert_eq!(end_code(&out), Some(REASON_NO_ANSWER));
    assert_eq!(call.agent.result().outcome, Some(Outcome::NoAnswer));
}

#[test]
fn voicemail_greeting_ends_the_call() {
    let (mut call, _) = Call::start("default");
    let out = call.say("Hi, you've reached Ana. Please leave a message after the beep.");
    assert_eq!(end_code(&out), Some(REASON_VOICEMAIL));
    assert_eq!(call.agent.result().outcome, Some(Outcome::Voicemail));
}

#[test]
fn repeat_does_not_count_as_unclear() {
    let (mut call, _) = Call::start("default");
    let out = call.say("can you repeat that?");
    assert!(spoken(&out).contains("authorized to work"));
    call.say("yes");
    assert_eq!(call.agent.result().answers[0].reasks, 0);
}

#[test]
fn both_shipped_scripts_load() {
    let lib = library();
    assert_eq!(lib.ids().collect::<Vec<_>>(), ["default", "driver"]);
    assert!(lib.get("driver").expect("driver").questions.len() >= 5);
    let params = [("screening".to_owned(), "driver".to_owned())].into();
    assert_eq!(
        lib.select(&params, "default").expect("selects").id,
        "driver"
    );
    assert!(matches!(lib.get("nurse"), Err(ScriptError::Unknown { .. })));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn nonsense_always_ends_within_bound(words in proptest::collection::vec("[a-z]{1,8}( [a-z]{1,8}){0,4}", 200)) {
        for id in ["default", "driver"] {
            let (mut call, out) = Call::start(id);
            let questions = call.agent.script().questions.len();
            let max_reasks = usize::from(script::DEFAULT_MAX_REASKS);
            let bound = questions * (max_reasks + 1 + usize::from(FREE_REASKS)) + 3;
            let mut turns = out.len();
            for w in &words {
                if call.agent.is_ended() {
                    break;
                }
                turns += call.say(w).iter().filter(|o| matches!(o, ConversationOutput::Say { .. })).count();
            }
            proptest::prop_assert!(call.agent.is_ended(), "not ended after {} inputs", words.len());
            proptest::prop_assert!(turns <= bound, "{turns} turns > {bound}");
        }
    }
}
