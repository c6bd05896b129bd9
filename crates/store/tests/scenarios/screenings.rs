//! Screenings requested through the API, finished screening conversations, and finished Media
//! Streams calls with their turn latencies.

use voxbridge_store::{
    KeyedInsert, MediaCallEnd, NewScreening, ScreeningSession, Store, TranscriptLine,
    TurnLatencyRecord,
};

use super::{CALL4, status};

fn turn(index: i64, outcome: &str) -> TurnLatencyRecord {
    TurnLatencyRecord {
        turn_index: index,
        bot_turn: Some(index + 2),
        speech_ended_at_ms: 4_000 + index,
        hangover_ms: 600,
        asr_us: Some(180_250),
        dialog_first_text_us: Some(95_000),
        first_sentence_us: Some(120_000),
        tts_first_byte_us: (outcome == "spoken").then_some(61_500),
        first_frame_us: (outcome == "spoken").then_some(1_234),
        total_us: (outcome == "spoken").then_some(364_000),
        retries: index,
        outcome: outcome.into(),
        failed_stage: (outcome == "fallback").then(|| "tts".into()),
        recorded_at_ms: 3_000,
    }
}

/// Finished Media Streams calls: a voice screening (answers, transcript with an interrupted
/// bot line, turn latencies), a call without a dialog (echo), and a conversation that is not a
/// screening (transcript only). Turns read back in order, exactly as written.
#[allow(clippy::too_many_lines)] // one scenario: every kind of media call stored
pub(super) async fn media_calls(store: &Store) {
    let voice = "CA00000000000000000000000000000009";
    let turns = vec![
        turn(0, "spoken"),
        turn(1, "fallback"),
        turn(2, "interrupted"),
    ];
    let call = MediaCallEnd {
        call_sid: voice.into(),
        summary: r#"{"transport":"media","agent":"voice"}"#.into(),
        ended_at_ms: 3_000,
        screening: Some(ScreeningSession {
            call_sid: voice.into(),
            candidate_id: Some("cand-9".into()),
            first_name: Some("Ana".into()),
            job_title: "Warehouse".into(),
            screening: "default".into(),
            outcome: "incomplete".into(),
            answers: serde_json::json!([{"question_id": "work_authorization", "raw": "Yes, I am."}]),
            summary: r#"{"transport":"media","agent":"voice"}"#.into(),
            transcript: vec![TranscriptLine {
                role: "agent".into(),
                text: "Hi Ana, this is".into(),
                at_ms: 2_900,
                interrupted: true,
            }],
            ended_at_ms: 3_000,
            ..ScreeningSession::default()
        }),
        transcript: Vec::new(),
        turns: turns.clone(),
        handoff_data: Some(r#"{"reasonCode":"live-agent-handoff","reason":"asked"}"#.into()),
    };
    store.record_media_call(&call).await.unwrap();
    assert_eq!(store.turn_latencies(voice).await.unwrap(), turns);
    let detail = store.call_detail(voice).await.unwrap().unwrap();
    assert_eq!(
        detail.call.summary,
        Some(serde_json::json!({"transport": "media", "agent": "voice"})),
        "nested JSON, not JSON in a string"
    );
    let screening = detail.screening.expect("an unrequested screening row");
    assert_eq!(
        screening.answers.as_ref().unwrap()[0]["questionId"],
        "work_authorization",
        "answers' keys in camelCase"
    );
    assert_eq!(screening.state, "unrequested");
    assert_eq!(screening.outcome.as_deref(), Some("incomplete"));
    assert_eq!(screening.answers.unwrap()[0]["raw"], "Yes, I am.");
    assert_eq!(detail.transcript.len(), 1);
    assert!(detail.transcript[0].interrupted);
    // The dialog's handoff data lands where ConversationRelay's action callback puts it.
    assert_eq!(
        detail.call.handoff_data,
        Some(serde_json::json!({"reasonCode": "live-agent-handoff", "reason": "asked"}))
    );

    // Storing the same turns again keeps one row per turn.
    let again = MediaCallEnd {
        screening: None,
        ..call.clone()
    };
    store.record_media_call(&again).await.unwrap();
    assert_eq!(store.turn_latencies(voice).await.unwrap().len(), 3);

    let echo = "CA0000000000000000000000000000000a";
    store
        .record_media_call(&MediaCallEnd {
            call_sid: echo.into(),
            summary: r#"{"transport":"media","agent":"echo"}"#.into(),
            ended_at_ms: 3_100,
            ..MediaCallEnd::default()
        })
        .await
        .unwrap();
    let detail = store.call_detail(echo).await.unwrap().unwrap();
    assert_eq!(detail.call.created_at, 3_100);
    assert!(detail.screening.is_none() && detail.transcript.is_empty());
    assert!(store.turn_latencies(echo).await.unwrap().is_empty());

    let assistant = "CA0000000000000000000000000000000b";
    store
        .record_media_call(&MediaCallEnd {
            call_sid: assistant.into(),
            summary: r#"{"transport":"media","agent":"assistant"}"#.into(),
            ended_at_ms: 3_200,
            transcript: vec![TranscriptLine {
                role: "caller".into(),
                text: "What are the hours?".into(),
                at_ms: 3_150,
                interrupted: false,
            }],
            turns: vec![turn(0, "spoken")],
            ..MediaCallEnd::default()
        })
        .await
        .unwrap();
    let detail = store.call_detail(assistant).await.unwrap().unwrap();
    assert!(detail.screening.is_none());
    assert_eq!(detail.transcript[0].text, "What are the hours?");
    assert_eq!(
        store.turn_latencies(assistant).await.unwrap()[0].total_us,
        Some(364_000)
    );
    assert!(store.turn_latencies("CA404").await.unwrap().is_empty());
}

pub(super) async fn screenings(store: &Store) {
    // Screenings: request, link, daily count, results, transcript, detail.
    let new = NewScreening {
        candidate_id: "cand-1".to_owned(),
        first_name: "Ada".to_owned(),
        phone: "+14158675309".to_owned(),
        job_title: "Engineer".to_owned(),
        screening: "default".to_owned(),
        created_at_ms: 1_000,
    };
    let a = store.insert_screening(&new).await.unwrap();
    let b = store.insert_screening(&new).await.unwrap();
    assert_ne!(a, b);
    store
        .mark_screening_failed(b, "21211 invalid number", 1_001)
        .await
        .unwrap();
    assert_eq!(store.count_screenings_since("cand-1", 0).await.unwrap(), 1);
    assert_eq!(
        store.count_screenings_since("cand-1", 1_001).await.unwrap(),
        0
    );
    let call4 = CALL4;
    store
        .mark_screening_initiated(a, call4, "+14155550199", 1_002)
        .await
        .unwrap();
    store
        .record_call_status(&status(call4, "ringing", Some(1), 1_003))
        .await
        .unwrap();
    assert!(
        store
            .save_screening_result(
                call4,
                &serde_json::json!({"years": 5}),
                "pass",
                Some("good"),
                1_004
            )
            .await
            .unwrap()
    );
    store
        .append_transcript(
            call4,
            &[
                TranscriptLine {
                    role: "agent".into(),
                    text: "Hi Ada".into(),
                    at_ms: 1,
                    interrupted: false,
                },
                TranscriptLine {
                    role: "caller".into(),
                    text: "Hello".into(),
                    at_ms: 2,
                    interrupted: false,
                },
            ],
        )
        .await
        .unwrap();
    store
        .record_call_summary(call4, r#"{"turns":2}"#, 1_005)
        .await
        .unwrap();
    let detail = store.call_detail(call4).await.unwrap().unwrap();
    assert_eq!(detail.call.candidate_id.as_deref(), Some("cand-1"));
    assert_eq!(detail.call.status.as_deref(), Some("ringing"));
    assert_eq!(detail.call.summary, Some(serde_json::json!({"turns": 2})));
    assert_eq!(detail.transcript.len(), 2);
    assert_eq!(detail.timeline.len(), 1);
    let screening = detail.screening.unwrap();
    assert_eq!(screening.outcome.as_deref(), Some("pass"));
    assert_eq!(screening.answers, Some(serde_json::json!({"years": 5})));
    assert!(store.call_detail("CA404").await.unwrap().is_none());
}

/// A finished conversation: a requested screening gets its answers; an unrequested (inbound)
/// call gets a screening row of its own; transcript lines keep interruptions.
pub(super) async fn screening_sessions(store: &Store) {
    let requested = store
        .insert_screening(&NewScreening {
            candidate_id: "cand-7".into(),
            first_name: "Bo".into(),
            phone: "+14155550107".into(),
            job_title: "Driver".into(),
            screening: "driver".into(),
            created_at_ms: 2_000,
        })
        .await
        .unwrap();
    let call = "CA00000000000000000000000000000007";
    store
        .mark_screening_initiated(requested, call, "+14155550100", 2_001)
        .await
        .unwrap();
    let session = |call: &str, direction: &str| ScreeningSession {
        call_sid: call.into(),
        direction: Some(direction.into()),
        from: Some("+14155550108".into()),
        to: Some("+14155550100".into()),
        candidate_id: Some("cand-7".into()),
        first_name: Some("Bo".into()),
        job_title: "Driver".into(),
        screening: "driver".into(),
        outcome: "qualified".into(),
        answers: serde_json::json!([{"questionId": "cdl", "raw": "yes I do", "value": true}]),
        summary: r#"{"end":"screening-complete"}"#.into(),
        transcript: vec![
            TranscriptLine {
                role: "agent".into(),
                text: "Do you hold a".into(),
                at_ms: 2_010,
                interrupted: true,
            },
            TranscriptLine {
                role: "caller".into(),
                text: "yes I do".into(),
                at_ms: 2_020,
                interrupted: false,
            },
        ],
        ended_at_ms: 2_030,
    };
    store
        .record_screening_session(&session(call, "outbound-api"))
        .await
        .unwrap();
    let detail = store.call_detail(call).await.unwrap().unwrap();
    let screening = detail.screening.unwrap();
    assert_eq!(screening.id, requested);
    assert_eq!(
        screening.state, "completed",
        "the stored outcome ends the screening"
    );
    assert_eq!(screening.outcome.as_deref(), Some("qualified"));
    assert_eq!(screening.answers.unwrap()[0]["raw"], "yes I do");
    assert_eq!(
        detail.call.summary,
        Some(serde_json::json!({"end": "screening-complete"}))
    );
    assert_eq!(
        detail.call.to.as_deref(),
        Some("+14155550107"),
        "known call keeps its number"
    );
    assert_eq!(detail.transcript.len(), 2);
    assert!(detail.transcript[0].interrupted);
    assert_eq!(detail.transcript[0].text, "Do you hold a");
    assert!(!detail.transcript[1].interrupted);

    let inbound = "CA00000000000000000000000000000008";
    store
        .record_screening_session(&session(inbound, "inbound"))
        .await
        .unwrap();
    let detail = store.call_detail(inbound).await.unwrap().unwrap();
    assert_eq!(detail.call.direction.as_deref(), Some("inbound"));
    let screening = detail.screening.unwrap();
    assert_eq!(screening.state, "unrequested");
    assert_eq!(screening.phone, "+14155550108", "the caller's number");
    assert_eq!(screening.outcome.as_deref(), Some("qualified"));
    assert_eq!(detail.transcript.len(), 2);
}

/// Screenings held for calling hours: due in order, moved on, claimed once (with an intent),
/// canceled only while scheduled.
pub(crate) async fn scheduled_screenings(store: &Store) {
    let t0 = 1_900_000_000_000;
    let schedule = |candidate: &str, at: i64| {
        let new = NewScreening {
            candidate_id: candidate.to_owned(),
            first_name: "Ada".to_owned(),
            phone: "+442071234567".to_owned(),
            job_title: "Welder".to_owned(),
            screening: "default".to_owned(),
            created_at_ms: t0,
        };
        async move {
            match store
                .insert_scheduled_screening(&new, at, None, None)
                .await
                .unwrap()
            {
                KeyedInsert::Created(id) => id,
                other @ KeyedInsert::Existing { .. } => panic!("{other:?}"),
            }
        }
    };
    let later = schedule("sched-later", t0 + 2_000).await;
    let first = schedule("sched-first", t0 + 1_000).await;
    let record = store.screening(first).await.unwrap().unwrap();
    assert_eq!(
        (record.state.as_str(), record.scheduled_for),
        ("scheduled", Some(t0 + 1_000))
    );
    assert_eq!(store.next_due_screening(t0 + 999).await.unwrap(), None);
    let due = store.next_due_screening(t0 + 5_000).await.unwrap().unwrap();
    assert_eq!(due.id, first, "the one due first");
    // Moved past the other: the other is due first now.
    assert!(
        store
            .reschedule_screening(first, t0 + 9_000, t0)
            .await
            .unwrap()
    );
    let due = store.next_due_screening(t0 + 5_000).await.unwrap().unwrap();
    assert_eq!(due.id, later);
    // Claimed once, with an intent for reconciliation.
    assert!(
        store
            .claim_scheduled_screening(later, "+14155550100", t0 + 5_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_scheduled_screening(later, "+14155550100", t0 + 5_001)
            .await
            .unwrap()
    );
    let intents = store.open_screening_intents(t0 + 60_000).await.unwrap();
    assert!(
        intents
            .iter()
            .any(|i| i.screening_id == later && i.created_at == t0 + 5_000),
        "{intents:?}"
    );
    assert!(!store.reschedule_screening(later, t0, t0).await.unwrap());
    // Canceled while scheduled; not once claimed; unknown ids are None.
    let (canceled, record) = store
        .cancel_scheduled_screening(first, t0 + 6_000)
        .await
        .unwrap()
        .unwrap();
    assert!(canceled);
    assert_eq!(record.state, "canceled");
    assert_eq!(store.next_due_screening(t0 + 10_000).await.unwrap(), None);
    let (canceled, record) = store
        .cancel_scheduled_screening(later, t0 + 6_000)
        .await
        .unwrap()
        .unwrap();
    assert!(!canceled);
    assert_eq!(record.state, "requested");
    assert_eq!(
        store.cancel_scheduled_screening(999_999, t0).await.unwrap(),
        None
    );
}
