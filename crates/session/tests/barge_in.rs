//! Barge-in and marks, driven by the committed speech fixtures on virtual time.

mod common;

use std::time::Duration;

use common::{Call, FRAME, Out, SILENCE, labels, load, patient, tone};
use voxbridge_session::{BrainEvent, TurnId};

/// Index of the first log entry matching `pred`.
fn position(call: &Call, pred: impl Fn(&Out) -> bool) -> Option<usize> {
    call.log.iter().position(|(_, o)| pred(o))
}

/// Starts a call and has the bot say `chunks` (text, ms of 24 kHz audio) as turn 1.
fn bot_speaking(chunks: &[(&str, u32)]) -> Call {
    let mut call = Call::new(patient());
    call.start();
    for (text, ms) in chunks {
        call.say(1, &tone(24_000, *ms), 24_000, text);
    }
    call.turn_end(1);
    call
}

#[test]
fn marks_echoed_in_order_report_turn_played_with_all_text() {
    let mut call = bot_speaking(&[("Hello. ", 310), ("How are you? ", 500), ("Bye.", 190)]);
    // Keep the line alive with silence until everything has played.
    call.feed_pcm(&vec![0; 8 * 1500], |_, _, _| {});
    let events = call.brain_events();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, BrainEvent::TurnPlayed { .. }))
            .count(),
        1,
        "{events:?}"
    );
    // TurnPlayed comes with the last echo, not before.
    let played = position(&call, |o| {
        matches!(o, Out::Brain(BrainEvent::TurnPlayed { .. }))
    })
    .unwrap();
    let last_echo = call
        .log
        .iter()
        .rposition(|(_, o)| matches!(o, Out::Echo(_)))
        .unwrap();
    assert!(played > last_echo);
    assert_eq!(call.log[last_echo].1, Out::Echo("t1c2".into()));
    // The turn took 1 s of audio; it played from the start, so its last mark came at ~1 s.
    let echo_at = call.log[last_echo].0 - call.t0;
    assert!(
        (Duration::from_secs(1)..=Duration::from_millis(1040)).contains(&echo_at),
        "{echo_at:?}"
    );
    // Every chunk was heard: its three marks came back, in order.
    assert_eq!(
        call.echoes(),
        ["t1c0", "t1c1", "t1c2"],
        "Hello. How are you? Bye. heard in full"
    );
    assert!(events.contains(&BrainEvent::TurnPlayed { turn: TurnId(1) }));
    let summary = call.session.summary();
    assert_eq!((summary.bot_turns, summary.interrupted_bot_turns), (1, 0));
    assert_eq!(summary.marks_sent, 3);
    // 310 ms = 15 frames + 10 ms, 500 ms = 25 frames, 190 ms = 9 frames + 10 ms: chunks end
    // with a short frame rather than padding, so the caller hears exactly 1 s.
    assert_eq!(summary.frames_out, 16 + 25 + 10);
    let played: usize = call
        .sent()
        .map(|o| if let Out::Media(m) = o { m.len() } else { 0 })
        .sum();
    assert_eq!(played, 8000);
}

#[test]
fn barge_in_clears_within_one_frame_and_stops_output() {
    // Speech in the fixture starts at 800 ms; the bot talks for 5 s from the start of the call.
    let mut call = bot_speaking(&[
        ("Hello there. ", 500),
        ("I am calling about the job. ", 2500),
        ("Do you have a minute? ", 2000),
    ]);
    let speech = load("speech_clean_8k.wav");
    let truth = labels("speech_clean_8k.labels");
    let mut decision = None;
    call.feed_pcm(&speech[..8000 * 3], |i, outs, session| {
        if decision.is_none() && outs.contains(&Out::Brain(BrainEvent::SpeechStarted)) {
            decision = Some(i);
            // Within the same handle_input: clear, and the barge-in report with what was heard.
            assert!(outs.contains(&Out::Clear), "{outs:?}");
            assert!(
                outs.contains(&Out::Brain(BrainEvent::BargeIn {
                    turn: TurnId(1),
                    heard: "Hello there. ".into(),
                    heard_ms: 500,
                })),
                "{outs:?}"
            );
            assert!(!session.is_playing());
        }
    });
    let decision = decision.expect("the caller's speech was detected");
    // Frame i ends at (i + 1) * 20 ms; the onset is confirmed min_speech after the labelled
    // start (within the VAD's tolerance: one frame early, 20 ms late, plus 20 ms framing).
    let decided_at_ms = (decision as u64 + 1) * 20;
    let onset_ms = truth[0].0 / 8;
    assert!(
        (onset_ms + 200 - 10..=onset_ms + 200 + 40).contains(&decided_at_ms),
        "decided at {decided_at_ms} ms, speech at {onset_ms} ms"
    );
    // Exactly one clear, and no media at all after it (the only turn was interrupted).
    let clear = position(&call, |o| *o == Out::Clear).unwrap();
    assert_eq!(call.sent().filter(|o| **o == Out::Clear).count(), 1);
    assert!(
        !call.log[clear..]
            .iter()
            .any(|(_, o)| matches!(o, Out::Media(_))),
        "media after clear"
    );
    // Twilio was holding at most the lead when the clear came.
    let summary = call.session.summary();
    assert_eq!(summary.barge_ins, 1);
    // The one turn, interrupted (what was heard: the BargeIn above), and no other report of it.
    assert_eq!((summary.bot_turns, summary.interrupted_bot_turns), (1, 1));
    assert_eq!(call.barge_ins(), [(TurnId(1), "Hello there. ".to_owned())]);
    // Late audio for the interrupted turn is dropped.
    let before = summary.frames_out;
    call.say(1, &tone(24_000, 500), 24_000, "More. ");
    call.advance(Duration::from_millis(600));
    assert_eq!(call.session.summary().frames_out, before);
    assert!(call.session.summary().dropped_brain_samples > 0);
    // A new turn plays again.
    call.say(2, &tone(24_000, 200), 24_000, "Sure.");
    call.advance(FRAME);
    assert!(call.session.summary().frames_out > before);
}

#[test]
fn marks_echoed_after_clear_are_not_heard() {
    // 40 ms chunks: with a 100 ms lead two or three marks are in Twilio's hands at any time.
    let texts: Vec<String> = (0..60).map(|i| format!("w{i} ")).collect();
    let chunks: Vec<(&str, u32)> = texts.iter().map(|t| (t.as_str(), 40)).collect();
    let mut call = bot_speaking(&chunks);
    let speech = load("speech_clean_8k.wav");
    call.feed_pcm(&speech[..8000 * 2], |_, _, _| {});
    let clear = position(&call, |o| *o == Out::Clear).expect("barge-in");
    // What the caller heard: the chunks whose marks came back before the clear.
    let heard: String = call.log[..clear]
        .iter()
        .filter_map(|(_, o)| match o {
            Out::Echo(name) => {
                let chunk: usize = name.rsplit('c').next().unwrap().parse().unwrap();
                Some(texts[chunk].as_str())
            }
            _ => None,
        })
        .collect();
    assert!(heard.starts_with("w0 w1 "), "{heard}");
    let marks_in_flight = call.log[..clear]
        .iter()
        .filter(|(_, o)| matches!(o, Out::Mark(_)))
        .count()
        - call.log[..clear]
            .iter()
            .filter(|(_, o)| matches!(o, Out::Echo(_)))
            .count();
    assert!(
        marks_in_flight >= 1,
        "the test must have marks pending at the clear"
    );
    let barge = call
        .brain_events()
        .into_iter()
        .find(|e| matches!(e, BrainEvent::BargeIn { .. }))
        .unwrap();
    assert_eq!(
        barge,
        BrainEvent::BargeIn {
            turn: TurnId(1),
            heard: heard.clone(),
            // 40 ms per heard chunk.
            heard_ms: 40 * heard.split_whitespace().count() as u64,
        }
    );
    // Twilio echoed the pending marks after the clear: accepted quietly, never heard.
    let echoes_after = call.log[clear..]
        .iter()
        .filter(|(_, o)| matches!(o, Out::Echo(_)))
        .count();
    assert_eq!(echoes_after, marks_in_flight);
    assert_eq!(call.session.summary().bad_messages, 0);
    assert!(
        !call
            .brain_events()
            .iter()
            .any(|e| matches!(e, BrainEvent::TurnPlayed { .. }))
    );
    assert_eq!(call.barge_ins(), [(TurnId(1), heard)]);
    let summary = call.session.summary();
    assert_eq!((summary.bot_turns, summary.interrupted_bot_turns), (1, 1));
}

#[test]
fn a_cough_does_not_barge_in() {
    let mut call = bot_speaking(&[("A long sentence. ", 3000)]);
    let cough = load("cough_8k.wav");
    let mut frames_out = Vec::new();
    call.feed_pcm(&cough[..cough.len().min(8000 * 3)], |_, outs, session| {
        assert!(!outs.contains(&Out::Clear), "{outs:?}");
        frames_out.push(session.summary().frames_out);
    });
    assert!(
        call.brain_events()
            .iter()
            .all(|e| !matches!(e, BrainEvent::SpeechStarted | BrainEvent::BargeIn { .. }))
    );
    assert_eq!(call.session.summary().barge_ins, 0);
    // The bot kept talking through the bursts: one frame per 20 ms after the initial lead.
    let last = *frames_out.last().unwrap();
    assert!(last >= 140, "only {last} frames played");
}

#[test]
fn speech_without_bot_audio_does_not_clear() {
    let mut call = Call::new(patient());
    call.start();
    let speech = load("speech_clean_8k.wav");
    call.feed_pcm(&speech[..8000 * 2], |_, _, _| {});
    assert!(call.brain_events().contains(&BrainEvent::SpeechStarted));
    assert!(!call.sent().any(|o| *o == Out::Clear));
    assert_eq!(call.session.summary().barge_ins, 0);
}

#[test]
fn barge_in_can_be_disabled() {
    let mut call = Call::new(voxbridge_session::SessionConfig {
        barge_in: false,
        ..patient()
    });
    call.start();
    call.say(1, &tone(16_000, 3000), 16_000, "Listen. ");
    let speech = load("speech_clean_8k.wav");
    call.feed_pcm(&speech[..8000 * 2], |_, _, _| {});
    assert!(call.brain_events().contains(&BrainEvent::SpeechStarted));
    assert!(!call.sent().any(|o| *o == Out::Clear));
    assert!(call.session.summary().frames_out >= 100);
}

#[test]
fn speech_while_hanging_up_does_not_interrupt_the_goodbye() {
    let mut call = Call::new(patient());
    call.start();
    call.say(1, &tone(8000, 2000), 8000, "Goodbye.");
    call.input(voxbridge_session::Input::Brain(
        voxbridge_session::BrainCommand::Hangup { reason: "done" },
    ));
    let speech = load("speech_clean_8k.wav");
    call.feed_pcm(&speech[..8000 * 2], |_, _, _| {});
    assert!(!call.sent().any(|o| *o == Out::Clear));
    call.feed_pcm(&[0; 8000], |_, _, _| {});
    let media: usize = call
        .sent()
        .map(|o| if let Out::Media(m) = o { m.len() } else { 0 })
        .sum();
    assert_eq!(media, 16_000, "the whole goodbye played");
    assert!(call.sent().any(|o| *o == Out::Close(1000, "hangup")));
    let _ = SILENCE;
}
