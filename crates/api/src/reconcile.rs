//! Reconciliation of screening calls a crash left unlinked.
//!
//! `POST /api/screenings` commits the screening and an intent (to, from, when) before it asks
//! Twilio to call; the 201's call SID is linked in a second commit. A process killed between
//! Twilio's 201 and that commit leaves a placed call that no screening knows. At start-up, and
//! then every `api.twilio.reconcile_after_ms`, every intent at least that old with no call
//! linked is looked up at Twilio (`GET Calls.json?To=&From=&StartTime>=`): the call created
//! nearest the intent, within 2 minutes before and 10 minutes after it and not linked to another
//! screening, is linked; if Twilio has none, the screening is marked `failed`. If
//! Twilio cannot be reached the intent stays open for the next pass.

use tokio_util::sync::CancellationToken;
use voxbridge_store::ScreeningIntent;
use voxbridge_twilio::rest::{CallListFilter, RestClient};
use voxbridge_twilio::webhook::Rfc2822Timestamp;

use crate::{ApiError, AppState, TwilioOperation};

/// A call matches an intent when Twilio created it at most this long before the intent (clock
/// skew between us and Twilio)...
const MATCH_BEFORE_MS: i64 = 2 * 60_000;
/// ...and at most this long after it (the create's timeout and retries).
const MATCH_AFTER_MS: i64 = 10 * 60_000;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Screenings linked to the call Twilio placed.
    pub linked: usize,
    /// Screenings marked failed: Twilio has no call for them.
    pub failed: usize,
    /// Intents left open: Twilio could not be asked.
    pub deferred: usize,
}

/// Reconciles at once, then every `reconcile_after`, until `shutdown`.
pub(crate) async fn run(state: AppState, shutdown: CancellationToken) {
    let every = state.0.config.twilio.reconcile_after;
    loop {
        match reconcile_once(&state).await {
            Ok(done) if done != Reconciled::default() => {
                tracing::info!(
                    linked = done.linked,
                    failed = done.failed,
                    deferred = done.deferred,
                    "screening calls reconciled with Twilio"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "screening reconciliation failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// One pass over the intents at least `api.twilio.reconcile_after_ms` old.
pub async fn reconcile_once(state: &AppState) -> Result<Reconciled, ApiError> {
    let mut done = Reconciled::default();
    let Some(twilio) = &state.0.twilio else {
        return Ok(done);
    };
    let after =
        i64::try_from(state.0.config.twilio.reconcile_after.as_millis()).unwrap_or(i64::MAX);
    let store = &state.0.store;
    for intent in store
        .open_screening_intents(state.now_ms().saturating_sub(after))
        .await?
    {
        let screening = intent.screening_id;
        match find_call(state, twilio, &intent).await {
            Ok(Some(call_sid)) => {
                store
                    .mark_screening_initiated(
                        intent.screening_id,
                        &call_sid,
                        &intent.from_number,
                        state.now_ms(),
                    )
                    .await?;
                state.0.metrics.screenings_created.inc();
                tracing::info!(screening, %call_sid, "screening linked to the call Twilio placed");
                done.linked += 1;
            }
            Ok(None) => {
                store
                    .mark_screening_failed(
                        intent.screening_id,
                        "reconciliation: Twilio has no call for this screening",
                        state.now_ms(),
                    )
                    .await?;
                tracing::warn!(
                    screening,
                    "Twilio has no call for the screening: marked failed"
                );
                done.failed += 1;
            }
            Err(error) => {
                tracing::warn!(screening, %error, "cannot list calls at Twilio: trying again later");
                done.deferred += 1;
            }
        }
    }
    Ok(done)
}

/// The SID of the call Twilio placed for `intent`, if any.
async fn find_call(
    state: &AppState,
    twilio: &RestClient,
    intent: &ScreeningIntent,
) -> Result<Option<String>, ApiError> {
    let filter = CallListFilter {
        to: Some(intent.to_number.clone()),
        from: Some(intent.from_number.clone()),
        started_on_or_after: Some(utc_date(intent.created_at - MATCH_BEFORE_MS)),
    };
    let calls = state
        .0
        .metrics
        .timed_rest(TwilioOperation::ListCalls, twilio.list_calls(&filter))
        .await?;
    let mut best: Option<(i64, String)> = None;
    for call in calls {
        let Some(created) = call
            .date_created
            .as_deref()
            .and_then(|d| Rfc2822Timestamp::parse(d).ok())
            .map(|t| t.unix_seconds().saturating_mul(1000))
        else {
            continue;
        };
        // `date_created` has whole seconds: the call may show up to 999 ms before the intent.
        let offset = created - intent.created_at;
        if !(-MATCH_BEFORE_MS..=MATCH_AFTER_MS).contains(&offset)
            || call.to.as_deref() != Some(intent.to_number.as_str())
            || state.0.store.call_placed_for_screening(&call.sid).await?
        {
            continue;
        }
        if best.as_ref().is_none_or(|(d, _)| offset.abs() < *d) {
            best = Some((offset.abs(), call.sid));
        }
    }
    Ok(best.map(|(_, sid)| sid))
}

/// The UTC date (`YYYY-MM-DD`) of `unix_ms`.
fn utc_date(unix_ms: i64) -> String {
    Rfc2822Timestamp::from_unix_seconds(unix_ms.div_euclid(1000)).utc_date()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_868_800_000), "2000-03-01");
        assert_eq!(utc_date(1_700_000_000_000), "2023-11-14");
        assert_eq!(utc_date(951_868_800_000 - 1), "2000-02-29");
    }
}
