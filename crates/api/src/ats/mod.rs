//! Results to the recruiter's ATS: when a screening ends (any outcome), its result is posted
//! to the screening's `callbackUrl` (or `api.webhooks.url`), signed (see [`signature`]), from
//! a durable outbox in the store (`voxbridge_store::WebhookDelivery`).
//!
//! The store queues one delivery per ended screening in the transaction that ends it; the
//! delivery worker ([`worker`], started by [`crate::spawn_background`]) claims due deliveries
//! under a lease, POSTs each with a per-attempt timeout, and on failure retries with
//! exponential backoff (with jitter, capped) until `max_attempts`, then dead-letters it. A
//! process killed mid-attempt leaves a lease that runs out, and any instance retries it:
//! at-least-once, with one delivery id per screening for the receiver to deduplicate on.
//! `GET /api/webhook-deliveries` lists them, `POST /api/webhook-deliveries/{id}/redeliver`
//! queues a dead (or delivered) one again ([`routes`]).

pub(crate) mod routes;
pub mod signature;
pub(crate) mod worker;

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use voxbridge_config::Secret;
use voxbridge_metrics::latency_histogram;

use crate::config::ConfigError;

pub use worker::{backoff, deliver_due};

/// Longest accepted `callbackUrl`.
const MAX_URL_CHARS: usize = 2048;
/// Largest accepted `metadata`, as compact JSON.
const MAX_METADATA_BYTES: usize = 4096;

/// `[api.webhooks]`: the default result webhook and the delivery policy.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Where results go when a screening was requested without `callbackUrl` (http or https).
    /// Empty (the default): only screenings with a `callbackUrl` are delivered.
    pub url: String,
    /// The HMAC-SHA256 key of `Voxbridge-Signature`. Required with `url` or any `callbackUrl`.
    pub secret: Secret,
    /// Attempts before a delivery is dead-lettered. Default 10.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles per attempt, jittered down by up to half.
    /// Key `backoff_base_ms`, default 5000.
    #[serde(rename = "backoff_base_ms", with = "voxbridge_config::millis")]
    pub backoff_base: Duration,
    /// Longest delay between attempts. Key `backoff_max_ms`, default 3600000 (one hour).
    #[serde(rename = "backoff_max_ms", with = "voxbridge_config::millis")]
    pub backoff_max: Duration,
    /// Longest wait for a receiver's answer per attempt. Key `timeout_ms`, default 10000.
    #[serde(rename = "timeout_ms", with = "voxbridge_config::millis")]
    pub timeout: Duration,
    /// How long a claimed delivery stays with its worker; after a crash it is retried once
    /// this has passed. Must exceed `timeout_ms`. Key `lease_ms`, default 60000.
    #[serde(rename = "lease_ms", with = "voxbridge_config::millis")]
    pub lease: Duration,
    /// The first attempt waits this long after the screening ended, so the agent's answers
    /// that land just after the call's `completed` are in the result. Key `settle_ms`,
    /// default 3000.
    #[serde(rename = "settle_ms", with = "voxbridge_config::millis")]
    pub settle: Duration,
    /// How often the worker looks for due deliveries. Key `poll_interval_ms`, default 1000.
    #[serde(rename = "poll_interval_ms", with = "voxbridge_config::millis")]
    pub poll_interval: Duration,
    /// Deliveries attempted at once per instance. Default 8.
    pub concurrency: u32,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            secret: Secret::default(),
            max_attempts: 10,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
            lease: Duration::from_secs(60),
            settle: Duration::from_secs(3),
            poll_interval: Duration::from_secs(1),
            concurrency: 8,
        }
    }
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        problem: problem.into(),
    }
}

impl WebhooksConfig {
    /// Checks every value (keys named relative to `[api]`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.url.is_empty() {
            check_url(&self.url).map_err(|e| invalid("webhooks.url", e))?;
            if self.secret.is_empty() {
                return Err(invalid(
                    "webhooks.secret",
                    "is required with webhooks.url (deliveries are signed); e.g. 32 random \
                     bytes in hex: openssl rand -hex 32",
                ));
            }
        }
        if self.max_attempts == 0 {
            return Err(invalid("webhooks.max_attempts", "must be at least 1"));
        }
        if self.backoff_base.is_zero() {
            return Err(invalid("webhooks.backoff_base_ms", "must be at least 1"));
        }
        if self.backoff_max < self.backoff_base {
            return Err(invalid(
                "webhooks.backoff_max_ms",
                "must be at least backoff_base_ms",
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid("webhooks.timeout_ms", "must be at least 1"));
        }
        if self.lease <= self.timeout {
            return Err(invalid(
                "webhooks.lease_ms",
                "must exceed timeout_ms (a lease shorter than an attempt lets a second worker \
                 send the same delivery while the first is still waiting)",
            ));
        }
        if self.poll_interval < Duration::from_millis(10) {
            return Err(invalid("webhooks.poll_interval_ms", "must be at least 10"));
        }
        if self.concurrency == 0 {
            return Err(invalid("webhooks.concurrency", "must be at least 1"));
        }
        Ok(())
    }
}

/// An absolute `http://` or `https://` URL with a host, no credentials, no fragment.
fn check_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("must be an absolute http(s) URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must be http or https, got {}", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials (the signature authenticates us)".to_owned());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".to_owned());
    }
    Ok(())
}

/// `callbackUrl` and `metadata` of a `POST /api/screenings` body; a message per bad field in
/// `errors`.
pub(crate) fn parse_callback(
    object: &serde_json::Map<String, Value>,
    errors: &mut BTreeMap<&'static str, String>,
) -> (Option<String>, Option<Value>) {
    let url = match object.get("callbackUrl") {
        None | Some(Value::Null) => None,
        Some(Value::String(url)) if url.chars().count() > MAX_URL_CHARS => {
            errors.insert(
                "callbackUrl",
                format!("must be at most {MAX_URL_CHARS} characters"),
            );
            None
        }
        Some(Value::String(url)) => match check_url(url.trim()) {
            Ok(()) => Some(url.trim().to_owned()),
            Err(problem) => {
                errors.insert("callbackUrl", problem);
                None
            }
        },
        Some(_) => {
            errors.insert("callbackUrl", "must be a string".to_owned());
            None
        }
    };
    let metadata = match object.get("metadata") {
        None | Some(Value::Null) => None,
        Some(value @ Value::Object(_)) if value.to_string().len() > MAX_METADATA_BYTES => {
            errors.insert(
                "metadata",
                format!("must be at most {MAX_METADATA_BYTES} bytes of JSON"),
            );
            None
        }
        Some(value @ Value::Object(_)) => Some(value.clone()),
        Some(_) => {
            errors.insert("metadata", "must be a JSON object".to_owned());
            None
        }
    };
    (url, metadata)
}

/// Delivery counters and the attempt latency (`voxbridge_api_ats_*`).
#[derive(Debug)]
pub struct DeliveryMetrics {
    /// Deliveries a receiver answered 2xx.
    pub delivered: Counter,
    /// Attempts that failed (non-2xx, timeout, connection refused), dead-lettering ones too.
    pub failed_attempts: Counter,
    /// Deliveries dead-lettered after their last attempt.
    pub dead: Counter,
    /// Attempts whose result was not recorded because the lease had run out.
    pub lost_leases: Counter,
    /// Time from sending to the receiver's answer (or the failure), per attempt.
    pub attempt_seconds: Histogram,
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        Self {
            delivered: Counter::default(),
            failed_attempts: Counter::default(),
            dead: Counter::default(),
            lost_leases: Counter::default(),
            attempt_seconds: latency_histogram(),
        }
    }
}

impl DeliveryMetrics {
    /// Registers them in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        for (name, help, counter) in [
            (
                "voxbridge_api_ats_webhooks_delivered",
                "Result webhooks a receiver answered 2xx",
                &self.delivered,
            ),
            (
                "voxbridge_api_ats_webhook_attempts_failed",
                "Result webhook attempts that failed (non-2xx, timeout, unreachable)",
                &self.failed_attempts,
            ),
            (
                "voxbridge_api_ats_webhooks_dead",
                "Result webhooks dead-lettered after their last attempt",
                &self.dead,
            ),
            (
                "voxbridge_api_ats_webhook_leases_lost",
                "Result webhook attempts finished after their lease ran out (not recorded)",
                &self.lost_leases,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "voxbridge_api_ats_webhook_attempt_seconds",
            "Time for one result webhook attempt, failed ones included",
            self.attempt_seconds.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_fields_are_checked() {
        let mut errors = BTreeMap::new();
        let body = serde_json::json!({
            "callbackUrl": "ftp://ats.example.com/x",
            "metadata": [1, 2],
        });
        let (url, metadata) = parse_callback(body.as_object().unwrap(), &mut errors);
        assert_eq!((url, metadata), (None, None));
        assert_eq!(
            errors.keys().copied().collect::<Vec<_>>(),
            ["callbackUrl", "metadata"]
        );
        let mut errors = BTreeMap::new();
        let body = serde_json::json!({
            "callbackUrl": " https://ats.example.com/hooks?x=1 ",
            "metadata": {"requisition": "R-7"},
        });
        let (url, metadata) = parse_callback(body.as_object().unwrap(), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(url.as_deref(), Some("https://ats.example.com/hooks?x=1"));
        assert_eq!(metadata, Some(serde_json::json!({"requisition": "R-7"})));
        for bad in [
            "https://user:pw@ats.example.com/",
            "/relative",
            "https://ats.example.com/#f",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_names_its_keys() {
        assert_eq!(WebhooksConfig::default().validate(), Ok(()));
        let c = WebhooksConfig {
            url: "https://ats.example.com/hooks".into(),
            ..WebhooksConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "webhooks.secret");
        let c = WebhooksConfig {
            lease: Duration::from_secs(10),
            ..WebhooksConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "webhooks.lease_ms");
        let c = WebhooksConfig {
            url: "mailto:x@example.com".into(),
            secret: Secret::new("s"),
            ..WebhooksConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "webhooks.url");
    }
}
