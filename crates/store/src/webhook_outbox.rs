//! The outbox of result webhooks to the recruiter's ATS (`webhook_deliveries`), and the
//! callback a screening was requested with (`screening_callbacks`).
//!
//! A screening requested with a callback ([`ScreeningCallback::deliver`]) gets exactly one
//! delivery row when it first reaches a terminal state (`completed`, `failed`, `no_answer`,
//! `voicemail`, `canceled`): the row is inserted by the same transaction that moves the state
//! (`sync_screening!`, [`Store::mark_screening_failed`]), and `UNIQUE (screening_id)` with
//! `ON CONFLICT DO NOTHING` keeps a second terminal write (a retried status webhook, the agent's
//! result after the call's `completed`) from adding another.
//!
//! Workers claim due rows with a lease ([`Store::claim_webhook_deliveries`]): the claim sets
//! `lease_until` and a `lease_token` and counts the attempt, so a worker killed mid-attempt
//! leaves a row that any worker claims again once the lease has run out (at-least-once); on
//! PostgreSQL the claim skips rows another transaction holds (`FOR UPDATE SKIP LOCKED`), on
//! SQLite the single writer serialises claims. A worker records the attempt's result only
//! while it still holds the lease (`lease_token` unchanged).

use serde::Serialize;

use crate::{Backend, Store, StoreError, json_column, json_shape, on_reader, on_writer};

/// Every delivery state: waiting for an attempt, done, or given up after the last attempt.
pub const WEBHOOK_DELIVERY_STATES: [&str; 3] = ["pending", "delivered", "dead"];

/// The event a delivery carries.
pub const SCREENING_ENDED_EVENT: &str = "screening.ended";

/// Where and with what a screening's result goes (`POST /api/screenings`' `callbackUrl` and
/// `metadata`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScreeningCallback {
    /// The screening's own callback URL (`None`: the configured default).
    pub url: Option<String>,
    /// The caller's metadata, echoed back in the screening and in the webhook.
    pub metadata: Option<serde_json::Value>,
    /// Whether the result is delivered at all (a callback URL given, or a default configured
    /// when the screening was requested).
    pub deliver: bool,
}

/// Inserts the delivery of the screening selected by `{WHERE}` (`$1`) if it is terminal and
/// wants one; `$2` is now (Unix ms). One per screening, ever.
macro_rules! enqueue_sql {
    ($condition:literal) => {
        concat!(
            "INSERT INTO webhook_deliveries (screening_id, event, state, attempts, \
             next_attempt_at, created_at, updated_at) \
             SELECT s.id, 'screening.ended', 'pending', 0, $2, $2, $2 FROM screenings s \
             JOIN screening_callbacks cb ON cb.screening_id = s.id AND cb.deliver = 1 \
             WHERE ",
            $condition,
            " AND s.ended_at IS NOT NULL ON CONFLICT (screening_id) DO NOTHING"
        )
    };
}

/// [`enqueue_sql!`] for the screening of call `$1`.
pub(crate) const ENQUEUE_FOR_CALL: &str = enqueue_sql!("s.call_sid = $1");
/// [`enqueue_sql!`] for screening `$1`.
pub(crate) const ENQUEUE_FOR_SCREENING: &str = enqueue_sql!("s.id = $1");

/// A delivery as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// Row id; also the `Voxbridge-Delivery-Id` header, the receiver's idempotency key.
    pub id: i64,
    /// The screening whose result it carries.
    pub screening_id: i64,
    /// [`SCREENING_ENDED_EVENT`].
    pub event: String,
    /// One of [`WEBHOOK_DELIVERY_STATES`].
    pub state: String,
    /// Attempts made (counted when claimed).
    pub attempts: i64,
    /// When the next attempt is due (pending deliveries).
    #[serde(serialize_with = "json_shape::time")]
    #[schema(value_type = String, format = DateTime)]
    pub next_attempt_at: i64,
    /// The URL of the last attempt.
    pub url: Option<String>,
    /// The HTTP status of the last attempt's answer.
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The body sent (frozen at the first attempt), nested.
    pub payload: Option<serde_json::Value>,
    /// Enqueued at (the screening ended).
    #[serde(serialize_with = "json_shape::time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Last change.
    #[serde(serialize_with = "json_shape::time")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    /// When a receiver answered 2xx.
    #[serde(serialize_with = "json_shape::optional_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<i64>,
}

const DELIVERY_COLUMNS: &str = "id, screening_id, event, state, attempts, next_attempt_at, url, \
    last_status, last_error, payload, created_at, updated_at, delivered_at";

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    screening_id: i64,
    event: String,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    url: Option<String>,
    last_status: Option<i64>,
    last_error: Option<String>,
    payload: Option<String>,
    created_at: i64,
    updated_at: i64,
    delivered_at: Option<i64>,
}

impl TryFrom<DeliveryRow> for WebhookDelivery {
    type Error = StoreError;

    fn try_from(row: DeliveryRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            screening_id: row.screening_id,
            event: row.event,
            state: row.state,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            url: row.url,
            last_status: row.last_status,
            last_error: row.last_error,
            payload: row
                .payload
                .map(|text| json_column(&text, "webhook_deliveries.payload"))
                .transpose()?,
            created_at: row.created_at,
            updated_at: row.updated_at,
            delivered_at: row.delivered_at,
        })
    }
}

/// A delivery a worker claimed: attempt it, then [`Store::finish_webhook_attempt`].
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClaimedDelivery {
    /// Row id.
    pub id: i64,
    /// The screening.
    pub screening_id: i64,
    /// The event.
    pub event: String,
    /// This attempt's number (1 for the first).
    pub attempts: i64,
    /// The body frozen by an earlier attempt, if any (JSON text, sent byte for byte).
    pub payload: Option<String>,
    /// Enqueued at (Unix ms).
    pub created_at: i64,
}

/// What a claimed attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// The receiver answered 2xx.
    Delivered,
    /// It failed; try again at this time (Unix ms).
    Retry {
        /// When.
        at_ms: i64,
    },
    /// It failed and was the last attempt.
    Dead,
}

/// How [`Store::claim_webhook_deliveries`] claims.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    /// Now (Unix ms).
    pub now_ms: i64,
    /// Only first attempts of rows enqueued at or before this (the settle delay, so the agent's
    /// answers can land after the call's `completed`).
    pub settled_before_ms: i64,
    /// The lease runs out at this time (Unix ms).
    pub lease_until_ms: i64,
    /// This claim's token (unique per claim).
    pub lease_token: &'a str,
    /// Most rows.
    pub limit: i64,
}

/// What an attempt's outcome is recorded with.
#[derive(Debug, Clone, Copy)]
pub struct AttemptRecord<'a> {
    /// The delivery.
    pub id: i64,
    /// The claim's token.
    pub lease_token: &'a str,
    /// The URL posted to.
    pub url: &'a str,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<i64>,
    /// Why it failed.
    pub error: Option<&'a str>,
    /// Now (Unix ms).
    pub now_ms: i64,
}

/// The due rows a claim takes (`$2` now, `$3` settled before, `$4` limit); PostgreSQL skips rows
/// other claims hold locked.
macro_rules! claim_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE webhook_deliveries SET lease_until = $1, lease_token = $5, \
             attempts = attempts + 1, updated_at = $2 \
             WHERE state = 'pending' AND (lease_until IS NULL OR lease_until <= $2) AND id IN (\
             SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= $2 \
             AND (attempts > 0 OR created_at <= $3) \
             AND (lease_until IS NULL OR lease_until <= $2) \
             ORDER BY next_attempt_at, id LIMIT $4",
            $lock,
            ") RETURNING id, screening_id, event, attempts, payload, created_at"
        )
    };
}

const CLAIM_SQLITE: &str = claim_sql!("");
const CLAIM_POSTGRES: &str = claim_sql!(" FOR UPDATE SKIP LOCKED");

impl Store {
    /// Claims up to `request.limit` due deliveries for one attempt each (see the module docs).
    pub async fn claim_webhook_deliveries(
        &self,
        request: &ClaimRequest<'_>,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let sql = match self.backend() {
            Backend::Sqlite => CLAIM_SQLITE,
            Backend::Postgres => CLAIM_POSTGRES,
        };
        on_writer!(self, pool => {
            let mut claimed: Vec<ClaimedDelivery> = sqlx::query_as(sql)
                .bind(request.lease_until_ms)
                .bind(request.now_ms)
                .bind(request.settled_before_ms)
                .bind(request.limit)
                .bind(request.lease_token)
                .fetch_all(pool)
                .await?;
            claimed.sort_by_key(|d| d.id);
            Ok(claimed)
        })
    }

    /// Freezes the body of delivery `id` (its first attempt), while `lease_token` holds it.
    /// Returns the body to send: this one, or the one an earlier attempt froze.
    pub async fn freeze_webhook_payload(
        &self,
        id: i64,
        lease_token: &str,
        payload: &str,
    ) -> Result<Option<String>, StoreError> {
        on_writer!(self, pool => {
            sqlx::query(
                "UPDATE webhook_deliveries SET payload = $1 \
                 WHERE id = $2 AND lease_token = $3 AND payload IS NULL",
            )
            .bind(payload)
            .bind(id)
            .bind(lease_token)
            .execute(pool)
            .await?;
            Ok(sqlx::query_scalar::<_, Option<String>>(
                "SELECT payload FROM webhook_deliveries WHERE id = $1 AND lease_token = $2",
            )
            .bind(id)
            .bind(lease_token)
            .fetch_optional(pool)
            .await?
            .flatten())
        })
    }

    /// Records the result of a claimed attempt and releases the lease. Returns false when the
    /// lease was lost (it ran out and another worker claimed the row): nothing is recorded.
    pub async fn finish_webhook_attempt(
        &self,
        attempt: &AttemptRecord<'_>,
        result: &AttemptResult,
    ) -> Result<bool, StoreError> {
        let (state, next, delivered) = match result {
            AttemptResult::Delivered => ("delivered", None, Some(attempt.now_ms)),
            AttemptResult::Retry { at_ms } => ("pending", Some(*at_ms), None),
            AttemptResult::Dead => ("dead", None, None),
        };
        on_writer!(self, pool => {
            let n = sqlx::query(
                "UPDATE webhook_deliveries SET state = $1, \
                 next_attempt_at = COALESCE($2, next_attempt_at), delivered_at = $3, \
                 url = $4, last_status = $5, last_error = $6, updated_at = $7, \
                 lease_until = NULL, lease_token = NULL \
                 WHERE id = $8 AND lease_token = $9",
            )
            .bind(state)
            .bind(next)
            .bind(delivered)
            .bind(attempt.url)
            .bind(attempt.status)
            .bind(attempt.error)
            .bind(attempt.now_ms)
            .bind(attempt.id)
            .bind(attempt.lease_token)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
    }

    /// Puts a delivered or dead delivery back in the queue for a fresh round of attempts (same
    /// id, same body). Returns the delivery, `None` if there is no such delivery; a pending one
    /// is returned unchanged (check its state).
    pub async fn redeliver_webhook(
        &self,
        id: i64,
        now_ms: i64,
    ) -> Result<Option<(bool, WebhookDelivery)>, StoreError> {
        let requeued = on_writer!(self, pool => {
            sqlx::query(
                "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, \
                 next_attempt_at = $1, lease_until = NULL, lease_token = NULL, \
                 delivered_at = NULL, updated_at = $1 \
                 WHERE id = $2 AND state IN ('delivered', 'dead')",
            )
            .bind(now_ms)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
                == 1
        });
        Ok(self
            .webhook_delivery(id)
            .await?
            .map(|delivery| (requeued, delivery)))
    }

    /// One delivery.
    pub async fn webhook_delivery(&self, id: i64) -> Result<Option<WebhookDelivery>, StoreError> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1");
        let row: Option<DeliveryRow> = on_reader!(self, pool => {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        row.map(WebhookDelivery::try_from).transpose()
    }

    /// Deliveries, newest first, optionally in one state (and of one screening); the page and
    /// the total matching.
    pub async fn list_webhook_deliveries(
        &self,
        state: Option<&str>,
        screening_id: Option<i64>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<WebhookDelivery>, i64), StoreError> {
        let condition = "($1 IS NULL OR state = $1) AND ($2 IS NULL OR screening_id = $2)";
        let page_sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {condition} \
             ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
        );
        let count_sql = format!("SELECT COUNT(*) AS n FROM webhook_deliveries WHERE {condition}");
        let (rows, total): (Vec<DeliveryRow>, i64) = on_reader!(self, pool => {
            let rows = sqlx::query_as(&page_sql)
                .bind(state)
                .bind(screening_id)
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let total = sqlx::query_scalar(&count_sql)
                .bind(state)
                .bind(screening_id)
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        let page = rows
            .into_iter()
            .map(WebhookDelivery::try_from)
            .collect::<Result<_, _>>()?;
        Ok((page, total))
    }

    /// How many deliveries are in each of [`WEBHOOK_DELIVERY_STATES`], in that order.
    pub async fn webhook_delivery_counts(&self) -> Result<[i64; 3], StoreError> {
        let rows: Vec<(String, i64)> = on_reader!(self, pool => {
            sqlx::query_as("SELECT state, COUNT(*) AS n FROM webhook_deliveries GROUP BY state")
                .fetch_all(pool)
                .await?
        });
        let mut counts = [0; 3];
        for (state, n) in rows {
            if let Some(i) = WEBHOOK_DELIVERY_STATES.iter().position(|s| *s == state) {
                counts[i] = n;
            }
        }
        Ok(counts)
    }
}
