//! A fleet: two `voxbridge api` processes behind one public URL, sharing one PostgreSQL database
//! and one Redis, as a load balancer would spread Twilio's webhooks over them.
//!
//! - Rate limits are shared: seven inbound calls from one number, alternating between the two
//!   instances, connect five and turn two away (each instance alone would allow five); a call
//!   redelivered to the other instance is counted once and answered as the first time.
//! - A call's webhooks land on either instance: its status callbacks alternate, and each is
//!   also delivered a second time to the other instance (Twilio retries); the stored call ends
//!   `completed` with one timeline row per event, nothing doubled.
//! - Both drain on SIGTERM: each exits 0 within `api.drain_timeout_ms`-like bounds, and every
//!   webhook answered 2xx before the signal is in the database afterwards.
//!
//! PostgreSQL comes from `DATABASE_URL` (a `postgres://` URL) or the role and database
//! `scripts/services.sh` provisions, Redis from `REDIS_URL` or `127.0.0.1:6379`; a fresh database
//! and a fresh Redis key prefix per run. If either does not answer, the test records a skip and
//! returns (a failure under `CI=true`, where `scripts/services.sh` starts both).

mod api_process;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use api_process::{signed_webhook, start_api};

use voxbridge_store::{Store, StoreConfig};
use voxbridge_testkit::TestDatabase;

const TOKEN: &str = "fleet-auth-token";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
/// The one URL Twilio signs against, whichever instance the balancer picks.
const PUBLIC_URL: &str = "https://fleet.example.com";
const CALLER: &str = "+14155550123";

/// A webhook signed as Twilio signs it for `PUBLIC_URL{path}`, sent to `addr`.
fn webhook(addr: &str, path: &str, params: &[(&str, &str)]) -> (u16, String) {
    signed_webhook(addr, TOKEN, PUBLIC_URL, path, params)
}

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}_{nanos}", std::process::id())
}

/// The fleet's shared Redis and the run's key prefix.
struct Redis {
    url: String,
    prefix: String,
}

/// One `voxbridge api` of the fleet; killed if the test ends early.
struct Instance {
    addr: String,
    child: Child,
    log: PathBuf,
}

impl Instance {
    /// Starts an instance in its own directory under `dir` and waits until it is healthy.
    fn start(dir: &Path, name: &str, database_url: &str, redis: &Redis) -> Self {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("voxbridge.toml"),
            format!(
                "[api]\nlisten = \"127.0.0.1:0\"\npublic_url = \"{PUBLIC_URL}\"\n\n\
                 [api.twilio]\nauth_token = \"{TOKEN}\"\n\n\
                 [api.rate_limit]\nbackend = \"redis\"\nredis_url = \"{}\"\n\
                 redis_key_prefix = \"{}\"\n\n\
                 [store]\ndatabase_url = \"{database_url}\"\n",
                redis.url, redis.prefix
            ),
        )
        .unwrap();
        let (child, addr) = start_api(&dir, "stderr.log");
        Self {
            addr,
            child,
            log: dir.join("stderr.log"),
        }
    }

    /// SIGTERM, then the exit status and how long it took.
    fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        let signalled = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(signalled.success());
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "{} exited with {status} after SIGTERM:\n{}",
                    self.addr,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{} still running 30 s after SIGTERM",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn inbound(addr: &str, call_sid: &str) -> (u16, String) {
    webhook(
        addr,
        "/twilio/voice/inbound",
        &[
            ("AccountSid", ACCOUNT),
            ("CallSid", call_sid),
            ("CallStatus", "ringing"),
            ("Direction", "inbound"),
            ("From", CALLER),
            ("To", "+14158675309"),
        ],
    )
}

fn status(addr: &str, call_sid: &str, status: &str, sequence: u32) -> u16 {
    let sequence = sequence.to_string();
    let (code, _) = webhook(
        addr,
        "/twilio/voice/status",
        &[
            ("AccountSid", ACCOUNT),
            ("CallSid", call_sid),
            ("CallStatus", status),
            (
                "CallDuration",
                if status == "completed" { "42" } else { "0" },
            ),
            ("Direction", "outbound-api"),
            ("From", "+14155550199"),
            ("To", "+14158675309"),
            ("SequenceNumber", &sequence),
            ("Timestamp", "Tue, 14 Nov 2023 22:13:20 +0000"),
        ],
    );
    code
}

#[tokio::test]
async fn two_instances_share_limits_records_and_drain() {
    let test = "fleet: two_instances_share_limits_records_and_drain";
    let Some(redis_url) = voxbridge_testkit::require_redis(test) else {
        return;
    };
    let Some(db) = TestDatabase::create(test).await else {
        return;
    };
    let database_url = db.url.clone();
    let redis = Redis {
        url: redis_url,
        prefix: format!("voxbridge:fleet:{}:", unique()),
    };
    let dir = tempfile::tempdir().unwrap();

    let mut a = Instance::start(dir.path(), "a", &database_url, &redis);
    let mut b = Instance::start(dir.path(), "b", &database_url, &redis);
    let fleet = [a.addr.clone(), b.addr.clone()];

    // Shared rate limit: 7 calls from one number, alternating instances: 5 connect, 2 refused.
    let mut connected = 0;
    let mut refused = 0;
    let mut answers = Vec::new();
    for i in 0..7 {
        let (code, twiml) = inbound(&fleet[i % 2], &format!("CA{:032x}", 0x100 + i));
        assert_eq!(code, 200, "inbound call {i}: {twiml}");
        if twiml.contains("<Connect") {
            connected += 1;
        } else {
            assert!(twiml.contains("exceeded"), "call {i}: {twiml}");
            refused += 1;
        }
        answers.push(twiml);
    }
    assert_eq!(
        (connected, refused),
        (5, 2),
        "the limit is shared across instances"
    );
    // Twilio's retry of a call landing on the other instance: counted once, same TwiML.
    for i in [0, 6] {
        let (code, twiml) = inbound(&fleet[(i + 1) % 2], &format!("CA{:032x}", 0x100 + i));
        assert_eq!((code, &twiml), (200, &answers[i]), "redelivered call {i}");
    }

    // One call's status callbacks spread over the fleet, each delivered to both instances.
    let sid = format!("CA{:032x}", 0xbeef);
    let events = [
        ("initiated", 0),
        ("ringing", 1),
        ("in-progress", 2),
        ("completed", 3),
    ];
    for (i, (event, sequence)) in events.iter().enumerate() {
        for addr in [&fleet[i % 2], &fleet[(i + 1) % 2]] {
            assert_eq!(
                status(addr, &sid, event, *sequence),
                204,
                "{event} on {addr}"
            );
        }
    }

    // Both drain on SIGTERM and exit cleanly.
    let (took_a, took_b) = (a.terminate(), b.terminate());
    assert!(
        took_a < Duration::from_secs(12) && took_b < Duration::from_secs(12),
        "drained in {took_a:?} / {took_b:?}"
    );

    let store = Store::connect(&StoreConfig {
        database_url: database_url.clone().into(),
        ..StoreConfig::default()
    })
    .await
    .unwrap();
    let detail = store.call_detail(&sid).await.unwrap().expect("call stored");
    assert_eq!(detail.call.status.as_deref(), Some("completed"));
    assert_eq!(detail.call.duration_seconds, Some(42));
    let timeline: Vec<_> = detail
        .timeline
        .iter()
        .map(|e| e.status.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        timeline,
        ["initiated", "ringing", "in-progress", "completed"],
        "one row per event, none doubled"
    );
    let decisions = store.rate_limit_decisions(CALLER).await.unwrap();
    assert_eq!(decisions.len(), 7, "one audited decision per call");
    assert_eq!(decisions.iter().filter(|d| d.allowed).count(), 5);
    for i in 0..7 {
        let call = store.call(&format!("CA{:032x}", 0x100 + i)).await.unwrap();
        assert!(call.is_some(), "inbound call {i} recorded");
    }
    store.close().await;
}
