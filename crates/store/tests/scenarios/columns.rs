//! Row mapping: every column read back whole, and invalid stored JSON reported by column.

use voxbridge_store::{
    AmdEvent, CallEvent, CallFilter, CallRecord, CallStatusEvent, KeyedInsert, NewScreening,
    Outreach, RecordingEvent, RelaySessionEvent, ScreeningRecord, ScreeningSession, Store,
    StoreError, TranscriptLine,
};

use super::status;

/// The call of [`every_column_reads_back`].
const CALL: &str = "CA0000000000000000000000000000000d";

/// Its events' `params`.
const RINGING_PARAMS: &str = r#"{"CallStatus":"ringing","SequenceNumber":"1"}"#;
const COMPLETED_PARAMS: &str = r#"{"CallStatus":"completed","SequenceNumber":"2"}"#;
const RELAY_PARAMS: &str = r#"{"SessionStatus":"ended"}"#;
const AMD_PARAMS: &str = r#"{"AnsweredBy":"human"}"#;
const RECORDING_PARAMS: &str = r#"{"RecordingStatus":"completed"}"#;

fn transcript() -> Vec<TranscriptLine> {
    vec![
        TranscriptLine {
            role: "agent".into(),
            text: "Which processes do you".into(),
            at_ms: 5_020,
            interrupted: true,
        },
        TranscriptLine {
            role: "keypad".into(),
            text: "2".into(),
            at_ms: 5_030,
            interrupted: false,
        },
    ]
}

/// Writes [`CALL`] so that every column of its call row, screening, events and transcript
/// holds a distinct value; returns the screening id. The screening goes through
/// an uncertain create before its call is linked only so that its `error` column is set too.
async fn fill_every_column(store: &Store) -> i64 {
    // Scheduled (calling hours), then claimed, so `scheduled_for` is set too; with retries, a
    // follow-up and a campaign so their columns are.
    let inserted = store
        .insert_screening_request(
            &NewScreening {
                candidate_id: "cand-13".into(),
                first_name: "Cy".into(),
                phone: "+14155550113".into(),
                job_title: "Welder".into(),
                screening: "welding".into(),
                created_at_ms: 5_000,
            },
            None,
            None,
            None,
            Some(4_000),
            Outreach {
                max_attempts: 3,
                retry_after_ms: 60_000,
                follow_up: true,
                campaign_id: Some(77),
            },
        )
        .await
        .unwrap();
    let KeyedInsert::Created(id) = inserted else {
        panic!("{inserted:?}")
    };
    assert!(
        store
            .claim_scheduled_screening(id, "+14155550100", 5_000)
            .await
            .unwrap()
    );
    store
        .mark_screening_uncertain(id, "timeout", 5_001)
        .await
        .unwrap();
    store
        .mark_screening_initiated(id, CALL, "+14155550100", 5_002)
        .await
        .unwrap();
    let ringing = CallStatusEvent {
        timestamp_ms: Some(5_010),
        params_json: RINGING_PARAMS.into(),
        ..status(CALL, "ringing", Some(1), 5_011)
    };
    store.record_call_status(&ringing).await.unwrap();
    store
        .record_relay_session(&RelaySessionEvent {
            call_sid: CALL.into(),
            session_id: "VX13".into(),
            session_status: "ended".into(),
            handoff_data: Some(r#"{"reasonCode":"live-agent"}"#.into()),
            params_json: RELAY_PARAMS.into(),
            received_at_ms: 5_012,
        })
        .await
        .unwrap();
    store
        .record_amd(&AmdEvent {
            call_sid: CALL.into(),
            answered_by: "human".into(),
            detection_ms: Some(2_300),
            params_json: AMD_PARAMS.into(),
            received_at_ms: 5_013,
        })
        .await
        .unwrap();
    store
        .record_recording(&RecordingEvent {
            call_sid: CALL.into(),
            recording_sid: "RE13".into(),
            status: "completed".into(),
            url: Some("https://api.twilio.com/RE13".into()),
            duration_seconds: Some(61),
            params_json: RECORDING_PARAMS.into(),
            received_at_ms: 5_014,
        })
        .await
        .unwrap();
    let completed = CallStatusEvent {
        timestamp_ms: Some(5_090),
        duration_seconds: Some(75),
        params_json: COMPLETED_PARAMS.into(),
        ..status(CALL, "completed", Some(2), 5_091)
    };
    store.record_call_status(&completed).await.unwrap();
    let answers = serde_json::json!({"welds": ["mig", "tig"]});
    let saved = store
        .save_screening_result(CALL, &answers, "qualified", Some("two processes"), 5_092)
        .await
        .unwrap();
    assert!(saved);
    store.append_transcript(CALL, &transcript()).await.unwrap();
    store
        .record_call_summary(CALL, r#"{"turns":1}"#, 5_093)
        .await
        .unwrap();
    id
}

/// What [`fill_every_column`] leaves in the call row.
fn expected_call() -> CallRecord {
    CallRecord {
        call_sid: CALL.into(),
        direction: Some("outbound-api".into()),
        from: Some("+14155550100".into()),
        to: Some("+14155550113".into()),
        candidate_id: Some("cand-13".into()),
        screening: Some("welding".into()),
        status: Some("completed".into()),
        status_sequence: Some(2),
        duration_seconds: Some(75),
        answered_by: Some("human".into()),
        amd_duration_ms: Some(2_300),
        recording_sid: Some("RE13".into()),
        recording_url: Some("https://api.twilio.com/RE13".into()),
        recording_status: Some("completed".into()),
        relay_session_status: Some("ended".into()),
        handoff_data: Some(serde_json::json!({"reasonCode": "live-agent"})),
        summary: Some(serde_json::json!({"turns": 1})),
        state: Some("completed".into()),
        outcome: Some("qualified".into()),
        created_at: 5_002,
        updated_at: 5_093,
    }
}

/// What [`fill_every_column`] leaves in screening `id`.
fn expected_screening(id: i64) -> ScreeningRecord {
    ScreeningRecord {
        id,
        call_sid: Some(CALL.into()),
        candidate_id: "cand-13".into(),
        first_name: "Cy".into(),
        phone: "+14155550113".into(),
        job_title: "Welder".into(),
        screening: "welding".into(),
        state: "completed".into(),
        error: Some("timeout".into()),
        scheduled_for: Some(4_000),
        attempt: 1,
        max_attempts: 3,
        follow_up: Some("wanted".into()),
        campaign_id: Some(77),
        ended_at: Some(5_091),
        answers: Some(serde_json::json!({"welds": ["mig", "tig"]})),
        outcome: Some("qualified".into()),
        summary: Some(serde_json::Value::String("two processes".into())),
        callback_url: None,
        metadata: None,
        created_at: 5_000,
        updated_at: 5_092,
    }
}

/// Every column of a call, its screening, timeline and transcript (see [`fill_every_column`])
/// read back whole, so a column read into the wrong field (or with a type one backend does not
/// decode) fails here on that backend.
pub(super) async fn every_column_reads_back(store: &Store) {
    let id = fill_every_column(store).await;
    let expected_call = expected_call();
    assert_eq!(store.call(CALL).await.unwrap(), Some(expected_call.clone()));
    let (page, total) = store
        .list_calls(&CallFilter {
            candidate_id: Some("cand-13".into()),
            limit: 10,
            ..CallFilter::default()
        })
        .await
        .unwrap();
    assert_eq!((page, total), (vec![expected_call.clone()], 1));

    let detail = store.call_detail(CALL).await.unwrap().unwrap();
    assert_eq!(detail.call, expected_call);
    // Status events by sequence number, then the others by arrival.
    let timeline = [
        (
            "status",
            "ringing",
            Some(1),
            Some(5_010),
            5_011,
            RINGING_PARAMS,
        ),
        (
            "status",
            "completed",
            Some(2),
            Some(5_090),
            5_091,
            COMPLETED_PARAMS,
        ),
        ("relay", "ended", None, None, 5_012, RELAY_PARAMS),
        ("amd", "human", None, None, 5_013, AMD_PARAMS),
        (
            "recording",
            "completed",
            None,
            None,
            5_014,
            RECORDING_PARAMS,
        ),
    ]
    .map(|(kind, status, seq, ts, at, params)| CallEvent {
        kind: kind.into(),
        status: Some(status.into()),
        sequence_number: seq,
        event_ts: ts,
        received_at: at,
        params: serde_json::from_str(params).unwrap(),
    });
    assert_eq!(detail.timeline, timeline);
    assert_eq!(detail.transcript, transcript());
    let expected_screening = expected_screening(id);
    assert_eq!(detail.screening, Some(expected_screening.clone()));
    assert_eq!(
        store.screening_for_call(CALL).await.unwrap(),
        Some(expected_screening)
    );
    assert_eq!(store.screening_for_call("CA404").await.unwrap(), None);
}

/// A call whose stored JSON each backend's test then overwrites with [`CORRUPT_JSON`].
const CORRUPT_CALL: &str = "CA0000000000000000000000000000000c";

/// Makes the event params and the screening answers of [`CORRUPT_CALL`] invalid JSON.
pub(crate) const CORRUPT_JSON: [&str; 2] = [
    "UPDATE call_events SET params = 'not json' WHERE call_sid = 'CA0000000000000000000000000000000c'",
    "UPDATE screenings SET answers = '{\"unterminated' WHERE call_sid = 'CA0000000000000000000000000000000c'",
];

pub(super) async fn store_call_to_corrupt(store: &Store) {
    let session = ScreeningSession {
        call_sid: CORRUPT_CALL.into(),
        direction: Some("inbound".into()),
        from: Some("+14155550112".into()),
        screening: "default".into(),
        outcome: "incomplete".into(),
        answers: serde_json::json!([]),
        summary: "{}".into(),
        ended_at_ms: 6_000,
        ..ScreeningSession::default()
    };
    store.record_screening_session(&session).await.unwrap();
    store
        .record_call_status(&status(CORRUPT_CALL, "completed", Some(3), 6_001))
        .await
        .unwrap();
    assert!(store.call_detail(CORRUPT_CALL).await.unwrap().is_some());
}

/// After [`CORRUPT_JSON`] ran: reading the call fails with a JSON error naming the column
/// (not a database error, and not a silently empty value).
pub(crate) async fn invalid_json_names_its_column(store: &Store) {
    let column = |result: Result<_, StoreError>| match result {
        Err(StoreError::Json { column, .. }) => column,
        Err(other) => panic!("expected a JSON error, got {other}"),
        Ok(()) => panic!("expected a JSON error, got a value"),
    };
    assert_eq!(
        column(store.call_detail(CORRUPT_CALL).await.map(drop)),
        "call_events.params"
    );
    assert_eq!(
        column(store.screening_for_call(CORRUPT_CALL).await.map(drop)),
        "screenings.answers"
    );
    // The call row itself has no JSON column to check.
    assert!(store.call(CORRUPT_CALL).await.unwrap().is_some());
}
