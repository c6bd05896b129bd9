//! Malformed ConversationRelay frames: each is counted and skipped, a good message resets the
//! run, and `max_consecutive_errors` in a row close with 1007.

mod relay_common;

use relay_common::{CALL_SID, Out, Relay, config, prompt, setup_json};
use voxbridge_session::relay::{
    DialogRequest, FrameError, RelayConfig, RelayEndReason, RelayInput, RelayState,
};
use voxbridge_twilio::relay::RelayError;

fn closed_malformed(outs: &[Out], bad_messages: u32) {
    let n = outs.len();
    assert!(n >= 2, "{outs:?}");
    match &outs[n - 2] {
        Out::Ended(summary) => {
            assert_eq!(summary.end, Some(RelayEndReason::Malformed));
            assert_eq!(summary.bad_messages, bad_messages);
        }
        other => panic!("expected Ended, got {other:?} in {outs:?}"),
    }
    assert_eq!(
        outs[n - 1],
        Out::Close(1007, "Too many consecutive malformed messages")
    );
}

#[test]
fn a_run_of_malformed_messages_closes_1007_and_a_good_one_resets_it() {
    let mut relay = Relay::started(config());
    relay.answer("Hi.");
    for _ in 0..9 {
        assert_eq!(relay.frame(r#"{"type":"bogus"}"#), []);
    }
    assert!(matches!(
        relay.session.last_error(),
        Some(FrameError::Protocol(RelayError::UnknownType(t))) if t == "bogus"
    ));
    // Nine in a row, then a good message: the session goes on and the run resets.
    assert_eq!(
        relay.frame(&prompt("yes")),
        [Out::Dialog(
            0,
            DialogRequest::UserSaid { text: "yes".into() }
        )]
    );
    assert!(relay.session.last_error().is_none());
    relay.answer("Next?");
    let bad = [
        "not json",
        r#"{"voicePrompt":"no type"}"#,
        r#"{"type":"prompt"}"#,
        r#"{"type":"text","token":"wrong direction"}"#,
        r#"{ "type": "setup", "sessionId": "VX00000000000000000000000000000000" }"#,
    ];
    let mut outs = Vec::new();
    for message in bad {
        for _ in 0..2 {
            assert_eq!(relay.session.state(), RelayState::Listening);
            outs.extend(relay.frame(message));
        }
    }
    assert_eq!(outs[0], Out::Dialog(0, DialogRequest::Hangup), "{outs:?}");
    closed_malformed(&outs, 19);
    assert_eq!(outs.len(), 3);
}

#[test]
fn the_limit_comes_from_the_config() {
    let mut relay = Relay::started(RelayConfig {
        max_consecutive_errors: 3,
        ..config()
    });
    assert_eq!(relay.frame("{"), []);
    assert_eq!(relay.frame("{"), []);
    let outs = relay.frame("{");
    // The greeting turn was running: it is cancelled first.
    assert_eq!(outs[0], Out::CancelTurn);
    closed_malformed(&outs, 3);
}

#[test]
fn a_binary_frame_is_malformed() {
    let mut relay = Relay::started(RelayConfig {
        max_consecutive_errors: 2,
        ..config()
    });
    assert_eq!(relay.input(RelayInput::Binary { len: 320 }), []);
    assert!(matches!(
        relay.session.last_error(),
        Some(FrameError::Binary(320))
    ));
    assert_eq!(
        relay
            .session
            .last_error()
            .map(ToString::to_string)
            .as_deref(),
        Some("binary frame of 320 bytes")
    );
    closed_malformed(&relay.input(RelayInput::Binary { len: 1 }), 2);
}

#[test]
fn an_oversize_frame_is_malformed_even_when_it_is_valid_json() {
    let mut relay = Relay::started(RelayConfig {
        max_message_bytes: 1000,
        ..config()
    });
    relay.answer("Hi.");
    let long = prompt(&"yes ".repeat(250));
    assert!(long.len() > 1000);
    assert_eq!(relay.frame(&long), []);
    assert!(matches!(
        relay.session.last_error(),
        Some(FrameError::Oversize(n)) if *n == long.len()
    ));
    assert_eq!(relay.session.summary().bad_messages, 1);
    assert_eq!(relay.session.summary().caller_turns, 0);
    // A message of exactly the limit is fine.
    let exact = format!(
        r#"{{"type":"prompt","voicePrompt":"{}","last":true}}"#,
        "y".repeat(1000 - 46)
    );
    assert_eq!(exact.len(), 1000);
    assert!(matches!(
        relay.frame(&exact).as_slice(),
        [Out::Dialog(_, DialogRequest::UserSaid { .. })]
    ));
}

#[test]
fn messages_before_setup_are_malformed_and_setup_still_works_after() {
    let mut relay = Relay::new(config());
    for message in [
        prompt("hello"),
        r#"{ "type": "dtmf", "digit": "1" }"#.to_owned(),
        r#"{ "type": "info", "name": "agentSpeaking", "value": "off" }"#.to_owned(),
    ] {
        assert_eq!(relay.frame(&message), []);
        assert!(
            matches!(
                relay.session.last_error(),
                Some(FrameError::OutOfOrder("a message before setup"))
            ),
            "{message}"
        );
    }
    assert_eq!(relay.session.summary().caller_turns, 0);
    assert_eq!(relay.frame(&setup_json()), [Out::SetupReceived]);
    assert_eq!(relay.session.summary().bad_messages, 3);
    assert_eq!(relay.session.summary().call_sid, CALL_SID);
}

#[test]
fn a_second_setup_is_malformed_and_changes_nothing() {
    let mut relay = Relay::started(config());
    let second = setup_json().replace(CALL_SID, "CA99999999999999999999999999999999");
    assert_eq!(relay.frame(&second), []);
    assert!(matches!(
        relay.session.last_error(),
        Some(FrameError::OutOfOrder("a second setup"))
    ));
    assert_eq!(relay.session.summary().call_sid, CALL_SID);
    assert_eq!(
        relay.session.setup().map(|s| s.call_sid.as_str()),
        Some(CALL_SID)
    );
}

#[test]
fn twilio_error_reports_and_unknown_info_are_good_messages() {
    let mut relay = Relay::started(RelayConfig {
        max_consecutive_errors: 2,
        ..config()
    });
    relay.frame("{");
    assert_eq!(
        relay.frame(r#"{ "type": "error", "description": "Invalid message received" }"#),
        []
    );
    relay.frame("{");
    assert_eq!(
        relay.frame(r#"{ "type": "info", "name": "tokensPlayed", "value": "Hi" }"#),
        []
    );
    assert!(!relay.session.is_ended());
    assert_eq!(relay.session.summary().bad_messages, 2);
}
