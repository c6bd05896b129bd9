//! The result webhook outbox survives `kill -9`: the real binary (`voxbridge api`) delivers a
//! screening's result to a receiver on 127.0.0.1 that fails twice, then holds the third
//! attempt open; the process is killed with SIGKILL while that attempt is in flight, started again,
//! and delivers once the lease has run out: the same delivery id and body, attempt 4,
//! delivered once. On SQLite and on PostgreSQL (a fresh database; `SKIPPED` when unreachable,
//! a failure under `CI=true`).

mod api_process;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use voxbridge_store::{KeyedInsert, NewScreening, ScreeningCallback, Store, StoreConfig};
use voxbridge_testkit::TestDatabase;

use api_process::{http_response, scratch_dir, signed_webhook, start_api};

const TOKEN: &str = "ats-durability-token";
const BEARER: &str = "ats-durability-bearer";
const SECRET: &str = "whsec_durability";
const PUBLIC_URL: &str = "https://ats-durability.example.com";
const CALL: &str = "CA0000000000000000000000000000a7a7";

/// What the receiver does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Fail,
    /// Never answer (the connection stays open until the test ends).
    Hold,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    delivery_id: String,
    attempt: String,
    signature_ok: bool,
    body: String,
}

#[derive(Debug, Default)]
struct Receiver {
    /// Answers for the next requests, in order; 200 once they run out.
    script: Mutex<Vec<Answer>>,
    hits: Mutex<Vec<Hit>>,
    accepted: Mutex<u32>,
    held: Mutex<Vec<TcpStream>>,
}

fn now_secs() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Reads one HTTP/1.1 request: its headers (lowercased names) and body.
fn read_request(stream: &TcpStream) -> Option<(Vec<(String, String)>, String)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((headers, String::from_utf8(body).ok()?))
}

fn serve_one(receiver: &Receiver, mut stream: TcpStream) {
    let Some((headers, body)) = read_request(&stream) else {
        return;
    };
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let signature_ok = voxbridge_api::ats::signature::verify(
        SECRET.as_bytes(),
        &header("voxbridge-signature"),
        body.as_bytes(),
        now_secs(),
        300,
    )
    .is_ok();
    receiver.hits.lock().unwrap().push(Hit {
        delivery_id: header("voxbridge-delivery-id"),
        attempt: header("voxbridge-delivery-attempt"),
        signature_ok,
        body,
    });
    let answer = {
        let mut script = receiver.script.lock().unwrap();
        (!script.is_empty()).then(|| script.remove(0))
    };
    let status = match answer {
        Some(Answer::Hold) => {
            receiver.held.lock().unwrap().push(stream);
            return;
        }
        Some(Answer::Fail) => "500 Internal Server Error",
        None => {
            *receiver.accepted.lock().unwrap() += 1;
            "200 OK"
        }
    };
    let _ = stream.write_all(
        format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    );
}

/// Starts the receiver on 127.0.0.1:0; returns its URL.
fn start_receiver(script: Vec<Answer>) -> (String, Arc<Receiver>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/results", listener.local_addr().unwrap());
    let receiver = Arc::new(Receiver {
        script: Mutex::new(script),
        ..Receiver::default()
    });
    let shared = receiver.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let receiver = shared.clone();
            std::thread::spawn(move || serve_one(&receiver, stream));
        }
    });
    (url, receiver)
}

/// A screening requested with a callback (the default URL) and linked to [`CALL`], written
/// before the binary starts, as `POST /api/screenings` would have.
async fn seed(database_url: &str) -> i64 {
    let store = Store::connect(&StoreConfig {
        database_url: database_url.to_owned().into(),
        ..StoreConfig::default()
    })
    .await
    .unwrap();
    let inserted = store
        .insert_requested_screening(
            &NewScreening {
                candidate_id: "kill-9".into(),
                first_name: "Ada".into(),
                phone: "+14158675309".into(),
                job_title: "Welder".into(),
                screening: "default".into(),
                created_at_ms: 1_700_000_000_000,
            },
            "+14155550199",
            None,
            Some(&ScreeningCallback {
                url: None,
                metadata: Some(serde_json::json!({"requisition": "R-9"})),
                deliver: true,
            }),
        )
        .await
        .unwrap();
    let KeyedInsert::Created(id) = inserted else {
        panic!("{inserted:?}");
    };
    store
        .mark_screening_initiated(id, CALL, "+14155550199", 1_700_000_000_100)
        .await
        .unwrap();
    store.close().await;
    id
}

fn write_config(dir: &Path, database_url: &str, receiver_url: &str) {
    std::fs::write(
        dir.join("voxbridge.toml"),
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\npublic_url = \"{PUBLIC_URL}\"\n\
             api_token = \"{BEARER}\"\n\n\
             [api.twilio]\nauth_token = \"{TOKEN}\"\n\n\
             # The test runs at any hour: no calling hours.\n\
             [api.calling_hours]\nenabled = false\n\n\
             [api.webhooks]\nurl = \"{receiver_url}\"\nsecret = \"{SECRET}\"\n\
             max_attempts = 20\nbackoff_base_ms = 100\nsettle_ms = 0\npoll_interval_ms = 20\n\
             timeout_ms = 1000\nlease_ms = 1500\n\n\
             [store]\ndatabase_url = \"{database_url}\"\n"
        ),
    )
    .unwrap();
}

fn wait_for(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill_9(mut child: Child) {
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
}

/// `GET /api/webhook-deliveries/{id}` on `addr`.
fn delivery(addr: &str, id: &str) -> serde_json::Value {
    let (status, body) = http_response(
        addr,
        "GET",
        &format!("/api/webhook-deliveries/{id}"),
        &[("Authorization", format!("Bearer {BEARER}"))],
        "",
    )
    .expect("the API answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn delivered_after_kill_9_mid_attempt(dir: &Path, database_url: &str) {
    let (url, receiver) = start_receiver(vec![Answer::Fail, Answer::Fail, Answer::Hold]);
    let screening = seed(database_url).await;
    write_config(dir, database_url, &url);
    let (child, addr) = start_api(dir, "first.log");
    let params = [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("CallSid", CALL),
        ("CallStatus", "completed"),
        ("CallDuration", "42"),
        ("Direction", "outbound-api"),
        ("From", "+14155550199"),
        ("To", "+14158675309"),
        ("SequenceNumber", "3"),
        ("Timestamp", "Tue, 14 Nov 2023 22:13:20 +0000"),
    ];
    let (status, body) = signed_webhook(&addr, TOKEN, PUBLIC_URL, "/twilio/voice/status", &params);
    assert_eq!(status, 204, "{body}");
    // Twilio retries the webhook: still one delivery.
    let (status, _) = signed_webhook(&addr, TOKEN, PUBLIC_URL, "/twilio/voice/status", &params);
    assert_eq!(status, 204);
    wait_for(Duration::from_secs(20), "the third attempt", || {
        receiver.hits.lock().unwrap().len() >= 3
    });
    // The third attempt is in flight (held open): SIGKILL.
    kill_9(child);
    let delivery_id = receiver.hits.lock().unwrap()[0].delivery_id.clone();

    let (child, addr) = start_api(dir, "second.log");
    wait_for(
        Duration::from_secs(20),
        "delivery after the restart",
        || *receiver.accepted.lock().unwrap() >= 1,
    );
    let mut shown = delivery(&addr, &delivery_id);
    wait_for(Duration::from_secs(10), "the delivery recorded", || {
        shown = delivery(&addr, &delivery_id);
        shown["delivery"]["state"] == "delivered"
    });
    kill_9(child);

    let hits = receiver.hits.lock().unwrap().clone();
    assert_eq!(
        hits.iter().map(|h| h.attempt.as_str()).collect::<Vec<_>>(),
        ["1", "2", "3", "4"],
        "{hits:?}"
    );
    assert!(hits.iter().all(|h| h.delivery_id == delivery_id));
    assert!(hits.iter().all(|h| h.signature_ok), "{hits:?}");
    assert!(
        hits.iter().all(|h| h.body == hits[0].body),
        "one body throughout"
    );
    let body: serde_json::Value = serde_json::from_str(&hits[0].body).unwrap();
    assert_eq!(body["screening"]["id"], screening);
    assert_eq!(body["metadata"]["requisition"], "R-9");
    assert_eq!(body["call"]["durationSeconds"], 42);
    assert_eq!(*receiver.accepted.lock().unwrap(), 1, "delivered once");
    assert_eq!(shown["delivery"]["attempts"], 4, "{shown}");
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("voxbridge.db").display())
}

#[tokio::test]
async fn a_result_is_delivered_after_kill_9_mid_attempt() {
    let dir = scratch_dir("ats-kill-9");
    delivered_after_kill_9_mid_attempt(&dir, &sqlite_url(&dir)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_result_is_delivered_after_kill_9_mid_attempt_on_postgres() {
    let Some(database) = TestDatabase::create("ATS delivery after kill -9 on PostgreSQL").await
    else {
        return;
    };
    let dir = scratch_dir("ats-kill-9-pg");
    delivered_after_kill_9_mid_attempt(&dir, &database.url).await;
    let _ = std::fs::remove_dir_all(&dir);
}
