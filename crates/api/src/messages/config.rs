//! `[api.messaging]`: senders, throughput per sender kind, quiet hours, retries, replies.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use voxbridge_twilio::E164;
use voxbridge_twilio::messaging::{SendWindow, SenderKind};

use crate::config::ConfigError;

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        problem: problem.into(),
    }
}

/// `[api.messaging]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MessagingConfig {
    /// Run the sender that drains the queue in this process. Default true.
    pub send: bool,
    /// Default SMS sender: a Twilio number (E.164) or short code. Empty (the default) uses
    /// `twilio.from_number`, unless `messaging_service_sid` is set.
    pub from: String,
    /// A Messaging Service SID (`MG…`) to send through when no `from` is set or asked for.
    pub messaging_service_sid: String,
    /// Other senders a request may name in `from`.
    pub senders: Vec<String>,
    /// WhatsApp sender (`whatsapp:+1...`); required to send to `whatsapp:` addresses.
    pub whatsapp_from: String,
    /// Messages per second for each sender kind.
    pub rates: SenderRates,
    /// When messages may reach recipients, in their local time.
    pub quiet_hours: QuietHoursConfig,
    /// Reply to HELP / INFO.
    pub help_text: String,
    /// Reply to STOP and the other opt-out keywords (empty: none; Twilio's own opt-out
    /// handling usually replies already).
    pub opt_out_reply: String,
    /// Reply to START / YES / UNSTOP (empty: none).
    pub opt_in_reply: String,
    /// Send attempts before a message that keeps getting 429/5xx is failed. Default 8.
    pub max_attempts: u32,
    /// First retry delay, doubling per attempt. Key `retry_base_delay_ms`, default 1000.
    #[serde(rename = "retry_base_delay_ms", with = "voxbridge_config::millis")]
    pub retry_base_delay: Duration,
    /// Longest retry delay. Key `retry_max_delay_ms`, default 300000.
    #[serde(rename = "retry_max_delay_ms", with = "voxbridge_config::millis")]
    pub retry_max_delay: Duration,
    /// How long a claimed message belongs to its sender before another process may take it
    /// (a sender killed mid-send). Key `lease_ms`, default 60000.
    #[serde(rename = "lease_ms", with = "voxbridge_config::millis")]
    pub lease: Duration,
    /// How often the sender looks for due messages. Key `poll_interval_ms`, default 50.
    #[serde(rename = "poll_interval_ms", with = "voxbridge_config::millis")]
    pub poll_interval: Duration,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        Self {
            send: true,
            from: String::new(),
            messaging_service_sid: String::new(),
            senders: Vec::new(),
            whatsapp_from: String::new(),
            rates: SenderRates::default(),
            quiet_hours: QuietHoursConfig::default(),
            help_text: "Recruiting team: reply STOP to stop messages, START to resume. \
                Msg & data rates may apply."
                .to_owned(),
            opt_out_reply: String::new(),
            opt_in_reply: String::new(),
            max_attempts: 8,
            retry_base_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(300),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(50),
        }
    }
}

/// `[api.messaging.rates]`: messages per second per sender (Twilio's US defaults).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SenderRates {
    /// A 10-digit long code. Default 1.
    pub long_code: u32,
    /// A toll-free number. Default 3.
    pub toll_free: u32,
    /// A short code. Default 100.
    pub short_code: u32,
    /// A Messaging Service (its pool's combined rate). Default 10.
    pub messaging_service: u32,
}

impl Default for SenderRates {
    fn default() -> Self {
        Self {
            long_code: 1,
            toll_free: 3,
            short_code: 100,
            messaging_service: 10,
        }
    }
}

impl SenderRates {
    /// The time between two messages of a sender of `kind`.
    pub fn interval(&self, kind: SenderKind) -> Duration {
        let per_second = match kind {
            SenderKind::LongCode => self.long_code,
            SenderKind::TollFree => self.toll_free,
            SenderKind::ShortCode => self.short_code,
            SenderKind::MessagingService => self.messaging_service,
        };
        Duration::from_secs(1) / per_second.max(1)
    }
}

/// `[api.messaging.quiet_hours]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct QuietHoursConfig {
    /// Hold messages outside the window. Default true.
    pub enabled: bool,
    /// First local time messages may go out, `HH:MM`. Default `08:00`.
    pub start: String,
    /// Local time from which messages wait for the next day, `HH:MM`. Default `21:00`.
    pub end: String,
}

impl Default for QuietHoursConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            start: "08:00".to_owned(),
            end: "21:00".to_owned(),
        }
    }
}

/// The window from local `start` to `end` (`HH:MM` each), if both are valid.
pub(crate) fn send_window(start: &str, end: &str) -> Option<SendWindow> {
    Some(SendWindow {
        start_minute: minute_of_day(start)?,
        end_minute: minute_of_day(end)?,
    })
}

/// Minutes since midnight of `HH:MM`.
pub(crate) fn minute_of_day(text: &str) -> Option<u32> {
    let (hour, minute) = text.trim().split_once(':')?;
    let (hour, minute): (u32, u32) = (hour.parse().ok()?, minute.parse().ok()?);
    (hour < 24 && minute < 60).then_some(hour * 60 + minute)
}

impl QuietHoursConfig {
    /// The window, when enabled and valid.
    pub fn window(&self) -> Option<SendWindow> {
        if !self.enabled {
            return None;
        }
        send_window(&self.start, &self.end)
    }
}

impl MessagingConfig {
    /// Checks the values (keys relative to `[api]`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.quiet_hours.enabled {
            for (key, value) in [
                ("messaging.quiet_hours.start", &self.quiet_hours.start),
                ("messaging.quiet_hours.end", &self.quiet_hours.end),
            ] {
                if minute_of_day(value).is_none() {
                    return Err(invalid(
                        key,
                        format!("must be HH:MM (00:00-23:59), got {value:?}"),
                    ));
                }
            }
        }
        for sender in std::iter::once(&self.from)
            .chain(&self.senders)
            .filter(|s| !s.is_empty())
        {
            let short_code = SenderKind::of(sender) == SenderKind::ShortCode;
            if !short_code && E164::parse(sender).is_err() {
                return Err(invalid(
                    "messaging.senders",
                    format!("{sender:?} is neither E.164 nor a 5-6 digit short code"),
                ));
            }
        }
        if !self.messaging_service_sid.is_empty() && !self.messaging_service_sid.starts_with("MG") {
            return Err(invalid(
                "messaging.messaging_service_sid",
                "must start with MG",
            ));
        }
        if !self.whatsapp_from.is_empty()
            && self
                .whatsapp_from
                .strip_prefix("whatsapp:")
                .is_none_or(|n| E164::parse(n).is_err())
        {
            return Err(invalid(
                "messaging.whatsapp_from",
                "must be whatsapp:+<E.164>, e.g. whatsapp:+14155550100",
            ));
        }
        let rates = self.rates;
        if [
            rates.long_code,
            rates.toll_free,
            rates.short_code,
            rates.messaging_service,
        ]
        .contains(&0)
        {
            return Err(invalid("messaging.rates", "every rate must be at least 1"));
        }
        if self.max_attempts == 0 {
            return Err(invalid("messaging.max_attempts", "must be at least 1"));
        }
        if self.lease < Duration::from_secs(1) {
            return Err(invalid("messaging.lease_ms", "must be at least 1000"));
        }
        if self.poll_interval.is_zero() || self.poll_interval > Duration::from_secs(10) {
            return Err(invalid("messaging.poll_interval_ms", "must be 1 to 10000"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_name_their_key() {
        assert_eq!(MessagingConfig::default().validate(), Ok(()));
        let mut c = MessagingConfig::default();
        c.quiet_hours.start = "8am".into();
        assert_eq!(c.validate().unwrap_err().key, "messaging.quiet_hours.start");
        let mut c = MessagingConfig::default();
        c.rates.toll_free = 0;
        assert_eq!(c.validate().unwrap_err().key, "messaging.rates");
        let c = MessagingConfig {
            whatsapp_from: "+14155550100".into(),
            ..MessagingConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "messaging.whatsapp_from");
    }

    #[test]
    fn rates_become_intervals() {
        let rates = SenderRates::default();
        assert_eq!(rates.interval(SenderKind::LongCode), Duration::from_secs(1));
        assert_eq!(
            rates.interval(SenderKind::ShortCode),
            Duration::from_millis(10)
        );
        assert_eq!(
            QuietHoursConfig::default().window(),
            Some(SendWindow {
                start_minute: 480,
                end_minute: 1260
            })
        );
    }
}
