//! The result-webhook outbox: one delivery per ended screening that asked for one, claimed
//! under a lease, retried, dead-lettered and redelivered.

use voxbridge_store::{
    AttemptRecord, AttemptResult, ClaimRequest, NewScreening, ScreeningCallback, Store,
};

use super::status;

fn new(candidate: &str, at: i64) -> NewScreening {
    NewScreening {
        candidate_id: candidate.into(),
        first_name: "Ada".into(),
        phone: "+14155550777".into(),
        job_title: "Engineer".into(),
        screening: "default".into(),
        created_at_ms: at,
    }
}

/// Requests a screening with `callback` and links it to `call`; returns its id.
async fn requested(store: &Store, call: &str, callback: &ScreeningCallback, at: i64) -> i64 {
    let inserted = store
        .insert_requested_screening(
            &new(&format!("outbox-{call}"), at),
            "+14155550199",
            None,
            Some(callback),
        )
        .await
        .unwrap();
    let voxbridge_store::KeyedInsert::Created(id) = inserted else {
        panic!("expected a new screening, got {inserted:?}");
    };
    store
        .mark_screening_initiated(id, call, "+14155550199", at + 1)
        .await
        .unwrap();
    id
}

async fn rows_of(store: &Store, screening: i64) -> Vec<voxbridge_store::WebhookDelivery> {
    store
        .list_webhook_deliveries(None, Some(screening), 50, 0)
        .await
        .unwrap()
        .0
}

fn claim(now_ms: i64, token: &str) -> ClaimRequest<'_> {
    ClaimRequest {
        now_ms,
        settled_before_ms: now_ms,
        lease_until_ms: now_ms + 1_000,
        lease_token: token,
        limit: 10,
    }
}

fn attempt(id: i64, token: &str, now_ms: i64) -> AttemptRecord<'_> {
    AttemptRecord {
        id,
        lease_token: token,
        url: "http://127.0.0.1:9/ats",
        status: Some(500),
        error: Some("HTTP 500"),
        now_ms,
    }
}

#[allow(clippy::too_many_lines)] // one outbox story: enqueue, claim, lease, retry, dead, redeliver
pub(super) async fn result_webhooks(store: &Store) {
    const CALL: &str = "CA000000000000000000000000000000b1";
    const QUIET: &str = "CA000000000000000000000000000000b2";
    let callback = ScreeningCallback {
        url: Some("https://ats.example.com/hooks".into()),
        metadata: Some(serde_json::json!({"requisition": "R-7", "tags": ["night"]})),
        deliver: true,
    };
    let id = requested(store, CALL, &callback, 900_000).await;
    let screening = store.screening(id).await.unwrap().unwrap();
    assert_eq!(
        screening.callback_url.as_deref(),
        Some("https://ats.example.com/hooks")
    );
    assert_eq!(screening.metadata, callback.metadata);
    let quiet = requested(
        store,
        QUIET,
        &ScreeningCallback {
            metadata: Some(serde_json::json!({"k": 1})),
            ..ScreeningCallback::default()
        },
        900_000,
    )
    .await;

    // Not ended yet: nothing queued.
    store
        .record_call_status(&status(CALL, "in-progress", Some(1), 900_010))
        .await
        .unwrap();
    assert!(rows_of(store, id).await.is_empty());
    // Ended: one delivery. The same webhook again, another terminal status, and the agent's
    // result after it add none.
    for event in [
        status(CALL, "completed", Some(2), 900_020),
        status(CALL, "completed", Some(2), 900_020),
        status(CALL, "completed", Some(3), 900_030),
    ] {
        store.record_call_status(&event).await.unwrap();
    }
    store
        .save_screening_result(
            CALL,
            &serde_json::json!({"years": 3}),
            "qualified",
            None,
            900_040,
        )
        .await
        .unwrap();
    let rows = rows_of(store, id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let delivery = rows[0].clone();
    assert_eq!(
        (
            delivery.state.as_str(),
            delivery.attempts,
            delivery.created_at
        ),
        ("pending", 0, 900_020)
    );
    // A screening that wants no delivery gets none.
    store
        .record_call_status(&status(QUIET, "completed", Some(2), 900_020))
        .await
        .unwrap();
    assert!(rows_of(store, quiet).await.is_empty());

    // Not settled yet: not claimed.
    let early = ClaimRequest {
        settled_before_ms: 900_000,
        ..claim(900_050, "early")
    };
    assert!(
        store
            .claim_webhook_deliveries(&early)
            .await
            .unwrap()
            .iter()
            .all(|c| c.id != delivery.id)
    );
    // Claimed once; a second claim during the lease gets nothing.
    let claimed = store
        .claim_webhook_deliveries(&claim(900_100, "w1"))
        .await
        .unwrap();
    let mine: Vec<_> = claimed.iter().filter(|c| c.id == delivery.id).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!((mine[0].attempts, mine[0].payload.as_deref()), (1, None));
    assert!(
        store
            .claim_webhook_deliveries(&claim(900_200, "w2"))
            .await
            .unwrap()
            .iter()
            .all(|c| c.id != delivery.id)
    );
    let frozen = store
        .freeze_webhook_payload(delivery.id, "w1", r#"{"n":1}"#)
        .await
        .unwrap();
    assert_eq!(frozen.as_deref(), Some(r#"{"n":1}"#));
    // The lease runs out (the worker died): another worker claims it, with the frozen body,
    // and the first one can no longer record a result.
    let reclaimed = store
        .claim_webhook_deliveries(&claim(901_100, "w3"))
        .await
        .unwrap();
    let again = reclaimed.iter().find(|c| c.id == delivery.id).unwrap();
    assert_eq!(
        (again.attempts, again.payload.as_deref()),
        (2, Some(r#"{"n":1}"#))
    );
    assert_eq!(
        store
            .freeze_webhook_payload(delivery.id, "w3", r#"{"n":2}"#)
            .await
            .unwrap()
            .as_deref(),
        Some(r#"{"n":1}"#),
        "the body is frozen by the first attempt"
    );
    assert!(
        !store
            .finish_webhook_attempt(
                &attempt(delivery.id, "w1", 901_150),
                &AttemptResult::Delivered
            )
            .await
            .unwrap()
    );
    // A retry is not due before its time.
    assert!(
        store
            .finish_webhook_attempt(
                &attempt(delivery.id, "w3", 901_200),
                &AttemptResult::Retry { at_ms: 905_000 }
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_webhook_deliveries(&claim(904_999, "w4"))
            .await
            .unwrap()
            .iter()
            .all(|c| c.id != delivery.id)
    );
    let claimed = store
        .claim_webhook_deliveries(&claim(905_000, "w5"))
        .await
        .unwrap();
    assert!(
        claimed
            .iter()
            .any(|c| c.id == delivery.id && c.attempts == 3)
    );
    assert!(
        store
            .finish_webhook_attempt(&attempt(delivery.id, "w5", 905_010), &AttemptResult::Dead)
            .await
            .unwrap()
    );
    let (dead, total) = store
        .list_webhook_deliveries(Some("dead"), None, 50, 0)
        .await
        .unwrap();
    assert!(total >= 1);
    let dead = dead.into_iter().find(|d| d.id == delivery.id).unwrap();
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.last_status, Some(500));
    assert_eq!(dead.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(dead.payload, Some(serde_json::json!({"n": 1})));
    assert!(
        store
            .claim_webhook_deliveries(&claim(999_000, "w6"))
            .await
            .unwrap()
            .iter()
            .all(|c| c.id != delivery.id),
        "a dead delivery is not attempted again"
    );

    // Redelivery: back to pending with a fresh count, same id and body.
    let (requeued, back) = store
        .redeliver_webhook(delivery.id, 999_100)
        .await
        .unwrap()
        .unwrap();
    assert!(requeued);
    assert_eq!((back.state.as_str(), back.attempts), ("pending", 0));
    let (requeued, _) = store
        .redeliver_webhook(delivery.id, 999_101)
        .await
        .unwrap()
        .unwrap();
    assert!(!requeued, "a pending delivery is not requeued again");
    assert!(store.redeliver_webhook(-5, 0).await.unwrap().is_none());
    let claimed = store
        .claim_webhook_deliveries(&claim(999_200, "w7"))
        .await
        .unwrap();
    let last = claimed.iter().find(|c| c.id == delivery.id).unwrap();
    assert_eq!(
        (last.attempts, last.payload.as_deref()),
        (1, Some(r#"{"n":1}"#))
    );
    assert!(
        store
            .finish_webhook_attempt(
                &AttemptRecord {
                    status: Some(204),
                    error: None,
                    ..attempt(delivery.id, "w7", 999_300)
                },
                &AttemptResult::Delivered
            )
            .await
            .unwrap()
    );
    let delivered = store.webhook_delivery(delivery.id).await.unwrap().unwrap();
    assert_eq!(
        (delivered.state.as_str(), delivered.delivered_at),
        ("delivered", Some(999_300))
    );
    let counts = store.webhook_delivery_counts().await.unwrap();
    assert!(counts[1] >= 1, "{counts:?}");

    // A screening whose call create Twilio refused ends `failed`: queued too.
    let refused = store
        .insert_requested_screening(
            &new("outbox-refused", 910_000),
            "+14155550199",
            None,
            Some(&callback),
        )
        .await
        .unwrap();
    let voxbridge_store::KeyedInsert::Created(refused) = refused else {
        panic!("{refused:?}");
    };
    store
        .mark_screening_failed(refused, "Twilio: invalid number", 910_001)
        .await
        .unwrap();
    let rows = rows_of(store, refused).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].created_at, 910_001);
}
