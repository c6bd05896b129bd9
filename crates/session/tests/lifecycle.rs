//! Start, DTMF, stop, timeouts, shutdown and hangup, on virtual time.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Call, FRAME, Out, SILENCE, patient, tone};
use voxbridge_session::{
    BrainCommand, BrainEvent, CallInfo, EndReason, Input, Output, Session, SessionConfig, TurnId,
};
use voxbridge_twilio::media::DtmfDigit;

fn assert_ended(outs: &[Out], reason: EndReason, code: u16) {
    let n = outs.len();
    assert!(n >= 2, "{outs:?}");
    assert_eq!(
        outs[n - 2],
        Out::Brain(BrainEvent::CallEnded { reason }),
        "{outs:?}"
    );
    assert!(
        matches!(outs[n - 1], Out::Close(c, _) if c == code),
        "{outs:?}"
    );
}

/// After the end: nothing but far-away timeouts, whatever comes in.
fn assert_silent_after_end(call: &mut Call) {
    assert!(call.session.is_ended());
    let now = call.now;
    for input in [
        Input::Text(r#"{"event":"connected"}"#),
        Input::Binary { len: 3 },
        Input::Brain(BrainCommand::Audio {
            turn: TurnId(99),
            pcm: &[1; 480],
            sample_rate: 24_000,
        }),
        Input::Brain(BrainCommand::ChunkEnd {
            turn: TurnId(99),
            text: "x",
        }),
        Input::SocketClosed,
        Input::Shutdown,
    ] {
        call.session
            .handle_input(now + Duration::from_secs(1), input);
        match call.session.poll_output() {
            Output::Timeout(at) => assert!(at > now + Duration::from_secs(3600)),
            other => panic!("output after the end: {other:?}"),
        }
    }
    call.session.handle_timeout(now + Duration::from_secs(7200));
    assert!(matches!(call.session.poll_output(), Output::Timeout(_)));
}

#[test]
fn start_reports_call_info_with_custom_parameters() {
    let mut call = Call::new(SessionConfig::default());
    let params = BTreeMap::from([
        ("agent".to_owned(), "screening".to_owned()),
        ("candidate".to_owned(), "Jane Doe".to_owned()),
    ]);
    let outs = call.start_with(params.clone());
    assert_eq!(
        outs,
        vec![Out::Brain(BrainEvent::CallStarted(CallInfo {
            call_sid: common::CALL_SID.into(),
            stream_sid: common::STREAM_SID.into(),
            account_sid: common::ACCOUNT_SID.into(),
            custom_parameters: params,
        }))]
    );
    assert_eq!(call.session.call_sid(), Some(common::CALL_SID));
    assert_eq!(call.session.stream_sid(), Some(common::STREAM_SID));
    assert_eq!(
        call.session.summary().call_sid.as_deref(),
        Some(common::CALL_SID)
    );
}

#[test]
fn dtmf_goes_to_the_brain() {
    let mut call = Call::new(SessionConfig::default());
    call.start();
    let text = call.twilio.dtmf(DtmfDigit::parse("5").unwrap()).to_owned();
    assert_eq!(call.text(&text), vec![Out::Brain(BrainEvent::Dtmf('5'))]);
    assert_eq!(call.session.summary().dtmf, 1);
}

#[test]
fn after_stop_nothing_is_sent() {
    let mut call = Call::new(patient());
    call.start();
    call.say(1, &tone(24_000, 3000), 24_000, "A long answer.");
    call.advance(Duration::from_millis(500));
    let media_before = call.session.summary().frames_out;
    assert!(media_before > 0);
    let outs = call.stop();
    assert_ended(&outs, EndReason::Stopped, 1000);
    assert_eq!(
        outs.iter()
            .filter(|o| matches!(o, Out::Media(_) | Out::Mark(_) | Out::Clear))
            .count(),
        0
    );
    // Time passes; the queued 2.5 s never go out.
    call.advance(Duration::from_secs(5));
    assert_eq!(call.session.summary().frames_out, media_before);
    assert_eq!(call.session.summary().end_reason, Some(EndReason::Stopped));
    // The unfinished turn is counted, interrupted; none of it was heard (no mark came back).
    let summary = call.session.summary();
    assert_eq!((summary.bot_turns, summary.interrupted_bot_turns), (1, 1));
    assert!(call.echoes().is_empty(), "{:?}", call.log);
    assert_silent_after_end(&mut call);
}

#[test]
fn stop_delivers_the_utterance_in_progress_before_call_ended() {
    let mut call = Call::new(patient());
    call.start();
    let speech = common::load("speech_clean_8k.wav");
    // Hang up in the middle of the first sentence (6400..31435).
    call.feed_pcm(&speech[..20_000], |_, _, _| {});
    let outs = call.stop();
    assert!(
        matches!(&outs[0], Out::Brain(BrainEvent::Utterance { started_at, ended_at, .. })
            if *ended_at > *started_at && *ended_at <= Duration::from_millis(2500)),
        "{outs:?}"
    );
    assert_ended(&outs, EndReason::Stopped, 1000);
}

#[test]
fn start_timeout_frees_the_session_with_1001() {
    let mut call = Call::new(SessionConfig::default());
    assert_eq!(call.timeout, Some(call.t0 + Duration::from_secs(10)));
    let outs = call.advance(Duration::from_secs(9));
    assert!(outs.is_empty());
    let outs = call.advance(Duration::from_secs(1));
    assert_ended(&outs, EndReason::StartTimeout, 1001);
    assert_eq!(
        call.log.last().unwrap().0,
        call.t0 + Duration::from_secs(10)
    );
    assert_silent_after_end(&mut call);
}

#[test]
fn idle_timeout_counts_from_the_last_twilio_message() {
    let mut call = Call::new(SessionConfig::default());
    call.start();
    // Twilio streams for 3 s, then goes quiet.
    for _ in 0..150 {
        call.advance(FRAME);
        call.media(&SILENCE);
    }
    // Brain traffic is not Twilio traffic, but the echo of its mark (100 ms later) is.
    call.say(1, &tone(8000, 100), 8000, "Hello?");
    let outs = call.advance(Duration::from_secs(20));
    assert_ended(&outs, EndReason::IdleTimeout, 1001);
    let last = call
        .log
        .iter()
        .rev()
        .find(|(_, o)| matches!(o, Out::Echo(_)))
        .unwrap()
        .0;
    assert_eq!(last, call.t0 + Duration::from_millis(3100));
    let ended_at = call
        .log
        .iter()
        .find(|(_, o)| matches!(o, Out::Close(..)))
        .unwrap()
        .0;
    assert_eq!(ended_at, last + Duration::from_secs(10));
    assert_silent_after_end(&mut call);
}

#[test]
fn max_call_duration_ends_a_live_call_with_1000() {
    let mut call = Call::new(SessionConfig {
        max_call_duration: Duration::from_secs(30),
        ..SessionConfig::default()
    });
    call.start();
    let mut ended = None;
    for i in 0..2000 {
        let mut outs = call.advance(FRAME);
        outs.extend(call.media(&SILENCE));
        if call.session.is_ended() {
            ended = Some((i, outs));
            break;
        }
    }
    let (_, outs) = ended.expect("the call was cut");
    assert_ended(&outs, EndReason::MaxDuration, 1000);
    assert_eq!(call.now - call.t0, Duration::from_secs(30));
    assert_silent_after_end(&mut call);
}

#[test]
fn max_call_duration_fires_from_the_timer_alone() {
    let mut call = Call::new(SessionConfig {
        max_call_duration: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        ..SessionConfig::default()
    });
    call.start();
    let outs = call.advance(Duration::from_secs(6));
    assert_ended(&outs, EndReason::MaxDuration, 1000);
}

#[test]
fn shutdown_closes_with_going_away() {
    let mut call = Call::new(SessionConfig::default());
    call.start();
    let outs = call.input(Input::Shutdown);
    assert_eq!(outs.last(), Some(&Out::Close(1001, "going away")));
    assert_ended(&outs, EndReason::Shutdown, 1001);
    assert_silent_after_end(&mut call);
}

#[test]
fn socket_closed_ends_the_session() {
    let mut call = Call::new(SessionConfig::default());
    call.start();
    let outs = call.input(Input::SocketClosed);
    assert_ended(&outs, EndReason::SocketClosed, 1000);
    assert_silent_after_end(&mut call);
}

#[test]
fn slow_peer_ends_the_session() {
    let mut call = Call::new(SessionConfig::default());
    call.start();
    let outs = call.input(Input::SlowPeer);
    assert_ended(&outs, EndReason::SlowPeer, 1008);
}

#[test]
fn a_message_too_big_for_the_socket_is_a_bad_message_and_ends_with_1009() {
    let mut call = Call::new(SessionConfig::default());
    call.start();
    let outs = call.input(Input::TooBig { len: 1 << 20 });
    assert_ended(&outs, EndReason::MessageTooBig, 1009);
    assert_eq!(call.session.summary().bad_messages, 1);
    assert_eq!(
        call.session
            .summary()
            .end_reason
            .as_ref()
            .map(EndReason::label),
        Some("message-too-big")
    );
    assert_silent_after_end(&mut call);
}

#[test]
fn hangup_plays_the_queued_audio_then_closes_normally() {
    let mut call = Call::new(patient());
    call.start();
    call.say(1, &tone(24_000, 1500), 24_000, "Thanks, goodbye.");
    let outs = call.input(Input::Brain(BrainCommand::Hangup {
        reason: "screening complete",
    }));
    assert!(!outs.iter().any(|o| matches!(o, Out::Close(..))));
    let outs = call.advance(Duration::from_secs(3));
    assert_ended(
        &outs,
        EndReason::BrainHangup("screening complete".into()),
        1000,
    );
    // All 1.5 s went out, the mark came back, then the close.
    let played: usize = call
        .sent()
        .map(|o| if let Out::Media(m) = o { m.len() } else { 0 })
        .sum();
    assert_eq!(played, 12_000);
    let close_at = call
        .log
        .iter()
        .find(|(_, o)| matches!(o, Out::Close(..)))
        .unwrap()
        .0;
    assert_eq!(close_at - call.t0, Duration::from_millis(1500));
    // Its one chunk ("Thanks, goodbye.") was heard: the turn played out, not interrupted.
    assert_eq!(call.echoes(), ["t1c0"]);
    let summary = call.session.summary();
    assert_eq!((summary.bot_turns, summary.interrupted_bot_turns), (1, 0));
    assert!(
        call.brain_events()
            .contains(&BrainEvent::TurnPlayed { turn: TurnId(1) })
    );
    assert_silent_after_end(&mut call);
}

#[test]
fn hangup_waits_for_marks_only_up_to_a_grace_period() {
    let mut call = Call::new(patient());
    call.auto_echo = false;
    call.start();
    call.say(1, &tone(8000, 500), 8000, "Bye.");
    call.input(Input::Brain(BrainCommand::Hangup { reason: "done" }));
    let outs = call.advance(Duration::from_secs(5));
    assert_ended(&outs, EndReason::BrainHangup("done".into()), 1000);
    let close_at = call
        .log
        .iter()
        .find(|(_, o)| matches!(o, Out::Close(..)))
        .unwrap()
        .0;
    assert_eq!(
        close_at - call.t0,
        Duration::from_millis(1500),
        "500 ms of audio + 1 s grace"
    );
}

#[test]
fn hangup_before_start_closes_at_once() {
    let mut call = Call::new(SessionConfig::default());
    let outs = call.input(Input::Brain(BrainCommand::Hangup { reason: "nope" }));
    assert_ended(&outs, EndReason::BrainHangup("nope".into()), 1000);
}

#[test]
fn turns_without_audio_play_at_once_and_stale_turns_are_dropped() {
    let mut call = Call::new(patient());
    call.start();
    let outs = call.turn_end(3);
    assert_eq!(
        outs,
        vec![Out::Brain(BrainEvent::TurnPlayed { turn: TurnId(3) })]
    );
    // Turn 2 is older than turn 3: dropped.
    call.say(2, &tone(8000, 200), 8000, "late");
    call.advance(Duration::from_millis(300));
    assert_eq!(call.session.summary().frames_out, 0);
    assert_eq!(call.session.summary().dropped_brain_samples, 1600);
}

#[test]
fn audio_for_a_newer_turn_ends_the_open_one() {
    let mut call = Call::new(patient());
    call.start();
    call.say(1, &tone(8000, 100), 8000, "One. ");
    // Audio after the last ChunkEnd, then turn 2 starts without TurnEnd for turn 1.
    call.input(Input::Brain(BrainCommand::Audio {
        turn: TurnId(1),
        pcm: &tone(8000, 100),
        sample_rate: 8000,
    }));
    call.say(2, &tone(8000, 100), 8000, "Two.");
    call.advance(Duration::from_secs(1));
    let marks: Vec<&Out> = call.sent().filter(|o| matches!(o, Out::Mark(_))).collect();
    assert_eq!(
        marks,
        vec![
            &Out::Mark("t1c0".into()),
            &Out::Mark("t1c1".into()),
            &Out::Mark("t2c0".into())
        ]
    );
    let events = call.brain_events();
    assert!(events.contains(&BrainEvent::TurnPlayed { turn: TurnId(1) }));
    assert!(
        !events.contains(&BrainEvent::TurnPlayed { turn: TurnId(2) }),
        "no TurnEnd yet"
    );
    // Turn 1 was heard in full ("One. " and the unmarked tail) and played out; turn 2 is not
    // finished.
    assert_eq!(call.echoes(), ["t1c0", "t1c1", "t2c0"]);
    let summary = call.session.summary();
    assert_eq!((summary.bot_turns, summary.interrupted_bot_turns), (1, 0));
}

#[test]
fn audio_before_start_waits_for_the_stream() {
    let mut call = Call::new(patient());
    let outs = call.say(1, &tone(16_000, 200), 16_000, "Hi");
    assert!(outs.is_empty());
    let outs = call.start();
    assert!(matches!(outs[0], Out::Brain(BrainEvent::CallStarted(_))));
    assert_eq!(
        outs.iter().filter(|o| matches!(o, Out::Media(_))).count(),
        5
    );
}

#[test]
fn full_queue_drops_and_counts_overflow() {
    let mut call = Call::new(SessionConfig {
        max_queued_audio: Duration::from_secs(1),
        ..patient()
    });
    call.start();
    call.say(1, &tone(8000, 3000), 8000, "Too long");
    let summary = call.session.summary();
    // 5 frames (100 ms) left at once, so 1 s + 100 ms fit; the rest was dropped.
    assert_eq!(summary.overflow_samples, 24_000 - 8000);
}

#[test]
fn unsupported_brain_rate_is_a_typed_error_that_does_not_count_as_bad_input() {
    let mut call = Call::new(patient());
    call.start();
    call.input(Input::Brain(BrainCommand::Audio {
        turn: TurnId(1),
        pcm: &[0; 100],
        sample_rate: 7919,
    }));
    assert!(matches!(
        call.session.last_error(),
        Some(voxbridge_session::SessionError::BrainAudio {
            sample_rate: 7919,
            ..
        })
    ));
    assert_eq!(call.session.summary().bad_messages, 0);
    call.input(Input::Brain(BrainCommand::Audio {
        turn: TurnId(1),
        pcm: &[0; 100],
        sample_rate: 0,
    }));
    assert!(call.session.last_error().is_some());
    assert!(!call.session.is_ended());
}

#[test]
fn invalid_config_is_reported_by_field_and_new_falls_back() {
    let bad = SessionConfig {
        pipeline_rate: 12_345,
        max_consecutive_errors: 0,
        ..SessionConfig::default()
    };
    let err = bad.validate().unwrap_err();
    assert_eq!(err.key, "pipeline_rate");
    assert!(Session::try_new(bad.clone(), Instant::now()).is_err());
    let session = Session::new(bad, Instant::now());
    assert_eq!(session.config().pipeline_rate, 16_000);
    assert_eq!(session.config().max_consecutive_errors, 10);
    assert!(SessionConfig::default().validate().is_ok());
}

#[test]
fn session_is_send() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Session>();
}
