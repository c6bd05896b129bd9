//! The `calls` row (a call's current state) and the read side built on it: one call, the
//! filtered list, and everything known about a call ([`CallDetail`]).

use serde::Serialize;

use crate::{
    CallEvent, ScreeningFilter, ScreeningRecord, Store, StoreError, TranscriptLine, json_shape,
    on_reader, on_writer,
};

/// A call's current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    /// ConversationRelay handoff data: the JSON nested, or the text as a string.
    pub handoff_data: Option<serde_json::Value>,
    /// Summary written by the agent: the JSON nested, or the text as a string.
    pub summary: Option<serde_json::Value>,
    /// The state of the call's screening (`crate::SCREENING_STATES`), if it has one.
    pub state: Option<String>,
    /// The outcome of the call's screening, once the agent stored it.
    pub outcome: Option<String>,
    /// First seen (Unix ms; RFC 3339 in JSON).
    #[serde(serialize_with = "json_shape::time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Last change (Unix ms; RFC 3339 in JSON).
    #[serde(serialize_with = "json_shape::time")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

/// Everything known about one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    /// Only calls whose screening is in this state.
    pub state: Option<String>,
    /// Only calls whose screening has this outcome.
    pub outcome: Option<String>,
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

impl From<ScreeningFilter> for CallFilter {
    /// The calls whose screening the filter selects (any call status).
    fn from(f: ScreeningFilter) -> Self {
        Self {
            status: None,
            state: f.state,
            outcome: f.outcome,
            candidate_id: f.candidate_id,
            since_ms: f.since_ms,
            until_ms: f.until_ms,
            limit: f.limit,
            offset: f.offset,
        }
    }
}

/// The columns of [`CallRow`], in its order, from `calls c` and its screening `s`
/// ([`CALLS_WITH_SCREENING`]).
pub(crate) const CALL_COLUMNS: &str = "c.call_sid, c.direction, c.from_number, c.to_number, \
    c.candidate_id, c.screening, c.status, c.status_seq, c.duration_seconds, c.answered_by, \
    c.amd_duration_ms, c.recording_sid, c.recording_url, c.recording_status, \
    c.relay_session_status, c.handoff_data, c.summary, s.state, s.outcome, c.created_at, \
    c.updated_at";

/// Calls with their screening, if any (`call_sid` is unique in `screenings`).
pub(crate) const CALLS_WITH_SCREENING: &str =
    "calls c LEFT JOIN screenings s ON s.call_sid = c.call_sid";

/// A `calls` row as read ([`CALL_COLUMNS`]).
#[derive(sqlx::FromRow)]
pub(crate) struct CallRow {
    call_sid: String,
    direction: Option<String>,
    from_number: Option<String>,
    to_number: Option<String>,
    candidate_id: Option<String>,
    screening: Option<String>,
    status: Option<String>,
    status_seq: Option<i64>,
    duration_seconds: Option<i64>,
    answered_by: Option<String>,
    amd_duration_ms: Option<i64>,
    recording_sid: Option<String>,
    recording_url: Option<String>,
    recording_status: Option<String>,
    relay_session_status: Option<String>,
    handoff_data: Option<String>,
    summary: Option<String>,
    state: Option<String>,
    outcome: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<CallRow> for CallRecord {
    fn from(row: CallRow) -> Self {
        Self {
            call_sid: row.call_sid,
            direction: row.direction,
            from: row.from_number,
            to: row.to_number,
            candidate_id: row.candidate_id,
            screening: row.screening,
            status: row.status,
            status_sequence: row.status_seq,
            duration_seconds: row.duration_seconds,
            answered_by: row.answered_by,
            amd_duration_ms: row.amd_duration_ms,
            recording_sid: row.recording_sid,
            recording_url: row.recording_url,
            recording_status: row.recording_status,
            relay_session_status: row.relay_session_status,
            handoff_data: row.handoff_data.map(json_shape::json_or_text),
            summary: row.summary.map(json_shape::json_or_text),
            state: row.state,
            outcome: row.outcome,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl Store {
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

    /// One call's current state.
    pub async fn call(&self, call_sid: &str) -> Result<Option<CallRecord>, StoreError> {
        let sql =
            format!("SELECT {CALL_COLUMNS} FROM {CALLS_WITH_SCREENING} WHERE c.call_sid = $1");
        let row: Option<CallRow> = on_reader!(self, pool => {
            sqlx::query_as(&sql).bind(call_sid).fetch_optional(pool).await?
        });
        Ok(row.map(CallRecord::from))
    }

    /// Calls, newest first, filtered and paged. Returns the page and the total matching.
    pub async fn list_calls(
        &self,
        filter: &CallFilter,
    ) -> Result<(Vec<CallRecord>, i64), StoreError> {
        let condition = "($1 IS NULL OR c.status = $1) AND ($2 IS NULL OR c.candidate_id = $2) \
            AND ($3 IS NULL OR c.created_at >= $3) AND ($4 IS NULL OR c.created_at < $4) \
            AND ($5 IS NULL OR s.state = $5) AND ($6 IS NULL OR s.outcome = $6)";
        let page_sql = format!(
            "SELECT {CALL_COLUMNS} FROM {CALLS_WITH_SCREENING} WHERE {condition} \
             ORDER BY c.created_at DESC, c.call_sid LIMIT $7 OFFSET $8"
        );
        let count_sql =
            format!("SELECT COUNT(*) AS n FROM {CALLS_WITH_SCREENING} WHERE {condition}");
        let (rows, total): (Vec<CallRow>, i64) = on_reader!(self, pool => {
            let rows = sqlx::query_as(&page_sql)
                .bind(&filter.status)
                .bind(&filter.candidate_id)
                .bind(filter.since_ms)
                .bind(filter.until_ms)
                .bind(&filter.state)
                .bind(&filter.outcome)
                .bind(filter.limit)
                .bind(filter.offset)
                .fetch_all(pool)
                .await?;
            let total = sqlx::query_scalar(&count_sql)
                .bind(&filter.status)
                .bind(&filter.candidate_id)
                .bind(filter.since_ms)
                .bind(filter.until_ms)
                .bind(&filter.state)
                .bind(&filter.outcome)
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        Ok((rows.into_iter().map(CallRecord::from).collect(), total))
    }

    /// Everything about one call: state, timeline, transcript, screening.
    pub async fn call_detail(&self, call_sid: &str) -> Result<Option<CallDetail>, StoreError> {
        let Some(call) = self.call(call_sid).await? else {
            return Ok(None);
        };
        let timeline = self.timeline(call_sid).await?;
        let transcript = self.transcript(call_sid).await?;
        let screening = self.screening_for_call(call_sid).await?;
        Ok(Some(CallDetail {
            call,
            timeline,
            transcript,
            screening,
        }))
    }
}
