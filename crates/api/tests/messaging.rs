//! Messaging over real sockets: the API on 127.0.0.1:0 with a temp SQLite file, a virtual
//! wall clock, its sender running, and the simulator's Messages API (`voxbridge_sim::messaging`)
//! as Twilio: consent keywords, quiet hours, segments, pacing per sender kind, retries and
//! permanent failures, delivery callbacks out of order.

#![allow(clippy::field_reassign_with_default)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use voxbridge_api::{ApiConfig, AppState, ManualClock, Secret, router, spawn_background};
use voxbridge_sim::messaging::{Delivery, MessagingSim, MessagingSimConfig};
use voxbridge_store::{Store, StoreConfig};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "test-auth-token";
const BEARER: &str = "test-bearer";
const FROM: &str = "+14155550199";
/// 2026-12-04 13:00 UTC: 05:00 in San Francisco, 08:00 in New York, 13:00 in London.
const T0: i64 = 1_796_389_200_000;
const SF: &str = "+14155550100";
const LONDON: &str = "+442071234567";
const WAIT: Duration = Duration::from_secs(10);

struct Env {
    base: String,
    http: reqwest::Client,
    clock: Arc<ManualClock>,
    sim: MessagingSim,
    state: AppState,
    shutdown: CancellationToken,
    dir: Arc<tempfile::TempDir>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(configure: impl FnOnce(&mut ApiConfig, &mut MessagingSimConfig)) -> Env {
    start_in(Arc::new(tempfile::tempdir().unwrap()), configure).await
}

/// [`start`] on the SQLite file in `dir` (a restart when another `Env` used it).
async fn start_in(
    dir: Arc<tempfile::TempDir>,
    configure: impl FnOnce(&mut ApiConfig, &mut MessagingSimConfig),
) -> Env {
    voxbridge_config::tls::install_ring_provider();
    let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_base = format!("http://{}", sim_listener.local_addr().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = ApiConfig::default();
    config.public_url = base.clone();
    config.api_token = Secret::new(BEARER);
    ACCOUNT.clone_into(&mut config.twilio.account_sid);
    config.twilio.auth_token = Secret::new(TOKEN);
    FROM.clone_into(&mut config.twilio.from_number);
    config.twilio.rest_base_url = sim_base;
    config.messaging.poll_interval = Duration::from_millis(10);
    let mut sim_config = MessagingSimConfig::new(ACCOUNT, TOKEN);
    configure(&mut config, &mut sim_config);
    let sim = MessagingSim::new(sim_config);
    let sim_app = sim.router();
    tokio::spawn(async move { axum::serve(sim_listener, sim_app).await.unwrap() });
    let store = Store::connect(&StoreConfig {
        database_url: format!("sqlite://{}/messages.db", dir.path().display()).into(),
        ..StoreConfig::default()
    })
    .await
    .unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let state = AppState::new(config, store, clock.clone()).unwrap();
    let app = router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let shutdown = CancellationToken::new();
    spawn_background(&state, shutdown.clone());
    Env {
        base,
        http: reqwest::Client::new(),
        clock,
        sim,
        state,
        shutdown,
        dir,
    }
}

impl Env {
    async fn send(&self, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/api/messages", self.base))
            .bearer_auth(BEARER)
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn message(&self, id: i64) -> Value {
        let response = self
            .http
            .get(format!("{}/api/messages/{id}", self.base))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()["message"].clone()
    }

    /// Texts `body` from `from` to our number through the simulator; returns status and TwiML.
    async fn text_in(&self, from: &str, body: &str) -> (u16, String) {
        let url = format!("{}/twilio/sms/inbound", self.base);
        self.sim.send_inbound(&url, from, FROM, body).await.unwrap()
    }

    /// Polls `GET /api/messages/{id}` until `done` holds, up to [`WAIT`].
    async fn wait_message(&self, id: i64, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let message = self.message(id).await;
            if done(&message) {
                return message;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "message {id} stuck at {message}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn accepted_to(&self, to: &str) -> usize {
        self.sim.accepted().iter().filter(|a| a.to == to).count()
    }

    fn attempts_to(&self, to: &str) -> usize {
        self.sim.attempts().iter().filter(|a| a.to == to).count()
    }
}

#[tokio::test]
async fn opt_out_refuses_sends_until_start_and_help_answers() {
    let env = start(|c, _| c.messaging.quiet_hours.enabled = false).await;
    let (status, twiml) = env.text_in(SF, "  stop ").await;
    assert_eq!(status, 200);
    assert!(twiml.ends_with("<Response/>"), "{twiml}");
    let (status, body) = env
        .send(json!({"to": SF, "body": "Your interview is at 3pm"}))
        .await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (400, Some(21610)),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("opted out"),
        "{body}"
    );
    let history = env.state.store().consent_history(SF).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (
            history[0].status.as_str(),
            history[0].keyword.as_deref(),
            history[0].channel.as_deref(),
            history[0].at
        ),
        ("opted_out", Some("STOP"), Some("sms"), T0)
    );

    let (_, twiml) = env.text_in(SF, "Help").await;
    assert!(
        twiml.contains("<Message>Recruiting team: reply STOP"),
        "{twiml}"
    );
    let (_, twiml) = env.text_in(SF, "can we do 4pm instead?").await;
    assert!(twiml.ends_with("<Response/>"), "{twiml}");

    let (status, _) = env.text_in(SF, "START").await;
    assert_eq!(status, 200);
    let (status, body) = env
        .send(json!({"to": SF, "body": "Your interview is at 3pm"}))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_i64().unwrap();
    let message = env.wait_message(id, |m| m["messageSid"].is_string()).await;
    assert_eq!(message["to"], SF);
    assert_eq!(env.accepted_to(SF), 1);
    // The thread holds the four texts in, the HELP answer (sent as TwiML) and the one out.
    let thread = env.state.store().message_thread(SF, 50).await.unwrap();
    assert_eq!(thread.len(), 6);
    assert!(
        thread
            .iter()
            .any(|m| m.status == "replied" && m.body.starts_with("Recruiting team: reply STOP"))
    );
    assert!(
        thread
            .iter()
            .any(|m| m.body == "can we do 4pm instead?" && m.direction == "inbound")
    );
}

#[tokio::test]
async fn invalid_numbers_get_per_field_errors_with_21211() {
    let env = start(|_, _| {}).await;
    let (status, body) = env.send(json!({"to": "4155550100", "body": ""})).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (400, Some(21211)),
        "{body}"
    );
    assert!(
        body["errors"]["to"].as_str().unwrap().contains('+'),
        "{body}"
    );
    assert_eq!(body["errors"]["body"], "must not be empty");
    let (status, body) = env.send(json!({"body": "hi"})).await;
    assert_eq!(
        (status, body["errors"]["to"].as_str()),
        (400, Some("is required"))
    );
    let unauthenticated = env
        .http
        .post(format!("{}/api/messages", env.base))
        .json(&json!({"to": SF, "body": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
}

#[tokio::test]
async fn quiet_hours_hold_until_local_morning_then_release() {
    let env = start(|_, _| {}).await;
    // 05:00 in San Francisco: held until 08:00 PST = 16:00 UTC.
    let (status, held) = env.send(json!({"to": SF, "body": "Good morning"})).await;
    assert_eq!(status, 202, "{held}");
    assert_eq!(held["holdReason"], "quiet_hours");
    assert_eq!(held["sendAt"], "2026-12-04T16:00:00.000Z");
    assert_eq!(held["zone"], "America/Los_Angeles");
    // 13:00 in London: goes now.
    let (_, now) = env
        .send(json!({"to": LONDON, "body": "Good afternoon"}))
        .await;
    assert_eq!(now["holdReason"], Value::Null);
    assert!(
        env.sim
            .wait_until(WAIT, |s| s.accepted().iter().any(|a| a.to == LONDON))
            .await
    );
    // The sender has looked at the queue many times since: the held one stayed.
    assert_eq!(env.accepted_to(SF), 0);
    let id = held["id"].as_i64().unwrap();
    assert_eq!(env.message(id).await["status"], "scheduled");
    env.clock.advance(3 * 3_600_000 - 1_000);
    assert!(
        !env.sim
            .wait_until(Duration::from_millis(300), |s| s
                .accepted()
                .iter()
                .any(|a| a.to == SF))
            .await
    );
    env.clock.advance(1_000);
    let sent = env.wait_message(id, |m| m["messageSid"].is_string()).await;
    assert_eq!(sent["sentAt"], "2026-12-04T16:00:00.000Z");
    assert_eq!(env.accepted_to(SF), 1);
}

#[tokio::test]
async fn segments_and_encoding_are_reported() {
    let env = start(|_, _| {}).await;
    for (body, segments, encoding) in [
        ("a".repeat(160), 1, "GSM-7"),
        ("a".repeat(161), 2, "GSM-7"),
        ("€".repeat(81), 2, "GSM-7"),
        ("é".repeat(160), 1, "GSM-7"),
        ("😀".repeat(35), 1, "UCS-2"),
        ("😀".repeat(36), 2, "UCS-2"),
        (format!("{}’", "a".repeat(70)), 2, "UCS-2"),
    ] {
        let (status, answer) = env.send(json!({"to": LONDON, "body": body})).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(
            (answer["segments"].as_u64(), answer["encoding"].as_str()),
            (Some(segments), Some(encoding)),
            "{body}"
        );
    }
}

/// Arrival times at the simulator, in seconds from the first, of the accepted creates from
/// `sender`.
fn arrivals(sim: &MessagingSim, sender: &str) -> Vec<f64> {
    let times: Vec<_> = sim
        .accepted()
        .into_iter()
        .filter(|a| a.sender == sender)
        .map(|a| a.at)
        .collect();
    times
        .iter()
        .map(|t| t.duration_since(times[0]).as_secs_f64())
        .collect()
}

#[tokio::test]
async fn each_sender_kind_is_paced_at_its_rate() {
    const LONG: &str = "+14155550111";
    const TOLL_FREE: &str = "+18885550111";
    const SHORT: &str = "12345";
    let env = start(|c, _| {
        c.messaging.quiet_hours.enabled = false;
        c.messaging.senders = vec![LONG.into(), TOLL_FREE.into(), SHORT.into()];
    })
    .await;
    // All due at one instant, so the drain rate is the sender's, not the enqueuing's.
    let plan = [(LONG, 4), (TOLL_FREE, 7), (SHORT, 150)];
    for (sender, n) in plan {
        for i in 0..n {
            let (status, body) = env
                .send(json!({"to": LONDON, "from": sender, "body": format!("message {i}"), "sendAt": T0 + 1_000}))
                .await;
            assert_eq!(status, 202, "{body}");
        }
    }
    assert!(env.sim.attempts().is_empty());
    env.clock.advance(1_000);
    assert!(
        env.sim
            .wait_until(Duration::from_secs(20), |s| s.accepted().len() == 161)
            .await
    );
    for (sender, n, per_second) in [(LONG, 4, 1.0), (TOLL_FREE, 7, 3.0), (SHORT, 150, 100.0)] {
        let times = arrivals(&env.sim, sender);
        assert_eq!(times.len(), n);
        let interval = 1.0 / per_second;
        let span = times[n - 1];
        let rate = (n - 1) as f64 / span;
        eprintln!("{sender}: {n} messages in {span:.3} s = {rate:.2}/s (limit {per_second}/s)");
        // Never faster than the rate (a 5% margin for the arrival jitter of one request)...
        assert!(
            span >= (n - 1) as f64 * interval * 0.95,
            "{sender}: {times:?}"
        );
        // ...in any one-second window either (one more for the window's edges, 5% and one
        // more for a request delayed on its way).
        for (i, start) in times.iter().enumerate() {
            let in_window = times[i..].iter().take_while(|t| **t < start + 1.0).count();
            assert!(
                in_window as f64 <= per_second * 1.05 + 2.0,
                "{sender}: {in_window} in 1 s from {start}"
            );
        }
        // And not much slower: the queue drains at the configured rate.
        assert!(
            span <= (n - 1) as f64 * interval * 1.5 + 0.5,
            "{sender}: {span}"
        );
    }
}

#[tokio::test]
async fn throttling_is_retried_and_an_unsubscribed_recipient_is_not() {
    let env = start(|c, _| {
        c.messaging.quiet_hours.enabled = false;
        c.messaging.retry_base_delay = Duration::from_secs(2);
    })
    .await;
    env.sim.throttle_next(2);
    let (_, body) = env.send(json!({"to": LONDON, "body": "retry me"})).await;
    let id = body["id"].as_i64().unwrap();
    let first = env
        .wait_message(id, |m| m["holdReason"] == "retry" && m["attempts"] == 1)
        .await;
    assert_eq!(first["errorCode"], 20429);
    assert_eq!(first["sendAt"], "2026-12-04T13:00:02.000Z", "2 s backoff");
    env.clock.advance(2_000);
    let second = env
        .wait_message(id, |m| m["attempts"] == 2 && m["status"] == "scheduled")
        .await;
    assert_eq!(second["sendAt"], "2026-12-04T13:00:06.000Z", "4 s backoff");
    env.clock.advance(4_000);
    let sent = env.wait_message(id, |m| m["messageSid"].is_string()).await;
    assert_eq!(sent["attempts"], 3);
    assert_eq!(env.attempts_to(LONDON), 3);

    // Twilio knows an opt-out the API never saw: 21610, recorded, never retried.
    let gone = "+442079460000";
    env.sim.opt_out(gone);
    let (status, body) = env.send(json!({"to": gone, "body": "hello?"})).await;
    assert_eq!(status, 202);
    let id = body["id"].as_i64().unwrap();
    let failed = env.wait_message(id, |m| m["status"] == "failed").await;
    assert_eq!(failed["errorCode"], 21610);
    assert!(
        failed["errorMessage"].as_str().unwrap().contains("STOP"),
        "{failed}"
    );
    env.clock.advance(3_600_000);
    assert!(
        !env.sim
            .wait_until(Duration::from_millis(300), |s| s
                .attempts()
                .iter()
                .filter(|a| a.to == gone)
                .count()
                > 1)
            .await
    );
    assert_eq!(env.attempts_to(gone), 1);
}

#[tokio::test]
async fn delivery_callbacks_out_of_order_end_at_the_final_status() {
    const LANDLINE: &str = "+442079460001";
    let env = start(|c, sim| {
        c.messaging.quiet_hours.enabled = false;
        sim.reverse_callbacks = true;
        sim.delivery
            .insert(LANDLINE.into(), Delivery::Undelivered(30006));
    })
    .await;
    let (_, ok) = env.send(json!({"to": LONDON, "body": "one"})).await;
    let (_, bad) = env.send(json!({"to": LANDLINE, "body": "two"})).await;
    // Three callbacks each, the final status first.
    assert!(env.sim.wait_until(WAIT, |s| s.callbacks().len() == 6).await);
    assert!(
        env.sim.callbacks().iter().all(|c| c.status == 204),
        "{:?}",
        env.sim.callbacks()
    );
    let delivered = env.message(ok["id"].as_i64().unwrap()).await;
    assert_eq!(delivered["status"], "delivered");
    let undelivered = env.message(bad["id"].as_i64().unwrap()).await;
    assert_eq!(undelivered["status"], "undelivered");
    assert_eq!(undelivered["errorCode"], 30006);
    assert_eq!(
        undelivered["errorMessage"],
        "landline or unreachable carrier"
    );
    // A callback without a valid signature changes nothing.
    let forged = env
        .http
        .post(format!("{}/twilio/sms/status", env.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", "bm9wZQ==")
        .body(format!(
            "MessageSid={}&MessageStatus=read",
            delivered["messageSid"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let stats: Value = env
        .http
        .get(format!("{}/api/messages/stats", env.base))
        .bearer_auth(BEARER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["stats"]["delivered24h"], 1, "{stats}");
    assert_eq!(stats["stats"]["failed24h"], 1, "{stats}");
    assert_eq!(stats["stats"]["queueDepth"], 0, "{stats}");
    assert_eq!(
        stats["stats"]["lastSentAt"], "2026-12-04T13:00:00.000Z",
        "{stats}"
    );
}

#[tokio::test]
async fn the_queue_survives_a_restart_and_a_killed_senders_claim() {
    let first = start(|c, _| {
        c.messaging.quiet_hours.enabled = false;
        c.messaging.send = false;
    })
    .await;
    let mut ids = Vec::new();
    for body in ["one", "two"] {
        let (status, answer) = first.send(json!({"to": LONDON, "body": body})).await;
        assert_eq!(status, 202);
        ids.push(answer["id"].as_i64().unwrap());
    }
    // A sender that claimed "one" and was killed before it could send it.
    let claimed = first
        .state
        .store()
        .claim_messages(FROM, "killed", T0, 60_000, 1)
        .await
        .unwrap();
    assert_eq!(claimed[0].id, ids[0]);
    let dir = Arc::clone(&first.dir);
    drop(first);

    let second = start_in(dir, |c, _| c.messaging.quiet_hours.enabled = false).await;
    let two = second
        .wait_message(ids[1], |m| m["messageSid"].is_string())
        .await;
    assert_eq!(two["attempts"], 1);
    // "one" belongs to the dead sender until its lease runs out.
    assert!(
        !second
            .sim
            .wait_until(Duration::from_millis(300), |s| s.accepted().len() > 1)
            .await
    );
    assert_eq!(second.message(ids[0]).await["status"], "claimed");
    second.clock.advance(60_001);
    let one = second
        .wait_message(ids[0], |m| m["messageSid"].is_string())
        .await;
    assert_eq!(one["attempts"], 2);
    assert_eq!(second.sim.accepted().len(), 2);
}

#[tokio::test]
async fn whatsapp_free_form_inside_the_window_templates_outside_it() {
    const WA_FROM: &str = "whatsapp:+14155550199";
    const TEMPLATE: &str = "HX0123456789abcdef0123456789abcdef";
    let to = format!("whatsapp:{LONDON}");
    let env = start(|c, _| {
        c.messaging.quiet_hours.enabled = false;
        WA_FROM.clone_into(&mut c.messaging.whatsapp_from);
    })
    .await;

    // Nobody wrote: free-form is refused, an approved template goes out (ContentSid, no Body).
    let (status, body) = env.send(json!({"to": to, "body": "Hi Ada"})).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(63016)),
        "{body}"
    );
    let (status, body) = env
        .send(json!({
            "to": to, "contentSid": TEMPLATE, "contentVariables": {"1": "Ada", "2": 3},
        }))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["channel"], "whatsapp");
    assert_eq!(body["from"], WA_FROM);
    assert_eq!(body["contentSid"], TEMPLATE);
    assert!(
        body["segments"].is_null() && body["encoding"].is_null(),
        "{body}"
    );
    let id = body["id"].as_i64().unwrap();
    let sent = env.wait_message(id, |m| m["messageSid"].is_string()).await;
    assert_eq!(sent["contentSid"], TEMPLATE);
    assert_eq!(sent["contentVariables"], json!({"1": "Ada", "2": "3"}));
    let attempt = env.sim.accepted().into_iter().find(|a| a.to == to).unwrap();
    let param = |name: &str| {
        attempt
            .params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(param("ContentSid").as_deref(), Some(TEMPLATE));
    let variables: Value = serde_json::from_str(&param("ContentVariables").unwrap()).unwrap();
    assert_eq!(variables, json!({"1": "Ada", "2": "3"}));
    assert_eq!(param("Body"), None, "a template is sent without a Body");
    assert_eq!(param("From").as_deref(), Some(WA_FROM));

    // The candidate writes back: the 24-hour session window opens for free-form replies.
    let (status, _) = env
        .sim
        .send_inbound(
            &format!("{}/twilio/sms/inbound", env.base),
            &to,
            WA_FROM,
            "Yes, 3 pm works",
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, body) = env.send(json!({"to": to, "body": "See you then"})).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_i64().unwrap();
    env.wait_message(id, |m| m["messageSid"].is_string()).await;
    let free_form = env
        .sim
        .accepted()
        .into_iter()
        .rfind(|a| a.to == to)
        .unwrap();
    assert!(
        free_form
            .params
            .iter()
            .any(|(k, v)| k == "Body" && v == "See you then")
    );

    // 24 hours after the candidate's message the window is closed again.
    env.clock.advance(24 * 3_600_000 + 1);
    let (status, body) = env.send(json!({"to": to, "body": "Still there?"})).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(63016)),
        "{body}"
    );
}

#[tokio::test]
async fn malformed_templates_carry_twilios_codes() {
    const TEMPLATE: &str = "HX0123456789abcdef0123456789abcdef";
    let to = format!("whatsapp:{LONDON}");
    let env = start(|c, _| {
        "whatsapp:+14155550199".clone_into(&mut c.messaging.whatsapp_from);
    })
    .await;
    for (request, code, field) in [
        (
            json!({"to": to, "contentSid": "HX123"}),
            21655,
            "contentSid",
        ),
        (
            json!({"to": to, "contentVariables": {"1": "Ada"}, "body": "x"}),
            21654,
            "contentVariables",
        ),
        (
            json!({"to": to, "contentSid": TEMPLATE, "contentVariables": ["Ada"]}),
            21656,
            "contentVariables",
        ),
        (
            json!({"to": to, "contentSid": TEMPLATE, "body": "both"}),
            21602,
            "body",
        ),
    ] {
        let (status, body) = env.send(request.clone()).await;
        assert_eq!(status, 400, "{request}: {body}");
        assert_eq!(body["code"].as_u64(), Some(code), "{request}: {body}");
        assert!(body["errors"][field].is_string(), "{request}: {body}");
    }
    assert!(env.sim.attempts().is_empty(), "nothing reached Twilio");
}
