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
