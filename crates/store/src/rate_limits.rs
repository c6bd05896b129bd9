//! The audit trail of per-number rate-limit decisions (`rate_limit_decisions`).

use crate::{Store, StoreError, on_reader, on_writer};

/// A per-number rate-limit decision, for the audit table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitDecision {
    /// The caller (E.164).
    pub number: String,
    /// Whether the call was let through.
    pub allowed: bool,
    /// Calls counted in the window, including this one if allowed.
    pub recent_count: i64,
    /// When (Unix ms).
    pub decided_at_ms: i64,
}

/// A `rate_limit_decisions` row as read; `allowed` is stored as `BIGINT` 0/1 (which PostgreSQL
/// does not decode as a `bool`).
#[derive(sqlx::FromRow)]
struct RateLimitRow {
    number: String,
    allowed: i64,
    recent_count: i64,
    decided_at: i64,
}

impl From<RateLimitRow> for RateLimitDecision {
    fn from(row: RateLimitRow) -> Self {
        Self {
            number: row.number,
            allowed: row.allowed != 0,
            recent_count: row.recent_count,
            decided_at_ms: row.decided_at,
        }
    }
}

/// Inserts one audit row: number, allowed (0/1), recent count, decided at.
pub(crate) const INSERT_DECISION: &str = "INSERT INTO rate_limit_decisions \
    (number, allowed, recent_count, decided_at) VALUES ($1, $2, $3, $4)";

impl Store {
    /// Audits a rate-limit decision.
    pub async fn record_rate_limit_decision(
        &self,
        decision: &RateLimitDecision,
    ) -> Result<(), StoreError> {
        on_writer!(self, pool => {
            sqlx::query(INSERT_DECISION)
            .bind(&decision.number)
            .bind(i64::from(decision.allowed))
            .bind(decision.recent_count)
            .bind(decision.decided_at_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The audited decisions for `number`, oldest first.
    pub async fn rate_limit_decisions(
        &self,
        number: &str,
    ) -> Result<Vec<RateLimitDecision>, StoreError> {
        let rows: Vec<RateLimitRow> = on_reader!(self, pool => {
            sqlx::query_as(
                "SELECT number, allowed, recent_count, decided_at FROM rate_limit_decisions \
                 WHERE number = $1 ORDER BY id",
            )
            .bind(number)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(RateLimitDecision::from).collect())
    }
}
