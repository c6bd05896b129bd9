//! Screenings requested through the API: the request, the outcome of creating its call, the
//! per-candidate daily count, and what the screening agent collected.

use serde::Serialize;

use crate::order::status_rank;
use crate::screening_state::sync_screening;
use crate::webhook_outbox::{ENQUEUE_FOR_SCREENING, ScreeningCallback};
use crate::{Store, StoreError, json_column, json_shape, on_reader, on_writer};

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

/// How a screening's call is retried and followed up, frozen on the row when it is requested
/// (`api.retries`, `api.follow_up`), and the campaign it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outreach {
    /// Calls allowed in all (at least 1: no retry).
    pub max_attempts: i64,
    /// From a missed call's end to the next attempt (Unix ms).
    pub retry_after_ms: i64,
    /// Send the follow-up SMS when the first call is missed and retried.
    pub follow_up: bool,
    /// The campaign (bulk launch) it is part of.
    pub campaign_id: Option<i64>,
}

impl Default for Outreach {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            retry_after_ms: 0,
            follow_up: false,
            campaign_id: None,
        }
    }
}

/// One finished attempt of a retried screening.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScreeningAttempt {
    /// 1 for the first call.
    pub attempt: i64,
    /// The call it placed.
    pub call_sid: String,
    /// How it ended: `no_answer`, `failed` or `voicemail`.
    pub state: String,
    /// The agent's outcome, if it stored one.
    pub outcome: Option<String>,
    /// When the call ended and the next attempt was scheduled (Unix ms; RFC 3339 in JSON).
    #[serde(serialize_with = "json_shape::time")]
    #[schema(value_type = String, format = DateTime)]
    pub ended_at: i64,
}

/// A stored screening.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    /// `requested`, `calling`, `in_progress`, `completed`, `failed`, `no_answer`, `voicemail`,
    /// `canceled` (see [`crate::SCREENING_STATES`]), or `unrequested` for a call nobody
    /// requested.
    pub state: String,
    /// Why creating the call failed.
    pub error: Option<String>,
    /// When a `scheduled` screening's call is due (outside the candidate's calling hours when
    /// requested, or the next attempt after a missed call), or was due when it was placed.
    #[serde(serialize_with = "json_shape::optional_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub scheduled_for: Option<i64>,
    /// The attempt under way or last made (1 for the first call).
    pub attempt: i64,
    /// Calls allowed before a missed screening ends for good (`api.retries.max_attempts` when
    /// requested).
    pub max_attempts: i64,
    /// The follow-up SMS after a missed call: `wanted` (none missed yet), `due`, `sent`,
    /// `skipped` (opted out, or no sender), or null when none is sent.
    pub follow_up: Option<String>,
    /// The campaign it was launched in.
    pub campaign_id: Option<i64>,
    /// When it ended for good (no more attempts; its result webhook queued then).
    #[serde(serialize_with = "json_shape::optional_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<i64>,
    /// Answers as JSON, keys in camelCase (set by the agent).
    pub answers: Option<serde_json::Value>,
    /// Outcome (set by the agent).
    pub outcome: Option<String>,
    /// Summary (set by the agent): the JSON nested, or the text as a string.
    pub summary: Option<serde_json::Value>,
    /// The screening's own result webhook URL, if it was requested with one.
    pub callback_url: Option<String>,
    /// The caller's metadata, as given when requested (echoed in the result webhook).
    pub metadata: Option<serde_json::Value>,
    /// Requested at (Unix ms; RFC 3339 in JSON).
    #[serde(serialize_with = "json_shape::time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Last change (Unix ms; RFC 3339 in JSON).
    #[serde(serialize_with = "json_shape::time")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

/// Filter and page for [`Store::list_screenings`].
#[derive(Debug, Clone, Default)]
pub struct ScreeningFilter {
    /// Only this state.
    pub state: Option<String>,
    /// Only this outcome.
    pub outcome: Option<String>,
    /// Only this candidate.
    pub candidate_id: Option<String>,
    /// Requested at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Requested before (Unix ms).
    pub until_ms: Option<i64>,
    /// Page size.
    pub limit: i64,
    /// Rows to skip.
    pub offset: i64,
}

/// The columns of [`ScreeningRow`].
pub(crate) const SCREENING_COLUMNS: &str = "id, call_sid, candidate_id, first_name, phone, job_title, \
    screening, state, error, scheduled_for, attempt, max_attempts, follow_up, campaign_id, \
    ended_at, answers, outcome, summary, \
    (SELECT cb.callback_url FROM screening_callbacks cb WHERE cb.screening_id = screenings.id) \
    AS callback_url, \
    (SELECT cb.metadata FROM screening_callbacks cb WHERE cb.screening_id = screenings.id) \
    AS metadata, created_at, updated_at";

/// A `screenings` row as read ([`SCREENING_COLUMNS`]); `answers` is JSON stored as text.
#[derive(sqlx::FromRow)]
pub(crate) struct ScreeningRow {
    id: i64,
    call_sid: Option<String>,
    candidate_id: String,
    first_name: String,
    phone: String,
    job_title: String,
    screening: String,
    state: String,
    error: Option<String>,
    scheduled_for: Option<i64>,
    attempt: i64,
    max_attempts: i64,
    follow_up: Option<String>,
    campaign_id: Option<i64>,
    ended_at: Option<i64>,
    answers: Option<String>,
    outcome: Option<String>,
    summary: Option<String>,
    callback_url: Option<String>,
    metadata: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ScreeningRow> for ScreeningRecord {
    type Error = StoreError;

    fn try_from(row: ScreeningRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            call_sid: row.call_sid,
            candidate_id: row.candidate_id,
            first_name: row.first_name,
            phone: row.phone,
            job_title: row.job_title,
            screening: row.screening,
            state: row.state,
            error: row.error,
            scheduled_for: row.scheduled_for,
            attempt: row.attempt,
            max_attempts: row.max_attempts,
            follow_up: row.follow_up,
            campaign_id: row.campaign_id,
            ended_at: row.ended_at,
            answers: row
                .answers
                .map(|text| json_column(&text, "screenings.answers"))
                .transpose()?
                .map(json_shape::camel_case_keys),
            outcome: row.outcome,
            summary: row.summary.map(json_shape::json_or_text),
            callback_url: row.callback_url,
            metadata: row
                .metadata
                .map(|text| json_column(&text, "screening_callbacks.metadata"))
                .transpose()?,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Inserts a `requested` screening: candidate, first name, phone, job title, screening,
/// created at; returns its id.
const INSERT_SCREENING: &str = "INSERT INTO screenings (candidate_id, first_name, phone, \
    job_title, screening, state, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, 'requested', $6, $6) RETURNING id";

/// Inserts the `screenings` row of `$new` inside the transaction `$tx`: `scheduled` for
/// `$scheduled_for` (an `Option<i64>`) or `requested`, with its [`Outreach`]; evaluates to its
/// id. A macro because each backend's transaction is its own type.
macro_rules! insert_screening_row {
    ($tx:ident, $new:expr, $scheduled_for:expr, $outreach:expr) => {{
        let new: &NewScreening = $new;
        let scheduled_for: Option<i64> = $scheduled_for;
        let outreach: Outreach = $outreach;
        sqlx::query_scalar(
            "INSERT INTO screenings (candidate_id, first_name, phone, job_title, screening, \
             state, scheduled_for, max_attempts, retry_after_ms, follow_up, campaign_id, \
             created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING id",
        )
        .bind(&new.candidate_id)
        .bind(&new.first_name)
        .bind(&new.phone)
        .bind(&new.job_title)
        .bind(&new.screening)
        .bind(if scheduled_for.is_some() {
            "scheduled"
        } else {
            "requested"
        })
        .bind(scheduled_for)
        .bind(outreach.max_attempts.max(1))
        .bind(outreach.retry_after_ms.max(0))
        .bind(outreach.follow_up.then_some("wanted"))
        .bind(outreach.campaign_id)
        .bind(new.created_at_ms)
        .fetch_one(&mut *$tx)
        .await?
    }};
}
pub(crate) use insert_screening_row;

/// Records screening `$id`'s result webhook (`$callback`, a `&ScreeningCallback`) inside the
/// transaction `$tx`, at `$at` (Unix ms).
macro_rules! insert_callback {
    ($tx:ident, $id:expr, $callback:expr, $at:expr) => {{
        let callback: &$crate::ScreeningCallback = $callback;
        sqlx::query(
            "INSERT INTO screening_callbacks \
             (screening_id, callback_url, metadata, deliver, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind($id)
        .bind(&callback.url)
        .bind(callback.metadata.as_ref().map(serde_json::Value::to_string))
        .bind(i64::from(callback.deliver))
        .bind($at)
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(crate) use insert_callback;

/// Closes a screening's open intent: resolved at, resolution, screening id.
const RESOLVE_INTENT: &str = "UPDATE screening_intents SET resolved_at = $1, resolution = $2 \
    WHERE screening_id = $3 AND resolved_at IS NULL";

/// An intent to place a screening call that is still open: no call linked, not failed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScreeningIntent {
    /// The screening.
    pub screening_id: i64,
    /// The number to call (E.164).
    pub to_number: String,
    /// The number calling (E.164).
    pub from_number: String,
    /// When it was recorded, just before the REST call (Unix ms).
    pub created_at: i64,
}

/// A client's `Idempotency-Key` and a digest of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The key as the client sent it.
    pub key: String,
    /// A digest of the request, to tell a retry from a different request reusing the key.
    pub request_hash: String,
}

/// What [`Store::insert_keyed_screening_intent`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyedInsert {
    /// The screening (and its intent) was recorded with this id.
    Created(i64),
    /// The key was already used: by this screening, for the request with this digest.
    Existing {
        /// The screening the key's first request created.
        screening_id: i64,
        /// That request's digest.
        request_hash: String,
    },
}

/// What [`Store::mark_screening_initiated`] copies from the screening onto the call row.
#[derive(sqlx::FromRow)]
struct InitiatedScreening {
    candidate_id: String,
    phone: String,
    screening: String,
}

impl Store {
    /// Records a requested screening (state `requested`) and returns its id.
    pub async fn insert_screening(&self, new: &NewScreening) -> Result<i64, StoreError> {
        on_writer!(self, pool => {
            Ok(sqlx::query_scalar(INSERT_SCREENING)
                .bind(&new.candidate_id)
                .bind(&new.first_name)
                .bind(&new.phone)
                .bind(&new.job_title)
                .bind(&new.screening)
                .bind(new.created_at_ms)
                .fetch_one(pool)
                .await?)
        })
    }

    /// Records a requested screening and the intent to call its phone from `from`, in one
    /// transaction, before Twilio is asked to place the call; returns the screening id. The
    /// intent stays open until the call is linked ([`Store::mark_screening_initiated`]) or the
    /// screening failed ([`Store::mark_screening_failed`]); start-up reconciliation resolves
    /// the intents a crash left open ([`Store::open_screening_intents`]).
    pub async fn insert_screening_intent(
        &self,
        new: &NewScreening,
        from: &str,
    ) -> Result<i64, StoreError> {
        match self.insert_keyed_screening_intent(new, from, None).await? {
            KeyedInsert::Created(id)
            | KeyedInsert::Existing {
                screening_id: id, ..
            } => Ok(id),
        }
    }

    /// [`Store::insert_screening_intent`] under an `Idempotency-Key`: the key is recorded in the
    /// same transaction as the screening, so exactly one of several requests with one key (at
    /// once, or retried after a restart) creates a screening; the others get
    /// [`KeyedInsert::Existing`] and nothing is recorded for them. Without a key it always
    /// creates.
    pub async fn insert_keyed_screening_intent(
        &self,
        new: &NewScreening,
        from: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<KeyedInsert, StoreError> {
        self.insert_requested_screening(new, from, key, None).await
    }

    /// [`Store::insert_keyed_screening_intent`] with the screening's result webhook
    /// (`callback`), recorded in the same transaction.
    pub async fn insert_requested_screening(
        &self,
        new: &NewScreening,
        from: &str,
        key: Option<&IdempotencyKey>,
        callback: Option<&ScreeningCallback>,
    ) -> Result<KeyedInsert, StoreError> {
        self.insert_screening_request(new, Some(from), key, callback, None, Outreach::default())
            .await
    }

    /// [`Store::insert_requested_screening`] for a call due at `scheduled_for` (Unix ms): the
    /// screening is `scheduled` with no intent yet; [`Store::claim_scheduled_screening`] records
    /// the intent when the call is placed.
    pub async fn insert_scheduled_screening(
        &self,
        new: &NewScreening,
        scheduled_for: i64,
        key: Option<&IdempotencyKey>,
        callback: Option<&ScreeningCallback>,
    ) -> Result<KeyedInsert, StoreError> {
        self.insert_screening_request(
            new,
            None,
            key,
            callback,
            Some(scheduled_for),
            Outreach::default(),
        )
        .await
    }

    /// Records a screening (with its `Idempotency-Key` and result webhook): `scheduled` for
    /// `scheduled_for` with no intent yet, else `requested` with the intent to call from `from`
    /// ([`Store::insert_requested_screening`]); retried and followed up as `outreach` says.
    pub async fn insert_screening_request(
        &self,
        new: &NewScreening,
        from: Option<&str>,
        key: Option<&IdempotencyKey>,
        callback: Option<&ScreeningCallback>,
        scheduled_for: Option<i64>,
        outreach: Outreach,
    ) -> Result<KeyedInsert, StoreError> {
        let created = on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let id: i64 = insert_screening_row!(tx, new, scheduled_for, outreach);
            // PostgreSQL makes a concurrent insert of the same key wait for the first
            // transaction, then do nothing; SQLite's writers are serialised by the pool.
            let claimed = match key {
                None => true,
                Some(key) => {
                    sqlx::query(
                        "INSERT INTO screening_idempotency_keys \
                         (idempotency_key, request_hash, screening_id, created_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (idempotency_key) DO NOTHING",
                    )
                    .bind(&key.key)
                    .bind(&key.request_hash)
                    .bind(id)
                    .bind(new.created_at_ms)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1
                }
            };
            if claimed {
                if let Some(from) = from {
                    sqlx::query(
                        "INSERT INTO screening_intents (screening_id, to_number, from_number, \
                         created_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(id)
                    .bind(&new.phone)
                    .bind(from)
                    .bind(new.created_at_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                if let Some(callback) = callback {
                    insert_callback!(tx, id, callback, new.created_at_ms);
                }
                tx.commit().await?;
                Some(id)
            } else {
                tx.rollback().await?;
                None
            }
        });
        if let Some(id) = created {
            return Ok(KeyedInsert::Created(id));
        }
        let key = key.map_or("", |k| k.key.as_str());
        match self.screening_for_idempotency_key(key).await? {
            Some(existing) => Ok(existing),
            // The key's row is never deleted, so this is a store that lost a committed row.
            None => Err(StoreError::Database(sqlx::Error::RowNotFound)),
        }
    }

    /// The screening an `Idempotency-Key` created, as [`KeyedInsert::Existing`], if the key was
    /// used.
    pub async fn screening_for_idempotency_key(
        &self,
        key: &str,
    ) -> Result<Option<KeyedInsert>, StoreError> {
        let row: Option<(i64, String)> = on_writer!(self, pool => {
            sqlx::query_as(
                "SELECT screening_id, request_hash FROM screening_idempotency_keys \
                 WHERE idempotency_key = $1",
            )
            .bind(key)
            .fetch_optional(pool)
            .await?
        });
        Ok(
            row.map(|(screening_id, request_hash)| KeyedInsert::Existing {
                screening_id,
                request_hash,
            }),
        )
    }

    /// The `scheduled` screening due first at `now_ms` (`scheduled_for` at or before it), if any.
    pub async fn next_due_screening(
        &self,
        now_ms: i64,
    ) -> Result<Option<ScreeningRecord>, StoreError> {
        let sql = format!(
            "SELECT {SCREENING_COLUMNS} FROM screenings WHERE state = 'scheduled' \
             AND scheduled_for <= $1 ORDER BY priority DESC, scheduled_for, id LIMIT 1"
        );
        let row: Option<ScreeningRow> = on_reader!(self, pool => {
            sqlx::query_as(&sql).bind(now_ms).fetch_optional(pool).await?
        });
        row.map(ScreeningRecord::try_from).transpose()
    }

    /// Moves a `scheduled` screening's call to `at`; false when it is no longer scheduled.
    pub async fn reschedule_screening(
        &self,
        id: i64,
        at: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.move_scheduled(id, at, false, now_ms).await
    }

    /// Moves a `scheduled` screening's call to `at` at the candidate's request (a reply to the
    /// follow-up): it goes before the other due calls (a campaign's backlog) once due. False
    /// when it is no longer scheduled.
    pub async fn reschedule_screening_first(
        &self,
        id: i64,
        at: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.move_scheduled(id, at, true, now_ms).await
    }

    /// Moves scheduled screening `id` to `at`, first in line once due when `first`.
    async fn move_scheduled(
        &self,
        id: i64,
        at: i64,
        first: bool,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        on_writer!(self, pool => {
            Ok(sqlx::query(
                "UPDATE screenings SET scheduled_for = $1, updated_at = $2, \
                 priority = CASE WHEN $4 = 1 THEN 1 ELSE priority END \
                 WHERE id = $3 AND state = 'scheduled'",
            )
            .bind(at)
            .bind(now_ms)
            .bind(id)
            .bind(i64::from(first))
            .execute(pool)
            .await?
            .rows_affected()
                == 1)
        })
    }

    /// Cancels a `scheduled` screening (its call was never placed): state `canceled`, and its
    /// result webhook queued in the same transaction like any other end. `None` when there is
    /// no such screening; `Some(false)`, with the screening, when it is not scheduled (a placed
    /// call is not canceled here).
    pub async fn cancel_scheduled_screening(
        &self,
        id: i64,
        now_ms: i64,
    ) -> Result<Option<(bool, ScreeningRecord)>, StoreError> {
        let canceled = on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let canceled = sqlx::query(
                "UPDATE screenings SET state = 'canceled', updated_at = $1, ended_at = $1 \
                 WHERE id = $2 AND state = 'scheduled'",
            )
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if canceled {
                sqlx::query(ENQUEUE_FOR_SCREENING)
                    .bind(id)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            canceled
        });
        Ok(self.screening(id).await?.map(|record| (canceled, record)))
    }

    /// Claims a `scheduled` screening for placing its call now: it turns `requested` with an
    /// intent to call from `from` (as [`Store::insert_requested_screening`] records), in one
    /// transaction. False when it was not scheduled (another instance claimed it, or it was
    /// canceled).
    pub async fn claim_scheduled_screening(
        &self,
        id: i64,
        from: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let phone: Option<String> = sqlx::query_scalar(
                "UPDATE screenings SET state = 'requested', updated_at = $1 \
                 WHERE id = $2 AND state = 'scheduled' RETURNING phone",
            )
            .bind(now_ms)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(phone) = phone else {
                tx.rollback().await?;
                return Ok(false);
            };
            // A retry's intent replaces the previous attempt's (resolved when it was linked).
            sqlx::query(
                "INSERT INTO screening_intents (screening_id, to_number, from_number, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (screening_id) DO UPDATE SET \
                 to_number = excluded.to_number, from_number = excluded.from_number, \
                 created_at = excluded.created_at, resolved_at = NULL, resolution = NULL",
            )
            .bind(id)
            .bind(&phone)
            .bind(from)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Twilio created the call: links the screening to `call_sid` (state `calling`, or later if
    /// callbacks came first) and creates the call row (status `queued`, direction
    /// `outbound-api`) in one transaction.
    pub async fn mark_screening_initiated(
        &self,
        id: i64,
        call_sid: &str,
        from: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let screening: InitiatedScreening = sqlx::query_as(
                "UPDATE screenings SET call_sid = $1, state = 'calling', updated_at = $2 \
                 WHERE id = $3 RETURNING candidate_id, phone, screening",
            )
            .bind(call_sid)
            .bind(now_ms)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
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
            .bind(&screening.phone)
            .bind(&screening.candidate_id)
            .bind(&screening.screening)
            .bind(status_rank("queued"))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            sqlx::query(RESOLVE_INTENT)
                .bind(now_ms)
                .bind("linked")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            // Callbacks for the call may have come in before it was linked.
            sync_screening!(tx, call_sid, now_ms);
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
            let mut tx = pool.begin().await?;
            sqlx::query(
                "UPDATE screenings SET state = 'failed', error = $1, updated_at = $2, \
                 ended_at = $2 WHERE id = $3",
            )
            .bind(error)
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(RESOLVE_INTENT)
                .bind(now_ms)
                .bind("failed")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(ENQUEUE_FOR_SCREENING)
                .bind(id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The call create ended without a definite answer (timeout, unreadable 2xx, 5xx after
    /// retries): Twilio may have placed the call, so the attempt keeps counting toward the
    /// per-candidate daily limit. The screening stays `requested`, with the error, until
    /// reconciliation finds the call or fails it.
    pub async fn mark_screening_uncertain(
        &self,
        id: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on_writer!(self, pool => {
            sqlx::query(
                "UPDATE screenings SET error = $1, updated_at = $2 WHERE id = $3",
            )
            .bind(error)
            .bind(now_ms)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Open intents recorded at or before `before_ms`, oldest first.
    pub async fn open_screening_intents(
        &self,
        before_ms: i64,
    ) -> Result<Vec<ScreeningIntent>, StoreError> {
        on_reader!(self, pool => {
            Ok(sqlx::query_as(
                "SELECT i.screening_id, i.to_number, i.from_number, i.created_at \
                 FROM screening_intents i JOIN screenings s ON s.id = i.screening_id \
                 WHERE i.resolved_at IS NULL AND i.created_at <= $1 AND s.call_sid IS NULL \
                 ORDER BY i.created_at, i.screening_id",
            )
            .bind(before_ms)
            .fetch_all(pool)
            .await?)
        })
    }

    /// The screening with row id `id`.
    pub async fn screening(&self, id: i64) -> Result<Option<ScreeningRecord>, StoreError> {
        let sql = format!("SELECT {SCREENING_COLUMNS} FROM screenings WHERE id = $1");
        let row: Option<ScreeningRow> = on_reader!(self, pool => {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        row.map(ScreeningRecord::try_from).transpose()
    }

    /// Screenings, newest first, filtered and paged. Returns the page and the total matching.
    pub async fn list_screenings(
        &self,
        filter: &ScreeningFilter,
    ) -> Result<(Vec<ScreeningRecord>, i64), StoreError> {
        let condition = "($1 IS NULL OR state = $1) AND ($2 IS NULL OR outcome = $2) \
            AND ($3 IS NULL OR candidate_id = $3) AND ($4 IS NULL OR created_at >= $4) \
            AND ($5 IS NULL OR created_at < $5)";
        let page_sql = format!(
            "SELECT {SCREENING_COLUMNS} FROM screenings WHERE {condition} \
             ORDER BY created_at DESC, id DESC LIMIT $6 OFFSET $7"
        );
        let count_sql = format!("SELECT COUNT(*) AS n FROM screenings WHERE {condition}");
        let (rows, total): (Vec<ScreeningRow>, i64) = on_reader!(self, pool => {
            let rows = sqlx::query_as(&page_sql)
                .bind(&filter.state)
                .bind(&filter.outcome)
                .bind(&filter.candidate_id)
                .bind(filter.since_ms)
                .bind(filter.until_ms)
                .bind(filter.limit)
                .bind(filter.offset)
                .fetch_all(pool)
                .await?;
            let total = sqlx::query_scalar(&count_sql)
                .bind(&filter.state)
                .bind(&filter.outcome)
                .bind(&filter.candidate_id)
                .bind(filter.since_ms)
                .bind(filter.until_ms)
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        let page = rows
            .into_iter()
            .map(ScreeningRecord::try_from)
            .collect::<Result<_, _>>()?;
        Ok((page, total))
    }

    /// Screenings of `candidate_id` requested at or after `since_ms`, failed creates (failed
    /// with no call) excluded.
    pub async fn count_screenings_since(
        &self,
        candidate_id: &str,
        since_ms: i64,
    ) -> Result<i64, StoreError> {
        on_writer!(self, pool => {
            Ok(sqlx::query_scalar(
                "SELECT COUNT(*) AS n FROM screenings WHERE candidate_id = $1 AND created_at >= $2 \
                 AND NOT (state = 'failed' AND call_sid IS NULL)",
            )
            .bind(candidate_id)
            .bind(since_ms)
            .fetch_one(pool)
            .await?)
        })
    }

    /// The screening placed as `call_sid`.
    pub async fn screening_for_call(
        &self,
        call_sid: &str,
    ) -> Result<Option<ScreeningRecord>, StoreError> {
        let sql = format!("SELECT {SCREENING_COLUMNS} FROM screenings WHERE call_sid = $1");
        let row: Option<ScreeningRow> = on_reader!(self, pool => {
            sqlx::query_as(&sql).bind(call_sid).fetch_optional(pool).await?
        });
        row.map(ScreeningRecord::try_from).transpose()
    }

    /// Saves what the screening agent collected and moves the screening's state with it.
    /// Returns false if no screening has that call.
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
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE screenings SET answers = $1, outcome = $2, summary = $3, updated_at = $4 \
                 WHERE call_sid = $5",
            )
            .bind(&answers)
            .bind(outcome)
            .bind(summary)
            .bind(now_ms)
            .bind(call_sid)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sync_screening!(tx, call_sid, now_ms);
            tx.commit().await?;
            Ok(n > 0)
        })
    }
}
