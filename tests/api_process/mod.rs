//! Shared by the tests that run the real `voxbridge api` binary: a scratch directory, a free
//! port, one raw HTTP/1.1 request, and the child process started with a scrubbed environment.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Variables the binary reads as configuration ([`STANDARD_ENV`] in `src/config.rs`, plus
/// `DATABASE_URL`, `VOXBRIDGE_CONFIG` and every `VOXBRIDGE__*`): removed from the child's
/// environment so a developer's or CI's settings (a `DATABASE_URL` pointing at PostgreSQL)
/// cannot replace the test's own configuration.
const CONFIG_ENV: &[&str] = &[
    "DATABASE_URL",
    "REDIS_URL",
    "PUBLIC_URL",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_KEY",
    "TWILIO_API_SECRET",
    "TWILIO_PHONE_NUMBER",
    "OPENAI_API_KEY",
    "VOXBRIDGE_CONFIG",
];

/// One HTTP/1.1 request on a fresh connection; returns the status code.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Option<u16> {
    http_response(addr, method, path, headers, body).map(|(status, _)| status)
}

/// One HTTP/1.1 request on a fresh connection; returns the status code and the body.
pub fn http_response(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Option<(u16, String)> {
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
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// A fresh directory under the system temp dir named after `what`.
pub fn scratch_dir(what: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("voxbridge-{what}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `voxbridge api --config <dir>/voxbridge.toml` in `dir` with the configuration
/// variables removed from its environment, logging to `<dir>/<log>`, and waits until
/// `/healthz` on `addr` answers 200.
pub fn start_api(dir: &Path, addr: &str, log: &str) -> Child {
    start_voxbridge("api", dir, addr, log)
}

/// Starts `voxbridge <command> --config <dir>/voxbridge.toml` as [`start_api`] does.
pub fn start_voxbridge(command_name: &str, dir: &Path, addr: &str, log: &str) -> Child {
    let stderr = std::fs::File::create(dir.join(log)).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_voxbridge"));
    command
        .args([command_name, "--config"])
        .arg(dir.join("voxbridge.toml"))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(stderr);
    for name in CONFIG_ENV {
        command.env_remove(name);
    }
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("VOXBRIDGE__") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn voxbridge {command_name}: {e}"));
    let started = Instant::now();
    while http(addr, "GET", "/healthz", &[], "") != Some(200) {
        if started.elapsed() > Duration::from_secs(60) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let log = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
            panic!("voxbridge {command_name} did not become healthy:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// A form webhook signed as Twilio signs it with `token` for `public_url` + `path`, posted to
/// `addr`; returns the status and body.
pub fn signed_webhook(
    addr: &str,
    token: &str,
    public_url: &str,
    path: &str,
    params: &[(&str, &str)],
) -> (u16, String) {
    let pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let signature =
        voxbridge_twilio::RequestValidator::new(token).sign(&format!("{public_url}{path}"), &pairs);
    let body = voxbridge_twilio::webhook::FormParams::from_pairs(pairs).to_body();
    http_response(
        addr,
        "POST",
        path,
        &[
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("X-Twilio-Signature", signature),
        ],
        &body,
    )
    .unwrap_or_else(|| panic!("{addr}{path}: no answer"))
}
