//! Durability of the companion API: every webhook answered 2xx is committed before the answer,
//! so a `kill -9` right after the last 2xx loses nothing.
//!
//! Runs the real binary (`voxbridge api --config <tmp toml>`), sends status webhooks signed as
//! Twilio signs them over plain HTTP/1.1, SIGKILLs the process right after the last 2xx, then
//! reopens the SQLite file with `voxbridge-store` and checks every row.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use voxbridge_store::{Store, StoreConfig};
use voxbridge_twilio::RequestValidator;
use voxbridge_twilio::webhook::FormParams;

const TOKEN: &str = "durability-token";
const CALLS: usize = 60;

/// One HTTP/1.1 request on a fresh connection; returns the status code.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

fn scratch_dir() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "voxbridge-durability-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn status_webhooks_answered_2xx_survive_kill_9() {
    let dir = scratch_dir();
    let db = dir.join("voxbridge.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let public_url = format!("http://{addr}");
    let config = dir.join("voxbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = \"{addr}\"\npublic_url = \"{public_url}\"\n\n[api.twilio]\nauth_token = \"{TOKEN}\"\n\n[store]\ndatabase_url = \"sqlite://{}\"\n",
            db.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_voxbridge"))
        .args(["api", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn voxbridge api");

    let started = Instant::now();
    while http(&addr, "GET", "/healthz", &[], "") != Some(200) {
        if started.elapsed() > Duration::from_secs(60) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
            panic!("voxbridge api did not become healthy:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let signer = RequestValidator::new(TOKEN);
    let url = format!("{public_url}/twilio/voice/status");
    let sids: Vec<String> = (0..CALLS).map(|i| format!("CA{i:032x}")).collect();
    for sid in &sids {
        let pairs: Vec<(String, String)> = [
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("CallSid", sid.as_str()),
            ("CallStatus", "completed"),
            ("CallDuration", "42"),
            ("Direction", "outbound-api"),
            ("From", "+14155550199"),
            ("To", "+14158675309"),
            ("SequenceNumber", "3"),
            ("Timestamp", "Tue, 14 Nov 2023 22:13:20 +0000"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let signature = signer.sign(&url, &pairs);
        let body = FormParams::from_pairs(pairs).to_body();
        let status = http(
            &addr,
            "POST",
            "/twilio/voice/status",
            &[
                (
                    "Content-Type",
                    "application/x-www-form-urlencoded".to_owned(),
                ),
                ("X-Twilio-Signature", signature),
            ],
            &body,
        );
        assert_eq!(status, Some(204), "webhook for {sid} accepted");
    }
    // SIGKILL right after the last 2xx: no graceful shutdown, nothing flushed on exit.
    child.kill().expect("SIGKILL");
    child.wait().unwrap();

    let store = Store::connect(&StoreConfig {
        database_url: format!("sqlite://{}", db.display()).into(),
        ..StoreConfig::default()
    })
    .await
    .expect("reopen the SQLite file");
    for sid in &sids {
        let call = store
            .call(sid)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{sid} lost"));
        assert_eq!(call.status.as_deref(), Some("completed"));
        assert_eq!(call.duration_seconds, Some(42));
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
