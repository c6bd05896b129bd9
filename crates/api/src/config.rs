//! `[api]` configuration. Every field has a documented production default; secrets are
//! [`Secret`]s, which never show in `Debug`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use voxbridge_twilio::E164;
use voxbridge_twilio::twiml::{ConversationRelay, Parameter, Stream};

use voxbridge_config::NoOtherKeys;
pub use voxbridge_config::{Secret, SecretUrl};
pub use voxbridge_net::ListenerConfig;

/// A configuration value that cannot work, named by its key, with the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config api.{key}: {problem}")]
pub struct ConfigError {
    /// The key, relative to `[api]`.
    pub key: &'static str,
    /// What is wrong and how to fix it.
    pub problem: String,
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        problem: problem.into(),
    }
}

/// The companion HTTP service.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct ApiConfig {
    /// Address `voxbridge api` listens on. Default `0.0.0.0:8081`.
    pub listen: String,
    /// Whether `voxbridge serve` serves this API too, on `media.listen` beside `/media` and
    /// `/relay` (one port, one public URL). Default true; false leaves the API to a separate
    /// `voxbridge api` process.
    pub in_serve: bool,
    /// Address of a separate listener for `GET /metrics` (e.g. `127.0.0.1:9091`); empty (the
    /// default) serves `/metrics` on `listen`. When set, `listen` does not serve `/metrics`.
    pub metrics_listen: String,
    /// Said (then `<Hangup/>`) when a screening call is answered while the bridge this API
    /// runs in is at `media.max_calls`; incoming calls then get `<Reject reason="busy"/>`.
    pub busy_message: String,
    /// The public base URL Twilio reaches this service at (scheme, host, optional port, no
    /// trailing `/`). Used to validate `X-Twilio-Signature` and to build callback URLs.
    /// Default `http://localhost:8080` (the binary derives it from `media.public_url` or the
    /// listener's port when not set: see `config/default.toml`).
    pub public_url: String,
    /// Bearer token for `/api/*`. Empty (the default) refuses every `/api/*` request.
    pub api_token: Secret,
    /// Largest request body in bytes. Default 65536.
    pub body_limit_bytes: usize,
    /// Screening ids accepted by `POST /api/screenings`. Default `["default"]`.
    pub screenings: Vec<String>,
    /// Most screening calls per candidate in any 24 hours (failed creates do not count).
    /// Default 3.
    pub max_calls_per_candidate_per_day: u32,
    /// When screening calls may ring, in the candidate's local time (`[api.calling_hours]`);
    /// requests outside it are scheduled for the next opening.
    pub calling_hours: crate::outreach::CallingHoursConfig,
    /// Most scheduled screening calls placed per second, per instance (Twilio's default account
    /// limit is 1). Default 1.
    pub calls_per_second: u32,
    /// Missed screening calls tried again (`[api.retries]`).
    pub retries: crate::outreach::RetriesConfig,
    /// The SMS after a missed screening call, and replies to it (`[api.follow_up]`).
    pub follow_up: crate::outreach::follow_up::FollowUpConfig,
    /// Twilio account and REST API.
    pub twilio: TwilioConfig,
    /// How answered calls reach the agent.
    pub connect: ConnectConfig,
    /// Spoken when a screening call reaches voicemail (`AnsweredBy=machine_*`), then hang up.
    /// `{firstName}` and `{jobTitle}` are the screening's ("there" and "a job with us" when the
    /// call has no screening).
    pub voicemail_message: String,
    /// A screening script's own voicemail message, by screening id (`[api.voicemail_messages]`,
    /// e.g. `nurse = "Hi {firstName}, this is Mercy Hospital about the night nurse role..."`),
    /// with the same placeholders; scripts not listed use `voicemail_message`.
    pub voicemail_messages: std::collections::BTreeMap<String, String>,
    /// Incoming calls.
    pub inbound: InboundConfig,
    /// Per-caller rate limit for incoming calls.
    pub rate_limit: RateLimitConfig,
    /// The recruiter console (`[api.console]`).
    pub console: crate::console::ConsoleConfig,
    /// Result webhooks to the ATS (`[api.webhooks]`).
    pub webhooks: crate::ats::WebhooksConfig,
    /// SMS / WhatsApp sending (`[api.messaging]`).
    pub messaging: crate::MessagingConfig,
    /// After SIGTERM (or Ctrl-C) the listener closes at once; requests in flight get this long
    /// to finish, then their connections are closed and the service exits. Key
    /// `drain_timeout_ms`, default 10000.
    #[serde(rename = "drain_timeout_ms", with = "voxbridge_config::millis")]
    pub drain_timeout: Duration,
    /// The listener's connection caps and timeouts (`max_connections`,
    /// `max_connections_per_ip`, `header_read_timeout_ms`, `keep_alive_timeout_ms`,
    /// `body_timeout_ms`), written directly in `[api]`.
    #[serde(flatten)]
    pub listener: ListenerConfig,
    /// Rejects keys neither this struct nor [`ListenerConfig`] declares.
    #[serde(flatten, skip_serializing)]
    pub other_keys: NoOtherKeys,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8081".to_owned(),
            in_serve: true,
            metrics_listen: String::new(),
            busy_message: "Sorry, all of our lines are busy right now. We will call you back \
                later. Goodbye."
                .to_owned(),
            public_url: "http://localhost:8080".to_owned(),
            api_token: Secret::default(),
            body_limit_bytes: 64 * 1024,
            screenings: vec!["default".to_owned()],
            max_calls_per_candidate_per_day: 3,
            calling_hours: crate::outreach::CallingHoursConfig::default(),
            calls_per_second: 1,
            retries: crate::outreach::RetriesConfig::default(),
            follow_up: crate::outreach::follow_up::FollowUpConfig::default(),
            twilio: TwilioConfig::default(),
            connect: ConnectConfig::default(),
            voicemail_message: "Hi {firstName}, this is the recruiting team calling about \
                your application for {jobTitle}. We will try you again later. Goodbye."
                .to_owned(),
            voicemail_messages: std::collections::BTreeMap::new(),
            inbound: InboundConfig::default(),
            rate_limit: RateLimitConfig::default(),
            console: crate::console::ConsoleConfig::default(),
            webhooks: crate::ats::WebhooksConfig::default(),
            messaging: crate::MessagingConfig::default(),
            drain_timeout: Duration::from_secs(10),
            listener: ListenerConfig::default(),
            other_keys: NoOtherKeys,
        }
    }
}

/// `[api.twilio]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TwilioConfig {
    /// Account SID (`AC…`). Required to place calls.
    pub account_sid: String,
    /// Primary auth token: validates `X-Twilio-Signature`, and authenticates REST calls unless
    /// an API key is set. Required.
    pub auth_token: Secret,
    /// API key SID (`SK…`) for REST calls (optional; then `api_secret` is required).
    pub api_key: String,
    /// API key secret.
    pub api_secret: Secret,
    /// Caller ID for screening calls (a Twilio number, E.164). Required to place calls.
    pub from_number: String,
    /// REST API base URL. Default `https://api.twilio.com`.
    pub rest_base_url: String,
    /// Record screening calls (`Record=true`). Default false.
    pub record: bool,
    /// Retries of 429/5xx answers from the REST API. Default 3.
    pub max_retries: u32,
    /// First retry delay (doubles per retry). Key `retry_base_delay_ms`, default 250.
    #[serde(rename = "retry_base_delay_ms", with = "voxbridge_config::millis")]
    pub retry_base_delay: Duration,
    /// How old a screening's call intent must be, with no call linked, before reconciliation
    /// looks the call up at Twilio (linking it, or failing the screening when Twilio has
    /// none). Reconciliation runs at start-up and then every this often. Key
    /// `reconcile_after_ms`, default 60000; 100 to 86400000.
    #[serde(rename = "reconcile_after_ms", with = "voxbridge_config::millis")]
    pub reconcile_after: Duration,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        Self {
            account_sid: String::new(),
            auth_token: Secret::default(),
            api_key: String::new(),
            api_secret: Secret::default(),
            from_number: String::new(),
            rest_base_url: voxbridge_twilio::rest::DEFAULT_BASE_URL.to_owned(),
            record: false,
            max_retries: 3,
            retry_base_delay: Duration::from_millis(250),
            reconcile_after: Duration::from_secs(60),
        }
    }
}

/// How the answer TwiML reaches the agent.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConnectMode {
    /// `<Connect><ConversationRelay>`: Twilio does speech; text over WebSocket.
    Relay,
    /// `<Connect><Stream>`: raw audio over WebSocket.
    Stream,
}

/// `[api.connect]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectConfig {
    /// `relay` (default) or `stream`.
    pub mode: ConnectMode,
    /// Public `wss://` URL of the media server's ConversationRelay endpoint.
    /// Default `wss://localhost:8080/relay`.
    pub relay_url: String,
    /// Public `wss://` URL of the media server's Media Streams endpoint (no query string).
    /// Default `wss://localhost:8080/media`.
    pub stream_url: String,
    /// ConversationRelay `welcomeGreeting` (empty: none; the agent speaks first).
    pub welcome_greeting: String,
    /// `stream` mode: the `/media` agent the call asks for, sent as the stream's `agent`
    /// `<Parameter>` (e.g. `screening`, the same interview as `/relay`). Empty (the default):
    /// no parameter, the bridge's `media.default_agent` answers.
    pub agent: String,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        Self {
            mode: ConnectMode::Relay,
            relay_url: "wss://localhost:8080/relay".to_owned(),
            stream_url: "wss://localhost:8080/media".to_owned(),
            welcome_greeting: String::new(),
            agent: String::new(),
        }
    }
}

/// What an allowed incoming call gets.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InboundMode {
    /// Connect to the agent (as `connect` says).
    Agent,
    /// Forward with `<Dial>` to `dial_number`.
    Dial,
}

/// `[api.inbound]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct InboundConfig {
    /// `agent` (default) or `dial`.
    pub mode: InboundMode,
    /// E.164 number to forward to when `mode = "dial"`.
    pub dial_number: String,
}

impl Default for InboundConfig {
    fn default() -> Self {
        Self {
            mode: InboundMode::Agent,
            dial_number: String::new(),
        }
    }
}

/// Where rate-limit state lives.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LimiterBackend {
    /// This process only (embedded default).
    Memory,
    /// Redis, shared by every instance.
    Redis,
}

/// `[api.rate_limit]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Calls allowed per caller per window. Default 5.
    pub max_calls: u32,
    /// Window length. Key `window_secs` (whole seconds), default 3600.
    #[serde(rename = "window_secs", with = "voxbridge_config::secs")]
    pub window: Duration,
    /// E.164 numbers that are never limited.
    pub allowlist: Vec<String>,
    /// `memory` (default) or `redis`.
    pub backend: LimiterBackend,
    /// Redis URL when `backend = "redis"`. Default `redis://127.0.0.1:6379`. Shown with the
    /// password masked.
    pub redis_url: SecretUrl,
    /// Redis key prefix. Default `voxbridge:rl:`.
    pub redis_key_prefix: String,
    /// Longest wait for Redis per decision before failing open. Key `redis_timeout_ms`,
    /// default 250.
    #[serde(rename = "redis_timeout_ms", with = "voxbridge_config::millis")]
    pub redis_timeout: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            max_calls: 5,
            window: Duration::from_secs(3600),
            allowlist: Vec::new(),
            backend: LimiterBackend::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_key_prefix: "voxbridge:rl:".to_owned(),
            redis_timeout: Duration::from_millis(250),
        }
    }
}

impl ApiConfig {
    /// Checks every value that would otherwise fail at request time.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.public_url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 9 {
            return Err(invalid(
                "public_url",
                "must be the absolute http(s) URL Twilio uses, e.g. https://voice.example.com",
            ));
        }
        if url.ends_with('/') {
            return Err(invalid("public_url", "remove the trailing '/'"));
        }
        if self.twilio.auth_token.is_empty() {
            return Err(invalid(
                "twilio.auth_token",
                "is required to validate X-Twilio-Signature",
            ));
        }
        if !self.metrics_listen.is_empty() && self.metrics_listen == self.listen {
            return Err(invalid(
                "metrics_listen",
                "must differ from listen (leave it empty to serve /metrics on listen)",
            ));
        }
        if self.body_limit_bytes < 1024 {
            return Err(invalid("body_limit_bytes", "must be at least 1024"));
        }
        if self.drain_timeout.is_zero() {
            return Err(invalid(
                "drain_timeout_ms",
                "must be at least 1 (default 10000)",
            ));
        }
        self.listener
            .validate()
            .map_err(|e| invalid(e.key, e.problem))?;
        if self.screenings.is_empty() {
            return Err(invalid("screenings", "list at least one screening id"));
        }
        self.validate_outreach()?;
        if !self.twilio.from_number.is_empty() {
            E164::parse(&self.twilio.from_number)
                .map_err(|e| invalid("twilio.from_number", e.to_string()))?;
        }
        if !self.twilio.api_key.is_empty() && self.twilio.api_secret.is_empty() {
            return Err(invalid(
                "twilio.api_secret",
                "is required with twilio.api_key",
            ));
        }
        match self.connect.mode {
            ConnectMode::Relay => {
                ConversationRelay::new(self.connect.relay_url.clone())
                    .map(drop)
                    .map_err(|e| invalid("connect.relay_url", e.to_string()))?;
            }
            ConnectMode::Stream => {
                Stream::new(self.connect.stream_url.clone())
                    .map(drop)
                    .map_err(|e| invalid("connect.stream_url", e.to_string()))?;
                if !self.connect.agent.is_empty() {
                    Parameter::new("agent", self.connect.agent.as_str())
                        .map(drop)
                        .map_err(|e| invalid("connect.agent", e.to_string()))?;
                }
            }
        }
        if self.inbound.mode == InboundMode::Dial {
            E164::parse(&self.inbound.dial_number).map_err(|e| {
                invalid(
                    "inbound.dial_number",
                    format!("{e} (required when inbound.mode = \"dial\")"),
                )
            })?;
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(86_400))
            .contains(&self.twilio.reconcile_after)
        {
            return Err(invalid(
                "twilio.reconcile_after_ms",
                "must be between 100 and 86400000",
            ));
        }
        self.webhooks.validate()?;
        if self.rate_limit.max_calls == 0 {
            return Err(invalid("rate_limit.max_calls", "must be at least 1"));
        }
        if self.rate_limit.window < Duration::from_secs(1) {
            return Err(invalid("rate_limit.window_secs", "must be at least 1"));
        }
        self.messaging.validate()?;
        for number in &self.rate_limit.allowlist {
            E164::parse(number).map_err(|e| {
                invalid(
                    "rate_limit.allowlist",
                    format!("{number:?} is not E.164: {e}"),
                )
            })?;
        }
        Ok(())
    }

    /// The keys of placing screening calls: calling hours, pace, voicemail messages.
    fn validate_outreach(&self) -> Result<(), ConfigError> {
        self.calling_hours.validate()?;
        self.retries.validate()?;
        self.follow_up.validate()?;
        if self.calls_per_second == 0 {
            return Err(invalid(
                "calls_per_second",
                "must be at least 1 (default 1)",
            ));
        }
        if let Some(unknown) = self
            .voicemail_messages
            .keys()
            .find(|id| !self.screenings.contains(id))
        {
            return Err(invalid(
                "voicemail_messages",
                format!(
                    "{unknown:?} is not a screening id (api.screenings: {})",
                    self.screenings.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// `public_url` + `path`.
    pub fn public(&self, path: &str) -> String {
        format!("{}{path}", self.public_url.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> ApiConfig {
        ApiConfig {
            twilio: TwilioConfig {
                auth_token: Secret::new("tok"),
                ..TwilioConfig::default()
            },
            ..ApiConfig::default()
        }
    }

    #[test]
    fn defaults_validate_once_the_auth_token_is_set() {
        assert_eq!(valid().validate(), Ok(()));
        assert_eq!(
            ApiConfig::default().validate().unwrap_err().key,
            "twilio.auth_token"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut c = valid();
        c.connect.relay_url = "https://x".into();
        assert_eq!(c.validate().unwrap_err().key, "connect.relay_url");
        let mut c = valid();
        c.inbound.mode = InboundMode::Dial;
        assert_eq!(c.validate().unwrap_err().key, "inbound.dial_number");
        let mut c = valid();
        c.rate_limit.allowlist = vec!["12345".into()];
        assert_eq!(c.validate().unwrap_err().key, "rate_limit.allowlist");
        let mut c = valid();
        c.twilio.reconcile_after = Duration::from_millis(5);
        assert_eq!(c.validate().unwrap_err().key, "twilio.reconcile_after_ms");
        let mut c = valid();
        c.drain_timeout = Duration::ZERO;
        assert_eq!(c.validate().unwrap_err().key, "drain_timeout_ms");
        let mut c = valid();
        c.listener.keep_alive_timeout = Duration::ZERO;
        assert_eq!(c.validate().unwrap_err().key, "keep_alive_timeout_ms");
    }

    #[test]
    fn listener_and_drain_keys_sit_in_the_api_section() {
        let c: ApiConfig = toml::from_str(
            "drain_timeout_ms = 250\nmax_connections = 3\nbody_timeout_ms = 40\n\
             [twilio]\nauth_token = \"t\"\n",
        )
        .expect("valid keys");
        assert_eq!(c.drain_timeout, Duration::from_millis(250));
        assert_eq!(c.listener.max_connections, 3);
        assert_eq!(c.listener.body_timeout, Duration::from_millis(40));
        assert_eq!(ApiConfig::default().drain_timeout, Duration::from_secs(10));
        let err = toml::from_str::<ApiConfig>("drain_timeuot_ms = 1").unwrap_err();
        assert!(
            err.to_string().contains("unknown key `drain_timeuot_ms`"),
            "{err}"
        );
    }

    #[test]
    fn debug_redacts_secrets_and_toml_parses() {
        let c: ApiConfig = toml::from_str(
            "api_token = \"bearer-secret\"\n[twilio]\nauth_token = \"tok-secret\"\napi_secret = \"s3\"\n",
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("bearer-secret") && !shown.contains("tok-secret"));
        assert!(shown.contains("<redacted>"));
        assert!(toml::from_str::<ApiConfig>("nope = 1").is_err());
    }
}
