//! One row per inbound call (`inbound_calls`): the first delivery of a `CallSid` claims the row,
//! makes the rate-limit decision and stores it with the TwiML it answered; every later delivery
//! of that `CallSid` (Twilio's retries, a replayed request) gets the stored TwiML and is not
//! counted again.

use crate::rate_limits::INSERT_DECISION;
use crate::{RateLimitDecision, Store, StoreError, on_reader, on_writer};

/// What [`Store::claim_inbound_call`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundClaim {
    /// This delivery decides: the call is new, or an earlier claim went stale undecided.
    Claimed,
    /// An earlier delivery decided.
    Decided(InboundDecision),
    /// An earlier delivery is deciding now.
    Pending,
}

/// The decision stored for an inbound call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundDecision {
    /// `allowed`, `allowlisted`, `blocked` or `fail_open`.
    pub decision: String,
    /// Calls counted in the window after the decision.
    pub recent_count: i64,
    /// The TwiML answered.
    pub twiml: String,
}

#[derive(sqlx::FromRow)]
struct DecisionRow {
    decision: Option<String>,
    recent_count: Option<i64>,
    twiml: Option<String>,
}

impl DecisionRow {
    /// The decision, if one was made.
    fn decided(self) -> Option<InboundDecision> {
        Some(InboundDecision {
            decision: self.decision?,
            recent_count: self.recent_count.unwrap_or(0),
            twiml: self.twiml?,
        })
    }
}

impl Store {
    /// Claims the decision for `call_sid` from `caller_key` at `now_ms`. A claim made before
    /// `stale_before_ms` that never got a decision (its process died) is taken over.
    pub async fn claim_inbound_call(
        &self,
        call_sid: &str,
        caller_key: &str,
        now_ms: i64,
        stale_before_ms: i64,
    ) -> Result<InboundClaim, StoreError> {
        on_writer!(self, pool => {
            let inserted = sqlx::query(
                "INSERT INTO inbound_calls (call_sid, caller_key, claimed_at, created_at) \
                 VALUES ($1, $2, $3, $3) ON CONFLICT (call_sid) DO NOTHING",
            )
            .bind(call_sid)
            .bind(caller_key)
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(InboundClaim::Claimed);
            }
            let taken = sqlx::query(
                "UPDATE inbound_calls SET claimed_at = $1 \
                 WHERE call_sid = $2 AND decision IS NULL AND claimed_at < $3",
            )
            .bind(now_ms)
            .bind(call_sid)
            .bind(stale_before_ms)
            .execute(pool)
            .await?
            .rows_affected();
            if taken == 1 {
                return Ok(InboundClaim::Claimed);
            }
        });
        Ok(self
            .inbound_decision(call_sid)
            .await?
            .map_or(InboundClaim::Pending, InboundClaim::Decided))
    }

    /// The stored decision for `call_sid`, once made.
    pub async fn inbound_decision(
        &self,
        call_sid: &str,
    ) -> Result<Option<InboundDecision>, StoreError> {
        let row: Option<DecisionRow> = on_reader!(self, pool => {
            sqlx::query_as(
                "SELECT decision, recent_count, twiml FROM inbound_calls WHERE call_sid = $1",
            )
            .bind(call_sid)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.and_then(DecisionRow::decided))
    }

    /// Stores the decision for a claimed `call_sid` (labelled `label`, answered with `twiml`)
    /// and its audit row in one transaction.
    pub async fn decide_inbound_call(
        &self,
        call_sid: &str,
        label: &str,
        decision: &RateLimitDecision,
        twiml: &str,
    ) -> Result<(), StoreError> {
        on_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "UPDATE inbound_calls SET decision = $1, recent_count = $2, twiml = $3, \
                 decided_at = $4 WHERE call_sid = $5 AND decision IS NULL",
            )
            .bind(label)
            .bind(decision.recent_count)
            .bind(twiml)
            .bind(decision.decided_at_ms)
            .bind(call_sid)
            .execute(&mut *tx)
            .await?;
            sqlx::query(INSERT_DECISION)
                .bind(&decision.number)
                .bind(i64::from(decision.allowed))
                .bind(decision.recent_count)
                .bind(decision.decided_at_ms)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}
