//! Results to the ATS over real sockets: a receiver on 127.0.0.1 that verifies each
//! `Voxbridge-Signature` itself (HMAC-SHA256 over `t.body`, as README tells an integrator),
//! answers as each test scripts it, and records what arrived and when.
//!
//! - one signed POST per ended screening, whatever the webhooks that end it (a status webhook
//!   delivered twice, a second terminal status, the agent's result after it), on SQLite and
//!   PostgreSQL;
//! - a receiver failing N times then accepting: retried with exponential backoff;
//! - a receiver always failing: dead-lettered after `max_attempts`, listed, redelivered;
//! - two instances on one PostgreSQL database deliver each result once.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use voxbridge_api::{ApiConfig, AppState, Clock as _, ManualClock, Secret, SystemClock, router};
use voxbridge_store::{Store, StoreConfig, rfc3339};
use voxbridge_twilio::RequestValidator;

use common::{BEARER, Harness, T0, TOKEN, TestDatabase, start, start_on, status_params};

const SECRET: &str = "whsec_test_0123456789";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    /// Path and query.
    uri: String,
    delivery_id: String,
    attempt: u32,
    event: String,
    body: Value,
}

#[derive(Debug, Default)]
struct ReceiverState {
    /// Statuses to answer, in order; 200 once they run out.
    script: Mutex<Vec<u16>>,
    /// Every signed request, in arrival order.
    received: Mutex<Vec<Received>>,
    /// Requests whose signature did not verify.
    bad_signatures: Mutex<u32>,
    /// The clock the receiver checks timestamps against (Unix s), or the real one.
    now_secs: Mutex<Option<i64>>,
}

/// The receiver's own check, written as an integrator would from README.
fn verify(header: &str, body: &[u8], now: i64) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1.push(value.to_owned()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now - t).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected = mac
        .finalize()
        .into_bytes()
        .iter()
        .fold(String::new(), |hex, b| hex + &format!("{b:02x}"));
    v1.contains(&expected)
}

async fn receive(
    State(receiver): State<Arc<ReceiverState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let now = receiver.now_secs.lock().unwrap().unwrap_or_else(|| {
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap()
    });
    if !verify(&header("voxbridge-signature"), &body, now) {
        *receiver.bad_signatures.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    assert_eq!(header("content-type"), "application/json");
    receiver.received.lock().unwrap().push(Received {
        at: Instant::now(),
        uri: uri.to_string(),
        delivery_id: header("voxbridge-delivery-id"),
        attempt: header("voxbridge-delivery-attempt").parse().unwrap(),
        event: header("voxbridge-event"),
        body: serde_json::from_slice(&body).unwrap(),
    });
    let mut script = receiver.script.lock().unwrap();
    if script.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::from_u16(script.remove(0)).unwrap()
    }
}

/// Starts a receiver answering `script` then 200; returns its URL.
async fn start_receiver(script: Vec<u16>) -> (String, Arc<ReceiverState>) {
    let receiver = Arc::new(ReceiverState {
        script: Mutex::new(script),
        ..ReceiverState::default()
    });
    let app = Router::new()
        .route("/ats/results", post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/ats/results"), receiver)
}

fn screening_body(candidate: &str, callback: Option<&str>) -> Value {
    let mut body = json!({
        "candidateId": candidate,
        "firstName": "Ada",
        "phone": "+14158675309",
        "jobTitle": "Welder",
        "metadata": {"requisition": "R-7", "stage": {"id": 3}},
    });
    if let Some(url) = callback {
        body["callbackUrl"] = json!(url);
    }
    body
}

/// Requests a screening and ends its call (`in-progress`, then `completed`); returns the
/// screening id and call SID.
async fn ended_screening(h: &Harness, candidate: &str, callback: Option<&str>) -> (i64, String) {
    let (status, body) = h
        .create_screening(&screening_body(candidate, callback))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().unwrap();
    let sid = body["callSid"].as_str().unwrap().to_owned();
    for (call_status, seq) in [("in-progress", "2"), ("completed", "3")] {
        let mut params = status_params(&sid, call_status, seq);
        params.push(("CallDuration", "61"));
        assert_eq!(
            h.webhook("/twilio/voice/status", &params).await.status(),
            204
        );
    }
    (id, sid)
}

async fn deliveries(h: &Harness, query: &str) -> Value {
    let (status, body) = h.api_get(&format!("/api/webhook-deliveries{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Polls `check` every 10 ms until it holds, for at most `within`.
async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `[api.webhooks]` for the tests: the default URL and the secret.
fn webhooks(config: &mut ApiConfig, url: &str) {
    url.clone_into(&mut config.webhooks.url);
    config.webhooks.secret = Secret::new(SECRET);
}

/// The API on a store of its own (or `db_url`) with the system clock and its background
/// work running (the delivery worker), until the token is cancelled.
async fn start_live(
    db_url: Option<String>,
    configure: impl FnOnce(&mut ApiConfig),
) -> (Harness, CancellationToken) {
    let dir = tempfile::tempdir().unwrap();
    let db_url = db_url.unwrap_or_else(|| format!("sqlite://{}/api.db", dir.path().display()));
    let (twilio_url, fake) = common::start_fake_twilio().await;
    let store = Store::connect(&StoreConfig {
        database_url: db_url.clone().into(),
        ..StoreConfig::default()
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = common::base_config();
    config.public_url.clone_from(&base);
    config.twilio.rest_base_url = twilio_url;
    // The system clock: the test runs at any hour, so no calling hours.
    config.calling_hours.enabled = false;
    configure(&mut config);
    let state = AppState::new(config, store, Arc::new(SystemClock)).unwrap();
    let app = router(state.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let shutdown = CancellationToken::new();
    voxbridge_api::spawn_background(&state, shutdown.clone());
    voxbridge_config::tls::install_ring_provider();
    let harness = Harness {
        base,
        state,
        clock: Arc::new(ManualClock::new(0)),
        http: reqwest::Client::new(),
        signer: RequestValidator::new(TOKEN),
        fake,
        db_url,
        server,
        dir,
    };
    (harness, shutdown)
}

async fn post_api(h: &Harness, path: &str) -> (StatusCode, Value) {
    let response = h
        .http
        .post(format!("{}{path}", h.base))
        .bearer_auth(BEARER)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap())
}

/// The whole promise on one store (virtual clock, passes run by hand): the result of an ended
/// screening is posted once, signed, with the documented fields, to its `callbackUrl` or the
/// default, however many terminal webhooks the screening got; not before `settle_ms`.
#[allow(clippy::too_many_lines)] // one delivery checked field by field
async fn one_signed_result_per_screening(h: &Harness, receiver: &ReceiverState, url: &str) {
    *receiver.now_secs.lock().unwrap() = Some((T0 + 3_000) / 1000);
    let callback = format!("{url}?via=callback");
    let (status, created) = h
        .create_screening(&screening_body("ats-1", Some(&callback)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["screening"]["callbackUrl"], json!(callback));
    assert_eq!(
        created["screening"]["metadata"],
        json!({"requisition": "R-7", "stage": {"id": 3}})
    );
    let id = created["id"].as_i64().unwrap();
    let sid = created["callSid"].as_str().unwrap().to_owned();
    let (_, detail) = h.api_get(&format!("/api/screenings/{id}")).await;
    assert_eq!(detail["screening"]["metadata"]["stage"]["id"], 3);

    // The call ends; Twilio delivers `completed` twice, then another terminal status; the
    // agent's result lands after it.
    let mut completed = status_params(&sid, "completed", "3");
    completed.push(("CallDuration", "61"));
    let mut late = status_params(&sid, "completed", "4");
    late.push(("CallDuration", "61"));
    for params in [
        status_params(&sid, "in-progress", "2"),
        completed.clone(),
        completed,
        late,
    ] {
        assert_eq!(
            h.webhook("/twilio/voice/status", &params).await.status(),
            204
        );
    }
    h.state
        .store()
        .save_screening_result(
            &sid,
            &json!({"years_welding": 4, "certified": true}),
            "qualified",
            Some("Four years of MIG welding."),
            T0 + 100,
        )
        .await
        .unwrap();
    let listed = deliveries(h, &format!("?screeningId={id}")).await;
    assert_eq!(listed["total"], 1, "{listed}");
    let delivery = listed["deliveries"][0].clone();
    assert_eq!(delivery["state"], "pending");
    let delivery_id = delivery["id"].as_i64().unwrap();
    // Still pending: a redelivery is refused.
    let (status, body) = post_api(
        h,
        &format!("/api/webhook-deliveries/{delivery_id}/redeliver"),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Not before the settle delay.
    assert_eq!(voxbridge_api::ats::deliver_due(&h.state).await.unwrap(), 0);
    assert!(receiver.received.lock().unwrap().is_empty());
    h.clock.advance(3_000);
    assert_eq!(voxbridge_api::ats::deliver_due(&h.state).await.unwrap(), 1);
    let got = receiver.received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(*receiver.bad_signatures.lock().unwrap(), 0);
    let got = &got[0];
    assert_eq!(got.uri, "/ats/results?via=callback");
    assert_eq!(got.delivery_id, delivery_id.to_string());
    assert_eq!((got.attempt, got.event.as_str()), (1, "screening.ended"));
    let body = &got.body;
    assert_eq!(body["event"], "screening.ended");
    assert_eq!(body["deliveryId"], delivery_id);
    assert_eq!(body["screening"]["id"], id);
    assert_eq!(body["screening"]["state"], "completed");
    assert_eq!(body["screening"]["outcome"], "qualified");
    assert_eq!(body["screening"]["jobTitle"], "Welder");
    assert_eq!(
        body["screening"]["answers"],
        json!({"yearsWelding": 4, "certified": true})
    );
    assert_eq!(body["screening"]["summary"], "Four years of MIG welding.");
    assert_eq!(
        body["candidate"],
        json!({"id": "ats-1", "firstName": "Ada", "phone": "+14158675309"})
    );
    assert_eq!(body["call"]["callSid"], json!(sid));
    assert_eq!(body["call"]["durationSeconds"], 61);
    assert_eq!(
        body["call"]["transcriptUrl"],
        json!(format!("{}/api/calls/{sid}", h.base))
    );
    assert_eq!(body["timings"]["requestedAt"], json!(rfc3339(T0)));
    assert_eq!(body["timings"]["answeredAt"], "2023-11-14T22:13:20.000Z");
    assert_eq!(body["timings"]["endedAt"], "2023-11-14T22:13:20.000Z");
    assert_eq!(
        body["metadata"],
        json!({"requisition": "R-7", "stage": {"id": 3}})
    );

    // Delivered: never again, however long we wait.
    h.clock.advance(24 * 3_600_000);
    assert_eq!(voxbridge_api::ats::deliver_due(&h.state).await.unwrap(), 0);
    assert_eq!(receiver.received.lock().unwrap().len(), 1);
    let (_, shown) = h
        .api_get(&format!("/api/webhook-deliveries/{delivery_id}"))
        .await;
    assert_eq!(shown["delivery"]["state"], "delivered");
    assert_eq!(shown["delivery"]["attempts"], 1);
    assert_eq!(shown["delivery"]["lastStatus"], 200);
    assert_eq!(shown["delivery"]["payload"], *body);

    // Without a callbackUrl: the default URL.
    let (other, _) = ended_screening(h, "ats-2", None).await;
    h.clock.advance(3_000);
    *receiver.now_secs.lock().unwrap() = Some(h.clock.now_ms() / 1000);
    assert_eq!(voxbridge_api::ats::deliver_due(&h.state).await.unwrap(), 1);
    let got = receiver.received.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].uri, "/ats/results?via=default");
    assert_eq!(got[1].body["screening"]["id"], other);
    assert_eq!(got[1].body["screening"]["outcome"], Value::Null);
    assert_eq!(got[1].body["screening"]["state"], "completed");
    assert_eq!(*receiver.bad_signatures.lock().unwrap(), 0);
    let all = deliveries(h, "?state=delivered").await;
    assert_eq!(all["total"], 2, "{all}");

    // Bad input is named per field; unknown filters and ids are refused.
    let mut bad = screening_body("ats-3", Some("ftp://ats.example.com/results"));
    bad["metadata"] = json!(["not", "an", "object"]);
    let (status, refused) = h.create_screening(&bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused["errors"]["callbackUrl"].is_string(), "{refused}");
    assert!(refused["errors"]["metadata"].is_string(), "{refused}");
    let (status, _) = h.api_get("/api/webhook-deliveries?state=bogus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = h.api_get("/api/webhook-deliveries/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = post_api(h, "/api/webhook-deliveries/abc/redeliver").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post_api(h, "/api/webhook-deliveries/999999/redeliver").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn results_are_posted_once_signed_on_sqlite() {
    let (url, receiver) = start_receiver(Vec::new()).await;
    let h = start(|c| webhooks(c, &format!("{url}?via=default"))).await;
    one_signed_result_per_screening(&h, &receiver, &url).await;
}

#[tokio::test]
async fn results_are_posted_once_signed_on_postgres() {
    let Some(database) = TestDatabase::create("ATS results on PostgreSQL").await else {
        return;
    };
    let (url, receiver) = start_receiver(Vec::new()).await;
    let h = start_on(tempfile::tempdir().unwrap(), database.url.clone(), |c| {
        webhooks(c, &format!("{url}?via=default"));
    })
    .await;
    one_signed_result_per_screening(&h, &receiver, &url).await;
}

/// A receiver that fails three times, then accepts: four attempts of one delivery, spaced by
/// the documented backoff (the delay after attempt `n` is within `[d/2, d]`,
/// `d = backoff_base_ms * 2^(n-1)`), then delivered.
#[tokio::test]
async fn a_failing_receiver_is_retried_with_exponential_backoff() {
    const BASE_MS: u64 = 150;
    let (url, receiver) = start_receiver(vec![500, 503, 502]).await;
    let (h, shutdown) = start_live(None, |c| {
        webhooks(c, &url);
        c.webhooks.backoff_base = Duration::from_millis(BASE_MS);
        c.webhooks.settle = Duration::ZERO;
        c.webhooks.poll_interval = Duration::from_millis(10);
        c.webhooks.timeout = Duration::from_secs(2);
        c.webhooks.lease = Duration::from_secs(5);
    })
    .await;
    let (id, _) = ended_screening(&h, "retry-1", None).await;
    eventually(Duration::from_secs(15), "four attempts", || {
        receiver.received.lock().unwrap().len() >= 4
    })
    .await;
    let got = receiver.received.lock().unwrap().clone();
    assert_eq!(*receiver.bad_signatures.lock().unwrap(), 0);
    assert_eq!(
        got.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert!(got.iter().all(|r| r.delivery_id == got[0].delivery_id));
    assert!(
        got.iter().all(|r| r.body == got[0].body),
        "one body on every attempt"
    );
    assert_eq!(got[0].body["screening"]["id"], id);
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    for (n, gap) in gaps.iter().enumerate() {
        let full = Duration::from_millis(BASE_MS << n);
        assert!(
            *gap >= full / 2,
            "gap after attempt {}: {gap:?} < {:?}",
            n + 1,
            full / 2
        );
        assert!(
            *gap <= full + Duration::from_millis(500),
            "gap after attempt {}: {gap:?} > {full:?} + 500 ms",
            n + 1
        );
    }
    assert!(gaps[2] > gaps[0], "the delay grows: {gaps:?}");
    let id = got[0].delivery_id.clone();
    let mut shown = Value::Null;
    for _ in 0..500 {
        shown = h.api_get(&format!("/api/webhook-deliveries/{id}")).await.1;
        if shown["delivery"]["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(shown["delivery"]["state"], "delivered", "{shown}");
    assert_eq!(shown["delivery"]["attempts"], 4);
    let metrics = h.metrics_text().await;
    assert!(
        metrics.contains("voxbridge_api_ats_webhook_attempts_failed_total 3"),
        "{metrics}"
    );
    assert!(metrics.contains("voxbridge_api_ats_webhooks_delivered_total 1"));
    assert_eq!(receiver.received.lock().unwrap().len(), 4);
    shutdown.cancel();
}

/// `GET /api/webhook-deliveries?state=dead` once it lists one delivery (within 10 s).
async fn one_dead_letter(h: &Harness) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dead = deliveries(h, "?state=dead").await;
        if dead["total"] == 1 {
            return dead;
        }
        assert!(Instant::now() < deadline, "no dead letter: {dead}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A receiver that never accepts: dead-lettered after `max_attempts`, listed as dead, and
/// delivered by a redelivery once the receiver is fixed (same delivery id, attempts anew).
#[tokio::test]
async fn an_always_failing_receiver_is_dead_lettered_then_redelivered() {
    let (url, receiver) = start_receiver(vec![500, 500, 500]).await;
    let (h, shutdown) = start_live(None, |c| {
        webhooks(c, &url);
        c.webhooks.max_attempts = 3;
        c.webhooks.backoff_base = Duration::from_millis(20);
        c.webhooks.settle = Duration::ZERO;
        c.webhooks.poll_interval = Duration::from_millis(10);
        c.webhooks.timeout = Duration::from_secs(2);
        c.webhooks.lease = Duration::from_secs(5);
    })
    .await;
    let (id, _) = ended_screening(&h, "dead-1", None).await;
    let dead = one_dead_letter(&h).await;
    let delivery = &dead["deliveries"][0];
    assert_eq!(delivery["screeningId"], id);
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["lastStatus"], 500);
    assert_eq!(delivery["lastError"], "HTTP 500");
    assert_eq!(receiver.received.lock().unwrap().len(), 3);
    let metrics = h.metrics_text().await;
    assert!(
        metrics.contains("voxbridge_api_ats_webhooks_dead_total 1"),
        "{metrics}"
    );

    // The receiver is fixed (its script ran out: 200 from now on); redeliver.
    let delivery_id = delivery["id"].as_i64().unwrap();
    let (status, body) = post_api(
        &h,
        &format!("/api/webhook-deliveries/{delivery_id}/redeliver"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["delivery"]["state"], "pending");
    eventually(Duration::from_secs(10), "the redelivery", || {
        receiver.received.lock().unwrap().len() >= 4
    })
    .await;
    let got = receiver.received.lock().unwrap().clone();
    assert_eq!(got[3].delivery_id, delivery_id.to_string());
    assert_eq!(got[3].attempt, 1);
    assert_eq!(got[3].body, got[0].body);
    let mut shown = Value::Null;
    for _ in 0..500 {
        shown = h
            .api_get(&format!("/api/webhook-deliveries/{delivery_id}"))
            .await
            .1;
        if shown["delivery"]["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(shown["delivery"]["state"], "delivered", "{shown}");
    assert_eq!(deliveries(&h, "?state=dead").await["total"], 0);
    assert_eq!(receiver.received.lock().unwrap().len(), 4);
    shutdown.cancel();
}

/// The `name=value` pair of the `Set-Cookie` header that sets `name`.
fn cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .to_owned()
}

/// The value of the first hidden `csrf` input of a console page.
fn csrf_field(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + 64].to_owned()
}

/// A dead-lettered result is listed in the recruiter console (signed in with the API token),
/// and "Send again" there queues it: the receiver gets it once more, with the same delivery id.
#[tokio::test]
async fn a_dead_letter_is_shown_in_the_console_and_sent_again_from_it() {
    let (url, receiver) = start_receiver(vec![500, 500]).await;
    let (h, shutdown) = start_live(None, |c| {
        webhooks(c, &url);
        c.webhooks.max_attempts = 2;
        c.webhooks.backoff_base = Duration::from_millis(20);
        c.webhooks.settle = Duration::ZERO;
        c.webhooks.poll_interval = Duration::from_millis(10);
        c.webhooks.timeout = Duration::from_secs(2);
    })
    .await;
    let (id, _) = ended_screening(&h, "dead-console", None).await;
    let dead = one_dead_letter(&h).await;
    let delivery_id = dead["deliveries"][0]["id"].as_i64().unwrap();
    assert_eq!(dead["deliveries"][0]["screeningId"], id);

    // Sign in to the console with the API token (no redirects followed: the cookies are read).
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = browser
        .get(format!("{}/console/login", h.base))
        .send()
        .await
        .unwrap();
    let login_cookie = cookie(&login, "__Host-vb_login");
    let login_csrf = csrf_field(&login.text().await.unwrap());
    let signed_in = browser
        .post(format!("{}/console/login", h.base))
        .header(reqwest::header::COOKIE, login_cookie)
        .form(&[("csrf", login_csrf.as_str()), ("token", BEARER)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let session = cookie(&signed_in, "__Host-vb_session");

    let page = browser
        .get(format!("{}/console/webhooks?state=dead", h.base))
        .header(reqwest::header::COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!("id=\"delivery-{delivery_id}\"")),
        "{html}"
    );
    assert!(html.contains("HTTP 500"), "{html}");
    assert!(html.contains("<strong>1</strong> dead"), "{html}");
    assert!(html.contains("Send again"), "{html}");
    let csrf = csrf_field(&html);

    let redeliver = format!("{}/console/webhooks/{delivery_id}/redeliver", h.base);
    let forged = browser
        .post(&redeliver)
        .header(reqwest::header::COOKIE, &session)
        .form(&[("csrf", "0".repeat(64).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(receiver.received.lock().unwrap().len(), 2);

    let sent = browser
        .post(&redeliver)
        .header(reqwest::header::COOKIE, &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        sent.headers()[reqwest::header::LOCATION],
        format!("/console/webhooks?redelivered={delivery_id}").as_str()
    );
    eventually(Duration::from_secs(10), "the redelivery", || {
        receiver.received.lock().unwrap().len() >= 3
    })
    .await;
    let got = receiver.received.lock().unwrap().clone();
    assert_eq!(got[2].delivery_id, delivery_id.to_string());
    assert_eq!(got[2].body, got[0].body);
    shutdown.cancel();
}

/// Two instances on one PostgreSQL database, both delivering: every result arrives, each
/// once (claims skip rows the other holds).
#[tokio::test]
async fn two_instances_deliver_each_result_once_on_postgres() {
    const SCREENINGS: usize = 12;
    let Some(database) = TestDatabase::create("ATS results from two instances").await else {
        return;
    };
    let (url, receiver) = start_receiver(Vec::new()).await;
    let configure = |c: &mut ApiConfig| {
        webhooks(c, &url);
        c.webhooks.settle = Duration::ZERO;
        c.webhooks.poll_interval = Duration::from_millis(10);
        c.webhooks.concurrency = 2;
        c.max_calls_per_candidate_per_day = 100;
    };
    let (a, stop_a) = start_live(Some(database.url.clone()), configure).await;
    let (b, stop_b) = start_live(Some(database.url.clone()), configure).await;
    for n in 0..SCREENINGS {
        // Created through `a` (its Twilio stand-in numbers the calls); ended through either.
        let (status, created) = a
            .create_screening(&screening_body(&format!("pair-{n}"), None))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let sid = created["callSid"].as_str().unwrap().to_owned();
        let via = if n % 2 == 0 { &a } else { &b };
        let params = status_params(&sid, "completed", "3");
        assert_eq!(
            via.webhook("/twilio/voice/status", &params).await.status(),
            204
        );
    }
    eventually(Duration::from_secs(20), "every result", || {
        receiver.received.lock().unwrap().len() >= SCREENINGS
    })
    .await;
    let mut delivered = Value::Null;
    for _ in 0..500 {
        delivered = deliveries(&a, "?state=delivered&limit=100").await;
        if delivered["total"] == SCREENINGS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(delivered["total"], SCREENINGS, "{delivered}");
    let got = receiver.received.lock().unwrap().clone();
    let mut ids: Vec<&str> = got.iter().map(|r| r.delivery_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), SCREENINGS);
    assert_eq!(got.len(), SCREENINGS, "no result delivered twice: {got:?}");
    stop_a.cancel();
    stop_b.cancel();
}
