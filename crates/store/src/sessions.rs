//! What a finished screening conversation leaves behind (written by the ConversationRelay
//! server, and by the Media Streams pipeline once it runs the screening agent).

use crate::{Store, StoreError, TranscriptLine, on_writer};

/// One finished screening conversation.
#[derive(Debug, Clone, Default)]
pub struct ScreeningSession {
    /// `CallSid`.
    pub call_sid: String,
    /// `inbound`, `outbound-api`, ...
    pub direction: Option<String>,
    /// Caller.
    pub from: Option<String>,
    /// Callee.
    pub to: Option<String>,
    /// The `candidateId` parameter.
    pub candidate_id: Option<String>,
    /// The `firstName` parameter.
    pub first_name: Option<String>,
    /// The job title used.
    pub job_title: String,
    /// The screening script id.
    pub screening: String,
    /// `qualified`, `not_qualified`, `incomplete`, ...
    pub outcome: String,
    /// The answers (question id, raw utterance, parsed value, confidence, ...) as JSON.
    pub answers: serde_json::Value,
    /// A short JSON or text summary (end reason, agent, counts).
    pub summary: String,
    /// The conversation, in order, with Unix-ms times.
    pub transcript: Vec<TranscriptLine>,
    /// When it ended (Unix ms).
    pub ended_at_ms: i64,
}

/// Writes a finished screening with `$tx` (a transaction of either backend): the call row
/// (created if unknown, its summary set), the screening's answers and outcome (the screening
/// requested for this call, or a new `unrequested` row), and the transcript lines (appended);
/// then the screening's state from its call and outcome (`crate::screening_state`).
/// A macro because the queries run on two database types.
macro_rules! write_screening_session {
    ($tx:ident, $session:expr) => {{
        let answers = $session.answers.to_string();
        let now = $session.ended_at_ms;
        sqlx::query(
            "INSERT INTO calls (call_sid, direction, from_number, to_number, candidate_id, \
             screening, summary, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             ON CONFLICT (call_sid) DO UPDATE SET summary = excluded.summary, \
             direction = COALESCE(calls.direction, excluded.direction), \
             from_number = COALESCE(calls.from_number, excluded.from_number), \
             to_number = COALESCE(calls.to_number, excluded.to_number), \
             candidate_id = COALESCE(calls.candidate_id, excluded.candidate_id), \
             screening = COALESCE(calls.screening, excluded.screening), \
             updated_at = excluded.updated_at",
        )
        .bind(&$session.call_sid)
        .bind(&$session.direction)
        .bind(&$session.from)
        .bind(&$session.to)
        .bind(&$session.candidate_id)
        .bind(&$session.screening)
        .bind(&$session.summary)
        .bind(now)
        .execute(&mut *$tx)
        .await?;
        let updated = sqlx::query(
            "UPDATE screenings SET answers = $1, outcome = $2, summary = $3, updated_at = $4 \
             WHERE call_sid = $5",
        )
        .bind(&answers)
        .bind(&$session.outcome)
        .bind(&$session.summary)
        .bind(now)
        .bind(&$session.call_sid)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        // A missed attempt of a retried screening (its call unlinked when the next attempt was
        // scheduled): the agent's outcome is kept with the attempt, and no screening is made.
        let attempt = sqlx::query("UPDATE screening_attempts SET outcome = $1 WHERE call_sid = $2")
            .bind(&$session.outcome)
            .bind(&$session.call_sid)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
        if updated == 0 && attempt == 0 {
            // The candidate's number: who was called, or who called in.
            let phone = if $session.direction.as_deref() == Some("inbound") {
                &$session.from
            } else {
                &$session.to
            };
            let _id: i64 = sqlx::query_scalar(
                "INSERT INTO screenings (call_sid, candidate_id, first_name, phone, job_title, \
                 screening, state, answers, outcome, summary, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'unrequested', $7, $8, $9, $10, $10) \
                 RETURNING id",
            )
            .bind(&$session.call_sid)
            .bind($session.candidate_id.clone().unwrap_or_default())
            .bind($session.first_name.clone().unwrap_or_default())
            .bind(phone.clone().unwrap_or_default())
            .bind(&$session.job_title)
            .bind(&$session.screening)
            .bind(&answers)
            .bind(&$session.outcome)
            .bind(&$session.summary)
            .bind(now)
            .fetch_one(&mut *$tx)
            .await?;
        }
        for line in &$session.transcript {
            $crate::transcripts::insert_transcript_line!(&mut *$tx, &$session.call_sid, line)?;
        }
        $crate::screening_state::sync_screening!($tx, &$session.call_sid, now);
    }};
}

impl Store {
    /// Stores a finished screening in one transaction: the call row (created if unknown, its
    /// summary set), the screening's answers and outcome (the screening requested for this
    /// call, or a new row for a call nobody requested, e.g. an inbound one: state
    /// `unrequested`), and the transcript lines (appended).
    pub async fn record_screening_session(
        &self,
        session: &ScreeningSession,
    ) -> Result<(), StoreError> {
        on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            write_screening_session!(tx, session);
            tx.commit().await?;
        });
        Ok(())
    }
}
pub(crate) use write_screening_session;
