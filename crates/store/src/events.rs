//! The webhook event log (`call_events`): every Twilio callback is stored here first,
//! deduplicated by `dedupe_key`, in the same transaction as its effect on the `calls` row (see
//! [`record_event!`]), and read back as a call's timeline.

use serde::Serialize;

use crate::{Store, StoreError, json_column, json_shape, on_reader};

/// What happened to a webhook event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EventOutcome {
    /// The same event was stored before (a retried or duplicated webhook).
    pub duplicate: bool,
    /// The event changed the call's current state (false when an older status arrived late).
    pub applied: bool,
}

/// One stored webhook event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallEvent {
    /// `status`, `amd`, `recording` or `relay`.
    pub kind: String,
    /// The status the event carried.
    pub status: Option<String>,
    /// `SequenceNumber`.
    pub sequence_number: Option<i64>,
    /// Twilio's `Timestamp` (Unix ms; RFC 3339 in JSON, as `eventAt`).
    #[serde(rename = "eventAt", serialize_with = "json_shape::optional_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub event_ts: Option<i64>,
    /// Received at (Unix ms; RFC 3339 in JSON).
    #[serde(serialize_with = "json_shape::time")]
    #[schema(value_type = String, format = DateTime)]
    pub received_at: i64,
    /// Every parameter as received.
    pub params: serde_json::Value,
}

/// One row of `call_events` to write.
pub(crate) struct EventRow<'a> {
    pub(crate) call_sid: &'a str,
    pub(crate) kind: &'static str,
    pub(crate) status: &'a str,
    pub(crate) sequence_number: Option<i64>,
    pub(crate) timestamp_ms: Option<i64>,
    pub(crate) received_at_ms: i64,
    pub(crate) dedupe_key: &'a str,
    pub(crate) params_json: &'a str,
}

pub(crate) const INSERT_EVENT: &str = "INSERT INTO call_events (call_sid, kind, status, \
    sequence_number, event_ts, received_at, dedupe_key, params) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (dedupe_key) DO NOTHING";

/// Records `$row` (an [`EventRow`]) in `call_events` and, unless it is a duplicate, applies
/// `$apply` (an expression over the open transaction `$tx` that returns the rows it changed)
/// to `calls`; commits both together and returns the [`EventOutcome`]. A macro rather than a
/// function because the transaction type differs per backend (see `on_writer!`).
macro_rules! record_event {
    ($store:expr, $row:expr, $tx:ident => $apply:expr) => {{
        let row: $crate::events::EventRow<'_> = $row;
        $crate::on_writer!($store, pool => {
            let mut $tx = pool.begin().await?;
            let inserted = sqlx::query($crate::events::INSERT_EVENT)
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
            Ok($crate::EventOutcome { duplicate: inserted == 0, applied: applied > 0 })
        })
    }};
}
pub(crate) use record_event;

/// A `call_events` row as read for the timeline.
#[derive(sqlx::FromRow)]
struct CallEventRow {
    kind: String,
    status: Option<String>,
    sequence_number: Option<i64>,
    event_ts: Option<i64>,
    received_at: i64,
    params: String,
}

impl TryFrom<CallEventRow> for CallEvent {
    type Error = StoreError;

    fn try_from(row: CallEventRow) -> Result<Self, StoreError> {
        Ok(Self {
            kind: row.kind,
            status: row.status,
            sequence_number: row.sequence_number,
            event_ts: row.event_ts,
            received_at: row.received_at,
            params: json_column(&row.params, "call_events.params")?,
        })
    }
}

impl Store {
    /// Every stored event of `call_sid` in timeline order: status events in Twilio's order
    /// (sequence number), then events without one in arrival order.
    pub(crate) async fn timeline(&self, call_sid: &str) -> Result<Vec<CallEvent>, StoreError> {
        let rows: Vec<CallEventRow> = on_reader!(self, pool => {
            sqlx::query_as(
                "SELECT kind, status, sequence_number, event_ts, received_at, params \
                 FROM call_events WHERE call_sid = $1 ORDER BY id",
            )
            .bind(call_sid)
            .fetch_all(pool)
            .await?
        });
        let mut timeline = rows
            .into_iter()
            .map(CallEvent::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        timeline.sort_by_key(|e| {
            (
                e.sequence_number.is_none(),
                e.sequence_number,
                e.received_at,
            )
        });
        Ok(timeline)
    }
}
