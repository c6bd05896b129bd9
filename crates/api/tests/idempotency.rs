//! `POST /api/screenings` as a resource create over real HTTP: 201 with the id and a
//! `Location`, `GET /api/screenings/{id}`, and `Idempotency-Key` (a retry returns the first
//! screening and never places a second call: counted at the stand-in for Twilio's `Calls.json`,
//! after a restart, and with requests racing on SQLite and PostgreSQL).

mod common;

use axum::http::{HeaderMap, StatusCode};
use common::{Harness, INVALID_TO, start, start_on};
use serde_json::{Value, json};

fn candidate(phone: &str) -> Value {
    json!({"candidateId": "cand-7", "firstName": "Ada", "phone": phone, "jobTitle": "Engineer"})
}

/// `POST /api/screenings` with an optional `Idempotency-Key`: status, headers, body.
async fn post(h: &Harness, key: Option<&str>, body: &Value) -> (StatusCode, HeaderMap, Value) {
    let mut request = h
        .http
        .post(format!("{}/api/screenings", h.base))
        .bearer_auth(common::BEARER)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let mut headers = HeaderMap::new();
    for (name, value) in response.headers() {
        headers.insert(
            axum::http::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
            axum::http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    (status, headers, response.json().await.unwrap())
}

fn creates(h: &Harness) -> usize {
    h.fake.creates.lock().unwrap().len()
}

#[tokio::test]
async fn a_create_answers_201_with_the_id_and_a_location_to_read_it_back() {
    let h = start(|_| {}).await;
    let (status, headers, body) = post(&h, None, &candidate("+14158675309")).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().expect("the screening id");
    assert_eq!(
        headers["location"],
        format!("/api/screenings/{id}").as_str()
    );
    assert!(headers.get("idempotent-replayed").is_none());
    assert_eq!(body["screening"]["id"], id);
    let call_sid = body["callSid"].as_str().unwrap();
    assert_eq!(body["screening"]["callSid"], call_sid);

    let (status, read) = h.api_get(&format!("/api/screenings/{id}")).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["screening"], body["screening"]);
    assert_eq!(read["screening"]["candidateId"], "cand-7");

    let (status, missing) = h.api_get(&format!("/api/screenings/{}", id + 1)).await;
    assert_eq!(status, 404, "{missing}");
    let (status, bad) = h.api_get("/api/screenings/abc").await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("positive integer"));
}

#[tokio::test]
async fn a_retried_key_returns_the_first_screening_and_places_one_call() {
    // The daily cap is 1: a replay is not a new call, so it is not refused by the cap.
    let h = start(|c| c.max_calls_per_candidate_per_day = 1).await;
    let (status, _, first) = post(&h, Some("key-1"), &candidate("+14158675309")).await;
    assert_eq!(status, 201, "{first}");
    // The same request, written differently (spacing, number format): the same screening.
    let (status, headers, again) = post(&h, Some("key-1"), &candidate("+1 415 867 5309")).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["callSid"], first["callSid"]);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(
        headers["location"],
        format!("/api/screenings/{}", first["id"]).as_str()
    );
    assert_eq!(creates(&h), 1, "exactly one call placed");

    let mut other = candidate("+14158675309");
    other["jobTitle"] = json!("Manager");
    let (status, _, refused) = post(&h, Some("key-1"), &other).await;
    assert_eq!(status, 422, "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("key-1") && error.contains("different request body"),
        "{error}"
    );
    assert_eq!(creates(&h), 1);

    let (status, _, bad) = post(&h, Some(""), &candidate("+14158675309")).await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("Idempotency-Key"));
    let long = "k".repeat(256);
    assert_eq!(
        post(&h, Some(&long), &candidate("+14158675309")).await.0,
        400
    );
}

#[tokio::test]
async fn a_key_whose_call_twilio_refused_is_not_retried_under_that_key() {
    let h = start(|_| {}).await;
    let (status, _, body) = post(&h, Some("refused"), &candidate(INVALID_TO)).await;
    assert_eq!(status, 400, "{body}");
    let (status, _, again) = post(&h, Some("refused"), &candidate(INVALID_TO)).await;
    assert_eq!(status, 409, "{again}");
    let error = again["error"].as_str().unwrap();
    assert!(
        error.contains("placed no call") && error.contains("new key"),
        "{error}"
    );
    assert_eq!(*h.fake.attempts.lock().unwrap(), 1, "Twilio asked once");
}

#[tokio::test]
async fn a_key_is_remembered_across_a_restart() {
    let first = start(|_| {}).await;
    let (status, _, created) = post(&first, Some("restart-key"), &candidate("+14158675309")).await;
    assert_eq!(status, 201, "{created}");
    first.server.abort();
    first.state.store().close().await;

    // A new process on the same SQLite file, with a Twilio stand-in that has seen nothing.
    let second = start_on(tempfile::tempdir().unwrap(), first.db_url.clone(), |_| {}).await;
    let (status, _, replayed) =
        post(&second, Some("restart-key"), &candidate("+14158675309")).await;
    assert_eq!(status, 201, "{replayed}");
    assert_eq!(replayed["id"], created["id"]);
    assert_eq!(replayed["callSid"], created["callSid"]);
    assert_eq!(creates(&second), 0, "no second call after the restart");
    assert_eq!(creates(&first), 1);
}

/// Requests with one key at once: one call; each answer is the screening (201, one id) or
/// "still placing the call" (409); a retry afterwards gets the screening.
async fn racing_requests_place_one_call(h: &Harness) {
    let body = candidate("+14158675309");
    let answers = futures::future::join_all((0..8).map(|_| post(h, Some("race-key"), &body))).await;
    assert_eq!(creates(h), 1, "one call for eight requests with one key");
    let mut ids = Vec::new();
    for (status, _, body) in &answers {
        match status.as_u16() {
            201 => ids.push(body["id"].clone()),
            409 => assert!(body["error"].as_str().unwrap().contains("still"), "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(!ids.is_empty(), "the request that placed the call got 201");
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let (status, _, retry) = post(h, Some("race-key"), &candidate("+14158675309")).await;
    assert_eq!(status, 201, "{retry}");
    assert_eq!(retry["id"], ids[0]);
    assert_eq!(creates(h), 1);
}

#[tokio::test]
async fn racing_requests_with_one_key_place_one_call_on_sqlite() {
    let h = start(|_| {}).await;
    racing_requests_place_one_call(&h).await;
}

#[tokio::test]
async fn racing_requests_with_one_key_place_one_call_on_postgres() {
    let Some(db) =
        common::TestDatabase::create("racing_requests_with_one_key_place_one_call_on_postgres")
            .await
    else {
        return;
    };
    let h = start_on(tempfile::tempdir().unwrap(), db.url.clone(), |_| {}).await;
    racing_requests_place_one_call(&h).await;
}
