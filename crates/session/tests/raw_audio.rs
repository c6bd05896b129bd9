//! Brains that listen for themselves: raw caller mu-law in, mu-law passthrough out, and
//! interruption on the brain's word with the heard position from echoed marks. Virtual time.

mod common;

use std::time::Duration;

use common::{Call, FRAME, Out, SILENCE, load, patient};
use voxbridge_audio::mulaw;
use voxbridge_session::{BrainCommand, BrainEvent, CallerAudio, Input, TurnId};

/// A call in raw mode.
fn raw_call() -> Call {
    let mut call = Call::new(patient());
    call.start();
    call.session.set_caller_audio(CallerAudio::Raw);
    call
}

/// Has the bot say `ms` of mu-law for `turn` in chunks of `chunk_ms`, as a speech-to-speech
/// brain does; returns the bytes.
fn say_mulaw(call: &mut Call, turn: u64, ms: usize, chunk_ms: usize) -> Vec<u8> {
    // Every code in turn, so any transcoding would show.
    let audio: Vec<u8> = (0..ms * 8).map(|i| (i % 256) as u8).collect();
    for chunk in audio.chunks(chunk_ms * 8) {
        call.input(Input::Brain(BrainCommand::AudioMulaw {
            turn: TurnId(turn),
            mulaw: chunk,
        }));
        call.input(Input::Brain(BrainCommand::ChunkEnd {
            turn: TurnId(turn),
            text: "",
        }));
    }
    audio
}

fn media_bytes(call: &Call) -> Vec<u8> {
    call.sent()
        .flat_map(|o| match o {
            Out::Media(m) => m.clone(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn raw_mode_hands_every_payload_over_unchanged_and_runs_no_vad() {
    let mut call = raw_call();
    // Real speech: in the default mode this gives SpeechStarted and an Utterance.
    let speech = load("speech_clean_8k.wav");
    let mut sent = Vec::new();
    for frame in speech[..8000 * 3].chunks(160) {
        let mut codes = Vec::new();
        mulaw::encode(frame, &mut codes);
        call.advance(FRAME);
        call.media(&codes);
        sent.extend(codes);
    }
    call.advance(Duration::from_secs(1));
    let events = call.brain_events();
    let received: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            BrainEvent::CallerAudio { mulaw } => Some(mulaw.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(received, sent, "payloads reach the brain byte for byte");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, BrainEvent::SpeechStarted | BrainEvent::Utterance { .. })),
        "no local VAD in raw mode"
    );
    assert_eq!(call.session.summary().frames_in, 150);
    assert_eq!(call.session.summary().utterances, 0);
}

#[test]
fn default_mode_sends_no_raw_audio() {
    let mut call = Call::new(patient());
    call.start();
    assert_eq!(call.session.caller_audio(), CallerAudio::Utterances);
    for _ in 0..10 {
        call.advance(FRAME);
        call.media(&SILENCE);
    }
    assert!(
        !call
            .brain_events()
            .iter()
            .any(|e| matches!(e, BrainEvent::CallerAudio { .. }))
    );
}

#[test]
fn raw_mode_caller_speech_does_not_barge_in() {
    let mut call = raw_call();
    say_mulaw(&mut call, 1, 3000, 100);
    call.turn_end(1);
    call.feed_pcm(&load("speech_clean_8k.wav")[..8000 * 2], |_, _, _| {});
    assert!(!call.sent().any(|o| *o == Out::Clear));
    assert_eq!(call.session.summary().barge_ins, 0);
}

#[test]
fn mulaw_passthrough_is_byte_exact_with_a_mark_per_chunk() {
    let mut call = raw_call();
    let audio = say_mulaw(&mut call, 1, 1000, 100);
    call.turn_end(1);
    call.advance(Duration::from_millis(1200));
    assert_eq!(media_bytes(&call), audio);
    let marks: Vec<_> = call
        .sent()
        .filter_map(|o| match o {
            Out::Mark(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(marks.len(), 10, "{marks:?}");
    assert!(
        call.brain_events()
            .contains(&BrainEvent::TurnPlayed { turn: TurnId(1) })
    );
}

#[test]
fn brain_interrupt_clears_at_once_and_reports_the_heard_ms_from_marks() {
    let mut call = raw_call();
    say_mulaw(&mut call, 1, 3000, 100);
    // 1 s of playout: Twilio's model echoes t1c0..t1c9 on time.
    call.advance(Duration::from_millis(1030));
    let outs = call.input(Input::Brain(BrainCommand::Interrupt { turn: TurnId(1) }));
    assert_eq!(outs.first(), Some(&Out::Clear), "clear first: {outs:?}");
    let barge = outs
        .iter()
        .find_map(|o| match o {
            Out::Brain(BrainEvent::BargeIn { turn, heard_ms, .. }) => Some((*turn, *heard_ms)),
            _ => None,
        })
        .expect("a barge-in report");
    assert_eq!(barge, (TurnId(1), 1000));
    assert!(!call.session.is_playing());
    assert_eq!(call.session.summary().barge_ins, 1);
    // The caller heard 1030 ms of media in the model; the report is within one chunk of it.
    let played_ms = 1030;
    assert!(played_ms - barge.1 < 100);
    // Late audio for the turn is dropped; nothing more is sent for it.
    let before = call.session.summary().frames_out;
    say_mulaw(&mut call, 1, 500, 100);
    call.advance(Duration::from_millis(600));
    assert_eq!(call.session.summary().frames_out, before);
    // The next turn plays.
    say_mulaw(&mut call, 2, 200, 100);
    call.advance(Duration::from_millis(300));
    assert!(call.session.summary().frames_out > before);
}

#[test]
fn interrupting_a_turn_whose_audio_never_came_reports_zero_and_drops_it_later() {
    let mut call = raw_call();
    let outs = call.input(Input::Brain(BrainCommand::Interrupt { turn: TurnId(4) }));
    assert_eq!(
        outs,
        vec![Out::Brain(BrainEvent::BargeIn {
            turn: TurnId(4),
            heard: String::new(),
            heard_ms: 0,
        })]
    );
    assert!(!call.sent().any(|o| *o == Out::Clear), "nothing to clear");
    assert_eq!(call.session.summary().barge_ins, 0);
    say_mulaw(&mut call, 4, 200, 100);
    call.advance(Duration::from_millis(300));
    assert_eq!(call.session.summary().frames_out, 0);
    assert_eq!(call.session.summary().dropped_brain_samples, 1600);
}

#[test]
fn interrupting_a_played_turn_does_nothing() {
    let mut call = raw_call();
    say_mulaw(&mut call, 1, 200, 100);
    call.turn_end(1);
    call.advance(Duration::from_millis(400));
    assert!(
        call.brain_events()
            .contains(&BrainEvent::TurnPlayed { turn: TurnId(1) })
    );
    let outs = call.input(Input::Brain(BrainCommand::Interrupt { turn: TurnId(1) }));
    assert!(outs.is_empty(), "{outs:?}");
    assert_eq!(call.session.summary().barge_ins, 0);
}

#[test]
fn interrupt_does_not_cut_a_goodbye() {
    let mut call = raw_call();
    say_mulaw(&mut call, 1, 1000, 100);
    call.input(Input::Brain(BrainCommand::Hangup { reason: "bye" }));
    let outs = call.input(Input::Brain(BrainCommand::Interrupt { turn: TurnId(1) }));
    assert!(!outs.contains(&Out::Clear));
    call.feed_pcm(&vec![0; 8 * 1500], |_, _, _| {});
    assert_eq!(media_bytes(&call).len(), 8000, "the whole goodbye played");
}
