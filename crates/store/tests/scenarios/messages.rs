//! The message queue: claims under a lease, reclaim after the lease, only the holder settles
//! a claim, status callbacks only move forward, inbound messages once per SID, consent log.

use voxbridge_store::{NewMessage, Store};

fn message(to: &str, from: &str, send_at: i64) -> NewMessage {
    NewMessage {
        channel: "sms".to_owned(),
        to: to.to_owned(),
        from: from.to_owned(),
        body: "hello".to_owned(),
        encoding: Some("GSM-7".to_owned()),
        segments: Some(1),
        content_sid: None,
        content_variables: None,
        send_at,
        hold_reason: None,
        zone: "America/Los_Angeles".to_owned(),
    }
}

#[allow(clippy::too_many_lines)] // one queue story: schedule, claim, lease, statuses in any order
pub(crate) async fn queue_leases_and_statuses(store: &Store) {
    let t0 = 1_800_000_000_000;
    let from = "+14155550111";
    let due = store
        .insert_message(&message("+14155550001", from, t0), t0)
        .await
        .unwrap();
    let later = store
        .insert_message(&message("+14155550002", from, t0 + 60_000), t0)
        .await
        .unwrap();
    assert_eq!(
        store.due_message_senders(t0).await.unwrap(),
        [(from.to_owned(), 1)]
    );
    let claimed = store
        .claim_messages(from, "a", t0, 30_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.iter().map(|m| m.id).collect::<Vec<_>>(), [due]);
    assert_eq!(claimed[0].attempts, 1);
    // Held by "a": nobody else gets it until the lease runs out.
    assert!(
        store
            .claim_messages(from, "b", t0 + 29_999, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let reclaimed = store
        .claim_messages(from, "b", t0 + 30_001, 30_000, 10)
        .await
        .unwrap();
    assert_eq!(reclaimed.len(), 1, "the expired lease is claimed again");
    assert_eq!(reclaimed[0].attempts, 2);
    // "a" lost the claim: its late answer changes nothing.
    assert!(
        !store
            .message_accepted(due, "a", "SM1", "queued", t0 + 30_002)
            .await
            .unwrap()
    );
    assert!(
        store
            .message_accepted(due, "b", "SM1", "queued", t0 + 30_002)
            .await
            .unwrap()
    );
    // Callbacks out of order: delivered, then a late sent.
    assert!(
        store
            .message_status("SM1", "delivered", None, t0 + 40_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .message_status("SM1", "sent", None, t0 + 40_001)
            .await
            .unwrap()
    );
    assert!(
        !store
            .message_status("SM1", "delivered", None, t0 + 40_002)
            .await
            .unwrap()
    );
    let stored = store.message(due).await.unwrap().unwrap();
    assert_eq!(
        (stored.status.as_str(), stored.sent_at),
        ("delivered", Some(t0 + 30_002))
    );

    // A retry is rescheduled with its error; a permanent failure is final.
    let claimed = store
        .claim_messages(from, "a", t0 + 60_000, 30_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed[0].id, later);
    assert!(
        store
            .message_reschedule(
                later,
                "a",
                t0 + 70_000,
                "retry",
                Some((20429, "too many requests")),
                t0 + 60_000
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_messages(from, "a", t0 + 69_999, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .claim_messages(from, "a", t0 + 70_000, 30_000, 10)
        .await
        .unwrap();
    assert_eq!((again[0].attempts, again[0].error_code), (2, Some(20429)));
    assert!(
        store
            .message_failed(later, "a", Some(21610), "unsubscribed", t0 + 70_001)
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_messages(from, "a", t0 + 999_999, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(
        store
            .record_inbound_message("SMin1", "sms", "+14155550001", from, "hi", t0)
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_inbound_message("SMin1", "sms", "+14155550001", from, "hi", t0)
            .await
            .unwrap()
    );
    let stats = store.message_stats(t0 + 80_000).await.unwrap();
    assert_eq!(
        (
            stats.queue_depth,
            stats.sent_24h,
            stats.delivered_24h,
            stats.failed_24h,
            stats.received_24h
        ),
        (0, 1, 1, 1, 1)
    );
    assert_eq!(stats.last_sent_at, Some(t0 + 30_002));
    let thread = store.message_thread("+14155550001", 10).await.unwrap();
    assert_eq!(thread.len(), 2);

    // A callback that beats the send's commit is applied by the commit.
    let early = store
        .insert_message(&message("+14155550003", from, t0), t0)
        .await
        .unwrap();
    store
        .claim_messages(from, "a", t0 + 90_000, 30_000, 10)
        .await
        .unwrap();
    assert!(
        !store
            .message_status("SM3", "delivered", None, t0 + 90_001)
            .await
            .unwrap()
    );
    assert!(
        store
            .message_accepted(early, "a", "SM3", "queued", t0 + 90_002)
            .await
            .unwrap()
    );
    assert_eq!(
        store.message(early).await.unwrap().unwrap().status,
        "delivered"
    );

    store
        .record_consent("+14155550001", "opted_out", Some("STOP"), Some("sms"), t0)
        .await
        .unwrap();
    store
        .record_consent(
            "+14155550001",
            "opted_in",
            Some("START"),
            Some("whatsapp"),
            t0 + 1,
        )
        .await
        .unwrap();
    assert_eq!(
        store.sms_consent("+14155550001").await.unwrap().as_deref(),
        Some("opted_in")
    );
    let history = store.consent_history("+14155550001").await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|e| (e.status.as_str(), e.channel.as_deref()))
            .collect::<Vec<_>>(),
        [("opted_out", Some("sms")), ("opted_in", Some("whatsapp"))]
    );
}

/// A WhatsApp template is stored with its SID and variables and read back nested (migration 11).
pub(crate) async fn templates_keep_their_sid_and_variables(store: &Store) {
    let t0 = 1_800_000_000_000;
    let mut template = message("whatsapp:+14155550003", "whatsapp:+14155550111", t0);
    "whatsapp".clone_into(&mut template.channel);
    template.body = String::new();
    template.encoding = None;
    template.segments = None;
    template.content_sid = Some("HX0123456789abcdef0123456789abcdef".to_owned());
    template.content_variables = Some(r#"{"1":"Ada"}"#.to_owned());
    let id = store.insert_message(&template, t0).await.unwrap();
    let record = store.message(id).await.unwrap().unwrap();
    assert_eq!(
        record.content_sid.as_deref(),
        Some("HX0123456789abcdef0123456789abcdef")
    );
    let json = serde_json::to_value(&record).unwrap();
    assert_eq!(json["contentVariables"], serde_json::json!({"1": "Ada"}));
    assert!(
        json["segments"].is_null() && json["encoding"].is_null(),
        "{json}"
    );
    let claimed = store
        .claim_messages("whatsapp:+14155550111", "a", t0, 30_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].content_sid, record.content_sid);
    assert_eq!(claimed[0].content_variables, record.content_variables);
}
