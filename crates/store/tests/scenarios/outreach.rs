//! Outreach: a missed call retried until its attempts are used up (the result webhook waits
//! for the end), de-duplicated per candidate and script; the follow-up SMS settled once; a
//! STOP that ends outreach; a campaign and its progress.

use voxbridge_store::{
    AmdEvent, CallStatusEvent, KeyedInsert, NewCampaign, NewMessage, NewScreening, Outreach,
    ScreeningCallback, Store,
};

use super::status;

const T0: i64 = 1_950_000_000_000;
const FROM: &str = "+14155550100";
const RETRY_MS: i64 = 3_600_000;

fn candidate(id: &str, phone: &str) -> NewScreening {
    NewScreening {
        candidate_id: id.to_owned(),
        first_name: "Ada".to_owned(),
        phone: phone.to_owned(),
        job_title: "Welder".to_owned(),
        screening: "default".to_owned(),
        created_at_ms: T0,
    }
}

fn retried(max_attempts: i64) -> Outreach {
    Outreach {
        max_attempts,
        retry_after_ms: RETRY_MS,
        follow_up: true,
        campaign_id: None,
    }
}

fn callback() -> ScreeningCallback {
    ScreeningCallback {
        url: Some("http://127.0.0.1:9/ats".to_owned()),
        metadata: None,
        deliver: true,
    }
}

/// A screening requested now (with an intent), retried as `outreach` says; its id.
async fn requested(store: &Store, new: &NewScreening, outreach: Outreach) -> i64 {
    match store
        .insert_screening_request(new, Some(FROM), None, Some(&callback()), None, outreach)
        .await
        .unwrap()
    {
        KeyedInsert::Created(id) => id,
        other @ KeyedInsert::Existing { .. } => panic!("{other:?}"),
    }
}

fn ended(call: &str, call_status: &str, at: i64) -> CallStatusEvent {
    CallStatusEvent {
        to: Some("+14158675310".to_owned()),
        ..status(call, call_status, None, at)
    }
}

async fn deliveries(store: &Store, id: i64) -> i64 {
    store
        .list_webhook_deliveries(None, Some(id), 10, 0)
        .await
        .unwrap()
        .1
}

#[allow(clippy::too_many_lines)] // one screening's three calls and its follow-up, in order
pub(crate) async fn retries_and_follow_ups(store: &Store) {
    const CALL_A: &str = "CA0000000000000000000000000000a001";
    const CALL_B: &str = "CA0000000000000000000000000000a002";
    const CALL_C: &str = "CA0000000000000000000000000000a003";
    let phone = "+14158675310";
    let id = requested(store, &candidate("retry-1", phone), retried(3)).await;
    store
        .mark_screening_initiated(id, CALL_A, FROM, T0 + 1)
        .await
        .unwrap();

    // Attempt 1: no answer. Scheduled again an hour after the call ended, call unlinked, the
    // follow-up due, no result webhook yet.
    store
        .record_call_status(&ended(CALL_A, "no-answer", T0 + 30_000))
        .await
        .unwrap();
    let s = store.screening(id).await.unwrap().unwrap();
    assert_eq!(
        (s.state.as_str(), s.attempt, s.call_sid.as_deref()),
        ("scheduled", 2, None)
    );
    assert_eq!(s.scheduled_for, Some(T0 + 30_000 + RETRY_MS));
    assert_eq!(s.follow_up.as_deref(), Some("due"));
    assert_eq!(deliveries(store, id).await, 0, "not ended for good");
    let attempts = store.screening_attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (
            attempts[0].attempt,
            attempts[0].call_sid.as_str(),
            attempts[0].state.as_str()
        ),
        (1, CALL_A, "no_answer")
    );
    assert!(store.call_placed_for_screening(CALL_A).await.unwrap());
    // A late callback of the missed call changes nothing.
    store
        .record_call_status(&ended(CALL_A, "no-answer", T0 + 31_000))
        .await
        .unwrap();
    assert_eq!(store.screening(id).await.unwrap().unwrap().attempt, 2);

    // The follow-up SMS: queued once, with its screening marked sent.
    assert!(
        store
            .follow_ups_due(10)
            .await
            .unwrap()
            .iter()
            .any(|s| s.id == id)
    );
    let sms = NewMessage {
        channel: "sms".into(),
        to: phone.into(),
        from: FROM.into(),
        body: "Sorry we missed you".into(),
        encoding: Some("GSM-7".into()),
        segments: Some(1),
        send_at: T0 + 31_000,
        zone: "America/Los_Angeles".into(),
        ..NewMessage::default()
    };
    let message = store
        .settle_follow_up(id, Some(&sms), T0 + 31_000)
        .await
        .unwrap()
        .expect("queued");
    assert_eq!(store.message(message).await.unwrap().unwrap().to, phone);
    assert_eq!(
        store
            .settle_follow_up(id, Some(&sms), T0 + 31_001)
            .await
            .unwrap(),
        None,
        "settled once"
    );
    assert_eq!(
        store
            .screening_awaiting_reply(phone)
            .await
            .unwrap()
            .map(|s| s.id),
        Some(id)
    );

    // Attempt 2: a machine answers. Voicemail while the message is left: no retry and no
    // webhook until the call has ended; then attempt 3 is scheduled.
    assert!(
        store
            .claim_scheduled_screening(id, FROM, T0 + RETRY_MS + 40_000)
            .await
            .unwrap()
    );
    store
        .mark_screening_initiated(id, CALL_B, FROM, T0 + RETRY_MS + 40_001)
        .await
        .unwrap();
    store
        .record_call_status(&ended(CALL_B, "in-progress", T0 + RETRY_MS + 50_000))
        .await
        .unwrap();
    store
        .record_amd(&AmdEvent {
            call_sid: CALL_B.into(),
            answered_by: "machine_end_beep".into(),
            detection_ms: Some(3_000),
            params_json: "{}".into(),
            received_at_ms: T0 + RETRY_MS + 53_000,
        })
        .await
        .unwrap();
    let s = store.screening(id).await.unwrap().unwrap();
    assert_eq!((s.state.as_str(), s.attempt), ("voicemail", 2));
    assert_eq!(deliveries(store, id).await, 0, "a retry is still wanted");
    store
        .record_call_status(&ended(CALL_B, "completed", T0 + RETRY_MS + 70_000))
        .await
        .unwrap();
    let s = store.screening(id).await.unwrap().unwrap();
    assert_eq!((s.state.as_str(), s.attempt), ("scheduled", 3));
    assert_eq!(s.follow_up.as_deref(), Some("sent"), "one follow-up only");

    // Attempt 3, the last: busy. Ended for good, with one result webhook.
    assert!(
        store
            .claim_scheduled_screening(id, FROM, T0 + 2 * RETRY_MS + 80_000)
            .await
            .unwrap()
    );
    store
        .mark_screening_initiated(id, CALL_C, FROM, T0 + 2 * RETRY_MS + 80_001)
        .await
        .unwrap();
    store
        .record_call_status(&ended(CALL_C, "busy", T0 + 2 * RETRY_MS + 90_000))
        .await
        .unwrap();
    let s = store.screening(id).await.unwrap().unwrap();
    assert_eq!(
        (s.state.as_str(), s.attempt, s.call_sid.as_deref()),
        ("no_answer", 3, Some(CALL_C))
    );
    assert_eq!(deliveries(store, id).await, 1);
    let attempts: Vec<_> = store
        .screening_attempts(id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.attempt, a.state))
        .collect();
    assert_eq!(
        attempts,
        [(1, "no_answer".to_owned()), (2, "voicemail".to_owned())]
    );
    assert_eq!(store.screening_awaiting_reply(phone).await.unwrap(), None);
    assert!(s_ended(store, id).await, "ended for good");

    // The agent's record of a missed attempt (after the retry unlinked its call) stays with the
    // attempt: no screening is made for it.
    store
        .record_screening_session(&voxbridge_store::ScreeningSession {
            call_sid: CALL_A.into(),
            direction: Some("outbound-api".into()),
            to: Some(phone.into()),
            outcome: "no_answer".into(),
            ..voxbridge_store::ScreeningSession::default()
        })
        .await
        .unwrap();
    assert_eq!(store.screening_for_call(CALL_A).await.unwrap(), None);
    assert_eq!(
        store.screening_attempts(id).await.unwrap()[0]
            .outcome
            .as_deref(),
        Some("no_answer")
    );
    let (threads, _) = store.message_threads(1_000, 0).await.unwrap();
    let thread = threads
        .iter()
        .find(|t| t.address == phone)
        .expect("a thread");
    assert_eq!((thread.messages, thread.inbound), (1, 0));
}

async fn s_ended(store: &Store, id: i64) -> bool {
    store
        .screening(id)
        .await
        .unwrap()
        .unwrap()
        .ended_at
        .is_some()
}

/// A machine's answer arriving after the call completed never reopens a screening that ended
/// for good (its result already queued).
pub(crate) async fn a_late_machine_answer_does_not_reopen(store: &Store) {
    const CALL: &str = "CA0000000000000000000000000000a00e";
    let id = requested(store, &candidate("late-amd", "+14158675314"), retried(3)).await;
    store
        .mark_screening_initiated(id, CALL, FROM, T0 + 1)
        .await
        .unwrap();
    store
        .record_call_status(&ended(CALL, "completed", T0 + 60_000))
        .await
        .unwrap();
    assert!(s_ended(store, id).await);
    assert_eq!(deliveries(store, id).await, 1);
    store
        .record_amd(&AmdEvent {
            call_sid: CALL.into(),
            answered_by: "machine_start".into(),
            detection_ms: Some(4_000),
            params_json: "{}".into(),
            received_at_ms: T0 + 61_000,
        })
        .await
        .unwrap();
    let s = store.screening(id).await.unwrap().unwrap();
    assert_eq!(
        (s.attempt, s.call_sid.as_deref()),
        (1, Some(CALL)),
        "not retried"
    );
    assert_eq!(deliveries(store, id).await, 1);
}

/// Retries de-duplicated per candidate and script, a refused create never retried, and STOP
/// ending outreach.
pub(crate) async fn what_is_not_retried(store: &Store) {
    const CALL_D: &str = "CA0000000000000000000000000000a004";
    // De-duplicated: a missed call is not retried while the same candidate has another
    // screening of the same script under way; it ends for good at once.
    let first = requested(store, &candidate("retry-dup", "+14158675311"), retried(3)).await;
    let _second = requested(store, &candidate("retry-dup", "+14158675311"), retried(3)).await;
    store
        .mark_screening_initiated(first, CALL_D, FROM, T0 + 5)
        .await
        .unwrap();
    store
        .record_call_status(&ended(CALL_D, "no-answer", T0 + 20_000))
        .await
        .unwrap();
    let s = store.screening(first).await.unwrap().unwrap();
    assert_eq!((s.state.as_str(), s.attempt), ("no_answer", 1));
    assert_eq!(deliveries(store, first).await, 1);

    // A create Twilio refused is not a missed call: never retried.
    let refused = requested(
        store,
        &candidate("retry-refused", "+14158675312"),
        retried(3),
    )
    .await;
    store
        .mark_screening_failed(refused, "21211 invalid To", T0 + 6)
        .await
        .unwrap();
    let s = store.screening(refused).await.unwrap().unwrap();
    assert_eq!((s.state.as_str(), s.attempt), ("failed", 1));
    assert_eq!(deliveries(store, refused).await, 1);

    // STOP ends outreach: scheduled screenings to that number are canceled, each reported.
    let stop_phone = "+14158675313";
    let waiting = match store
        .insert_screening_request(
            &candidate("retry-stop", stop_phone),
            None,
            None,
            Some(&callback()),
            Some(T0 + RETRY_MS),
            retried(3),
        )
        .await
        .unwrap()
    {
        KeyedInsert::Created(id) => id,
        other @ KeyedInsert::Existing { .. } => panic!("{other:?}"),
    };
    assert_eq!(
        store.end_outreach(stop_phone, T0 + 7).await.unwrap(),
        [waiting]
    );
    let s = store.screening(waiting).await.unwrap().unwrap();
    assert_eq!(s.state, "canceled");
    assert_eq!(deliveries(store, waiting).await, 1);
    assert!(
        store
            .end_outreach(stop_phone, T0 + 8)
            .await
            .unwrap()
            .is_empty()
    );
}

#[allow(clippy::too_many_lines)] // one campaign launched, followed, and sent again
pub(crate) async fn campaigns(store: &Store) {
    const CALL: &str = "CA0000000000000000000000000000c001";
    // A candidate with a screening under way is skipped by the campaign.
    let busy = requested(
        store,
        &candidate("camp-busy", "+14158675320"),
        Outreach::default(),
    )
    .await;
    // An opted-out number, and a candidate at the daily limit (1 here: camp-busy's screening
    // counts too), are skipped with their reasons.
    store
        .record_consent("+14158675329", "opted_out", Some("STOP"), Some("sms"), T0)
        .await
        .unwrap();
    let launch = [
        (candidate("camp-1", "+14158675321"), T0),
        (candidate("camp-2", "+442071234567"), T0 + 8 * 3_600_000),
        (candidate("camp-busy", "+14158675320"), T0),
        (candidate("camp-stop", "+14158675329"), T0),
    ];
    let (campaign, skipped) = store
        .insert_campaign(
            &NewCampaign {
                name: "Welders December".into(),
                screening: "default".into(),
                created_at_ms: T0,
            },
            &launch,
            retried(2),
            None,
            3,
        )
        .await
        .unwrap();
    assert_eq!(
        skipped,
        [
            ("camp-busy".to_owned(), "under_way"),
            ("camp-stop".to_owned(), "opted_out")
        ]
    );
    let campaign = campaign.expect("created");
    let record = store.campaign(campaign, T0 + 1).await.unwrap().unwrap();
    assert_eq!(
        (record.name.as_str(), record.total),
        ("Welders December", 2)
    );
    let p = &record.progress;
    assert_eq!(
        (p.total, p.queued, p.scheduled, p.calling, p.done),
        (2, 1, 1, 0, 0)
    );

    // The first is placed and missed: it waits for its retry.
    let (due, _) = store
        .list_screenings(&voxbridge_store::ScreeningFilter {
            candidate_id: Some("camp-1".into()),
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    let first = due[0].id;
    assert_eq!(due[0].campaign_id, Some(campaign));
    assert_eq!(due[0].max_attempts, 2);
    assert!(
        store
            .claim_scheduled_screening(first, FROM, T0 + 2)
            .await
            .unwrap()
    );
    store
        .mark_screening_initiated(first, CALL, FROM, T0 + 3)
        .await
        .unwrap();
    let p = store
        .campaign(campaign, T0 + 4)
        .await
        .unwrap()
        .unwrap()
        .progress;
    assert_eq!((p.queued, p.scheduled, p.calling), (0, 1, 1));
    store
        .record_call_status(&ended(CALL, "no-answer", T0 + 10_000))
        .await
        .unwrap();
    let p = store
        .campaign(campaign, T0 + 10_001)
        .await
        .unwrap()
        .unwrap()
        .progress;
    assert_eq!((p.scheduled, p.retrying, p.calling, p.done), (2, 1, 0, 0));
    // Its retry is canceled: done, counted by its result.
    store
        .cancel_scheduled_screening(first, T0 + 11_000)
        .await
        .unwrap();
    let p = store
        .campaign(campaign, T0 + 11_001)
        .await
        .unwrap()
        .unwrap()
        .progress;
    assert_eq!(p.done, 1);
    assert_eq!(p.done_by_outcome.get("canceled"), Some(&1));
    let (page, total) = store.list_campaigns(10, 0, T0 + 11_002).await.unwrap();
    assert!(total >= 1);
    assert_eq!(page[0].id, campaign);
    assert!(store.campaign(campaign + 1000, T0).await.unwrap().is_none());
    // Sent again while all are under way: nothing is recorded.
    let (again, skipped) = store
        .insert_campaign(
            &NewCampaign {
                name: "Welders December".into(),
                screening: "default".into(),
                created_at_ms: T0 + 12_000,
            },
            &launch[1..3],
            retried(2),
            None,
            3,
        )
        .await
        .unwrap();
    assert_eq!((again, skipped.len()), (None, 2));
    // At the daily limit.
    let (_, skipped) = store
        .insert_campaign(
            &NewCampaign {
                name: "Limit".into(),
                screening: "other".into(),
                created_at_ms: T0 + 13_000,
            },
            &[(
                NewScreening {
                    screening: "other".into(),
                    created_at_ms: T0 + 13_000,
                    ..candidate("camp-1", "+14158675321")
                },
                T0,
            )],
            retried(2),
            None,
            1,
        )
        .await
        .unwrap();
    assert_eq!(skipped, [("camp-1".to_owned(), "daily_limit")]);
    assert_eq!(store.list_campaigns(10, 0, T0).await.unwrap().1, total);
    let _ = busy;
}
