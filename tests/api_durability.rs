//! Durability of the companion API: every webhook answered 2xx is committed before the answer,
//! so a `kill -9` right after the last 2xx, or in the middle of concurrent requests, loses
//! nothing that was answered, on SQLite and on PostgreSQL.
//!
//! Runs the real binary (`voxbridge api --config <tmp toml>`) on a port it binds itself, sends
//! status webhooks signed as Twilio signs them over plain HTTP/1.1, SIGKILLs the process, then
//! reopens the store with `voxbridge-store` and checks every answered row. PostgreSQL comes from
//! `DATABASE_URL` (a `postgres://` URL) or `127.0.0.1:5432/test`, a fresh database per test;
//! if it is unreachable the test prints `SKIPPED` (a failure under `CI=true`).

mod api_process;

use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use voxbridge_store::{Store, StoreConfig};

use api_process::{scratch_dir, signed_webhook, start_api};
use voxbridge_testkit::TestDatabase;

const TOKEN: &str = "durability-token";
/// What Twilio signs against; the process listens on a port of its own choosing.
const PUBLIC_URL: &str = "https://durability.example.com";
const CALLS: usize = 60;

/// `voxbridge api` on `127.0.0.1:0` with the store at `database_url`.
fn start(dir: &Path, database_url: &str) -> (Child, String) {
    std::fs::write(
        dir.join("voxbridge.toml"),
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\npublic_url = \"{PUBLIC_URL}\"\n\n\
             [api.twilio]\nauth_token = \"{TOKEN}\"\n\n[store]\ndatabase_url = \"{database_url}\"\n"
        ),
    )
    .unwrap();
    start_api(dir, "stderr.log")
}

fn sid(i: usize) -> String {
    format!("CA{i:032x}")
}

/// A `completed` status webhook for `sid`; the status, or `None` if the API did not answer.
fn completed(addr: &str, sid: &str) -> Option<u16> {
    let params = [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("CallSid", sid),
        ("CallStatus", "completed"),
        ("CallDuration", "42"),
        ("Direction", "outbound-api"),
        ("From", "+14155550199"),
        ("To", "+14158675309"),
        ("SequenceNumber", "3"),
        ("Timestamp", "Tue, 14 Nov 2023 22:13:20 +0000"),
    ];
    std::panic::catch_unwind(|| {
        signed_webhook(addr, TOKEN, PUBLIC_URL, "/twilio/voice/status", &params).0
    })
    .ok()
}

/// SIGKILL: no graceful shutdown, nothing flushed on exit.
fn kill_9(mut child: Child) {
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
}

/// Reopens the store and checks each of `sids` was committed as answered.
async fn assert_committed(database_url: &str, sids: &[String]) {
    let store = Store::connect(&StoreConfig {
        database_url: database_url.to_owned().into(),
        ..StoreConfig::default()
    })
    .await
    .expect("reopen the store");
    for sid in sids {
        let call = store
            .call(sid)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{sid} answered 2xx but lost"));
        assert_eq!(call.status.as_deref(), Some("completed"), "{sid}");
        assert_eq!(call.duration_seconds, Some(42), "{sid}");
    }
    store.close().await;
}

/// `CALLS` webhooks one after another, SIGKILL right after the last 2xx.
async fn kill_9_after_the_last_2xx(dir: &Path, database_url: &str) {
    let (child, addr) = start(dir, database_url);
    let sids: Vec<String> = (0..CALLS).map(sid).collect();
    for sid in &sids {
        assert_eq!(
            completed(&addr, sid),
            Some(204),
            "webhook for {sid} accepted"
        );
    }
    kill_9(child);
    assert_committed(database_url, &sids).await;
}

/// Writers that post webhooks back to back (each its own SIDs) until the API stops
/// answering; SIGKILL once `CALLS` have been answered, with requests in flight. Every SID
/// answered 2xx must be stored; requests cut off by the kill may or may not be.
async fn kill_9_among_concurrent_requests(dir: &Path, database_url: &str) {
    const WRITERS: usize = 8;
    let (child, addr) = start(dir, database_url);
    let answered: Arc<Mutex<Vec<String>>> = Arc::default();
    let unanswered: Arc<Mutex<usize>> = Arc::default();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (addr, answered, unanswered) = (addr.clone(), answered.clone(), unanswered.clone());
            std::thread::spawn(move || {
                for n in 0.. {
                    let sid = sid(w * 1_000_000 + n);
                    match completed(&addr, &sid) {
                        Some(204) => answered.lock().unwrap().push(sid),
                        None => {
                            *unanswered.lock().unwrap() += 1;
                            return;
                        }
                        Some(other) => panic!("{sid}: {other}"),
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    while answered.lock().unwrap().len() < CALLS {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{CALLS} webhooks not answered in 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    kill_9(child);
    for writer in writers {
        writer.join().expect("writer");
    }
    // Every writer was cut off by the kill (none had stopped before it).
    assert_eq!(*unanswered.lock().unwrap(), WRITERS);
    let answered = answered.lock().unwrap().clone();
    assert_committed(database_url, &answered).await;
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("voxbridge.db").display())
}

#[tokio::test]
async fn status_webhooks_answered_2xx_survive_kill_9() {
    let dir = scratch_dir("durability");
    kill_9_after_the_last_2xx(&dir, &sqlite_url(&dir)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn status_webhooks_answered_2xx_survive_kill_9_among_concurrent_requests() {
    let dir = scratch_dir("durability-concurrent");
    kill_9_among_concurrent_requests(&dir, &sqlite_url(&dir)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn status_webhooks_answered_2xx_survive_kill_9_on_postgres() {
    let Some(database) = TestDatabase::create("durability on PostgreSQL").await else {
        return;
    };
    let dir = scratch_dir("durability-pg");
    kill_9_after_the_last_2xx(&dir, &database.url).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn status_webhooks_answered_2xx_survive_kill_9_among_concurrent_requests_on_postgres() {
    let Some(database) = TestDatabase::create("durability on PostgreSQL, concurrent writers").await
    else {
        return;
    };
    let dir = scratch_dir("durability-pg-concurrent");
    kill_9_among_concurrent_requests(&dir, &database.url).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Set (to anything) in the environment of the copy of this test binary that
/// [`a_poisoned_parent_environment_does_not_reach_the_binary`] runs.
const POISONED: &str = "VOXBRIDGE_TEST_POISONED_PARENT";

/// Runs the SQLite kill -9 test in a copy of this test binary whose environment points every
/// setting the binary reads elsewhere: the API it spawns must still listen, store and check
/// signatures as the test's configuration says.
#[test]
fn a_poisoned_parent_environment_does_not_reach_the_binary() {
    if std::env::var_os(POISONED).is_some() {
        return; // already the copy
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "status_webhooks_answered_2xx_survive_kill_9"])
        .env(POISONED, "1")
        .env("VOXBRIDGE__API__LISTEN", "127.0.0.1:1")
        .env("VOXBRIDGE__API__PUBLIC_URL", "https://poisoned.example.com")
        .env(
            "VOXBRIDGE__STORE__DATABASE_URL",
            "sqlite:///nonexistent/poisoned.db",
        )
        .env("VOXBRIDGE_CONFIG", "/nonexistent/voxbridge.toml")
        .env("DATABASE_URL", "postgres://poisoned@127.0.0.1:1/poisoned")
        .env("PUBLIC_URL", "https://poisoned.example.com")
        .env("TWILIO_AUTH_TOKEN", "poisoned-token")
        .env("RUST_LOG", "off")
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "with a poisoned environment:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
