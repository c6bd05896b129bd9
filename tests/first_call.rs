//! README's "Your first real call", run as written: every line of its `sh` blocks in one bash
//! session, in order, in a fresh directory, with the real binary on `PATH`; every `toml` block
//! through `voxbridge config check`. Two stand-ins, and only these: the simulator
//! (`voxbridge sim twilio`) is Twilio (its REST API dials the candidate, posts the signed
//! callbacks and opens the ConversationRelay socket), and `http://127.0.0.1:<port>` is the
//! tunnel's public URL. The guide's `text` blocks (the release install and the tunnel) are the
//! only ones not run, and the test checks they are no more than those two.

mod api_process;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use api_process::{clean_command, free_port, http, http_response, scratch_dir, signed_webhook};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "first-call-auth-token";
const BEARER: &str = "first-call-bearer-token";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The guide's fenced blocks, `(language, text)`, in order.
fn guide_blocks() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("<!-- first-call-guide -->")
        .expect("README has the first-call guide");
    let end = readme
        .find("<!-- /first-call-guide -->")
        .expect("the guide's end marker");
    let mut blocks = Vec::new();
    let mut lines = readme[start..end].lines();
    while let Some(line) = lines.next() {
        if let Some(language) = line.strip_prefix("```") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push((language.to_owned(), body.join("\n")));
        }
    }
    blocks
}

/// One bash session: lines are run one at a time, each followed by a marker line carrying its
/// exit status, so shell state (`set -a`, variables) carries from line to line.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    output: mpsc::Receiver<String>,
}

impl Shell {
    fn start(dir: &Path, path: &str) -> Self {
        // The guide's reader starts from a clean shell: nothing of the developer's or CI's
        // environment (DATABASE_URL, VOXBRIDGE__*, TWILIO_*, ...) may stand in for a step.
        let mut child = clean_command("bash")
            .arg("--noprofile")
            .arg("--norc")
            .current_dir(dir)
            .env("PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("shell.log")).unwrap())
            .spawn()
            .expect("bash");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            output,
        }
    }

    /// Runs `line`; returns its exit status and what it printed.
    fn run(&mut self, line: &str) -> (i32, String) {
        // The marker on a line of its own even when the command's output has no final newline.
        writeln!(
            self.stdin,
            "{line}\n__guide_status=$?; echo; echo \"__guide_done $__guide_status\""
        )
        .unwrap();
        self.stdin.flush().unwrap();
        let mut printed = String::new();
        loop {
            let got = self
                .output
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("{line:?} did not finish"));
            if let Some(status) = got.strip_prefix("__guide_done ") {
                return (status.trim().parse().unwrap(), printed);
            }
            printed.push_str(&got);
            printed.push('\n');
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // The backgrounded `voxbridge serve` is the shell's job: stop it with the shell.
        let _ = writeln!(self.stdin, "kill -TERM $(jobs -p) 2>/dev/null; wait");
        let _ = writeln!(self.stdin, "exit");
        let _ = self.stdin.flush();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(40) {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

/// Fills `.env` as the guide asks (step 2: the Twilio values and a bearer token; step 3: the
/// tunnel's URL; step 7: an OpenAI key), plus the stand-ins' addresses.
fn fill_env(dir: &Path, public_url: &str, listen: &str, sim: &str) {
    let path = dir.join(".env");
    let text = std::fs::read_to_string(&path).expect("step 2 copied .env.example to .env");
    let mut values = vec![
        ("TWILIO_ACCOUNT_SID", ACCOUNT.to_owned()),
        ("TWILIO_AUTH_TOKEN", TOKEN.to_owned()),
        ("TWILIO_PHONE_NUMBER", "+14155550100".to_owned()),
        ("PUBLIC_URL", public_url.to_owned()),
        ("VOXBRIDGE__API__API_TOKEN", BEARER.to_owned()),
        ("OPENAI_API_KEY", "sk-first-call".to_owned()),
    ];
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let key = line
            .trim_start_matches("# ")
            .split('=')
            .next()
            .unwrap_or("");
        if let Some(i) = values.iter().position(|(k, _)| *k == key) {
            let (k, v) = values.remove(i);
            lines.push(format!("{k}={v}"));
        } else {
            lines.push(line.to_owned());
        }
    }
    assert!(
        values.is_empty(),
        ".env.example lacks {values:?}: the guide tells users to fill them in"
    );
    // The stand-ins: the simulator as Twilio's REST API, and the port the "tunnel" reaches.
    lines.push(format!(
        "VOXBRIDGE__API__TWILIO__REST_BASE_URL=http://{sim}"
    ));
    lines.push(format!("VOXBRIDGE__MEDIA__LISTEN={listen}"));
    // The test runs at any hour; the guide says how calling hours hold a call (step 6).
    lines.push("VOXBRIDGE__API__CALLING_HOURS__ENABLED=false".to_owned());
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

fn wait_until(what: &str, dir: &Path, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "timed out waiting for {what}\n{}",
            std::fs::read_to_string(dir.join("shell.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_first_call_guide_works_as_written() {
    let blocks = guide_blocks();
    let unrun: Vec<&String> = blocks
        .iter()
        .filter(|(language, _)| language == "text")
        .map(|(_, text)| text)
        .collect();
    assert_eq!(unrun.len(), 2, "only the install and the tunnel go unrun");
    assert!(unrun[0].contains("cargo install") && unrun[1].contains("cloudflared"));
    assert!(
        blocks
            .iter()
            .all(|(language, _)| ["sh", "toml", "text"].contains(&language.as_str())),
        "{blocks:?}"
    );

    let dir = scratch_dir("first-call");
    std::fs::copy(repo().join(".env.example"), dir.join(".env.example")).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let public_url = format!("http://{listen}");
    let sim = format!("127.0.0.1:{}", free_port());
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_voxbridge")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let mut shell = Shell::start(&dir, &path);
    let mut sim_child: Option<Child> = None;
    let mut created = String::new();
    for (language, text) in &blocks {
        match language.as_str() {
            "sh" => {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    if line.starts_with("voxbridge config check") && sim_child.is_none() {
                        // Step 2's edits, then Twilio (the simulator) is up before voxbridge.
                        fill_env(&dir, &public_url, &listen, &sim);
                        sim_child = Some(start_sim(&dir, &path, &sim, &listen));
                    }
                    if line.contains("/api/calls") {
                        wait_for_the_call(&dir, &listen, &created);
                    }
                    let (status, printed) = shell.run(line);
                    assert_eq!(status, 0, "{line:?} failed: {printed}");
                    if line.ends_with('&') {
                        wait_until("voxbridge serve to be ready", &dir, || {
                            http(&listen, "GET", "/readyz", &[], "") == Some(200)
                        });
                    }
                    if line.contains("/api/screenings") {
                        assert!(printed.contains("\"success\":true"), "{printed}");
                        created = printed;
                    } else if line.contains("/api/calls") {
                        let call_sid = call_sid_of(&created);
                        assert!(printed.contains(&call_sid), "{printed}");
                        assert!(printed.contains("\"completed\""), "{printed}");
                    } else if line.starts_with("voxbridge config check") {
                        assert!(
                            printed.contains("with the API on the same port"),
                            "{printed}"
                        );
                    }
                }
            }
            "toml" => {
                let file = dir.join("voxbridge.toml");
                std::fs::write(&file, text).unwrap();
                let (status, printed) = shell.run("voxbridge config check --config voxbridge.toml");
                assert_eq!(status, 0, "{text}\n{printed}");
            }
            _ => {}
        }
    }
    assert!(!created.is_empty(), "the guide placed a screening");

    // Step 5 as Twilio performs it when the phone rings: the signed inbound webhook, on the
    // same port and URL, connects the caller to the screening agent.
    let (status, twiml) = signed_webhook(
        &listen,
        TOKEN,
        &public_url,
        "/twilio/voice/inbound",
        &[
            ("CallSid", &format!("CA{:032x}", 77)),
            ("From", "+14155550177"),
            ("To", "+14155550100"),
        ],
    );
    assert_eq!(status, 200, "{twiml}");
    assert!(
        twiml.contains(&format!("<ConversationRelay url=\"wss://{listen}/relay\"")),
        "{twiml}"
    );
    drop(shell);
    if let Some(mut sim) = sim_child {
        let _ = sim.kill();
        let _ = sim.wait();
    }
}

/// `voxbridge sim twilio`: Twilio's REST API for the guide's run; it dials each call with the
/// happy-path candidate, routing the TwiML's `wss://` URLs to `listen`.
fn start_sim(dir: &Path, path: &str, sim: &str, listen: &str) -> Child {
    let child = clean_command("voxbridge")
        .args(["sim", "twilio", "--listen", sim, "--scenario"])
        .arg(repo().join("config/scenarios/happy-path.toml"))
        .args(["--route", &format!("ws://{listen}")])
        .current_dir(dir)
        .env("PATH", path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("sim.log")).unwrap())
        .spawn()
        .expect("voxbridge sim twilio");
    let started = Instant::now();
    while std::net::TcpStream::connect(sim).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the simulator did not listen\n{}",
            std::fs::read_to_string(dir.join("sim.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn call_sid_of(created: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(created.trim()).unwrap();
    value["callSid"].as_str().expect("callSid").to_owned()
}

/// Waits until the screening call the guide placed has completed (the candidate answered
/// every question and the agent hung up).
fn wait_for_the_call(dir: &Path, listen: &str, created: &str) {
    let call_sid = call_sid_of(created);
    wait_until("the screening call to complete", dir, || {
        http_response(
            listen,
            "GET",
            &format!("/api/calls/{call_sid}"),
            &[("Authorization", format!("Bearer {BEARER}"))],
            "",
        )
        .is_some_and(|(status, body)| status == 200 && body.contains("\"qualified\""))
    });
}
