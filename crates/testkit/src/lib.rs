//! Test support shared by voxbridge's test suites: one way to skip, counted; one probe per
//! service; one default URL per service.
//!
//! A test that needs PostgreSQL, Redis or an external tool asks here first:
//!
//! ```no_run
//! # async fn t() {
//! let Some(url) = voxbridge_testkit::require_postgres("store: postgres round trip") else {
//!     return; // skipped, and counted
//! };
//! # let _ = url; }
//! ```
//!
//! A skip is never silent:
//! - it is printed to stderr (`SKIPPED: <test>: <why>`);
//! - it is appended to the file named by `VOXBRIDGE_SKIP_LOG`, which `scripts/test.sh` sets and
//!   counts in its summary;
//! - under `CI=true` it is a test failure (`.ci/run` installs and starts every service, so a
//!   skip there means something is broken).
//!
//! The probes only decide "is the service there at all": a TCP connect plus one protocol
//! exchange (Redis `PING`, PostgreSQL's SSL request). Once a service answers, the test connects
//! for real and any error after that (authentication, a missing database, a bad reply) fails
//! the test instead of skipping it.
//!
//! Dependency-free by default (std only), so every test binary can use it without building
//! anything new; the `postgres` feature adds [`TestDatabase`] (sqlx, tokio).

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::TestDatabase;

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

/// The environment variable naming the file skips are appended to.
pub const SKIP_LOG_ENV: &str = "VOXBRIDGE_SKIP_LOG";

/// Where tests find Redis without `REDIS_URL`: what `scripts/services.sh` starts.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Where tests find PostgreSQL without `DATABASE_URL`: the role and database
/// `scripts/services.sh` provisions (a login role that may create the per-test databases).
pub const DEFAULT_POSTGRES_URL: &str = "postgres://voxbridge:voxbridge@127.0.0.1:5432/voxbridge";

/// How long a probe waits for a service before calling it absent.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether this run is CI (`CI=true`), where nothing may be skipped.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Records that `test` did not run its checks because of `why`, then returns so the caller can
/// `return`. Under CI this panics instead: the service or tool must be there.
///
/// # Panics
/// Under `CI=true`, always.
pub fn skip(test: &str, why: &str) {
    let log = std::env::var_os(SKIP_LOG_ENV);
    record_skip(log.as_deref().map(Path::new), test, why);
}

fn record_skip(log: Option<&Path>, test: &str, why: &str) {
    let line = format!("SKIPPED: {test}: {why}");
    eprintln!("{line}");
    if let Some(path) = log {
        // One write per line with O_APPEND: test binaries running side by side do not interleave.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(format!("{}\n", one_line(&line)).as_bytes()));
        if let Err(e) = written {
            eprintln!("could not record the skip in {}: {e}", path.display());
        }
    }
    assert!(
        !under_ci(),
        "{line} (CI=true: nothing may be skipped; scripts/setup.sh and scripts/services.sh \
         install and start what tests need)"
    );
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// `REDIS_URL`, else [`DEFAULT_REDIS_URL`].
pub fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned())
}

/// `DATABASE_URL` when it is a PostgreSQL URL, else [`DEFAULT_POSTGRES_URL`].
pub fn postgres_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
        .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_owned())
}

/// Redis's URL if a Redis server answers `PING` there; otherwise the skip is recorded (a
/// failure under CI) and `None` returned.
pub fn require_redis(test: &str) -> Option<String> {
    let url = redis_url();
    match probe_redis(&url) {
        Ok(()) => Some(url),
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

/// PostgreSQL's URL if a PostgreSQL server answers there; otherwise the skip is recorded (a
/// failure under CI) and `None` returned.
pub fn require_postgres(test: &str) -> Option<String> {
    let url = postgres_url();
    match probe_postgres(&url) {
        Ok(()) => Some(url),
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

/// Whether `program` can be run (it is on `PATH` and starts); otherwise the skip is recorded (a
/// failure under CI).
pub fn require_tool(test: &str, program: &str) -> bool {
    if find_on_path(program).is_some() {
        return true;
    }
    skip(
        test,
        &format!("`{program}` is not installed (scripts/setup.sh installs it)"),
    );
    false
}

/// The first executable `program` on `PATH`.
pub fn find_on_path(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Redis is there when it answers `PING` over RESP (any reply: `+PONG`, or an error such as
/// `-NOAUTH`, which the test will then meet for real).
pub fn probe_redis(url: &str) -> Result<(), String> {
    probe(
        url,
        &Probe {
            service: "Redis",
            default_port: 6379,
            request: b"*1\r\n$4\r\nPING\r\n",
            what: "PING",
            answers: b"+-",
        },
    )
}

/// PostgreSQL is there when it answers an `SSLRequest` with `S` or `N` (the first exchange of its
/// wire protocol, before authentication).
pub fn probe_postgres(url: &str) -> Result<(), String> {
    probe(
        url,
        &Probe {
            service: "PostgreSQL",
            default_port: 5432,
            // Length 8, then the SSLRequest code 80877103.
            request: &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f],
            what: "an SSL request",
            answers: b"SN",
        },
    )
}

/// One request and the first bytes a server of that kind can answer it with.
struct Probe {
    service: &'static str,
    default_port: u16,
    request: &'static [u8],
    what: &'static str,
    answers: &'static [u8],
}

fn probe(url: &str, p: &Probe) -> Result<(), String> {
    let (service, shown) = (p.service, redact(url));
    let mut stream = connect(url, p.default_port)?;
    stream
        .write_all(p.request)
        .map_err(|e| format!("{service} at {shown}: {e}"))?;
    let mut first = [0u8; 1];
    match stream.read(&mut first) {
        Ok(1) if p.answers.contains(&first[0]) => Ok(()),
        Ok(0) => Err(format!(
            "{service} at {shown}: closed the connection without a reply"
        )),
        Ok(_) => Err(format!(
            "{shown} answered {} with {:?}: not {service}",
            p.what,
            char::from(first[0])
        )),
        Err(e) => Err(format!("{service} at {shown}: no reply to {}: {e}", p.what)),
    }
}

/// A TCP connection to the URL's host and port (`default_port` when it names none).
fn connect(url: &str, default_port: u16) -> Result<TcpStream, String> {
    let authority = host_port(url, default_port)
        .ok_or_else(|| format!("cannot read a host from {}", redact(url)))?;
    let addrs: Vec<_> = authority
        .to_socket_addrs()
        .map_err(|e| format!("{} does not resolve: {e}", redact(url)))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
            Ok(s) => {
                s.set_read_timeout(Some(PROBE_TIMEOUT)).ok();
                s.set_write_timeout(Some(PROBE_TIMEOUT)).ok();
                return Ok(s);
            }
            Err(e) => last = Some(format!("nothing answers at {}: {e}", redact(url))),
        }
    }
    Err(last.unwrap_or_else(|| format!("{} resolves to no address", redact(url))))
}

/// `host:port` from `scheme://[user[:password]@]host[:port][/...]`.
fn host_port(url: &str, default_port: u16) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.is_empty() {
        return None;
    }
    // `[::1]:6379`, `[::1]`, `host:6379`, `host`.
    let has_port = match host_port.rfind(']') {
        Some(close) => host_port[close..].contains(':'),
        None => host_port.contains(':'),
    };
    Some(if has_port {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    })
}

/// The URL with any password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://{user}@{host}{tail}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn host_port_reads_every_url_shape() {
        assert_eq!(
            host_port("redis://127.0.0.1:6379", 1).as_deref(),
            Some("127.0.0.1:6379")
        );
        assert_eq!(
            host_port("redis://localhost", 6379).as_deref(),
            Some("localhost:6379")
        );
        assert_eq!(
            host_port("postgres://u:p@db:5433/test?sslmode=disable", 5432).as_deref(),
            Some("db:5433")
        );
        assert_eq!(
            host_port("postgres://u@[::1]/x", 5432).as_deref(),
            Some("[::1]:5432")
        );
        assert_eq!(
            host_port("redis://[::1]:7000/0", 6379).as_deref(),
            Some("[::1]:7000")
        );
        assert_eq!(host_port("no-scheme", 1), None);
        assert_eq!(host_port("redis:///0", 1), None);
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://voxbridge:secret@127.0.0.1:5432/x"),
            "postgres://voxbridge:***@127.0.0.1:5432/x"
        );
        assert_eq!(redact("redis://127.0.0.1"), "redis://127.0.0.1");
        let err = probe_postgres("postgres://u:secret@127.0.0.1:1/x").unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn a_closed_port_is_absent_and_a_silent_one_times_out() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(probe_redis(&format!("redis://127.0.0.1:{port}")).is_err());
        // Accepts, never answers: the probe gives up after its timeout.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://{}", silent.local_addr().unwrap());
        let started = std::time::Instant::now();
        let err = probe_redis(&url).unwrap_err();
        assert!(err.contains("no reply"), "{err}");
        assert!(
            started.elapsed() >= PROBE_TIMEOUT,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_server_speaking_another_protocol_is_not_taken_for_the_service() {
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = other.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = other.accept().unwrap();
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf);
                s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
            }
        });
        let redis = probe_redis(&format!("redis://{addr}")).unwrap_err();
        assert!(redis.contains("not Redis"), "{redis}");
        let pg = probe_postgres(&format!("postgres://{addr}/x")).unwrap_err();
        assert!(pg.contains("not PostgreSQL"), "{pg}");
        server.join().unwrap();
    }

    #[test]
    fn skips_are_appended_to_the_log_and_fail_under_ci() {
        let log = std::env::temp_dir().join(format!("voxbridge-skips-{}", std::process::id()));
        let outcome = std::panic::catch_unwind(|| {
            record_skip(Some(&log), "first", "Redis: nothing answers");
            record_skip(Some(&log), "second", "two\nlines");
        });
        let text = std::fs::read_to_string(&log).unwrap();
        std::fs::remove_file(&log).ok();
        if under_ci() {
            assert!(outcome.is_err(), "a skip under CI fails the test");
            assert_eq!(text, "SKIPPED: first: Redis: nothing answers\n");
        } else {
            assert!(outcome.is_ok());
            assert_eq!(
                text,
                "SKIPPED: first: Redis: nothing answers\nSKIPPED: second: two lines\n"
            );
        }
    }
}
