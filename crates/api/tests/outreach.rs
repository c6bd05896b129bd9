//! Calling hours for screening calls over real sockets: the API on 127.0.0.1 with a temp SQLite
//! file and a virtual clock, Twilio's REST stand-in counting the calls placed. A screening
//! requested outside the candidate's local window is stored `scheduled` (no call), placed when
//! the window opens, moved on when it is found due with the window shut, and the scheduled calls
//! that come due together go out at `api.calls_per_second`.

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use voxbridge_api::outreach::place_due_once;

use common::{Harness, start};

/// 2023-11-14T22:13:20Z, a Tuesday: 14:13 in San Francisco, 22:13 in London, 23:13 in Paris.
const NOW: &str = "2023-11-14T22:13:20.000Z";
const SF: &str = "+14158675309";
const LONDON: &str = "+442071234567";
const PARIS: &str = "+33142685300";
const HOUR_MS: i64 = 3_600_000;

fn candidate(id: &str, phone: &str) -> Value {
    json!({"candidateId": id, "firstName": "Ada", "phone": phone, "jobTitle": "Welder"})
}

/// The numbers Twilio was asked to call, in order.
fn called(h: &Harness) -> Vec<String> {
    h.fake
        .creates
        .lock()
        .unwrap()
        .iter()
        .filter_map(|form| form.iter().find(|(k, _)| k == "To").map(|(_, v)| v.clone()))
        .collect()
}

async fn create_keyed(h: &Harness, body: &Value, key: &str) -> (u16, Value, Option<String>) {
    let response = h
        .http
        .post(format!("{}/api/screenings", h.base))
        .bearer_auth(common::BEARER)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap(), replayed)
}

#[tokio::test]
async fn a_call_outside_calling_hours_waits_for_the_candidates_morning() {
    let h = start(|_| {}).await;
    assert_eq!(voxbridge_store::rfc3339(common::T0), NOW);

    // San Francisco is inside 09:00-20:00: the call is placed at once.
    let (status, body) = h.create_screening(&candidate("c-sf", SF)).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["callSid"].is_string(), "{body}");
    assert_eq!(body["screening"]["state"], "calling");
    assert!(body["screening"]["scheduledFor"].is_null());

    // London is at 22:13: scheduled for 09:00 London time the next morning, nothing placed.
    let (status, body, replayed) = create_keyed(&h, &candidate("c-uk", LONDON), "uk-1").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(replayed, None);
    assert!(body["callSid"].is_null(), "{body}");
    assert_eq!(body["screening"]["state"], "scheduled");
    assert_eq!(
        body["screening"]["scheduledFor"],
        "2023-11-15T09:00:00.000Z"
    );
    assert_eq!(
        body["message"],
        "Screening call for Ada scheduled for 2023-11-15T09:00:00.000Z (their local calling hours)"
    );
    let id = body["id"].as_i64().unwrap();
    assert_eq!(called(&h), [SF]);
    // A retried request gets the same scheduled screening, and no second one.
    let (status, again, replayed) = create_keyed(&h, &candidate("c-uk", LONDON), "uk-1").await;
    assert_eq!(
        (status, replayed.as_deref()),
        (201, Some("true")),
        "{again}"
    );
    assert_eq!(again["id"], id);
    let (_, listed) = h.api_get("/api/screenings?state=scheduled").await;
    assert_eq!(listed["total"], 1, "{listed}");

    // Another one, canceled while it waits: never placed.
    let (status, other) = h.create_screening(&candidate("c-uk-2", LONDON)).await;
    assert_eq!(status, 201, "{other}");
    let canceled = h
        .http
        .post(format!("{}/api/screenings/{}/cancel", h.base, other["id"]))
        .bearer_auth(common::BEARER)
        .send()
        .await
        .unwrap();
    assert_eq!(canceled.status(), 200);

    // Not yet due.
    assert_eq!(place_due_once(&h.state).await.unwrap(), 0);
    h.clock.advance(10 * HOUR_MS + 46 * 60_000 + 39_000); // 08:59:59 in London
    assert_eq!(place_due_once(&h.state).await.unwrap(), 0);
    assert_eq!(called(&h), [SF]);

    // 09:00 in London: placed, linked, and the screening follows its call from there.
    h.clock.advance(1_000);
    assert_eq!(place_due_once(&h.state).await.unwrap(), 1);
    assert_eq!(called(&h), [SF, LONDON]);
    let (_, detail) = h.api_get(&format!("/api/screenings/{id}")).await;
    let screening = &detail["screening"];
    assert_eq!(screening["state"], "calling", "{detail}");
    assert!(screening["callSid"].is_string());
    assert_eq!(screening["scheduledFor"], "2023-11-15T09:00:00.000Z");
    // Placed once: a second pass finds nothing due.
    assert_eq!(place_due_once(&h.state).await.unwrap(), 0);
    assert_eq!(called(&h).len(), 2);
}

#[tokio::test]
async fn sundays_are_skipped_and_a_late_find_waits_for_the_next_opening() {
    let h = start(|_| {}).await;
    // Saturday 2023-11-18 19:30 UTC is 20:30 in Paris: the window has shut and Sunday is not a
    // calling day, so Monday 09:00 in Paris (08:00 UTC).
    h.clock
        .advance(3 * 24 * HOUR_MS + 21 * HOUR_MS + 16 * 60_000 + 40_000);
    let (status, body) = h.create_screening(&candidate("c-fr", PARIS)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["screening"]["scheduledFor"], "2023-11-20T08:00:00.000Z",
        "{body}"
    );
    let id = body["id"].as_i64().unwrap();

    // The service was down all Monday: found due at 21:00 in Paris, it moves to Tuesday 09:00
    // rather than ringing the candidate at night.
    h.clock.advance(2 * 24 * HOUR_MS + 30 * 60_000); // Monday 20:00 UTC, 21:00 in Paris
    assert_eq!(place_due_once(&h.state).await.unwrap(), 0);
    assert!(called(&h).is_empty());
    let (_, detail) = h.api_get(&format!("/api/screenings/{id}")).await;
    assert_eq!(detail["screening"]["state"], "scheduled");
    assert_eq!(
        detail["screening"]["scheduledFor"],
        "2023-11-21T08:00:00.000Z"
    );
    h.clock.advance(12 * HOUR_MS);
    assert_eq!(place_due_once(&h.state).await.unwrap(), 1);
    assert_eq!(called(&h), [PARIS]);
}

#[tokio::test]
async fn calls_that_come_due_together_go_out_at_the_account_rate() {
    const CALLS: usize = 5;
    let h = start(|c| c.calls_per_second = 4).await;
    for n in 0..CALLS {
        let (status, body) = h
            .create_screening(&candidate(&format!("c-{n}"), LONDON))
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["screening"]["state"], "scheduled");
    }
    h.clock.advance(11 * HOUR_MS); // 09:13 in London: all five are due
    let started = Instant::now();
    assert_eq!(place_due_once(&h.state).await.unwrap(), CALLS);
    let took = started.elapsed();
    assert_eq!(called(&h).len(), CALLS);
    // Four gaps of 1/4 s between five calls: at least 1 s, and not much more.
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_millis(1_500), "{took:?}");
}

#[tokio::test]
async fn calling_hours_can_be_turned_off_and_checked() {
    let h = start(|c| c.calling_hours.enabled = false).await;
    let (status, body) = h.create_screening(&candidate("c-uk", LONDON)).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["callSid"].is_string(), "{body}");

    let mut config = common::base_config();
    config.calling_hours.days = vec!["mon".to_owned(), "funday".to_owned()];
    let error = config.validate().unwrap_err();
    assert_eq!(error.key, "calling_hours.days");
    let mut config = common::base_config();
    config.calling_hours.start = "9am".to_owned();
    assert_eq!(config.validate().unwrap_err().key, "calling_hours.start");
    let mut config = common::base_config();
    config.calls_per_second = 0;
    assert_eq!(config.validate().unwrap_err().key, "calls_per_second");
}

/// Retries on (3 calls, 2 hours apart), the follow-up SMS on, results queued for the ATS.
fn with_retries(config: &mut voxbridge_api::ApiConfig) {
    config.retries.max_attempts = 3;
    config.retries.spacing = Duration::from_secs(2 * 3600);
    "http://127.0.0.1:9/ats".clone_into(&mut config.webhooks.url);
    config.webhooks.secret = voxbridge_api::Secret::new("whsec-test");
}

async fn call_status(h: &Harness, call_sid: &str, status: &str) {
    let r = h
        .webhook(
            "/twilio/voice/status",
            &common::status_params(call_sid, status, "3"),
        )
        .await;
    assert_eq!(r.status(), 204, "{status}");
}

/// A text from `from` to our number; returns the TwiML answered.
async fn text_in(h: &Harness, sid: &str, from: &str, body: &str) -> String {
    let r = h
        .webhook(
            "/twilio/sms/inbound",
            &[
                ("AccountSid", common::ACCOUNT),
                ("MessageSid", sid),
                ("From", from),
                ("To", common::FROM),
                ("Body", body),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// One pass of the follow-ups: how many were queued.
async fn follow_ups(h: &Harness) -> usize {
    voxbridge_api::outreach::send_follow_ups_once(&h.state)
        .await
        .unwrap()
}

async fn screening(h: &Harness, id: i64) -> Value {
    let (status, detail) = h.api_get(&format!("/api/screenings/{id}")).await;
    assert_eq!(status, 200, "{detail}");
    detail
}

async fn deliveries(h: &Harness, id: i64) -> i64 {
    h.state
        .store()
        .list_webhook_deliveries(None, Some(id), 10, 0)
        .await
        .unwrap()
        .1
}

#[tokio::test]
async fn a_missed_call_is_retried_with_a_follow_up_and_the_reply_picks_the_time() {
    let h = start(with_retries).await;
    // 14:13 in San Francisco: called at once.
    let (status, body) = h.create_screening(&candidate("c-retry", SF)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().unwrap();
    let first = body["callSid"].as_str().unwrap().to_owned();
    assert_eq!(body["screening"]["maxAttempts"], 3);

    // No answer: the next call in two hours, the follow-up due, nothing sent to the ATS yet.
    call_status(&h, &first, "no-answer").await;
    let detail = screening(&h, id).await;
    let s = &detail["screening"];
    assert_eq!(s["state"], "scheduled", "{detail}");
    assert_eq!(s["attempt"], 2);
    assert_eq!(s["scheduledFor"], "2023-11-15T00:13:20.000Z");
    assert_eq!(s["followUp"], "due");
    assert!(s["callSid"].is_null());
    assert_eq!(detail["attempts"][0]["callSid"], first.as_str());
    assert_eq!(detail["attempts"][0]["state"], "no_answer");
    assert_eq!(deliveries(&h, id).await, 0);

    // The follow-up is queued once, to the candidate, personalised.
    assert_eq!(follow_ups(&h).await, 1);
    assert_eq!(follow_ups(&h).await, 0);
    let thread = h.state.store().message_thread(SF, 10).await.unwrap();
    assert_eq!(thread.len(), 1);
    assert!(
        thread[0]
            .body
            .starts_with("Hi Ada, we just tried to call you about your application for Welder."),
        "{}",
        thread[0].body
    );
    assert_eq!(screening(&h, id).await["screening"]["followUp"], "sent");

    // A reply that names no time changes nothing and says how to answer.
    let twiml = text_in(&h, "SM00000000000000000000000000000001", SF, "who is this?").await;
    assert!(twiml.contains("Sorry, we did not catch a time."), "{twiml}");
    // "tomorrow 10am" in the candidate's zone: 10:00 PST is 18:00 UTC.
    let twiml = text_in(
        &h,
        "SM00000000000000000000000000000002",
        SF,
        "Tomorrow 10am",
    )
    .await;
    assert!(
        twiml.contains("Thanks Ada, we will call you tomorrow at 10:00 AM."),
        "{twiml}"
    );
    let s = screening(&h, id).await["screening"].clone();
    assert_eq!(s["scheduledFor"], "2023-11-15T18:00:00.000Z", "{s}");
    // Both replies are in the candidate's thread, each with our answer.
    let thread = h.state.store().message_thread(SF, 10).await.unwrap();
    let said: Vec<(&str, &str)> = thread
        .iter()
        .map(|m| (m.direction.as_str(), m.status.as_str()))
        .collect();
    assert_eq!(
        said,
        [
            ("outbound", "scheduled"),
            ("inbound", "received"),
            ("outbound", "replied"),
            ("inbound", "received"),
            ("outbound", "replied"),
        ]
    );
    assert!(
        thread[4].body.starts_with("Thanks Ada"),
        "{}",
        thread[4].body
    );

    // Not before then; at 10:00 the second call goes out.
    h.clock.advance(2 * HOUR_MS);
    assert_eq!(place_due_once(&h.state).await.unwrap(), 0);
    h.clock.advance(17 * HOUR_MS + 46 * 60_000 + 40_000);
    assert_eq!(place_due_once(&h.state).await.unwrap(), 1);
    assert_eq!(called(&h), [SF, SF]);
    let s = screening(&h, id).await["screening"].clone();
    assert_eq!(
        (s["state"].as_str(), s["attempt"].as_i64()),
        (Some("calling"), Some(2))
    );
    let second = s["callSid"].as_str().unwrap().to_owned();
    assert_ne!(second, first);

    // Busy: a third call is scheduled, and no second follow-up.
    call_status(&h, &second, "busy").await;
    assert_eq!(screening(&h, id).await["screening"]["attempt"], 3);
    assert_eq!(follow_ups(&h).await, 0);
    // CALL asks for it now (inside the calling hours).
    let twiml = text_in(&h, "SM00000000000000000000000000000003", SF, "CALL").await;
    assert!(twiml.contains("in the next few minutes"), "{twiml}");
    assert_eq!(place_due_once(&h.state).await.unwrap(), 1);
    let third = screening(&h, id).await["screening"]["callSid"]
        .as_str()
        .unwrap()
        .to_owned();

    // The last call is missed too: ended for good, one result for the ATS.
    call_status(&h, &third, "no-answer").await;
    let detail = screening(&h, id).await;
    assert_eq!(detail["screening"]["state"], "no_answer", "{detail}");
    assert_eq!(detail["screening"]["callSid"], third.as_str());
    assert_eq!(detail["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(deliveries(&h, id).await, 1);
    // No longer waiting for a reply.
    let twiml = text_in(&h, "SM00000000000000000000000000000004", SF, "3pm").await;
    assert!(!twiml.contains("Thanks"), "{twiml}");
}

#[tokio::test]
async fn stop_ends_outreach_and_no_follow_up_goes_out() {
    let h = start(with_retries).await;
    let (_, body) = h.create_screening(&candidate("c-stop", SF)).await;
    let id = body["id"].as_i64().unwrap();
    call_status(&h, body["callSid"].as_str().unwrap(), "no-answer").await;
    assert_eq!(screening(&h, id).await["screening"]["state"], "scheduled");

    text_in(&h, "SM00000000000000000000000000000011", SF, "STOP").await;
    let s = screening(&h, id).await["screening"].clone();
    assert_eq!(s["state"], "canceled", "{s}");
    assert_eq!(s["error"], "the candidate opted out");
    assert_eq!(deliveries(&h, id).await, 1, "the ATS hears it ended");
    // The follow-up that was due is skipped, and no call is placed.
    assert_eq!(follow_ups(&h).await, 0);
    assert_eq!(screening(&h, id).await["screening"]["followUp"], "skipped");
    h.clock.advance(3 * HOUR_MS);
    assert_eq!(place_due_once(&h.state).await.unwrap(), 0);
    assert_eq!(called(&h), [SF]);
    // Only the STOP itself is in the thread.
    assert_eq!(
        h.state.store().message_thread(SF, 10).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn retries_can_be_turned_off_and_bad_values_name_their_key() {
    let h = start(|c| {
        with_retries(c);
        c.retries.max_attempts = 1;
    })
    .await;
    let (_, body) = h.create_screening(&candidate("c-once", SF)).await;
    let id = body["id"].as_i64().unwrap();
    call_status(&h, body["callSid"].as_str().unwrap(), "busy").await;
    let s = screening(&h, id).await["screening"].clone();
    assert_eq!(
        (s["state"].as_str(), s["followUp"].is_null()),
        (Some("no_answer"), true)
    );
    assert_eq!(deliveries(&h, id).await, 1);

    let mut config = common::base_config();
    config.retries.max_attempts = 0;
    assert_eq!(config.validate().unwrap_err().key, "retries.max_attempts");
    let mut config = common::base_config();
    config.retries.spacing = Duration::from_secs(5);
    assert_eq!(config.validate().unwrap_err().key, "retries.spacing_ms");
}

async fn launch(h: &Harness, content_type: &str, query: &str, body: &str) -> (u16, Value) {
    let response = h
        .http
        .post(format!("{}/api/campaigns{query}", h.base))
        .bearer_auth(common::BEARER)
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_campaign_across_time_zones_calls_each_candidate_in_their_hours() {
    let h = start(with_retries).await;
    // Every bad row is named and nothing is launched.
    let (status, refused) = launch(
        &h,
        "text/csv",
        "?name=Welders",
        "candidateId,firstName,phone,jobTitle\nw1,Ann,+14158675309,Welder\nw2,,+1415,Welder\n",
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["rows"][0]["row"], 3, "the CSV line");
    assert!(refused["rows"][0]["errors"]["firstName"].is_string());
    assert!(refused["rows"][0]["errors"]["phone"].is_string());
    let (_, none) = h.api_get("/api/screenings").await;
    assert_eq!(none["total"], 0);

    // 22:13 UTC: 14:13 in San Francisco, 22:13 in London, 23:13 in Paris.
    let csv = format!(
        "Candidate ID,First Name,Phone\nw-sf,Ann,{SF}\nw-uk,\"Bo, Jr\",{LONDON}\nw-fr,Cy,{PARIS}\n"
    );
    let (status, created) = launch(
        &h,
        "text/csv",
        "?name=Welders%20December&jobTitle=Welder",
        &csv,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["campaign"]["id"].as_i64().unwrap();
    let progress = &created["campaign"]["progress"];
    assert_eq!(
        (
            progress["total"].as_i64(),
            progress["queued"].as_i64(),
            progress["scheduled"].as_i64()
        ),
        (Some(3), Some(1), Some(2)),
        "{created}"
    );
    // Sent again: everyone is already being screened.
    let (status, again) = launch(
        &h,
        "text/csv",
        "?name=Welders%20December&jobTitle=Welder",
        &csv,
    )
    .await;
    assert_eq!(status, 409, "{again}");

    // San Francisco now; Paris at its 09:00 (08:00 UTC), London at its 09:00 (09:00 UTC).
    assert_eq!(place_due_once(&h.state).await.unwrap(), 1);
    assert_eq!(called(&h), [SF]);
    h.clock.advance(9 * HOUR_MS + 46 * 60_000 + 40_000); // 08:00 UTC
    assert_eq!(place_due_once(&h.state).await.unwrap(), 1);
    assert_eq!(called(&h), [SF, PARIS]);
    h.clock.advance(HOUR_MS);
    assert_eq!(place_due_once(&h.state).await.unwrap(), 1);
    assert_eq!(called(&h), [SF, PARIS, LONDON]);

    // Progress follows the calls: the San Francisco call was missed (retrying), the others ring.
    let (_, sf) = h.api_get("/api/screenings?candidateId=w-sf").await;
    let sf_call = sf["screenings"][0]["callSid"].as_str().unwrap().to_owned();
    call_status(&h, &sf_call, "no-answer").await;
    let (status, detail) = h.api_get(&format!("/api/campaigns/{id}")).await;
    assert_eq!(status, 200, "{detail}");
    let progress = &detail["campaign"]["progress"];
    assert_eq!(
        (
            progress["calling"].as_i64(),
            progress["retrying"].as_i64(),
            progress["done"].as_i64()
        ),
        (Some(2), Some(1), Some(0)),
        "{detail}"
    );
    let (_, list) = h.api_get("/api/campaigns").await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["campaigns"][0]["name"], "Welders December");
    let (_, screenings) = h.api_get("/api/screenings?candidateId=w-uk").await;
    assert_eq!(screenings["screenings"][0]["firstName"], "Bo, Jr");
    assert_eq!(screenings["screenings"][0]["campaignId"], id);

    // JSON works too.
    let (status, created) = launch(
        &h,
        "application/json",
        "",
        &json!({"name": "Nurses", "jobTitle": "Nurse", "candidates": [
            {"candidateId": "n-1", "firstName": "Di", "phone": SF},
        ]})
        .to_string(),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["campaign"]["total"], 1);
}
