//! The offline demo end to end, as a user runs it: `voxbridge demo` starts the bridge (with
//! `/relay` and the scripted screening agent), the API on a fresh SQLite file and the
//! simulated Twilio, places a screening through `POST /api/screenings`, and prints the
//! transcript and the stored result. Each scenario must end with its expected outcome;
//! `--mode echo` runs the call over Media Streams and must leave the bridge's record of it.

mod api_process;

/// Runs the relay demo with `scenario`; returns stdout. Panics with the output if it fails.
fn demo(scenario: &str) -> String {
    demo_with(&[
        "--scenario",
        &format!("config/scenarios/{scenario}.toml"),
        "--tts-ms-per-char",
        "10",
    ])
}

/// Runs `voxbridge demo ARGS`; returns stdout. Panics with the output if it fails.
fn demo_with(args: &[&str]) -> String {
    let output = api_process::voxbridge_command()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("demo")
        .args(args)
        .args(["--timeout", "120"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "demo {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn demo_screening_completes_qualified_with_every_answer_stored() {
    let out = demo("happy-path");
    assert!(out.contains("outcome qualified"), "{out}");
    assert_eq!(out.matches("(accepted,").count(), 6, "{out}");
    for question in [
        "work_authorization",
        "age_18_plus",
        "forklift_years",
        "shift_preference",
        "start_availability",
        "reliable_transport",
    ] {
        assert!(out.contains(question), "{question} missing\n{out}");
    }
    assert!(
        out.contains("ended: completed (Some(SessionEnded))"),
        "{out}"
    );
    assert!(out.contains("status:completed"), "{out}");
    assert!(out.contains("relay:ended"), "{out}");
    assert!(out.contains("screening-complete"), "{out}");
}

#[test]
fn demo_barge_in_over_relay_truncates_the_greeting() {
    let out = demo("barge-in-relay");
    let greeting = out
        .lines()
        .find(|l| l.contains("bot") && l.contains("Hi Jane"))
        .expect("greeting line");
    assert!(greeting.ends_with("[interrupted]"), "{out}");
    assert!(
        !greeting.contains("authorized"),
        "the truncated greeting holds only what was heard: {greeting}"
    );
    assert!(out.contains("outcome qualified"), "{out}");
}

#[test]
fn demo_candidate_hanging_up_early_is_incomplete() {
    let out = demo("hangup-early");
    assert!(
        out.contains("ended: completed (Some(CallerHungUp))"),
        "{out}"
    );
    assert!(out.contains("outcome incomplete"), "{out}");
}

#[test]
fn demo_voicemail_is_redirected_to_the_voicemail_message() {
    let out = demo("voicemail");
    // Async AMD reported a machine; the API redirected the live call (REST update with
    // TwiML) and the simulator played it.
    assert!(out.contains("answered by machine_end_beep"), "{out}");
    assert!(
        out.contains("(Twilio says) Hello, this is the recruiting team"),
        "{out}"
    );
    assert!(out.contains("ended: completed (Some(Cancelled))"), "{out}");
    // A redirected <Connect> does not call its action URL.
    assert!(!out.contains("/twilio/relay/action"), "{out}");
}

#[test]
fn demo_echo_stores_the_media_streams_call() {
    let out = demo_with(&["--mode", "echo"]);
    // Three answers, each echoed back as one bot turn, then the candidate hangs up: the
    // bridge's record of the call reaches the API's store.
    assert!(
        out.contains("media call: agent echo, ended stopped,"),
        "{out}"
    );
    assert!(
        out.contains(" 3 utterances, 3 bot turns, 0 barge-ins,"),
        "{out}"
    );
    assert!(out.contains("status:completed"), "{out}");
    assert!(
        out.contains("no answers (the echo agent asks no questions)"),
        "{out}"
    );
}
