//! Recording status callbacks: the call's recording SID, URL, status and duration.

use crate::events::{EventRow, record_event};
use crate::{EventOutcome, Store, StoreError};

/// A recording status callback.
#[derive(Debug, Clone, Default)]
pub struct RecordingEvent {
    /// `CallSid`.
    pub call_sid: String,
    /// `RecordingSid`.
    pub recording_sid: String,
    /// `RecordingStatus`.
    pub status: String,
    /// `RecordingUrl`.
    pub url: Option<String>,
    /// `RecordingDuration` in seconds.
    pub duration_seconds: Option<i64>,
    /// Every received parameter, as a JSON object.
    pub params_json: String,
    /// When we received it (Unix ms).
    pub received_at_ms: i64,
}

impl Store {
    /// Stores a recording status; `completed`/`absent` stick over `in-progress`. Idempotent.
    pub async fn record_recording(
        &self,
        event: &RecordingEvent,
    ) -> Result<EventOutcome, StoreError> {
        let dedupe = format!(
            "recording:{}:{}:{}",
            event.call_sid, event.recording_sid, event.status
        );
        let row = EventRow {
            call_sid: &event.call_sid,
            kind: "recording",
            status: &event.status,
            sequence_number: None,
            timestamp_ms: None,
            received_at_ms: event.received_at_ms,
            dedupe_key: &dedupe,
            params_json: &event.params_json,
        };
        record_event!(self, row, tx => {
            sqlx::query(
                "INSERT INTO calls (call_sid, recording_sid, recording_url, recording_status, \
                 recording_duration_seconds, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (call_sid) DO UPDATE SET \
                 recording_sid = excluded.recording_sid, \
                 recording_url = COALESCE(excluded.recording_url, calls.recording_url), \
                 recording_status = excluded.recording_status, \
                 recording_duration_seconds = COALESCE(excluded.recording_duration_seconds, calls.recording_duration_seconds), \
                 updated_at = excluded.updated_at \
                 WHERE calls.recording_status IS NULL \
                    OR calls.recording_status NOT IN ('completed', 'absent')",
            )
            .bind(&event.call_sid)
            .bind(&event.recording_sid)
            .bind(&event.url)
            .bind(&event.status)
            .bind(event.duration_seconds)
            .bind(event.received_at_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        })
    }
}
