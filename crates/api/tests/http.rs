//! End to end over real HTTP: the API, a stand-in for Twilio's REST API, webhooks signed as
//! Twilio signs them, a real SQLite file, and (where noted) a real redis-server.

#![allow(clippy::too_many_lines, clippy::similar_names)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{BROKEN_TO, FLAKY_TO, FROM, INVALID_TO, start, status_params};
use serde_json::json;
use voxbridge_api::{ConnectMode, InboundMode, LimiterBackend};
use voxbridge_store::{Store, StoreConfig};
use voxbridge_twilio::signature::json_webhook_url;

fn candidate(phone: &str) -> serde_json::Value {
    json!({"candidateId": "cand-42", "firstName": "Ada", "phone": phone, "jobTitle": "Backend Engineer"})
}

#[tokio::test]
async fn screening_call_end_to_end_through_twilio_and_webhooks() {
    let h = start(|_| {}).await;
    let (status, body) = h.create_screening(&candidate("+1 (415) 867-5309")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Screening call initiated for Ada");
    let call_sid = body["callSid"].as_str().unwrap().to_owned();
    assert!(call_sid.starts_with("CA"));

    // What Twilio received.
    let creates = h.fake.creates.lock().unwrap().clone();
    assert_eq!(creates.len(), 1);
    let form = &creates[0];
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("To"), Some("+14158675309"));
    assert_eq!(get("From"), Some(FROM));
    assert_eq!(
        get("Url"),
        Some(format!("{}/twilio/voice/answer", h.base).as_str())
    );
    assert_eq!(
        get("StatusCallback"),
        Some(format!("{}/twilio/voice/status", h.base).as_str())
    );
    let events: Vec<_> = form
        .iter()
        .filter(|(k, _)| k == "StatusCallbackEvent")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(events, ["initiated", "ringing", "answered", "completed"]);
    assert_eq!(get("MachineDetection"), Some("DetectMessageEnd"));
    assert_eq!(get("AsyncAmd"), Some("true"));
    assert_eq!(
        get("AsyncAmdStatusCallback"),
        Some(format!("{}/twilio/voice/amd", h.base).as_str())
    );
    assert_eq!(get("Record"), None, "recording is off by default");

    // Twilio fetches the answer TwiML.
    let answer = h
        .webhook(
            "/twilio/voice/answer",
            &[
                ("AccountSid", common::ACCOUNT),
                ("CallSid", &call_sid),
                ("CallStatus", "in-progress"),
                ("From", FROM),
                ("To", "+14158675309"),
            ],
        )
        .await;
    assert_eq!(answer.status(), 200);
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    let xml = answer.text().await.unwrap();
    assert!(
        xml.contains(r#"<ConversationRelay url="wss://media.example.com/relay""#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<Parameter name="candidateId" value="cand-42"/>"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<Parameter name="firstName" value="Ada"/>"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<Parameter name="jobTitle" value="Backend Engineer"/>"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<Parameter name="screening" value="default"/>"#),
        "{xml}"
    );
    assert!(
        xml.contains(&format!(
            r#"<Parameter name="callSid" value="{call_sid}"/>"#
        )),
        "{xml}"
    );

    // Status callbacks out of order: completed (3) before ringing (1) and answered (2).
    for (status, seq) in [
        ("initiated", "0"),
        ("completed", "3"),
        ("ringing", "1"),
        ("in-progress", "2"),
    ] {
        let mut params = status_params(&call_sid, status, seq);
        if status == "completed" {
            params.push(("CallDuration", "61"));
        }
        let r = h.webhook("/twilio/voice/status", &params).await;
        assert_eq!(r.status(), 204, "{status}");
    }
    // A retried callback is accepted again (idempotent).
    let r = h
        .webhook(
            "/twilio/voice/status",
            &status_params(&call_sid, "ringing", "1"),
        )
        .await;
    assert_eq!(r.status(), 204);
    let amd = h
        .webhook(
            "/twilio/voice/amd",
            &[
                ("AccountSid", common::ACCOUNT),
                ("CallSid", &call_sid),
                ("AnsweredBy", "human"),
                ("MachineDetectionDuration", "2100"),
            ],
        )
        .await;
    assert_eq!(amd.status(), 204);
    let rec = h
        .webhook(
            "/twilio/voice/recording",
            &[
                ("AccountSid", common::ACCOUNT),
                ("CallSid", &call_sid),
                ("RecordingSid", "RE0123456789abcdef0123456789abcdef"),
                ("RecordingStatus", "completed"),
                (
                    "RecordingUrl",
                    "https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE1",
                ),
                ("RecordingDuration", "58"),
            ],
        )
        .await;
    assert_eq!(rec.status(), 204);
    let relay = h
        .webhook(
            "/twilio/relay/action",
            &[
                ("AccountSid", common::ACCOUNT),
                ("CallSid", &call_sid),
                ("SessionId", "VX0123456789abcdef0123456789abcdef"),
                ("SessionStatus", "ended"),
                ("HandoffData", r#"{"reasonCode":"screening-complete"}"#),
            ],
        )
        .await;
    assert_eq!(relay.status(), 200);
    assert!(relay.text().await.unwrap().contains("<Hangup/>"));

    let (status, detail) = h.api_get(&format!("/api/calls/{call_sid}")).await;
    assert_eq!(status, 200, "{detail}");
    let call = &detail["call"]["call"];
    assert_eq!(
        call["status"], "completed",
        "a late status never goes back: {detail}"
    );
    assert_eq!(call["durationSeconds"], 61);
    assert_eq!(call["answeredBy"], "human");
    assert_eq!(call["amdDurationMs"], 2100);
    assert_eq!(call["recordingStatus"], "completed");
    assert!(
        call["recordingUrl"]
            .as_str()
            .unwrap()
            .contains("Recordings/RE1")
    );
    assert_eq!(call["relaySessionStatus"], "ended");
    assert_eq!(call["candidateId"], "cand-42");
    let timeline = detail["call"]["timeline"].as_array().unwrap();
    let statuses: Vec<_> = timeline
        .iter()
        .filter(|e| e["kind"] == "status")
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["initiated", "ringing", "in-progress", "completed"],
        "timeline in Twilio's order, no duplicates"
    );
    assert_eq!(detail["call"]["screening"]["firstName"], "Ada");
    // One JSON shape: nested JSON, RFC 3339 times in UTC.
    assert_eq!(
        call["handoffData"],
        json!({"reasonCode": "screening-complete"}),
        "nested, not JSON in a string"
    );
    assert_eq!(call["createdAt"], "2023-11-14T22:13:20.000Z");
    assert_eq!(
        detail["call"]["screening"]["createdAt"],
        "2023-11-14T22:13:20.000Z"
    );
    assert_eq!(timeline[0]["receivedAt"], "2023-11-14T22:13:20.000Z");
    assert_eq!(
        timeline[0]["eventAt"], "2023-11-14T22:13:20.000Z",
        "Twilio's Timestamp"
    );

    let (status, list) = h
        .api_get("/api/calls?status=completed&candidateId=cand-42&limit=10")
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 1);
    assert_eq!(list["calls"][0]["callSid"], call_sid.as_str());
    let (_, none) = h.api_get("/api/calls?status=busy").await;
    assert_eq!(none["total"], 0);
    let (status, _) = h.api_get("/api/calls?limit=-1").await;
    assert_eq!(status, 400);
    let (status, _) = h
        .api_get("/api/calls/CA0000000000000000000000000000dead")
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn screening_requests_are_validated_per_field_and_authenticated() {
    let h = start(|_| {}).await;
    let (status, body) = h
        .create_screening(&json!({"candidateId": "c1", "phone": "4158675309", "jobTitle": "", "screening": "sales"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["success"], false);
    let errors = body["errors"].as_object().unwrap();
    assert!(errors.contains_key("firstName") && errors.contains_key("phone"));
    assert!(errors.contains_key("jobTitle") && errors.contains_key("screening"));
    assert!(body["error"].as_str().unwrap().contains("phone"));

    let raw = h
        .http
        .post(format!("{}/api/screenings", h.base))
        .bearer_auth(common::BEARER)
        .header("content-type", "application/json")
        .body("{\"candidateId\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("malformed JSON"),
        "{body}"
    );

    let unauth = h
        .http
        .post(format!("{}/api/screenings", h.base))
        .json(&candidate("+14158675309"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401);
    let wrong = h
        .http
        .get(format!("{}/api/calls", h.base))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(
        h.fake.creates.lock().unwrap().is_empty(),
        "nothing was dialled"
    );
}

#[tokio::test]
async fn twilio_errors_reach_the_caller_and_5xx_are_retried() {
    let h = start(|_| {}).await;
    let (status, body) = h.create_screening(&candidate(INVALID_TO)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(
        body["error"],
        format!("The 'To' number {INVALID_TO} is not a valid phone number.")
    );
    assert_eq!(body["twilioError"]["code"], 21211);
    assert_eq!(
        body["twilioError"]["more_info"],
        "https://www.twilio.com/docs/errors/21211"
    );
    assert_eq!(body["twilioError"]["status"], 400);
    assert_eq!(*h.fake.attempts.lock().unwrap(), 1, "4xx is not retried");

    let (status, body) = h.create_screening(&candidate(FLAKY_TO)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        *h.fake.attempts.lock().unwrap(),
        4,
        "two 503s retried, then created"
    );

    // Bad credentials are our problem, not the caller's: 502.
    let h = start(|c| c.twilio.auth_token = voxbridge_api::Secret::new("wrong")).await;
    let (status, body) = h.create_screening(&candidate("+14158675309")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["twilioError"]["code"], 20003);
}

#[tokio::test]
async fn a_candidate_is_not_called_more_than_the_daily_limit() {
    let h = start(|c| c.max_calls_per_candidate_per_day = 2).await;
    for _ in 0..2 {
        assert_eq!(h.create_screening(&candidate("+14158675309")).await.0, 201);
    }
    let (status, body) = h.create_screening(&candidate("+14158675309")).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"].as_str().unwrap().contains("cand-42"));
    let mut other = candidate("+14158675309");
    other["candidateId"] = json!("cand-43");
    assert_eq!(
        h.create_screening(&other).await.0,
        201,
        "other candidates are not affected"
    );
    h.clock.advance(24 * 3_600_000 + 1);
    assert_eq!(
        h.create_screening(&candidate("+14158675309")).await.0,
        201,
        "a day later"
    );
}

#[tokio::test]
async fn an_uncertain_create_counts_toward_the_daily_limit_and_a_refused_one_does_not() {
    let h = start(|c| c.max_calls_per_candidate_per_day = 1).await;
    // Twilio refused (4xx): no call was placed, the candidate can still be called.
    let (status, _) = h.create_screening(&candidate(INVALID_TO)).await;
    assert_eq!(status, 400);
    // 500 after every retry: the call may exist, so the attempt counts.
    let (status, body) = h.create_screening(&candidate(BROKEN_TO)).await;
    assert!(status.is_server_error(), "{status} {body}");
    assert_eq!(body["success"], false);
    let (status, body) = h.create_screening(&candidate("+14158675309")).await;
    assert_eq!(
        status, 429,
        "a retry after an unknown outcome must not ring the candidate again: {body}"
    );
    let attempts = *h.fake.attempts.lock().unwrap();
    assert_eq!(
        attempts,
        1 + 4,
        "one refused create, one create tried 1 + 3 retries"
    );
}

/// The default voicemail message names the screening's candidate and job.
/// Reports a machine for `call_sid` as async AMD does and returns the TwiML the call was
/// redirected to.
async fn voicemail_twiml(h: &common::Harness, call_sid: &str) -> String {
    let r = h
        .webhook(
            "/twilio/voice/amd",
            &[
                ("AccountSid", common::ACCOUNT),
                ("CallSid", call_sid),
                ("AnsweredBy", "machine_end_beep"),
                ("MachineDetectionDuration", "3900"),
            ],
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let found = h
            .fake
            .updates
            .lock()
            .unwrap()
            .iter()
            .find_map(|(sid, form)| {
                (sid == call_sid)
                    .then(|| {
                        form.iter()
                            .find(|(k, _)| k == "Twiml")
                            .map(|(_, v)| v.clone())
                    })
                    .flatten()
            });
        if let Some(twiml) = found {
            return twiml;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no voicemail redirect in 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_screening_scripts_own_voicemail_message_is_left() {
    let h = start(|c| {
        c.screenings = vec!["default".to_owned(), "nurse".to_owned()];
        c.voicemail_messages.insert(
            "nurse".to_owned(),
            "Hi {firstName}, this is Mercy Hospital about the {jobTitle} role.".to_owned(),
        );
    })
    .await;
    let mut nurse = candidate("+14158675309");
    nurse["screening"] = json!("nurse");
    nurse["jobTitle"] = json!("night nurse");
    let (status, body) = h.create_screening(&nurse).await;
    assert_eq!(status, 201, "{body}");
    let twiml = voicemail_twiml(&h, body["callSid"].as_str().unwrap()).await;
    assert!(
        twiml.contains(
            "<Say>Hi Ada, this is Mercy Hospital about the night nurse role.</Say><Hangup/>"
        ),
        "{twiml}"
    );
    // Other scripts keep api.voicemail_message.
    let mut other = candidate("+14158675310");
    other["candidateId"] = json!("cand-43");
    let (status, body) = h.create_screening(&other).await;
    assert_eq!(status, 201, "{body}");
    let twiml = voicemail_twiml(&h, body["callSid"].as_str().unwrap()).await;
    assert!(
        twiml.contains("<Say>Hi Ada, this is the recruiting team"),
        "{twiml}"
    );
}

#[test]
fn a_voicemail_message_for_an_unknown_screening_is_a_config_error() {
    let mut config = common::base_config();
    config
        .voicemail_messages
        .insert("nurse".to_owned(), "Hi".to_owned());
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.contains("voicemail_messages") && error.contains("\"nurse\" is not a screening id"),
        "{error}"
    );
}

#[tokio::test]
async fn the_default_voicemail_message_names_the_candidate_and_the_job() {
    let h = start(|_| {}).await;
    let (status, body) = h.create_screening(&candidate("+14158675309")).await;
    assert_eq!(status, 201, "{body}");
    let call_sid = body["callSid"].as_str().unwrap().to_owned();
    let twiml = voicemail_twiml(&h, &call_sid).await;
    assert!(
        twiml.contains(
            "<Say>Hi Ada, this is the recruiting team calling about your application for \
             Backend Engineer. We will try you again later. Goodbye.</Say><Hangup/>"
        ),
        "{twiml}"
    );
}

#[tokio::test]
async fn async_amd_machine_redirects_the_live_call_to_the_voicemail_message() {
    let h = start(|c| c.voicemail_message = "Sorry we missed you.".into()).await;
    let machine = "CA0123456789abcdef0123456789abc001";
    let human = "CA0123456789abcdef0123456789abc002";
    let ended = "CA0123456789abcdef0123456789abc003";
    // A live machine-answered call whose callback comes last: its redirect is the sign that
    // every callback before it has been handled.
    let sentinel = "CA0123456789abcdef0123456789abc004";
    let r = h
        .webhook(
            "/twilio/voice/status",
            &status_params(ended, "completed", "3"),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    // The machine callback arrives twice (a redelivery): one redirect only. A machine result
    // for a call that already ended redirects nothing.
    for (sid, answered_by) in [
        (human, "human"),
        (machine, "machine_end_beep"),
        (machine, "machine_end_beep"),
        (ended, "machine_end_silence"),
        (sentinel, "machine_start"),
    ] {
        let r = h
            .webhook(
                "/twilio/voice/amd",
                &[
                    ("AccountSid", common::ACCOUNT),
                    ("CallSid", sid),
                    ("AnsweredBy", answered_by),
                    ("MachineDetectionDuration", "4210"),
                ],
            )
            .await;
        assert!(r.status().is_success(), "{}", r.status());
    }
    // Redirects run after the 2xx, each spawned before its callback is answered. Wait for the
    // sentinel's: a redirect wrongly spawned for an earlier callback started before it on the
    // same client and runtime (current-thread: spawned tasks run in order), so it has reached
    // the stand-in by then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !h
        .fake
        .updates
        .lock()
        .unwrap()
        .iter()
        .any(|(s, _)| s == sentinel)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no redirect for the sentinel call in 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut updates = h.fake.updates.lock().unwrap().clone();
    updates.retain(|(s, _)| s != sentinel);
    assert_eq!(
        updates.len(),
        1,
        "only the machine-answered call is redirected: {updates:?}"
    );
    let (sid, form) = &updates[0];
    assert_eq!(sid, machine);
    let twiml = form
        .iter()
        .find(|(k, _)| k == "Twiml")
        .map(|(_, v)| v.as_str())
        .expect("update carries Twiml");
    assert!(
        twiml.contains("<Say>Sorry we missed you.</Say><Hangup/>"),
        "{twiml}"
    );
    // Counted once each redirect's REST call has returned: poll for the sentinel's.
    while h.state.metrics().voicemail_redirects.get() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "redirects not counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(h.state.metrics().voicemail_redirects.get(), 2);
    // Each redirect was one timed REST call.
    let metrics = h.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "voxbridge_api_twilio_rest_seconds_count{operation=\"update_call\"} 2"),
        "{metrics}"
    );
    // Both AMD results are on record.
    let (status, body) = h.api_get(&format!("/api/calls/{machine}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["call"]["call"]["answeredBy"], "machine_end_beep",
        "{body}"
    );
}

#[tokio::test]
async fn voicemail_gets_the_message_and_a_hangup_and_stream_mode_connects_a_stream() {
    let h = start(|c| {
        c.connect.mode = ConnectMode::Stream;
        c.connect.agent = "screening".into();
        c.voicemail_message = "Sorry we missed you.".into();
    })
    .await;
    let sid = "CA0123456789abcdef0123456789abcdef";
    let r = h
        .webhook(
            "/twilio/voice/answer",
            &[
                ("AccountSid", common::ACCOUNT),
                ("CallSid", sid),
                ("AnsweredBy", "machine_end_beep"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let xml = r.text().await.unwrap();
    assert!(
        xml.contains("<Say>Sorry we missed you.</Say><Hangup/>"),
        "{xml}"
    );
    let r = h
        .webhook(
            "/twilio/voice/answer",
            &[
                ("AccountSid", common::ACCOUNT),
                ("CallSid", "CA0123456789abcdef0123456789abcde0"),
                ("AnsweredBy", "human"),
            ],
        )
        .await;
    let xml = r.text().await.unwrap();
    assert!(
        xml.contains(r#"<Connect><Stream url="wss://media.example.com/media">"#),
        "{xml}"
    );
    assert!(xml.contains(r#"<Parameter name="callSid""#), "{xml}");
    // The stream asks the bridge for the screening agent.
    assert!(
        xml.contains(r#"<Parameter name="agent" value="screening"/>"#),
        "{xml}"
    );
}

async fn inbound(h: &common::Harness, sid_n: usize, from: &str) -> String {
    let sid = format!("CA{sid_n:032x}");
    let r = h
        .webhook(
            "/twilio/voice/inbound",
            &[
                ("AccountSid", common::ACCOUNT),
                ("CallSid", &sid),
                ("CallStatus", "ringing"),
                ("Direction", "inbound"),
                ("From", from),
                ("To", FROM),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

const BLOCKED: &str = "<Say>You have exceeded the maximum number of calls allowed. Please try again later.</Say><Hangup/>";

async fn inbound_limit_behaviour(h: &common::Harness) {
    let caller = "+14158675309";
    for i in 0..5 {
        let xml = inbound(h, i, caller).await;
        assert!(xml.contains("<ConversationRelay"), "call {i}: {xml}");
        h.clock.advance(60_000);
    }
    let xml = inbound(h, 5, caller).await;
    assert!(xml.contains(BLOCKED), "6th call in an hour: {xml}");
    assert!(
        inbound(h, 6, "+14155550100")
            .await
            .contains("<ConversationRelay"),
        "another number"
    );
    for i in 0..7 {
        assert!(
            inbound(h, 10 + i, "+14155550111")
                .await
                .contains("<ConversationRelay"),
            "allowlisted"
        );
    }
    let (status, stats) = h.api_get(&format!("/api/rate-limits/{caller}")).await;
    assert_eq!(status, 200);
    assert_eq!(stats["recentCount"], 5);
    assert_eq!(stats["totalAllowed"], 5);
    assert_eq!(stats["totalBlocked"], 1);
    assert_eq!(
        stats["lastAllowed"], "2023-11-14T22:17:20.000Z",
        "T0 + 4 min"
    );
    assert_eq!(stats["recent"][0], "2023-11-14T22:13:20.000Z", "T0");
    assert_eq!(stats["maxCalls"], 5);
    // The first call leaves the window one hour after it was made.
    h.clock.advance(3_600_000 - 5 * 60_000);
    assert!(
        inbound(h, 20, caller).await.contains("<ConversationRelay"),
        "window expired"
    );
    let decisions = h.state.store().rate_limit_decisions(caller).await.unwrap();
    assert_eq!(decisions.iter().filter(|d| !d.allowed).count(), 1);
    assert_eq!(decisions.len(), 7);
}

#[tokio::test]
async fn inbound_calls_are_rate_limited_in_memory() {
    let h = start(|c| c.rate_limit.allowlist = vec!["+14155550111".into()]).await;
    inbound_limit_behaviour(&h).await;
    assert_eq!(h.state.metrics().rate_limit_blocked.get(), 1);
}

#[tokio::test]
async fn inbound_calls_are_rate_limited_in_redis() {
    let Some(url) = common::redis_url("inbound_calls_are_rate_limited_in_redis") else {
        return;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let h = start(|c| {
        c.rate_limit.allowlist = vec!["+14155550111".into()];
        c.rate_limit.backend = LimiterBackend::Redis;
        c.rate_limit.redis_url = url.as_str().into();
        c.rate_limit.redis_key_prefix = format!("voxbridge-http-test:{nanos}:");
    })
    .await;
    inbound_limit_behaviour(&h).await;
    assert_eq!(h.state.metrics().rate_limit_store_failures.get(), 0);
}

/// A hung Redis (the connection opens, nothing ever answers) is not a refused one: each inbound
/// call still gets its TwiML, connected (fail open), within the limiter's timeout plus a little,
/// so Twilio's 15 s webhook timeout is never near.
#[tokio::test]
async fn inbound_fails_open_within_the_timeout_when_redis_hangs() {
    // Bound, never accepted: handshakes complete in the backlog, no byte comes back.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let timeout = std::time::Duration::from_millis(200);
    let address = hung.local_addr().unwrap();
    let h = start(move |c| {
        c.rate_limit.backend = LimiterBackend::Redis;
        c.rate_limit.redis_url = format!("redis://{address}").into();
        c.rate_limit.redis_timeout = timeout;
    })
    .await;
    for i in 0..3 {
        let started = std::time::Instant::now();
        let xml = inbound(&h, i, "+14158675309").await;
        let took = started.elapsed();
        assert!(xml.contains("<ConversationRelay"), "call {i}: {xml}");
        assert!(
            took >= timeout && took < timeout + std::time::Duration::from_millis(400),
            "call {i} answered after {took:?} (limiter timeout {timeout:?})"
        );
    }
    assert_eq!(h.state.metrics().rate_limit_store_failures.get(), 3);
    drop(hung);
}

#[tokio::test]
async fn inbound_fails_open_when_redis_is_down_and_dial_mode_forwards() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let h = start(|c| {
        c.rate_limit.backend = LimiterBackend::Redis;
        c.rate_limit.redis_url = format!("redis://127.0.0.1:{port}").into();
        c.rate_limit.redis_timeout = std::time::Duration::from_millis(200);
        c.inbound.mode = InboundMode::Dial;
        c.inbound.dial_number = "+14155550123".into();
    })
    .await;
    for i in 0..7 {
        let xml = inbound(&h, i, "+14158675309").await;
        assert!(
            xml.contains("<Dial><Number>+14155550123</Number></Dial>"),
            "{xml}"
        );
    }
    assert_eq!(h.state.metrics().rate_limit_store_failures.get(), 7);
    let response = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let metrics = response.text().await.unwrap();
    for line in [
        "# HELP voxbridge_api_rate_limit_store_failures_total Rate-limit decisions that failed open.",
        "# TYPE voxbridge_api_rate_limit_store_failures_total counter",
        "voxbridge_api_rate_limit_store_failures_total 7",
        "voxbridge_api_rate_limit_allowed_total 7",
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_resident_memory_bytes gauge",
        // Requests are timed by route pattern; the scrape itself is timed after its answer.
        "voxbridge_api_request_duration_seconds_count{route=\"/twilio/voice/inbound\"} 7",
        "# TYPE voxbridge_api_twilio_rest_seconds histogram",
        "voxbridge_api_twilio_rest_seconds_count{operation=\"create_call\"} 0",
        &format!(
            "voxbridge_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}:\n{metrics}");
    }
    // A scraper that asks for OpenMetrics (as Prometheus does) gets it.
    let response = h
        .http
        .get(format!("{}/metrics", h.base))
        .header("accept", "application/openmetrics-text;version=1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let metrics = response.text().await.unwrap();
    assert!(
        metrics.contains("\nvoxbridge_api_rate_limit_store_failures_total 7\n"),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    let (status, _) = h.api_get("/api/rate-limits/+14158675309").await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn webhooks_with_bad_signatures_are_rejected_with_403() {
    let h = start(|_| {}).await;
    let sid = "CA0123456789abcdef0123456789abcdef";
    let params = status_params(sid, "ringing", "1");
    let body = voxbridge_twilio::webhook::FormParams::from_pairs(
        params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
    .to_body();
    let url = format!("{}/twilio/voice/status", h.base);
    let post = |signature: Option<String>, body: String| {
        let mut request = h
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-twilio-signature", signature);
        }
        request.send()
    };
    assert_eq!(
        post(None, body.clone()).await.unwrap().status(),
        403,
        "missing"
    );
    assert_eq!(
        post(Some("bm9wZQ==".into()), body.clone())
            .await
            .unwrap()
            .status(),
        403,
        "wrong"
    );
    let pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let good = h.signer.sign(&url, &pairs);
    let tampered = body.replace("ringing", "completed");
    assert_eq!(
        post(Some(good.clone()), tampered).await.unwrap().status(),
        403,
        "tampered body"
    );
    let other_url = h
        .signer
        .sign("https://elsewhere.example.com/twilio/voice/status", &pairs);
    assert_eq!(
        post(Some(other_url), body.clone()).await.unwrap().status(),
        403,
        "other URL"
    );
    let other_token = voxbridge_twilio::RequestValidator::new("other").sign(&url, &pairs);
    assert_eq!(
        post(Some(other_token), body.clone())
            .await
            .unwrap()
            .status(),
        403,
        "other token"
    );
    let r = post(Some(good), body).await.unwrap();
    assert_eq!(r.status(), 204, "the genuine one passes");
    assert_eq!(h.state.metrics().signature_failures.get(), 5);
    let call = h.state.store().call(sid).await.unwrap().unwrap();
    assert_eq!(
        call.status.as_deref(),
        Some("ringing"),
        "unknown CallSids are recorded"
    );

    // JSON bodies are signed over the URL with bodySHA256.
    let json_body = serde_json::to_vec(&json!({"AccountSid": common::ACCOUNT, "CallSid": sid, "AnsweredBy": "machine_end_silence", "MachineDetectionDuration": 3000})).unwrap();
    let json_url = json_webhook_url(&format!("{}/twilio/voice/amd", h.base), &json_body);
    let signature = h.signer.sign(&json_url, &[]);
    let send_json = |body: Vec<u8>, signature: String| {
        h.http
            .post(&json_url)
            .header("content-type", "application/json")
            .header("x-twilio-signature", signature)
            .body(body)
            .send()
    };
    let mut altered = json_body.clone();
    altered.push(b' ');
    assert_eq!(
        send_json(altered, signature.clone())
            .await
            .unwrap()
            .status(),
        403,
        "body hash mismatch"
    );
    assert_eq!(send_json(json_body, signature).await.unwrap().status(), 204);
    let call = h.state.store().call(sid).await.unwrap().unwrap();
    assert_eq!(call.answered_by.as_deref(), Some("machine_end_silence"));
}

#[tokio::test]
async fn bad_input_gets_400_or_413_never_500() {
    let h = start(|c| c.body_limit_bytes = 4096).await;
    // Signed but missing required parameters.
    let r = h
        .webhook("/twilio/voice/status", &[("CallSid", "CA1")])
        .await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("AccountSid"),
        "{body}"
    );
    let r = h
        .webhook(
            "/twilio/voice/status",
            &status_params("CA1", "exploded", "1"),
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = h
        .webhook("/twilio/voice/answer", &[("CallSid", "not-a-sid")])
        .await;
    assert_eq!(r.status(), 400);
    // Signed malformed JSON.
    let body = b"{\"CallSid\": ".to_vec();
    let url = json_webhook_url(&format!("{}/twilio/voice/status", h.base), &body);
    let r = h
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("x-twilio-signature", h.signer.sign(&url, &[]))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Raw garbage and oversized bodies.
    let garbage: Vec<u8> = (0..=255u8).cycle().take(2000).collect();
    let r = h
        .http
        .post(format!("{}/twilio/voice/status", h.base))
        .body(garbage)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let big = "a=".to_owned() + &"x".repeat(10_000);
    let r = h
        .http
        .post(format!("{}/twilio/voice/status", h.base))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = h
        .http
        .post(format!("{}/api/screenings", h.base))
        .bearer_auth(common::BEARER)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = h
        .http
        .get(format!("{}/api/rate-limits/not-a-number", h.base))
        .bearer_auth(common::BEARER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_2xx_status_webhook_is_already_committed_to_the_file() {
    let h = start(|_| {}).await;
    let sids: Vec<String> = (0..20).map(|i| format!("CA{i:032x}")).collect();
    for sid in &sids {
        let r = h
            .webhook(
                "/twilio/voice/status",
                &status_params(sid, "completed", "3"),
            )
            .await;
        assert_eq!(r.status(), 204);
    }
    // Stop the server abruptly (no graceful shutdown, pools not closed), then read the file
    // through a new, independent store.
    h.server.abort();
    let reopened = Store::connect(&StoreConfig {
        database_url: h.db_url.clone().into(),
        ..StoreConfig::default()
    })
    .await
    .unwrap();
    for sid in &sids {
        let call = reopened
            .call(sid)
            .await
            .unwrap()
            .expect("row committed before the 2xx");
        assert_eq!(call.status.as_deref(), Some("completed"));
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let h = start(|_| {}).await;
    let r = h
        .http
        .get(format!("{}/healthz", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = h
        .http
        .get(format!("{}/readyz", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    h.state.store().close().await;
    let r = h
        .http
        .get(format!("{}/readyz", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "store unreachable");
    let r = h
        .webhook(
            "/twilio/voice/status",
            &status_params("CA0123456789abcdef0123456789abcdef", "ringing", "1"),
        )
        .await;
    assert_eq!(r.status(), 503, "never a 2xx without a commit");
}
