//! Inbound call claims (one decision per `CallSid`) and screening call intents.

use voxbridge_store::{
    IdempotencyKey, InboundClaim, KeyedInsert, NewScreening, RateLimitDecision, Store,
};

pub(super) async fn inbound_claims(store: &Store) {
    let sid = "CA00000000000000000000000000000c1a";
    assert_eq!(
        store
            .claim_inbound_call(sid, "+14158675309", 1_000, 0)
            .await
            .unwrap(),
        InboundClaim::Claimed
    );
    assert_eq!(
        store
            .claim_inbound_call(sid, "+14158675309", 1_001, 0)
            .await
            .unwrap(),
        InboundClaim::Pending,
        "a second delivery while the first decides"
    );
    let decision = RateLimitDecision {
        number: "+14158675309".to_owned(),
        allowed: true,
        recent_count: 3,
        decided_at_ms: 1_002,
    };
    store
        .decide_inbound_call(sid, "allowed", &decision, "<Response/>")
        .await
        .unwrap();
    let InboundClaim::Decided(decided) = store
        .claim_inbound_call(sid, "+14158675309", 99_000, 50_000)
        .await
        .unwrap()
    else {
        panic!("a decided call stays decided");
    };
    assert_eq!(
        (
            decided.decision.as_str(),
            decided.recent_count,
            decided.twiml.as_str()
        ),
        ("allowed", 3, "<Response/>")
    );
    let audit = store.rate_limit_decisions("+14158675309").await.unwrap();
    assert_eq!(audit.last(), Some(&decision));
    // An undecided claim older than the stale mark is taken over.
    let stale = "CA00000000000000000000000000000c1b";
    store
        .claim_inbound_call(stale, "other:ab", 1_000, 0)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_inbound_call(stale, "other:ab", 40_000, 2_000)
            .await
            .unwrap(),
        InboundClaim::Claimed
    );
}

pub(super) async fn screening_intents(store: &Store) {
    let new = |phone: &str, at: i64| NewScreening {
        candidate_id: format!("intent-{phone}"),
        first_name: "Ada".into(),
        phone: phone.into(),
        job_title: "Engineer".into(),
        screening: "default".into(),
        created_at_ms: at,
    };
    let a = store
        .insert_screening_intent(&new("+14155550001", 10_000), "+14155550199")
        .await
        .unwrap();
    let b = store
        .insert_screening_intent(&new("+14155550002", 20_000), "+14155550199")
        .await
        .unwrap();
    let c = store
        .insert_screening_intent(&new("+14155550003", 30_000), "+14155550199")
        .await
        .unwrap();
    let open = store.open_screening_intents(25_000).await.unwrap();
    assert_eq!(
        open.iter().map(|i| i.screening_id).collect::<Vec<_>>(),
        [a, b],
        "open intents recorded by then, oldest first"
    );
    assert_eq!(open[0].to_number, "+14155550001");
    assert_eq!(open[0].from_number, "+14155550199");
    assert_eq!(open[0].created_at, 10_000);
    store
        .mark_screening_initiated(
            a,
            "CA000000000000000000000000000001a0",
            "+14155550199",
            31_000,
        )
        .await
        .unwrap();
    store
        .mark_screening_failed(b, "no call", 31_000)
        .await
        .unwrap();
    store
        .mark_screening_uncertain(c, "timed out", 31_000)
        .await
        .unwrap();
    let open = store.open_screening_intents(40_000).await.unwrap();
    assert_eq!(
        open.iter().map(|i| i.screening_id).collect::<Vec<_>>(),
        [c],
        "linked and failed screenings close their intents; an uncertain one stays open"
    );
    let screening = store.screening(a).await.unwrap().unwrap();
    assert_eq!(screening.state, "calling");
    assert_eq!(store.screening(b).await.unwrap().unwrap().state, "failed");
}

/// One screening per `Idempotency-Key`: the second insert records nothing (no screening, no
/// intent) and names the first screening and its request digest.
pub(super) async fn idempotency_keys(store: &Store) {
    let new = NewScreening {
        candidate_id: "keyed".into(),
        first_name: "Ada".into(),
        phone: "+14155550042".into(),
        job_title: "Engineer".into(),
        screening: "default".into(),
        created_at_ms: 50_000,
    };
    let key = |hash: &str| IdempotencyKey {
        key: "store-key".into(),
        request_hash: hash.into(),
    };
    assert_eq!(
        store
            .screening_for_idempotency_key("store-key")
            .await
            .unwrap(),
        None
    );
    let KeyedInsert::Created(id) = store
        .insert_keyed_screening_intent(&new, "+14155550199", Some(&key("h1")))
        .await
        .unwrap()
    else {
        panic!("a new key creates");
    };
    let existing = KeyedInsert::Existing {
        screening_id: id,
        request_hash: "h1".into(),
    };
    let again = store
        .insert_keyed_screening_intent(&new, "+14155550199", Some(&key("h2")))
        .await
        .unwrap();
    assert_eq!(again, existing);
    assert_eq!(
        store
            .screening_for_idempotency_key("store-key")
            .await
            .unwrap(),
        Some(existing)
    );
    assert_eq!(
        store.count_screenings_since("keyed", 0).await.unwrap(),
        1,
        "the refused insert left no screening"
    );
    let open = store.open_screening_intents(60_000).await.unwrap();
    assert_eq!(
        open.iter()
            .filter(|i| i.to_number == "+14155550042")
            .count(),
        1,
        "and no intent"
    );
}
