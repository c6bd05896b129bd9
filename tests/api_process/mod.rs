//! Shared by the tests that run the real `voxbridge` binary: a scratch directory, one raw
//! HTTP/1.1 request, the child process started with an empty environment on a port it binds
//! itself, and a fresh PostgreSQL database.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a spawned binary may inherit: where programs and temp files are, and coverage output.
/// Nothing else: the binary reads `DATABASE_URL`, `REDIS_URL`, `PUBLIC_URL`, `TWILIO_*`,
/// `OPENAI_*`, `VOXBRIDGE_CONFIG`, every `VOXBRIDGE__*` and `RUST_LOG`, and a developer's or
/// CI's settings must not replace the test's own configuration.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "TMPDIR", "LLVM_PROFILE_FILE"];

/// `voxbridge` with an empty environment but for [`INHERITED_ENV`]: a test sets what it means.
pub fn voxbridge_command() -> Command {
    clean_command(env!("CARGO_BIN_EXE_voxbridge"))
}

/// `program` (a shell that starts `voxbridge`, say) with an empty environment but for
/// [`INHERITED_ENV`].
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    command.env_clear();
    for name in INHERITED_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
}

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

/// A port nothing listens on now (another process may take it before it is used: only for
/// an address that must be known before the binary starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `voxbridge api --config <dir>/voxbridge.toml` in `dir` (see [`start_voxbridge`]).
/// Its `[api] listen` should be `127.0.0.1:0`.
pub fn start_api(dir: &Path, log: &str) -> (Child, String) {
    start_voxbridge("api", dir, log)
}

/// The log line each command writes once its listener is bound, and the field with the address.
fn listening_line(command_name: &str) -> (&'static str, &'static str) {
    match command_name {
        "api" => ("voxbridge api listening", "addr="),
        _ => ("media service listening", "address="),
    }
}

/// The bound address in the `listening` line of `log`, if it has been written yet.
fn logged_address(log: &str, (line, field): (&str, &str)) -> Option<String> {
    let rest = log.lines().find(|l| l.contains(line))?.split_once(field)?.1;
    let rest = rest.strip_prefix("Some(").unwrap_or(rest);
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.contains(':').then_some(addr)
}

/// Starts `voxbridge <command> --config <dir>/voxbridge.toml` in `dir` with an empty
/// environment ([`voxbridge_command`]), logging to `<dir>/<log>`. The binary binds the port
/// its configuration names (`127.0.0.1:0`: the kernel picks one, so no other process can take
/// it between a test's choice and the bind); its address is read from the log line that says
/// it listens. Waits until `/healthz` there answers 200; returns the child and the address.
pub fn start_voxbridge(command_name: &str, dir: &Path, log: &str) -> (Child, String) {
    let log_path = dir.join(log);
    let stderr = std::fs::File::create(&log_path).unwrap();
    let mut child = voxbridge_command()
        .args([command_name, "--config"])
        .arg(dir.join("voxbridge.toml"))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn voxbridge {command_name}: {e}"));
    let started = Instant::now();
    let mut addr = None;
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if addr.is_none() {
            addr = logged_address(&text, listening_line(command_name));
        }
        if let Some(addr) = &addr
            && http(addr, "GET", "/healthz", &[], "") == Some(200)
        {
            return (child, addr.clone());
        }
        if started.elapsed() > Duration::from_secs(60) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("voxbridge {command_name} did not become healthy:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
