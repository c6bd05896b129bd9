//! ConversationRelay turns on virtual time: prompts in, tokens out, queued inputs,
//! interrupts, silence and the speaking-time estimate.

mod relay_common;

use std::time::Duration;

use relay_common::{
    Out, Relay, SILENCE, config, dialog_end, interrupt, partial, prompt, say, text, turn_end,
};
use voxbridge_session::relay::{
    DialogEvent, DialogRequest, MAX_PENDING_INPUTS, RelayConfig, RelayInput, RelayOutput,
    RelayState,
};

fn user_said(at_ms: u64, words: &str) -> Out {
    Out::Dialog(
        at_ms,
        DialogRequest::UserSaid {
            text: words.to_owned(),
        },
    )
}

#[test]
fn a_text_and_its_turn_end_go_out_as_one_last_token_with_the_exact_wire_shape() {
    let mut relay = Relay::started(config());
    assert_eq!(relay.session.state(), RelayState::InTurn);
    // The piece is held until the session knows what follows it.
    assert_eq!(relay.input(say("Hi Ana, ready?")), []);
    relay.session.handle_input(relay.now, turn_end());
    assert_eq!(
        relay.session.poll_output(),
        RelayOutput::Send(
            r#"{"type":"text","token":"Hi Ana, ready?","last":true,"interruptible":true,"preemptible":true}"#
                .to_owned()
        )
    );
    assert!(matches!(
        relay.session.poll_output(),
        RelayOutput::Timeout(_)
    ));
    assert_eq!(relay.input(RelayInput::TurnFinished), []);
    assert_eq!(relay.session.state(), RelayState::Listening);
    assert_eq!(relay.session.summary().bot_turns, 1);
}

#[test]
fn tokens_stream_as_they_come_and_the_turn_end_closes_the_talk_cycle() {
    let mut relay = Relay::started(config());
    // Nothing else ready behind the first piece (an LLM still generating): it goes out now.
    assert_eq!(relay.input(say("Hi Ana, ")), []);
    assert_eq!(
        relay.input(RelayInput::DialogWaiting),
        [text("Hi Ana, ", false)]
    );
    // Two pieces ready back to back: the first goes out when the second arrives.
    assert_eq!(relay.input(say("this is ")), []);
    assert_eq!(relay.input(say("Vox.")), [text("this is ", false)]);
    assert_eq!(relay.input(turn_end()), [text("Vox.", true)]);
    assert_eq!(relay.input(RelayInput::TurnFinished), []);
    assert_eq!(relay.session.summary().bot_turns, 1);
}

#[test]
fn a_stream_that_ends_without_turn_end_is_closed_with_an_empty_last_token() {
    let mut relay = Relay::started(config());
    relay.input(say("Hi Ana."));
    assert_eq!(
        relay.input(RelayInput::TurnFinished),
        [text("Hi Ana.", false), text("", true)]
    );
    // A turn end with no text after a closed cycle sends nothing.
    relay.frame(&prompt("yes"));
    assert_eq!(relay.input(turn_end()), []);
    assert_eq!(relay.input(RelayInput::TurnFinished), []);
    assert_eq!(relay.session.summary().bot_turns, 1);
}

#[test]
fn a_closing_line_keeps_interruptible_and_preemptible_false() {
    let mut relay = Relay::started(config());
    relay.input(RelayInput::Dialog(DialogEvent::Text {
        text: "Goodbye.".into(),
        interruptible: false,
    }));
    assert_eq!(
        relay.input(turn_end()),
        [Out::Text {
            token: "Goodbye.".into(),
            last: true,
            interruptible: false
        }]
    );
}

#[test]
fn caller_inputs_during_a_turn_wait_for_it_in_order() {
    let mut relay = Relay::started(config());
    relay.input(say("Hi Ana."));
    assert_eq!(relay.frame(&prompt("yes")), [text("Hi Ana.", false)]);
    assert_eq!(relay.frame(r#"{ "type": "dtmf", "digit": "1" }"#), []);
    assert_eq!(relay.session.pending_inputs(), 2);
    relay.now += Duration::from_millis(250);
    assert_eq!(
        relay.input(RelayInput::TurnFinished),
        [text("", true), user_said(250, "yes")]
    );
    assert_eq!(
        relay.answer("Great."),
        [
            text("Great.", true),
            Out::Dialog(250, DialogRequest::Dtmf('1'))
        ]
    );
    assert_eq!(relay.session.summary().caller_turns, 2);
}

#[test]
fn at_most_max_pending_inputs_wait_and_the_oldest_are_dropped() {
    let mut relay = Relay::started(config());
    for n in 0..MAX_PENDING_INPUTS + 4 {
        relay.frame(&prompt(&format!("answer {n}")));
    }
    assert_eq!(relay.session.pending_inputs(), MAX_PENDING_INPUTS);
    let outs = relay.answer("Hi.");
    assert_eq!(outs, [text("Hi.", true), user_said(0, "answer 4")]);
    // Every final prompt counts as a caller turn, dropped or not.
    assert_eq!(relay.session.summary().caller_turns, 20);
}

#[test]
fn a_partial_prompt_is_not_a_turn_and_a_blank_final_falls_back_to_it() {
    let mut relay = Relay::started(config());
    relay.answer("Are you authorized to work in the US?");
    assert_eq!(relay.frame(&partial("No")), []);
    assert_eq!(relay.frame(&partial("No wait, yes")), []);
    assert_eq!(relay.session.pending_inputs(), 0);
    assert_eq!(relay.frame(&prompt("yes I am")), [user_said(0, "yes I am")]);
    relay.answer("Good.");
    relay.frame(&partial("maybe"));
    assert_eq!(relay.frame(&prompt("  ")), [user_said(0, "maybe")]);
}

#[test]
fn interrupt_cancels_the_turn_and_reports_what_was_heard_before_queued_inputs() {
    let mut relay = Relay::started(config());
    relay.input(say("Hi Ana, this is Vox and I "));
    relay.input(RelayInput::DialogWaiting);
    relay.frame(&prompt("hello?"));
    relay.now += Duration::from_millis(900);
    // No `last` token: the talk cycle is over on Twilio's side already.
    assert_eq!(
        relay.frame(&interrupt("Hi Ana, this is")),
        [
            Out::CancelTurn,
            Out::Dialog(
                900,
                DialogRequest::Interrupted {
                    heard: "Hi Ana, this is".into()
                }
            )
        ]
    );
    assert_eq!(relay.session.state(), RelayState::InTurn);
    assert_eq!(relay.session.summary().bot_turns, 0);
    // The dialog has nothing to say to the interruption; then the queued prompt.
    assert_eq!(
        relay.input(RelayInput::TurnFinished),
        [user_said(900, "hello?")]
    );
    // The next turn starts a new talk cycle.
    relay.input(say("Sure."));
    assert_eq!(relay.input(turn_end()), [text("Sure.", true)]);
}

#[test]
fn interrupt_between_turns_is_the_next_dialog_input() {
    let mut relay = Relay::started(config());
    relay.answer("Hi Ana.");
    assert_eq!(
        relay.frame(&interrupt("Hi")),
        [Out::Dialog(
            0,
            DialogRequest::Interrupted { heard: "Hi".into() }
        )]
    );
}

#[test]
fn silence_is_reported_after_the_turn_has_been_spoken_and_the_timeout_passed() {
    let mut relay = Relay::started(config());
    // Four words at 100 ms: spoken by 400 ms, silence at 8.4 s.
    relay.answer("Are you there, Ana?");
    assert_eq!(relay.wake, relay.opened + Duration::from_millis(8400));
    assert_eq!(relay.advance(Duration::from_millis(8399)), []);
    assert_eq!(
        relay.advance(Duration::from_millis(1)),
        [Out::Dialog(
            8400,
            DialogRequest::Silence {
                ms: u64::try_from(SILENCE.as_millis()).unwrap()
            }
        )]
    );
    // The re-prompt is a turn like any other; its silence runs from its own end.
    relay.answer("Still there?");
    assert_eq!(
        relay.wake,
        relay.opened + Duration::from_millis(8400 + 200 + 8000)
    );
}

#[test]
fn caller_activity_stops_the_silence_timer() {
    for activity in [
        partial("um"),
        r#"{ "type": "info", "name": "clientSpeaking", "value": "on" }"#.to_owned(),
        r#"{ "type": "dtmf", "digit": "5" }"#.to_owned(),
    ] {
        let mut relay = Relay::started(config());
        relay.answer("Hello?");
        relay.advance(Duration::from_secs(2));
        let outs = relay.frame(&activity);
        assert!(
            outs.iter()
                .all(|o| !matches!(o, Out::Dialog(_, DialogRequest::Silence { .. }))),
            "{activity}: {outs:?}"
        );
        let later = relay.advance(Duration::from_secs(60));
        assert!(
            later
                .iter()
                .all(|o| !matches!(o, Out::Dialog(_, DialogRequest::Silence { .. }))),
            "{activity}: {later:?}"
        );
    }
}

#[test]
fn agent_speaking_off_cuts_the_speaking_estimate_short() {
    let mut relay = Relay::started(config());
    // Twenty words: 2 s to speak by the estimate.
    relay.answer("one two three four five six seven eight nine ten one two three four five six seven eight nine ten");
    assert_eq!(relay.wake, relay.opened + Duration::from_secs(10));
    relay.advance(Duration::from_millis(500));
    relay.frame(r#"{ "type": "info", "name": "agentSpeaking", "value": "off" }"#);
    assert_eq!(relay.wake, relay.opened + Duration::from_millis(8500));
    // `on`, or `off` after the estimate passed, changes nothing.
    relay.frame(r#"{ "type": "info", "name": "agentSpeaking", "value": "on" }"#);
    relay.advance(Duration::from_secs(1));
    relay.frame(r#"{ "type": "info", "name": "agentSpeaking", "value": "off" }"#);
    assert_eq!(relay.wake, relay.opened + Duration::from_millis(8500));
    assert_eq!(
        relay.advance(Duration::from_secs(7)),
        [Out::Dialog(8500, DialogRequest::Silence { ms: 8000 })]
    );
}

#[test]
fn agent_speaking_off_during_an_open_talk_cycle_is_ignored() {
    let mut relay = Relay::started(config());
    relay.answer("Hi there.");
    relay.frame(&prompt("yes"));
    // A new cycle is open (first piece sent, no `last` yet): the old estimate is void anyway.
    relay.input(say("one two three four five six seven eight nine ten"));
    relay.input(RelayInput::DialogWaiting);
    relay.frame(r#"{ "type": "info", "name": "agentSpeaking", "value": "off" }"#);
    relay.input(turn_end());
    relay.input(RelayInput::TurnFinished);
    assert_eq!(relay.wake, relay.opened + Duration::from_secs(1) + SILENCE);
}

#[test]
fn the_default_estimate_is_400_ms_per_word() {
    // README, `[media].relay_speech_ms_per_word`: 400 by default.
    let defaults = RelayConfig::default();
    assert_eq!(defaults.speech_per_word, Duration::from_millis(400));
    let mut relay = Relay::started(defaults);
    // Five words: spoken by 2 s, then the silence timeout.
    relay.answer("Hi Ana, are you ready?");
    assert_eq!(relay.wake, relay.opened + Duration::from_secs(2) + SILENCE);
    assert_eq!(relay.advance(Duration::from_millis(9_999)), []);
    assert_eq!(
        relay.advance(Duration::from_millis(1)),
        [Out::Dialog(10_000, DialogRequest::Silence { ms: 8000 })]
    );
}

#[test]
fn the_estimate_counts_the_words_of_the_whole_turn_not_its_pieces() {
    let mut relay = Relay::started(config());
    // An LLM's tokens split words and punctuation: "Hello there, Ana. Are you 18?" is six
    // words however it is cut.
    for piece in [
        "Hel", "lo", " there", ",", " Ana", ".", " Are", " you", " ", "18", "?",
    ] {
        relay.input(say(piece));
        relay.input(RelayInput::DialogWaiting);
    }
    relay.input(turn_end());
    relay.input(RelayInput::TurnFinished);
    assert_eq!(
        relay.wake,
        relay.opened + Duration::from_millis(600) + SILENCE
    );
    // The next turn counts afresh, even though the last piece ended inside a word.
    relay.frame(&prompt("yes"));
    relay.input(say("Good"));
    relay.input(RelayInput::DialogWaiting);
    relay.input(say("."));
    relay.input(turn_end());
    relay.input(RelayInput::TurnFinished);
    assert_eq!(
        relay.wake,
        relay.opened + Duration::from_millis(100) + SILENCE
    );
}

#[test]
fn agent_speaking_off_sends_the_pending_end_at_once() {
    let mut relay = Relay::started(config());
    relay.input(RelayInput::Dialog(DialogEvent::Text {
        text: "one two three four five six seven eight nine ten, goodbye.".into(),
        interruptible: false,
    }));
    relay.input(RelayInput::Dialog(DialogEvent::TurnEnd { last: true }));
    relay.input(dialog_end("screening-complete", "All questions answered"));
    relay.input(RelayInput::TurnFinished);
    // Eleven words: `end` would wait 1.1 s for them.
    assert_eq!(relay.wake, relay.opened + Duration::from_millis(1100));
    assert_eq!(relay.advance(Duration::from_millis(300)), []);
    // Twilio says the line is over: nothing is left to wait for.
    assert_eq!(
        relay.frame(
            r#"{ "type": "info", "name": "agentSpeaking", "value": "off", "ts": 1752091234567 }"#
        ),
        []
    );
    assert_eq!(relay.wake, relay.now);
    assert_eq!(
        relay.advance(Duration::ZERO),
        [relay_common::end(
            "screening-complete",
            "All questions answered"
        )]
    );
    assert_eq!(relay.session.state(), RelayState::Ending);
}

#[test]
fn the_dialogs_end_goes_out_once_the_closing_line_has_played() {
    let mut relay = Relay::started(config());
    relay.input(RelayInput::Dialog(DialogEvent::Text {
        text: "Thanks, we will call you.".into(),
        interruptible: false,
    }));
    relay.input(RelayInput::Dialog(DialogEvent::TurnEnd { last: true }));
    assert_eq!(
        relay.input(dialog_end("screening-complete", "All questions answered")),
        []
    );
    relay.input(RelayInput::TurnFinished);
    assert_eq!(relay.session.state(), RelayState::Ending);
    // Five words: 500 ms.
    assert_eq!(relay.advance(Duration::from_millis(499)), []);
    assert_eq!(
        relay.advance(Duration::from_millis(1)),
        [relay_common::end(
            "screening-complete",
            "All questions answered"
        )]
    );
    // Caller input after the end starts no turn.
    assert_eq!(relay.frame(&prompt("wait")), []);
}

#[test]
fn an_end_with_nothing_said_goes_out_when_the_turn_finishes() {
    let mut relay = Relay::started(config());
    relay.input(dialog_end(
        "live-agent-handoff",
        "Caller asked for a person",
    ));
    assert_eq!(relay.input(RelayInput::TurnFinished), []);
    assert_eq!(
        relay.advance(Duration::ZERO),
        [relay_common::end(
            "live-agent-handoff",
            "Caller asked for a person"
        )]
    );
}

#[test]
fn digits_and_language_are_sent_when_valid_and_dropped_when_not() {
    let mut relay = Relay::started(config());
    let mut outs = relay.input(RelayInput::Dialog(DialogEvent::SendDigits("12w#".into())));
    outs.extend(relay.input(RelayInput::Dialog(DialogEvent::SendDigits("12x".into()))));
    outs.extend(relay.input(RelayInput::Dialog(DialogEvent::Language {
        tts: Some("es-ES".into()),
        transcription: None,
    })));
    outs.extend(relay.input(RelayInput::Dialog(DialogEvent::Language {
        tts: None,
        transcription: None,
    })));
    assert_eq!(
        outs,
        [
            Out::Digits("12w#".into()),
            Out::Language(Some("es-ES".into()), None)
        ]
    );
}

#[test]
fn a_dialog_that_has_ended_takes_no_more_turns() {
    let mut relay = Relay::started(config());
    relay.answer("Hi.");
    relay.frame(&prompt("one"));
    relay.frame(&interrupt("x"));
    // The shell found the dialog ended when asked for a turn.
    assert_eq!(relay.input(RelayInput::DialogEnded), []);
    assert_eq!(relay.session.pending_inputs(), 0);
    assert_eq!(relay.session.state(), RelayState::Listening);
    assert_eq!(relay.frame(&prompt("two")), []);
    assert_eq!(relay.session.pending_inputs(), 0);
}

#[test]
fn deadlines_wait_while_a_turn_runs() {
    let mut relay = Relay::started(relay_common::config());
    let max = relay.session.config().max_call_duration;
    relay.input(say("Let me think"));
    relay.input(RelayInput::DialogWaiting);
    // The model hangs past the maximum duration: nothing fires while the turn runs.
    assert_eq!(relay.advance(max + Duration::from_secs(1)), []);
    // Once it finishes, the overdue deadline fires at once.
    relay.input(RelayInput::TurnFinished);
    assert!(relay.wake <= relay.now);
    assert_eq!(
        relay.advance(Duration::ZERO),
        [relay_common::end(
            "max-duration",
            "Maximum call duration reached"
        )]
    );
}

#[test]
fn dialog_events_outside_a_turn_are_ignored() {
    let mut relay = Relay::started(config());
    relay.answer("Hi.");
    assert_eq!(relay.input(say("stray")), []);
    assert_eq!(relay.input(turn_end()), []);
    assert_eq!(relay.input(RelayInput::TurnFinished), []);
    assert_eq!(relay.session.summary().bot_turns, 1);
}
