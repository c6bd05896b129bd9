//! The screening state machine: states follow the call's callbacks in any order, the stored
//! outcome ends a screening, a machine answer is `voicemail` (state and outcome), and
//! migration 6 brings rows written before it up to date.

use voxbridge_store::{
    AmdEvent, CallFilter, NewScreening, ScreeningFilter, ScreeningSession, Store,
};

use super::status;

/// A requested screening placed as `call` (state `calling`); returns its id.
async fn placed(store: &Store, call: &str, phone: &str) -> i64 {
    let id = store
        .insert_screening_intent(
            &NewScreening {
                candidate_id: format!("state-{call}"),
                first_name: "Ada".into(),
                phone: phone.into(),
                job_title: "Engineer".into(),
                screening: "default".into(),
                created_at_ms: 70_000,
            },
            "+14155550199",
        )
        .await
        .unwrap();
    assert_eq!(state(store, id).await, "requested");
    store
        .mark_screening_initiated(id, call, "+14155550199", 70_001)
        .await
        .unwrap();
    id
}

async fn state(store: &Store, id: i64) -> String {
    store.screening(id).await.unwrap().unwrap().state
}

fn amd(call: &str, answered_by: &str) -> AmdEvent {
    AmdEvent {
        call_sid: call.into(),
        answered_by: answered_by.into(),
        detection_ms: Some(2_000),
        params_json: "{}".into(),
        received_at_ms: 70_100,
    }
}

fn ended(call: &str, outcome: &str) -> ScreeningSession {
    ScreeningSession {
        call_sid: call.into(),
        direction: Some("outbound-api".into()),
        outcome: outcome.into(),
        answers: serde_json::json!([]),
        summary: "{}".into(),
        ended_at_ms: 70_200,
        ..ScreeningSession::default()
    }
}

pub(super) async fn screening_states(store: &Store) {
    human_answers(store).await;
    machine_answers(store).await;
    unanswered(store).await;
    filters(store).await;
}

async fn human_answers(store: &Store) {
    // A human answers: calling -> in_progress -> completed, never back.
    let call = "CA000000000000000000000000000057a1";
    let id = placed(store, call, "+14155550701").await;
    assert_eq!(state(store, id).await, "calling");
    store
        .record_call_status(&status(call, "ringing", Some(1), 70_010))
        .await
        .unwrap();
    assert_eq!(state(store, id).await, "calling");
    store
        .record_call_status(&status(call, "in-progress", Some(2), 70_020))
        .await
        .unwrap();
    assert_eq!(state(store, id).await, "in_progress");
    store.record_amd(&amd(call, "human")).await.unwrap();
    assert_eq!(state(store, id).await, "in_progress");
    // The agent's result comes before Twilio's `completed`: the screening is over.
    store
        .record_screening_session(&ended(call, "qualified"))
        .await
        .unwrap();
    assert_eq!(state(store, id).await, "completed");
    store
        .record_call_status(&status(call, "completed", Some(3), 70_300))
        .await
        .unwrap();
    store
        .record_call_status(&status(call, "ringing", Some(1), 70_400))
        .await
        .unwrap();
    assert_eq!(state(store, id).await, "completed", "a late callback");
}

async fn machine_answers(store: &Store) {
    // A machine answers: voicemail, and the agent's `no_answer` is stored as `voicemail`,
    // whichever comes first.
    for (n, amd_first) in [(2, true), (3, false)] {
        let call = format!("CA000000000000000000000000000057a{n}");
        let id = placed(store, &call, &format!("+1415555070{n}")).await;
        store
            .record_call_status(&status(&call, "in-progress", Some(2), 70_020))
            .await
            .unwrap();
        if amd_first {
            store
                .record_amd(&amd(&call, "machine_end_beep"))
                .await
                .unwrap();
            assert_eq!(state(store, id).await, "voicemail");
        }
        store
            .record_screening_session(&ended(&call, "no_answer"))
            .await
            .unwrap();
        if !amd_first {
            store
                .record_amd(&amd(&call, "machine_start"))
                .await
                .unwrap();
        }
        store
            .record_call_status(&status(&call, "completed", Some(3), 70_300))
            .await
            .unwrap();
        let screening = store.screening(id).await.unwrap().unwrap();
        assert_eq!(screening.state, "voicemail", "amd first: {amd_first}");
        assert_eq!(
            screening.outcome.as_deref(),
            Some("voicemail"),
            "amd first: {amd_first}"
        );
    }
}

async fn unanswered(store: &Store) {
    // Twilio's unanswered endings.
    for (n, twilio, expected) in [
        (4, "busy", "no_answer"),
        (5, "no-answer", "no_answer"),
        (6, "failed", "failed"),
        (7, "canceled", "canceled"),
    ] {
        let call = format!("CA000000000000000000000000000057a{n}");
        let id = placed(store, &call, &format!("+1415555070{n}")).await;
        store
            .record_call_status(&status(&call, twilio, Some(2), 70_020))
            .await
            .unwrap();
        assert_eq!(state(store, id).await, expected, "{twilio}");
    }
}

async fn filters(store: &Store) {
    let call = "CA000000000000000000000000000057a1";
    // Filters by state and outcome, on screenings and on calls.
    let voicemail = ScreeningFilter {
        state: Some("voicemail".into()),
        limit: 10,
        ..ScreeningFilter::default()
    };
    let (page, total) = store.list_screenings(&voicemail).await.unwrap();
    assert_eq!(total, 2);
    assert!(page.iter().all(|s| s.state == "voicemail"));
    assert!(page[0].id > page[1].id, "newest first");
    let (page, total) = store
        .list_screenings(&ScreeningFilter {
            outcome: Some("qualified".into()),
            candidate_id: Some(format!("state-{call}")),
            ..voicemail.clone()
        })
        .await
        .unwrap();
    assert_eq!((total, page.len()), (0, 0), "both filters apply");
    let calls = CallFilter {
        limit: 10,
        ..CallFilter::default()
    };
    let (page, total) = store
        .list_calls(&CallFilter {
            outcome: Some("voicemail".into()),
            ..calls.clone()
        })
        .await
        .unwrap();
    assert_eq!(total, 2);
    assert!(
        page.iter()
            .all(|c| c.outcome.as_deref() == Some("voicemail"))
    );
    let (page, total) = store
        .list_calls(&CallFilter {
            state: Some("no_answer".into()),
            ..calls.clone()
        })
        .await
        .unwrap();
    assert_eq!(total, 2);
    assert!(page.iter().all(|c| c.state.as_deref() == Some("no_answer")));

    // A failed call that was placed still counts toward the candidate's daily limit.
    assert_eq!(
        store
            .count_screenings_since("state-CA000000000000000000000000000057a6", 0)
            .await
            .unwrap(),
        1
    );
}

/// Rows for [`rewind_to_v5`]: a machine-answered call the agent ended as `no_answer`, a
/// refused create, an uncertain one. Returns their ids.
pub(crate) async fn rows_for_migration_6(store: &Store) -> [i64; 3] {
    let call = "CA000000000000000000000000000057b1";
    let machine = placed(store, call, "+14155550711").await;
    store
        .record_amd(&amd(call, "machine_end_silence"))
        .await
        .unwrap();
    store
        .record_screening_session(&ended(call, "no_answer"))
        .await
        .unwrap();
    let new = NewScreening {
        candidate_id: "state-old".into(),
        first_name: "Ada".into(),
        phone: "+14155550712".into(),
        job_title: "Engineer".into(),
        screening: "default".into(),
        created_at_ms: 70_000,
    };
    let refused = store.insert_screening(&new).await.unwrap();
    store
        .mark_screening_failed(refused, "21211", 70_001)
        .await
        .unwrap();
    let uncertain = store.insert_screening(&new).await.unwrap();
    store
        .mark_screening_uncertain(uncertain, "timeout", 70_001)
        .await
        .unwrap();
    [machine, refused, uncertain]
}

/// Puts [`rows_for_migration_6`] back as the code before migration 6 left them, and forgets
/// migration 6 was applied.
pub(crate) fn rewind_to_v5(ids: [i64; 3]) -> [String; 4] {
    let [machine, refused, uncertain] = ids;
    [
        format!(
            "UPDATE screenings SET state = 'initiated', outcome = 'no_answer' WHERE id = {machine}"
        ),
        format!("UPDATE screenings SET state = 'create_failed' WHERE id = {refused}"),
        format!("UPDATE screenings SET state = 'create_unknown' WHERE id = {uncertain}"),
        "DELETE FROM voxbridge_migrations WHERE version = 6".to_owned(),
    ]
}

/// After migrating again: the states and outcome of the machine.
pub(crate) async fn migrated_by_6(store: &Store, ids: [i64; 3]) {
    let [machine, refused, uncertain] = ids;
    let screening = store.screening(machine).await.unwrap().unwrap();
    assert_eq!(screening.state, "voicemail");
    assert_eq!(screening.outcome.as_deref(), Some("voicemail"));
    assert_eq!(state(store, refused).await, "failed");
    assert_eq!(state(store, uncertain).await, "requested");
    assert_eq!(
        store.count_screenings_since("state-old", 0).await.unwrap(),
        1,
        "the uncertain create still counts, the refused one does not"
    );
}
