//! `BrainEvent::TurnStarted`: reported once per turn, with the instant the turn's first `media`
//! frame was handed out, on virtual time.

mod common;

use std::time::Duration;

use common::{Call, Out, load, patient, tone};
use voxbridge_session::{BrainEvent, TurnId};

fn started(call: &Call) -> Vec<(TurnId, std::time::Instant)> {
    call.brain_events()
        .into_iter()
        .filter_map(|e| match e {
            BrainEvent::TurnStarted { turn, at } => Some((turn, at)),
            _ => None,
        })
        .collect()
}

#[test]
fn turn_started_follows_the_first_frame_of_each_turn_once() {
    let mut call = Call::new(patient());
    call.start();
    call.advance(Duration::from_millis(500));
    let spoken_at = call.now;
    // Two chunks at 24 kHz: one TurnStarted, right after the first media frame.
    let outs = call.say(1, &tone(24_000, 300), 24_000, "Hello. ");
    call.say(1, &tone(24_000, 300), 24_000, "How are you? ");
    let first_media = outs
        .iter()
        .position(|o| matches!(o, Out::Media(_)))
        .expect("a frame goes at once");
    assert!(
        matches!(
            outs.get(first_media + 1),
            Some(Out::Brain(BrainEvent::TurnStarted {
                turn: TurnId(1),
                ..
            }))
        ),
        "TurnStarted comes straight after the first frame: {outs:?}"
    );
    call.turn_end(1);
    call.advance(Duration::from_secs(1));
    assert_eq!(started(&call), vec![(TurnId(1), spoken_at)]);

    // The next turn is queued behind nothing: its first frame goes when it is said.
    call.advance(Duration::from_millis(200));
    let second_at = call.now;
    call.say(2, &tone(8000, 100), 8000, "Next.");
    call.turn_end(2);
    call.advance(Duration::from_secs(1));
    assert_eq!(
        started(&call),
        vec![(TurnId(1), spoken_at), (TurnId(2), second_at)]
    );
}

#[test]
fn a_turn_queued_behind_another_starts_when_its_own_audio_goes_out() {
    let mut call = Call::new(patient());
    call.start();
    let t = call.now;
    call.say(1, &tone(8000, 400), 8000, "One.");
    call.turn_end(1);
    // Turn 2 is queued at once; its first frame goes once no more than the 100 ms lead minus
    // one frame is ahead in Twilio's buffer: 400 - 80 = 320 ms.
    call.say(2, &tone(8000, 200), 8000, "Two.");
    call.turn_end(2);
    call.advance(Duration::from_secs(1));
    let s = started(&call);
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[0], (TurnId(1), t));
    assert_eq!(s[1].0, TurnId(2));
    assert_eq!(s[1].1 - t, Duration::from_millis(320));
}

#[test]
fn a_cleared_turn_that_never_played_is_not_reported() {
    let mut call = Call::new(patient());
    call.start();
    call.say(1, &tone(8000, 3000), 8000, "One.");
    call.turn_end(1);
    call.say(2, &tone(8000, 200), 8000, "Two.");
    // The caller barges in before turn 2's first frame: it never starts.
    call.advance(Duration::from_millis(60));
    // The fixture's speech starts at 0.8 s: the barge-in comes at about 1.1 s.
    let speech = load("speech_clean_8k.wav");
    call.feed_pcm(&speech[..8000 * 2], |_, _, _| {});
    call.advance(Duration::from_secs(1));
    let events = call.brain_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, BrainEvent::BargeIn { .. })),
        "the caller barged in: {events:?}"
    );
    // The answer after the barge-in is the next turn to start; turn 2 never does.
    let answer_at = call.now;
    call.say(3, &tone(8000, 200), 8000, "Yes?");
    call.turn_end(3);
    call.advance(Duration::from_secs(1));
    let s = started(&call);
    assert_eq!(
        s.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![TurnId(1), TurnId(3)]
    );
    assert_eq!(s[1].1, answer_at);
}
