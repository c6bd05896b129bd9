//! The records and the queries that write and read them.

use serde::Serialize;
use sqlx::Row as _;

use crate::order::{is_terminal, status_rank};
use crate::{Pools, Store, StoreError, on_reader, on_writer};

/// What happened to a webhook event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EventOutcome {
    /// The same event was stored before (a retried or duplicated webhook).
    pub duplicate: bool,
    /// The event changed the call's current state (false when an older status arrived late).
    pub applied: bool,
}

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

/// A screening request before Twilio was asked to call.
#[derive(Debug, Clone, Default)]
pub struct NewScreening {
    /// The recruiter system's candidate id.
    pub candidate_id: String,
    /// Candidate's first name.
    pub first_name: String,
    /// E.164 phone number.
    pub phone: String,
    /// Job title.
    pub job_title: String,
    /// Screening script id.
    pub screening: String,
    /// When it was requested (Unix ms).
    pub created_at_ms: i64,
}

/// A stored screening.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScreeningRecord {
    /// Row id.
    pub id: i64,
    /// The call, once Twilio created it.
    pub call_sid: Option<String>,
    /// Candidate id.
    pub candidate_id: String,
    /// First name.
    pub first_name: String,
    /// Phone number (E.164).
    pub phone: String,
    /// Job title.
    pub job_title: String,
    /// Screening id.
    pub screening: String,
    /// `requested`, `initiated` or `create_failed`.
    pub state: String,
    /// Why creating the call failed.
    pub error: Option<String>,
    /// Answers as JSON (set by the agent).
    pub answers: Option<serde_json::Value>,
    /// Outcome (set by the agent).
    pub outcome: Option<String>,
    /// Summary (set by the agent).
    pub summary: Option<String>,
    /// Requested at (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// A call's current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    /// `CallSid`.
    pub call_sid: String,
    /// `inbound`, `outbound-api`, ...
    pub direction: Option<String>,
    /// Caller.
    pub from: Option<String>,
    /// Callee.
    pub to: Option<String>,
    /// Candidate id for screening calls.
    pub candidate_id: Option<String>,
    /// Screening id for screening calls.
    pub screening: Option<String>,
    /// Latest status.
    pub status: Option<String>,
    /// `SequenceNumber` of the latest status.
    pub status_sequence: Option<i64>,
    /// Call duration in seconds.
    pub duration_seconds: Option<i64>,
    /// AMD result.
    pub answered_by: Option<String>,
    /// AMD detection time in ms.
    pub amd_duration_ms: Option<i64>,
    /// Recording SID.
    pub recording_sid: Option<String>,
    /// Recording URL.
    pub recording_url: Option<String>,
    /// Recording status.
    pub recording_status: Option<String>,
    /// ConversationRelay session status.
    pub relay_session_status: Option<String>,
    /// ConversationRelay handoff data.
    pub handoff_data: Option<String>,
    /// Summary written by the agent (JSON or text).
    pub summary: Option<String>,
    /// First seen (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// One stored webhook event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallEvent {
    /// `status`, `amd`, `recording` or `relay`.
    pub kind: String,
    /// The status the event carried.
    pub status: Option<String>,
    /// `SequenceNumber`.
    pub sequence_number: Option<i64>,
    /// `Timestamp` (Unix ms).
    pub event_ts: Option<i64>,
    /// Received at (Unix ms).
    pub received_at: i64,
    /// Every parameter as received.
    pub params: serde_json::Value,
}

/// One transcript line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptLine {
    /// `agent`, `caller` or `keypad` (a DTMF key press).
    pub role: String,
    /// What was said.
    pub text: String,
    /// When (Unix ms).
    pub at_ms: i64,
    /// An agent line the caller cut off; `text` is then what the caller heard.
    #[serde(default)]
    pub interrupted: bool,
}

/// Everything known about one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallDetail {
    /// Current state.
    pub call: CallRecord,
    /// Every webhook event, in timeline order (sequence number, then arrival).
    pub timeline: Vec<CallEvent>,
    /// Transcript lines in order.
    pub transcript: Vec<TranscriptLine>,
    /// The screening, for screening calls.
    pub screening: Option<ScreeningRecord>,
}

/// Filter and page for [`Store::list_calls`].
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    /// Only this status.
    pub status: Option<String>,
    /// Only this candidate.
    pub candidate_id: Option<String>,
    /// Created at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Created before (Unix ms).
    pub until_ms: Option<i64>,
    /// Page size.
    pub limit: i64,
    /// Rows to skip.
    pub offset: i64,
}

/// A per-number rate-limit decision, for the audit table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitDecision {
    /// The caller (E.164).
    pub number: String,
    /// Whether the call was let through.
    pub allowed: bool,
    /// Calls counted in the window, including this one if allowed.
    pub recent_count: i64,
    /// When (Unix ms).
    pub decided_at_ms: i64,
}

const CALL_COLUMNS: &str = "call_sid, direction, from_number, to_number, candidate_id, screening, \
    status, status_seq, duration_seconds, answered_by, amd_duration_ms, recording_sid, \
    recording_url, recording_status, relay_session_status, handoff_data, summary, created_at, \
    updated_at";

const SCREENING_COLUMNS: &str = "id, call_sid, candidate_id, first_name, phone, job_title, \
    screening, state, error, answers, outcome, summary, created_at, updated_at";

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

/// One row of `call_events`: every webhook is recorded here first, deduplicated by
/// `dedupe_key`, in the same transaction as its effect on `calls`.
struct EventRow<'a> {
    call_sid: &'a str,
    kind: &'static str,
    status: &'a str,
    sequence_number: Option<i64>,
    timestamp_ms: Option<i64>,
    received_at_ms: i64,
    dedupe_key: &'a str,
    params_json: &'a str,
}

/// Records `$row` in `call_events` and, unless it is a duplicate, applies `$apply` (an
/// expression over the open transaction `$tx` that returns the rows it changed) to `calls`;
/// commits both together and returns the [`EventOutcome`]. A macro rather than a function
/// because the transaction type differs per backend (see `on_writer!`).
macro_rules! record_event {
    ($store:expr, $row:expr, $tx:ident => $apply:expr) => {{
        let row: EventRow<'_> = $row;
        on_writer!($store, pool => {
            let mut $tx = pool.begin().await?;
            let inserted = sqlx::query(INSERT_EVENT)
                .bind(row.call_sid)
                .bind(row.kind)
                .bind(row.status)
                .bind(row.sequence_number)
                .bind(row.timestamp_ms)
                .bind(row.received_at_ms)
                .bind(row.dedupe_key)
                .bind(row.params_json)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
            let applied = if inserted == 0 { 0 } else { $apply };
            $tx.commit().await?;
            Ok(EventOutcome { duplicate: inserted == 0, applied: applied > 0 })
        })
    }};
}

const INSERT_EVENT: &str = "INSERT INTO call_events (call_sid, kind, status, sequence_number, \
    event_ts, received_at, dedupe_key, params) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
    ON CONFLICT (dedupe_key) DO NOTHING";

fn json_column(
    value: Option<String>,
    column: &'static str,
) -> Result<Option<serde_json::Value>, StoreError> {
    value
        .map(|text| {
            serde_json::from_str(&text).map_err(|source| StoreError::Json { column, source })
        })
        .transpose()
}

macro_rules! call_from_row {
    ($row:expr) => {{
        let row = $row;
        CallRecord {
            call_sid: row.try_get("call_sid")?,
            direction: row.try_get("direction")?,
            from: row.try_get("from_number")?,
            to: row.try_get("to_number")?,
            candidate_id: row.try_get("candidate_id")?,
            screening: row.try_get("screening")?,
            status: row.try_get("status")?,
            status_sequence: row.try_get("status_seq")?,
            duration_seconds: row.try_get("duration_seconds")?,
            answered_by: row.try_get("answered_by")?,
            amd_duration_ms: row.try_get("amd_duration_ms")?,
            recording_sid: row.try_get("recording_sid")?,
            recording_url: row.try_get("recording_url")?,
            recording_status: row.try_get("recording_status")?,
            relay_session_status: row.try_get("relay_session_status")?,
            handoff_data: row.try_get("handoff_data")?,
            summary: row.try_get("summary")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        }
    }};
}

macro_rules! screening_from_row {
    ($row:expr) => {{
        let row = $row;
        ScreeningRecord {
            id: row.try_get("id")?,
            call_sid: row.try_get("call_sid")?,
            candidate_id: row.try_get("candidate_id")?,
            first_name: row.try_get("first_name")?,
            phone: row.try_get("phone")?,
            job_title: row.try_get("job_title")?,
            screening: row.try_get("screening")?,
            state: row.try_get("state")?,
            error: row.try_get("error")?,
            answers: json_column(row.try_get("answers")?, "screenings.answers")?,
            outcome: row.try_get("outcome")?,
            summary: row.try_get("summary")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        }
    }};
}

impl Store {
    /// Stores a call-progress event and moves the call's status forward if the event is newer
    /// (see [`crate::supersedes`]). Unknown `CallSid`s create the call. Committed on return.
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
            sqlx::query(UPSERT_STATUS)
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
                .rows_affected()
        })
    }

    /// Stores an asynchronous AMD result on the call. Idempotent.
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
            sqlx::query(
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
            .rows_affected()
        })
    }

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

    /// Records a requested screening (state `requested`) and returns its id.
    pub async fn insert_screening(&self, new: &NewScreening) -> Result<i64, StoreError> {
        on_writer!(self, pool => {
            let row = sqlx::query(
                "INSERT INTO screenings (candidate_id, first_name, phone, job_title, screening, \
                 state, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'requested', $6, $6) \
                 RETURNING id",
            )
            .bind(&new.candidate_id)
            .bind(&new.first_name)
            .bind(&new.phone)
            .bind(&new.job_title)
            .bind(&new.screening)
            .bind(new.created_at_ms)
            .fetch_one(pool)
            .await?;
            Ok(row.try_get::<i64, _>("id")?)
        })
    }

    /// Twilio created the call: links the screening to `call_sid` and creates the call row
    /// (status `queued`, direction `outbound-api`) in one transaction.
    pub async fn mark_screening_initiated(
        &self,
        id: i64,
        call_sid: &str,
        from: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let row = sqlx::query(
                "UPDATE screenings SET call_sid = $1, state = 'initiated', updated_at = $2 \
                 WHERE id = $3 RETURNING candidate_id, phone, screening",
            )
            .bind(call_sid)
            .bind(now_ms)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            let candidate: String = row.try_get("candidate_id")?;
            let phone: String = row.try_get("phone")?;
            let screening: String = row.try_get("screening")?;
            sqlx::query(
                "INSERT INTO calls (call_sid, direction, from_number, to_number, candidate_id, \
                 screening, status, status_rank, created_at, updated_at) \
                 VALUES ($1, 'outbound-api', $2, $3, $4, $5, 'queued', $6, $7, $7) \
                 ON CONFLICT (call_sid) DO UPDATE SET candidate_id = excluded.candidate_id, \
                 screening = excluded.screening, \
                 direction = COALESCE(calls.direction, excluded.direction), \
                 from_number = COALESCE(calls.from_number, excluded.from_number), \
                 to_number = COALESCE(calls.to_number, excluded.to_number)",
            )
            .bind(call_sid)
            .bind(from)
            .bind(&phone)
            .bind(&candidate)
            .bind(&screening)
            .bind(status_rank("queued"))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Twilio refused the call: keeps the reason; failed attempts do not count toward the
    /// per-candidate daily limit.
    pub async fn mark_screening_failed(
        &self,
        id: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on_writer!(self, pool => {
            sqlx::query(
                "UPDATE screenings SET state = 'create_failed', error = $1, updated_at = $2 WHERE id = $3",
            )
            .bind(error)
            .bind(now_ms)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The call create ended without a definite answer (timeout, unreadable 2xx, 5xx after
    /// retries): Twilio may have placed the call, so the attempt keeps counting toward the
    /// per-candidate daily limit (state `create_unknown`).
    pub async fn mark_screening_uncertain(
        &self,
        id: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on_writer!(self, pool => {
            sqlx::query(
                "UPDATE screenings SET state = 'create_unknown', error = $1, updated_at = $2 WHERE id = $3",
            )
            .bind(error)
            .bind(now_ms)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Screenings of `candidate_id` requested at or after `since_ms`, failed creates excluded.
    pub async fn count_screenings_since(
        &self,
        candidate_id: &str,
        since_ms: i64,
    ) -> Result<i64, StoreError> {
        on_writer!(self, pool => {
            let row = sqlx::query(
                "SELECT COUNT(*) AS n FROM screenings WHERE candidate_id = $1 AND created_at >= $2 \
                 AND state <> 'create_failed'",
            )
            .bind(candidate_id)
            .bind(since_ms)
            .fetch_one(pool)
            .await?;
            Ok(row.try_get::<i64, _>("n")?)
        })
    }

    /// The screening placed as `call_sid`.
    pub async fn screening_for_call(
        &self,
        call_sid: &str,
    ) -> Result<Option<ScreeningRecord>, StoreError> {
        let sql = format!("SELECT {SCREENING_COLUMNS} FROM screenings WHERE call_sid = $1");
        on_reader!(self, pool => {
            let row = sqlx::query(&sql).bind(call_sid).fetch_optional(pool).await?;
            match row {
                Some(row) => Ok(Some(screening_from_row!(&row))),
                None => Ok(None),
            }
        })
    }

    /// Saves what the screening agent collected. Returns false if no screening has that call.
    pub async fn save_screening_result(
        &self,
        call_sid: &str,
        answers: &serde_json::Value,
        outcome: &str,
        summary: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let answers = answers.to_string();
        on_writer!(self, pool => {
            let n = sqlx::query(
                "UPDATE screenings SET answers = $1, outcome = $2, summary = $3, updated_at = $4 \
                 WHERE call_sid = $5",
            )
            .bind(&answers)
            .bind(outcome)
            .bind(summary)
            .bind(now_ms)
            .bind(call_sid)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n > 0)
        })
    }

    /// Saves a call's summary (written by the media server when a call ends); creates the call
    /// if unknown.
    pub async fn record_call_summary(
        &self,
        call_sid: &str,
        summary: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO calls (call_sid, summary, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (call_sid) DO UPDATE SET summary = excluded.summary, updated_at = excluded.updated_at",
            )
            .bind(call_sid)
            .bind(summary)
            .bind(now_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Appends transcript lines for a call in one transaction.
    pub async fn append_transcript(
        &self,
        call_sid: &str,
        lines: &[TranscriptLine],
    ) -> Result<(), StoreError> {
        on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            for line in lines {
                insert_transcript_line!(&mut *tx, call_sid, line)?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Audits a rate-limit decision.
    pub async fn record_rate_limit_decision(
        &self,
        decision: &RateLimitDecision,
    ) -> Result<(), StoreError> {
        on_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO rate_limit_decisions (number, allowed, recent_count, decided_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&decision.number)
            .bind(i64::from(decision.allowed))
            .bind(decision.recent_count)
            .bind(decision.decided_at_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The audited decisions for `number`, oldest first.
    pub async fn rate_limit_decisions(
        &self,
        number: &str,
    ) -> Result<Vec<RateLimitDecision>, StoreError> {
        on_reader!(self, pool => {
            let rows = sqlx::query(
                "SELECT number, allowed, recent_count, decided_at FROM rate_limit_decisions \
                 WHERE number = $1 ORDER BY id",
            )
            .bind(number)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(RateLimitDecision {
                        number: row.try_get("number")?,
                        allowed: row.try_get::<i64, _>("allowed")? != 0,
                        recent_count: row.try_get("recent_count")?,
                        decided_at_ms: row.try_get("decided_at")?,
                    })
                })
                .collect()
        })
    }

    /// Records SMS consent for a number (`opted_out`, `opted_in`). Used by the SMS issue.
    pub async fn set_sms_consent(
        &self,
        number: &str,
        status: &str,
        keyword: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO sms_consent (number, status, keyword, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (number) DO UPDATE SET status = excluded.status, \
                 keyword = excluded.keyword, updated_at = excluded.updated_at",
            )
            .bind(number)
            .bind(status)
            .bind(keyword)
            .bind(now_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The stored SMS consent status for a number.
    pub async fn sms_consent(&self, number: &str) -> Result<Option<String>, StoreError> {
        on_reader!(self, pool => {
            let row = sqlx::query("SELECT status FROM sms_consent WHERE number = $1")
                .bind(number)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|r| r.try_get::<String, _>("status")).transpose()?)
        })
    }

    /// One call's current state.
    pub async fn call(&self, call_sid: &str) -> Result<Option<CallRecord>, StoreError> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE call_sid = $1");
        on_reader!(self, pool => {
            let row = sqlx::query(&sql).bind(call_sid).fetch_optional(pool).await?;
            match row {
                Some(row) => Ok(Some(call_from_row!(&row))),
                None => Ok(None),
            }
        })
    }

    /// Calls, newest first, filtered and paged. Returns the page and the total matching.
    pub async fn list_calls(
        &self,
        filter: &CallFilter,
    ) -> Result<(Vec<CallRecord>, i64), StoreError> {
        let condition = "($1 IS NULL OR status = $1) AND ($2 IS NULL OR candidate_id = $2) \
            AND ($3 IS NULL OR created_at >= $3) AND ($4 IS NULL OR created_at < $4)";
        let page_sql = format!(
            "SELECT {CALL_COLUMNS} FROM calls WHERE {condition} \
             ORDER BY created_at DESC, call_sid LIMIT $5 OFFSET $6"
        );
        let count_sql = format!("SELECT COUNT(*) AS n FROM calls WHERE {condition}");
        on_reader!(self, pool => {
            let rows = sqlx::query(&page_sql)
                .bind(&filter.status)
                .bind(&filter.candidate_id)
                .bind(filter.since_ms)
                .bind(filter.until_ms)
                .bind(filter.limit)
                .bind(filter.offset)
                .fetch_all(pool)
                .await?;
            let total: i64 = sqlx::query(&count_sql)
                .bind(&filter.status)
                .bind(&filter.candidate_id)
                .bind(filter.since_ms)
                .bind(filter.until_ms)
                .fetch_one(pool)
                .await?
                .try_get("n")?;
            let mut calls = Vec::with_capacity(rows.len());
            for row in &rows {
                calls.push(call_from_row!(row));
            }
            Ok((calls, total))
        })
    }

    /// Everything about one call: state, timeline, transcript, screening.
    pub async fn call_detail(&self, call_sid: &str) -> Result<Option<CallDetail>, StoreError> {
        let Some(call) = self.call(call_sid).await? else {
            return Ok(None);
        };
        let (timeline, transcript) = on_reader!(self, pool => {
            let events = sqlx::query(
                "SELECT kind, status, sequence_number, event_ts, received_at, params FROM call_events \
                 WHERE call_sid = $1 ORDER BY id",
            )
            .bind(call_sid)
            .fetch_all(pool)
            .await?;
            let mut timeline = Vec::with_capacity(events.len());
            for row in &events {
                let params: String = row.try_get("params")?;
                timeline.push(CallEvent {
                    kind: row.try_get("kind")?,
                    status: row.try_get("status")?,
                    sequence_number: row.try_get("sequence_number")?,
                    event_ts: row.try_get("event_ts")?,
                    received_at: row.try_get("received_at")?,
                    params: serde_json::from_str(&params)
                        .map_err(|source| StoreError::Json { column: "call_events.params", source })?,
                });
            }
            let lines = sqlx::query(
                "SELECT role, text, at_ms, interrupted FROM transcripts WHERE call_sid = $1 \
                 ORDER BY id",
            )
            .bind(call_sid)
            .fetch_all(pool)
            .await?;
            let mut transcript = Vec::with_capacity(lines.len());
            for row in &lines {
                transcript.push(TranscriptLine {
                    role: row.try_get("role")?,
                    text: row.try_get("text")?,
                    at_ms: row.try_get("at_ms")?,
                    interrupted: row.try_get::<i64, _>("interrupted")? != 0,
                });
            }
            (timeline, transcript)
        });
        // Status events in Twilio's order; events without a sequence number keep arrival order.
        let mut timeline = timeline;
        timeline.sort_by_key(|e| {
            (
                e.sequence_number.is_none(),
                e.sequence_number,
                e.received_at,
            )
        });
        let screening = self.screening_for_call(call_sid).await?;
        Ok(Some(CallDetail {
            call,
            timeline,
            transcript,
            screening,
        }))
    }
}

/// Inserts one transcript line with `$executor` (a transaction of either backend). A macro
/// because the query runs on two database types.
macro_rules! insert_transcript_line {
    ($executor:expr, $call_sid:expr, $line:expr) => {
        sqlx::query(
            "INSERT INTO transcripts (call_sid, role, text, at_ms, interrupted) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind($call_sid)
        .bind(&$line.role)
        .bind(&$line.text)
        .bind($line.at_ms)
        .bind(i64::from($line.interrupted))
        .execute($executor)
        .await
    };
}
pub(crate) use insert_transcript_line;
