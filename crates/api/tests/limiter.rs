//! The same rate-limit behaviour against both backends: in memory, and a real redis-server
//! (`REDIS_URL`, else `redis://127.0.0.1:6379`; a counted skip if nothing answers `PING`, a
//! failure under `CI=true`). Time is virtual: the limiter takes `now`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use voxbridge_api::{LimiterError, MemoryLimiter, RateLimiter, RedisLimiter, SlidingWindow};

const HOUR: i64 = 3_600_000;
const T0: i64 = 1_700_000_000_000;

fn rule() -> SlidingWindow {
    SlidingWindow {
        max_calls: 5,
        window_ms: HOUR,
    }
}

async fn behaviour(limiter: &RateLimiter, a: &str, b: &str) {
    for i in 0..5 {
        let d = limiter.check(a, T0 + i * 1_000).await.unwrap();
        assert!(d.allowed, "call {i} allowed");
        assert_eq!(d.count, u32::try_from(i + 1).unwrap());
        assert_eq!(d.limit, 5);
    }
    let sixth = limiter.check(a, T0 + 10_000).await.unwrap();
    assert!(!sixth.allowed, "the 6th call in an hour is blocked");
    assert_eq!(sixth.count, 5);
    assert!(
        limiter.check(b, T0 + 10_000).await.unwrap().allowed,
        "another number is allowed"
    );
    // Still blocked just before the first call leaves the window...
    assert!(!limiter.check(a, T0 + HOUR - 1).await.unwrap().allowed);
    // ...and allowed the moment it does.
    let later = limiter.check(a, T0 + HOUR).await.unwrap();
    assert!(later.allowed);
    assert_eq!(later.count, 5);
    let stats = limiter.stats(a, T0 + HOUR).await.unwrap();
    assert_eq!(stats.recent.len(), 5);
    assert_eq!(stats.recent[0], T0 + 1_000);
    assert_eq!(stats.last_allowed, Some(T0 + HOUR));
    assert_eq!((stats.total_allowed, stats.total_blocked), (6, 2));
    let unknown = limiter.stats("+19999999999", T0).await.unwrap();
    assert_eq!((unknown.recent.len(), unknown.total_allowed), (0, 0));
    // Much later everything has expired.
    let idle = limiter.stats(a, T0 + 3 * HOUR).await.unwrap();
    assert!(idle.recent.is_empty());
}

#[tokio::test]
async fn memory_backend_limits_per_number_on_virtual_time() {
    let limiter = RateLimiter::Memory(MemoryLimiter::new(rule()));
    behaviour(&limiter, "+14158675309", "+14155550100").await;
}

fn unique_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("voxbridge-test:{}:{nanos}:", std::process::id())
}

#[tokio::test]
async fn redis_backend_limits_per_number_on_virtual_time() {
    let Some(url) =
        voxbridge_testkit::require_redis("redis_backend_limits_per_number_on_virtual_time")
    else {
        return;
    };
    let limiter =
        RedisLimiter::new(rule(), &url, &unique_prefix(), Duration::from_secs(2)).unwrap();
    let limiter = RateLimiter::Redis(Box::new(limiter));
    behaviour(&limiter, "+14158675309", "+14155550100").await;
}

#[tokio::test]
async fn redis_keys_expire_with_the_window_and_instances_share_state() {
    let Some(url) = voxbridge_testkit::require_redis(
        "redis_keys_expire_with_the_window_and_instances_share_state",
    ) else {
        return;
    };
    let prefix = unique_prefix();
    let short = SlidingWindow {
        max_calls: 2,
        window_ms: 1_000,
    };
    let one = RateLimiter::Redis(Box::new(
        RedisLimiter::new(short, &url, &prefix, Duration::from_secs(2)).unwrap(),
    ));
    let two = RateLimiter::Redis(Box::new(
        RedisLimiter::new(short, &url, &prefix, Duration::from_secs(2)).unwrap(),
    ));
    assert!(one.check("+14158675309", T0).await.unwrap().allowed);
    assert!(two.check("+14158675309", T0 + 1).await.unwrap().allowed);
    assert!(
        !one.check("+14158675309", T0 + 2).await.unwrap().allowed,
        "two instances share one window"
    );
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}{{+14158675309}}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 1_000,
        "the set expires with the window, PTTL {ttl}"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{key}:stats"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 1_000,
        "the stats expire with the window, PTTL {ttl}"
    );
}

#[tokio::test]
async fn redis_down_is_an_error_not_a_hang() {
    // A port nothing listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let limiter = RedisLimiter::new(
        rule(),
        &format!("redis://127.0.0.1:{port}"),
        "x:",
        Duration::from_millis(300),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = RateLimiter::Redis(Box::new(limiter))
        .check("+14158675309", T0)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LimiterError::Redis(_) | LimiterError::Timeout(_)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A Redis that accepts the connection and then never answers (a hung server, a black-holed
/// port): every decision gives up at the limiter's timeout with `Timeout`, the first one (which
/// also has to connect) and the ones after it alike, and none hangs.
#[tokio::test]
async fn hung_redis_times_out_each_decision_at_the_limit() {
    // Bound but never accepted: the kernel completes the handshake (backlog), nothing replies.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let timeout = Duration::from_millis(300);
    let limiter = RateLimiter::Redis(Box::new(
        RedisLimiter::new(
            rule(),
            &format!("redis://{}", hung.local_addr().unwrap()),
            "x:",
            timeout,
        )
        .unwrap(),
    ));
    for attempt in 0..3 {
        let started = std::time::Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(5), limiter.check("+14158675309", T0))
            .await
            .expect("a hung Redis must not hang the decision")
            .unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err, LimiterError::Timeout(300)),
            "attempt {attempt}: {err:?}"
        );
        assert!(
            took >= timeout && took < timeout + Duration::from_millis(250),
            "attempt {attempt} gave up after {took:?}, not at its {timeout:?} timeout"
        );
    }
    drop(hung);
}
