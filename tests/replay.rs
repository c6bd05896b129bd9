//! `voxbridge replay` drives the real Media Streams session: the utterances it reports for a
//! labelled fixture are the labelled sentences, within the VAD's documented tolerances
//! (`crates/audio/tests/vad_fixtures.rs`: start at most 10 ms early and 20 ms late on clean
//! speech, end at most 10 ms late and 150 ms early), plus one 10 ms frame for the mu-law round
//! trip and resampling to the 16 kHz pipeline rate.

mod common;

use std::process::Command;

/// The labelled sentences, in ms.
fn labels(name: &str) -> Vec<(i64, i64)> {
    std::fs::read_to_string(common::fixture(name))
        .expect("labels")
        .lines()
        .map(|line| {
            let mut parts = line.split_whitespace().map(|v| v.parse::<i64>().unwrap());
            let (start, end) = (parts.next().unwrap(), parts.next().unwrap());
            (start / 8, end / 8)
        })
        .collect()
}

/// `#1      800 ms ..    3930 ms  (...)` -> (800, 3930).
fn utterances(report: &str) -> Vec<(i64, i64)> {
    report
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .map(|l| {
            let numbers: Vec<i64> = l
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            assert!(numbers.len() >= 2, "an unfinished utterance: {l}");
            (numbers[0], numbers[1])
        })
        .collect()
}

#[test]
fn replay_reports_the_labelled_sentences_through_the_session() {
    let output = Command::new(env!("CARGO_BIN_EXE_voxbridge"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg("replay")
        .arg(common::fixture("speech_clean_8k.wav"))
        .output()
        .expect("voxbridge runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        report.contains("utterances the session hands the brain"),
        "{report}"
    );
    let found = utterances(&report);
    let expected = labels("speech_clean_8k.labels");
    assert_eq!(found.len(), expected.len(), "{report}");
    for (&(start, end), &(label_start, label_end)) in found.iter().zip(&expected) {
        let early_start = label_start - start;
        let late_start = start - label_start;
        assert!(
            early_start <= 20 && late_start <= 30,
            "start {start} vs label {label_start}:\n{report}"
        );
        let late_end = end - label_end;
        let early_end = label_end - end;
        assert!(
            late_end <= 20 && early_end <= 160,
            "end {end} vs label {label_end}:\n{report}"
        );
    }
}
