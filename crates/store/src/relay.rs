//! The ConversationRelay `<Connect action>` callback: how the relay session ended and the
//! handoff data it left.

use crate::events::{EventRow, record_event};
use crate::{EventOutcome, Store, StoreError};

/// The ConversationRelay `<Connect action>` callback.
#[derive(Debug, Clone, Default)]
pub struct RelaySessionEvent {
    /// `CallSid`.
    pub call_sid: String,
    /// `SessionId`.
    pub session_id: String,
    /// `SessionStatus`.
    pub session_status: String,
    /// `HandoffData`.
    pub handoff_data: Option<String>,
    /// Every received parameter, as a JSON object.
    pub params_json: String,
    /// When we received it (Unix ms).
    pub received_at_ms: i64,
}

impl Store {
    /// Stores the end of a ConversationRelay session. Idempotent.
    pub async fn record_relay_session(
        &self,
        event: &RelaySessionEvent,
    ) -> Result<EventOutcome, StoreError> {
        let dedupe = format!(
            "relay:{}:{}:{}",
            event.call_sid, event.session_id, event.session_status
        );
        let row = EventRow {
            call_sid: &event.call_sid,
            kind: "relay",
            status: &event.session_status,
            sequence_number: None,
            timestamp_ms: None,
            received_at_ms: event.received_at_ms,
            dedupe_key: &dedupe,
            params_json: &event.params_json,
        };
        record_event!(self, row, tx => {
            sqlx::query(
                "INSERT INTO calls (call_sid, relay_session_status, handoff_data, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (call_sid) DO UPDATE SET \
                 relay_session_status = excluded.relay_session_status, \
                 handoff_data = COALESCE(excluded.handoff_data, calls.handoff_data), \
                 updated_at = excluded.updated_at",
            )
            .bind(&event.call_sid)
            .bind(&event.session_status)
            .bind(&event.handoff_data)
            .bind(event.received_at_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        })
    }
}
