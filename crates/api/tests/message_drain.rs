//! The message queue drained across a restart, over real sockets: messages queued through
//! `POST /api/messages` for three senders (a short code at 100/s, a toll-free number at 3/s, a
//! long code at 1/s), the sender sending them to the simulator's Messages API on the system
//! clock, the service killed partway (its tasks aborted mid-send, leases left held) and started
//! again on the same SQLite file. Every message must reach the simulator, none may be lost, and
//! no sender may go faster than its rate in any second (`rate + 1` messages span at least a
//! second, less 50 ms of arrival jitter), across the restart too.
//!
//! In CI it drains 1,200 messages. The README's figure is the full run:
//! `VOXBRIDGE_DRAIN_MESSAGES=10000 cargo test --workspace --test message_drain -- --nocapture`
//! (`scripts/bench-messages.sh`), which prints each sender's achieved rate.

#![allow(clippy::field_reassign_with_default)]
// The figures README quotes are printed (`--nocapture`).
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use voxbridge_api::{ApiConfig, AppState, Secret, SystemClock, router, spawn_background};
use voxbridge_sim::messaging::{MessagingSim, MessagingSimConfig};
use voxbridge_store::{Store, StoreConfig};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "test-auth-token";
const BEARER: &str = "test-bearer";
const SHORT_CODE: &str = "55555";
const TOLL_FREE: &str = "+18005550100";
const LONG_CODE: &str = "+14155550199";

/// One running service: its server and background tasks, killed by [`Instance::kill`].
struct Instance {
    base: String,
    server: tokio::task::JoinHandle<()>,
    background: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
}

impl Instance {
    /// Aborts every task at once, as `kill -9` would: sends in flight are cut off, the
    /// messages they claimed keep their leases.
    fn kill(self) {
        self.server.abort();
        self.background.abort();
        self.shutdown.cancel();
    }
}

async fn start(db_url: &str, sim_base: &str) -> Instance {
    let mut config = ApiConfig::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    config.public_url = base.clone();
    config.api_token = Secret::new(BEARER);
    ACCOUNT.clone_into(&mut config.twilio.account_sid);
    config.twilio.auth_token = Secret::new(TOKEN);
    LONG_CODE.clone_into(&mut config.twilio.from_number);
    config.twilio.rest_base_url = sim_base.to_owned();
    config.messaging.senders = vec![SHORT_CODE.to_owned(), TOLL_FREE.to_owned()];
    config.messaging.quiet_hours.enabled = false;
    config.messaging.poll_interval = Duration::from_millis(20);
    // A killed sender's claims are taken over after this.
    config.messaging.lease = Duration::from_secs(2);
    config.body_limit_bytes = 64 * 1024;
    let store = Store::connect(&StoreConfig {
        database_url: db_url.to_owned().into(),
        ..StoreConfig::default()
    })
    .await
    .unwrap();
    let state = AppState::new(config, store, Arc::new(SystemClock)).unwrap();
    let app = router(state.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let shutdown = CancellationToken::new();
    let background = spawn_background(&state, shutdown.clone());
    Instance {
        base,
        server,
        background,
        shutdown,
    }
}

/// How many of `total` messages go from each sender, and its rate: the short code takes all
/// but what the slower senders send in about the short code's time.
fn plan(total: usize) -> [(&'static str, usize, f64); 3] {
    let short_seconds = total as f64 / 100.0;
    let toll_free = ((short_seconds * 3.0) as usize).clamp(6, total / 4);
    let long_code = (short_seconds as usize).clamp(3, total / 4);
    [
        (SHORT_CODE, total - toll_free - long_code, 100.0),
        (TOLL_FREE, toll_free, 3.0),
        (LONG_CODE, long_code, 1.0),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_drain_at_each_senders_rate_across_a_restart() {
    let total: usize = std::env::var("VOXBRIDGE_DRAIN_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_200);
    voxbridge_config::tls::install_ring_provider();
    let sim = MessagingSim::new(MessagingSimConfig::new(ACCOUNT, TOKEN));
    let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_base = format!("http://{}", sim_listener.local_addr().unwrap());
    let sim_app = sim.router();
    tokio::spawn(async move { axum::serve(sim_listener, sim_app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/drain.db", dir.path().display());

    let first = start(&db_url, &sim_base).await;
    let http = reqwest::Client::new();
    let plan = plan(total);
    let mut bodies = Vec::with_capacity(total);
    for (sender, count, _) in plan {
        for i in 0..count {
            bodies.push((sender, format!("drain {sender} {i}")));
        }
    }
    // Queued through the API, 16 at a time, interleaving the senders.
    bodies.sort_by_key(|(_, body)| {
        body.rsplit(' ')
            .next()
            .and_then(|n| n.parse::<usize>().ok())
    });
    let started = Instant::now();
    let queued = queue_all(&http, &first.base, &bodies).await;
    let queue_seconds = started.elapsed().as_secs_f64();
    assert!(queued.iter().all(|&s| s == 202), "every message queued");

    // Killed at about 40% of the short code's drain, then started again on the same file.
    let kill_after = Duration::from_secs_f64((total as f64 / 100.0 * 0.4).max(2.0));
    tokio::time::sleep(kill_after.saturating_sub(started.elapsed())).await;
    let before_kill = sim.accepted().len();
    first.kill();
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = start(&db_url, &sim_base).await;

    // Every message reaches the simulator (a send cut off by the kill may reach it twice).
    let deadline = Duration::from_secs_f64(total as f64 / 100.0 * 2.0 + 90.0);
    let all_in = sim
        .wait_until(deadline, |sim| {
            let mut seen = std::collections::HashSet::new();
            for a in sim.accepted() {
                if let Some((_, body)) = a.params.iter().find(|(k, _)| k == "Body") {
                    seen.insert(body.clone());
                }
            }
            seen.len() >= total
        })
        .await;
    let drained_seconds = started.elapsed().as_secs_f64();
    let accepted = sim.accepted();
    second.kill();
    assert!(
        all_in,
        "only {} of {total} messages reached Twilio",
        accepted.len()
    );

    let mut per_body: HashMap<String, usize> = HashMap::new();
    let mut per_sender: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
    for a in &accepted {
        let body = a
            .params
            .iter()
            .find(|(k, _)| k == "Body")
            .map(|(_, v)| v.clone())
            .unwrap();
        *per_body.entry(body).or_default() += 1;
        per_sender.entry(a.sender.clone()).or_default().push(a.at);
    }
    let duplicates: usize = per_body.values().map(|n| n - 1).sum();
    assert_eq!(per_body.len(), total, "every message, none lost");
    println!(
        "queued {total} messages through POST /api/messages in {queue_seconds:.1} s; killed after \
         {:.1} s ({before_kill} sent), restarted 0.5 s later; all sent by {drained_seconds:.1} s; \
         {duplicates} sent twice (cut off mid-send by the kill)",
        killed_at.duration_since(started).as_secs_f64()
    );
    for (sender, count, rate) in plan {
        let mut times = per_sender.remove(sender).unwrap_or_default();
        times.sort();
        assert!(times.len() >= count, "{sender}: {} of {count}", times.len());
        check_pace(sender, &times, rate, killed_at);
    }
}

/// Queues each `(sender, body)` through `POST /api/messages`, 16 at a time, each to its own
/// number; the answers' statuses.
async fn queue_all(http: &reqwest::Client, base: &str, bodies: &[(&str, String)]) -> Vec<u16> {
    futures::stream::iter(bodies.iter().enumerate())
        .map(|(i, (sender, body))| async move {
            let to = format!("+1415555{:04}", i % 10_000);
            let response = http
                .post(format!("{base}/api/messages"))
                .bearer_auth(BEARER)
                .json(&json!({"to": to, "from": sender, "body": body}))
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Asserts `sender` never went faster than `rate` in any second, and prints what it achieved
/// before the kill at `killed_at` and after the restart.
fn check_pace(sender: &str, times: &[Instant], rate: f64, killed_at: Instant) {
    let interval = 1.0 / rate;
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64())
        .collect();
    // Never faster than the rate: in any second, at most the rate's worth of messages
    // (each run of `rate` gaps spans at least a second, less 50 ms for the arrival jitter
    // of a loaded machine), across the restart too.
    let per_second = (rate as usize).max(1);
    let tightest = gaps
        .windows(per_second)
        .map(|w| w.iter().sum::<f64>())
        .fold(f64::INFINITY, f64::min);
    assert!(
        tightest >= per_second as f64 * interval - 0.05,
        "{sender}: {} messages within {tightest:.3} s; its rate is {rate}/s",
        per_second + 1
    );
    let min_gap = gaps.iter().copied().fold(f64::INFINITY, f64::min);
    // The rate achieved while it was sending: every gap but the restart's.
    let (before, after): (Vec<&Instant>, Vec<&Instant>) =
        times.iter().partition(|t| **t < killed_at);
    let achieved = |segment: &[&Instant]| {
        (segment.len() > 1).then(|| {
            (segment.len() - 1) as f64
                / segment[segment.len() - 1]
                    .duration_since(*segment[0])
                    .as_secs_f64()
        })
    };
    let mut sorted_gaps = gaps.clone();
    sorted_gaps.sort_by(f64::total_cmp);
    let median = sorted_gaps
        .get(sorted_gaps.len() / 2)
        .copied()
        .unwrap_or(0.0);
    let p99 = sorted_gaps
        .get(sorted_gaps.len() * 99 / 100)
        .copied()
        .unwrap_or(0.0);
    println!(
        "{sender}: {} sent at {rate}/s configured; achieved {:.2}/s before the kill, {:.2}/s \
         after the restart; gap median {:.1} ms, p99 {:.1} ms, min {:.1} ms; tightest {} \
         in a row {:.3} s",
        times.len(),
        achieved(&before).unwrap_or(0.0),
        achieved(&after).unwrap_or(0.0),
        median * 1000.0,
        p99 * 1000.0,
        min_gap * 1000.0,
        per_second + 1,
        tightest
    );
}
