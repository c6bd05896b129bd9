//! The behaviour checks, shared by the SQLite and the PostgreSQL test.

mod calls;
mod columns;
mod console;
mod intents;
mod messages;
mod outreach;
mod screenings;
mod states;
mod webhook_outbox;

use voxbridge_store::{CallStatusEvent, Store};

pub(crate) use columns::{CORRUPT_JSON, invalid_json_names_its_column};
pub(crate) use states::{migrated_by_6, rewind_to_v5, rows_for_migration_6};

pub(crate) fn status(call: &str, status: &str, seq: Option<i64>, at: i64) -> CallStatusEvent {
    CallStatusEvent {
        call_sid: call.to_owned(),
        status: status.to_owned(),
        sequence_number: seq,
        timestamp_ms: None,
        direction: Some("outbound-api".to_owned()),
        from: Some("+14155550199".to_owned()),
        to: Some("+14158675309".to_owned()),
        params_json: format!(r#"{{"CallStatus":"{status}"}}"#),
        received_at_ms: at,
        ..CallStatusEvent::default()
    }
}

pub(crate) const CALL1: &str = "CA00000000000000000000000000000001";
pub(crate) const CALL4: &str = "CA00000000000000000000000000000004";

pub(crate) async fn behaviour(store: &Store) {
    assert_eq!(
        store.applied_migrations().await.unwrap(),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    );
    store.migrate().await.expect("migrations are idempotent");
    store.ping().await.unwrap();

    calls::out_of_order_statuses(store).await;
    calls::sql_matches_the_pure_rule(store).await;
    calls::side_events_create_unknown_calls(store).await;
    screenings::screenings(store).await;
    screenings::scheduled_screenings(store).await;
    calls::listing(store).await;
    calls::audit_and_consent(store).await;
    // These add calls, so they run after `listing` counted the calls above.
    screenings::screening_sessions(store).await;
    calls::sequence_numbers_order_non_terminal_statuses(store).await;
    screenings::media_calls(store).await;
    intents::inbound_claims(store).await;
    intents::screening_intents(store).await;
    intents::idempotency_keys(store).await;
    states::screening_states(store).await;
    messages::queue_leases_and_statuses(store).await;
    messages::templates_keep_their_sid_and_variables(store).await;
    columns::every_column_reads_back(store).await;
    columns::store_call_to_corrupt(store).await;
    console::console(store).await;
    webhook_outbox::result_webhooks(store).await;
    outreach::retries_and_follow_ups(store).await;
    outreach::what_is_not_retried(store).await;
    outreach::a_late_machine_answer_does_not_reopen(store).await;
    outreach::campaigns(store).await;
}
