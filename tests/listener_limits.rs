//! Exposure limits of the real binary: `voxbridge serve` with its file descriptors capped at 256
//! (`ulimit -n 256`) keeps serving a signed call and `/healthz` while 300 idle TCP connections
//! try to exhaust them, and `voxbridge api` exits at its drain deadline after SIGTERM although a
//! request's body never finishes.

mod api_process;

use api_process::free_port;

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use voxbridge_twilio::RequestValidator;
use voxbridge_twilio::media::{Track, TwilioEncoder};
use voxbridge_twilio::sid::{AccountSid, CallSid, StreamSid};

const TOKEN: &str = "listener-limits-token";

/// Runs `voxbridge <args>` with its fd limit at `fd_limit`, with none of the environment's
/// settings (the config names its own SQLite file).
fn spawn(dir: &Path, fd_limit: u32, args: &str) -> Child {
    let log = std::fs::File::create(dir.join("stderr.log")).expect("log file");
    api_process::clean_command("sh")
        .arg("-c")
        .arg(format!("ulimit -n {fd_limit} && exec \"$0\" {args}"))
        .arg(env!("CARGO_BIN_EXE_voxbridge"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn voxbridge")
}

/// `GET /healthz` on a fresh connection: the body, or `None` if there was no answer within
/// `timeout`.
fn healthz(addr: &str, timeout: Duration) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream
        .write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.starts_with("HTTP/1.1 200").then(|| {
        response
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    })
}

fn wait_healthy(child: &mut Child, dir: &Path, addr: &str) {
    let started = Instant::now();
    while healthz(addr, Duration::from_secs(2)).is_none() {
        if started.elapsed() > Duration::from_secs(60) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
            panic!("voxbridge did not become healthy:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
}

/// One signed Media Streams call: upgrade, `connected`, `start`, a frame of silence; returns
/// the socket once `/healthz` counts the call.
async fn signed_call(addr: &str) -> Result<(), String> {
    let url = format!("ws://{addr}/media");
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let signature = RequestValidator::new(TOKEN).sign_websocket(&url);
    request.headers_mut().insert(
        "X-Twilio-Signature",
        signature.parse().map_err(|_| "header")?,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| e.to_string())?;
    let mut encoder =
        TwilioEncoder::new(StreamSid::new(format!("MZ{:032x}", 1)).expect("stream SID"));
    let account = AccountSid::new(format!("AC{:032x}", 2)).expect("account SID");
    let call = CallSid::new(format!("CA{:032x}", 3)).expect("call SID");
    let messages = [
        encoder.connected().to_owned(),
        encoder
            .start(
                account.clone(),
                call.clone(),
                vec![Track::Inbound],
                std::collections::BTreeMap::new(),
            )
            .to_owned(),
        encoder.media(Track::Inbound, 1, 0, &[0xFF; 160]).to_owned(),
    ];
    for text in messages {
        ws.send(Message::text(text))
            .await
            .map_err(|e| e.to_string())?;
    }
    // The call is live: /healthz counts it.
    let addr = addr.to_owned();
    let live = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if healthz(&addr, Duration::from_secs(2)).is_some_and(|b| b.contains("\"calls\":1")) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    })
    .await
    .expect("healthz poller");
    if !live {
        return Err("the call never showed in /healthz".into());
    }
    ws.send(Message::text(encoder.stop(account, call).to_owned()))
        .await
        .map_err(|e| e.to_string())?;
    while let Some(Ok(message)) = ws.next().await {
        if message.is_close() {
            break;
        }
    }
    Ok(())
}

#[tokio::test]
async fn serve_at_256_fds_keeps_a_signed_call_and_healthz_going_past_300_idle_sockets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("voxbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[media]\nlisten = \"{addr}\"\npublic_url = \"ws://{addr}\"\nauth_token = \"{TOKEN}\"\n\
             header_read_timeout_ms = 5000\n\n[store]\ndatabase_url = \"sqlite://{}\"\n",
            dir.path().join("voxbridge.db").display()
        ),
    )
    .expect("write config");
    let mut child = spawn(
        dir.path(),
        256,
        &format!("serve --config '{}'", config.display()),
    );
    wait_healthy(&mut child, dir.path(), &addr);

    // 300 idle connections: more than the process has descriptors. They hold their
    // descriptors for the 5 s header timeout, far longer than accepting 256 takes even on a
    // loaded machine (at 1 s, a busy CI host closed the first before the last were accepted,
    // so EMFILE was never reached).
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(&addr).expect("connect an idle socket"))
        .collect();

    let started = Instant::now();
    let call = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match signed_call(&addr).await {
                Ok(()) => return,
                Err(_) if started.elapsed() < Duration::from_secs(15) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("signed call failed: {e}"),
            }
        }
    })
    .await;
    let health = healthz(&addr, Duration::from_secs(5));
    drop(idle);
    let _ = child.kill();
    let _ = child.wait();
    let log = log_of(dir.path());
    assert!(
        call.is_ok(),
        "a signed call must get through within 20 s despite 300 idle sockets:\n{log}"
    );
    assert!(health.is_some(), "/healthz must answer:\n{log}");
    // The idle sockets did exhaust the descriptors: the listener said so and went on.
    assert!(log.contains("accept failed"), "no EMFILE seen:\n{log}");
}

#[tokio::test]
async fn api_exits_at_its_drain_deadline_after_sigterm_with_an_unfinished_body() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("voxbridge.toml");
    let mut text = String::new();
    write!(
        text,
        "[api]\nlisten = \"{addr}\"\npublic_url = \"http://{addr}\"\ndrain_timeout_ms = 500\n\
         body_timeout_ms = 60000\n\n[api.twilio]\nauth_token = \"{TOKEN}\"\n\n\
         [store]\ndatabase_url = \"sqlite://{}\"\n",
        dir.path().join("voxbridge.db").display()
    )
    .expect("format");
    std::fs::write(&config, text).expect("write config");
    let mut child = spawn(
        dir.path(),
        1024,
        &format!("api --config '{}'", config.display()),
    );
    wait_healthy(&mut child, dir.path(), &addr);

    let mut stuck = TcpStream::connect(&addr).expect("connect");
    stuck
        .write_all(
            format!(
                "POST /twilio/voice/status HTTP/1.1\r\nHost: {addr}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 500\r\n\r\nCallSid=CA"
            )
            .as_bytes(),
        )
        .expect("write part of a body");
    // Let the request reach its handler (not an assertion).
    std::thread::sleep(Duration::from_millis(200));
    let term = Instant::now();
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(sent.success());
    // The drain deadline (0.5 s) plus a margin for closing the store and the runtime.
    let limit = Duration::from_millis(500) + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if term.elapsed() > limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let log = log_of(dir.path());
    let status = status
        .unwrap_or_else(|| panic!("voxbridge api still running {limit:?} after SIGTERM:\n{log}"));
    assert!(status.success(), "exit status {status}:\n{log}");
    assert!(
        log.contains("drain deadline"),
        "the log says the deadline closed the request:\n{log}"
    );
    drop(stuck);
}
