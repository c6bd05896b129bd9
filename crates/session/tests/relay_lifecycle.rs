//! ConversationRelay session lifecycle on virtual time: setup, the setup deadline, a refused
//! dialog, `max_call_duration`, `end` and its linger, shutdown, a slow peer, hang-ups.

mod relay_common;

use std::time::{Duration, Instant};

use relay_common::{
    CALL_SID, Out, Relay, SESSION_ID, config, dialog_end, end, prompt, say, setup_json, text,
    turn_end,
};
use voxbridge_session::close;
use voxbridge_session::relay::{
    DialogRequest, Handoff, RelayConfig, RelayEndReason, RelayInput, RelayOutput, RelaySession,
    RelayState, RelaySummary,
};

/// The summary the shell gets at the end of a session set up by `Relay::started`.
fn summary(end: RelayEndReason, caller_turns: u32, bot_turns: u32) -> RelaySummary {
    RelaySummary {
        call_sid: CALL_SID.into(),
        session_id: SESSION_ID.into(),
        from: "+18005550100".into(),
        to: "+18005550101".into(),
        direction: Some("outbound-api".into()),
        end: Some(end),
        bad_messages: 0,
        caller_turns,
        bot_turns,
    }
}

fn hangup(at_ms: u64) -> Out {
    Out::Dialog(at_ms, DialogRequest::Hangup)
}

/// After the end: nothing but far-away timeouts, whatever comes in.
fn assert_silent_after_end(relay: &mut Relay) {
    assert!(relay.session.is_ended());
    assert_eq!(relay.session.state(), RelayState::Closed);
    let now = relay.now;
    for input in [
        RelayInput::Text(&prompt("hello")),
        RelayInput::Binary { len: 3 },
        say("more"),
        RelayInput::TurnFinished,
        RelayInput::SocketClosed,
        RelayInput::Shutdown,
        RelayInput::Hangup { reason: "again" },
    ] {
        relay
            .session
            .handle_input(now + Duration::from_secs(1), input);
        match relay.session.poll_output() {
            RelayOutput::Timeout(at) => assert!(at > now + Duration::from_secs(3600)),
            other => panic!("output after the end: {other:?}"),
        }
    }
    relay
        .session
        .handle_timeout(now + Duration::from_secs(7200));
    assert!(matches!(
        relay.session.poll_output(),
        RelayOutput::Timeout(_)
    ));
}

#[test]
fn setup_deadline_closes_with_1008_policy_violation() {
    let mut relay = Relay::new(RelayConfig::default());
    assert_eq!(relay.session.state(), RelayState::AwaitingSetup);
    assert_eq!(relay.wake, relay.opened + Duration::from_secs(10));
    assert_eq!(relay.advance(Duration::from_millis(9999)), []);
    assert_eq!(
        relay.advance(Duration::from_millis(1)),
        [
            Out::Ended(RelaySummary {
                end: Some(RelayEndReason::SetupTimeout),
                ..RelaySummary::default()
            }),
            Out::Close(1008, "policy violation")
        ]
    );
    assert_silent_after_end(&mut relay);
}

#[test]
fn setup_at_the_deadline_instant_is_taken() {
    // An input is handled before a deadline that falls at the same instant.
    let mut relay = Relay::new(RelayConfig::default());
    relay.now = relay.opened + Duration::from_secs(10);
    assert_eq!(relay.frame(&setup_json()), [Out::SetupReceived]);
    assert_eq!(relay.session.state(), RelayState::SetupReceived);
    assert_eq!(relay.advance(Duration::from_secs(1)), []);
}

#[test]
fn setup_is_kept_and_the_dialog_starts_with_its_parameters() {
    let mut relay = Relay::new(config());
    relay.now += Duration::from_millis(120);
    assert_eq!(relay.frame(&setup_json()), [Out::SetupReceived]);
    let setup = relay.session.setup().expect("kept");
    assert_eq!(setup.call_sid.as_str(), CALL_SID);
    assert_eq!(setup.custom_parameters["firstName"], "Ana");
    assert_eq!(relay.session.summary().session_id, SESSION_ID);
    // While the shell builds the dialog, no deadline is pending but max duration.
    assert_eq!(relay.wake, relay.opened + Duration::from_secs(3600));
    relay.now += Duration::from_millis(5);
    assert_eq!(
        relay.input(RelayInput::DialogReady {
            silence_timeout: Duration::from_secs(3)
        }),
        [Out::Dialog(
            125,
            DialogRequest::Start {
                call_sid: CALL_SID.into(),
                parameters: relay_common::parameters(),
            }
        )]
    );
    assert_eq!(relay.session.state(), RelayState::InTurn);
    // The dialog's own silence timeout is used: one word (100 ms) + 3 s.
    relay.answer("Hi.");
    assert_eq!(
        relay.wake,
        relay.now + Duration::from_millis(100) + Duration::from_secs(3)
    );
}

#[test]
fn a_refused_dialog_gets_end_agent_unavailable_and_no_hangup() {
    let mut relay = Relay::new(config());
    relay.frame(&setup_json());
    assert_eq!(
        relay.input(RelayInput::DialogRefused {
            reason: "unknown screening \"nope\""
        }),
        [end("agent-unavailable", "unknown screening \"nope\"")]
    );
    assert_eq!(relay.session.state(), RelayState::Ending);
    // No dialog: caller input goes nowhere.
    assert_eq!(relay.frame(&prompt("hello")), []);
    // Twilio closes after `end`: the session records why `end` was sent.
    assert_eq!(
        relay.input(RelayInput::SocketClosed),
        [
            Out::Ended(RelaySummary {
                caller_turns: 1,
                ..summary(
                    RelayEndReason::Refused("unknown screening \"nope\"".into()),
                    0,
                    0
                )
            }),
            Out::Close(1000, "session ended")
        ]
    );
}

#[test]
fn max_call_duration_sends_end_then_lingers_five_seconds_for_twilio_to_close() {
    let mut relay = Relay::started(RelayConfig {
        max_call_duration: Duration::from_secs(60),
        ..config()
    });
    relay.answer("Hi.");
    relay.frame(&prompt("yes"));
    relay.answer("Next question?");
    let outs = relay.advance(Duration::from_secs(59));
    assert_eq!(
        outs,
        [Out::Dialog(8200, DialogRequest::Silence { ms: 8000 })]
    );
    // The dialog stays quiet: its stream ends.
    relay.input(RelayInput::TurnFinished);
    assert_eq!(
        relay.advance(Duration::from_secs(1)),
        [end("max-duration", "Maximum call duration reached")]
    );
    assert_eq!(relay.session.state(), RelayState::Ending);
    assert_eq!(relay.advance(Duration::from_millis(4999)), []);
    assert_eq!(
        relay.advance(Duration::from_millis(1)),
        [
            hangup(65_000),
            Out::Ended(summary(RelayEndReason::MaxDuration, 1, 2)),
            Out::Close(close::NORMAL, "session ended")
        ]
    );
    assert_silent_after_end(&mut relay);
}

#[test]
fn the_dialogs_end_then_twilio_closing_records_the_handoff() {
    let mut relay = Relay::started(config());
    relay.input(say("Let me connect you."));
    relay.input(turn_end());
    relay.input(dialog_end(
        "live-agent-handoff",
        "Caller asked for a person",
    ));
    relay.input(RelayInput::TurnFinished);
    // Four words.
    assert_eq!(
        relay.advance(Duration::from_millis(400)),
        [end("live-agent-handoff", "Caller asked for a person")]
    );
    relay.now += Duration::from_secs(1);
    assert_eq!(
        relay.input(RelayInput::SocketClosed),
        [
            hangup(1400),
            Out::Ended(summary(
                RelayEndReason::Agent(Handoff::new(
                    "live-agent-handoff",
                    "Caller asked for a person"
                )),
                0,
                1
            )),
            Out::Close(1000, "session ended")
        ]
    );
}

#[test]
fn end_linger_closes_when_twilio_does_not() {
    let mut relay = Relay::started(config());
    relay.input(dialog_end("no-answer", "The caller stopped answering"));
    relay.input(RelayInput::TurnFinished);
    relay.advance(Duration::ZERO);
    let outs = relay.advance(Duration::from_secs(5));
    assert_eq!(
        outs,
        [
            hangup(5000),
            Out::Ended(summary(
                RelayEndReason::Agent(Handoff::new("no-answer", "The caller stopped answering")),
                0,
                0
            )),
            Out::Close(1000, "session ended")
        ]
    );
}

#[test]
fn drain_deadline_closes_1001_and_cancels_the_running_turn() {
    let mut relay = Relay::started(config());
    relay.input(say("Hi Ana"));
    relay.input(RelayInput::DialogWaiting);
    relay.now += Duration::from_millis(30);
    assert_eq!(
        relay.input(RelayInput::Shutdown),
        [
            Out::CancelTurn,
            hangup(30),
            Out::Ended(summary(RelayEndReason::Shutdown, 0, 0)),
            Out::Close(close::GOING_AWAY, "server shutting down")
        ]
    );
    assert_silent_after_end(&mut relay);
}

#[test]
fn shutdown_before_setup_closes_1001_without_a_dialog() {
    let mut relay = Relay::new(config());
    assert_eq!(
        relay.input(RelayInput::Shutdown),
        [
            Out::Ended(RelaySummary {
                end: Some(RelayEndReason::Shutdown),
                ..RelaySummary::default()
            }),
            Out::Close(1001, "server shutting down")
        ]
    );
}

#[test]
fn a_slow_peer_closes_1008() {
    let mut relay = Relay::started(config());
    relay.answer("Hi.");
    assert_eq!(
        relay.input(RelayInput::SlowPeer),
        [
            hangup(0),
            Out::Ended(summary(RelayEndReason::SlowPeer, 0, 1)),
            Out::Close(1008, "policy violation")
        ]
    );
}

#[test]
fn a_message_too_big_for_the_socket_is_malformed_and_closes_1009() {
    let mut relay = Relay::started(config());
    relay.answer("Hi.");
    assert_eq!(
        relay.input(RelayInput::TooBig { len: 1 << 20 }),
        [
            hangup(0),
            Out::Ended(RelaySummary {
                bad_messages: 1,
                ..summary(RelayEndReason::MessageTooBig, 0, 1)
            }),
            Out::Close(1009, "message too big")
        ]
    );
    assert_silent_after_end(&mut relay);
}

#[test]
fn caller_hanging_up_mid_turn_cancels_it_and_hangs_the_dialog_up() {
    let mut relay = Relay::started(config());
    relay.answer("Hi.");
    relay.frame(&prompt("yes"));
    relay.input(say("Great"));
    assert_eq!(
        relay.input(RelayInput::SocketClosed),
        [
            text("Great", false),
            Out::CancelTurn,
            hangup(0),
            Out::Ended(summary(RelayEndReason::CallerHungUp, 1, 1)),
            Out::Close(1000, "session ended")
        ]
    );
}

#[test]
fn an_operator_hangup_sends_end_and_cancels_the_turn() {
    let mut relay = Relay::started(config());
    assert_eq!(
        relay.input(RelayInput::Hangup {
            reason: "operator request"
        }),
        [end("hangup", "operator request"), Out::CancelTurn]
    );
    assert_eq!(relay.session.state(), RelayState::Ending);
    // A second request does not send a second `end`.
    assert_eq!(relay.input(RelayInput::Hangup { reason: "again" }), []);
    assert_eq!(
        relay.input(RelayInput::SocketClosed),
        [
            hangup(0),
            Out::Ended(summary(
                RelayEndReason::Hangup("operator request".into()),
                0,
                0
            )),
            Out::Close(1000, "session ended")
        ]
    );
}

#[test]
fn max_duration_before_setup_sends_end_too() {
    // As before the rewrite: `max_call_duration` does not wait for `setup`.
    let mut relay = Relay::new(RelayConfig {
        start_timeout: Duration::from_secs(100),
        max_call_duration: Duration::from_secs(50),
        ..config()
    });
    assert_eq!(
        relay.advance(Duration::from_secs(50)),
        [end("max-duration", "Maximum call duration reached")]
    );
    // Twilio does not close: the linger does, with the reason `end` was sent for.
    assert_eq!(
        relay.advance(Duration::from_secs(5)),
        [
            Out::Ended(RelaySummary {
                end: Some(RelayEndReason::MaxDuration),
                ..RelaySummary::default()
            }),
            Out::Close(1000, "session ended")
        ]
    );
}

#[test]
fn time_never_goes_back() {
    let opened = Instant::now();
    let mut session = RelaySession::new(config(), opened + Duration::from_secs(1));
    // An earlier `now` is taken as the latest one.
    session.handle_timeout(opened);
    assert_eq!(
        session.poll_output(),
        RelayOutput::Timeout(opened + Duration::from_secs(11))
    );
}
