//! SMS consent per number (`sms_consent`): opt-outs (`STOP`) and opt-ins, the current state
//! per number and every change in `sms_consent_events` (time, keyword, channel).

use serde::Serialize;

use crate::{Store, StoreError, json_shape, on_reader, on_writer};

/// One consent change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ConsentEvent {
    /// The number (E.164).
    pub number: String,
    /// `opted_out` or `opted_in`.
    pub status: String,
    /// The keyword that caused it (`STOP`, `START`, ...), upper-case.
    pub keyword: Option<String>,
    /// `sms` or `whatsapp`.
    pub channel: Option<String>,
    /// When (Unix ms; RFC 3339 in JSON).
    #[serde(serialize_with = "json_shape::time")]
    pub at: i64,
}

impl Store {
    /// Records SMS consent for a number (`opted_out`, `opted_in`), with no channel.
    pub async fn set_sms_consent(
        &self,
        number: &str,
        status: &str,
        keyword: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.record_consent(number, status, keyword, None, now_ms)
            .await
    }

    /// Records a consent change for `number` (`opted_out`, `opted_in`) received on `channel`:
    /// the current state and the change, in one transaction.
    pub async fn record_consent(
        &self,
        number: &str,
        status: &str,
        keyword: Option<&str>,
        channel: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO sms_consent (number, status, keyword, channel, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (number) DO UPDATE SET status = excluded.status, \
                 keyword = excluded.keyword, channel = excluded.channel, \
                 updated_at = excluded.updated_at",
            )
            .bind(number)
            .bind(status)
            .bind(keyword)
            .bind(channel)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO sms_consent_events (number, status, keyword, channel, at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(number)
            .bind(status)
            .bind(keyword)
            .bind(channel)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The stored SMS consent status for a number.
    pub async fn sms_consent(&self, number: &str) -> Result<Option<String>, StoreError> {
        on_reader!(self, pool => {
            Ok(sqlx::query_scalar("SELECT status FROM sms_consent WHERE number = $1")
                .bind(number)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Every consent change of `number`, oldest first.
    pub async fn consent_history(&self, number: &str) -> Result<Vec<ConsentEvent>, StoreError> {
        on_reader!(self, pool => {
            Ok(sqlx::query_as(
                "SELECT number, status, keyword, channel, at FROM sms_consent_events \
                 WHERE number = $1 ORDER BY at, id",
            )
            .bind(number)
            .fetch_all(pool)
            .await?)
        })
    }
}
