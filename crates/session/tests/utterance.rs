//! Caller utterances through the whole inbound path (Twilio JSON -> mu-law -> pipeline rate ->
//! VAD) against the fixtures' ground-truth labels.
//!
//! Tolerances are the VAD's documented ones (`crates/audio/tests/vad_fixtures.rs`): start at
//! most one 10 ms frame early and 20 ms late on clean speech, 60 ms late in noise; end at most
//! 10 ms late and 150 ms early; plus one 10 ms frame either way for what the session adds
//! (mu-law quantisation, the 8 -> 16 kHz resampler).

mod common;

use std::time::Duration;

use common::{Call, Out, labels, load, patient};
use voxbridge_session::{BrainEvent, SessionConfig};

/// (start, end, pcm length, rate) of every utterance, after the audio plus 1 s of silence.
fn utterances(config: SessionConfig, wav: &str) -> Vec<(Duration, Duration, usize, u32)> {
    let mut call = Call::new(config);
    call.start();
    let mut pcm = load(wav);
    pcm.extend(std::iter::repeat_n(0, 8000));
    call.feed_pcm(&pcm, |_, _, _| {});
    let spans = spans_of(&call);
    assert_eq!(call.session.summary().utterances, spans.len() as u64);
    // Every onset was announced before its utterance.
    let started = call
        .sent()
        .filter(|o| **o == Out::Brain(BrainEvent::SpeechStarted))
        .count();
    assert_eq!(started, spans.len());
    spans
}

/// (start, end, pcm length, rate) of every utterance the call delivered so far.
fn spans_of(call: &Call) -> Vec<(Duration, Duration, usize, u32)> {
    call.sent()
        .filter_map(|o| match o {
            Out::Brain(BrainEvent::Utterance {
                pcm,
                sample_rate,
                started_at,
                ended_at,
            }) => Some((*started_at, *ended_at, pcm.len(), *sample_rate)),
            _ => None,
        })
        .collect()
}

fn check(
    spans: &[(Duration, Duration, usize, u32)],
    truth: &[(u64, u64)],
    late_start_ms: i64,
    rate: u32,
) {
    assert_eq!(spans.len(), truth.len(), "{spans:?} vs {truth:?}");
    for (&(start, end, len, sample_rate), &(ts, te)) in spans.iter().zip(truth) {
        assert_eq!(sample_rate, rate);
        // The audio covers exactly the reported span.
        let expected_len =
            end.checked_sub(start).unwrap().as_nanos() * u128::from(rate) / 1_000_000_000;
        assert_eq!(len as u128, expected_len);
        let start_err = start.as_millis() as i64 - (ts / 8) as i64;
        let end_err = end.as_millis() as i64 - (te / 8) as i64;
        assert!(
            (-10..=late_start_ms + 10).contains(&start_err),
            "start {start:?} vs label {} ms ({spans:?})",
            ts / 8
        );
        assert!(
            (-150 - 10..=10 + 10).contains(&end_err),
            "end {end:?} vs label {} ms ({spans:?})",
            te / 8
        );
    }
}

#[test]
fn clean_speech_utterances_match_the_labels_at_16k() {
    let spans = utterances(patient(), "speech_clean_8k.wav");
    check(&spans, &labels("speech_clean_8k.labels"), 20, 16_000);
}

#[test]
fn clean_speech_utterances_match_the_labels_at_8k() {
    let spans = utterances(
        SessionConfig {
            pipeline_rate: 8000,
            ..patient()
        },
        "speech_clean_8k.wav",
    );
    check(&spans, &labels("speech_clean_8k.labels"), 20, 8000);
}

#[test]
fn noisy_speech_utterances_match_the_labels() {
    let spans = utterances(patient(), "speech_noisy_8k.wav");
    check(&spans, &labels("speech_clean_8k.labels"), 60, 16_000);
}

#[test]
fn noise_and_coughs_make_no_utterance() {
    assert!(utterances(patient(), "noise_only_8k.wav").is_empty());
    assert!(utterances(patient(), "cough_8k.wav").is_empty());
}

#[test]
fn utterance_audio_is_the_callers_audio() {
    // The utterance's samples are the pipeline stream itself: the 16 kHz audio must carry the
    // fixture's energy (not silence, not a shifted copy of the pre-roll).
    let mut call = Call::new(patient());
    call.start();
    let pcm = load("speech_clean_8k.wav");
    call.feed_pcm(&pcm, |_, _, _| {});
    let Some(Out::Brain(BrainEvent::Utterance {
        pcm: u, started_at, ..
    })) = call
        .sent()
        .find(|o| matches!(o, Out::Brain(BrainEvent::Utterance { .. })))
        .cloned()
    else {
        panic!("no utterance");
    };
    // Compare RMS over the first 200 ms against the same span of the source.
    let rms =
        |s: &[i16]| (s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len() as f64).sqrt();
    let from = (started_at.as_millis() as usize) * 8;
    let source = rms(&pcm[from..from + 1600]);
    let ours = rms(&u[..3200]);
    assert!((ours / source - 1.0).abs() < 0.1, "{ours} vs {source}");
}

#[test]
fn an_agent_can_switch_the_rate_at_start_but_not_once_audio_flows() {
    // The echo agent asks for Twilio's own 8 kHz when it is picked at `start`.
    let mut call = Call::new(patient());
    call.start();
    call.session
        .set_pipeline_rate(8000)
        .expect("before the first media frame");
    assert_eq!(call.session.config().pipeline_rate, 8000);
    let mut pcm = load("speech_clean_8k.wav");
    pcm.extend(std::iter::repeat_n(0, 8000));
    call.feed_pcm(&pcm, |_, _, _| {});
    let spans = spans_of(&call);
    check(&spans, &labels("speech_clean_8k.labels"), 20, 8000);

    let err = call
        .session
        .set_pipeline_rate(16_000)
        .expect_err("audio already flows at 8 kHz");
    assert_eq!(err.key, "pipeline_rate");
    assert_eq!(call.session.config().pipeline_rate, 8000);
    let err = Call::new(patient())
        .session
        .set_pipeline_rate(11_025)
        .expect_err("not a supported rate");
    assert_eq!(err.key, "pipeline_rate");
}

/// (start, end, audio) of every pause the call reported.
fn pauses_of(call: &Call) -> Vec<(Duration, Duration, Vec<i16>)> {
    call.sent()
        .filter_map(|o| match o {
            Out::Brain(BrainEvent::Pause {
                pcm,
                started_at,
                ended_at,
                ..
            }) => Some((*started_at, *ended_at, pcm.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn pauses_come_before_their_utterance_with_its_exact_audio_when_asked_for() {
    use voxbridge_session::CallerAudio;
    let mut pcm = load("speech_clean_8k.wav");
    pcm.extend(std::iter::repeat_n(0, 8000));

    let mut call = Call::new(patient());
    call.session
        .set_caller_audio(CallerAudio::UtterancesAndPauses);
    call.start();
    call.feed_pcm(&pcm, |_, _, _| {});
    let pauses = pauses_of(&call);
    let utterances: Vec<(Duration, Duration, Vec<i16>)> = call
        .sent()
        .filter_map(|o| match o {
            Out::Brain(BrainEvent::Utterance {
                pcm,
                started_at,
                ended_at,
                ..
            }) => Some((*started_at, *ended_at, pcm.clone())),
            _ => None,
        })
        .collect();
    assert!(!utterances.is_empty());
    // Every utterance that ended in silence was announced by a pause with the same span and
    // audio, the last pause before it (earlier pauses were talked through).
    for utterance in &utterances {
        let matching = pauses
            .iter()
            .filter(|p| p.0 == utterance.0 && p.1 == utterance.1)
            .count();
        assert_eq!(matching, 1, "{:?}..{:?}", utterance.0, utterance.1);
        let pause = pauses
            .iter()
            .find(|p| p.0 == utterance.0 && p.1 == utterance.1)
            .unwrap();
        assert_eq!(pause.2, utterance.2, "the same audio");
    }
    // Pauses are brain events only: the summary counts utterances.
    assert_eq!(call.session.summary().utterances, utterances.len() as u64);

    // Not asked for: none.
    let mut call = Call::new(patient());
    call.start();
    call.feed_pcm(&pcm, |_, _, _| {});
    assert!(pauses_of(&call).is_empty());
}
