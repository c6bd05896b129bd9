//! SMS and WhatsApp messages (`messages`): the durable outbound queue and the inbound log.
//!
//! An outbound row is `scheduled` until its `send_at` (a requested time, a quiet-hours hold or
//! a retry backoff: `hold_reason` says which), then a sender claims it (`claimed`, with a
//! lease: `lease_owner`, `lease_until`), and once Twilio accepted it the row carries its
//! `message_sid` and Twilio's status (`accepted`, `queued`, `sending`, `sent`, `delivered`,
//! `undelivered`, `failed`, `read`). A claim whose lease expired (the sender was killed) is
//! claimed again: delivery is at least once, since Twilio's Messages API has no idempotency
//! key, a crash between Twilio's answer and the commit sends the message twice.
//!
//! Status callbacks only move a message forward ([`message_status_rank`]), so a repeated or
//! late callback (`sent` after `delivered`) changes nothing. An answer sent back as the TwiML
//! of an incoming message is kept as an outbound row with status `replied` (never queued).

use serde::Serialize;

use crate::{Backend, Store, StoreError, json_shape, on_reader, on_writer};

/// The rank of a message status: callbacks only move a message to a higher rank.
pub fn message_status_rank(status: &str) -> i64 {
    match status {
        "scheduled" | "claimed" => 0,
        "accepted" | "queued" => 1,
        "sending" => 2,
        "sent" => 3,
        "delivered" | "undelivered" | "failed" | "canceled" => 4,
        "read" => 5,
        _ => -1,
    }
}

/// A message to queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMessage {
    /// `sms` or `whatsapp`.
    pub channel: String,
    /// `To` as sent (`+1415...` or `whatsapp:+1415...`).
    pub to: String,
    /// The sender: a `From` number, short code or Messaging Service SID.
    pub from: String,
    /// The body (empty for a template).
    pub body: String,
    /// `GSM-7` or `UCS-2` (none for a template: Twilio renders it).
    pub encoding: Option<String>,
    /// Segments (none for a template).
    pub segments: Option<i64>,
    /// A Content API template (`HX…`), sent instead of a body.
    pub content_sid: Option<String>,
    /// The template's variables, a JSON object as text.
    pub content_variables: Option<String>,
    /// Not before (Unix ms).
    pub send_at: i64,
    /// Why it waits (`scheduled`, `quiet_hours`), if it does.
    pub hold_reason: Option<String>,
    /// The recipient's zone as guessed from the number.
    pub zone: String,
}

/// Inserts outbound message `$m` (a `&NewMessage`) with executor `$executor` at `$now_ms`;
/// evaluates to its id. A macro so a transaction of either backend can use it.
macro_rules! insert_message_row {
    ($executor:expr, $m:expr, $now_ms:expr) => {{
        let m: &$crate::NewMessage = $m;
        sqlx::query_scalar(
            "INSERT INTO messages (direction, channel, to_number, from_number, body, encoding, \
             segments, status, status_rank, attempts, send_at, hold_reason, zone, created_at, \
             updated_at, content_sid, content_variables) VALUES ('outbound', $1, $2, $3, $4, \
             $5, $6, 'scheduled', 0, 0, $7, $8, $9, $10, $10, $11, $12) RETURNING id",
        )
        .bind(&m.channel)
        .bind(&m.to)
        .bind(&m.from)
        .bind(&m.body)
        .bind(&m.encoding)
        .bind(m.segments)
        .bind(m.send_at)
        .bind(&m.hold_reason)
        .bind(&m.zone)
        .bind($now_ms)
        .bind(&m.content_sid)
        .bind(&m.content_variables)
        .fetch_one($executor)
        .await?
    }};
}
pub(crate) use insert_message_row;

/// A message as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct MessageRecord {
    /// Row id.
    pub id: i64,
    /// `outbound` or `inbound`.
    pub direction: String,
    /// `sms` or `whatsapp`.
    pub channel: String,
    /// Recipient.
    #[sqlx(rename = "to_number")]
    pub to: String,
    /// Sender.
    #[sqlx(rename = "from_number")]
    pub from: Option<String>,
    /// Body (empty for a template).
    pub body: String,
    /// The Content API template sent instead of a body (`HX…`), if one was.
    pub content_sid: Option<String>,
    /// The template's variables, nested.
    #[serde(serialize_with = "json_shape::optional_json")]
    #[schema(value_type = Option<Object>)]
    pub content_variables: Option<String>,
    /// `GSM-7` or `UCS-2`.
    pub encoding: Option<String>,
    /// Segments.
    pub segments: Option<i64>,
    /// Queue state or Twilio's status (see the module docs).
    pub status: String,
    /// Twilio's `MessageSid`, once accepted.
    pub message_sid: Option<String>,
    /// The last error code (Twilio's, or ours for a refusal before sending).
    pub error_code: Option<i64>,
    /// What the error means.
    pub error_message: Option<String>,
    /// Send attempts so far.
    pub attempts: i64,
    /// Not before (Unix ms; RFC 3339 in JSON).
    #[serde(serialize_with = "json_shape::time")]
    #[schema(value_type = String, format = DateTime)]
    pub send_at: i64,
    /// Why it waits (`scheduled`, `quiet_hours`, `retry`), if it does.
    pub hold_reason: Option<String>,
    /// The recipient's zone as guessed from the number.
    pub zone: Option<String>,
    /// When Twilio accepted it.
    #[serde(serialize_with = "json_shape::optional_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub sent_at: Option<i64>,
    /// Created.
    #[serde(serialize_with = "json_shape::time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Last change.
    #[serde(serialize_with = "json_shape::time")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

/// One conversation of [`Store::message_threads`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct MessageThread {
    /// The other side: `+1415...` or `whatsapp:+1415...`.
    pub address: String,
    /// `sms` or `whatsapp`.
    pub channel: String,
    /// Messages in all.
    pub messages: i64,
    /// Of those, received.
    pub inbound: i64,
    /// The latest message's time (Unix ms).
    pub last_at: i64,
    /// The latest message's body.
    pub last_body: Option<String>,
    /// The latest message's direction.
    pub last_direction: Option<String>,
}

/// Queue depth and counts for health and metrics.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow,
)]
#[serde(rename_all = "camelCase")]
pub struct MessageStats {
    /// Outbound messages not yet accepted by Twilio (waiting or being sent).
    pub queue_depth: i64,
    /// Of those, waiting for a later time (quiet hours, `sendAt`, retry backoff).
    pub held: i64,
    /// When Twilio last accepted a message (Unix ms; RFC 3339 in JSON).
    #[serde(serialize_with = "json_shape::optional_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_sent_at: Option<i64>,
    /// Accepted by Twilio in the last 24 hours.
    pub sent_24h: i64,
    /// Delivered in the last 24 hours.
    pub delivered_24h: i64,
    /// Failed or undelivered in the last 24 hours.
    pub failed_24h: i64,
    /// Received in the last 24 hours.
    pub received_24h: i64,
}

const COLUMNS: &str = "id, direction, channel, to_number, from_number, body, content_sid, \
    content_variables, encoding, segments, \
    status, message_sid, error_code, error_message, attempts, send_at, hold_reason, zone, \
    sent_at, created_at, updated_at";

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Store {
    /// Queues an outbound message; returns its id.
    pub async fn insert_message(&self, m: &NewMessage, now_ms: i64) -> Result<i64, StoreError> {
        on_writer!(self, pool => {
            Ok(insert_message_row!(pool, m, now_ms))
        })
    }

    /// One message.
    pub async fn message(&self, id: i64) -> Result<Option<MessageRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM messages WHERE id = $1");
        on_reader!(self, pool => {
            Ok(sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?)
        })
    }

    /// The conversations: one per address messages went to or came from (`+1415...`, or
    /// `whatsapp:+1415...` apart), the latest first, paged; and how many there are.
    pub async fn message_threads(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<MessageThread>, i64), StoreError> {
        // One pass over the messages: each address's count, received count and latest message
        // by window functions (SQLite 3.25+, PostgreSQL).
        let threads = "SELECT address, channel, body, direction, created_at, \
            COUNT(*) OVER (PARTITION BY address) AS messages, \
            SUM(CASE WHEN direction = 'inbound' THEN 1 ELSE 0 END) OVER (PARTITION BY address) \
              AS inbound, \
            ROW_NUMBER() OVER (PARTITION BY address ORDER BY created_at DESC, id DESC) AS latest \
            FROM (SELECT CASE WHEN direction = 'inbound' THEN from_number ELSE to_number END \
              AS address, channel, body, direction, created_at, id FROM messages) m \
            WHERE address IS NOT NULL";
        let page_sql = format!(
            "SELECT address, channel, messages, CAST(inbound AS BIGINT) AS inbound, \
             created_at AS last_at, body AS last_body, direction AS last_direction \
             FROM ({threads}) t WHERE latest = 1 \
             ORDER BY created_at DESC, address LIMIT $1 OFFSET $2"
        );
        let count_sql = format!("SELECT COUNT(*) AS n FROM ({threads}) t WHERE latest = 1");
        on_reader!(self, pool => {
            let page = sqlx::query_as(&page_sql)
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let total = sqlx::query_scalar(&count_sql).fetch_one(pool).await?;
            Ok((page, total))
        })
    }

    /// Messages to or from `number`, oldest first (a recipient's thread), at most `limit`.
    pub async fn message_thread(
        &self,
        number: &str,
        limit: i64,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM messages WHERE to_number = $1 OR from_number = $1 \
             ORDER BY created_at, id LIMIT $2"
        );
        on_reader!(self, pool => {
            Ok(sqlx::query_as(&sql).bind(number).bind(limit).fetch_all(pool).await?)
        })
    }

    /// Each sender's latest send activity at or after `since_ms` (the last change, Unix ms, of a
    /// message it has tried to send: claimed, accepted, or a status after): where a restarted
    /// sender resumes pacing, so a restart never sends faster than the sender's rate.
    pub async fn recent_message_activity(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        on_reader!(self, pool => {
            Ok(sqlx::query_as(
                "SELECT from_number, MAX(updated_at) FROM messages WHERE direction = 'outbound' \
                 AND attempts > 0 AND updated_at >= $1 GROUP BY from_number",
            )
            .bind(since_ms)
            .fetch_all(pool)
            .await?)
        })
    }

    /// The senders that have messages due at `now_ms` (waiting, or claimed under an expired
    /// lease), with how many.
    pub async fn due_message_senders(&self, now_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        on_reader!(self, pool => {
            Ok(sqlx::query_as(
                "SELECT from_number, COUNT(*) FROM messages WHERE direction = 'outbound' AND \
                 ((status = 'scheduled' AND send_at <= $1) OR (status = 'claimed' AND lease_until < $1)) \
                 GROUP BY from_number",
            )
            .bind(now_ms)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Claims up to `limit` due messages of `sender` for `owner` until `now_ms + lease_ms`,
    /// oldest `send_at` first, counting an attempt on each. A row is claimed by one owner at a
    /// time (PostgreSQL skips rows another claim holds; SQLite has one writer).
    pub async fn claim_messages(
        &self,
        sender: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let due = "direction = 'outbound' AND from_number = $4 AND \
            ((status = 'scheduled' AND send_at <= $3) OR (status = 'claimed' AND lease_until < $3))";
        let lock = match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE messages SET status = 'claimed', lease_owner = $1, lease_until = $2, \
             attempts = attempts + 1, updated_at = $3 WHERE {due} AND id IN \
             (SELECT id FROM messages WHERE {due} ORDER BY send_at, id LIMIT $5 {lock}) \
             RETURNING {COLUMNS}"
        );
        let mut rows: Vec<MessageRecord> = on_writer!(self, pool => {
            sqlx::query_as(&sql)
                .bind(owner)
                .bind(now_ms + lease_ms)
                .bind(now_ms)
                .bind(sender)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.sort_by_key(|r| (r.send_at, r.id));
        Ok(rows)
    }

    /// Twilio accepted claimed message `id`: stores its SID and status, then applies any
    /// status callback for that SID that arrived before this commit. False when `owner` no
    /// longer holds the claim (its lease expired and another sender took it).
    pub async fn message_accepted(
        &self,
        id: i64,
        owner: &str,
        message_sid: &str,
        status: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let accepted = on_writer!(self, pool => {
            sqlx::query(
                "UPDATE messages SET status = $1, status_rank = $2, message_sid = $3, sent_at = $4, \
                 updated_at = $4, lease_owner = NULL, lease_until = NULL, hold_reason = NULL, \
                 error_code = NULL, error_message = NULL \
                 WHERE id = $5 AND status = 'claimed' AND lease_owner = $6",
            )
            .bind(status)
            .bind(message_status_rank(status))
            .bind(message_sid)
            .bind(now_ms)
            .bind(id)
            .bind(owner)
            .execute(pool)
            .await?
            .rows_affected()
                == 1
        });
        if accepted {
            let early: Option<(String, Option<i64>, Option<String>)> = on_reader!(self, pool => {
                sqlx::query_as(
                    "SELECT status, error_code, error_message FROM message_events \
                     WHERE message_sid = $1 ORDER BY status_rank DESC, id DESC LIMIT 1",
                )
                .bind(message_sid)
                .fetch_optional(pool)
                .await?
            });
            if let Some((status, code, meaning)) = early {
                let error = code.zip(meaning.as_deref());
                self.apply_message_status(message_sid, &status, error, now_ms)
                    .await?;
            }
        }
        Ok(accepted)
    }

    /// Puts claimed message `id` back to wait until `send_at` (`reason`: `quiet_hours`,
    /// `retry`), keeping the error that caused it, if any.
    pub async fn message_reschedule(
        &self,
        id: i64,
        owner: &str,
        send_at: i64,
        reason: &str,
        error: Option<(i64, &str)>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        on_writer!(self, pool => {
            let done = sqlx::query(
                "UPDATE messages SET status = 'scheduled', send_at = $1, hold_reason = $2, \
                 error_code = $3, error_message = $4, updated_at = $5, lease_owner = NULL, \
                 lease_until = NULL WHERE id = $6 AND status = 'claimed' AND lease_owner = $7",
            )
            .bind(send_at)
            .bind(reason)
            .bind(error.map(|e| e.0))
            .bind(error.map(|e| e.1))
            .bind(now_ms)
            .bind(id)
            .bind(owner)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Claimed message `id` failed for good with `code` (`meaning` recorded): never retried.
    pub async fn message_failed(
        &self,
        id: i64,
        owner: &str,
        code: Option<i64>,
        meaning: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        on_writer!(self, pool => {
            let done = sqlx::query(
                "UPDATE messages SET status = 'failed', status_rank = 4, error_code = $1, \
                 error_message = $2, updated_at = $3, lease_owner = NULL, lease_until = NULL, \
                 hold_reason = NULL WHERE id = $4 AND status = 'claimed' AND lease_owner = $5",
            )
            .bind(code)
            .bind(meaning)
            .bind(now_ms)
            .bind(id)
            .bind(owner)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// A status callback: logged, then moves the message with `message_sid` to `status` when
    /// that is further along than where it is (idempotent; a late callback changes nothing).
    /// Returns whether it changed. An error code is kept with its meaning. A callback that
    /// arrives before the send is committed is applied by [`Store::message_accepted`].
    pub async fn message_status(
        &self,
        message_sid: &str,
        status: &str,
        error: Option<(i64, &str)>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        on_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO message_events (message_sid, status, status_rank, error_code, \
                 error_message, received_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(message_sid)
            .bind(status)
            .bind(message_status_rank(status))
            .bind(error.map(|e| e.0))
            .bind(error.map(|e| e.1))
            .bind(now_ms)
            .execute(pool)
            .await?;
        });
        self.apply_message_status(message_sid, status, error, now_ms)
            .await
    }

    async fn apply_message_status(
        &self,
        message_sid: &str,
        status: &str,
        error: Option<(i64, &str)>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let rank = message_status_rank(status);
        on_writer!(self, pool => {
            let done = sqlx::query(
                "UPDATE messages SET status = $1, status_rank = $2, \
                 error_code = COALESCE($3, error_code), error_message = COALESCE($4, error_message), \
                 updated_at = $5 WHERE message_sid = $6 AND status_rank < $2",
            )
            .bind(status)
            .bind(rank)
            .bind(error.map(|e| e.0))
            .bind(error.map(|e| e.1))
            .bind(now_ms)
            .bind(message_sid)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Logs an inbound message once per `message_sid` (Twilio's retries of one webhook count
    /// once). Returns whether it was new.
    pub async fn record_inbound_message(
        &self,
        message_sid: &str,
        channel: &str,
        from: &str,
        to: &str,
        body: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        on_writer!(self, pool => {
            let done = sqlx::query(
                "INSERT INTO messages (direction, channel, to_number, from_number, body, status, \
                 status_rank, message_sid, attempts, send_at, created_at, updated_at) VALUES \
                 ('inbound', $1, $2, $3, $4, 'received', 0, $5, 0, $6, $6, $6) \
                 ON CONFLICT (message_sid) DO NOTHING",
            )
            .bind(channel)
            .bind(to)
            .bind(from)
            .bind(body)
            .bind(message_sid)
            .bind(now_ms)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Keeps the answer sent back in the TwiML of an incoming message (HELP's text, a
    /// follow-up reply's confirmation) in the thread: outbound to `to`, status `replied`, never
    /// queued or sent by the sender (Twilio sends it as the webhook's answer).
    pub async fn record_twiml_reply(
        &self,
        channel: &str,
        to: &str,
        from: &str,
        body: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        on_writer!(self, pool => {
            Ok(sqlx::query_scalar(
                "INSERT INTO messages (direction, channel, to_number, from_number, body, status, \
                 status_rank, attempts, send_at, created_at, updated_at) VALUES \
                 ('outbound', $1, $2, $3, $4, 'replied', 0, 0, $5, $5, $5) RETURNING id",
            )
            .bind(channel)
            .bind(to)
            .bind(from)
            .bind(body)
            .bind(now_ms)
            .fetch_one(pool)
            .await?)
        })
    }

    /// When `from` last sent a message on `channel` (Unix ms), e.g. to know whether a
    /// WhatsApp session window is open.
    pub async fn last_inbound_at(
        &self,
        from: &str,
        channel: &str,
    ) -> Result<Option<i64>, StoreError> {
        on_reader!(self, pool => {
            Ok(sqlx::query_scalar(
                "SELECT MAX(created_at) FROM messages WHERE direction = 'inbound' AND \
                 from_number = $1 AND channel = $2",
            )
            .bind(from)
            .bind(channel)
            .fetch_one(pool)
            .await?)
        })
    }

    /// Queue depth, last send and 24-hour counts at `now_ms`.
    pub async fn message_stats(&self, now_ms: i64) -> Result<MessageStats, StoreError> {
        on_reader!(self, pool => {
            Ok(sqlx::query_as(
                "SELECT \
                 COUNT(CASE WHEN direction = 'outbound' AND status IN ('scheduled', 'claimed') THEN 1 END) AS queue_depth, \
                 COUNT(CASE WHEN direction = 'outbound' AND status = 'scheduled' AND send_at > $1 THEN 1 END) AS held, \
                 MAX(sent_at) AS last_sent_at, \
                 COUNT(CASE WHEN sent_at >= $2 THEN 1 END) AS sent_24h, \
                 COUNT(CASE WHEN status = 'delivered' AND updated_at >= $2 THEN 1 END) AS delivered_24h, \
                 COUNT(CASE WHEN direction = 'outbound' AND status IN ('failed', 'undelivered') AND updated_at >= $2 THEN 1 END) AS failed_24h, \
                 COUNT(CASE WHEN direction = 'inbound' AND created_at >= $2 THEN 1 END) AS received_24h \
                 FROM messages",
            )
            .bind(now_ms)
            .bind(now_ms - DAY_MS)
            .fetch_one(pool)
            .await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::message_status_rank;

    #[test]
    fn later_statuses_rank_higher() {
        let order = ["claimed", "queued", "sending", "sent", "delivered", "read"];
        for pair in order.windows(2) {
            assert!(
                message_status_rank(pair[0]) < message_status_rank(pair[1]),
                "{pair:?}"
            );
        }
        assert_eq!(
            message_status_rank("undelivered"),
            message_status_rank("failed")
        );
    }
}
