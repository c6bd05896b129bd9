//! Call progress (status ordering, side events on unknown calls), listing, and the
//! rate-limit audit and SMS consent.

use voxbridge_store::{
    AmdEvent, CallFilter, RateLimitDecision, RecordingEvent, RelaySessionEvent, StatusPoint, Store,
    supersedes,
};

use super::{CALL1, CALL4, status};

/// Non-terminal statuses, where only `SequenceNumber` decides: in order each one moves the call
/// forward; a late lower sequence never moves it back.
pub(super) async fn sequence_numbers_order_non_terminal_statuses(store: &Store) {
    let call = "CA00000000000000000000000000000005";
    let current = |store: &Store| {
        let store = store.clone();
        async move { store.call(call).await.unwrap().unwrap().status.unwrap() }
    };
    for (name, seq) in [("initiated", 0), ("ringing", 1), ("in-progress", 2)] {
        let o = store
            .record_call_status(&status(call, name, Some(seq), 100 + seq))
            .await
            .unwrap();
        assert!(
            o.applied && !o.duplicate,
            "{name}({seq}) in order must apply"
        );
        assert_eq!(current(store).await, name);
    }
    // Late (or redelivered) lower sequence numbers leave the call in progress.
    for (name, seq) in [("ringing", 1), ("initiated", 0)] {
        let late = status(call, name, Some(seq), 200 + seq);
        let o = store.record_call_status(&late).await.unwrap();
        assert!(
            !o.applied,
            "{name}({seq}) after in-progress(2) must not apply"
        );
        assert_eq!(current(store).await, "in-progress");
    }
}

pub(super) async fn out_of_order_statuses(store: &Store) {
    // Out of order: completed(3) arrives before ringing(1) and in-progress(2).
    let call = CALL1;
    let o = store
        .record_call_status(&status(call, "initiated", Some(0), 10))
        .await
        .unwrap();
    assert!(o.applied && !o.duplicate);
    let mut done = status(call, "completed", Some(3), 11);
    done.duration_seconds = Some(42);
    done.recording_url = Some("https://api.twilio.com/rec".to_owned());
    assert!(store.record_call_status(&done).await.unwrap().applied);
    let late = store
        .record_call_status(&status(call, "ringing", Some(1), 12))
        .await
        .unwrap();
    assert!(
        !late.applied && !late.duplicate,
        "a late ringing must not apply"
    );
    let late = store
        .record_call_status(&status(call, "in-progress", Some(2), 13))
        .await
        .unwrap();
    assert!(!late.applied);
    let dup = store.record_call_status(&done).await.unwrap();
    assert!(
        dup.duplicate && !dup.applied,
        "a retried webhook is a duplicate"
    );
    let record = store.call(call).await.unwrap().unwrap();
    assert_eq!(record.status.as_deref(), Some("completed"));
    assert_eq!(record.status_sequence, Some(3));
    assert_eq!(record.duration_seconds, Some(42));
    assert_eq!(record.created_at, 10);
}

pub(super) async fn sql_matches_the_pure_rule(store: &Store) {
    // The SQL agrees with the pure rule on a sequence of statuses without sequence numbers.
    let call2 = "CA00000000000000000000000000000002";
    let steps = [
        "ringing",
        "queued",
        "in-progress",
        "initiated",
        "busy",
        "completed",
    ];
    let mut current: Option<&str> = None;
    for (i, s) in steps.iter().enumerate() {
        let outcome = store
            .record_call_status(&status(call2, s, None, i64::try_from(i).unwrap()))
            .await
            .unwrap();
        let point = |status| StatusPoint {
            status,
            sequence_number: None,
            timestamp_ms: None,
        };
        let expected = supersedes(current.map(point), point(s));
        assert_eq!(outcome.applied, expected, "step {s}");
        if expected {
            current = Some(s);
        }
    }
    assert_eq!(
        store.call(call2).await.unwrap().unwrap().status.as_deref(),
        Some("busy")
    );
}

pub(super) async fn side_events_create_unknown_calls(store: &Store) {
    // AMD, recording and relay on an unknown call create it.
    let call3 = "CA00000000000000000000000000000003";
    let amd = AmdEvent {
        call_sid: call3.to_owned(),
        answered_by: "machine_end_beep".to_owned(),
        detection_ms: Some(4100),
        params_json: "{}".to_owned(),
        received_at_ms: 100,
    };
    assert!(store.record_amd(&amd).await.unwrap().applied);
    assert!(store.record_amd(&amd).await.unwrap().duplicate);
    let rec = |s: &str| RecordingEvent {
        call_sid: call3.to_owned(),
        recording_sid: "RE1".to_owned(),
        status: s.to_owned(),
        url: (s == "completed").then(|| "https://api.twilio.com/RE1".to_owned()),
        duration_seconds: Some(30),
        params_json: "{}".to_owned(),
        received_at_ms: 101,
    };
    assert!(
        store
            .record_recording(&rec("completed"))
            .await
            .unwrap()
            .applied
    );
    assert!(
        !store
            .record_recording(&rec("in-progress"))
            .await
            .unwrap()
            .applied
    );
    store
        .record_relay_session(&RelaySessionEvent {
            call_sid: call3.to_owned(),
            session_id: "VX1".to_owned(),
            session_status: "ended".to_owned(),
            handoff_data: Some(r#"{"reasonCode":"done"}"#.to_owned()),
            params_json: "{}".to_owned(),
            received_at_ms: 102,
        })
        .await
        .unwrap();
    let c3 = store.call(call3).await.unwrap().unwrap();
    assert_eq!(c3.answered_by.as_deref(), Some("machine_end_beep"));
    assert_eq!(c3.recording_status.as_deref(), Some("completed"));
    assert_eq!(
        c3.recording_url.as_deref(),
        Some("https://api.twilio.com/RE1")
    );
    assert_eq!(c3.relay_session_status.as_deref(), Some("ended"));
    assert_eq!(c3.status, None);
}

pub(super) async fn listing(store: &Store) {
    // Listing, filters, paging.
    let all = CallFilter {
        limit: 10,
        ..CallFilter::default()
    };
    let (page, total) = store.list_calls(&all).await.unwrap();
    assert_eq!(total, 4);
    assert_eq!(page.len(), 4);
    assert_eq!(page[0].call_sid, CALL4, "newest first");
    let (page, total) = store
        .list_calls(&CallFilter {
            status: Some("completed".into()),
            ..all.clone()
        })
        .await
        .unwrap();
    assert_eq!((total, page[0].call_sid.as_str()), (1, CALL1));
    let (page, _) = store
        .list_calls(&CallFilter {
            candidate_id: Some("cand-1".into()),
            ..all.clone()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    let (page, total) = store
        .list_calls(&CallFilter {
            since_ms: Some(50),
            until_ms: Some(1_000),
            ..all.clone()
        })
        .await
        .unwrap();
    assert_eq!((page.len(), total), (1, 1));
    let (page, total) = store
        .list_calls(&CallFilter {
            limit: 2,
            offset: 3,
            ..all
        })
        .await
        .unwrap();
    assert_eq!((page.len(), total), (1, 4));
}

pub(super) async fn audit_and_consent(store: &Store) {
    // Rate-limit audit and SMS consent.
    for (allowed, n) in [(true, 1), (false, 5)] {
        store
            .record_rate_limit_decision(&RateLimitDecision {
                number: "+14158675309".into(),
                allowed,
                recent_count: n,
                decided_at_ms: n,
            })
            .await
            .unwrap();
    }
    let decisions = store.rate_limit_decisions("+14158675309").await.unwrap();
    assert_eq!(
        decisions,
        [(true, 1), (false, 5)].map(|(allowed, n)| RateLimitDecision {
            number: "+14158675309".into(),
            allowed,
            recent_count: n,
            decided_at_ms: n,
        })
    );
    assert!(
        store
            .rate_limit_decisions("+1415")
            .await
            .unwrap()
            .is_empty()
    );
    store
        .set_sms_consent("+14158675309", "opted_out", Some("STOP"), 1)
        .await
        .unwrap();
    assert_eq!(
        store.sms_consent("+14158675309").await.unwrap().as_deref(),
        Some("opted_out")
    );
    store
        .set_sms_consent("+14158675309", "opted_in", None, 2)
        .await
        .unwrap();
    assert_eq!(
        store.sms_consent("+14158675309").await.unwrap().as_deref(),
        Some("opted_in")
    );
    assert_eq!(store.sms_consent("+1415").await.unwrap(), None);
}
