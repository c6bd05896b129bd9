//! Bad input: every kind is a typed error and is skipped; a run of them closes the socket with
//! 1007 (invalid payload) or 1008 (policy); good messages reset the run; nothing panics.

mod common;

use std::time::Duration;

use common::{Call, FRAME, Out, SILENCE, patient};
use proptest::prelude::*;
use voxbridge_session::{
    BrainCommand, EndReason, Input, MAX_MESSAGE_SIZE, SessionConfig, SessionError, TurnId,
};
use voxbridge_twilio::media::{MediaStreamError, Track};

const SID: &str = common::STREAM_SID;

fn media_json(payload_b64: &str, sid: &str) -> String {
    format!(
        r#"{{"event":"media","sequenceNumber":"3","media":{{"track":"inbound","chunk":"1","timestamp":"0","payload":"{payload_b64}"}},"streamSid":"{sid}"}}"#
    )
}

/// A valid `media` frame for the test stream.
fn good_media(call: &mut Call) -> String {
    call.twilio.media(Track::Inbound, 1, 0, &SILENCE).to_owned()
}

/// Feeds `input` to a started call and checks it is skipped with an error matching `expect`,
/// closing code `code`, and that the call carries on.
fn assert_skipped(
    call: &mut Call,
    input: Input<'_>,
    code: u16,
    expect: impl Fn(&SessionError) -> bool,
) {
    let bad_before = call.session.summary().bad_messages;
    let outs = call.input(input);
    let err = call.session.last_error().expect("a typed error");
    assert!(expect(err), "unexpected error {err:?}");
    assert_eq!(err.close_code(), Some(code), "{err}");
    assert!(outs.is_empty(), "{outs:?}");
    assert_eq!(call.session.summary().bad_messages, bad_before + 1);
    assert!(!call.session.is_ended());
    // The next good frame is processed as usual.
    let frames_before = call.session.summary().frames_in;
    let good = good_media(call);
    call.text(&good);
    assert!(call.session.last_error().is_none());
    assert_eq!(call.session.summary().frames_in, frames_before + 1);
}

#[test]
fn every_bad_input_kind_is_a_typed_error_and_is_skipped() {
    let mut call = Call::new(patient());
    // Before start.
    let early = media_json("//8=", SID);
    let outs = call.text(&early);
    assert!(outs.is_empty());
    assert!(matches!(
        call.session.last_error(),
        Some(SessionError::BeforeStart { event: "media" })
    ));
    let dtmf = r#"{"event":"dtmf","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#;
    call.text(dtmf);
    assert!(matches!(
        call.session.last_error(),
        Some(SessionError::BeforeStart { event: "dtmf" })
    ));
    call.start();
    assert!(call.session.last_error().is_none());

    assert_skipped(&mut call, Input::Text("{not json"), 1007, |e| {
        matches!(e, SessionError::Decode(MediaStreamError::Json(_)))
    });
    assert_skipped(
        &mut call,
        Input::Text(r#"{"streamSid":"MZ1"}"#),
        1007,
        |e| matches!(e, SessionError::Decode(MediaStreamError::MissingEvent)),
    );
    assert_skipped(
        &mut call,
        Input::Text(r#"{"event":"bogus","streamSid":"MZ1"}"#),
        1008,
        |e| matches!(e, SessionError::Decode(MediaStreamError::UnknownEvent(n)) if n == "bogus"),
    );
    assert_skipped(
        &mut call,
        Input::Text(r#"{"event":"clear","streamSid":"MZ1"}"#),
        1008,
        |e| {
            matches!(
                e,
                SessionError::Decode(MediaStreamError::WrongDirection("clear"))
            )
        },
    );
    let bad_b64 = media_json("no+J*oaJjpw=", SID);
    assert_skipped(&mut call, Input::Text(&bad_b64), 1007, |e| {
        matches!(e, SessionError::Decode(MediaStreamError::Base64(_)))
    });
    let bad_digit = dtmf.replace("\"1\"", "\"x\"");
    assert_skipped(&mut call, Input::Text(&bad_digit), 1007, |e| {
        matches!(e, SessionError::Decode(MediaStreamError::InvalidDigit(_)))
    });
    assert_skipped(&mut call, Input::Binary { len: 320 }, 1008, |e| {
        matches!(e, SessionError::Binary { len: 320 })
    });
    assert_skipped(&mut call, Input::Oversize { len: 70_000 }, 1008, |e| {
        matches!(e, SessionError::Oversize { len: 70_000 })
    });
    let huge = media_json(&"A".repeat(MAX_MESSAGE_SIZE), SID);
    assert_skipped(&mut call, Input::Text(&huge), 1008, |e| {
        matches!(e, SessionError::Oversize { .. })
    });
    let other_stream = media_json("//8=", "MZ00000000000000000000000000000000");
    assert_skipped(&mut call, Input::Text(&other_stream), 1008, |e| {
        matches!(e, SessionError::StreamSidMismatch { .. })
    });
    let start_again = call
        .twilio
        .start(
            voxbridge_twilio::sid::AccountSid::new(common::ACCOUNT_SID).unwrap(),
            voxbridge_twilio::sid::CallSid::new(common::CALL_SID).unwrap(),
            vec![Track::Inbound],
            std::collections::BTreeMap::default(),
        )
        .to_owned();
    assert_skipped(&mut call, Input::Text(&start_again), 1008, |e| {
        matches!(e, SessionError::DuplicateStart)
    });
    let stray_mark = call.twilio.mark("t7c3").to_owned();
    assert_skipped(
        &mut call,
        Input::Text(&stray_mark),
        1008,
        |e| matches!(e, SessionError::UnknownMark { name } if name == "t7c3"),
    );
    let junk_mark = call.twilio.mark("not-ours").to_owned();
    assert_skipped(&mut call, Input::Text(&junk_mark), 1008, |e| {
        matches!(e, SessionError::UnknownMark { .. })
    });
    // Each kind has a stable name for logs and metrics.
    assert_eq!(SessionError::DuplicateStart.kind(), "duplicate_start");
    // None of this ended the call: the good frames in between reset the run every time.
    assert!(!call.session.is_ended());
    assert_eq!(call.session.summary().bad_messages, 15);
}

fn run_until_closed(call: &mut Call, bad: &[Input<'_>]) -> Vec<Out> {
    let mut all = Vec::new();
    for input in bad {
        call.now += FRAME;
        all.extend(call.input(*input));
    }
    all
}

#[test]
fn a_run_of_malformed_json_closes_with_1007() {
    let mut call = Call::new(patient());
    call.start();
    let outs = run_until_closed(&mut call, &[Input::Text("{"); 9]);
    assert!(outs.is_empty() && !call.session.is_ended());
    let outs = call.input(Input::Text("]"));
    assert_eq!(
        outs,
        vec![
            Out::Brain(voxbridge_session::BrainEvent::CallEnded {
                reason: EndReason::TooManyBadMessages
            }),
            Out::Close(1007, "too many bad messages")
        ]
    );
    assert_eq!(
        call.session.summary().end_reason,
        Some(EndReason::TooManyBadMessages)
    );
}

#[test]
fn a_run_of_protocol_misuse_closes_with_1008() {
    let mut call = Call::new(SessionConfig {
        max_consecutive_errors: 3,
        ..patient()
    });
    // Media before start, binary, media before start: policy all the way.
    let early = media_json("//8=", SID);
    let outs = run_until_closed(
        &mut call,
        &[
            Input::Text(&early),
            Input::Binary { len: 2 },
            Input::Text(&early),
        ],
    );
    assert_eq!(
        outs.last(),
        Some(&Out::Close(1008, "too many bad messages"))
    );
}

#[test]
fn the_error_that_completes_the_run_picks_the_code() {
    let mut call = Call::new(SessionConfig {
        max_consecutive_errors: 3,
        ..patient()
    });
    call.start();
    let outs = run_until_closed(
        &mut call,
        &[
            Input::Binary { len: 1 },
            Input::Binary { len: 1 },
            Input::Text("nope"),
        ],
    );
    assert_eq!(
        outs.last(),
        Some(&Out::Close(1007, "too many bad messages"))
    );
}

#[test]
fn good_messages_in_between_reset_the_run() {
    let mut call = Call::new(patient());
    call.start();
    for _ in 0..5 {
        run_until_closed(&mut call, &[Input::Text("{"); 9]);
        let good = good_media(&mut call);
        call.text(&good);
    }
    assert!(!call.session.is_ended());
    assert_eq!(call.session.summary().bad_messages, 45);
    // Brain commands are not Twilio messages: they do not reset the run.
    run_until_closed(&mut call, &[Input::Text("{"); 9]);
    call.input(Input::Brain(BrainCommand::TurnEnd { turn: TurnId(1) }));
    let outs = call.input(Input::Text("{"));
    assert_eq!(
        outs.last(),
        Some(&Out::Close(1007, "too many bad messages"))
    );
}

#[test]
fn bad_messages_still_prove_the_peer_is_alive() {
    // A peer that only sends garbage is still a peer; the error limit, not idle, ends it.
    let mut call = Call::new(SessionConfig {
        max_consecutive_errors: 1000,
        idle_timeout: Duration::from_secs(1),
        ..SessionConfig::default()
    });
    call.start();
    for _ in 0..100 {
        call.advance(FRAME);
        call.input(Input::Text("x"));
    }
    assert!(!call.session.is_ended());
}

/// A valid message of each kind Twilio sends, to mutate.
fn seeds() -> Vec<String> {
    let mut call = Call::new(patient());
    vec![
        call.twilio.connected().to_owned(),
        call.twilio
            .start(
                voxbridge_twilio::sid::AccountSid::new(common::ACCOUNT_SID).unwrap(),
                voxbridge_twilio::sid::CallSid::new(common::CALL_SID).unwrap(),
                vec![Track::Inbound],
                [("agent".to_owned(), "echo".to_owned())].into(),
            )
            .to_owned(),
        good_media(&mut call),
        call.twilio.mark("t1c0").to_owned(),
        call.twilio
            .dtmf(voxbridge_twilio::media::DtmfDigit::parse("7").unwrap())
            .to_owned(),
        call.twilio
            .stop(
                voxbridge_twilio::sid::AccountSid::new(common::ACCOUNT_SID).unwrap(),
                voxbridge_twilio::sid::CallSid::new(common::CALL_SID).unwrap(),
            )
            .to_owned(),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Text(String),
    Binary(usize),
    Audio(u64, Vec<i16>, u32),
    ChunkEnd(u64, String),
    TurnEnd(u64),
    Hangup,
    Tick(u64),
}

fn step() -> impl Strategy<Value = Step> {
    let all = seeds();
    let good = all[2].clone();
    let seeds = all;
    let mutated = (0..seeds.len(), any::<usize>(), any::<usize>(), ".{0,12}").prop_map(
        move |(i, a, b, insert)| {
            let s = &seeds[i];
            let mut cut = [a % (s.len() + 1), b % (s.len() + 1)];
            cut.sort_unstable();
            // Cut on character boundaries (the seeds are ASCII).
            format!("{}{insert}{}", &s[..cut[0]], &s[cut[1]..])
        },
    );
    prop_oneof![
        3 => any::<String>().prop_map(Step::Text),
        6 => mutated.prop_map(Step::Text),
        2 => Just(good).prop_map(Step::Text),
        1 => (0usize..100_000).prop_map(Step::Binary),
        2 => (0u64..4, proptest::collection::vec(any::<i16>(), 0..600), prop_oneof![Just(8000u32), Just(16_000), Just(24_000), Just(44_100), 0u32..100_000])
            .prop_map(|(t, pcm, rate)| Step::Audio(t, pcm, rate)),
        1 => (0u64..4, ".{0,8}").prop_map(|(t, s)| Step::ChunkEnd(t, s)),
        1 => (0u64..4).prop_map(Step::TurnEnd),
        1 => Just(Step::Hangup),
        3 => (0u64..3000).prop_map(Step::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>(), started in any::<bool>()) {
        let mut call = Call::new(SessionConfig::default());
        if started {
            call.start();
        }
        call.text(&text);
        // Still usable, whatever it was.
        call.advance(FRAME);
        let good = good_media(&mut call);
        call.text(&good);
    }

    #[test]
    fn arbitrary_sessions_never_panic_or_send_after_close(steps in proptest::collection::vec(step(), 1..60)) {
        let mut call = Call::new(SessionConfig { max_consecutive_errors: 4, ..SessionConfig::default() });
        call.start();
        for s in &steps {
            // `Call::drain` asserts no Send after Close and that Timeout always comes.
            match s {
                Step::Text(t) => { call.text(t); }
                Step::Binary(len) => { call.input(Input::Binary { len: *len }); }
                Step::Audio(turn, pcm, rate) => {
                    call.input(Input::Brain(BrainCommand::Audio { turn: TurnId(*turn), pcm, sample_rate: *rate }));
                }
                Step::ChunkEnd(turn, text) => {
                    call.input(Input::Brain(BrainCommand::ChunkEnd { turn: TurnId(*turn), text }));
                }
                Step::TurnEnd(turn) => { call.input(Input::Brain(BrainCommand::TurnEnd { turn: TurnId(*turn) })); }
                Step::Hangup => { call.input(Input::Brain(BrainCommand::Hangup { reason: "x" })); }
                Step::Tick(ms) => { call.advance(Duration::from_millis(*ms)); }
            }
        }
        call.advance(Duration::from_secs(30));
        prop_assert!(call.session.is_ended(), "idle timeout ends every call");
        let closes = call.sent().filter(|o| matches!(o, Out::Close(..))).count();
        prop_assert_eq!(closes, 1);
        let ended = call.brain_events().iter().filter(|e| matches!(e, voxbridge_session::BrainEvent::CallEnded { .. })).count();
        prop_assert_eq!(ended, 1);
        prop_assert!(call.session.summary().end_reason.is_some());
    }
}
