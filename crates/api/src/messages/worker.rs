//! The sender: drains the durable queue through Twilio's Messages API.
//!
//! Every `poll_interval_ms` it asks the store which senders have due messages, and for each
//! claims as many as the sender's pace allows before the next look ([`Pacer`]); each claimed
//! message is sent at its own slot, in a task. Before sending it checks again that the
//! recipient has not opted out since it was queued and that their quiet hours have not begun
//! (a message delayed by pacing or retries is held again, never dropped). Twilio's answer
//! settles the claim: accepted (its SID and status stored), a retry later (429, 5xx, transport
//! errors, codes Twilio documents as temporary; backoff doubling from `retry_base_delay_ms`),
//! or a permanent failure recorded with its meaning (21610, 21614, 30003-30008, any other
//! 4xx). Wall time (quiet hours, `sendAt`, backoff, leases) comes from the injected
//! [`crate::Clock`]; pacing uses the monotonic clock, since it is about Twilio's real rate.
//!
//! Pacing is per process: two instances sending from one number send at twice its rate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use voxbridge_store::MessageRecord;
use voxbridge_twilio::messaging::{Retry, SenderKind, ZoneGuess, describe_error};
use voxbridge_twilio::rest::{CreateMessage, RestClient, RestError, RetryPolicy};

use crate::AppState;
use crate::messages::{recipient_number, status_callback_url};

/// How far back a starting sender looks for its senders' last activity.
const RESUME_WINDOW_MS: i64 = 60_000;

/// When each sender may send next (sans-IO: `now` is passed in).
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    next: HashMap<String, Instant>,
}

impl Pacer {
    /// How many messages `sender` may send from `now` to `now + horizon`, one per `interval`.
    pub(crate) fn budget(
        &self,
        sender: &str,
        interval: Duration,
        now: Instant,
        horizon: Duration,
    ) -> usize {
        let from = self.next.get(sender).map_or(now, |&next| next.max(now));
        let until = now + horizon;
        if from > until {
            return 0;
        }
        let span = until - from;
        (span.as_nanos() / interval.as_nanos().max(1)) as usize + 1
    }

    /// `sender` sends nothing before `at` (a restart resuming from the store's record).
    pub(crate) fn hold_until(&mut self, sender: &str, at: Instant) {
        let next = self.next.entry(sender.to_owned()).or_insert(at);
        *next = (*next).max(at);
    }

    /// Takes `sender`'s next slot: the instant to send at (never before `now`, never closer
    /// than `interval` to the previous one).
    pub(crate) fn reserve(&mut self, sender: &str, interval: Duration, now: Instant) -> Instant {
        let at = self.next.get(sender).map_or(now, |&next| next.max(now));
        self.next.insert(sender.to_owned(), at + interval);
        at
    }
}

/// A process killed mid-stream may have sent (or be about to send: a claim is sent within two
/// polls) just before this one started: each sender resumes one interval after its last
/// recorded activity, never sooner.
async fn resume_pacing(state: &AppState, pacer: &mut Pacer, poll: Duration) {
    let config = &state.0.config.messaging;
    let started_ms = state.now_ms();
    match state
        .0
        .store
        .recent_message_activity(started_ms - RESUME_WINDOW_MS)
        .await
    {
        Ok(recent) => {
            let now = Instant::now();
            for (sender, last_ms) in recent {
                let interval = config.rates.interval(SenderKind::of(&sender));
                let wait_ms = (last_ms - started_ms).max(0)
                    + i64::try_from((poll * 2 + interval).as_millis()).unwrap_or(i64::MAX);
                let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0));
                pacer.hold_until(&sender, now + wait);
            }
        }
        Err(error) => tracing::warn!(%error, "messaging: cannot read recent sends"),
    }
}

/// Runs the sender until `shutdown`; sends in flight then get `drain_timeout_ms`.
pub(crate) async fn run(state: AppState, shutdown: CancellationToken) {
    let Some(client) = state.0.twilio.as_ref() else {
        tracing::info!(
            "messaging: no Twilio account configured (api.twilio.account_sid); not sending"
        );
        return;
    };
    // The queue retries on its own schedule: one attempt per claim.
    let client = client.with_retry(RetryPolicy {
        max_retries: 0,
        ..RetryPolicy::default()
    });
    let config = &state.0.config.messaging;
    let owner = format!("{}-{}", std::process::id(), state.now_ms());
    let poll = config.poll_interval;
    let lease_ms = i64::try_from(config.lease.as_millis()).unwrap_or(i64::MAX);
    let mut pacer = Pacer::default();
    resume_pacing(&state, &mut pacer, poll).await;
    let mut sends = JoinSet::new();
    let mut stats_due = Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(poll) => {}
        }
        while sends.try_join_next().is_some() {}
        let now_ms = state.now_ms();
        let now = Instant::now();
        if now >= stats_due {
            stats_due = now + Duration::from_secs(1);
            state
                .0
                .messaging
                .refresh_gauges(&state.0.store, now_ms)
                .await;
        }
        let senders = match state.0.store.due_message_senders(now_ms).await {
            Ok(senders) => senders,
            Err(error) => {
                tracing::warn!(%error, "messaging: cannot read the queue");
                continue;
            }
        };
        for (sender, _) in senders {
            let interval = config.rates.interval(SenderKind::of(&sender));
            // Claim what the sender may send before the look after next.
            let budget = pacer.budget(&sender, interval, now, poll * 2);
            if budget == 0 {
                continue;
            }
            let claimed = state
                .0
                .store
                .claim_messages(&sender, &owner, now_ms, lease_ms, budget as i64)
                .await;
            let claimed = match claimed {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, "messaging: cannot claim messages");
                    continue;
                }
            };
            for message in claimed {
                let at = pacer.reserve(&sender, interval, now);
                let send = Sender {
                    state: state.clone(),
                    client: client.clone(),
                    owner: Arc::from(owner.as_str()),
                };
                let span = tracing::info_span!("message", id = message.id, to = %mask(&message.to));
                sends.spawn(
                    async move {
                        tokio::time::sleep_until(at).await;
                        send.one(message).await;
                    }
                    .instrument(span),
                );
            }
        }
    }
    let drain = state.0.config.drain_timeout;
    if tokio::time::timeout(drain, async { while sends.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        // Their claims expire and another sender takes them.
        sends.abort_all();
    }
}

/// What one send needs.
struct Sender {
    state: AppState,
    client: RestClient,
    owner: Arc<str>,
}

/// How a send attempt ended.
enum Outcome {
    Accepted { sid: String, status: String },
    Retry { code: Option<i64>, why: String },
    Permanent { code: Option<i64>, why: String },
}

impl Sender {
    async fn one(&self, message: MessageRecord) {
        let store = &self.state.0.store;
        let config = &self.state.0.config.messaging;
        let now_ms = self.state.now_ms();
        let number = recipient_number(&message.to);
        // Quiet hours may have begun while the message waited for its slot or a retry.
        if let (Some(window), Some(number)) = (config.quiet_hours.window(), &number) {
            let guess = ZoneGuess::for_number(number);
            if !window.is_open(&guess, now_ms) {
                let until = window
                    .next_open(&guess, now_ms)
                    .unwrap_or(now_ms + 3_600_000);
                self.state.0.messaging.metrics.held.inc();
                tracing::info!(until, "message held for the recipient's quiet hours");
                self.put_off(&message, until, "quiet_hours", now_ms).await;
                return;
            }
        }
        if let Some(number) = &number {
            match store.sms_consent(number.as_str()).await {
                Ok(Some(status)) if status == "opted_out" => {
                    let why = "the recipient opted out (STOP) after the message was queued";
                    self.state.0.messaging.metrics.failed.inc();
                    Self::settle(
                        &message,
                        store
                            .message_failed(message.id, &self.owner, Some(21610), why, now_ms)
                            .await,
                    );
                    return;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "messaging: cannot read consent; retrying later");
                    let until = now_ms + 1_000;
                    self.put_off(&message, until, "retry", now_ms).await;
                    return;
                }
            }
        }
        let outcome = self.attempt(&message).await;
        let now_ms = self.state.now_ms();
        let metrics = &self.state.0.messaging.metrics;
        let result = match outcome {
            Outcome::Accepted { sid, status } => {
                metrics.sent.inc();
                tracing::info!(message_sid = %sid, %status, "message accepted by Twilio");
                store
                    .message_accepted(message.id, &self.owner, &sid, &status, now_ms)
                    .await
            }
            Outcome::Retry { code, why } if message.attempts < i64::from(config.max_attempts) => {
                metrics.retried.inc();
                let delay = backoff(
                    config.retry_base_delay,
                    config.retry_max_delay,
                    message.attempts,
                );
                tracing::info!(?code, %why, attempt = message.attempts, delay_ms = delay, "message send will be retried");
                store
                    .message_reschedule(
                        message.id,
                        &self.owner,
                        now_ms + delay,
                        "retry",
                        Some((code.unwrap_or(0), why.as_str())),
                        now_ms,
                    )
                    .await
            }
            Outcome::Retry { code, why } => {
                metrics.failed.inc();
                let why = format!("gave up after {} attempts: {why}", message.attempts);
                tracing::warn!(?code, %why, "message failed");
                store
                    .message_failed(message.id, &self.owner, code, &why, now_ms)
                    .await
            }
            Outcome::Permanent { code, why } => {
                metrics.failed.inc();
                tracing::warn!(?code, %why, "message refused by Twilio; not retried");
                store
                    .message_failed(message.id, &self.owner, code, &why, now_ms)
                    .await
            }
        };
        Self::settle(&message, result);
    }

    /// Puts `message` back in the queue until `until` (`reason`: `quiet_hours`, `retry`), with
    /// no attempt counted against it.
    async fn put_off(&self, message: &MessageRecord, until: i64, reason: &str, now_ms: i64) {
        let result = self
            .state
            .0
            .store
            .message_reschedule(message.id, &self.owner, until, reason, None, now_ms)
            .await;
        Self::settle(message, result);
    }

    /// Logs a settle that did not apply (the claim was lost) or failed (the lease expires and
    /// the message is sent again: at least once).
    fn settle(message: &MessageRecord, result: Result<bool, voxbridge_store::StoreError>) {
        match result {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                id = message.id,
                "message claim was lost before it was settled"
            ),
            Err(error) => {
                tracing::error!(id = message.id, %error, "cannot record the send; the message will be claimed again");
            }
        }
    }

    async fn attempt(&self, message: &MessageRecord) -> Outcome {
        let sender = message.from.clone().unwrap_or_default();
        let service = SenderKind::of(&sender) == SenderKind::MessagingService;
        let create = CreateMessage {
            to: message.to.clone(),
            from: (!service).then(|| sender.clone()),
            messaging_service_sid: service.then(|| sender.clone()),
            body: message.content_sid.is_none().then(|| message.body.clone()),
            content_sid: message.content_sid.clone(),
            content_variables: message.content_variables.clone(),
            status_callback: Some(status_callback_url(&self.state)),
        };
        match self.client.create_message(&create).await {
            Ok(resource) => Outcome::Accepted {
                sid: resource.sid,
                status: resource.status,
            },
            Err(RestError::Api(error)) => {
                let code = error.code.map(i64::from);
                let known = error.code.and_then(describe_error);
                let why =
                    known.map_or_else(|| error.message.clone(), |(meaning, _)| meaning.to_owned());
                let retry = match known {
                    Some((_, retry)) => retry == Retry::Later,
                    None => error.status == 429 || error.status >= 500,
                };
                if retry {
                    Outcome::Retry { code, why }
                } else {
                    Outcome::Permanent { code, why }
                }
            }
            Err(error) => Outcome::Retry {
                code: None,
                why: error.to_string(),
            },
        }
    }
}

/// Milliseconds before retry number `attempts` (1-based): `base * 2^(attempts-1)`, capped.
fn backoff(base: Duration, max: Duration, attempts: i64) -> i64 {
    let shift = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let delay = base.saturating_mul(1 << shift).min(max);
    i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)
}

fn mask(to: &str) -> String {
    voxbridge_twilio::Address::parse(to.strip_prefix("whatsapp:").unwrap_or(to)).masked()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_spaces_slots_and_budgets_the_horizon() {
        let mut pacer = Pacer::default();
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        assert_eq!(pacer.budget("a", second, t0, Duration::from_millis(100)), 1);
        assert_eq!(pacer.reserve("a", second, t0), t0);
        assert_eq!(pacer.reserve("a", second, t0), t0 + second);
        assert_eq!(pacer.budget("a", second, t0, Duration::from_millis(100)), 0);
        // Another sender is independent.
        assert_eq!(pacer.reserve("b", second, t0), t0);
        // Ten per 100 ms at 100/s.
        let fast = Duration::from_millis(10);
        assert_eq!(pacer.budget("c", fast, t0, Duration::from_millis(100)), 11);
        // A late look does not bunch slots up.
        let late = t0 + Duration::from_secs(5);
        assert_eq!(pacer.reserve("a", second, late), late);
        assert_eq!(pacer.reserve("a", second, late), late + second);
        // A restart resumes after the last recorded send, and never earlier than a slot
        // already taken.
        let resume = t0 + Duration::from_millis(700);
        pacer.hold_until("d", resume);
        assert_eq!(pacer.budget("d", second, t0, Duration::from_millis(100)), 0);
        assert_eq!(pacer.reserve("d", second, t0), resume);
        pacer.hold_until("d", t0);
        assert_eq!(pacer.reserve("d", second, t0), resume + second);
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(backoff(base, max, 1), 1_000);
        assert_eq!(backoff(base, max, 3), 4_000);
        assert_eq!(backoff(base, max, 30), 60_000);
    }
}
