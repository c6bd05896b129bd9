//! Benchmarks: one in-memory rate-limit decision, and status-webhook throughput over real HTTP
//! (signature check + durable SQLite commit per request, 32 requests in flight).
//!
//! `CARGO_TARGET_DIR=/work/target-api cargo bench -p voxbridge-api --bench api`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt as _;
use voxbridge_api::{
    ApiConfig, AppState, MemoryLimiter, Secret, SlidingWindow, SystemClock, ratelimit::NumberState,
    router,
};
use voxbridge_store::{Store, StoreConfig};
use voxbridge_twilio::RequestValidator;
use voxbridge_twilio::webhook::FormParams;

const HOUR: i64 = 3_600_000;

fn rate_limit(c: &mut Criterion) {
    let rule = SlidingWindow {
        max_calls: 5,
        window_ms: HOUR,
    };
    let mut group = c.benchmark_group("rate_limit");
    group.throughput(Throughput::Elements(1));
    // A caller at the limit: every decision evicts one expired entry and admits one.
    group.bench_function("sliding_window_decide", |b| {
        let mut state = NumberState::default();
        let mut now = 0i64;
        b.iter(|| {
            now += HOUR / 5;
            black_box(rule.decide(&mut state, black_box(now)))
        });
    });
    // The in-memory backend over 10,000 distinct callers.
    let limiter = MemoryLimiter::new(rule);
    let numbers: Vec<String> = (0..10_000).map(|i| format!("+1415{i:07}")).collect();
    group.bench_function("memory_limiter_check", |b| {
        let mut i = 0usize;
        let mut now = 0i64;
        b.iter(|| {
            i = (i + 1) % numbers.len();
            now += 1_000;
            black_box(limiter.check(&numbers[i], now))
        });
    });
    group.finish();
}

const BATCH: u64 = 500;
const IN_FLIGHT: usize = 32;

fn status_webhook(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (base, client) = runtime.block_on(async {
        let store = Store::connect(&StoreConfig {
            database_url: format!("sqlite://{}/bench.db", dir.path().display()).into(),
            ..StoreConfig::default()
        })
        .await
        .expect("store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let mut config = ApiConfig::default();
        config.public_url.clone_from(&base);
        config.twilio.auth_token = Secret::new("bench-token");
        let state = AppState::new(config, store, Arc::new(SystemClock)).expect("state");
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        voxbridge_config::tls::install_ring_provider();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(IN_FLIGHT)
            .build()
            .expect("client");
        (base, client)
    });
    let url = format!("{base}/twilio/voice/status");
    let signer = RequestValidator::new("bench-token");
    let counter = AtomicU64::new(0);
    let mut group = c.benchmark_group("webhook");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("signed_status_sqlite_32_in_flight", |b| {
        b.iter_custom(|iterations| {
            // Requests are built (and signed, as Twilio would) before the clock starts.
            let requests: Vec<(String, String)> = (0..iterations * BATCH)
                .map(|_| {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let sid = format!("CA{n:032x}");
                    let pairs: Vec<(String, String)> = [
                        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
                        ("CallSid", sid.as_str()),
                        ("CallStatus", "completed"),
                        ("From", "+14155550199"),
                        ("To", "+14158675309"),
                        ("SequenceNumber", "3"),
                        ("CallDuration", "42"),
                        ("Timestamp", "Tue, 14 Nov 2023 22:13:20 +0000"),
                    ]
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                    let signature = signer.sign(&url, &pairs);
                    (FormParams::from_pairs(pairs).to_body(), signature)
                })
                .collect();
            runtime.block_on(async {
                let started = Instant::now();
                let statuses: Vec<u16> = futures::stream::iter(requests)
                    .map(|(body, signature)| {
                        let request = client
                            .post(&url)
                            .header("content-type", "application/x-www-form-urlencoded")
                            .header("x-twilio-signature", signature)
                            .body(body);
                        async move { request.send().await.map_or(0, |r| r.status().as_u16()) }
                    })
                    .buffer_unordered(IN_FLIGHT)
                    .collect()
                    .await;
                let elapsed = started.elapsed();
                assert!(statuses.iter().all(|s| *s == 204), "every webhook accepted");
                elapsed
            })
        });
    });
    group.finish();
}

criterion_group!(benches, rate_limit, status_webhook);
criterion_main!(benches);
