//! What a finished Media Streams call leaves behind: the call row with its summary, for
//! dialog-driven calls the conversation (through the same screening-session writes as
//! ConversationRelay), and the latency breakdown of each voice pipeline turn
//! (`turn_latencies`, migration 3).

use serde::Serialize;

use crate::sessions::write_screening_session;
use crate::transcripts::insert_transcript_line;
use crate::{ScreeningSession, Store, StoreError, TranscriptLine, on_reader, on_writer};

/// One voice pipeline turn's latency breakdown, as stored. Durations in microseconds; `None`
/// where the turn never got that far (a fallback, a barge-in, the call ending).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnLatencyRecord {
    /// The turn's position in the call, from 0.
    pub turn_index: i64,
    /// The session's bot turn that carried the reply, if one started.
    pub bot_turn: Option<i64>,
    /// End of the caller's speech, in stream audio time (ms since the first media frame).
    pub speech_ended_at_ms: i64,
    /// The VAD silence that had to pass before the utterance was delivered (ms).
    pub hangover_ms: i64,
    /// Utterance -> final transcript (ASR, retries included).
    pub asr_us: Option<i64>,
    /// Transcript -> first dialog text (LLM time to first token).
    pub dialog_first_text_us: Option<i64>,
    /// Transcript -> first complete sentence.
    pub first_sentence_us: Option<i64>,
    /// First sentence sent to TTS -> its first audio.
    pub tts_first_byte_us: Option<i64>,
    /// First TTS audio -> first frame sent to Twilio.
    pub first_frame_us: Option<i64>,
    /// Utterance -> first frame sent: the whole turn.
    pub total_us: Option<i64>,
    /// Provider attempts retried during the turn.
    pub retries: i64,
    /// `spoken`, `fallback`, `interrupted`, `no_reply` or `call_ended`.
    pub outcome: String,
    /// For `fallback`: the stage that failed (`asr`, `llm`, `tts`).
    pub failed_stage: Option<String>,
    /// When it was stored (Unix ms).
    pub recorded_at_ms: i64,
}

/// A `turn_latencies` row as read.
#[derive(sqlx::FromRow)]
struct TurnLatencyRow {
    turn_index: i64,
    bot_turn: Option<i64>,
    speech_ended_at_ms: i64,
    hangover_ms: i64,
    asr_us: Option<i64>,
    dialog_first_text_us: Option<i64>,
    first_sentence_us: Option<i64>,
    tts_first_byte_us: Option<i64>,
    first_frame_us: Option<i64>,
    total_us: Option<i64>,
    retries: i64,
    outcome: String,
    failed_stage: Option<String>,
    recorded_at: i64,
}

impl From<TurnLatencyRow> for TurnLatencyRecord {
    fn from(row: TurnLatencyRow) -> Self {
        Self {
            turn_index: row.turn_index,
            bot_turn: row.bot_turn,
            speech_ended_at_ms: row.speech_ended_at_ms,
            hangover_ms: row.hangover_ms,
            asr_us: row.asr_us,
            dialog_first_text_us: row.dialog_first_text_us,
            first_sentence_us: row.first_sentence_us,
            tts_first_byte_us: row.tts_first_byte_us,
            first_frame_us: row.first_frame_us,
            total_us: row.total_us,
            retries: row.retries,
            outcome: row.outcome,
            failed_stage: row.failed_stage,
            recorded_at_ms: row.recorded_at,
        }
    }
}

/// A finished Media Streams call, for [`Store::record_media_call`].
#[derive(Debug, Clone, Default)]
pub struct MediaCallEnd {
    /// `CallSid`.
    pub call_sid: String,
    /// The call summary (JSON): transport, stream, agent, end reason, counts, duration.
    pub summary: String,
    /// When it ended (Unix ms).
    pub ended_at_ms: i64,
    /// A screening conversation (the `voice` agent): stored exactly as
    /// [`Store::record_screening_session`] stores it, its `summary` on the call row.
    pub screening: Option<ScreeningSession>,
    /// Transcript of a conversation that is not a screening (e.g. the `assistant` agent);
    /// ignored when `screening` is set (it has its own).
    pub transcript: Vec<TranscriptLine>,
    /// The voice pipeline's turns, oldest first.
    pub turns: Vec<TurnLatencyRecord>,
    /// The `handoffData` JSON of a dialog that ended the call (`{"reasonCode","reason"}`, what
    /// ConversationRelay's action callback stores for a relay session); kept on the call row.
    pub handoff_data: Option<String>,
}

impl Store {
    /// Stores a finished Media Streams call in one transaction: the screening session (call
    /// row, answers and outcome, transcript) when there is one, else the call row with its
    /// summary (created if unknown) and any transcript lines; the handoff data (unless the
    /// call row has some already); then the turn latencies
    /// (a turn already stored for this call and index is left as it is).
    pub async fn record_media_call(&self, call: &MediaCallEnd) -> Result<(), StoreError> {
        on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            if let Some(session) = &call.screening {
                write_screening_session!(tx, session);
            } else {
                sqlx::query(
                    "INSERT INTO calls (call_sid, summary, created_at, updated_at) \
                     VALUES ($1, $2, $3, $3) \
                     ON CONFLICT (call_sid) DO UPDATE SET summary = excluded.summary, \
                     updated_at = excluded.updated_at",
                )
                .bind(&call.call_sid)
                .bind(&call.summary)
                .bind(call.ended_at_ms)
                .execute(&mut *tx)
                .await?;
                for line in &call.transcript {
                    insert_transcript_line!(&mut *tx, &call.call_sid, line)?;
                }
            }
            if let Some(handoff) = &call.handoff_data {
                sqlx::query(
                    "UPDATE calls SET handoff_data = COALESCE(handoff_data, $1) \
                     WHERE call_sid = $2",
                )
                .bind(handoff)
                .bind(&call.call_sid)
                .execute(&mut *tx)
                .await?;
            }
            for turn in &call.turns {
                sqlx::query(
                    "INSERT INTO turn_latencies (call_sid, turn_index, bot_turn, \
                     speech_ended_at_ms, hangover_ms, asr_us, dialog_first_text_us, \
                     first_sentence_us, tts_first_byte_us, first_frame_us, total_us, retries, \
                     outcome, failed_stage, recorded_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                     ON CONFLICT (call_sid, turn_index) DO NOTHING",
                )
                .bind(&call.call_sid)
                .bind(turn.turn_index)
                .bind(turn.bot_turn)
                .bind(turn.speech_ended_at_ms)
                .bind(turn.hangover_ms)
                .bind(turn.asr_us)
                .bind(turn.dialog_first_text_us)
                .bind(turn.first_sentence_us)
                .bind(turn.tts_first_byte_us)
                .bind(turn.first_frame_us)
                .bind(turn.total_us)
                .bind(turn.retries)
                .bind(&turn.outcome)
                .bind(&turn.failed_stage)
                .bind(turn.recorded_at_ms)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The stored turn latencies of `call_sid`, in turn order (empty for an unknown call).
    pub async fn turn_latencies(
        &self,
        call_sid: &str,
    ) -> Result<Vec<TurnLatencyRecord>, StoreError> {
        let rows: Vec<TurnLatencyRow> = on_reader!(self, pool => {
            sqlx::query_as(
                "SELECT turn_index, bot_turn, speech_ended_at_ms, hangover_ms, asr_us, \
                 dialog_first_text_us, first_sentence_us, tts_first_byte_us, first_frame_us, \
                 total_us, retries, outcome, failed_stage, recorded_at FROM turn_latencies \
                 WHERE call_sid = $1 ORDER BY turn_index",
            )
            .bind(call_sid)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(TurnLatencyRecord::from).collect())
    }
}
