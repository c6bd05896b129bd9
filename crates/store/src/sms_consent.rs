//! SMS consent per number (`sms_consent`): opt-outs (`STOP`) and opt-ins.

use crate::{Store, StoreError, on_reader, on_writer};

impl Store {
    /// Records SMS consent for a number (`opted_out`, `opted_in`). Used by the SMS issue.
    pub async fn set_sms_consent(
        &self,
        number: &str,
        status: &str,
        keyword: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO sms_consent (number, status, keyword, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (number) DO UPDATE SET status = excluded.status, \
                 keyword = excluded.keyword, updated_at = excluded.updated_at",
            )
            .bind(number)
            .bind(status)
            .bind(keyword)
            .bind(now_ms)
            .execute(pool)
            .await?;
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
}
