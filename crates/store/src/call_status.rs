//! Call progress: `StatusCallback` events move a call's status forward, never back (the rule
//! of [`crate::supersedes`], written here as SQL), and asynchronous AMD results set who
//! answered.

use crate::events::{EventRow, record_event};
use crate::order::{is_terminal, status_rank};
use crate::screening_state::sync_screening;
use crate::{EventOutcome, Store, StoreError};

/// A call-progress event (`StatusCallback`).
#[derive(Debug, Clone, Default)]
pub struct CallStatusEvent {
    /// `CallSid`.
    pub call_sid: String,
    /// `CallStatus`.
    pub status: String,
    /// `SequenceNumber`.
    pub sequence_number: Option<i64>,
    /// `Timestamp` in Unix milliseconds.
    pub timestamp_ms: Option<i64>,
    /// `Direction`.
    pub direction: Option<String>,
    /// `From`.
    pub from: Option<String>,
    /// `To`.
    pub to: Option<String>,
    /// `CallDuration` in seconds.
    pub duration_seconds: Option<i64>,
    /// `AnsweredBy` (synchronous AMD).
    pub answered_by: Option<String>,
    /// `RecordingUrl`.
    pub recording_url: Option<String>,
    /// `RecordingSid`.
    pub recording_sid: Option<String>,
    /// Every received parameter, as a JSON object.
    pub params_json: String,
    /// When we received it (Unix ms).
    pub received_at_ms: i64,
}

/// An asynchronous AMD result.
#[derive(Debug, Clone, Default)]
pub struct AmdEvent {
    /// `CallSid`.
    pub call_sid: String,
    /// `AnsweredBy`.
    pub answered_by: String,
    /// `MachineDetectionDuration` in ms.
    pub detection_ms: Option<i64>,
    /// Every received parameter, as a JSON object.
    pub params_json: String,
    /// When we received it (Unix ms).
    pub received_at_ms: i64,
}

/// The status upsert: inserts the call or moves it forward, never back. The `WHERE` is the SQL
/// form of [`crate::supersedes`].
const UPSERT_STATUS: &str = "INSERT INTO calls (call_sid, direction, from_number, to_number, \
    status, status_rank, status_terminal, status_seq, status_ts, duration_seconds, answered_by, \
    recording_url, recording_sid, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) \
    ON CONFLICT (call_sid) DO UPDATE SET \
      direction = COALESCE(calls.direction, excluded.direction), \
      from_number = COALESCE(calls.from_number, excluded.from_number), \
      to_number = COALESCE(calls.to_number, excluded.to_number), \
      status = excluded.status, status_rank = excluded.status_rank, \
      status_terminal = excluded.status_terminal, status_seq = excluded.status_seq, \
      status_ts = excluded.status_ts, \
      duration_seconds = COALESCE(excluded.duration_seconds, calls.duration_seconds), \
      answered_by = COALESCE(calls.answered_by, excluded.answered_by), \
      recording_url = COALESCE(excluded.recording_url, calls.recording_url), \
      recording_sid = COALESCE(excluded.recording_sid, calls.recording_sid), \
      updated_at = excluded.updated_at \
    WHERE calls.status IS NULL OR (calls.status_terminal = 0 AND ( \
      excluded.status_terminal = 1 OR CASE \
        WHEN excluded.status_seq IS NOT NULL AND calls.status_seq IS NOT NULL \
          THEN excluded.status_seq > calls.status_seq \
        WHEN excluded.status_ts IS NOT NULL AND calls.status_ts IS NOT NULL \
             AND excluded.status_ts <> calls.status_ts \
          THEN excluded.status_ts > calls.status_ts \
        ELSE excluded.status_rank > calls.status_rank END))";

impl Store {
    /// Stores a call-progress event and moves the call's status forward if the event is newer
    /// (see [`crate::supersedes`]), and its screening's state with it. Unknown `CallSid`s
    /// create the call. Committed on return.
    pub async fn record_call_status(
        &self,
        event: &CallStatusEvent,
    ) -> Result<EventOutcome, StoreError> {
        let dedupe = match event.sequence_number {
            Some(seq) => format!("status:{}:{seq}", event.call_sid),
            None => format!(
                "status:{}:{}:{}",
                event.call_sid,
                event.status,
                event.timestamp_ms.unwrap_or_default()
            ),
        };
        let row = EventRow {
            call_sid: &event.call_sid,
            kind: "status",
            status: &event.status,
            sequence_number: event.sequence_number,
            timestamp_ms: event.timestamp_ms,
            received_at_ms: event.received_at_ms,
            dedupe_key: &dedupe,
            params_json: &event.params_json,
        };
        record_event!(self, row, tx => {
            let applied = sqlx::query(UPSERT_STATUS)
                .bind(&event.call_sid)
                .bind(&event.direction)
                .bind(&event.from)
                .bind(&event.to)
                .bind(&event.status)
                .bind(status_rank(&event.status))
                .bind(i64::from(is_terminal(&event.status)))
                .bind(event.sequence_number)
                .bind(event.timestamp_ms)
                .bind(event.duration_seconds)
                .bind(&event.answered_by)
                .bind(&event.recording_url)
                .bind(&event.recording_sid)
                .bind(event.received_at_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sync_screening!(tx, &event.call_sid, event.received_at_ms);
            applied
        })
    }

    /// Stores an asynchronous AMD result on the call (a machine makes its screening
    /// `voicemail`). Idempotent.
    pub async fn record_amd(&self, event: &AmdEvent) -> Result<EventOutcome, StoreError> {
        let dedupe = format!("amd:{}", event.call_sid);
        let row = EventRow {
            call_sid: &event.call_sid,
            kind: "amd",
            status: &event.answered_by,
            sequence_number: None,
            timestamp_ms: None,
            received_at_ms: event.received_at_ms,
            dedupe_key: &dedupe,
            params_json: &event.params_json,
        };
        record_event!(self, row, tx => {
            let applied = sqlx::query(
                "INSERT INTO calls (call_sid, answered_by, amd_duration_ms, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (call_sid) DO UPDATE SET \
                 answered_by = excluded.answered_by, amd_duration_ms = excluded.amd_duration_ms, \
                 updated_at = excluded.updated_at",
            )
            .bind(&event.call_sid)
            .bind(&event.answered_by)
            .bind(event.detection_ms)
            .bind(event.received_at_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sync_screening!(tx, &event.call_sid, event.received_at_ms);
            applied
        })
    }
}
