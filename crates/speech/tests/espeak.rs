//! The espeak-ng synthesiser with the real binary: audio at its rate, config applied, and the
//! child killed when the stream is dropped.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use voxbridge_speech::config::EspeakConfig;
use voxbridge_speech::espeak::EspeakTts;
use voxbridge_speech::{ProviderError, Stage, Tts, TtsRequest};

fn request(text: &str) -> TtsRequest {
    TtsRequest {
        text: text.into(),
        voice: None,
        language: None,
    }
}

/// The synthesiser, or `None` (a counted skip, a failure under CI) when espeak-ng is not
/// installed. When it is, any error building it fails the test.
fn espeak(test: &str, config: EspeakConfig) -> Option<EspeakTts> {
    if !voxbridge_testkit::require_tool(test, "espeak-ng") {
        return None;
    }
    Some(EspeakTts::new(config).expect("espeak-ng is installed: the synthesiser must build"))
}

async fn speak(tts: &EspeakTts, text: &str) -> (Vec<i16>, u32, usize) {
    let chunks: Vec<_> = tokio::time::timeout(
        Duration::from_secs(60),
        tts.synthesize(request(text)).collect::<Vec<_>>(),
    )
    .await
    .expect("espeak finishes");
    let mut pcm = Vec::new();
    let mut rate = 0;
    let n = chunks.len();
    for c in chunks {
        let c = c.expect("audio");
        rate = c.sample_rate;
        pcm.extend(c.pcm);
    }
    (pcm, rate, n)
}

#[tokio::test]
async fn speaks_a_sentence_at_its_rate() {
    let Some(tts) = espeak("speaks_a_sentence_at_its_rate", EspeakConfig::default()) else {
        return;
    };
    let (pcm, rate, chunks) =
        speak(&tts, "Thank you for calling. We will get back to you soon.").await;
    assert_eq!(rate, 22_050);
    let seconds = pcm.len() as f64 / f64::from(rate);
    // Eleven words at 170 wpm is about 4 s; allow a wide band.
    assert!((1.5..8.0).contains(&seconds), "{seconds} s");
    assert!(chunks > 1, "streamed in pieces, got {chunks}");
    let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    assert!(peak > 3_000, "audible, peak {peak}");
}

#[tokio::test]
async fn rate_setting_changes_the_length() {
    let text = "One two three four five six seven eight nine ten.";
    let Some(slow) = espeak(
        "rate_setting_changes_the_length",
        EspeakConfig {
            rate_wpm: 100,
            ..EspeakConfig::default()
        },
    ) else {
        return;
    };
    let fast = espeak(
        "rate_setting_changes_the_length",
        EspeakConfig {
            rate_wpm: 300,
            ..EspeakConfig::default()
        },
    )
    .expect("espeak exists");
    let (slow_pcm, ..) = speak(&slow, text).await;
    let (fast_pcm, ..) = speak(&fast, text).await;
    assert!(
        slow_pcm.len() > fast_pcm.len() * 3 / 2,
        "100 wpm {} samples vs 300 wpm {}",
        slow_pcm.len(),
        fast_pcm.len()
    );
}

#[tokio::test]
async fn text_is_never_an_option() {
    let Some(tts) = espeak("text_is_never_an_option", EspeakConfig::default()) else {
        return;
    };
    // Passed on stdin, so this is spoken (not parsed as `--help` or `-w file`).
    let (pcm, ..) = speak(&tts, "--help -w /tmp/should-not-exist.wav").await;
    assert!(!pcm.is_empty());
    assert!(!std::path::Path::new("/tmp/should-not-exist.wav").exists());
}

/// `/proc/PID/stat` state letter, `None` when the process is gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ..." - the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[tokio::test]
async fn dropping_the_stream_kills_espeak() {
    if !voxbridge_testkit::require_tool("dropping_the_stream_kills_espeak", "espeak-ng") {
        return;
    }
    let binary = voxbridge_testkit::find_on_path("espeak-ng").expect("found just now");
    // A wrapper that records its PID, then becomes espeak-ng (exec keeps the PID). The text is
    // minutes of speech and nobody reads the pipe after the first chunk, so espeak-ng blocks
    // on its full stdout: it is alive until something kills it.
    let dir = tempdir();
    let pid_file = dir.join("pid");
    let wrapper = dir.join("espeak-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho $$ > {pid}\nexec {bin} \"$@\"\n",
            pid = pid_file.display(),
            bin = binary.display()
        ),
    )
    .expect("write wrapper");
    set_executable(&wrapper);
    wait_until_executable(&wrapper);
    let tts = EspeakTts::new(EspeakConfig {
        binary: wrapper.display().to_string(),
        ..EspeakConfig::default()
    })
    .expect("wrapper exists");

    let long = "This is a very long message that keeps espeak busy for quite a while. ".repeat(40);
    let mut stream = tts.synthesize(request(&long));
    let first = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("first chunk in time");
    assert!(matches!(first, Some(Ok(_))), "{first:?}");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid written")
        .trim()
        .parse()
        .expect("pid");
    drop(stream);
    // Killed (gone, or a zombie until tokio reaps it) well before it could have finished.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match process_state(pid) {
            None | Some('Z' | 'X') => break,
            Some(state) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "espeak-ng {pid} still running (state {state}) after the stream was dropped"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_failing_binary_is_unavailable_with_its_stderr() {
    let dir = tempdir();
    let fake = dir.join("fake-espeak");
    std::fs::write(&fake, "#!/bin/sh\necho 'voice not found' >&2\nexit 1\n").expect("write");
    set_executable(&fake);
    wait_until_executable(&fake);
    let tts = EspeakTts::new(EspeakConfig {
        binary: fake.display().to_string(),
        ..EspeakConfig::default()
    })
    .expect("exists");
    let items: Vec<_> = tts.synthesize(request("hello")).collect().await;
    match items.as_slice() {
        [
            Err(ProviderError::Unavailable {
                stage: Stage::Tts,
                message,
            }),
        ] => {
            assert!(message.contains("voice not found"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "voxbridge-espeak-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn set_executable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Waits until `script` can be executed. A parallel test's `fork` may still hold the write
/// handle this thread just closed (until that child `exec`s), and then `exec` of the fresh
/// file fails with ETXTBSY ("Text file busy"): a property of the test harness, not of the
/// provider, which spawns an installed binary.
fn wait_until_executable(script: &std::path::Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match std::process::Command::new(script)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .status()
        {
            Err(e) if e.raw_os_error() == Some(26) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{}: {e}",
                    script.display()
                );
                std::thread::yield_now();
            }
            Err(e) => panic!("{}: {e}", script.display()),
            Ok(_) => return,
        }
    }
}
