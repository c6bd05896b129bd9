//! What the API does with hostile or odd input from the internet, over real HTTP: the bearer
//! check, odd `From` values, repeated deliveries of one inbound call, and a store that is down.
//! (Log injection is in `log_injection.rs`: it captures logs, so it runs in a process of its
//! own.)

#![allow(clippy::too_many_lines, clippy::similar_names)]

mod common;

use common::{start, start_on};
use voxbridge_api::LimiterBackend;

/// Raw `Authorization` values sent over a real socket and whether each may pass. (Trailing
/// spaces and tabs are not part of a header's value, RFC 9110 section 5.5: the HTTP parser
/// drops them before any handler runs; the check itself refuses them, see the unit test of
/// `bearer_matches`.)
#[tokio::test]
async fn the_bearer_token_must_match_the_header_exactly() {
    let h = start(|_| {}).await;
    let token = common::BEARER;
    let cases: Vec<(String, u16)> = vec![
        (format!("Bearer {token}"), 200),
        (format!("Bearer   {token}"), 401),
        (format!("Bearer \t{token}"), 401),
        (format!("Bearer  {token}"), 401),
        (format!("bearer {token}"), 401),
        (format!("Bearer {token}x"), 401),
        (format!("Bearer {}", &token[..token.len() - 1]), 401),
        ("Bearer ".to_owned(), 401),
        (String::new(), 401),
    ];
    for (value, expected) in cases {
        let status = raw_get(&h.base, "/api/calls", &value).await;
        assert_eq!(status, expected, "Authorization: {value:?}");
    }
}

/// `GET path` over a plain TCP socket with exactly `authorization` as the header value (no
/// client library in between that could normalise it).
async fn raw_get(base: &str, path: &str, authorization: &str) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

const CONNECT: &str = "<ConversationRelay";
const BLOCKED: &str = "<Say>You have exceeded the maximum number of calls allowed. Please try again later.</Say><Hangup/>";

/// One `CallSid` delivered again and again (one after the other, and seven at once) counts once
/// and gets the TwiML of its first delivery; distinct calls still fill the window.
async fn a_call_sid_counts_once(h: &common::Harness) {
    let caller = "+14158675309";
    let (status, first) = h.inbound_call(1, caller).await;
    assert_eq!(status, 200, "{first}");
    assert!(first.contains(CONNECT), "{first}");
    for i in 0..6 {
        assert_eq!(
            h.inbound_call(1, caller).await,
            (200, first.clone()),
            "repeat {i}"
        );
    }
    let together = futures::future::join_all((0..7).map(|_| h.inbound_call(2, caller))).await;
    for (status, xml) in &together {
        assert_eq!(*status, 200, "{xml}");
        assert!(xml.contains(CONNECT), "{xml}");
        assert_eq!(xml, &together[0].1);
    }
    let (status, stats) = h.api_get(&format!("/api/rate-limits/{caller}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        stats["recentCount"], 2,
        "two calls, fourteen deliveries: {stats}"
    );
    for n in 3..=5 {
        let (_, xml) = h.inbound_call(n, caller).await;
        assert!(xml.contains(CONNECT), "call {n}: {xml}");
    }
    let (status, blocked) = h.inbound_call(6, caller).await;
    assert_eq!(status, 200);
    assert!(blocked.contains(BLOCKED), "the 6th call: {blocked}");
    assert_eq!(h.inbound_call(6, caller).await, (200, blocked.clone()));
    // A late redelivery of an allowed call is still connected, not blocked by the full window.
    assert_eq!(h.inbound_call(1, caller).await, (200, first.clone()));
    let (_, stats) = h.api_get(&format!("/api/rate-limits/{caller}")).await;
    assert_eq!(stats["totalAllowed"], 5, "{stats}");
    assert_eq!(stats["totalBlocked"], 1, "{stats}");
    let decisions = h.state.store().rate_limit_decisions(caller).await.unwrap();
    assert_eq!(
        decisions.len(),
        6,
        "one audited decision per call: {decisions:?}"
    );
}

#[tokio::test]
async fn a_redelivered_inbound_call_counts_once_on_sqlite_in_memory() {
    let h = start(|_| {}).await;
    a_call_sid_counts_once(&h).await;
}

#[tokio::test]
async fn a_redelivered_inbound_call_counts_once_on_sqlite_with_redis() {
    let Some(url) =
        common::redis_url("a_redelivered_inbound_call_counts_once_on_sqlite_with_redis")
    else {
        return;
    };
    let h = start(|c| {
        c.rate_limit.backend = LimiterBackend::Redis;
        c.rate_limit.redis_url = url.as_str().into();
        c.rate_limit.redis_key_prefix = common::unique_redis_prefix();
    })
    .await;
    a_call_sid_counts_once(&h).await;
    assert_eq!(h.state.metrics().rate_limit_store_failures.get(), 0);
}

#[tokio::test]
async fn a_redelivered_inbound_call_counts_once_on_postgres_with_redis() {
    let test = "a_redelivered_inbound_call_counts_once_on_postgres_with_redis";
    let Some(db) = common::TestDatabase::create(test).await else {
        return;
    };
    let Some(url) = common::redis_url(test) else {
        return;
    };
    let h = start_on(tempfile::tempdir().unwrap(), db.url.clone(), |c| {
        c.rate_limit.backend = LimiterBackend::Redis;
        c.rate_limit.redis_url = url.as_str().into();
        c.rate_limit.redis_key_prefix = common::unique_redis_prefix();
    })
    .await;
    a_call_sid_counts_once(&h).await;
}

#[tokio::test]
async fn a_redelivered_inbound_call_counts_once_on_postgres_in_memory() {
    let Some(db) = common::TestDatabase::create(
        "a_redelivered_inbound_call_counts_once_on_postgres_in_memory",
    )
    .await
    else {
        return;
    };
    let h = start_on(tempfile::tempdir().unwrap(), db.url.clone(), |_| {}).await;
    a_call_sid_counts_once(&h).await;
}

/// Every `From` Twilio may send (SIP URIs of any length, client names, nothing) is answered
/// with TwiML, and what the limiter keys on stays short.
#[tokio::test]
async fn odd_from_values_get_twiml_never_a_500() {
    let h = start(|_| {}).await;
    let long_sip = format!("sip:{}@trunk.example.com", "a".repeat(478));
    assert_eq!(long_sip.len(), 500);
    let longer_sip = format!("sip:+1415{}@trunk.example.com", "9".repeat(1_500));
    let odd = [
        long_sip.as_str(),
        longer_sip.as_str(),
        "",
        "anonymous",
        "client:alice",
        "+1",
        "sip:+14158675309@trunk.example.com;user=phone",
        "zürich ☎ 044 123 45 67",
    ];
    for (i, from) in odd.iter().enumerate() {
        let (status, xml) = h.inbound_call(100 + i, from).await;
        assert_eq!(status, 200, "From {from:?}: {xml}");
        assert!(xml.contains(CONNECT), "From {from:?}: {xml}");
        // Twilio's retry of the same call gets the same answer.
        assert_eq!(h.inbound_call(100 + i, from).await, (200, xml));
    }
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&h.db_url)
        .await
        .unwrap();
    let keys: Vec<String> = sqlx::query_scalar("SELECT number FROM rate_limit_decisions")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert_eq!(keys.len(), odd.len(), "{keys:?}");
    for key in &keys {
        assert!(
            key.len() <= 64,
            "rate-limit key of {} bytes: {key}",
            key.len()
        );
    }
    let distinct: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(
        distinct.len(),
        keys.len(),
        "odd callers keep their own keys: {keys:?}"
    );
}

/// The store is really down (its pool closed): an incoming call is still answered (fail open,
/// counted in `rate_limit_store_failures`), a status callback gets 503 so Twilio retries it.
#[tokio::test]
async fn with_the_sqlite_store_closed_inbound_fails_open_and_callbacks_get_503() {
    let h = start(|_| {}).await;
    h.state.store().close().await;
    store_down_behaviour(&h).await;
}

/// The same with the PostgreSQL database dropped under the running service.
#[tokio::test]
async fn with_the_postgres_database_gone_inbound_fails_open_and_callbacks_get_503() {
    let Some(db) = common::TestDatabase::create(
        "with_the_postgres_database_gone_inbound_fails_open_and_callbacks_get_503",
    )
    .await
    else {
        return;
    };
    let h = start_on(tempfile::tempdir().unwrap(), db.url.clone(), |_| {}).await;
    db.drop_now().await;
    store_down_behaviour(&h).await;
}

async fn store_down_behaviour(h: &common::Harness) {
    for i in 0..7 {
        let (status, xml) = h.inbound_call(300 + i, "+14158675309").await;
        assert_eq!(status, 200, "inbound call {i}: {xml}");
        assert!(xml.contains(CONNECT), "inbound call {i}: {xml}");
    }
    let metrics = h.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "voxbridge_api_rate_limit_store_failures_total 7"),
        "{metrics}"
    );
    let r = h
        .webhook(
            "/twilio/voice/status",
            &common::status_params(&format!("CA{:032x}", 300), "completed", "3"),
        )
        .await;
    assert_eq!(
        r.status(),
        503,
        "Twilio retries a status callback it could not deliver"
    );
    let ready = h
        .http
        .get(format!("{}/readyz", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
}
