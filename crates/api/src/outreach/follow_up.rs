//! The follow-up SMS after a missed screening call, and the candidate's reply to it.
//!
//! When a screening's first call is missed and retried (`api.retries`), the store marks its
//! follow-up due; [`send_due`] queues `api.follow_up.message` through the messaging queue (so
//! it keeps the recipient's quiet hours, pacing and retries) unless the candidate opted out.
//! A reply from that number ([`answer`]) moves the next attempt: `CALL` to now, a time
//! ("3pm", "tomorrow 10am") to that local time, both within the calling hours; anything else
//! gets `unclear_reply`. STOP ends outreach: the inbound handler cancels the number's
//! scheduled screenings ([`voxbridge_store::Store::end_outreach`]).

use serde::{Deserialize, Serialize};
use voxbridge_store::NewMessage;
use voxbridge_twilio::E164;
use voxbridge_twilio::messaging::{ZoneGuess, count_segments};

use super::reply::{self, Reply};
use crate::config::ConfigError;
use crate::webhooks::personalise;
use crate::{ApiError, AppState};

/// How many due follow-ups one pass queues.
const BATCH: i64 = 100;

/// `[api.follow_up]`: the SMS after a missed screening call.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct FollowUpConfig {
    /// Send it (after the first missed call of a screening that will be retried). Default true.
    pub enabled: bool,
    /// The SMS; `{firstName}` and `{jobTitle}` are the screening's.
    pub message: String,
    /// The answer to a reply that moved the call; `{when}` says when ("today at 3:00 PM").
    pub confirm_reply: String,
    /// The answer to a reply that names no time.
    pub unclear_reply: String,
}

impl Default for FollowUpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            message: "Hi {firstName}, we just tried to call you about your application for \
                {jobTitle}. Reply with a good time to call (like 3pm or tomorrow 10am), or CALL \
                to be called now. Reply STOP to opt out."
                .to_owned(),
            confirm_reply: "Thanks {firstName}, we will call you {when}.".to_owned(),
            unclear_reply: "Sorry, we did not catch a time. Reply with a time like 3pm or \
                tomorrow 10am, or CALL to be called now."
                .to_owned(),
        }
    }
}

impl FollowUpConfig {
    /// Checks the values (keys relative to `[api]`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled && self.message.trim().is_empty() {
            return Err(ConfigError {
                key: "follow_up.message",
                problem: "must not be empty (or set follow_up.enabled = false)".to_owned(),
            });
        }
        if self.message.chars().count() > 1600 {
            return Err(ConfigError {
                key: "follow_up.message",
                problem: "must be at most 1600 characters (Twilio's limit)".to_owned(),
            });
        }
        Ok(())
    }
}

/// Queues the follow-ups that are due; returns how many were queued.
pub(crate) async fn send_due(state: &AppState) -> Result<usize, ApiError> {
    let store = &state.0.store;
    let config = &state.0.config;
    let mut queued = 0;
    for screening in store.follow_ups_due(BATCH).await? {
        let now = state.now_ms();
        let phone = E164::parse(&screening.phone).ok();
        let opted_out = match &phone {
            Some(phone) => store.sms_consent(phone.as_str()).await?.as_deref() == Some("opted_out"),
            None => true,
        };
        let sender = crate::messages::default_sms_sender(state);
        // Canceled (by the recruiter, or STOP) before the follow-up went out: none is sent.
        let waiting = screening.state == "scheduled";
        let (Some(phone), Some(sender), false, true) = (phone, sender, opted_out, waiting) else {
            tracing::info!(
                screening = screening.id,
                opted_out,
                state = %screening.state,
                "follow-up SMS skipped: the candidate opted out, the screening is no longer \
                 waiting for its next call, or no SMS sender is configured"
            );
            store.settle_follow_up(screening.id, None, now).await?;
            continue;
        };
        let body = personalise(&config.follow_up.message, Some(&screening));
        let segments = count_segments(&body);
        let guess = ZoneGuess::for_number(&phone);
        let (send_at, hold_reason) = crate::messages::send_time(state, &guess, now, now);
        let message = NewMessage {
            channel: "sms".to_owned(),
            to: phone.as_str().to_owned(),
            from: sender,
            body,
            encoding: Some(segments.encoding.as_str().to_owned()),
            segments: Some(segments.segments as i64),
            content_sid: None,
            content_variables: None,
            send_at,
            hold_reason,
            zone: guess.name(),
        };
        if let Some(id) = store
            .settle_follow_up(screening.id, Some(&message), now)
            .await?
        {
            queued += 1;
            tracing::info!(
                screening = screening.id,
                message = id,
                to = %phone.masked(),
                "follow-up SMS queued after a missed call"
            );
        }
    }
    Ok(queued)
}

/// A message from `number` that is not a keyword: if it answers a follow-up, the screening's
/// next call is moved as it asks and the answer to send back is returned; `None` when no
/// follow-up is waiting for this number.
pub(crate) async fn answer(
    state: &AppState,
    number: &E164,
    body: &str,
) -> Result<Option<String>, ApiError> {
    let store = &state.0.store;
    let Some(screening) = store.screening_awaiting_reply(number.as_str()).await? else {
        return Ok(None);
    };
    let config = &state.0.config;
    let now = state.now_ms();
    let guess = ZoneGuess::for_number(number);
    let zone = guess.zones[0];
    let wanted = match reply::parse(body) {
        Reply::CallNow => now,
        Reply::At(wanted) => {
            let start = config
                .calling_hours
                .window()
                .map_or(9 * 60, |w| w.hours.start_minute);
            reply::resolve(wanted, &zone, now, start)
        }
        Reply::Unclear => {
            tracing::info!(
                screening = screening.id,
                from = %number.masked(),
                "reply to the follow-up names no time"
            );
            return Ok(Some(personalise(
                &config.follow_up.unclear_reply,
                Some(&screening),
            )));
        }
    };
    // Within the calling hours: the first opening at or after the time asked for.
    let at = super::next_call_time(state, number, wanted).unwrap_or(wanted);
    // First in line once due: the candidate asked for this time.
    if !store
        .reschedule_screening_first(screening.id, at, now)
        .await?
    {
        // Placed or canceled between the look-up and now.
        return Ok(None);
    }
    tracing::info!(
        screening = screening.id,
        from = %number.masked(),
        at = %voxbridge_store::rfc3339(at),
        "follow-up reply: next call moved"
    );
    let when = if at <= now + 60_000 {
        "in the next few minutes".to_owned()
    } else {
        reply::describe(&zone, now, at)
    };
    Ok(Some(
        personalise(&config.follow_up.confirm_reply, Some(&screening)).replace("{when}", &when),
    ))
}
