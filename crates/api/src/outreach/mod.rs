//! Outreach for screening calls: calling hours, retries of missed calls, the follow-up SMS
//! ([`follow_up`]) and the candidate's reply to it ([`reply`]).
//!
//! A screening requested while the candidate's local time is outside `api.calling_hours`
//! (default 09:00-20:00, Monday to Saturday, in the zone the number is in: see
//! `voxbridge_twilio::messaging::ZoneGuess`) is stored `scheduled`, with `scheduledFor` the
//! window's next opening, and no call is placed. [`run`] places each scheduled screening once it
//! is due, at most `api.calls_per_second` calls a second (Twilio's default account limit is one),
//! so a morning's worth of screenings that come due at 09:00 go out at the account's pace. A
//! screening found due while its window is closed (the service was down when it opened) is
//! moved to the next opening.
//!
//! A missed call (busy, no answer, failed, voicemail) with attempts left under `[api.retries]`
//! is scheduled again by the store, `spacing_ms` after it ended, and placed here like any
//! scheduled screening; its result webhook waits until it has ended for good. The first miss
//! also makes the follow-up SMS due, which [`run`] queues.
//!
//! Placing is the create path's: the screening turns `requested` with an intent in the same
//! commit (so a crash before Twilio's answer is reconciled like any other create), then the call
//! is created and linked, or the screening is marked failed. Several instances may run [`run`]:
//! a screening is claimed by one of them (a conditional update); each paces its own calls.

pub mod follow_up;
pub(crate) mod reply;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use voxbridge_twilio::E164;
use voxbridge_twilio::messaging::{CallingWindow, ZoneGuess};

use crate::config::ConfigError;
use crate::{ApiError, AppState};

/// `[api.calling_hours]`: when screening calls may ring, in the candidate's local time.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CallingHoursConfig {
    /// Hold calls requested outside the window until it opens. Default true.
    pub enabled: bool,
    /// First local time a call may be placed, `HH:MM`. Default `09:00`.
    pub start: String,
    /// Local time from which calls wait for the next allowed day, `HH:MM`. Default `20:00`.
    pub end: String,
    /// Days calls may be placed (`mon` ... `sun`). Default Monday to Saturday.
    pub days: Vec<String>,
}

impl Default for CallingHoursConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            start: "09:00".to_owned(),
            end: "20:00".to_owned(),
            days: ["mon", "tue", "wed", "thu", "fri", "sat"]
                .map(str::to_owned)
                .to_vec(),
        }
    }
}

/// `[api.retries]`: missed screening calls tried again.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RetriesConfig {
    /// Calls in all for one screening when they are missed (busy, no answer, failed,
    /// voicemail); 1 turns retries off. Default 3.
    pub max_attempts: u32,
    /// From a missed call's end to the next attempt (then held for the calling hours). Key
    /// `spacing_ms`, default 7200000 (2 hours).
    #[serde(rename = "spacing_ms", with = "voxbridge_config::millis")]
    pub spacing: Duration,
}

impl Default for RetriesConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            spacing: Duration::from_secs(2 * 60 * 60),
        }
    }
}

impl RetriesConfig {
    /// Checks the values (keys relative to `[api]`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=10).contains(&self.max_attempts) {
            return Err(ConfigError {
                key: "retries.max_attempts",
                problem: format!("must be 1 (no retries) to 10, got {}", self.max_attempts),
            });
        }
        if self.spacing < Duration::from_secs(60) {
            return Err(ConfigError {
                key: "retries.spacing_ms",
                problem: "must be at least 60000 (a minute between calls)".to_owned(),
            });
        }
        Ok(())
    }
}

/// How a screening requested now is retried and followed up (frozen on its row).
pub(crate) fn outreach(state: &AppState, campaign_id: Option<i64>) -> voxbridge_store::Outreach {
    let config = &state.0.config;
    let retries = &config.retries;
    voxbridge_store::Outreach {
        max_attempts: i64::from(retries.max_attempts.max(1)),
        retry_after_ms: i64::try_from(retries.spacing.as_millis()).unwrap_or(i64::MAX),
        // The follow-up goes out when a missed call is retried.
        follow_up: config.follow_up.enabled && retries.max_attempts > 1,
        campaign_id,
    }
}

const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl CallingHoursConfig {
    /// The window, when enabled and valid.
    pub fn window(&self) -> Option<CallingWindow> {
        if !self.enabled {
            return None;
        }
        let mut days = [false; 7];
        for day in &self.days {
            days[DAYS
                .iter()
                .position(|d| d.eq_ignore_ascii_case(day.trim()))?] = true;
        }
        Some(CallingWindow {
            hours: crate::messages::config::send_window(&self.start, &self.end)?,
            days,
        })
    }

    /// Checks the values (keys relative to `[api]`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        for (key, value) in [
            ("calling_hours.start", &self.start),
            ("calling_hours.end", &self.end),
        ] {
            if crate::messages::config::minute_of_day(value).is_none() {
                return Err(ConfigError {
                    key,
                    problem: format!("must be HH:MM (00:00-23:59), got {value:?}"),
                });
            }
        }
        if let Some(bad) = self.days.iter().find(|d| {
            !DAYS
                .iter()
                .any(|known| known.eq_ignore_ascii_case(d.trim()))
        }) {
            return Err(ConfigError {
                key: "calling_hours.days",
                problem: format!("{bad:?} is not a day; use mon, tue, wed, thu, fri, sat, sun"),
            });
        }
        if self.days.is_empty() {
            return Err(ConfigError {
                key: "calling_hours.days",
                problem: "list at least one day (or set calling_hours.enabled = false)".to_owned(),
            });
        }
        Ok(())
    }
}

/// How often due screenings are looked for.
const POLL: Duration = Duration::from_secs(1);

/// When a call to `phone` may be placed at or after `now_ms`: `None` for now (inside the window,
/// or calling hours off), else the window's next opening. Numbers whose possible zones never
/// share an open window (an unknown `+1` area code with a short window) get the first zone's.
pub(crate) fn next_call_time(state: &AppState, phone: &E164, now_ms: i64) -> Option<i64> {
    let window = state.0.config.calling_hours.window()?;
    let guess = ZoneGuess::for_number(phone);
    let open = window
        .next_open(&guess, now_ms)
        .or_else(|| window.next_open(&guess.first_only(), now_ms))?;
    (open > now_ms).then_some(open)
}

/// Places the scheduled screenings that are due, then every second, until `shutdown`; queues
/// the follow-up texts that are due every second beside it (a campaign's backlog of calls,
/// placed at the account's pace, never holds them up).
pub(crate) async fn run(state: AppState, shutdown: CancellationToken) {
    let follow_ups = tokio::spawn(send_follow_ups(state.clone(), shutdown.clone()));
    place_scheduled(state, shutdown).await;
    let _ = follow_ups.await;
}

async fn send_follow_ups(state: AppState, shutdown: CancellationToken) {
    loop {
        match follow_up::send_due(&state).await {
            Ok(0) => {}
            Ok(queued) => tracing::info!(queued, "follow-up SMS queued"),
            Err(error) => tracing::warn!(%error, "queueing follow-up SMS failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn place_scheduled(state: AppState, shutdown: CancellationToken) {
    let mut pacer = Pacer::default();
    loop {
        match place_due(&state, &mut pacer, &shutdown).await {
            Ok(0) => {}
            Ok(placed) => tracing::info!(placed, "scheduled screening calls placed"),
            Err(error) => tracing::warn!(%error, "placing scheduled screening calls failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// One pass: places every scheduled screening due now (paced); returns how many calls it asked
/// Twilio for. For tests and tools; the service runs [`run`].
pub async fn place_due_once(state: &AppState) -> Result<usize, ApiError> {
    place_due(state, &mut Pacer::default(), &CancellationToken::new()).await
}

/// One pass of the follow-ups: queues every follow-up SMS that is due; returns how many. For
/// tests and tools; the service runs [`run`].
pub async fn send_follow_ups_once(state: &AppState) -> Result<usize, ApiError> {
    follow_up::send_due(state).await
}

/// When the next call may go out (`api.calls_per_second`).
#[derive(Debug, Default)]
struct Pacer {
    last: Option<Instant>,
}

impl Pacer {
    async fn wait(&mut self, interval: Duration) {
        if let Some(last) = self.last {
            tokio::time::sleep_until(last + interval).await;
        }
        self.last = Some(Instant::now());
    }
}

async fn place_due(
    state: &AppState,
    pacer: &mut Pacer,
    shutdown: &CancellationToken,
) -> Result<usize, ApiError> {
    let Some(twilio) = &state.0.twilio else {
        return Ok(0);
    };
    let config = &state.0.config;
    let store = &state.0.store;
    let interval = Duration::from_secs(1) / config.calls_per_second.max(1);
    let mut placed = 0;
    while !shutdown.is_cancelled() {
        let now = state.now_ms();
        let Some(due) = store.next_due_screening(now).await? else {
            break;
        };
        let Ok(phone) = E164::parse(&due.phone) else {
            // Only validated numbers are stored; never retry one that is not.
            store
                .mark_screening_failed(due.id, "the stored number is not E.164", now)
                .await?;
            continue;
        };
        if let Some(later) = next_call_time(state, &phone, now) {
            tracing::info!(
                screening = due.id,
                to = %phone.masked(),
                at = %voxbridge_store::rfc3339(later),
                "scheduled screening found outside calling hours: moved to the next opening"
            );
            store.reschedule_screening(due.id, later, now).await?;
            continue;
        }
        pacer.wait(interval).await;
        let now = state.now_ms();
        if !store
            .claim_scheduled_screening(due.id, &config.twilio.from_number, now)
            .await?
        {
            continue; // another instance placed it
        }
        placed += 1;
        let span = tracing::info_span!("scheduled_screening", screening = due.id);
        let result =
            crate::screenings::place_call(state, twilio, due.id, &phone, &due.candidate_id)
                .instrument(span)
                .await;
        // A refused number is recorded as failed by place_call; the error is logged here.
        if let Err(error) = result {
            tracing::warn!(screening = due.id, %error, "scheduled screening call not placed");
        }
    }
    Ok(placed)
}
