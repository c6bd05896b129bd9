//! `voxbridge config` and `voxbridge config check` as a user runs them: the real binary, a
//! `.env` file in the working directory, environment variables copied from README.

mod api_process;

use std::process::Command;

/// The binary in `dir` with an empty environment but for `RUST_LOG=warn`.
fn voxbridge(dir: &std::path::Path) -> Command {
    let mut cmd = api_process::voxbridge_command();
    cmd.current_dir(dir).env("RUST_LOG", "warn");
    cmd
}

#[test]
fn config_prints_toml_with_secrets_redacted_and_reads_dot_env() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "TWILIO_AUTH_TOKEN=tok-from-dotenv-123\nTWILIO_PHONE_NUMBER=+14155550100\n\
         VOXBRIDGE__API__API_TOKEN=api-secret-456\n",
    )
    .unwrap();
    let out = voxbridge(dir.path())
        .args(["config"])
        .env(
            "DATABASE_URL",
            "postgres://app:db-pass-789@db:5432/voxbridge",
        )
        .env("VOXBRIDGE__API__TWILIO__FROM_NUMBER", "+14155550199")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for secret in ["tok-from-dotenv-123", "api-secret-456", "db-pass-789"] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
    let printed: toml::Table = toml::from_str(&text).expect("the output is TOML");
    let api = printed["api"].as_table().unwrap();
    assert_eq!(api["api_token"].as_str(), Some("<redacted>"));
    // The process environment wins over .env; the number stays text.
    assert_eq!(api["twilio"]["from_number"].as_str(), Some("+14155550199"));
    assert_eq!(api["twilio"]["auth_token"].as_str(), Some("<redacted>"));
    assert_eq!(printed["media"]["auth_token"].as_str(), Some("<redacted>"));
    assert_eq!(
        printed["store"]["database_url"].as_str(),
        Some("postgres://app:***@db:5432/voxbridge")
    );
    assert_eq!(printed["media"]["hangover_ms"].as_integer(), Some(600));
}

#[test]
fn config_check_runs_the_startup_checks() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.toml");
    std::fs::write(
        &ok,
        "[media]\npublic_url = \"wss://voice.example.com\"\n\n[api.twilio]\nauth_token = \"t\"\n",
    )
    .unwrap();
    let out = voxbridge(dir.path())
        .args(["--config", ok.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("configuration OK"));

    // No auth token anywhere: the bridge would refuse to start, and says which key to set.
    let out = voxbridge(dir.path())
        .args(["config", "check"])
        .env("VOXBRIDGE__MEDIA__PUBLIC_URL", "wss://voice.example.com")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("media.auth_token"), "{stderr}");

    // A wrong type names the variable that set it, before any check runs (exit code 2).
    let out = voxbridge(dir.path())
        .args(["config", "check"])
        .env("VOXBRIDGE__MEDIA__HANGOVER_MS", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("VOXBRIDGE__MEDIA__HANGOVER_MS (media.hangover_ms)"),
        "{stderr}"
    );
}

#[test]
fn logs_to_a_pipe_are_plain_and_json_logs_are_flat() {
    let dir = tempfile::tempdir().unwrap();
    // stderr is a pipe here, as under systemd or `docker logs`: no colour codes.
    let out = voxbridge(dir.path())
        .args(["--log-level", "info", "config", "check"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("ERROR"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escape in piped logs: {stderr:?}"
    );

    let out = voxbridge(dir.path())
        .args(["--log-format", "json", "config", "check"])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stderr);
    let event: serde_json::Value =
        serde_json::from_str(line.lines().next().expect("one log line")).expect("JSON");
    assert_eq!(event["level"], "ERROR");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .contains("media.auth_token"),
        "{event}"
    );
    assert!(
        event.get("fields").is_none(),
        "fields are flattened: {event}"
    );

    let out = voxbridge(dir.path())
        .args(["--log-level", "foo=notalevel", "config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The container HEALTHCHECK: `voxbridge healthcheck` against a running `voxbridge serve`.
#[test]
fn healthcheck_passes_against_a_running_bridge_and_fails_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut serve = voxbridge(dir.path())
        .args(["serve"])
        .env("VOXBRIDGE__MEDIA__LISTEN", &listen)
        .env("TWILIO_AUTH_TOKEN", "t")
        .env("PUBLIC_URL", "wss://voice.example.com")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/v.db", dir.path().display()),
        )
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let healthy = (0..100).any(|_| {
        let ok = voxbridge(dir.path())
            .args(["healthcheck"])
            .env("VOXBRIDGE__MEDIA__LISTEN", &listen)
            .output()
            .unwrap()
            .status
            .success();
        if !ok {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        ok
    });
    let by_url = voxbridge(dir.path())
        .args(["healthcheck", "--url", &format!("http://{listen}/healthz")])
        .output()
        .unwrap();
    let missing = voxbridge(dir.path())
        .args([
            "healthcheck",
            "--url",
            &format!("http://{listen}/no-such-page"),
        ])
        .output()
        .unwrap();
    serve.kill().unwrap();
    serve.wait().unwrap();
    assert!(healthy, "serve never answered /healthz");
    assert!(
        by_url.status.success(),
        "{}",
        String::from_utf8_lossy(&by_url.stderr)
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("status 404"));

    let down = voxbridge(dir.path())
        .args(["healthcheck", "--timeout-ms", "500"])
        .env("VOXBRIDGE__MEDIA__LISTEN", &listen)
        .output()
        .unwrap();
    assert!(!down.status.success(), "healthy with nothing listening");
}
