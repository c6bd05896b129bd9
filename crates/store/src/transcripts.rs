//! Transcript lines of a call (`transcripts`), appended by the agents and read back in order.

use serde::Serialize;

use crate::{Store, StoreError, on_reader, on_writer};

/// One transcript line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptLine {
    /// `agent`, `caller` or `keypad` (a DTMF key press).
    pub role: String,
    /// What was said.
    pub text: String,
    /// When (Unix ms; RFC 3339 in JSON, as `at`).
    #[serde(rename = "at", serialize_with = "crate::json_shape::time")]
    #[schema(value_type = String, format = DateTime)]
    pub at_ms: i64,
    /// An agent line the caller cut off; `text` is then what the caller heard.
    #[serde(default)]
    pub interrupted: bool,
}

/// A `transcripts` row as read; `interrupted` is stored as `BIGINT` 0/1 (which PostgreSQL does
/// not decode as a `bool`).
#[derive(sqlx::FromRow)]
struct TranscriptRow {
    role: String,
    text: String,
    at_ms: i64,
    interrupted: i64,
}

impl From<TranscriptRow> for TranscriptLine {
    fn from(row: TranscriptRow) -> Self {
        Self {
            role: row.role,
            text: row.text,
            at_ms: row.at_ms,
            interrupted: row.interrupted != 0,
        }
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

impl Store {
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

    /// The transcript of `call_sid`, in the order the lines were stored.
    pub(crate) async fn transcript(
        &self,
        call_sid: &str,
    ) -> Result<Vec<TranscriptLine>, StoreError> {
        let rows: Vec<TranscriptRow> = on_reader!(self, pool => {
            sqlx::query_as(
                "SELECT role, text, at_ms, interrupted FROM transcripts WHERE call_sid = $1 \
                 ORDER BY id",
            )
            .bind(call_sid)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(TranscriptLine::from).collect())
    }
}
