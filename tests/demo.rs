//! The offline demo end to end, as a user runs it: `voxbridge demo` starts the bridge (with
//! `/relay` and the scripted screening agent), the API on a fresh SQLite file and the
//! simulated Twilio, places a screening through `POST /api/screenings`, and prints the
//! transcript and the stored result. Each scenario must end with its expected outcome;
//! `--mode echo` runs the call over Media Streams and must leave the bridge's record of it;
//! `--mode voice` runs the whole screening over Media Streams, recognised by the embedded
//! Whisper model (a counted skip where `scripts/setup.sh` has not installed it).

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
    let mut command = api_process::voxbridge_command();
    // Where the Whisper model is, when not in the default place under HOME.
    if let Some(dir) = std::env::var_os("VOXBRIDGE_MODEL_DIR") {
        command.env("VOXBRIDGE_MODEL_DIR", dir);
    }
    let output = command
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
    // TwiML, the default message with the screening's first name and job) and the simulator
    // played it.
    assert!(out.contains("answered by machine_end_beep"), "{out}");
    assert!(
        out.contains(
            "(Twilio says) Hi Jane, this is the recruiting team calling about your application \
             for Warehouse Associate."
        ),
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

/// The screening over Media Streams, heard by the embedded recogniser and spoken by
/// espeak-ng: every answer (five spoken, one key press) understood and stored as the relay
/// demo stores it, each turn's latency printed, qualified.
#[test]
fn demo_voice_screens_over_media_streams_and_qualifies() {
    let model = voxbridge_speech::local::default_model_dir(&|name| std::env::var(name).ok());
    if let Err(why) = voxbridge_speech::local::check_model_dir(&model) {
        voxbridge_testkit::skip("demo_voice_screens_over_media_streams_and_qualifies", &why);
        return;
    }
    let out = demo_with(&["--mode", "voice"]);
    assert!(
        out.contains("media call: agent screening, ended screening-complete,"),
        "{out}"
    );
    assert!(out.contains("outcome qualified"), "{out}");
    assert_eq!(out.matches("(accepted,").count(), 6, "{out}");
    assert!(out.contains("screening-complete"), "{out}");
    assert!(out.contains("status:completed"), "{out}");
    // What was said beside what was recognised: the key press arrives as keys.
    let said = out
        .split("--- candidate said -> bridge recognised ---")
        .nth(1)
        .expect("the said/recognised table");
    let rows: Vec<&str> = said
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(rows.len(), 6, "{out}");
    assert!(
        rows[5].contains("(presses 1)") && rows[5].contains("(keys 1)"),
        "{out}"
    );
    // One spoken turn per spoken answer, each with its ASR time.
    let turns = out
        .split("voice-to-voice  outcome")
        .nth(1)
        .expect("the turn table");
    let spoken = turns
        .lines()
        .filter(|l| l.trim_end().ends_with("spoken"))
        .count();
    assert!(spoken >= 5, "{out}");
    assert!(out.contains("voice screening qualified"), "{out}");
}
