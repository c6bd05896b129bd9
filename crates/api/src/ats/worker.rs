//! The delivery worker: claims due deliveries under a lease, builds (once) and signs each
//! result, POSTs it, and records the outcome: delivered, retry after a backoff, or dead.

use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use voxbridge_store::{
    AttemptRecord, AttemptResult, CallDetail, ClaimRequest, ClaimedDelivery, ScreeningRecord,
    rfc3339,
};

use super::WebhooksConfig;
use super::signature::{ATTEMPT_HEADER, DELIVERY_ID_HEADER, EVENT_HEADER, SIGNATURE_HEADER};
use crate::{ApiError, AppState};

/// The delay after failed attempt number `attempt` (1 for the first): `backoff_base_ms`
/// doubled per earlier attempt, capped at `backoff_max_ms`, then jittered into its upper half
/// (`jitter` in `[0, 1)`), so the delay after attempt `n` lies in `[d/2, d]` with
/// `d = min(base * 2^(n-1), max)`.
pub fn backoff(config: &WebhooksConfig, attempt: u32, jitter: f64) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    let full = config
        .backoff_base
        .saturating_mul(factor)
        .min(config.backoff_max);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A number in `[0, 1)` that differs per call (jitter; not for secrets).
fn jitter() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(NEXT_TOKEN.fetch_add(1, Ordering::Relaxed));
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(0);

/// A token unique to one claim (this process, this claim).
fn lease_token() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!(
        "{:016x}-{}",
        hasher.finish(),
        NEXT_TOKEN.fetch_add(1, Ordering::Relaxed)
    )
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Delivers due results every `poll_interval_ms` (at once again while a claim comes back
/// full) until `shutdown`; attempts in flight then get their timeout to finish.
/// Without `api.webhooks.secret` no delivery can be signed (and none is queued by the API), so
/// the worker does not run.
pub(crate) async fn run(state: AppState, shutdown: CancellationToken) {
    if state.0.config.webhooks.secret.is_empty() {
        tracing::debug!("api.webhooks.secret is not set: no result webhooks");
        return;
    }
    let Some(client) = client(&state.0.config.webhooks) else {
        return;
    };
    let every = state.0.config.webhooks.poll_interval;
    loop {
        let full = match deliver_with(&state, &client).await {
            Ok(full) => full,
            Err(error) => {
                tracing::warn!(%error, "result webhook delivery pass failed");
                false
            }
        };
        if full && !shutdown.is_cancelled() {
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

fn client(config: &WebhooksConfig) -> Option<reqwest::Client> {
    voxbridge_config::tls::install_ring_provider();
    match reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("voxbridge-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => Some(client),
        Err(error) => {
            tracing::error!(%error, "cannot build the result webhook client: no deliveries");
            None
        }
    }
}

/// One pass: claims the due deliveries (at most `concurrency`) and attempts each, at once.
/// Returns how many were claimed.
pub async fn deliver_due(state: &AppState) -> Result<usize, ApiError> {
    let client = client(&state.0.config.webhooks)
        .ok_or_else(|| ApiError::Internal("no HTTP client".to_owned()))?;
    let claimed = claim(state).await?;
    let n = claimed.len();
    attempt_all(state, &client, claimed).await;
    Ok(n)
}

/// [`deliver_due`] with the worker's client; true when the claim came back full.
async fn deliver_with(state: &AppState, client: &reqwest::Client) -> Result<bool, ApiError> {
    let claimed = claim(state).await?;
    let full = claimed.len() >= state.0.config.webhooks.concurrency as usize;
    attempt_all(state, client, claimed).await;
    Ok(full)
}

async fn claim(state: &AppState) -> Result<Vec<(ClaimedDelivery, String)>, ApiError> {
    let config = &state.0.config.webhooks;
    let now = state.now_ms();
    let token = lease_token();
    let claimed = state
        .0
        .store
        .claim_webhook_deliveries(&ClaimRequest {
            now_ms: now,
            settled_before_ms: now.saturating_sub(ms(config.settle)),
            lease_until_ms: now.saturating_add(ms(config.lease)),
            lease_token: &token,
            limit: i64::from(config.concurrency),
        })
        .await?;
    Ok(claimed.into_iter().map(|d| (d, token.clone())).collect())
}

async fn attempt_all(
    state: &AppState,
    client: &reqwest::Client,
    claimed: Vec<(ClaimedDelivery, String)>,
) {
    let mut attempts = JoinSet::new();
    for (delivery, token) in claimed {
        let (state, client) = (state.clone(), client.clone());
        attempts.spawn(async move {
            let id = delivery.id;
            if let Err(error) = attempt(&state, &client, delivery, &token).await {
                // The lease runs out and the delivery is attempted again.
                tracing::warn!(delivery = id, %error, "result webhook attempt not recorded");
            }
        });
    }
    while attempts.join_next().await.is_some() {}
}

/// What one POST came to.
struct Sent {
    status: Option<u16>,
    error: Option<String>,
}

async fn attempt(
    state: &AppState,
    client: &reqwest::Client,
    delivery: ClaimedDelivery,
    token: &str,
) -> Result<(), ApiError> {
    let config = &state.0.config.webhooks;
    let store = &state.0.store;
    let screening = store
        .screening(delivery.screening_id)
        .await?
        .ok_or_else(|| {
            ApiError::Internal(format!(
                "screening {} of a delivery is gone",
                delivery.screening_id
            ))
        })?;
    let body = frozen_body(state, &delivery, &screening, token).await?;
    let url = screening
        .callback_url
        .clone()
        .unwrap_or_else(|| config.url.clone());
    let attempt_number = u32::try_from(delivery.attempts).unwrap_or(u32::MAX);
    let sent = if url.is_empty() {
        Sent {
            status: None,
            error: Some(
                "no callback URL: the screening has none and api.webhooks.url is empty".to_owned(),
            ),
        }
    } else if config.secret.is_empty() {
        Sent {
            status: None,
            error: Some("api.webhooks.secret is not set: deliveries must be signed".to_owned()),
        }
    } else {
        post(state, client, &url, &delivery, attempt_number, &body).await
    };
    let now = state.now_ms();
    let result = match (&sent.status, &sent.error) {
        (Some(status), None) if (200..300).contains(status) => AttemptResult::Delivered,
        _ if attempt_number >= config.max_attempts || url.is_empty() => AttemptResult::Dead,
        _ => AttemptResult::Retry {
            at_ms: now.saturating_add(ms(backoff(config, attempt_number, jitter()))),
        },
    };
    let metrics = &state.0.metrics.webhooks;
    let recorded = store
        .finish_webhook_attempt(
            &AttemptRecord {
                id: delivery.id,
                lease_token: token,
                url: &url,
                status: sent.status.map(i64::from),
                error: sent.error.as_deref(),
                now_ms: now,
            },
            &result,
        )
        .await?;
    if !recorded {
        metrics.lost_leases.inc();
        tracing::warn!(
            delivery = delivery.id,
            "result webhook attempt finished after its lease ran out; another worker owns it"
        );
        return Ok(());
    }
    match result {
        AttemptResult::Delivered => {
            metrics.delivered.inc();
            tracing::info!(
                delivery = delivery.id,
                screening = delivery.screening_id,
                attempt = attempt_number,
                "result webhook delivered"
            );
        }
        AttemptResult::Retry { at_ms } => {
            metrics.failed_attempts.inc();
            tracing::warn!(
                delivery = delivery.id,
                attempt = attempt_number,
                error = sent.error.as_deref().unwrap_or_default(),
                status = sent.status,
                retry_in_ms = at_ms - now,
                "result webhook attempt failed; will retry"
            );
        }
        AttemptResult::Dead => {
            metrics.failed_attempts.inc();
            metrics.dead.inc();
            tracing::error!(
                delivery = delivery.id,
                screening = delivery.screening_id,
                attempts = attempt_number,
                error = sent.error.as_deref().unwrap_or_default(),
                status = sent.status,
                "result webhook dead-lettered: POST /api/webhook-deliveries/{{id}}/redeliver to retry"
            );
        }
    }
    Ok(())
}

/// The delivery's body: the one frozen at its first attempt, or the result as it is now
/// (frozen for every later attempt, so retries send the same bytes).
async fn frozen_body(
    state: &AppState,
    delivery: &ClaimedDelivery,
    screening: &ScreeningRecord,
    token: &str,
) -> Result<String, ApiError> {
    if let Some(body) = &delivery.payload {
        return Ok(body.clone());
    }
    let store = &state.0.store;
    let detail = match &screening.call_sid {
        Some(sid) => store.call_detail(sid).await?,
        None => None,
    };
    let payload = result_payload(state, delivery, screening, detail.as_ref());
    store
        .freeze_webhook_payload(delivery.id, token, &payload.to_string())
        .await?
        .ok_or_else(|| ApiError::Internal("lease lost before sending".to_owned()))
}

/// POSTs `body` to `url`, signed now.
async fn post(
    state: &AppState,
    client: &reqwest::Client,
    url: &str,
    delivery: &ClaimedDelivery,
    attempt: u32,
    body: &str,
) -> Sent {
    let config = &state.0.config.webhooks;
    let timestamp = state.now_ms().div_euclid(1000);
    let signature = super::signature::header_value(
        config.secret.expose().as_bytes(),
        timestamp,
        body.as_bytes(),
    );
    let started = Instant::now();
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(DELIVERY_ID_HEADER, delivery.id.to_string())
        .header(EVENT_HEADER, delivery.event.as_str())
        .header(ATTEMPT_HEADER, attempt.to_string())
        .body(body.to_owned())
        .send()
        .await;
    let sent = match response {
        Ok(response) => {
            let status = response.status().as_u16();
            // The body is not used; reading it (bounded by the timeout) lets the connection
            // be reused.
            let _ = response.bytes().await;
            Sent {
                status: Some(status),
                error: (!(200..300).contains(&status)).then(|| format!("HTTP {status}")),
            }
        }
        Err(error) => Sent {
            status: None,
            error: Some(if error.is_timeout() {
                format!("no answer within {} ms", ms(config.timeout))
            } else if error.is_connect() {
                "cannot connect".to_owned()
            } else {
                "request failed".to_owned()
            }),
        },
    };
    state
        .0
        .metrics
        .webhooks
        .attempt_seconds
        .observe(started.elapsed().as_secs_f64());
    sent
}

/// The JSON a receiver gets (see README, "Results to your ATS").
fn result_payload(
    state: &AppState,
    delivery: &ClaimedDelivery,
    screening: &ScreeningRecord,
    detail: Option<&CallDetail>,
) -> Value {
    let config = &state.0.config;
    let status_time = |wanted: &[&str]| {
        detail.and_then(|d| {
            d.timeline
                .iter()
                .find(|e| {
                    e.kind == "status" && e.status.as_deref().is_some_and(|s| wanted.contains(&s))
                })
                .map(|e| rfc3339(e.event_ts.unwrap_or(e.received_at)))
        })
    };
    let call = detail.map(|d| &d.call);
    json!({
        "event": delivery.event,
        "deliveryId": delivery.id,
        "screening": {
            "id": screening.id,
            "screening": screening.screening,
            "jobTitle": screening.job_title,
            "state": screening.state,
            "outcome": screening.outcome,
            "answers": screening.answers,
            "summary": screening.summary,
            "error": screening.error,
            "attempts": screening.attempt,
            "campaignId": screening.campaign_id,
        },
        "candidate": {
            "id": screening.candidate_id,
            "firstName": screening.first_name,
            "phone": screening.phone,
        },
        "call": screening.call_sid.as_ref().map(|sid| json!({
            "callSid": sid,
            "status": call.and_then(|c| c.status.clone()),
            "answeredBy": call.and_then(|c| c.answered_by.clone()),
            "durationSeconds": call.and_then(|c| c.duration_seconds),
            "recordingUrl": call.and_then(|c| c.recording_url.clone()),
            "transcriptUrl": config.public(&format!("/api/calls/{sid}")),
        })),
        "timings": {
            "requestedAt": rfc3339(screening.created_at),
            "answeredAt": status_time(&["in-progress"]),
            "endedAt": status_time(&["completed", "busy", "no-answer", "failed", "canceled"])
                .unwrap_or_else(|| rfc3339(delivery.created_at)),
            "callDurationSeconds": call.and_then(|c| c.duration_seconds),
        },
        "metadata": screening.metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_jitters_and_caps() {
        let config = WebhooksConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..WebhooksConfig::default()
        };
        assert_eq!(backoff(&config, 1, 0.0), Duration::from_millis(50));
        assert!(backoff(&config, 1, 0.999_999) < Duration::from_millis(100));
        assert_eq!(backoff(&config, 2, 0.0), Duration::from_millis(100));
        assert_eq!(backoff(&config, 3, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(&config, 5, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(&config, 60, 0.0), Duration::from_millis(500));
        let spread: std::collections::HashSet<u64> =
            (0..20).map(|_| (jitter() * 1e6) as u64).collect();
        assert!(spread.len() > 15, "jitter varies: {spread:?}");
        assert!((0..1000).map(|_| jitter()).all(|j| (0.0..1.0).contains(&j)));
    }
}
