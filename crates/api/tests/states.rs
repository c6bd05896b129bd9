//! The screening state machine over real HTTP: Twilio's signed callbacks and the agent's stored
//! result move a screening requested through the API from `calling` to its end state, a
//! machine answer ends it as `voicemail`, and both lists filter by state and outcome with a
//! 400 for values that do not exist.

mod common;

use common::{ACCOUNT, Harness, start, status_params};
use serde_json::{Value, json};
use voxbridge_store::ScreeningSession;

/// Requests a screening for `candidate`; returns its id and call SID.
async fn requested(h: &Harness, candidate: &str) -> (i64, String) {
    let (status, body) = h
        .create_screening(&json!({"candidateId": candidate, "firstName": "Ada", "phone": "+14158675309", "jobTitle": "Engineer"}))
        .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_i64().unwrap(),
        body["callSid"].as_str().unwrap().to_owned(),
    )
}

async fn screening(h: &Harness, id: i64) -> Value {
    let (status, body) = h.api_get(&format!("/api/screenings/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["screening"].clone()
}

async fn callback(h: &Harness, call_sid: &str, status: &str, seq: &str) {
    let r = h
        .webhook(
            "/twilio/voice/status",
            &status_params(call_sid, status, seq),
        )
        .await;
    assert_eq!(r.status(), 204, "{status}");
}

/// What the media server stores when the conversation ends.
async fn conversation_ended(h: &Harness, call_sid: &str, outcome: &str) {
    h.state
        .store()
        .record_screening_session(&ScreeningSession {
            call_sid: call_sid.to_owned(),
            direction: Some("outbound-api".into()),
            outcome: outcome.into(),
            answers: json!([{"question_id": "work_authorization", "raw": "yes", "parsed_value": true}]),
            summary: r#"{"transport":"relay","endReason":"agent"}"#.into(),
            ended_at_ms: common::T0 + 60_000,
            ..ScreeningSession::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn callbacks_and_the_outcome_move_a_screening_to_completed() {
    let h = start(|_| {}).await;
    let (id, call_sid) = requested(&h, "cand-1").await;
    assert_eq!(screening(&h, id).await["state"], "calling");
    callback(&h, &call_sid, "ringing", "1").await;
    assert_eq!(screening(&h, id).await["state"], "calling");
    callback(&h, &call_sid, "in-progress", "2").await;
    assert_eq!(screening(&h, id).await["state"], "in_progress");
    conversation_ended(&h, &call_sid, "qualified").await;
    let done = screening(&h, id).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["outcome"], "qualified");
    // The stored answers and summary, as the rest of the API: camelCase keys, nested JSON.
    assert_eq!(
        done["answers"],
        json!([{"questionId": "work_authorization", "raw": "yes", "parsedValue": true}])
    );
    assert_eq!(
        done["summary"],
        json!({"transport": "relay", "endReason": "agent"})
    );
    assert_eq!(done["createdAt"], "2023-11-14T22:13:20.000Z");
    assert_eq!(
        done["updatedAt"], "2023-11-14T22:14:20.000Z",
        "the conversation's end"
    );
    callback(&h, &call_sid, "completed", "3").await;
    assert_eq!(screening(&h, id).await["state"], "completed");

    let (status, list) = h
        .api_get("/api/calls?state=completed&outcome=qualified")
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 1);
    assert_eq!(list["calls"][0]["callSid"], call_sid.as_str());
    assert_eq!(list["calls"][0]["state"], "completed");
    assert_eq!(list["calls"][0]["outcome"], "qualified");
    let (status, list) = h.api_get("/api/screenings?outcome=qualified").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 1);
    assert_eq!(list["screenings"][0]["id"], id);
}

#[tokio::test]
async fn a_machine_answer_ends_the_screening_as_voicemail() {
    let h = start(|_| {}).await;
    let (id, call_sid) = requested(&h, "cand-2").await;
    callback(&h, &call_sid, "in-progress", "2").await;
    let amd = h
        .webhook(
            "/twilio/voice/amd",
            &[
                ("AccountSid", ACCOUNT),
                ("CallSid", &call_sid),
                ("AnsweredBy", "machine_end_beep"),
                ("MachineDetectionDuration", "3100"),
            ],
        )
        .await;
    assert_eq!(amd.status(), 204);
    assert_eq!(screening(&h, id).await["state"], "voicemail");
    // The agent, cut off by the redirect to the voicemail message, heard nobody.
    conversation_ended(&h, &call_sid, "no_answer").await;
    callback(&h, &call_sid, "completed", "3").await;
    let done = screening(&h, id).await;
    assert_eq!(done["state"], "voicemail", "{done}");
    assert_eq!(done["outcome"], "voicemail", "not no_answer: {done}");

    let (_, list) = h.api_get("/api/screenings?state=voicemail").await;
    assert_eq!(list["total"], 1, "{list}");
    let (_, list) = h.api_get("/api/calls?outcome=no_answer").await;
    assert_eq!(list["total"], 0, "{list}");
}

#[tokio::test]
async fn unanswered_calls_end_as_no_answer() {
    let h = start(|_| {}).await;
    let (busy, busy_sid) = requested(&h, "cand-3").await;
    let (silent, silent_sid) = requested(&h, "cand-4").await;
    callback(&h, &busy_sid, "busy", "2").await;
    callback(&h, &silent_sid, "no-answer", "2").await;
    assert_eq!(screening(&h, busy).await["state"], "no_answer");
    assert_eq!(screening(&h, silent).await["state"], "no_answer");
    let (_, list) = h.api_get("/api/screenings?state=no_answer").await;
    assert_eq!(list["total"], 2, "{list}");
    let (_, list) = h.api_get("/api/screenings?state=calling").await;
    assert_eq!(list["total"], 0, "{list}");
}

#[tokio::test]
async fn unknown_filter_values_and_parameters_are_400_with_the_known_ones() {
    let h = start(|_| {}).await;
    for (path, needle) in [
        ("/api/calls?status=bogus", "no-answer"),
        ("/api/calls?state=bogus", "in_progress"),
        ("/api/calls?outcome=bogus", "not_qualified"),
        ("/api/calls?stauts=completed", "status"),
        ("/api/screenings?state=initiated", "voicemail"),
        ("/api/screenings?outcome=Qualified", "qualified"),
        ("/api/screenings?status=completed", "state"),
        ("/api/screenings?limit=x", "limit"),
    ] {
        let (status, body) = h.api_get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(needle), "{path}: {error}");
    }
    let (status, body) = h.api_get("/api/calls?status=bogus").await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("unknown status \"bogus\"; use one of: queued,"),
        "{body}"
    );
    // Known values that match nothing are an empty page, not an error.
    let (status, body) = h.api_get("/api/calls?status=busy&state=canceled").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 0);
}
