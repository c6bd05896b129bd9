//! Outreach around screening calls: the attempts of a retried screening, the follow-up SMS after
//! a missed call and the candidate's reply to it, and campaigns (bulk launches) with their
//! progress.
//!
//! Retrying itself happens in `sync_screening!` (`screening_state`): a missed call with attempts
//! left turns its screening `scheduled` again, and the API's outreach loop places it like any
//! scheduled screening.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::messages::insert_message_row;
use crate::screenings::{SCREENING_COLUMNS, ScreeningRow, insert_callback, insert_screening_row};
use crate::webhook_outbox::{ENQUEUE_FOR_SCREENING, ScreeningCallback};
use crate::{
    NewMessage, NewScreening, Outreach, ScreeningAttempt, ScreeningRecord, Store, StoreError,
    json_shape, on_reader, on_writer,
};

/// A campaign to create: its name and script; its candidates come separately.
#[derive(Debug, Clone, Default)]
pub struct NewCampaign {
    /// A name for people (e.g. the requisition).
    pub name: String,
    /// The screening script every candidate gets.
    pub screening: String,
    /// When it was launched (Unix ms).
    pub created_at_ms: i64,
}

/// Where a campaign's screenings are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignProgress {
    /// Screenings in the campaign.
    pub total: i64,
    /// Due now, waiting for their turn at the account's call rate.
    pub queued: i64,
    /// Due later: the candidate's calling hours, or a retry after a missed call.
    pub scheduled: i64,
    /// Of those, retries after a missed call.
    pub retrying: i64,
    /// Being placed, ringing or in conversation.
    pub calling: i64,
    /// Ended for good.
    pub done: i64,
    /// Ended screenings by result: the agent's outcome for a completed one (`qualified`,
    /// `not_qualified`, ...), else the state (`no_answer`, `voicemail`, `failed`, `canceled`).
    pub done_by_outcome: BTreeMap<String, i64>,
}

/// A stored campaign with its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignRecord {
    /// Row id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Screening script.
    pub screening: String,
    /// Candidates launched.
    pub total: i64,
    /// Launched at (Unix ms; RFC 3339 in JSON).
    #[serde(serialize_with = "json_shape::time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Where its screenings are now.
    pub progress: CampaignProgress,
}

#[derive(sqlx::FromRow)]
struct CampaignRow {
    id: i64,
    name: String,
    screening: String,
    total: i64,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct ProgressRow {
    state: String,
    outcome: Option<String>,
    due: i64,
    retry: i64,
    ended: i64,
    n: i64,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// The advisory lock key that serialises campaign launches on PostgreSQL.
const CAMPAIGN_LOCK: i64 = 0x0076_6f78_6361_6d70; // "voxcamp"

/// Why a campaign left a candidate out: a screening of this script under way (`$1` candidate,
/// `$2` script), an opt-out of the number (`$3`), or the per-candidate daily limit (`$4` the
/// limit, `$5` a day ago; failed creates not counted, as `POST /api/screenings` counts).
const SKIP_REASON: &str = "SELECT CASE \
    WHEN EXISTS (SELECT 1 FROM screenings WHERE candidate_id = $1 AND screening = $2 \
      AND state IN ('scheduled', 'requested', 'calling', 'in_progress')) THEN 'under_way' \
    WHEN EXISTS (SELECT 1 FROM sms_consent WHERE number = $3 AND status = 'opted_out') \
      THEN 'opted_out' \
    WHEN (SELECT COUNT(*) FROM screenings WHERE candidate_id = $1 AND created_at >= $5 \
      AND NOT (state = 'failed' AND call_sid IS NULL)) >= $4 THEN 'daily_limit' \
    ELSE '' END";

/// Why [`Store::insert_campaign`] left candidates out: `under_way` (a screening of the script
/// is already under way: a launch sent twice), `opted_out` (the number replied STOP), or
/// `daily_limit` (`api.max_calls_per_candidate_per_day`).
pub const CAMPAIGN_SKIP_REASONS: [&str; 3] = ["under_way", "opted_out", "daily_limit"];

fn progress(rows: Vec<ProgressRow>) -> CampaignProgress {
    let mut p = CampaignProgress::default();
    for row in rows {
        p.total += row.n;
        match row.state.as_str() {
            "scheduled" if row.retry == 1 => {
                p.scheduled += row.n;
                p.retrying += row.n;
            }
            "scheduled" if row.due == 1 => p.queued += row.n,
            "scheduled" => p.scheduled += row.n,
            // A voicemail whose message is still being left may yet be retried.
            _ if row.ended == 0 => p.calling += row.n,
            state => {
                p.done += row.n;
                let key = match (&row.outcome, state) {
                    (Some(outcome), "completed") => outcome.clone(),
                    _ => state.to_owned(),
                };
                *p.done_by_outcome.entry(key).or_default() += row.n;
            }
        }
    }
    p
}

impl Store {
    /// The finished attempts of a retried screening, first first (the attempt under way, or the
    /// last, is the screening itself).
    pub async fn screening_attempts(&self, id: i64) -> Result<Vec<ScreeningAttempt>, StoreError> {
        on_reader!(self, pool => {
            Ok(sqlx::query_as(
                "SELECT attempt, call_sid, state, outcome, ended_at FROM screening_attempts \
                 WHERE screening_id = $1 ORDER BY attempt",
            )
            .bind(id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Whether a screening placed `call_sid`: linked now, or as an earlier attempt.
    pub async fn call_placed_for_screening(&self, call_sid: &str) -> Result<bool, StoreError> {
        on_reader!(self, pool => {
            let n: i64 = sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM screenings WHERE call_sid = $1) \
                 + (SELECT COUNT(*) FROM screening_attempts WHERE call_sid = $1) AS n",
            )
            .bind(call_sid)
            .fetch_one(pool)
            .await?;
            Ok(n > 0)
        })
    }

    /// The screenings of the candidate at `phone`, newest first, at most `limit`.
    pub async fn screenings_for_phone(
        &self,
        phone: &str,
        limit: i64,
    ) -> Result<Vec<ScreeningRecord>, StoreError> {
        let sql = format!(
            "SELECT {SCREENING_COLUMNS} FROM screenings WHERE phone = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let rows: Vec<ScreeningRow> = on_reader!(self, pool => {
            sqlx::query_as(&sql).bind(phone).bind(limit).fetch_all(pool).await?
        });
        rows.into_iter().map(ScreeningRecord::try_from).collect()
    }

    /// Screenings whose follow-up SMS is due (their first call was missed and is retried),
    /// oldest first, at most `limit`.
    pub async fn follow_ups_due(&self, limit: i64) -> Result<Vec<ScreeningRecord>, StoreError> {
        let sql = format!(
            "SELECT {SCREENING_COLUMNS} FROM screenings WHERE follow_up = 'due' \
             ORDER BY updated_at, id LIMIT $1"
        );
        let rows: Vec<ScreeningRow> = on_reader!(self, pool => {
            sqlx::query_as(&sql).bind(limit).fetch_all(pool).await?
        });
        rows.into_iter().map(ScreeningRecord::try_from).collect()
    }

    /// Settles screening `id`'s due follow-up: `message` queued and the screening `sent` with
    /// it, in one transaction, or `skipped` when there is none to send. Returns the message's
    /// id; `None` when the follow-up was no longer due (another instance settled it) or skipped.
    pub async fn settle_follow_up(
        &self,
        id: i64,
        message: Option<&NewMessage>,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let claimed = sqlx::query(
                "UPDATE screenings SET follow_up = $1, updated_at = $2 \
                 WHERE id = $3 AND follow_up = 'due'",
            )
            .bind(if message.is_some() { "sent" } else { "skipped" })
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            let queued = match message {
                Some(message) if claimed => {
                    let message_id: i64 = insert_message_row!(&mut *tx, message, now_ms);
                    sqlx::query("UPDATE screenings SET follow_up_message_id = $1 WHERE id = $2")
                        .bind(message_id)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    Some(message_id)
                }
                _ => None,
            };
            tx.commit().await?;
            Ok(queued)
        })
    }

    /// The screening a message from `phone` answers: the latest `scheduled` one whose follow-up
    /// SMS went to that number.
    pub async fn screening_awaiting_reply(
        &self,
        phone: &str,
    ) -> Result<Option<ScreeningRecord>, StoreError> {
        let sql = format!(
            "SELECT {SCREENING_COLUMNS} FROM screenings WHERE phone = $1 \
             AND state = 'scheduled' AND follow_up = 'sent' ORDER BY updated_at DESC, id DESC \
             LIMIT 1"
        );
        let row: Option<ScreeningRow> = on_writer!(self, pool => {
            sqlx::query_as(&sql).bind(phone).fetch_optional(pool).await?
        });
        row.map(ScreeningRecord::try_from).transpose()
    }

    /// The candidate at `phone` opted out: every screening of theirs waiting to be called
    /// (scheduled, or a retry) is canceled, each with its result webhook queued, in one
    /// transaction. Returns the ids canceled.
    pub async fn end_outreach(&self, phone: &str, now_ms: i64) -> Result<Vec<i64>, StoreError> {
        on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let ids: Vec<i64> = sqlx::query_scalar(
                "UPDATE screenings SET state = 'canceled', error = 'the candidate opted out', \
                 updated_at = $1, ended_at = $1 WHERE phone = $2 AND state = 'scheduled' \
                 RETURNING id",
            )
            .bind(now_ms)
            .bind(phone)
            .fetch_all(&mut *tx)
            .await?;
            for id in &ids {
                sqlx::query(ENQUEUE_FOR_SCREENING)
                    .bind(id)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(ids)
        })
    }

    /// Creates a campaign and a `scheduled` screening for each `(candidate, due at)` in one
    /// transaction, each retried as `outreach` says and with `callback`. A candidate is skipped
    /// (with one of [`CAMPAIGN_SKIP_REASONS`]) who already has a screening of this script under
    /// way, whose number opted out, or who has had `max_per_day` screenings in the last 24
    /// hours. Returns the campaign's id (`None`, and nothing recorded, when every candidate was
    /// skipped: a launch sent twice) and the candidates skipped with why. Launches are
    /// serialised (PostgreSQL: a transaction-scoped advisory lock; SQLite: its one writer), so
    /// two sent at once cannot both schedule a candidate.
    pub async fn insert_campaign(
        &self,
        campaign: &NewCampaign,
        candidates: &[(NewScreening, i64)],
        outreach: Outreach,
        callback: Option<&ScreeningCallback>,
        max_per_day: i64,
    ) -> Result<(Option<i64>, Vec<(String, &'static str)>), StoreError> {
        let postgres = self.backend() == crate::Backend::Postgres;
        on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            if postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(CAMPAIGN_LOCK)
                    .execute(&mut *tx)
                    .await?;
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO campaigns (name, screening, total, created_at) \
                 VALUES ($1, $2, 0, $3) RETURNING id",
            )
            .bind(&campaign.name)
            .bind(&campaign.screening)
            .bind(campaign.created_at_ms)
            .fetch_one(&mut *tx)
            .await?;
            let outreach = Outreach {
                campaign_id: Some(id),
                ..outreach
            };
            let mut skipped = Vec::new();
            for (new, due) in candidates {
                let reason: String = sqlx::query_scalar(SKIP_REASON)
                    .bind(&new.candidate_id)
                    .bind(&new.screening)
                    .bind(&new.phone)
                    .bind(max_per_day)
                    .bind(new.created_at_ms - DAY_MS)
                    .fetch_one(&mut *tx)
                    .await?;
                if let Some(reason) = CAMPAIGN_SKIP_REASONS.iter().find(|r| **r == reason) {
                    skipped.push((new.candidate_id.clone(), *reason));
                    continue;
                }
                let screening_id: i64 = insert_screening_row!(tx, new, Some(*due), outreach);
                if let Some(callback) = callback {
                    insert_callback!(tx, screening_id, callback, new.created_at_ms);
                }
            }
            if skipped.len() == candidates.len() {
                tx.rollback().await?;
                return Ok((None, skipped));
            }
            let total = i64::try_from(candidates.len() - skipped.len()).unwrap_or(i64::MAX);
            sqlx::query("UPDATE campaigns SET total = $1 WHERE id = $2")
                .bind(total)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok((Some(id), skipped))
        })
    }

    /// Campaign `id` with its progress at `now_ms`.
    pub async fn campaign(
        &self,
        id: i64,
        now_ms: i64,
    ) -> Result<Option<CampaignRecord>, StoreError> {
        let row: Option<CampaignRow> = on_reader!(self, pool => {
            sqlx::query_as(
                "SELECT id, name, screening, total, created_at FROM campaigns WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        match row {
            Some(row) => Ok(Some(self.with_progress(row, now_ms).await?)),
            None => Ok(None),
        }
    }

    /// Campaigns, newest first, paged, with their progress; and how many there are.
    pub async fn list_campaigns(
        &self,
        limit: i64,
        offset: i64,
        now_ms: i64,
    ) -> Result<(Vec<CampaignRecord>, i64), StoreError> {
        let (rows, total): (Vec<CampaignRow>, i64) = on_reader!(self, pool => {
            let rows = sqlx::query_as(
                "SELECT id, name, screening, total, created_at FROM campaigns \
                 ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2",
            )
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?;
            let total = sqlx::query_scalar("SELECT COUNT(*) AS n FROM campaigns")
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        let mut page = Vec::with_capacity(rows.len());
        for row in rows {
            page.push(self.with_progress(row, now_ms).await?);
        }
        Ok((page, total))
    }

    async fn with_progress(
        &self,
        row: CampaignRow,
        now_ms: i64,
    ) -> Result<CampaignRecord, StoreError> {
        let counts: Vec<ProgressRow> = on_reader!(self, pool => {
            sqlx::query_as(
                "SELECT state, outcome, due, retry, ended, COUNT(*) AS n FROM (SELECT state, \
                 outcome, CAST(CASE WHEN scheduled_for <= $2 THEN 1 ELSE 0 END AS BIGINT) AS due, \
                 CAST(CASE WHEN attempt > 1 THEN 1 ELSE 0 END AS BIGINT) AS retry, \
                 CAST(CASE WHEN ended_at IS NULL THEN 0 ELSE 1 END AS BIGINT) AS ended \
                 FROM screenings WHERE campaign_id = $1) t \
                 GROUP BY state, outcome, due, retry, ended",
            )
            .bind(row.id)
            .bind(now_ms)
            .fetch_all(pool)
            .await?
        });
        Ok(CampaignRecord {
            id: row.id,
            name: row.name,
            screening: row.screening,
            total: row.total,
            created_at: row.created_at,
            progress: progress(counts),
        })
    }
}
